//! One member's jitter buffer: packets in as the network delivers them, one 20 ms slot out
//! per tick of the call's frame clock, each slot "decode this packet", "conceal" or "silence".
//!
//! Times are milliseconds on the caller's clock (`f64`, any epoch), so the buffer reads no
//! clock and a test can drive it with simulated time.
//!
//! **Timeline.** Packet `i` carries frame `f_i` (the sender's 20 ms counter). Its arrival
//! offset is `a_i = arrival_i - 20·f_i`: constant on a perfect network, spread by jitter, and
//! sloping when the sender's clock drifts against ours. The buffer plays frame `c` (its
//! cursor) at tick `t`, so its playout offset is `P = t - 20·c`, and a packet is on time when
//! `a_i <= P`. The delay the buffer adds to packet `i` is `P - a_i`.
//!
//! **Adapting.** Over the last [`WINDOW`] packets, `L = min(a) + target`, where `target` is
//! the spread `max(a) - min(a)` plus [`MARGIN_MS`], bounded by [`MAX_TARGET_MS`]. The buffer
//! keeps `P` in `[L, L + 20 + HYSTERESIS_MS)`: below, it *stretches* (plays one slot without
//! moving the cursor); above, it *skips* one frame; far above (a stall, a burst), it jumps.
//! One adjustment at most every [`ADJUST_EVERY`] ticks, so speech is touched rarely. Clock
//! drift moves `min(a)` slowly and is absorbed the same way: no queue grows without bound,
//! and the packets held never exceed [`MAX_QUEUED`] frames.
//!
//! **Gaps.** A frame with no packet at its tick is concealed (libopus PLC) when it was lost:
//! the next packet held shows how many packets went missing (`PKT` gap), or, with none held
//! yet, the gap is still young. Concealment stops after [`MAX_CONCEALED_FRAMES`] frames in a
//! row; the rest is silence (DTX, mute, or a long loss), and the decoder is reset before the
//! next packet. Packets are placed by FRAME; one that is not after the last one placed
//! (reordered, duplicated) or that comes after its tick has passed (late) is dropped.

use std::collections::VecDeque;

use crate::audio::{FRAME_MS, MAX_CONCEALED_FRAMES};

/// Packets whose arrival offsets set the target delay (2 s of speech).
pub const WINDOW: usize = 100;
/// Added to the measured spread, for the scheduling noise of two machines' 20 ms clocks.
pub const MARGIN_MS: f64 = 5.0;
/// The most delay the buffer adds to meet the jitter it measures.
pub const MAX_TARGET_MS: f64 = 200.0;
/// How far past its target the playout may lag before one frame is skipped.
pub const HYSTERESIS_MS: f64 = 10.0;
/// Lagging this much beyond the target band, the buffer jumps instead of skipping frames.
pub const RESYNC_MS: f64 = 100.0;
/// Ticks between two adjustments (skip or stretch).
pub const ADJUST_EVERY: u64 = 5;
/// Most frames held; beyond, the oldest are dropped (a sender far ahead of its tick).
pub const MAX_QUEUED: usize = 50;

const FRAME: f64 = FRAME_MS as f64;
const COUNTER_MASK: u32 = 0x00FF_FFFF;
const HALF_RANGE: u32 = 1 << 23;
/// Where a member's unwrapped frame numbers start, so going back stays positive.
const FIRST_EXT: u64 = 1 << 32;

/// What to play for one 20 ms tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Decode this packet; `reset` first when concealment ran out before it.
    Decode {
        /// The Opus packet.
        opus: Vec<u8>,
        /// The gap before it was longer than PLC covers: start the decoder afresh.
        reset: bool,
    },
    /// A lost frame: packet loss concealment.
    Conceal,
    /// Nothing: the member was silent (DTX, muted, gone quiet) or lost beyond PLC.
    Silence,
}

