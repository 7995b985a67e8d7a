//! Line apikeys: validation and constant-time lookup.
//!
//! An apikey names a Moose line and is its only credential, so two things matter: a key that
//! is too weak to resist guessing ("moosebombing") is refused when the relay starts, and a
//! lookup takes the same time whatever the configured keys are. Nothing in this module ever
//! formats a key: errors carry positions, and `KeySet`'s `Debug` prints only a count.

use std::fmt;

use subtle::{Choice, ConstantTimeEq};

/// Shortest accepted key. The seed asks for at least 16 characters.
pub const MIN_LEN: usize = 16;
/// Longest accepted key. Bounds the work of a lookup and the padded storage of each key.
pub const MAX_LEN: usize = 256;

/// Why a key is refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    /// The key is empty (or the `apikey` parameter is present but has no value).
    Empty,
    /// Fewer than [`MIN_LEN`] characters.
    TooShort,
    /// More than [`MAX_LEN`] characters.
    TooLong,
    /// A character outside `A-Z a-z 0-9 - _`.
    BadCharacter,
}

impl fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The messages state the rule, never the key.
        match self {
            ApiKeyError::Empty => f.write_str("empty"),
            ApiKeyError::TooShort => write!(f, "too short (at least {MIN_LEN} characters)"),
            ApiKeyError::TooLong => write!(f, "too long (at most {MAX_LEN} characters)"),
            ApiKeyError::BadCharacter => {
                f.write_str("bad character (allowed: A-Z a-z 0-9 '-' '_')")
            }
        }
    }
}

impl std::error::Error for ApiKeyError {}

/// Checks the apikey rules: length `MIN_LEN..=MAX_LEN`, characters `A-Z a-z 0-9 - _`.
///
/// The length is checked before the characters, so the work is bounded by `MAX_LEN` for any
/// input. Validation is not secret-dependent (it looks only at the caller's input), so it
/// need not be constant-time.
pub fn validate(key: &[u8]) -> Result<(), ApiKeyError> {
    if key.is_empty() {
        return Err(ApiKeyError::Empty);
    }
    if key.len() < MIN_LEN {
        return Err(ApiKeyError::TooShort);
    }
    if key.len() > MAX_LEN {
        return Err(ApiKeyError::TooLong);
    }
    if !key.iter().all(|&b| is_key_byte(b)) {
        return Err(ApiKeyError::BadCharacter);
    }
    Ok(())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A key refused while reading the configured list.
///
/// `position` is 1-based: the item number in a comma-separated list (empty items count, so
/// it matches what the operator sees), or the line number in a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyListError {
    /// 1-based item number (comma list) or line number (key file) of the refused key.
    pub position: usize,
    /// What is wrong with it.
    pub error: ApiKeyError,
}

impl fmt::Display for KeyListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key #{}: {}", self.position, self.error)
    }
}

impl std::error::Error for KeyListError {}

/// One configured key, zero-padded to `MAX_LEN` so that every comparison touches the same
/// number of bytes whatever the key's length.
#[derive(Clone)]
struct StoredKey {
    padded: [u8; MAX_LEN],
    len: u64,
}

impl StoredKey {
    /// `key` must already be valid (so at most `MAX_LEN` bytes).
    fn new(key: &[u8]) -> Self {
        let mut padded = [0u8; MAX_LEN];
        padded[..key.len()].copy_from_slice(key);
        StoredKey {
            padded,
            len: key.len() as u64,
        }
    }

    fn ct_matches(&self, padded_input: &[u8; MAX_LEN], input_len: u64) -> Choice {
        // Both halves are always evaluated: `&` on `Choice` does not short-circuit.
        self.padded.ct_eq(padded_input) & self.len.ct_eq(&input_len)
    }
}

