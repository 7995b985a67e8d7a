//! Stream identifiers and sets of them.

use std::fmt;

/// A stream identifier: the one byte that names a member of a room. It is the first byte of
/// every media packet and keepalive, part of the ChaCha20 nonce, and travels as one raw byte
/// inside control messages (["SID", sid], ADD, DEL, MUTED, UNMUTED, CHAT).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid(pub u8);

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.0)
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A set of SIDs: 256 bits, `Copy`, no allocation. The relay gets one per forwarded packet.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct SidSet([u64; 4]);

impl SidSet {
    /// The empty set.
    pub const fn new() -> Self {
        SidSet([0; 4])
    }

    fn slot(sid: Sid) -> (usize, u64) {
        (usize::from(sid.0 >> 6), 1u64 << (sid.0 & 63))
    }

    /// Adds `sid`.
    pub fn insert(&mut self, sid: Sid) {
        let (word, bit) = Self::slot(sid);
        self.0[word] |= bit;
    }

    /// Removes `sid`.
    pub fn remove(&mut self, sid: Sid) {
        let (word, bit) = Self::slot(sid);
        self.0[word] &= !bit;
    }

    /// Whether `sid` is in the set.
    pub fn contains(&self, sid: Sid) -> bool {
        let (word, bit) = Self::slot(sid);
        self.0[word] & bit != 0
    }

    /// Number of SIDs in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The SIDs in increasing order.
    pub fn iter(&self) -> SidSetIter {
        SidSetIter {
            words: self.0,
            word: 0,
        }
    }
}

impl fmt::Debug for SidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|s| s.0)).finish()
    }
}

impl IntoIterator for SidSet {
    type Item = Sid;
    type IntoIter = SidSetIter;

    fn into_iter(self) -> SidSetIter {
        self.iter()
    }
}

/// Iterator over a [`SidSet`], in increasing order.
#[derive(Debug, Clone)]
pub struct SidSetIter {
    words: [u64; 4],
    word: usize,
}

impl Iterator for SidSetIter {
    type Item = Sid;

    fn next(&mut self) -> Option<Sid> {
        while self.word < 4 {
            let w = self.words[self.word];
            if w != 0 {
                let bit = w.trailing_zeros();
                self.words[self.word] &= w - 1;
                // word < 4 and bit < 64, so the value is below 256.
                return Some(Sid((self.word as u32 * 64 + bit) as u8));
            }
            self.word += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_cover_every_word() {
        let mut set = SidSet::new();
        assert!(set.is_empty());
        for s in [0u8, 1, 63, 64, 127, 128, 200, 255] {
            set.insert(Sid(s));
        }
        assert_eq!(set.len(), 8);
        assert!(set.contains(Sid(64)) && !set.contains(Sid(65)));
        set.remove(Sid(64));
        set.remove(Sid(65));
        let got: Vec<u8> = set.iter().map(|s| s.0).collect();
        assert_eq!(got, vec![0, 1, 63, 127, 128, 200, 255]);
        assert_eq!(format!("{set:?}"), "{0, 1, 63, 127, 128, 200, 255}");
    }
}
