//! The admin endpoint (`--admin-listen`, loopback by default): `/metrics` in Prometheus text
//! format, `/healthz` (the process is alive) and `/readyz` (it serves: 503 once draining, or
//! while its cluster cannot admit joins). It runs on core 0 and reads every core's
//! single-writer counters; `metrics` writes the exposition.

use std::rc::Rc;

use std::os::fd::OwnedFd;

use glommio::net::TcpStream;
use moose_proto::http::{self, Parse, Status};

use crate::accept::{Accepted, Acceptor, WhenExhausted};
use crate::metrics;
use crate::outbound::writer::write_all_within;
use crate::shard::Shard;

/// Accepts admin connections for as long as the relay runs. Out of file descriptors, it still
/// answers one request at a time on a spare descriptor's slot (see `accept`), so `/readyz` and
/// `/metrics` stay answerable while the relay sheds everything else.
pub(crate) async fn serve(shard: Rc<Shard>, listener: OwnedFd) {
    let mut acceptor = Acceptor::new(listener, WhenExhausted::Serve);
    loop {
        match acceptor.next(&shard).await {
            Accepted::Stream(stream) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Accepted::OnSpare(stream) => {
                handle(shard.clone(), stream).await;
                shard.spares.refill();
            }
        }
    }
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let Some((head, head_len)) =
        super::read_head(&shard, &mut stream, shard.config.header_timeout).await
    else {
        return;
    };
    let Ok(Parse::Complete { value: request, .. }) = http::parse_request(&head[..head_len]) else {
        return;
    };
    let (status, content_type, body) = match request.path {
        "/metrics" => (
            Status::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(
                &shard.all_stats,
                shard.lifecycle.is_draining(),
                shard.vors.cluster().map(|c| c.stats()),
            ),
        ),
        "/healthz" => (Status::OK, "text/plain; charset=utf-8", "ok\n".to_owned()),
        "/readyz" if shard.lifecycle.is_draining() => (
            Status::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".to_owned(),
        ),
        // New callers are sent elsewhere while the cluster cannot admit them (Redis away).
        "/readyz" if shard.vors.cluster().is_some_and(|c| !c.stats().ready()) => (
            Status::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "cluster unavailable\n".to_owned(),
        ),
        "/readyz" => (
            Status::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_owned(),
        ),
        _ => (
            Status::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
    };
    let mut out = Vec::with_capacity(body.len() + 200);
    http::write_response(status, content_type, &[], body.as_bytes(), &mut out);
    // Flushed before the stream is dropped, as `respond` does, so no part of the answer can
    // be left behind when the connection closes; a scraper that takes none of it for
    // `--write-stall-timeout` is reset.
    let stall = shard.config.write_stall;
    let _ = write_all_within(&mut stream, &out, stall, &shard.stats).await;
}
