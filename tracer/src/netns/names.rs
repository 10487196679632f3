//! Network namespace inode → a name a person knows it by, for pwru's
//! `--output-netns-names`.
//!
//! A namespace has a name only where something bind-mounted (or linked) it
//! into a directory. pwru reads `/run/netns` alone (`getNetNSNames` in
//! `internal/pwru/output.go`), once at start. This reads, in this order, so
//! that the first name found for an inode wins:
//! - `/run/netns` and `/var/run/netns`: `ip netns add`, CNI plugins under
//!   containerd and CRI-O (`cni-<uuid>`), rootful podman (`netns-<uuid>`);
//! - `/run/docker/netns` and `/var/run/docker/netns`: Docker's sandboxes,
//!   named by sandbox id (`docker inspect -f '{{.NetworkSettings.SandboxKey}}'`);
//! - `/run/user/<uid>/netns`: rootless podman and other rootless runtimes.
//!
//! `/var/run` is usually a link to `/run`; a directory reached twice is read
//! once. Symbolic links into `/proc/<pid>/ns/net` (a common way to make
//! Docker namespaces visible to `ip netns`) count too: their target is stat'ed.
//!
//! The directories are read once by [`NetnsNames::scan`]. Namespaces are
//! created while a trace runs (a container starts), so asking for an inode
//! with no name reads them again, at most once per [`REFRESH_INTERVAL`]: an
//! event rate of a million per second from unnamed namespaces costs one
//! directory scan per second.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Directories whose entries name network namespaces, in order of preference.
pub const DIRS: [&str; 4] = ["/run/netns", "/var/run/netns", "/run/docker/netns", "/var/run/docker/netns"];
/// Holds one directory per user (`<uid>/netns`), for rootless runtimes.
pub const USER_RUN_DIR: &str = "/run/user";
/// Least time between two scans caused by unknown inodes.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Names of network namespaces by inode, as the `netns` column prints them.
#[derive(Debug)]
pub struct NetnsNames {
    dirs: Vec<PathBuf>,
    /// The user runtime directory to expand into `<dir>/<uid>/netns`, if any.
    user_dir: Option<PathBuf>,
    names: HashMap<u32, String>,
    refresh_interval: Duration,
    last_scan: Instant,
}

impl NetnsNames {
    /// Reads the usual directories ([`DIRS`], then `/run/user/*/netns`).
    /// Directories that do not exist or cannot be read are skipped: a
    /// namespace without a name is printed by inode.
    pub fn scan() -> Self {
        Self::scan_dirs(DIRS.iter().map(PathBuf::from).collect(), Some(PathBuf::from(USER_RUN_DIR)))
    }

    /// Reads `dirs` in order, then `<user_dir>/*/netns`.
    pub fn scan_dirs(dirs: Vec<PathBuf>, user_dir: Option<PathBuf>) -> Self {
        let mut names = Self {
            dirs,
            user_dir,
            names: HashMap::new(),
            refresh_interval: REFRESH_INTERVAL,
            last_scan: Instant::now(),
        };
        names.rescan();
        names
    }

    /// Changes the least time between two scans caused by unknown inodes
    /// (default [`REFRESH_INTERVAL`]); `Duration::ZERO` rescans on every miss.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The name of the namespace with this inode. An unknown inode makes the
    /// directories be read again, unless that was done less than the refresh
    /// interval ago.
    pub fn name(&mut self, inode: u32) -> Option<&str> {
        if !self.names.contains_key(&inode) && self.last_scan.elapsed() >= self.refresh_interval {
            self.rescan();
        }
        self.names.get(&inode).map(String::as_str)
    }

    /// The name known for this inode, without reading any directory.
    pub fn get(&self, inode: u32) -> Option<&str> {
        self.names.get(&inode).map(String::as_str)
    }

    /// How many namespaces have a name.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Reads every directory again. Names of namespaces that went away are
    /// kept: their events may still be in flight, and an inode is not reused
    /// while the namespace lives.
    pub fn rescan(&mut self) {
        self.last_scan = Instant::now();
        let mut dirs = self.dirs.clone();
        if let Some(user_dir) = &self.user_dir {
            dirs.extend(user_netns_dirs(user_dir));
        }
        let mut seen_dirs = Vec::new();
        let mut found = HashMap::new();
        for dir in dirs {
            // /var/run → /run: the same directory under two names is read once.
            let Ok(real) = fs::canonicalize(&dir) else { continue };
            if seen_dirs.contains(&real) {
                continue;
            }
            read_dir_into(&real, &mut found);
            seen_dirs.push(real);
        }
        // A name found now wins over one kept from an earlier scan.
        for (inode, name) in found {
            self.names.insert(inode, name);
        }
    }
}

/// `<user_dir>/<uid>/netns` for every numeric entry of `user_dir`, by uid.
fn user_netns_dirs(user_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(user_dir) else { return Vec::new() };
    let mut uids: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let uid = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((uid, e.path().join("netns")))
        })
        .collect();
    uids.sort();
    uids.into_iter().map(|(_, dir)| dir).collect()
}

/// Adds `inode → file name` for each non-directory entry of `dir`, where
/// the inode is not named yet. Entries that vanish or cannot be stat'ed
/// (a dangling link into /proc) are skipped.
fn read_dir_into(dir: &Path, found: &mut HashMap<u32, String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    // Stable names when two entries are the same namespace.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        // Follows links: a link to /proc/<pid>/ns/net is that namespace.
        let Ok(meta) = fs::metadata(entry.path()) else { continue };
        if meta.is_dir() {
            continue;
        }
        let Ok(inode) = u32::try_from(meta.ino()) else { continue };
        found.entry(inode).or_insert(name);
    }
}

#[cfg(test)]
mod tests;
