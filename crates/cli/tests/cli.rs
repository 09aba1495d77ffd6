//! The `orchard` binary, run as a user runs it.

use std::process::Command;

fn orchard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orchard"))
}

#[test]
fn version_prints_orchard_mlx_and_device() {
    let output = orchard().arg("--version").output().expect("run orchard");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("orchard {}", env!("CARGO_PKG_VERSION")));
    // The MLX line comes from the loaded library, which must be the pinned one.
    assert_eq!(
        lines[1],
        format!(
            "mlx {} ({} backend)",
            mlx_sys::MLX_VERSION,
            mlx_sys::BACKEND
        )
    );
    assert!(
        lines[2] == "device cpu" || lines[2] == "device gpu",
        "{stdout}"
    );
}

#[test]
fn doctor_reports_every_check_as_json_and_passes_after_setup() {
    let home = tempfile::tempdir().expect("tempdir");
    let output = orchard()
        .args(["doctor", "--json"])
        .env("ORCHARD_HOME", home.path())
        .output()
        .expect("run orchard doctor");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json report");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "mlx runtime",
            "compute",
            "blas",
            "data directory",
            "cpu fast path",
            "model fixtures"
        ]
    );
    // A new install: the default setting, said in words.
    let fast_path = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "cpu fast path")
        .expect("the check");
    assert!(
        fast_path
            .to_string()
            .contains("auto: quantized models run dequantized"),
        "{fast_path}"
    );
    assert!(output.status.success(), "{report:#}");
}

#[test]
fn doctor_fails_and_names_the_fix_when_the_data_dir_is_unusable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"not a folder").expect("write");
    let output = orchard()
        .arg("doctor")
        .env("ORCHARD_HOME", blocker.join("orchard"))
        .output()
        .expect("run orchard doctor");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let line = stdout
        .lines()
        .find(|l| l.contains("data directory"))
        .expect("data directory line");
    assert!(line.starts_with("FAIL"), "{stdout}");
    assert!(stdout.contains("fix: fix the permissions of"), "{stdout}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let output = orchard().arg("frobnicate").output().expect("run orchard");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn keys_are_created_listed_and_revoked_in_the_data_dir() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        orchard()
            .args(args)
            .env("ORCHARD_HOME", home.path())
            .output()
            .expect("run orchard keys")
    };
    let created = run(&["keys", "create", "--name", "editor"]);
    assert!(created.status.success(), "{created:?}");
    let secret = String::from_utf8(created.stdout).expect("utf-8");
    let secret = secret.trim();
    assert!(secret.starts_with("orch-") && secret.len() > 40, "{secret}");
    assert!(String::from_utf8_lossy(&created.stderr).contains("not shown again"));
    assert!(home.path().join("orchard.db").is_file());

    let listed = run(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(keys[0]["name"], "editor");
    assert!(keys[0]["revoked_at"].is_null());
    let listing = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(!listing.contains(secret), "the secret is never listed");

    let id = keys[0]["id"].to_string();
    assert!(run(&["keys", "revoke", &id]).status.success());
    let keys: serde_json::Value =
        serde_json::from_slice(&run(&["keys", "list", "--json"]).stdout).expect("json");
    assert!(keys[0]["revoked_at"].is_string());

    let missing = run(&["keys", "revoke", "999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no API key has id 999"));
}

#[test]
fn serve_refuses_no_auth_beyond_localhost() {
    let home = tempfile::tempdir().expect("tempdir");
    let output = orchard()
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--no-auth"])
        .env("ORCHARD_HOME", home.path())
        .output()
        .expect("run orchard serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("beyond localhost requires a key"),
        "{stderr}"
    );
}

#[test]
fn serve_rejects_a_model_that_does_not_exist() {
    let home = tempfile::tempdir().expect("tempdir");
    let output = orchard()
        .args(["serve", "--port", "0", "--model", "no/such-model"])
        .env("ORCHARD_HOME", home.path())
        .env("HF_HUB_CACHE", home.path().join("hub"))
        .output()
        .expect("run orchard serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--model no/such-model"), "{stderr}");
}

