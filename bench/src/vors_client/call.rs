//! One call: connect, hand everything to the session machine, play and record audio, leave.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use moose_proto::vors::Sid;
use moose_proto::vors::client::{
    ClientEvent, ClientSession, ClientStats, ClientTransmit, FRAME_DURATION,
};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::password_field;

use super::CallConfig;
use super::command::{CallEvent, CallStatus, Command};
use super::error::CallError;
use super::holdback::HoldBack;
use super::live::{CaptureSource, LiveEvent, Mixer, Playback, VoiceInfo};
use super::net::{Input, Links};
use super::recorder::{Recorder, Recording};
use super::source::AudioSource;
use crate::audio::FRAME_SAMPLES;

/// Longest wait between looks at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How often a call with `monitor` reports its levels.
const STATUS_EVERY: Duration = Duration::from_millis(100);
/// Frames made up at once after the loop was held up (200 ms); beyond that the frame
/// clock skips ahead rather than sending a burst, as a microphone that overran would.
const MAX_CATCH_UP: u32 = 10;

/// How a call went, for a summary line or a test's assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    /// The SID we had, if we got into the room.
    pub sid: Option<Sid>,
    /// The session's counters (frames, packets sent and received, drops by reason).
    pub stats: ClientStats,
    /// Every recording written (with `--record`), in the order they were closed.
    pub recordings: Vec<Recording>,
    /// Every member played live (with a speaker or the terminal UI): present, then gone.
    pub voices: Vec<VoiceInfo>,
    /// Ticks at which the live microphone had no frame ready (sent as silence).
    pub capture_underruns: u64,
}

/// Sends [`Command`]s into a running call from any thread.
#[derive(Debug, Clone)]
pub struct CommandSender(Sender<Input>);

impl CommandSender {
    /// Queues a command; false once the call is over.
    pub fn send(&self, command: Command) -> bool {
        self.0.send(Input::Command(command)).is_ok()
    }
}

/// A connected call, ready to [`Call::run`].
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    session: ClientSession,
    links: Links,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    source: AudioSource,
    recorder: Option<Recorder>,
    /// Every other member's sound, decoded and mixed for the speaker (or the UI's meters).
    mixer: Option<Mixer>,
    playback: Option<Playback>,
    /// The microphone, until we join and start it.
    capture: Option<CaptureSource>,
    mix: [i16; FRAME_SAMPLES],
    /// Names of the members present, for MUTED and CHAT (which carry only a SID).
    names: BTreeMap<Sid, String>,
    /// Commands that arrived before we were in the room.
    pending: Vec<Command>,
    next_frame: Option<Instant>,
    end: Option<Instant>,
    refusal: Option<String>,
    /// Set when the session closes: how the call ends.
    outcome: Option<Result<(), CallError>>,
    leaving: bool,
    opus: Vec<u8>,
    /// Media from SIDs whose ADD has not arrived yet.
    held: HoldBack,
    next_status: Instant,
}

impl Call {
    /// Checks the configuration, reads the input file, opens the recording directory,
    /// connects and sends the magic and handshake message 1.
    pub fn connect(config: CallConfig) -> Result<Call, CallError> {
        config.check()?;
        let source = AudioSource::new(config.input.as_deref())?;
        let recorder = config
            .record_dir
            .as_deref()
            .map(Recorder::new)
            .transpose()
            .map_err(CallError::io("create recording directory"))?;
        let (tx, rx) = mpsc::channel();
        // The speaker starts now, so one that cannot start is known early; the microphone is
        // chosen now and starts when we join (`start_capture`), so it holds no sound from
        // before.
        let capture = CaptureSource::choose(&config)?;
        let playback = Playback::start(&config, &tx)?;
        let mixer = (playback.is_some() || config.monitor).then(|| Mixer::new(Instant::now()));
        let links = Links::connect(
            &config.server,
            config.bind,
            config.connect_timeout,
            tx.clone(),
        )?;
        let password_hash = config.password.as_deref().and_then(password_field);
        let hello = Hello {
            username: &config.username,
            room: &config.room,
            password_hash: password_hash.as_ref(),
        };
        let wall = super::wall_clock();
        let session = ClientSession::new(Instant::now(), wall, &config.server_public, &hello)
            .map_err(CallError::Handshake)?;
        Ok(Call {
            config,
            session,
            links,
            tx,
            rx,
            source,
            recorder,
            mixer,
            playback,
            capture,
            mix: [0; FRAME_SAMPLES],
            names: BTreeMap::new(),
            pending: Vec::new(),
            next_frame: None,
            end: None,
            refusal: None,
            outcome: None,
            leaving: false,
            opus: Vec::new(),
            held: HoldBack::default(),
            next_status: Instant::now(),
        })
    }

