//! One run, as a sequence of stages: discover the kernel, load, attach,
//! collect, detach, summarise. Each stage lives in its own module; this one
//! only orders them (and overlaps the slow reads of kernel lists with work
//! that does not need them).

use std::{collections::HashSet, os::fd::AsRawFd as _, thread::JoinHandle, time::Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::{
    btf::KernelBtf,
    cli::Backend,
    collect,
    config::{Config, Kmods, ProbeSpec, Task},
    ksym,
    loader::{Loader, Programs},
    output, privileges,
    probes::{
        self, Attached, kprobe_multi,
        plan::{Plan, choose_backend},
    },
    resolve::{self, DropReasons, Resolver},
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
        Task::Trace => trace(cfg).map(Some),
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
        let mut btf = KernelBtf::open()?;
        log::debug!("BTF read in {:?}", started.elapsed());
        let kmods = match &probes.kmods {
            Kmods::All => KernelBtf::module_names()?,
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
    privileges::check()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    let _guard = rt.enter();
    let mut stop = Stop::install()?;

    let mut kernel = Kernel::discover(&cfg.probes)?;
    let (mut loader, mut attached, attach_seconds) = attach(&cfg, &mut kernel, &mut stop)?;
    // What the event loop needs is ready before the ready file says so
    // (events that wait unread make the eBPF side wake us harder).
    let reasons = DropReasons::from_btf(&kernel.btf);
    let Kernel { btf, mut kallsyms, .. } = kernel;
    let mut summary = if stop.requested() {
        RunSummary::default()
    } else {
        if attached.count == 0 {
            bail!("nothing could be attached ({}); run with --verbose to see why", attached.summary());
        }
        let logger = if cfg.debug { ebpf_logger(&attached) } else { None };
        let (maps, stacks) = collect::Maps::take(&mut loader, cfg.output.stack)?;
        // The BTF (megabytes) is not needed any more: free it and hand the
        // pages back, so that a long trace stays small.
        drop(btf);
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        if let Some(path) = &cfg.ready_file {
            std::fs::write(path, b"ready\n").with_context(|| format!("writing --ready-file {}", path.display()))?;
        }
        // Events wait in the ring buffer until the symbols that name them are in.
        let kallsyms = kallsyms.get()?;
        let mut resolver = Resolver::new(kallsyms, &attached.probes, &reasons, stacks, cfg.output.timestamp);
        collect::run(&rt, &mut stop, maps, logger, &mut resolver, &mut consumers, &cfg.end)?
    };
    summary.backend = attached.backend;
    summary.attached = attached.count;
    summary.skipped = attached.skipped.len();
    summary.attach_seconds = attach_seconds;
    let detach_started = Instant::now();
    summary.detached = attached.detach();
    summary.detach_seconds = detach_started.elapsed().as_secs_f64();
    consumers.finish(&summary)?;
    Ok(summary)
}

/// Loads the programs and attaches them where the plan says; returns the
/// loader (its maps are read next), what was attached, and how long
/// attaching took.
fn attach(cfg: &Config, kernel: &mut Kernel, stop: &mut Stop) -> anyhow::Result<(Loader, Attached, f64)> {
    let started = Instant::now();
    let loader = load(cfg, kernel)?;
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
    let attached = plan.attach(&loader, multi_program, cfg.probes.track_clones, stop)?;
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
fn load(cfg: &Config, kernel: &Kernel) -> anyhow::Result<Loader> {
    let mut kernel_cfg = cfg.kernel;
    kernel_cfg.offsets = kernel.btf.offsets()?;
    // Test-only until `--output-ct` sets the flag: tests/vm/kprobes.sh loads
    // the conntrack path on Debian's kernels with it.
    if std::env::var_os("SKBTRACE_TEST_CONNTRACK").is_some() {
        kernel_cfg.flags |= tracer_common::config::CFG_CONNTRACK;
    }
    kernel_cfg.wakeup_bytes = cfg.maps.ring_bytes / 16;
    kernel_cfg.filter_reads_l2 = cfg.filter.l2.reads;
    kernel_cfg.filter_reads_l3 = cfg.filter.l3.reads;
    let programs = if kernel.backend == Backend::Tracepoint { Programs::Tracepoints } else { Programs::Kprobes };
    Loader::new(&kernel_cfg, &cfg.maps, programs, &cfg.filter.l2.insns, &cfg.filter.l3.insns)
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
