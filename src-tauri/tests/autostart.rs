//! "Start at login" through the app's commands, on the mock runtime, with a
//! home folder of its own (a test binary of its own, so changing HOME touches
//! no other test). Linux: an autostart entry under ~/.config/autostart.
#![cfg(target_os = "linux")]

#[path = "../src/mock_ipc.rs"]
mod mock_ipc;

use mock_ipc::{invoke, main_window};
use tauri::test::mock_builder;

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".config/autostart"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn start_at_login_is_turned_on_and_off() {
    let home = tempfile::tempdir().expect("home");
    // SAFETY: this test binary has this one test, so no other thread reads
    // the environment while it changes.
    unsafe {
        std::env::set_var("HOME", home.path());
        std::env::set_var("XDG_CONFIG_HOME", home.path().join(".config"));
    }
    let app = orchard_desktop::build_app(mock_builder())
        .manage(orchard_desktop::server::HostedServer::default())
        .build(tauri::generate_context!())
        .expect("app");
    let window = main_window(&app);

    assert_eq!(
        invoke(&window, "launch_at_login", serde_json::json!({})),
        Ok(false.into())
    );
    assert!(entries(home.path()).is_empty());
    assert_eq!(
        invoke(
            &window,
            "set_launch_at_login",
            serde_json::json!({"enabled": true})
        ),
        Ok(true.into())
    );
    assert_eq!(
        entries(home.path()).len(),
        1,
        "no autostart entry was written"
    );
    assert_eq!(
        invoke(&window, "launch_at_login", serde_json::json!({})),
        Ok(true.into())
    );
    assert_eq!(
        invoke(
            &window,
            "set_launch_at_login",
            serde_json::json!({"enabled": false})
        ),
        Ok(false.into())
    );
    assert!(entries(home.path()).is_empty(), "the entry stayed");
}
