//! The Tauri commands: thin adapters over `orchard-core`. The window's
//! operations are generated from [`orchard_core::operations!`], one command
//! per operation calling the `orchard_core::ops` function of the same name,
//! as the management API's routes do; a failure reaches the page as
//! `{ code, message }`. A few commands exist only in the app
//! (`APP_ONLY_COMMANDS`): the hosted server's status, revealing a model's
//! folder, launch at login, restart, and the menubar menu (in `tray`).

use orchard_core::ops::{self, ErrorCode, OpError, Orchard};
use tauri::ipc::Channel;
use tokio::sync::SetOnce;

include!("command_names.rs");

/// The operations' context, set once the app's services have started (or
/// failed to); commands called before then wait for it.
#[derive(Debug, Default)]
pub struct AppOrchard(SetOnce<Result<Orchard, String>>);

impl AppOrchard {
    pub fn set(&self, orchard: Orchard) {
        self.settle(Ok(orchard));
    }

    /// The services could not start: every command says why.
    pub fn fail(&self, message: String) {
        self.settle(Err(message));
    }

    fn settle(&self, outcome: Result<Orchard, String>) {
        if self.0.set(outcome).is_err() {
            tracing::warn!("Orchard's services were started twice; the first ones stay");
        }
    }

    /// The services, if they have started.
    pub fn ready(&self) -> Option<&Orchard> {
        self.0.get().and_then(|r| r.as_ref().ok())
    }

    async fn get(&self) -> Result<&Orchard, OpError> {
        self.0.wait().await.as_ref().map_err(|message| {
            OpError::new(
                ErrorCode::Internal,
                format!("Orchard's services did not start: {message}"),
            )
        })
    }
}

macro_rules! operation_commands {
    (
        reads { $($read:ident $read_path:literal -> $read_out:ty;)* }
        calls { $($call:ident $call_path:literal ($call_in:ty) -> $call_out:ty;)* }
        streams { $($stream:ident $stream_path:literal -> $event:ty;)* }
    ) => {
        /// The commands generated from the operations, by name.
        pub const OPERATION_COMMANDS: &[&str] = &[
            $(stringify!($read),)* $(stringify!($call),)* $(stringify!($stream),)*
        ];

        $(
            #[tauri::command]
            pub async fn $read(
                orchard: tauri::State<'_, AppOrchard>,
            ) -> Result<$read_out, OpError> {
                tracing::debug!(command = stringify!($read), "command served");
                ops::$read(orchard.get().await?).await
            }
        )*
        $(
            #[tauri::command]
            pub async fn $call(
                orchard: tauri::State<'_, AppOrchard>,
                input: $call_in,
            ) -> Result<$call_out, OpError> {
                tracing::debug!(command = stringify!($call), "command served");
                ops::$call(orchard.get().await?, input).await
            }
        )*
        $(
            #[tauri::command]
            pub async fn $stream(
                orchard: tauri::State<'_, AppOrchard>,
                channel: Channel<$event>,
            ) -> Result<(), OpError> {
                forward(orchard.get().await?.$stream()?, channel);
                Ok(())
            }
        )*
    };
}

orchard_core::operations!(operation_commands);

/// Sends a stream operation's events on `channel` until the stream ends or
/// the page drops the channel (a reload, a closed window).
fn forward<E: ops::Events>(mut events: E, channel: Channel<E::Event>)
where
    E::Event: tauri::ipc::IpcResponse,
{
    tauri::async_runtime::spawn(async move {
        while let Some(event) = events.next().await {
            if channel.send(event).is_err() {
                break;
            }
        }
    });
}

/// The API server the app hosts: starting, running (URL, whether a key is
/// needed, a key made on this first run) or failed (why). The new key comes
/// in one answer only; the window keeps it on screen from there.
#[tauri::command]
pub async fn server_status(
    server: tauri::State<'_, crate::server::HostedServer>,
) -> Result<crate::server::ServerStatusView, OpError> {
    Ok(server.take_status())
}

/// Shows a library model's folder in Finder (the file manager on Linux).
#[tauri::command]
pub async fn reveal_model(
    orchard: tauri::State<'_, AppOrchard>,
    input: ops::ModelRequest,
) -> Result<(), OpError> {
    let library = ops::list_library(orchard.get().await?).await?;
    let model = library
        .iter()
        .find(|m| m.id == input.model.trim())
        .ok_or_else(|| {
            OpError::new(
                ErrorCode::NotFound,
                format!("no model called {:?} is in the library", input.model),
            )
        })?;
    reveal(std::path::Path::new(&model.path))
}

/// macOS: `open -R` selects the folder in Finder. Elsewhere the folder opens
/// in the desktop's file manager. (Checked by hand on a Mac; the Linux path
/// runs in CI only as far as starting `xdg-open`.)
fn reveal(path: &std::path::Path) -> Result<(), OpError> {
    let mut command = if cfg!(target_os = "macos") {
        let mut c = std::process::Command::new("open");
        c.arg("-R").arg(path);
        c
    } else {
        let mut c = std::process::Command::new("xdg-open");
        c.arg(path);
        c
    };
    command.spawn().map(|_| ()).map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot open {}: {e}", path.display()),
        )
    })
}

/// Whether Orchard starts when the user logs in.
#[tauri::command]
pub async fn launch_at_login<R: tauri::Runtime>(app: tauri::AppHandle<R>) -> Result<bool, OpError> {
    use tauri_plugin_autostart::ManagerExt;
    app.autolaunch().is_enabled().map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot read the login item: {e}"),
        )
    })
}

/// Starts Orchard at login (a LaunchAgent on macOS, an autostart entry on
/// Linux), or stops doing so; answers the new state.
#[tauri::command]
pub async fn set_launch_at_login<R: tauri::Runtime>(
    app: tauri::AppHandle<R>,
    enabled: bool,
) -> Result<bool, OpError> {
    use tauri_plugin_autostart::ManagerExt;
    let manager = app.autolaunch();
    // The login item's writer makes ~/.config/autostart but not ~/.config.
    #[cfg(target_os = "linux")]
    if enabled && let Some(home) = std::env::var_os("HOME") {
        let _ = std::fs::create_dir_all(std::path::Path::new(&home).join(".config"));
    }
    let changed = if enabled {
        manager.enable()
    } else {
        manager.disable()
    };
    changed.map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot change the login item: {e}"),
        )
    })?;
    manager.is_enabled().map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot read the login item: {e}"),
        )
    })
}

/// Restarts Orchard so that changed server settings apply: the hosted server
/// drains first, as on Quit.
#[tauri::command]
pub async fn restart_app<R: tauri::Runtime>(app: tauri::AppHandle<R>) -> Result<(), OpError> {
    use tauri::Manager;
    app.state::<crate::server::HostedServer>().drain().await;
    app.restart();
}
