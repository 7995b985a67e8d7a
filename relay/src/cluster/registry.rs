//! The cluster's state in Redis, as one relay reads and changes it: a blocking client over one
//! connection whose every change is one of the Lua scripts (`lua/`, docs/cluster.md), so each
//! cluster-wide rule holds atomically whatever the other relays do at the same moment.
//!
//! Only the cluster's command thread (`service`) calls this, never a core: each call is a
//! round trip to Redis. Secrets arrive here already sealed (`moose_proto::cluster::seal`) or
//! keyed-hashed (room ids, name tags, password verifiers).

use std::net::SocketAddr;
use std::time::Duration;

use moose_proto::cluster::keys::KEY_CHECK_LEN;
use moose_proto::cluster::{ClusterKeys, NameTag, PasswordVerifier, RelayId, RoomId};
use moose_proto::vors::Sid;
use moose_proto::vors::room::Reject;
use redis::{Client, Connection, ConnectionInfo, Value};

use super::scripts::SCRIPTS;
use super::sentinel::SentinelSet;

/// How long a relay's liveness key lives without a heartbeat: after this, any relay's sweep
/// removes it and its members.
pub const ALIVE_TTL: Duration = Duration::from_secs(3);
/// How long connecting to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its answer before Redis counts as unreachable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to Redis did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis cannot be reached, or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The cluster's key-check value in Redis is another key's.
    #[error(
        "--cluster-key is not this cluster's key (its check value differs from the one in \
         Redis): every relay of a cluster needs the same key file"
    )]
    KeyMismatch,
    /// This relay is not in Redis's relay table: Redis lost its data, or the relay was swept
    /// as dead while cut off. It must register again (and restore its rooms).
    #[error("this relay is not registered in Redis")]
    Gone,
    /// A script answered something it never answers.
    #[error("unexpected reply from Redis ({0})")]
    Reply(&'static str),
}

/// Why the cluster refused a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WrongPassword,
    NameTaken,
    RoomFull,
}

impl Refusal {
    /// The same refusal as a standalone room gives (its ERR text is the same).
    pub fn reject(self) -> Reject {
        match self {
            Refusal::WrongPassword => Reject::WrongPassword,
            Refusal::NameTaken => Reject::NameTaken,
            Refusal::RoomFull => Reject::RoomFull,
        }
    }
}

/// What a member asks of the cluster to join a room through this relay.
#[derive(Debug, Clone, Copy)]
pub struct JoinRequest {
    pub room: RoomId,
    /// The room's owner core on this relay: its SIDs come from this lane.
    pub core: u8,
    /// This relay's cores (the number of lanes).
    pub lanes: u8,
    /// Most members of a room, over every relay (`--max-members`, the same everywhere).
    pub max_members: usize,
    pub tag: NameTag,
    pub verifier: PasswordVerifier,
    /// Answer with the room's view even if this relay hosts the room already: the relay has
    /// no room of that name yet (another of its joins is being asked at the same time).
    pub want_view: bool,
}

/// A member of the room on another relay, announced (its UDP address registered there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    pub sid: Sid,
    pub relay: RelayId,
    pub muted: bool,
    /// Its sealed record (keys and username), to open with the sealing key.
    pub sealed: Vec<u8>,
}

/// A room as this relay should see it from the others: the other relays hosting it (with
/// their owner core of the room) and their announced members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomView {
    pub hosts: Vec<(RelayId, u8)>,
    pub members: Vec<RemoteMember>,
}

/// A member admitted by the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub sid: Sid,
    /// The room as it stood when this relay started hosting it with this member; `None` when
    /// the relay hosted it already (its view is current through its inbox).
    pub view: Option<RoomView>,
}

/// One of this relay's own members, as re-registration restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnMember {
    pub sid: Sid,
    pub tag: NameTag,
    pub muted: bool,
    /// Its sealed record once announced; `None` while it is still joining.
    pub sealed: Option<Vec<u8>>,
}

/// What a sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Dead relays removed now, with their members.
    pub swept: Vec<RelayId>,
    /// Live relays and their link addresses (this one included).
    pub live: Vec<(RelayId, SocketAddr)>,
}

