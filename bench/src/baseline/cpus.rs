//! Which CPUs the baseline's workers run on: the ones this process may use, one pinned worker
//! each.
//!
//! No `unsafe` here: `nix` wraps `sched_getaffinity` and `sched_setaffinity`, as it does for
//! the relay's choice of CPUs (`relay/src/sys/cpus.rs`).

use std::io;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The calling thread, for the `sched_*affinity` calls.
const THIS_THREAD: Pid = Pid::from_raw(0);

/// The CPUs this process may run on (taskset, cgroup cpusets and containers respected), in
/// ascending order.
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(THIS_THREAD)?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Pins the calling thread to `cpu` (`EINVAL` for a CPU past the kernel's set size, or one
/// this process may not use).
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(THIS_THREAD, &set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_may_run_only_there() {
        let allowed = allowed_cpus().expect("affinity");
        let last = *allowed.last().expect("some CPU is allowed");
        std::thread::spawn(move || {
            pin_to_cpu(last).expect("pin");
            assert_eq!(allowed_cpus().expect("affinity"), vec![last]);
        })
        .join()
        .expect("pinned thread");
    }

    #[test]
    fn a_cpu_past_the_set_is_refused() {
        let err = pin_to_cpu(CpuSet::count()).expect_err("past the set");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
