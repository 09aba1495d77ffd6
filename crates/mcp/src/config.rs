//! What an MCP server is to Orchard: a name, how to reach it (a child
//! process over stdio, or a streamable-HTTP URL), whether it is on, and which
//! of its tools to offer. Also the import of the JSON files people already
//! keep their servers in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest server name: the name prefixes every tool (`server__tool`),
/// and a tool name may have 64 characters in all.
pub const MAX_NAME_LEN: usize = 32;

/// One configured MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Unique; letters, digits, `-` and `_`, without `__` (the separator).
    pub name: String,
    pub transport: Transport,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Tool name patterns (`*` matches any run of characters) to offer; all
    /// when empty.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Tool name patterns never offered, even when allowed.
    #[serde(default)]
    pub deny: Vec<String>,
}

fn yes() -> bool {
    true
}

/// How to reach a server. The values of `env` and `headers` are secrets
/// (tokens, keys): never logged, and stored apart from the rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for Transport {
    /// Names of `env` and `headers` entries only, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            Transport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Transport {
    /// The secret values (`env` or `headers`), by name.
    pub fn secrets(&self) -> &BTreeMap<String, String> {
        match self {
            Transport::Stdio { env, .. } => env,
            Transport::Http { headers, .. } => headers,
        }
    }

    /// The same transport without secret values (names kept, values empty),
    /// for storage beside the secrets and for display.
    pub fn without_secrets(&self) -> Transport {
        let blank = |map: &BTreeMap<String, String>| {
            map.keys().map(|k| (k.clone(), String::new())).collect()
        };
        match self {
            Transport::Stdio {
                command,
                args,
                cwd,
                env,
            } => Transport::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: blank(env),
                cwd: cwd.clone(),
            },
            Transport::Http { url, headers } => Transport::Http {
                url: url.clone(),
                headers: blank(headers),
            },
        }
    }

    /// The same transport with the secret values put back.
    pub fn with_secrets(mut self, values: BTreeMap<String, String>) -> Transport {
        let target = match &mut self {
            Transport::Stdio { env, .. } => env,
            Transport::Http { headers, .. } => headers,
        };
        for (name, value) in values {
            target.insert(name, value);
        }
        self
    }

    /// A short description for lists: the command line or the URL.
    pub fn summary(&self) -> String {
        match self {
            Transport::Stdio { command, args, .. } => std::iter::once(command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Transport::Http { url, .. } => url.clone(),
        }
    }
}

