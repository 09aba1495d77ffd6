//! `orchard serve`: the OpenAI/Anthropic-compatible port, headless.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use orchard_core::catalog::Catalog;
use orchard_core::{ManagerOptions, ModelManager};
use orchard_server::{AuthConfig, ServerConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (default: the `host` setting, 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind; 0 picks a free one (default: the `port` setting, 10240).
    #[arg(long)]
    port: Option<u16>,
    /// A model folder or Hugging Face repo id to serve, loaded at start. Repeatable.
    #[arg(long = "model", value_name = "PATH_OR_ID")]
    models: Vec<String>,
    /// Accept this API key (besides the stored ones) for this run.
    #[arg(long, value_name = "KEY", conflicts_with = "no_auth")]
    api_key: Option<String>,
    /// Serve without API keys; refused unless bound to localhost.
    #[arg(long)]
    no_auth: bool,
}

pub fn run(args: ServeArgs) -> ExitCode {
    crate::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orchard serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(args));
    // Generations still running after the grace period are cancelled by dropping them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("orchard serve: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let store = crate::open_store()?;
    let settings = store.settings().map_err(|e| e.to_string())?;
    let host = args.host.unwrap_or(settings.host.clone());
    let port = args.port.unwrap_or(settings.port);
    let ip: IpAddr = host
        .parse()
        .or_else(|_| {
            if host == "localhost" {
                Ok(IpAddr::from([127, 0, 0, 1]))
            } else {
                Err(())
            }
        })
        .map_err(|()| {
            format!("--host {host:?} is not an IP address (use 127.0.0.1, ::1 or 0.0.0.0)")
        })?;

    let open = args.no_auth || !settings.require_api_key;
    if open && !ip.is_loopback() {
        return Err(format!(
            "refusing to serve without API keys on {host}: binding beyond localhost requires a key (drop --no-auth, or bind 127.0.0.1)"
        ));
    }
    let auth = if open {
        AuthConfig::open()
    } else {
        let extra: Vec<String> = args.api_key.iter().cloned().collect();
        if extra.is_empty() && !store.has_active_api_key().map_err(|e| e.to_string())? {
            let key = store.create_api_key("default").map_err(|e| e.to_string())?;
            println!(
                "Created API key {:?} (id {}); it is shown only this once:",
                key.name, key.id
            );
            println!("  {}", key.secret);
            println!("Manage keys with `orchard keys create|list|revoke`.");
        }
        AuthConfig::required(&extra)
    };

    let mut catalog = Catalog::new().with_hub_cache(Catalog::default_hub_cache());
    let mut startup = Vec::new();
    for model in &args.models {
        if std::path::Path::new(model).is_dir() {
            let entry = catalog.add_folder(model)?;
            startup.push(entry.id);
        } else if catalog.resolve(model).is_some() {
            startup.push(model.clone());
        } else {
            return Err(format!(
                "--model {model}: no such folder and no downloaded model with that id"
            ));
        }
    }
    let manager = ModelManager::new(catalog, ManagerOptions::from_settings(&settings));
    for name in &startup {
        println!("Loading {name} ...");
        let model = manager.load_now(name).await.map_err(|e| e.to_string())?;
        println!(
            "Loaded {} ({} MiB of weights)",
            model.id,
            model.entry.weight_bytes >> 20
        );
    }
    let _reaper = manager.spawn_idle_reaper();

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {host}:{port}: {e} (is another server using the port? try --port)"
            )
        })?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let config = ServerConfig {
        auth: auth.clone(),
        max_request_bytes: settings.max_request_bytes,
        extra_origins: Vec::new(),
    };
    let app = orchard_server::router(manager, store, config);
    println!("Orchard is serving on http://{address}/v1");
    println!(
        "{}",
        if auth.required {
            "API key required (Authorization: Bearer KEY or x-api-key: KEY)"
        } else {
            "No API key needed (localhost only)"
        }
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    };
    let mut server = tokio::spawn(orchard_server::serve(listener, app, shutdown));
    let grace = Duration::from_secs(settings.shutdown_grace_seconds);
    tokio::select! {
        result = &mut server => {
            return match result {
                Ok(Ok(())) => { println!("Stopped."); Ok(()) }
                Ok(Err(e)) => Err(format!("the server failed: {e}")),
                Err(e) => Err(format!("the server task failed: {e}")),
            };
        }
        _ = async { let _ = signalled_rx.await; } => {
            println!("Shutting down: requests in flight get up to {} s to finish.", grace.as_secs());
        }
    }
    match tokio::time::timeout(grace, server).await {
        Ok(_) => println!("Stopped."),
        Err(_) => println!("Grace period over; cancelling the requests still running."),
    }
    Ok(())
}

/// SIGINT or SIGTERM (Ctrl-C only where there are no Unix signals).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
