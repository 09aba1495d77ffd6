//! The menubar (tray) icon and its menu.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

/// A monochrome template image: macOS tints it to match the menubar.
const TRAY_ICON: &[u8] = include_bytes!("../../icons/tray.png");

/// Adds the menubar icon with its menu: Open Orchard, Quit Orchard.
pub fn install<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Orchard", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Orchard", true, Some("CmdOrCtrl+Q"))?;
    let menu = Menu::with_items(app, &[&open, &quit])?;
    TrayIconBuilder::with_id("orchard")
        .icon(Image::from_bytes(TRAY_ICON)?)
        .icon_as_template(true)
        .tooltip("Orchard")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_main_window(app),
            "quit" => crate::server::quit(app),
            _ => {}
        })
        .build(app)?;
    Ok(())
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
