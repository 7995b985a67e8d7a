//! Writing to a TCP connection: the writer task that drains a connection's [`OutQueue`] into
//! its socket, and the bounded write of a one-off answer (an HTTP response, a refusal).
//!
//! As many queued messages per `sendmsg` as the socket takes (one syscall for a backlog), and an
//! awaited glommio write only when the socket is full. Lines and VoRS members both use it.
//!
//! Every wait on a full socket is bounded by the write-stall limit (`--write-stall-timeout`): a
//! peer whose socket takes no byte for that long is cut, and so is one whose queue was cut while
//! the writer waited. A cut connection is reset ([`sys::reset`]): nothing of it stays in the
//! relay or in the kernel. (glommio's own per-stream write timeout is not used: a write blocked
//! on a peer with a zero window was seen still waiting long after it.)

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use tracing::debug;

use super::queue::{Cut, OutQueue};
use crate::stats::{CoreStats, LatencyHistogram};
use crate::sys;

/// How a writer task ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The queue was closed and everything in it written; the write side is shut.
    Drained,
    /// The queue was cut (or the socket stalled, which cuts it).
    Cut(Cut),
    /// The socket failed (the peer is gone).
    Failed(io::Error),
}

/// What ended a wait on a full socket.
enum Waited {
    Wrote(usize),
    Failed(io::Error),
    Stalled,
    Cut(Cut),
}

/// Writes what `out` holds until it is closed and empty, then closes the write side; stops at
/// once when `out` is cut or the socket takes no byte for `stall`. `on_written(messages,
/// bytes)` is told of every completed write. With `latency`, each forwarded message's time
/// from receive to the send call that completed it is recorded there: one clock read per send
/// call that completes such a message.
///
/// `fd` is `writer`'s socket. `writer` is borrowed, not taken, so that the caller holds the
/// socket open until it has [`settle`]d: a descriptor number outlived by its socket is soon
/// another connection's, which a late reset would cut.
pub(crate) async fn drain(
    out: &OutQueue,
    fd: RawFd,
    writer: &mut (impl AsyncWrite + Unpin),
    stall: Duration,
    on_written: impl Fn(usize, usize),
    latency: Option<&LatencyHistogram>,
) -> Ended {
    while out.ready().await {
        let sent = out.with_front(sys::MAX_IOVECS, |slices| sys::send_vectored_now(fd, slices));
        let written = match sent {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let Some(rest) = out.front() else { continue };
                match wait_for_socket(out, writer, &rest, stall).await {
                    Waited::Wrote(n) => n,
                    Waited::Failed(e) => return Ended::Failed(e),
                    Waited::Stalled => {
                        out.cut(Cut::WriteStall);
                        return Ended::Cut(Cut::WriteStall);
                    }
                    Waited::Cut(reason) => return Ended::Cut(reason),
                }
            }
            Err(e) => return Ended::Failed(e),
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
    if let Some(reason) = out.cut_reason() {
        return Ended::Cut(reason);
    }
    match writer.close().await {
        Ok(()) => Ended::Drained,
        Err(e) => Ended::Failed(e),
    }
}

/// Waits until the socket takes some of `rest`, the queue is cut, or `stall` passes.
async fn wait_for_socket(
    out: &OutQueue,
    writer: &mut (impl AsyncWrite + Unpin),
    rest: &[u8],
    stall: Duration,
) -> Waited {
    let write = async {
        match writer.write(rest).await {
            Ok(n) => Waited::Wrote(n),
            Err(e) => Waited::Failed(e),
        }
    };
    let cut = async { Waited::Cut(out.cut_off().await) };
    let stalled = async {
        glommio::timer::sleep(stall).await;
        Waited::Stalled
    };
    futures_lite::future::or(write, futures_lite::future::or(cut, stalled)).await
}

/// After a writer task ended: a connection cut or failed is reset (its socket shut both ways,
/// which also wakes its reader), and a cut is counted in `stats` by reason. Called while a half
/// of the connection is still held, so that `fd` still names it.
pub(crate) fn settle(ended: &Ended, fd: RawFd, stats: &CoreStats) {
    match ended {
        Ended::Drained => {}
        Ended::Cut(reason) => {
            stats.connection_cut(*reason);
            sys::reset(fd);
        }
        Ended::Failed(e) => {
            debug!(error = %e, "write ended");
            sys::reset(fd);
        }
    }
}

/// Writes all of `bytes` to `stream` (a one-off answer). A peer that takes no byte for
/// `stall` is cut: counted in `stats`, its connection reset, and `TimedOut` returned.
pub(crate) async fn write_all_within(
    stream: &mut TcpStream,
    bytes: &[u8],
    stall: Duration,
    stats: &CoreStats,
) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let wrote = glommio::timer::timeout(stall, async { Ok(stream.write(rest).await) }).await;
        match wrote {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => rest = &rest[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stats.connection_cut(Cut::WriteStall);
                sys::reset(stream.as_raw_fd());
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer took no byte within the write-stall timeout",
                ));
            }
        }
    }
    stream.flush().await
}
