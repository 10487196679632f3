//! One run, as a sequence of stages: discover the kernel, load, attach,
//! collect, detach, summarise. Each stage lives in its own module; this one
//! only orders them (and overlaps the slow reads of kernel lists with work
//! that does not need them).

use std::{collections::HashSet, io::Write as _, os::fd::AsRawFd as _, thread::JoinHandle, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use tracer_common::config::{CFG_CONNTRACK, CFG_SKB_EXPR};

use crate::{
    assertions,
    btf::KernelBtf,
    cli::Backend,
    collect,
    command::AfterStart,
    config::usage,
    config::{Config, Kmods, ProbeSpec, Task},
    conntrack::CtNames,
    filter::{self, skb_expr::SkbExprError},
    ksym,
    loader::{Filters, Loader, Programs},
    nft_trace::Tracing,
    output, privileges,
    probes::{
        self, Attached, kprobe_multi,
        plan::{Plan, choose_backend},
    },
    resolve::{self, DropReasons, Resolver},
    skb_out,
    stop::Stop,
    summary::RunSummary,
    sys,
};

/// Runs the configured task; a trace returns its summary.
pub fn run(cfg: Config) -> anyhow::Result<Option<RunSummary>> {
    match cfg.task {
        Task::ListFuncs => {
            let mut kernel = Kernel::discover(&cfg.probes)?;
            let plan = kernel.plan(&cfg.probes)?;
            plan.list(&mut std::io::stdout().lock()).context("writing the function list")?;
            Ok(None)
        }
        Task::ListDropReasons => {
            let btf = open_btf(&cfg.probes)?;
            let mut out = std::io::stdout().lock();
            for (value, name) in DropReasons::from_btf(&btf).by_value() {
                writeln!(out, "{value}\t{name}").context("writing the drop reasons")?;
            }
            Ok(None)
        }
        Task::Generate(kind) => {
            let what = || format!("writing --generate {kind:?} to standard output");
            crate::generate::write(kind, &mut std::io::stdout().lock()).with_context(what)?;
            Ok(None)
        }
        Task::Trace => trace(cfg).map(Some),
    }
}

/// The kernel's BTF; a `--kernel-btf` file that is not BTF is the user's
/// mistake (exit 2), a kernel without BTF is not.
fn open_btf(probes: &ProbeSpec) -> anyhow::Result<KernelBtf> {
    match &probes.kernel_btf {
        Some(path) => {
            KernelBtf::open_from(Some(path)).map_err(|e| usage(format!("--kernel-btf {}: {e:#}", path.display())))
        }
        None => KernelBtf::open_from(None),
    }
}

/// What the running kernel has, read once.
struct Kernel {
    backend: Backend,
    btf: KernelBtf,
    kallsyms: ksym::Loading,
    /// ftrace's probe-able functions, being read (kprobes only).
    available: Option<JoinHandle<Option<HashSet<String>>>>,
}

impl Kernel {
    /// The kernel prints /proc/kallsyms and ftrace's function list slower
    /// than we read BTF and create maps (seconds in an emulated VM): they are
    /// read on threads of their own meanwhile. Kprobes need ftrace's list to
    /// choose targets, and kallsyms (names for events) only once events
    /// come: it starts after the targets, so that on two CPUs it does not
    /// slow the start-up down.
    fn discover(probes: &ProbeSpec) -> anyhow::Result<Self> {
        let started = Instant::now();
        let backend = choose_backend(probes.backend)?;
        let kallsyms = match backend {
            Backend::Tracepoint => ksym::Loading::start()?,
            _ => ksym::Loading::later(),
        };
        let available = (backend != Backend::Tracepoint)
            .then(|| std::thread::Builder::new().name("tracefs".into()).spawn(ksym::available_filter_functions))
            .transpose()
            .context("starting a thread to read ftrace's functions")?;
        let mut btf = open_btf(probes)?;
        log::debug!("BTF read in {:?}", started.elapsed());
        let kmods = match &probes.kmods {
            Kmods::All => btf.available_modules()?,
            Kmods::Named(names) => names.clone(),
        };
        btf.add_modules(&kmods)?;
        Ok(Self { backend, btf, kallsyms, available })
    }

    fn plan(&mut self, probes: &ProbeSpec) -> anyhow::Result<Plan> {
        let available = match self.available.take() {
            Some(thread) => thread.join().map_err(|_| anyhow!("reading ftrace's available functions failed"))?,
            None => None,
        };
        Plan::new(&self.btf, &mut self.kallsyms, available.as_ref(), self.backend, probes.filter_func.as_ref())
    }
}

fn trace(cfg: Config) -> anyhow::Result<RunSummary> {
    let boot_offset_ns = resolve::boot_offset_ns();
    let mut consumers = output::open(&cfg.output, cfg.summary_file.as_deref(), boot_offset_ns)?;
    if cfg.github_annotations {
        consumers.push(Box::new(output::GithubAnnotations));
    }
    privileges::check()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    let _guard = rt.enter();
    let mut stop = Stop::install()?;

    if cfg.probes.nft_trace && !probes::kprobes_available() {
        bail!(
            "--nft-trace needs kprobes (it probes {}), and this kernel cannot attach them ({} is missing): run \
             without --nft-trace (the tracepoint backend still sees netfilter drops, without the rule)",
            crate::btf::nft::TRACE_FUNCTION,
            probes::kprobe::PMU_TYPE_PATH
        );
    }
    let mut kernel = Kernel::discover(&cfg.probes)?;
    // nf_tables traces while this lives: it is dropped (the trace table
    // removed) on every way out of this function, after the probes detach.
    let nft = cfg.probes.nft_trace.then(|| Tracing::start(&kernel.btf)).transpose()?;
    // What the event loop needs is ready before the ready file says so
    // (events that wait unread make the eBPF side wake us harder).
    let reasons = DropReasons::from_btf(&kernel.btf);
    let ct_names = (cfg.kernel.flags & CFG_CONNTRACK != 0).then(|| CtNames::from_btf(&kernel.btf));
    cfg.assertions.validate(&reasons)?;
    let skb_out = skb_out::compile(&cfg.output.skb_out, &kernel.btf)?;
    let (mut loader, mut attached, attach_seconds) = attach(&cfg, &mut kernel, &skb_out, nft.as_ref(), &mut stop)?;
    let Kernel { btf, mut kallsyms, .. } = kernel;
    let mut links = attached.take_links();
    let mut summary = if stop.requested() {
        RunSummary::default()
    } else {
        if attached.count == 0 {
            bail!("nothing could be attached ({}); run with --verbose to see why", attached.summary());
        }
        let (mut maps, stacks) = collect::Maps::take(&mut loader, cfg.output.stack)?;
        maps.logger = if cfg.debug { ebpf_logger(&attached) } else { None };
        maps.skb_out = skb_out.reader(&mut loader)?;
        // The BTF (megabytes) is not needed any more: free it and hand the
        // pages back, so that a long trace stays small.
        drop(btf);
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        if let Some(path) = &cfg.ready_file {
            std::fs::write(path, b"ready\n").with_context(|| format!("writing --ready-file {}", path.display()))?;
        }
        let command = cfg.end.command.as_ref().map(|c| Ok::<_, anyhow::Error>((c.spawn()?, c.grace))).transpose()?;
        let ending = collect::Ending { limit: cfg.end.limit, duration: cfg.end.duration, command };
        let started = ending.command.is_some();
        // Events wait in the ring buffer until the symbols that name them are in.
        let collected = kallsyms.get().and_then(|kallsyms| {
            let mut resolver =
                Resolver::new(kallsyms, &attached.probes, &reasons, stacks, resolve::Wanted::of(&cfg.output));
            if let Some(names) = ct_names {
                resolver = resolver.with_conntrack(names);
            }
            let stages = collect::Stages { resolver: &mut resolver, tunnel_filter: cfg.filter.tunnel.as_ref() };
            collect::run(&rt, &mut stop, maps, stages, &mut consumers, ending, &mut || links.now())
        });
        match collected {
            Err(e) if started => return Err(e.context(AfterStart)),
            other => other?,
        }
    };
    summary.backend = attached.backend;
    summary.attached = attached.count;
    summary.skipped = attached.skipped.len();
    summary.attach_seconds = attach_seconds;
    let detach_started = Instant::now();
    let (closed, link_seconds) = links.result();
    summary.detached = closed + attached.detach();
    summary.detach_seconds = link_seconds + detach_started.elapsed().as_secs_f64();
    assertions::judge(&cfg.assertions, &mut summary);
    // Open stories end (adding their verdicts) before anyone prints the summary;
    // every consumer still finishes if that failed.
    let closed = consumers.close(&mut summary);
    let finished = closed.and(consumers.finish(&summary));
    match finished {
        Err(e) if summary.command.is_some() => Err(anyhow::Error::from(e).context(AfterStart)),
        other => other.map(|()| summary).map_err(Into::into),
    }
}

/// Loads the programs and attaches them where the plan says; returns the
/// loader (its maps are read next), what was attached, and how long
/// attaching took.
fn attach(
    cfg: &Config,
    kernel: &mut Kernel,
    skb_out: &skb_out::Compiled,
    nft: Option<&Tracing>,
    stop: &mut Stop,
) -> anyhow::Result<(Loader, Attached, f64)> {
    let started = Instant::now();
    let loader = load(cfg, kernel, skb_out, nft)?;
    log::debug!("maps created and programs linked at {:?}", started.elapsed());
    // The kprobe-multi program needs no targets: the verifier checks it
    // while ftrace's list is still being read.
    let multi_program = matches!(kernel.backend, Backend::Auto | Backend::KprobeMulti).then(|| {
        let program = kprobe_multi::load(&loader);
        log::debug!("kprobe-multi program loaded at {:?}", started.elapsed());
        program
    });
    let plan = kernel.plan(&cfg.probes)?;
    log::debug!("targets found at {:?}", started.elapsed());
    // With kprobes, the kernel's symbols are read while attaching.
    kernel.kallsyms.begin()?;
    probes::raise_fd_limit();
    let attach_started = Instant::now();
    let mut attached = plan.attach(&loader, multi_program, cfg.probes.track_clones, stop)?;
    if nft.is_some() {
        probes::kprobe::attach_nft_trace(&loader, &mut attached)?;
    }
    let seconds = attach_started.elapsed().as_secs_f64();
    note!("{} in {seconds:.1}s", attached.summary());
    if cfg.verbose {
        for (name, why) in &attached.skipped {
            note!("skipped {name}: {why}");
        }
    }
    log::debug!("attached at {:?}", started.elapsed());
    Ok((loader, attached, seconds))
}

/// The eBPF object with this run's configuration, offsets and filters.
fn load(cfg: &Config, kernel: &Kernel, skb_out: &skb_out::Compiled, nft: Option<&Tracing>) -> anyhow::Result<Loader> {
    let mut kernel_cfg = cfg.kernel;
    kernel_cfg.offsets = kernel.btf.offsets()?;
    if let Some(nft) = nft {
        kernel_cfg.nft = nft.offsets;
    }
    if kernel_cfg.flags & CFG_CONNTRACK != 0
        && let Err(why) = kernel.btf.conntrack_offsets()
    {
        note!("conntrack is not read: {why}");
    }
    kernel_cfg.wakeup_bytes = cfg.maps.ring_bytes / 16;
    kernel_cfg.filter_reads_l2 = cfg.filter.l2.reads;
    kernel_cfg.filter_reads_l3 = cfg.filter.l3.reads;
    let skb_expr = match &cfg.filter.skb_expr {
        Some(expr) => {
            kernel_cfg.flags |= CFG_SKB_EXPR;
            filter::skb_expr::compile(expr, &kernel.btf).map_err(|e| match e {
                // The kernel's BTF lacks struct sk_buff: not the user's mistake.
                SkbExprError::NoSkbType => anyhow::Error::from(e),
                e => usage(e.to_string()),
            })?
        }
        None => filter::match_all(),
    };
    let programs = if kernel.backend == Backend::Tracepoint { Programs::Tracepoints } else { Programs::Kprobes };
    let filters = Filters {
        l2: &cfg.filter.l2.insns,
        l3: &cfg.filter.l3.insns,
        skb_expr: &skb_expr,
        skb_metadata: &skb_out.metadata,
    };
    Loader::new(&kernel_cfg, &skb_out.config, &cfg.maps, programs, &filters)
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
