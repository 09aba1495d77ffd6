//! `orchard mcp`: the MCP servers Orchard runs for its chat and offers,
//! aggregated, on `/mcp` and over stdio.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Subcommand;
use orchard_core::mcp::{Aggregator, McpServers};
use orchard_mcp::{Hub, HubOptions, ServerSpec, Transport};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the servers with their state (each is started and pinged).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show the last known state without starting or pinging anything.
        #[arg(long)]
        no_probe: bool,
    },
    /// Add a server: a command (`orchard mcp add time -- uvx mcp-server-time`)
    /// or a streamable-HTTP URL (`--url`).
    Add {
        /// Letters, digits, '-' and '_'; it prefixes the server's tools.
        name: String,
        /// The server's streamable-HTTP endpoint, instead of a command.
        #[arg(long, conflicts_with = "command")]
        url: Option<String>,
        /// An HTTP header for --url, as NAME:VALUE (repeatable). Kept as a secret.
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
        /// An environment variable for the command, as NAME=VALUE (repeatable). Kept as a secret.
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// The folder the command runs in.
        #[arg(long)]
        cwd: Option<String>,
        /// Only offer tools matching this pattern (`*` for any text; repeatable).
        #[arg(long)]
        allow: Vec<String>,
        /// Never offer tools matching this pattern (repeatable).
        #[arg(long)]
        deny: Vec<String>,
        /// Add it turned off.
        #[arg(long)]
        disabled: bool,
        /// Replace a server of the same name.
        #[arg(long)]
        replace: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove a server.
    Remove { name: String },
    /// Turn a server on.
    Enable { name: String },
    /// Turn a server off (it stays configured).
    Disable { name: String },
    /// Add the servers of a Claude Desktop, Cursor, LM Studio, Claude Code
    /// (`mcpServers`) or VS Code (`servers`) file.
    Import {
        file: std::path::PathBuf,
        /// Replace servers of the same name instead of refusing.
        #[arg(long)]
        replace: bool,
    },
    /// List every tool as clients of /mcp see it (`server__tool`).
    Tools {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool: `orchard mcp call orchard-tools calculate '{"expression": "2+2"}'`.
    Call {
        server: String,
        tool: String,
        /// The arguments as a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Measure what Orchard's MCP port adds to a tool call: tools/call on a
    /// loopback echo server, directly and through /mcp, at 1, 8 and 32
    /// concurrent clients (all in this process).
    Bench {
        /// Seconds per path and concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        clients: Vec<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the aggregated servers as one MCP server.
    Serve {
        /// On stdin and stdout (for clients that start Orchard themselves,
        /// like Claude Desktop). Logs go to stderr.
        #[arg(long, required = true)]
        stdio: bool,
        /// List at most this many tools (0: all); the rest are found through
        /// the orchard__search_tools tool.
        #[arg(long, default_value_t = 0)]
        max_tools: usize,
    },
}

pub fn run(command: McpCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orchard mcp: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(mcp(command));
    // Children left running would keep the process (and the terminal) busy.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("orchard mcp: {message}");
            ExitCode::FAILURE
        }
    }
}

fn servers() -> Result<McpServers, String> {
    let store = orchard_core::paths::open_store()?;
    let secrets = orchard_core::paths::data_dir().map(orchard_core::secrets::Secrets::new);
    Ok(McpServers::new(store, secrets))
}

async fn mcp(command: McpCommand) -> Result<ExitCode, String> {
    match command {
        McpCommand::Bench {
            seconds,
            clients,
            json,
        } => {
            if clients.is_empty() || clients.contains(&0) || !(0.1..=600.0).contains(&seconds) {
                return Err("--clients takes counts of 1 or more, --seconds 0.1 to 600".into());
            }
            let levels = crate::mcp_bench::run(&clients, seconds).await?;
            if json {
                println!("{}", to_json(&levels)?);
            } else {
                print!("{}", crate::mcp_bench::table(&levels));
            }
            Ok(ExitCode::SUCCESS)
        }
        command => configured(command, servers()?).await,
    }
}

async fn configured(command: McpCommand, servers: McpServers) -> Result<ExitCode, String> {
    match command {
        McpCommand::Bench { .. } => Err("the benchmark uses no configured server".into()),
        McpCommand::List { json, no_probe } => {
            let hub = servers.hub(HubOptions::default());
            let status = hub.status(!no_probe).await;
            hub.shutdown().await;
            if json {
                println!("{}", to_json(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<9} {:<10} {:>5}  target",
                "name", "state", "breaker", "tools"
            );
            for server in &status {
                let tools = server
                    .tools
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<20} {:<9} {:<10} {:>5}  {}",
                    server.name, server.state, server.breaker, tools, server.target
                );
                if let Some(error) = server
                    .last_error
                    .as_ref()
                    .filter(|_| server.state == "down")
                {
                    println!("{:<20} {error}", "");
                }
            }
            let down = status.iter().filter(|s| s.state == "down").count();
            Ok(if down > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        McpCommand::Add {
            name,
            url,
            headers,
            env,
            cwd,
            allow,
            deny,
            disabled,
            replace,
            command,
        } => {
            let transport = match (url, command.split_first()) {
                (Some(url), None) => {
                    if !env.is_empty() || cwd.is_some() {
                        return Err("--env and --cwd are for a command, not a --url".into());
                    }
                    Transport::Http {
                        url,
                        headers: pairs(&headers, ':', "--header")?,
                    }
                }
                (None, Some((program, args))) => {
                    if !headers.is_empty() {
                        return Err("--header is for a --url, not a command".into());
                    }
                    Transport::Stdio {
                        command: program.clone(),
                        args: args.to_vec(),
                        env: pairs(&env, '=', "--env")?,
                        cwd,
                    }
                }
                _ => {
                    return Err(
                        "give the server's command after `--` (orchard mcp add time -- uvx mcp-server-time) or its --url"
                            .into(),
                    );
                }
            };
            let spec = ServerSpec {
                name,
                transport,
                enabled: !disabled,
                allow,
                deny,
            };
            servers.add(&spec, replace)?;
            println!(
                "Added MCP server {}: {}",
                spec.name,
                spec.transport.summary()
            );
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Remove { name } => {
            if servers.remove(&name)? {
                println!("Removed MCP server {name}.");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(format!(
                    "no MCP server named {name:?} (`orchard mcp list` shows them)"
                ))
            }
        }
        McpCommand::Enable { name } | McpCommand::Disable { name }
            if name == orchard_mcp::builtin::NAME =>
        {
            Err(format!("{name} is built in and always on"))
        }
        McpCommand::Enable { name } => {
            servers.set_enabled(&name, true)?;
            println!("Enabled MCP server {name}.");
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Disable { name } => {
            servers.set_enabled(&name, false)?;
            println!("Disabled MCP server {name}.");
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Import { file, replace } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let imported = servers
                .import(&text, replace)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            for note in &imported.notes {
                println!("Note: {note}");
            }
            for spec in &imported.servers {
                let state = if spec.enabled { "" } else { " (disabled)" };
                println!(
                    "Imported {}{state}: {}",
                    spec.name,
                    spec.transport.summary()
                );
            }
            println!(
                "{} servers imported. `orchard mcp list` checks them.",
                imported.servers.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Tools { json } => {
            let hub = servers.hub(HubOptions::default());
            let catalog = hub.catalog().await;
            hub.shutdown().await;
            if json {
                println!("{}", to_json(&catalog.tools)?);
            } else {
                for tool in &catalog.tools {
                    let description = tool.description.as_deref().unwrap_or_default();
                    let first = description.lines().next().unwrap_or_default();
                    println!("{:<40} {first}", tool.name);
                }
            }
            for collision in &catalog.collisions {
                eprintln!("Name clash: {collision}");
            }
            for (server, error) in &catalog.unavailable {
                eprintln!("{server} is unavailable: {error}");
            }
            Ok(if catalog.unavailable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        McpCommand::Call {
            server,
            tool,
            arguments,
        } => {
            let arguments: serde_json::Value = serde_json::from_str(&arguments)
                .map_err(|e| format!("the arguments are not JSON: {e}"))?;
            let serde_json::Value::Object(arguments) = arguments else {
                return Err(
                    "the arguments must be a JSON object, like '{\"expression\": \"2+2\"}'".into(),
                );
            };
            let hub = servers.hub(HubOptions::default());
            let result = hub
                .call_server_tool(&server, &tool, Some(arguments), CancellationToken::new())
                .await;
            hub.shutdown().await;
            let result = result.map_err(|e| e.to_string())?;
            for block in &result.content {
                match block.as_text() {
                    Some(text) => println!("{}", text.text),
                    None => println!("{}", to_json(block)?),
                }
            }
            if let Some(structured) = &result.structured_content
                && result.content.is_empty()
            {
                println!("{}", to_json(structured)?);
            }
            Ok(if result.is_error == Some(true) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        McpCommand::Serve {
            stdio: _,
            max_tools,
        } => {
            let hub: Hub = servers.hub(HubOptions::default());
            let result =
                orchard_mcp::aggregator::serve_stdio(Aggregator::new(hub.clone(), max_tools)).await;
            hub.shutdown().await;
            result.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// `NAME=VALUE` (or `NAME:VALUE`) arguments as a map.
fn pairs(
    items: &[String],
    separator: char,
    flag: &str,
) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|item| {
            item.split_once(separator)
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{flag} {item:?} should be NAME{separator}VALUE"))
        })
        .collect()
}

fn to_json(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(value).map_err(|e| e.to_string())
}
