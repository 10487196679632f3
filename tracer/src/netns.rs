//! Running a lookup inside another network namespace, on a thread of its own
//! so that the rest of skbtrace stays where it is.

pub mod names;

use std::{fs::File, os::fd::AsRawFd as _, path::Path};

use anyhow::{Context as _, anyhow};

pub fn within<T: Send>(path: &Path, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let ns = File::open(path).with_context(|| format!("opening network namespace {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a netns descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!(
                    "entering network namespace {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("network namespace lookup thread panicked"))?
    })
}
