//! Who may start a VoRS handshake, and how many may wait for their message 1.
//!
//! Reading a handshake's bytes costs the relay nothing but a connection; the Noise work on
//! message 1 is what costs (see `budget`). So a connection is admitted at accept by counts
//! only, and waits for its magic and message 1 holding a place in its core's table of waiting
//! handshakes ([`HandshakeGate`]), until its message 1 is whole (or it fails or runs out of
//! time, `vors::listener`'s stage deadlines):
//!
//! - `--max-handshakes-per-address` waiting at once per client, over every core;
//! - `--handshakes-per-minute` admitted per client, over every core (a token bucket): this
//!   also bounds how fast one client can churn the tables below by reconnecting;
//! - `--max-handshakes` waiting at once per core. A full table refuses nobody: the handshake
//!   that has waited longest is evicted (its connection shut, counted as
//!   `moose_vors_handshakes_evicted_total`) to make room. A stalled connection is therefore
//!   held only until enough newer ones come, and an honest client, whose message 1 follows its
//!   connection within a round trip, gets in however many stalled ones are waiting.
//!
//! A connection over a per-address limit is closed at once and counted by reason.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use super::Limits;
use super::address::AddressSlot;

/// Why a handshake was not started or not finished; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The client already has `--max-handshakes-per-address` handshakes waiting.
    PerAddress,
    /// The client started `--handshakes-per-minute` handshakes too recently.
    Rate,
    /// The core's handshake CPU budget (`--handshake-cpu-percent`) was spent: closed after
    /// message 1 was read, before any Noise work on it (or on message 2, on the owner core).
    CpuBudget,
}

impl HandshakeRefusal {
    pub const ALL: [HandshakeRefusal; 3] = [
        HandshakeRefusal::PerAddress,
        HandshakeRefusal::Rate,
        HandshakeRefusal::CpuBudget,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeRefusal::PerAddress => "per_address",
            HandshakeRefusal::Rate => "rate",
            HandshakeRefusal::CpuBudget => "cpu_budget",
        }
    }
}

/// A stage of the handshake that has a deadline of its own (`vors::listener`); one counter
/// each for the connections closed at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStage {
    /// The 7 bytes `VoRS v4`.
    Magic,
    /// Message 1's netstring, whole.
    Message1,
}

impl HandshakeStage {
    pub const ALL: [HandshakeStage; 2] = [HandshakeStage::Magic, HandshakeStage::Message1];

    /// The `stage` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeStage::Magic => "magic",
            HandshakeStage::Message1 => "message_1",
        }
    }
}

/// The handshakes waiting for their message 1 on one core, oldest first.
#[derive(Debug, Default)]
struct Waiting {
    /// Each one's connection, by admission number.
    by_age: BTreeMap<u64, RawFd>,
    next: u64,
}

/// One core's table of waiting handshakes.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    /// Most waiting at once; 0: no limit (none is evicted).
    limit: usize,
    waiting: Rc<RefCell<Waiting>>,
}

/// A handshake's place in the tables while it waits for its message 1; given back when it
/// drops. Drop it before the connection's descriptor is closed: the table names the
/// connection by its descriptor, to shut it on eviction.
#[derive(Debug)]
#[must_use = "the handshake's places are given back when the pass drops"]
pub(crate) struct HandshakePass {
    waiting: Rc<RefCell<Waiting>>,
    id: u64,
    _address: AddressSlot,
}

impl HandshakePass {
    /// Whether the handshake was evicted to make room (its connection is shut).
    pub(crate) fn evicted(&self) -> bool {
        !self.waiting.borrow().by_age.contains_key(&self.id)
    }
}

impl Drop for HandshakePass {
    fn drop(&mut self) {
        self.waiting.borrow_mut().by_age.remove(&self.id);
    }
}

/// An admitted handshake, and the one it evicted.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub pass: HandshakePass,
    /// The connection of the handshake that had waited longest, taken out of the table to
    /// make room: shut it down (its task then ends and closes it).
    pub evicted: Option<RawFd>,
    /// The rate table forgot its oldest client to make room for this one.
    pub forgot_a_client: bool,
}

impl HandshakeGate {
    pub(crate) fn new(limit: usize) -> Self {
        HandshakeGate {
            limit,
            waiting: Rc::default(),
        }
    }

