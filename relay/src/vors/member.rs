//! A VoRS member's life on its room's owner core: admission (message 2), the control
//! connection's reader, writer and timers, and leaving.
//!
//! What changes the rooms ([`join`], [`process`], [`leave`]) takes only the owner core's
//! VoRS tables, the room quota, the counters and the control rate ([`OwnerCore`]), so unit
//! tests drive it with plain values; the tasks around it own the socket.
//!
//! Leaving frees everything at once: the member's queue is cut ([`Cut::Discarded`]), and its
//! writer resets the connection, which also wakes its reader. A member whose control backlog
//! passes its bound, or whose socket takes nothing for `--write-stall-timeout`, is cut the same
//! way from the writer's side; its reader then sees the connection end and makes it leave (DEL
//! to the others). Chat and mute changes are rate-limited per member (`control_rate`).

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::server::{ServerEvent, ServerSession};
use tracing::{debug, info};

use super::control_rate::{ControlKind, ControlRate};
use super::events::{self, Eviction};
use super::reserve::{Hold, Reserved, decided, give_back, reserve};
use super::room::{MemberConn, RoomCell};
use super::rooms::VorsCore;
use super::turns::{self, BUDGET_WAIT};
use crate::cluster::CoreEvent;
use crate::limits::address::AddressSlot;
use crate::limits::rooms::{RoomQuota, RoomRefusal};
use crate::outbound::queue::Cut;
use crate::outbound::writer;
use crate::shard::Shard;
use crate::stats::CoreStats;
use crate::sys;

/// Bytes read from a member's TCP connection at a time.
const CONTROL_READ: usize = 512;
/// How often a member's timers (cookie, PING) are checked.
const TIMER_TICK: Duration = Duration::from_secs(1);

/// What a member's admission and departure change on the room's owner core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerCore<'a> {
    /// This core's rooms, cookies and registered addresses.
    pub vors: &'a VorsCore,
    /// `--max-rooms` and `--max-rooms-per-address`, shared by every core.
    pub rooms: &'a RoomQuota,
    pub stats: &'a CoreStats,
    /// `--chat-per-minute` (0: no limit).
    pub chat_per_minute: u32,
}

impl<'a> OwnerCore<'a> {
    pub(crate) fn of(shard: &'a Shard) -> Self {
        OwnerCore {
            vors: &shard.vors,
            rooms: &shard.limits.rooms,
            stats: &shard.stats,
            chat_per_minute: shard.config.chat_per_minute,
        }
    }
}

/// How an admission ended.
#[derive(Debug)]
pub(crate) enum Admission {
    /// In the room: message 2 with the cookie is queued on the member's connection.
    Joined {
        cell: Rc<RoomCell>,
        member: Rc<MemberConn>,
    },
    /// Refused: the session holds message 2 with `["ERR", reason]`, to send before closing.
    Refused(Box<ServerSession>),
    /// Message 2 could not be made: the connection is dropped.
    Failed,
}

