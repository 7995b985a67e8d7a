//! The task on each core that takes the cluster's events (docs/cluster.md, section 9) from the
//! inbox thread and applies them (`member::apply_event`), until the cluster threads end.

use std::rc::Rc;
use std::time::Instant;

use flume::Receiver;

use super::member;
use crate::cluster::CoreEvent;
use crate::shard::Shard;

/// Applies this core's events until the cluster threads end.
pub(crate) async fn apply_all(shard: Rc<Shard>, events: Receiver<CoreEvent>) {
    while let Ok(event) = events.recv_async().await {
        member::apply_event(&shard, event, Instant::now());
    }
}
