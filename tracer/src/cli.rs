//! Command-line flags (pwru's names where pwru has the flag), parsed by clap
//! and then validated into a [`Config`](crate::config::Config).

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use crate::generate::Generate;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// kprobe-multi where the kernel has it, else kprobes, else tracepoints.
    Auto,
    /// One kprobe per function.
    Kprobe,
    /// One kprobe-multi link for every function, each told where its skb is (Linux ≥ 5.18).
    KprobeMulti,
    /// The kernel's networking tracepoints; works without kprobes.
    Tracepoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Timestamp {
    None,
    /// The kernel's monotonic time of the event, in ns (TIMESTAMP column).
    Current,
    /// ns since the same skb's previous event, 0 on its first.
    Relative,
    /// The event's local date and time (TIME column), and its kernel ns (TIMESTAMP).
    Absolute,
}

/// Where did my packet go? Traces packets (sk_buffs) through the kernel's
/// functions and says where they were dropped and why.
///
/// With `-- CMD [ARGS…]`, skbtrace attaches, then runs CMD, traces until it
/// exits (and a grace period after), and exits with CMD's status, or with the
/// assertion's code when --fail-on-drop or --expect-drop failed.
#[derive(Debug, Parser)]
#[command(name = "skbtrace", version = crate::VERSION, about = ABOUT, long_about = None, after_help = EXIT_CODES)]
pub struct Args {
    /// pcap-filter expression, as for tcpdump (e.g. 'udp and dst port 4000'); run in the kernel.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// Run this command once attached (no shell), and trace until it exits.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// After CMD exits, keep tracing this long for replies and resets in flight (e.g. 300ms, 2s) [default: 300ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// End CMD after DURATION (SIGTERM, then SIGKILL) and exit 124, as timeout(1) does.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Without CMD: stop tracing after DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Under sudo, run CMD as root rather than as the invoking user (SUDO_UID, SUDO_GID).
    #[arg(long)]
    pub cmd_as_root: bool,
    /// Exit with --drop-exit-code when a traced packet was dropped for one of REASONS (comma-separated
    /// names with or without SKB_DROP_REASON_, globs like 'NETFILTER_*', '!NAME' to exclude); bare: any
    /// reason but the benign ones (SKB_CONSUMED, SOCKET_CLOSE, TCP_OLD_DATA, TCP_OLD_SEQUENCE,
    /// TCP_OLD_ACK, TCP_OFOMERGE, DUP_FRAG).
    #[arg(long, value_name = "REASONS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub fail_on_drop: Option<String>,
    /// Exit with --drop-exit-code unless a traced packet was dropped for one of REASONS.
    #[arg(long, value_name = "REASONS", require_equals = true)]
    pub expect_drop: Option<String>,
    /// Exit with --drop-exit-code when events were lost (an assertion on incomplete data fails).
    #[arg(long)]
    pub fail_on_lost: bool,
    /// The exit code of a failed assertion.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub drop_exit_code: u8,
    /// Print the drop reasons this kernel has, for --fail-on-drop and --expect-drop, and exit.
    #[arg(long)]
    pub list_drop_reasons: bool,
    /// Whether `--` was given (with or without a command after it).
    #[arg(skip)]
    pub dash_dash: bool,

    /// How to attach.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// Trace only functions (or tracepoints) whose whole name matches REGEX.
    #[arg(long, value_name = "REGEX")]
    pub filter_func: Option<String>,
    /// Print the functions that would be traced (name, skb position, module) and exit.
    #[arg(long)]
    pub list_funcs: bool,
    /// Also trace functions of these kernel modules (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "MODULES")]
    pub kmods: Vec<String>,
    /// Also trace functions of every kernel module that has BTF.
    #[arg(long)]
    pub all_kmods: bool,

    /// Only skbs whose mark matches VALUE[/MASK] (hex with 0x, or decimal).
    #[arg(long, value_name = "VALUE[/MASK]")]
    pub filter_mark: Option<String>,
    /// Only skbs in this network namespace: inode:N or /proc/PID/ns/net.
    #[arg(long, value_name = "NETNS")]
    pub filter_netns: Option<String>,
    /// Only skbs on this interface (in skbtrace's network namespace, or the one --filter-netns names).
    #[arg(long, value_name = "NAME")]
    pub filter_ifname: Option<String>,
    /// Only skbs seen while process PID is current.
    #[arg(long, value_name = "PID")]
    pub filter_pid: Option<u32>,
    /// Only skbs for which this C expression over their fields holds, e.g. 'skb->len > 100 &&
    /// skb->dev->name == "eth0"'; checked against the kernel's BTF, run in the kernel.
    #[arg(long, value_name = "EXPR")]
    pub filter_skb_expr: Option<String>,
    /// Only VXLAN and Geneve packets whose inner Ethernet frame matches this pcap expression.
    #[arg(long, value_name = "EXPR")]
    pub filter_tunnel_pcap_l2: Option<String>,
    /// Only VXLAN and Geneve packets whose inner IP packet matches this pcap expression.
    #[arg(long, value_name = "EXPR")]
    pub filter_tunnel_pcap_l3: Option<String>,
    /// Once an skb matched, keep tracing it through NAT and header rewrites until it is freed.
    #[arg(long)]
    pub filter_track_skb: bool,
    /// Number of skbs --filter-track-skb can follow at once.
    #[arg(long, default_value_t = tracer_common::limits::TRACK_ENTRIES_DEFAULT, value_name = "N")]
    pub track_entries: u32,

