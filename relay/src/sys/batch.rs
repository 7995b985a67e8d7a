//! VoRS media in batches: many datagrams taken from a UDP socket with one `recvmmsg`, and
//! their copies sent on with as few `sendmmsg` calls as possible, whose messages point into
//! the receive buffers (no copy of the payload, no allocation per datagram).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// Most destinations one `sendmmsg` takes: a batch's copies fit in a few calls.
pub const MAX_DATAGRAMS: usize = 64;

/// Most datagrams one `recvmmsg` takes: enough to empty a busy socket in a few calls, small
/// enough that a batch's fan-out fits one `sendmmsg` of [`MAX_DATAGRAMS`] for rooms of 4.
pub const RECV_BATCH: usize = 16;

/// Receive buffers for up to [`RECV_BATCH`] datagrams and their sources, reused for every
/// batch (no allocation per datagram).
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slot_len: usize,
    lens: [usize; RECV_BATCH],
    sources: [libc::sockaddr_storage; RECV_BATCH],
    source_lens: [libc::socklen_t; RECV_BATCH],
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish()
    }
}

impl RecvBatch {
    /// Room for [`RECV_BATCH`] datagrams of up to `max_datagram` bytes each.
    pub fn new(max_datagram: usize) -> Self {
        RecvBatch {
            bufs: vec![0u8; max_datagram * RECV_BATCH].into_boxed_slice(),
            slot_len: max_datagram,
            lens: [0; RECV_BATCH],
            // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
            sources: unsafe { std::mem::zeroed() },
            source_lens: [0; RECV_BATCH],
            count: 0,
        }
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets what the batch holds.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Fills the free slots with the datagrams waiting on the UDP socket `fd`, in one
    /// `recvmmsg` without waiting. Returns how many it added (0 when none was waiting).
    pub fn recv_now(&mut self, fd: RawFd) -> io::Result<usize> {
        let first = self.count;
        let want = RECV_BATCH - first;
        if want == 0 {
            return Ok(0);
        }
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; RECV_BATCH];
        let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; RECV_BATCH];
        let base = self.bufs.as_mut_ptr();
        for k in 0..want {
            let i = first + k;
            let iov = iovs[k].write(libc::iovec {
                // SAFETY: slot `i` < RECV_BATCH lies inside `bufs` (RECV_BATCH slots of slot_len).
                iov_base: unsafe { base.add(i * self.slot_len) }.cast(),
                iov_len: self.slot_len,
            });
            let name = (&mut self.sources[i] as *mut libc::sockaddr_storage).cast();
            msgs[k].write(message(
                name,
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                iov,
            ));
        }
        // SAFETY: each of the `want` headers points at one free slot of `bufs` (disjoint,
        // `slot_len` bytes each) and at its own sockaddr_storage, all owned by `self` and
        // alive for the call; the kernel writes at most those lengths, and writes msg_len and
        // msg_namelen into `msgs`, which we own. MSG_DONTWAIT: never blocks the executor.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for (k, msg) in msgs[..n].iter().enumerate() {
            // SAFETY: headers below `want` (and n <= want) were initialised above.
            let msg = unsafe { msg.assume_init_ref() };
            self.lens[first + k] = (msg.msg_len as usize).min(self.slot_len);
            self.source_lens[first + k] = msg.msg_hdr.msg_namelen;
        }
        self.count += n;
        Ok(n)
    }

    /// Datagram `i`'s bytes and source (`None` for a source that is not IP).
    pub fn get(&self, i: usize) -> (&[u8], Option<std::net::SocketAddr>) {
        let start = i * self.slot_len;
        let bytes = &self.bufs[start..start + self.lens[i]];
        (bytes, socket_addr(&self.sources[i], self.source_lens[i]))
    }
}

/// The IP address a kernel-filled `sockaddr_storage` of `len` bytes holds, if it holds one.
fn socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say the storage holds a sockaddr_in, and
            // sockaddr_storage is aligned for every socket address type.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(std::net::SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One `mmsghdr` for a single-buffer datagram to or from `name`.
fn message(
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
    iov: &mut libc::iovec,
) -> libc::mmsghdr {
    // SAFETY: a zeroed mmsghdr is "no address, no data, no control"; the fields are set below.
    let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
    msg.msg_hdr.msg_name = name;
    msg.msg_hdr.msg_namelen = namelen;
    msg.msg_hdr.msg_iov = iov;
    msg.msg_hdr.msg_iovlen = 1;
    msg
}

/// Sends every copy in `copies` — (datagram index in `batch`, destination) — from the UDP
/// socket `fd`, in as few `sendmmsg` calls as possible and without waiting. Each message points
/// into the batch's receive buffer: no copy of the payload. Returns how many copies the kernel
/// took, always a prefix of `copies`: at the first refusal (send buffer full) the rest are
/// dropped (real-time audio is not queued).
pub fn send_batch(fd: RawFd, batch: &RecvBatch, copies: &[(usize, socket2::SockAddr)]) -> usize {
    let mut sent = 0;
    for chunk in copies.chunks(MAX_DATAGRAMS) {
        // Only the headers used are written: zeroing whole arrays of 64 per call once cost
        // more instructions than the rest of the forward path (callgrind).
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_DATAGRAMS];
        let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_DATAGRAMS];
        for (k, (index, addr)) in chunk.iter().enumerate() {
            let (payload, _) = batch.get(*index);
            let iov = iovs[k].write(libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            });
            msgs[k].write(message(addr.as_ptr() as *mut libc::c_void, addr.len(), iov));
        }
        // SAFETY: the first `chunk.len()` headers are initialised above; each points at an
        // address in `copies` and at its own iovec, which points into `batch`'s buffers; all
        // outlive the call.
        let n = unsafe { send_prepared(fd, &mut msgs, chunk.len()) };
        sent += n;
        if n < chunk.len() {
            break;
        }
    }
    sent
}

