//! Netstrings (`<decimal length>:<bytes>,`) and netstring lists.
//!
//! VoRS frames every TCP message as a netstring, and a message with several values is a list:
//! one netstring whose payload is the values' netstrings back to back, `NS(NS(a) || NS(b))`.
//! The decoder is incremental: [`decode`] answers `Ok(None)` while the buffer is a valid
//! prefix of a netstring, and `Err` as soon as no continuation could make it valid — in
//! particular as soon as the length prefix exceeds the caller's limit, so a peer can never
//! make us wait for (or buffer) more than `max_len` bytes.

use std::fmt;

/// Bytes a netstring adds around its payload besides the length digits: `:` and `,`.
const PUNCTUATION: usize = 2;

/// Why a byte string is not (the beginning of) an acceptable netstring.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetstringError {
    /// Something other than a decimal digit where the length must start, or `:` with no digit.
    BadLength,
    /// A length with a leading zero (`01:x,`). Only `0` itself may start with `0`; refusing
    /// the rest keeps one encoding per length and stops `000…` padding from stalling us.
    LeadingZero,
    /// The length prefix already exceeds the caller's maximum (reported on the digits, before
    /// any payload is buffered).
    TooLong,
    /// The byte after the payload is not `,`.
    MissingComma,
    /// A list item ends before its declared length (only inside a complete list payload,
    /// where "need more bytes" cannot happen).
    Truncated,
}

impl fmt::Display for NetstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetstringError::BadLength => "netstring length is not a decimal number",
            NetstringError::LeadingZero => "netstring length has a leading zero",
            NetstringError::TooLong => "netstring is longer than allowed",
            NetstringError::MissingComma => "netstring does not end with a comma",
            NetstringError::Truncated => "netstring list item is truncated",
        })
    }
}

impl std::error::Error for NetstringError {}

/// Decodes the netstring at the start of `buf`.
///
/// Returns `Ok(Some((payload, consumed)))` when a whole netstring is there (`consumed` counts
/// its length digits, `:`, payload and `,`; bytes after it are left alone), `Ok(None)` when
/// `buf` is a valid but incomplete prefix, and `Err` when it can never become valid or its
/// length exceeds `max_len`.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(&[u8], usize)>, NetstringError> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let Some(&byte) = buf.get(digits) else {
            return Ok(None);
        };
        match byte {
            b'0'..=b'9' => {
                if digits == 1 && len == 0 {
                    return Err(NetstringError::LeadingZero);
                }
                // Checked so that a limit near usize::MAX cannot wrap into a small length.
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(byte - b'0')))
                    .ok_or(NetstringError::TooLong)?;
                if len > max_len {
                    return Err(NetstringError::TooLong);
                }
                digits += 1;
            }
            b':' if digits > 0 => break,
            _ => return Err(NetstringError::BadLength),
        }
    }
    let start = digits + 1;
    // Only a limit near usize::MAX could make this overflow; such a length is too long anyway.
    let end = start.checked_add(len).ok_or(NetstringError::TooLong)?;
    match buf.get(end) {
        None => Ok(None),
        Some(b',') => Ok(Some((&buf[start..end], end + 1))),
        Some(_) => Err(NetstringError::MissingComma),
    }
}

