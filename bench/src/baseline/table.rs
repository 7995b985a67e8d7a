//! The static VoRS fan-out table: which UDP source addresses share a room.
//!
//! One line per room, the members' source addresses (`IP:PORT`) separated by spaces. Empty
//! lines and lines starting with `#` are skipped. An address may appear once in the whole
//! table, since a datagram must name exactly one room by its source.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use socket2::SockAddr;

/// Why a table is refused. Line numbers are 1-based, as an editor shows them.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// A word that is not an `IP:PORT` socket address.
    #[error("line {line}: {word:?} is not an IP:PORT address")]
    BadAddress {
        /// Where it is.
        line: usize,
        /// The offending word.
        word: String,
    },
    /// An address already listed (on this line or an earlier one).
    #[error("line {line}: {addr} is already listed on line {first}")]
    Duplicate {
        /// Where it is repeated.
        line: usize,
        /// Where it first appeared.
        first: usize,
        /// The address.
        addr: SocketAddr,
    },
    /// The file could not be read.
    #[error("cannot read the VoRS table: {0}")]
    Read(String),
}

/// Where a source address sits in the table.
#[derive(Debug, Clone, Copy)]
struct Seat {
    room: usize,
    index: usize,
    line: usize,
}

/// Rooms of UDP addresses, looked up by a datagram's source.
#[derive(Debug, Default)]
pub struct VorsTable {
    /// Each room's members in table order, ready for `sendmmsg`.
    rooms: Vec<Vec<SockAddr>>,
    seats: HashMap<SocketAddr, Seat>,
}

impl VorsTable {
    /// Reads and parses the table file at `path`.
    pub fn load(path: &Path) -> Result<VorsTable, TableError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TableError::Read(format!("{}: {e}", path.display())))?;
        VorsTable::parse(&text)
    }

    /// Parses the table text.
    pub fn parse(text: &str) -> Result<VorsTable, TableError> {
        let mut table = VorsTable::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let words = raw.trim();
            if words.is_empty() || words.starts_with('#') {
                continue;
            }
            let room = table.rooms.len();
            let mut members = Vec::new();
            for (index, word) in words.split_whitespace().enumerate() {
                let addr: SocketAddr = word.parse().map_err(|_| TableError::BadAddress {
                    line,
                    word: word.to_owned(),
                })?;
                if let Some(seat) = table.seats.get(&addr) {
                    return Err(TableError::Duplicate {
                        line,
                        first: seat.line,
                        addr,
                    });
                }
                table.seats.insert(addr, Seat { room, index, line });
                members.push(SockAddr::from(addr));
            }
            table.rooms.push(members);
        }
        Ok(table)
    }

    /// Number of rooms.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Where a datagram from `from` goes: every other member of its room. `None` when the
    /// source is not listed (the datagram is dropped).
    pub fn recipients<'a>(
        &'a self,
        from: &SocketAddr,
    ) -> Option<impl Iterator<Item = &'a SockAddr> + use<'a>> {
        let seat = self.seats.get(from)?;
        let members = &self.rooms[seat.room];
        Some(
            members
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != seat.index)
                .map(|(_, addr)| addr),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn recipients(t: &VorsTable, from: &str) -> Option<Vec<SocketAddr>> {
        t.recipients(&addr(from))
            .map(|it| it.map(|a| a.as_socket().expect("inet")).collect())
    }

    #[test]
    fn good_file_with_empty_lines_and_comments() {
        let text = "\n# room of three\n127.0.0.1:4000 127.0.0.1:4001  127.0.0.1:4002\n\n   \n\
                    [::1]:5000\t[::1]:5001\n10.0.0.1:1\n";
        let t = VorsTable::parse(text).expect("valid table");
        assert_eq!(t.rooms(), 3);
        assert_eq!(
            recipients(&t, "127.0.0.1:4001"),
            Some(vec![addr("127.0.0.1:4000"), addr("127.0.0.1:4002")])
        );
        assert_eq!(recipients(&t, "[::1]:5000"), Some(vec![addr("[::1]:5001")]));
        assert_eq!(
            recipients(&t, "10.0.0.1:1"),
            Some(vec![]),
            "alone in its room"
        );
        assert_eq!(recipients(&t, "127.0.0.1:4003"), None, "unlisted");
    }

    #[test]
    fn empty_text_is_an_empty_table() {
        let t = VorsTable::parse("\n\n  \n").expect("valid");
        assert_eq!(t.rooms(), 0);
        assert_eq!(recipients(&t, "127.0.0.1:1"), None);
    }

    #[test]
    fn bad_address_names_line_and_word() {
        for (text, word) in [
            (
                "127.0.0.1:1 127.0.0.1:2\n\n127.0.0.1 127.0.0.1:3",
                "127.0.0.1",
            ),
            ("a b\n", "a"),
            ("127.0.0.1:1\n\n127.0.0.1:70000\n", "127.0.0.1:70000"),
        ] {
            let want_line = text
                .lines()
                .position(|l| l.split_whitespace().any(|w| w == word))
                .expect("word in text")
                + 1;
            assert_eq!(
                VorsTable::parse(text).expect_err("bad address"),
                TableError::BadAddress {
                    line: want_line,
                    word: word.to_owned()
                }
            );
        }
    }

    #[test]
    fn duplicates_are_refused_within_and_across_lines() {
        assert_eq!(
            VorsTable::parse("127.0.0.1:1 127.0.0.1:1").expect_err("dup"),
            TableError::Duplicate {
                line: 1,
                first: 1,
                addr: addr("127.0.0.1:1")
            }
        );
        assert_eq!(
            VorsTable::parse("127.0.0.1:1 127.0.0.1:2\n# x\n127.0.0.1:3 127.0.0.1:2")
                .expect_err("dup"),
            TableError::Duplicate {
                line: 3,
                first: 1,
                addr: addr("127.0.0.1:2")
            }
        );
    }
}