/// Hands the first `len` headers of `msgs` to one `sendmmsg` without waiting; how many
/// datagrams the kernel took (0 when it took none: send buffer full, or an error).
///
/// # Safety
/// The first `len` headers must be initialised, and the addresses, iovecs and buffers they
/// point at must be valid for the call. The kernel only reads them (and writes `msg_len` into
/// `msgs`, which the caller owns).
#[inline]
unsafe fn send_prepared(
    fd: RawFd,
    msgs: &mut [MaybeUninit<libc::mmsghdr>; MAX_DATAGRAMS],
    len: usize,
) -> usize {
    // SAFETY: as the caller promised.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
            len as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).unwrap_or(0)
}

/// One datagram for [`send_gathered`]: the concatenation of its parts (an empty part adds
/// nothing), to `to`.
pub type Gathered<'a> = ([&'a [u8]; 3], &'a socket2::SockAddr);

/// Sends the `count` datagrams `datagram(0)`, `datagram(1)`, ... from the UDP socket `fd`,
/// each gathered from its three parts (a relay-link datagram: header, the unchanged media
/// packet, tag; or a packet cut out of a received link datagram), with as few `sendmmsg` calls
/// as possible and without waiting. No part is copied, and no list of the datagrams is built:
/// their parts may live in several places. Returns how many the kernel took, the first ones,
/// as [`send_batch`].
pub fn send_gathered<'a>(
    fd: RawFd,
    count: usize,
    datagram: impl Fn(usize) -> Gathered<'a>,
) -> usize {
    let mut sent = 0;
    for start in (0..count).step_by(MAX_DATAGRAMS) {
        let chunk = start..count.min(start + MAX_DATAGRAMS);
        let mut iovs = [const { MaybeUninit::<[libc::iovec; 3]>::uninit() }; MAX_DATAGRAMS];
        let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_DATAGRAMS];
        for (k, (parts, addr)) in chunk.clone().map(&datagram).enumerate() {
            let iov = iovs[k].write(parts.map(|part| libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            }));
            let msg = msgs[k].write(message(
                addr.as_ptr() as *mut libc::c_void,
                addr.len(),
                &mut iov[0],
            ));
            msg.msg_hdr.msg_iovlen = 3;
        }
        // SAFETY: the first `chunk.len()` headers are initialised above; each points at an
        // address borrowed for 'a and at its own three iovecs, which point into slices
        // borrowed for 'a; all outlive the call.
        let n = unsafe { send_prepared(fd, &mut msgs, chunk.len()) };
        sent += n;
        if n < chunk.len() {
            break;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_is_received_in_order_and_its_copies_reach_their_addresses() {
        use std::net::UdpSocket;
        let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = relay.local_addr().expect("addr");
        let senders: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut batch = RecvBatch::new(64);
        assert_eq!(batch.recv_now(relay.as_raw_fd()).expect("empty"), 0);
        for (i, s) in senders.iter().enumerate() {
            s.send_to(&[b'a' + i as u8; 5][..=i], target).expect("send");
        }
        // Loopback delivers synchronously: all three wait now.
        assert_eq!(batch.recv_now(relay.as_raw_fd()).expect("recv"), 3);
        for (i, s) in senders.iter().enumerate() {
            let (bytes, from) = batch.get(i);
            assert_eq!(bytes, &[b'a' + i as u8; 5][..=i]);
            assert_eq!(from, Some(s.local_addr().expect("addr")));
        }
        // Datagram 2 to senders 0 and 1, datagram 0 to sender 2: one sendmmsg.
        let to = |i: usize| socket2::SockAddr::from(senders[i].local_addr().expect("addr"));
        let copies = [(2, to(0)), (2, to(1)), (0, to(2))];
        assert_eq!(send_batch(relay.as_raw_fd(), &batch, &copies), 3);
        for (i, want) in [(0, &b"ccc"[..]), (1, b"ccc"), (2, b"a")] {
            let mut buf = [0u8; 16];
            let (n, from) = senders[i].recv_from(&mut buf).expect("copy");
            assert_eq!(&buf[..n], want);
            assert_eq!(from, target);
        }
        batch.clear();
        assert_eq!(batch.recv_now(relay.as_raw_fd()).expect("empty again"), 0);
    }

    #[test]
    fn gathered_parts_leave_as_one_datagram_each() {
        use std::net::UdpSocket;
        let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = socket2::SockAddr::from(peer.local_addr().expect("addr"));
        let datagrams: [Gathered<'_>; 2] = [
            ([b"head", b"-body-", b"tag"], &to),
            ([b"solo", b"", b""], &to),
        ];
        assert_eq!(
            send_gathered(relay.as_raw_fd(), datagrams.len(), |i| datagrams[i]),
            2
        );
        for want in [&b"head-body-tag"[..], b"solo"] {
            let mut buf = [0u8; 32];
            let n = peer.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], want);
        }
    }
}
