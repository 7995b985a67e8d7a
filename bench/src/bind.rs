//! Source addresses for client sockets (`moose-call --bind`, `moose-bench vors --bind`).
//!
//! A balancer that hashes on the client's address (nginx `hash $remote_addr`) sends every
//! client of one host to one relay; clients bound to different loopback addresses
//! (127.0.0.x are all local on Linux) reach it as different hosts. A VoRS member's TCP
//! connection and its UDP socket must come from the same IP (the relay drops media from
//! another one as `wrong_address`), so both bind to the address given here before they
//! connect.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Parses `--bind`: an IP address (`127.0.0.7`, `::1`), or one with a port
/// (`127.0.0.7:40000`, `[::1]:40000`). Port 0, or none, lets the kernel pick one. Host names
/// are refused: a source address is a local address, not something to look up.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not an IP address or IP:PORT (e.g. 127.0.0.7 or 127.0.0.7:40000)")
    })
}

/// Parses `moose-bench --bind`: IP addresses only, since every stream needs a port of its own.
pub fn parse_bind_ip(text: &str) -> Result<IpAddr, String> {
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("{text:?} is not an IP address (e.g. 127.0.0.7)"))
}

/// Whether a socket bound to `from` can reach `to` (IPv4 cannot reach IPv6 and back).
pub fn same_family(from: SocketAddr, to: SocketAddr) -> bool {
    from.is_ipv4() == to.is_ipv4()
}

fn socket_for(to: SocketAddr, kind: Type, proto: Protocol) -> io::Result<Socket> {
    Socket::new(Domain::for_address(to), kind, Some(proto))
}

fn bind_to(socket: &Socket, from: SocketAddr, to: SocketAddr) -> io::Result<()> {
    if !same_family(from, to) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "source {} cannot reach {to}: not the same address family",
                from.ip()
            ),
        ));
    }
    socket
        .bind(&from.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind to {from}: {e}")))
}

/// A blocking TCP connection to `to` from `from` (when given), waiting at most `timeout`.
pub fn tcp_connect(
    from: Option<SocketAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect_timeout(&to, timeout);
    };
    let socket = socket_for(to, Type::STREAM, Protocol::TCP)?;
    bind_to(&socket, from, to)?;
    socket.connect_timeout(&to.into(), timeout)?;
    Ok(socket.into())
}

/// A non-blocking TCP connection to `to` from `from`, still connecting when it returns (as
/// `mio::net::TcpStream::connect` leaves it): the first writable event tells how it went.
pub fn tcp_connect_nonblocking(from: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket_for(to, Type::STREAM, Protocol::TCP)?;
    bind_to(&socket, SocketAddr::new(from, 0), to)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// A non-blocking `mio` TCP connection to `to`, from `from` when given, still connecting when
/// it returns.
pub fn mio_tcp_connect(from: Option<IpAddr>, to: SocketAddr) -> io::Result<mio::net::TcpStream> {
    match from {
        None => mio::net::TcpStream::connect(to),
        Some(from) => tcp_connect_nonblocking(from, to).map(mio::net::TcpStream::from_std),
    }
}

/// A UDP socket bound to `from` (or to the unspecified address of `to`'s family, port 0) and
/// connected to `to`, so the kernel drops datagrams from anyone else.
pub fn udp_connect(from: Option<SocketAddr>, to: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket_for(to, Type::DGRAM, Protocol::UDP)?;
    let from = from.unwrap_or_else(|| match to {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    });
    bind_to(&socket, from, to)?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn bind_takes_an_ip_with_or_without_a_port() {
        assert_eq!(parse_bind("127.0.0.7"), Ok(([127, 0, 0, 7], 0).into()));
        assert_eq!(
            parse_bind("127.0.0.7:40000"),
            Ok(([127, 0, 0, 7], 40000).into())
        );
        assert_eq!(parse_bind("::1"), Ok("[::1]:0".parse().expect("v6")));
        assert_eq!(parse_bind("[::1]:5"), Ok("[::1]:5".parse().expect("v6")));
        for bad in [
            "",
            "localhost",
            "127.0.0.7:",
            "127.0.0.7:99999",
            "127.0.0.256",
            "1.2.3",
        ] {
            let e = parse_bind(bad).expect_err(bad);
            assert!(e.contains("not an IP address or IP:PORT"), "{bad}: {e}");
        }
        assert_eq!(parse_bind_ip(" 127.0.0.9"), Ok([127, 0, 0, 9].into()));
        assert!(
            parse_bind_ip("127.0.0.9:1").is_err(),
            "a port is one stream's only"
        );
    }

    #[test]
    fn tcp_and_udp_leave_from_the_bound_address() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let to = listener.local_addr().expect("addr");
        let server_udp = UdpSocket::bind(to).expect("udp on the same port");
        let from: SocketAddr = ([127, 0, 0, 7], 0).into();

        let tcp = tcp_connect(Some(from), to, Duration::from_secs(2)).expect("connect");
        let (_accepted, peer) = listener.accept().expect("accept");
        assert_eq!(peer.ip(), from.ip());
        assert_eq!(tcp.local_addr().expect("local").ip(), from.ip());

        let udp = udp_connect(Some(from), to).expect("udp");
        udp.send(b"x").expect("send");
        let mut buf = [0u8; 4];
        let (_, source) = server_udp.recv_from(&mut buf).expect("recv");
        assert_eq!(source.ip(), from.ip());

        let pending = tcp_connect_nonblocking(from.ip(), to).expect("nonblocking connect");
        let (_accepted, peer) = listener.accept().expect("accept the second");
        assert_eq!(peer, pending.local_addr().expect("local"));
    }

    #[test]
    fn a_source_of_the_other_family_is_refused_clearly() {
        let to: SocketAddr = ([127, 0, 0, 1], 9).into();
        let e = udp_connect(Some("[::1]:0".parse().expect("v6")), to).expect_err("v6 to v4");
        assert!(e.to_string().contains("not the same address family"), "{e}");
    }
}
