//! Directories of ordinary files stand in for bind mounts: a bind-mounted
//! namespace is a file whose inode is the namespace's, and so is any file.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("skbtrace-netns-names-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating a temp dir");
        Self(dir)
    }

    /// Creates `rel` (and its directories) and returns its inode.
    fn file(&self, rel: &str) -> u32 {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "").unwrap();
        u32::try_from(fs::metadata(&path).unwrap().ino()).expect("a 32-bit inode on this file system")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn names_come_from_every_directory_in_order() {
    let t = TempDir::new();
    let blue = t.file("run/netns/blue");
    let cni = t.file("run/netns/cni-1234");
    let sandbox = t.file("docker/netns/0123456789ab");
    let rootless = t.file("user/1000/netns/netns-abcd");
    fs::create_dir_all(t.0.join("run/netns/subdir")).unwrap();
    t.file("user/not-a-uid/netns/ignored");

    let dirs = vec![t.0.join("run/netns"), t.0.join("missing"), t.0.join("docker/netns")];
    let mut names = NetnsNames::scan_dirs(dirs, Some(t.0.join("user")));
    assert_eq!(names.name(blue), Some("blue"));
    assert_eq!(names.name(cni), Some("cni-1234"));
    assert_eq!(names.name(sandbox), Some("0123456789ab"));
    assert_eq!(names.name(rootless), Some("netns-abcd"));
    assert_eq!(names.len(), 4, "directories and non-uid user entries are not namespaces");
}

#[test]
fn the_first_directory_wins_and_links_are_followed() {
    let t = TempDir::new();
    let inode = t.file("run/netns/mine");
    fs::create_dir_all(t.0.join("docker/netns")).unwrap();
    std::os::unix::fs::symlink(t.0.join("run/netns/mine"), t.0.join("docker/netns/abcdef")).unwrap();
    std::os::unix::fs::symlink(t.0.join("nowhere"), t.0.join("docker/netns/dangling")).unwrap();
    // The same directory under a second name (as /var/run/netns is /run/netns).
    std::os::unix::fs::symlink(t.0.join("run"), t.0.join("var-run")).unwrap();

    let dirs = vec![t.0.join("docker/netns"), t.0.join("var-run/netns"), t.0.join("run/netns")];
    let names = NetnsNames::scan_dirs(dirs.clone(), None);
    assert_eq!(names.get(inode), Some("abcdef"), "a link names what it points to");
    let names = NetnsNames::scan_dirs(dirs.into_iter().rev().collect(), None);
    assert_eq!(names.get(inode), Some("mine"), "the first directory read wins");
    assert_eq!(names.len(), 1);
}

#[test]
fn unknown_inodes_rescan_at_most_once_per_interval() {
    let t = TempDir::new();
    let dirs = vec![t.0.join("netns")];
    fs::create_dir_all(&dirs[0]).unwrap();

    let mut slow = NetnsNames::scan_dirs(dirs.clone(), None).with_refresh_interval(Duration::from_secs(3600));
    let mut eager = NetnsNames::scan_dirs(dirs, None).with_refresh_interval(Duration::ZERO);
    assert!(slow.is_empty());
    let late = t.file("netns/late");
    assert_eq!(slow.name(late), None, "scanned less than an interval ago");
    assert_eq!(eager.name(late), Some("late"), "a miss rescans");

    // Names of namespaces that went away are kept for events still in flight.
    fs::remove_file(t.0.join("netns/late")).unwrap();
    eager.rescan();
    assert_eq!(eager.name(late), Some("late"));
    slow.rescan();
    assert_eq!(slow.get(late), None);
}

/// With the real `ip netns add`: root only; under CI a missing privilege fails.
#[test]
fn finds_a_namespace_made_by_ip_netns_add() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "needs root (ip netns add) and CI is set");
        eprintln!("finds_a_namespace_made_by_ip_netns_add: SKIPPED: needs root (ip netns add)");
        return;
    }
    let name = format!("skbtrace-names-{}", std::process::id());
    let created = Command::new("ip").args(["netns", "add", &name]).status().expect("running ip (iproute2)");
    assert!(created.success(), "ip netns add {name} failed");
    struct Delete<'a>(&'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", self.0]).status();
        }
    }
    let _delete = Delete(&name);

    let path = Path::new("/run/netns").join(&name);
    let inode = u32::try_from(fs::metadata(&path).unwrap().ino()).unwrap();
    // The mount's inode is the namespace's, as the kernel reports it to eBPF.
    let ns = Command::new("ip").args(["netns", "exec", &name, "readlink", "/proc/self/ns/net"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ns.stdout).trim(), format!("net:[{inode}]"));
    let mut names = NetnsNames::scan();
    assert_eq!(names.name(inode), Some(name.as_str()));
}
