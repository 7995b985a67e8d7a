//! The stop signals (SIGTERM, SIGINT), blocked in every thread and waited for by the main
//! thread, which runs the drain (`drain.rs`).

use std::io;

/// The stop signals, SIGTERM and SIGINT, blocked so that they can be waited for.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for StopSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignals(SIGTERM, SIGINT)")
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts from now on
/// (threads inherit the mask), so that the default action (death) never runs and
/// [`StopSignals::wait`] receives them instead. Call it before any other thread starts.
pub fn block_stop_signals() -> io::Result<StopSignals> {
    // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initialises it and sigaddset
    // adds valid signal numbers to the set we own.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointers are to our own `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    // SAFETY: pthread_sigmask reads the set we own and changes only this thread's mask; the
    // old mask is not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(StopSignals { set })
}

impl StopSignals {
    /// Waits up to `timeout` for SIGTERM or SIGINT; returns the signal's number, or `None`
    /// when none came (or the wait was interrupted).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: sigtimedwait reads the set and the timespec we own; the siginfo output is
        // not wanted (null is allowed).
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (signal > 0).then_some(signal)
    }
}
