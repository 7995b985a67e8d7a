//! `moose-call`: the command-line VoRS call client. See `docs/moose-call.md`.
//!
//! When stdout is a terminal, a full-screen UI (`moose_bench::tui`); with `--plain`, or when
//! stdout is not a terminal, the line mode: room events go to stdout, one line each (`joined alice`, `left alice`, `muted alice`,
//! `unmuted alice`, `chat alice: hello`); everything else goes to stderr. Exit codes: 0 after
//! a clean leave, 3 when the server refused us (`moose-call: refused: <reason>`), 1 for any
//! other failure.

use std::io::IsTerminal;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use moose_bench::bind::parse_bind;
use moose_bench::tui::{self, UiExit};
use moose_bench::vors_client::{
    Call, CallConfig, CallError, CallEvent, CallSummary, Command, CommandSender, parse_public_key,
};

/// Join a VoRS room: talk through a microphone and speaker (sound devices or commands), or send
/// a WAV file and record the other members; chat from stdin.
#[derive(Debug, Parser)]
#[command(name = "moose-call", version)]
struct Args {
    /// List the sound devices (the names --input-device and --output-device take) and exit;
    /// the call's flags are not needed (and not checked) with it.
    #[arg(long)]
    list_devices: bool,
    /// The relay's VoRS address (TCP and UDP share the port).
    #[arg(
        long,
        env = "MOOSE_CALL_SERVER",
        value_name = "HOST:PORT",
        required_unless_present = "list_devices"
    )]
    server: Option<String>,
    /// The relay's static public key, 64 hex digits (`moose-relay pubkey`).
    #[arg(
        long,
        env = "MOOSE_CALL_PUBKEY",
        value_name = "HEX",
        required_unless_present = "list_devices"
    )]
    pubkey: Option<String>,
    /// Our username in the room.
    #[arg(
        long,
        env = "MOOSE_CALL_NAME",
        required_unless_present = "list_devices"
    )]
    name: Option<String>,
    /// The room to join (made on first join, gone when empty).
    #[arg(
        long,
        env = "MOOSE_CALL_ROOM",
        required_unless_present = "list_devices"
    )]
    room: Option<String>,
    /// Room password; the first member sets it. Prefer the environment variable, which
    /// other users cannot see in the process list.
    #[arg(
        long,
        env = "MOOSE_CALL_PASSWORD",
        value_name = "PW",
        hide_env_values = true
    )]
    password: Option<String>,
    /// 48 kHz mono 16-bit WAV to send once, from the moment we join. Without it, nothing is
    /// sent (the frame counter still runs).
    #[arg(long, env = "MOOSE_CALL_INPUT", value_name = "FILE.wav")]
    input: Option<PathBuf>,
    /// Shell command whose stdout is the microphone: raw 48 kHz mono signed 16-bit
    /// little-endian PCM (e.g. `arecord -q -t raw -f S16_LE -r 48000 -c 1`). Replaces
    /// --input.
    #[arg(
        long,
        env = "MOOSE_CALL_INPUT_CMD",
        value_name = "CMD",
        conflicts_with = "input"
    )]
    input_cmd: Option<String>,
    /// Shell command whose stdin gets the room's sound, every other member mixed, in the
    /// same format (e.g. `aplay -q -t raw -f S16_LE -r 48000 -c 1`).
    #[arg(long, env = "MOOSE_CALL_OUTPUT_CMD", value_name = "CMD")]
    output_cmd: Option<String>,
    /// The microphone: a sound device as --list-devices names it, or the default device
    /// when no NAME is given. Replaces --input.
    #[arg(
        long,
        env = "MOOSE_CALL_INPUT_DEVICE",
        value_name = "NAME",
        num_args = 0..=1,
        default_missing_value = "default",
        conflicts_with_all = ["input", "input_cmd"]
    )]
    input_device: Option<String>,
    /// The speaker: a sound device as --list-devices names it, or the default device when no
    /// NAME is given.
    #[arg(
        long,
        env = "MOOSE_CALL_OUTPUT_DEVICE",
        value_name = "NAME",
        num_args = 0..=1,
        default_missing_value = "default",
        conflicts_with = "output_cmd"
    )]
    output_device: Option<String>,
    /// Directory for the recordings: one `<username>.wav` per other member.
    #[arg(long, env = "MOOSE_CALL_RECORD", value_name = "DIR")]
    record: Option<PathBuf>,
    /// Leave this many seconds after joining. Without it, stay until stdin ends, `/quit`,
    /// or Ctrl-C.
    #[arg(long, env = "MOOSE_CALL_SECONDS", value_name = "N", value_parser = parse_seconds)]
    seconds: Option<Duration>,
    /// The local address TCP and UDP leave from: an IP (`127.0.0.7`) or IP:PORT. Clients on
    /// different addresses reach a balancer that hashes on the source as different hosts.
    #[arg(long, env = "MOOSE_CALL_BIND", value_name = "ADDR", value_parser = parse_bind)]
    bind: Option<SocketAddr>,
    /// Line mode even on a terminal: room events as lines on stdout, chat and commands from
    /// stdin (the mode for scripts; the default when stdout is not a terminal).
    #[arg(long, env = "MOOSE_CALL_PLAIN")]
    plain: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version print to stdout and succeed; a usage error is a failure
        // like any other (exit 1, not clap's 2: moose-call promises 0, 1 and 3 only).
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.list_devices {
        return list_devices();
    }
    let full_screen = !args.plain && std::io::stdout().is_terminal();
    let result = if full_screen {
        run_full_screen(args)
    } else {
        run_plain(args)
    };
    match result {
        Ok(summary) => {
            report(&summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moose-call: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

/// `--list-devices`: one line per device on stdout, its name (what the flags take), what it
/// does, and ALSA's description.
fn list_devices() -> ExitCode {
    match moose_bench::vors_client::live::list_devices() {
        Ok(devices) => {
            let mut stdout = std::io::stdout().lock();
            for device in devices {
                let ways = match (device.input, device.output) {
                    (true, true) => "input, output",
                    (true, false) => "input",
                    (false, true) => "output",
                    (false, false) => "-",
                };
                let line = match &device.description {
                    Some(text) => format!("{}\t{ways}\t{text}", device.name),
                    None => format!("{}\t{ways}", device.name),
                };
                if writeln!(stdout, "{line}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moose-call: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(args: &Args) -> Result<CallConfig, CallError> {
    // clap enforces these four unless --list-devices, which never gets here.
    let required = |value: &Option<String>| value.clone().unwrap_or_default();
    let mut config = CallConfig::new(
        &required(&args.server),
        parse_public_key(&required(&args.pubkey))?,
        &required(&args.name),
        &required(&args.room),
    );
    config.password.clone_from(&args.password);
    config.input.clone_from(&args.input);
    config.record_dir.clone_from(&args.record);
    config.input_cmd.clone_from(&args.input_cmd);
    config.output_cmd.clone_from(&args.output_cmd);
    config.input_device.clone_from(&args.input_device);
    config.output_device.clone_from(&args.output_device);
    config.duration = args.seconds;
    config.bind = args.bind;
    Ok(config)
}

/// The full-screen UI: the call on a thread, the screen and the keys here.
fn run_full_screen(args: Args) -> Result<CallSummary, CallError> {
    let mut config = config(&args)?;
    config.monitor = true;
    config.quiet_commands = true;
    let stop = install_ui_signal_handlers()?;
    let (room, name) = (config.room.clone(), config.username.clone());
    let call = Call::connect(config)?;
    match tui::run(call, &room, &name, stop).map_err(|source| CallError::Io {
        what: "terminal",
        source,
    })? {
        UiExit::Call(result) => result,
        UiExit::Interrupted => std::process::exit(130),
    }
}

/// The line mode: events on stdout, commands from stdin.
fn run_plain(args: Args) -> Result<CallSummary, CallError> {
    let config = config(&args)?;
    let stop = install_signal_handlers()?;
    let call = Call::connect(config)?;
    spawn_stdin_reader(call.commands(), args.seconds.is_none());
    let mut stdout = std::io::stdout();
    call.run(&stop, |event| match event.stdout_line() {
        Some(line) => {
            // Flushed per line: tests and pipes read these as they happen.
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        None => {
            if let CallEvent::Notice(text) = event {
                eprintln!("moose-call: {text}");
            }
        }
    })
}

/// First Ctrl-C (or SIGTERM) asks the call to leave cleanly; a second one exits at once.
fn install_signal_handlers() -> Result<Arc<AtomicBool>, CallError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit is checked before the flag is set, so it
        // fires only when the flag was already set by an earlier signal.
        flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| flag::register(signal, Arc::clone(&stop)))
            .map_err(|source| CallError::Io {
                what: "install signal handler",
                source,
            })?;
    }
    Ok(stop)
}

/// For the UI: SIGINT, SIGTERM or SIGHUP asks the call to leave; the UI restores the
/// terminal before any exit (130 if the call has not left within `tui::SIGNAL_GRACE`).
fn install_ui_signal_handlers() -> Result<Arc<AtomicBool>, CallError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| CallError::Io {
            what: "install signal handler",
            source,
        })?;
    }
    Ok(stop)
}

/// Turns stdin lines into commands. At EOF the call leaves only when it has no `--seconds`
/// (so `moose-call ... --seconds 5 </dev/null` still runs for 5 s).
fn spawn_stdin_reader(commands: CommandSender, leave_at_eof: bool) {
    let spawned = std::thread::Builder::new()
        .name("moose-call-stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match Command::parse_line(&String::from_utf8_lossy(&line)) {
                    Ok(Some(command)) => {
                        if !commands.send(command) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(unknown) => eprintln!("moose-call: {unknown}"),
                }
            }
            if leave_at_eof {
                commands.send(Command::Leave);
            }
        });
    // Without the thread the call still runs; only typing is lost.
    if let Err(e) = spawned {
        eprintln!("moose-call: no stdin reader: {e}");
    }
}

fn report(summary: &CallSummary) {
    let s = &summary.stats;
    eprintln!(
        "moose-call: left: {} frames, {} packets sent, {} received, {} lost",
        s.frames, s.packets_sent, s.packets_received, s.packets_lost
    );
    for r in &summary.recordings {
        eprintln!(
            "moose-call: recorded {} to {} ({} frames decoded, {} concealed, {} silent)",
            r.username,
            r.path.display(),
            r.stats.decoded,
            r.stats.concealed,
            r.stats.silent
        );
    }
    for v in &summary.voices {
        let j = &v.stats;
        eprintln!(
            "moose-call: played {}: {} frames decoded, {} concealed, {} silent, {} late, \
             {} skipped, {} stretched; jitter {:.1} ms, buffer delay mean {:.1} ms, max {:.1} ms",
            v.name,
            j.decoded,
            j.concealed,
            j.silent,
            j.late,
            j.skipped,
            j.stretched,
            j.jitter_ms,
            j.delay_mean_ms(),
            j.delay_max_ms
        );
    }
    if summary.capture_underruns > 0 {
        eprintln!(
            "moose-call: the input fell behind {} times (20 ms of silence each)",
            summary.capture_underruns
        );
    }
}
