//! Command-line flags (pwru's names where pwru has the flag), parsed by clap
//! and then validated into a [`Config`](crate::config::Config).

use std::path::PathBuf;

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
#[derive(Debug, Parser)]
#[command(name = "skbtrace", version, about, long_about = None)]
pub struct Args {
    /// pcap-filter expression, as for tcpdump (e.g. 'udp and dst port 4000'); run in the kernel.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

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
