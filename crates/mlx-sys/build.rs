//! Builds the MLX C API (mlx-c, the C layer under mlx-rs) against a prebuilt MLX
//! runtime taken from the official MLX wheels, instead of building MLX itself.
//!
//! Inputs:
//! - `MLX_VERSION` (beside this file): the one place the MLX version is pinned.
//! - `ORCHARD_MLX_BACKEND`: `cpu` (default on Linux), `cuda` (Linux + NVIDIA) or
//!   `metal` (the only choice on macOS).
//! - `ORCHARD_MLX_DIR`: where the wheel was installed with `pip install --target`;
//!   default `.deps/mlx/<backend>-<version>` in the workspace, which `make setup` fills.
//!
//! For crates that link a binary, it exports `DEP_MLX_RPATH` (the directory holding
//! libmlx) so their build scripts can set the rpath: cargo never passes a
//! dependency's link arguments on to the final binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

const MLX_VERSION: &str = include_str!("MLX_VERSION");

/// The MLX runtime wheels, one per backend.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    fn from_env(target_os: &str) -> Backend {
        let requested = env::var("ORCHARD_MLX_BACKEND").unwrap_or_default();
        let backend = match (requested.trim(), target_os) {
            ("", "macos") | ("metal", _) => Backend::Metal,
            ("" | "cpu", _) => Backend::Cpu,
            ("cuda", _) => Backend::Cuda,
            (other, _) => fail(&format!(
                "ORCHARD_MLX_BACKEND={other:?} is not a backend: use cpu, cuda or metal"
            )),
        };
        match (backend, target_os) {
            (Backend::Metal, "macos") | (Backend::Cpu | Backend::Cuda, "linux") => backend,
            _ => fail(&format!(
                "the {} backend does not exist for {target_os}: macOS uses metal, Linux uses cpu or cuda",
                backend.name()
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    /// The PyPI package that carries this backend's runtime.
    fn wheel(self) -> &'static str {
        match self {
            Backend::Cpu => "mlx-cpu",
            Backend::Cuda => "mlx-cuda-13",
            Backend::Metal => "mlx-metal",
        }
    }

    fn library(self) -> &'static str {
        match self {
            Backend::Metal => "libmlx.dylib",
            Backend::Cpu | Backend::Cuda => "libmlx.so",
        }
    }
}

fn main() {
    let version = MLX_VERSION.trim();
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let target_os = env_var("CARGO_CFG_TARGET_OS");
    let target_arch = env_var("CARGO_CFG_TARGET_ARCH");
    let backend = Backend::from_env(&target_os);

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=MLX_VERSION");
    println!("cargo:rerun-if-changed=upstream/Cargo.lock");
    println!("cargo:rerun-if-env-changed=ORCHARD_MLX_BACKEND");
    println!("cargo:rerun-if-env-changed=ORCHARD_MLX_DIR");

    let runtime = runtime_dir(&manifest_dir, backend, version);
    check_runtime(&runtime, backend, version);
    let lib_dir = runtime.join("mlx/lib");
    println!(
        "cargo:rerun-if-changed={}",
        lib_dir.join(backend.library()).display()
    );

    let mlx_c = prepare_mlx_c(&manifest_dir, &out_dir);
    // mlx-c declares float16_t/bfloat16_t only for ARM; mlx-rs uses them everywhere.
    let x86_half = target_arch != "aarch64";
    compile_mlx_c(&mlx_c, &runtime.join("mlx/include"), x86_half);
    generate_bindings(&mlx_c, &out_dir, x86_half);

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!("cargo:rustc-env=ORCHARD_MLX_BACKEND={}", backend.name());
    // Read by dependents' build scripts as DEP_MLX_RPATH / DEP_MLX_ROOT.
    println!("cargo:rpath={}", lib_dir.display());
    println!("cargo:root={}", runtime.display());
}

fn runtime_dir(manifest_dir: &Path, backend: Backend, version: &str) -> PathBuf {
    match env::var_os("ORCHARD_MLX_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir
            .join("../../.deps/mlx")
            .join(format!("{}-{version}", backend.name())),
    }
}

