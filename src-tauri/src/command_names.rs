// The Tauri commands the app exposes: one per operation of
// `orchard_core::operations!` (a test checks that these are the same), and
// the app's own (APP_ONLY_COMMANDS). Included by build.rs,
// which generates an `allow-<name>` permission for each, and by the tests,
// which check that the window's capability grants every one of them.
pub const COMMANDS: &[&str] = &[
    "runtime_info",
    "list_downloads",
    "list_library",
    "get_settings",
    "list_servers",
    "list_keys",
    "list_profiles",
    "search_models",
    "model_details",
    "start_download",
    "pause_download",
    "resume_download",
    "cancel_download",
    "load_model",
    "unload_model",
    "delete_model",
    "add_folder",
    "set_hf_token",
    "update_settings",
    "start_server",
    "stop_server",
    "restart_server",
    "create_key",
    "revoke_key",
    "create_profile",
    "update_profile",
    "delete_profile",
    "download_events",
    "server_events",
    "server_status",
    "reveal_model",
    "launch_at_login",
    "set_launch_at_login",
    "restart_app",
];

/// The commands that are the app's own, not operations.
#[allow(dead_code)]
pub const APP_ONLY_COMMANDS: &[&str] = &[
    "server_status",
    "reveal_model",
    "launch_at_login",
    "set_launch_at_login",
    "restart_app",
];
