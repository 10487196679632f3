//! Running skbtrace the way a user does, and waiting on its ready file rather
//! than on sleeps.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// The skbtrace binary under test (`SKBTRACE_BIN`, else target/debug).
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKBTRACE_BIN") {
        return PathBuf::from(p);
    }
    let path = xtask::workspace_root().join("target/debug/skbtrace");
    assert!(path.exists(), "{} is missing: run `cargo xtask test` (it builds skbtrace first)", path.display());
    path
}

/// Runs skbtrace to completion with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("running skbtrace")
}

/// Waits until `child` writes its `--ready-file`; fails the test after
/// `limit`, and returns the exit status if it exits before it is ready.
pub fn wait_for_ready(child: &mut Child, ready: &Path, limit: Duration) -> Result<(), ExitStatus> {
    let started = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("polling skbtrace") {
            return Err(status);
        }
        assert!(started.elapsed() < limit, "skbtrace not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits for `child` to exit; after `limit` kills it and fails the test
/// with `why`.
pub fn wait_for_exit(child: &mut Child, limit: Duration, why: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("polling skbtrace") {
            return s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{why}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A skbtrace running in the background until [`Tracer::stop`].
pub struct Tracer {
    child: Option<Child>,
    ready: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Every JSON object of a `--output-json` run, summary included.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    /// The events of a `--output-json` run (without the closing summary).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.json_lines().into_iter().filter(|v| v.get("summary").is_none()).collect()
    }
}

impl Tracer {
    /// Starts skbtrace and waits until it says every probe is attached.
    pub fn start(args: &[&str]) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("skbtrace-e2e-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        let ready = dir.join("ready");
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        let child = Command::new(bin())
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starting skbtrace");
        let mut t = Self { child: Some(child), ready, stdout, stderr };
        t.wait_ready();
        t
    }

    fn wait_ready(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Err(status) = wait_for_ready(child, &self.ready, Duration::from_secs(120)) {
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            panic!("skbtrace exited ({status}) before it was ready:\n{err}");
        }
    }

    /// Sends SIGINT (what Ctrl-C does) and collects the output.
    pub fn stop(self) -> Finished {
        self.signal(libc::SIGINT);
        self.wait()
    }

    pub fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
    }

    /// Waits (bounded) for skbtrace to exit by itself.
    pub fn wait(mut self) -> Finished {
        let mut child = self.child.take().expect("running");
        let status = wait_for_exit(&mut child, Duration::from_secs(60), "skbtrace did not exit within 60 s");
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(dir) = self.ready.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
