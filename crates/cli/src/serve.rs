//! `orchard serve`: the OpenAI/Anthropic-compatible port, headless.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use orchard_server::LaunchOptions;

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
    orchard_core::logs::init();
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
    let store = orchard_core::paths::open_store()?;
    let options = LaunchOptions {
        host: args.host,
        port: args.port,
        models: args.models,
        api_key: args.api_key,
        no_auth: args.no_auth,
    };
    let launched = orchard_server::launch(store, options, |name| println!("Loading {name} ..."))
        .await
        .map_err(|e| e.to_string())?;
    for model in launched.manager.loaded() {
        println!(
            "Loaded {} ({} MiB of weights)",
            model.id,
            model.entry.weight_bytes >> 20
        );
    }
    if let Some(key) = &launched.new_key {
        println!(
            "Created API key {:?} (id {}); it is shown only this once:",
            key.name, key.id
        );
        println!("  {}", key.secret);
        println!("Manage keys with `orchard keys create|list|revoke`.");
    }
    let _reaper = launched.manager.spawn_idle_reaper();
    println!("Orchard is serving on http://{}/v1", launched.address);
    println!(
        "{}",
        if launched.auth_required {
            "API key required (Authorization: Bearer KEY or x-api-key: KEY)"
        } else {
            "No API key needed (localhost only)"
        }
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let mcp = launched.orchard.mcp().clone();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
        // MCP sessions end and MCP servers stop, so no stream holds the port open.
        mcp.shutdown().await;
    };
    let grace = Duration::from_secs(launched.settings.shutdown_grace_seconds);
    let mut server = tokio::spawn(orchard_server::serve(
        launched.listener,
        launched.app,
        shutdown,
    ));
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
