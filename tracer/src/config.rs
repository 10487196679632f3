//! Second stage of argument handling: [`Args`] checked and turned into one
//! [`Config`] that holds everything a run needs. Every bad input is found
//! here, before anything is loaded or attached (exit 2); nothing past this
//! module reads `Args`.
//!
//! Longer than 400 lines: one place for every check of the arguments is the
//! point of this stage (so that nothing later can meet a bad input).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use regex::Regex;
use tracer_common::{
    config::{
        CFG_CALLER, CFG_CONNTRACK, CFG_IFINDEX, CFG_MARK, CFG_NETNS, CFG_NFT_TRACE, CFG_PCAP, CFG_PID, CFG_STACK,
        CFG_TRACK_SKB,
    },
    limits::{CLONING_ENTRIES, SNAPLEN_MAX, STACK_ENTRIES},
    skb_out::{DUMP_BYTES_MAX, DUMP_BYTES_MIN, METADATA_MAX},
};

use crate::{
    assertions::{AssertSpec, DropPatterns},
    cli::{Args, Backend, Timestamp},
    command::CommandSpec,
    filter,
    output::rotate::Rotation,
    skb_out::SkbOutSpec,
};

/// Bad input: exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// What a run does.
pub enum Task {
    /// Print the functions (or tracepoints) that would be traced.
    ListFuncs,
    /// Print the kernel's drop reasons.
    ListDropReasons,
    /// Write shell completions or the man page.
    Generate(crate::generate::Generate),
    /// Trace until the end condition.
    Trace,
}

/// Everything a run needs, validated.
pub struct Config {
    pub task: Task,
    pub probes: ProbeSpec,
    /// The in-kernel filters and what each event records; offsets, which
    /// come from BTF, and the ring's wake-up mark are filled in at load.
    pub kernel: tracer_common::Config,
    pub filter: Filter,
    pub maps: MapSizes,
    pub output: OutputSpec,
    pub end: EndSpec,
    /// What the run must (not) see, and the exit code if it does (not).
    pub assertions: AssertSpec,
    /// Each drop an assertion fails on is also a GitHub Actions `::error`.
    pub github_annotations: bool,
    /// Created once every probe is attached.
    pub ready_file: Option<PathBuf>,
    /// The run summary is written here at exit.
    pub summary_file: Option<PathBuf>,
    /// List what could not be attached.
    pub verbose: bool,
    /// Show the eBPF programs' own diagnostics.
    pub debug: bool,
}

/// What to attach.
pub struct ProbeSpec {
    pub backend: Backend,
    /// Whole-name match on functions or tracepoints.
    pub filter_func: Option<Regex>,
    pub kmods: Kmods,
    /// Follow copies of tracked skbs (`--filter-track-skb`, kprobes).
    pub track_clones: bool,
    /// The kernel's BTF from this file rather than /sys/kernel/btf/vmlinux.
    pub kernel_btf: Option<PathBuf>,
    /// `--nft-trace`: also probe `__nft_trace_packet`, with the trace table installed.
    pub nft_trace: bool,
}

/// Kernel modules whose functions are traced too.
pub enum Kmods {
    Named(Vec<String>),
    /// Every module that has BTF.
    All,
}

/// The pcap expression, compiled for both kinds of capture, and the skb
/// expression (compiled at load, against the kernel's BTF).
pub struct Filter {
    pub expression: Option<String>,
    /// `--filter-skb-expr`.
    pub skb_expr: Option<String>,
    /// `--filter-tunnel-pcap-l2/l3`, run in user space on the inner headers.
    pub tunnel: Option<filter::tunnel::TunnelFilter>,
    /// For packets whose bytes start at the MAC header.
    pub l2: filter::Compiled,
    /// For packets whose bytes start at the network header.
    pub l3: filter::Compiled,
}

/// Map sizes chosen on the command line.
pub struct MapSizes {
    pub ring_bytes: u32,
    pub track_entries: u32,
    pub cloning_entries: u32,
    pub stack_entries: u32,
    /// `SKB_OUT`, the records of `--output-skb` and friends: a page without them.
    pub skb_out_ring_bytes: u32,
    /// `SKB_OUT_BUF`'s value: the record's header and room for the dumps.
    pub skb_out_buf_bytes: u32,
}

