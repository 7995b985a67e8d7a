//! VoRS members without sockets, for unit tests: real client sessions (`moose_proto`) meet the
//! relay's own admission ([`member::join`]) and edge check ([`media::judge`]), and the tests
//! move the bytes between them by hand, the way quinn-proto's tests drive its endpoint.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit};
use moose_proto::vors::freshness::{Freshness, UnixTime};
use moose_proto::vors::handshake::{KEY_LEN, generate_keypair};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::room::RoomConfig;
use moose_proto::vors::server::{ServerEvent, ServerSession};

use super::media::{self, Fanout};
use super::member::{self, Admission, OwnerCore};
use super::room::{MemberConn, RoomCell};
use super::rooms::VorsCore;
use crate::limits::rooms::RoomQuota;
use crate::stats::CoreStats;
use crate::sys::MAX_IOVECS;

/// One core's VoRS state and counters, and the relay's static key.
#[derive(Debug)]
pub(crate) struct Core {
    pub vors: VorsCore,
    /// `--max-rooms` (and no limit per address).
    pub rooms: RoomQuota,
    pub stats: CoreStats,
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
    /// The clock every step of a test reads.
    pub now: Instant,
    /// `--chat-per-minute` (its default unless a test changes it).
    pub chat_per_minute: u32,
}

impl Core {
    /// The only core of a relay that allows `max_rooms` rooms (0: no limit) of up to
    /// `max_members` members, with the default media rules.
    pub(crate) fn new(max_rooms: usize, max_members: usize) -> Self {
        Self::with_rooms(max_rooms, RoomConfig::with_max_members(max_members))
    }

    /// The only core of a relay that allows `max_rooms` rooms (0: no limit) following `rooms`.
    pub(crate) fn with_rooms(max_rooms: usize, rooms: RoomConfig) -> Self {
        let (private, public) = generate_keypair().expect("keypair");
        Core {
            vors: VorsCore::new(0, 1, rooms),
            rooms: RoomQuota::new(max_rooms, 0),
            stats: CoreStats::default(),
            private,
            public,
            now: Instant::now(),
            chat_per_minute: 120,
        }
    }

    pub(crate) fn owner(&self) -> OwnerCore<'_> {
        OwnerCore {
            vors: &self.vors,
            rooms: &self.rooms,
            stats: &self.stats,
            chat_per_minute: self.chat_per_minute,
        }
    }

    /// A client named `username` that reached message 1 for `room` over a connection from
    /// 192.0.2.1, and the relay's admission of it.
    pub(crate) fn knock(&self, username: &str, room: &str) -> (ClientSession, Admission) {
        self.knock_from(username, room, IpAddr::from([192, 0, 2, 1]))
    }

    /// As [`knock`](Self::knock), over a connection from `from` (its client charged for a new
    /// room, its IP the one the cookie must come from).
    pub(crate) fn knock_from(
        &self,
        username: &str,
        room: &str,
        from: IpAddr,
    ) -> (ClientSession, Admission) {
        let hello = Hello {
            username,
            room,
            password_hash: None,
        };
        let wall = UnixTime(1_800_000_000);
        let mut client = ClientSession::new(self.now, wall, &self.public, &hello).expect("client");
        let mut session = Box::new(ServerSession::new(self.now, &self.private));
        while let Some(transmit) = client.poll_transmit() {
            let ClientTransmit::Tcp(bytes) = transmit else {
                panic!("a datagram before message 2");
            };
            session.handle_tcp(self.now, &bytes);
        }
        // Screening is `replay`'s concern: every hello here is new and fresh.
        let Some(ServerEvent::Message1 { .. }) = session.poll_event() else {
            panic!("message 1 is framed");
        };
        session
            .open_hello(self.now, wall, &Freshness::default())
            .expect("screening");
        let Some(ServerEvent::Hello(hello)) = session.poll_event() else {
            panic!("message 1 gives the hello");
        };
        let admission = member::join(self.owner(), &hello, from, session, from, self.now, None);
        (client, admission)
    }

    /// A member of `room` whose connection came from the IP of `addr`, and whose datagrams
    /// come from `addr`; it has not sent its cookie yet.
    pub(crate) fn join(&self, username: &str, room: &str, addr: &str) -> TestMember {
        let addr: SocketAddr = addr.parse().expect("an address");
        let (client, admission) = self.knock_from(username, room, addr.ip());
        let Admission::Joined { cell, member } = admission else {
            panic!("{username} is refused: {admission:?}");
        };
        let mut joined = TestMember {
            client,
            addr,
            cell,
            member,
            datagrams: VecDeque::new(),
        };
        joined.exchange(self);
        joined
    }

    /// A member of `room` at `addr` whose cookie registered its address.
    pub(crate) fn register(&self, username: &str, room: &str, addr: &str) -> TestMember {
        let mut joined = self.join(username, room, addr);
        let cookie = joined.datagram(self);
        let fanout = self.judge(&cookie, Some(joined.addr));
        assert!(fanout.copies.is_empty(), "a cookie is not forwarded");
        joined.exchange(self);
        let sid = joined.member.sid;
        assert!(
            joined.events().contains(&ClientEvent::Joined(sid)),
            "{username} gets its SID"
        );
        joined
    }

    /// Judges `datagram` from `from` as the only datagram of a batch; returns its copies.
    pub(crate) fn judge(&self, datagram: &[u8], from: Option<SocketAddr>) -> Fanout {
        let mut fanout = Fanout::default();
        media::judge(
            &self.vors,
            &self.stats,
            0,
            datagram,
            from,
            self.now,
            &mut fanout,
        );
        fanout
    }
}

