//! Health checks of an installation: each says what is wrong and how to fix it.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::paths;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but slower or less than it should.
    Warn,
    /// Orchard cannot work until this is fixed.
    Fail,
    /// Does not apply here (e.g. the fixtures outside a development checkout).
    Skip,
}

/// One check: what was looked at, what was found, and the fix when not `Ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// All checks, in the order a person would fix them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (warnings allowed).
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

/// Runs every check on this installation. Never panics: a broken part becomes
/// a failed check.
pub fn run() -> Report {
    run_with(
        paths::data_dir().as_deref(),
        paths::fixture_models_dir().as_deref(),
    )
}

/// Runs every check with the given data and fixture folders.
pub fn run_with(data: Option<&Path>, models: Option<&Path>) -> Report {
    // The compute check runs before the BLAS one: MLX loads BLAS on first use.
    let mut checks = vec![mlx_runtime(), compute()];
    checks.push(blas(&loaded_libraries()));
    checks.push(data_dir(data));
    checks.push(cpu_fast_path(data));
    checks.push(fixtures(models));
    Report { checks }
}

const SETUP_FIX: &str = "run `make setup` in the Orchard checkout";

fn mlx_runtime() -> Check {
    match orchard_engine::runtime_info() {
        Ok(info) if info.mlx_version == mlx_sys::MLX_VERSION => Check::ok(
            "mlx runtime",
            format!(
                "MLX {} ({} backend), computing on the {}",
                info.mlx_version, info.backend, info.device
            ),
        ),
        Ok(info) => Check::problem(
            "mlx runtime",
            Status::Fail,
            format!(
                "the loaded MLX is {}, but Orchard was built for {}",
                info.mlx_version,
                mlx_sys::MLX_VERSION
            ),
            format!("{SETUP_FIX}, then rebuild (cargo build)"),
        ),
        Err(e) => Check::problem("mlx runtime", Status::Fail, e.to_string(), SETUP_FIX),
    }
}

fn compute() -> Check {
    match orchard_engine::runtime::self_test() {
        Ok(()) => Check::ok(
            "compute",
            "a matrix product on the engine's device is exact",
        ),
        Err(e) => Check::problem("compute", Status::Fail, e.to_string(), SETUP_FIX),
    }
}

/// The shared libraries mapped into this process (Linux), to see which BLAS the
/// runtime really loaded. Empty elsewhere.
fn loaded_libraries() -> Vec<String> {
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libraries: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .map(str::to_string)
        .collect();
    libraries.dedup();
    libraries
}

fn blas(libraries: &[String]) -> Check {
    const NAME: &str = "blas";
    match mlx_sys::BACKEND {
        "metal" => return Check::ok(NAME, "Accelerate (macOS)"),
        "cuda" => return Check::skip(NAME, "the GPU does the matrix math (cuBLAS)"),
        _ => {}
    }
    let blas_libs: Vec<&String> = libraries
        .iter()
        .filter(|path| path.contains("blas"))
        .collect();
    if let Some(openblas) = blas_libs.iter().find(|path| path.contains("openblas")) {
        return Check::ok(NAME, format!("OpenBLAS ({openblas})"));
    }
    let fix =
        "install Debian's OpenBLAS (apt-get install libopenblas0-pthread), then run `make setup`";
    match blas_libs.first() {
        Some(reference) => Check::problem(
            NAME,
            Status::Warn,
            format!(
                "MLX uses the wheel's reference BLAS ({reference}): prompt processing is 20-30x slower"
            ),
            fix,
        ),
        None => Check::problem(NAME, Status::Warn, "no BLAS library is loaded", fix),
    }
}

fn data_dir(dir: Option<&Path>) -> Check {
    const NAME: &str = "data directory";
    let Some(dir) = dir else {
        return Check::problem(
            NAME,
            Status::Fail,
            "no home directory, and ORCHARD_HOME is not set",
            "set ORCHARD_HOME to a writable folder",
        );
    };
    let probe = dir.join(".orchard-doctor-probe");
    let writable = fs::create_dir_all(dir)
        .and_then(|()| fs::write(&probe, b"ok"))
        .and_then(|()| fs::remove_file(&probe));
    match writable {
        Ok(()) => Check::ok(NAME, dir.display().to_string()),
        Err(e) => Check::problem(
            NAME,
            Status::Fail,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "fix the permissions of {}, or set ORCHARD_HOME to a writable folder",
                dir.display()
            ),
        ),
    }
}

