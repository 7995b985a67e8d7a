//! The baseline forwarder's kernel calls: epoll, eventfd, recvmmsg and sendmmsg.
//!
//! Everything `unsafe` in the bench crate lives here, each block with the reason it is sound.
//! The rest of the baseline calls these safe wrappers. (The relay has its own `sys/`; the
//! crates do not share code, so the two small sendmmsg wrappers stay independent. CPU pinning
//! needs no `unsafe`: `cpus.rs` calls `nix`, as the relay does.)
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

/// Datagrams one `recvmmsg` takes at most.
pub(crate) const RECV_BATCH: usize = 64;
/// Largest datagram we forward whole; longer ones are cut by the kernel (VoRS media packets are
/// a few hundred bytes).
pub(crate) const MAX_DATAGRAM: usize = 2048;
/// Messages one `sendmmsg` carries at most: the kernel's UIO_MAXIOV caps `vlen` at 1024.
pub(crate) const SEND_BATCH: usize = 1024;

/// One readiness report from [`Epoll::wait`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    /// The token the descriptor was registered with.
    pub(crate) token: u64,
    /// Data, end of stream or an error is waiting: a read will not block. (Otherwise the
    /// send buffer has room again.)
    pub(crate) readable: bool,
}

/// A level-triggered epoll instance.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new epoll instance reporting up to 256 events per wait.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory effects; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// Watches `fd` for reading, and for writing too when `writable`.
    pub(crate) fn add(&self, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, writable)
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(&self, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, writable)
    }

    /// Stops watching `fd` (before handing it to another thread's epoll).
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, false)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        let mut interest = libc::EPOLLIN | libc::EPOLLRDHUP;
        if writable {
            interest |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            events: interest as u32,
            u64: token,
        };
        // SAFETY: the kernel reads `event`, which lives across the call; a bad `fd` is an
        // error return, not undefined behaviour.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Blocks until at least one watched descriptor is ready, and fills `out` with them.
    pub(crate) fn wait(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        out.clear();
        // SAFETY: the kernel writes at most `events.len()` entries into our buffer.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                -1,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(err)
            };
        }
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32;
        out.extend(self.events[..n as usize].iter().map(|e| {
            // Copies out of the (packed on x86_64) struct instead of taking references.
            let (bits, token) = (e.events, e.u64);
            Event {
                token,
                readable: bits & (libc::EPOLLIN as u32 | hangup) != 0,
            }
        }));
        Ok(())
    }
}

/// A non-blocking eventfd: another thread's way to wake an epoll loop.
#[derive(Debug)]
pub(crate) struct EventFd(File);