    /// A handle for sending commands while [`Call::run`] runs.
    pub fn commands(&self) -> CommandSender {
        CommandSender(self.tx.clone())
    }

    /// Runs the call until `config.duration` has passed since joining, a
    /// [`Command::Leave`], `stop` turning true, or the session ending. Reports each event
    /// through `on_event`. Leaving closes the connection (the server then tells the room)
    /// and closes every recording.
    pub fn run(
        mut self,
        stop: &AtomicBool,
        mut on_event: impl FnMut(CallEvent),
    ) -> Result<CallSummary, CallError> {
        let result = self.run_until_done(stop, &mut on_event);
        // A command processed last (a chat, a mute) may still be queued: send it first.
        self.leaving = true;
        let _ = self.drain(Instant::now(), &mut on_event);
        self.links.close();
        self.source.stop_capture();
        if let Some(playback) = self.playback.take() {
            playback.stop();
        }
        let recordings = match self.recorder.take().map(Recorder::finish) {
            Some(Ok(recordings)) => recordings,
            Some(Err(e)) if result.is_ok() => return Err(e.into()),
            Some(Err(_)) | None => Vec::new(),
        };
        result.map(|()| CallSummary {
            sid: self.session.sid(),
            stats: self.session.stats().clone(),
            recordings,
            voices: self
                .mixer
                .as_ref()
                .map(Mixer::all_voices)
                .unwrap_or_default(),
            capture_underruns: self.source.underruns,
        })
    }