#[cfg(test)]
impl MapSizes {
    /// The default sizes with a ring of `ring_bytes` and no `--output-skb`,
    /// for tests that load the programs.
    pub fn with_ring(ring_bytes: u32) -> Self {
        use tracer_common::{limits::TRACK_ENTRIES_DEFAULT, skb_out::SkbOutConfig};
        Self {
            ring_bytes,
            track_entries: TRACK_ENTRIES_DEFAULT,
            cloning_entries: CLONING_ENTRIES,
            stack_entries: STACK_ENTRIES,
            skb_out_ring_bytes: 1,
            skb_out_buf_bytes: SkbOutConfig::zeroed().buffer_bytes(),
        }
    }
}

/// How events are printed and kept.
pub struct OutputSpec {
    pub format: Format,
    /// Text or JSON goes here instead of standard output.
    pub file: Option<PathBuf>,
    /// pcap-ng to this file, or to standard output for `-`.
    pub pcap: Option<PathBuf>,
    pub timestamp: Timestamp,
    /// Resolve kernel stacks (`--output-stack`).
    pub stack: bool,
    pub snaplen: u32,
    /// Which of pwru's optional text columns are shown.
    pub columns: Columns,
    /// How `--output-file` is rotated.
    pub rotation: Rotation,
    /// `--output-skb-metadata`, `--output-skb-cb`, `--output-skb`, `--output-skb-shared-info`.
    pub skb_out: SkbOutSpec,
    /// `--explain`: stories instead of lines.
    pub explain: Option<ExplainSpec>,
    /// `--nft-trace`: events carry nf_tables's verdicts; explain can name the rule.
    pub nft_trace: bool,
}

/// `--explain` and its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplainSpec {
    /// A story with no event for this long (event time) ends.
    pub idle: Duration,
    /// Open stories at most; the oldest is evicted.
    pub max_stories: usize,
}

impl ExplainSpec {
    pub const IDLE_DEFAULT: Duration = Duration::from_secs(2);
    pub const MAX_STORIES_DEFAULT: usize = 10_000;

    /// From the flags; `--explain-*` without `--explain`, or no room for a story, is a usage error.
    fn from_args(args: &Args) -> anyhow::Result<Option<Self>> {
        if !args.explain {
            for (given, flag) in [
                (args.explain_idle.is_some(), "--explain-idle"),
                (args.explain_max_stories.is_some(), "--explain-max-stories"),
            ] {
                if given {
                    return Err(usage(format!("{flag} tunes --explain: add --explain")));
                }
            }
            return Ok(None);
        }
        let max_stories = args.explain_max_stories.unwrap_or(Self::MAX_STORIES_DEFAULT);
        if max_stories == 0 {
            return Err(usage("--explain-max-stories must be at least 1"));
        }
        let idle = args.explain_idle.unwrap_or(Self::IDLE_DEFAULT);
        if idle.is_zero() {
            return Err(usage("--explain-idle must be longer than 0, e.g. 500ms"));
        }
        Ok(Some(Self { idle, max_stories }))
    }
}

/// pwru's optional columns (text), and what the resolver adds for them.
/// The default is pwru's: meta and tuple on, the rest off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    /// NETNS, MARK/x, IFACE, PROTO, MTU, LEN.
    pub meta: bool,
    pub tuple: bool,
    /// `(tcp:SYN|ACK)` in the tuple.
    pub tcp_flags: bool,
    /// TUNNEL: the inner tuple of VXLAN and Geneve.
    pub tunnel: bool,
    /// The netns name, in a column this wide.
    pub netns_names: Option<usize>,
    /// `__sk_buff->cb[]` after the meta columns (`--output-skb-cb`, with meta only).
    pub cb: bool,
    /// Conntrack's entry, after FUNC (`--output-ct`).
    pub ct: bool,
}

impl Default for Columns {
    fn default() -> Self {
        Self { meta: true, tuple: true, tcp_flags: false, tunnel: false, netns_names: None, cb: false, ct: false }
    }
}

