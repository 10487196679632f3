//! Command-line flags (pwru's names where pwru has the flag), parsed by clap
//! and then validated into a [`Config`](crate::config::Config).

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

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
    /// Wall-clock time of the event.
    Current,
    /// Nanoseconds since the previous event.
    Relative,
    /// Kernel monotonic time in nanoseconds.
    Absolute,
}

/// Where did my packet go? Traces packets (sk_buffs) through the kernel's
/// functions and says where they were dropped and why.
///
/// With `-- CMD [ARGS…]`, skbtrace attaches, then runs CMD, traces until it
/// exits (and a grace period after), and exits with CMD's status, or with the
/// assertion's code when --fail-on-drop or --expect-drop failed.
#[derive(Debug, Parser)]
#[command(name = "skbtrace", version, about, long_about = None, after_help = EXIT_CODES)]
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
    /// Once an skb matched, keep tracing it through NAT and header rewrites until it is freed.
    #[arg(long)]
    pub filter_track_skb: bool,
    /// Number of skbs --filter-track-skb can follow at once.
    #[arg(long, default_value_t = tracer_common::limits::TRACK_ENTRIES_DEFAULT, value_name = "N")]
    pub track_entries: u32,

    /// Print the kernel stack of each event.
    #[arg(long)]
    pub output_stack: bool,
    /// Print the caller of each traced function (kprobes).
    #[arg(long)]
    pub output_caller: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub output_json: bool,
    /// Write the trace to PATH instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    pub output_limit_lines: Option<u64>,
    /// Also write the packets as pcap-ng to FILE ('-' for standard output).
    #[arg(long, value_name = "FILE")]
    pub output_pcap: Option<PathBuf>,
    /// One story per packet instead of one line per event, printed when it ends, with a `verdict:` line.
    #[arg(long)]
    pub explain: bool,
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
}

/// `--grace`'s default: replies, ICMP errors and resets still in flight
/// when a client exits arrive within a few round trips.
pub const GRACE_DEFAULT: Duration = Duration::from_millis(300);

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
