//! Kernel steering of VoRS media: the classic BPF program that picks, for each datagram, the
//! socket of the UDP reuseport group (and so the core) that owns its room.

use std::io;
use std::os::fd::RawFd;

/// Steers every datagram arriving at the SO_REUSEPORT group of `fd` to the socket at index
/// `first payload byte % sockets` (the order the sockets joined the group, which is core
/// order: see `sockets.rs`). VoRS puts the owner core in that byte (SIDs and cookies are
/// chosen so), so media reaches the core that owns its room without a cross-core hop.
/// An empty datagram goes to socket 0; an index past the group falls back to the kernel hash.
pub fn steer_udp_by_first_byte(fd: RawFd, sockets: u32) -> io::Result<()> {
    // Classic BPF: A = payload[0]; A %= sockets; return A. For UDP the kernel runs a reuseport
    // program with the packet data starting at the UDP payload.
    let program = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: sockets,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: setsockopt copies the program (the kernel reads `len` instructions from
    // `filter`, which points into `program`, alive for the call); no memory is kept.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn steering_sends_datagrams_to_the_socket_their_first_byte_names() {
        use socket2::{Domain, Socket, Type};
        use std::net::{SocketAddr, UdpSocket};
        let group: Vec<UdpSocket> = {
            let first = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
            first.set_reuse_port(true).expect("reuseport");
            let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            first.bind(&lo.into()).expect("bind");
            let addr = first.local_addr().expect("addr");
            let second = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
            second.set_reuse_port(true).expect("reuseport");
            second.bind(&addr).expect("bind");
            vec![first.into(), second.into()]
        };
        steer_udp_by_first_byte(group[0].as_raw_fd(), 2).expect("attach");
        let target = group[0].local_addr().expect("addr");
        // Several client sockets, so the kernel's own hash would have spread them.
        for byte in 0u8..8 {
            let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
            client.send_to(&[byte, 1, 2, 3], target).expect("send");
            let socket = &group[usize::from(byte % 2)];
            let mut buf = [0u8; 8];
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            let (n, _) = socket.recv_from(&mut buf).expect("steered datagram");
            assert_eq!(&buf[..n], &[byte, 1, 2, 3]);
        }
    }
}
