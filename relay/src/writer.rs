//! The writer task of a TCP connection: drains its [`OutQueue`] into the socket.
//!
//! As many queued frames per `sendmsg` as the socket takes (one syscall for a backlog), and an
//! awaited glommio write only when the socket is full. Lines and VoRS members both use it.

use std::io;
use std::os::fd::RawFd;

use futures_lite::io::{AsyncWrite, AsyncWriteExt};

use crate::line::queue::OutQueue;
use crate::sys;

/// Writes what `out` holds until it is closed and empty, then closes the write side.
/// `on_written(frames, bytes)` is told of every completed write.
pub async fn drain(
    out: &OutQueue,
    fd: RawFd,
    mut writer: impl AsyncWrite + Unpin,
    on_written: impl Fn(usize, usize),
) -> io::Result<()> {
    while out.ready().await {
        let sent = out.with_front(sys::MAX_IOVECS, |slices| sys::send_vectored_now(fd, slices));
        let written = match sent {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let Some(rest) = out.front() else { continue };
                writer.write(&rest).await?
            }
            Err(e) => return Err(e),
        };
        let frames = out.consume(written);
        on_written(frames, written);
    }
    writer.close().await
}
