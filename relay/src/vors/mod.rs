//! VoRS rooms: the handshake listener, rooms on their owner core, and UDP media.
//!
//! A TCP connection is accepted on any core, which reads the magic and decrypts message 1 (the
//! costly Kyber step) and learns the room. The connection and its session then move to the
//! room's owner core, which runs the room (`moose_proto::vors::room`). UDP datagrams are
//! steered by the kernel to the core named by their first byte (see
//! `sys::steer_udp_by_first_byte`): the relay gives each room SIDs, and each joining member a
//! cookie, whose first byte modulo the number of cores is the owner core, so every datagram of
//! a room is checked and forwarded on the core that owns it, with no cross-core hop.

pub mod keyfile;
pub mod listener;
pub mod media;
pub mod room;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::net::UdpSocket;
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::room::RoomConfig;

use crate::limits::quota::Quota;
use room::RoomCell;

/// The VoRS state of one core.
#[derive(Debug)]
pub struct VorsCore {
    /// This core's number and the number of cores: the lane of its SIDs and cookies.
    lane: u8,
    lanes: u8,
    max_members: usize,
    rooms: RefCell<HashMap<String, Rc<RoomCell>>>,
    /// Cookies handed out and not yet seen over UDP.
    cookies: RefCell<HashMap<[u8; COOKIE_LEN], Rc<RoomCell>>>,
    /// Registered members' UDP addresses.
    sources: RefCell<HashMap<SocketAddr, Rc<RoomCell>>>,
    /// This core's UDP socket (set once the executor runs).
    pub udp: OnceCell<Rc<UdpSocket>>,
}

impl VorsCore {
    pub fn new(core: usize, cores: usize, max_members: usize) -> Self {
        // A lane is a byte value; `Config` keeps `--cores` at 255 or below. A silent `as u8`
        // here once turned 256 cores into zero lanes and a division by zero.
        let lanes = u8::try_from(cores).expect("at most 255 cores (checked by Config)");
        VorsCore {
            lane: core as u8,
            lanes,
            max_members,
            rooms: RefCell::new(HashMap::new()),
            cookies: RefCell::new(HashMap::new()),
            sources: RefCell::new(HashMap::new()),
            udp: OnceCell::new(),
        }
    }

    /// The room called `name`, made empty if it does not exist and `quota` (`--max-rooms`,
    /// shared by every core) has room for one more; `None` when it has not.
    fn room(&self, name: &str, quota: &Quota) -> Option<Rc<RoomCell>> {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(cell) = rooms.get(name) {
            return Some(cell.clone());
        }
        if !quota.try_take() {
            return None;
        }
        let config = RoomConfig {
            max_members: self.max_members,
            sid_lanes: self.lanes,
            sid_lane: self.lane,
        };
        let cell = Rc::new(RoomCell::new(name, config));
        rooms.insert(name.to_owned(), cell.clone());
        Some(cell)
    }

    /// A fresh random cookie whose first byte steers its datagram to this core.
    fn new_cookie(&self) -> [u8; COOKIE_LEN] {
        loop {
            let mut cookie: [u8; COOKIE_LEN] = rand::random();
            let lanes = u16::from(self.lanes);
            // Keep the byte uniform within the lane: map it onto the lane's values.
            let slots = 256 / lanes;
            let index = u16::from(cookie[0]) % slots;
            cookie[0] = (index * lanes + u16::from(self.lane)) as u8;
            if !self.cookies.borrow().contains_key(&cookie) {
                return cookie;
            }
        }
    }

    /// The room a datagram from `from` belongs to on this core, if any.
    fn room_of(&self, from: SocketAddr, datagram: &[u8]) -> Option<Rc<RoomCell>> {
        if datagram.len() == COOKIE_LEN
            && let Some(cell) = self.cookies.borrow().get(datagram)
        {
            return Some(cell.clone());
        }
        self.sources.borrow().get(&from).cloned()
    }

    /// Forgets an empty room and everything that pointed at it, and gives its place in
    /// `quota` back.
    fn forget_if_empty(&self, cell: &Rc<RoomCell>, quota: &Quota) {
        if cell.is_empty() {
            let removed = self.rooms.borrow_mut().remove(&cell.name());
            if removed.is_some() {
                quota.give_back();
            }
            self.cookies
                .borrow_mut()
                .retain(|_, c| !Rc::ptr_eq(c, cell));
            self.sources
                .borrow_mut()
                .retain(|_, c| !Rc::ptr_eq(c, cell));
        }
    }

    /// (rooms, members) on this core, for the gauges.
    fn census(&self) -> (u64, u64) {
        let rooms = self.rooms.borrow();
        let members = rooms.values().map(|r| r.len() as u64).sum();
        (rooms.len() as u64, members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_steer_to_their_core() {
        for (core, cores) in [(0, 1), (1, 2), (2, 3), (5, 7), (254, 255), (0, 255)] {
            let vors = VorsCore::new(core, cores, 64);
            for _ in 0..200 {
                let cookie = vors.new_cookie();
                assert_eq!(usize::from(cookie[0]) % cores, core);
            }
        }
    }

    #[test]
    fn rooms_past_the_quota_are_not_made_until_one_goes() {
        let quota = Quota::new(1);
        let vors = VorsCore::new(0, 1, 64);
        let first = vors.room("first", &quota).expect("room");
        assert!(vors.room("second", &quota).is_none(), "over --max-rooms");
        assert!(
            vors.room("first", &quota).is_some(),
            "an existing room is no new one"
        );
        vors.forget_if_empty(&first, &quota);
        assert_eq!(quota.used(), 0);
        // Forgetting twice gives back once.
        vors.forget_if_empty(&first, &quota);
        assert_eq!(quota.used(), 0);
        assert!(vors.room("second", &quota).is_some());
    }
}