/// Asks the room `hello` names (made if need be, charged to the client at `from`) to admit
/// its sender, and answers message 2 through `session`. `peer` is the IP of the member's
/// connection: its cookie must come from it.
///
/// With a cluster, `reserved` is the cluster's answer to this join (see [`reserve`]): a
/// refusal is message 2's ERR, and an admitted member takes the SID the cluster gave it (the
/// cluster checked password, name and member limit over every relay; the room's view was
/// applied by `reserve::Hold`). A reservation refused here (the relay's own room quota) is
/// the caller's to give back.
pub(crate) fn join(
    owner: OwnerCore<'_>,
    hello: &HelloOwned,
    from: IpAddr,
    mut session: Box<ServerSession>,
    peer: IpAddr,
    now: Instant,
    reserved: Option<&Reserved>,
) -> Admission {
    let OwnerCore {
        vors,
        rooms,
        stats,
        chat_per_minute,
    } = owner;
    let reservation = match reserved.map(|r| &r.answer) {
        None => None,
        Some(Ok(reservation)) => Some(reservation),
        Some(Err(e)) => {
            stats.vors_rejects.inc();
            info!(reason = e.reason(), "vors member refused by the cluster");
            let _ = session.reject(now, e.reason());
            return Admission::Refused(session);
        }
    };
    let cell = match vors.room(&hello.room, rooms, from) {
        Ok(cell) => cell,
        Err(refusal) => {
            stats.vors_rejects.inc();
            match refusal {
                RoomRefusal::ServerFull => stats.vors_server_full.inc(),
                RoomRefusal::PerAddress => stats.vors_too_many_rooms.inc(),
            }
            let reason = refusal.reason();
            info!(reason, "vors member refused");
            let _ = session.reject(now, reason);
            return Admission::Refused(session);
        }
    };
    let cookie = vors.new_cookie();
    let joined = match reservation {
        None => cell.join(&hello.username, hello.password_hash.as_ref(), cookie),
        Some(reservation) => cell.join_reserved(reservation.sid, &hello.username, cookie),
    };
    let sid = match joined {
        Ok(sid) => sid,
        Err(reject) => {
            // With a cluster: the SID is taken here (stale news); the caller gives it back.
            stats.vors_rejects.inc();
            info!(reason = reject.reason(), "vors member refused");
            let _ = session.reject(now, reject.reason());
            vors.forget_if_empty(&cell, rooms);
            return Admission::Refused(session);
        }
    };
    let keys = match session.accept(now, &cookie) {
        Ok(keys) => keys,
        Err(e) => {
            debug!(error = %e, "message 2 not made");
            cell.leave(sid);
            cell.pump(now);
            vors.forget_if_empty(&cell, rooms);
            return Admission::Failed;
        }
    };
    let rate = ControlRate::new(chat_per_minute, now);
    let member = Rc::new(MemberConn::new(sid, cookie, session, rate));
    cell.seat(member.clone(), keys, peer);
    vors.expect_cookie(cookie, &cell);
    member.flush();
    stats.vors_joins.inc();
    publish(owner);
    Admission::Joined { cell, member }
}

/// Applies one of the cluster's events on this core (`events::apply`), and ends the session
/// of a member the cluster evicted: its place was taken while this relay was cut off (its
/// writer resets the connection, which wakes its reader).
pub(crate) fn apply_event(shard: &Shard, event: CoreEvent, now: Instant) {
    if let Some(Eviction { cell, conn }) = events::apply(shard, event, now) {
        leave(OwnerCore::of(shard), &cell, &conn, now);
    }
}

/// The kernel send buffer of a member's connection: a quarter of its backlog bound in the
/// relay, so a non-reading member holds at most about 384 KiB (256 KiB queued, 128 KiB as the
/// kernel counts this buffer) instead of up to 4 MiB more in the kernel.
const CONTROL_SEND_BUFFER: usize = crate::vors::room::CONTROL_QUEUE_BYTES / 4;

