//! Where the workspace's own files are, for tests that read them (the deploy/ configs) or
//! build from them (the programs).

use std::path::{Path, PathBuf};

/// The workspace's root directory, the one holding the root `Cargo.toml`.
pub fn root() -> &'static Path {
    // The kit is the workspace member `testkit/`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the workspace root")
}

/// The repository's deploy/ directory.
pub fn deploy_dir() -> PathBuf {
    root().join("deploy")
}
