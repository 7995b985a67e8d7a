//! A VoRS member that stops reading cannot make the relay hold its control messages without
//! bound, nor keep its connection for ever: once its backlog passes the bound, or its socket
//! takes no byte for the write-stall timeout, it is cut (DEL to the others, the connection
//! reset, its memory and descriptor freed at once), while the others' call goes on. And chat and
//! mute, which every other member receives, are rate-limited per member.
//!
//! The members are the testkit's raw VoRS clients, so the test decides exactly who reads.

use std::time::{Duration, Instant};

use moose_proto::vors::client::ClientEvent;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;

/// How long joining and settling may take.
const SETTLE: Duration = Duration::from_secs(10);
/// How long filling the kernel buffers towards a member that does not read may take.
const FILL_WITHIN: Duration = Duration::from_secs(30);
/// How soon a cut member must be gone: DEL heard, memory and descriptor given back.
const FREED_WITHIN: Duration = Duration::from_secs(5);
/// The flood of the issue: 20 000 chats of 1 000 bytes (22 MB of Noise messages per recipient).
const CHATS: usize = 20_000;
const TEXT_LEN: usize = 1_000;
/// Chats a sends before it sends one media packet and lets c catch up.
const BATCH: usize = 100;
/// How far c, which reads, may lag behind a: 100 chats are 110 KB, under any member's bound,
/// so c is never the one cut.
const WINDOW: usize = 100;
/// Relay memory growth allowed over the flood: the bound (256 KiB) and the work in flight,
/// far below the 22 MB a relay that kept b's backlog would hold.
const MAX_GROWTH_KIB: u64 = 6 * 1024;
/// After the flood, resident memory must come back to within this of where it was.
const BACK_TO_BASELINE_KIB: u64 = 2 * 1024;

fn is_chat(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Chat { .. })
}

fn chats(member: &VorsMember) -> usize {
    member.events.iter().filter(|e| is_chat(e)).count()
}

fn mute_events(member: &VorsMember) -> usize {
    member
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::PeerMuted(_) | ClientEvent::PeerUnmuted(_)))
        .count()
}

fn heard_chat(member: &VorsMember, text: &str) -> bool {
    member
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Chat { msg, .. } if msg == text))
}

fn heard_leave(member: &VorsMember, name: &str) -> bool {
    member
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::PeerRemoved { username, .. } if username == name))
}

/// Joins a, b and c to one room and waits until a and c know everyone.
fn three_members(relay: &Relay, room: &str) -> (VorsMember, VorsMember, VorsMember) {
    let join = |name: &str| VorsMember::join(relay.vors, &relay.vors_pubkey, name, room);
    let mut c = join("c");
    let mut a = join("a");
    let b = join("b");
    a.run_until(SETTLE, "a knows b and c", |m| m.peers() == 2);
    c.run_until(SETTLE, "c knows a and b", |m| m.peers() == 2);
    (a, b, c)
}

