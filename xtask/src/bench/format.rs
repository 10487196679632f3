//! Decode and format throughput on one core. The printers live in the
//! `tracer` binary crate, which xtask cannot link, so the measuring loop is
//! the tracer's own ignored test `output::tests::bench_decode_and_format`:
//! this runs it in a release build, pinned to one CPU, and reads the
//! `BENCH …` lines it prints.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

const TEST: &str = "output::tests::bench_decode_and_format";

/// Events per second of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Packet bytes to tuple.
    pub decode: f64,
    /// Decode plus one text line.
    pub text: f64,
    /// Decode plus one JSON line.
    pub json: f64,
}

pub fn measure(root: &Path, runs: usize) -> anyhow::Result<Vec<Rates>> {
    let cargo_test = |extra: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root).args(["test", "--quiet", "--release", "--package", "tracer", "--bin", "skbtrace"]);
        cmd.args(extra);
        cmd
    };
    // Build first, so that compiling is not what gets pinned to one CPU.
    let status = cargo_test(&["--no-run"]).status().context("running cargo test --no-run")?;
    if !status.success() {
        bail!("building the tracer's tests failed");
    }
    let cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    (0..runs)
        .map(|_| {
            let mut cmd = cargo_test(&["--", "--ignored", "--exact", TEST, "--nocapture", "--test-threads", "1"]);
            let out = on_cpu(cpu, move || cmd.output()).context("running the decode/format benchmark")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!("{TEST} failed: {}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
            }
            parse(&stdout).with_context(|| format!("{TEST} printed no BENCH lines: {}", stdout.trim()))
        })
        .collect()
}

/// Runs `f` on a thread bound to `cpu`; processes it starts inherit the binding.
fn on_cpu<T: Send>(cpu: usize, f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: cpu_set_t is plain data; CPU_SET stays inside it (cpu < CPU_SETSIZE
            // on any machine xtask runs on); sched_setaffinity(0) binds this thread only.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the pinned thread panicked")))
    })
}

/// `BENCH decode 1234 events/s (…)`, `BENCH format text 1234 events/s`, `BENCH format json …`.
fn parse(stdout: &str) -> Option<Rates> {
    let mut rates = Rates::default();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("BENCH ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["decode", rate, ..] => rates.decode = rate.parse().ok()?,
            ["format", "text", rate, ..] => rates.text = rate.parse().ok()?,
            ["format", "json", rate, ..] => rates.json = rate.parse().ok()?,
            _ => {}
        }
    }
    (rates.decode > 0.0 && rates.text > 0.0 && rates.json > 0.0).then_some(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_lines() {
        let out = "running 1 test\nBENCH decode 5000000 events/s (8000000000)\n\
                   BENCH format text 1500000 events/s\nBENCH format json 900000 events/s\ntest … ok\n";
        assert_eq!(parse(out), Some(Rates { decode: 5e6, text: 1.5e6, json: 9e5 }));
        assert_eq!(parse("BENCH decode 1 events/s\n"), None);
    }
}
