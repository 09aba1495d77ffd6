//! The names tools (and prompts) get on the aggregated port: `server__tool`,
//! within OpenAI's rules for function names (at most 64 characters, letters,
//! digits, `_` and `-`), so they pass through any client to any model.

/// Between a server's name and its tool's.
pub const SEPARATOR: &str = "__";
/// The longest name OpenAI accepts for a function.
pub const MAX_LEN: usize = 64;

/// The aggregated name of `server`'s `tool`. A tool name that had to change
/// (characters outside the rules, or too long) ends in a short hash of the
/// original, so two tools that clean up alike still differ.
pub fn exposed(server: &str, tool: &str) -> String {
    let clean: String = tool
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    let plain = format!("{server}{SEPARATOR}{clean}");
    if clean == tool && plain.len() <= MAX_LEN {
        return plain;
    }
    let hash = format!("{:06x}", fnv1a(tool) & 0xff_ffff);
    let room = MAX_LEN.saturating_sub(server.len() + SEPARATOR.len() + 1 + hash.len());
    let kept: String = clean.chars().take(room).collect();
    format!("{server}{SEPARATOR}{kept}-{hash}")
}

/// Whether `name` keeps to the rules.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LEN && name.chars().all(allowed)
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Gives each (server, name) pair a distinct exposed name, in order. A name
/// already taken gets `-2`, `-3`... and the clash is described in
/// `collisions`, so nothing disappears without a word.
#[derive(Debug, Default)]
pub struct Namer {
    taken: std::collections::HashMap<String, (String, String)>,
    pub collisions: Vec<String>,
}

impl Namer {
    pub fn name(&mut self, server: &str, original: &str) -> String {
        let wanted = exposed(server, original);
        let mut name = wanted.clone();
        let mut n = 1;
        while let Some((first_server, first)) = self.taken.get(&name) {
            if n == 1 {
                self.collisions.push(format!(
                    "{server}'s {original:?} and {first_server}'s {first:?} both map to {wanted:?}"
                ));
            }
            n += 1;
            let suffix = format!("-{n}");
            let base: String = wanted.chars().take(MAX_LEN - suffix.len()).collect();
            name = format!("{base}{suffix}");
        }
        self.taken
            .insert(name.clone(), (server.to_string(), original.to_string()));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_keep_to_openai_rules() {
        assert_eq!(
            exposed("time", "get_current_time"),
            "time__get_current_time"
        );
        let dotted = exposed("fs", "read.file");
        assert!(
            dotted.starts_with("fs__read_file-") && is_valid(&dotted),
            "{dotted}"
        );
        assert_ne!(dotted, exposed("fs", "read_file"));
        let long = exposed("server", &"x".repeat(100));
        assert!(long.len() <= MAX_LEN && is_valid(&long), "{long}");
        assert_ne!(long, exposed("server", &"x".repeat(101)));
        assert!(is_valid(&exposed("s", "ünïcode tool")));
    }

    #[test]
    fn a_clash_gets_a_numbered_name_and_is_reported() {
        let mut namer = Namer::default();
        assert_eq!(namer.name("a", "echo"), "a__echo");
        assert_eq!(namer.name("a", "echo"), "a__echo-2");
        assert_eq!(namer.name("a", "echo"), "a__echo-3");
        assert_eq!(namer.name("b", "echo"), "b__echo");
        assert_eq!(namer.collisions.len(), 2, "{:?}", namer.collisions);
        assert!(namer.collisions[0].contains("\"echo\""));
    }
}