/// What the buffer did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Packets missing by PKT gaps.
    pub lost: u64,
    /// Packets dropped: not after the last one (FRAME went back) or past their tick.
    pub late: u64,
    /// Frames played from packets.
    pub decoded: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Slots played as silence while playing (not before the first packet).
    pub silent: u64,
    /// Frames skipped to shorten the delay.
    pub skipped: u64,
    /// Slots inserted to lengthen it.
    pub stretched: u64,
    /// Sum and maximum of the delay added to decoded packets, in ms.
    pub delay_sum_ms: f64,
    /// The largest delay added to one packet, in ms.
    pub delay_max_ms: f64,
    /// Interarrival jitter as RFC 3550 §6.4.1 estimates it, in ms.
    pub jitter_ms: f64,
}

impl JitterStats {
    /// Mean delay added to a decoded packet, in ms.
    pub fn delay_mean_ms(&self) -> f64 {
        if self.decoded == 0 {
            0.0
        } else {
            self.delay_sum_ms / self.decoded as f64
        }
    }

    /// Lost and late packets as a share of those expected.
    pub fn loss_share(&self) -> f64 {
        let expected = self.received + self.lost;
        if expected == 0 {
            0.0
        } else {
            (self.lost + self.late) as f64 / expected as f64
        }
    }
}

#[derive(Debug)]
struct Held {
    ext: u64,
    pkt: u32,
    offset: f64,
    opus: Vec<u8>,
}

/// One member's packets between the network and the speaker.
#[derive(Debug, Default)]
pub struct JitterBuffer {
    held: VecDeque<Held>,
    /// Last packet accepted: (PKT, FRAME, unwrapped FRAME).
    last_in: Option<(u32, u32, u64)>,
    /// Last packet played: (PKT, unwrapped FRAME).
    last_played: Option<(u32, u64)>,
    /// Next frame to play.
    cursor: Option<u64>,
    /// Slots since the last decoded packet.
    missing_run: u32,
    offsets: VecDeque<f64>,
    ticks: u64,
    last_adjust: u64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer; playing starts with the first packet.
    pub fn new() -> Self {
        JitterBuffer::default()
    }

    /// Counts so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay the buffer aims at now, in ms.
    pub fn target_ms(&self) -> f64 {
        let (lo, hi) = self.spread();
        (hi - lo + MARGIN_MS).min(MAX_TARGET_MS)
    }

