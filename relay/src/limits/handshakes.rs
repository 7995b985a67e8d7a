//! Who may start a VoRS handshake. Decrypting message 1 costs a Kyber1024 decapsulation and
//! an X25519 operation, so the relay bounds the handshakes it drives before any Noise work:
//!
//! - `--max-handshakes` at once per core (a plain counter: handshakes run on the core that
//!   accepted them, until message 1 is decrypted);
//! - `--max-handshakes-per-address` at once per client address, over every core;
//! - `--handshakes-per-minute` started per client address, over every core (a token bucket).
//!
//! A connection over any of them is closed at once and counted by reason.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use super::Limits;
use super::address::AddressSlot;

/// Why a handshake was not started; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The core already drives `--max-handshakes` handshakes.
    Busy,
    /// The address already has `--max-handshakes-per-address` handshakes going.
    PerAddress,
    /// The address started `--handshakes-per-minute` handshakes too recently.
    Rate,
}

impl HandshakeRefusal {
    pub const ALL: [HandshakeRefusal; 3] = [
        HandshakeRefusal::Busy,
        HandshakeRefusal::PerAddress,
        HandshakeRefusal::Rate,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeRefusal::Busy => "core_busy",
            HandshakeRefusal::PerAddress => "per_address",
            HandshakeRefusal::Rate => "rate",
        }
    }
}

/// The handshakes running on one core.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    /// Most at once; 0: no limit.
    limit: usize,
    running: Rc<Cell<usize>>,
}

/// Leave to drive one handshake; the slots come back when it drops (when the handshake
/// ends, whichever way).
#[derive(Debug)]
#[must_use = "the handshake's slots are given back when the pass drops"]
pub(crate) struct HandshakePass {
    running: Rc<Cell<usize>>,
    _address: AddressSlot,
}

impl Drop for HandshakePass {
    fn drop(&mut self) {
        self.running.set(self.running.get().saturating_sub(1));
    }
}

impl HandshakeGate {
    pub(crate) fn new(limit: usize) -> Self {
        HandshakeGate {
            limit,
            running: Rc::new(Cell::new(0)),
        }
    }

    #[cfg(test)]
    /// Handshakes running on this core now.
    pub(crate) fn running(&self) -> usize {
        self.running.get()
    }

    /// Lets a handshake from `addr` start, or says why not. A refused handshake spends no
    /// token of the address's rate.
    pub(crate) fn admit(
        &self,
        limits: &Limits,
        addr: IpAddr,
        now: Instant,
    ) -> Result<HandshakePass, HandshakeRefusal> {
        if self.limit != 0 && self.running.get() >= self.limit {
            return Err(HandshakeRefusal::Busy);
        }
        let address = limits
            .handshakes_per_address
            .try_take(addr)
            .ok_or(HandshakeRefusal::PerAddress)?;
        if !limits.spend_handshake_token(addr, now) {
            return Err(HandshakeRefusal::Rate);
        }
        self.running.set(self.running.get() + 1);
        Ok(HandshakePass {
            running: self.running.clone(),
            _address: address,
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

    #[test]
    fn concurrent_handshakes_per_address_are_bounded() {
        let (gate, limits) = limits(100, 2, 0);
        let now = Instant::now();
        let first = gate.admit(&limits, A, now).expect("first");
        let _second = gate.admit(&limits, A, now).expect("second");
        assert_eq!(
            gate.admit(&limits, A, now).err(),
            Some(HandshakeRefusal::PerAddress)
        );
        assert!(gate.admit(&limits, B, now).is_ok());
        drop(first);
        assert!(
            gate.admit(&limits, A, now).is_ok(),
            "a finished one frees its slot"
        );
    }

    #[test]
    fn a_busy_core_refuses_everyone() {
        let (gate, limits) = limits(2, 0, 0);
        let now = Instant::now();
        let held = [
            gate.admit(&limits, A, now).expect("one"),
            gate.admit(&limits, B, now).expect("two"),
        ];
        assert_eq!(gate.running(), 2);
        assert_eq!(
            gate.admit(&limits, B, now).err(),
            Some(HandshakeRefusal::Busy)
        );
        drop(held);
        assert_eq!(gate.running(), 0);
        assert!(gate.admit(&limits, B, now).is_ok());
    }

    #[test]
    fn the_rate_counts_started_handshakes_not_refused_ones() {
        let (gate, limits) = limits(0, 1, 3);
        let t0 = Instant::now();
        let held = gate.admit(&limits, A, t0).expect("first");
        // Refused for concurrency: no token spent.
        assert_eq!(
            gate.admit(&limits, A, t0).err(),
            Some(HandshakeRefusal::PerAddress)
        );
        drop(held);
        for _ in 0..2 {
            drop(gate.admit(&limits, A, t0).expect("within the burst"));
        }
        assert_eq!(
            gate.admit(&limits, A, t0).err(),
            Some(HandshakeRefusal::Rate)
        );
        assert!(
            gate.admit(&limits, B, t0).is_ok(),
            "other addresses are apart"
        );
        // 3 per minute: one token back after 20 s.
        assert!(gate.admit(&limits, A, t0 + Duration::from_secs(21)).is_ok());
    }
}
