//! A VoRS ramp from one address against a relay with its default per-address limits fails, as
//! it must, and says why: the relay's per-address limits come first among the causes, with the
//! flags (and environment variables) that lift them and `--bind`, before a wrong `--pubkey`.
//! The relay closes such handshakes without a word, exactly as it does for a wrong key, so
//! the bench cannot tell the two apart; it can rank them by how many streams share an address.

use std::process::Command;

use moose_testkit::relay::Relay;

#[test]
fn a_ramp_from_one_address_names_the_per_address_limits_before_the_key() {
    let relay = Relay::start(&[], &[]);
    let out = Command::new(moose_testkit::binary::moose_bench())
        .args([
            "vors",
            "--target",
            &relay.vors.to_string(),
            "--pubkey",
            &relay.vors_pubkey,
            "--room-size",
            "4",
            "--ramp",
            "--ramp-start",
            "100",
            "--ramp-step",
            "100",
            "--ramp-max",
            "200",
            "--ramp-step-seconds",
            "1",
            "--quiet",
        ])
        .output()
        .expect("run moose-bench");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "100 streams from one address: {err}");
    // The relay did refuse handshakes (or connections) for the address, so the cause the
    // message puts first is the true one.
    let refused = relay.metric("moose_vors_handshakes_refused_total{reason=\"per_address\"}")
        + relay.metric("moose_vors_handshakes_refused_total{reason=\"rate\"}")
        + relay.metric("moose_connections_refused_total{reason=\"per_address\"}")
        + relay.metric("moose_vors_too_many_rooms_total");
    assert!(refused > 0, "the relay refused nothing per address: {err}");

    let limits = err
        .find("--max-handshakes-per-address 0")
        .unwrap_or_else(|| panic!("the fix for the per-address limits is named: {err}"));
    let key = err
        .find("--pubkey")
        .unwrap_or_else(|| panic!("a wrong key is still named: {err}"));
    assert!(limits < key, "per-address limits first: {err}");
    for fix in [
        "--max-connections-per-address 0",
        "--handshakes-per-minute 0",
        "MOOSE_MAX_HANDSHAKES_PER_ADDRESS=0",
        "--bind",
    ] {
        assert!(err.contains(fix), "{fix} is named: {err}");
    }
}
