//! Resolve, decode and format throughput on one core. xtask cannot link the
//! tracer library (its build needs the toolchain `xtask setup` installs), so
//! the measuring loop is the tracer's bench target `format`, which calls the
//! resolver and the printers directly: this runs it in a release build,
//! pinned to one CPU, and reads the JSON line it prints.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

const BENCH: &str = "format";

/// Events per second of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Deserialize)]
pub struct Rates {
    /// Packet bytes to tuple.
    pub decode: f64,
    /// Decode plus one text line.
    pub text: f64,
    /// Decode plus one JSON line.
    pub json: f64,
    /// Resolve plus the explain consumer (four-event stories, each judged).
    pub explain: f64,
    /// Memory 100,000 open explain stories take, MiB.
    pub explain_rss_mib: f64,
}

pub fn measure(root: &Path, runs: usize) -> anyhow::Result<Vec<Rates>> {
    let cargo_bench = |extra: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root).args(["bench", "--quiet", "--package", "tracer", "--bench", BENCH]);
        cmd.args(extra);
        cmd
    };
    // Build first, so that compiling is not what gets pinned to one CPU.
    let status = cargo_bench(&["--no-run"]).status().context("running cargo bench --no-run")?;
    if !status.success() {
        bail!("building the tracer's format bench failed");
    }
    let cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    (0..runs)
        .map(|_| {
            let mut cmd = cargo_bench(&[]);
            let out = on_cpu(cpu, move || cmd.output()).context("running the decode/format benchmark")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!("bench {BENCH} failed: {}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
            }
            parse(&stdout).with_context(|| format!("bench {BENCH} printed no rates: {}", stdout.trim()))
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

/// The bench's one JSON line, `{"decode": …, "text": …, "json": …}`.
fn parse(stdout: &str) -> Option<Rates> {
    let rates: Rates = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok())?;
    (rates.decode > 0.0 && rates.text > 0.0 && rates.json > 0.0).then_some(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rates_line() {
        let out =
            "{\"decode\":5000000,\"text\":1500000,\"json\":900000,\"explain\":1000000,\"explain_rss_mib\":27.5}\n";
        assert_eq!(
            parse(out),
            Some(Rates { decode: 5e6, text: 1.5e6, json: 9e5, explain: 1e6, explain_rss_mib: 27.5 })
        );
        assert_eq!(parse("{\"decode\":1,\"text\":0,\"json\":1,\"explain\":1,\"explain_rss_mib\":1}\n"), None);
        assert_eq!(parse("no rates\n"), None);
    }
}
