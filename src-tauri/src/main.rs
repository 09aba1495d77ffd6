//! The Orchard desktop app.

// No console window on Windows release builds (harmless elsewhere).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

fn main() -> ExitCode {
    orchard_core::logs::init();

    // One runtime for the whole process: Tauri's async commands and, later,
    // the HTTP server the app hosts all run on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orchard")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orchard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());

    match orchard_desktop::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchard: {e}");
            ExitCode::FAILURE
        }
    }
}
