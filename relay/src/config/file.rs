//! Reading the settings: command line, environment, the optional TOML file, defaults.
//!
//! clap parses the command line and the environment. When `--config FILE` (or `MOOSE_CONFIG`)
//! names a file, each of its keys must be a setting (the long flag without `--`, with `_` or
//! `-`: `max_peers`, `max-peers`; `allowed_origins` takes an array). A key whose setting was
//! not given on the command line or in the environment is checked with that flag's own value
//! parser, then appended to the arguments as `--flag=value` and everything is parsed again, so
//! file values go through exactly the same types and checks as flags. Unknown keys are an
//! error that names them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::{ConfigError, REDACTED, Source, Sources};
use crate::cli::Cli;

/// The parsed command line with file values merged in, and where each setting came from.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    pub sources: Sources,
}

/// Why the settings could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// `--help` or `--version`: clap prints it and exits 0.
    Info(clap::Error),
    /// Anything else: print it and exit with `EXIT_CONFIG`.
    Config(ConfigError),
}

impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> Self {
        LoadError::Config(e)
    }
}

/// Parses `argv` (program name first), the environment and the `--config` file.
pub fn load<I, T>(argv: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    load_with(argv, |path| std::fs::read_to_string(path))
}

/// [`load`] of a `--config` file holding `text`, for the fuzz target of the file's decoder
/// (fuzz/fuzz_targets/config_file.rs): no file is read.
#[cfg(fuzzing)]
pub fn load_file_text(text: &str) -> Result<Loaded, LoadError> {
    load_with(["moose-relay", "--config", "fuzz.toml"], |_| {
        Ok(text.to_owned())
    })
}

/// [`load`], reading the `--config` file with `read`.
fn load_with<I, T>(
    argv: I,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let command = Cli::command();
    let mut matches = parse(&command, &argv)?;
    let mut from_file: Vec<String> = Vec::new();
    let path = matches.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &path {
        let table = read_table(path, &read)?;
        let mut extra = Vec::new();
        for (key, value) in &table {
            let arg = find_setting(&command, key).ok_or_else(|| ConfigError::File {
                path: path.clone(),
                problem: format!("unknown setting `{key}` (see docs/configuration.md)"),
            })?;
            let id = arg.get_id().as_str();
            if id == "config" {
                return Err(ConfigError::File {
                    path: path.clone(),
                    problem: "`config` cannot be set in a config file".into(),
                }
                .into());
            }
            let overridden = matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if overridden {
                continue;
            }
            extra.extend(file_args(&command, arg, value, path)?);
            from_file.push(id.to_owned());
        }
        if !extra.is_empty() {
            argv.extend(extra);
            matches = parse(&command, &argv)?;
        }
    }
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| LoadError::Config(ConfigError::Usage(clap_message(&e))))?;
    let mut sources = HashMap::new();
    for arg in settings(&command) {
        let id = arg.get_id().as_str();
        let source = match (&path, matches.value_source(id)) {
            (Some(path), _) if from_file.iter().any(|f| f == id) => Source::File(path.clone()),
            (_, Some(ValueSource::CommandLine)) => Source::CommandLine,
            (_, Some(ValueSource::EnvVariable)) => Source::Environment(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => Source::Default,
        };
        sources.insert(id.to_owned(), source);
    }
    Ok(Loaded {
        cli,
        sources: Sources(sources),
    })
}

fn parse(command: &clap::Command, argv: &[OsString]) -> Result<ArgMatches, LoadError> {
    command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                LoadError::Info(e)
            }
            _ => LoadError::Config(ConfigError::Usage(clap_message(&e))),
        })
}

/// clap's message without its "error: " prefix and usage hints.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The relay's settings: every argument but help and version.
fn settings(command: &clap::Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
}

/// The setting a file key names: its id (`max_peers`) or long flag (`max-peers`), with `-`
/// and `_` interchangeable.
fn find_setting<'c>(command: &'c clap::Command, key: &str) -> Option<&'c Arg> {
    let key = key.replace('-', "_");
    settings(command).find(|arg| {
        arg.get_id().as_str() == key || arg.get_long().is_some_and(|l| l.replace('-', "_") == key)
    })
}

fn read_table(
    path: &Path,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<toml::Table, ConfigError> {
    let file_error = |problem: String| ConfigError::File {
        path: path.to_owned(),
        problem,
    };
    let text = read(path).map_err(|e| file_error(e.to_string()))?;
    text.parse::<toml::Table>().map_err(|e| {
        // The message only: toml's full report quotes the line, which may hold an apikey.
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => file_error(format!("not valid TOML at line {line}: {}", e.message())),
            None => file_error(format!("not valid TOML: {}", e.message())),
        }
    })
}

