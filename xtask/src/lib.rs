//! skbtrace's developer tasks, as a library so that the end-to-end tests can
//! boot the test VM too.

pub mod setup;
pub mod vm;

use std::path::PathBuf;

/// The workspace root (xtask's parent directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}
