//! Where Orchard keeps its files on disk.

use std::path::PathBuf;

/// Overrides the data directory (tests, portable installs).
pub const HOME_ENV: &str = "ORCHARD_HOME";

/// Set by the workspace's `.cargo/config.toml` to the folder `make setup` fills;
/// only a development checkout has it.
pub const DEPS_ENV: &str = "ORCHARD_DEPS_DIR";

/// The data directory: `$ORCHARD_HOME`, else `~/Library/Application Support/Orchard`
/// on macOS and `$XDG_DATA_HOME/orchard` (default `~/.local/share/orchard`) on Linux.
/// `None` only when no home directory can be found and `ORCHARD_HOME` is unset.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home));
    }
    let name = if cfg!(target_os = "macos") {
        "Orchard"
    } else {
        "orchard"
    };
    dirs::data_dir().map(|dir| dir.join(name))
}

/// The development fixtures folder (`.deps/models`), when running from a checkout.
pub fn fixture_models_dir() -> Option<PathBuf> {
    std::env::var_os(DEPS_ENV)
        .filter(|v| !v.is_empty())
        .map(|deps| PathBuf::from(deps).join("models"))
}

/// The SmolLM2-135M-Instruct fixtures that `make setup` converts, by variant.
pub const FIXTURE_MODELS: [&str; 2] = [
    "SmolLM2-135M-Instruct-4bit",
    "SmolLM2-135M-Instruct-float16",
];

/// Opens (creating if needed) the state database, `orchard.db` in the data directory.
pub fn open_store() -> Result<orchard_store::Store, String> {
    let dir = data_dir().ok_or(
        "cannot find a home directory for Orchard's data; set ORCHARD_HOME to a writable folder",
    )?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("orchard.db");
    orchard_store::Store::open(&path).map_err(|e| format!("{}: {e}", path.display()))
}
