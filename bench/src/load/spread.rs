//! Rooms spread over several relays (`moose-bench vors --target A,B,C`): which target each
//! stream joins, and whether a delivery stayed on one relay or crossed between two.
//!
//! With [`Place::Members`] (the default), member `i` of a room (its place in the room, from 0)
//! joins target `i mod n`, so every room of at least two members spans two relays when there
//! are two, and the members of each room are spread as evenly as its size allows. With
//! [`Place::Rooms`], room `r` joins target `r mod n` whole: the same relays carry the same
//! load, every room local to one of them, which is what spread rooms are compared with to see
//! the cascade's own cost. "Same relay" means the sender and the receiver joined the same
//! address: the one relay fans the packet out alone. Otherwise the packet crossed the
//! cluster's relay link, and its latency includes that hop.

use std::net::SocketAddr;

/// How a run's streams are placed on its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Place {
    /// The members of each room go round the targets.
    #[default]
    Members,
    /// Each room joins one target whole; the rooms go round the targets.
    Rooms,
}

/// The targets of a run and the room size that places streams on them.
#[derive(Debug, Clone)]
pub struct Spread {
    targets: Vec<SocketAddr>,
    room_size: usize,
    place: Place,
}

impl Spread {
    /// Streams in rooms of `room_size` placed on `targets` (at least one) as `place` says.
    pub fn new(targets: Vec<SocketAddr>, room_size: usize, place: Place) -> Self {
        Spread {
            targets,
            room_size: room_size.max(1),
            place,
        }
    }

    /// Whether there is more than one target, and so a same/cross split to report.
    pub fn is_spread(&self) -> bool {
        self.targets.len() > 1
    }

    /// The index in `targets` of the target stream `stream` joins.
    pub fn target_of(&self, stream: usize) -> usize {
        let turn = match self.place {
            Place::Members => stream % self.room_size,
            Place::Rooms => stream / self.room_size,
        };
        turn % self.targets.len().max(1)
    }

    /// The address stream `stream` joins.
    pub fn addr_of(&self, stream: usize) -> SocketAddr {
        self.targets[self.target_of(stream)]
    }

    /// Whether streams `a` and `b` joined the same relay. By address, not by place in the
    /// list: one relay named twice (`--target A,A`) is still one relay.
    pub fn same_relay(&self, a: usize, b: usize) -> bool {
        self.addr_of(a) == self.addr_of(b)
    }

    /// How many other members of `stream`'s room joined its relay, and how many another:
    /// the deliveries each of its messages should make, same-relay and cross-relay.
    pub fn peers(&self, stream: usize) -> (u64, u64) {
        let first = stream / self.room_size * self.room_size;
        let (mut same, mut cross) = (0, 0);
        for other in (first..first + self.room_size).filter(|&o| o != stream) {
            if self.same_relay(stream, other) {
                same += 1;
            } else {
                cross += 1;
            }
        }
        (same, cross)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
        ports.iter().map(|&p| ([127, 0, 0, 1], p).into()).collect()
    }

    #[test]
    fn members_of_a_room_go_round_the_targets() {
        let spread = Spread::new(addrs(&[1, 2, 3]), 4, Place::Members);
        // Room 0 is streams 0..4, room 1 is 4..8: each starts again at the first target.
        let joined: Vec<usize> = (0..8).map(|s| spread.target_of(s)).collect();
        assert_eq!(joined, [0, 1, 2, 0, 0, 1, 2, 0]);
        assert_eq!(spread.addr_of(6), addrs(&[3])[0]);
        assert!(spread.is_spread());
    }

    #[test]
    fn peers_split_by_relay() {
        // Rooms of 4 over 3 relays: members 0 and 3 share relay 1, 1 and 2 are alone.
        let spread = Spread::new(addrs(&[1, 2, 3]), 4, Place::Members);
        assert_eq!(spread.peers(0), (1, 2));
        assert_eq!(spread.peers(3), (1, 2));
        assert_eq!(spread.peers(1), (0, 3));
        assert_eq!(spread.peers(6), (0, 3));
        assert!(spread.same_relay(4, 7) && !spread.same_relay(4, 5));
        // Every ordered pair of a room counted once: 4 × 3 = 12 = 2 same (0→3, 3→0) + 10.
        let total = (0..4)
            .map(|s| spread.peers(s))
            .fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        assert_eq!(total, (2, 10));
    }

    #[test]
    fn whole_rooms_go_round_the_targets() {
        let spread = Spread::new(addrs(&[1, 2, 3]), 2, Place::Rooms);
        // Rooms of 2: streams 0,1 on the first target, 2,3 on the second, 4,5 on the third,
        // 6,7 on the first again.
        let joined: Vec<usize> = (0..8).map(|s| spread.target_of(s)).collect();
        assert_eq!(joined, [0, 0, 1, 1, 2, 2, 0, 0]);
        // Every delivery stays on one relay.
        assert!((0..8).all(|s| spread.peers(s) == (1, 0)));
    }

    #[test]
    fn one_target_or_one_named_twice_is_all_same_relay() {
        let one = Spread::new(addrs(&[1]), 3, Place::Members);
        assert!(!one.is_spread());
        assert_eq!(one.peers(1), (2, 0));
        let twice = Spread::new(addrs(&[1, 1]), 4, Place::Members);
        assert!(
            twice.is_spread(),
            "reported, so A,A shows every delivery same-relay"
        );
        assert_eq!(twice.target_of(1), 1);
        assert_eq!(twice.peers(1), (3, 0));
    }
}
