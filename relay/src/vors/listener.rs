//! The VoRS TCP listener on every core: magic and message 1 on the accepting core, then the
//! connection and its session move to the room's owner core.

use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;
use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::server::{ServerEvent, ServerSession};
use tracing::{debug, warn};

use crate::accept::{Acceptor, WhenExhausted};
use crate::handoff::Handoff;
use crate::limits::address::AddressSlot;
use crate::limits::handshakes::HandshakePass;
use crate::outbound::writer::write_all_within;
use crate::shard::Shard;
use crate::sys;

/// Accepts VoRS connections on this core's socket. Before any Noise work, a connection is
/// closed at once if its address is at `--max-connections-per-address`, or if this core, its
/// address or its address's rate has no room for another handshake (see `limits`). Out of
/// descriptors, waiting connections are closed at once (see `accept`).
pub(crate) async fn accept(shard: Rc<Shard>, listener: OwnedFd) {
    let mut acceptor = Acceptor::new(listener, WhenExhausted::Shed);
    loop {
        // A refused VoRS client is just closed: it speaks no HTTP.
        let (stream, addr, slot) = acceptor.next_admitted(&shard, &[]).await;
        let pass = match shard
            .handshakes
            .admit(&shard.limits, addr.ip(), Instant::now())
        {
            Ok(pass) => pass,
            Err(refusal) => {
                shard.stats.handshake_refused(refusal);
                debug!(peer = %addr, reason = refusal.label(), "vors handshake refused");
                continue;
            }
        };
        glommio::spawn_local(handshake(shard.clone(), stream, slot, pass)).detach();
    }
}

/// Reads until message 1 is decrypted (or the session fails), then hands over. `pass` is the
/// handshake's place in the handshake limits, given back once message 1 is decrypted (or the
/// handshake fails); `slot`, the connection's, travels with it.
async fn handshake(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    slot: AddressSlot,
    pass: HandshakePass,
) {
    let _ = stream.set_nodelay(true);
    let mut session = Box::new(ServerSession::new(Instant::now(), &shard.vors_key.private));
    let hello = read_hello(&shard, &mut stream, &mut session).await;
    drop(pass);
    match hello {
        Some(hello) => {
            shard.stats.vors_handshakes.inc();
            hand_to_owner(shard, stream, session, hello, slot).await;
        }
        None => {
            shard.stats.vors_handshake_failures.inc();
            let stall = shard.config.write_stall;
            while let Some(bytes) = session.poll_transmit() {
                if write_all_within(&mut stream, &bytes, stall, &shard.stats)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
}

/// Feeds the session until it produces the hello; `None` when it closed instead. Message 1 is
/// screened for replays before it is decrypted (`replay`).
async fn read_hello(
    shard: &Shard,
    stream: &mut TcpStream,
    session: &mut ServerSession,
) -> Option<HelloOwned> {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Message1 { ephemeral } => {
                    super::replay::screen(shard, session, &ephemeral);
                }
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
    slot: AddressSlot,
) {
    let owner = shard.owners.core_of(hello.room.as_bytes());
    let mesh = match &shard.mesh {
        Some(mesh) if owner != shard.core => mesh,
        _ => return super::member::admit(shard, stream, session, hello, slot).await,
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
    let handoff = Handoff::Vors {
        fd,
        session,
        hello,
        slot,
    };
    if mesh.send_to(owner, handoff).await.is_err() {
        warn!(owner, "owner core is gone; vors connection dropped");
    }
}
