//! One skbtrace process under measurement: the test kit's process (started
//! with `--ready-file`, printing to /dev/null, killed in Drop if a benchmark
//! fails half-way), observed through /proc (memory, CPU time, its eBPF
//! programs' run statistics) and stopped with SIGINT, after which its run
//! summary says how many events it printed and lost.
//!
//! The binary may be an older revision's (`--baseline`), which may not take
//! every flag of today's: [`Binary`] reads its `--help` to tell.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use testkit::process::Skbtrace;

/// How long skbtrace may take to attach, or to exit after SIGINT.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often the ready file and the exit are polled.
const POLL: Duration = Duration::from_millis(1);
/// How often CPU time is polled while waiting for idleness: the clock tick.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// An skbtrace binary and the revision it was built from.
pub struct Binary {
    pub path: PathBuf,
    /// `abc1234`, or `abc1234+changes` for a work tree that differs from it.
    pub revision: String,
    /// Its `--help`, to tell which flags it takes.
    help: String,
}

impl Binary {
    pub fn new(path: &Path, revision: String) -> anyhow::Result<Self> {
        let out = Command::new(path).arg("--help").output().with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!("{} --help failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(Self { path: path.to_owned(), revision, help: String::from_utf8_lossy(&out.stdout).into_owned() })
    }

    /// The first flag of `args` that this binary does not take, if any.
    pub fn missing<'a>(&self, args: &[&'a str]) -> Option<&'a str> {
        args.iter().copied().filter(|a| a.starts_with("--")).find(|flag| !takes(&self.help, flag))
    }

    /// Whether it writes `--summary-file` (before that flag, it only printed
    /// its summary on stderr).
    fn writes_summary_file(&self) -> bool {
        takes(&self.help, "--summary-file")
    }
}

/// Whether `help` lists `flag` (as itself, not as the start of a longer flag).
fn takes(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        help[at + flag.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

/// The test kit passes `--ready-file R --summary-file S` first; a binary from
/// before `--summary-file` gets only the first pair, through a shell that
/// `exec`s it (so the pid the benchmark watches is skbtrace's). `$0` is the
/// binary.
const WITHOUT_SUMMARY_FILE: &str = r#"ready=$2; shift 4; exec "$0" --ready-file "$ready" "$@""#;

pub struct Tracer(testkit::process::Tracer);

/// What one run printed and lost, from its summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub printed: u64,
    pub lost: u64,
    /// `--explain`: stories told (the verdicts' counts), and those ended
    /// early because too many were open.
    pub stories: u64,
    pub evicted: u64,
}

impl std::ops::AddAssign for Events {
    fn add_assign(&mut self, other: Self) {
        self.printed += other.printed;
        self.lost += other.lost;
        self.stories += other.stories;
        self.evicted += other.evicted;
    }
}

/// From /proc/PID/status, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub hwm_kib: u64,
    pub rss_kib: u64,
}

