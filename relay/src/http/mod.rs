//! The HTTP front door on every core: the web client's files, and `/ws` upgrades that join a
//! line (refused with a status before the upgrade when they may not).
//!
//! Every answer is written within the write-stall limit (`--write-stall-timeout`): a client
//! that takes no byte of it for that long is reset (see `outbound::writer`), so a client that
//! asks and never reads holds neither a task nor a descriptor.

pub(crate) mod admin;
pub(crate) mod files;
pub(crate) mod upgrade;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;
use moose_proto::http::{self, Parse, Request, Status};
use tracing::debug;

use crate::limits::address::AddressSlot;
use crate::outbound::writer::write_all_within;
use crate::shard::Shard;

/// Reads one request head, which must arrive whole within `timeout` (`--header-timeout`,
/// slowloris protection). Returns the head's bytes (and any bytes after it) and its length,
/// or `None` when the client went away, stalled or sent something unusable (answered already).
pub(crate) async fn read_head(
    shard: &Shard,
    stream: &mut TcpStream,
    timeout: Duration,
) -> Option<(Vec<u8>, usize)> {
    let mut buf = vec![0u8; http::MAX_HEAD_BYTES];
    let mut filled = 0;
    let read = glommio::timer::timeout(timeout, async {
        loop {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Ok(None);
            }
            filled += n;
            match http::parse_request(&buf[..filled]) {
                Ok(Parse::Partial) => continue,
                Ok(Parse::Complete { head_len, .. }) => return Ok(Some(Ok(head_len))),
                Err(e) => return Ok(Some(Err(e))),
            }
        }
    })
    .await;
    match read {
        Ok(Some(Ok(head_len))) => {
            buf.truncate(filled);
            Some((buf, head_len))
        }
        Ok(Some(Err(e))) => {
            let _ = respond(shard, stream, e.status(), &format!("{e}\n"), &[]).await;
            None
        }
        Ok(None) => None,
        Err(e) => {
            debug!(error = %e, "request head not received");
            None
        }
    }
}

/// Serves one connection accepted on this core; `slot` is its place in
/// `--max-connections-per-address`, held until the connection ends (on the line's owner core
/// for a WebSocket peer).
pub(crate) async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    addr: SocketAddr,
    slot: AddressSlot,
) {
    let _ = stream.set_nodelay(true);
    let Some((head, head_len)) = read_head(&shard, &mut stream, shard.config.header_timeout).await
    else {
        return;
    };
    shard.stats.http_requests.inc();
    let request = match http::parse_request(&head[..head_len]) {
        Ok(Parse::Complete { value, .. }) => value,
        _ => return,
    };
    let result = route(&shard, &mut stream, addr, &request).await;
    match result {
        Ok(Route::Done) => {}
        Ok(Route::Upgrade(line_request)) => {
            let early = head[head_len..].to_vec();
            // The head's buffer (`MAX_HEAD_BYTES`) would otherwise live as long as the call:
            // this future runs the peer when the line is on this core.
            drop(head);
            upgrade::hand_to_owner(shard, stream, line_request, early, slot).await;
        }
        Err(e) => debug!(error = %e, "http response not sent"),
    }
}

enum Route {
    Done,
    Upgrade(upgrade::Accepted),
}

async fn route(
    shard: &Shard,
    stream: &mut TcpStream,
    addr: SocketAddr,
    request: &Request<'_>,
) -> io::Result<Route> {
    if request.path == "/ws" {
        return match upgrade::check(shard, addr, request) {
            Ok(accepted) => Ok(Route::Upgrade(accepted)),
            Err(refusal) => {
                let (status, body) = (refusal.status, refusal.body);
                respond(shard, stream, status, body, refusal.extra_headers).await?;
                Ok(Route::Done)
            }
        };
    }
    if request.method != "GET" {
        respond(
            shard,
            stream,
            Status::METHOD_NOT_ALLOWED,
            "GET only\n",
            &[("Allow", "GET")],
        )
        .await?;
        return Ok(Route::Done);
    }
    match files::lookup(request.path) {
        Some((_, content_type, body)) => {
            let mut out = Vec::with_capacity(body.len() + 256);
            http::write_response(
                Status::OK,
                content_type,
                files::PAGE_HEADERS,
                body,
                &mut out,
            );
            let stall = shard.config.write_stall;
            write_all_within(stream, &out, stall, &shard.stats).await?;
        }
        None => respond(shard, stream, Status::NOT_FOUND, "not found\n", &[]).await?,
    }
    Ok(Route::Done)
}

/// What a connection over `--max-connections-per-address` is told before it is closed.
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nConnection: close\r\n\r\n\
    too many connections from you.\r\n";

/// Sends a small plain-text response (the connection closes after it).
pub(crate) async fn respond(
    shard: &Shard,
    stream: &mut TcpStream,
    status: Status,
    body: &str,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + body.len());
    http::write_response(
        status,
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        &mut out,
    );
    write_all_within(stream, &out, shard.config.write_stall, &shard.stats).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_too_many_connections_answer_is_whole() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a length");
        assert_eq!(length.parse::<usize>().expect("a number"), body.len());
    }
}
