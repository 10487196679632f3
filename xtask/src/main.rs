//! `cargo xtask <command>`: every developer task, each starting with `setup`
//! so that a fresh clone needs nothing else.

mod bench;
mod demo;
mod dist;
mod setup;

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use testkit::{vm, workspace_root};

#[derive(Parser)]
#[command(name = "xtask", about = "skbtrace's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the eBPF object and the skbtrace binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run skbtrace as root with ARGS.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run every test layer: unit, host end-to-end, VM end-to-end.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot the test VM with skbtrace on its PATH and run SCRIPT in it.
    Vm {
        #[arg(long, default_value = "6.12")]
        kernel: String,
        /// Put the release build of skbtrace in the VM.
        #[arg(long)]
        release: bool,
        /// Also copy this host file to /test/ (an ELF brings its shared
        /// libraries), e.g. `--copy /usr/bin/perf` to profile the guest kernel.
        #[arg(long, value_name = "PATH")]
        copy: Vec<PathBuf>,
        /// Kill the VM after this many seconds (boot, script and power-off).
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        timeout: u64,
        #[arg(last = true, required = true)]
        script: Vec<String>,
    },
    /// Show skbtrace tracing a dropped UDP packet between two throwaway namespaces.
    Demo,
    /// Measure skbtrace (overhead, accounting, memory, time to ready) into BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Build a statically linked release skbtrace, with completions and man
    /// page, into target/dist/ (a folder, a .tar.gz, SHA-256 checksums).
    Dist,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    setup::run()?;
    match cmd {
        Cmd::Setup => Ok(ExitCode::SUCCESS),
        Cmd::Build { release } => {
            build(release)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { release, args } => {
            let bin = build(release)?;
            run_as_root(&bin, &args)
        }
        Cmd::Test { args } => test(&args),
        Cmd::Vm { kernel, release, copy, timeout, script } => vm(&kernel, release, copy, timeout, &script),
        Cmd::Demo => {
            let bin = build(false)?;
            demo::run(&bin)
        }
        Cmd::Bench(args) => {
            let bin = build(true)?;
            bench::run(&bin, &args)
        }
        Cmd::Dist => {
            setup::dist()?;
            dist::run()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds skbtrace and returns the binary's path.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args(["build", "--package", "tracer", "--bin", "skbtrace"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building skbtrace failed");
    }
    Ok(workspace_root().join("target").join(if release { "release" } else { "debug" }).join("skbtrace"))
}

fn run_as_root(bin: &std::path::Path, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut cmd = if testkit::ci::is_root() {
        Command::new(bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg(bin);
        c
    };
    let status = cmd.args(args).status().with_context(|| format!("running {}", bin.display()))?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

fn test(extra: &[String]) -> anyhow::Result<ExitCode> {
    // The tools' rules first: formatting, then every lint (clippy builds
    // the eBPF object too, through tracer's build script).
    for (what, args) in [
        ("cargo fmt --check", &["fmt", "--all", "--check"][..]),
        ("cargo clippy", &["clippy", "--all-targets", "--", "-D", "warnings"][..]),
    ] {
        let status = Command::new("cargo").current_dir(workspace_root()).args(args).status();
        if !status.with_context(|| format!("running {what}"))?.success() {
            bail!("{what} failed: fix what it printed (`cargo fmt --all` formats)");
        }
    }
    build(false)?;
    // Output is passed through as it comes and counted, so that the run ends
    // with one line totalling every test binary.
    let mut child = Command::new("cargo")
        .current_dir(workspace_root())
        .args(["test", "--workspace", "--lib", "--bins", "--tests", "--no-fail-fast"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("tests: {passed} passed, {failed} failed");
    Ok(if status.success() && failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The tests' UDP sender, which VM scripts use as /test/udpsend.
fn udpsend() -> anyhow::Result<PathBuf> {
    let status = Command::new("cargo")
        .current_dir(workspace_root())
        .args(["build", "--package", "skbtrace-tests", "--bin", "udpsend"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building udpsend failed");
    }
    Ok(workspace_root().join("target/debug/udpsend"))
}

fn vm(kernel: &str, release: bool, copy: Vec<PathBuf>, timeout: u64, script: &[String]) -> anyhow::Result<ExitCode> {
    let bin = build(release)?;
    let (path, args) = script.split_first().context("no script given")?;
    let mut opts = vm::VmOptions::new(kernel.parse()?, bin, path);
    opts.args = args.to_vec();
    opts.copy = vec![workspace_root().join("tests/vm"), udpsend()?];
    opts.copy.extend(copy);
    opts.timeout = std::time::Duration::from_secs(timeout);
    opts.stream_output = true;
    let out = vm::run(&opts)?;
    eprintln!(
        "xtask: {} booted in {:.1?}, script ran {:.1?}, exit status {}",
        out.release, out.boot_time, out.script_time, out.status
    );
    Ok(ExitCode::from(out.status.clamp(0, 255) as u8))
}
