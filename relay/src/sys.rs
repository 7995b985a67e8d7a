//! The one place where the relay talks to the kernel directly.
//!
//! Everything `unsafe` in the relay lives here, each block with the reason it is sound. The rest
//! of the crate calls these safe wrappers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Wraps a listening TCP socket the main thread created in glommio's listener type.
pub fn glommio_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned TCP socket in the listening state; ownership moves into the
    // glommio listener, which closes it on drop. No other owner remains.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a bound UDP socket the main thread created in glommio's socket type.
pub fn glommio_udp(fd: OwnedFd) -> glommio::net::UdpSocket {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned UDP socket; ownership moves into the glommio socket.
    unsafe { glommio::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a connected TCP socket handed over from another core in glommio's stream type, owned by
/// the calling executor from now on.
pub fn glommio_stream(fd: OwnedFd) -> glommio::net::TcpStream {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned, connected TCP socket; ownership moves into the stream.
    unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// Duplicates a socket so it can outlive the glommio stream that read its first bytes (the
/// stream is dropped on the accepting core, the duplicate travels to the line's owner core).
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a caller-owned open descriptor has no memory effects; the new
    // descriptor is checked for failure and then owned exclusively by the returned OwnedFd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Most slices one `sendmsg` takes from us: enough to flush a backlog in one call, well under
/// the kernel's IOV_MAX of 1024.
pub const MAX_IOVECS: usize = 64;

/// Sends as much of `slices` as the socket takes now, in one `sendmsg` without waiting.
/// Returns the bytes written, or `WouldBlock` when the send buffer is full.
pub fn send_vectored_now(fd: RawFd, slices: &[&[u8]]) -> io::Result<usize> {
    let count = slices.len().min(MAX_IOVECS);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    for (slot, slice) in iov.iter_mut().zip(&slices[..count]) {
        slot.iov_base = slice.as_ptr() as *mut libc::c_void;
        slot.iov_len = slice.len();
    }
    // SAFETY: zeroed msghdr is a valid "no address, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = count;
    // SAFETY: every iovec points into a slice borrowed for the duration of the call, and the
    // kernel only reads from them (sendmsg); `msg` outlives the call.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Shuts a socket down both ways, waking any task blocked reading or writing it. Errors (the
/// peer already gone) are of no interest.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor has no memory effects; a stale descriptor only
    // yields EBADF or ENOTSOCK, which we ignore.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// The soft and hard RLIMIT_MEMLOCK in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft RLIMIT_MEMLOCK to `soft` (must not exceed the hard limit).
pub fn set_memlock_soft(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

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

/// The CPUs this process may run on (respects taskset, cgroups' cpusets and containers).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity fills the struct we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 means this thread; the size matches the struct passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads the set for indices below its capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// The soft limit on open file descriptors.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn vectored_send_writes_slices_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let sent = send_vectored_now(client.as_raw_fd(), &[b"ab", b"", b"cde"]).expect("send");
        assert_eq!(sent, 5);
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"abcde");
    }

    #[test]
    fn full_socket_reports_would_block() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let chunk = vec![0u8; 1 << 16];
        let outcome = (0..10_000)
            .map(|_| send_vectored_now(client.as_raw_fd(), &[&chunk]))
            .find(|r| r.is_err())
            .expect("the send buffer fills up");
        assert_eq!(
            outcome.expect_err("would block").kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().expect("affinity").is_empty());
    }
}
