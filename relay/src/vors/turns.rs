//! Turns at a core's handshake budget: the expensive steps of VoRS handshakes (message 1 on
//! the accepting core, message 2 on the owner core) wait here, first come first served, until
//! the core has earned the CPU time they may take (`limits::budget`), and spend what they took.
//!
//! One turn per core (a glommio semaphore of one permit, which wakes its waiters in order):
//! only the handshake at the head of the queue sleeps on a timer, the others wait for the turn
//! without waking, however long the queue. A handshake that would wait past its deadline is
//! refused and counted (`moose_vors_handshakes_refused_total{reason="cpu_budget"}`).

use std::time::{Duration, Instant};

use glommio::sync::Permit;
use tracing::debug;

use crate::limits::handshakes::HandshakeRefusal;
use crate::shard::Shard;

/// Longest a handshake's expensive step waits for its core's handshake budget.
pub(crate) const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Waits until it is this handshake's turn (first come, first served among the core's
/// handshakes) and the core's handshake budget allows an expensive step, no later than
/// `give_up_at`. The turn, to hold until the step is done ([`spend_budget`]); `None`, with
/// the refusal counted, when the budget would come too late: the caller drops the
/// connection.
pub(crate) async fn budget_turn(shard: &Shard, give_up_at: Instant) -> Option<Permit<'_>> {
    let refused = || {
        shard.stats.handshake_refused(HandshakeRefusal::CpuBudget);
        debug!("vors handshake refused: the core's handshake budget is spent");
    };
    let queued = give_up_at.saturating_duration_since(Instant::now());
    let turn = glommio::timer::timeout(queued, async {
        Ok(shard.handshake_turns.acquire_permit(1).await)
    })
    .await;
    let Ok(Ok(turn)) = turn else {
        refused();
        return None;
    };
    loop {
        let now = Instant::now();
        let wait = shard.handshake_budget.wait(now);
        if wait.is_zero() {
            return Some(turn);
        }
        if now + wait > give_up_at {
            refused();
            return None;
        }
        glommio::timer::sleep(wait).await;
    }
}

/// Runs `step`, one of a handshake's expensive steps (`now` is when it starts), and takes the
/// time it took from this core's handshake budget. Call it holding the turn
/// [`budget_turn`] gave, with no await in between.
pub(crate) fn spend_budget<T>(shard: &Shard, step: impl FnOnce(Instant) -> T) -> T {
    let started = Instant::now();
    let done = step(started);
    let ended = Instant::now();
    let took = ended.saturating_duration_since(started);
    shard.handshake_budget.spend(took, ended);
    shard
        .stats
        .vors_handshake_cpu_nanos
        .add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    done
}
