//! The kprobe backend: one kprobe per function through the kprobe PMU,
//! attached from several threads at once (registering a kprobe is slow, and
//! mostly waiting on the kernel).

use std::{
    collections::HashMap,
    ffi::CString,
    io::IsTerminal as _,
    os::fd::{AsRawFd as _, OwnedFd, RawFd},
};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tracer_common::{limits::PROBE_ID_FREES, names};

use super::{Attached, DROP_FUNCTIONS, in_parallel};
use crate::{
    btf::SkbFunc,
    loader::{LoadAs, Loader},
    stop::Stop,
    sys,
};

pub const PMU_TYPE_PATH: &str = "/sys/bus/event_source/devices/kprobe/type";

/// Typed so that `auto` can fall back to tracepoints.
#[derive(Debug)]
pub struct NoKprobes;

impl std::fmt::Display for NoKprobes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this kernel cannot attach kprobes ({PMU_TYPE_PATH} is missing; built without CONFIG_KPROBES?): use --backend tracepoint"
        )
    }
}

impl std::error::Error for NoKprobes {}

pub fn pmu_type() -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(PMU_TYPE_PATH).map_err(|_| NoKprobes)?;
    text.trim().parse().with_context(|| format!("parsing {PMU_TYPE_PATH}"))
}

/// The program and probe-id flags a function is traced with.
pub fn program_for(func: &SkbFunc) -> (String, u32) {
    let flags = if super::frees(&func.name) { PROBE_ID_FREES } else { 0 };
    if let Some((_, program)) = DROP_FUNCTIONS.iter().find(|(name, _)| *name == func.name) {
        return ((*program).to_owned(), flags);
    }
    (names::KPROBE_SKB[usize::from(func.skb.0).min(names::KPROBE_SKB.len() - 1)].to_owned(), flags)
}

/// Loads each program the functions need once, in parallel: each load is a
/// verifier run, which takes a while on a slow machine.
fn load_programs(loader: &Loader, funcs: &[SkbFunc]) -> anyhow::Result<HashMap<(String, u32), OwnedFd>> {
    let mut keys: Vec<(String, u32)> = funcs.iter().map(program_for).collect();
    keys.sort();
    keys.dedup();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fds = in_parallel(&keys, workers, None, |_, key| load_program(loader, key, 0));
    let mut out = HashMap::new();
    for (key, fd) in keys.into_iter().zip(fds) {
        out.insert(key, fd.expect("in_parallel runs every item without a stop")?);
    }
    Ok(out)
}

/// Loads the program [`program_for`] names.
pub fn load_program(
    loader: &Loader,
    (program, probe_id): &(String, u32),
    expected_attach_type: u32,
) -> anyhow::Result<OwnedFd> {
    loader.load(&LoadAs {
        program,
        prog_type: sys::BPF_PROG_TYPE_KPROBE,
        expected_attach_type,
        attach_btf_id: 0,
        probe_id: *probe_id,
    })
}

pub fn attach(loader: &Loader, funcs: &[SkbFunc], attached: &mut Attached, stop: &mut Stop) -> anyhow::Result<()> {
    let pmu = pmu_type()?;
    let programs = load_programs(loader, funcs)?;
    let prog_fds: HashMap<(String, u32), RawFd> = programs.iter().map(|(k, v)| (k.clone(), v.as_raw_fd())).collect();
    let progress = Progress::new(funcs.len(), "attaching kprobes");

    let results = in_parallel(funcs, workers(), Some(stop), |_, func| {
        let prog = prog_fds[&program_for(func)];
        let result = CString::new(func.name.as_str())
            .map_err(std::io::Error::other)
            .and_then(|name| sys::attach_kprobe(pmu, &name, prog));
        progress.inc();
        result
    });
    progress.finish();

    attached.programs.extend(programs.into_values());
    for (func, result) in funcs.iter().zip(results) {
        match result {
            Some(Ok(fd)) => {
                attached.links.push(fd);
                attached.count += 1;
            }
            Some(Err(e)) => attached.skipped.push((func.name.clone(), e.to_string())),
            None => attached.skipped.push((func.name.clone(), "not attempted: stopped".into())),
        }
    }
    Ok(())
}

/// Threads that attach, and detach, kprobes: each waits on the kernel, whose
/// locks take them one at a time, so a few per CPU keep it busy.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

/// Functions that copy an skb; `--filter-track-skb` follows the copy.
pub const COPY_FUNCTIONS: [&str; 4] = ["skb_clone", "skb_copy", "__pskb_copy_fclone", "skb_copy_expand"];

/// For `--filter-track-skb`: a kprobe and a kretprobe on each function that
/// copies an skb, so a copy of a tracked skb is tracked too.
pub fn attach_clone_tracking(loader: &Loader, copies: &[String], attached: &mut Attached) -> anyhow::Result<()> {
    let pmu = pmu_type()?;
    // "config:0": which config bit makes a kprobe PMU event a return probe.
    let format = std::fs::read_to_string("/sys/bus/event_source/devices/kprobe/format/retprobe").unwrap_or_default();
    let bit: u32 = format.trim().strip_prefix("config:").and_then(|b| b.parse().ok()).unwrap_or(0);
    let load = |program: &str| {
        loader.load(&LoadAs {
            program,
            prog_type: sys::BPF_PROG_TYPE_KPROBE,
            expected_attach_type: 0,
            attach_btf_id: 0,
            probe_id: 0,
        })
    };
    let entry = load(names::KPROBE_CLONE_ENTRY)?;
    let exit = load(names::KRETPROBE_CLONE_EXIT)?;
    for func in copies {
        let name = CString::new(func.as_str())?;
        let links = sys::attach_kprobe(pmu, &name, entry.as_raw_fd())
            .and_then(|a| Ok((a, sys::attach_kretprobe(pmu, bit, &name, exit.as_raw_fd())?)));
        match links {
            Ok((a, b)) => attached.links.extend([a, b]),
            Err(e) => attached.skipped.push((format!("{func} (copy tracking)"), e.to_string())),
        }
    }
    attached.programs.extend([entry, exit]);
    Ok(())
}

/// `--nft-trace`: the kprobe on `__nft_trace_packet`. Unlike the skb
/// functions, it is asked for: failing to attach it is an error.
pub fn attach_nft_trace(loader: &Loader, attached: &mut Attached) -> anyhow::Result<()> {
    let func = crate::btf::nft::TRACE_FUNCTION;
    let pmu = pmu_type()?;
    let program = load_program(loader, &(names::KPROBE_NFT_TRACE.to_owned(), 0), 0)?;
    let name = CString::new(func)?;
    let link = sys::attach_kprobe(pmu, &name, program.as_raw_fd())
        .with_context(|| format!("attaching a kprobe to {func} (--nft-trace)"))?;
    attached.links.push(link);
    attached.programs.push(program);
    attached.count += 1;
    Ok(())
}

/// A progress bar on a terminal; otherwise one line at the start.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn new(total: usize, what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            note!("{what}: {total} targets");
            return Self(None);
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta})") {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Self(Some(bar))
    }

    pub fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
