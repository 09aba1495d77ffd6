//! The download manager with a real SQLite file and a fake Hub that answers
//! as the real one (see `orchard_tests::fake_hub`): progress events, pause and
//! resume from the bytes on disk, cancel, continuing the downloads a restart
//! interrupted, small files through the Hub's relative redirect, and two
//! downloads of one file at once.

use std::time::Duration;

use orchard_core::downloads::{DownloadEvent, DownloadManager};
use orchard_hub::HubClient;
use orchard_store::Store;
use orchard_tests::fake_hub::{COMMIT, FakeHub};
use tokio::sync::broadcast::Receiver;

const SIZE: usize = 1_600_000;

fn manager(hub: &FakeHub, dir: &std::path::Path) -> (DownloadManager, Store) {
    let store = Store::open(&dir.join("orchard.db")).expect("store");
    let client = HubClient::new(&hub.base, None).expect("client");
    (
        DownloadManager::new(store.clone(), std::sync::Arc::new(client), dir.join("hub")),
        store,
    )
}

/// Events until one satisfies `done`.
async fn until(
    events: &mut Receiver<DownloadEvent>,
    done: impl Fn(&DownloadEvent) -> bool,
) -> DownloadEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Ok(event) if done(&event) => return event,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .expect("the event came")
}

fn file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!(
        "hub/models--org--big/snapshots/{COMMIT}/model.safetensors"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_the_bytes_and_resume_continues_from_them() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::from_millis(40));
    let dir = tempfile::tempdir().expect("tmp");
    let (downloads, store) = manager(&hub, dir.path());
    let mut events = downloads.subscribe();
    downloads.start("org/big", "main", &[]).expect("start");
    let reached = until(&mut events, |e| e.downloaded >= 300_000).await;
    downloads.pause("org/big").await.expect("pause");
    let row = store.download("org/big").expect("read").expect("row");
    assert_eq!(row.state, "paused");
    // What was reported stays reported: the pause records every byte
    // received, not the last periodic save (the bar must not go back).
    let paused = until(&mut events, |e| e.state == "paused").await;
    assert!(
        paused.downloaded >= reached.downloaded && row.downloaded == paused.downloaded,
        "paused at {} after {} was reported (stored {})",
        paused.downloaded,
        reached.downloaded,
        row.downloaded
    );

    downloads.resume("org/big").expect("resume");
    let resumed = until(&mut events, |e| e.state == "running").await;
    assert_eq!(
        (resumed.downloaded, resumed.total),
        (paused.downloaded, paused.total),
        "the resumed download's first event starts from zero"
    );
    let done = until(&mut events, |e| e.state == "done" || e.state == "failed").await;
    assert_eq!(done.state, "done", "{done:?}");
    assert_eq!(done.downloaded, SIZE as u64);
    assert_eq!(std::fs::read(file(dir.path())).expect("file").len(), SIZE);
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(ranges[1].is_some(), "the resumed fetch asked for a range");
    let row = store.download("org/big").expect("read").expect("row");
    assert_eq!(
        (row.state.as_str(), row.downloaded, row.total),
        ("done", SIZE as u64, SIZE as u64)
    );
}

fn partials(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("hub/models--org--big/blobs"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
                .count()
        })
        .unwrap_or(0)
}

/// Waits (up to a minute) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened");
}

/// Cancel returns once the task has stopped: the partial file is gone and
/// stays gone after the Hub has seen the download end, and no progress is
/// reported after the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_task_then_deletes_the_partial_files() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::from_millis(40));
    let dir = tempfile::tempdir().expect("tmp");
    let (downloads, store) = manager(&hub, dir.path());
    let mut events = downloads.subscribe();
    downloads.start("org/big", "main", &[]).expect("start");
    until(&mut events, |e| e.downloaded > 0).await;
    downloads.cancel("org/big").await.expect("cancel");
    assert_eq!(partials(dir.path()), 0);
    assert_eq!(
        store.download("org/big").expect("read").expect("row").state,
        "cancelled"
    );
    // The Hub sees the connection closed: the task is gone, and wrote nothing since.
    eventually("the end of the fetch", || {
        hub.ended.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(partials(dir.path()), 0, "a partial file came back");
    let mut after = Vec::new();
    while let Ok(event) = events.try_recv() {
        after.push(event);
    }
    let cancelled = after
        .iter()
        .position(|e| e.state == "cancelled")
        .expect("a cancelled event");
    assert!(
        after[cancelled..].iter().all(|e| e.state == "cancelled"),
        "{after:?}"
    );
    assert!(downloads.start("../evil", "main", &[]).is_err());
    assert!(downloads.pause("nobody/nothing").await.is_err());
    assert!(downloads.cancel("../evil").await.is_err());
}

/// A download that finished stays done: pausing or cancelling it later
/// changes nothing and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_download_cannot_be_paused_or_cancelled_back() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::ZERO);
    let dir = tempfile::tempdir().expect("tmp");
    let (downloads, store) = manager(&hub, dir.path());
    let mut events = downloads.subscribe();
    downloads.start("org/big", "main", &[]).expect("start");
    let done = until(&mut events, |e| e.state == "done" || e.state == "failed").await;
    assert_eq!(done.state, "done", "{done:?}");
    downloads.pause("org/big").await.expect("pause");
    downloads.cancel("org/big").await.expect("cancel");
    let row = store.download("org/big").expect("read").expect("row");
    assert_eq!((row.state.as_str(), row.downloaded), ("done", SIZE as u64));
    assert_eq!(std::fs::read(file(dir.path())).expect("file"), *hub.content);
}

