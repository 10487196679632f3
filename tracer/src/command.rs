//! CMD, the command run under trace (`skbtrace … -- CMD [ARGS…]`): found
//! before anything is attached, started once every probe is, directly (no
//! shell) in a process group of its own with skbtrace's standard streams,
//! and, under sudo, as the invoking user.

use std::{
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::summary::CommandOutcome;

/// CMD cannot be run: exit 127 (not found) or 126 (not executable), as a
/// shell would, before anything is attached.
#[derive(Debug)]
pub struct CannotRun {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CannotRun {}

/// An error after CMD started: skbtrace exits 125, not 1, so that its
/// failure is not taken for CMD's own status 1.
#[derive(Debug)]
pub struct AfterStart;

impl std::fmt::Display for AfterStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("while the command ran")
    }
}

/// What to run, checked.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// `argv[0]` found on PATH.
    pub program: PathBuf,
    /// uid, gid and home directory to run as, under sudo.
    pub user: Option<User>,
    /// How long to keep tracing after CMD exits.
    pub grace: Duration,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// `HOME`, `USER` and `LOGNAME` from /etc/passwd, when it has the uid.
    pub home: Option<(String, String)>,
}

impl CommandSpec {
    pub fn new(argv: Vec<String>, as_root: bool, grace: Duration, timeout: Option<Duration>) -> anyhow::Result<Self> {
        let name = argv.first().context("no command after --")?;
        let program = find(name)?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root && !as_root { sudo_user()? } else { None };
        Ok(Self { argv, program, user, grace, timeout })
    }

    /// Starts CMD; it inherits stdin, stdout and stderr.
    pub fn spawn(&self) -> anyhow::Result<Running> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg0(&self.argv[0]).args(&self.argv[1..]).process_group(0);
        if let Some(u) = &self.user {
            // std drops the supplementary groups when it sets the uid as root.
            cmd.uid(u.uid).gid(u.gid);
            if let Some((name, home)) = &u.home {
                cmd.env("HOME", home).env("USER", name).env("LOGNAME", name);
            }
        }
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", self.argv[0]))?;
        let pid = child.id().context("the command exited before its pid was read")?;
        Ok(Running { child, pid, argv: self.argv.clone(), started, exited: None, timeout: self.timeout })
    }
}

/// `name` as a shell finds it: a path when it has a slash, else on PATH.
fn find(name: &str) -> anyhow::Result<PathBuf> {
    let not_found = |why: String| CannotRun { code: 127, message: why };
    if name.contains('/') {
        let path = Path::new(name);
        if !path.exists() {
            return Err(not_found(format!("{name}: no such file")).into());
        }
        return which::which(path)
            .map_err(|_| CannotRun { code: 126, message: format!("{name}: not an executable file") }.into());
    }
    which::which(name).map_err(|_| not_found(format!("{name}: command not found on PATH")).into())
}

/// The user sudo was run by, from `SUDO_UID` and `SUDO_GID`.
fn sudo_user() -> anyhow::Result<Option<User>> {
    let Ok(uid) = std::env::var("SUDO_UID") else { return Ok(None) };
    let uid: u32 = uid.parse().with_context(|| format!("SUDO_UID {uid:?} is not a number"))?;
    let gid = match std::env::var("SUDO_GID") {
        Ok(gid) => gid.parse().with_context(|| format!("SUDO_GID {gid:?} is not a number"))?,
        Err(_) => uid,
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    Ok(Some(User { uid, gid, home: home_of(&passwd, uid) }))
}

/// Name and home directory of `uid` in /etc/passwd's text. Read by hand, not
/// through getpwuid: a statically linked binary has no NSS modules to call.
pub fn home_of(passwd: &str, uid: u32) -> Option<(String, String)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| (f[0].to_owned(), f[5].to_owned()))
    })
}

/// CMD while it runs.
pub struct Running {
    child: tokio::process::Child,
    /// Also its process group's id.
    pid: u32,
    argv: Vec<String>,
    started: Instant,
    exited: Option<(ExitStatus, Duration)>,
    pub timeout: Option<Duration>,
}

impl Running {
    pub fn running(&self) -> bool {
        self.exited.is_none()
    }

    /// Sends `signal` to CMD's whole process group.
    pub fn signal(&self, signal: i32) {
        if self.running() {
            // SAFETY: kill has no memory preconditions; a negative pid names
            // the process group CMD leads.
            unsafe { libc::kill(-(self.pid as i32), signal) };
        }
    }

    /// Waits for CMD to exit. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let status = self.child.wait().await?;
        self.exited = Some((status, self.started.elapsed()));
        Ok(())
    }

    pub fn outcome(&self) -> CommandOutcome {
        let (status, seconds) = match self.exited {
            Some((s, took)) => (Some(s), took.as_secs_f64()),
            None => (None, self.started.elapsed().as_secs_f64()),
        };
        CommandOutcome {
            argv: self.argv.clone(),
            pid: self.pid,
            status: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            seconds,
        }
    }
}

impl Drop for Running {
    /// skbtrace is going away early (an error): CMD does not outlive it.
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_as_a_shell_finds_them() {
        assert!(find("sh").unwrap().is_absolute());
        let e = find("no-such-command-skbtrace").unwrap_err();
        assert_eq!(e.downcast_ref::<CannotRun>().map(|c| c.code), Some(127));
        let e = find("/no/such/file").unwrap_err();
        assert_eq!(e.downcast_ref::<CannotRun>().map(|c| c.code), Some(127));
        let e = find("/etc/passwd").unwrap_err();
        assert_eq!(e.downcast_ref::<CannotRun>().map(|c| c.code), Some(126));
    }

    #[test]
    fn home_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nci:x:1001:1001:CI,,,:/home/ci:/bin/sh\nbad line\n";
        assert_eq!(home_of(passwd, 1001), Some(("ci".into(), "/home/ci".into())));
        assert_eq!(home_of(passwd, 5), None);
    }
}
