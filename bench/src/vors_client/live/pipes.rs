//! `--input-cmd` and `--output-cmd`: the microphone and the speaker as shell commands that
//! read or write raw 48 kHz mono signed 16-bit little-endian PCM (`arecord`/`aplay`,
//! `rec`/`play`, `parec`/`pacat`, `pw-record`/`pw-play`, or `cat` of a file).
//!
//! Each command runs under `sh -c` in a process group of its own (Ctrl-C in the terminal is
//! ours to handle; leaving ends the whole pipeline), with its end of the pipe shrunk to one
//! page so the pipe adds at most about 40 ms. A thread per command moves samples between the
//! pipe and a bounded [`SampleQueue`]:
//!
//! - input: the reader waits for room in the queue, so a command faster than real time (a
//!   file) is paced by the call's 20 ms clock; a real microphone faster than that clock fills
//!   the pipe and its own tool drops (arecord's "overrun"); one slower leaves the queue short
//!   at a tick, and the frame is silence (a stretch);
//! - output: the call's tick pushes each mixed frame without waiting and the oldest frames are
//!   dropped past [`PLAYBACK_QUEUE_FRAMES`], so a speaker slower than the network never grows
//!   the delay; one faster underruns in its own tool.
//!
//! When a command ends on its own the call hears of it ([`LiveEvent`]): the input ending with
//! status 0 is like the end of an `--input` file (nothing more is sent, the call goes on);
//! any other end of either command is an error, and the call leaves.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::queue::SampleQueue;
use super::{CaptureFrame, LiveEvent};
use crate::audio::FRAME_SAMPLES;
use crate::vors_client::error::CallError;
use crate::vors_client::net::Input;

/// Frames of capture held between the input command and the call (40 ms).
pub const CAPTURE_QUEUE_FRAMES: usize = 2;
/// Frames of playback held between the call and the output command (60 ms).
pub const PLAYBACK_QUEUE_FRAMES: usize = 3;
/// The pipe's size: one page, about 43 ms of audio, instead of Linux's default 64 KiB (680 ms).
const PIPE_BYTES: i32 = 4096;
/// How long the output command may take to finish after its input ended.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The microphone: a running input command and the samples it made.
#[derive(Debug)]
pub struct InputPipe(Piped);

/// The speaker: a running output command and the samples waiting for it.
#[derive(Debug)]
pub struct OutputPipe(Piped);

/// A command, the thread moving samples between its pipe and the queue, and the flag that
/// tells that thread an end is ours, not the command's.
#[derive(Debug)]
struct Piped {
    queue: Arc<SampleQueue>,
    stopping: Arc<AtomicBool>,
    pgid: i32,
    thread: Option<JoinHandle<()>>,
}

/// One direction of pipe: how its command is spawned and what its thread does.
struct Direction<P> {
    /// For errors: what was being started.
    what: &'static str,
    /// Frames the queue holds.
    queue_frames: usize,
    /// Pipes the command's stdout or stdin.
    configure: fn(&mut Command) -> &mut Command,
    /// Takes our end of that pipe.
    take: fn(&mut Child) -> Option<P>,
    /// The thread: the child, our pipe end, the queue, the stop flag, the command line, and
    /// where to report its end.
    body: fn(Child, P, &SampleQueue, &AtomicBool, &str, &Sender<Input>),
}

const MICROPHONE: Direction<ChildStdout> = Direction {
    what: "start --input-cmd",
    queue_frames: CAPTURE_QUEUE_FRAMES,
    configure: |cmd| cmd.stdout(Stdio::piped()),
    take: |child| child.stdout.take(),
    body: read_input,
};

const SPEAKER: Direction<ChildStdin> = Direction {
    what: "start --output-cmd",
    queue_frames: PLAYBACK_QUEUE_FRAMES,
    configure: |cmd| cmd.stdin(Stdio::piped()),
    take: |child| child.stdin.take(),
    body: write_output,
};

impl Piped {
    /// Spawns `command` for `direction`, and its thread.
    fn start<P: AsRawFd + Send + 'static>(
        command: &str,
        quiet: bool,
        direction: &Direction<P>,
        events: Sender<Input>,
    ) -> Result<Piped, CallError> {
        let Direction {
            what,
            queue_frames,
            configure,
            take,
            body,
        } = *direction;
        let mut child = configure(&mut shell(command, quiet))
            .spawn()
            .map_err(spawn_error(what))?;
        let pipe = take(&mut child).ok_or(CallError::Io {
            what,
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        shrink_pipe(&pipe);
        let queue = Arc::new(SampleQueue::new(queue_frames * FRAME_SAMPLES));
        let stopping = Arc::new(AtomicBool::new(false));
        let pgid = pgid_of(&child);
        let thread = thread::Builder::new()
            .name(format!("moose-call {what}"))
            .spawn({
                let (queue, stopping) = (Arc::clone(&queue), Arc::clone(&stopping));
                let command = command.to_owned();
                move || body(child, pipe, &queue, &stopping, &command, &events)
            })
            .map_err(spawn_error(what))?;
        Ok(Piped {
            queue,
            stopping,
            pgid,
            thread: Some(thread),
        })
    }

    /// Marks the end as ours, ends the command first if `terminate_first` (a microphone
    /// never ends by itself), closes the queue and waits for the thread.
    fn shut_down(&mut self, terminate_first: bool) {
        self.stopping.store(true, Ordering::Relaxed);
        if terminate_first {
            terminate(self.pgid);
        }
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn shell(command: &str, quiet: bool) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // The full-screen UI owns the terminal: the commands' messages would tear it.
        .stderr(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    cmd
}

fn spawn_error(what: &'static str) -> impl FnOnce(std::io::Error) -> CallError {
    move |source| CallError::Io { what, source }
}

/// Shrinks the pipe behind `fd`; the default would hold 680 ms of audio.
fn shrink_pipe(fd: &impl AsRawFd) {
    // Only latency is at stake: a kernel that refuses keeps the default size.
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES),
    );
}

fn pgid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).unwrap_or(0)
}

