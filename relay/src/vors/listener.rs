//! The VoRS TCP listener on every core: magic and message 1 on the accepting core, then the
//! connection and its session move to the room's owner core.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::server::{ServerEvent, ServerSession};
use tracing::{debug, warn};

use crate::handoff::Handoff;
use crate::shard::Shard;
use crate::sys;

/// Accepts VoRS connections on this core's socket.
pub async fn accept(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(handshake(shard.clone(), stream)).detach();
            }
            Err(e) => {
                warn!(error = %e, core = shard.core, "vors accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads until message 1 is decrypted (or the session fails), then hands over.
async fn handshake(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut session = Box::new(ServerSession::new(Instant::now(), &shard.vors_key.private));
    match read_hello(&mut stream, &mut session).await {
        Some(hello) => {
            shard.stats.vors_handshakes.inc();
            hand_to_owner(shard, stream, session, hello).await;
        }
        None => {
            shard.stats.vors_handshake_failures.inc();
            while let Some(bytes) = session.poll_transmit() {
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Feeds the session until it produces the hello; `None` when it closed instead.
async fn read_hello(stream: &mut TcpStream, session: &mut ServerSession) -> Option<HelloOwned> {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Hello(hello) => return Some(hello),
                ServerEvent::Closed(reason) => {
                    debug!(?reason, "vors handshake ended");
                    return None;
                }
                _ => {}
            }
        }
        let wait = session.poll_timeout().map_or(Duration::from_secs(10), |t| {
            t.saturating_duration_since(Instant::now())
        });
        let read = glommio::timer::timeout(wait, async { Ok(stream.read(&mut buf).await) }).await;
        let now = Instant::now();
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => session.handle_tcp_closed(now),
            Ok(Ok(n)) => session.handle_tcp(now, &buf[..n]),
            Err(_) => session.handle_timeout(now),
        }
    }
}

async fn hand_to_owner(
    shard: Rc<Shard>,
    stream: TcpStream,
    session: Box<ServerSession>,
    hello: HelloOwned,
) {
    let owner = shard.owners.core_of(hello.room.as_bytes());
    let mesh = match &shard.mesh {
        Some(mesh) if owner != shard.core => mesh,
        _ => return super::room::admit(shard, stream, session, hello).await,
    };
    let fd = match sys::dup_fd(stream.as_raw_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "cannot hand a vors connection to its owner core");
            return;
        }
    };
    drop(stream);
    shard.stats.vors_handoffs.inc();
    let handoff = Handoff::Vors { fd, session, hello };
    if mesh.send_to(owner, handoff).await.is_err() {
        warn!(owner, "owner core is gone; vors connection dropped");
    }
}
