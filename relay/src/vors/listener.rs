//! The VoRS TCP listener on every core: a handshake's stages on the accepting core, then the
//! connection and its session move to the room's owner core.
//!
//! A connection goes through these stages, one function each, every deadline counted from
//! the accept:
//!
//! 1. [`accept`]: admitted by counts (`limits::handshakes`: the client's handshakes waiting
//!    and its rate), into this core's table of waiting handshakes, which evicts the one that
//!    has waited longest when it is full.
//! 2. [`read_magic`]: the 7 bytes `VoRS v4` within [`MAGIC_WITHIN`].
//! 3. [`read_message_1`]: message 1's netstring, whole, within [`MESSAGE_1_WITHIN`]. Reading
//!    costs the relay a buffer and nothing else: no CPU budget is spent while a connection
//!    waits.
//! 4. [`screen_message_1`]: message 1 framed in a new session (no Noise work), then its
//!    client ephemeral key looked up in the replay cache (`replay`): a copy of a hello seen
//!    within the window is refused here, unanswered, before any budget is spent or waited for.
//! 5. [`open_message_1`]: the expensive step. The Noise work on message 1 (and the judgement
//!    of its SENT_AT, which only decryption reveals) runs within this core's handshake budget
//!    (`limits::budget`): the handshake waits its turn (`turns`, first come first served)
//!    until the core has earned the budget, for at most `BUDGET_WAIT`, still holding its place
//!    in the table (so the queue is bounded and its oldest can be evicted), and leaves the
//!    table when its step starts. The turn is held only around that step.
//! 6. [`hand_to_owner`]: the room's owner core writes message 2, its own expensive step, in
//!    turn within its own budget (`member::admit`).
//!
//! The protocol's own deadline (`HELLO_TIMEOUT`, 10 s from the accept for message 1 and the
//! room's decision) still bounds the session; the stage deadlines here are shorter because an
//! honest client sends the magic and message 1 together, right after connecting.

use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;
use moose_proto::vors::handshake::MAX_HANDSHAKE_LEN;
use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::netstring;
use moose_proto::vors::server::{MAGIC, ServerEvent, ServerSession};
use tracing::{debug, warn};

use crate::accept::{Acceptor, WhenExhausted};
use crate::handoff::Handoff;
use crate::limits::AddressTable;
use crate::limits::address::AddressSlot;
use crate::limits::handshakes::{HandshakePass, HandshakeStage};
use crate::outbound::writer::write_all_within;
use crate::shard::Shard;
use crate::sys;

use super::replay;
use super::turns::{BUDGET_WAIT, budget_turn, spend_budget};

/// The magic must be whole this long after the accept.
pub(crate) const MAGIC_WITHIN: Duration = Duration::from_secs(2);
/// Message 1 must be whole this long after the accept.
pub(crate) const MESSAGE_1_WITHIN: Duration = Duration::from_secs(4);
/// Bytes asked of the socket per read while message 1 comes (it is about 1.7 KiB).
const READ_CHUNK: usize = 2048;

/// Why a handshake ended before its message 1 was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unfinished {
    /// The stage's deadline passed.
    Deadline(HandshakeStage),
    /// The client closed, the connection broke, or it was shut on eviction.
    Closed,
    /// Bytes that are not the magic, or not a netstring within `MAX_HANDSHAKE_LEN`.
    Malformed,
}

/// Accepts VoRS connections on this core's socket. A connection is closed at once if its
/// address is at `--max-connections-per-address` or over its handshake limits (see
/// `limits`). Out of descriptors, waiting connections are closed at once (see `accept`).
pub(crate) async fn accept(shard: Rc<Shard>, listener: OwnedFd) {
    let mut acceptor = Acceptor::new(listener, WhenExhausted::Shed);
    loop {
        // A refused VoRS client is just closed: it speaks no HTTP.
        let (stream, addr, slot) = acceptor.next_admitted(&shard, &[]).await;
        let accepted = Instant::now();
        let admitted =
            shard
                .handshakes
                .admit(&shard.limits, addr.ip(), stream.as_raw_fd(), accepted);
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => {
                shard.stats.handshake_refused(refusal);
                debug!(peer = %addr, reason = refusal.label(), "vors handshake refused");
                continue;
            }
        };
        if admitted.forgot_a_client {
            shard.stats.address_evicted(AddressTable::HandshakeRate);
        }
        if let Some(oldest) = admitted.evicted {
            // Its task sees the connection end and closes it; the table no longer names it.
            sys::shutdown(oldest);
            shard.stats.vors_handshakes_evicted.inc();
        }
        let handshake = handshake(shard.clone(), stream, accepted, slot, admitted.pass);
        glommio::spawn_local(handshake).detach();
    }
}

/// Runs the stages of one handshake, from the magic to the hand-over. `pass` is its place in
/// the table of waiting handshakes, given back when its Noise work starts (or it fails);
/// `slot`, the connection's, travels with it.
async fn handshake(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    accepted: Instant,
    slot: AddressSlot,
    pass: HandshakePass,
) {
    let _ = stream.set_nodelay(true);
    let opened = until_opened(&shard, &mut stream, accepted, pass).await;
    let Some((session, hello)) = opened else {
        return;
    };
    shard.stats.vors_handshakes.inc();
    hand_to_owner(shard, stream, session, hello, slot).await;
}

