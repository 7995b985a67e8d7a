//! `/ws?apikey=KEY`: decide on the accepting core whether a request may join a line, then hand
//! the connection to the line's owner core, which admits it (or finds the line full).
//!
//! Every refusal is an HTTP status before the upgrade, never `101` and then a close:
//! 429 rate limited, 426 not a valid WebSocket upgrade, 403 origin not allowed or key unknown,
//! 401 key missing or malformed, 503 line full or server full (`--max-lines`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;
use moose_proto::apikey;
use moose_proto::http::{self, Request, Status, Upgrade};
use tracing::{debug, info, warn};

use crate::handoff::{Handoff, LineRequest};
use crate::limits::AddressTable;
use crate::limits::address::AddressSlot;
use crate::line::{JoinError, peer};
use crate::outbound::writer::write_all_within;
use crate::shard::Shard;
use crate::stats::Drop;
use crate::sys;

/// A request that may join the line of its key.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub key: Box<[u8]>,
    pub ws_key: String,
    pub addr: SocketAddr,
}

/// A request refused before the upgrade.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: Status,
    pub body: &'static str,
    pub extra_headers: &'static [(&'static str, &'static str)],
}

impl Refusal {
    fn new(status: Status, body: &'static str) -> Self {
        Refusal {
            status,
            body,
            extra_headers: &[],
        }
    }
}

/// Checks an upgrade request on the core that accepted it.
pub(crate) fn check(
    shard: &Shard,
    addr: SocketAddr,
    request: &Request<'_>,
) -> Result<Accepted, Refusal> {
    let now = Instant::now();
    if !shard.limits.auth_allowed(addr.ip(), now) {
        shard.stats.dropped(Drop::RateLimited);
        debug!(peer = %addr, "rate limited");
        return Err(Refusal::new(
            Status::TOO_MANY_REQUESTS,
            "too many failed attempts\n",
        ));
    }
    let ws_key = match request.upgrade {
        Upgrade::WebSocket { key } => key,
        Upgrade::None => {
            return Err(Refusal {
                extra_headers: &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                ..Refusal::new(Status::UPGRADE_REQUIRED, "WebSocket upgrade required\n")
            });
        }
        Upgrade::Invalid(e) => {
            return Err(Refusal {
                extra_headers: e.extra_headers(),
                ..Refusal::new(e.status(), "invalid WebSocket upgrade\n")
            });
        }
    };
    if let Some(origin) = request.origin {
        let allowed = &shard.config.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Err(Refusal::new(Status::FORBIDDEN, "origin not allowed\n"));
        }
    }
    let refuse_key = |status: Status, body: &'static str| {
        if shard.limits.spend_auth_failure(addr.ip(), now) {
            shard.stats.address_evicted(AddressTable::AuthFailures);
        }
        shard.stats.dropped(Drop::RefusedKey);
        // What was wrong, never the key that was offered.
        info!(
            status = status.0,
            reason = body.trim_end(),
            peer = shard.peer_at_info(addr),
            "line refused"
        );
        Err(Refusal::new(status, body))
    };
    let key = match http::query_param(request.query, "apikey") {
        Ok(Some(key)) => key,
        Ok(None) => return refuse_key(Status::UNAUTHORIZED, "apikey required\n"),
        Err(_) => return refuse_key(Status::UNAUTHORIZED, "malformed apikey\n"),
    };
    if apikey::validate(key.as_bytes()).is_err() {
        return refuse_key(Status::UNAUTHORIZED, "malformed apikey\n");
    }
    // Constant time against every configured key, even when the relay is open.
    let known = shard.config.keys.contains(key.as_bytes());
    if !known && !shard.config.open {
        return refuse_key(Status::FORBIDDEN, "unknown apikey\n");
    }
    Ok(Accepted {
        key: key.as_bytes().into(),
        ws_key: ws_key.to_owned(),
        addr,
    })
}

/// Runs the accepted upgrade here if this core owns the line, or moves it to the owner core.
pub(crate) async fn hand_to_owner(
    shard: Rc<Shard>,
    stream: TcpStream,
    accepted: Accepted,
    early: Vec<u8>,
    slot: AddressSlot,
) {
    let owner = shard.owners.core_of(&accepted.key);
    let request = LineRequest {
        key: accepted.key,
        ws_key: accepted.ws_key,
        addr: accepted.addr,
        early,
        slot,
    };
    let mesh = match &shard.mesh {
        Some(mesh) if owner != shard.core => mesh,
        _ => return admit(shard, stream, request).await,
    };
    // The glommio stream belongs to this core; a duplicate descriptor travels instead, and this
    // core's copy closes when `stream` drops.
    let fd = match sys::dup_fd(stream.as_raw_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "cannot hand a connection to its owner core");
            return;
        }
    };
    drop(stream);
    shard.stats.ws_handoffs.inc();
    if mesh
        .send_to(owner, Handoff::Line { fd, request })
        .await
        .is_err()
    {
        warn!(owner, "owner core is gone; connection dropped");
    }
}

/// On the owner core: joins the line (or answers 503) and runs the peer.
pub(crate) async fn admit(shard: Rc<Shard>, mut stream: TcpStream, request: LineRequest) {
    let LineRequest {
        key,
        ws_key,
        addr,
        early,
        // Held until the peer's connection ends, here on the owner core.
        slot: _slot,
    } = request;
    let tag = shard.owners.log_tag(&key);
    let (line, member) = match shard.lines.join(&key, tag) {
        Ok(joined) => joined,
        Err(refusal) => {
            let body = match refusal {
                JoinError::Full => "line is full\n",
                JoinError::ServerFull => "server full\n",
            };
            info!(line = tag, reason = body.trim_end(), "peer refused");
            let status = Status::SERVICE_UNAVAILABLE;
            let _ = super::respond(&shard, &mut stream, status, body, &[]).await;
            return;
        }
    };
    // Counted when the line admits the peer, before the 101 goes out: a client that has read
    // its 101 finds itself counted.
    shard.stats.ws_upgrades.inc();
    let mut response = Vec::with_capacity(160);
    http::write_switching_protocols(&ws_key, &mut response);
    let stall = shard.config.write_stall;
    if let Err(e) = write_all_within(&mut stream, &response, stall, &shard.stats).await {
        debug!(error = %e, "101 not sent");
        shard.lines.leave(&key, &member);
        return;
    }
    info!(
        line = tag,
        peers = line.len(),
        peer = shard.peer_at_info(addr),
        "peer joined line"
    );
    let peer = peer::Peer { key, line, member };
    peer::run(shard, stream, peer, early).await;
}
