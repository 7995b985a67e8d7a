//! The one place where the relay talks to the kernel directly.
//!
//! Everything `unsafe` in the relay lives in this folder, one file per concern, each block with
//! the reason it is sound; the rest of the crate calls these safe wrappers. The lint allows
//! `unsafe_code` here and nowhere else (the workspace denies it; a test below keeps any other
//! file of `relay/src` from allowing it). The items are re-exported flat, so callers write
//! `sys::send_batch`, not `sys::batch::send_batch`.
#![allow(unsafe_code)]

mod backlog;
mod batch;
mod cpus;
mod fd;
mod memory;
mod rlimits;
mod signals;
mod steering;
mod stream_send;
mod uring;

pub use backlog::{accept_waiting, connection_waiting};
pub use batch::{Gathered, MAX_DATAGRAMS, RECV_BATCH, RecvBatch, send_batch, send_gathered};
pub use cpus::allowed_cpus;
pub use fd::{
    dup_fd, glommio_listener, glommio_stream, glommio_udp, limit_send_buffer, reset, shutdown,
    shutdown_read,
};
pub use memory::collect_freed_memory;
pub use rlimits::{memlock_limit, nofile_limit, raise_nofile_limit, set_memlock_soft};
pub use signals::{StopSignals, block_stop_signals};
pub use steering::steer_udp_by_first_byte;
pub use stream_send::{MAX_IOVECS, send_vectored_now};
pub use uring::probe_io_uring;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The workspace lint denies `unsafe_code`, but any module could allow it again for
    /// itself; this keeps the allowance to this folder's `mod.rs`.
    #[test]
    fn only_sys_allows_unsafe_code() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let own = root.join("src/sys/mod.rs");
        let mut files = Vec::new();
        for dir in ["src", "tests", "examples", "benches"] {
            if root.join(dir).is_dir() {
                rust_files(&root.join(dir), &mut files);
            }
        }
        assert!(files.len() > 10, "found the sources: {files:?}");
        let allowing: Vec<_> = files
            .iter()
            .filter(|path| **path != own)
            .filter(|path| {
                let text = std::fs::read_to_string(path).expect("read");
                let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                [
                    "allow(unsafe_code",
                    "expect(unsafe_code",
                    "warn(unsafe_code",
                ]
                .iter()
                .any(|lint| text.contains(lint))
            })
            .collect();
        assert!(allowing.is_empty(), "unsafe_code allowed in {allowing:?}");
    }
}
