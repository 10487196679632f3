//! Running skbtrace the way a user does: started with `--ready-file` and
//! `--summary-file`, waited on through its ready file rather than sleeps,
//! with a bound on every wait, and killed in Drop if the caller gave up on it.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use testkit::process::Skbtrace;
//! let tracer = Skbtrace::new("target/debug/skbtrace").args(["--filter-func", "kfree_skb"]).start()?;
//! // ... make traffic ...
//! let done = tracer.stop()?; // SIGINT, as Ctrl-C
//! assert!(done.status.success());
//! println!("{} events", done.summary()?.events);
//! # Ok(())
//! # }
//! ```

use std::{
    ffi::OsStr,
    fs::File,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::summary::Summary;

/// How long skbtrace may take to be ready, and to exit once asked. Bounds,
/// not expectations: attaching or detaching ~1,400 kprobes one by one in a
/// TCG VM takes about a minute each.
const DEFAULT_LIMIT: Duration = Duration::from_secs(300);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Names in a run's directory.
const READY: &str = "ready";
const SUMMARY: &str = "summary.json";

/// An skbtrace command line, before it starts.
pub struct Skbtrace {
    command: Command,
    /// This run's own directory (ready file, summary, output), made at spawn.
    files: Files,
    capture_stdout: bool,
    capture_stderr: bool,
    poll: Duration,
    ready_limit: Duration,
    exit_limit: Duration,
}

impl Skbtrace {
    /// skbtrace at `bin`, standard input on /dev/null, standard output and
    /// error into files that [`Finished`] holds.
    pub fn new(bin: impl AsRef<OsStr>) -> Self {
        Self::wrapped(bin, [""; 0])
    }

    /// `program` with `leading` arguments before skbtrace's own flags: a
    /// stand-in for skbtrace in tests (`sh -c SCRIPT NAME`).
    pub fn wrapped(program: impl AsRef<OsStr>, leading: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let files = Files { dir: std::env::temp_dir().join(format!("skbtrace-run-{}-{seq}", std::process::id())) };
        let mut command = Command::new(program);
        command.args(leading);
        // First, so that they come before a `-- CMD` the caller adds.
        command.arg("--ready-file").arg(files.dir.join(READY)).arg("--summary-file").arg(files.dir.join(SUMMARY));
        command.stdin(Stdio::null());
        Skbtrace {
            command,
            files,
            capture_stdout: true,
            capture_stderr: true,
            poll: Duration::from_millis(20),
            ready_limit: DEFAULT_LIMIT,
            exit_limit: DEFAULT_LIMIT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.command.args(args);
        self
    }

    /// Sets an environment variable for skbtrace.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Standard output goes to `stdio` instead of into [`Finished::stdout`].
    pub fn stdout(mut self, stdio: impl Into<Stdio>) -> Self {
        self.command.stdout(stdio);
        self.capture_stdout = false;
        self
    }

    /// Standard error goes to `stdio` instead of into [`Finished::stderr`].
    pub fn stderr(mut self, stdio: impl Into<Stdio>) -> Self {
        self.command.stderr(stdio);
        self.capture_stderr = false;
        self
    }

    /// Starts skbtrace with SIGINT ignored, as a shell starts a background job.
    pub fn ignore_sigint(mut self) -> Self {
        // SAFETY: signal(2) is async-signal-safe, the only call between fork and exec.
        unsafe {
            self.command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        self
    }

    /// How often the ready file and the exit are checked (20 ms unless set).
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Bounds on the wait for ready and for the exit (300 s each unless set).
    pub fn limits(mut self, ready: Duration, exit: Duration) -> Self {
        self.ready_limit = ready;
        self.exit_limit = exit;
        self
    }

    /// Starts skbtrace without waiting for it to be ready.
    pub fn spawn(mut self) -> anyhow::Result<Tracer> {
        let files = self.files;
        std::fs::create_dir_all(&files.dir).with_context(|| format!("creating {}", files.dir.display()))?;
        let ready = files.dir.join(READY);
        let summary = files.dir.join(SUMMARY);
        if self.capture_stdout {
            self.command.stdout(files.create("stdout")?);
        }
        if self.capture_stderr {
            self.command.stderr(files.create("stderr")?);
        }
        let spawned = Instant::now();
        let program = self.command.get_program().to_string_lossy().into_owned();
        let child = self.command.spawn().with_context(|| format!("starting {program}"))?;
        Ok(Tracer {
            child: Some(child),
            files,
            ready,
            summary,
            spawned,
            poll: self.poll,
            ready_limit: self.ready_limit,
            exit_limit: self.exit_limit,
        })
    }

    /// Starts skbtrace and waits until it says every probe is attached.
    pub fn start(self) -> anyhow::Result<Tracer> {
        let mut tracer = self.spawn()?;
        tracer.wait_ready()?;
        Ok(tracer)
    }
}

/// The run's own directory: ready file, summary, captured output.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn create(&self, name: &str) -> anyhow::Result<File> {
        let path = self.dir.join(name);
        File::create(&path).with_context(|| format!("creating {}", path.display()))
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running skbtrace.
pub struct Tracer {
    /// `None` once reaped.
    child: Option<Child>,
    files: Files,
    ready: PathBuf,
    summary: PathBuf,
    spawned: Instant,
    poll: Duration,
    ready_limit: Duration,
    exit_limit: Duration,
}

/// A finished skbtrace.
pub struct Finished {
    pub status: ExitStatus,
    /// What it printed, when captured (else empty).
    pub stdout: String,
    pub stderr: String,
    summary: Option<Summary>,
}

impl Tracer {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// When it was started.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Waits until the ready file exists; returns the time since spawn. An
    /// exit before then, or no ready file within the limit, is an error that
    /// quotes its standard error.
    pub fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let child = self.child.as_mut().context("skbtrace was already reaped")?;
        loop {
            if self.ready.exists() {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = child.try_wait().context("polling skbtrace")? {
                bail!("skbtrace exited ({status}) before it was ready:\n{}", self.files.read("stderr"));
            }
            if self.spawned.elapsed() > self.ready_limit {
                bail!("skbtrace was not ready after {:?}:\n{}", self.ready_limit, self.files.read("stderr"));
            }
            std::thread::sleep(self.poll);
        }
    }

    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("skbtrace was already reaped")?;
        // SAFETY: signalling our own child, which is not reaped yet, so its pid is not reused.
        if unsafe { libc::kill(child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling skbtrace");
        }
        Ok(())
    }

    /// Its standard output, when [`Skbtrace::stdout`] made it a pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// Its standard error, when [`Skbtrace::stderr`] made it a pipe.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let child = self.child.as_mut().context("skbtrace was already reaped")?;
        child.try_wait().context("polling skbtrace")
    }

    /// Sends SIGINT (what Ctrl-C does) and waits for the exit.
    pub fn stop(self) -> anyhow::Result<Finished> {
        self.signal(libc::SIGINT)?;
        self.wait()
    }

    /// Waits for skbtrace to exit by itself; after the limit, kills it and
    /// fails. A summary file that does not parse is an error too.
    pub fn wait(mut self) -> anyhow::Result<Finished> {
        let mut child = self.child.take().context("skbtrace was already reaped")?;
        let asked = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().context("polling skbtrace")? {
                break status;
            }
            if asked.elapsed() > self.exit_limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("skbtrace did not exit within {:?}:\n{}", self.exit_limit, self.files.read("stderr"));
            }
            std::thread::sleep(self.poll);
        };
        // skbtrace creates the file when it starts and writes it at the end;
        // a run that ended otherwise (a closed reader, say) leaves it empty.
        let written = std::fs::metadata(&self.summary).is_ok_and(|m| m.len() > 0);
        let summary = if written { Some(Summary::read(&self.summary)?) } else { None };
        Ok(Finished { status, stdout: self.files.read("stdout"), stderr: self.files.read("stderr"), summary })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Finished {
    /// The summary it wrote at exit.
    pub fn summary(&self) -> anyhow::Result<&Summary> {
        self.summary.as_ref().with_context(|| format!("skbtrace ({}) wrote no summary:\n{}", self.status, self.stderr))
    }

    /// Every line of a `--output-json` run, summary included; a line that is
    /// not JSON is an error.
    pub fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        json_lines(&self.stdout)
    }

    /// The events of a `--output-json` run (without the closing summary).
    pub fn events(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut lines = self.json_lines()?;
        lines.retain(|v| v.get("summary").is_none());
        Ok(lines)
    }
}

/// Parses every line of `text` as JSON, naming the first that is not.
pub fn json_lines(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        assert_eq!(json_lines("{\"a\":1}\n{\"b\":2}\n").unwrap().len(), 2);
        let err = json_lines("{\"a\":1}\n{\"skb\":\"0xff\n").unwrap_err();
        assert!(format!("{err:#}").contains("0xff"), "{err:#}");
    }

    /// `sh` stands in for skbtrace: it writes the two files as skbtrace would.
    fn fake(script: &str) -> Skbtrace {
        Skbtrace::wrapped("sh", ["-c", script, "fake-skbtrace"]).poll(Duration::from_millis(5))
    }

    #[test]
    fn waits_for_ready_and_reads_the_summary() {
        let summary = r#"{"summary":{"events":1,"lost":0,"lost_by_probe":[],"drops":[],"backend":"tracepoint","attached":2,"skipped":0,"attach_seconds":0.1,"detached":2,"detach_seconds":0.0,"end":"signal","command":null,"assertions":[],"exit_code":0,"verdicts":[],"stories_evicted":0}}"#;
        // $2 is the ready file, $4 the summary file. The trap comes first:
        // SIGINT may follow the ready file at once.
        let script = format!(
            "trap 'exit 0' INT; echo event; echo '{summary}' > \"$4\"; touch \"$2\"; while :; do sleep 0.01; done"
        );
        let mut tracer = fake(&script).spawn().unwrap();
        tracer.wait_ready().unwrap();
        let done = tracer.stop().unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, "event\n");
        assert_eq!(done.summary().unwrap().attached, 2);
    }

    #[test]
    fn an_exit_before_ready_is_an_error_with_stderr() {
        let err = fake("echo no BTF here >&2; exit 1").start().err().unwrap();
        assert!(format!("{err:#}").contains("no BTF here"), "{err:#}");
    }

    #[test]
    fn a_summary_that_does_not_parse_is_an_error() {
        let done = fake("touch \"$2\"; echo '{\"summary\":{\"events\":1}}' > \"$4\"").start().unwrap().wait();
        assert!(done.is_err());
    }

    #[test]
    fn a_tracer_that_does_not_exit_is_killed_and_an_error() {
        let tracer =
            fake("touch \"$2\"; while :; do sleep 0.01; done").limits(DEFAULT_LIMIT, Duration::from_millis(50));
        let err = tracer.start().unwrap().wait().err().unwrap();
        assert!(format!("{err:#}").contains("did not exit"), "{err:#}");
    }
}
