//! Generates the Tauri context (config, permissions) and sets libmlx's rpath.

include!("../crates/mlx-sys/link/rpath.rs");
include!("src/command_names.rs");

fn main() {
    link_mlx_rpath();
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    let attributes = tauri_build::Attributes::new().app_manifest(manifest);
    if let Err(e) = tauri_build::try_build(attributes) {
        eprintln!("\nerror: orchard-desktop: {e:#}\n");
        std::process::exit(1);
    }
}
