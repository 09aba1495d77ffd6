//! Checking a downloaded file against the etag the Hub gave for it. The Hub
//! names every file by a hash of its content: the SHA-256 for files stored
//! with Git LFS (`X-Linked-Etag`), and git's blob hash (SHA-1 of
//! `blob <len>\0` and the content, the `ETag`) for the others. Either way the
//! bytes on disk can be checked before they become the blob.

use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::{HubError, Result};

/// The hash an etag promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// An LFS file: the SHA-256 of the content.
    Sha256,
    /// A file kept in git itself: the SHA-1 of its git blob.
    GitSha1,
}

impl Expected {
    /// What `etag` is the hash of; None for an etag of another shape, which
    /// cannot be checked.
    pub fn of(etag: &str) -> Option<Expected> {
        if !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match etag.len() {
            64 => Some(Expected::Sha256),
            40 => Some(Expected::GitSha1),
            _ => None,
        }
    }

    /// The hash's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Expected::Sha256 => "SHA-256",
            Expected::GitSha1 => "git SHA-1",
        }
    }
}

/// Git's hash of a blob with this content: what `git hash-object` prints,
/// and the Hub's ETag for a file not stored with LFS.
pub fn git_blob_sha1(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

/// Whether the file at `path` has the content `etag` promises (true when
/// the etag is not a hash this crate knows).
pub async fn matches_etag(path: &Path, etag: &str) -> Result<bool> {
    let Some(kind) = Expected::of(etag) else {
        return Ok(true);
    };
    let expected = etag.to_ascii_lowercase();
    let path = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || hash_file(&path, kind))
        .await
        .map_err(|e| HubError::Network(format!("hashing failed: {e}")))??;
    Ok(actual == expected)
}

fn hash_file(path: &Path, kind: Expected) -> Result<String> {
    let io = |e: std::io::Error| HubError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    match kind {
        Expected::Sha256 => {
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher).map_err(io)?;
            Ok(hex(&hasher.finalize()))
        }
        Expected::GitSha1 => {
            // The header holds the length, so it is read from the open file.
            let len = file.metadata().map_err(io)?.len();
            let mut hasher = Sha1::new();
            hasher.update(format!("blob {len}\0").as_bytes());
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buffer).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            Ok(hex(&hasher.finalize()))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_hashes_are_gits() {
        // `git hash-object /dev/null` and `printf 'hello\n' | git hash-object --stdin`.
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn etags_say_which_hash_they_are() {
        assert_eq!(Expected::of(&"a".repeat(64)), Some(Expected::Sha256));
        assert_eq!(Expected::of(&"B".repeat(40)), Some(Expected::GitSha1));
        assert_eq!(Expected::of("0123abcd"), None);
        assert_eq!(Expected::of(&"g".repeat(40)), None);
    }

    #[tokio::test]
    async fn files_are_checked_with_the_hash_their_etag_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").expect("write");
        let sha1 = git_blob_sha1(b"hello\n");
        assert!(matches_etag(&path, &sha1).await.expect("hash"));
        assert!(
            matches_etag(&path, &sha1.to_ascii_uppercase())
                .await
                .expect("hash")
        );
        assert!(
            !matches_etag(&path, &git_blob_sha1(b"hello"))
                .await
                .expect("hash")
        );
        let sha256 = hex(&Sha256::digest(b"hello\n"));
        assert!(matches_etag(&path, &sha256).await.expect("hash"));
        assert!(!matches_etag(&path, &"0".repeat(64)).await.expect("hash"));
        assert!(
            matches_etag(&path, "opaque-etag")
                .await
                .expect("unknown shape")
        );
    }
}
