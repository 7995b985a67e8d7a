//! The whole audio path moose-call uses, without the network: a WAV tone is cut into frames,
//! Opus-coded with DTX, numbered as a VoRS sender numbers them (PKT per packet, FRAME per
//! 20 ms), thinned by a lossy "network", and recorded by a [`Track`]; the recording must
//! keep the sender's timeline and still hold the tone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moose_bench::audio::{
    Encoded, FRAME_SAMPLES, MAX_OPUS_PACKET, SAMPLE_RATE, Track, VoiceEncoder, WavFrames, read_wav,
    scan_tone, sine, write_wav,
};

/// One packet as a VoRS sender emits it.
struct Sent {
    pkt: u32,
    frame: u32,
    opus: Vec<u8>,
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("moose-audio-{}-{name}.wav", std::process::id()))
}

/// Sends a WAV file the way moose-call does: FRAME counts every 20 ms, PKT only packets.
fn send_wav(path: &std::path::Path) -> Vec<Sent> {
    let mut frames = WavFrames::open(path).expect("open input");
    let mut enc = VoiceEncoder::new().expect("encoder");
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut buf = [0u8; MAX_OPUS_PACKET];
    let (mut pkt, mut frame) = (0u32, 0u32);
    let mut sent = Vec::new();
    while frames.next_frame(&mut pcm) {
        if let Encoded::Packet(n) = enc.encode(&pcm, &mut buf).expect("encode") {
            sent.push(Sent {
                pkt,
                frame,
                opus: buf[..n].to_vec(),
            });
            pkt += 1;
        }
        frame += 1;
    }
    sent
}

/// Records what survives `lose` (by packet number) on a clock that follows FRAME.
fn record(sent: &[Sent], lose: impl Fn(u32) -> bool, out: &std::path::Path) -> Vec<i16> {
    let mut track = Track::create(out).expect("track");
    let start = Instant::now();
    for p in sent.iter().filter(|p| !lose(p.pkt)) {
        let now = start + Duration::from_millis(20) * p.frame;
        track.push(now, p.pkt, p.frame, &p.opus).expect("push");
    }
    track.finish().expect("finish");
    read_wav(out).expect("read recording")
}

#[test]
fn a_long_tone_is_never_dtx() {
    // DTX must not mistake a steady tone for background noise, or the far end would hear
    // it cut out after a while.
    for amplitude in [1_000.0, 8_000.0, 20_000.0] {
        let input = temp_path(&format!("steady-{amplitude}"));
        write_wav(&input, &sine(440.0, amplitude, 30 * SAMPLE_RATE as usize)).expect("write");
        let sent = send_wav(&input);
        assert_eq!(
            sent.len(),
            1_500,
            "amplitude {amplitude}: some frames went DTX"
        );
        let _ = std::fs::remove_file(&input);
    }
}

#[test]
fn lossy_tone_keeps_timeline_and_tone() {
    let input = temp_path("lossy-in");
    let output = temp_path("lossy-out");
    write_wav(&input, &sine(440.0, 8_000.0, 10 * SAMPLE_RATE as usize)).expect("write");
    let sent = send_wav(&input);
    // About 5% scattered loss, plus a 40-packet burst: longer than PLC covers (32).
    let scattered = |pkt: u32| pkt.wrapping_mul(2_654_435_761) % 100 < 5;
    let burst = |pkt: u32| (200..240).contains(&pkt);
    let pcm = record(&sent, |p| scattered(p) || burst(p), &output);

    // The recording runs from the first packet that arrived to the last one.
    let first = sent
        .iter()
        .find(|p| !scattered(p.pkt))
        .expect("some packet arrived");
    let last = sent
        .iter()
        .rfind(|p| !scattered(p.pkt))
        .expect("some packet arrived");
    assert_eq!(
        pcm.len(),
        (last.frame - first.frame + 1) as usize * FRAME_SAMPLES
    );
    let scan = scan_tone(&pcm, 440.0);
    // 8 of the 40 burst frames (160 ms) are beyond PLC: at most 2-3 silent blocks there.
    assert!(scan.silent_windows <= 3, "{scan:?}");
    assert!(scan.tone_share() > 0.9, "{scan:?}");
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
}

#[test]
fn silence_between_tones_stays_silent_and_in_place() {
    let input = temp_path("gap-in");
    let output = temp_path("gap-out");
    let second = SAMPLE_RATE as usize;
    let mut pcm = sine(440.0, 8_000.0, 3 * second);
    pcm.extend(std::iter::repeat_n(0i16, 3 * second));
    pcm.extend(sine(440.0, 8_000.0, 3 * second));
    write_wav(&input, &pcm).expect("write");
    let sent = send_wav(&input);
    assert!(
        sent.len() < 400,
        "the silent stretch should be mostly DTX ({})",
        sent.len()
    );

    let got = record(&sent, |_| false, &output);
    assert_eq!(got.len(), 9 * second);
    let blocks = |from: usize, to: usize| scan_tone(&got[from * second..to * second], 440.0);
    assert!(blocks(0, 3).tone_share() > 0.9, "{:?}", blocks(0, 3));
    // The middle second of the gap is far from both tones' edges: silent (or near it).
    assert_eq!(blocks(4, 5).tone_windows, 0, "{:?}", blocks(4, 5));
    assert!(blocks(6, 9).tone_share() > 0.9, "{:?}", blocks(6, 9));
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
}