/// Ends a command's whole process group (a pipeline in `sh -c` included).
fn terminate(pgid: i32) {
    if pgid > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl InputPipe {
    /// Starts `command`; its stdout is the microphone. Events go to `events`.
    pub(crate) fn start(
        command: &str,
        quiet: bool,
        events: Sender<Input>,
    ) -> Result<Self, CallError> {
        Piped::start(command, quiet, &MICROPHONE, events).map(InputPipe)
    }

    /// The next 20 ms of microphone (the last one padded with silence).
    pub fn next_frame(&self, out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        self.0.queue.next_frame(out)
    }

    /// Ends the command and its reader.
    pub fn stop(mut self) {
        self.0.shut_down(true);
    }
}

impl Drop for InputPipe {
    fn drop(&mut self) {
        self.0.shut_down(true);
    }
}

fn read_input(
    mut child: Child,
    mut stdout: ChildStdout,
    queue: &SampleQueue,
    stopping: &AtomicBool,
    command: &str,
    events: &Sender<Input>,
) {
    let mut bytes = [0u8; 4096];
    let mut samples = Vec::with_capacity(bytes.len() / 2);
    // A sample split across two reads keeps its first byte here.
    let mut carry: Option<u8> = None;
    let read_error = loop {
        let n = match stdout.read(&mut bytes) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e),
        };
        samples.clear();
        let mut chunk = &bytes[..n];
        if let Some(low) = carry.take() {
            samples.push(i16::from_le_bytes([low, chunk[0]]));
            chunk = &chunk[1..];
        }
        let pairs = chunk.chunks_exact(2);
        carry = pairs.remainder().first().copied();
        samples.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
        if !queue.push_wait(&samples) {
            break None; // The call is over.
        }
    };
    drop(stdout);
    // What was read is still played; the call sees the end when the queue runs out.
    queue.close();
    let status = child.wait();
    if stopping.load(Ordering::Relaxed) {
        return;
    }
    let event = match (read_error, status) {
        (None, Ok(status)) if status.success() => {
            LiveEvent::InputEnded(format!("input command `{command}` ended"))
        }
        (Some(e), _) => LiveEvent::Failed(format!("reading from --input-cmd `{command}`: {e}")),
        (None, Ok(status)) => {
            LiveEvent::Failed(format!("input command `{command}` failed: {status}"))
        }
        (None, Err(e)) => LiveEvent::Failed(format!("input command `{command}`: {e}")),
    };
    let _ = events.send(Input::Live(event));
}

impl OutputPipe {
    /// Starts `command`; its stdin is the speaker. Events go to `events`.
    pub(crate) fn start(
        command: &str,
        quiet: bool,
        events: Sender<Input>,
    ) -> Result<Self, CallError> {
        Piped::start(command, quiet, &SPEAKER, events).map(OutputPipe)
    }

    /// Queues one mixed frame; the oldest queued frames go if the command is behind.
    pub fn play(&self, frame: &[i16; FRAME_SAMPLES]) {
        self.0.queue.push_overwrite(frame);
    }

    /// Samples dropped because the command took them too slowly.
    pub fn dropped(&self) -> u64 {
        self.0.queue.dropped()
    }

    /// Lets the command play what is queued and finish (up to 2 s), then ends it.
    pub fn stop(mut self) {
        self.0.shut_down(false);
    }
}

impl Drop for OutputPipe {
    fn drop(&mut self) {
        self.0.shut_down(false);
    }
}

fn write_output(
    mut child: Child,
    mut stdin: ChildStdin,
    queue: &SampleQueue,
    stopping: &AtomicBool,
    command: &str,
    events: &Sender<Input>,
) {
    let mut samples = [0i16; FRAME_SAMPLES];
    let mut bytes = Vec::with_capacity(2 * FRAME_SAMPLES);
    let mut failure = None;
    loop {
        let n = queue.pop_wait(&mut samples);
        if n == 0 {
            break; // Closed and drained: the call is over.
        }
        bytes.clear();
        bytes.extend(samples[..n].iter().flat_map(|s| s.to_le_bytes()));
        if let Err(e) = stdin.write_all(&bytes) {
            failure = Some(e);
            break;
        }
    }
    // EOF tells the command the sound has ended, so it can finish (flush a file, drain a
    // device) before we stop waiting.
    drop(stdin);
    let deadline = Instant::now() + OUTPUT_DRAIN;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            // Finishing, or (after a broken pipe) on its way out: its status says why.
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                terminate(pgid_of(&child));
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    if stopping.load(Ordering::Relaxed) && failure.is_none() {
        return;
    }
    queue.close();
    let why = match (status, failure) {
        (Some(status), _) if !status.success() => format!("failed: {status}"),
        (_, Some(e)) => format!("stopped taking audio: {e}"),
        _ => "ended".to_owned(),
    };
    let _ = events.send(Input::Live(LiveEvent::Failed(format!(
        "output command `{command}` {why}"
    ))));
}
