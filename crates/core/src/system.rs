//! Machine and process figures for the memory budget and the gauges.

use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

/// Total RAM in bytes.
pub fn total_memory() -> u64 {
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    system.total_memory()
}

/// This process's resident memory in bytes (0 when it cannot be read).
pub fn process_memory() -> u64 {
    let Ok(pid) = sysinfo::get_current_pid() else {
        return 0;
    };
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    system.process(pid).map(|p| p.memory()).unwrap_or(0)
}

/// MLX's memory counters in bytes: (active, peak, cache).
pub fn mlx_memory() -> (u64, u64, u64) {
    let read =
        |f: fn() -> Result<usize, mlx_rs::error::Exception>| f().map(|v| v as u64).unwrap_or(0);
    (
        read(mlx_rs::memory::active_memory),
        read(mlx_rs::memory::peak_memory),
        read(mlx_rs::memory::cache_memory),
    )
}