/// Waits until the relay's resident memory and descriptors are back at the baseline.
fn wait_freed(relay: &Relay, rss_before: u64, fds_expected: usize) {
    let deadline = Instant::now() + FREED_WITHIN;
    loop {
        let (rss, fds) = (relay.rss_kib(), relay.open_fds());
        if rss <= rss_before + BACK_TO_BASELINE_KIB && fds == fds_expected {
            eprintln!("freed: rss {rss} KiB (baseline {rss_before}), {fds} descriptors");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not freed within {FREED_WITHIN:?}: rss {rss} KiB (baseline {rss_before} KiB), \
             {fds} descriptors (expected {fds_expected})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_member_that_never_reads_is_cut_when_its_backlog_passes_the_bound() {
    // Chat unlimited, so that one sender can build the backlog of the issue.
    let relay = Relay::start(&["--chat-per-minute", "0"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let (mut a, b, mut c) = three_members(&relay, "backlog");
    let fds_before = relay.open_fds();
    relay.reset_peak_rss();
    let rss_before = relay.rss_kib();

    // b never reads again. a floods the room; c reads and hears every one, and a's media.
    let text = "x".repeat(TEXT_LEN);
    let mut heard_by_c = 0;
    let mut media_sent = 0;
    let started = Instant::now();
    for sent in (BATCH..=CHATS).step_by(BATCH) {
        for _ in 0..BATCH {
            a.send_chat(&text);
        }
        a.send_media(&[0x5a; 60]);
        media_sent += 1;
        a.step();
        let before = heard_by_c;
        c.run_until(SETTLE, "c keeps up with the chat", |m| {
            before + chats(m) + WINDOW >= sent
        });
        heard_by_c += chats(&c);
        c.events.retain(|e| !is_chat(e));
    }
    c.run_until(SETTLE, "c hears every chat", |m| {
        heard_by_c + chats(m) == CHATS
    });
    c.events.retain(|e| !is_chat(e));
    let flood = started.elapsed();
    let growth = relay.peak_rss_kib().saturating_sub(rss_before);
    eprintln!("{CHATS} chats in {flood:?}; peak RSS growth {growth} KiB");
    assert!(
        growth < MAX_GROWTH_KIB,
        "relay memory grew by {growth} KiB while b did not read"
    );

    // b was cut: the others heard DEL, its descriptor and memory are gone.
    c.run_until(FREED_WITHIN, "DEL for b", |m| heard_leave(m, "b"));
    a.run_until(FREED_WITHIN, "DEL for b", |m| heard_leave(m, "b"));
    wait_freed(&relay, rss_before, fds_before - 1);
    let m = Metrics::read(&relay);
    assert_eq!(m.sum("moose_vors_members"), 2, "{}", m.vors());
    assert_eq!(
        m.get("moose_connections_cut_total{reason=\"backlog\"}"),
        1,
        "{}",
        relay.metrics()
    );

    // The call of a and c is untouched: every media packet arrived, and it goes on.
    c.run_until(SETTLE, "c has a's media", |m| m.received() == media_sent);
    a.send_media(&[0x5a; 60]);
    c.run_until(SETTLE, "media after the cut", |m| {
        m.received() == media_sent + 1
    });
    a.send_chat("still here");
    c.run_until(SETTLE, "chat after the cut", |m| {
        heard_chat(m, "still here")
    });
    drop(b);
}

#[test]
fn a_member_whose_socket_stalls_is_cut_after_the_write_stall_timeout() {
    let relay = Relay::start(
        &["--chat-per-minute", "0", "--write-stall-timeout", "2"],
        &[],
    );
    let _metrics_on_failure = OnPanic(&relay);
    let (mut a, b, mut c) = three_members(&relay, "stall");
    let fds_before = relay.open_fds();
    let (relay_port, b_port) = (relay.vors.port(), b.tcp_addr().port());

    // b never reads again. a chats until the kernel buffers towards b are full, which shows as
    // the relay's unacknowledged bytes standing still; a few more chats then wait in the relay,
    // far under b's bound, and its writer waits on a socket that takes nothing.
    let text = "y".repeat(TEXT_LEN);
    let (mut sent, mut heard_by_c, mut last) = (0, 0, None);
    let stalled = Relay::fill_towards(relay_port, b_port, FILL_WITHIN, || {
        // Fast while the kernel takes it all, then a chat a round once it stands still, so
        // that the backlog in the relay stays far under b's bound: this is about the stall.
        let now = Relay::unacked(relay_port, b_port);
        let full = now.is_some_and(|n| n > 0) && now == last;
        let batch = if full { 1 } else { 50 };
        last = now;
        for _ in 0..batch {
            a.send_chat(&text);
        }
        sent += batch;
        a.step();
        let before = heard_by_c;
        c.run_until(SETTLE, "c keeps up", |m| before + chats(m) == sent);
        heard_by_c += chats(&c);
        c.events.retain(|e| !is_chat(e));
    });
    c.run_until(FREED_WITHIN, "DEL for b", |m| heard_leave(m, "b"));
    let cut_after = stalled.elapsed();
    eprintln!("b cut {cut_after:?} after its buffers filled");
    assert!(
        cut_after >= Duration::from_secs(1),
        "cut before the stall timeout"
    );
    wait_freed(&relay, u64::MAX / 2, fds_before - 1);
    assert_eq!(
        Relay::unacked(relay_port, b_port),
        None,
        "the connection is gone from the kernel too"
    );
    let m = Metrics::read(&relay);
    assert_eq!(
        m.get("moose_connections_cut_total{reason=\"write_stall\"}"),
        1,
        "{}",
        relay.metrics()
    );
    c.events.retain(|e| !is_chat(e));
    a.send_chat("after");
    c.run_until(SETTLE, "chat after the cut", |m| heard_chat(m, "after"));
    drop(b);
}

#[test]
fn chat_and_mute_floods_are_rate_limited() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let join = |name: &str| VorsMember::join(relay.vors, &relay.vors_pubkey, name, "chatty");
    let mut listener = join("listener");
    let mut talker = join("talker");
    listener.run_until(SETTLE, "knows the talker", |m| m.peers() == 1);
    talker.run_until(SETTLE, "knows the listener", |m| m.peers() == 1);

    const FLOOD: usize = 200;
    let started = Instant::now();
    for i in 0..FLOOD {
        talker.send_chat(&format!("message {i}"));
    }
    // 101 changes, ending muted.
    for i in 0..=100 {
        talker.set_muted(i % 2 == 0);
    }
    let talker_sid = talker.sid();
    listener.run_until(SETTLE, "the talker's last state: muted", |m| {
        m.events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::PeerMuted(sid) if *sid == talker_sid => Some(true),
                ClientEvent::PeerUnmuted(sid) if *sid == talker_sid => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    });
    // Whatever else was let through has arrived by now.
    let quiet_until = Instant::now() + Duration::from_millis(300);
    listener.run_until(SETTLE, "a quiet moment", |_| Instant::now() >= quiet_until);
    talker.step();
    let elapsed = started.elapsed().as_secs_f64();
    let (heard, mutes) = (chats(&listener), mute_events(&listener));
    eprintln!("{heard} of {FLOOD} chats and {mutes} of 101 mute changes heard in {elapsed:.1} s");
    // The documented defaults: chat 20 at once then 2 a second; mute 10 at once then 1 a second.
    assert!(
        heard as f64 <= 20.0 + 2.0 * elapsed + 1.0,
        "{heard} chats let through in {elapsed:.1} s"
    );
    assert!(
        mutes as f64 <= 10.0 + elapsed + 1.0,
        "{mutes} mute changes let through in {elapsed:.1} s"
    );
    let m = wait_metrics(
        &relay,
        SETTLE,
        "the dropped chats counted",
        || {},
        |m| m.get("moose_vors_rate_limited_total{kind=\"chat\"}") == (FLOOD - heard) as u64,
    );
    assert!(
        m.get("moose_vors_rate_limited_total{kind=\"mute\"}") > 0,
        "{}",
        relay.metrics()
    );
    // The talker's session is intact: it can still say things once its bucket refilled.
    assert!(
        !talker
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Closed(_)))
    );
}
