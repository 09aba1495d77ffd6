//! The menubar (tray) icon and its menu: the server's address (click copies
//! it), each loaded model with its memory and an Unload item, Open Orchard,
//! Settings, and Quit. The menu is rebuilt when what it shows changes.

use std::sync::Mutex;
use std::time::Duration;

use orchard_core::ops::{ErrorCode, OpError};
use serde::Serialize;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, MenuItemKind, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_clipboard_manager::ClipboardExt;

/// A monochrome template image: macOS tints it to match the menubar.
const TRAY_ICON: &[u8] = include_bytes!("../../icons/tray.png");

/// How often the menu checks whether what it shows changed.
const REFRESH: Duration = Duration::from_secs(2);

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// What the menu event carries back.
    pub id: String,
    pub label: String,
    pub enabled: bool,
}

/// What the menu shows, from the server's address and the loaded models
/// (name, bytes in memory). A pure function, so it is tested without a tray.
pub fn entries(address: Option<&str>, loaded: &[(String, u64)]) -> Vec<Entry> {
    let item = |id: String, label: String, enabled: bool| Entry { id, label, enabled };
    let mut entries = vec![match address {
        Some(address) => item(
            "copy-address".into(),
            format!("Serving at {address} (click to copy)"),
            true,
        ),
        None => item(
            "no-address".into(),
            "The API server is not running".into(),
            false,
        ),
    }];
    entries.push(item("separator".into(), String::new(), false));
    if loaded.is_empty() {
        entries.push(item("no-models".into(), "No model loaded".into(), false));
    }
    for (model, bytes) in loaded {
        entries.push(item(
            format!("model:{model}"),
            format!("{model} · {}", gigabytes(*bytes)),
            false,
        ));
        entries.push(item(
            format!("unload:{model}"),
            format!("Unload {model}"),
            true,
        ));
    }
    entries.push(item("separator".into(), String::new(), false));
    entries.push(item("open".into(), "Open Orchard".into(), true));
    entries.push(item("settings".into(), "Settings…".into(), true));
    entries.push(item("quit".into(), "Quit Orchard".into(), true));
    entries
}

/// Bytes for people: "1.2 GB", "76.3 MB".
fn gigabytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn build_menu<R: Runtime>(app: &AppHandle<R>, entries: &[Entry]) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    for entry in entries {
        if entry.id == "separator" {
            menu.append(&PredefinedMenuItem::separator(app)?)?;
            continue;
        }
        let accelerator = (entry.id == "quit").then_some("CmdOrCtrl+Q");
        menu.append(&MenuItem::with_id(
            app,
            &entry.id,
            &entry.label,
            entry.enabled,
            accelerator,
        )?)?;
    }
    Ok(menu)
}

/// What the menu shows now.
pub(crate) fn current<R: Runtime>(app: &AppHandle<R>) -> Vec<Entry> {
    let status = app.state::<crate::server::HostedServer>().peek_status();
    let address = status
        .url
        .as_deref()
        .map(|u| u.trim_end_matches("/v1").to_string());
    let loaded: Vec<(String, u64)> = app
        .state::<crate::commands::AppOrchard>()
        .ready()
        .map(|orchard| {
            orchard
                .manager()
                .loaded()
                .iter()
                .map(|m| (m.id.clone(), m.memory().total()))
                .collect()
        })
        .unwrap_or_default();
    entries(address.as_deref(), &loaded)
}

/// The menu the icon holds now.
struct Shown<R: Runtime>(Mutex<Menu<R>>);

impl<R: Runtime> Shown<R> {
    fn menu(&self) -> Menu<R> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Adds the menubar icon and keeps its menu current.
pub fn install<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let shown = current(app);
    let menu = build_menu(app, &shown)?;
    app.manage(Shown(Mutex::new(menu.clone())));
    let tray = TrayIconBuilder::with_id("orchard")
        .icon(Image::from_bytes(TRAY_ICON)?)
        .icon_as_template(true)
        .tooltip("Orchard")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .build(app)?;
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut shown = shown;
        loop {
            tokio::time::sleep(REFRESH).await;
            let now = current(&app);
            if now == shown {
                continue;
            }
            match build_menu(&app, &now) {
                Ok(menu) => {
                    if let Err(e) = tray.set_menu(Some(menu.clone())) {
                        tracing::warn!(error = %e, "cannot update the menubar menu");
                    }
                    *app.state::<Shown<R>>()
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = menu;
                    shown = now;
                }
                Err(e) => tracing::warn!(error = %e, "cannot build the menubar menu"),
            }
        }
    });
    Ok(())
}

