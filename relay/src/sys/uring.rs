//! Whether the kernel lets this process use io_uring at all, asked at start-up
//! (`preflight.rs`) so that a refusal is reported with what to do about it.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Checks that the kernel lets this process create an io_uring (it may be compiled out,
/// disabled by `kernel.io_uring_disabled`, or blocked by a seccomp profile).
pub fn probe_io_uring() -> io::Result<()> {
    // io_uring_params is 120 bytes on every kernel that has io_uring; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) reads and writes exactly sizeof(struct io_uring_params) bytes
    // at the pointer, which is our 120-byte buffer; it returns a descriptor we close at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the ring descriptor just created and owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(())
}
