//! Slots per client address: how many connections (or handshakes, or rooms) one client may
//! have open at once, counted over every core. A client is an IPv4 address or an IPv6 /64
//! (see `client`).
//!
//! One small table for the whole process behind a `Mutex`: it is touched twice per TCP
//! connection (accept and close), never per message, so the lock is off the hot path and
//! the count is exact whichever core the kernel picked. A taken slot is an [`AddressSlot`]
//! guard; dropping it gives the slot back, on whatever core the connection ends (the guard is
//! `Send` and travels with the connection in a `Handoff`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::client::client_of;

/// The open count of every address that has at least one slot.
#[derive(Debug)]
pub(crate) struct AddressSlots {
    /// Most slots per address; 0: no limit (nothing is counted).
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot held by one client; given back on drop.
#[derive(Debug)]
#[must_use = "the slot is given back when the guard drops"]
pub(crate) struct AddressSlot {
    /// `None` when the table has no limit: nothing to give back.
    table: Option<Arc<AddressSlots>>,
    /// The client's key (`client::client_of`).
    addr: IpAddr,
}

impl AddressSlots {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(AddressSlots {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The table, even if a thread panicked while holding it: the counts stay consistent
    /// (every change is a single insert or remove).
    fn open(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for `addr`'s client, or `None` when it already holds `limit` of them.
    pub(crate) fn try_take(self: &Arc<Self>, addr: IpAddr) -> Option<AddressSlot> {
        let addr = client_of(addr);
        if self.limit == 0 {
            return Some(AddressSlot { table: None, addr });
        }
        let mut open = self.open();
        let count = open.entry(addr).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Some(self.clone()),
            addr,
        })
    }

    #[cfg(test)]
    /// Slots `addr`'s client holds now.
    pub(crate) fn held(&self, addr: IpAddr) -> usize {
        self.open().get(&client_of(addr)).copied().unwrap_or(0)
    }

    #[cfg(test)]
    /// Addresses holding at least one slot (the table's size).
    pub(crate) fn addresses(&self) -> usize {
        self.open().len()
    }

    fn give_back(&self, addr: IpAddr) {
        let mut open = self.open();
        if let Some(count) = open.get_mut(&addr) {
            *count -= 1;
            if *count == 0 {
                open.remove(&addr);
            }
        }
    }
}

impl AddressSlot {
    /// The client holding the slot (its key: an IPv6 client's /64 with the host bits zero).
    pub(crate) fn client(&self) -> IpAddr {
        self.addr
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(table) = &self.table {
            table.give_back(self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_address_gets_its_limit_and_no_more() {
        let slots = AddressSlots::new(2);
        let first = slots.try_take(A).expect("first");
        let _second = slots.try_take(A).expect("second");
        assert!(slots.try_take(A).is_none(), "third is over the limit");
        assert!(slots.try_take(B).is_some(), "other addresses are apart");
        drop(first);
        assert_eq!(slots.held(A), 1);
        assert!(
            slots.try_take(A).is_some(),
            "a given-back slot is free again"
        );
    }

    #[test]
    fn the_table_forgets_addresses_with_no_slot() {
        let slots = AddressSlots::new(3);
        let taken: Vec<_> = (0..3).map(|_| slots.try_take(A).expect("slot")).collect();
        let other = slots.try_take(B).expect("slot");
        assert_eq!(slots.addresses(), 2);
        drop(taken);
        drop(other);
        assert_eq!(slots.addresses(), 0);
    }

    #[test]
    fn zero_means_no_limit_and_no_bookkeeping() {
        let slots = AddressSlots::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| slots.try_take(A).expect("slot"))
            .collect();
        assert_eq!(slots.addresses(), 0);
        drop(held);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let slots = AddressSlots::new(2);
        let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };
        let _a = slots.try_take(ip("2001:db8:0:1::1")).expect("first");
        let _b = slots.try_take(ip("2001:db8:0:1:ffff::2")).expect("second");
        assert!(
            slots.try_take(ip("2001:db8:0:1::3")).is_none(),
            "a third address of the same /64 is the same client"
        );
        assert!(slots.try_take(ip("2001:db8:0:2::1")).is_some());
        assert_eq!(slots.held(ip("2001:db8:0:1::abcd")), 2);
    }

    #[test]
    fn slots_come_back_from_other_threads() {
        let slots = AddressSlots::new(1);
        let slot = slots.try_take(A).expect("slot");
        std::thread::spawn(move || drop(slot))
            .join()
            .expect("thread");
        assert!(slots.try_take(A).is_some());
    }
}