    /// The NETNS, MARK/x, IFACE, PROTO, MTU and LEN columns (--output-meta=false hides them).
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub output_meta: bool,
    /// The TUPLE column (--output-tuple=false hides it).
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub output_tuple: bool,
    /// Conntrack's entry for each skb (state, status bits such as SRC_NAT/DST_NAT, both tuples, zone, mark).
    #[arg(long)]
    pub output_ct: bool,
    /// TCP flags in the tuple, e.g. 10.0.0.1:80->10.0.0.2:4000(tcp:SYN|ACK).
    #[arg(long)]
    pub output_tcp_flags: bool,
    /// The inner tuple of VXLAN and Geneve packets (TUNNEL column, JSON `tunnel`).
    #[arg(long)]
    pub output_tunnel: bool,
    /// The network namespace's name (from /run/netns and container runtimes' netns directories).
    #[arg(long)]
    pub output_netns_names: bool,
    /// Width of the netns name column.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub netns_names_max_length: usize,
    /// Print the kernel stack of each event.
    #[arg(long)]
    pub output_stack: bool,
    /// Print the caller of each traced function (kprobes).
    #[arg(long)]
    pub output_caller: bool,
    /// Print these skb fields after FUNC, e.g. 'skb->hash,skb->dev->name' (at most 4; integers, enums,
    /// pointers, char arrays), as NAME=VALUE; checked against the kernel's BTF, read in the kernel.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub output_skb_metadata: Vec<String>,
    /// Print the five u32s of ((struct qdisc_skb_cb *)skb->cb)->data after the meta columns.
    #[arg(long)]
    pub output_skb_cb: bool,
    /// Print the whole struct sk_buff, as the kernel's BTF describes it (bpf_snprintf_btf).
    #[arg(long)]
    pub output_skb: bool,
    /// Print the skb's struct skb_shared_info, likewise.
    #[arg(long)]
    pub output_skb_shared_info: bool,
    /// Room for each --output-skb and --output-skb-shared-info dump, in bytes; longer dumps are cut.
    #[arg(long, default_value_t = tracer_common::skb_out::DUMP_BYTES_DEFAULT, value_name = "BYTES")]
    pub set_percpu_buf: u32,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub output_json: bool,
    /// Write the trace to PATH instead of standard output (rotated as the next four options say).
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    /// Rotate --output-file when it reaches MB megabytes (pwru's default, 100).
    #[arg(long, default_value_t = 100, value_name = "MB")]
    pub output_file_max_size: u64,
    /// Rotated files to keep (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub output_file_max_backups: usize,
    /// Days to keep rotated files (0: forever).
    #[arg(long, default_value_t = 0, value_name = "DAYS")]
    pub output_file_max_age: u32,
    /// gzip rotated files.
    #[arg(long)]
    pub output_file_compress: bool,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    pub output_limit_lines: Option<u64>,
    /// Also write the packets as pcap-ng to FILE ('-' for standard output).
    #[arg(long, value_name = "FILE")]
    pub output_pcap: Option<PathBuf>,
    /// One story per packet instead of one line per event, printed when it ends, with a `verdict:` line.
    #[arg(long)]
    pub explain: bool,
    /// Name the nf_tables rule (table, chain, handle, verdict) that decided about each traced packet: a kprobe
    /// on __nft_trace_packet (kprobes only). Costs: it installs table inet skbtrace_nft_trace_PID (a hookless `meta
    /// nftrace set 1` rule, removed at exit), which turns on nf_tables tracing for every packet in every netns
    /// while skbtrace runs: every rule verdict of every packet calls __nft_trace_packet and runs the probe.
    #[arg(long)]
    pub nft_trace: bool,
    /// --explain: a story with no event for DURATION ends (by the events' own clock) [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub explain_idle: Option<Duration>,
    /// --explain: at most N stories open at once; the oldest is ended (and counted) to make room [default: 10000].
    #[arg(long, value_name = "N")]
    pub explain_max_stories: Option<usize>,
    /// Timestamp column.
    #[arg(long, value_enum, default_value_t = Timestamp::None)]
    pub timestamp: Timestamp,
    /// Packet bytes copied per event.
    #[arg(long, default_value_t = tracer_common::limits::SNAPLEN_DEFAULT, value_name = "BYTES")]
    pub snaplen: u32,
    /// Ring buffer size in KiB (a power of two).
    #[arg(long, default_value_t = tracer_common::limits::RING_BYTES_DEFAULT / 1024, value_name = "KIB")]
    pub ring_size: u32,

    /// Read the kernel's BTF from FILE (raw BTF or an ELF vmlinux) instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE")]
    pub kernel_btf: Option<PathBuf>,