impl OutputSpec {
    /// Whether pcap-ng owns standard output.
    pub fn pcap_to_stdout(&self) -> bool {
        self.pcap.as_deref().is_some_and(|p| p.as_os_str() == "-")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// When the event loop ends, besides SIGINT and SIGTERM.
pub struct EndSpec {
    /// After this many events.
    pub limit: Option<u64>,
    /// After this long (no command).
    pub duration: Option<Duration>,
    /// When this command exits (and a grace period after).
    pub command: Option<CommandSpec>,
}

impl Config {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        if let Some((flag, why)) = args.pwru_not_yet.refusal() {
            return Err(usage(format!("{flag} (a pwru flag) is not supported yet: {why}")));
        }
        let expression = (!args.expression.is_empty()).then(|| args.expression.join(" "));
        let filter_func = args
            .filter_func
            .as_deref()
            .map(|re| {
                Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| usage(format!("invalid --filter-func regex {re:?}: {e}")))
            })
            .transpose()?;
        if args.snaplen as usize > SNAPLEN_MAX {
            return Err(usage(format!("--snaplen {} is larger than the maximum, {SNAPLEN_MAX}", args.snaplen)));
        }
        if !args.ring_size.is_power_of_two() || args.ring_size < 4 {
            return Err(usage(format!("--ring-size {} must be a power of two KiB, at least 4", args.ring_size)));
        }
        if args.nft_trace && args.backend == Backend::Tracepoint {
            return Err(usage(
                "--nft-trace probes __nft_trace_packet, which needs kprobes: use --backend auto, kprobe or kprobe-multi",
            ));
        }
        let end = end_spec(&args)?;
        let assertions = assert_spec(&args)?;
        let kernel = kernel_config(&args, expression.is_some())?;
        let mut filter = compile_filter(expression)?;
        filter.skb_expr = args.filter_skb_expr.clone();
        let skb_out = skb_out_spec(&args)?;
        let skb_out_buf_bytes = skb_out.config().buffer_bytes();
        filter.tunnel = filter::tunnel::TunnelFilter::compile(
            args.filter_tunnel_pcap_l2.as_deref(),
            args.filter_tunnel_pcap_l3.as_deref(),
        )
        .map_err(|e| usage(format!("--filter-tunnel-pcap-l2/l3: {e}")))?;
        let track = args.filter_track_skb;
        // Maps of options not asked for get one entry: the kernel allocates
        // hash and stack maps whole at creation (16k stacks are 17 MB).
        let maps = MapSizes {
            ring_bytes: args.ring_size * 1024,
            track_entries: if track { args.track_entries } else { 1 },
            cloning_entries: if track { CLONING_ENTRIES } else { 1 },
            stack_entries: if args.output_stack { STACK_ENTRIES } else { 1 },
            // As large as the events' ring, and room for a few records at
            // least; unused, one byte, which the loader rounds up to a page.
            skb_out_ring_bytes: if skb_out.what() != 0 {
                (args.ring_size * 1024).max((skb_out_buf_bytes * 4).next_power_of_two())
            } else {
                1
            },
            skb_out_buf_bytes,
        };
        let explain = ExplainSpec::from_args(&args)?;
        let output = OutputSpec {
            format: if args.output_json { Format::Json } else { Format::Text },
            file: args.output_file,
            pcap: args.output_pcap,
            timestamp: args.timestamp,
            stack: args.output_stack,
            snaplen: args.snaplen,
            columns: Columns {
                meta: args.output_meta,
                tuple: args.output_tuple,
                tcp_flags: args.output_tcp_flags,
                tunnel: args.output_tunnel,
                // pwru's floor for the width.
                netns_names: args.output_netns_names.then_some(args.netns_names_max_length.max(10)),
                cb: args.output_skb_cb,
                ct: args.output_ct,
            },
            rotation: Rotation::pwru(
                args.output_file_max_size,
                args.output_file_max_backups,
                args.output_file_max_age,
                args.output_file_compress,
            ),
            skb_out,
            explain,
            nft_trace: args.nft_trace,
        };
        Ok(Self {
            task: if let Some(kind) = args.generate {
                Task::Generate(kind)
            } else if args.list_funcs {
                Task::ListFuncs
            } else if args.list_drop_reasons {
                Task::ListDropReasons
            } else {
                Task::Trace
            },
            probes: ProbeSpec {
                backend: args.backend,
                filter_func,
                kmods: if args.all_kmods { Kmods::All } else { Kmods::Named(args.kmods) },
                track_clones: track,
                kernel_btf: match args.kernel_btf {
                    Some(path) => {
                        std::fs::File::open(&path)
                            .map_err(|e| usage(format!("--kernel-btf {}: {e}", path.display())))?;
                        Some(path)
                    }
                    None => None,
                },
                nft_trace: args.nft_trace,
            },
            kernel,
            filter,
            maps,
            output,
            end,
            assertions,
            github_annotations: std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            ready_file: args.ready_file,
            summary_file: args.summary_file,
            verbose: args.verbose,
            debug: args.debug,
        })
    }
}

