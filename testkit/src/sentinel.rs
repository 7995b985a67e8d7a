//! A Redis Sentinel setup for the cluster's failover tests: one replica of a primary and one
//! sentinel watching both, real `redis-server` processes on loopback (`crate::redis`) like
//! the primary (over TLS when the primary speaks it), and the `redis+sentinel://` URL the
//! relays are given. The questions the tests ask the servers go through Debian's `redis-cli`,
//! which comes with the server (`Redis::ask`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::redis::Redis;
use crate::wait::wait_for;

/// The name the sentinel monitors the primary under.
pub const MASTER: &str = "moose";

/// A primary's replica and a sentinel watching both (the primary is the caller's: a
/// `crate::cluster::Cluster` owns it, to kill it).
#[derive(Debug)]
pub struct Sentinels {
    pub replica: Redis,
    pub sentinel: Redis,
}

impl Sentinels {
    /// Starts a replica of `primary` and a sentinel; returns once the replica is in sync and
    /// the sentinel knows it (a failover needs a replica the sentinel has seen).
    pub fn watch(primary: &Redis) -> Sentinels {
        Self::watch_with_password(primary, None)
    }

    /// As [`watch`](Self::watch), the sentinel requiring `password` of its clients.
    pub fn watch_with_password(primary: &Redis, password: Option<&str>) -> Sentinels {
        let replica = Redis::replica_of(primary);
        wait_for(Duration::from_secs(10), "the replica in sync", || {
            replica
                .ask(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinel = Redis::sentinel_for(primary, MASTER, password);
        let replica_port = format!("{}", replica.addr().port());
        wait_for(
            Duration::from_secs(10),
            "the sentinel knows the replica",
            || {
                sentinel
                    .ask(&["SENTINEL", "replicas", MASTER])
                    .lines()
                    .any(|line| line == replica_port)
            },
        );
        Sentinels { replica, sentinel }
    }

    /// The `--cluster-redis` of relays that find the primary through the sentinel, with
    /// `first` listed before it (a sentinel that is not running, say: the relays must go on
    /// to the next); `rediss+sentinel://` when the servers speak TLS.
    pub fn url_after(&self, first: SocketAddr) -> String {
        let tls = if self.sentinel.tls_ca().is_some() {
            "s"
        } else {
            ""
        };
        format!(
            "redis{tls}+sentinel://{first},{}/{MASTER}",
            self.sentinel.addr()
        )
    }

    /// The primary's address as the sentinel names it now.
    pub fn named_primary(&self) -> Option<SocketAddr> {
        let answer = self
            .sentinel
            .ask(&["SENTINEL", "get-master-addr-by-name", MASTER]);
        let mut lines = answer.lines();
        let (ip, port) = (lines.next()?, lines.next()?);
        format!("{ip}:{port}").parse().ok()
    }
}