/// Whether quantized models run dequantized to float32 on this backend, as
/// the `cpu_fast_path` setting says (read from `orchard.db` when it exists).
fn cpu_fast_path(data: Option<&Path>) -> Check {
    const NAME: &str = "cpu fast path";
    if mlx_sys::BACKEND != "cpu" {
        return Check::skip(NAME, "the GPU runs quantized models as stored");
    }
    let setting = data
        .map(|dir| dir.join("orchard.db"))
        .filter(|db| db.is_file())
        .and_then(|db| orchard_store::Store::open(&db).ok())
        .and_then(|store| store.settings().ok())
        .unwrap_or_default()
        .cpu_fast_path;
    let detail = match setting.as_str() {
        "on" => "on: quantized models run dequantized to float32 (through BLAS)",
        "off" => "off: quantized models run on MLX's quantized CPU kernels (slower)",
        _ => {
            "auto: quantized models run dequantized to float32 when that fits in the memory budget"
        }
    };
    Check::ok(NAME, format!("{detail} (setting cpu_fast_path)"))
}

fn fixtures(models: Option<&Path>) -> Check {
    const NAME: &str = "model fixtures";
    let Some(models) = models else {
        return Check::skip(
            NAME,
            "not a development checkout (ORCHARD_DEPS_DIR is unset)",
        );
    };
    let missing: Vec<String> = paths::FIXTURE_MODELS
        .iter()
        .flat_map(|model| {
            ["config.json", "model.safetensors", "tokenizer.json"]
                .into_iter()
                .map(move |file| models.join(model).join(file))
        })
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    if missing.is_empty() {
        Check::ok(
            NAME,
            format!(
                "{} in {}",
                paths::FIXTURE_MODELS.join(", "),
                models.display()
            ),
        )
    } else {
        Check::problem(
            NAME,
            Status::Fail,
            format!("missing: {}", missing.join(", ")),
            SETUP_FIX,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_data_dir_is_created_and_ok() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nested/orchard");
        let check = data_dir(Some(&dir));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(dir.is_dir());
    }

    #[test]
    fn unusable_data_dir_fails_with_a_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"x").expect("write");
        let check = data_dir(Some(&file.join("orchard")));
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.expect("fix").contains("ORCHARD_HOME"));
    }

    #[test]
    fn missing_fixtures_name_the_files_and_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let check = fixtures(Some(tmp.path()));
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("SmolLM2-135M-Instruct-4bit"));
        assert!(check.detail.contains("model.safetensors"));
        assert_eq!(check.fix.as_deref(), Some(SETUP_FIX));
    }

    #[test]
    fn fixtures_are_skipped_outside_a_checkout() {
        assert_eq!(fixtures(None).status, Status::Skip);
    }

    #[test]
    fn reference_blas_is_a_warning_and_openblas_is_ok() {
        if mlx_sys::BACKEND != "cpu" {
            return;
        }
        let reference = vec!["/x/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0".to_string()];
        let check = blas(&reference);
        assert_eq!(check.status, Status::Warn);
        assert!(check.fix.expect("fix").contains("libopenblas0-pthread"));
        let openblas = vec!["/usr/lib/openblas-pthread/libopenblas.so.0".to_string()];
        assert_eq!(blas(&openblas).status, Status::Ok);
    }

    #[test]
    fn this_installation_is_healthy_and_uses_openblas() {
        // `make setup` provides everything, so the real checks must all pass here.
        let home = tempfile::tempdir().expect("tempdir");
        let report = run_with(Some(home.path()), paths::fixture_models_dir().as_deref());
        assert!(report.healthy(), "{report:#?}");
        if mlx_sys::BACKEND == "cpu" && cfg!(target_os = "linux") {
            let blas = report
                .checks
                .iter()
                .find(|c| c.name == "blas")
                .expect("blas");
            assert_eq!(blas.status, Status::Ok, "{blas:?}");
        }
    }
}