/// The `--flag=value` arguments for one file key, each value checked by the flag's parser.
fn file_args(
    command: &clap::Command,
    arg: &Arg,
    value: &toml::Value,
    path: &Path,
) -> Result<Vec<OsString>, ConfigError> {
    let id = arg.get_id().as_str();
    let long = arg.get_long().unwrap_or(id);
    let invalid = |shown: String, problem: String| ConfigError::Invalid {
        setting: id.to_owned(),
        value: if id == "apikey" {
            REDACTED.to_owned()
        } else {
            shown
        },
        from: Source::File(path.to_owned()),
        problem,
    };
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            toml::Value::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            other => Err(invalid(other.to_string(), "must be true or false".into())),
        };
    }
    let many = matches!(arg.get_action(), ArgAction::Append);
    let values: Vec<&toml::Value> = match value {
        toml::Value::Array(items) if many => items.iter().collect(),
        toml::Value::Array(_) => {
            return Err(invalid(
                value.to_string(),
                "takes one value, not a list".into(),
            ));
        }
        single => vec![single],
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            other => {
                return Err(invalid(
                    other.to_string(),
                    "must be a string or an integer".into(),
                ));
            }
        };
        let flag = format!("--{long}={text}");
        // The flag's own parser, alone: the command line and environment parsed already.
        command
            .clone()
            .try_get_matches_from(["moose-relay", flag.as_str()])
            .map_err(|e| invalid(value.to_string(), clap_message(&e)))?;
        out.push(flag.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("moose-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn load_ok(args: &[&str]) -> Loaded {
        match load(std::iter::once("moose-relay").chain(args.iter().copied())) {
            Ok(loaded) => loaded,
            Err(LoadError::Config(e)) => panic!("{e}"),
            Err(LoadError::Info(e)) => panic!("{e}"),
        }
    }

    fn load_err(args: &[&str]) -> String {
        match load(std::iter::once("moose-relay").chain(args.iter().copied())) {
            Ok(loaded) => panic!("loaded {loaded:?}"),
            Err(LoadError::Config(e)) => e.to_string(),
            Err(LoadError::Info(e)) => panic!("{e}"),
        }
    }

    // These tests read no environment variable the relay knows (cargo's test environment has
    // none), so file and command line are what they see.

    #[test]
    fn file_values_fill_what_flags_leave() {
        let path = temp_file(
            "fill.toml",
            "max_peers = 6\nqueue-ms = 150\nopen = true\n\
             allowed_origins = [\"https://a.example\", \"https://b.example\"]\n",
        );
        let path = path.to_str().expect("utf-8 path");
        let loaded = load_ok(&["--config", path, "--queue-ms", "120"]);
        let run = &loaded.cli.run;
        assert_eq!(run.max_peers, 6);
        assert_eq!(run.queue_ms, 120, "the flag wins over the file");
        assert!(run.open);
        assert_eq!(run.allowed_origins.len(), 2);
        assert_eq!(
            loaded.sources.of("max_peers"),
            Source::File(PathBuf::from(path))
        );
        assert_eq!(loaded.sources.of("queue_ms"), Source::CommandLine);
        assert_eq!(loaded.sources.of("max_members"), Source::Default);
        let config = Config::from_args(run, &loaded.sources, &[0]).expect("valid");
        assert_eq!(config.max_peers, 6);
    }

    #[test]
    fn flags_after_the_subcommand_count_too() {
        let path = temp_file("sub.toml", "max_members = 9\n");
        let path = path.to_str().expect("utf-8 path");
        let loaded = load_ok(&["check-config", "--config", path, "--max-peers", "3"]);
        assert_eq!(loaded.cli.command, Some(crate::cli::Command::CheckConfig));
        assert_eq!(loaded.cli.run.max_members, 9);
        assert_eq!(loaded.cli.run.max_peers, 3);
        assert_eq!(loaded.sources.of("max_peers"), Source::CommandLine);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let path = temp_file("unknown.toml", "max_peer = 3\n");
        let err = load_err(&["--config", path.to_str().expect("utf-8")]);
        assert!(err.contains("unknown setting `max_peer`"), "{err}");
        let path = temp_file("bad.toml", "max_peers = \"many\"\n");
        let err = load_err(&["--config", path.to_str().expect("utf-8")]);
        assert!(
            err.starts_with("invalid setting max_peers = \"many\""),
            "{err}"
        );
        assert!(err.contains("config file"), "{err}");
        let path = temp_file("list.toml", "listen = [\"a\", \"b\"]\n");
        let err = load_err(&["--config", path.to_str().expect("utf-8")]);
        assert!(err.contains("not a list"), "{err}");
    }

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let path = temp_file("syntax.toml", "apikey = \"0123456789abcdef-secret\n");
        let err = load_err(&["--config", path.to_str().expect("utf-8")]);
        assert!(err.contains("not valid TOML at line 1"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load_err(&["--config", "/nonexistent/moose.toml"]);
        assert!(
            err.starts_with("--config /nonexistent/moose.toml:"),
            "{err}"
        );
    }
}
