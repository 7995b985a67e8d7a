//! A real `redis-server` for the cluster's tests: Debian's package (scripts/install-redis.sh),
//! started on a free loopback port in a temporary directory, with no persistence (a restart
//! loses everything, as a Redis without disk would), optionally with a password, and stopped
//! on drop. [`Redis::kill`] and [`Redis::restart`] make the outages the tests need.
//! [`Redis::with_tls`] serves TLS only (`rediss://`), with a certificate from a test CA that
//! `openssl` makes in the server's directory. [`Redis::replica_of`] and [`Redis::sentinel_for`]
//! start the other two parts of a Sentinel setup (`crate::sentinel`), speaking TLS with the
//! primary's certificate when it does.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::temp::TempDir;

/// Where Debian's package puts the server.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// The server binary, or a panic that says how to install it.
pub fn redis_binary() -> PathBuf {
    let path = PathBuf::from(REDIS_SERVER);
    assert!(
        path.exists(),
        "redis-server is not installed: run scripts/install-redis.sh (as root), which installs \
         Debian's redis-server"
    );
    path
}

/// What a server is for.
#[derive(Debug, Clone)]
enum Role {
    /// A primary (or a server alone).
    Primary,
    /// A replica of the primary on this loopback port (`--replicaof`).
    ReplicaOf(u16),
    /// A sentinel (`redis-server --sentinel`) that monitors, under `name`, the primary on
    /// this loopback port with quorum 1, and calls it down after 500 ms without an answer.
    Sentinel { name: String, primary: u16 },
}

/// A running redis-server, stopped (SIGKILL: it keeps nothing anyway) on drop.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    password: Option<String>,
    /// TLS only: the test CA's certificate, which signed the server's.
    tls_ca: Option<PathBuf>,
    role: Role,
}

impl Redis {
    /// A server without a password.
    pub fn start() -> Redis {
        Self::launch(None, false, Role::Primary)
    }

    /// A server that requires `password` (`requirepass`).
    pub fn with_password(password: &str) -> Redis {
        Self::launch(Some(password.to_owned()), false, Role::Primary)
    }

    /// A replica of `primary` (one without a password), with no persistence either.
    pub fn replica_of(primary: &Redis) -> Redis {
        Self::launch_beside(primary, None, Role::ReplicaOf(primary.port))
    }

    /// A sentinel monitoring `primary` (one without a password) as `name`, with quorum 1,
    /// `down-after-milliseconds` 500 and `failover-timeout` 3000: a failover starts half a
    /// second after the primary stops answering and is done a moment later.
    /// With `password`, the sentinel requires it of its clients (`requirepass`).
    pub fn sentinel_for(primary: &Redis, name: &str, password: Option<&str>) -> Redis {
        let role = Role::Sentinel {
            name: name.to_owned(),
            primary: primary.port,
        };
        Self::launch_beside(primary, password, role)
    }

    /// A server of `role` next to `primary`: over TLS when it is, with its certificate and CA
    /// (all the servers are 127.0.0.1), replicating over TLS too.
    fn launch_beside(primary: &Redis, password: Option<&str>, role: Role) -> Redis {
        let password = password.map(str::to_owned);
        let Some(ca) = &primary.tls_ca else {
            return Self::launch(password, false, role);
        };
        let from = ca.parent().expect("the CA's directory");
        Self::launch_with(password, role, |dir| {
            for file in ["ca.pem", "server.pem", "server.key"] {
                std::fs::copy(from.join(file), dir.join(file)).expect("copy a test certificate");
            }
            Some(dir.join("ca.pem"))
        })
    }

    /// A server that speaks TLS only, its certificate (for 127.0.0.1) signed by a CA made for
    /// it ([`tls_ca`](Self::tls_ca)); clients need no certificate of their own.
    pub fn with_tls() -> Redis {
        Self::launch(None, true, Role::Primary)
    }

    fn launch(password: Option<String>, tls: bool, role: Role) -> Redis {
        Self::launch_with(password, role, |dir| {
            tls.then(|| make_test_certificates(dir))
        })
    }

