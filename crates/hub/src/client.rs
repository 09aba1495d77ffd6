//! The Hub's HTTP API: model search and model details. `HF_ENDPOINT` points
//! it elsewhere (a mirror, or the tests' local Hub). Answers are kept for a
//! short while, so a search box that asks on every keystroke does not hammer
//! the Hub.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::repo::{RepoId, join_repo_file};
use crate::{HubError, Result};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// How long an answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// The order of search results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Downloads,
    Likes,
    LastModified,
    Trending,
}

impl Sort {
    fn api_name(self) -> &'static str {
        match self {
            Sort::Downloads => "downloads",
            Sort::Likes => "likes",
            Sort::LastModified => "lastModified",
            Sort::Trending => "trendingScore",
        }
    }
}

/// A search. `author` defaults to `mlx-community`; None searches every author.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub text: Option<String>,
    pub author: Option<String>,
    pub sort: Sort,
    /// Hub filters: a library (`mlx`) or any tag.
    pub filters: Vec<String>,
    pub pipeline_tag: Option<String>,
    /// Results per page (1 to 100).
    pub limit: u32,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: None,
            author: Some("mlx-community".into()),
            sort: Sort::Downloads,
            filters: Vec::new(),
            pipeline_tag: None,
            limit: 20,
        }
    }
}

/// The fields a search asks the Hub to list for each model (`expand[]`).
/// Asking for any replaces the default set, so the defaults are named too.
pub const SEARCH_EXPAND: [&str; 10] = [
    "downloads",
    "likes",
    "lastModified",
    "tags",
    "pipeline_tag",
    "library_name",
    "gated",
    "usedStorage",
    "safetensors",
    "config",
];

/// One search result, as the Hub lists models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub id: String,
    #[serde(default)]
    pub downloads: u64,
    #[serde(default)]
    pub likes: u64,
    #[serde(default, rename = "lastModified")]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pipeline_tag: Option<String>,
    #[serde(default)]
    pub library_name: Option<String>,
    /// `false`, or the kind of gate (`"auto"`, `"manual"`).
    #[serde(default)]
    pub gated: Value,
    /// Bytes of the repo's files.
    #[serde(default, rename = "usedStorage")]
    pub used_storage: Option<u64>,
    /// `{"total": parameters, ...}` for safetensors repos.
    #[serde(default)]
    pub safetensors: Option<Value>,
    /// A digest of `config.json`: `model_type`, and the tokenizer config
    /// with its chat template.
    #[serde(default)]
    pub config: Option<Value>,
}

impl ModelSummary {
    /// Whether the Hub wants a token for the files.
    pub fn is_gated(&self) -> bool {
        !(self.gated.is_null() || self.gated.as_bool() == Some(false))
    }

    /// The parameter count the Hub read from the safetensors headers.
    pub fn parameters(&self) -> Option<u64> {
        self.safetensors.as_ref()?.get("total")?.as_u64()
    }
}

/// A page of results and where the next one is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    pub models: Vec<ModelSummary>,
    /// Pass to [`HubClient::search_next`] for the following page.
    pub next: Option<String>,
}

/// A file of a model repo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoFile {
    pub name: String,
    pub size: Option<u64>,
    /// For files stored with Git LFS: the SHA-256 of their content.
    pub sha256: Option<String>,
}

/// A model's details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub id: String,
    /// The commit the details describe.
    pub sha: Option<String>,
    pub files: Vec<RepoFile>,
    /// `usedStorage`, else the sum of the file sizes.
    pub total_size: u64,
    pub tags: Vec<String>,
    pub downloads: u64,
    pub likes: u64,
    pub last_modified: Option<String>,
    pub license: Option<String>,
    pub gated: bool,
    pub pipeline_tag: Option<String>,
}

/// A cached answer: when it was fetched, its body, its next-page link.
#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    body: String,
    next: Option<String>,
}

