//! Scenarios that run wherever skbtrace runs: on this host through the
//! tracepoint backend, and inside the VMs that `vm.rs` boots, through kprobes
//! (Debian 6.1, `--backend kprobe`) and kprobe-multi (Debian 6.12, which
//! `auto` picks). `SKBTRACE_E2E_BACKEND` names the backend to expect
//! (default: tracepoint). Assertions that hold only with kprobes (every
//! function on a packet's path, callers, clones followed) depend on it.

mod attach;
mod ci_mode;
mod drops;
mod explain;
mod filters;
mod limit;
mod nft_trace;
mod pwru_meanings;
mod skb_fields;
mod tracking;

use std::sync::OnceLock;

use anyhow::{Context as _, ensure};
use testkit::{
    process::{Finished, Skbtrace, Tracer},
    summary::Backend,
};

use crate::skbtrace;

/// The backend under test and the names it gives the kernel's functions.
pub struct Target {
    pub backend: Backend,
    drop_func: &'static str,
}

/// The target of this run, from the environment.
pub fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| Target::from_env().unwrap_or_else(|e| panic!("{e:#}")))
}

impl Target {
    fn from_env() -> anyhow::Result<Self> {
        let backend = match std::env::var("SKBTRACE_E2E_BACKEND") {
            Ok(name) => name.parse().context("SKBTRACE_E2E_BACKEND")?,
            Err(_) => Backend::Tracepoint,
        };
        // Linux 6.11 made kfree_skb_reason an inline wrapper of sk_skb_reason_drop.
        let drop_func = if !backend.is_kprobe() {
            "kfree_skb"
        } else if kernel_release()? >= (6, 11) {
            "sk_skb_reason_drop"
        } else {
            "kfree_skb_reason"
        };
        Ok(Self { backend, drop_func })
    }

    pub fn kprobes(&self) -> bool {
        self.backend.is_kprobe()
    }

    /// Where drops are seen: the `skb:kfree_skb` tracepoint, or the function
    /// every drop goes through.
    pub fn drop_func(&self) -> &'static str {
        self.drop_func
    }

    /// Where a received packet is first seen in IP.
    pub fn receive_func(&self) -> &'static str {
        if self.kprobes() { "ip_rcv" } else { "netif_receive_skb" }
    }

    /// Where a packet leaves through a device.
    pub fn transmit_func(&self) -> &'static str {
        if self.kprobes() { "__dev_queue_xmit" } else { "net_dev_start_xmit" }
    }

    /// `--filter-func` for the drop function and, with kprobes, `more` too
    /// (a `|`-separated list of functions on the path).
    pub fn funcs(&self, more: &str) -> String {
        if self.kprobes() { format!("{}|{more}", self.drop_func) } else { self.drop_func.to_owned() }
    }

    /// The flag that selects the backend. None for kprobe-multi: `auto`
    /// picks it where the kernel has it, which [`Target::check`] confirms.
    fn backend_args(&self) -> &'static [&'static str] {
        match self.backend {
            Backend::Kprobe => &["--backend", "kprobe"],
            Backend::KprobeMulti => &[],
            Backend::Tracepoint => &["--backend", "tracepoint"],
        }
    }

    /// skbtrace on this backend, to add arguments to and start.
    pub fn command(&self) -> Skbtrace {
        skbtrace::command().args(self.backend_args())
    }

    /// Starts skbtrace on this backend with `args` and waits until it is ready.
    pub fn start(&self, args: &[&str]) -> anyhow::Result<Tracer> {
        self.command().args(args).start()
    }

    /// Runs skbtrace on this backend to completion (`--list-funcs`, say).
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let all: Vec<&str> = self.backend_args().iter().chain(args).copied().collect();
        skbtrace::run(&all)
    }

    /// Sends SIGINT and checks the run (see [`Target::check`]).
    pub fn stop(&self, tracer: Tracer) -> anyhow::Result<Finished> {
        let done = tracer.stop()?;
        self.check(&done)?;
        Ok(done)
    }

    /// A run ended well: exit status 0, no panic, attached with the expected
    /// backend, every JSON event complete and counted in the summary.
    pub fn check(&self, done: &Finished) -> anyhow::Result<()> {
        self.check_exit(done)?;
        if done.stdout.starts_with('{') {
            let events = done.events()?;
            for event in &events {
                skbtrace::check_fields(event)?;
            }
            let summary = done.summary()?;
            ensure!(
                summary.events == events.len() as u64,
                "the summary counts {} events, stdout has {}",
                summary.events,
                events.len()
            );
        }
        Ok(())
    }

    /// A run ended well, whatever it printed: exit status 0, no panic,
    /// attached with the expected backend.
    pub fn check_exit(&self, done: &Finished) -> anyhow::Result<()> {
        ensure!(done.status.success(), "skbtrace exited {}:\n{}", done.status, done.stderr);
        ensure!(!done.stderr.contains("panicked"), "skbtrace panicked:\n{}", done.stderr);
        let summary = done.summary()?;
        ensure!(
            summary.backend == Some(self.backend),
            "skbtrace used {:?} instead of {}",
            summary.backend,
            self.backend
        );
        Ok(())
    }
}

/// The running kernel's major and minor version.
fn kernel_release() -> anyhow::Result<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").context("reading the kernel release")?;
    let mut parts = release.trim().split(['.', '-']).map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok((major, minor)),
        _ => anyhow::bail!("cannot read kernel release {release:?}"),
    }
}

/// The destination ports of a JSON run's events (0, no port, left out).
pub fn dports(events: &[serde_json::Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["tuple"]["dport"].as_u64()).filter(|p| *p != 0).collect()
}