    /// Starts a server whose TLS CA (if any) `certificates` puts in its directory.
    fn launch_with(
        password: Option<String>,
        role: Role,
        certificates: impl FnOnce(&std::path::Path) -> Option<PathBuf>,
    ) -> Redis {
        let dir = TempDir::new("redis");
        let tls_ca = certificates(dir.path());
        let mut redis = Redis {
            child: None,
            dir,
            port: 0,
            password,
            tls_ca,
            role,
        };
        for _ in 0..5 {
            redis.port = free_port();
            if redis.spawn().is_ok() {
                return redis;
            }
        }
        panic!(
            "redis-server did not start on a free port:\n{}",
            redis.log()
        );
    }

    /// Starts the server on `self.port`; an error when it exits before it answers (port
    /// taken meanwhile) or does not answer within 10 s.
    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new(redis_binary());
        match &self.role {
            Role::Primary => {}
            Role::ReplicaOf(primary) => {
                command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
            }
            Role::Sentinel { name, primary } => {
                // A sentinel rewrites its file as it learns: a fresh one at each start.
                let config = self.dir.path().join("sentinel.conf");
                let text = format!(
                    "sentinel monitor {name} 127.0.0.1 {primary} 1\n\
                     sentinel down-after-milliseconds {name} 500\n\
                     sentinel failover-timeout {name} 3000\n"
                );
                std::fs::write(&config, text).map_err(|e| e.to_string())?;
                command.arg(config).arg("--sentinel");
            }
        }
        if self.tls_ca.is_some() {
            let file = |name: &str| self.dir.path().join(name);
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
            if !matches!(self.role, Role::Primary) {
                command.args(["--tls-replication", "yes"]);
            }
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        command
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if let Some(password) = &self.password {
            command.arg("--requirepass").arg(password);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait redis-server") {
                return Err(format!("redis-server exited with {status}"));
            }
            if self.answers() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis-server did not answer within 10 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis-cli`'s answer to `args` (over TLS for a TLS server; empty when it does not
    /// answer).
    pub fn ask(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(ca) = &self.tls_ca {
            command.args(["--tls", "--cacert"]).arg(ca);
        }
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli (it comes with redis-server: scripts/install-redis.sh)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the server answers PING (`+PONG`, or `-NOAUTH` when it wants a password).
    fn answers(&self) -> bool {
        if self.tls_ca.is_some() {
            // Over TLS: Debian's redis-cli (with the server, from redis-tools) speaks it.
            return self.ask(&["PING"]).starts_with("PONG");
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        line.starts_with("+PONG") || line.starts_with("-NOAUTH")
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server (the password, if any, is
    /// not in it: it goes in a file).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A TLS server's CA certificate (PEM): what a client must trust to reach it.
    pub fn tls_ca(&self) -> Option<&std::path::Path> {
        self.tls_ca.as_deref()
    }

    /// The password given at start.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The server's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL): an outage. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (no persistence), after [`kill`].
    /// Retries for a few seconds while the port is not yet free again.
    ///
    /// [`kill`]: Redis::kill
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("redis-server did not restart: {why}\n{}", self.log())
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("--- redis-server log:\n{}", self.log());
        }
    }
}

/// Makes, with `openssl`, a CA (`ca.pem`) and a certificate for 127.0.0.1 it signed
/// (`server.pem`, `server.key`) in `dir`, valid for two days; the CA's path.
fn make_test_certificates(dir: &std::path::Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (scripts/install-redis.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &p256,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ];
    openssl(
        &[
            &ca.concat()[..],
            &["-days", "2", "-subj", "/CN=moose test CA"],
        ]
        .concat(),
    );
    let csr = [
        &["req"][..],
        &p256,
        &["-keyout", "server.key", "-out", "server.csr"],
    ];
    openssl(&[&csr.concat()[..], &["-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    dir.join("ca.pem")
}

/// A TCP port free on 127.0.0.1 right now (it may be taken before redis binds it:
/// [`Redis::start`] retries).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind port 0")
}
