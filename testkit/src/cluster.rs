//! Relays of one cluster for a test: one real redis-server, a cluster key file they share, and
//! each relay started with `--cluster-redis`, `--cluster-key` and its own relay-link port on
//! loopback (docs/cluster.md).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::wait_metrics;
use crate::redis::Redis;
use crate::relay::Relay;
use crate::temp::TempDir;

/// A cluster's Redis and key, and the relays started on them.
#[derive(Debug)]
pub struct Cluster {
    pub redis: Redis,
    /// The relays' `--cluster-redis`: `redis`'s own URL, or one that finds it otherwise
    /// (through sentinels).
    url: String,
    key_dir: TempDir,
    /// The relays, in the order they were started.
    pub relays: Vec<Relay>,
    /// Each relay's link address (`--cluster-listen`), in the same order.
    pub links: Vec<SocketAddr>,
}

impl Cluster {
    /// A fresh Redis and `n` relays on it, each with `args` besides the cluster's flags; returns
    /// once every relay sees all `n` live (its media can cross the link).
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        Self::start_on(Redis::start(), n, args)
    }

    /// As [`start`](Self::start), on `redis` (a TLS one: the relays trust its test CA through
    /// `SSL_CERT_FILE`, as an operator would point them at a private CA).
    pub fn start_on(redis: Redis, n: usize, args: &[&str]) -> Cluster {
        let url = redis.url();
        Self::start_through(redis, &url, n, args)
    }

    /// As [`start_on`](Self::start_on), the relays given `url` to find `redis` (a
    /// `redis+sentinel://` URL of sentinels that monitor it).
    pub fn start_through(redis: Redis, url: &str, n: usize, args: &[&str]) -> Cluster {
        let key_dir = TempDir::new("cluster-key");
        std::fs::write(
            key_dir.path().join("cluster.key"),
            format!("{}\n", "5a".repeat(32)),
        )
        .unwrap();
        let mut cluster = Cluster {
            redis,
            url: url.to_owned(),
            key_dir,
            relays: Vec::new(),
            links: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_relay(args);
        }
        cluster.wait_relays(n);
        cluster
    }

    /// The shared key file.
    pub fn key_path(&self) -> PathBuf {
        self.key_dir.path().join("cluster.key")
    }

    /// Starts one more relay of the cluster with `args`; its index.
    pub fn add_relay(&mut self, args: &[&str]) -> usize {
        let url = self.url.clone();
        let ca = self.redis.tls_ca().map(|p| p.to_str().unwrap().to_owned());
        let envs: Vec<(&str, &str)> = ca.iter().map(|ca| ("SSL_CERT_FILE", ca.as_str())).collect();
        self.launch_relay(&url, args, &envs)
    }

    /// Starts one more relay with `args` and the environment `envs` (for example another
    /// `SSL_CERT_FILE` than the test CA's); its index.
    pub fn add_relay_with_env(&mut self, args: &[&str], envs: &[(&str, &str)]) -> usize {
        let url = self.url.clone();
        self.launch_relay(&url, args, envs)
    }

    /// Starts one more relay that speaks to Redis as the ACL user `user` with `password` (given
    /// in a `--cluster-redis-password-file`), so that a test can cut this relay alone off from
    /// Redis (`ACL SETUSER user off` and `CLIENT KILL USER user`); its index.
    pub fn add_relay_as(&mut self, user: &str, password: &str, args: &[&str]) -> usize {
        let file = self.key_dir.path().join(format!("{user}.password"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let url = format!("redis://{user}@{}", self.redis.addr());
        let mut all = vec!["--cluster-redis-password-file", file.to_str().unwrap()];
        all.extend_from_slice(args);
        self.launch_relay(&url, &all, &[])
    }

    fn launch_relay(&mut self, url: &str, args: &[&str], envs: &[(&str, &str)]) -> usize {
        let link = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let (key, listen) = (self.key_path(), link.to_string());
        let mut all = vec![
            "--cluster-redis",
            url,
            "--cluster-key",
            key.to_str().unwrap(),
            "--cluster-listen",
            &listen,
        ];
        all.extend_from_slice(args);
        self.relays.push(Relay::start(&all, envs));
        self.links.push(link);
        self.relays.len() - 1
    }

    /// Waits until every relay counts `n` live relays (`moose_cluster_relays`).
    pub fn wait_relays(&self, n: usize) {
        for relay in &self.relays {
            wait_metrics(
                relay,
                Duration::from_secs(10),
                "every relay live",
                || {},
                |m| m.get("moose_cluster_relays") == n as u64,
            );
        }
    }
}

/// A UDP port free on loopback at this instant (the relay binds it a moment later).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}
