//! Where a member's packet goes on their timeline, from the packet's two counters.
//!
//! Every VoRS media packet carries PKT (+1 per packet sent) and FRAME (+1 per 20 ms of
//! microphone time, sent or not), both 24-bit. Between two packets that arrive in order:
//!
//! - `FRAME` advanced by `df`, so `df - 1` frames lie between them on the sender's timeline;
//! - `PKT` advanced by `dp`, so `dp - 1` packets were sent and lost on the way;
//! - each lost packet carried one of the missing frames, so `min(dp - 1, df - 1)` frames are
//!   lost, and the other missing frames were never sent (DTX, or the sender was muted).
//!
//! Lost frames are concealed by the decoder (PLC), at most [`MAX_CONCEALED_FRAMES`] in a row;
//! the rest of the gap, and every frame that was never sent, is silence. Concealment goes
//! first: PLC only makes sense right after the last frame decoded. A packet whose PKT is not
//! past the last one is stale (reordered or duplicated) and dropped, as the seed says.
//!
//! A FRAME jump larger than the time that actually passed (plus [`JITTER_SLACK_FRAMES`]) is
//! not believed: the gap is cut to what the clock allows, so a peer cannot make a recording
//! grow by hours of silence with one packet.

use super::MAX_CONCEALED_FRAMES;

/// Both counters are 24-bit and wrap.
const COUNTER_MASK: u32 = 0x00FF_FFFF;
/// A forward step of at least half the counter space is really a step back.
const HALF_RANGE: u32 = 1 << 23;
/// How many frames of network jitter a gap may exceed the wall-clock time by.
pub const JITTER_SLACK_FRAMES: u32 = 50;

/// What to do with an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Conceal `conceal` lost frames, write `silence` silent frames, then decode the packet.
    Play {
        /// Frames to fill with packet loss concealment.
        conceal: u32,
        /// Frames to fill with silence (not sent, or lost beyond the PLC limit).
        silence: u32,
    },
    /// Not after the last packet played (reordered, duplicated, or FRAME went back): drop.
    Stale,
}

/// A member's position on their own timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Playout {
    last: Option<(u32, u32)>,
}

/// The frames between two packets, split into concealed and silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Frames lost in transit and filled by PLC.
    pub conceal: u32,
    /// Frames never sent, or lost beyond the PLC limit, written as silence.
    pub silence: u32,
}

impl Playout {
    /// A timeline that starts at the first packet placed.
    pub fn new() -> Self {
        Playout::default()
    }

    /// Places the packet numbered `pkt` carrying frame `frame`, `wall_frames` frames of wall
    /// time after the previous packet was placed (ignored for the first one).
    pub fn place(&mut self, pkt: u32, frame: u32, wall_frames: u32) -> Placement {
        let (pkt, frame) = (pkt & COUNTER_MASK, frame & COUNTER_MASK);
        let Some((last_pkt, last_frame)) = self.last else {
            self.last = Some((pkt, frame));
            return Placement::Play {
                conceal: 0,
                silence: 0,
            };
        };
        let dp = pkt.wrapping_sub(last_pkt) & COUNTER_MASK;
        let df = frame.wrapping_sub(last_frame) & COUNTER_MASK;
        if dp == 0 || dp >= HALF_RANGE || df == 0 || df >= HALF_RANGE {
            return Placement::Stale;
        }
        self.last = Some((pkt, frame));
        let Gap { conceal, silence } = split_gap(dp - 1, df - 1, wall_frames);
        Placement::Play { conceal, silence }
    }
}

/// Splits `missing` frames, of which at most `lost_packets` were lost in transit, into
/// concealed and silent, capped by the wall clock.
fn split_gap(lost_packets: u32, missing: u32, wall_frames: u32) -> Gap {
    let missing = missing.min(wall_frames.saturating_add(JITTER_SLACK_FRAMES));
    let conceal = lost_packets.min(missing).min(MAX_CONCEALED_FRAMES);
    Gap {
        conceal,
        silence: missing - conceal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: u32 = 1_000_000;

    fn play(conceal: u32, silence: u32) -> Placement {
        Placement::Play { conceal, silence }
    }

    #[test]
    fn consecutive_packets_have_no_gap() {
        let mut p = Playout::new();
        assert_eq!(p.place(10, 100, 0), play(0, 0));
        assert_eq!(p.place(11, 101, 1), play(0, 0));
        assert_eq!(p.place(12, 102, 1), play(0, 0));
    }

    /// What a packet is given after a first packet (PKT 0, FRAME 0) started the timeline.
    fn after_start(pkt: u32, frame: u32, elapsed: u32) -> Placement {
        let mut p = Playout::new();
        p.place(0, 0, 0);
        p.place(pkt, frame, elapsed)
    }

    #[test]
    fn lost_packets_are_concealed() {
        // Packets 1..=3 (frames 1..=3) lost.
        assert_eq!(after_start(4, 4, PLENTY), play(3, 0));
    }

    #[test]
    fn frames_never_sent_are_silence() {
        // DTX or mute: PKT consecutive, FRAME jumped by 50.
        assert_eq!(after_start(1, 50, PLENTY), play(0, 49));
    }

    #[test]
    fn loss_and_dtx_together_split_the_gap() {
        // Two packets lost somewhere in a 20-frame gap.
        assert_eq!(after_start(3, 21, PLENTY), play(2, 18));
    }

    #[test]
    fn concealment_stops_at_32_frames() {
        assert_eq!(after_start(41, 41, PLENTY), play(32, 8));
    }

    #[test]
    fn reordered_and_duplicated_packets_are_stale() {
        let mut p = Playout::new();
        p.place(5, 5, 0);
        assert_eq!(p.place(5, 5, 1), Placement::Stale);
        assert_eq!(p.place(4, 4, 1), Placement::Stale);
        // The stale ones did not move the timeline.
        assert_eq!(p.place(6, 6, 1), play(0, 0));
    }

    #[test]
    fn frame_going_back_is_stale() {
        let mut p = Playout::new();
        p.place(5, 5, 0);
        assert_eq!(p.place(6, 5, 1), Placement::Stale);
        assert_eq!(p.place(7, 3, 1), Placement::Stale);
    }

    #[test]
    fn counters_wrap_at_24_bits() {
        let mut p = Playout::new();
        p.place(COUNTER_MASK, COUNTER_MASK - 1, 0);
        assert_eq!(p.place(0, 1, PLENTY), play(0, 2));
        assert_eq!(p.place(2, 3, PLENTY), play(1, 0));
    }

    #[test]
    fn gaps_are_capped_by_the_wall_clock() {
        // FRAME jumped by two million (11 hours) but only 10 frames of time passed.
        assert_eq!(
            after_start(1, 2_000_000, 10),
            play(0, 10 + JITTER_SLACK_FRAMES)
        );
    }
}
