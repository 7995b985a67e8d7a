//! What the terminal UI shows, kept from the call's events, and what a key asks of the call.
//! No terminal here: the view draws this state, tests feed it events and keys.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::vors_client::live::VoiceInfo;
use crate::vors_client::{CallEvent, Command};

/// Chat and room lines kept for the log.
const LOG_LINES: usize = 500;

/// A member as the UI lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// Their username.
    pub name: String,
    /// Whether they said they are muted.
    pub muted: bool,
    /// What the speaker side knows of them (level, loss, jitter), once they were heard.
    pub voice: Option<VoiceInfo>,
}

/// Everything on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct UiState {
    /// The room.
    pub room: String,
    /// Our name.
    pub me: String,
    /// Whether the server let us in yet.
    pub joined: bool,
    /// Whether we are muted.
    pub muted: bool,
    /// Our microphone's level, dBFS.
    pub input_dbfs: f64,
    /// The other members, in the order they were announced.
    pub members: Vec<MemberView>,
    /// Chat and room events, oldest first.
    pub log: VecDeque<String>,
    /// The line being typed.
    pub input: String,
}

/// What a key press means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing to tell the call (the input line changed, or nothing happened).
    None,
    /// Send this to the call.
    Command(Command),
    /// A line starting with `/` that is no command: shown in the log.
    Unknown(String),
}

impl UiState {
    /// The screen before anything happened.
    pub fn new(room: &str, me: &str) -> Self {
        UiState {
            room: room.to_owned(),
            me: me.to_owned(),
            joined: false,
            muted: false,
            input_dbfs: -90.0,
            members: Vec::new(),
            log: VecDeque::new(),
            input: String::new(),
        }
    }

    fn say(&mut self, line: String) {
        self.log.push_back(line);
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
    }

    fn member(&mut self, name: &str) -> Option<&mut MemberView> {
        self.members.iter_mut().find(|m| m.name == name)
    }

    /// Takes in one event of the call.
    pub fn apply(&mut self, event: CallEvent) {
        match event {
            CallEvent::Joined(name) if name == self.me && !self.joined => {
                self.joined = true;
                self.say(format!("* you joined {}", self.room));
            }
            CallEvent::Joined(name) => {
                self.say(format!("* {name} joined"));
                self.members.push(MemberView {
                    name,
                    muted: false,
                    voice: None,
                });
            }
            CallEvent::Left(name) => {
                self.members.retain(|m| m.name != name);
                self.say(format!("* {name} left"));
            }
            CallEvent::Muted(name) | CallEvent::Unmuted(name) if name == self.me => {
                self.muted = !self.muted;
            }
            CallEvent::Muted(name) => self.set_muted(&name, true),
            CallEvent::Unmuted(name) => self.set_muted(&name, false),
            CallEvent::Chat { from, msg } => self.say(format!("{from}: {msg}")),
            CallEvent::Notice(text) => self.say(format!("! {text}")),
            CallEvent::Status(status) => {
                self.muted = status.muted;
                self.input_dbfs = status.input_dbfs;
                for voice in status.voices {
                    if let Some(m) = self.member(&voice.name) {
                        m.voice = Some(voice);
                    }
                }
            }
        }
    }

    fn set_muted(&mut self, name: &str, muted: bool) {
        if let Some(m) = self.member(name) {
            m.muted = muted;
        }
        let what = if muted { "muted" } else { "unmuted" };
        self.say(format!("* {name} {what}"));
    }

    /// Takes in one key press.
    pub fn key(&mut self, key: KeyEvent) -> KeyAction {
        if key.kind == KeyEventKind::Release {
            return KeyAction::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'q' | 'd') if ctrl => KeyAction::Command(Command::Leave),
            KeyCode::Char('t') if ctrl => KeyAction::Command(if self.muted {
                Command::Unmute
            } else {
                Command::Mute
            }),
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                KeyAction::None
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.push(c);
                KeyAction::None
            }
            KeyCode::Backspace => {
                self.input.pop();
                KeyAction::None
            }
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                match Command::parse_line(&line) {
                    Ok(Some(Command::Chat(msg))) => {
                        // The room does not echo our own chat: show it here.
                        self.say(format!("{}: {msg}", self.me));
                        KeyAction::Command(Command::Chat(msg))
                    }
                    Ok(Some(command)) => KeyAction::Command(command),
                    Ok(None) => KeyAction::None,
                    Err(unknown) => {
                        self.say(format!("! {unknown}"));
                        KeyAction::Unknown(unknown.0)
                    }
                }
            }
            _ => KeyAction::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(state: &mut UiState, code: KeyCode, modifiers: KeyModifiers) -> KeyAction {
        state.key(KeyEvent::new(code, modifiers))
    }

    fn type_text(state: &mut UiState, text: &str) {
        for c in text.chars() {
            press(state, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    #[test]
    fn members_come_and_go_and_mute() {
        let mut s = UiState::new("lobby", "bob");
        s.apply(CallEvent::Joined("bob".into()));
        s.apply(CallEvent::Joined("alice".into()));
        s.apply(CallEvent::Muted("alice".into()));
        assert!(s.joined);
        assert_eq!(s.members.len(), 1);
        assert!(s.members[0].muted);
        s.apply(CallEvent::Left("alice".into()));
        assert!(s.members.is_empty());
        assert_eq!(s.log.back().map(String::as_str), Some("* alice left"));
    }

    #[test]
    fn keys_become_commands() {
        let mut s = UiState::new("lobby", "bob");
        type_text(&mut s, "hi there");
        assert_eq!(s.input, "hi there");
        let sent = press(&mut s, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(sent, KeyAction::Command(Command::Chat("hi there".into())));
        assert!(s.input.is_empty());
        assert_eq!(s.log.back().map(String::as_str), Some("bob: hi there"));
        let mute = press(&mut s, KeyCode::Char('t'), KeyModifiers::CONTROL);
        assert_eq!(mute, KeyAction::Command(Command::Mute));
        s.apply(CallEvent::Muted("bob".into()));
        let unmute = press(&mut s, KeyCode::Char('t'), KeyModifiers::CONTROL);
        assert_eq!(unmute, KeyAction::Command(Command::Unmute));
        let quit = press(&mut s, KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(quit, KeyAction::Command(Command::Leave));
        type_text(&mut s, "/dance");
        let unknown = press(&mut s, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(unknown, KeyAction::Unknown("/dance".into()));
    }
}