/// The menu the icon holds, read back item by item (separators as
/// "separator"); empty before the icon is installed.
pub fn shown<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Vec<Entry>> {
    let Some(shown) = app.try_state::<Shown<R>>() else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for item in shown.menu().items()? {
        entries.push(match item {
            MenuItemKind::MenuItem(item) => Entry {
                id: item.id().0.clone(),
                label: item.text()?,
                enabled: item.is_enabled()?,
            },
            // The menu has no other kind of item.
            _ => Entry {
                id: "separator".into(),
                label: String::new(),
                enabled: false,
            },
        });
    }
    Ok(entries)
}

/// The `menubar` command: the menu as the icon shows it, so that the window
/// (and a test through WebDriver) can read it.
#[tauri::command]
pub async fn menubar<R: Runtime>(app: AppHandle<R>) -> Result<Vec<Entry>, OpError> {
    shown(&app).map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot read the menubar menu: {e}"),
        )
    })
}

/// The `menubar_select` command: does what a click on the menu's item `id`
/// does; only an enabled item of the menu shown now can be chosen.
#[tauri::command]
pub async fn menubar_select<R: Runtime>(app: AppHandle<R>, id: String) -> Result<(), OpError> {
    let entries = menubar(app.clone()).await?;
    if !entries.iter().any(|e| e.id == id && e.enabled) {
        return Err(OpError::new(
            ErrorCode::NotFound,
            format!("the menubar menu has no item {id:?} to choose now"),
        ));
    }
    on_menu(&app, &id);
    Ok(())
}

/// What a click on a menu item does.
pub fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    match id {
        "open" => show_main_window(app),
        "settings" => {
            show_main_window(app);
            if let Some(window) = app.get_webview_window("main")
                && let Err(e) = window.eval("window.location.hash = '#/settings'")
            {
                tracing::warn!(error = %e, "cannot open Settings");
            }
        }
        "quit" => crate::server::quit(app),
        "copy-address" => {
            let status = app.state::<crate::server::HostedServer>().peek_status();
            if let Some(url) = status.url
                && let Err(e) = app.clipboard().write_text(url.trim_end_matches("/v1"))
            {
                tracing::warn!(error = %e, "cannot copy the address");
            }
        }
        other => {
            if let Some(model) = other.strip_prefix("unload:") {
                let app = app.clone();
                let model = model.to_string();
                tauri::async_runtime::spawn(async move {
                    if let Some(orchard) = app.state::<crate::commands::AppOrchard>().ready() {
                        orchard.manager().unload(&model).await;
                        tracing::info!(%model, "unloaded from the menubar");
                    }
                });
            }
        }
    }
}

/// Brings the main window back, wherever it was hidden.
pub fn show_main_window<R: Runtime>(app: &AppHandle<R>) {
    let Some(window) = app.get_webview_window("main") else {
        tracing::warn!("no main window to show");
        return;
    };
    let shown = window
        .show()
        .and_then(|()| window.unminimize())
        .and_then(|()| window.set_focus());
    if let Err(e) = shown {
        tracing::warn!(error = %e, "could not show the main window");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.label.as_str()).collect()
    }

    #[test]
    fn the_menu_lists_the_address_each_loaded_model_and_an_unload_for_it() {
        let menu = entries(
            Some("http://127.0.0.1:10240"),
            &[("qwen".into(), 2_600_000_000), ("smol".into(), 76_300_000)],
        );
        assert_eq!(
            labels(&menu),
            [
                "Serving at http://127.0.0.1:10240 (click to copy)",
                "",
                "qwen · 2.6 GB",
                "Unload qwen",
                "smol · 76.3 MB",
                "Unload smol",
                "",
                "Open Orchard",
                "Settings…",
                "Quit Orchard",
            ]
        );
        let unload = menu
            .iter()
            .find(|e| e.label == "Unload smol")
            .expect("item");
        assert_eq!(unload.id, "unload:smol");
        assert!(unload.enabled);
    }

    #[test]
    fn without_a_server_or_models_the_menu_says_so() {
        let menu = entries(None, &[]);
        assert_eq!(menu[0].label, "The API server is not running");
        assert!(!menu[0].enabled);
        assert!(labels(&menu).contains(&"No model loaded"));
        assert!(!labels(&menu).iter().any(|l| l.starts_with("Unload")));
    }
}