impl ServerSpec {
    /// Whether `tool` passes this server's allow and deny patterns.
    pub fn offers(&self, tool: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| glob(p, tool)))
            && !self.deny.iter().any(|p| glob(p, tool))
    }

    /// Checks the name and transport; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        match &self.transport {
            Transport::Stdio { command, .. } if command.trim().is_empty() => {
                Err(format!("MCP server {:?} has an empty command", self.name))
            }
            Transport::Http { url, .. }
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                Err(format!(
                    "MCP server {:?} has URL {url:?}: it must start with http:// or https://",
                    self.name
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Checks a server name: it prefixes tool names, so it keeps to the
/// characters OpenAI allows in them.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.contains("__")
        && !name.starts_with('_')
        && !name.ends_with('_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable MCP server name: use 1 to {MAX_NAME_LEN} letters, digits, '-' or '_' (not at either end, and never two '_' in a row)"
        ))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of
/// characters and everything else for itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and where in `text` it began to match.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Reads MCP servers from a configuration file's text: the `mcpServers`
/// form (Claude Desktop, Cursor, LM Studio's `mcp.json`, Claude Code's
/// `.mcp.json`) or VS Code's `servers` form (also under `mcp`). `${env:VAR}`
/// and `${VAR}` in values are replaced by `env(VAR)`; an unset variable is an
/// error naming it. Names that do not fit Orchard's rules are adjusted, and
/// the adjustment is reported.
pub fn import(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Imported, String> {
    let root: serde_json::Value = serde_json::from_str(&strip_comments(text))
        .map_err(|e| format!("the file is not JSON: {e}"))?;
    let servers = root
        .get("mcpServers")
        .or_else(|| root.get("servers"))
        .or_else(|| root.get("mcp").and_then(|m| m.get("servers")))
        .and_then(|s| s.as_object())
        .ok_or("the file has no \"mcpServers\" or \"servers\" object")?;
    let mut imported = Imported::default();
    for (name, entry) in servers {
        let spec = import_one(name, entry, &env).map_err(|e| format!("server {name:?}: {e}"))?;
        if spec.name != *name {
            imported.notes.push(format!(
                "server {name:?} is named {:?} in Orchard",
                spec.name
            ));
        }
        if imported
            .servers
            .iter()
            .any(|s: &ServerSpec| s.name == spec.name)
        {
            return Err(format!(
                "two servers in the file are both named {:?} in Orchard; rename one",
                spec.name
            ));
        }
        imported.servers.push(spec);
    }
    Ok(imported)
}

/// The servers read from a file, and what was changed on the way in.
#[derive(Debug, Default)]
pub struct Imported {
    pub servers: Vec<ServerSpec>,
    pub notes: Vec<String>,
}

fn import_one(
    name: &str,
    entry: &serde_json::Value,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ServerSpec, String> {
    let string = |key: &str| -> Result<Option<String>, String> {
        match entry.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => expand(s, env).map(Some),
            Some(other) => Err(format!("{key:?} should be a string, not {other}")),
        }
    };
    let map = |key: &str| -> Result<BTreeMap<String, String>, String> {
        let Some(value) = entry.get(key).filter(|v| !v.is_null()) else {
            return Ok(BTreeMap::new());
        };
        let object = value
            .as_object()
            .ok_or_else(|| format!("{key:?} should be an object of strings"))?;
        object
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), expand(s, env)?)),
                other => Ok((k.clone(), other.to_string())),
            })
            .collect()
    };
    let kind = string("type")?;
    let transport = if let Some(command) = string("command")? {
        let args = match entry.get("args") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|a| match a {
                    serde_json::Value::String(s) => expand(s, env),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("\"args\" should be a list of strings".into()),
        };
        Transport::Stdio {
            command,
            args,
            env: map("env")?,
            cwd: string("cwd")?,
        }
    } else if let Some(url) = string("url")?.or(string("serverUrl")?) {
        if kind.as_deref() == Some("sse") {
            return Err(
                "the old HTTP+SSE transport is not supported: use the server's streamable-HTTP URL (often ending in /mcp)"
                    .into(),
            );
        }
        Transport::Http {
            url,
            headers: map("headers")?,
        }
    } else {
        return Err("it has neither a \"command\" nor a \"url\"".into());
    };
    let spec = ServerSpec {
        name: usable_name(name),
        transport,
        enabled: !entry
            .get("disabled")
            .and_then(|d| d.as_bool())
            .unwrap_or(false),
        allow: Vec::new(),
        deny: Vec::new(),
    };
    spec.validate()?;
    Ok(spec)
}

/// `name` changed as little as possible to pass [`check_name`].
pub fn usable_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('_');
    let out: String = out.chars().take(MAX_NAME_LEN).collect();
    let out = out.trim_end_matches('_');
    if out.is_empty() {
        "server".to_string()
    } else {
        out.to_string()
    }
}

