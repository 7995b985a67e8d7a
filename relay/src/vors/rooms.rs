//! The VoRS rooms of one core and the tables that find a datagram's room: by the cookie of a
//! joining member, or by the UDP address a member registered.
//!
//! Every room here is owned by this core (`owner`), and so is every datagram the kernel steers
//! to it: the cookies this core hands out carry its lane in their first byte (see `vors`).
//!
//! An address belongs to one member of the core at most: a cookie from an address another
//! member registered, in any room, is refused (`address_taken`), never re-routed, so an
//! impostor can neither take a member's audio nor remove its route when it leaves.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use std::time::Instant;

use glommio::net::UdpSocket;
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::room::{DropReason, RoomConfig, SilentMembers};

use moose_proto::cluster::RoomId;

use super::early::EarlyEvents;
use super::remote::ClusterRoom;
use super::room::RoomCell;
use crate::cluster::ClusterHandle;
use crate::limits::rooms::{RoomPlace, RoomQuota, RoomRefusal};

/// The VoRS state of one core.
#[derive(Debug)]
pub(crate) struct VorsCore {
    /// Every room's limits and media rules, with this core's lane of SIDs and cookies.
    config: RoomConfig,
    rooms: RefCell<HashMap<String, Rc<RoomCell>>>,
    /// Each room's place in `--max-rooms` and its maker's `--max-rooms-per-address`.
    places: RefCell<HashMap<String, RoomPlace>>,
    /// Cookies handed out and not yet seen over UDP.
    cookies: RefCell<HashMap<[u8; COOKIE_LEN], Rc<RoomCell>>>,
    /// Registered members' UDP addresses.
    sources: RefCell<HashMap<SocketAddr, Rc<RoomCell>>>,
    /// This core's UDP socket (set once the executor runs).
    pub udp: OnceCell<Rc<UdpSocket>>,
    /// The cluster (`None`: standalone). Its rooms have a side in it (`remote`).
    cluster: Option<ClusterHandle>,
    /// The rooms by cluster id, for the cluster's events and the relay link.
    by_id: RefCell<HashMap<RoomId, Rc<RoomCell>>>,
    /// Cluster events for rooms a join here is about to make.
    pub early: EarlyEvents,
}

impl VorsCore {
    /// The VoRS state of core `core` of `cores`, whose rooms follow `rooms` (its lanes are
    /// set here).
    pub(crate) fn new(core: usize, cores: usize, rooms: RoomConfig) -> Self {
        // A lane is a byte value; `Config` keeps `--cores` at 255 or below. A silent `as u8`
        // here once turned 256 cores into zero lanes and a division by zero.
        let lanes = u8::try_from(cores).expect("at most 255 cores (checked by Config)");
        VorsCore {
            config: RoomConfig {
                sid_lanes: lanes,
                sid_lane: core as u8,
                ..rooms
            },
            rooms: RefCell::new(HashMap::new()),
            places: RefCell::new(HashMap::new()),
            cookies: RefCell::new(HashMap::new()),
            sources: RefCell::new(HashMap::new()),
            udp: OnceCell::new(),
            cluster: None,
            by_id: RefCell::new(HashMap::new()),
            early: EarlyEvents::default(),
        }
    }

    /// The same, as a relay of the cluster `handle` talks to.
    pub(crate) fn with_cluster(self, handle: Option<ClusterHandle>) -> Self {
        VorsCore {
            cluster: handle,
            ..self
        }
    }

    /// The cluster this core's rooms belong to; `None` standalone.
    pub(crate) fn cluster(&self) -> Option<&ClusterHandle> {
        self.cluster.as_ref()
    }

    /// The room of cluster id `id` on this core, if it has one.
    pub(crate) fn room_by_id(&self, id: &RoomId) -> Option<Rc<RoomCell>> {
        self.by_id.borrow().get(id).cloned()
    }

    /// The room called `name`, made empty if it does not exist and `quota` (`--max-rooms` and
    /// `--max-rooms-per-address`, shared by every core) has room for one more made by
    /// `creator`; why not when it has not.
    pub(crate) fn room(
        &self,
        name: &str,
        quota: &RoomQuota,
        creator: IpAddr,
    ) -> Result<Rc<RoomCell>, RoomRefusal> {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(cell) = rooms.get(name) {
            return Ok(cell.clone());
        }
        let place = quota.try_take(creator)?;
        self.places.borrow_mut().insert(name.to_owned(), place);
        let cluster = self.cluster.as_ref().map(|handle| {
            let id = handle.room_id(name);
            ClusterRoom::new(handle.clone(), id)
        });
        let id = cluster.as_ref().map(ClusterRoom::id);
        let cell = Rc::new(RoomCell::new(name, self.config, cluster));
        rooms.insert(name.to_owned(), cell.clone());
        if let Some(id) = id {
            self.by_id.borrow_mut().insert(id, cell.clone());
        }
        Ok(cell)
    }

    /// A fresh random cookie whose first byte steers its datagram to this core.
    pub(crate) fn new_cookie(&self) -> [u8; COOKIE_LEN] {
        loop {
            let mut cookie: [u8; COOKIE_LEN] = rand::random();
            let lanes = u16::from(self.config.sid_lanes);
            // Keep the byte uniform within the lane: map it onto the lane's values.
            let slots = 256 / lanes;
            let index = u16::from(cookie[0]) % slots;
            cookie[0] = (index * lanes + u16::from(self.config.sid_lane)) as u8;
            if !self.cookies.borrow().contains_key(&cookie) {
                return cookie;
            }
        }
    }

