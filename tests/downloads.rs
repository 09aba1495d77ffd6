//! The download manager with a real SQLite file and a fake Hub: progress
//! events, pause and resume from the bytes on disk, cancel, and continuing
//! the downloads a restart interrupted.

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
        DownloadManager::new(store.clone(), client, dir.join("hub")),
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
    until(&mut events, |e| e.downloaded >= 300_000).await;
    downloads.pause("org/big").expect("pause");
    assert_eq!(
        store.download("org/big").expect("read").expect("row").state,
        "paused"
    );

    downloads.resume("org/big").expect("resume");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_partial_files() {
    let hub = FakeHub::start("org/big", FakeHub::weights(SIZE), Duration::from_millis(40));
    let dir = tempfile::tempdir().expect("tmp");
    let (downloads, store) = manager(&hub, dir.path());
    let mut events = downloads.subscribe();
    downloads.start("org/big", "main", &[]).expect("start");
    until(&mut events, |e| e.downloaded > 0).await;
    downloads.cancel("org/big").expect("cancel");
    let blobs = dir.path().join("hub/models--org--big/blobs");
    let partials = std::fs::read_dir(&blobs)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(partials, 0);
    assert_eq!(
        store.download("org/big").expect("read").expect("row").state,
        "cancelled"
    );
    assert!(downloads.start("../evil", "main", &[]).is_err());
    assert!(downloads.pause("nobody/nothing").is_err());
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