/// Sums over the process's eBPF programs, from /proc/PID/fdinfo. The kernel
/// counts only while `kernel.bpf_stats_enabled` is 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub programs: u32,
    /// The kind of the first program: which attach path skbtrace took.
    pub kind: &'static str,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl Tracer {
    /// Starts `bin ARGS` with stdout on /dev/null, without waiting for it.
    pub fn spawn(bin: &Binary, args: &[&str]) -> anyhow::Result<Self> {
        Self::start(bin, args, false)
    }

    /// As [`Tracer::spawn`], with stdout kept for [`Tracer::stop_with_json`].
    pub fn spawn_capturing(bin: &Binary, args: &[&str]) -> anyhow::Result<Self> {
        Self::start(bin, args, true)
    }

    fn start(bin: &Binary, args: &[&str], capture_stdout: bool) -> anyhow::Result<Self> {
        let command = if bin.writes_summary_file() {
            Skbtrace::new(&bin.path)
        } else {
            Skbtrace::wrapped("sh", [OsStr::new("-c"), OsStr::new(WITHOUT_SUMMARY_FILE), bin.path.as_os_str()])
        };
        let mut command = command.args(args).poll(POLL).limits(PATIENCE, PATIENCE);
        if !capture_stdout {
            command = command.stdout(Stdio::null());
        }
        Ok(Self(command.spawn()?))
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Waits for the ready file; returns the time since spawn.
    pub fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        self.0.wait_ready()
    }

    /// Waits until skbtrace has used no CPU for `quiet` (it has finished
    /// starting up and sleeps in its event loop); returns the time since spawn
    /// at which it last used CPU, to the resolution of the clock tick.
    pub fn wait_idle(&self, quiet: Duration) -> anyhow::Result<Duration> {
        let spawned = self.0.spawned();
        let mut last = self.cpu_time()?;
        let mut last_busy = spawned.elapsed();
        loop {
            std::thread::sleep(IDLE_POLL);
            let now = self.cpu_time()?;
            if now != last {
                last = now;
                last_busy = spawned.elapsed();
            } else if spawned.elapsed() - last_busy >= quiet {
                return Ok(last_busy);
            }
            if spawned.elapsed() > PATIENCE {
                bail!("skbtrace was still busy {PATIENCE:?} after it started");
            }
        }
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = |key: &str| status_kib(&text, key).with_context(|| format!("{path} has no {key}"));
        Ok(Memory { hwm_kib: kib("VmHWM")?, rss_kib: kib("VmRSS")? })
    }

    /// User plus system CPU time so far, all threads.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let path = format!("/proc/{}/stat", self.pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the parenthesised command name, which may hold spaces:
        // state is field 3, utime 14, stime 15.
        let rest = text.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            fields.get(i).and_then(|f| f.parse().ok()).context("malformed /proc/PID/stat")
        };
        let total = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_nanos(total * 1_000_000_000 / hz))
    }

    pub fn prog_stats(&self) -> anyhow::Result<ProgStats> {
        let dir = format!("/proc/{}/fd", self.pid());
        let mut stats = ProgStats::default();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
            let entry = entry?;
            // Descriptors come and go (tokio, the ready file): skip the vanished.
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            if target.as_os_str() != "anon_inode:bpf-prog" {
                continue;
            }
            let info = format!("/proc/{}/fdinfo/{}", self.pid(), entry.file_name().to_string_lossy());
            let Ok(text) = std::fs::read_to_string(&info) else { continue };
            let field = |key: &str| fdinfo_value(&text, key).with_context(|| format!("{info} has no {key}"));
            if stats.programs == 0 {
                stats.kind = prog_kind(field("prog_type")?);
            }
            stats.programs += 1;
            stats.run_time_ns += field("run_time_ns")?;
            stats.run_cnt += field("run_cnt")?;
        }
        Ok(stats)
    }

    /// SIGINT, wait for the exit, and read the summary.
    pub fn stop(self) -> anyhow::Result<Events> {
        Ok(self.finish()?.0)
    }

    /// As [`Tracer::stop`], with the JSON lines of a `--output-json` run
    /// started by [`Tracer::spawn_capturing`] (its summary left out).
    pub fn stop_with_json(self) -> anyhow::Result<(Events, Vec<serde_json::Value>)> {
        let (events, done) = self.finish()?;
        Ok((events, done.events()?))
    }

    fn finish(self) -> anyhow::Result<(Events, testkit::process::Finished)> {
        let done = self.0.stop()?;
        if !done.status.success() {
            bail!("skbtrace failed ({}): {}", done.status, done.stderr.trim());
        }
        let events = match done.summary() {
            Ok(s) => Events { printed: s.events, lost: s.lost, stories: s.stories(), evicted: s.stories_evicted },
            // A binary from before --summary-file (see WITHOUT_SUMMARY_FILE).
            Err(e) => stderr_summary(&done.stderr).with_context(|| format!("{e:#}"))?,
        };
        Ok((events, done))
    }
}

/// The summary of a binary from before `--summary-file`, from its standard
/// error: `skbtrace: N events` and, when any were lost, `skbtrace: lost M
/// events (…)` (as xtask's bench read it then). Such a binary has no --explain.
fn stderr_summary(stderr: &str) -> Option<Events> {
    let mut printed = None;
    let mut lost = 0;
    for rest in stderr.lines().filter_map(|l| l.strip_prefix("skbtrace: ")) {
        if let Some(m) = rest.strip_prefix("lost ").and_then(|r| r.split_whitespace().next()) {
            lost = m.parse().ok()?;
        } else if let Some(Ok(n)) = rest.strip_suffix(" events").map(str::parse) {
            printed = Some(n);
        }
    }
    printed.map(|printed| Events { printed, lost, ..Events::default() })
}

/// `prog_type` numbers (enum bpf_prog_type) as skbtrace's backends name them.
fn prog_kind(prog_type: u64) -> &'static str {
    match prog_type {
        2 => "kprobe",
        5 => "tracepoint",
        17 => "raw_tp",
        26 => "tp_btf",
        _ => "other",
    }
}

/// `VmHWM:   71680 kB` → 71680.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `run_cnt: 1234` → 1234.
fn fdinfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_on_stderr_with_and_without_losses() {
        let quiet = "skbtrace: attached 1, skipped 0 in 0.0s\nskbtrace: 0 events\n";
        assert_eq!(stderr_summary(quiet), Some(Events::default()));
        let lossy = "skbtrace: lost 17 events (the ring buffer was full; try a larger --ring-size)\n\
                     skbtrace: 1000 events\n";
        assert_eq!(stderr_summary(lossy), Some(Events { printed: 1000, lost: 17, ..Events::default() }));
        assert_eq!(stderr_summary("skbtrace: attached 1, skipped 0 in 0.0s\n"), None);
    }

    #[test]
    fn flags_in_help() {
        let help = "      --filter-func <REGEX>\n      --output-ct\n      --output-tuple[=<BOOL>]\n";
        assert!(takes(help, "--filter-func") && takes(help, "--output-ct") && takes(help, "--output-tuple"));
        assert!(!takes(help, "--filter") && !takes(help, "--output") && !takes(help, "--explain"));
    }

    #[test]
    fn proc_fields() {
        assert_eq!(status_kib("Name:\tskbtrace\nVmHWM:\t   71680 kB\nVmRSS:\t 50812 kB\n", "VmRSS"), Some(50812));
        assert_eq!(fdinfo_value("prog_id:\t43280\nrun_time_ns:\t99\nrun_cnt:\t3\n", "run_cnt"), Some(3));
    }
}
