//! What will be attached: the backend this kernel allows, and its targets
//! (functions or tracepoints that take an skb) chosen from BTF.

use std::{collections::HashSet, os::fd::OwnedFd};

use anyhow::anyhow;
use regex::Regex;

use super::{Attached, kprobe, kprobe_multi, kprobes_available, tracepoint};
use crate::{btf::KernelBtf, btf::SkbFunc, cli::Backend, config::usage, ksym, loader::Loader, stop::Stop};

/// The backend to use: `auto` falls back to tracepoints without kprobes.
pub fn choose_backend(requested: Backend) -> anyhow::Result<Backend> {
    let kprobes = kprobes_available();
    match requested {
        Backend::Kprobe | Backend::KprobeMulti if !kprobes => Err(kprobe::NoKprobes.into()),
        Backend::Auto if !kprobes => {
            note!(
                "this kernel has no kprobes; using its networking tracepoints instead \
                 (drops, receive and transmit points are visible; functions in between are not)"
            );
            Ok(Backend::Tracepoint)
        }
        other => Ok(other),
    }
}

/// What will be attached.
pub enum Plan {
    /// `copies`: the skb-copying functions this kernel lets us probe, for
    /// `--filter-track-skb`.
    Kprobes {
        backend: Backend,
        funcs: Vec<SkbFunc>,
        copies: Vec<String>,
    },
    Tracepoints(Vec<tracepoint::Target>),
}

impl Plan {
    /// `available`: ftrace's list of probe-able functions, when tracefs
    /// could be read; else every text symbol is a candidate.
    pub fn new(
        btf: &KernelBtf,
        kallsyms: &mut ksym::Loading,
        available: Option<&HashSet<String>>,
        backend: Backend,
        filter: Option<&Regex>,
    ) -> anyhow::Result<Self> {
        let plan = match backend {
            Backend::Tracepoint => Self::Tracepoints(tracepoint::targets(btf, filter)),
            _ => {
                let (funcs, copies) = match available {
                    Some(set) => kprobe_targets(btf, |name| set.contains(name), filter),
                    None => {
                        let names = kallsyms.get()?.names();
                        kprobe_targets(btf, |name| names.contains(name), filter)
                    }
                };
                Self::Kprobes { backend, funcs, copies }
            }
        };
        let empty = match &plan {
            Self::Kprobes { funcs, .. } => funcs.is_empty(),
            Self::Tracepoints(t) => t.is_empty(),
        };
        if empty {
            return Err(match filter {
                Some(re) => usage(format!("--filter-func {} matches no traceable skb function", re.as_str())),
                None => anyhow!("found no traceable skb functions in this kernel's BTF"),
            });
        }
        Ok(plan)
    }

    /// `--list-funcs`: name, skb argument (1-based, as pwru prints it), module.
    pub fn list(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        match self {
            Self::Kprobes { funcs, .. } => {
                for f in funcs {
                    let module = if f.module.is_empty() { "vmlinux" } else { &f.module };
                    writeln!(out, "{}\t{}\t{}", f.name, f.skb, module)?;
                }
            }
            Self::Tracepoints(targets) => {
                for t in targets {
                    writeln!(out, "{}\t{}\ttracepoint", t.name, t.skb)?;
                }
            }
        }
        Ok(())
    }

    /// `multi_program`: the kprobe-multi program, loaded already, or why it
    /// could not be. `track_clones`: also follow copies of tracked skbs.
    pub fn attach(
        &self,
        loader: &Loader,
        multi_program: Option<anyhow::Result<OwnedFd>>,
        track_clones: bool,
        stop: &mut Stop,
    ) -> anyhow::Result<Attached> {
        let mut attached = Attached::default();
        match self {
            Self::Tracepoints(targets) => {
                attached.backend = "tracepoint";
                tracepoint::attach(loader, targets, &mut attached)?;
            }
            Self::Kprobes { backend: Backend::Kprobe, funcs, .. } => {
                attached.backend = "kprobe";
                kprobe::attach(loader, funcs, &mut attached, stop)?;
            }
            Self::Kprobes { backend, funcs, .. } => {
                attached.backend = "kprobe-multi";
                let program = multi_program.unwrap_or_else(|| kprobe_multi::load(loader));
                if let Err(e) = kprobe_multi::attach(program, loader, funcs, &mut attached, stop) {
                    if *backend == Backend::KprobeMulti {
                        return Err(e);
                    }
                    log::info!("{e:#}; using kprobes");
                    attached.backend = "kprobe";
                    kprobe::attach(loader, funcs, &mut attached, stop)?;
                }
            }
        }
        if let (true, Self::Kprobes { copies, .. }) = (track_clones, self) {
            kprobe::attach_clone_tracking(loader, copies, &mut attached)?;
        }
        Ok(attached)
    }
}

/// Functions with an skb argument that this kernel lets us probe, and the
/// skb-copying functions it lets us probe.
fn kprobe_targets(
    btf: &KernelBtf,
    traceable: impl Fn(&str) -> bool,
    filter: Option<&Regex>,
) -> (Vec<SkbFunc>, Vec<String>) {
    let mut funcs: Vec<_> = btf
        .skb_functions()
        .into_iter()
        .filter(|f| filter.is_none_or(|re| re.is_match(&f.name)) && traceable(&f.name))
        .collect();
    funcs.sort_by(|a, b| a.name.cmp(&b.name));
    funcs.dedup_by(|a, b| a.name == b.name);
    let copies = kprobe::COPY_FUNCTIONS.iter().filter(|f| traceable(f)).map(|f| (*f).to_owned()).collect();
    (funcs, copies)
}