/// On the owner core: admits the member (see [`join`]) and runs it until it leaves. `slot` is
/// the connection's place in `--max-connections-per-address`, held until the member leaves.
/// Message 2 is a handshake's second expensive step: it is made in turn within this core's
/// handshake budget (`turns`), and the connection is dropped when the budget
/// does not come in time.
pub(crate) async fn admit(
    shard: Rc<Shard>,
    stream: TcpStream,
    session: Box<ServerSession>,
    hello: HelloOwned,
    slot: AddressSlot,
) {
    let from = slot.client();
    let _slot = slot;
    // A connection without a peer address is already gone.
    let Ok(peer) = stream.peer_addr() else { return };
    // Control messages are small and rate-limited: a member's kernel send buffer need not grow
    // to megabytes, and one that stops reading pins little there (docs/security.md).
    sys::limit_send_buffer(stream.as_raw_fd(), CONTROL_SEND_BUFFER);
    let mut reserved = reserve(&shard, &hello).await;
    // From the cluster's answer on, the room is held here, so that its events find it.
    let held = reserved
        .as_ref()
        .and_then(|r| Hold::take(&shard.vors, &shard.limits.rooms, &hello, from, r));
    if let Some(reserved) = &mut reserved {
        reserved.let_go(&shard.vors, &shard.limits.rooms);
    }
    // Events for the room that came before it was held here, newer than the answer's view
    // the room has just taken (`early`).
    if let (Some(_), Some(reserved)) = (&held, &reserved) {
        for event in shard.vors.early.take(&reserved.room) {
            apply_event(&shard, event, Instant::now());
        }
    }
    let turn = turns::budget_turn(&shard, Instant::now() + BUDGET_WAIT).await;
    let admission = turn.map(|turn| {
        let admission = turns::spend_budget(&shard, |now| {
            let owner = OwnerCore::of(&shard);
            join(
                owner,
                &hello,
                from,
                session,
                peer.ip(),
                now,
                reserved.as_ref(),
            )
        });
        drop(turn);
        admission
    });
    if let Some(held) = held {
        held.release(&shard.vors, &shard.limits.rooms);
    }
    decided(&shard, reserved.as_ref());
    let Some(admission) = admission else {
        give_back(&shard, reserved.as_ref());
        return;
    };
    let (cell, member) = match admission {
        Admission::Joined { cell, member } => (cell, member),
        Admission::Refused(mut session) => {
            give_back(&shard, reserved.as_ref());
            return send_and_close(&shard, stream, &mut session).await;
        }
        Admission::Failed => return,
    };
    info!(
        sid = member.sid.0,
        members = cell.len(),
        peer = shard.peer_at_info(peer),
        "vors member joining"
    );
    run_member(shard.clone(), stream, cell, member).await;
}

/// Writes what a refused session has to say, then drops the connection.
async fn send_and_close(shard: &Shard, stream: TcpStream, session: &mut ServerSession) {
    use futures_lite::io::AsyncWriteExt;
    let mut stream = stream;
    let stall = shard.config.write_stall;
    while let Some(bytes) = session.poll_transmit() {
        if writer::write_all_within(&mut stream, &bytes, stall, &shard.stats)
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = stream.close().await;
}

async fn run_member(
    shard: Rc<Shard>,
    stream: TcpStream,
    cell: Rc<RoomCell>,
    member: Rc<MemberConn>,
) {
    // `fd` names the connection only while a half of it is held: `reader` is kept to the end
    // of this function, past the writer task, so every use of `fd` below is of this socket.
    let fd = stream.as_raw_fd();
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local({
        let (shard, member) = (shard.clone(), member.clone());
        async move {
            let stall = shard.config.write_stall;
            let ended = writer::drain(&member.out, fd, &mut writer, stall, |_, _| {}, None).await;
            if let writer::Ended::Cut(reason @ (Cut::Backlog | Cut::WriteStall)) = ended {
                info!(
                    sid = member.sid.0,
                    reason = reason.label(),
                    "vors member cut"
                );
            }
            writer::settle(&ended, fd, &shard.stats);
        }
    });
    let timer_task = glommio::spawn_local({
        let (shard, cell, member) = (shard.clone(), cell.clone(), member.clone());
        async move {
            while !member.left.get() {
                glommio::timer::sleep(TIMER_TICK).await;
                let now = Instant::now();
                let due = member
                    .session
                    .borrow()
                    .poll_timeout()
                    .is_some_and(|t| t <= now);
                if due {
                    member.session.borrow_mut().handle_timeout(now);
                    if process(OwnerCore::of(&shard), &cell, &member, now) {
                        wake_reader(fd);
                    }
                }
                apply_due_mute(&cell, &member, now);
            }
        }
    });
    read_loop(&shard, &cell, &member, fd, &mut reader).await;
    if leave(OwnerCore::of(&shard), &cell, &member, Instant::now()) {
        wake_reader(fd);
    }
    timer_task.cancel().await;
    writer_task.await;
    drop(reader);
}

async fn read_loop(
    shard: &Shard,
    cell: &RoomCell,
    member: &MemberConn,
    fd: RawFd,
    reader: &mut ReadHalf<TcpStream>,
) {
    // Control messages are small and rare; a bigger buffer only costs every idle member.
    let mut buf = vec![0u8; CONTROL_READ];
    while !member.left.get() {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "vors control read failed");
                0
            }
        };
        let now = Instant::now();
        if n == 0 {
            member.session.borrow_mut().handle_tcp_closed(now);
        } else {
            member.session.borrow_mut().handle_tcp(now, &buf[..n]);
        }
        if process(OwnerCore::of(shard), cell, member, now) {
            wake_reader(fd);
        }
    }
}

