//! Orchard's desktop shell: a menubar icon and a window over the same services
//! the HTTP server and the CLI use. Behaviour lives in the library crates; this
//! crate only wires them to Tauri.

pub mod commands;
pub mod server;
pub mod tray;

#[cfg(test)]
mod mock_ipc;

use tauri::{Builder, Manager, Runtime};

/// Registers Orchard's commands on a builder. Tests pass
/// `tauri::test::mock_builder()`; the app passes `tauri::Builder::default()`.
pub fn build_app<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
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
            commands::list_servers,
            commands::list_keys,
            commands::update_settings,
            commands::start_server,
            commands::stop_server,
            commands::restart_server,
            commands::create_key,
            commands::revoke_key,
            commands::list_profiles,
            commands::create_profile,
            commands::update_profile,
            commands::delete_profile,
            commands::download_events,
            commands::server_events,
            commands::server_status,
            commands::reveal_model,
            commands::launch_at_login,
            commands::set_launch_at_login,
            commands::restart_app,
            tray::menubar,
            tray::menubar_select,
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
            // The server's state first: the menu reads it.
            server::start(app.handle());
            tray::install(app.handle())?;
            quit_on_signals(app.handle());
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
        .build(tauri::generate_context!())?
        .run(|app, event| {
            // Closing the last window (Linux) or Cmd+Q: drain the server first.
            if let tauri::RunEvent::ExitRequested { api, .. } = event
                && !app.state::<server::HostedServer>().is_drained()
            {
                api.prevent_exit();
                server::quit(app);
            }
        });
    Ok(())
}

