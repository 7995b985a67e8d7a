//! Binds every core's listening sockets before the executors start.
//!
//! Each core gets its own SO_REUSEPORT socket on the same address, and the kernel spreads new
//! connections and datagrams over them. Binding them all here, in core order, resolves port 0
//! once (tests and ephemeral deployments) and keeps the group's order fixed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

/// Backlog of each listening socket.
const BACKLOG: i32 = 1024;
/// Receive and send buffer asked for each UDP socket. The default (208 KiB) holds only about
/// 200 small datagrams, since the kernel charges each one its whole buffer: 4 ms of a
/// 50 000-packet/s burst, after which honest packets are lost with the forged ones. The
/// kernel caps the request at `net.core.rmem_max` / `wmem_max` (docs/operations.md).
const UDP_BUFFER: usize = 4 << 20;

/// One core's sockets.
#[derive(Debug)]
pub(crate) struct CoreSockets {
    pub http: OwnedFd,
    pub vors_tcp: OwnedFd,
    pub vors_udp: OwnedFd,
}

/// All sockets of the process and the addresses they ended up on.
#[derive(Debug)]
pub(crate) struct Bound {
    pub cores: Vec<CoreSockets>,
    pub admin: OwnedFd,
    pub http_addr: SocketAddr,
    pub vors_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

/// An address that could not be bound, and which setting it came from.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {addr}: {source}")]
pub(crate) struct BindError {
    pub setting: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

fn socket(addr: SocketAddr, ty: Type, reuse_port: bool) -> io::Result<Socket> {
    let proto = if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    if ty == Type::STREAM {
        socket.listen(BACKLOG)?;
    } else {
        // Best effort: a smaller buffer than asked for still works.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
    }
    Ok(socket)
}

fn local(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an internet socket"))
}

/// `n` reuseport sockets of type `ty` on `addr`; the first resolves a zero port.
fn group(addr: SocketAddr, ty: Type, n: usize) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let first = socket(addr, ty, true)?;
    let addr = local(&first)?;
    let mut fds = vec![OwnedFd::from(first)];
    for _ in 1..n {
        fds.push(socket(addr, ty, true)?.into());
    }
    Ok((fds, addr))
}

/// Binds everything for `cores` executors; the UDP group gets the program that delivers each
/// datagram to its room's core.
pub(crate) fn bind_all(
    cores: usize,
    http: SocketAddr,
    vors: SocketAddr,
    admin: SocketAddr,
) -> Result<Bound, BindError> {
    let err = |setting, addr| {
        move |source| BindError {
            setting,
            addr,
            source,
        }
    };
    let (http_fds, http_addr) = group(http, Type::STREAM, cores).map_err(err("--listen", http))?;
    // VoRS needs TCP and UDP on one port. With port 0 the kernel picks the TCP port; should
    // that port be taken for UDP, try again with another.
    let mut attempts = if vors.port() == 0 { 16 } else { 1 };
    let (vors_tcp, vors_udp, vors_addr) = loop {
        attempts -= 1;
        let (tcp, addr) = group(vors, Type::STREAM, cores).map_err(err("--vors-listen", vors))?;
        match group(addr, Type::DGRAM, cores) {
            Ok((udp, _)) => {
                if cores > 1 {
                    // Datagrams go to the core their first byte names (see vors/mod.rs).
                    sys::steer_udp_by_first_byte(udp[0].as_raw_fd(), cores as u32)
                        .map_err(err("--vors-listen", vors))?;
                }
                break (tcp, udp, addr);
            }
            Err(e) if attempts == 0 => return Err(err("--vors-listen", vors)(e)),
            Err(_) => continue,
        }
    };
    let admin_socket = socket(admin, Type::STREAM, false).map_err(err("--admin-listen", admin))?;
    let admin_addr = local(&admin_socket).map_err(err("--admin-listen", admin))?;
    let cores = http_fds
        .into_iter()
        .zip(vors_tcp)
        .zip(vors_udp)
        .map(|((http, vors_tcp), vors_udp)| CoreSockets {
            http,
            vors_tcp,
            vors_udp,
        })
        .collect();
    Ok(Bound {
        cores,
        admin: admin_socket.into(),
        http_addr,
        vors_addr,
        admin_addr,
    })
}

/// The relay link's sockets (`--cluster-listen`), one per core in a reuseport group: a link
/// datagram goes to the core its first byte names, the core that owns its room here
/// (docs/cluster.md, section 7), exactly as VoRS media does. Returns them in core order and the
/// address they ended up on.
pub(crate) fn bind_link(
    cores: usize,
    addr: SocketAddr,
) -> Result<(Vec<OwnedFd>, SocketAddr), BindError> {
    let err = |source| BindError {
        setting: "--cluster-listen",
        addr,
        source,
    };
    let (fds, bound) = group(addr, Type::DGRAM, cores).map_err(err)?;
    if cores > 1 {
        sys::steer_udp_by_first_byte(fds[0].as_raw_fd(), cores as u32).map_err(err)?;
    }
    Ok((fds, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_core() {
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let bound = bind_all(3, lo, lo, lo).expect("bind");
        assert_eq!(bound.cores.len(), 3);
        assert_ne!(bound.http_addr.port(), 0);
        assert_ne!(bound.vors_addr.port(), 0);
        assert_ne!(bound.http_addr.port(), bound.vors_addr.port());
        for core in &bound.cores {
            let tcp = Socket::from(core.vors_tcp.try_clone().expect("dup"));
            let udp = Socket::from(core.vors_udp.try_clone().expect("dup"));
            assert_eq!(local(&tcp).expect("addr"), bound.vors_addr);
            assert_eq!(local(&udp).expect("addr"), bound.vors_addr);
        }
    }

    #[test]
    fn a_taken_address_names_its_setting() {
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let taken = std::net::TcpListener::bind(lo).expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = bind_all(1, lo, lo, addr).expect_err("admin port is taken");
        assert_eq!(err.setting, "--admin-listen");
    }
}