    fn spread(&self) -> (f64, f64) {
        self.offsets
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                (lo.min(a), hi.max(a))
            })
    }

    /// A packet arrived at `at_ms`: PKT and FRAME from its header, its Opus payload.
    pub fn push(&mut self, at_ms: f64, pkt: u32, frame: u32, opus: &[u8]) {
        let (pkt, frame) = (pkt & COUNTER_MASK, frame & COUNTER_MASK);
        let ext = match self.last_in {
            None => FIRST_EXT,
            Some((last_pkt, last_frame, last_ext)) => {
                let dp = pkt.wrapping_sub(last_pkt) & COUNTER_MASK;
                let df = frame.wrapping_sub(last_frame) & COUNTER_MASK;
                if dp == 0 || dp >= HALF_RANGE || df == 0 || df >= HALF_RANGE {
                    self.stats.late += 1;
                    return;
                }
                self.stats.lost += u64::from(dp - 1);
                last_ext + u64::from(df)
            }
        };
        self.last_in = Some((pkt, frame, ext));
        self.stats.received += 1;
        let offset = at_ms - FRAME * ext as f64;
        // RFC 3550: J += (|D| - J) / 16, D the change in transit time between two packets.
        if let Some(&prev) = self.offsets.back() {
            let d = (offset - prev).abs();
            self.stats.jitter_ms += (d - self.stats.jitter_ms) / 16.0;
        }
        self.offsets.push_back(offset);
        if self.offsets.len() > WINDOW {
            self.offsets.pop_front();
        }
        if self.cursor.is_some_and(|c| ext < c) {
            self.stats.late += 1;
            return;
        }
        self.held.push_back(Held {
            ext,
            pkt,
            offset,
            opus: opus.to_vec(),
        });
        if self.held.len() > MAX_QUEUED {
            self.held.pop_front();
            self.stats.late += 1;
        }
    }

    /// The slot to play at the tick `tick_ms` (one call per 20 ms tick).
    pub fn pop(&mut self, tick_ms: f64) -> Slot {
        self.ticks += 1;
        let low = self.spread().0 + self.target_ms();
        let cursor = match self.cursor {
            Some(c) => c,
            None if self.held.is_empty() => return Slot::Silence,
            None => {
                // Start where the playout offset lands in the target band.
                let c = self.cursor_for(tick_ms, low);
                self.cursor = Some(c);
                self.last_adjust = self.ticks;
                self.drop_late(c);
                c
            }
        };
        let lag = tick_ms - FRAME * cursor as f64 - low;
        let may_adjust = self.ticks - self.last_adjust >= ADJUST_EVERY;
        let cursor = if lag >= FRAME + HYSTERESIS_MS + RESYNC_MS {
            let c = self.cursor_for(tick_ms, low).max(cursor);
            self.stats.skipped += c - cursor;
            self.last_adjust = self.ticks;
            self.skip_to(c);
            c
        } else if lag >= FRAME + HYSTERESIS_MS && may_adjust {
            self.stats.skipped += 1;
            self.last_adjust = self.ticks;
            self.skip_to(cursor + 1);
            cursor + 1
        } else if lag < 0.0 && may_adjust {
            self.last_adjust = self.ticks;
            self.stats.stretched += 1;
            // Mid-speech, PLC lengthens the sound smoothly; in a pause, silence does.
            return if self.missing_run < MAX_CONCEALED_FRAMES && self.last_played.is_some() {
                Slot::Conceal
            } else {
                Slot::Silence
            };
        } else {
            cursor
        };
        self.drop_late(cursor);
        self.cursor = Some(cursor + 1);
        match self.held.front() {
            Some(h) if h.ext == cursor => {
                let Some(h) = self.held.pop_front() else {
                    return Slot::Silence;
                };
                let reset = self.missing_run > MAX_CONCEALED_FRAMES;
                let delay = tick_ms - FRAME * cursor as f64 - h.offset;
                self.stats.delay_sum_ms += delay;
                self.stats.delay_max_ms = self.stats.delay_max_ms.max(delay);
                self.stats.decoded += 1;
                self.missing_run = 0;
                self.last_played = Some((h.pkt, h.ext));
                Slot::Decode {
                    opus: h.opus,
                    reset,
                }
            }
            _ => self.gap_slot(cursor),
        }
    }

    /// The cursor that puts the playout offset at `tick - 20·c` in `[low, low + 20)`.
    fn cursor_for(&self, tick_ms: f64, low: f64) -> u64 {
        let c = ((tick_ms - low) / FRAME).floor();
        if c.is_finite() && c > 0.0 {
            c as u64
        } else {
            self.held.front().map_or(FIRST_EXT, |h| h.ext)
        }
    }

    /// Drops the frames before `cursor` that the buffer chose not to play.
    fn skip_to(&mut self, cursor: u64) {
        while self.held.front().is_some_and(|h| h.ext < cursor) {
            self.held.pop_front();
        }
    }

    fn drop_late(&mut self, cursor: u64) {
        while self.held.front().is_some_and(|h| h.ext < cursor) {
            self.held.pop_front();
            self.stats.late += 1;
        }
    }

    /// A slot with no packet for frame `at`: conceal a loss, else silence.
    fn gap_slot(&mut self, at: u64) -> Slot {
        self.missing_run = self.missing_run.saturating_add(1);
        let Some((last_pkt, last_ext)) = self.last_played else {
            return Slot::Silence;
        };
        let lost = match self.held.front() {
            // The next packet held says how many packets went missing before it.
            Some(next) => {
                let missing_packets =
                    next.pkt.wrapping_sub(last_pkt).wrapping_sub(1) & COUNTER_MASK;
                at.saturating_sub(last_ext) <= u64::from(missing_packets)
            }
            None => true,
        };
        if lost && self.missing_run <= MAX_CONCEALED_FRAMES {
            self.stats.concealed += 1;
            Slot::Conceal
        } else {
            self.stats.silent += 1;
            Slot::Silence
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Plays `frames` frames sent every 20 ms through a network adding `base + U[0, jitter)`
    /// ms and losing each packet with probability `loss`; ticks every 20 ms at a random phase.
    fn simulate(frames: u64, jitter: f64, loss: f64, seed: u64) -> (JitterStats, Vec<Slot>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let phase: f64 = rng.gen_range(0.0..FRAME);
        let mut arrivals: Vec<(f64, u32)> = Vec::new();
        for f in 0..frames as u32 {
            if !rng.gen_bool(loss) {
                arrivals.push((f64::from(f) * FRAME + 1.0 + rng.gen_range(0.0..=jitter), f));
            }
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut jb = JitterBuffer::new();
        let mut slots = Vec::new();
        let mut next = 0;
        let mut last_pkt = 0;
        for tick in 0..frames + 20 {
            let t = tick as f64 * FRAME + phase;
            while next < arrivals.len() && arrivals[next].0 <= t {
                let (at, frame) = arrivals[next];
                // The session drops reordered packets before the buffer sees them.
                if frame >= last_pkt {
                    jb.push(at, frame + 1, frame, &[frame as u8]);
                    last_pkt = frame + 1;
                }
                next += 1;
            }
            slots.push(jb.pop(t));
        }
        (jb.stats(), slots)
    }

    #[test]
    fn steady_stream_plays_every_frame_with_little_delay() {
        let (stats, slots) = simulate(500, 0.0, 0.0, 1);
        assert_eq!(stats.decoded, 500, "{stats:?}");
        assert_eq!(stats.late + stats.skipped + stats.stretched, 0, "{stats:?}");
        // Only the 20 ticks after the last packet, when the stream might still go on.
        assert_eq!(stats.concealed, 20, "{stats:?}");
        assert!(stats.delay_max_ms < FRAME + MARGIN_MS, "{stats:?}");
        // Every decoded packet came out in order.
        let played: Vec<u8> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Decode { opus, .. } => Some(opus[0]),
                _ => None,
            })
            .collect();
        assert!(played.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }

    #[test]
    fn jitter_is_absorbed_within_a_bounded_delay() {
        for (jitter, seed) in [(5.0, 2), (20.0, 3), (60.0, 4)] {
            let (stats, _) = simulate(3000, jitter, 0.0, seed);
            let late = stats.late as f64 / 3000.0;
            assert!(late < 0.01, "{jitter} ms: {late:.3} late; {stats:?}");
            assert!(
                stats.delay_max_ms <= jitter + MARGIN_MS + FRAME + HYSTERESIS_MS,
                "{jitter} ms: {stats:?}"
            );
        }
    }

    #[test]
    fn losses_are_concealed_not_silent() {
        let (stats, _) = simulate(3000, 20.0, 0.05, 5);
        assert!(stats.lost > 100, "{stats:?}");
        assert_eq!(stats.silent, 0, "{stats:?}");
        assert!(stats.concealed >= stats.lost, "{stats:?}");
    }

    #[test]
    fn silence_after_32_concealed_frames_then_a_reset() {
        let mut jb = JitterBuffer::new();
        jb.push(0.0, 1, 0, &[0]);
        let mut slots = vec![jb.pop(10.0)];
        for tick in 1..40 {
            slots.push(jb.pop(10.0 + FRAME * f64::from(tick)));
        }
        let concealed = slots.iter().filter(|s| **s == Slot::Conceal).count();
        assert_eq!(concealed, MAX_CONCEALED_FRAMES as usize);
        assert_eq!(slots.last(), Some(&Slot::Silence));
        // The next packet, 40 frames on and one PKT later (DTX): decoded after a reset.
        jb.push(FRAME * 40.0, 2, 40, &[1]);
        let mut next = Slot::Silence;
        for tick in 40..45 {
            next = jb.pop(10.0 + FRAME * f64::from(tick));
            if next != Slot::Silence {
                break;
            }
        }
        assert_eq!(
            next,
            Slot::Decode {
                opus: vec![1],
                reset: true
            }
        );
    }

    #[test]
    fn dtx_gaps_are_silence_once_the_next_packet_is_known() {
        let mut jb = JitterBuffer::new();
        jb.push(0.0, 1, 0, &[0]);
        // The next packet (PKT consecutive) is 10 frames on: the frames between were not sent.
        jb.push(FRAME * 10.0 - 15.0, 2, 10, &[1]);
        let slots: Vec<Slot> = (0..11)
            .map(|t| jb.pop(10.0 + FRAME * f64::from(t)))
            .collect();
        let silent = slots.iter().filter(|s| **s == Slot::Silence).count();
        assert_eq!(silent, 9, "{slots:?}");
        assert_eq!(slots.iter().filter(|s| **s == Slot::Conceal).count(), 0);
        assert!(matches!(slots[10], Slot::Decode { ref opus, reset: false } if opus == &[1]));
    }

    #[test]
    fn drift_is_absorbed_by_skipping_and_stretching() {
        // 0.5%: far beyond what two sound cards' crystals differ by (0.01% is typical).
        for (rate, skips) in [(0.995, true), (1.005, false)] {
            // The sender's 20 ms frames last 20·rate ms of our time.
            let mut jb = JitterBuffer::new();
            let (mut next_arrival, mut frame) = (0.0, 0u32);
            for tick in 0..5000u32 {
                let t = f64::from(tick) * FRAME + 7.0;
                while next_arrival <= t {
                    jb.push(next_arrival + 1.0, frame + 1, frame, &[0]);
                    frame += 1;
                    next_arrival = f64::from(frame) * FRAME * rate;
                }
                jb.pop(t);
            }
            let stats = jb.stats();
            let adjusted = if skips {
                stats.skipped
            } else {
                stats.stretched
            };
            // 25 frames of drift over 5000 ticks.
            assert!(adjusted >= 20, "rate {rate}: {stats:?}");
            assert!(jb.held.len() <= 3, "rate {rate}: {} held", jb.held.len());
            // The drift over the window (100 packets, 10 ms) counts as spread.
            assert!(
                stats.delay_max_ms <= MARGIN_MS + 10.0 + FRAME + HYSTERESIS_MS,
                "{stats:?}"
            );
            // Frames skipped on purpose are not late packets.
            assert_eq!(stats.late, 0, "{stats:?}");
        }
    }

    #[test]
    fn frame_going_back_is_dropped() {
        let mut jb = JitterBuffer::new();
        jb.push(0.0, 5, 5, &[0]);
        jb.push(1.0, 6, 4, &[1]);
        jb.push(2.0, 6, 6, &[2]);
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.stats().received, 2);
    }

    /// The delay the buffer adds at 0, 5 and 20 ms of jitter (docs/moose-call.md quotes
    /// these), over 20 calls of 5 minutes at random tick phases: run with `--nocapture`.
    #[test]
    fn delay_at_0_5_and_20_ms_of_jitter() {
        for jitter in [0.0, 5.0, 20.0] {
            let runs: Vec<JitterStats> = (0..20)
                .map(|seed| simulate(15_000, jitter, 0.0, seed).0)
                .collect();
            let mean = runs.iter().map(JitterStats::delay_mean_ms).sum::<f64>() / runs.len() as f64;
            let max = runs.iter().map(|s| s.delay_max_ms).fold(0.0, f64::max);
            let late: u64 = runs.iter().map(|s| s.late).sum();
            println!(
                "jitter {jitter:>4} ms: target {:.0} ms, added delay mean {mean:.1} ms, max \
                 {max:.1} ms, late {late} of {}",
                (jitter + MARGIN_MS).min(MAX_TARGET_MS),
                15_000 * runs.len()
            );
            assert!(
                mean <= jitter + MARGIN_MS + FRAME,
                "{jitter} ms: mean {mean}"
            );
            assert!(
                max <= jitter + MARGIN_MS + FRAME + HYSTERESIS_MS,
                "{jitter} ms: max {max}"
            );
        }
    }
}
