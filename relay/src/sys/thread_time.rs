//! The CPU time the calling thread has used, for budgets that are about a share of a core.
//!
//! No `unsafe` here: `nix` wraps `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`. Not in the vDSO, so
//! each reading is a system call (well under a microsecond): fine around a handshake's
//! message, not per packet.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// The CPU time this thread has run so far (user and system); `None` if the kernel will not
/// say, which Linux always does.
pub fn thread_cpu_time() -> Option<Duration> {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_s_cpu_time_grows_and_a_sleeping_one_s_barely() {
        let start = thread_cpu_time().expect("thread clock");
        let mut x = 0u64;
        let spin_until = std::time::Instant::now() + Duration::from_millis(20);
        while std::time::Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = thread_cpu_time().expect("thread clock") - start;
        assert!(busy > Duration::from_millis(1), "spinning used {busy:?}");
        let before_sleep = thread_cpu_time().expect("thread clock");
        std::thread::sleep(Duration::from_millis(50));
        let asleep = thread_cpu_time().expect("thread clock") - before_sleep;
        assert!(
            asleep < Duration::from_millis(25),
            "sleeping used {asleep:?}"
        );
    }
}
