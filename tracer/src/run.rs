//! One run: validate, discover, load, attach, collect, detach.

use std::os::fd::{AsRawFd as _, OwnedFd};

use anyhow::{Context as _, anyhow, bail};
use tracer_common::limits::SNAPLEN_MAX;

use crate::{
    btf::KernelBtf,
    cli::{Args, Backend},
    collect,
    config::{RunConfig, usage},
    filter, ksym,
    loader::{Loader, MapSizes, Programs},
    output, privileges,
    probes::{self, Attached, kprobe, kprobe_multi, tracepoint},
    resolve::DropReasons,
    stop::Stop,
    sys,
};

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = RunConfig::from_args(&args)?;
    let (l2, l3) = compile_filters(cfg.expression.as_deref())?;
    let sinks = output::Sinks::open(&args)?;
    if !args.list_funcs {
        privileges::check()?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    let _guard = rt.enter();
    let mut stop = Stop::install()?;

    // The kernel prints /proc/kallsyms and ftrace's function list slower
    // than we read BTF and create maps (seconds in an emulated VM): read
    // them on threads of their own meanwhile. Kprobes need ftrace's list
    // to choose targets, and kallsyms (names for events) only once events
    // come: it starts after the targets, so that on two CPUs it does not
    // slow the start-up down.
    let started = std::time::Instant::now();
    let backend = choose_backend(args.backend)?;
    let mut kallsyms = match backend {
        Backend::Tracepoint => ksym::Loading::start()?,
        _ => ksym::Loading::later(),
    };
    let available = (backend != Backend::Tracepoint)
        .then(|| std::thread::Builder::new().name("tracefs".into()).spawn(ksym::available_filter_functions))
        .transpose()
        .context("starting a thread to read ftrace's functions")?;
    let mut btf = KernelBtf::open()?;
    log::debug!("BTF read in {:?}", started.elapsed());
    let mut kmods = args.kmods.clone();
    if args.all_kmods {
        kmods = KernelBtf::module_names()?;
    }
    btf.add_modules(&kmods)?;

    let mut loader = None;
    let mut multi_program = None;
    if !args.list_funcs {
        let mut kernel_cfg = cfg.kernel;
        kernel_cfg.offsets = btf.offsets()?;
        kernel_cfg.wakeup_bytes = args.ring_size * 1024 / 16;
        kernel_cfg.filter_reads_l2 = l2.reads;
        kernel_cfg.filter_reads_l3 = l3.reads;
        let sizes = MapSizes::for_args(&args);
        let programs = if backend == Backend::Tracepoint { Programs::Tracepoints } else { Programs::Kprobes };
        let loaded = Loader::new(&kernel_cfg, &sizes, programs, &l2.insns, &l3.insns)?;
        log::debug!("maps created and programs linked at {:?}", started.elapsed());
        // The kprobe-multi program needs no targets: the verifier checks it
        // while ftrace's list is still being read.
        if matches!(backend, Backend::Auto | Backend::KprobeMulti) {
            multi_program = Some(kprobe_multi::load(&loaded));
            log::debug!("kprobe-multi program loaded at {:?}", started.elapsed());
        }
        loader = Some(loaded);
    }

    let available = match available {
        Some(thread) => thread.join().map_err(|_| anyhow!("reading ftrace's available functions failed"))?,
        None => None,
    };
    let plan = Plan::new(&btf, &mut kallsyms, available.as_ref(), backend, cfg.filter_func.as_ref())?;
    log::debug!("targets found at {:?}", started.elapsed());
    let Some(mut loader) = loader else {
        return plan.list(&mut std::io::stdout().lock()).context("writing the function list");
    };
    kallsyms.begin()?;
    // What the event loop needs is ready before the ready file says so
    // (events that wait unread make the eBPF side wake us harder), except,
    // with kprobes, the kernel's symbols: they are read while attaching.
    let reasons = DropReasons::from_btf(&btf);
    probes::raise_fd_limit();
    let attached = plan.attach(&loader, multi_program, args.verbose, args.filter_track_skb, &mut stop)?;
    log::debug!("attached at {:?}", started.elapsed());
    if stop.requested() {
        return Ok(());
    }
    if attached.attached == 0 {
        bail!("nothing could be attached ({}); run with --verbose to see why", attached.summary());
    }
    let logger = if args.debug { ebpf_logger(&attached) } else { None };
    // The BTF (megabytes) is not needed any more: free it and hand the pages
    // back, so that a long trace stays small.
    drop(btf);
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n").with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    // Events wait in the ring buffer until the symbols that name them are in.
    let kallsyms = kallsyms.get()?;
    log::debug!("kallsyms read at {:?}", started.elapsed());

    collect::run(&rt, &mut stop, &mut loader, logger, &attached, kallsyms, &reasons, sinks, &args)
}

