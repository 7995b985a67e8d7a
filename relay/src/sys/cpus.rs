//! The CPUs this process may run on, from which the relay picks one per core.
//!
//! No `unsafe` here: `nix` wraps `sched_getaffinity`, as it does for the baseline forwarder's
//! pinning (`bench/src/baseline/cpus.rs`).

use std::io;

use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

/// The CPUs this process may run on (respects taskset, cgroups' cpusets and containers), in
/// ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // Pid 0: the calling thread.
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().expect("affinity").is_empty());
    }
}
