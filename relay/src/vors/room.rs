//! A VoRS room on its owner core: the sans-IO room logic, the members' sessions and
//! connections, and the fan-out table of registered addresses.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use moose_proto::vors::Sid;
use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::room::{Room, RoomConfig};
use moose_proto::vors::server::{ServerEvent, ServerSession};
use socket2::SockAddr;
use tracing::{debug, info};

use crate::limits::address::AddressSlot;
use crate::outbound::queue::{Kind, OutQueue};
use crate::shard::Shard;
use crate::sys;

/// Control traffic a member may have queued before its oldest is dropped. Control messages
/// are small and rare; this only bounds a member that never reads.
const CONTROL_QUEUE_BYTES: usize = 256 << 10;
/// The ERR reason for a member whose room would pass `--max-rooms`.
pub const SERVER_FULL: &str = "server full";
/// Bytes read from a member's TCP connection at a time.
const CONTROL_READ: usize = 512;
/// How often a member's timers (cookie, PING) are checked.
const TIMER_TICK: Duration = Duration::from_secs(1);

/// One member's connection.
#[derive(Debug)]
pub struct MemberConn {
    pub sid: Sid,
    /// The cookie message 2 carried, forgotten once the member registers or leaves.
    cookie: [u8; moose_proto::vors::packet::COOKIE_LEN],
    session: RefCell<Box<ServerSession>>,
    out: OutQueue,
    fd: RawFd,
    left: Cell<bool>,
}

impl MemberConn {
    /// Moves what the session wants to send into the connection's queue.
    fn flush(&self) {
        while let Some(bytes) = self.session.borrow_mut().poll_transmit() {
            self.out.push(Bytes::from(bytes), Kind::Control);
        }
    }
}

/// A room and its members' connections.
#[derive(Debug)]
pub struct RoomCell {
    room: RefCell<Room>,
    members: RefCell<HashMap<Sid, Rc<MemberConn>>>,
    /// Registered members in SID order, and their addresses ready for `sendmmsg`.
    targets: RefCell<(Vec<Sid>, Vec<SockAddr>)>,
}

impl RoomCell {
    pub fn new(name: &str, config: RoomConfig) -> Self {
        RoomCell {
            room: RefCell::new(Room::new(name, config)),
            members: RefCell::new(HashMap::new()),
            targets: RefCell::new((Vec::new(), Vec::new())),
        }
    }

    pub fn name(&self) -> String {
        self.room.borrow().name().to_owned()
    }

    pub fn len(&self) -> usize {
        self.room.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.room.borrow().is_empty()
    }