/// When to stop: `-- CMD` and its options, `--duration`, the line limit.
fn end_spec(args: &Args) -> anyhow::Result<EndSpec> {
    if args.dash_dash && args.command.is_empty() {
        return Err(usage("`--` must be followed by a command to run, e.g. `-- curl http://10.0.0.2/`"));
    }
    if args.command.is_empty() {
        for (given, flag) in [
            (args.grace.is_some(), "--grace"),
            (args.timeout.is_some(), "--timeout"),
            (args.cmd_as_root, "--cmd-as-root"),
        ] {
            if given {
                return Err(usage(format!("{flag} applies to a command: add `-- CMD [ARGS…]` at the end")));
            }
        }
    } else if args.duration.is_some() {
        return Err(usage("--duration is for traces without a command; with `-- CMD` use --timeout"));
    }
    let command = (!args.command.is_empty())
        .then(|| {
            let grace = args.grace.unwrap_or(crate::cli::GRACE_DEFAULT);
            CommandSpec::new(args.command.clone(), args.cmd_as_root, grace, args.timeout)
        })
        .transpose()?;
    // pwru's meaning: 0 is no limit.
    let limit = args.output_limit_lines.filter(|&n| n > 0);
    Ok(EndSpec { limit, duration: args.duration, command })
}

/// pwru's sk_buff printing flags; the fields are checked against BTF at load.
fn skb_out_spec(args: &Args) -> anyhow::Result<SkbOutSpec> {
    let metadata: Vec<String> =
        args.output_skb_metadata.iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
    if metadata.len() > METADATA_MAX {
        return Err(usage(format!(
            "--output-skb-metadata: {} fields given, at most {METADATA_MAX} (pwru's limit)",
            metadata.len()
        )));
    }
    let bytes = args.set_percpu_buf;
    if !(DUMP_BYTES_MIN..=DUMP_BYTES_MAX).contains(&bytes) {
        return Err(usage(format!(
            "--set-percpu-buf {bytes}: from {DUMP_BYTES_MIN} to {DUMP_BYTES_MAX} bytes (both dumps share one \
             per-CPU map value, and the kernel takes at most 32 KiB)"
        )));
    }
    Ok(SkbOutSpec {
        metadata,
        cb: args.output_skb_cb,
        skb: args.output_skb,
        shinfo: args.output_skb_shared_info,
        dump_bytes: bytes,
    })
}

fn assert_spec(args: &Args) -> anyhow::Result<AssertSpec> {
    Ok(AssertSpec {
        fail_on_drop: args.fail_on_drop.as_deref().map(|s| DropPatterns::parse(s, "--fail-on-drop")).transpose()?,
        expect_drop: args.expect_drop.as_deref().map(|s| DropPatterns::parse(s, "--expect-drop")).transpose()?,
        fail_on_lost: args.fail_on_lost,
        exit_code: args.drop_exit_code,
    })
}

