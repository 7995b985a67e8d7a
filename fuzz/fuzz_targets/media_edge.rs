//! The relay's edge check, `Room::verify_datagram`, on a sequence of datagrams from several
//! addresses into a room with registered, joining and keyless members.
//!
//! Input: records `[source][len][datagram]` (`moose_proto_fuzz::records`); the source byte
//! picks one of the members' addresses (and a few strangers) with its value modulo 6, and how
//! long after the previous datagram this one arrives with its top bits (0 to 1.24 s, in steps
//! of 40 ms); a source byte of 7 modulo 8 runs the once-a-second silence sweep first.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::control::ControlOwned;
use moose_proto::vors::room::{DropReason, EdgeVerdict};
use moose_proto_fuzz::{addr, edge_room, records};

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let (mut room, sids) = edge_room(now);
    let members = room.len();
    let mut forwarded = 0u64;
    for (source, datagram) in records(data) {
        now += Duration::from_millis(u64::from(source / 8) * 40);
        if source % 8 == 7 {
            room.sweep_silent(now);
        }
        let from = addr(source % 6);
        let verdict = room.verify_datagram(now, from, datagram);
        match verdict {
            EdgeVerdict::Forward { sender, recipients } => {
                forwarded += 1;
                assert!(!recipients.contains(sender));
                assert_eq!(room.udp_addr(sender), Some(from));
                for to in recipients {
                    assert!(room.udp_addr(to).is_some());
                    assert!(!room.is_paused(to), "media to a silent member");
                }
            }
            EdgeVerdict::Keepalive(sid) => assert_eq!(room.udp_addr(sid), Some(from)),
            EdgeVerdict::Registered(sid) => {
                assert!(sids.contains(&sid));
                assert_eq!(room.udp_addr(sid), Some(from));
                // SID first, to the newcomer.
                assert_eq!(room.poll_message(), Some((sid, ControlOwned::Sid(sid))));
            }
            EdgeVerdict::Drop(_) => {}
        }
        while let Some((to, _)) = room.poll_message() {
            assert!(
                room.udp_addr(to).is_some(),
                "messages go to registered members"
            );
        }
        assert_eq!(room.len(), members, "datagrams never add or remove members");
    }
    assert_eq!(room.stats().forwarded_packets, forwarded);
    let _ = DropReason::ALL.map(|r| room.stats().dropped(r));
});
