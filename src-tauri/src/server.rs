//! The API server the app hosts: started with the window on the app's tokio
//! runtime, from the same settings and code as `orchard serve`. Its status is
//! kept for the window, which shows the URL and, once, a newly created key.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::{oneshot, watch};

/// What the window shows about the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatusView {
    pub state: ServerState,
    /// `http://HOST:PORT/v1` once running.
    pub url: Option<String>,
    pub api_key_required: bool,
    /// A key made on this start because none existed, in the first status
    /// read after it was made and never again (see [`HostedServer::take_status`]).
    pub new_api_key: Option<String>,
    /// Why the server is not running, when it failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Starting,
    Running,
    Failed,
}

/// The hosted server's status, managed by Tauri; only [`start`] writes it.
#[derive(Debug)]
pub struct HostedServer {
    status: Mutex<ServerStatusView>,
    /// How to stop the running server and see it stopped; None before it
    /// runs and after a drain began.
    running: Mutex<Option<Running>>,
    /// A quit has drained the server: the exit may go ahead.
    drained: AtomicBool,
}

#[derive(Debug)]
struct Running {
    /// Stops accepting requests; those in flight go on.
    stop: oneshot::Sender<()>,
    /// Becomes true once the server has stopped (its requests ended).
    stopped: watch::Receiver<bool>,
    /// How long requests in flight may take to finish on quit.
    grace: Duration,
    /// Its models, unloaded once the requests ended: their threads and MLX's
    /// memory must be gone before the process exits, or the exit handlers of
    /// MLX's libraries race them (a hang or a crash at quit).
    manager: orchard_core::ModelManager,
}

impl Default for HostedServer {
    fn default() -> Self {
        HostedServer {
            status: Mutex::new(ServerStatusView {
                state: ServerState::Starting,
                url: None,
                api_key_required: true,
                new_api_key: None,
                error: None,
            }),
            running: Mutex::new(None),
            drained: AtomicBool::new(false),
        }
    }
}

impl HostedServer {
    /// The status for the window. A newly created key is in the first answer
    /// after it was made and in no later one: it is handed over, then forgotten,
    /// so a page loaded later (or anything else that asks) cannot read it.
    pub fn take_status(&self) -> ServerStatusView {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let view = status.clone();
        status.new_api_key = None;
        view
    }

    /// The status without handing over a new key (for the menubar).
    pub fn peek_status(&self) -> ServerStatusView {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        status.new_api_key = None;
        status
    }

    pub(crate) fn set(&self, status: ServerStatusView) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Stops accepting requests and waits until those in flight end, at
    /// most the grace period (then they are cancelled as the process exits).
    pub async fn drain(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Running {
            stop,
            mut stopped,
            grace,
            manager,
        }) = running
        {
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "quitting: requests in flight may finish"
            );
            let _ = stop.send(());
            if tokio::time::timeout(grace, stopped.wait_for(|s| *s))
                .await
                .is_err()
            {
                tracing::warn!("grace period over; cancelling the requests still running");
            }
            for model in manager.loaded() {
                manager.unload(&model.id).await;
            }
        }
        self.drained.store(true, Ordering::SeqCst);
    }

    /// Whether a quit has drained the server.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::SeqCst)
    }
}

/// Quits the app the way `orchard serve` stops: the hosted server stops
/// accepting requests, those in flight finish (within the grace period),
/// then the app exits.
pub fn quit<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        app.state::<HostedServer>().drain().await;
        app.exit(0);
    });
}

/// Starts the server in the background. A failure (port taken, bad settings)
/// is logged and shown in the window; the app keeps running without it.
pub fn start<R: Runtime>(app: &AppHandle<R>) {
    app.manage(HostedServer::default());
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let failed = |message: String| {
            tracing::error!(error = %message, "the API server did not start");
            app.state::<HostedServer>().set(ServerStatusView {
                state: ServerState::Failed,
                url: None,
                api_key_required: true,
                new_api_key: None,
                error: Some(message),
            });
        };
        let store = match orchard_core::paths::open_store() {
            Ok(store) => store,
            Err(message) => {
                app.state::<crate::commands::AppOrchard>()
                    .fail(message.clone());
                return failed(message);
            }
        };
        let prepared =
            match orchard_server::prepare(store, orchard_server::LaunchOptions::default(), |_| {})
                .await
            {
                Ok(prepared) => prepared,
                Err(e) => {
                    app.state::<crate::commands::AppOrchard>()
                        .fail(e.to_string());
                    return failed(e.to_string());
                }
            };
        // The window's commands work from here, even if the port cannot be bound.
        app.state::<crate::commands::AppOrchard>()
            .set(prepared.orchard.clone());
        let launched = match prepared.bind().await {
            Ok(launched) => launched,
            Err(e) => return failed(e.to_string()),
        };
        let url = format!("http://{}/v1", launched.address);
        tracing::info!(%url, "API server listening");
        app.state::<HostedServer>().set(ServerStatusView {
            state: ServerState::Running,
            url: Some(url),
            api_key_required: launched.auth_required,
            new_api_key: launched.new_key.map(|k| k.secret),
            error: None,
        });
        let _reaper = launched.manager.spawn_idle_reaper();
        let (stop, stop_requested) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = watch::channel(false);
        *app.state::<HostedServer>()
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Running {
            stop,
            stopped,
            grace: Duration::from_secs(launched.settings.shutdown_grace_seconds),
            manager: launched.manager.clone(),
        });
        // Runs until a quit drains it, or the app exits and ends the runtime.
        let result = orchard_server::serve(launched.listener, launched.app, async {
            let _ = stop_requested.await;
        })
        .await;
        let _ = stopped_tx.send(true);
        if let Err(e) = result {
            failed(format!("the API server stopped: {e}"));
        }
    });
}
