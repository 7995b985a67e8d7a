//! This relay's inbox: the Redis stream (`moose:inbox:<relay id>`) where the scripts append
//! every event of the rooms it hosts, read with XREAD on a connection of its own.
//!
//! Why a stream and not pub/sub: a stream keeps what was sent while the reader was away. After
//! a dropped connection the reader goes on from the last id it read, and nothing is lost as
//! long as Redis kept its data; pub/sub would have dropped the events silently. When Redis did
//! lose its data (a restart without persistence), the stream starts again with ids below the
//! cursor, which [`Inbox::reconnect`] notices; the relay then reads it from the start and
//! rebuilds its rooms from snapshots (docs/cluster.md, "Faults").

use std::net::SocketAddr;
use std::time::Duration;

use moose_proto::cluster::{RelayId, RoomId};
use moose_proto::vors::Sid;
use redis::{Connection, Value};

use super::registry::{COMMAND_TIMEOUT, RedisEndpoint, bytes, connect, int, relay_id, sid, text};

/// How long one XREAD waits for an event before it returns empty (and the thread looks at its
/// stop flag).
pub const BLOCK: Duration = Duration::from_millis(500);
/// Most events taken by one XREAD.
const BATCH: usize = 256;

/// One room event for this relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEvent {
    pub room: RoomId,
    /// This relay's core that owns the room (the hosts table said so).
    pub core: u8,
    /// The relay whose member the event is about.
    pub from: RelayId,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A member of `from` was announced: its sealed record, its mute state, and the core of
    /// `from` that owns the room (where link datagrams for the room go).
    Add {
        sid: Sid,
        origin_core: u8,
        muted: bool,
        sealed: Vec<u8>,
        /// `from`'s link address as the relay table had it (absent or unreadable: `None`).
        link: Option<SocketAddr>,
    },
    /// A member left (or its relay died).
    Del { sid: Sid },
    /// A member muted or unmuted itself.
    Muted { sid: Sid, muted: bool },
    /// A member said something (sealed).
    Chat { sid: Sid, sealed: Vec<u8> },
}

/// A stream entry id, `ms-seq`, compared as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    fn parse(text: &str) -> Option<EntryId> {
        let (ms, seq) = text.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }

    fn to_text(self) -> String {
        format!("{}-{}", self.0, self.1)
    }
}

/// The reader of one relay's inbox.
pub struct Inbox {
    conn: Connection,
    key: String,
    /// The id of the last entry read; `0-0` before the first.
    cursor: EntryId,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("key", &self.key)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Opens relay `me`'s inbox from its start.
    pub fn open(redis: &RedisEndpoint, me: RelayId) -> Result<Inbox, redis::RedisError> {
        let conn = connect(redis)?;
        conn.set_read_timeout(Some(BLOCK + COMMAND_TIMEOUT))?;
        Ok(Inbox {
            conn,
            key: format!("moose:inbox:{}", me.to_hex()),
            cursor: EntryId::default(),
        })
    }

    /// The id of the last entry read.
    pub fn cursor(&self) -> EntryId {
        self.cursor
    }

    /// A new connection after a failure, keeping the cursor unless the stream is now behind
    /// it (Redis lost its data and the stream began again): then from the start.
    pub fn reconnect(&mut self, redis: &RedisEndpoint) -> Result<(), redis::RedisError> {
        let conn = connect(redis)?;
        conn.set_read_timeout(Some(BLOCK + COMMAND_TIMEOUT))?;
        self.conn = conn;
        let last: Vec<Value> = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.conn)?;
        let newest = last.first().and_then(|entry| match entry {
            Value::Array(parts) => parts.first().and_then(text).and_then(EntryId::parse),
            _ => None,
        });
        if newest.is_none_or(|newest| newest < self.cursor) {
            self.cursor = EntryId::default();
        }
        Ok(())
    }

    /// The events after the cursor, waiting up to [`BLOCK`] for the first; moves the cursor
    /// past them and trims the stream up to the cursor. An entry that is not a well-formed event comes back as `Err(())` (to be
    /// counted), never stopping the others.
    pub fn read(&mut self) -> Result<Vec<Result<InboxEvent, ()>>, redis::RedisError> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(self.cursor.to_text())
            .query(&mut self.conn)?;
        let mut out = Vec::new();
        // [[key, [[id, [field, value, ...]], ...]]], or nil when nothing came.
        let Value::Array(streams) = reply else {
            return Ok(out);
        };
        for stream in streams {
            let Value::Array(parts) = stream else {
                continue;
            };
            let Some(Value::Array(entries)) = parts.get(1) else {
                continue;
            };
            for entry in entries {
                let Value::Array(entry) = entry else { continue };
                let (Some(id), Some(Value::Array(fields))) = (entry.first(), entry.get(1)) else {
                    continue;
                };
                if let Some(id) = text(id).and_then(EntryId::parse) {
                    self.cursor = self.cursor.max(id);
                }
                out.push(parse_event(fields).ok_or(()));
            }
        }
        if !out.is_empty() {
            // What was read is no longer needed: the stream keeps only what is unread, and
            // Redis's memory does not grow with the events of a busy cluster.
            let _: Value = redis::cmd("XTRIM")
                .arg(&self.key)
                .arg("MINID")
                .arg(self.cursor.to_text())
                .query(&mut self.conn)?;
        }
        Ok(out)
    }
}

