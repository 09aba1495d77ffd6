//! Secrets Orchard keeps for the user (the Hugging Face token): the macOS
//! Keychain through `keyring`; elsewhere a file only the user can read
//! (0600) in the data directory. Linux's kernel keyring, the one `keyring`
//! can reach without a desktop session bus, forgets entries at logout, so a
//! file is the dependable store there.

use std::path::PathBuf;

/// The keychain service name.
const SERVICE: &str = "Orchard";

/// Where secrets go.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The fallback folder (`<data dir>/secrets`).
    dir: PathBuf,
}

impl Secrets {
    pub fn new(data_dir: PathBuf) -> Self {
        Secrets {
            dir: data_dir.join("secrets"),
        }
    }

    /// The folder of the file store (where there is no Keychain).
    pub fn folder(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stores `value` under `name`.
    pub fn set(&self, name: &str, value: &str) -> Result<(), String> {
        check_name(name)?;
        #[cfg(target_os = "macos")]
        {
            keyring::Entry::new(SERVICE, name)
                .and_then(|entry| entry.set_password(value))
                .map_err(|e| format!("cannot store {name} in the Keychain: {e}"))
        }
        #[cfg(not(target_os = "macos"))]
        {
            let _ = SERVICE;
            write_private(&self.dir.join(name), value)
        }
    }

    /// The value stored under `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        check_name(name).ok()?;
        #[cfg(target_os = "macos")]
        {
            keyring::Entry::new(SERVICE, name).ok()?.get_password().ok()
        }
        #[cfg(not(target_os = "macos"))]
        {
            let text = std::fs::read_to_string(self.dir.join(name)).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_string())
        }
    }

    /// Forgets `name`; true when something was stored.
    pub fn delete(&self, name: &str) -> Result<bool, String> {
        check_name(name)?;
        #[cfg(target_os = "macos")]
        {
            match keyring::Entry::new(SERVICE, name).and_then(|e| e.delete_credential()) {
                Ok(()) => Ok(true),
                Err(keyring::Error::NoEntry) => Ok(false),
                Err(e) => Err(format!("cannot delete {name} from the Keychain: {e}")),
            }
        }
        #[cfg(not(target_os = "macos"))]
        {
            match std::fs::remove_file(self.dir.join(name)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("cannot delete {name}: {e}")),
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(format!("{name:?} is not a secret name"))
    }
}

/// Writes `value` to `path`, readable and writable by the owner only, created
/// that way (never briefly readable by others).
#[cfg(not(target_os = "macos"))]
fn write_private(path: &std::path::Path, value: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().ok_or("no folder for secrets")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // A file made earlier with wider rights is narrowed first.
        if let Ok(meta) = std::fs::metadata(path) {
            let mut perms = meta.permissions();
            perms.set_mode(0o600);
            let _ = std::fs::set_permissions(path, perms);
        }
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(value.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The Hugging Face token: `HF_TOKEN`, else the one stored with
/// `orchard models login`, else huggingface_hub's token file.
pub fn hf_token(secrets: Option<&Secrets>) -> Option<String> {
    if let Some(token) = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Some(token.trim().to_string());
    }
    secrets
        .and_then(|s| s.get(HF_TOKEN))
        .or_else(orchard_hub::client::read_token)
}

/// The name the Hugging Face token is stored under.
pub const HF_TOKEN: &str = "huggingface-token";

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_is_private_and_can_be_replaced_and_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let secrets = Secrets::new(dir.path().to_path_buf());
        assert_eq!(secrets.get(HF_TOKEN), None);
        secrets.set(HF_TOKEN, "hf_one").expect("set");
        secrets.set(HF_TOKEN, "hf_two").expect("replace");
        assert_eq!(secrets.get(HF_TOKEN).as_deref(), Some("hf_two"));
        let mode = std::fs::metadata(dir.path().join("secrets").join(HF_TOKEN))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(secrets.delete(HF_TOKEN).expect("delete"));
        assert!(!secrets.delete(HF_TOKEN).expect("nothing left"));
        assert!(secrets.set("../escape", "x").is_err());
    }
}
