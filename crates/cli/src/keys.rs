//! `orchard keys`: API keys for the local port.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; its secret is printed once.
    Create {
        /// A name to tell the key apart (the app or machine that uses it).
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (their first characters only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke { id: i64 },
}

pub fn run(command: KeysCommand) -> ExitCode {
    match keys(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("orchard keys: {message}");
            ExitCode::FAILURE
        }
    }
}

fn keys(command: KeysCommand) -> Result<(), String> {
    let store = orchard_core::paths::open_store()?;
    match command {
        KeysCommand::Create { name } => {
            let key = store.create_api_key(&name).map_err(|e| e.to_string())?;
            println!("{}", key.secret);
            eprintln!(
                "Created key {:?} (id {}). Copy it now: it is not shown again.",
                key.name, key.id
            );
        }
        KeysCommand::List { json } => {
            let keys = store.list_api_keys().map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&keys).map_err(|e| e.to_string())?
                );
            } else if keys.is_empty() {
                println!("No API keys. `orchard keys create` makes one.");
            } else {
                println!(
                    "{:<4} {:<20} {:<16} {:<21} {:<21} status",
                    "id", "name", "key", "created", "last used"
                );
                for key in keys {
                    println!(
                        "{:<4} {:<20} {:<16} {:<21} {:<21} {}",
                        key.id,
                        key.name,
                        key.prefix,
                        key.created_at,
                        key.last_used_at.as_deref().unwrap_or("never"),
                        if key.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            store.revoke_api_key(id).map_err(|e| e.to_string())?;
            println!("Revoked key {id}.");
        }
    }
    Ok(())
}