impl EventFd {
    /// A new eventfd with counter 0.
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd has no memory effects; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Makes the eventfd readable until [`EventFd::drain`]. Never blocks: the counter cannot
    /// reach its maximum with one increment per handoff.
    pub(crate) fn wake(&self) {
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter so the eventfd stops being readable.
    pub(crate) fn drain(&self) {
        let _ = (&self.0).read(&mut [0u8; 8]);
    }

    /// The descriptor, for [`Epoll::add`].
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Receive buffers for one `recvmmsg`: the datagrams and their source addresses.
pub(crate) struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; RECV_BATCH]>,
    lens: [usize; RECV_BATCH],
    sources: [Option<SocketAddr>; RECV_BATCH],
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecvBatch({} datagrams)", self.count)
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0; MAX_DATAGRAM]; RECV_BATCH]),
            lens: [0; RECV_BATCH],
            sources: [None; RECV_BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to [`RECV_BATCH`] waiting datagrams from `fd` in one `recvmmsg`, without
    /// waiting. Returns how many arrived; `WouldBlock` when none was waiting.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: zeroed sockaddr_storage and mmsghdr are valid "empty" values.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; RECV_BATCH];
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..RECV_BATCH {
            iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = MAX_DATAGRAM;
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: each mmsghdr points at its own sockaddr_storage (with its true size) and one
        // iovec covering exactly one MAX_DATAGRAM buffer we own exclusively (&mut self); all
        // live across the call, and the kernel writes only within those bounds.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (msgs[i].msg_len as usize).min(MAX_DATAGRAM);
            // SAFETY: the kernel filled `names[i]` and wrote its length into msg_namelen,
            // which is at most the storage size we passed.
            let addr = unsafe { SockAddr::new(names[i], msgs[i].msg_hdr.msg_namelen) };
            self.sources[i] = addr.as_socket();
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last [`RecvBatch::recv`]: payload and source address (`None` for
    /// a family other than IPv4 or IPv6).
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        (0..self.count).map(|i| (&self.bufs[i][..self.lens[i]], self.sources[i]))
    }
}

/// Sends every `(payload, destination)` pair from the UDP socket `fd` in as few `sendmmsg`
/// calls as possible ([`SEND_BATCH`] messages each), without waiting. Each message's iovec
/// points at the caller's payload bytes: several destinations of one datagram share one
/// buffer, nothing is copied. Returns how many the kernel took; the rest found the send
/// buffer full and are dropped (real-time audio is not queued).
pub(crate) fn send_many<'a>(
    fd: RawFd,
    messages: impl IntoIterator<Item = (&'a [u8], &'a SockAddr)>,
) -> usize {
    let mut messages = messages.into_iter().peekable();
    // SAFETY: zeroed iovec and mmsghdr are valid "empty" values, filled before use.
    let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut sent = 0;
    while messages.peek().is_some() {
        let mut count = 0;
        for (payload, to) in messages.by_ref().take(SEND_BATCH) {
            iovs[count] = libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            };
            let hdr = &mut msgs[count].msg_hdr;
            hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = to.len();
            hdr.msg_iov = &mut iovs[count];
            hdr.msg_iovlen = 1;
            count += 1;
        }
        let mut at = 0;
        while at < count {
            // SAFETY: messages at..count point at addresses and payloads borrowed for 'a and
            // at iovecs in `iovs`; all outlive the call. The kernel only reads them and writes
            // msg_len into `msgs`, which we own.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[at..].as_mut_ptr(),
                    (count - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                    // Send buffer full: drop the rest of this chunk, as a real-time forwarder
                    // must, rather than wait.
                    break;
                }
                // The first message was refused (an address the socket cannot reach): skip
                // it so that it cannot hold back the others.
                at += 1;
                continue;
            }
            if n == 0 {
                break; // Only for an empty vector, which we never pass; no endless loop.
            }
            sent += n as usize;
            at += n as usize;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn batch_reaches_every_destination_from_one_buffer() {
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addrs: Vec<SockAddr> = receivers
            .iter()
            .map(|r| r.local_addr().expect("addr").into())
            .collect();
        let payload = b"voice".as_slice();
        let sent = send_many(sender.as_raw_fd(), addrs.iter().map(|a| (payload, a)));
        assert_eq!(sent, 3);
        for r in &receivers {
            let mut buf = [0u8; 16];
            let (n, from) = r.recv_from(&mut buf).expect("datagram");
            assert_eq!(
                (&buf[..n], from),
                (payload, sender.local_addr().expect("addr"))
            );
        }
    }

    #[test]
    fn recv_batch_reports_payloads_and_sources() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = RecvBatch::default();
        let nothing = batch.recv(server.as_raw_fd()).expect_err("empty socket");
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        for word in [b"one".as_slice(), b"two", b"three"] {
            client
                .send_to(word, server.local_addr().expect("addr"))
                .expect("send");
        }
        // Blocking peek: all three are queued once the first is (loopback keeps order).
        server.peek_from(&mut [0u8; 1]).expect("peek");
        let mut got = Vec::new();
        while got.len() < 3 {
            batch.recv(server.as_raw_fd()).expect("datagrams");
            got.extend(batch.datagrams().map(|(p, from)| (p.to_vec(), from)));
        }
        let from = Some(client.local_addr().expect("addr"));
        assert_eq!(
            got,
            vec![
                (b"one".to_vec(), from),
                (b"two".to_vec(), from),
                (b"three".to_vec(), from)
            ]
        );
    }
}