/// The app and the CLI download the same model at once (two managers on one
/// database and cache): one fetches the file under the blob's lock, the
/// other waits and finds it done; the file is whole and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_downloads_of_one_file_take_turns_on_its_lock() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::from_millis(10));
    let dir = tempfile::tempdir().expect("tmp");
    let (app, _) = manager(&hub, dir.path());
    let (cli, store) = manager(&hub, dir.path());
    let mut app_events = app.subscribe();
    let mut cli_events = cli.subscribe();
    app.start("org/big", "main", &[]).expect("start");
    cli.start("org/big", "main", &[]).expect("start");
    for events in [&mut app_events, &mut cli_events] {
        let end = until(events, |e| e.state == "done" || e.state == "failed").await;
        assert_eq!(end.state, "done", "{end:?}");
    }
    let bytes = std::fs::read(file(dir.path())).expect("file");
    assert_eq!(bytes, *hub.content);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, hub.sha256());
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges, [None], "one fetch, from the start");
    assert_eq!(partials(dir.path()), 0);
    assert_eq!(
        store.download("org/big").expect("read").expect("row").state,
        "done"
    );
    assert!(
        dir.path()
            .join(format!("hub/.locks/models--org--big/{}.lock", hub.sha256()))
            .is_file()
    );
}

/// A model with small files, as on the real Hub: they come through its
/// relative redirect with their git SHA-1 etag, the weights through the CDN,
/// which never sees the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_come_through_the_hubs_redirect_and_the_token_stays_on_the_hub() {
    let config = br#"{"model_type": "llama"}"#.to_vec();
    let template = b"{{ messages }}\n".to_vec();
    let hub = FakeHub::with_small_files(
        "org/big",
        FakeHub::weights(200_000),
        vec![
            ("config.json", config.clone()),
            ("chat_template.jinja", template.clone()),
        ],
        Duration::ZERO,
    );
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("orchard.db")).expect("store");
    let client = HubClient::new(&hub.base, Some("hf_secret".into())).expect("client");
    let downloads = DownloadManager::new(
        store.clone(),
        std::sync::Arc::new(client),
        dir.path().join("hub"),
    );
    let mut events = downloads.subscribe();
    downloads.start("org/big", "main", &[]).expect("start");
    let done = until(&mut events, |e| e.state == "done" || e.state == "failed").await;
    assert_eq!(done.state, "done", "{done:?}");
    let snapshot = dir
        .path()
        .join(format!("hub/models--org--big/snapshots/{COMMIT}"));
    assert_eq!(
        std::fs::read(snapshot.join("config.json")).expect("config"),
        config
    );
    assert_eq!(
        std::fs::read(snapshot.join("chat_template.jinja")).expect("template"),
        template
    );
    // Small files are named by their git blob SHA-1, as huggingface_hub names them.
    let blobs = dir.path().join("hub/models--org--big/blobs");
    assert!(blobs.join(FakeHub::git_sha1(&config)).is_file());
    assert!(blobs.join(hub.sha256()).is_file());
    assert!(
        !hub.cdn_saw_token.load(std::sync::atomic::Ordering::SeqCst),
        "the token left the Hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_the_downloads_left_running() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::from_millis(40));
    let dir = tempfile::tempdir().expect("tmp");
    {
        let (downloads, _) = manager(&hub, dir.path());
        let mut events = downloads.subscribe();
        downloads.start("org/big", "main", &[]).expect("start");
        until(&mut events, |e| e.downloaded >= 200_000).await;
        // The app quits mid-download.
        downloads.shutdown();
    }
    // A new manager on the same database and cache, as after a restart.
    let (downloads, store) = manager(&hub, dir.path());
    assert_eq!(
        store.download("org/big").expect("read").expect("row").state,
        "running"
    );
    let mut events = downloads.subscribe();
    assert_eq!(downloads.resume_interrupted().expect("resume"), 1);
    let done = until(&mut events, |e| e.state == "done" || e.state == "failed").await;
    assert_eq!(done.state, "done", "{done:?}");
    assert_eq!(std::fs::read(file(dir.path())).expect("file"), *hub.content);
}
