//! Finding the programs MCP servers are started with (`npx`, `uvx`, `node`,
//! `python3`). An app started from the Dock or the menubar does not inherit
//! the shell's `PATH`, so the search covers what a login shell would set up
//! and the places installers put these tools.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The folders searched, in order: this process's `PATH`, the login shell's
/// (asked once), then the usual install places.
pub fn search_path() -> &'static [PathBuf] {
    static PATH: OnceLock<Vec<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut add = |dir: PathBuf| {
            if !dir.as_os_str().is_empty() && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        };
        if let Some(path) = std::env::var_os("PATH") {
            std::env::split_paths(&path).for_each(&mut add);
        }
        if let Some(path) = login_shell_path() {
            std::env::split_paths(&path).for_each(&mut add);
        }
        let home = dirs::home_dir().unwrap_or_default();
        for dir in ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin"] {
            add(PathBuf::from(dir));
        }
        for dir in [
            ".local/bin",
            ".cargo/bin",
            ".volta/bin",
            ".bun/bin",
            ".deno/bin",
        ] {
            add(home.join(dir));
        }
        dirs
    })
}

/// The `PATH` an interactive login shell sets up, when there is one to ask
/// (only where this process's own `PATH` looks like a GUI app's minimal one).
fn login_shell_path() -> Option<std::ffi::OsString> {
    if !cfg!(target_os = "macos") {
        return None;
    }
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/zsh".into());
    let mut child = std::process::Command::new(shell)
        .args(["-l", "-c", "printf %s \"$PATH\""])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // A shell profile that waits for input must not hang Orchard.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (!text.trim().is_empty()).then(|| text.trim().into())
}

/// The program to start for `command`: a path as given (when it exists), or
/// the first match on [`search_path`]. The error names what to install.
pub fn resolve(command: &str) -> Result<PathBuf, String> {
    resolve_in(command, search_path())
}

fn resolve_in(command: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let given = Path::new(command);
    if given.components().count() > 1 {
        return if given.is_file() {
            Ok(given.to_path_buf())
        } else {
            Err(format!("{command} does not exist"))
        };
    }
    if let Some(found) = dirs
        .iter()
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
    {
        return Ok(found);
    }
    let hint = match command {
        "npx" | "node" | "npm" => " Install Node.js (https://nodejs.org, or `brew install node`).",
        "uvx" | "uv" => " Install uv (https://docs.astral.sh/uv/, or `brew install uv`).",
        "python3" | "python" => {
            " Install Python 3 (https://www.python.org, or `brew install python`)."
        }
        "docker" => " Install Docker Desktop and start it once.",
        _ => "",
    };
    Err(format!(
        "`{command}` was not found on PATH or in the usual places ({}).{hint}",
        dirs.iter()
            .take(6)
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_search_path_and_a_missing_one_says_what_to_install() {
        let dir = tempfile::tempdir().expect("tmp");
        let program = dir.path().join("npx");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        let found = resolve_in("npx", &dirs);
        // Not executable yet: not found.
        assert!(found.is_err());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(resolve_in("npx", &dirs), Ok(program.clone()));
        assert_eq!(resolve_in(&program.display().to_string(), &[]), Ok(program));
        let missing = resolve_in("uvx", &dirs).expect_err("missing");
        assert!(
            missing.contains("`uvx` was not found") && missing.contains("Install uv"),
            "{missing}"
        );
        assert!(resolve_in("/no/such/program", &dirs).is_err());
    }
}
