//! skbtrace end to end: the binary as users run it. One module per feature.
//! `scenarios` run on this host (whose kernel has no kprobes, so through the
//! tracepoint backend) and, started by `vm`, inside VMs booting Debian
//! kernels with kprobes; the other modules run on this host only.

mod cli;
mod clock;
mod dist;
mod output;
mod pcap;
mod pwru_flags;
mod rotation;
mod scenarios;
mod signals;
mod skb_fields;
mod skbtrace;
mod vm;
