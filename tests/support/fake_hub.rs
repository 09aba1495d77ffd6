//! A stand-in for the Hugging Face Hub on 127.0.0.1:0, one thread per
//! connection, that answers downloads the way the real Hub does:
//!
//! - model details list the files, with `lfs` (SHA-256 and size) on the weights
//!   and `blobId` (the git blob SHA-1) on every file;
//! - `resolve` of the LFS file `model.safetensors` is a `302` to another
//!   origin (a second listener standing in for the CDN) with `X-Repo-Commit`,
//!   `X-Linked-Etag` (the SHA-256) and `X-Linked-Size` on the redirect;
//! - `resolve` of a small file is a `307` to a relative
//!   `/api/resolve-cache/models/<repo>/<commit>/<file>?...` on the Hub's own
//!   host, whose answer carries `ETag` (the git blob SHA-1, quoted),
//!   `X-Repo-Commit` and `Content-Length`;
//! - `HEAD` answers carry no body, Range requests get `206` (or `416`), and
//!   a missing file is a `404` with `X-Error-Code: EntryNotFound`.
//!
//! The CDN sends 64 KiB every `pause`, so a download can be stopped part-way.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

/// The commit the repo's revisions resolve to.
pub const COMMIT: &str = "feed01";

/// The LFS file every fake repo has.
pub const WEIGHTS: &str = "model.safetensors";

/// A running fake Hub serving one repo: `model.safetensors` (LFS) and any
/// small files.
#[derive(Debug, Clone)]
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub base: String,
    /// The CDN the weights redirect to: another origin.
    pub cdn: String,
    /// The repo id it serves.
    pub repo: String,
    /// The content of `model.safetensors`.
    pub content: Arc<Vec<u8>>,
    /// Files kept in git itself (not LFS): (name, content).
    pub small: Arc<Vec<(String, Vec<u8>)>>,
    /// The Range header (if any) of each fetch of the weights.
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
    /// Fetches of the weights that ended: all sent, or the client hung up.
    pub ended: Arc<AtomicUsize>,
    /// Whether a request to the CDN carried an Authorization header (the
    /// token must stay on the Hub).
    pub cdn_saw_token: Arc<AtomicBool>,
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    range: Option<usize>,
    authorized: bool,
}

impl FakeHub {
    /// Serves `content` as `repo`'s `model.safetensors`, 64 KiB every `pause`.
    pub fn start(repo: &str, content: Vec<u8>, pause: Duration) -> FakeHub {
        FakeHub::with_small_files(repo, content, Vec::new(), pause)
    }

