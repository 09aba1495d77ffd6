//! Launches the real desktop app under a virtual X display (Xvfb), waits until
//! its page has asked the Rust side for the runtime facts, and saves a
//! screenshot to `artifacts/desktop-smoke.png` for people to look at.
//!
//! Linux only: it needs Xvfb, xdotool and ImageMagick, which `make setup` installs.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "{name} is not installed: run `make setup`");
    Command::new(name)
}

/// Starts Xvfb on a free display and returns it with the display name.
fn start_xvfb() -> (Killed, String) {
    let mut xvfb = tool("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb");
    let mut line = String::new();
    BufReader::new(xvfb.stdout.take().expect("Xvfb stdout"))
        .read_line(&mut line)
        .expect("read the display number");
    let number = line.trim();
    assert!(!number.is_empty(), "Xvfb printed no display number");
    (Killed(xvfb), format!(":{number}"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run tool");
    assert!(output.status.success(), "{command:?} failed: {output:?}");
    output
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts");
    std::fs::create_dir_all(&dir).expect("create artifacts/");
    dir
}

#[test]
fn desktop_app_opens_on_models_and_hosts_the_server() {
    let (_xvfb, display) = start_xvfb();
    let home = tempfile::tempdir().expect("tempdir");
    // The app hosts the API server on the `port` setting: give it a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    orchard_store::Store::open(&home.path().join("orchard.db"))
        .expect("settings database")
        .set_setting("port", serde_json::json!(port))
        .expect("set the port");
    let mut app = Command::new(env!("CARGO_BIN_EXE_orchard-desktop"))
        .env("DISPLAY", &display)
        .env("ORCHARD_HOME", home.path())
        .env("RUST_LOG", "info,orchard_desktop=debug")
        // No GPU under Xvfb: keep WebKit on its software paths.
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start orchard-desktop");
    let stderr = app.stderr.take().expect("app stderr");
    let app = Killed(app);

    // The page opens on Models and lists the library once it has loaded;
    // the command logs it (at debug level).
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut log = Vec::new();
    let served = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("command served") && line.contains("list_library");
                log.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    assert!(
        served,
        "the page never called list_library within 90 s; app log:\n{}",
        log.join("\n")
    );

    // The hosted API server answers on the configured port and wants a key.
    let mut answered = None;
    while answered.is_none() && Instant::now() < deadline + Duration::from_secs(30) {
        answered = http_get(port, "/health").filter(|r| r.starts_with("HTTP/1.1 200"));
        if answered.is_none() {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert!(
        answered.is_some(),
        "the app's API server never answered /health on {port}"
    );
    let models = http_get(port, "/v1/models").expect("an answer");
    assert!(models.starts_with("HTTP/1.1 401"), "{models}");
    let db = orchard_store::Store::open(&home.path().join("orchard.db")).expect("database");
    assert_eq!(
        db.list_api_keys().expect("keys").len(),
        1,
        "the first start makes a key"
    );

    // The window is mapped and carries the app's title.
    let search = run(tool("xdotool")
        .args(["search", "--sync", "--onlyvisible", "--name", "^Orchard$"])
        .env("DISPLAY", &display));
    assert!(!String::from_utf8_lossy(&search.stdout).trim().is_empty());

    // Let WebKit paint the answer, then take the picture.
    std::thread::sleep(Duration::from_secs(2));
    let shot = artifacts_dir().join("desktop-smoke.png");
    run(tool("import")
        .args(["-window", "root"])
        .arg(&shot)
        .env("DISPLAY", &display));

    // A blank or single-colour screen would mean nothing was drawn.
    let stats =
        run(tool("convert")
            .arg(&shot)
            .args(["-format", "%[fx:standard_deviation]", "info:"]));
    let spread: f64 = String::from_utf8_lossy(&stats.stdout)
        .trim()
        .parse()
        .expect("standard deviation");
    assert!(
        spread > 0.02,
        "the screenshot is nearly uniform ({spread}): {}",
        shot.display()
    );

    drop(app);
    let mut rest = String::new();
    for line in lines_rx.try_iter() {
        rest.push_str(&line);
    }
    assert!(!rest.contains("panicked"), "the app panicked: {rest}");
}

/// A plain HTTP/1.1 GET on 127.0.0.1; the whole response, or None when nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Quitting (here SIGTERM, which takes the menu's Quit path) stops the hosted
/// server from accepting requests but lets a running stream finish: it ends
/// with `[DONE]`, and then the app exits cleanly.
#[test]
fn quitting_lets_a_running_stream_finish_first() {
    let (_xvfb, display) = start_xvfb();
    let home = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let model = "SmolLM2-135M-Instruct-4bit";
    let fixture = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join(model);
    {
        let store = orchard_store::Store::open(&home.path().join("orchard.db")).expect("store");
        store
            .set_setting("port", serde_json::json!(port))
            .expect("port");
        store
            .set_setting("require_api_key", serde_json::json!(false))
            .expect("open on localhost");
        store
            .add_local_model(model, &fixture.to_string_lossy())
            .expect("register the fixture");
    }
    let mut app = Command::new(env!("CARGO_BIN_EXE_orchard-desktop"))
        .env("DISPLAY", &display)
        .env("ORCHARD_HOME", home.path())
        .env("HF_HUB_CACHE", home.path().join("hub"))
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orchard-desktop");
    let pid = app.id();

    let deadline = Instant::now() + Duration::from_secs(90);
    while http_get(port, "/health").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(
            Instant::now() < deadline,
            "the app's server never answered /health"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Count from one to twenty."}],
        "max_tokens": 40,
        "temperature": 0,
        "stream": true,
    })
    .to_string();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");

    // Once text flows, quit.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"content\":\"") {
        let n = stream.read(&mut buffer).expect("read the stream");
        assert!(
            n > 0,
            "the stream ended before any text: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    }
    run(Command::new("kill").args(["-TERM", &pid.to_string()]));
    stream.read_to_end(&mut received).expect("read the rest");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.contains("data: [DONE]"),
        "the stream was cut by the quit: {text}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = app.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = app.kill();
            panic!("the app did not exit after the stream ended");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the app exited with {status}");
}
