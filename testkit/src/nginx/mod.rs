//! The deploy/ files as the tests use them: the nginx templates filled with a test's values
//! (every `@PLACEHOLDER@` replaced, none left over), a self-signed certificate made with
//! openssl, and a real nginx started from the filled files in a temporary prefix, stopped on
//! drop.
//!
//! nginx, its stream module, openssl and systemd-analyze come from scripts/install-nginx.sh
//! (scripts/test.sh runs it when one is missing).

pub mod tls;

use std::fs;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::workspace::deploy_dir;

/// The nginx configuration templates, in the order nginx.conf includes them.
pub const NGINX_FILES: [&str; 3] = ["nginx.conf", "moose-http.conf", "moose-stream.conf"];

/// Where Debian's nginx keeps dynamic modules (libnginx-mod-stream puts the stream module here).
pub const DEBIAN_MODULES: &str = "/usr/lib/nginx/modules";

/// The nginx binary, or a panic that says how to install it.
pub fn nginx_binary() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/nginx");
    assert!(
        path.exists(),
        "nginx is not installed: run scripts/install-nginx.sh (as root), which installs \
         Debian's nginx, libnginx-mod-stream, openssl and systemd"
    );
    path
}

/// Replaces every `@NAME@` of `values` in `template`; panics if a value's placeholder is not
/// used or if any placeholder is left, so the templates and the tests cannot drift apart.
pub fn fill(name: &str, template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (key, value) in values {
        text = text.replace(&format!("@{key}@"), value);
    }
    let left: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.matches('@').count() >= 2)
        .collect();
    assert!(left.is_empty(), "{name}: placeholders left: {left:?}");
    text
}

/// Fills every nginx template of deploy/nginx/ and writes the results into `prefix`.
/// Each of `values` must be used by at least one template.
pub fn write_nginx_configs(prefix: &Path, values: &[(&str, String)]) {
    let dir = deploy_dir().join("nginx");
    let mut all = String::new();
    for name in NGINX_FILES {
        let template = fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("read deploy/nginx/{name}: {e}"));
        all.push_str(&template);
        fs::write(prefix.join(name), fill(name, &template, values)).expect("write config");
    }
    for (key, _) in values {
        assert!(
            all.contains(&format!("@{key}@")),
            "no template of deploy/nginx/ uses @{key}@"
        );
    }
}

/// Makes a self-signed certificate for `localhost` and 127.0.0.1 in `dir`: `cert.pem` and
/// `key.pem` (an EC P-256 key), valid for a day. It is a server certificate, not a CA
/// (`openssl req -x509` makes a CA by default, which rustls refuses as a server's own).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let config = dir.join("cert.cnf");
    fs::write(
        &config,
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = server\n\
         [dn]\nCN = localhost\n\
         [server]\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .expect("write openssl config");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "1", "-config"])
        .arg(&config)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (scripts/install-nginx.sh installs it)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A port free for both TCP and UDP on 127.0.0.1 right now (it may be taken again before
/// nginx binds it: [`Nginx::start`] retries on that).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running nginx, stopped on drop (its error log is printed if the test failed).
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub prefix: PathBuf,
}

impl Nginx {
    /// Writes the configs made by `values_for(https_port, vors_port)` into `prefix` and starts
    /// nginx in the foreground, with its pid file and error log in `prefix`. Waits until both
    /// ports accept TCP connections (nginx's master opens every listening socket, UDP included,
    /// before it starts the workers). If a port was taken in the meantime, picks new ones and
    /// tries again. Returns nginx and its two ports.
    pub fn start(
        prefix: &Path,
        values_for: impl Fn(u16, u16) -> Vec<(&'static str, String)>,
    ) -> (Nginx, u16, u16) {
        let (nginx, ports) = Self::start_on(prefix, 2, |ports| {
            write_nginx_configs(prefix, &values_for(ports[0], ports[1]));
            prefix.join("nginx.conf")
        });
        (nginx, ports[0], ports[1])
    }

    /// Starts nginx with one stream template of deploy/nginx/ (`name`, e.g.
    /// moose-cluster-stream.conf) filled with `values_for(port)`, in the smallest main config
    /// that loads it as nginx.conf would: the stream module and a `stream {}` block including
    /// it. Waits and retries as [`Nginx::start`]; returns nginx and its port.
    pub fn start_stream(
        prefix: &Path,
        name: &str,
        values_for: impl Fn(u16) -> Vec<(&'static str, String)>,
    ) -> (Nginx, u16) {
        let template = fs::read_to_string(deploy_dir().join("nginx").join(name))
            .unwrap_or_else(|e| panic!("read deploy/nginx/{name}: {e}"));
        let (nginx, ports) = Self::start_on(prefix, 1, |ports| {
            let filled = fill(name, &template, &values_for(ports[0]));
            fs::write(prefix.join(name), filled).expect("write config");
            let main = prefix.join("stream-main.conf");
            let text = format!(
                "load_module {DEBIAN_MODULES}/ngx_stream_module.so;\n\
                 events {{}}\n\
                 stream {{ include {name}; }}\n"
            );
            fs::write(&main, text).expect("write the main config");
            main
        });
        (nginx, ports[0])
    }

    /// Picks `count` free ports, has `write` write the configs for them (returning the main
    /// config's path), starts nginx and waits until every port listens; new ports when one was
    /// taken meanwhile.
    fn start_on(
        prefix: &Path,
        count: usize,
        write: impl Fn(&[u16]) -> PathBuf,
    ) -> (Nginx, Vec<u16>) {
        fs::create_dir_all(prefix.join("logs")).expect("make logs dir");
        for attempt in 1..=5 {
            let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
            let main = write(&ports);
            let error_log = prefix.join("logs/error.log");
            let _ = fs::remove_file(&error_log);
            let globals = format!(
                "daemon off; pid {}; error_log {} info;",
                prefix.join("nginx.pid").display(),
                error_log.display()
            );
            let child = Command::new(nginx_binary())
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(&main)
                .args(["-g", &globals])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn nginx");
            let mut nginx = Nginx {
                child,
                prefix: prefix.to_owned(),
            };
            match nginx.wait_listening(&ports, Duration::from_secs(10)) {
                Ok(()) => return (nginx, ports),
                Err(why) if why.contains("Address already in use") && attempt < 5 => continue,
                Err(why) => panic!("nginx did not start: {why}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Waits until every port accepts a TCP connection; the reason otherwise (nginx's exit and
    /// what it wrote, or a timeout).
    fn wait_listening(&mut self, ports: &[u16], within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait nginx") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "exited with {status}: {stderr}{}",
                    self.error_log()
                ));
            }
            let up = ports.iter().all(|&p| {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], p)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("ports {ports:?} not open after {within:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// What nginx wrote to its error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }

    /// The access log of the http server (deploy/nginx/moose-http.conf's `moose` format).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.prefix.join("logs/moose-access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits. SIGKILL to the master alone would
        // leave the workers running with the ports.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- nginx error log:\n{}", self.error_log());
        }
    }
}
