//! Descriptors handed between the main thread, the cores and glommio: wrapping owned sockets
//! in glommio's types, duplicating one to hand it over, shutting one down to wake its tasks,
//! resetting one that must not linger.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Wraps a listening TCP socket the main thread created in glommio's listener type.
pub fn glommio_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    // SAFETY: `fd` is an open, owned TCP socket in the listening state; ownership moves into the
    // glommio listener, which closes it on drop. No other owner remains.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a bound UDP socket the main thread created in glommio's socket type.
pub fn glommio_udp(fd: OwnedFd) -> glommio::net::UdpSocket {
    // SAFETY: `fd` is an open, owned UDP socket; ownership moves into the glommio socket.
    unsafe { glommio::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a connected TCP socket handed over from another core in glommio's stream type, owned by
/// the calling executor from now on.
pub fn glommio_stream(fd: OwnedFd) -> glommio::net::TcpStream {
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

/// Shuts a socket down both ways, waking any task blocked reading or writing it. Errors (the
/// peer already gone) are of no interest.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor has no memory effects; a stale descriptor only
    // yields EBADF or ENOTSOCK, which we ignore.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Shuts the reading side of a socket, waking a task blocked reading it while what is queued
/// can still be written.
pub fn shutdown_read(fd: RawFd) {
    // SAFETY: as for `shutdown`.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// Ends a TCP connection for good: whatever it still has unsent is discarded, the peer gets a
/// reset when the descriptor is closed (SO_LINGER with a zero timeout) instead of the kernel
/// keeping the bytes and retrying, and both directions are shut now, waking any task blocked
/// on the socket. For a connection cut because its peer stopped taking bytes: nothing of it
/// may stay, in the relay or in the kernel.
pub fn reset(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a valid, live `linger` value
    // and has no other memory effects; a stale descriptor only yields an error, ignored here
    // (the connection is being ended either way).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast::<libc::c_void>(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    shutdown(fd);
}

/// Fixes a TCP socket's send buffer at `bytes` (the kernel doubles it for its bookkeeping),
/// which also turns off the kernel's growing it up to `net.ipv4.tcp_wmem`'s maximum (4 MiB
/// by default). For connections that carry little: a peer that stops reading then pins that
/// much kernel memory, not megabytes, and the relay's own bounded queue behind it is where a
/// stall shows. Best effort: where the kernel refuses, the default stays.
pub fn limit_send_buffer(fd: RawFd, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid, live `c_int` and has
    // no other memory effects; an error (a stale descriptor) leaves the socket as it was.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
