//! `--nft-trace`: which nf_tables rule (table, chain, handle, verdict)
//! decided about a traced skb.
//!
//! How: a kprobe on `__nft_trace_packet` (`tracer-ebpf/src/nft.rs`), a
//! static noinline function that `nft_do_chain` calls for every rule that
//! matched, every verdict, chain end and base-chain policy, of every packet,
//! but only while nf_tables's `nft_trace_enabled` static key is on. Creating
//! any rule with `meta nftrace set 1` turns it on, even in a chain no hook
//! ever runs; so skbtrace installs one ([`table`]) in its own netns, and the
//! kernel then calls the function for every packet in every netns. The
//! program sends an event, like any probe's, for skbs that pass the filters.
//!
//! What it costs: while skbtrace runs, every packet any nf_tables chain sees,
//! in any netns, pays one call of the function per rule verdict, and that
//! call runs skbtrace's kprobe (its filters, then for a packet they keep an
//! event). Nothing changes for packets no nftables (or iptables-nft) chain
//! sees. The table is removed on every way out: normal end, error, signal,
//! limit, command exit; and since it is created with nf_tables's `owner`
//! flag (Linux ≥ 5.12), the kernel removes it itself when skbtrace's netlink
//! socket closes, even after a SIGKILL.
//!
//! - [`table`]: the trace table, installed and removed over netlink.
//! - [`ruleset`]: a rule's chain and text, from `nft -a list table` in the
//!   packet's netns, found by its handle.
//! - [`NftTrace`]: the event's nf_tables block, named, for the printers and
//!   `--explain`.

pub mod ruleset;
pub mod table;

use std::fmt;

use tracer_common::event::{NFT_CHAIN_BASE, NFT_TRACETYPE_POLICY, NFT_TRACETYPE_RETURN, NFT_TRACETYPE_RULE, Nft};

use crate::{btf::KernelBtf, resolve::c_str};

/// What `--nft-trace` needs for a run: the trace table (removed when this
/// drops) and nf_tables's layout for the program.
pub struct Tracing {
    pub table: table::TraceTable,
    pub offsets: tracer_common::config::NftOffsets,
}

impl Tracing {
    /// Installs the trace table (which loads nf_tables if it is a module not
    /// loaded yet), then reads nf_tables's layout from BTF.
    pub fn start(btf: &KernelBtf) -> anyhow::Result<Self> {
        let table = table::TraceTable::install()?;
        let offsets = btf.nft_offsets()?;
        note!(
            "--nft-trace: nf_tables now traces every packet in every netns (table inet {} installed; removed at \
             exit): each rule verdict of each packet runs skbtrace's probe",
            table.name
        );
        Ok(Self { table, offsets })
    }
}

/// nf_tables's verdict on an skb, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftTrace {
    /// The table's family as nft names it: `inet`, `ip`, `ip6`, `arp`, `bridge`, `netdev`.
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    /// The rule's handle; 0 for a chain's policy or end.
    pub handle: u64,
    pub verdict: Verdict,
    pub kind: Kind,
    /// The hook, as nft names it (`prerouting`, `input`, `forward`, …).
    pub hook: &'static str,
    /// The rule's chain was not found: `chain` is the base chain.
    pub chain_is_base: bool,
}

/// What was traced: a rule, a chain's end, a base chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rule,
    Return,
    Policy,
    Other(u8),
}

/// `nft_verdict.code`, as nft prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
    Stolen,
    Queue,
    Continue,
    Break,
    Jump(String),
    Goto(String),
    Return,
    Other(i32),
}

impl Verdict {
    fn of(code: i32, target: &str) -> Self {
        match code {
            0 => Self::Drop,
            1 => Self::Accept,
            2 => Self::Stolen,
            -1 => Self::Continue,
            -2 => Self::Break,
            -3 => Self::Jump(target.to_owned()),
            -4 => Self::Goto(target.to_owned()),
            -5 => Self::Return,
            // NF_QUEUE with the queue number in the high bits.
            c if c >= 0 && c & 0xff == 3 => Self::Queue,
            c => Self::Other(c),
        }
    }

