//! What the cluster's tests against a real redis-server share: registry clients acting as
//! different relays, join requests, inbox reads, and a dump of everything Redis holds.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use moose_proto::cluster::keys::{CLUSTER_KEY_LEN, ClusterKey};
use moose_proto::cluster::seal::{MemberRecord, NONCE_LEN, seal_member};
use moose_proto::cluster::{ClusterKeys, RelayId, RoomId};
use moose_proto::vors::Sid;
use moose_proto::vors::keys::{KEY_WIRE_LEN, PASSWORD_HASH_LEN, SessionKeys};
use moose_relay::cluster::inbox::{Inbox, InboxEvent};
use moose_relay::cluster::registry::{JoinRequest, RedisEndpoint, Refusal, Registry, Reserved};
use moose_testkit::redis::Redis;
use redis::{IntoConnectionInfo, Value};

/// The cluster key of most tests.
pub(crate) fn cluster_key(byte: u8) -> ClusterKey {
    ClusterKey([byte; CLUSTER_KEY_LEN])
}

pub(crate) fn keys(byte: u8) -> ClusterKeys {
    ClusterKeys::derive(&cluster_key(byte))
}

pub(crate) fn info(redis: &Redis) -> RedisEndpoint {
    RedisEndpoint::Direct(redis.url().into_connection_info().unwrap())
}

/// Relay number `n`: its id (`n` repeated) and link address (`127.0.0.1:20000+n`).
pub(crate) fn relay_id(n: u8) -> RelayId {
    RelayId([n; 8])
}

pub(crate) fn link_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + u16::from(n)))
}

/// Relay number `n` of a cluster keyed by `keys`, registered.
pub(crate) fn relay(redis: &Redis, n: u8, keys: &ClusterKeys) -> Registry {
    let mut registry = Registry::connect(&info(redis), relay_id(n), link_addr(n), keys).unwrap();
    registry.register().unwrap();
    registry
}

/// A fresh redis-server and three relays registered on it, keyed by [`keys`] `1`.
pub(crate) fn three_relays() -> (Redis, ClusterKeys, [Registry; 3]) {
    let redis = Redis::start();
    let k = keys(1);
    let relays = [1, 2, 3].map(|n| relay(&redis, n, &k));
    (redis, k, relays)
}

/// A join of `username` into `room` through a relay with `lanes` cores, whose core `core`
/// owns the room, with password `password` (None: no password).
pub(crate) fn join(
    keys: &ClusterKeys,
    room: &str,
    username: &str,
    password: Option<&[u8; PASSWORD_HASH_LEN]>,
    core: u8,
    lanes: u8,
    max_members: usize,
) -> JoinRequest {
    let room = keys.room_id(room);
    JoinRequest {
        room,
        core,
        lanes,
        max_members,
        tag: keys.name_tag(&room, username),
        verifier: keys.password_verifier(&room, password),
        want_view: false,
    }
}

/// A simple join: one core, at most 64 members.
pub(crate) fn simple(keys: &ClusterKeys, room: &str, username: &str) -> JoinRequest {
    join(keys, room, username, None, 0, 1, 64)
}

pub(crate) fn reserve(registry: &mut Registry, join: &JoinRequest) -> Result<Reserved, Refusal> {
    registry.reserve(join).unwrap()
}

/// Media keys number `n`: every byte `n`.
pub(crate) fn media_keys(n: u8) -> SessionKeys {
    SessionKeys::from_wire(&[n; KEY_WIRE_LEN])
}

pub(crate) fn record(username: &str, n: u8) -> MemberRecord {
    MemberRecord {
        keys: media_keys(n),
        username: username.to_owned(),
    }
}

/// Reserves and announces `username` (keys `n`) in `room`; returns its SID.
pub(crate) fn enter(
    registry: &mut Registry,
    keys: &ClusterKeys,
    room: &str,
    username: &str,
    n: u8,
) -> Sid {
    let join = simple(keys, room, username);
    let sid = reserve(registry, &join).unwrap().sid;
    let sealed = seal_member(
        keys.seal(),
        &join.room,
        sid,
        &record(username, n),
        [n; NONCE_LEN],
    )
    .unwrap();
    assert!(registry.announce(join.room, sid, &sealed).unwrap());
    sid
}

/// Every event in relay `n`'s inbox so far (from its start).
pub(crate) fn inbox(redis: &Redis, n: u8) -> Vec<InboxEvent> {
    let mut inbox = Inbox::open(&info(redis), relay_id(n)).unwrap();
    let mut all = Vec::new();
    loop {
        let batch = inbox.read().unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.into_iter().map(|e| e.unwrap()));
    }
}

/// A plain connection for looking at what Redis holds.
pub(crate) fn raw(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Every key and the bytes of everything it holds (strings, hash fields and values, set
/// members, stream entries' fields and values), in one buffer per key.
pub(crate) fn dump(redis: &Redis) -> Vec<(String, Vec<u8>)> {
    let mut conn = raw(redis);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        let value: Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query(&mut conn).unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut conn).unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query(&mut conn)
                .unwrap(),
            other => panic!("{key}: a {other}, which the cluster never makes"),
        };
        let mut bytes = key.clone().into_bytes();
        flatten(&value, &mut bytes);
        out.push((key, bytes));
    }
    out
}

fn flatten(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::BulkString(b) => {
            out.extend_from_slice(b);
            out.push(0);
        }
        Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Polls `check` every 50 ms until it gives `Some`, or panics after `within` saying `what`.
pub(crate) fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The room id of `name` under `keys`.
pub(crate) fn room(keys: &ClusterKeys, name: &str) -> RoomId {
    keys.room_id(name)
}
