// The Tauri commands the app exposes. Included by build.rs, which generates an
// `allow-<name>` permission for each, and by the tests, which check that the
// window's capability grants every one of them.
pub const COMMANDS: &[&str] = &["runtime_info", "server_status"];