/// A client of one Hub endpoint. Its `Debug` output never shows the token.
pub struct HubClient {
    endpoint: String,
    http: reqwest::Client,
    /// For HEAD requests, whose first answer carries the file's metadata.
    no_redirect: reqwest::Client,
    token: Option<String>,
    /// No network calls at all (`HF_HUB_OFFLINE`).
    offline: bool,
    /// Answers by URL, reused for [`CACHE_TTL`].
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that logs and panics never print the token.
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// `HF_ENDPOINT`, else the public Hub; `token` for gated and private repos.
    pub fn from_env(token: Option<String>) -> Result<HubClient> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let mut client = HubClient::new(&endpoint, token)?;
        client.offline = offline_from_env();
        Ok(client)
    }

    /// Refuses every network call, as `HF_HUB_OFFLINE=1` asks.
    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    pub fn new(endpoint: &str, token: Option<String>) -> Result<HubClient> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(HubError::Invalid(format!(
                "the Hub endpoint {endpoint:?} must start with https:// or http://"
            )));
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("orchard/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                // No overall timeout: a large file takes as long as it takes;
                // a stalled connection is caught by the read timeout.
                .read_timeout(Duration::from_secs(60))
        };
        let http = builder()
            .build()
            .map_err(|e| HubError::Network(format!("cannot set up HTTP: {e}")))?;
        let no_redirect = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HubError::Network(format!("cannot set up HTTP: {e}")))?;
        Ok(HubClient {
            endpoint,
            http,
            no_redirect,
            token,
            offline: false,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The first page of a search.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        if !(1..=100).contains(&query.limit) {
            return Err(HubError::Invalid("limit must be between 1 and 100".into()));
        }
        let mut params: Vec<(&str, String)> = vec![
            ("sort", query.sort.api_name().into()),
            ("direction", "-1".into()),
            ("limit", query.limit.to_string()),
        ];
        if let Some(text) = query.text.as_ref().filter(|t| !t.trim().is_empty()) {
            params.push(("search", text.trim().to_string()));
        }
        if let Some(author) = &query.author {
            params.push(("author", author.clone()));
        }
        for filter in &query.filters {
            params.push(("filter", filter.clone()));
        }
        if let Some(tag) = &query.pipeline_tag {
            params.push(("pipeline_tag", tag.clone()));
        }
        for field in SEARCH_EXPAND {
            params.push(("expand[]", field.into()));
        }
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/models", self.endpoint), &params)
                .map_err(|e| HubError::Invalid(format!("bad search: {e}")))?;
        self.search_url(url.as_str()).await
    }

    /// The page after one returned by [`HubClient::search`].
    pub async fn search_next(&self, next: &str) -> Result<SearchPage> {
        if !next.starts_with(&self.endpoint) {
            return Err(HubError::Invalid(
                "that page link is not from this Hub".into(),
            ));
        }
        self.search_url(next).await
    }

    async fn search_url(&self, url: &str) -> Result<SearchPage> {
        let (body, next) = self.get_cached(url).await?;
        let models: Vec<ModelSummary> = parse_json(&body, "search results")?;
        Ok(SearchPage { models, next })
    }

    /// A model's details at `revision` (default `main`).
    pub async fn model_info(&self, repo: &RepoId, revision: Option<&str>) -> Result<ModelInfo> {
        let revision = revision.unwrap_or("main");
        check_revision(revision)?;
        let url = format!(
            "{}/api/models/{repo}/revision/{revision}?blobs=true",
            self.endpoint
        );
        let (body, _) = self.get_cached(&url).await?;
        let raw: Value = parse_json(&body, "model details")?;
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string);
        let number = |key: &str| raw.get(key).and_then(Value::as_u64).unwrap_or(0);
        let mut files = Vec::new();
        for sibling in raw
            .get("siblings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = sibling.get("rfilename").and_then(Value::as_str) else {
                return Err(HubError::Network(
                    "the Hub listed a file without a name".into(),
                ));
            };
            // A name that would climb out of the snapshot is refused here, before any download.
            join_repo_file(std::path::Path::new("snapshot"), name)?;
            let lfs = sibling.get("lfs");
            files.push(RepoFile {
                name: name.to_string(),
                size: sibling
                    .get("size")
                    .and_then(Value::as_u64)
                    .or_else(|| lfs.and_then(|l| l.get("size")).and_then(Value::as_u64)),
                sha256: lfs
                    .and_then(|l| l.get("sha256"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        let summed: u64 = files.iter().filter_map(|f| f.size).sum();
        Ok(ModelInfo {
            id: text("id").unwrap_or_else(|| repo.to_string()),
            sha: text("sha"),
            total_size: raw
                .get("usedStorage")
                .and_then(Value::as_u64)
                .unwrap_or(summed),
            files,
            tags: raw
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            downloads: number("downloads"),
            likes: number("likes"),
            last_modified: text("lastModified"),
            license: raw
                .get("cardData")
                .and_then(|c| c.get("license"))
                .and_then(Value::as_str)
                .map(str::to_string),
            gated: raw
                .get("gated")
                .is_some_and(|g| g.as_bool() != Some(false) && !g.is_null()),
            pipeline_tag: text("pipeline_tag"),
        })
    }

    /// The small files capability detection reads, fetched from the Hub
    /// (only those `info` lists), with the file list and weight sizes from `info`.
    pub async fn model_files(
        &self,
        repo: &RepoId,
        info: &ModelInfo,
    ) -> Result<crate::capabilities::ModelFiles> {
        let revision = info.sha.as_deref();
        let listed = |name: &str| info.files.iter().any(|f| f.name == name);
        let fetch_json = |name: &'static str| async move {
            if !listed(name) {
                return Ok(None);
            }
            let text = self.file_text(repo, revision, name).await?;
            parse_json::<Value>(&text, name).map(Some)
        };
        let config = fetch_json("config.json").await?.ok_or_else(|| {
            HubError::NotFound(format!(
                "{repo} has no config.json: it is not a model Orchard can read"
            ))
        })?;
        let tokenizer_config = fetch_json("tokenizer_config.json").await?;
        let mut optional_text = Vec::new();
        for name in ["chat_template.jinja", "README.md"] {
            optional_text.push(if listed(name) {
                Some(self.file_text(repo, revision, name).await?)
            } else {
                None
            });
        }
        let readme = optional_text.pop().flatten();
        let chat_template = optional_text.pop().flatten();
        Ok(crate::capabilities::ModelFiles {
            config,
            tokenizer_config,
            chat_template,
            readme,
            files: info.files.iter().map(|f| f.name.clone()).collect(),
            weight_bytes: info
                .files
                .iter()
                .filter(|f| crate::capabilities::is_weight_file(&f.name))
                .filter_map(|f| f.size)
                .sum(),
            ..Default::default()
        })
    }

    /// A small text file of the repo (README.md, config.json), cached like the API.
    pub async fn file_text(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        name: &str,
    ) -> Result<String> {
        let revision = revision.unwrap_or("main");
        check_revision(revision)?;
        join_repo_file(std::path::Path::new("snapshot"), name)?;
        let url = format!("{}/{repo}/resolve/{revision}/{name}", self.endpoint);
        Ok(self.get_cached(&url).await?.0)
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    pub(crate) fn check_online(&self) -> Result<()> {
        if self.offline {
            return Err(HubError::Network(
                "offline mode (HF_HUB_OFFLINE) is on: the Hub is not asked; use models already in the cache".into(),
            ));
        }
        Ok(())
    }

    async fn get_cached(&self, url: &str) -> Result<(String, Option<String>)> {
        if let Some(hit) = self.cache_lock().get(url)
            && hit.at.elapsed() < CACHE_TTL
        {
            return Ok((hit.body.clone(), hit.next.clone()));
        }
        self.check_online()?;
        let response = self
            .authorized(self.http.get(url))
            .send()
            .await
            .map_err(|e| {
                HubError::Network(format!("cannot reach the Hub at {}: {e}", self.endpoint))
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(status_error(status, url, retry));
        }
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = response
            .text()
            .await
            .map_err(|e| HubError::Network(format!("the Hub's answer broke off: {e}")))?;
        self.cache_lock().insert(
            url.to_string(),
            Cached {
                at: Instant::now(),
                body: body.clone(),
                next: next.clone(),
            },
        );
        Ok((body, next))
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn no_redirect(&self) -> &reqwest::Client {
        &self.no_redirect
    }

    /// Adds the token, when there is one.
    pub(crate) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`, after checking both names.
    pub(crate) fn resolve_url(&self, repo: &RepoId, revision: &str, file: &str) -> Result<String> {
        check_revision(revision)?;
        join_repo_file(std::path::Path::new("snapshot"), file)?;
        Ok(format!(
            "{}/{repo}/resolve/{revision}/{file}",
            self.endpoint
        ))
    }

    /// Sends, retrying network failures and 5xx answers with backoff.
    pub(crate) async fn send_with_retries(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.check_online()?;
        let mut failures = 0u32;
        loop {
            let outcome = self.authorized(make()).send().await;
            let retry = match &outcome {
                Ok(response) => response.status().is_server_error(),
                Err(_) => true,
            };
            if !retry || failures >= 4 {
                return outcome.map_err(|e| {
                    HubError::Network(format!("cannot reach the Hub at {}: {e}", self.endpoint))
                });
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(250 << failures)).await;
        }
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `HF_HUB_OFFLINE` set to 1, true or yes.
fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The Hugging Face token, where `huggingface_hub` keeps it: `HF_TOKEN`, else
/// the `token` file in `HF_HOME` (default `~/.cache/huggingface`).
pub fn read_token() -> Option<String> {
    let home = std::env::var_os("HF_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface")));
    token_from(std::env::var("HF_TOKEN").ok(), home.as_deref())
}

fn token_from(variable: Option<String>, hf_home: Option<&std::path::Path>) -> Option<String> {
    if let Some(token) = variable.filter(|t| !t.trim().is_empty()) {
        return Some(token.trim().to_string());
    }
    let token = std::fs::read_to_string(hf_home?.join("token")).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Revisions are branch names, tags or commit hashes: no slashes that climb, no spaces.
fn check_revision(revision: &str) -> Result<()> {
    let ok = !revision.is_empty()
        && revision.len() <= 128
        && !revision.contains("..")
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::Invalid(format!(
            "{revision:?} is not a revision name or commit"
        )))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T> {
    serde_json::from_str(body)
        .map_err(|e| HubError::Network(format!("the Hub sent malformed {what}: {e}")))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

pub(crate) fn status_error(status: u16, url: &str, retry_after: Option<String>) -> HubError {
    match status {
        401 => HubError::Auth(format!(
            "the Hub wants a token for {url}; set one with your Hugging Face access token"
        )),
        403 => HubError::Auth(format!(
            "access to {url} is refused: the model is gated; accept its terms on the Hub, then use a token"
        )),
        404 => HubError::NotFound(format!("the Hub has no such model or file: {url}")),
        429 => HubError::RateLimited(retry_after.and_then(|s| s.parse().ok())),
        _ => HubError::Network(format!("the Hub answered {status} for {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_and_revisions() {
        let header = "<https://hf.co/api/models?cursor=abc&limit=2>; rel=\"next\"";
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://hf.co/api/models?cursor=abc&limit=2")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
        check_revision("main").expect("branch");
        check_revision("0123abcd").expect("commit");
        for bad in ["", "../main", "a b", "refs/../x"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
        assert!(HubClient::new("ftp://x", None).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = "hf_SecretTokenValue123";
        let client = HubClient::new("http://127.0.0.1:9", Some(token.into())).expect("client");
        for text in [format!("{client:?}"), format!("{client:#?}")] {
            assert!(!text.contains(token), "{text}");
            assert!(
                text.contains("<redacted>") && text.contains("127.0.0.1:9"),
                "{text}"
            );
        }
        let anonymous = HubClient::new("http://127.0.0.1:9", None).expect("client");
        assert!(format!("{anonymous:?}").contains("token: None"));
    }

    #[test]
    fn the_token_comes_from_hf_token_then_the_token_file() {
        let home = tempfile::tempdir().expect("tmp");
        assert_eq!(token_from(None, Some(home.path())), None);
        std::fs::write(home.path().join("token"), "hf_file\n").expect("write");
        assert_eq!(
            token_from(None, Some(home.path())).as_deref(),
            Some("hf_file")
        );
        assert_eq!(
            token_from(Some(" hf_env ".into()), Some(home.path())).as_deref(),
            Some("hf_env")
        );
        assert_eq!(
            token_from(Some(String::new()), Some(home.path())).as_deref(),
            Some("hf_file")
        );
    }
}