/// The configured keys of this relay.
///
/// Lookup cost depends only on the number of keys and on whether the input is longer than
/// `MAX_LEN`; see [`KeySet::contains`].
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<StoredKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("len", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Parses a comma-separated list, as in the `APIKEY` environment variable.
    ///
    /// Whitespace around items is trimmed and empty items are ignored, so an empty or blank
    /// string gives an empty set (which matches no key). Duplicates are kept once.
    pub fn parse_list(list: &str) -> Result<KeySet, KeyListError> {
        let mut set = KeySet::default();
        for (index, item) in list.split(',').enumerate() {
            set.insert_item(item, index + 1)?;
        }
        Ok(set)
    }

    /// Parses one key per line (the `--apikey-file` format).
    ///
    /// Lines are trimmed (so CRLF files work); blank lines and lines whose first non-blank
    /// character is `#` are ignored. Errors report the line number.
    pub fn parse_lines(text: &str) -> Result<KeySet, KeyListError> {
        let mut set = KeySet::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            set.insert_item(line, index + 1)?;
        }
        Ok(set)
    }

    fn insert_item(&mut self, item: &str, position: usize) -> Result<(), KeyListError> {
        let key = item.trim();
        if key.is_empty() {
            return Ok(());
        }
        validate(key.as_bytes()).map_err(|error| KeyListError { position, error })?;
        self.insert_valid(key.as_bytes());
        Ok(())
    }

    /// Configuration-time insert; the plain comparison is fine here because no caller input
    /// is involved.
    fn insert_valid(&mut self, key: &[u8]) {
        let is_new = self.keys.iter().all(|k| &k.padded[..k.len as usize] != key);
        if is_new {
            self.keys.push(StoredKey::new(key));
        }
    }

    /// Adds the keys of `other` (for example the file's keys to the environment's).
    pub fn extend(&mut self, other: KeySet) {
        for k in other.keys {
            self.insert_valid(&k.padded[..k.len as usize]);
        }
    }

    /// Number of distinct configured keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is configured; such a set matches nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Constant-time membership test.
    ///
    /// The input is zero-padded to `MAX_LEN` and compared with every configured key (also
    /// padded) with `subtle::ConstantTimeEq`, lengths included, without an early exit. So the
    /// time depends on the number of keys only: not on which key matches, whether one does,
    /// or the configured keys' lengths or contents. An input longer than `MAX_LEN` is refused
    /// at once; that reveals only the input's own length. An empty input never matches,
    /// because no configured key is empty.
    pub fn contains(&self, key: &[u8]) -> bool {
        if key.len() > MAX_LEN {
            return false;
        }
        let mut padded_input = [0u8; MAX_LEN];
        padded_input[..key.len()].copy_from_slice(key);
        let input_len = key.len() as u64;
        let mut found = Choice::from(0);
        for stored in &self.keys {
            found |= stored.ct_matches(&padded_input, input_len);
        }
        bool::from(found)
    }
}

