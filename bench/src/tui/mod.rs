//! moose-call's full-screen terminal UI, used when stdout is a terminal (and not `--plain`).
//!
//! The call runs on a thread of its own and sends its events here; this thread draws the
//! screen ([`view`]) from the state the events build ([`state`]) about 20 times a second,
//! and turns key presses into commands for the call. The terminal is restored on every way
//! out: the call ending (leave, error, refusal), a panic (ratatui's hook), SIGTERM/SIGINT/
//! SIGHUP (the call leaves, then the UI ends; a call that has not left within
//! [`SIGNAL_GRACE`] is given up on: the terminal is restored and the process exits 130).

pub mod state;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};

use crate::vors_client::{Call, CallError, CallSummary, Command};
use state::{KeyAction, UiState};

/// How often the screen is drawn (and keys looked at) at most.
const FRAME: Duration = Duration::from_millis(50);
/// How long the call may take to leave after a signal before the UI gives up on it.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// How the UI ended.
#[derive(Debug)]
pub enum UiExit {
    /// The call ended and said how.
    Call(Result<CallSummary, CallError>),
    /// A call that did not leave in time after a signal: exit 130.
    Interrupted,
}

/// Restores the terminal when dropped, whatever way the UI ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs `call` under the UI until it ends. `stop` is the flag the signal handlers set.
pub fn run(
    call: Call,
    room: &str,
    me: &str,
    stop: Arc<AtomicBool>,
) -> Result<UiExit, std::io::Error> {
    let commands = call.commands();
    let (tx, rx) = mpsc::channel();
    let call_stop = Arc::clone(&stop);
    let call_thread = thread::Builder::new()
        .name("moose-call".to_owned())
        .spawn(move || {
            call.run(&call_stop, |event| {
                let _ = tx.send(event);
            })
        })?;
    let mut terminal = ratatui::try_init()?;
    let restore = Restore;
    let mut state = UiState::new(room, me);
    let mut signalled_at: Option<Instant> = None;
    loop {
        for event in rx.try_iter() {
            state.apply(event);
        }
        if call_thread.is_finished() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            let since = *signalled_at.get_or_insert_with(Instant::now);
            if since.elapsed() > SIGNAL_GRACE {
                drop(restore);
                return Ok(UiExit::Interrupted);
            }
        }
        terminal.draw(|frame| view::draw(frame, &state))?;
        // Resizes need nothing more: the next draw lays out for the new size.
        if event::poll(FRAME)? {
            if let Event::Key(key) = event::read()? {
                if let KeyAction::Command(command) = state.key(key) {
                    let leaving = command == Command::Leave;
                    if !commands.send(command) && leaving {
                        break;
                    }
                }
            }
        }
    }
    drop(restore);
    let result = call_thread
        .join()
        .unwrap_or_else(|_| Err(CallError::Live("the call's thread panicked".to_owned())));
    Ok(UiExit::Call(result))
}
