//! skbtrace: where did my packet go? The library behind the `skbtrace`
//! binary, so that tests and benchmarks call its stages directly.
//!
//! The stages, in the order a run goes through them:
//! - `cli` → `config`: flags parsed, then validated into one `Config`.
//! - `btf`, `ksym`: what the running kernel has (skb functions, offsets, enums, symbols).
//! - `filter`: pcap expressions compiled to eBPF.
//! - `loader`, `sys`, `probes`: the eBPF object linked, loaded and attached.
//! - `collect`: the ring buffer drained into events, until a stop.
//! - `resolve`, `packet`: events given names (function, drop reason, process, stack) and tuples.
//! - `output`: the consumers (text, JSON, pcap-ng, summary), and `summary`: what a run saw.
//! - `explain`: `--explain`, a consumer that tells each packet's story and its verdict.
//! - `nft_trace`: `--nft-trace`, the trace table that turns nf_tables's tracing on and the
//!   verdicts its probe sees.

/// What `skbtrace --version` prints after the name: the package version and
/// the commit it was built from (`unknown` outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SKBTRACE_COMMIT"), ")");

/// One `skbtrace: …` line on stderr. Unlike `eprintln!`, a closed stderr
/// (`skbtrace 2>&1 | head`) drops the line instead of panicking.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "skbtrace: {}", format_args!($($arg)*));
    }};
}

pub mod assertions;
pub mod btf;
pub mod cli;
pub mod collect;
pub mod command;
pub mod config;
pub mod conntrack;
pub mod decode;
pub mod explain;
pub mod filter;
pub mod generate;
pub mod ksym;
pub mod loader;
pub mod netns;
pub mod nft_trace;
pub mod output;
pub mod privileges;
pub mod probes;
pub mod resolve;
pub mod run;
pub mod skb_out;
pub mod stop;
pub mod summary;
pub mod sys;