    /// Judges a datagram (see `Room::verify_datagram`).
    pub fn verify(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> moose_proto::vors::room::EdgeVerdict {
        self.room.borrow_mut().verify_datagram(from, datagram)
    }

    /// Adds a copy of datagram `index` of a batch for every registered member but `sender`
    /// to `copies`; returns how many it added.
    pub fn fan_out(&self, index: usize, sender: Sid, copies: &mut Vec<(usize, SockAddr)>) -> usize {
        let targets = self.targets.borrow();
        let (sids, addrs) = &*targets;
        let before = copies.len();
        for (sid, addr) in sids.iter().zip(addrs) {
            if *sid != sender {
                copies.push((index, addr.clone()));
            }
        }
        copies.len() - before
    }

    /// Rebuilds the fan-out table after a member registered or left.
    pub fn refresh_targets(&self) {
        let room = self.room.borrow();
        let mut sids: Vec<Sid> = self.members.borrow().keys().copied().collect();
        sids.sort_unstable();
        let mut table = (Vec::new(), Vec::new());
        for sid in sids {
            if let Some(addr) = room.udp_addr(sid) {
                table.0.push(sid);
                table.1.push(SockAddr::from(addr));
            }
        }
        *self.targets.borrow_mut() = table;
    }

    /// Delivers every control message the room queued to its member's connection.
    pub fn pump(&self, now: Instant) {
        loop {
            let next = self.room.borrow_mut().poll_message();
            let Some((to, message)) = next else { break };
            let member = self.members.borrow().get(&to).cloned();
            if let Some(member) = member {
                let sent = member
                    .session
                    .borrow_mut()
                    .send_control(now, &message.as_control());
                if let Err(e) = sent {
                    debug!(error = %e, "control message not sent");
                }
                member.flush();
            }
        }
    }
}

/// On the owner core: asks the room, answers message 2, and runs the member until it leaves.
/// `slot` is the connection's place in `--max-connections-per-address`, held until the member
/// leaves.
pub async fn admit(
    shard: Rc<Shard>,
    stream: TcpStream,
    mut session: Box<ServerSession>,
    hello: HelloOwned,
    slot: AddressSlot,
) {
    let _slot = slot;
    let vors = &shard.vors;
    let stats = &shard.stats;
    let now = Instant::now();
    let Some(cell) = vors.room(&hello.room, &shard.limits.rooms) else {
        stats.vors_rejects.inc();
        stats.vors_server_full.inc();
        info!(reason = SERVER_FULL, "vors member refused");
        let _ = session.reject(now, SERVER_FULL);
        send_and_close(stream, &mut session).await;
        return;
    };
    let cookie = vors.new_cookie();
    let joined = cell
        .room
        .borrow_mut()
        .join(&hello.username, hello.password_hash.as_ref(), cookie);
    let fd = stream.as_raw_fd();
    let sid = match joined {
        Ok(sid) => sid,
        Err(reject) => {
            stats.vors_rejects.inc();
            info!(reason = reject.reason(), "vors member refused");
            let _ = session.reject(now, reject.reason());
            send_and_close(stream, &mut session).await;
            vors.forget_if_empty(&cell, &shard.limits.rooms);
            return;
        }
    };
    let keys = match session.accept(now, &cookie) {
        Ok(keys) => keys,
        Err(e) => {
            debug!(error = %e, "message 2 not made");
            cell.room.borrow_mut().leave(sid);
            cell.pump(now);
            vors.forget_if_empty(&cell, &shard.limits.rooms);
            return;
        }
    };
    cell.room.borrow_mut().set_keys(sid, keys);
    vors.cookies.borrow_mut().insert(cookie, cell.clone());
    let member = Rc::new(MemberConn {
        sid,
        cookie,
        session: RefCell::new(session),
        out: OutQueue::new(CONTROL_QUEUE_BYTES),
        fd,
        left: Cell::new(false),
    });
    cell.members.borrow_mut().insert(sid, member.clone());
    member.flush();
    stats.vors_joins.inc();
    publish(&shard);
    let peer = stream.peer_addr().ok();
    info!(
        sid = sid.0,
        members = cell.len(),
        peer = peer.and_then(|addr| shard.peer_at_info(addr)),
        "vors member joining"
    );
    run_member(shard.clone(), stream, cell, member).await;
}

/// Writes what a refused session has to say, then drops the connection.
async fn send_and_close(stream: TcpStream, session: &mut ServerSession) {
    use futures_lite::io::AsyncWriteExt;
    let mut stream = stream;
    while let Some(bytes) = session.poll_transmit() {
        if stream.write_all(&bytes).await.is_err() {
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
    let fd = member.fd;
    let (reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local({
        let member = member.clone();
        async move {
            if let Err(e) =
                crate::outbound::writer::drain(&member.out, fd, writer, |_, _| {}, None).await
            {
                debug!(error = %e, "vors control write ended");
                sys::shutdown(fd);
            }
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
                    process(&shard, &cell, &member, now);
                }
            }
        }
    });
    read_loop(&shard, &cell, &member, reader).await;
    leave(&shard, &cell, &member);
    timer_task.cancel().await;
    writer_task.await;
}

async fn read_loop(
    shard: &Shard,
    cell: &RoomCell,
    member: &MemberConn,
    mut reader: ReadHalf<TcpStream>,
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
        process(shard, cell, member, now);
    }
}

/// Acts on the session's events, then delivers whatever the room has to say.
fn process(shard: &Shard, cell: &RoomCell, member: &MemberConn, now: Instant) {
    loop {
        let event = member.session.borrow_mut().poll_event();
        let Some(event) = event else { break };
        let mut room = cell.room.borrow_mut();
        match event {
            ServerEvent::Muted => room.set_muted(member.sid, true),
            ServerEvent::Unmuted => room.set_muted(member.sid, false),
            ServerEvent::Chat(msg) => room.chat(member.sid, &msg),
            ServerEvent::Closed(reason) => {
                debug!(sid = member.sid.0, ?reason, "vors session ended");
                drop(room);
                leave(shard, cell, member);
            }
            ServerEvent::Hello(_) => {}
        }
    }
    member.flush();
    cell.pump(now);
}

/// Removes the member from the room (once), tells the others, and lets the writer finish.
fn leave(shard: &Shard, cell: &RoomCell, member: &MemberConn) {
    if member.left.replace(true) {
        return;
    }
    let now = Instant::now();
    let addr = cell.room.borrow().udp_addr(member.sid);
    cell.room.borrow_mut().leave(member.sid);
    cell.members.borrow_mut().remove(&member.sid);
    if let Some(addr) = addr {
        shard.vors.sources.borrow_mut().remove(&addr);
    }
    shard.vors.cookies.borrow_mut().remove(&member.cookie);
    cell.refresh_targets();
    cell.pump(now);
    member.flush();
    member.out.close();
    // Wake the reader if it is still waiting on the socket.
    sys::shutdown_read(member.fd);
    let this = shard.vors.rooms.borrow().get(&cell.name()).cloned();
    if let Some(this) = this {
        shard.vors.forget_if_empty(&this, &shard.limits.rooms);
    }
    publish(shard);
}

/// Updates this core's room and member gauges.
pub fn publish(shard: &Shard) {
    let (rooms, members) = shard.vors.census();
    shard.stats.vors_rooms.set(rooms);
    shard.stats.vors_members.set(members);
}