/// Stages 2 to 5 on `stream`, while `pass` is held: it is given back when this returns,
/// before the caller can close the connection it names.
async fn until_opened(
    shard: &Shard,
    stream: &mut TcpStream,
    accepted: Instant,
    pass: HandshakePass,
) -> Option<(Box<ServerSession>, HelloOwned)> {
    let mut inbound = Vec::new();
    let read = match read_magic(stream, &mut inbound, accepted + MAGIC_WITHIN).await {
        Ok(()) => read_message_1(stream, &mut inbound, accepted + MESSAGE_1_WITHIN).await,
        Err(unfinished) => Err(unfinished),
    };
    if let Err(unfinished) = read {
        shard.stats.vors_handshake_failures.inc();
        if let Unfinished::Deadline(stage) = unfinished {
            shard.stats.handshake_deadline(stage);
        }
        debug!(?unfinished, "vors handshake ended");
        return None;
    }
    open_message_1(shard, stream, accepted, &inbound, pass).await
}

/// Reads until `inbound` starts with the whole magic.
async fn read_magic(
    stream: &mut TcpStream,
    inbound: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Unfinished> {
    loop {
        let have = inbound.len().min(MAGIC.len());
        if inbound[..have] != MAGIC[..have] {
            return Err(Unfinished::Malformed);
        }
        if have == MAGIC.len() {
            return Ok(());
        }
        read_more(stream, inbound, deadline, HandshakeStage::Magic).await?;
    }
}

/// Reads until the netstring after the magic in `inbound` is whole: message 1.
async fn read_message_1(
    stream: &mut TcpStream,
    inbound: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Unfinished> {
    loop {
        match netstring::decode(&inbound[MAGIC.len()..], MAX_HANDSHAKE_LEN) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => read_more(stream, inbound, deadline, HandshakeStage::Message1).await?,
            Err(_) => return Err(Unfinished::Malformed),
        }
    }
}

/// Appends what the socket has to `inbound`, waiting no later than `deadline` (the
/// deadline of `stage`).
async fn read_more(
    stream: &mut TcpStream,
    inbound: &mut Vec<u8>,
    deadline: Instant,
    stage: HandshakeStage,
) -> Result<(), Unfinished> {
    let filled = inbound.len();
    inbound.resize(filled + READ_CHUNK, 0);
    let wait = deadline.saturating_duration_since(Instant::now());
    let read = glommio::timer::timeout(wait, async {
        Ok(stream.read(&mut inbound[filled..]).await)
    })
    .await;
    let n = match read {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0,
        Err(_) => {
            inbound.truncate(filled);
            return Err(Unfinished::Deadline(stage));
        }
    };
    inbound.truncate(filled + n);
    if n == 0 {
        return Err(Unfinished::Closed);
    }
    Ok(())
}

/// Stages 4 and 5: frames message 1 (the bytes from the magic on) in a new session, screens
/// it for a replay, then opens it in turn within this core's handshake budget; `pass` is given
/// back as the Noise work starts. `None` when the hello is a replay, the budget is not there
/// in time, the handshake was evicted while it waited, or the session closed instead
/// (undecryptable, stale or untimed); whatever the session had to say is written first.
async fn open_message_1(
    shard: &Shard,
    stream: &mut TcpStream,
    accepted: Instant,
    inbound: &[u8],
    pass: HandshakePass,
) -> Option<(Box<ServerSession>, HelloOwned)> {
    let mut session = Box::new(ServerSession::new(accepted, &shard.vors_key.private));
    if screen_message_1(shard, &mut session, inbound) {
        let turn = budget_turn(shard, Instant::now() + BUDGET_WAIT).await?;
        if pass.evicted() {
            // Shut while it queued: nobody is left to answer.
            shard.stats.vors_handshake_failures.inc();
            return None;
        }
        drop(pass);
        spend_budget(shard, |now| {
            replay::open(shard, &mut session, now);
        });
        drop(turn);
    }
    while let Some(event) = session.poll_event() {
        match event {
            ServerEvent::Hello(hello) => return Some((session, hello)),
            ServerEvent::Closed(reason) => {
                debug!(?reason, "vors handshake ended");
                break;
            }
            _ => {}
        }
    }
    shard.stats.vors_handshake_failures.inc();
    while let Some(bytes) = session.poll_transmit() {
        let stall = shard.config.write_stall;
        if write_all_within(stream, &bytes, stall, &shard.stats)
            .await
            .is_err()
        {
            break;
        }
    }
    None
}

/// Stage 4: feeds `inbound` (magic and message 1) to `session`, which only frames it, and
/// screens message 1's client ephemeral key against the replay cache. True when message 1 is
/// new and waits to be opened; false when the session refused it as a replay or closed (no
/// message 1, or no key where one belongs).
fn screen_message_1(shard: &Shard, session: &mut ServerSession, inbound: &[u8]) -> bool {
    session.handle_tcp(Instant::now(), inbound);
    match session.poll_event() {
        Some(ServerEvent::Message1 { ephemeral }) => replay::screen(shard, session, &ephemeral),
        // Bytes that are no message 1: the caller counts the failure.
        Some(ServerEvent::Closed(reason)) => {
            debug!(?reason, "vors handshake ended");
            false
        }
        _ => false,
    }
}

/// Stage 6: the room's owner core (this one, or another through the mesh) takes the
/// connection and answers message 2.
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
