//! The build script of crates that only need libmlx's rpath (see rpath.rs).
include!("rpath.rs");

fn main() {
    link_mlx_rpath();
}
