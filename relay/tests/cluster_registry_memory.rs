//! What Redis holds per member: under 1 KiB, measured as the growth of `used_memory` (`INFO
//! memory`) of a real redis-server while 1200 announced members join 60 rooms through two
//! relays whose inboxes are read (docs/cluster.md, "Redis data model"; docs/benchmarks.md
//! records the figure).
#![allow(clippy::unwrap_used)]

mod cluster_support;

use cluster_support::*;
use moose_relay::cluster::inbox::Inbox;
use moose_testkit::redis::Redis;

fn used_memory(conn: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

#[test]
fn redis_holds_under_1_kib_per_member() {
    let redis = Redis::start();
    let k = keys(1);
    let (mut a, mut b) = (relay(&redis, 1, &k), relay(&redis, 2, &k));
    let mut inboxes = [1, 2].map(|n| Inbox::open(&info(&redis), relay_id(n)).unwrap());
    let mut conn = raw(&redis);
    // The scripts loaded (they cost Redis once, not per member).
    let warm = enter(&mut a, &k, "warm-up", "nobody", 1);
    assert!(a.leave(room(&k, "warm-up"), warm).unwrap());
    let before = used_memory(&mut conn);
    let (rooms, per_room) = (60, 20);
    for r in 0..rooms {
        for m in 0..per_room {
            let registry = if m % 2 == 0 { &mut a } else { &mut b };
            // Usernames of a typical length (12 bytes).
            enter(
                registry,
                &k,
                &format!("room-{r:03}"),
                &format!("member-{m:05}"),
                m as u8 + 1,
            );
        }
        // The relays read their inboxes as events come (their inbox threads do); each room's
        // joins left events in both.
        for inbox in &mut inboxes {
            assert!(!inbox.read().unwrap().is_empty());
        }
    }
    let members = (rooms * per_room) as i64;
    let per_member = (used_memory(&mut conn) - before) / members;
    eprintln!(
        "redis: {per_member} bytes per member ({members} members, {rooms} rooms of {per_room})"
    );
    assert!(per_member < 1024, "{per_member} bytes per member");
}
