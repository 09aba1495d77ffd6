//! Repo ids (`org/name`) and file names from the Hub, checked before either
//! becomes part of a path: nothing may climb out of the cache.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::{HubError, Result};

/// A checked Hugging Face model id: `name` or `org/name`, each part made of
/// ASCII letters, digits, `-`, `_` and `.`, not starting or ending with `.`
/// or `-`, with no `--` or `..` (as the Hub itself requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(text: &str) -> Result<RepoId> {
        let bad = |why: &str| {
            Err(HubError::Invalid(format!(
                "{text:?} is not a Hugging Face repo id ({why}); ids look like mlx-community/Qwen3-4B-4bit"
            )))
        };
        if text.is_empty() || text.len() > 96 {
            return bad("it must have 1 to 96 characters");
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 2 {
            return bad("it has more than one /");
        }
        for part in &parts {
            if part.is_empty() {
                return bad("a part is empty");
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return bad("only letters, digits, -, _ and . are allowed");
            }
            if part.starts_with(['.', '-']) || part.ends_with(['.', '-']) {
                return bad("a part starts or ends with . or -");
            }
            if part.contains("..") || part.contains("--") {
                return bad("it contains .. or --");
            }
        }
        Ok(RepoId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder the cache keeps it in: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }

    /// The repo id of a cache folder name, if it is a model folder.
    pub fn from_cache_folder(folder: &str) -> Option<RepoId> {
        let rest = folder.strip_prefix("models--")?;
        RepoId::parse(&rest.replacen("--", "/", 1)).ok()
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` (a path inside a repo, as the Hub lists it) joined under `root`,
/// refused when it is absolute or climbs out with `..`.
pub fn join_repo_file(root: &Path, name: &str) -> Result<PathBuf> {
    let relative = Path::new(name);
    let safe = !name.is_empty()
        && !name.contains('\\')
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !safe {
        return Err(HubError::Invalid(format!(
            "the file name {name:?} would leave the model's folder; refusing it"
        )));
    }
    Ok(root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_ids_pass_and_map_to_cache_folders() {
        for id in ["mlx-community/Qwen3-4B-4bit", "gpt2", "org/model_v1.5"] {
            let repo = RepoId::parse(id).expect(id);
            assert_eq!(repo.as_str(), id);
            assert_eq!(RepoId::from_cache_folder(&repo.cache_folder()), Some(repo));
        }
        assert_eq!(
            RepoId::parse("a/b").expect("id").cache_folder(),
            "models--a--b"
        );
    }

    #[test]
    fn traversal_and_odd_ids_are_refused() {
        for id in [
            "",
            "../etc",
            "a/../b",
            "/abs/path",
            "a/b/c",
            "a/",
            "..",
            "a/..",
            "a%2F..%2Fb",
            "a\\b",
            ".hidden/x",
            "org/name-",
            "a--b/c",
            "org/na me",
            "C:/x",
        ] {
            let err = RepoId::parse(id).expect_err(id);
            assert!(
                err.to_string().contains("not a Hugging Face repo id"),
                "{err}"
            );
        }
    }

    #[test]
    fn repo_file_names_cannot_escape() {
        let root = Path::new("/cache/snap");
        assert_eq!(
            join_repo_file(root, "sub/model.safetensors").expect("ok"),
            Path::new("/cache/snap/sub/model.safetensors")
        );
        for name in ["../x", "/etc/passwd", "a/../../x", "", "a\\..\\x"] {
            assert!(join_repo_file(root, name).is_err(), "{name}");
        }
    }
}