/// SIGTERM and SIGINT (a logout, `kill`, Ctrl-C in a terminal) quit as the
/// menu's Quit does: requests in flight finish first.
fn quit_on_signals<R: Runtime>(app: &tauri::AppHandle<R>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot listen for SIGTERM/SIGINT");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signalled to quit");
            server::quit(&app);
        });
    }
    #[cfg(not(unix))]
    let _ = app;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mock_ipc::invoke as invoke_with;
    use tauri::Manager;
    use tauri::test::mock_builder;

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
        let window = mock_ipc::main_window(&app);
        (app, window)
    }

    /// Calls `command` from the page without arguments, as the UI does.
    fn invoke_on(
        window: &tauri::WebviewWindow<tauri::test::MockRuntime>,
        command: &str,
    ) -> Result<serde_json::Value, serde_json::Value> {
        invoke_with(window, command, serde_json::json!({}))
    }

    /// Operations over the SmolLM2 fixture, a temp store and a Hub that
    /// cannot be reached.
    fn fixture_orchard(dir: &std::path::Path) -> orchard_core::ops::Orchard {
        let fixture = orchard_core::paths::fixture_models_dir()
            .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
            .join("SmolLM2-135M-Instruct-4bit");
        let mut catalog = orchard_core::catalog::Catalog::new();
        catalog
            .add_folder(&fixture.to_string_lossy())
            .expect("fixture: run `make setup`");
        let manager = orchard_core::ModelManager::new(catalog, Default::default());
        let store = orchard_store::Store::open(&dir.join("orchard.db")).expect("store");
        orchard_core::ops::Orchard::new(orchard_core::ops::OrchardParts {
            manager,
            store,
            hub: orchard_hub_client(),
            cache_root: Some(dir.join("hub")),
            secrets: None,
        })
    }

    fn orchard_hub_client() -> orchard_core::ops::HubClient {
        orchard_core::ops::HubClient::new("http://127.0.0.1:9", None).expect("client")
    }

    fn invoke(command: &str) -> Result<serde_json::Value, serde_json::Value> {
        let dir = tempfile::tempdir().expect("tmp");
        let (app, window) = app_window(server::HostedServer::default());
        app.state::<commands::AppOrchard>()
            .set(fixture_orchard(dir.path()));
        invoke_on(&window, command)
    }

    #[test]
    fn commands_say_why_when_the_services_did_not_start() {
        let (app, window) = app_window(server::HostedServer::default());
        app.state::<commands::AppOrchard>()
            .fail("the database is locked".into());
        let error = invoke_on(&window, "list_library").expect_err("no services");
        assert_eq!(error["code"], "internal", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("the database is locked")),
            "{error}"
        );
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
    fn every_operation_is_one_command_and_one_route() {
        let operations: Vec<&str> = orchard_core::ops::OPERATIONS
            .iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(
            commands::OPERATION_COMMANDS,
            operations.as_slice(),
            "the generated commands are not the operations"
        );
        let mut expected: Vec<&str> = operations
            .iter()
            .chain(commands::APP_ONLY_COMMANDS)
            .copied()
            .collect();
        let mut listed = commands::COMMANDS.to_vec();
        expected.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, expected, "command_names.rs is out of date");
        let routes = orchard_server::routes();
        for op in orchard_core::ops::OPERATIONS {
            let method = match op.kind {
                orchard_core::ops::OperationKind::Call => "POST",
                _ => "GET",
            };
            assert!(
                routes
                    .iter()
                    .any(|r| r.path == op.path && r.method == method && r.protected),
                "{} has no protected {method} {} route",
                op.name,
                op.path
            );
        }
    }

    #[test]
    fn every_command_is_registered() {
        let dir = tempfile::tempdir().expect("tmp");
        let (app, window) = app_window(server::HostedServer::default());
        app.state::<commands::AppOrchard>()
            .set(fixture_orchard(dir.path()));
        // restart_app would restart this test process.
        for command in commands::COMMANDS.iter().filter(|c| **c != "restart_app") {
            // Without arguments a registered command answers, or refuses for
            // want of its argument; an unknown one is never reached.
            match invoke_with(&window, command, serde_json::json!({})) {
                Ok(_) => {}
                Err(error) => assert!(
                    error.to_string().contains("missing required key"),
                    "{command}: {error}"
                ),
            }
        }
        let error =
            invoke_with(&window, "no_such_command", serde_json::json!({})).expect_err("unknown");
        assert!(
            !error.to_string().contains("missing required key"),
            "{error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_window_lists_and_loads_models_through_the_operations() {
        let dir = tempfile::tempdir().expect("tmp");
        let (app, window) = app_window(server::HostedServer::default());
        app.state::<commands::AppOrchard>()
            .set(fixture_orchard(dir.path()));
        let window = std::sync::Arc::new(window);

        let call = |command: &'static str, args: serde_json::Value| {
            let window = window.clone();
            tokio::task::spawn_blocking(move || invoke_with(&window, command, args))
        };
        let library = call("list_library", serde_json::json!({}))
            .await
            .expect("join")
            .expect("list_library answers");
        let entries = library.as_array().expect("a list");
        assert_eq!(entries.len(), 1, "{library}");
        assert_eq!(entries[0]["id"], "SmolLM2-135M-Instruct-4bit");
        assert_eq!(entries[0]["source"], "local");
        assert_eq!(entries[0]["loaded"], false);

        let loaded = call(
            "load_model",
            serde_json::json!({"input": {"model": "SmolLM2-135M-Instruct-4bit"}}),
        )
        .await
        .expect("join")
        .expect("load_model answers");
        assert_eq!(loaded["loaded"], true, "{loaded}");
        assert!(loaded["memory_bytes"].as_u64().expect("bytes") > 0);

        // A failure crosses as { code, message }.
        let error = call(
            "search_models",
            serde_json::json!({"input": {"text": "smol", "author": null, "sort": "downloads",
                "architecture": null, "bits": null, "capabilities": [], "fits_only": false}}),
        )
        .await
        .expect("join")
        .expect_err("the Hub cannot be reached");
        assert_eq!(error["code"], "hub_unreachable", "{error}");
        assert!(error["message"].is_string(), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_menubar_lists_a_loaded_model_and_unloads_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let (app, _window) = app_window(server::HostedServer::default());
        let orchard = fixture_orchard(dir.path());
        app.state::<commands::AppOrchard>().set(orchard.clone());
        let model = "SmolLM2-135M-Instruct-4bit";
        assert!(
            tray::current(app.handle())
                .iter()
                .any(|e| e.label == "No model loaded")
        );
        orchard.manager().load_now(model).await.expect("load");
        let menu = tray::current(app.handle());
        let unload = menu
            .iter()
            .find(|e| e.id == format!("unload:{model}"))
            .unwrap_or_else(|| panic!("no Unload item in {menu:?}"));
        assert!(unload.enabled);

        tray::on_menu(app.handle(), &unload.id);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !orchard.manager().loaded().is_empty() {
            assert!(std::time::Instant::now() < deadline, "still loaded");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            tray::current(app.handle())
                .iter()
                .any(|e| e.label == "No model loaded")
        );
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