    /// pwru's flags that skbtrace does not have yet: accepted by the parser
    /// so that the refusal can say why (config.rs).
    #[command(flatten)]
    pub pwru_not_yet: PwruNotYet,

    /// Create PATH once every probe is attached.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Write the run summary (events, lost, drops by reason, attach and detach) to PATH as JSON at exit.
    #[arg(long, value_name = "PATH")]
    pub summary_file: Option<PathBuf>,
    /// List the functions that could not be attached.
    #[arg(short, long)]
    pub verbose: bool,
    /// Show the eBPF programs' own diagnostics.
    #[arg(long)]
    pub debug: bool,

    /// Write shell completions or the man page to standard output and exit.
    #[arg(long, value_enum, hide = true, value_name = "KIND")]
    pub generate: Option<Generate>,
}

/// `--grace`'s default: replies, ICMP errors and resets still in flight
/// when a client exits arrive within a few round trips.
pub const GRACE_DEFAULT: Duration = Duration::from_millis(300);

/// One line on what skbtrace is, for `--help` and the man page's NAME.
const ABOUT: &str = "where did my packet go? Traces packets (sk_buffs) through the kernel and says where they were \
                     dropped and why";

/// The command line's definition, for `--generate`.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Parses the command line; `--` alone (no command after it) is kept track
/// of, since clap cannot tell it from no `--` at all.
pub fn parse(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Args, clap::Error> {
    let argv: Vec<std::ffi::OsString> = argv.into_iter().collect();
    let mut args = <Args as clap::Parser>::try_parse_from(&argv)?;
    args.dash_dash = argv.iter().skip(1).any(|a| a == "--");
    Ok(args)
}

/// `--help`'s last words: what each exit code means, in order of precedence.
const EXIT_CODES: &str = "\
Exit codes, the first that applies:
  2    usage error (nothing was attached)
  1    skbtrace failed (125 once CMD has started, so that it is not CMD's 1)
  127  CMD not found; 126: CMD not executable
  3    an assertion failed (--fail-on-drop, --expect-drop, --fail-on-lost; see --drop-exit-code)
  124  --timeout ended CMD
  N    CMD's own exit status (128+S when a signal S killed it)
  0    otherwise";

/// `300ms`, `2s`, `1m30s`, or a bare number of seconds as timeout(1) takes.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}); e.g. 300ms, 2s, 1m"))
}

/// pwru 1.0.12's flags that skbtrace does not implement yet, hidden from
/// `--help`. Each is refused with the reason (`PwruNotYet::refusal`).
#[derive(Debug, Default, clap::Args)]
pub struct PwruNotYet {
    #[arg(long, hide = true, value_name = "FUNCS")]
    pub filter_non_skb_funcs: Option<String>,
    #[arg(long, hide = true)]
    pub filter_track_skb_by_stackid: bool,
    #[arg(long, hide = true)]
    pub filter_trace_tc: bool,
    #[arg(long, hide = true)]
    pub filter_trace_xdp: bool,
    #[arg(long, hide = true)]
    pub filter_track_bpf_helpers: bool,
    #[arg(long, hide = true, value_name = "N")]
    pub filter_kprobe_batch: Option<u64>,
    #[arg(long, hide = true, value_name = "EXPR")]
    pub filter_xdp_expr: Option<String>,
    #[arg(long, hide = true)]
    pub output_bpfmap: bool,
    #[arg(long, hide = true, value_name = "FIELDS")]
    pub output_xdp_metadata: Option<String>,
}

const LATER_FENTRY: &str =
    "tracing tc and XDP BPF programs (fentry/fexit) and the BPF helpers they call is a later step";

impl PwruNotYet {
    /// The first flag given, and why skbtrace refuses it.
    pub fn refusal(&self) -> Option<(&'static str, &'static str)> {
        [
            (
                self.filter_non_skb_funcs.is_some(),
                "--filter-non-skb-funcs",
                "attributing non-skb functions to a packet (by stack) is not implemented",
            ),
            (
                self.filter_track_skb_by_stackid,
                "--filter-track-skb-by-stackid",
                "following an skb across re-allocation by its stack is not implemented",
            ),
            (self.filter_trace_tc, "--filter-trace-tc", LATER_FENTRY),
            (self.filter_trace_xdp, "--filter-trace-xdp", LATER_FENTRY),
            (self.filter_track_bpf_helpers, "--filter-track-bpf-helpers", LATER_FENTRY),
            (self.filter_xdp_expr.is_some(), "--filter-xdp-expr", LATER_FENTRY),
            (self.output_xdp_metadata.is_some(), "--output-xdp-metadata", LATER_FENTRY),
            (self.output_bpfmap, "--output-bpfmap", LATER_FENTRY),
            (
                self.filter_kprobe_batch.is_some(),
                "--filter-kprobe-batch",
                "skbtrace attaches in parallel and sizes its batches itself; there is no knob",
            ),
        ]
        .into_iter()
        .find_map(|(given, flag, why)| given.then_some((flag, why)))
    }
}
