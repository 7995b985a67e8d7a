//! The one place where the relay talks to the kernel directly.
//!
//! Everything `unsafe` in the relay lives here, each block with the reason it is sound. The rest
//! of the crate calls these safe wrappers.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Wraps a listening TCP socket the main thread created in glommio's listener type.
pub fn glommio_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned TCP socket in the listening state; ownership moves into the
    // glommio listener, which closes it on drop. No other owner remains.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a bound UDP socket the main thread created in glommio's socket type.
pub fn glommio_udp(fd: OwnedFd) -> glommio::net::UdpSocket {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned UDP socket; ownership moves into the glommio socket.
    unsafe { glommio::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) }
}

/// Wraps a connected TCP socket handed over from another core in glommio's stream type, owned by
/// the calling executor from now on.
pub fn glommio_stream(fd: OwnedFd) -> glommio::net::TcpStream {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open, owned, connected TCP socket; ownership moves into the stream.
    unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// Duplicates a socket so it can outlive the glommio stream that read its first bytes (the
/// stream is dropped on the accepting core, the duplicate travels to the line's owner core).
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a caller-owned open descriptor has no memory effects; the new
    // descriptor is checked for failure and then owned exclusively by the returned OwnedFd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Most slices one `sendmsg` takes from us: enough to flush a backlog in one call, well under
/// the kernel's IOV_MAX of 1024.
pub const MAX_IOVECS: usize = 64;

/// Sends as much of `slices` as the socket takes now, in one `sendmsg` without waiting.
/// Returns the bytes written, or `WouldBlock` when the send buffer is full.
pub fn send_vectored_now(fd: RawFd, slices: &[&[u8]]) -> io::Result<usize> {
    let count = slices.len().min(MAX_IOVECS);
    // Only the iovecs used are written (a whole zeroed array was 1 KiB of stores per call).
    let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_IOVECS];
    for (slot, slice) in iov.iter_mut().zip(&slices[..count]) {
        slot.write(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    // SAFETY: zeroed msghdr is a valid "no address, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast::<libc::iovec>();
    msg.msg_iovlen = count;
    // SAFETY: the first `count` iovecs are initialised above; every one points into a slice borrowed for the duration of the call, and the
    // kernel only reads from them (sendmsg); `msg` outlives the call.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Shuts a socket down both ways, waking any task blocked reading or writing it. Errors (the
/// peer already gone) are of no interest.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor has no memory effects; a stale descriptor only
    // yields EBADF or ENOTSOCK, which we ignore.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

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

    /// Adds a datagram received elsewhere (cut to the slot's length); false, adding nothing,
    /// when the batch is full.
    pub fn push(&mut self, datagram: &[u8], from: std::net::SocketAddr) -> bool {
        if self.count == RECV_BATCH {
            return false;
        }
        let i = self.count;
        let len = datagram.len().min(self.slot_len);
        let start = i * self.slot_len;
        self.bufs[start..start + len].copy_from_slice(&datagram[..len]);
        self.lens[i] = len;
        let addr = socket2::SockAddr::from(from);
        self.source_lens[i] = addr.len();
        self.sources[i] = addr.as_storage();
        self.count += 1;
        true
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
        // address in `copies` and at its own iovec, which points into `batch`'s buffers; all outlive the call, the kernel only reads them (and
        // writes msg_len into `msgs`, which we own).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    sent
}

/// Lets mimalloc (the relay's allocator) do its deferred work for this thread: hand memory
/// freed a while ago back to the OS. mimalloc purges freed pages only from within its own
/// calls, so a core that has gone quiet after a burst (a thousand handshakes, then idle
/// members) would otherwise hold the burst's pages for good.
pub fn collect_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and works on the calling thread's heap only; it
    // may be called at any time, and is harmless when mimalloc is not the global allocator
    // (its heap is then empty).
    unsafe { libmimalloc_sys::mi_collect(false) };
}

/// Shuts the reading side of a socket, waking a task blocked reading it while what is queued
/// can still be written.
pub fn shutdown_read(fd: RawFd) {
    // SAFETY: as for `shutdown`.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// The soft and hard RLIMIT_MEMLOCK in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft RLIMIT_MEMLOCK to `soft` (must not exceed the hard limit).
pub fn set_memlock_soft(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that the kernel lets this process create an io_uring (it may be compiled out,
/// disabled by `kernel.io_uring_disabled`, or blocked by a seccomp profile).
pub fn probe_io_uring() -> io::Result<()> {
    // io_uring_params is 120 bytes on every kernel that has io_uring; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) reads and writes exactly sizeof(struct io_uring_params) bytes
    // at the pointer, which is our 120-byte buffer; it returns a descriptor we close at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the ring descriptor just created and owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(())
}

/// The CPUs this process may run on (respects taskset, cgroups' cpusets and containers).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity fills the struct we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 means this thread; the size matches the struct passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads the set for indices below its capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// The soft limit on open file descriptors.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

/// Raises the soft limit on open file descriptors to the hard limit (common daemon practice:
/// every connection costs one, and the default soft limit is often 1024). Returns the soft
/// limit in force afterwards.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(nofile_limit())
}

/// Whether a connection waits in the backlog of the listening socket `listener` (or the
/// socket has an error to report), without waiting.
pub fn connection_waiting(listener: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own; timeout 0 never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

/// Accepts one connection already waiting on the listening socket `listener`, without
/// waiting: `None` when none is waiting. For the descriptor-exhaustion path only (see
/// `accept`), where no glommio accept is in flight on that socket: each core has its own
/// SO_REUSEPORT socket and runs one accept loop on it, so nothing can take the connection
/// between the check and the accept.
pub fn accept_waiting(listener: RawFd) -> io::Result<Option<OwnedFd>> {
    if !connection_waiting(listener) {
        return Ok(None);
    }
    // SAFETY: accept4 on a listening socket the caller owns; the peer address is not wanted
    // (null pointers are allowed). The result is checked and then owned by the OwnedFd.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The stop signals, SIGTERM and SIGINT, blocked so that they can be waited for.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for StopSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignals(SIGTERM, SIGINT)")
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts from now on
/// (threads inherit the mask), so that the default action (death) never runs and
/// [`StopSignals::wait`] receives them instead. Call it before any other thread starts.
pub fn block_stop_signals() -> io::Result<StopSignals> {
    // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initialises it and sigaddset
    // adds valid signal numbers to the set we own.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointers are to our own `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    // SAFETY: pthread_sigmask reads the set we own and changes only this thread's mask; the
    // old mask is not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(StopSignals { set })
}

impl StopSignals {
    /// Waits up to `timeout` for SIGTERM or SIGINT; returns the signal's number, or `None`
    /// when none came (or the wait was interrupted).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: sigtimedwait reads the set and the timespec we own; the siginfo output is
        // not wanted (null is allowed).
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (signal > 0).then_some(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn vectored_send_writes_slices_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let sent = send_vectored_now(client.as_raw_fd(), &[b"ab", b"", b"cde"]).expect("send");
        assert_eq!(sent, 5);
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"abcde");
    }

    #[test]
    fn full_socket_reports_would_block() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let chunk = vec![0u8; 1 << 16];
        let outcome = (0..10_000)
            .map(|_| send_vectored_now(client.as_raw_fd(), &[&chunk]))
            .find(|r| r.is_err())
            .expect("the send buffer fills up");
        assert_eq!(
            outcome.expect_err("would block").kind(),
            io::ErrorKind::WouldBlock
        );
    }

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
    fn pushed_datagrams_read_back_as_received_ones_until_the_batch_is_full() {
        let mut batch = RecvBatch::new(4);
        let v4: std::net::SocketAddr = "192.0.2.7:5000".parse().expect("v4");
        let v6: std::net::SocketAddr = "[2001:db8::1]:6000".parse().expect("v6");
        assert!(batch.push(b"ab", v4));
        assert!(batch.push(b"too long", v6));
        assert_eq!(batch.get(0), (&b"ab"[..], Some(v4)));
        assert_eq!(batch.get(1), (&b"too "[..], Some(v6)), "cut to the slot");
        for _ in 2..RECV_BATCH {
            assert!(batch.push(b"x", v4));
        }
        assert!(!batch.push(b"y", v4), "a full batch takes no more");
        assert_eq!(batch.len(), RECV_BATCH);
    }

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

    #[test]
    fn accept_waiting_takes_only_what_waits() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = listener.as_raw_fd();
        assert!(accept_waiting(fd).expect("poll").is_none(), "nothing waits");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let accepted = accept_waiting(fd).expect("accept").expect("one waits");
        drop(accepted);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).expect("clean close"), 0);
        assert!(accept_waiting(fd).expect("poll").is_none());
    }

    #[test]
    fn nofile_soft_limit_reaches_the_hard_limit() {
        let soft = raise_nofile_limit().expect("raise");
        assert_eq!(soft, nofile_limit());
        assert!(soft >= 1024, "{soft}");
    }

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().expect("affinity").is_empty());
    }
}
