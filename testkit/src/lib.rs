//! What skbtrace's end-to-end tests and its developer tasks (`cargo xtask
//! bench`, `demo`, `vm`) share, so that each exists once:
//! - `ci`: the rule for tests that need root or a VM: skip outside CI, fail under CI;
//! - `netns`: throwaway network namespaces and veth pairs, removed in Drop;
//! - `process`: an skbtrace process started with `--ready-file` and `--summary-file`,
//!   bounded waits for ready and exit, killed in Drop;
//! - `summary`: the run summary skbtrace writes at exit, typed;
//! - `vm`: a qemu VM booting a Debian kernel that runs a script.

pub mod ci;
pub mod netns;
pub mod process;
pub mod summary;
pub mod vm;

use std::path::PathBuf;

/// The workspace root (the test kit's parent directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}
