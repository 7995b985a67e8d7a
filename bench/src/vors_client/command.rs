//! What the person at the keyboard (or a test) asks of a running call, and what the call
//! reports back as lines.

use std::fmt;

use super::live::VoiceInfo;

/// A request to a running call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Say something to the room.
    Chat(String),
    /// Stop sending audio (frames keep counting) and tell the room.
    Mute,
    /// Send audio again and tell the room.
    Unmute,
    /// Leave the room and end the call cleanly.
    Leave,
}

/// A line typed on stdin that starts with `/` but is no command moose-call knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCommand(pub String);

impl fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown command {:?} (try /mute, /unmute, /quit, or //text to say \"/text\")",
            self.0
        )
    }
}

impl std::error::Error for UnknownCommand {}

impl Command {
    /// Reads one line typed on stdin: `/mute`, `/unmute`, `/quit` are commands, `//text`
    /// says `/text`, an empty line is nothing, anything else is chat. The line ending
    /// (`\n` or `\r\n`) is ignored.
    pub fn parse_line(line: &str) -> Result<Option<Command>, UnknownCommand> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Ok(None);
        }
        if let Some(escaped) = line.strip_prefix("//") {
            return Ok(Some(Command::Chat(format!("/{escaped}"))));
        }
        match line.trim() {
            "/mute" => Ok(Some(Command::Mute)),
            "/unmute" => Ok(Some(Command::Unmute)),
            "/quit" | "/leave" => Ok(Some(Command::Leave)),
            other if other.starts_with('/') => Err(UnknownCommand(other.to_owned())),
            _ => Ok(Some(Command::Chat(line.to_owned()))),
        }
    }
}

/// Something that happened in the call. The room events print as the stdout lines
/// `moose-call` promises (see [`CallEvent::stdout_line`]); notices go to stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// A member is in the room: ourselves first (when the server gives us our SID), then
    /// everyone already there, then each newcomer.
    Joined(String),
    /// A member left.
    Left(String),
    /// A member muted (ourselves included, after `/mute`).
    Muted(String),
    /// A member unmuted (ourselves included, after `/unmute`).
    Unmuted(String),
    /// A member said something (our own chat is not echoed).
    Chat {
        /// Who.
        from: String,
        /// What.
        msg: String,
    },
    /// Something the person should know that is not a room event (a chat too long to send,
    /// a recording that could not be written, ...).
    Notice(String),
    /// Levels and network figures, every 100 ms while a call with `monitor` runs (the
    /// terminal UI's meters).
    Status(Box<CallStatus>),
}

/// How the call sounds right now.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStatus {
    /// Whether we are muted.
    pub muted: bool,
    /// Our microphone's level, dBFS (-90 for silence or no microphone).
    pub input_dbfs: f64,
    /// Every other member being played, in SID order.
    pub voices: Vec<VoiceInfo>,
}

impl CallEvent {
    /// The one stdout line for a room event (`joined alice`, `left alice`, `muted alice`,
    /// `unmuted alice`, `chat alice: hello`), or `None` for a notice. Control characters
    /// from the network become spaces, so every event stays one line.
    pub fn stdout_line(&self) -> Option<String> {
        let line = match self {
            CallEvent::Joined(name) => format!("joined {}", one_line(name)),
            CallEvent::Left(name) => format!("left {}", one_line(name)),
            CallEvent::Muted(name) => format!("muted {}", one_line(name)),
            CallEvent::Unmuted(name) => format!("unmuted {}", one_line(name)),
            CallEvent::Chat { from, msg } => format!("chat {}: {}", one_line(from), one_line(msg)),
            CallEvent::Notice(_) | CallEvent::Status(_) => return None,
        };
        Some(line)
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands() {
        let chat = |s: &str| Ok(Some(Command::Chat(s.to_owned())));
        assert_eq!(Command::parse_line("hello\n"), chat("hello"));
        assert_eq!(Command::parse_line("hello there\r\n"), chat("hello there"));
        assert_eq!(Command::parse_line("/mute\n"), Ok(Some(Command::Mute)));
        assert_eq!(Command::parse_line(" /unmute "), Ok(Some(Command::Unmute)));
        assert_eq!(Command::parse_line("/quit"), Ok(Some(Command::Leave)));
        assert_eq!(Command::parse_line("//mute"), chat("/mute"));
        assert_eq!(Command::parse_line("   \n"), Ok(None));
        assert_eq!(
            Command::parse_line("/dance"),
            Err(UnknownCommand("/dance".to_owned()))
        );
    }

    #[test]
    fn events_print_as_promised() {
        let line = |e: CallEvent| e.stdout_line().expect("room event");
        assert_eq!(line(CallEvent::Joined("alice".into())), "joined alice");
        assert_eq!(line(CallEvent::Left("alice".into())), "left alice");
        assert_eq!(line(CallEvent::Muted("alice".into())), "muted alice");
        assert_eq!(line(CallEvent::Unmuted("alice".into())), "unmuted alice");
        let chat = CallEvent::Chat {
            from: "alice".into(),
            msg: "hello\nworld\x1b[2J".into(),
        };
        assert_eq!(line(chat), "chat alice: hello world [2J");
        assert_eq!(CallEvent::Notice("x".into()).stdout_line(), None);
    }
}