/// A connection to the cluster's Redis on behalf of relay `me`.
pub struct Registry {
    conn: Connection,
    me: RelayId,
    link: SocketAddr,
    check: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("me", &self.me)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Where the cluster's Redis is (password included).
#[derive(Debug, Clone)]
pub enum RedisEndpoint {
    /// One address (`redis://`, `rediss://`).
    Direct(ConnectionInfo),
    /// The primary that a set of sentinels names (`redis+sentinel://`), asked again on every
    /// connection: after a failover the next reconnect reaches the new primary.
    Sentinel(SentinelSet),
}

/// Opens a connection to the cluster's Redis (through its sentinels, if so) with the timeouts
/// of this module.
pub fn connect(redis: &RedisEndpoint) -> Result<Connection, redis::RedisError> {
    match redis {
        RedisEndpoint::Direct(info) => connect_to(info),
        RedisEndpoint::Sentinel(set) => set.connect_primary(connect_to),
    }
}

/// Opens a connection to one Redis server with the timeouts of this module (TLS for
/// `rediss://`).
fn connect_to(info: &ConnectionInfo) -> Result<Connection, redis::RedisError> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // rustls needs its process-wide provider; a second call finds it installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let conn = Client::open(info.clone())?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(conn)
}

impl Registry {
    /// Connects as relay `me`, whose relay link others reach at `link`. Registers nothing
    /// yet: see [`Registry::register`].
    pub fn connect(
        redis: &RedisEndpoint,
        me: RelayId,
        link: SocketAddr,
        keys: &ClusterKeys,
    ) -> Result<Registry, RegistryError> {
        let check: [u8; KEY_CHECK_LEN] = keys.key_check();
        Ok(Registry {
            conn: connect(redis)?,
            me,
            link,
            check: moose_proto::cluster::ids::to_hex(&check),
        })
    }

    /// This relay.
    pub fn me(&self) -> RelayId {
        self.me
    }

    /// Enters the relay table (or enters it again) and starts the liveness key. Refused with
    /// [`RegistryError::KeyMismatch`] when the cluster uses another key.
    pub fn register(&mut self) -> Result<(), RegistryError> {
        let reply: Vec<Value> = SCRIPTS
            .register
            .arg(self.me.to_hex())
            .arg(self.link.to_string())
            .arg(&self.check)
            .arg(ALIVE_TTL.as_millis() as u64)
            .invoke(&mut self.conn)?;
        match status(&reply)? {
            "ok" => Ok(()),
            "keycheck" => Err(RegistryError::KeyMismatch),
            _ => Err(RegistryError::Reply("register")),
        }
    }

    /// Renews the liveness key; [`RegistryError::Gone`] when the relay must register again.
    pub fn heartbeat(&mut self) -> Result<(), RegistryError> {
        let reply: Vec<Value> = SCRIPTS
            .heartbeat
            .arg(self.me.to_hex())
            .arg(ALIVE_TTL.as_millis() as u64)
            .arg(&self.check)
            .invoke(&mut self.conn)?;
        match status(&reply)? {
            "ok" => Ok(()),
            "gone" => Err(RegistryError::Gone),
            "keycheck" => Err(RegistryError::KeyMismatch),
            _ => Err(RegistryError::Reply("heartbeat")),
        }
    }

    /// Asks the cluster to admit a member (not announced yet): password, name, limit, SID.
    pub fn reserve(
        &mut self,
        join: &JoinRequest,
    ) -> Result<Result<Reserved, Refusal>, RegistryError> {
        let reply: Vec<Value> = SCRIPTS
            .reserve
            .arg(join.room.to_hex())
            .arg(self.me.to_hex())
            .arg(join.core)
            .arg(join.lanes.max(1))
            .arg(join.max_members)
            .arg(join.tag.to_hex())
            .arg(join.verifier.0.as_slice())
            .arg(if join.want_view { "1" } else { "0" })
            .invoke(&mut self.conn)?;
        match status(&reply)? {
            "ok" => {
                let sid = reply
                    .get(1)
                    .and_then(int)
                    .and_then(|s| u8::try_from(s).ok())
                    .ok_or(RegistryError::Reply("reserve sid"))?;
                let view = if reply.len() > 2 {
                    Some(parse_view(&reply[2..])?)
                } else {
                    None
                };
                Ok(Ok(Reserved {
                    sid: Sid(sid),
                    view,
                }))
            }
            "wrong_password" => Ok(Err(Refusal::WrongPassword)),
            "name_taken" => Ok(Err(Refusal::NameTaken)),
            "room_full" => Ok(Err(Refusal::RoomFull)),
            "gone" => Err(RegistryError::Gone),
            _ => Err(RegistryError::Reply("reserve")),
        }
    }

