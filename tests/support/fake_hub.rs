//! A stand-in for the Hugging Face Hub on 127.0.0.1:0, one thread per
//! connection, for tests of downloads: model details, `resolve` answered with
//! a redirect carrying `X-Repo-Commit`, `X-Linked-Etag` (the SHA-256) and
//! `X-Linked-Size`, and a file host that honours Range and sends slowly
//! enough that a download can be stopped part-way.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

/// The commit the repo's revisions resolve to.
pub const COMMIT: &str = "feed01";

/// A running fake Hub serving one repo with one LFS file, `model.safetensors`.
#[derive(Debug, Clone)]
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub base: String,
    /// The repo id it serves.
    pub repo: String,
    pub content: Arc<Vec<u8>>,
    /// The Range header (if any) of each fetch of the file.
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl FakeHub {
    /// Serves `content` as `repo`'s `model.safetensors`, 64 KiB every `pause`.
    pub fn start(repo: &str, content: Vec<u8>, pause: Duration) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let hub = FakeHub {
            base: format!("http://{}", listener.local_addr().expect("address")),
            repo: repo.to_string(),
            content: Arc::new(content),
            ranges: Arc::default(),
        };
        let server = hub.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.answer(stream, pause));
            }
        });
        hub
    }

    /// Deterministic bytes standing in for weights.
    pub fn weights(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect()
    }

    pub fn sha256(&self) -> String {
        sha2::Sha256::digest(self.content.as_slice())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn answer(&self, stream: std::net::TcpStream, pause: Duration) {
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(clone);
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        let mut range = None;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                range = value.trim().trim_end_matches('-').parse::<usize>().ok();
            }
            line.clear();
        }
        let mut stream = stream;
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let len = self.content.len();
        if path.starts_with(&format!("/api/models/{}/revision/", self.repo)) {
            let body = format!(
                r#"{{"id": "{}", "sha": "{COMMIT}", "siblings": [{{"rfilename": "model.safetensors", "size": {len}, "lfs": {{"sha256": "{}", "size": {len}}}}}]}}"#,
                self.repo,
                self.sha256()
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        } else if path.starts_with(&format!("/{}/resolve/", self.repo)) {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: /files/model.safetensors\r\nX-Repo-Commit: {COMMIT}\r\nX-Linked-Etag: \"{}\"\r\nX-Linked-Size: {len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.sha256()
            );
        } else if path == "/files/model.safetensors" {
            self.ranges
                .lock()
                .expect("lock")
                .push(range.map(|r| format!("bytes={r}-")));
            let start = range.unwrap_or(0).min(len);
            let head = match range {
                Some(r) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {r}-{}/{len}\r\n",
                    len - 1
                ),
                None => "HTTP/1.1 200 OK\r\n".to_string(),
            };
            let _ = write!(
                stream,
                "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                len - start
            );
            for chunk in self.content[start..].chunks(64 << 10) {
                if stream.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        } else {
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}
