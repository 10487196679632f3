//! skbtrace end to end: the binary as users run it, on this host (whose
//! kernel has no kprobes, so the tracepoint backend) and inside a VM booting
//! Debian kernels with kprobes. One module per feature.

mod cli;
mod drops;
mod explain;
mod filters;
mod nat;
mod output;
mod pcap;
mod signals;
mod util;
mod vm;