/// Replaces `${env:VAR}` and `${VAR}` with the variable's value.
fn expand(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let var = inner.strip_prefix("env:").unwrap_or(inner);
        let plain = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            let found = env(var).ok_or_else(|| {
                format!("it uses ${{{inner}}}, and {var} is not set in the environment")
            })?;
            out.push_str(&found);
        } else {
            // VS Code's ${input:...} and the like: Orchard cannot ask for them.
            return Err(format!(
                "it uses ${{{inner}}}, which Orchard cannot fill in: put the value in the file or in an environment variable"
            ));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// VS Code's settings files may hold `//` and `/* */` comments and trailing
/// commas; removed here outside strings.
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            continue;
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                out.push(c);
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "GITHUB_TOKEN").then(|| "ghp_secret".to_string())
    }

    #[test]
    fn claude_desktop_and_vs_code_files_give_the_same_servers() {
        let claude = r#"{
          "mcpServers": {
            "github": {
              "command": "npx",
              "args": ["-y", "@modelcontextprotocol/server-github"],
              "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${env:GITHUB_TOKEN}"}
            },
            "remote docs": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}},
            "off": {"command": "uvx", "args": ["mcp-server-time"], "disabled": true}
          }
        }"#;
        let vscode = r#"{
          // VS Code keeps comments and trailing commas
          "servers": {
            "github": {
              "type": "stdio",
              "command": "npx",
              "args": ["-y", "@modelcontextprotocol/server-github",],
              "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${env:GITHUB_TOKEN}"},
            },
            "remote docs": {"type": "http", "url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}},
            /* a block comment */
            "off": {"command": "uvx", "args": ["mcp-server-time"], "disabled": true},
          },
        }"#;
        let a = import(claude, env).expect("claude");
        let b = import(vscode, env).expect("vscode");
        assert_eq!(a.servers, b.servers);
        assert_eq!(a.servers.len(), 3);
        let github = &a.servers[0];
        assert_eq!(github.name, "github");
        assert_eq!(
            github
                .transport
                .secrets()
                .get("GITHUB_PERSONAL_ACCESS_TOKEN")
                .map(String::as_str),
            Some("ghp_secret")
        );
        assert_eq!(a.servers[1].name, "remote_docs");
        assert_eq!(
            a.notes,
            ["server \"remote docs\" is named \"remote_docs\" in Orchard"]
        );
        assert!(!a.servers[2].enabled);
        // The secret never reaches a log line.
        assert!(!format!("{:?}", a.servers).contains("ghp_secret"));
    }

    #[test]
    fn a_missing_variable_or_an_unusable_entry_is_an_error_naming_it() {
        let missing = import(
            r#"{"mcpServers": {"x": {"command": "npx", "env": {"K": "${env:NOPE}"}}}}"#,
            env,
        );
        assert_eq!(
            missing.expect_err("unset"),
            "server \"x\": it uses ${env:NOPE}, and NOPE is not set in the environment"
        );
        let input = import(
            r#"{"servers": {"x": {"command": "npx", "env": {"K": "${input:token}"}}}}"#,
            env,
        );
        assert!(input.expect_err("input").contains("cannot fill in"));
        let neither = import(r#"{"mcpServers": {"x": {"args": []}}}"#, env);
        assert!(neither.expect_err("neither").contains("neither"));
        let sse = import(
            r#"{"mcpServers": {"x": {"type": "sse", "url": "http://h/sse"}}}"#,
            env,
        );
        assert!(sse.expect_err("sse").contains("streamable-HTTP"));
        assert!(import("[]", env).expect_err("shape").contains("mcpServers"));
        assert!(import("{", env).expect_err("json").contains("not JSON"));
        let clash = import(
            r#"{"mcpServers": {"a b": {"command": "x"}, "a_b": {"command": "y"}}}"#,
            env,
        );
        assert!(clash.expect_err("clash").contains("both named"));
    }

    #[test]
    fn names_keep_to_the_tool_name_rules() {
        assert!(check_name("time").is_ok());
        assert!(check_name("my-server_2").is_ok());
        for bad in ["", "a__b", "_a", "a_", "a b", "é", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(usable_name("My Server!"), "My_Server");
        assert_eq!(usable_name("a__b"), "a_b");
        assert_eq!(usable_name("___"), "server");
        assert!(check_name(&usable_name(&"long name ".repeat(10))).is_ok());
    }

    #[test]
    fn allow_and_deny_patterns_choose_the_tools() {
        assert!(glob("*", "anything"));
        assert!(glob("get_*", "get_time"));
        assert!(!glob("get_*", "set_time"));
        assert!(glob("*_time", "convert_time"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        let spec = ServerSpec {
            name: "s".into(),
            transport: Transport::Http {
                url: "http://h/mcp".into(),
                headers: BTreeMap::new(),
            },
            enabled: true,
            allow: vec!["get_*".into(), "echo".into()],
            deny: vec!["get_secret*".into()],
        };
        assert!(spec.offers("get_time"));
        assert!(spec.offers("echo"));
        assert!(!spec.offers("get_secret_key"));
        assert!(!spec.offers("delete_all"));
    }

    #[test]
    fn secrets_are_stored_apart_and_put_back() {
        let transport = Transport::Stdio {
            command: "npx".into(),
            args: vec![],
            env: BTreeMap::from([("TOKEN".to_string(), "s3cret".to_string())]),
            cwd: None,
        };
        let bare = transport.without_secrets();
        assert_eq!(bare.secrets().get("TOKEN").map(String::as_str), Some(""));
        assert!(
            !serde_json::to_string(&bare)
                .expect("json")
                .contains("s3cret")
        );
        assert_eq!(bare.with_secrets(transport.secrets().clone()), transport);
    }
}
