//! One skbtrace process under measurement: the test kit's process (started
//! with `--ready-file`, printing to /dev/null, killed in Drop if a benchmark
//! fails half-way), observed through /proc (memory, CPU time, its eBPF
//! programs' run statistics) and stopped with SIGINT, after which its run
//! summary says how many events it printed and lost.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};
use testkit::process::Skbtrace;

/// How long skbtrace may take to attach, or to exit after SIGINT.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often the ready file and the exit are polled.
const POLL: Duration = Duration::from_millis(1);
/// How often CPU time is polled while waiting for idleness: the clock tick.
const IDLE_POLL: Duration = Duration::from_millis(10);

pub struct Tracer(testkit::process::Tracer);

/// What one run printed and lost, from its summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub printed: u64,
    pub lost: u64,
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
    pub fn spawn(bin: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let tracer =
            Skbtrace::new(bin).args(args).stdout(Stdio::null()).poll(POLL).limits(PATIENCE, PATIENCE).spawn()?;
        Ok(Self(tracer))
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
        let done = self.0.stop()?;
        if !done.status.success() {
            bail!("skbtrace failed ({}): {}", done.status, done.stderr.trim());
        }
        let summary = done.summary()?;
        Ok(Events { printed: summary.events, lost: summary.lost })
    }
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
    fn proc_fields() {
        assert_eq!(status_kib("Name:\tskbtrace\nVmHWM:\t   71680 kB\nVmRSS:\t 50812 kB\n", "VmRSS"), Some(50812));
        assert_eq!(fdinfo_value("prog_id:\t43280\nrun_time_ns:\t99\nrun_cnt:\t3\n", "run_cnt"), Some(3));
    }
}
