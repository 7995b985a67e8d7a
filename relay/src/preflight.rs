//! Start-up checks for what glommio needs from the kernel, with messages that say what to do.

use crate::sys;

/// Locked memory each executor registers for its io_uring buffers (glommio's `io_memory`).
/// glommio's own default is 10 MiB; the relay does no file I/O through registered buffers, so a
/// small pool keeps the locked-memory requirement within common default limits.
pub const IO_MEMORY: usize = 512 << 10;

/// Locked memory the relay needs for `cores` executors, with headroom for the rings.
pub fn memlock_needed(cores: usize) -> u64 {
    (cores * (IO_MEMORY + (256 << 10))) as u64
}

/// Why the relay cannot start on this machine.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "io_uring is not available ({0}). moose-relay runs on glommio, which needs io_uring \
         (Linux 5.8 or later). Check the sysctl kernel.io_uring_disabled (must be 0, or 1 with \
         this user in kernel.io_uring_group) and, in a container, a seccomp profile that allows \
         io_uring_setup, io_uring_enter and io_uring_register (see docs/operations.md)."
    )]
    NoIoUring(std::io::Error),
    #[error(
        "locked memory limit too low: RLIMIT_MEMLOCK is {have} KiB and cannot be raised, but \
         {cores} core(s) need {need} KiB. Raise it: `ulimit -l {need}` (or unlimited) in the \
         shell, LimitMEMLOCK= in the systemd unit, --ulimit memlock=-1 for docker, or use fewer \
         --cores (see docs/operations.md)."
    )]
    MemlockTooLow { have: u64, need: u64, cores: usize },
}

/// Checks io_uring and locked memory, raising the soft memlock limit to what is needed when the
/// hard limit allows it.
pub fn check(cores: usize) -> Result<(), PreflightError> {
    sys::probe_io_uring().map_err(PreflightError::NoIoUring)?;
    let need = memlock_needed(cores);
    let (soft, hard) = sys::memlock_limit().map_err(PreflightError::NoIoUring)?;
    if soft >= need {
        return Ok(());
    }
    if hard >= need && sys::set_memlock_soft(need, hard).is_ok() {
        return Ok(());
    }
    Err(PreflightError::MemlockTooLow {
        have: soft / 1024,
        need: need.div_ceil(1024),
        cores,
    })
}