/// Stops the build with the exact install command when the runtime is missing
/// or of another version: a mismatch fails deep inside mlx-c otherwise.
fn check_runtime(runtime: &Path, backend: Backend, version: &str) {
    let install = format!(
        "run `make setup` in the workspace, or install it by hand:\n    \
         python3 -m pip install --no-deps --target {} {}=={version}",
        runtime.display(),
        backend.wheel()
    );
    let library = runtime.join("mlx/lib").join(backend.library());
    if !library.is_file() || !runtime.join("mlx/include/mlx/mlx.h").is_file() {
        fail(&format!(
            "the MLX runtime {version} ({} backend) is not installed: {} is missing.\n  To fix it, {install}",
            backend.name(),
            library.display()
        ));
    }
    let dist_info = runtime.join(format!(
        "{}-{version}.dist-info",
        backend.wheel().replace('-', "_")
    ));
    if !dist_info.is_dir() {
        fail(&format!(
            "the MLX runtime in {} is not version {version} of {} (no {}).\n  To fix it, delete that folder and {install}",
            runtime.display(),
            backend.wheel(),
            dist_info.display()
        ));
    }
}

/// Locates mlx-c inside crates.io's `mlx-sys` package (fetched through the
/// `upstream` manifest) and copies it to OUT_DIR with two portability fixes.
fn prepare_mlx_c(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    let source = upstream_mlx_c(&manifest_dir.join("upstream/Cargo.toml"));
    let copy = out_dir.join("mlx-c");
    if copy.exists() {
        fs::remove_dir_all(&copy).unwrap_or_else(|e| fail(&format!("cleaning {copy:?}: {e}")));
    }
    copy_tree(&source.join("mlx"), &copy.join("mlx"));
    fs::copy(source.join("CMakeLists.txt"), copy.join("CMakeLists.txt"))
        .unwrap_or_else(|e| fail(&format!("copying mlx-c's CMakeLists.txt: {e}")));
    replace_std_format(&copy.join("mlx/c/private/io.h"));
    declare_x86_half_types(&copy.join("mlx/c/half.h"));
    copy
}

