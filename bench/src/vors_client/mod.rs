//! A VoRS call over real sockets: the I/O around `moose_proto::vors::client::ClientSession`.
//!
//! Threads and one channel: a TCP reader and a UDP reader ([`net`]) and whoever sends
//! [`Command`]s (moose-call's stdin thread, or a test) all feed the call's loop ([`Call::run`]),
//! which waits on the channel with a timeout no later than the next of: the next 20 ms audio
//! frame, the session's own timer (cookie, keepalive, PING, deadlines), and the end of
//! `--seconds`. After each step it drains the session as its drain rule says: transmits
//! (TCP bytes written in order, UDP datagrams sent), then events.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use moose_bench::vors_client::{Call, CallConfig, parse_public_key};
//!
//! let key = parse_public_key("…64 hex digits…")?;
//! let mut config = CallConfig::new("127.0.0.1:12978", key, "alice", "lobby");
//! config.duration = Some(std::time::Duration::from_secs(5));
//! let call = Call::connect(config)?;
//! let summary = call.run(&AtomicBool::new(false), |event| {
//!     if let Some(line) = event.stdout_line() {
//!         println!("{line}");
//!     }
//! })?;
//! # Ok::<(), moose_bench::vors_client::CallError>(())
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::KEY_LEN;
use moose_proto::vors::hello::{MAX_ROOM_LEN, MAX_USERNAME_LEN};

mod call;
mod command;
mod error;
mod holdback;
pub mod live;
mod net;
mod recorder;
mod source;

pub use call::{Call, CallSummary, CommandSender};
pub use command::{CallEvent, CallStatus, Command, UnknownCommand};
pub use error::{CallError, EXIT_FAILURE, EXIT_REFUSED, describe_close};
pub use recorder::{Recording, file_stem};

/// The wall clock now, for the time a hello carries (`moose_proto` reads no clock). A relay
/// refuses a hello more than `--hello-max-skew` (30 s) off its own clock.
pub fn wall_clock() -> UnixTime {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    UnixTime(since_epoch.map_or(0, |d| d.as_secs()))
}

/// How long to wait for the TCP connection by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a call needs to know before it starts.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// `HOST:PORT` of the server (TCP and UDP on the same port).
    pub server: String,
    /// The server's static X25519 public key.
    pub server_public: [u8; KEY_LEN],
    /// Our name in the room.
    pub username: String,
    /// The room to join.
    pub room: String,
    /// The room password, if any (an empty one means none).
    pub password: Option<String>,
    /// A 48 kHz mono 16-bit WAV to send, once, from the moment we join.
    pub input: Option<PathBuf>,
    /// Where to write one WAV per other member.
    pub record_dir: Option<PathBuf>,
    /// A shell command whose stdout is the microphone (raw 48 kHz mono s16le); replaces
    /// `input` when both are given.
    pub input_cmd: Option<String>,
    /// A shell command whose stdin is the speaker: every other member, mixed.
    pub output_cmd: Option<String>,
    /// The sound device to record from (a name as `moose-call --list-devices` shows it, or
    /// `default`); `input_cmd` wins when both are given. Needs the `sound-devices` feature.
    pub input_device: Option<String>,
    /// The sound device to play to; `output_cmd` wins when both are given.
    pub output_device: Option<String>,
    /// Decode and meter every member even with no speaker (the terminal UI shows levels).
    pub monitor: bool,
    /// Send the commands' stderr to /dev/null (the terminal UI owns the screen).
    pub quiet_commands: bool,
    /// How long to stay once joined; `None` stays until [`Command::Leave`] or the stop flag.
    pub duration: Option<Duration>,
    /// How long to wait for the TCP connection.
    pub connect_timeout: Duration,
    /// The local address both sockets leave from (port 0: any); `None` lets the kernel
    /// choose, as for any client.
    pub bind: Option<SocketAddr>,
}

impl CallConfig {
    /// A call with no password, no audio in or out, and no time limit.
    pub fn new(server: &str, server_public: [u8; KEY_LEN], username: &str, room: &str) -> Self {
        CallConfig {
            server: server.to_owned(),
            server_public,
            username: username.to_owned(),
            room: room.to_owned(),
            password: None,
            input: None,
            record_dir: None,
            input_cmd: None,
            output_cmd: None,
            input_device: None,
            output_device: None,
            monitor: false,
            quiet_commands: false,
            duration: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            bind: None,
        }
    }

    /// Checks the names against the protocol's limits, so a bad one fails with a clear
    /// message instead of a handshake error.
    pub fn check(&self) -> Result<(), CallError> {
        check_name("username", &self.username, MAX_USERNAME_LEN)?;
        check_name("room", &self.room, MAX_ROOM_LEN)
    }
}

fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), CallError> {
    if name.is_empty() || name.len() > max || name.chars().any(char::is_control) {
        return Err(CallError::BadName { what, max });
    }
    Ok(())
}

/// Parses the server's public key as `--pubkey` gives it: 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<[u8; KEY_LEN], CallError> {
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| CallError::BadPublicKey)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_64_hex_digits() {
        let hex = "0f".repeat(32);
        assert_eq!(parse_public_key(&hex).expect("valid"), [0x0f; 32]);
        assert_eq!(
            parse_public_key(&format!(" {hex}\n")).expect("trimmed"),
            [0x0f; 32]
        );
        assert!(matches!(
            parse_public_key(&hex[..62]),
            Err(CallError::BadPublicKey)
        ));
        assert!(matches!(
            parse_public_key(&"zz".repeat(32)),
            Err(CallError::BadPublicKey)
        ));
    }

    #[test]
    fn names_are_checked_before_connecting() {
        let ok = CallConfig::new("h:1", [0; 32], "alice", "lobby");
        assert!(ok.check().is_ok());
        let bad = CallConfig::new("h:1", [0; 32], "al\nice", "lobby");
        assert!(matches!(
            bad.check(),
            Err(CallError::BadName {
                what: "username",
                ..
            })
        ));
        let long = CallConfig::new("h:1", [0; 32], "a", &"r".repeat(65));
        assert!(matches!(
            long.check(),
            Err(CallError::BadName { what: "room", .. })
        ));
    }
}
