//! Writing a stream socket's backlog: one `sendmsg` over many slices, without waiting.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// Most slices one `sendmsg` takes from us: enough to flush a backlog in one call, well under
/// the kernel's IOV_MAX of 1024.
pub const MAX_IOVECS: usize = 64;

/// Sends as much of `slices` as the socket takes now, in one `sendmsg` without waiting.
/// Returns the bytes written, or `WouldBlock` when the send buffer is full.
pub fn send_vectored_now(fd: RawFd, slices: &[&[u8]]) -> io::Result<usize> {
    let count = slices.len().min(MAX_IOVECS);
    // Only the iovecs used are written (a whole zeroed array was 1 KiB of stores per call).
    let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_IOVECS];
    for (slot, slice) in iov.iter_mut().zip(&slices[..count]) {
        slot.write(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    // SAFETY: zeroed msghdr is a valid "no address, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast::<libc::iovec>();
    msg.msg_iovlen = count;
    // SAFETY: the first `count` iovecs are initialised above; every one points into a slice
    // borrowed for the duration of the call, and the kernel only reads from them (sendmsg);
    // `msg` outlives the call.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
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
}
