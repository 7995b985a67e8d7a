//! The terminal UI as a person uses it, under a real terminal (tmux): bob and alice each run
//! moose-call full screen; alice appears on bob's screen and leaves it, her mute (Ctrl-T)
//! shows on both screens, a chat line bob types appears on alice's, a resized window is
//! drawn anew, Ctrl-Q leaves, and each
//! terminal is back as it was (`stty -g` the same before and after, the UI's screen gone).

use std::path::Path;
use std::time::Duration;

use moose_testkit::binary;
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(15);

/// The shell line that runs moose-call as `name` in a terminal, noting the terminal's
/// settings before and after and the exit status, then keeping the window open.
fn session(relay: &Relay, dir: &Path, name: &str) -> String {
    let dir = dir.display();
    format!(
        "stty -g > {dir}/{name}.before; {call} --server {server} --pubkey {key} --name {name} \
         --room tui; echo \"EXITED $?\"; stty -g > {dir}/{name}.after; sleep 60",
        call = binary::moose_call().display(),
        server = relay.vors,
        key = relay.vors_pubkey,
    )
}

fn assert_restored(tmux: &Tmux, dir: &Path, name: &str) {
    let screen = tmux.wait_for(name, "EXITED 0", WAIT);
    assert!(
        !screen.contains("moose-call · room"),
        "{name}: the UI is still on screen:\n{screen}"
    );
    let settings = |when: &str| {
        let path = dir.join(format!("{name}.{when}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    tmux.wait_until(name, WAIT, "saved settings", |_| {
        dir.join(format!("{name}.after")).exists()
    });
    assert_eq!(
        settings("before"),
        settings("after"),
        "{name}: terminal not restored"
    );
}

#[test]
fn tui_in_a_terminal() {
    let relay = Relay::start(&[], &[]);
    let dir = temp_dir("tui");
    let tmux = Tmux::new("tui");
    tmux.open("bob", 100, 30, &session(&relay, &dir, "bob"));
    let screen = tmux.wait_for("bob", "nobody else here yet", WAIT);
    assert!(screen.contains("you are bob"), "{screen}");
    assert!(
        screen.contains("Ctrl-T: mute"),
        "the keys are shown:\n{screen}"
    );

    tmux.open("alice", 100, 30, &session(&relay, &dir, "alice"));
    tmux.wait_for("bob", "* alice joined", WAIT);
    tmux.wait_for("alice", "* you joined tui", WAIT);

    // Alice mutes: her own line and bob's line for her say so.
    tmux.send_keys("alice", &["C-t"]);
    tmux.wait_for("bob", "* alice muted", WAIT);
    tmux.wait_until("bob", WAIT, "alice's line MUTED", |s| {
        s.lines()
            .any(|l| l.contains("alice") && l.contains("MUTED"))
    });
    tmux.wait_until("alice", WAIT, "alice's own line MUTED", |s| {
        s.lines()
            .any(|l| l.contains("alice (you)") && l.contains("MUTED"))
    });

    // Bob chats; alice reads it.
    tmux.type_text("bob", "hello from bob");
    tmux.wait_for("bob", "> hello from bob", WAIT);
    tmux.send_keys("bob", &["Enter"]);
    tmux.wait_for("alice", "bob: hello from bob", WAIT);

    // A resize is drawn for the new size: the top border ends at the new width.
    tmux.resize("alice", 72, 20);
    tmux.wait_until("alice", WAIT, "a 72-column frame", |s| {
        s.lines().next().is_some_and(|top| {
            top.trim_end().chars().count() == 72 && top.trim_end().ends_with('┐')
        })
    });

    // Alice leaves: gone from bob's screen, her terminal as it was.
    tmux.send_keys("alice", &["C-q"]);
    tmux.wait_for("bob", "* alice left", WAIT);
    tmux.wait_for("bob", "nobody else here yet", WAIT);
    assert_restored(&tmux, &dir, "alice");

    tmux.send_keys("bob", &["C-q"]);
    assert_restored(&tmux, &dir, "bob");
    let _ = std::fs::remove_dir_all(&dir);
}
