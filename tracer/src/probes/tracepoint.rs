//! The tracepoint backend: the kernel's skb-carrying tracepoints, attached as
//! `tp_btf` (or `raw_tp` where `tp_btf` is refused). Works on kernels without
//! kprobes.

use std::{ffi::CString, os::fd::OwnedFd};

use anyhow::Context as _;
use regex::Regex;
use tracer_common::{limits::PROBE_ID_FREES, names};

use super::{Attached, Probe, in_parallel};
use crate::{
    btf::{KernelBtf, SkbArg},
    loader::{LoadAs, Loader},
    sys,
};

/// A tracepoint that takes an skb.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    /// Where the skb is among the tracepoint's arguments.
    pub skb: SkbArg,
    /// Id of the `btf_trace_<name>` typedef, the `tp_btf` attach target.
    pub btf_id: u32,
}

/// Tracepoints where the skb is freed.
const FREES: [&str; 2] = ["kfree_skb", "consume_skb"];

pub fn targets(btf: &KernelBtf, filter: Option<&Regex>) -> Vec<Target> {
    let mut out: Vec<Target> = btf
        .skb_tracepoints()
        .into_iter()
        .filter(|(name, _, _)| filter.is_none_or(|re| re.is_match(name)))
        .map(|(name, skb, btf_id)| Target { name, skb, btf_id })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The program that reads the skb at `position`; `kfree_skb` gets the one that
/// also reads location and reason (its arguments are `skb, location, reason`
/// on every kernel with drop reasons).
fn program_for(target: &Target) -> Option<&'static str> {
    if target.name == "kfree_skb" && target.skb == SkbArg(0) {
        return Some(names::TP_KFREE_SKB);
    }
    names::TP_SKB.get(usize::from(target.skb.0)).copied()
}

pub fn attach(loader: &Loader, targets: &[Target], attached: &mut Attached) -> anyhow::Result<()> {
    // Each target is its own program load (the verifier's work dominates), so
    // load on every core: this is most of the time to ready.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Probe ids are indexes into `targets`, so every target gets a slot.
    let results = in_parallel(targets, workers, None, |i, target| {
        let program = program_for(target)?;
        let frees = if FREES.contains(&target.name.as_str()) { PROBE_ID_FREES } else { 0 };
        Some(attach_one(loader, target, program, i as u32 | frees))
    });
    for (target, result) in targets.iter().zip(results) {
        attached.probes.push(Probe { name: target.name.clone() });
        match result.flatten() {
            Some(Ok((prog, link))) => {
                attached.programs.push(prog);
                attached.links.push(link);
                attached.count += 1;
            }
            Some(Err(e)) => attached.skipped.push((target.name.clone(), format!("{e:#}"))),
            None => attached.skipped.push((target.name.clone(), format!("skb is argument {}", target.skb))),
        }
    }
    Ok(())
}

fn attach_one(loader: &Loader, target: &Target, program: &str, probe_id: u32) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::AsRawFd as _;
    let tp_btf = loader.load(&LoadAs {
        program,
        prog_type: sys::BPF_PROG_TYPE_TRACING,
        expected_attach_type: sys::BPF_TRACE_RAW_TP,
        attach_btf_id: target.btf_id,
        probe_id,
    });
    match tp_btf {
        Ok(prog) => {
            let link = sys::raw_tracepoint_open(prog.as_raw_fd(), None)
                .with_context(|| format!("attaching tp_btf program to {}", target.name))?;
            return Ok((prog, link));
        }
        Err(e) => log::debug!("tp_btf refused for {}, trying raw_tp: {e:#}", target.name),
    }
    // Older or restricted kernels: the same code as a raw tracepoint.
    let prog = loader.load(&LoadAs {
        program,
        prog_type: sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
        expected_attach_type: 0,
        attach_btf_id: 0,
        probe_id,
    })?;
    let name = CString::new(target.name.as_str())?;
    let link = sys::raw_tracepoint_open(prog.as_raw_fd(), Some(&name))
        .with_context(|| format!("attaching raw_tp program to {}", target.name))?;
    Ok((prog, link))
}
