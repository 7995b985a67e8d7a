//! How many VoRS rooms may exist: `--max-rooms` in the process, and `--max-rooms-per-address`
//! made by one client (an IPv4 address or an IPv6 /64, see `client`).
//!
//! A room is charged to the client whose member made it (the first to join), for as long as
//! it exists, whoever is in it later: keeping a room costs one member kept alive with PING.
//! Without the per-client count a few hundred addresses, each holding its connection limit's
//! worth of rooms, make every new room "server full"; with it, filling `--max-rooms` takes
//! `max_rooms / max_rooms_per_address` clients (625 at the defaults).
//!
//! Why per client and not per IPv4 /24: a /24 is often many unrelated households or a
//! university's NAT pool, and an attacker who rents addresses gets them spread over /24s as
//! easily as within one. The client is the unit every other per-address limit uses.

use std::net::IpAddr;
use std::sync::Arc;

use super::address::{AddressSlot, AddressSlots};
use super::quota::Quota;

/// Why a new room was not made; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomRefusal {
    /// The process holds `--max-rooms` rooms.
    ServerFull,
    /// The client already made `--max-rooms-per-address` rooms that still exist.
    PerAddress,
}

impl RoomRefusal {
    /// The ERR reason message 2 carries.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            RoomRefusal::ServerFull => "server full",
            RoomRefusal::PerAddress => "too many rooms",
        }
    }
}

/// The room counts every core shares.
#[derive(Debug)]
pub(crate) struct RoomQuota {
    total: Quota,
    per_client: Arc<AddressSlots>,
}

/// A room's place in the counts, held by its owner core while the room exists; give it back
/// with [`RoomQuota::give_back`].
#[derive(Debug)]
#[must_use = "a room's place is held until it is given back"]
pub(crate) struct RoomPlace {
    _client: AddressSlot,
}

impl RoomQuota {
    /// `max_rooms` in all, `per_client` by one client (0: no limit, for either).
    pub(crate) fn new(max_rooms: usize, per_client: usize) -> Self {
        RoomQuota {
            total: Quota::new(max_rooms),
            per_client: AddressSlots::new(per_client),
        }
    }

    /// A place for one more room made by `creator`, or why not.
    pub(crate) fn try_take(&self, creator: IpAddr) -> Result<RoomPlace, RoomRefusal> {
        let client = self
            .per_client
            .try_take(creator)
            .ok_or(RoomRefusal::PerAddress)?;
        if !self.total.try_take() {
            return Err(RoomRefusal::ServerFull);
        }
        Ok(RoomPlace { _client: client })
    }

    /// Gives back the place of a room that is gone.
    pub(crate) fn give_back(&self, place: RoomPlace) {
        drop(place);
        self.total.give_back();
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.total.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_client_makes_its_share_of_rooms_and_no_more() {
        let quota = RoomQuota::new(10, 2);
        let a = ip("192.0.2.1");
        let first = quota.try_take(a).expect("first");
        let _second = quota.try_take(a).expect("second");
        assert_eq!(quota.try_take(a).err(), Some(RoomRefusal::PerAddress));
        assert_eq!(quota.used(), 2, "a refused room takes no place");
        assert!(quota.try_take(ip("192.0.2.2")).is_ok(), "others are apart");
        quota.give_back(first);
        assert!(quota.try_take(a).is_ok(), "a room gone is a place back");
    }

    #[test]
    fn the_process_limit_still_holds() {
        let quota = RoomQuota::new(2, 0);
        let a = ip("2001:db8::1");
        let held = [
            quota.try_take(a).expect("one"),
            quota.try_take(a).expect("two"),
        ];
        assert_eq!(quota.try_take(a).err(), Some(RoomRefusal::ServerFull));
        for place in held {
            quota.give_back(place);
        }
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let quota = RoomQuota::new(0, 1);
        let _room = quota.try_take(ip("2001:db8:0:7::1")).expect("one");
        assert_eq!(
            quota.try_take(ip("2001:db8:0:7::2")).err(),
            Some(RoomRefusal::PerAddress)
        );
    }
}