/// The in-kernel filters and recording options.
fn kernel_config(args: &Args, pcap: bool) -> anyhow::Result<tracer_common::Config> {
    let mut kernel = tracer_common::Config::zeroed();
    kernel.snaplen = args.snaplen;
    for (on, flag) in [
        (pcap, CFG_PCAP),
        (args.filter_track_skb, CFG_TRACK_SKB),
        (args.output_stack, CFG_STACK),
        // Explain reads where a drop happened: with kprobes, the drop
        // function's caller.
        (args.output_caller || args.explain, CFG_CALLER),
        // Explain always reads conntrack: the stories show it.
        (args.output_ct || args.explain, CFG_CONNTRACK),
        (args.nft_trace, CFG_NFT_TRACE),
    ] {
        if on {
            kernel.flags |= flag;
        }
    }
    if let Some(mark) = &args.filter_mark {
        let (value, mask) = parse_mark(mark)?;
        kernel.flags |= CFG_MARK;
        kernel.mark = value & mask;
        kernel.mark_mask = mask;
    }
    if let Some(pid) = args.filter_pid {
        kernel.flags |= CFG_PID;
        kernel.pid = pid;
    }
    // As in pwru, --filter-ifname names an interface of one namespace:
    // --filter-netns's, else skbtrace's own, and only packets there match.
    let netns = match (&args.filter_netns, &args.filter_ifname) {
        (Some(spec), _) => Some(spec.as_str()),
        (None, Some(_)) => Some(OWN_NETNS),
        (None, None) => None,
    };
    if let Some(spec) = netns {
        let (inode, path) = parse_netns(spec)?;
        kernel.flags |= CFG_NETNS;
        kernel.netns = inode;
        if let Some(name) = &args.filter_ifname {
            let Some(path) = path else {
                return Err(usage(format!(
                    "--filter-ifname {name} needs a namespace to look {name} up in: give --filter-netns as a path \
                     (/run/netns/NAME or /proc/PID/ns/net), not {spec}"
                )));
            };
            kernel.flags |= CFG_IFINDEX;
            kernel.ifindex = ifindex_in(name, &path)?;
        }
    }
    Ok(kernel)
}

fn compile_filter(expression: Option<String>) -> anyhow::Result<Filter> {
    let Some(expr) = expression else {
        let all = filter::Compiled { insns: filter::match_all(), reads: 0 };
        return Ok(Filter { expression: None, skb_expr: None, tunnel: None, l2: all.clone(), l3: all });
    };
    // The filter may read the event's whole packet buffer; how much of it is
    // valid (what the kernel copied) is passed at run time.
    let (l2, l3) = filter::compile_pair(&expr, SNAPLEN_MAX as u32).map_err(|e| {
        let shown: String = expr.chars().take(120).collect();
        let more = if shown.len() < expr.len() { "…" } else { "" };
        usage(format!("{e}\n  in expression: {shown}{more}"))
    })?;
    Ok(Filter { expression: Some(expr), skb_expr: None, tunnel: None, l2, l3 })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn parse_mark(spec: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || usage(format!("invalid --filter-mark {spec:?}: expected VALUE or VALUE/MASK, e.g. 0x10/0xff"));
    match spec.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v).ok_or_else(bad)?, parse_u32(m).ok_or_else(bad)?)),
        None => Ok((parse_u32(spec).ok_or_else(bad)?, u32::MAX)),
    }
}

/// `inode:N` or a path to a netns file; returns the inode and the path.
pub fn parse_netns(spec: &str) -> anyhow::Result<(u32, Option<String>)> {
    if let Some(n) = spec.strip_prefix("inode:") {
        let inode = n.parse().map_err(|_| usage(format!("invalid --filter-netns {spec:?}: inode must be a number")))?;
        return Ok((inode, None));
    }
    let meta = std::fs::metadata(spec)
        .map_err(|e| usage(format!("--filter-netns {spec}: {e}; give inode:N or a path like /proc/PID/ns/net")))?;
    Ok((meta.ino() as u32, Some(spec.to_owned())))
}

/// skbtrace's own network namespace.
const OWN_NETNS: &str = "/proc/self/ns/net";

/// The interface's index, looked up inside the netns at `netns`.
fn ifindex_in(name: &str, netns: &str) -> anyhow::Result<u32> {
    let lookup = || {
        let c = std::ffi::CString::new(name).map_err(|_| usage("interface name contains NUL"))?;
        // SAFETY: c is a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            let ns = if netns == OWN_NETNS { "skbtrace's network namespace" } else { netns };
            return Err(usage(format!("--filter-ifname: no interface named {name:?} in {ns}")));
        }
        Ok(index)
    };
    if netns == OWN_NETNS { lookup() } else { crate::netns::within(Path::new(netns), lookup) }
}