    /// Stores the sealed record of a joined member and sends ADD to the room's other hosts.
    /// False when the member is not (or no longer) this relay's.
    pub fn announce(
        &mut self,
        room: RoomId,
        sid: Sid,
        sealed: &[u8],
    ) -> Result<bool, RegistryError> {
        self.member_script(&SCRIPTS.announce, room, sid, Some(sealed), "announce")
    }

    /// Removes a member (DEL to the others if it was announced). False when it was not there.
    pub fn leave(&mut self, room: RoomId, sid: Sid) -> Result<bool, RegistryError> {
        self.member_script(&SCRIPTS.leave, room, sid, None, "leave")
    }

    /// Records a member's mute state (MUTED/UNMUTED to the others on a change).
    pub fn set_muted(
        &mut self,
        room: RoomId,
        sid: Sid,
        muted: bool,
    ) -> Result<bool, RegistryError> {
        let flag: &[u8] = if muted { b"1" } else { b"0" };
        self.member_script(&SCRIPTS.mute, room, sid, Some(flag), "mute")
    }

    /// Sends a member's sealed chat message to the room's other hosts.
    pub fn chat(&mut self, room: RoomId, sid: Sid, sealed: &[u8]) -> Result<bool, RegistryError> {
        self.member_script(&SCRIPTS.chat, room, sid, Some(sealed), "chat")
    }

    /// Runs one of the scripts about one of this relay's members (ARGV: room, relay, SID and
    /// `extra`); true for `{'ok'}`, false for `{'absent'}`.
    fn member_script(
        &mut self,
        script: &redis::Script,
        room: RoomId,
        sid: Sid,
        extra: Option<&[u8]>,
        what: &'static str,
    ) -> Result<bool, RegistryError> {
        let mut call = script.prepare_invoke();
        call.arg(room.to_hex()).arg(self.me.to_hex()).arg(sid.0);
        if let Some(extra) = extra {
            call.arg(extra);
        }
        let reply: Vec<Value> = call.invoke(&mut self.conn)?;
        present(&reply, what)
    }

    /// The room as this relay should see it from the others, read at one instant.
    pub fn snapshot(&mut self, room: RoomId) -> Result<RoomView, RegistryError> {
        let reply: Vec<Value> = SCRIPTS
            .snapshot
            .arg(room.to_hex())
            .arg(self.me.to_hex())
            .invoke(&mut self.conn)?;
        match status(&reply)? {
            "ok" => parse_view(&reply[1..]),
            _ => Err(RegistryError::Reply("snapshot")),
        }
    }

    /// Removes every relay whose liveness expired, with its members, and reads the table.
    pub fn sweep(&mut self) -> Result<Sweep, RegistryError> {
        let reply: Vec<Value> = SCRIPTS.sweep.arg(self.me.to_hex()).invoke(&mut self.conn)?;
        let [Value::Array(swept), Value::Array(live)] = reply.as_slice() else {
            return Err(RegistryError::Reply("sweep"));
        };
        let swept = swept
            .iter()
            .map(|v| relay_id(v).ok_or(RegistryError::Reply("sweep id")))
            .collect::<Result<_, _>>()?;
        let live = live
            .chunks(2)
            .filter_map(|pair| {
                let [id, addr] = pair else { return None };
                Some((relay_id(id)?, text(addr)?.parse().ok()?))
            })
            .collect();
        Ok(Sweep { swept, live })
    }

