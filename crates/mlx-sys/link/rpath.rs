// Shared by the build scripts of every crate whose binaries or tests load libmlx.
// Such a crate depends on `mlx-sys` directly, so cargo hands it DEP_MLX_RPATH
// (the folder holding libmlx, printed by crates/mlx-sys/build.rs); cargo never
// passes a dependency's link arguments on to a final binary by itself.
// A macOS app bundle will instead carry libmlx in Contents/Frameworks.

/// Embeds the MLX runtime folder as an rpath in this crate's binaries and tests.
fn link_mlx_rpath() {
    match std::env::var("DEP_MLX_RPATH") {
        Ok(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        Err(_) => println!("cargo:warning=no DEP_MLX_RPATH: does this crate depend on mlx-sys directly?"),
    }
}