/// Wakes a member's reader if it is still waiting on the socket, once the member has left.
fn wake_reader(fd: RawFd) {
    sys::shutdown_read(fd);
}

/// Acts on the session's events, then delivers whatever the room has to say. True when the
/// member left the room now (its session ended).
pub(crate) fn process(
    owner: OwnerCore<'_>,
    cell: &RoomCell,
    member: &MemberConn,
    now: Instant,
) -> bool {
    let mut left = false;
    loop {
        let event = member.session.borrow_mut().poll_event();
        let Some(event) = event else { break };
        match event {
            ServerEvent::Muted | ServerEvent::Unmuted => {
                let wish = matches!(event, ServerEvent::Muted);
                match member.rate.borrow_mut().mute_change(wish, now) {
                    Some(muted) => cell.set_muted(member.sid, muted),
                    None => owner.stats.vors_rate_limited(ControlKind::Mute),
                }
            }
            ServerEvent::Chat(msg) => {
                if member.rate.borrow_mut().allow_chat(now) {
                    cell.chat(member.sid, &msg);
                } else {
                    owner.stats.vors_rate_limited(ControlKind::Chat);
                }
            }
            ServerEvent::Closed(reason) => {
                debug!(sid = member.sid.0, ?reason, "vors session ended");
                left |= leave(owner, cell, member, now);
            }
            // Handled on the accepting core, before the member came here.
            ServerEvent::Message1 { .. } | ServerEvent::Hello(_) => {}
        }
    }
    member.flush();
    cell.pump(now);
    left
}

/// Applies a mute change the member's rate deferred, once the rate allows it.
pub(crate) fn apply_due_mute(cell: &RoomCell, member: &MemberConn, now: Instant) {
    if member.left.get() {
        return;
    }
    let due = member.rate.borrow_mut().due_mute(now);
    if let Some(muted) = due {
        cell.set_muted(member.sid, muted);
        cell.pump(now);
    }
}

/// Removes the member from the room (once; true that time), tells the others, and cuts its
/// queue: what it still held is freed, and its writer resets the connection. The caller then
/// wakes the member's reader.
pub(crate) fn leave(
    owner: OwnerCore<'_>,
    cell: &RoomCell,
    member: &MemberConn,
    now: Instant,
) -> bool {
    if member.left.replace(true) {
        return false;
    }
    let addr = cell.leave(member.sid);
    owner.vors.forget_member(&member.cookie, addr);
    cell.refresh_targets();
    cell.pump(now);
    member.out.cut(Cut::Discarded);
    owner.vors.forget_named_if_empty(&cell.name(), owner.rooms);
    publish(owner);
    true
}

/// Updates this core's room and member gauges.
pub(crate) fn publish(owner: OwnerCore<'_>) {
    let (rooms, members) = owner.vors.census();
    owner.stats.vors_rooms.set(rooms);
    owner.stats.vors_members.set(members);
}

#[cfg(test)]
mod tests {
    use moose_proto::vors::client::ClientEvent;
    use moose_proto::vors::room::DropReason;

    use super::*;
    use crate::vors::testing::Core;

