//! The VoRS server's static X25519 key: kept in a file of 64 hex digits (`--vors-key`), made
//! on first run, and the `keygen` / `pubkey` subcommands.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use moose_proto::vors::handshake::{self, KEY_LEN};

/// The server's private key. Debug never shows it.
#[derive(Clone)]
pub struct ServerKey {
    pub private: [u8; KEY_LEN],
    pub public: [u8; KEY_LEN],
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// Why the key file cannot be used (the key itself is never part of the message).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("--vors-key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--vors-key {path}: not a key (expected 64 hex digits)")]
    Malformed { path: PathBuf },
    #[error("making a key failed: {0}")]
    Generate(String),
}

/// Parses a private key written as 64 hex digits (surrounding whitespace ignored).
pub fn parse_hex_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(text.trim(), &mut key).ok()?;
    Some(key)
}

fn with_public(private: [u8; KEY_LEN]) -> Result<ServerKey, KeyFileError> {
    let public = handshake::public_from_private(&private)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    Ok(ServerKey { private, public })
}

/// A fresh key pair.
pub fn generate() -> Result<ServerKey, KeyFileError> {
    let (private, public) =
        handshake::generate_keypair().map_err(|e| KeyFileError::Generate(e.to_string()))?;
    Ok(ServerKey { private, public })
}

/// Loads the key at `path`, or makes one and writes it there (mode 0600) when the file does not
/// exist. Returns the key and whether it was made now.
pub fn load_or_create(path: &Path) -> Result<(ServerKey, bool), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let private = parse_hex_key(&text).ok_or_else(|| KeyFileError::Malformed {
                path: path.to_owned(),
            })?;
            Ok((with_public(private)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_private()
                .open(path)
                .map_err(io)?;
            writeln!(file, "{}", hex::encode(key.private)).map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_makes_a_key_and_later_runs_load_it() {
        let dir = std::env::temp_dir().join(format!("moose-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("vors.key");
        let _ = std::fs::remove_file(&path);
        let (made, created) = load_or_create(&path).expect("made");
        assert!(created);
        let (loaded, created) = load_or_create(&path).expect("loaded");
        assert!(!created);
        assert_eq!(made.private, loaded.private);
        assert_eq!(made.public, loaded.public);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
        std::fs::write(&path, "not hex").expect("write");
        let err = load_or_create(&path).expect_err("malformed");
        assert!(err.to_string().contains("64 hex digits"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let key = generate().expect("key");
        let text = format!("{key:?}");
        assert!(text.contains(&hex::encode(key.public)));
        assert!(!text.contains(&hex::encode(key.private)));
    }
}