    /// Handshakes waiting on this core now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.borrow().by_age.len()
    }

    /// Lets a handshake from `addr` on connection `conn` wait for its message 1, or says why
    /// not. A refused handshake spends no token of the client's rate.
    pub(crate) fn admit(
        &self,
        limits: &Limits,
        addr: IpAddr,
        conn: RawFd,
        now: Instant,
    ) -> Result<Admitted, HandshakeRefusal> {
        let address = limits
            .handshakes_per_address
            .try_take(addr)
            .ok_or(HandshakeRefusal::PerAddress)?;
        let token = limits.spend_handshake_token(addr, now);
        if !token.allowed {
            return Err(HandshakeRefusal::Rate);
        }
        let mut waiting = self.waiting.borrow_mut();
        let evicted = if self.limit != 0 && waiting.by_age.len() >= self.limit {
            waiting.by_age.pop_first().map(|(_, fd)| fd)
        } else {
            None
        };
        let id = waiting.next;
        waiting.next += 1;
        waiting.by_age.insert(id, conn);
        Ok(Admitted {
            pass: HandshakePass {
                waiting: self.waiting.clone(),
                id,
                _address: address,
            },
            evicted,
            forgot_a_client: token.evicted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn limits(per_core: usize, per_address: usize, per_minute: u32) -> (HandshakeGate, Limits) {
        let config = Config {
            max_handshakes: per_core,
            max_handshakes_per_address: per_address,
            handshakes_per_minute: per_minute,
            ..Config::default()
        };
        (HandshakeGate::new(per_core), Limits::new(&config))
    }

    fn admit(
        gate: &HandshakeGate,
        limits: &Limits,
        addr: IpAddr,
        conn: RawFd,
        now: Instant,
    ) -> Result<Admitted, HandshakeRefusal> {
        gate.admit(limits, addr, conn, now)
    }

    #[test]
    fn concurrent_handshakes_per_address_are_bounded() {
        let (gate, limits) = limits(100, 2, 0);
        let now = Instant::now();
        let first = admit(&gate, &limits, A, 1, now).expect("first");
        let _second = admit(&gate, &limits, A, 2, now).expect("second");
        assert_eq!(
            admit(&gate, &limits, A, 3, now).err(),
            Some(HandshakeRefusal::PerAddress)
        );
        assert!(admit(&gate, &limits, B, 4, now).is_ok());
        drop(first);
        assert!(
            admit(&gate, &limits, A, 5, now).is_ok(),
            "a finished one frees its slot"
        );
    }

    #[test]
    fn a_full_core_evicts_the_oldest_waiting_handshake() {
        let (gate, limits) = limits(3, 0, 0);
        let now = Instant::now();
        let mut held: Vec<HandshakePass> = (10..13)
            .map(|fd| {
                let admitted = admit(&gate, &limits, A, fd, now).expect("room");
                assert_eq!(admitted.evicted, None);
                admitted.pass
            })
            .collect();
        assert_eq!(gate.waiting(), 3);
        // The one with descriptor 11 finishes; the table has room again.
        drop(held.remove(1));
        let admitted = admit(&gate, &limits, B, 13, now).expect("room");
        assert_eq!(admitted.evicted, None);
        held.push(admitted.pass);
        // Full: each newcomer evicts the oldest still waiting, 10 then 12.
        let admitted = admit(&gate, &limits, B, 14, now).expect("admitted");
        assert_eq!(admitted.evicted, Some(10));
        assert!(held[0].evicted());
        assert!(!held[1].evicted());
        held.push(admitted.pass);
        let admitted = admit(&gate, &limits, B, 15, now).expect("admitted");
        assert_eq!(admitted.evicted, Some(12));
        assert_eq!(gate.waiting(), 3);
        // An evicted handshake's pass drops later, when its task notices: nothing else goes.
        drop(held.remove(0));
        assert_eq!(gate.waiting(), 3);
        drop(held);
        drop(admitted);
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn zero_waits_without_limit() {
        let (gate, limits) = limits(0, 0, 0);
        let now = Instant::now();
        let held: Vec<Admitted> = (0..1000)
            .map(|fd| admit(&gate, &limits, A, fd, now).expect("no limit"))
            .collect();
        assert!(held.iter().all(|a| a.evicted.is_none()));
        assert_eq!(gate.waiting(), 1000);
    }

    #[test]
    fn the_rate_counts_started_handshakes_not_refused_ones() {
        let (gate, limits) = limits(0, 1, 3);
        let t0 = Instant::now();
        let held = admit(&gate, &limits, A, 1, t0).expect("first");
        // Refused for concurrency: no token spent.
        assert_eq!(
            admit(&gate, &limits, A, 2, t0).err(),
            Some(HandshakeRefusal::PerAddress)
        );
        drop(held);
        for fd in 3..5 {
            drop(admit(&gate, &limits, A, fd, t0).expect("within the burst"));
        }
        assert_eq!(
            admit(&gate, &limits, A, 5, t0).err(),
            Some(HandshakeRefusal::Rate)
        );
        assert!(
            admit(&gate, &limits, B, 6, t0).is_ok(),
            "other addresses are apart"
        );
        // 3 per minute: one token back after 20 s.
        assert!(admit(&gate, &limits, A, 7, t0 + Duration::from_secs(21)).is_ok());
    }
}
