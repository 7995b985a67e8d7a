//! `--record DIR`: one WAV file per other member, named after their username.
//!
//! A member's file is created when the server announces them (ADD), so a member who never
//! speaks still leaves an (empty) file, and closed when they leave (DEL) or the call ends.
//! The name is the username with anything but ASCII letters, digits, `-`, `_` and `.`
//! replaced by `_` (and no leading `.`); if that name was already used in this call (two
//! names that sanitize alike, or a member who left and came back), `-2`, `-3`, ... is added.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use moose_proto::vors::Sid;
use moose_proto::vors::client::Received;

use crate::audio::{AudioError, Track, TrackStats};

/// One finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The member's username as the server gave it.
    pub username: String,
    /// The WAV file written.
    pub path: PathBuf,
    /// What went into it.
    pub stats: TrackStats,
}

/// The file name (without directory and extension) for a member's recording.
pub fn file_stem(username: &str) -> String {
    let mut stem: String = username
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    if stem.is_empty() {
        stem.push('_');
    }
    stem
}

/// The open recordings of the members present, and those already finished.
#[derive(Debug)]
pub(crate) struct Recorder {
    dir: PathBuf,
    open: BTreeMap<Sid, (String, Track)>,
    used: HashSet<String>,
    finished: Vec<Recording>,
}

impl Recorder {
    /// Records into `dir`, creating it if needed.
    pub(crate) fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            open: BTreeMap::new(),
            used: HashSet::new(),
            finished: Vec::new(),
        })
    }

    /// A member arrived: open their file.
    pub(crate) fn add(&mut self, sid: Sid, username: &str) -> Result<(), AudioError> {
        // A SID reused without DEL (not expected, but the server is remote) ends the old one.
        self.remove(sid)?;
        let stem = file_stem(username);
        let mut name = stem.clone();
        let mut n = 1;
        while self.used.contains(&name) {
            n += 1;
            name = format!("{stem}-{n}");
        }
        let track = Track::create(&self.dir.join(format!("{name}.wav")))?;
        self.used.insert(name);
        self.open.insert(sid, (username.to_owned(), track));
        Ok(())
    }

    /// A member left: close their file.
    pub(crate) fn remove(&mut self, sid: Sid) -> Result<(), AudioError> {
        let Some((username, track)) = self.open.remove(&sid) else {
            return Ok(());
        };
        let path = track.path().to_path_buf();
        let stats = track.finish()?;
        self.finished.push(Recording {
            username,
            path,
            stats,
        });
        Ok(())
    }

    /// A member's media packet, opened by the session.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        from: Received,
        opus: &[u8],
    ) -> Result<(), AudioError> {
        if let Some((_, track)) = self.open.get_mut(&from.sid) {
            track.push(now, from.pkt, from.frame, opus)?;
        }
        Ok(())
    }

    /// Closes every file; returns all recordings of the call, in the order they ended.
    pub(crate) fn finish(mut self) -> Result<Vec<Recording>, AudioError> {
        let sids: Vec<Sid> = self.open.keys().copied().collect();
        for sid in sids {
            self.remove(sid)?;
        }
        Ok(self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_a_file_system() {
        assert_eq!(file_stem("alice"), "alice");
        assert_eq!(file_stem("Bob-2_x.y"), "Bob-2_x.y");
        assert_eq!(file_stem("../etc/passwd"), "_._etc_passwd");
        assert_eq!(file_stem(".hidden"), "_hidden");
        assert_eq!(file_stem("a b/c\\d"), "a_b_c_d");
        assert_eq!(file_stem("zoë"), "zo_");
        assert_eq!(file_stem(""), "_");
    }

    #[test]
    fn clashing_names_get_a_suffix() {
        let dir = std::env::temp_dir().join(format!("moose-rec-{}", std::process::id()));
        let mut rec = Recorder::new(&dir).expect("dir");
        rec.add(Sid(1), "a b").expect("add");
        rec.add(Sid(2), "a_b").expect("add");
        rec.remove(Sid(1)).expect("remove");
        rec.add(Sid(3), "a b").expect("add"); // came back
        let done = rec.finish().expect("finish");
        let files: Vec<_> = done
            .iter()
            .map(|r| r.path.file_name().and_then(|n| n.to_str()).unwrap_or(""))
            .collect();
        assert_eq!(files, ["a_b.wav", "a_b-2.wav", "a_b-3.wav"]);
        assert!(done.iter().all(|r| r.path.exists()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