#[test]
fn models_lists_the_cache_with_capabilities_and_deletes() {
    let hub = tempfile::tempdir().expect("tempdir");
    // A cached copy of the fixture in the Hugging Face layout (files, not links).
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let fixture = std::path::Path::new(&deps).join("models/SmolLM2-135M-Instruct-4bit");
    let repo = hub
        .path()
        .join("models--mlx-community--SmolLM2-135M-Instruct-4bit");
    let snapshot = repo.join("snapshots").join("abc123");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(file), snapshot.join(file)).expect("copy");
    }
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), "abc123").expect("ref");
    let run = |args: &[&str]| {
        orchard()
            .args(args)
            .env("HF_HUB_CACHE", hub.path())
            .output()
            .expect("run orchard models")
    };
    let listed = run(&["models", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let models: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(models[0]["id"], "mlx-community/SmolLM2-135M-Instruct-4bit");
    assert_eq!(models[0]["revisions"], serde_json::json!(["abc123"]));
    assert_eq!(models[0]["capabilities"]["model_type"], "llama");
    assert_eq!(models[0]["capabilities"]["supported"], true);
    let text = String::from_utf8(run(&["models", "list"]).stdout).expect("utf-8");
    assert!(text.contains("llama, 0.1B params, 4-bit"), "{text}");

    let bad = run(&["models", "rm", "../../etc"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a Hugging Face repo id"));
    let removed = run(&["models", "rm", "mlx-community/SmolLM2-135M-Instruct-4bit"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!repo.exists());
}

#[test]
fn a_registered_folder_is_served_by_its_name() {
    let home = tempfile::tempdir().expect("tempdir");
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let fixture = std::path::Path::new(&deps).join("models/SmolLM2-135M-Instruct-4bit");
    let run = |args: &[&str]| {
        orchard()
            .args(args)
            .env("ORCHARD_HOME", home.path())
            .env("HF_HUB_CACHE", home.path().join("hub"))
            .output()
            .expect("run orchard")
    };
    let added = run(&[
        "models",
        "add",
        &fixture.to_string_lossy(),
        "--name",
        "smol",
    ]);
    assert!(added.status.success(), "{added:?}");
    let again = run(&["models", "add", &fixture.to_string_lossy()]);
    assert!(!again.status.success(), "the same folder twice");
    let not_a_model = run(&["models", "add", &home.path().to_string_lossy()]);
    assert!(String::from_utf8_lossy(&not_a_model.stderr).contains("no config.json"));

    // `serve --model smol` finds and loads it by the registered name, then
    // stops because the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let served = run(&["serve", "--model", "smol", "--port", &port]);
    let stdout = String::from_utf8_lossy(&served.stdout);
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(stdout.contains("Loading smol"), "{stdout}{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(run(&["models", "forget", "smol"]).status.success());
    assert!(!run(&["models", "forget", "smol"]).status.success());
}

/// A one-thread stand-in for the Hub's search and details (downloads are
/// tested against `orchard_tests::fake_hub`, which answers as the Hub does).
fn tiny_hub() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = if request_line.starts_with("GET /api/models?") {
                assert!(
                    request_line.contains("author=mlx-community"),
                    "{request_line}"
                );
                (
                    "200 OK",
                    r#"[{"id": "mlx-community/Tiny-4bit", "downloads": 42, "likes": 3}]"#,
                )
            } else if request_line
                .starts_with("GET /api/models/mlx-community/Tiny-4bit/revision/main")
            {
                (
                    "200 OK",
                    r#"{"id": "mlx-community/Tiny-4bit", "sha": "c0ffee01", "siblings": [{"rfilename": "config.json", "size": 23}, {"rfilename": "model.bin", "size": 9}]}"#,
                )
            } else {
                ("404 Not Found", "")
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn models_search_and_info_talk_to_hf_endpoint() {
    let hub = tiny_hub();
    let run = |args: &[&str]| {
        orchard()
            .args(args)
            .env("HF_ENDPOINT", &hub)
            .output()
            .expect("run orchard models")
    };
    let found = run(&["models", "search", "tiny", "--json"]);
    assert!(found.status.success(), "{found:?}");
    let page: serde_json::Value = serde_json::from_slice(&found.stdout).expect("json");
    assert_eq!(page["models"][0]["id"], "mlx-community/Tiny-4bit");
    let text = String::from_utf8(run(&["models", "search", "tiny"]).stdout).expect("utf-8");
    assert!(
        text.contains("mlx-community/Tiny-4bit  42 downloads, 3 likes"),
        "{text}"
    );

    let missing = run(&["models", "info", "nobody/nothing"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such model"));
    let bad_sort = run(&["models", "search", "--sort", "random"]);
    assert!(String::from_utf8_lossy(&bad_sort.stderr).contains("use downloads, likes"));
}

#[test]
fn models_download_fetches_the_needed_files_into_the_cache() {
    use orchard_tests::fake_hub::{COMMIT, FakeHub};
    // A Hub that answers as the real one: small files through a relative
    // redirect with their git SHA-1, weights from another host.
    let config = br#"{"model_type": "llama"}"#.to_vec();
    let fake = FakeHub::with_small_files(
        "mlx-community/Tiny-4bit",
        FakeHub::weights(70_000),
        vec![("config.json", config.clone()), ("model.bin", vec![7; 9])],
        std::time::Duration::ZERO,
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let output = orchard()
        .args(["models", "download", "mlx-community/Tiny-4bit", "--json"])
        .env("HF_ENDPOINT", &fake.base)
        .env("ORCHARD_HOME", cache.path().join("orchard"))
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .expect("run orchard models download");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a result line")).expect("json");
    assert_eq!(last["done"], true);
    assert!(stdout.contains("\"file\":\"config.json\""), "{stdout}");
    let snapshot = cache.path().join(format!(
        "models--mlx-community--Tiny-4bit/snapshots/{COMMIT}"
    ));
    assert_eq!(
        std::fs::read(snapshot.join("config.json")).expect("downloaded"),
        config
    );
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors"))
            .expect("weights")
            .len(),
        70_000
    );
    // model.bin is not a file a model needs by default.
    assert!(!snapshot.join("model.bin").exists());
    let bad = orchard()
        .args(["models", "download", "../x"])
        .env("HF_ENDPOINT", &fake.base)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a Hugging Face repo id"));
}

/// The process is killed mid-file; run again, the download continues from the
/// bytes on disk and ends with the right SHA-256.
#[test]
fn a_killed_download_resumes_where_it_stopped() {
    use sha2::Digest;
    let fake = orchard_tests::fake_hub::FakeHub::start(
        "org/big",
        orchard_tests::fake_hub::FakeHub::weights(1_600_000),
        std::time::Duration::from_millis(50),
    );
    let (hub, ranges, content) = (fake.base.clone(), fake.ranges.clone(), fake.content.clone());
    let cache = tempfile::tempdir().expect("tempdir");
    let download = || {
        let mut command = orchard();
        command
            .args(["models", "download", "org/big"])
            .env("HF_ENDPOINT", &hub)
            .env("ORCHARD_HOME", cache.path().join("orchard"))
            .env("HF_HUB_CACHE", cache.path());
        command
    };
    let blobs = cache.path().join("models--org--big/blobs");
    let mut child = download()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the download");
    let partial_size = || {
        std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
            .and_then(|e| e.metadata().ok())
            .map_or(0, |m| m.len())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while partial_size() < 200_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let left = partial_size();
    assert!(
        left >= 200_000 && left < content.len() as u64,
        "partial file of {left} bytes"
    );

    let output = download().output().expect("run again");
    assert!(output.status.success(), "{output:?}");
    // The download is recorded in Orchard's database, as the app's are.
    let db = orchard_store::Store::open(&cache.path().join("orchard/orchard.db")).expect("db");
    let record = db.download("org/big").expect("read").expect("recorded");
    assert_eq!(
        (record.state.as_str(), record.downloaded),
        ("done", content.len() as u64)
    );
    let file = cache
        .path()
        .join("models--org--big/snapshots/feed01/model.safetensors");
    let bytes = std::fs::read(&file).expect("downloaded");
    assert_eq!(
        sha2::Sha256::digest(&bytes),
        sha2::Sha256::digest(content.as_slice())
    );
    let ranges = ranges.lock().expect("lock").clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let resumed_from: u64 = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .expect("the second run asked for a range");
    assert!(
        resumed_from >= left.saturating_sub(64 << 10) && resumed_from > 0,
        "{resumed_from} vs {left}"
    );
}

#[test]
fn login_stores_the_token_privately_and_logout_forgets_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = orchard()
            .args(args)
            .env("ORCHARD_HOME", home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run orchard");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    };
    let login = run(&["models", "login"], "hf_secret123\n");
    assert!(login.status.success(), "{login:?}");
    let file = home.path().join("secrets/huggingface-token");
    assert_eq!(
        std::fs::read_to_string(&file).expect("stored"),
        "hf_secret123"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let bad = run(&["models", "login", "--token", "two words"], "");
    assert!(!bad.status.success());
    let logout = run(&["models", "logout"], "");
    assert!(String::from_utf8_lossy(&logout.stdout).contains("Forgot"));
    assert!(!file.exists());
}

/// With every log on, a download sends the Hugging Face token to the Hub and
/// never prints it: not in progress lines, not in `RUST_LOG=trace` output.
#[test]
fn trace_logs_of_a_download_never_show_the_token() {
    const TOKEN: &str = "hf_TraceTestSecretToken0123456789";
    let fake = orchard_tests::fake_hub::FakeHub::with_small_files(
        "org/secret",
        orchard_tests::fake_hub::FakeHub::weights(100_000),
        vec![("config.json", br#"{"model_type": "llama"}"#.to_vec())],
        std::time::Duration::ZERO,
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let output = orchard()
        .args(["models", "download", "org/secret", "--json"])
        .env("HF_ENDPOINT", &fake.base)
        .env("HF_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .env("ORCHARD_HOME", cache.path().join("orchard"))
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .expect("run orchard models download");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "no trace logs were written:\n{stderr}"
    );
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token was printed"
    );
    assert!(
        !stderr.contains("TraceTestSecret"),
        "part of the token was printed"
    );
}
