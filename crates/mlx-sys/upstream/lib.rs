//! Placeholder: this manifest only exists to fetch `mlx-sys` sources.
