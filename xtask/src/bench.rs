//! `cargo xtask bench`: what skbtrace costs on this machine — the packet rate
//! it leaves a flood of drops, whether it accounts for every drop, the cost of
//! one program run, its memory, and its time to ready — printed and written to
//! BENCHMARKS.md. Measurements, not tests: no number fails the run.
//!
//! Needs root (namespaces, BPF). Traffic only flows between two namespaces
//! created here and removed on every exit path.
//!
//! `--baseline REV` measures REV's skbtrace in the same run, side by side:
//! in every round of the overhead benchmark, and in turn with the format
//! benchmark (see `baseline.rs`).

mod baseline;
mod flood;
mod format;
mod machine;
mod markdown;
mod netns;
mod overhead;
mod ready;
mod report;
mod skbtrace;
mod vm_attach;

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use testkit::workspace_root;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Untraced/traced sample pairs per configuration (at least 4; medians are reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of one traffic sample, in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Spawns per configuration for the time to ready, and runs of the format benchmark (in each tree).
    #[arg(long, default_value_t = 5)]
    ready_runs: usize,
    /// Overhead configurations to run (comma-separated keys, as in BENCHMARKS.md; default all).
    /// A feature's cost per hit is measured when both configurations of its pair run (b with
    /// b-pcap5, b-expr2 or b-ct; nf with nf-ct).
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    configs: Vec<String>,
    /// Run only these benchmarks (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Which>,
    /// Print the results without updating BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
    /// Also measure this git revision's skbtrace, built in a worktree under
    /// target/bench-baseline/, beside this tree's (overhead, memory, format).
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Drop-point overhead, event accounting, per-run cost and memory.
    Overhead,
    /// Time from spawn to --ready-file.
    Ready,
    /// Decode and format throughput on one core.
    Format,
    /// Attach and detach of every skb function in the test VM (kprobe, kprobe-multi).
    Vm,
}

/// Runs the selected benchmarks against the skbtrace binary at `bin` (a release build).
pub fn run(bin: &Path, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if !testkit::ci::is_root() {
        bail!("the benchmarks create network namespaces and load eBPF: run as root (sudo -E cargo xtask bench)");
    }
    if args.rounds < 4 {
        bail!("--rounds must be at least 4: the rate moves by ±5–8 % between samples");
    }
    if !(0.1..=60.0).contains(&args.seconds) {
        bail!("--seconds must be between 0.1 and 60");
    }
    if let Some(bad) = args.configs.iter().find(|k| !overhead::CONFIGS.iter().any(|c| c.key == k.as_str())) {
        let keys: Vec<&str> = overhead::CONFIGS.iter().map(|c| c.key).collect();
        bail!("no overhead configuration {bad:?}; there are {}", keys.join(", "));
    }
    let sample = Duration::from_secs_f64(args.seconds);
    let root = workspace_root();
    let selected = |w| args.only.is_empty() || args.only.contains(&w);
    let baseline = match &args.baseline {
        Some(rev) if selected(Which::Overhead) || selected(Which::Format) => {
            Some(baseline::Baseline::prepare(&root, rev).with_context(|| format!("the baseline {rev}"))?)
        }
        _ => None,
    };
    let machine = machine::Machine::describe(&root);
    let current = skbtrace::Binary::new(bin, machine.revision.clone())?;
    let (line, command) = (machine.line(), format!("Command: `{}`.", command_line(args)));
    let header = format!("{line}\n{command}");
    // The sections that measure the baseline too say so.
    let compared = match &baseline {
        Some(b) => {
            format!("{line} Baseline: skbtrace {}, release build, in the same run.\n{command}", b.binary.revision)
        }
        None => header.clone(),
    };
    let mut sections = Vec::new();

    if let Some(other) = other_tracers() {
        eprintln!("bench: warning: {other}; the numbers will be noisier");
    }
    if selected(Which::Overhead) {
        let params = overhead::Params {
            current: &current,
            baseline: baseline.as_ref().map(|b| &b.binary),
            rounds: args.rounds,
            sample,
            configs: &args.configs,
        };
        let (results, pairs) = overhead::measure(&params)?;
        let mut body = report::overhead(&compared, &params, &results);
        for pair in &pairs {
            body.push_str(&report::paired(sample, pair));
        }
        sections.push(("overhead", body));
        sections.push(("memory", report::memory(&compared, &params, &results)));
    }
    if selected(Which::Ready) {
        let mut results = Vec::new();
        for config in &ready::CONFIGS {
            let times = ready::measure(&current, config, args.ready_runs)
                .with_context(|| format!("time to ready, {}", config.what))?;
            results.push((config, times));
        }
        sections.push(("ready", report::ready(&header, args.ready_runs, &results)));
    }
    if selected(Which::Format) {
        let mut trees = vec![(root.as_path(), current.revision.as_str())];
        if let Some(b) = &baseline {
            trees.insert(0, (b.tree.as_path(), b.binary.revision.as_str()));
        }
        let paths: Vec<&Path> = trees.iter().map(|(t, _)| *t).collect();
        let results = format::measure(&paths, args.ready_runs).context("decode and format throughput")?;
        let measured: Vec<report::FormatRuns> = trees
            .iter()
            .zip(&results)
            .map(|((tree, revision), rates)| report::FormatRuns { revision, method: format::Method::of(tree), rates })
            .collect();
        sections.push(("format", report::format(&compared, args.ready_runs, &measured)));
    }

    if selected(Which::Vm) {
        let body = vm_attach::measure(bin, &header).context("attach and detach in the VM")?;
        sections.push(("vm", body));
    }

    let path = root.join("BENCHMARKS.md");
    for (key, body) in &sections {
        println!("\n## {key}\n\n{body}");
        if !args.no_write {
            markdown::update_section(&path, key, body)?;
        }
    }
    if !args.no_write {
        eprintln!("bench: updated {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn command_line(args: &BenchArgs) -> String {
    use std::fmt::Write as _;
    let mut cmd = format!("cargo xtask bench --rounds {} --seconds {}", args.rounds, args.seconds);
    if args.ready_runs != 5 {
        let _ = write!(cmd, " --ready-runs {}", args.ready_runs);
    }
    if !args.configs.is_empty() {
        let _ = write!(cmd, " --configs {}", args.configs.join(","));
    }
    if !args.only.is_empty() {
        let names: Vec<String> = args.only.iter().map(|w| format!("{w:?}").to_lowercase()).collect();
        let _ = write!(cmd, " --only {}", names.join(","));
    }
    if let Some(rev) = &args.baseline {
        let _ = write!(cmd, " --baseline {rev}");
    }
    cmd
}

/// Other skbtrace processes attach to the same tracepoints and slow the
/// untraced samples too.
fn other_tracers() -> Option<String> {
    let me = std::process::id().to_string();
    let count = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != me.as_str())
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "skbtrace"))
        .count();
    (count > 0).then(|| format!("{count} other skbtrace process(es) running"))
}
