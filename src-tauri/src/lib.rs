//! Orchard's desktop shell: a menubar icon and a window over the same services
//! the HTTP server and the CLI use. Behaviour lives in the library crates; this
//! crate only wires them to Tauri.

pub mod commands;
pub mod server;
pub mod tray;

use tauri::{Builder, Runtime};

/// Registers Orchard's commands on a builder. Tests pass
/// `tauri::test::mock_builder()`; the app passes `tauri::Builder::default()`.
pub fn build_app<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder
        .manage(commands::AppOrchard::default())
        .invoke_handler(tauri::generate_handler![
            commands::runtime_info,
            commands::list_downloads,
            commands::list_library,
            commands::get_settings,
            commands::search_models,
            commands::model_details,
            commands::start_download,
            commands::pause_download,
            commands::resume_download,
            commands::cancel_download,
            commands::load_model,
            commands::unload_model,
            commands::delete_model,
            commands::add_folder,
            commands::set_hf_token,
            commands::download_events,
            commands::server_status,
            commands::reveal_model,
        ])
}

/// Runs the desktop app until the user quits. The caller owns the tokio
/// runtime and has handed it to Tauri (`tauri::async_runtime::set`), so the
/// window and the API server it hosts share one runtime.
pub fn run() -> tauri::Result<()> {
    let device = orchard_engine::runtime::use_preferred_device();
    tracing::info!(%device, "engine device selected");
    build_app(tauri::Builder::default())
        .setup(|app| {
            // A menubar app: no Dock icon on macOS.
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            tray::install(app.handle())?;
            server::start(app.handle());
            Ok(())
        })
        .on_window_event(|window, event| {
            // On macOS closing the window keeps Orchard in the menubar, where
            // "Open Orchard" brings it back. Linux desktops may have no tray
            // host to show the icon, so there closing the window quits.
            if cfg!(target_os = "macos")
                && let tauri::WindowEvent::CloseRequested { api, .. } = event
            {
                api.prevent_close();
                if let Err(e) = window.hide() {
                    tracing::warn!(error = %e, "could not hide the window");
                }
            }
        })
        .run(tauri::generate_context!())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder};
    use tauri::webview::InvokeRequest;
    use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

    /// The app on the mock runtime, its server status `server`, and its main window.
    fn app_window(
        server: server::HostedServer,
    ) -> (
        tauri::App<tauri::test::MockRuntime>,
        tauri::WebviewWindow<tauri::test::MockRuntime>,
    ) {
        // The real context: the real capability file decides what may be called.
        let app = build_app(mock_builder())
            .manage(server)
            .build(tauri::generate_context!())
            .expect("build the app on the mock runtime");
        let window = match app.get_webview_window("main") {
            Some(window) => window,
            None => WebviewWindowBuilder::new(&app, "main", WebviewUrl::default())
                .build()
                .expect("main window"),
        };
        (app, window)
    }

    /// Calls `command` from the page, as the UI does.
    fn invoke_on(
        window: &tauri::WebviewWindow<tauri::test::MockRuntime>,
        command: &str,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let request = InvokeRequest {
            cmd: command.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: InvokeBody::default(),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        };
        get_ipc_response(window, request)
            .map(|body| body.deserialize::<serde_json::Value>().expect("json body"))
    }

    fn invoke(command: &str) -> Result<serde_json::Value, serde_json::Value> {
        let (_app, window) = app_window(server::HostedServer::default());
        invoke_on(&window, command)
    }

    #[test]
    fn runtime_info_command_reports_version_mlx_and_device() {
        let info = invoke("runtime_info").expect("runtime_info answers");
        assert_eq!(info["orchard_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(info["mlx_version"], mlx_sys::MLX_VERSION);
        assert_eq!(info["backend"], mlx_sys::BACKEND);
        let expected_device = orchard_engine::runtime::preferred_device().to_string();
        assert_eq!(info["device"], expected_device.as_str());
    }

    #[test]
    fn server_status_starts_as_starting() {
        let status = invoke("server_status").expect("server_status answers");
        assert_eq!(status["state"], "starting");
        assert_eq!(status["url"], serde_json::Value::Null);
        assert_eq!(status["api_key_required"], true);
    }

    #[test]
    fn a_new_api_key_is_returned_by_server_status_only_once() {
        let hosted = server::HostedServer::default();
        hosted.set(server::ServerStatusView {
            state: server::ServerState::Running,
            url: Some("http://127.0.0.1:10240/v1".into()),
            api_key_required: true,
            new_api_key: Some("orch-only-once".into()),
            error: None,
        });
        let (_app, window) = app_window(hosted);

        let first = invoke_on(&window, "server_status").expect("server_status answers");
        assert_eq!(first["new_api_key"], "orch-only-once");
        let again = invoke_on(&window, "server_status").expect("server_status answers");
        assert_eq!(
            again["new_api_key"],
            serde_json::Value::Null,
            "the key came back: {again}"
        );
        // Everything else is still reported.
        assert_eq!(again["state"], "running");
        assert_eq!(again["url"], "http://127.0.0.1:10240/v1");
        assert_eq!(again["api_key_required"], true);
    }

    #[test]
    fn unknown_command_is_refused() {
        let error = invoke("delete_everything").expect_err("no such command");
        assert!(error.to_string().contains("delete_everything"), "{error}");
    }

    #[test]
    fn the_window_capability_grants_every_command() {
        let capability: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/default.json")).expect("json");
        let granted: Vec<&str> = capability["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        for command in commands::COMMANDS {
            let permission = format!("allow-{}", command.replace('_', "-"));
            assert!(
                granted.contains(&permission.as_str()),
                "capabilities/default.json lacks {permission}"
            );
        }
    }
}
