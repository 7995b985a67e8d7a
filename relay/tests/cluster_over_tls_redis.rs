//! The cluster over a Redis that speaks TLS only (`rediss://`): relays that trust its CA
//! (`SSL_CERT_FILE`, read by the TLS client's native root store) coordinate through it as over
//! plain TCP, and a relay that does not trust its certificate never registers: it stays
//! unready and counts its failed attempts.

use std::time::Duration;

use moose_testkit::cluster::Cluster;
use moose_testkit::http::http_get;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::redis::Redis;
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const WITHIN: Duration = Duration::from_secs(10);

fn join(relay: &Relay, name: &str) -> VorsMember {
    VorsMember::join(relay.vors, &relay.vors_pubkey, name, "over-tls")
}

#[test]
fn relays_coordinate_through_a_tls_redis_and_a_relay_that_does_not_trust_it_stays_out() {
    let mut cluster = Cluster::start_on(Redis::with_tls(), 2, &[]);
    assert!(cluster.redis.url().starts_with("rediss://"));
    let mut ann = join(&cluster.relays[0], "ann");
    let mut bob = join(&cluster.relays[1], "bob");
    settle(
        &mut [&mut ann, &mut bob],
        WITHIN,
        "ADDs over TLS Redis",
        |ms| ms.iter().all(|m| m.peers() == 1),
    );
    talk(&mut ann, &mut [&mut bob], 25, || {});
    settle(&mut [&mut ann, &mut bob], WITHIN, "ann's frames", |ms| {
        ms[1].received() == 25
    });

    // A relay that trusts only the system's roots: the test CA is not one of them.
    let system_roots = "/etc/ssl/certs/ca-certificates.crt";
    let stranger = cluster.add_relay_with_env(&[], &[("SSL_CERT_FILE", system_roots)]);
    let stranger = &cluster.relays[stranger];
    wait_metrics(
        stranger,
        WITHIN,
        "TLS failures counted",
        || {},
        |m| m.get("moose_cluster_redis_errors_total") >= 2 && m.get("moose_cluster_state") == 2,
    );
    assert_eq!(http_get(stranger.admin, "/readyz").0, 503);
    assert_eq!(
        cluster.relays[0].metric("moose_cluster_relays"),
        2,
        "the stranger never entered the relay table"
    );
}
