//! The call's sockets: one TCP connection for control, one connected UDP socket for media,
//! each read by its own thread that turns what arrives into [`Input`] on one channel, so the
//! call's loop waits on a single `recv_timeout`.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use moose_proto::vors::packet::MAX_MEDIA_LEN;

use super::command::Command;
use super::error::CallError;
use super::live::LiveEvent;
use crate::bind;

/// How long a blocking TCP write may take before the server counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the UDP reader looks at its stop flag.
const UDP_POLL: Duration = Duration::from_millis(100);

/// Everything the call's loop reacts to.
#[derive(Debug)]
pub(crate) enum Input {
    /// Bytes read from the TCP connection.
    Tcp(Vec<u8>),
    /// The TCP connection ended (EOF or error).
    TcpClosed,
    /// One datagram from the server.
    Datagram(Vec<u8>),
    /// A request from the person or the test driving the call.
    Command(Command),
    /// The microphone or the speaker ended or failed.
    Live(LiveEvent),
}

/// The connected sockets and the threads reading them.
#[derive(Debug)]
pub(crate) struct Links {
    pub(crate) tcp: TcpStream,
    pub(crate) udp: UdpSocket,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
}

impl Links {
    /// Connects TCP to the first address of `server` that answers within `timeout`, and a
    /// UDP socket to the same address (VoRS uses one port for both), both from `bind` when
    /// given, then starts the readers.
    pub(crate) fn connect(
        server: &str,
        bind: Option<SocketAddr>,
        timeout: Duration,
        tx: Sender<Input>,
    ) -> Result<Links, CallError> {
        let tcp = connect_tcp(server, bind, timeout)?;
        tcp.set_nodelay(true)
            .map_err(CallError::io("TCP_NODELAY"))?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(CallError::io("TCP write timeout"))?;
        let peer = tcp.peer_addr().map_err(CallError::io("TCP peer address"))?;
        let udp = connect_udp(bind, peer)?;

        let stop = Arc::new(AtomicBool::new(false));
        let tcp_reader = tcp.try_clone().map_err(CallError::io("clone TCP socket"))?;
        let udp_reader = udp.try_clone().map_err(CallError::io("clone UDP socket"))?;
        let readers = vec![
            spawn("moose-call-tcp", {
                let tx = tx.clone();
                move || read_tcp(tcp_reader, tx)
            })?,
            spawn("moose-call-udp", {
                let stop = Arc::clone(&stop);
                move || read_udp(udp_reader, tx, stop)
            })?,
        ];
        Ok(Links {
            tcp,
            udp,
            stop,
            readers,
        })
    }

    /// Closes the connection (which is how a VoRS member leaves: the server sends DEL to the
    /// room) and waits for the readers to end.
    pub(crate) fn close(mut self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

fn connect_tcp(
    server: &str,
    bind: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, CallError> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|source| CallError::Resolve {
            addr: server.to_owned(),
            source,
        })?
        // A source address reaches only servers of its own family: `localhost` may resolve
        // to ::1 first, which 127.0.0.7 cannot reach.
        .filter(|to| bind.is_none_or(|from| bind::same_family(from, *to)))
        .collect();
    let mut last = match bind {
        Some(from) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no address of the family of --bind {from}"),
        ),
        None => io::Error::new(io::ErrorKind::NotFound, "no address"),
    };
    for addr in &addrs {
        match bind::tcp_connect(bind, *addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(CallError::Connect {
        addr: server.to_owned(),
        source: last,
    })
}

fn connect_udp(bind: Option<SocketAddr>, server: SocketAddr) -> Result<UdpSocket, CallError> {
    // Connected: the kernel drops datagrams from anyone but the server.
    let udp = bind::udp_connect(bind, server).map_err(CallError::io("open UDP socket"))?;
    udp.set_read_timeout(Some(UDP_POLL))
        .map_err(CallError::io("UDP read timeout"))?;
    Ok(udp)
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, CallError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(CallError::io("spawn reader thread"))
}

fn read_tcp(mut tcp: TcpStream, tx: Sender<Input>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Input::Tcp(buf[..n].to_vec())).is_err() {
                    return; // The call is over.
                }
            }
        }
    }
    let _ = tx.send(Input::TcpClosed);
}

fn read_udp(udp: UdpSocket, tx: Sender<Input>, stop: Arc<AtomicBool>) {
    // One byte more than the largest media packet, so an oversized datagram is seen as such
    // (and dropped by the session) instead of being silently truncated into a valid length.
    let mut buf = vec![0u8; MAX_MEDIA_LEN + 1];
    while !stop.load(Ordering::Relaxed) {
        match udp.recv(&mut buf) {
            Ok(n) => {
                if tx.send(Input::Datagram(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            // Timeouts let us look at `stop`; ECONNREFUSED (an ICMP error for an earlier send,
            // e.g. before the server's UDP side is up) is not a reason to stop listening.
            Err(e) if is_transient(&e) => {}
            Err(_) => thread::sleep(UDP_POLL),
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn refused_connection_is_a_connect_error() {
        // Bind then drop: the port is very likely closed now.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let (tx, _rx) = mpsc::channel();
        match Links::connect(
            &format!("127.0.0.1:{port}"),
            None,
            Duration::from_secs(2),
            tx,
        ) {
            Err(CallError::Connect { .. }) => {}
            other => panic!("expected Connect error, got {other:?}"),
        }
    }

    #[test]
    fn unresolvable_address_is_a_resolve_error() {
        let (tx, _rx) = mpsc::channel();
        match Links::connect("no-port-here", None, Duration::from_secs(1), tx) {
            Err(CallError::Resolve { .. }) => {}
            other => panic!("expected Resolve error, got {other:?}"),
        }
    }

    #[test]
    fn both_sockets_feed_one_channel() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let addr = listener.local_addr().expect("addr");
        let server_udp = UdpSocket::bind(addr).expect("bind udp on the same port");
        let (tx, rx) = mpsc::channel();
        let links =
            Links::connect(&addr.to_string(), None, Duration::from_secs(2), tx).expect("connect");
        let (mut accepted, _) = listener.accept().expect("accept");

        io::Write::write_all(&mut accepted, b"abc").expect("write");
        links.udp.send(b"hi").expect("udp send");
        let mut from_client = [0u8; 8];
        let (n, client) = server_udp.recv_from(&mut from_client).expect("udp recv");
        assert_eq!(&from_client[..n], b"hi");
        server_udp.send_to(b"media", client).expect("udp reply");
        drop(accepted);

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match rx.recv_timeout(Duration::from_secs(2)).expect("input") {
                Input::Tcp(b) => seen.push(format!("tcp {}", String::from_utf8_lossy(&b))),
                Input::TcpClosed => seen.push("closed".to_owned()),
                Input::Datagram(b) => seen.push(format!("udp {}", String::from_utf8_lossy(&b))),
                Input::Command(c) => panic!("unexpected {c:?}"),
                Input::Live(e) => panic!("unexpected {e:?}"),
            }
        }
        seen.sort();
        assert_eq!(seen, ["closed", "tcp abc", "udp media"]);
        links.close();
    }
}