/// Number of decimal digits of `n` (1 for 0).
fn digit_count(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Length of the netstring that holds `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    digit_count(payload_len) + PUNCTUATION + payload_len
}

/// Appends the length prefix `<len>:` to `out`; the caller then appends `len` bytes and `,`.
fn write_prefix(len: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let count = digit_count(len);
    let mut n = len;
    for slot in digits[..count].iter_mut().rev() {
        // n % 10 < 10, so the cast cannot truncate.
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..count]);
    out.push(b':');
}

/// Appends `payload` as one netstring to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(payload.len()));
    write_prefix(payload.len(), out);
    out.extend_from_slice(payload);
    out.push(b',');
}

/// Appends one netstring of `len` bytes to `out`, its payload written in place by `fill`
/// (given exactly `len` zero bytes), and returns what `fill` returns. Spares a scratch
/// buffer when the payload is produced by a writer into a slice (an encryption).
pub fn encode_in_place<T>(len: usize, out: &mut Vec<u8>, fill: impl FnOnce(&mut [u8]) -> T) -> T {
    out.reserve(encoded_len(len));
    write_prefix(len, out);
    let start = out.len();
    out.resize(start + len, 0);
    let result = fill(&mut out[start..]);
    out.push(b',');
    result
}

/// Appends the list `NS(NS(items[0]) || NS(items[1]) || ...)` to `out`.
pub fn encode_list(items: &[&[u8]], out: &mut Vec<u8>) {
    let inner: usize = items.iter().map(|item| encoded_len(item.len())).sum();
    out.reserve(encoded_len(inner));
    write_prefix(inner, out);
    for item in items {
        encode(item, out);
    }
    out.push(b',');
}

/// The items of a list payload (the bytes inside the list's own netstring), as borrowed
/// slices. An item may itself be a list: items are just bytes.
///
/// The payload is complete, so an unfinished item is [`NetstringError::Truncated`]. After the
/// first error the iterator ends.
#[derive(Debug, Clone)]
pub struct ListItems<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates over the items of the list payload `payload`.
pub fn list_items(payload: &[u8]) -> ListItems<'_> {
    ListItems {
        rest: payload,
        failed: false,
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = Result<&'a [u8], NetstringError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match decode(self.rest, self.rest.len()) {
            Ok(Some((item, used))) => {
                self.rest = &self.rest[used..];
                Some(Ok(item))
            }
            // An item longer than what is left of the payload is cut off, not oversized.
            Ok(None) | Err(NetstringError::TooLong) => {
                self.failed = true;
                Some(Err(NetstringError::Truncated))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_written_in_place_makes_the_same_netstring() {
        let mut out = b"x".to_vec();
        let answer = encode_in_place(5, &mut out, |slot| {
            assert_eq!(slot, &[0; 5]);
            slot.copy_from_slice(b"hello");
            42
        });
        assert_eq!(answer, 42);
        let mut expected = b"x".to_vec();
        encode(b"hello", &mut expected);
        assert_eq!(out, expected);
        let mut empty = Vec::new();
        encode_in_place(0, &mut empty, |slot| assert!(slot.is_empty()));
        assert_eq!(empty, b"0:,");
    }

    #[test]
    fn decodes_a_whole_netstring_and_leaves_the_rest() {
        let buf = b"5:hello,3:abc,";
        assert_eq!(decode(buf, 100), Ok(Some((&b"hello"[..], 8))));
        assert_eq!(decode(&buf[8..], 100), Ok(Some((&b"abc"[..], 6))));
        assert_eq!(decode(b"0:,", 0), Ok(Some((&b""[..], 3))));
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        let full = b"12:hello world!,";
        for cut in 0..full.len() {
            assert_eq!(decode(&full[..cut], 12), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(
            decode(full, 12),
            Ok(Some((&b"hello world!"[..], full.len())))
        );
    }

    #[test]
    fn refuses_a_length_over_the_limit_before_the_payload_arrives() {
        assert_eq!(decode(b"13", 12), Err(NetstringError::TooLong));
        assert_eq!(
            decode(b"99999999999999999999999999", usize::MAX),
            Err(NetstringError::TooLong)
        );
        assert_eq!(decode(b"12:", 12), Ok(None));
    }

    #[test]
    fn refuses_malformed_lengths_and_terminators() {
        assert_eq!(decode(b"00:,", 10), Err(NetstringError::LeadingZero));
        assert_eq!(decode(b"01:a,", 10), Err(NetstringError::LeadingZero));
        assert_eq!(decode(b":,", 10), Err(NetstringError::BadLength));
        assert_eq!(decode(b"-1:,", 10), Err(NetstringError::BadLength));
        assert_eq!(decode(b"1x", 10), Err(NetstringError::BadLength));
        assert_eq!(decode(b" 1:a,", 10), Err(NetstringError::BadLength));
        assert_eq!(decode(b"1:ab", 10), Err(NetstringError::MissingComma));
    }

    #[test]
    fn encoding_round_trips_at_digit_boundaries() {
        for len in [0usize, 1, 9, 10, 99, 100, 1000] {
            let payload = vec![0xA5u8; len];
            let mut out = Vec::new();
            encode(&payload, &mut out);
            assert_eq!(out.len(), encoded_len(len));
            assert_eq!(decode(&out, len), Ok(Some((&payload[..], out.len()))));
        }
        let mut out = b"keep".to_vec();
        encode(b"hello", &mut out);
        assert_eq!(out, b"keep5:hello,");
    }

    #[test]
    fn lists_nest_and_iterate() {
        let mut inner = Vec::new();
        encode_list(&[b"x", b""], &mut inner);
        assert_eq!(inner, b"7:1:x,0:,,");
        let mut out = Vec::new();
        encode_list(&[b"PING", &inner], &mut out);
        let (payload, used) = decode(&out, 100).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        let items: Vec<_> = list_items(payload).collect();
        assert_eq!(items, vec![Ok(&b"PING"[..]), Ok(&inner[..])]);
        let (nested, _) = decode(&inner, 100).expect("valid").expect("complete");
        let nested: Vec<_> = list_items(nested).collect();
        assert_eq!(nested, vec![Ok(&b"x"[..]), Ok(&b""[..])]);
    }

    #[test]
    fn a_truncated_or_bad_list_item_is_an_error_and_ends_iteration() {
        let items: Vec<_> = list_items(b"1:a,2:ab").collect();
        assert_eq!(items, vec![Ok(&b"a"[..]), Err(NetstringError::Truncated)]);
        let items: Vec<_> = list_items(b"1:a,5:ab").collect();
        assert_eq!(items, vec![Ok(&b"a"[..]), Err(NetstringError::Truncated)]);
        let items: Vec<_> = list_items(b"x:,1:a,").collect();
        assert_eq!(items, vec![Err(NetstringError::BadLength)]);
        assert_eq!(list_items(b"").count(), 0);
    }
}
