//! Several processes opening the same new database at once (the app and the CLI
//! started together) must all succeed: the migrations run once, in whichever
//! process takes the write lock first, and the others find them applied.
//!
//! The test runs its own binary again as child processes; an environment
//! variable tells the child which file to open and when to start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The database file a child opens; set only in children.
const DB_VAR: &str = "ORCHARD_STORE_TEST_CHILD_DB";
/// A file whose appearance tells the children to open the database.
const GO_VAR: &str = "ORCHARD_STORE_TEST_CHILD_GO";
/// Processes racing on each database.
const PROCESSES: usize = 4;
/// Fresh databases raced on, one after another.
const ROUNDS: usize = 5;

/// The child's side: wait for the start signal, then open the store.
/// Run only by [`new_database_opened_by_several_processes_at_once`].
#[test]
#[ignore = "a child process of new_database_opened_by_several_processes_at_once"]
fn child_opens_the_store() {
    let (Some(db), Some(go)) = (std::env::var_os(DB_VAR), std::env::var_os(GO_VAR)) else {
        panic!("run only as a child process: {DB_VAR} and {GO_VAR} are not set");
    };
    // Spinning (not sleeping) keeps the children's start as close together as
    // the scheduler allows, which is what makes the race likely.
    while !Path::new(&go).exists() {
        std::hint::spin_loop();
    }
    let store = orchard_store::Store::open(Path::new(&db))
        .unwrap_or_else(|e| panic!("the child could not open the store: {e}"));
    store
        .list_api_keys()
        .unwrap_or_else(|e| panic!("the child could not read the store: {e}"));
}

fn spawn_child(db: &Path, go: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "child_opens_the_store",
            "--ignored",
            "--nocapture",
        ])
        .env(DB_VAR, db)
        .env(GO_VAR, go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child process")
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn new_database_opened_by_several_processes_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..ROUNDS {
        let db: PathBuf = dir.path().join(format!("orchard-{round}.db"));
        let go = dir.path().join(format!("go-{round}"));
        let children: Vec<Child> = (0..PROCESSES).map(|_| spawn_child(&db, &go)).collect();
        std::fs::write(&go, b"go").expect("signal the children");
        for child in children {
            let output = child.wait_with_output().expect("wait for a child");
            assert!(
                output.status.success(),
                "round {round}: a process opening the new database failed: {}",
                describe(&output)
            );
            // The child really ran the child test (a filter typo would run nothing).
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                stdout.contains("1 passed"),
                "round {round}: {}",
                describe(&output)
            );
        }
        // Every migration is applied, once: a fresh private database is the reference.
        let latest = orchard_store::Store::open_in_memory()
            .and_then(|s| s.schema_version())
            .expect("reference version");
        let store = orchard_store::Store::open(&db).expect("reopen");
        assert_eq!(
            store.schema_version().expect("version"),
            latest,
            "round {round}"
        );
    }
}
