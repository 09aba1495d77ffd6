//! Starting a server from the user's settings, the same way in `orchard serve`
//! and in the desktop app: resolve the address and the auth policy (creating
//! the first API key when there is none), build the catalog and the manager,
//! load the models asked for, and bind the port.

use std::net::{IpAddr, SocketAddr};

use orchard_core::catalog::Catalog;
use orchard_core::ops::Orchard;
use orchard_core::{ManagerOptions, ModelManager};
use orchard_store::{NewApiKey, Settings, Store};
use tokio::net::TcpListener;

use crate::{AuthConfig, ServerConfig};

/// What the caller overrides for this run; None keeps the setting.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Folders or Hugging Face repo ids to serve, loaded before the port opens.
    pub models: Vec<String>,
    /// A key accepted for this run besides the stored ones.
    pub api_key: Option<String>,
    /// Serve without keys (localhost only).
    pub no_auth: bool,
}

/// A server ready to run with [`crate::serve`].
#[derive(Debug)]
pub struct Launched {
    pub listener: TcpListener,
    pub app: axum::Router,
    pub address: SocketAddr,
    pub auth_required: bool,
    /// The key made because none existed: show it once.
    pub new_key: Option<NewApiKey>,
    pub manager: ModelManager,
    /// The window's operations over the same manager (the app's commands use it).
    pub orchard: Orchard,
    pub settings: Settings,
}

/// Everything but the port: the operations work from here on (the app's
/// window uses them even when the port cannot be bound).
#[derive(Debug)]
pub struct Prepared {
    pub orchard: Orchard,
    pub settings: Settings,
    ip: IpAddr,
    port: u16,
    auth: AuthConfig,
    new_key: Option<NewApiKey>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot listen on {address}: {source} (is another server using the port? choose another with --port or the `port` setting)"
    )]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] orchard_store::StoreError),
    #[error(transparent)]
    Model(#[from] orchard_core::CoreError),
}

/// How often running MCP servers are pinged.
const MCP_HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Prepares a server and binds its port; `on_loading` is told each model
/// name before it loads.
pub async fn launch(
    store: Store,
    options: LaunchOptions,
    on_loading: impl FnMut(&str),
) -> Result<Launched, LaunchError> {
    prepare(store, options, on_loading).await?.bind().await
}

/// Reads the settings, makes the first key, builds the catalog, manager and
/// operations and loads the models asked for; binds nothing.
pub async fn prepare(
    store: Store,
    options: LaunchOptions,
    mut on_loading: impl FnMut(&str),
) -> Result<Prepared, LaunchError> {
    let settings = store.settings()?;
    let host = options.host.unwrap_or_else(|| settings.host.clone());
    let port = options.port.unwrap_or(settings.port);
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| {
            LaunchError::Invalid(format!(
                "host {host:?} is not an IP address (use 127.0.0.1, ::1 or 0.0.0.0)"
            ))
        })?
    };

    let open = options.no_auth || !settings.require_api_key;
    if open && !ip.is_loopback() {
        return Err(LaunchError::Invalid(format!(
            "refusing to serve without API keys on {host}: binding beyond localhost requires a key (drop --no-auth, or bind 127.0.0.1)"
        )));
    }
    let mut new_key = None;
    let auth = if open {
        AuthConfig::open()
    } else {
        let extra: Vec<String> = options.api_key.into_iter().collect();
        if extra.is_empty() && !store.has_active_api_key()? {
            new_key = Some(store.create_api_key("default")?);
        }
        AuthConfig::required(&extra)
    };

    let mut catalog = Catalog::new().with_hub_cache(Catalog::default_hub_cache());
    for local in store.local_models()? {
        // A registered folder that moved or broke is skipped, not fatal.
        if let Err(e) = catalog.add_folder_as(&local.path, Some(&local.name)) {
            tracing::warn!(name = %local.name, error = %e, "skipping a registered model folder");
        }
    }
    let mut startup = Vec::new();
    for model in &options.models {
        if std::path::Path::new(model).is_dir() {
            let entry = catalog.add_folder(model).map_err(LaunchError::Invalid)?;
            startup.push(entry.id);
        } else if catalog.resolve(model).is_some() {
            startup.push(model.clone());
        } else {
            return Err(LaunchError::Invalid(format!(
                "--model {model}: no such folder and no downloaded model with that id"
            )));
        }
    }
    let manager = ModelManager::new(catalog, ManagerOptions::from_settings(&settings));
    for name in &startup {
        on_loading(name);
        manager.load_now(name).await?;
    }
    let orchard = Orchard::from_env(manager.clone(), store.clone()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the Hub is not usable; search and downloads will fail");
        Orchard::offline(manager, store)
    });
    Ok(Prepared {
        orchard,
        settings,
        ip,
        port,
        auth,
        new_key,
    })
}

impl Prepared {
    /// Binds the port and builds the router; interrupted downloads continue.
    pub async fn bind(self) -> Result<Launched, LaunchError> {
        let Prepared {
            orchard,
            settings,
            ip,
            port,
            auth,
            new_key,
        } = self;
        let address = SocketAddr::new(ip, port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| LaunchError::Bind {
                address: address.to_string(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| LaunchError::Bind {
            address: address.to_string(),
            source,
        })?;
        // Bound beyond loopback, clients call the address they reach it by.
        let mut extra_hosts = settings.allowed_hosts.clone();
        if !ip.is_loopback() && !ip.is_unspecified() {
            extra_hosts.push(match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            });
        }
        // Downloads a crash or quit left running continue in the background, now
        // that this server is sure to start.
        match orchard.downloads().map(|d| d.resume_interrupted()) {
            Ok(Ok(0)) => {}
            Ok(Ok(count)) => tracing::info!(count, "resuming interrupted downloads"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot resume interrupted downloads"),
            Err(e) => tracing::warn!(error = %e, "cannot resume interrupted downloads"),
        }
        let config = ServerConfig {
            auth: auth.clone(),
            max_request_bytes: settings.max_request_bytes,
            extra_hosts,
            extra_origins: settings.allowed_origins.clone(),
            mcp_max_tools: settings.mcp_max_tools,
            ..ServerConfig::default()
        };
        let manager = orchard.manager().clone();
        let app = crate::router_for(orchard.clone(), config);
        // The MCP servers that are running are pinged now and then: one that
        // stopped answering is dropped and started again on its next use.
        let mcp = orchard.mcp().clone();
        let closing = mcp.closing();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(MCP_HEALTH_EVERY) => mcp.check_health().await,
                    _ = closing.cancelled() => break,
                }
            }
        });
        Ok(Launched {
            listener,
            app,
            address,
            auth_required: auth.required,
            new_key,
            manager,
            orchard,
            settings,
        })
    }
}