    fn run_until_done(
        &mut self,
        stop: &AtomicBool,
        on_event: &mut impl FnMut(CallEvent),
    ) -> Result<(), CallError> {
        self.drain(Instant::now(), on_event)?;
        loop {
            let now = Instant::now();
            if let Some(outcome) = self.outcome.take() {
                return outcome;
            }
            if self.leaving || stop.load(Ordering::Relaxed) || self.end.is_some_and(|e| now >= e) {
                return Ok(());
            }
            self.tick_audio(now)?;
            self.release_held(now)?;
            if self.config.monitor && now >= self.next_status {
                self.next_status = now + STATUS_EVERY;
                on_event(CallEvent::Status(Box::new(self.status())));
            }
            if self.session.poll_timeout().is_some_and(|t| now >= t) {
                self.session.handle_timeout(now);
            }
            self.drain(now, on_event)?;
            // Commands that waited for the join go after the join's own events (the members
            // present), so their lines come in the order things happened.
            if !self.pending.is_empty() {
                self.apply_pending(now, on_event);
                self.drain(now, on_event)?;
            }
            if self.outcome.is_some() {
                continue;
            }
            let wake = [
                self.next_frame,
                self.session.poll_timeout(),
                self.end,
                self.held.next_expiry(),
            ]
            .into_iter()
            .flatten()
            .fold(now + IDLE_WAIT, Instant::min);
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(input) => {
                    let now = Instant::now();
                    self.handle_input(now, input, on_event)?;
                    self.drain(now, on_event)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                // We hold a sender ourselves, so this cannot happen; if it did, nothing more
                // could ever arrive.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Feeds every 20 ms frame that is due to the session.
    fn tick_audio(&mut self, now: Instant) -> Result<(), CallError> {
        let Some(mut next) = self.next_frame else {
            return Ok(());
        };
        let mut made = 0;
        while now >= next {
            let packet = self.source.next_frame(self.session.is_muted())?;
            // The only error is a packet over the size limit, which our encoder never makes;
            // the frame still counted, so dropping that one packet is all there is to do.
            let _ = self.session.handle_audio_frame(now, packet);
            if let Some(mixer) = self.mixer.as_mut() {
                // Played on the tick's schedule, not when the loop got to it: the jitter
                // buffers measure against a steady clock.
                mixer.mix(next, &mut self.mix);
                if let Some(playback) = self.playback.as_mut() {
                    playback.play(&self.mix);
                }
            }
            next += FRAME_DURATION;
            made += 1;
            if made >= MAX_CATCH_UP && now >= next {
                next = now + FRAME_DURATION;
                break;
            }
        }
        self.next_frame = Some(next);
        Ok(())
    }

    fn handle_input(
        &mut self,
        now: Instant,
        input: Input,
        on_event: &mut impl FnMut(CallEvent),
    ) -> Result<(), CallError> {
        match input {
            Input::Tcp(bytes) => {
                self.session.handle_tcp(now, &bytes);
                // The ADDs just read must reach the recorder before the media they announce.
                self.drain(now, on_event)?;
                self.release_held(now)?;
            }
            Input::TcpClosed => self.session.handle_tcp_closed(now),
            Input::Datagram(datagram) => match datagram.first() {
                Some(&sid) if !knows(&self.session, sid) => {
                    if let Some(oldest) = self.held.hold(now, datagram) {
                        self.receive(now, &oldest)?;
                    }
                }
                _ => self.receive(now, &datagram)?,
            },
            // Before we are in the room, commands wait, in order: lines typed (or piped)
            // before the server answered are still said, and a Leave still comes last.
            Input::Command(command) => {
                self.pending.push(command);
                self.apply_pending(now, on_event);
            }
            // The source stops itself once it has played what the command made.
            Input::Live(LiveEvent::InputEnded(text)) => on_event(CallEvent::Notice(text)),
            Input::Live(LiveEvent::Failed(text)) => {
                if self.outcome.is_none() {
                    self.outcome = Some(Err(CallError::Live(text)));
                }
            }
        }
        Ok(())
    }

    /// Hands one datagram to the session and what it decrypts to the recorder.
    fn receive(&mut self, now: Instant, datagram: &[u8]) -> Result<(), CallError> {
        self.opus.clear();
        let received = self.session.handle_datagram(now, datagram, &mut self.opus);
        let Some(from) = received else {
            return Ok(());
        };
        if let Some(mixer) = self.mixer.as_mut() {
            mixer.push(now, from, &self.opus);
        }
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.push(now, from, &self.opus)?;
        }
        Ok(())
    }

    /// Lets go the held datagrams whose ADD has arrived or whose time is up.
    fn release_held(&mut self, now: Instant) -> Result<(), CallError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let session = &self.session;
        let ready = self.held.release(now, |sid| knows(session, sid));
        for datagram in ready {
            self.receive(now, &datagram)?;
        }
        Ok(())
    }

    /// Applies the commands waiting, once we are in the room.
    fn apply_pending(&mut self, now: Instant, on_event: &mut impl FnMut(CallEvent)) {
        if self.session.sid().is_none() {
            return;
        }
        for command in std::mem::take(&mut self.pending) {
            if self.leaving {
                break; // Nothing typed after /quit (or EOF) is said.
            }
            self.apply(now, command, on_event);
        }
    }

    fn apply(&mut self, now: Instant, command: Command, on_event: &mut impl FnMut(CallEvent)) {
        match command {
            Command::Chat(msg) => {
                if let Err(e) = self.session.send_chat(now, &msg) {
                    on_event(CallEvent::Notice(format!("chat not sent: {e}")));
                }
            }
            Command::Mute if !self.session.is_muted() => {
                self.session.set_muted(now, true);
                on_event(CallEvent::Muted(self.config.username.clone()));
            }
            Command::Unmute if self.session.is_muted() => {
                self.session.set_muted(now, false);
                on_event(CallEvent::Unmuted(self.config.username.clone()));
            }
            Command::Mute | Command::Unmute => {}
            Command::Leave => self.leaving = true,
        }
    }

    /// The session's drain rule: transmits first (TCP in order), then events.
    fn drain(
        &mut self,
        now: Instant,
        on_event: &mut impl FnMut(CallEvent),
    ) -> Result<(), CallError> {
        while let Some(transmit) = self.session.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) => {
                    if self.links.tcp.write_all(&bytes).is_err() {
                        self.session.handle_tcp_closed(now);
                    }
                }
                // A lost datagram is what UDP is for; ECONNREFUSED here only means the
                // server's port answered an earlier one with ICMP.
                ClientTransmit::Udp(datagram) => {
                    let _ = self.links.udp.send(&datagram);
                }
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.on_session_event(now, event, on_event)?;
        }
        Ok(())
    }

    fn on_session_event(
        &mut self,
        now: Instant,
        event: ClientEvent,
        on_event: &mut impl FnMut(CallEvent),
    ) -> Result<(), CallError> {
        match event {
            ClientEvent::Joined(_) => {
                self.start_capture()?;
                self.next_frame = Some(now);
                self.end = self.config.duration.map(|d| now + d);
                on_event(CallEvent::Joined(self.config.username.clone()));
            }
            ClientEvent::Rejected(reason) => self.refusal = Some(reason),
            ClientEvent::PeerAdded { sid, username } => {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.add(sid, &username)?;
                }
                if let Some(mixer) = self.mixer.as_mut() {
                    mixer.add(sid, &username);
                }
                self.names.insert(sid, username.clone());
                on_event(CallEvent::Joined(username));
            }
            ClientEvent::PeerRemoved { sid, username } => {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.remove(sid)?;
                }
                if let Some(mixer) = self.mixer.as_mut() {
                    mixer.remove(sid);
                }
                self.names.remove(&sid);
                on_event(CallEvent::Left(username));
            }
            ClientEvent::PeerMuted(sid) => {
                if let Some(mixer) = self.mixer.as_mut() {
                    mixer.set_muted(sid, true);
                }
                on_event(CallEvent::Muted(self.name(sid)));
            }
            ClientEvent::PeerUnmuted(sid) => {
                if let Some(mixer) = self.mixer.as_mut() {
                    mixer.set_muted(sid, false);
                }
                on_event(CallEvent::Unmuted(self.name(sid)));
            }
            ClientEvent::Chat { sid, msg } => on_event(CallEvent::Chat {
                from: self.name(sid),
                msg,
            }),
            ClientEvent::Closed(reason) => {
                self.outcome = Some(match self.refusal.take() {
                    Some(reason) => Err(CallError::Refused(reason)),
                    None if self.leaving => Ok(()),
                    None => Err(CallError::Closed(reason)),
                });
            }
        }
        Ok(())
    }

    /// Starts the input command or device, if any: the live microphone replaces the file.
    fn start_capture(&mut self) -> Result<(), CallError> {
        if let Some(capture) = self.capture.take() {
            self.source.set_capture(capture.start(&self.tx)?);
        }
        Ok(())
    }

    fn status(&self) -> CallStatus {
        CallStatus {
            muted: self.session.is_muted(),
            input_dbfs: self.source.level_dbfs,
            voices: self
                .mixer
                .as_ref()
                .map(|m| m.voices().map(|(_, v)| v).collect())
                .unwrap_or_default(),
        }
    }

    /// A member's name; a SID no ADD announced (a server bug) shows as `#sid`.
    fn name(&self, sid: Sid) -> String {
        self.names
            .get(&sid)
            .cloned()
            .unwrap_or_else(|| format!("#{sid}"))
    }
}

/// Whether a member with this SID byte is in the room as far as `session` knows.
fn knows(session: &ClientSession, sid: u8) -> bool {
    session.peers().any(|(peer, _, _)| peer.0 == sid)
}
