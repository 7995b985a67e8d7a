//! The Lua scripts that keep the cluster's rules atomic in Redis (`lua/*.lua`, compiled in),
//! each prefixed with `lua/common.lua`. `redis::Script` runs them with EVALSHA and loads a
//! script (SCRIPT LOAD, then EVALSHA again) only when Redis answers NOSCRIPT: after a
//! restart, or the first time.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// Every script, made once per process.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub register: Script,
    pub heartbeat: Script,
    pub reserve: Script,
    pub announce: Script,
    pub leave: Script,
    pub mute: Script,
    pub chat: Script,
    pub snapshot: Script,
    pub sweep: Script,
    pub retire: Script,
    pub reconcile: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    register: script(include_str!("lua/register.lua")),
    heartbeat: script(include_str!("lua/heartbeat.lua")),
    reserve: script(include_str!("lua/reserve.lua")),
    announce: script(include_str!("lua/announce.lua")),
    leave: script(include_str!("lua/leave.lua")),
    mute: script(include_str!("lua/mute.lua")),
    chat: script(include_str!("lua/chat.lua")),
    snapshot: script(include_str!("lua/snapshot.lua")),
    sweep: script(include_str!("lua/sweep.lua")),
    retire: script(include_str!("lua/retire.lua")),
    reconcile: script(include_str!("lua/reconcile.lua")),
});
