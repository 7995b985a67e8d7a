//! The once-a-second sweep of one core's VoRS rooms: members from which nothing came for the
//! pause window (`moose_proto::vors::room::SILENCE_PAUSE`) stop getting media, so that the
//! relay never keeps sending to an address nobody answers from. Resuming needs no sweep: a
//! paused member's next datagram does it on the media path.
//!
//! The sweep, not a check per copy, keeps the media path as it was: its table of destinations
//! is rebuilt only when a pause or a resume changes it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::rooms::VorsCore;
use crate::shard::Shard;
use crate::stats::CoreStats;

/// How often a core sweeps its rooms: a member is paused between the pause window and this
/// much later.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sweeps this core's rooms every second, for as long as the core runs.
pub(crate) async fn sweep(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(SWEEP_EVERY).await;
        sweep_once(&shard.vors, &shard.stats, Instant::now());
    }
}

/// Pauses the silent members of `vors` at `now` and counts them in `stats`.
pub(crate) fn sweep_once(vors: &VorsCore, stats: &CoreStats, now: Instant) {
    let found = vors.sweep_silent(now);
    stats.vors_silence_pauses.add(found.newly_paused as u64);
    stats.vors_members_silent.set(found.paused as u64);
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::vors::testing::{Core, TestMember};

    /// Where `sender`'s next packet is copied to, sorted.
    fn copies_of(sender: &mut TestMember, core: &Core) -> Vec<SocketAddr> {
        let packet = sender.media(core);
        let mut to: Vec<SocketAddr> = core
            .judge(&packet, Some(sender.addr))
            .copies
            .iter()
            .map(|(_, addr)| addr.as_socket().expect("an IP destination"))
            .collect();
        to.sort();
        to
    }

    #[test]
    fn a_silent_member_gets_no_copies_until_it_is_heard_again() {
        let mut core = Core::new(0, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        let mut cat = core.register("cat", "room", "192.0.2.3:4000");
        let start = core.now;
        // Ann talks and bob sends keepalives every second; cat's datagrams stop at its cookie.
        for second in 1..=4 {
            core.now = start + Duration::from_secs(second);
            copies_of(&mut ann, &core);
            let keepalive = bob.datagram(&core);
            core.judge(&keepalive, Some(bob.addr));
        }
        core.now = start + Duration::from_millis(4_500);
        sweep_once(&core.vors, &core.stats, core.now);
        assert_eq!(core.stats.vors_members_silent.get(), 1);
        assert_eq!(core.stats.vors_silence_pauses.get(), 1);
        assert_eq!(copies_of(&mut ann, &core), [bob.addr], "none for cat");
        // A second sweep counts the pause once.
        sweep_once(&core.vors, &core.stats, core.now);
        assert_eq!(core.stats.vors_silence_pauses.get(), 1);
        // Cat's keepalive resumes it on the spot.
        let keepalive = cat.datagram(&core);
        core.judge(&keepalive, Some(cat.addr));
        assert_eq!(copies_of(&mut ann, &core), [bob.addr, cat.addr]);
        sweep_once(&core.vors, &core.stats, core.now);
        assert_eq!(core.stats.vors_members_silent.get(), 0);
    }
}
