//! Flows: stories of one connection linked by an id, in both directions
//! and through NAT. Links, strongest first:
//! - the same tuple, either direction (endpoints sorted);
//! - a tuple rewritten inside one skb's story (NAT seen at work): every
//!   tuple the story had joins the flow;
//! - later, conntrack tuples (the slot is [`super::evidence::Ct`]);
//! - a guess: one process received on flow A and, within a second, sent on
//!   flow B (a userland proxy). Labelled as a guess, never the sole basis
//!   of a verdict.
//!
//! NAT seen at work is also kept as bindings per netns, so that a reply
//! that does not match them can be told (the asymmetric-NAT rule).
//! Everything here is bounded: old entries go when a table is full.

use std::net::IpAddr;

use foldhash::HashMap;

use super::story::{Hop, Kind, Story};
use crate::decode::Tuple;

type Endpoint = (IpAddr, u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey(u8, Endpoint, Endpoint);

impl FlowKey {
    fn of(t: &Tuple) -> Option<Self> {
        let (Some(s), Some(d)) = (t.saddr, t.daddr) else { return None };
        let proto = match t.proto {
            crate::decode::Proto::Ip(p) => p,
            _ => 0,
        };
        let (a, b) = ((s, t.sport), (d, t.dport));
        Some(if a <= b { Self(proto, a, b) } else { Self(proto, b, a) })
    }
}

/// Source NAT seen in a netns: `orig` left as `translated`, towards `dst`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snat {
    pub netns: u32,
    pub proto: u8,
    pub orig: Endpoint,
    pub translated: Endpoint,
    pub dst: Endpoint,
    pub out_if: Option<String>,
    /// The story of the packet it was seen on.
    pub story: u64,
    pub ktime_ns: u64,
}

/// A guessed link between two flows through a process.
#[derive(Clone, Debug, PartialEq)]
pub struct GuessLink {
    pub flow: u64,
    pub process: String,
}

/// What the flow table says about one story.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowInfo {
    pub id: u64,
    pub guess: Option<GuessLink>,
}

pub struct Flows {
    ids: HashMap<FlowKey, (u64, u64)>,
    next: u64,
    /// By (netns, proto, translated endpoint).
    snat: HashMap<(u32, u8, Endpoint), Snat>,
    /// pid → (flow it last received on, when, process).
    received: HashMap<u32, (u64, u64, String)>,
    max: usize,
}

/// How close a send must follow a receive by the same process to be guessed a proxy hop.
const PROXY_WINDOW_NS: u64 = 1_000_000_000;

impl Flows {
    pub fn new(max: usize) -> Self {
        Self {
            ids: HashMap::default(),
            next: 1,
            snat: HashMap::default(),
            received: HashMap::default(),
            max: max.max(16),
        }
    }

    /// Gives the story its flow id, learns its NAT, and guesses a proxy link.
    pub fn assign(&mut self, story: &Story, hops: &[Hop]) -> FlowInfo {
        let now = story.last_ns;
        let keys: Vec<FlowKey> = hops.iter().flat_map(|h| h.tuples.iter()).filter_map(FlowKey::of).collect();
        let id = keys.iter().filter_map(|k| self.ids.get(k).map(|(id, _)| *id)).min().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        if self.ids.len() + keys.len() > self.max {
            self.ids.retain(|_, (_, seen)| now.saturating_sub(*seen) < PROXY_WINDOW_NS * 30);
            if self.ids.len() + keys.len() > self.max {
                self.ids.clear();
            }
        }
        for k in keys {
            self.ids.insert(k, (id, now));
        }
        for hop in hops {
            self.learn_nat(story, hop);
        }
        let guess = self.guess(story, id);
        if let Some(d) = story.delivered() {
            if self.received.len() >= self.max {
                self.received.clear();
            }
            self.received.insert(d.pid, (id, d.ktime_ns, d.process.to_string()));
        }
        FlowInfo { id, guess }
    }

    /// Learns source NAT from a story still open, as soon as its newest
    /// step shows a rewritten source in the same netns (the reply may come
    /// back before the request's story ends).
    pub fn learn(&mut self, story: &Story) {
        let n = story.steps.len();
        if n < 2 {
            return;
        }
        let (prev, last) = (&story.steps[n - 2], &story.steps[n - 1]);
        if prev.netns != last.netns || prev.tuple == last.tuple || last.tuple.saddr.is_none() {
            return;
        }
        let hops = super::story::hops(&story.steps);
        if let Some(hop) = hops.last() {
            self.learn_nat(story, hop);
        }
    }

    fn learn_nat(&mut self, story: &Story, hop: &Hop) {
        let (src_changed, _) = hop.nat();
        let (Some(a), Some(b)) = (hop.tuples.first(), hop.tuples.last()) else { return };
        let (Some(orig), Some(translated), Some(dst)) = (a.saddr, b.saddr, b.daddr) else { return };
        if !src_changed {
            return;
        }
        let proto = match b.proto {
            crate::decode::Proto::Ip(p) => p,
            _ => 0,
        };
        if self.snat.len() >= self.max {
            self.snat.clear();
        }
        let snat = Snat {
            netns: hop.netns,
            proto,
            orig: (orig, a.sport),
            translated: (translated, b.sport),
            dst: (dst, b.dport),
            out_if: hop.out_if.clone(),
            story: story.id,
            ktime_ns: story.steps[hop.steps.end - 1].ktime_ns,
        };
        self.snat.insert((hop.netns, proto, snat.translated), snat);
    }

    /// Source NAT in `netns` whose translated source is `endpoint`.
    pub fn snat_to(&self, netns: u32, proto: u8, endpoint: Endpoint) -> Option<&Snat> {
        self.snat.get(&(netns, proto, endpoint))
    }

    fn guess(&self, story: &Story, id: u64) -> Option<GuessLink> {
        let first = story.steps.first()?;
        // Sent by a process: its first event is a transmit in process context.
        if first.kind != Kind::Transmit || first.pid == 0 {
            return None;
        }
        let (flow, at, process) = self.received.get(&first.pid)?;
        (*flow != id && first.ktime_ns.saturating_sub(*at) <= PROXY_WINDOW_NS)
            .then(|| GuessLink { flow: *flow, process: process.clone() })
    }
}
