//! A listening socket's backlog, looked at and taken from without glommio: how a core sheds
//! connections when descriptors run out (see `accept.rs`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Whether a connection waits in the backlog of the listening socket `listener` (or the
/// socket has an error to report), without waiting.
pub fn connection_waiting(listener: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own; timeout 0 never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

/// Accepts one connection already waiting on the listening socket `listener`, without
/// waiting: `None` when none is waiting. For the descriptor-exhaustion path only (see
/// `accept`), where no glommio accept is in flight on that socket: each core has its own
/// SO_REUSEPORT socket and runs one accept loop on it, so nothing can take the connection
/// between the check and the accept.
pub fn accept_waiting(listener: RawFd) -> io::Result<Option<OwnedFd>> {
    if !connection_waiting(listener) {
        return Ok(None);
    }
    // SAFETY: accept4 on a listening socket the caller owns; the peer address is not wanted
    // (null pointers are allowed). The result is checked and then owned by the OwnedFd.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn accept_waiting_takes_only_what_waits() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = listener.as_raw_fd();
        assert!(accept_waiting(fd).expect("poll").is_none(), "nothing waits");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let accepted = accept_waiting(fd).expect("accept").expect("one waits");
        drop(accepted);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).expect("clean close"), 0);
        assert!(accept_waiting(fd).expect("poll").is_none());
    }
}