/// A member's client session and the relay's side of its connection.
#[derive(Debug)]
pub(crate) struct TestMember {
    pub client: ClientSession,
    /// The UDP address its datagrams come from.
    pub addr: SocketAddr,
    pub cell: Rc<RoomCell>,
    pub member: Rc<MemberConn>,
    /// Datagrams the client sent, not yet taken by the test.
    datagrams: VecDeque<Vec<u8>>,
}

impl TestMember {
    /// Moves what the relay queued for the member into its client, and what the client has to
    /// say over TCP into the relay, until neither has more.
    pub(crate) fn exchange(&mut self, core: &Core) {
        loop {
            let queued = self
                .member
                .out
                .with_front(MAX_IOVECS, |messages| messages.concat());
            self.member.out.consume(queued.len());
            if !queued.is_empty() {
                self.client.handle_tcp(core.now, &queued);
            }
            let sent = self.take_transmits(core);
            if sent {
                member::process(core.owner(), &self.cell, &self.member, core.now);
            }
            if queued.is_empty() && !sent {
                return;
            }
        }
    }

    /// Hands the client's TCP bytes to the relay's session and keeps its datagrams; true if
    /// there were TCP bytes.
    fn take_transmits(&mut self, core: &Core) -> bool {
        let mut tcp = false;
        while let Some(transmit) = self.client.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) => {
                    self.member
                        .session
                        .borrow_mut()
                        .handle_tcp(core.now, &bytes);
                    tcp = true;
                }
                ClientTransmit::Udp(datagram) => self.datagrams.push_back(datagram),
            }
        }
        tcp
    }

    /// The next datagram the client sends on its own (a cookie, then keepalives).
    pub(crate) fn datagram(&mut self, core: &Core) -> Vec<u8> {
        self.client.handle_timeout(core.now);
        self.next_datagram(core)
    }

    /// A media packet of one audio frame, sealed by the client under its keys (the client's
    /// other datagrams stay in line for [`datagram`](Self::datagram)).
    pub(crate) fn media(&mut self, core: &Core) -> Vec<u8> {
        let queued = self
            .client
            .handle_audio_frame(core.now, Some(&[0x55; 60]))
            .expect("a frame");
        assert!(queued, "the client sends media once joined");
        self.pass_transmits(core);
        self.datagrams.pop_back().expect("the media packet")
    }

    fn next_datagram(&mut self, core: &Core) -> Vec<u8> {
        self.pass_transmits(core);
        self.datagrams
            .pop_front()
            .expect("the client has a datagram to send")
    }

    fn pass_transmits(&mut self, core: &Core) {
        if self.take_transmits(core) {
            member::process(core.owner(), &self.cell, &self.member, core.now);
        }
    }

    /// Everything that happened to the client since last asked.
    pub(crate) fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }
}