/// A strong key from 32 random bytes the caller supplies (`proto` reads no randomness):
/// 64 lowercase hex characters, the same shape as the seed's example key.
pub fn generated_key(random: [u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(64);
    for b in random {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_KEY: &str = "8f711a8f43a3d6fbf9c367a8cd1b68b14db2781273c56e206040ecd31761f9d3";

    #[test]
    fn seed_example_key_is_valid() {
        assert_eq!(validate(SEED_KEY.as_bytes()), Ok(()));
    }

    #[test]
    fn length_limits() {
        assert_eq!(validate(b""), Err(ApiKeyError::Empty));
        assert_eq!(validate(&[b'a'; MIN_LEN - 1]), Err(ApiKeyError::TooShort));
        assert_eq!(validate(&[b'a'; MIN_LEN]), Ok(()));
        assert_eq!(validate(&[b'a'; MAX_LEN]), Ok(()));
        assert_eq!(validate(&[b'a'; MAX_LEN + 1]), Err(ApiKeyError::TooLong));
    }

    #[test]
    fn character_rules() {
        assert_eq!(validate(b"ABCxyz0189-_abcd"), Ok(()));
        for bad in [b'.', b' ', b'+', b'/', b'=', b'%', 0u8, 0xc3] {
            let mut key = *b"aaaaaaaaaaaaaaaa";
            key[7] = bad;
            assert_eq!(
                validate(&key),
                Err(ApiKeyError::BadCharacter),
                "byte {bad:#x}"
            );
        }
        // Non-ASCII letters are refused even though they are alphabetic.
        assert_eq!(
            validate("ééééééééééééééééé".as_bytes()),
            Err(ApiKeyError::BadCharacter)
        );
    }

    #[test]
    fn parse_list_trims_skips_empty_and_dedups() {
        let list = format!(" {SEED_KEY} ,, abcdefghijklmnop,{SEED_KEY},");
        let set = KeySet::parse_list(&list).expect("valid list");
        assert_eq!(set.len(), 2);
        assert!(set.contains(SEED_KEY.as_bytes()));
        assert!(set.contains(b"abcdefghijklmnop"));
        assert!(!set.contains(b" abcdefghijklmnop"));
        assert!(KeySet::parse_list("").expect("empty").is_empty());
        assert!(KeySet::parse_list(" , ,").expect("blank").is_empty());
    }

    #[test]
    fn parse_list_reports_position_not_key() {
        let err =
            KeySet::parse_list("abcdefghijklmnop,,dotted.key.of.enough.length").expect_err("bad");
        assert_eq!(
            err,
            KeyListError {
                position: 3,
                error: ApiKeyError::BadCharacter
            }
        );
        let err = KeySet::parse_list("abcdefghijklmnop, tooshort").expect_err("bad");
        assert_eq!(err.position, 2);
        assert_eq!(err.error, ApiKeyError::TooShort);
        let text = err.to_string();
        assert!(text.starts_with("key #2: too short"), "{text}");
        assert!(!text.contains("tooshort"));
    }

    #[test]
    fn parse_lines_comments_blank_and_crlf() {
        let text =
            format!("# line keys\r\n\r\n  {SEED_KEY}\r\n   # indented comment\nabcdefghijklmnop\n");
        let set = KeySet::parse_lines(&text).expect("valid file");
        assert_eq!(set.len(), 2);
        assert!(set.contains(SEED_KEY.as_bytes()));
        let err = KeySet::parse_lines("# c\n\nabcdefghijklmnop\nbad key value here\n")
            .expect_err("space inside key");
        assert_eq!(
            err,
            KeyListError {
                position: 4,
                error: ApiKeyError::BadCharacter
            }
        );
    }

    #[test]
    fn extend_merges_without_duplicates() {
        let mut a = KeySet::parse_list("abcdefghijklmnop").expect("a");
        let b = KeySet::parse_list(&format!("abcdefghijklmnop,{SEED_KEY}")).expect("b");
        a.extend(b);
        assert_eq!(a.len(), 2);
        assert!(a.contains(SEED_KEY.as_bytes()));
    }

    #[test]
    fn contains_exact_match_only() {
        let set = KeySet::parse_list(&format!("abcdefghijklmnop,{SEED_KEY}")).expect("set");
        assert!(set.contains(b"abcdefghijklmnop"));
        assert!(!set.contains(b"abcdefghijklmno"), "prefix");
        assert!(!set.contains(b"abcdefghijklmnopq"), "extension");
        assert!(!set.contains(b"abcdefghijklmnoP"), "case");
        // A zero-padded input must not match a shorter key through the padding.
        assert!(!set.contains(b"abcdefghijklmnop\0"));
        assert!(!set.contains(b""));
        assert!(!set.contains(&[b'a'; MAX_LEN + 1]));
        assert!(!KeySet::default().contains(b""));
        assert!(!KeySet::default().contains(SEED_KEY.as_bytes()));
    }

    #[test]
    fn contains_longest_key() {
        let long = "k".repeat(MAX_LEN);
        let set = KeySet::parse_list(&long).expect("max length key");
        assert!(set.contains(long.as_bytes()));
        assert!(!set.contains(&long.as_bytes()[1..]));
    }

    #[test]
    fn debug_and_display_never_show_keys() {
        let set = KeySet::parse_list(&format!("abcdefghijklmnop,{SEED_KEY}")).expect("set");
        let debug = format!("{set:?}");
        assert!(debug.contains("len: 2"), "{debug}");
        assert!(!debug.contains("abcdefghijklmnop") && !debug.contains(&SEED_KEY[..16]));
        // Byte values of the key must not leak either (as they would from a derived Debug).
        assert!(!debug.contains("97"), "{debug}");
        let err = KeySet::parse_list("secretsecretsecret.").expect_err("bad");
        assert!(!err.to_string().contains("secret"));
        assert!(!format!("{err:?}").contains("secret"));
    }

    #[test]
    fn generated_key_is_valid_hex() {
        let mut random = [0u8; 32];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0xa5;
        }
        let key = generated_key(random);
        assert_eq!(key.len(), 64);
        assert_eq!(&key[..4], "a580");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(validate(key.as_bytes()), Ok(()));
        assert_eq!(generated_key([0xff; 32]), "f".repeat(64));
    }
}