    /// Notes the cookie message 2 gave a member of `cell`: its datagram will find the room.
    pub(crate) fn expect_cookie(&self, cookie: [u8; COOKIE_LEN], cell: &Rc<RoomCell>) {
        self.cookies.borrow_mut().insert(cookie, cell.clone());
    }

    /// The room a datagram from `from` belongs to on this core: the room of the member that
    /// registered `from`, or for a pending cookie from an address nobody registered, the
    /// cookie's room. `unknown_source` when neither; `address_taken` for a pending cookie
    /// from an address a member registered (an impostor, or a forgery of that address).
    pub(crate) fn room_of(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Rc<RoomCell>, DropReason> {
        let sources = self.sources.borrow();
        let registered = sources.get(&from);
        if datagram.len() == COOKIE_LEN {
            if let Some(cell) = self.cookies.borrow().get(datagram) {
                return match registered {
                    None => Ok(cell.clone()),
                    Some(_) => Err(DropReason::AddressTaken),
                };
            }
        }
        registered.cloned().ok_or(DropReason::UnknownSource)
    }

    /// A member of `cell` registered `from` with its cookie `datagram`: the cookie is spent,
    /// and the address finds the room from now on. (`room_of` let the cookie through only
    /// because nobody had `from`.)
    pub(crate) fn registered(&self, from: SocketAddr, datagram: &[u8], cell: &Rc<RoomCell>) {
        if let Ok(cookie) = <[u8; COOKIE_LEN]>::try_from(datagram) {
            self.cookies.borrow_mut().remove(&cookie);
        }
        self.sources
            .borrow_mut()
            .entry(from)
            .or_insert_with(|| cell.clone());
    }

    /// Forgets what pointed at a member that left: its cookie and its registered address
    /// (`addr`, which its room gave it: an address is registered to one member of the core).
    pub(crate) fn forget_member(&self, cookie: &[u8; COOKIE_LEN], addr: Option<SocketAddr>) {
        if let Some(addr) = addr {
            self.sources.borrow_mut().remove(&addr);
        }
        self.cookies.borrow_mut().remove(cookie);
    }

    /// Forgets an empty room and everything that pointed at it, and gives its place in
    /// `quota` back.
    pub(crate) fn forget_if_empty(&self, cell: &Rc<RoomCell>, quota: &RoomQuota) {
        if cell.is_empty() {
            let name = cell.name();
            let removed = self.rooms.borrow_mut().remove(&name);
            let place = self.places.borrow_mut().remove(&name);
            if let (Some(_), Some(place)) = (removed, place) {
                quota.give_back(place);
            }
            if let Some(cluster) = cell.cluster() {
                self.by_id.borrow_mut().remove(&cluster.id());
            }
            self.cookies
                .borrow_mut()
                .retain(|_, c| !Rc::ptr_eq(c, cell));
            self.sources
                .borrow_mut()
                .retain(|_, c| !Rc::ptr_eq(c, cell));
        }
    }

    /// As [`forget_if_empty`](Self::forget_if_empty), for the room this core holds under
    /// `name`, if any.
    pub(crate) fn forget_named_if_empty(&self, name: &str, quota: &RoomQuota) {
        let cell = self.rooms.borrow().get(name).cloned();
        if let Some(cell) = cell {
            self.forget_if_empty(&cell, quota);
        }
    }

    /// Pauses media to the members of this core's rooms that went silent (see
    /// `Room::sweep_silent`) and rebuilds the fan-out tables that changed; what it found,
    /// summed over the rooms.
    pub(crate) fn sweep_silent(&self, now: Instant) -> SilentMembers {
        let rooms = self.rooms.borrow();
        let mut sum = SilentMembers::default();
        for cell in rooms.values() {
            let found = cell.sweep_silent(now);
            sum.newly_paused += found.newly_paused;
            sum.paused += found.paused;
        }
        sum
    }

    /// (rooms, members) on this core, for the gauges.
    pub(crate) fn census(&self) -> (u64, u64) {
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
            let vors = VorsCore::new(core, cores, RoomConfig::default());
            for _ in 0..200 {
                let cookie = vors.new_cookie();
                assert_eq!(usize::from(cookie[0]) % cores, core);
            }
        }
    }

    const ANN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const BOB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn rooms_past_the_quota_are_not_made_until_one_goes() {
        let quota = RoomQuota::new(1, 0);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let first = vors.room("first", &quota, ANN).expect("room");
        assert_eq!(
            vors.room("second", &quota, ANN).err(),
            Some(RoomRefusal::ServerFull),
            "over --max-rooms"
        );
        assert!(
            vors.room("first", &quota, BOB).is_ok(),
            "an existing room is no new one"
        );
        vors.forget_if_empty(&first, &quota);
        assert_eq!(quota.used(), 0);
        // Forgetting twice gives back once.
        vors.forget_if_empty(&first, &quota);
        assert_eq!(quota.used(), 0);
        assert!(vors.room("second", &quota, ANN).is_ok());
    }

    #[test]
    fn a_room_is_charged_to_its_maker_until_it_goes() {
        let quota = RoomQuota::new(0, 1);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let first = vors.room("first", &quota, ANN).expect("room");
        assert_eq!(
            vors.room("second", &quota, ANN).err(),
            Some(RoomRefusal::PerAddress)
        );
        assert!(vors.room("second", &quota, BOB).is_ok(), "another maker");
        assert!(vors.room("first", &quota, ANN).is_ok(), "joining is free");
        vors.forget_if_empty(&first, &quota);
        assert!(vors.room("third", &quota, ANN).is_ok());
    }
}