    /// What a refused client hears: the ERR reason message 2 carried.
    fn refusal(core: &Core, username: &str, room: &str) -> String {
        let (mut client, admission) = core.knock(username, room);
        let Admission::Refused(mut session) = admission else {
            panic!("{username} is admitted: {admission:?}");
        };
        while let Some(bytes) = session.poll_transmit() {
            client.handle_tcp(core.now, &bytes);
        }
        let events: Vec<ClientEvent> = std::iter::from_fn(|| client.poll_event()).collect();
        match events.first() {
            Some(ClientEvent::Rejected(reason)) => reason.clone(),
            _ => panic!("no ERR: {events:?}"),
        }
    }

    #[test]
    fn a_member_joins_leaves_once_and_its_empty_room_goes() {
        let core = Core::new(1, 64);
        let ann = core.register("ann", "room", "192.0.2.1:4000");
        assert_eq!(core.stats.vors_joins.get(), 1);
        assert_eq!(
            (core.stats.vors_rooms.get(), core.stats.vors_members.get()),
            (1, 1)
        );
        assert_eq!(core.rooms.used(), 1);
        assert!(leave(core.owner(), &ann.cell, &ann.member, core.now));
        assert!(
            !leave(core.owner(), &ann.cell, &ann.member, core.now),
            "once"
        );
        assert!(ann.member.out.is_closed(), "the writer finishes");
        assert_eq!(
            (core.stats.vors_rooms.get(), core.stats.vors_members.get()),
            (0, 0)
        );
        assert_eq!(core.rooms.used(), 0, "the room's place is given back");
        // Nothing points at the member any more: its address and cookie find no room.
        let keepalive = [ann.member.sid.0];
        core.judge(&keepalive, Some(ann.addr));
        core.judge(&ann.member.cookie, Some(ann.addr));
        assert_eq!(core.stats.vors_drops(DropReason::UnknownSource), 2);
    }

    #[test]
    fn the_others_hear_a_member_leave_and_stop_sending_it_copies() {
        let core = Core::new(0, 64);
        let ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        let packet = bob.media(&core);
        assert_eq!(core.judge(&packet, Some(bob.addr)).copies.len(), 1);
        // Ann's client goes away: her session ends, and with it her place in the room.
        ann.member.session.borrow_mut().handle_tcp_closed(core.now);
        assert!(process(core.owner(), &ann.cell, &ann.member, core.now));
        bob.exchange(&core);
        let ann_sid = ann.member.sid;
        assert!(
            bob.events()
                .iter()
                .any(|e| matches!(e, ClientEvent::PeerRemoved { sid, .. } if *sid == ann_sid)),
            "bob hears DEL"
        );
        let packet = bob.media(&core);
        assert!(core.judge(&packet, Some(bob.addr)).copies.is_empty());
        assert_eq!(
            (core.stats.vors_rooms.get(), core.stats.vors_members.get()),
            (1, 1)
        );
    }

    /// Has `member`'s client say `text` in the room.
    fn chat(core: &Core, member: &mut crate::vors::testing::TestMember, text: &str) {
        member.client.send_chat(core.now, text).expect("joined");
        member.exchange(core);
    }

