//! A download left `running` in the database (the app or `orchard serve`
//! quit, or crashed, mid-download) is finished by the next launch of the
//! server, from the bytes already on disk, with nothing asked of the user.

use std::time::Duration;

use orchard_server::LaunchOptions;
use orchard_store::Store;
use orchard_tests::fake_hub::{COMMIT, FakeHub};

const SIZE: usize = 900_000;

#[test]
fn launching_the_server_finishes_an_interrupted_download() {
    let hub = FakeHub::start("org/left", FakeHub::weights(SIZE), Duration::ZERO);
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");
    // This test binary runs only this test, so the environment is its own,
    // set before any other thread starts.
    // SAFETY: no other thread exists yet to read the environment concurrently.
    unsafe {
        std::env::set_var("HF_ENDPOINT", &hub.base);
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("ORCHARD_HOME", dir.path().join("orchard"));
        std::env::remove_var("HF_HUB_OFFLINE");
    }
    // What the quit left: the row, and the first 300 000 bytes.
    let store = Store::open(&dir.path().join("orchard.db")).expect("store");
    store
        .put_download("org/left", "main", &["*.safetensors".into()], "running")
        .expect("row");
    let blobs = cache.join("models--org--left/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    std::fs::write(
        blobs.join(format!("{}.incomplete", hub.sha256())),
        &hub.content[..300_000],
    )
    .expect("partial");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = LaunchOptions {
            host: Some("127.0.0.1".into()),
            port: Some(0),
            no_auth: true,
            ..LaunchOptions::default()
        };
        let _launched = orchard_server::launch(store.clone(), options, |_| {})
            .await
            .expect("launch");
        let mut state = String::new();
        for _ in 0..600 {
            state = store
                .download("org/left")
                .expect("read")
                .expect("row")
                .state;
            if state != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(state, "done", "the interrupted download was not finished");
    });
    let file = cache.join(format!(
        "models--org--left/snapshots/{COMMIT}/model.safetensors"
    ));
    assert_eq!(std::fs::read(file).expect("file"), *hub.content);
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges, [Some("bytes=300000-".to_string())]);
    let row = store.download("org/left").expect("read").expect("row");
    assert_eq!(row.downloaded, SIZE as u64);
}