    /// `drop`, `jump` (the target apart).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Accept => "accept",
            Self::Stolen => "stolen",
            Self::Queue => "queue",
            Self::Continue => "continue",
            Self::Break => "break",
            Self::Jump(_) => "jump",
            Self::Goto(_) => "goto",
            Self::Return => "return",
            Self::Other(_) => "other",
        }
    }

    /// The chain a jump or goto goes to.
    pub fn target(&self) -> &str {
        match self {
            Self::Jump(t) | Self::Goto(t) => t,
            _ => "",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jump(t) | Self::Goto(t) => write!(f, "{} {t}", self.name()),
            Self::Other(c) => write!(f, "verdict {c}"),
            v => f.write_str(v.name()),
        }
    }
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Return => "return",
            Self::Policy => "policy",
            Self::Other(_) => "other",
        }
    }
}

impl NftTrace {
    pub fn from_wire(n: &Nft) -> Self {
        let kind = match n.trace_type {
            NFT_TRACETYPE_RULE => Kind::Rule,
            NFT_TRACETYPE_RETURN => Kind::Return,
            NFT_TRACETYPE_POLICY => Kind::Policy,
            t => Kind::Other(t),
        };
        Self {
            family: family_name(n.family),
            table: c_str(&n.table).to_owned(),
            chain: c_str(&n.chain).to_owned(),
            handle: n.handle,
            verdict: Verdict::of(n.verdict, c_str(&n.target)),
            kind,
            hook: hook_name(n.family, n.hook),
            chain_is_base: n.flags & NFT_CHAIN_BASE != 0,
        }
    }

    /// A verdict that ends the packet's way through this hook: drop,
    /// accept, queue, stolen (a rule's or a policy's).
    pub fn is_final(&self) -> bool {
        matches!(self.verdict, Verdict::Drop | Verdict::Accept | Verdict::Queue | Verdict::Stolen)
    }

    /// `inet filter`.
    pub fn table_label(&self) -> String {
        format!("{} {}", self.family, self.table)
    }
}

impl fmt::Display for NftTrace {
    /// `nft: inet filter input handle 4 drop (hook input)`; a policy
    /// `nft: inet filter input policy drop (hook input)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft: {} {} {}", self.family, self.table, self.chain)?;
        match (self.kind, self.handle) {
            (Kind::Policy, _) => write!(f, " policy")?,
            (_, 0) => {}
            (_, h) => write!(f, " handle {h}")?,
        }
        write!(f, " {} (hook {})", self.verdict, self.hook)
    }
}

/// The JSON `nft` object of an event, every member always present (empty
/// strings and 0 when the event has none).
pub fn push_json(out: &mut String, n: Option<&NftTrace>) {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        family: &'a str,
        table: &'a str,
        chain: &'a str,
        hook: &'a str,
        r#type: &'a str,
        handle: u64,
        verdict: &'a str,
        target: &'a str,
    }
    let Some(n) = n else {
        out.push_str(EMPTY_JSON);
        return;
    };
    let json = Json {
        family: n.family,
        table: &n.table,
        chain: &n.chain,
        hook: n.hook,
        r#type: n.kind.name(),
        handle: n.handle,
        verdict: n.verdict.name(),
        target: n.verdict.target(),
    };
    out.push_str(&serde_json::to_string(&json).unwrap_or_else(|_| EMPTY_JSON.to_owned()));
}

/// [`push_json`] without a verdict: most events' (a test holds it to the struct).
const EMPTY_JSON: &str =
    r#"{"family":"","table":"","chain":"","hook":"","type":"","handle":0,"verdict":"","target":""}"#;

/// `NFPROTO_*` as nft names table families.
pub fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// The hook number as nft names it, for the table's family.
pub fn hook_name(family: u8, hook: u8) -> &'static str {
    match (family, hook) {
        // NF_ARP_IN, NF_ARP_OUT, NF_ARP_FORWARD.
        (3, 0) => "input",
        (3, 1) => "output",
        (3, 2) => "forward",
        // NF_NETDEV_INGRESS, NF_NETDEV_EGRESS.
        (5, 0) => "ingress",
        (5, 1) => "egress",
        // NF_INET_* (and the bridge's NF_BR_*, numbered alike).
        (_, 0) => "prerouting",
        (_, 1) => "input",
        (_, 2) => "forward",
        (_, 3) => "output",
        (_, 4) => "postrouting",
        (_, 5) => "ingress",
        _ => "unknown",
    }
}

#[cfg(test)]
#[path = "nft_trace/tests.rs"]
mod tests;
