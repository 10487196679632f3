//! Resolve, decode and format throughput on one core. xtask cannot link the
//! tracer library (its build needs the toolchain `xtask setup` installs), so
//! the measuring loop is the tracer's own: this runs it in a release build,
//! pinned to one CPU, and reads what it prints. A tree from before the bench
//! target (a `--baseline`) measured with an ignored test instead; each tree
//! is measured its own way, one run of each in turn.

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// Events per second of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Packet bytes to tuple.
    pub decode: f64,
    /// Decode plus one text line.
    pub text: f64,
    /// Decode plus one JSON line.
    pub json: f64,
    /// Measured by the bench target only.
    pub explain: Option<Explain>,
}

/// The explain consumer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Explain {
    /// Events per second: resolve plus four-event stories, each judged.
    pub rate: f64,
    /// MiB the bench process grew by while 100,000 stories opened.
    pub growth_mib: f64,
    /// The bench process's VmRSS with them open, and its VmHWM then.
    pub vmrss_mib: f64,
    pub vmhwm_mib: f64,
}

/// How a tree measures: the revision it is at decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `cargo bench -p tracer --bench format` (`tracer/benches/format.rs`):
    /// resolves and prints through the library, prints one JSON line.
    BenchTarget,
    /// Before the library: the binary crate's ignored test
    /// `output::tests::bench_decode_and_format`, printing with names already
    /// resolved, and `BENCH …` lines.
    IgnoredTest,
}

const BENCH: &str = "format";
const TEST: &str = "output::tests::bench_decode_and_format";

impl Method {
    pub fn of(tree: &Path) -> Self {
        if tree.join("tracer/benches/format.rs").exists() { Self::BenchTarget } else { Self::IgnoredTest }
    }

    fn cargo(self, tree: &Path, build_only: bool) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(tree);
        match self {
            Self::BenchTarget => {
                cmd.args(["bench", "--quiet", "--package", "tracer", "--bench", BENCH]);
                if build_only {
                    cmd.arg("--no-run");
                }
            }
            Self::IgnoredTest => {
                cmd.args(["test", "--quiet", "--release", "--package", "tracer", "--bin", "skbtrace"]);
                if build_only {
                    cmd.arg("--no-run");
                } else {
                    cmd.args(["--", "--ignored", "--exact", TEST, "--nocapture", "--test-threads", "1"]);
                }
            }
        }
        cmd
    }

    fn parse(self, stdout: &str) -> Option<Rates> {
        match self {
            Self::BenchTarget => parse_json(stdout),
            Self::IgnoredTest => parse_bench_lines(stdout),
        }
    }
}

/// `runs` runs in each tree (the current one first), one tree after the
/// other in every round; their rates, in the order of `trees`.
pub fn measure(trees: &[&Path], runs: usize) -> anyhow::Result<Vec<Vec<Rates>>> {
    let methods: Vec<Method> = trees.iter().map(|t| Method::of(t)).collect();
    // Build first, so that compiling is not what gets pinned to one CPU.
    for (tree, method) in trees.iter().zip(&methods) {
        let status = method.cargo(tree, true).status().context("running cargo")?;
        if !status.success() {
            bail!("building the format benchmark ({method:?}) in {} failed", tree.display());
        }
    }
    let cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    let mut rates = vec![Vec::with_capacity(runs); trees.len()];
    for _ in 0..runs {
        for ((tree, method), rates) in trees.iter().zip(&methods).zip(&mut rates) {
            let mut cmd = method.cargo(tree, false);
            let out = on_cpu(cpu, move || cmd.output()).context("running the decode/format benchmark")?;
            rates.push(read(*method, &out)?);
        }
    }
    Ok(rates)
}

fn read(method: Method, out: &Output) -> anyhow::Result<Rates> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{method:?} failed: {}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    method.parse(&stdout).with_context(|| format!("{method:?} printed no rates: {}", stdout.trim()))
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

/// The bench target's one line.
#[derive(serde::Deserialize)]
struct JsonLine {
    decode: f64,
    text: f64,
    json: f64,
    explain: f64,
    explain_rss_mib: f64,
    explain_vmrss_mib: f64,
    explain_vmhwm_mib: f64,
}

/// `{"decode": …, "text": …, "json": …, "explain": …, "explain_rss_mib": …, …}`.
fn parse_json(stdout: &str) -> Option<Rates> {
    let l: JsonLine = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok())?;
    let explain = Explain {
        rate: l.explain,
        growth_mib: l.explain_rss_mib,
        vmrss_mib: l.explain_vmrss_mib,
        vmhwm_mib: l.explain_vmhwm_mib,
    };
    let rates = Rates { decode: l.decode, text: l.text, json: l.json, explain: Some(explain) };
    (rates.decode > 0.0 && rates.text > 0.0 && rates.json > 0.0).then_some(rates)
}

/// `BENCH decode 1234 events/s (…)`, `BENCH format text 1234 events/s`, `BENCH format json …`.
fn parse_bench_lines(stdout: &str) -> Option<Rates> {
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
    fn reads_the_rates_line() {
        let out = concat!(
            r#"{"decode":5000000,"text":1500000,"json":900000,"explain":1000000,"explain_rss_mib":27.5,"#,
            r#""explain_vmrss_mib":31.2,"explain_vmhwm_mib":33.0}"#,
            "\n"
        );
        let explain = Explain { rate: 1e6, growth_mib: 27.5, vmrss_mib: 31.2, vmhwm_mib: 33.0 };
        assert_eq!(parse_json(out), Some(Rates { decode: 5e6, text: 1.5e6, json: 9e5, explain: Some(explain) }));
        assert_eq!(parse_json(&out.replace(r#""text":1500000"#, r#""text":0"#)), None);
        assert_eq!(parse_json(&out.replace(r#","explain_vmhwm_mib":33.0"#, "")), None);
        assert_eq!(parse_json("no rates\n"), None);
    }

    #[test]
    fn reads_the_old_bench_lines() {
        let out = "running 1 test\nBENCH decode 5000000 events/s (8000000000)\n\
                   BENCH format text 1500000 events/s\nBENCH format json 900000 events/s\ntest … ok\n";
        assert_eq!(parse_bench_lines(out), Some(Rates { decode: 5e6, text: 1.5e6, json: 9e5, explain: None }));
        assert_eq!(parse_bench_lines("BENCH decode 1 events/s\n"), None);
    }
}
