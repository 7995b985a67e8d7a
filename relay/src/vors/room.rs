//! A VoRS room on its owner core: the sans-IO room logic, its members' sessions and outgoing
//! queues, and the fan-out table of the addresses media goes to.
//!
//! The fan-out table holds the room's recipients (`Room::recipients`: registered members not
//! paused for silence) and is rebuilt only when they change: at a registration or a leave, at
//! the once-a-second sweep that pauses silent members, and when a paused member is heard
//! again. Copying a packet checks nothing per copy.
//!
//! No socket here: a member's connection is run by `member`, and datagrams by `media`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use moose_proto::vors::Sid;
use moose_proto::vors::keys::{PASSWORD_HASH_LEN, SessionKeys};
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::room::{EdgeVerdict, Reject, Room, RoomConfig, SilentMembers};
use moose_proto::vors::server::ServerSession;
use socket2::SockAddr;
use tracing::debug;

use super::control_rate::ControlRate;
use super::remote::ClusterRoom;
use crate::outbound::queue::OutQueue;

/// Control traffic a member may have queued. Control messages are small and rare, and a
/// member that reads keeps its queue near empty; one whose backlog passes this (it stopped
/// reading) is cut: its queue is freed, its connection reset, and it leaves the room. Noise
/// transport messages cannot be dropped one by one: the stream would not decrypt after a gap.
pub(crate) const CONTROL_QUEUE_BYTES: usize = 256 << 10;

/// One member's session and what it has to send over its TCP connection.
#[derive(Debug)]
pub(crate) struct MemberConn {
    pub sid: Sid,
    /// The cookie message 2 carried, forgotten once the member registers or leaves.
    pub cookie: [u8; COOKIE_LEN],
    pub session: RefCell<Box<ServerSession>>,
    /// Drained into the connection by the member's writer task.
    pub out: OutQueue,
    /// How often it may chat and change its mute state (see `control_rate`).
    pub rate: RefCell<ControlRate>,
    /// Set once the member has left the room (see `member::leave`).
    pub left: Cell<bool>,
}

impl MemberConn {
    pub(crate) fn new(
        sid: Sid,
        cookie: [u8; COOKIE_LEN],
        session: Box<ServerSession>,
        rate: ControlRate,
    ) -> Self {
        MemberConn {
            sid,
            cookie,
            session: RefCell::new(session),
            out: OutQueue::new(CONTROL_QUEUE_BYTES),
            rate: RefCell::new(rate),
            left: Cell::new(false),
        }
    }

    /// Moves what the session wants to send into the connection's queue. A backlog past
    /// [`CONTROL_QUEUE_BYTES`] cuts the queue instead: its writer resets the connection, and
    /// the member's reader, woken by that, makes it leave the room.
    pub(crate) fn flush(&self) {
        while let Some(bytes) = self.session.borrow_mut().poll_transmit() {
            if self.out.push_control(Bytes::from(bytes)).is_err() {
                debug!(
                    sid = self.sid.0,
                    "vors control backlog over its bound: member cut"
                );
            }
        }
    }
}

/// A room and its members' connections.
#[derive(Debug)]
pub(crate) struct RoomCell {
    room: RefCell<Room>,
    members: RefCell<HashMap<Sid, Rc<MemberConn>>>,
    /// The room's media recipients in SID order, and their addresses ready for `sendmmsg`.
    targets: RefCell<(Vec<Sid>, Vec<SockAddr>)>,
    /// The room's side in the cluster (`remote`); `None` on a standalone relay.
    cluster: Option<ClusterRoom>,
    /// Members the cluster admitted that are not in the room yet (`reserve::Hold`): the room
    /// is not empty while they come.
    held: Cell<u32>,
}

impl RoomCell {
    pub(crate) fn new(name: &str, config: RoomConfig, cluster: Option<ClusterRoom>) -> Self {
        RoomCell {
            room: RefCell::new(Room::new(name, config)),
            members: RefCell::new(HashMap::new()),
            targets: RefCell::new((Vec::new(), Vec::new())),
            cluster,
            held: Cell::new(0),
        }
    }

    /// The room's side in the cluster; `None` on a standalone relay.
    pub(crate) fn cluster(&self) -> Option<&ClusterRoom> {
        self.cluster.as_ref()
    }

    /// The connection of local member `sid`.
    pub(crate) fn member(&self, sid: Sid) -> Option<Rc<MemberConn>> {
        self.members.borrow().get(&sid).cloned()
    }