/// An event from its stream fields (`common.lua`'s `publish`): room, core, from, t, sid, and
/// per kind oc, muted, rec or msg.
fn parse_event(fields: &[Value]) -> Option<InboxEvent> {
    let get = |name: &str| {
        fields
            .chunks(2)
            .find(|pair| pair.len() == 2 && bytes(&pair[0]) == Some(name.as_bytes()))
            .map(|pair| &pair[1])
    };
    let room = RoomId::from_hex(text(get("room")?)?)?;
    let core = u8::try_from(int(get("core")?)?).ok()?;
    let from = relay_id(get("from")?)?;
    let member = sid(get("sid")?)?;
    let kind = match text(get("t")?)? {
        "ADD" => EventKind::Add {
            sid: member,
            origin_core: u8::try_from(int(get("oc")?)?).ok()?,
            muted: text(get("muted")?)? == "1",
            sealed: bytes(get("rec")?)?.to_vec(),
            link: get("la").and_then(text).and_then(|la| la.parse().ok()),
        },
        "DEL" => EventKind::Del { sid: member },
        "MUTED" => EventKind::Muted {
            sid: member,
            muted: true,
        },
        "UNMUTED" => EventKind::Muted {
            sid: member,
            muted: false,
        },
        "CHAT" => EventKind::Chat {
            sid: member,
            sealed: bytes(get("msg")?)?.to_vec(),
        },
        _ => return None,
    };
    Some(InboxEvent {
        room,
        core,
        from,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn events_parse_from_their_fields_and_junk_is_refused() {
        let room = "00112233445566778899aabbccddeeff";
        let base = |t: &str, extra: &[(&str, &str)]| {
            let mut f = vec![
                bulk("room"),
                bulk(room),
                bulk("core"),
                bulk("1"),
                bulk("from"),
                bulk("0123456789abcdef"),
                bulk("t"),
                bulk(t),
                bulk("sid"),
                bulk("7"),
            ];
            for (k, v) in extra {
                f.push(bulk(k));
                f.push(bulk(v));
            }
            f
        };
        let add =
            parse_event(&base("ADD", &[("oc", "0"), ("muted", "1"), ("rec", "xyz")])).expect("add");
        assert_eq!(add.core, 1);
        assert_eq!(
            add.kind,
            EventKind::Add {
                sid: Sid(7),
                origin_core: 0,
                muted: true,
                sealed: b"xyz".to_vec(),
                link: None,
            }
        );
        // The link address, when the relay table had one; junk there is no address.
        let fields = [
            ("oc", "0"),
            ("muted", "0"),
            ("rec", "r"),
            ("la", "127.0.0.9:4000"),
        ];
        let with_link = parse_event(&base("ADD", &fields)).expect("add with link");
        assert!(matches!(
            with_link.kind,
            EventKind::Add { link: Some(a), .. } if a == SocketAddr::from(([127, 0, 0, 9], 4000))
        ));
        let fields = [("oc", "0"), ("muted", "0"), ("rec", "r"), ("la", "nowhere")];
        let junk = parse_event(&base("ADD", &fields)).expect("add with junk link");
        assert!(matches!(junk.kind, EventKind::Add { link: None, .. }));
        assert_eq!(
            parse_event(&base("UNMUTED", &[])).expect("unmuted").kind,
            EventKind::Muted {
                sid: Sid(7),
                muted: false
            }
        );
        assert!(
            parse_event(&base("ADD", &[("oc", "0")])).is_none(),
            "no record"
        );
        assert!(parse_event(&base("BOOM", &[])).is_none());
        let mut bad_core = base("DEL", &[]);
        bad_core[3] = bulk("256");
        assert!(parse_event(&bad_core).is_none());
        assert!(parse_event(&[]).is_none());
    }

    #[test]
    fn entry_ids_compare_as_pairs() {
        assert!(EntryId::parse("10-2") > EntryId::parse("9-99"));
        assert!(EntryId::parse("10-10") > EntryId::parse("10-9"));
        assert_eq!(EntryId::parse("x-1"), None);
        assert_eq!(EntryId(5, 1).to_text(), "5-1");
    }
}