    fn chats(events: &[ClientEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Chat { .. }))
            .count()
    }

    #[test]
    fn a_member_whose_backlog_passes_the_bound_is_cut_and_leaves() {
        let mut core = Core::new(1, 64);
        core.chat_per_minute = 0;
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let bob = core.register("bob", "room", "192.0.2.2:4000");
        let mut cat = core.register("cat", "room", "192.0.2.3:4000");
        cat.events();
        // Bob reads nothing: his queue grows by a chat (about 1 KB) at a time.
        let text = "z".repeat(1000);
        let mut said = 0;
        while bob.member.out.cut_reason().is_none() {
            chat(&core, &mut ann, &text);
            cat.exchange(&core);
            said += 1;
            assert!(said < 1000, "the bound never bit");
        }
        assert_eq!(bob.member.out.cut_reason(), Some(Cut::Backlog));
        // A chat of 1000 bytes is at most 1100 on the wire (MAX_CONTROL_LEN, sealed).
        assert!(
            said * 1100 > crate::vors::room::CONTROL_QUEUE_BYTES,
            "cut only past the bound, after {said} chats"
        );
        assert!(
            bob.member.out.front().is_none(),
            "his backlog is freed at once"
        );
        // His writer resets the connection; his reader sees it end, and he leaves.
        bob.member.session.borrow_mut().handle_tcp_closed(core.now);
        assert!(process(core.owner(), &bob.cell, &bob.member, core.now));
        cat.exchange(&core);
        let heard = cat.events();
        assert_eq!(chats(&heard), said, "cat, who reads, heard every chat");
        assert!(
            heard.iter().any(
                |e| matches!(e, ClientEvent::PeerRemoved { sid, .. } if *sid == bob.member.sid)
            ),
            "cat hears DEL"
        );
        assert_eq!(cat.member.out.cut_reason(), None);
        assert_eq!(core.stats.vors_members.get(), 2);
    }

    #[test]
    fn chat_over_its_rate_is_dropped_and_mute_changes_wait_for_theirs() {
        let core = Core::new(1, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        bob.events();
        for i in 0..30 {
            chat(&core, &mut ann, &format!("message {i}"));
        }
        bob.exchange(&core);
        assert_eq!(chats(&bob.events()), 20, "the burst, no more");
        assert_eq!(core.stats.vors_rate_limits(ControlKind::Chat), 10);
        // Twelve changes at once, ending muted: ten go, two wait, and the latest wins.
        for i in 0..12 {
            ann.client.set_muted(core.now, i % 2 == 0);
            ann.exchange(&core);
        }
        bob.exchange(&core);
        let mutes = |events: &[ClientEvent]| {
            events
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::PeerMuted(_) => Some(true),
                    ClientEvent::PeerUnmuted(_) => Some(false),
                    _ => None,
                })
                .collect::<Vec<bool>>()
        };
        assert_eq!(mutes(&bob.events()).len(), 10);
        assert_eq!(core.stats.vors_rate_limits(ControlKind::Mute), 2);
        // Her last wish (unmuted) is what the room has already. One more change, muted, waits
        // for a token and is applied a second later.
        ann.client.set_muted(core.now, true);
        ann.exchange(&core);
        apply_due_mute(&ann.cell, &ann.member, core.now);
        bob.exchange(&core);
        assert!(mutes(&bob.events()).is_empty(), "still waiting");
        apply_due_mute(&ann.cell, &ann.member, core.now + Duration::from_secs(1));
        bob.exchange(&core);
        assert_eq!(mutes(&bob.events()), [true]);
    }

    #[test]
    fn a_room_past_max_rooms_is_refused_as_server_full() {
        let core = Core::new(1, 64);
        let _ann = core.join("ann", "first", "192.0.2.1:4000");
        assert_eq!(
            refusal(&core, "bob", "second"),
            RoomRefusal::ServerFull.reason()
        );
        assert_eq!(core.stats.vors_rejects.get(), 1);
        assert_eq!(core.stats.vors_server_full.get(), 1);
        assert_eq!(core.stats.vors_rooms.get(), 1, "no second room");
        // An existing room takes no new place.
        let _cat = core.join("cat", "first", "192.0.2.3:4000");
    }

    #[test]
    fn a_taken_name_is_refused_and_the_room_keeps_its_member() {
        let core = Core::new(1, 64);
        let _ann = core.register("ann", "room", "192.0.2.1:4000");
        assert_eq!(refusal(&core, "ann", "room"), "name is taken");
        assert_eq!(core.stats.vors_rejects.get(), 1);
        assert_eq!(core.stats.vors_server_full.get(), 0);
        assert_eq!(
            (core.stats.vors_rooms.get(), core.stats.vors_members.get()),
            (1, 1)
        );
        assert_eq!(core.rooms.used(), 1);
    }
}