    /// Serves the weights and these small (non-LFS) files.
    pub fn with_small_files(
        repo: &str,
        content: Vec<u8>,
        small: Vec<(&str, Vec<u8>)>,
        pause: Duration,
    ) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let cdn = TcpListener::bind("127.0.0.1:0").expect("bind");
        let hub = FakeHub {
            base: format!("http://{}", listener.local_addr().expect("address")),
            cdn: format!("http://{}", cdn.local_addr().expect("address")),
            repo: repo.to_string(),
            content: Arc::new(content),
            small: Arc::new(small.into_iter().map(|(n, c)| (n.to_string(), c)).collect()),
            ranges: Arc::default(),
            ended: Arc::default(),
            cdn_saw_token: Arc::default(),
        };
        for (listener, is_cdn) in [(listener, false), (cdn, true)] {
            let server = hub.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let server = server.clone();
                    std::thread::spawn(move || server.answer(stream, is_cdn, pause));
                }
            });
        }
        hub
    }

    /// Deterministic bytes standing in for weights.
    pub fn weights(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect()
    }

    pub fn sha256(&self) -> String {
        hex(&sha2::Sha256::digest(self.content.as_slice()))
    }

    /// Git's blob hash of `content`, computed here independently of Orchard:
    /// SHA-1 of `blob <len>\0` and the content.
    pub fn git_sha1(content: &[u8]) -> String {
        let mut blob = format!("blob {}\0", content.len()).into_bytes();
        blob.extend_from_slice(content);
        sha1_hex(&blob)
    }

    fn read_request(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let mut range = None;
        let mut authorized = false;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("range: bytes=") {
                range = value.trim().trim_end_matches('-').parse::<usize>().ok();
            }
            authorized |= lower.starts_with("authorization:");
            line.clear();
        }
        let mut parts = request_line.split_whitespace();
        Some(Request {
            method: parts.next()?.to_string(),
            path: parts.next()?.to_string(),
            range,
            authorized,
        })
    }

    fn answer(&self, stream: TcpStream, is_cdn: bool, pause: Duration) {
        let Some(request) = Self::read_request(&stream) else {
            return;
        };
        if is_cdn {
            self.cdn_saw_token
                .fetch_or(request.authorized, Ordering::SeqCst);
            if request.path == format!("/files/{WEIGHTS}") {
                self.send_weights(stream, &request, pause);
            } else {
                not_found(stream);
            }
            return;
        }
        let repo = &self.repo;
        let path = request.path.split('?').next().unwrap_or_default();
        let resolve = format!("/{repo}/resolve/");
        let cache = format!("/api/resolve-cache/models/{repo}/{COMMIT}/");
        if path.starts_with(&format!("/api/models/{repo}/revision/")) {
            self.send_details(stream);
        } else if let Some(rest) = path.strip_prefix(&resolve) {
            let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
            self.send_resolve(stream, revision, file);
        } else if let Some(file) = path.strip_prefix(&cache) {
            match self.small.iter().find(|(name, _)| name == file) {
                Some((_, content)) => send_small(stream, &request, content),
                None => not_found(stream),
            }
        } else {
            not_found(stream);
        }
    }

    fn send_details(&self, mut stream: TcpStream) {
        let len = self.content.len();
        let mut siblings: Vec<String> = self
            .small
            .iter()
            .map(|(name, content)| {
                format!(
                    r#"{{"rfilename": "{name}", "size": {}, "blobId": "{}"}}"#,
                    content.len(),
                    Self::git_sha1(content)
                )
            })
            .collect();
        siblings.push(format!(
            r#"{{"rfilename": "{WEIGHTS}", "size": {len}, "blobId": "{}", "lfs": {{"sha256": "{}", "size": {len}, "pointerSize": 134}}}}"#,
            Self::git_sha1(self.sha256().as_bytes()),
            self.sha256()
        ));
        let body = format!(
            r#"{{"id": "{}", "sha": "{COMMIT}", "siblings": [{}]}}"#,
            self.repo,
            siblings.join(", ")
        );
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn send_resolve(&self, mut stream: TcpStream, revision: &str, file: &str) {
        let repo = &self.repo;
        if file == WEIGHTS {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {}/files/{WEIGHTS}\r\nX-Repo-Commit: {COMMIT}\r\nX-Linked-Etag: \"{}\"\r\nX-Linked-Size: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.cdn,
                self.sha256(),
                self.content.len()
            );
        } else if let Some((_, content)) = self.small.iter().find(|(name, _)| name == file) {
            // As the Hub: a path on its own host, the metadata left to the answer there.
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: /api/resolve-cache/models/{repo}/{COMMIT}/{file}?%2F{}%2Fresolve%2F{revision}%2F{file}=&etag=%22{}%22\r\nX-Repo-Commit: {COMMIT}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                repo.replace('/', "%2F"),
                Self::git_sha1(content)
            );
        } else {
            not_found(stream);
        }
    }

    fn send_weights(&self, mut stream: TcpStream, request: &Request, pause: Duration) {
        let len = self.content.len();
        let start = request.range.unwrap_or(0);
        if start >= len && request.range.is_some() {
            let _ = write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        let head = match request.range {
            Some(r) => format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {r}-{}/{len}\r\n",
                len - 1
            ),
            None => "HTTP/1.1 200 OK\r\n".to_string(),
        };
        let _ = write!(
            stream,
            "{head}Accept-Ranges: bytes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            len - start
        );
        if request.method != "GET" {
            return;
        }
        self.ranges
            .lock()
            .expect("lock")
            .push(request.range.map(|r| format!("bytes={r}-")));
        for chunk in self.content[start..].chunks(64 << 10) {
            if stream.write_all(chunk).is_err() {
                break;
            }
            std::thread::sleep(pause);
        }
        // A client that hung up is noticed by a failed write, at the latest
        // once everything is sent; reading then sees the closed connection.
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

/// A small file from the resolve cache: its metadata, and its content unless
/// the request is a HEAD.
fn send_small(mut stream: TcpStream, request: &Request, content: &[u8]) {
    let len = content.len();
    let start = request.range.unwrap_or(0).min(len);
    let status = match request.range {
        Some(r) if r >= len => {
            let _ = write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        Some(r) => format!(
            "206 Partial Content\r\nContent-Range: bytes {r}-{}/{len}",
            len - 1
        ),
        None => "200 OK".to_string(),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        FakeHub::git_sha1(content),
        len - start
    );
    if request.method == "GET" {
        let _ = stream.write_all(&content[start..]);
    }
}

fn not_found(mut stream: TcpStream) {
    let _ = write!(
        stream,
        "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-1 (FIPS 180-4), written out here so the fake's etags do not come from
/// the code under test.
fn sha1_hex(message: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in padded.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fakes_git_hashes_are_gits() {
        assert_eq!(
            FakeHub::git_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            FakeHub::git_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // Two blocks of padding.
        assert_eq!(
            sha1_hex(&[b'a'; 1000]),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }
}
