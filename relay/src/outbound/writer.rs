//! The writer task of a TCP connection: drains its [`OutQueue`] into the socket.
//!
//! As many queued messages per `sendmsg` as the socket takes (one syscall for a backlog), and an
//! awaited glommio write only when the socket is full. Lines and VoRS members both use it.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use futures_lite::io::{AsyncWrite, AsyncWriteExt};

use super::queue::OutQueue;
use crate::stats::LatencyHistogram;
use crate::sys;

/// Writes what `out` holds until it is closed and empty, then closes the write side.
/// `on_written(messages, bytes)` is told of every completed write. With `latency`, each
/// forwarded message's time from receive to the send call that completed it is recorded there:
/// one clock read per send call that completes such a message.
pub(crate) async fn drain(
    out: &OutQueue,
    fd: RawFd,
    mut writer: impl AsyncWrite + Unpin,
    on_written: impl Fn(usize, usize),
    latency: Option<&LatencyHistogram>,
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
        let messages = match latency {
            Some(histogram) => {
                let mut sent_at = None;
                out.consume_with(written, |received| {
                    let now = *sent_at.get_or_insert_with(Instant::now);
                    histogram.record(now.saturating_duration_since(received));
                })
            }
            None => out.consume(written),
        };
        on_written(messages, written);
    }
    writer.close().await
}