fn upstream_mlx_c(manifest: &Path) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .unwrap_or_else(|e| fail(&format!("running `cargo metadata` for mlx-c sources: {e}")));
    if !output.status.success() {
        fail(&format!(
            "`cargo metadata --manifest-path {}` could not fetch the mlx-c sources:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| fail(&format!("parsing `cargo metadata` output: {e}")));
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let upstream = packages
        .iter()
        .find(|p| p["name"] == "mlx-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| fail("`cargo metadata` listed no mlx-sys package"));
    let root = Path::new(upstream)
        .parent()
        .map(|dir| dir.join("src/mlx-c"))
        .unwrap_or_else(|| fail("mlx-sys manifest path has no parent"));
    if !root.join("CMakeLists.txt").is_file() {
        fail(&format!("no mlx-c sources in {}", root.display()));
    }
    root
}

/// GCC 12 (Debian 12) has no `<format>`; io.h uses `std::format` only to build
/// error messages from `{}` placeholders, which a stream does as well.
fn replace_std_format(io_h: &Path) {
    const SHIM: &str = r#"#include <sstream>
#include <string>
namespace orchard_mlxc {
inline void format_into(std::ostringstream& out, const char* fmt) { out << fmt; }
template <class T, class... Rest>
void format_into(std::ostringstream& out, const char* fmt, const T& value, const Rest&... rest) {
  for (; *fmt; ++fmt) {
    if (fmt[0] == '{' && fmt[1] == '}') {
      out << value;
      format_into(out, fmt + 2, rest...);
      return;
    }
    out << *fmt;
  }
}
template <class... Args>
std::string format(const char* fmt, const Args&... args) {
  std::ostringstream out;
  format_into(out, fmt, args...);
  return out.str();
}
} // namespace orchard_mlxc
"#;
    let text = read(io_h);
    let Some(at) = text.find("#include") else {
        fail(&format!(
            "{} has no #include to put the shim before",
            io_h.display()
        ));
    };
    let patched = format!(
        "{}{SHIM}{}",
        &text[..at],
        text[at..].replace("std::format(", "orchard_mlxc::format(")
    );
    write(io_h, &patched);
}

/// Declares the half types as 16-bit storage when `ORCHARD_X86_HALF` is defined.
/// MLX only reinterprets their bits, so a `uint16_t` (or clang's `__fp16`, which
/// bindgen turns into `__BindgenFloat16(u16)` as mlx-rs expects) is exact.
fn declare_x86_half_types(half_h: &Path) {
    const DECLS: &str = r#"#if defined(ORCHARD_X86_HALF) && !defined(HAS_FLOAT16)
#define HAS_FLOAT16
#include <stdint.h>
#if defined(__clang__)
typedef __fp16 float16_t;
#else
typedef uint16_t float16_t;
#endif
#endif
#if defined(ORCHARD_X86_HALF) && !defined(HAS_BFLOAT16)
#define HAS_BFLOAT16
#include <stdint.h>
typedef uint16_t bfloat16_t;
#endif
"#;
    let text = read(half_h);
    let Some(at) = text.rfind("#ifdef __cplusplus") else {
        fail(&format!(
            "{} changed shape: no closing #ifdef __cplusplus",
            half_h.display()
        ));
    };
    write(half_h, &format!("{}{DECLS}{}", &text[..at], &text[at..]));
}

/// Compiles the translation units that mlx-c's CMakeLists.txt lists, as CMake
/// would in Release mode; no CMake is needed (the CUDA wheel's CMake config
/// would also demand nvcc).
fn compile_mlx_c(mlx_c: &Path, mlx_include: &Path, x86_half: bool) {
    let cmake = read(&mlx_c.join("CMakeLists.txt"));
    let sources: Vec<PathBuf> = cmake
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("${CMAKE_CURRENT_LIST_DIR}/"))
        .map(|rel| rel.trim_end_matches(')'))
        .filter(|rel| rel.ends_with(".cpp"))
        .map(|rel| mlx_c.join(rel))
        .collect();
    if sources.len() < 20 {
        fail(&format!(
            "found only {} mlx-c sources in its CMakeLists.txt; its layout changed",
            sources.len()
        ));
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .opt_level(3)
        .debug(false)
        .pic(true)
        .warnings(false)
        .define("NDEBUG", None)
        .include(mlx_c)
        .include(mlx_include)
        .files(&sources);
    if x86_half {
        build.define("ORCHARD_X86_HALF", None);
    }
    build.compile("mlxc");
}

fn generate_bindings(mlx_c: &Path, out_dir: &Path, x86_half: bool) {
    let mut headers: Vec<PathBuf> = fs::read_dir(mlx_c.join("mlx/c"))
        .unwrap_or_else(|e| fail(&format!("listing mlx-c headers: {e}")))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "h"))
        .collect();
    headers.sort();
    // The same settings as upstream mlx-sys, so that mlx-rs sees the same types.
    let mut builder = bindgen::Builder::default()
        .rust_target(
            "1.73.0"
                .parse()
                .unwrap_or_else(|_| fail("bindgen rejected rust target 1.73.0")),
        )
        .clang_arg(format!("-I{}", mlx_c.display()))
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    if x86_half {
        builder = builder.clang_arg("-DORCHARD_X86_HALF");
    }
    for header in &headers {
        builder = builder.header(header.to_string_lossy());
    }
    builder
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "generating MLX bindings (is libclang-dev installed?): {e}"
            ))
        })
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("writing bindings.rs: {e}")));
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| fail(&format!("creating {to:?}: {e}")));
    let entries = fs::read_dir(from).unwrap_or_else(|e| fail(&format!("reading {from:?}: {e}")));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail(&format!("reading {from:?}: {e}")));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| fail(&format!("copying {:?}: {e}", entry.path())));
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("reading {}: {e}", path.display())))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())))
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

/// Stops the build with a message cargo shows as is (a panic would add a backtrace).
fn fail(message: &str) -> ! {
    eprintln!("\nerror: mlx-sys: {message}\n");
    exit(1)
}