    /// Leaves the cluster at once: every member of this relay goes (DEL to the others), and
    /// the relay with them.
    pub fn retire(&mut self) -> Result<(), RegistryError> {
        let _: Vec<Value> = SCRIPTS
            .retire
            .arg(self.me.to_hex())
            .invoke(&mut self.conn)?;
        Ok(())
    }

    /// Makes Redis hold exactly `members` as this relay's members of `room` (re-registration);
    /// returns the members that no longer fit and must be ended.
    pub fn reconcile(
        &mut self,
        room: RoomId,
        core: u8,
        verifier: PasswordVerifier,
        max_members: usize,
        members: &[OwnMember],
    ) -> Result<Vec<Sid>, RegistryError> {
        let mut call = SCRIPTS.reconcile.prepare_invoke();
        call.arg(room.to_hex())
            .arg(self.me.to_hex())
            .arg(core)
            .arg(verifier.0.as_slice())
            .arg(max_members);
        for m in members {
            call.arg(m.sid.0)
                .arg(m.tag.to_hex())
                .arg(if m.muted { "1" } else { "0" })
                .arg(if m.sealed.is_some() { "1" } else { "0" })
                .arg(m.sealed.as_deref().unwrap_or_default());
        }
        let reply: Vec<Value> = call.invoke(&mut self.conn)?;
        match status(&reply)? {
            "ok" => reply[1..]
                .iter()
                .map(|v| sid(v).ok_or(RegistryError::Reply("reconcile sid")))
                .collect(),
            "gone" => Err(RegistryError::Gone),
            _ => Err(RegistryError::Reply("reconcile")),
        }
    }

    /// The rooms Redis says this relay hosts.
    pub fn hosted_rooms(&mut self) -> Result<Vec<RoomId>, RegistryError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("moose:relay:{}:rooms", self.me.to_hex()))
            .query(&mut self.conn)?;
        Ok(ids.iter().filter_map(|id| RoomId::from_hex(id)).collect())
    }
}

/// The first item of a script's reply: its status word.
fn status(reply: &[Value]) -> Result<&str, RegistryError> {
    reply
        .first()
        .and_then(|v| match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok(),
            Value::SimpleString(s) => Some(s.as_str()),
            _ => None,
        })
        .ok_or(RegistryError::Reply("no status"))
}

/// `{'ok'}` → true, `{'absent'}` → false.
fn present(reply: &[Value], what: &'static str) -> Result<bool, RegistryError> {
    match status(reply)? {
        "ok" => Ok(true),
        "absent" => Ok(false),
        _ => Err(RegistryError::Reply(what)),
    }
}

pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

pub(crate) fn sid(v: &Value) -> Option<Sid> {
    u8::try_from(int(v)?).ok().map(Sid)
}

pub(crate) fn relay_id(v: &Value) -> Option<RelayId> {
    RelayId::from_hex(text(v)?)
}

/// A room view as `common.lua`'s `view` lays it out: host count, host pairs, then member
/// quadruples (sid, relay, muted, sealed record).
fn parse_view(items: &[Value]) -> Result<RoomView, RegistryError> {
    let bad = RegistryError::Reply("room view");
    let (count, rest) = items
        .split_first()
        .ok_or(RegistryError::Reply("room view"))?;
    let hosts_len = usize::try_from(int(count).ok_or(RegistryError::Reply("room view"))?)
        .map_err(|_| RegistryError::Reply("room view"))?;
    if rest.len() < hosts_len * 2 || (rest.len() - hosts_len * 2) % 4 != 0 {
        return Err(bad);
    }
    let (hosts, members) = rest.split_at(hosts_len * 2);
    let hosts = hosts
        .chunks(2)
        .map(|pair| {
            let core = int(&pair[1]).and_then(|c| u8::try_from(c).ok());
            Some((relay_id(&pair[0])?, core?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(RegistryError::Reply("room view hosts"))?;
    let members = members
        .chunks(4)
        .map(|m| {
            Some(RemoteMember {
                sid: sid(&m[0])?,
                relay: relay_id(&m[1])?,
                muted: text(&m[2])? == "1",
                sealed: bytes(&m[3])?.to_vec(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(RegistryError::Reply("room view members"))?;
    Ok(RoomView { hosts, members })
}
