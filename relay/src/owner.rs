//! Which core owns a room: a keyed hash of the room's identity.
//!
//! The key is random per process, so nobody outside can choose identities that pile onto one
//! core. The same hash, under a second key, gives the short tag logs use to tell lines apart
//! without ever printing an apikey.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// Maps room identities (an apikey, a VoRS room name) to their owner core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owners {
    cores: usize,
    placement_key: [u64; 2],
    tag_key: [u64; 2],
}

impl Owners {
    /// `random` must come from the OS random source.
    pub(crate) fn new(cores: usize, random: [u64; 4]) -> Self {
        assert!(cores > 0, "at least one core");
        Owners {
            cores,
            placement_key: [random[0], random[1]],
            tag_key: [random[2], random[3]],
        }
    }

    fn hash(key: [u64; 2], identity: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(key[0], key[1]);
        h.write(identity);
        h.finish()
    }

    /// The core that owns the room named `identity`.
    pub(crate) fn core_of(&self, identity: &[u8]) -> usize {
        (Self::hash(self.placement_key, identity) % self.cores as u64) as usize
    }

    /// A short, non-reversible tag for logs (32 bits of a keyed hash).
    pub(crate) fn log_tag(&self, identity: &[u8]) -> u32 {
        (Self::hash(self.tag_key, identity) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spreads() {
        let owners = Owners::new(4, [1, 2, 3, 4]);
        let mut per_core = [0usize; 4];
        for i in 0..4000u32 {
            let id = format!("line-key-{i:012}");
            let core = owners.core_of(id.as_bytes());
            assert_eq!(core, owners.core_of(id.as_bytes()));
            per_core[core] += 1;
        }
        // Each core gets about a quarter; a broken hash would leave cores empty.
        assert!(per_core.iter().all(|&n| n > 800), "{per_core:?}");
    }

    #[test]
    fn another_process_key_places_differently() {
        let a = Owners::new(64, [1, 2, 3, 4]);
        let b = Owners::new(64, [5, 6, 7, 8]);
        let moved = (0..100u32)
            .filter(|i| {
                let id = i.to_be_bytes();
                a.core_of(&id) != b.core_of(&id)
            })
            .count();
        assert!(moved > 80, "only {moved} of 100 moved");
    }
}
