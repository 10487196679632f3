//! What a rule is given (a [`Ctx`]: the ended story, its hops and flow, the
//! NAT seen so far and the environment to ask) and what it returns (a
//! [`Verdict`]).

use std::net::IpAddr;

use serde::Serialize;

use super::{
    evidence::{Environment, Evidence},
    flow::{FlowInfo, Flows},
    story::{End, Hop, Kind, Story},
};
use crate::{
    decode::Proto,
    output::{
        fields::{push_ip, push_num},
        text::tuple_column,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Every part of the sentence was seen or read.
    Full,
    /// Some part was inferred (a ruleset read after the fact, a sysctl).
    Partial,
    /// A likely explanation among others.
    Guess,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
            Self::Guess => "guess",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The rule's id (set by `judge`).
    pub rule: &'static str,
    pub sentence: String,
    pub evidence: Evidence,
    pub confidence: Confidence,
}

impl Verdict {
    pub fn new(sentence: String, evidence: Evidence, confidence: Confidence) -> Self {
        Self { rule: "", sentence, evidence, confidence }
    }
}

pub struct Ctx<'a> {
    pub story: &'a Story,
    pub hops: &'a [Hop],
    pub end: End,
    pub flow: &'a FlowInfo,
    pub flows: &'a Flows,
    pub env: &'a mut dyn Environment,
    /// `--nft-trace` was given: nf_tables's verdicts are among the events.
    pub nft_trace: bool,
}

impl Ctx<'_> {
    /// The netns the story ended in.
    pub fn netns(&self) -> u32 {
        self.story.netns()
    }

    /// `netns 4026532454 (blue)`: the inode, and the /run/netns name when it has one.
    pub fn ns(&mut self) -> String {
        let netns = self.netns();
        ns_label(netns, self.env.netns_name(netns).as_deref())
    }

    /// The drop location's function (`__udp4_lib_rcv` of `__udp4_lib_rcv+0x4bc`).
    pub fn location_func(&self) -> Option<&str> {
        let loc = self.story.last().drop.as_ref()?.location.as_deref()?;
        Some(loc.split('+').next().unwrap_or(loc))
    }

    /// IP protocol number where the story ended (0 when none).
    pub fn proto(&self) -> u8 {
        match self.story.last().tuple.proto {
            Proto::Ip(p) => p,
            _ => 0,
        }
    }

    pub fn proto_name(&self) -> &'static str {
        match self.proto() {
            6 => "TCP",
            17 => "UDP",
            1 => "ICMP",
            58 => "ICMPv6",
            _ => "packet",
        }
    }

    pub fn tuple_text(&self) -> String {
        let t = tuple_column(&self.story.last().tuple);
        if t.is_empty() { "no IP tuple".to_owned() } else { t }
    }

    /// `10.0.0.1:4000->10.0.0.2:53(udp) arriving on eth0`: the packet where
    /// the story ended, with its TCP flags, and the device it came in by in
    /// that netns (when it came in by one).
    pub fn packet_on(&self) -> String {
        let t = &self.story.last().tuple;
        let mut s = self.tuple_text();
        if t.proto == Proto::Ip(6) && t.tcp_flags != 0 {
            s.push_str(" [");
            crate::decode::push_tcp_flag_names(&mut s, t.tcp_flags);
            s.push(']');
        }
        let netns = self.netns();
        if let Some(i) = self.hops.iter().rev().find(|h| h.netns == netns).and_then(|h| h.in_if.as_deref()) {
            s.push_str(" arriving on ");
            s.push_str(i);
        }
        s
    }

    pub fn ifname_or_none(&self) -> String {
        let last = self.story.last();
        if last.ifindex == 0 { "no device".to_owned() } else { last.ifname().to_owned() }
    }

    /// Whether the events came from kprobes (functions no tracepoint is named after).
    pub fn kprobes(&self) -> bool {
        self.story
            .steps
            .iter()
            .any(|s| s.kind == Kind::Netfilter || s.func.starts_with("ip_") || s.func.starts_with("__"))
    }

    /// The evidence every verdict carries, filled in from the story's end.
    pub fn evidence(&mut self) -> Evidence {
        let netns = self.netns();
        let last = self.story.last();
        let drop = last.dropped();
        // A free without a device: the device it was last seen on.
        let last = self.story.steps.iter().rev().find(|s| s.ifindex != 0).unwrap_or(last);
        Evidence {
            netns,
            netns_name: self.env.netns_name(netns).unwrap_or_default(),
            ifname: if last.ifindex == 0 { String::new() } else { last.ifname().to_owned() },
            tuple: tuple_column(&last.tuple),
            drop_reason: drop.map(|d| d.name.to_string()).unwrap_or_default(),
            location: drop.and_then(|d| d.location.as_deref()).unwrap_or("").to_owned(),
            ct: match &self.story.ct {
                Some(ct) => ct.to_string(),
                None => self.env.ct(netns).describe().to_owned(),
            },
            facts: Vec::new(),
            missing: Vec::new(),
            nft: Default::default(),
        }
    }
}

pub fn ns_label(netns: u32, name: Option<&str>) -> String {
    let mut s = String::with_capacity(32);
    push_ns_label(&mut s, netns, name);
    s
}

pub fn push_ns_label(out: &mut String, netns: u32, name: Option<&str>) {
    out.push_str("netns ");
    push_num(out, netns);
    if let Some(n) = name {
        out.push_str(" (");
        out.push_str(n);
        out.push(')');
    }
}

/// `10.0.0.1:4000`, `[fd00::1]:4000`.
pub fn ep((addr, port): (IpAddr, u16)) -> String {
    // Pushed, not `format!`ed: through `Display`, an address cost ten times
    // as much, and endpoints were a fifth of judging a story (callgrind,
    // benches/format.rs).
    let mut s = String::with_capacity(48);
    if addr.is_ipv6() {
        s.push('[');
        push_ip(&mut s, addr);
        s.push(']');
    } else {
        push_ip(&mut s, addr);
    }
    s.push(':');
    push_num(&mut s, port);
    s
}