fn choose_backend(requested: Backend) -> anyhow::Result<Backend> {
    let kprobes = probes::kprobes_available();
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

fn compile_filters(expr: Option<&str>) -> anyhow::Result<(filter::Compiled, filter::Compiled)> {
    let Some(expr) = expr else {
        let all = filter::Compiled { insns: filter::match_all(), reads: 0 };
        return Ok((all.clone(), all));
    };
    // The filter may read the event's whole packet buffer; how much of it is
    // valid (what the kernel copied) is passed at run time.
    filter::compile_pair(expr, SNAPLEN_MAX as u32).map_err(|e| {
        let shown: String = expr.chars().take(120).collect();
        let more = if shown.len() < expr.len() { "…" } else { "" };
        usage(format!("{e}\n  in expression: {shown}{more}"))
    })
}

/// What will be attached.
enum Plan {
    /// `copies`: the skb-copying functions this kernel lets us probe, for
    /// `--filter-track-skb`.
    Kprobes {
        backend: Backend,
        funcs: Vec<crate::btf::SkbFunc>,
        copies: Vec<String>,
    },
    Tracepoints(Vec<tracepoint::Target>),
}

impl Plan {
    fn new(
        btf: &KernelBtf,
        kallsyms: &mut ksym::Loading,
        available: Option<&std::collections::HashSet<String>>,
        backend: Backend,
        filter: Option<&regex::Regex>,
    ) -> anyhow::Result<Self> {
        let plan = match backend {
            Backend::Tracepoint => Self::Tracepoints(tracepoint::targets(btf, filter)),
            _ => {
                // ftrace's list when tracefs lets us read it, else every text symbol.
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

    fn list(&self, out: &mut impl std::io::Write) -> anyhow::Result<()> {
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
    /// could not be.
    fn attach(
        &self,
        loader: &Loader,
        multi_program: Option<anyhow::Result<OwnedFd>>,
        verbose: bool,
        track_skb: bool,
        stop: &mut Stop,
    ) -> anyhow::Result<Attached> {
        let mut attached = Attached::default();
        let started = std::time::Instant::now();
        match self {
            Self::Tracepoints(targets) => tracepoint::attach(loader, targets, &mut attached)?,
            Self::Kprobes { backend: Backend::Kprobe, funcs, .. } => {
                kprobe::attach(loader, funcs, &mut attached, stop)?
            }
            Self::Kprobes { backend, funcs, .. } => {
                let program = multi_program.unwrap_or_else(|| kprobe_multi::load(loader));
                if let Err(e) = kprobe_multi::attach(program, loader, funcs, &mut attached, stop) {
                    if *backend == Backend::KprobeMulti {
                        return Err(e);
                    }
                    log::info!("{e:#}; using kprobes");
                    kprobe::attach(loader, funcs, &mut attached, stop)?;
                }
            }
        }
        if let (true, Self::Kprobes { copies, .. }) = (track_skb, self) {
            kprobe::attach_clone_tracking(loader, copies, &mut attached)?;
        }
        note!("{} in {:.1}s", attached.summary(), started.elapsed().as_secs_f64());
        if verbose {
            for (name, why) in &attached.skipped {
                note!("skipped {name}: {why}");
            }
        }
        Ok(attached)
    }
}

/// Functions with an skb argument that this kernel lets us probe, and the
/// skb-copying functions it lets us probe.
fn kprobe_targets(
    btf: &KernelBtf,
    traceable: impl Fn(&str) -> bool,
    filter: Option<&regex::Regex>,
) -> (Vec<crate::btf::SkbFunc>, Vec<String>) {
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

/// Reads what the eBPF programs log (`aya_log_ebpf`), found through a loaded
/// program's maps.
fn ebpf_logger(attached: &Attached) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
    let program = attached.programs.first()?;
    let logger = sys::prog_id(program.as_raw_fd())
        .map_err(anyhow::Error::from)
        .and_then(|id| Ok(aya_log::EbpfLogger::init_from_id(id)?));
    logger.inspect_err(|e| log::warn!("eBPF diagnostics unavailable: {e}")).ok()
}
