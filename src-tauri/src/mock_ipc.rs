//! Test helpers on Tauri's mock runtime, shared by this crate's unit tests
//! and its integration tests (which include this file with `#[path]`): the
//! app's main window, and calling a command from it as the page does.

use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

/// The app's main window, made here when the config made none.
pub fn main_window(app: &App<MockRuntime>) -> WebviewWindow<MockRuntime> {
    match app.get_webview_window("main") {
        Some(window) => window,
        None => WebviewWindowBuilder::new(app, "main", WebviewUrl::default())
            .build()
            .expect("main window"),
    }
}

/// Calls `command` from `window` with `args` (its arguments by name); the
/// command's answer, or its error, as JSON.
pub fn invoke(
    window: &WebviewWindow<MockRuntime>,
    command: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let request = InvokeRequest {
        cmd: command.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().expect("url"),
        body: InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(window, request)
        .map(|body| body.deserialize::<serde_json::Value>().expect("json body"))
}