    pub(crate) fn name(&self) -> String {
        self.room.borrow().name().to_owned()
    }

    pub(crate) fn len(&self) -> usize {
        self.room.borrow().len()
    }

    /// Nobody is in the room, joining, or held for (see `reserve::Hold`).
    pub(crate) fn is_empty(&self) -> bool {
        self.held.get() == 0 && self.room.borrow().is_empty()
    }

    /// A member the cluster admitted is coming: keep the room.
    pub(crate) fn hold(&self) {
        self.held.set(self.held.get() + 1);
    }

    /// A held member's join is decided.
    pub(crate) fn unhold(&self) {
        self.held.set(self.held.get().saturating_sub(1));
    }

    /// Asks the room to admit a member (see `Room::join`).
    pub(crate) fn join(
        &self,
        username: &str,
        password_hash: Option<&[u8; PASSWORD_HASH_LEN]>,
        cookie: [u8; COOKIE_LEN],
    ) -> Result<Sid, Reject> {
        self.room.borrow_mut().join(username, password_hash, cookie)
    }

    /// Admits a member under the SID the cluster reserved for it (see `Room::join_reserved`).
    pub(crate) fn join_reserved(
        &self,
        sid: Sid,
        username: &str,
        cookie: [u8; COOKIE_LEN],
    ) -> Result<Sid, Reject> {
        self.room
            .borrow_mut()
            .join_reserved(sid, username, cookie)
            .map(|()| sid)
    }

    /// Seats an admitted member with its media keys: its cookie is accepted from now on, from
    /// `control_ip` (the IP of its connection) only, unless the rooms take cookies from any IP.
    pub(crate) fn seat(&self, member: Rc<MemberConn>, keys: SessionKeys, control_ip: IpAddr) {
        self.room
            .borrow_mut()
            .set_keys(member.sid, keys, control_ip);
        self.members.borrow_mut().insert(member.sid, member);
    }

    /// Removes `sid` from the room (the others get `DEL` once pumped); returns the address it
    /// had registered.
    pub(crate) fn leave(&self, sid: Sid) -> Option<SocketAddr> {
        let addr = self.room.borrow().udp_addr(sid);
        let was_member = self.room.borrow_mut().leave(sid);
        self.members.borrow_mut().remove(&sid);
        match &self.cluster {
            Some(cluster) if was_member => cluster.handle().leave(cluster.id(), sid),
            _ => {}
        }
        addr
    }

    /// Runs `f` on the sans-IO room (mute, chat: what the room then has to say is pumped).
    pub(crate) fn with_room<R>(&self, f: impl FnOnce(&mut Room) -> R) -> R {
        f(&mut self.room.borrow_mut())
    }

    /// Judges a datagram that arrived at `now` (see `Room::verify_datagram`), and rebuilds
    /// the fan-out table if that changed the recipients (a registration, a resume).
    pub(crate) fn verify(&self, now: Instant, from: SocketAddr, datagram: &[u8]) -> EdgeVerdict {
        let mut room = self.room.borrow_mut();
        let verdict = room.verify_datagram(now, from, datagram);
        if room.take_recipients_changed() {
            drop(room);
            self.refresh_targets();
        }
        verdict
    }

    /// Pauses media to members that went silent (see `Room::sweep_silent`), and rebuilds the
    /// fan-out table if any was.
    pub(crate) fn sweep_silent(&self, now: Instant) -> SilentMembers {
        let found = self.room.borrow_mut().sweep_silent(now);
        if found.newly_paused > 0 {
            self.refresh_targets();
        }
        found
    }

    /// Adds a copy of datagram `index` of a batch for every recipient but `sender` to
    /// `copies`; returns how many it added.
    pub(crate) fn fan_out(
        &self,
        index: usize,
        sender: Sid,
        copies: &mut Vec<(usize, SockAddr)>,
    ) -> usize {
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

    /// Rebuilds the fan-out table from the room's recipients (after a member registered, left,
    /// was paused or resumed).
    pub(crate) fn refresh_targets(&self) {
        let mut room = self.room.borrow_mut();
        // This rebuild answers any change the room has yet to report.
        room.take_recipients_changed();
        let mut table = (Vec::new(), Vec::new());
        for sid in room.recipients() {
            if let Some(addr) = room.udp_addr(sid) {
                table.0.push(sid);
                table.1.push(SockAddr::from(addr));
            }
        }
        *self.targets.borrow_mut() = table;
    }

    /// Delivers every control message the room queued to its member's connection.
    pub(crate) fn pump(&self, now: Instant) {
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
