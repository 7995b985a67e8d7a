//! What the fuzz targets and the seed generator share: fixed keys, the room the edge target
//! judges datagrams in, and the framing of inputs that carry several values.
//!
//! Everything here is deterministic except `snow`'s ephemeral keys, which it draws from the
//! operating system: a Noise target replays a crash input through the same code path, but
//! not with the same ciphertext bytes.

use std::net::SocketAddr;
use std::time::Instant;

use moose_proto::vors::Sid;
use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::{KEY_LEN, public_from_private};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::{KEY_WIRE_LEN, SessionKeys};
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::room::{Room, RoomConfig};

/// The relay's static X25519 key in the Noise targets. Any 32 bytes are a valid private key.
pub const SERVER_PRIVATE: [u8; KEY_LEN] = [0x42; KEY_LEN];

/// The public half of [`SERVER_PRIVATE`].
pub fn server_public() -> [u8; KEY_LEN] {
    public_from_private(&SERVER_PRIVATE).expect("X25519 public key")
}

/// The hello a client sends in the targets that run a whole handshake.
pub const HELLO: Hello<'static> = Hello {
    username: "fuzz",
    room: "lobby",
    password_hash: None,
};

/// The wall clock in the targets that run a handshake: the time clients put in message 1
/// (SENT_AT) and the server's clock when it judges it.
pub const WALL: UnixTime = UnixTime(1_800_000_000);

/// The message size limit the relay uses for WebSocket messages (64 KiB).
pub const WS_MAX_MESSAGE: usize = 64 * 1024;

/// Media keys number `n`: distinct, fixed, and not all-zero.
pub fn media_keys(n: u8) -> SessionKeys {
    let wire: [u8; KEY_WIRE_LEN] = core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ n);
    SessionKeys::from_wire(&wire)
}

/// A source address by number: `203.0.113.n:4000n`.
pub fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, n], 40000 + u16::from(n)))
}

/// The cookie of edge member number `n`.
pub fn cookie(n: u8) -> [u8; COOKIE_LEN] {
    [0xc0 | n; COOKIE_LEN]
}

/// Members of [`edge_room`]: the registered senders, then one joining member that has keys
/// and may still register (from [`addr`] `2`), then one without keys yet.
pub const EDGE_REGISTERED: u8 = 2;

/// The room the edge target starts from, and the SIDs of its four members (index `n` has
/// keys [`media_keys`] `n`, cookie [`cookie`] `n`, address [`addr`] `n`): members 0 and 1
/// registered, member 2 with keys but no address yet, member 3 without keys. Each member's
/// control connection came from its address's IP; the cookies registered at `now`.
pub fn edge_room(now: Instant) -> (Room, [Sid; 4]) {
    let mut room = Room::new("fuzz", RoomConfig::with_max_members(8));
    let mut sids = [Sid(0); 4];
    for (n, sid) in (0u8..).zip(sids.iter_mut()) {
        *sid = room
            .join(&format!("member{n}"), None, cookie(n))
            .expect("room has space");
        if n < 3 {
            room.set_keys(*sid, media_keys(n), addr(n).ip());
        }
    }
    for n in 0..EDGE_REGISTERED {
        room.verify_datagram(now, addr(n), &cookie(n));
    }
    while room.poll_message().is_some() {}
    (room, sids)
}

/// Splits an input into records `[tag][len][len bytes]` (the last one may be short). The
/// targets that take several datagrams or chunks read them this way; [`record`] writes one.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let (&len, rest) = rest.split_first().unwrap_or((&0, rest));
        let n = usize::from(len).min(rest.len());
        let (item, rest) = rest.split_at(n);
        data = rest;
        Some((tag, item))
    })
}

/// Appends one record for [`records`]. Items over 255 bytes are cut.
pub fn record(tag: u8, item: &[u8], out: &mut Vec<u8>) {
    let n = item.len().min(255);
    out.push(tag);
    out.push(n as u8);
    out.extend_from_slice(&item[..n]);
}

/// The relay-link key of the `cluster_link` target.
pub const LINK_KEY: moose_proto::cluster::LinkKey = moose_proto::cluster::LinkKey([0x4c; 16]);

/// The relay the `cluster_link` target's datagrams are addressed to.
pub const LINK_TO: moose_proto::cluster::RelayId = moose_proto::cluster::RelayId([0x72; 8]);
