//! A packet's story: the events of one skb, from the first time it was seen
//! to the end of its life (freed, dropped, delivered to a socket) or until it
//! went idle. Stories are kept in a [`StoryTable`] keyed by skb address,
//! bounded in number (the oldest is evicted) and in length (the middle of a
//! long story is elided, its first and last steps are kept).
//!
//! A [`Step`] is the part of a [`TraceEvent`] a story needs, without the
//! packet bytes: names stay the resolver's shared `Name`s, so keeping a step
//! allocates nothing beyond the story's own list.
//!
//! Longer than 400 lines: the story, its table and its hops share one
//! invariant (a step list per skb that ends exactly once) and are read together.

use crate::conntrack::Conntrack;
use std::{collections::VecDeque, rc::Rc};

// Looked up for every event, by skb address.
use foldhash::HashMap;

use crate::{
    decode::Tuple,
    resolve::{Dropped, Name, TraceEvent, c_str},
};

/// What an event says about the packet's path, from the function or
/// tracepoint's *name* (kprobe and tracepoint names both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A device received it (`netif_receive_skb`, `netif_rx`, `ip_rcv`, …).
    Receive,
    /// Queued or handed to a device (`net_dev_queue`, `net_dev_xmit`, …).
    Transmit,
    /// Copied to a process (`skb_copy_datagram_iovec`, `skb_consume_udp`).
    Deliver,
    /// The kernel sent an ICMP error about it.
    IcmpSent,
    /// The kernel answered it with a TCP reset.
    ResetSent,
    /// A socket's receive queue was full.
    QueueFull,
    /// netfilter code (kprobes): `nf_hook_slow`, `nft_do_chain*`, `ipt_do_table`,
    /// `__nft_trace_packet` (`--nft-trace`).
    Netfilter,
    /// Freed (`kfree_skb`, `consume_skb`, …).
    Free,
    Other,
}

impl Kind {
    pub fn of(func: &str) -> Self {
        const DELIVER: [&str; 4] =
            ["skb_copy_datagram_iovec", "skb_copy_datagram_iter", "skb_consume_udp", "tcp_recvmsg"];
        const TRANSMIT: [&str; 6] = [
            "net_dev_queue",
            "net_dev_start_xmit",
            "net_dev_xmit",
            "dev_queue_xmit",
            "__dev_queue_xmit",
            "dev_hard_start_xmit",
        ];
        match func {
            f if DELIVER.contains(&f) => Self::Deliver,
            f if TRANSMIT.contains(&f) => Self::Transmit,
            "icmp_send" | "__icmp_send" | "icmp6_send" | "icmpv6_send" => Self::IcmpSent,
            "tcp_send_reset" | "tcp_v4_send_reset" | "tcp_v6_send_reset" => Self::ResetSent,
            "sock_rcvqueue_full" | "udp_fail_queue_rcv_skb" => Self::QueueFull,
            "consume_skb"
            | "kfree_skb"
            | "kfree_skb_reason"
            | "sk_skb_reason_drop"
            | "__kfree_skb"
            | "kfree_skbmem"
            | "skb_release_all"
            | "skb_release_head_state"
            | "skb_release_data" => Self::Free,
            f if f.starts_with("netif_receive_skb")
                || f.starts_with("netif_rx")
                || f.starts_with("napi_gro_")
                || f.starts_with("__netif_receive_skb")
                || f == "ip_rcv"
                || f == "ipv6_rcv" =>
            {
                Self::Receive
            }
            f if f == "nf_hook_slow"
                || f.starts_with("nft_do_chain")
                || f == "ipt_do_table"
                || f == crate::btf::nft::TRACE_FUNCTION =>
            {
                Self::Netfilter
            }
            _ => Self::Other,
        }
    }
}

/// One event of a story.
#[derive(Clone, Debug)]
pub struct Step {
    pub ktime_ns: u64,
    pub kind: Kind,
    pub func: Name,
    pub drop: Option<Dropped>,
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: [u8; 16],
    pub mark: u32,
    pub len: u32,
    pub mtu: u32,
    pub pid: u32,
    pub process: Name,
    pub tuple: Tuple,
}

impl Step {
    pub fn new(e: &TraceEvent, kind: Kind) -> Self {
        let r = &e.raw;
        Self {
            ktime_ns: r.ktime_ns,
            kind,
            func: e.func.clone(),
            drop: e.drop.clone(),
            netns: r.netns,
            ifindex: r.ifindex,
            ifname: r.ifname,
            mark: r.mark,
            len: r.len,
            mtu: r.mtu,
            pid: r.pid,
            process: e.process.clone(),
            tuple: e.tuple,
        }
    }

    pub fn ifname(&self) -> &str {
        c_str(&self.ifname)
    }

    /// A drop with a reason that is not the kernel's word for "consumed".
    pub fn dropped(&self) -> Option<&Dropped> {
        self.drop.as_ref().filter(|d| !matches!(short(&d.name), "SKB_CONSUMED" | "SKB_NOT_DROPPED_YET"))
    }
}

/// A drop reason's name without `SKB_DROP_REASON_`.
pub fn short(name: &str) -> &str {
    name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name)
}

/// How a story ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Freed with a drop reason.
    Dropped,
    /// Freed without one.
    Freed,
    /// Copied to a process.
    Delivered,
    /// No event for `--explain-idle`.
    Idle,
    /// Pushed out by newer stories (`--explain-max-stories`).
    Evicted,
    /// Still open when the trace ended.
    Exit,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            Self::Dropped => "dropped",
            Self::Freed => "freed",
            Self::Delivered => "delivered",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Exit => "open_at_exit",
        }
    }
}

/// Steps kept per story: the first `MAX_STEPS - 1`, then the last one.
pub const MAX_STEPS: usize = 64;

#[derive(Clone, Debug)]
pub struct Story {
    /// In the order stories began, from 1.
    pub id: u64,
    pub skb: u64,
    pub steps: Vec<Step>,
    /// Steps left out of the middle of a long story.
    pub elided: u64,
    pub last_ns: u64,
    /// Conntrack's entry as the packet last carried it (the kernel side
    /// reads it when an skb has one).
    pub ct: Option<Box<Conntrack>>,
    /// nf_tables's last final verdict on the packet (drop, accept, queue,
    /// stolen; `--nft-trace`): for a netfilter drop, the rule or policy.
    pub nft: Option<Box<crate::nft_trace::NftTrace>>,
}

impl Story {
    fn push(&mut self, step: Step) {
        self.last_ns = step.ktime_ns;
        if self.steps.len() < MAX_STEPS {
            self.steps.push(step);
        } else {
            self.elided += 1;
            *self.steps.last_mut().expect("full") = step;
        }
    }

    pub fn last(&self) -> &Step {
        self.steps.last().expect("a story has at least one step")
    }

    /// The last netns it was seen in (events without a device or socket have none).
    pub fn netns(&self) -> u32 {
        self.steps.iter().rev().map(|s| s.netns).find(|&n| n != 0).unwrap_or(0)
    }

    pub fn first_ns(&self) -> u64 {
        self.steps.first().map_or(0, |s| s.ktime_ns)
    }

    pub fn delivered(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.kind == Kind::Deliver)
    }

    pub fn any(&self, kind: Kind) -> bool {
        self.steps.iter().any(|s| s.kind == kind)
    }

    pub fn hops(&self) -> Vec<Hop> {
        hops(&self.steps)
    }
}

/// The part of a story inside one network namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    pub netns: u32,
    /// The device it was received on in this netns.
    pub in_if: Option<String>,
    /// The device it left by (a transmit with no receive after it here).
    pub out_if: Option<String>,
    /// Distinct tuples in order; more than one means NAT rewrote it here.
    pub tuples: Vec<Tuple>,
    /// Indices into the story's steps.
    pub steps: std::ops::Range<usize>,
}

impl Hop {
    /// What NAT changed in this netns: (source changed, destination changed).
    pub fn nat(&self) -> (bool, bool) {
        match (self.tuples.first(), self.tuples.last()) {
            (Some(a), Some(b)) if a != b => {
                (a.saddr != b.saddr || a.sport != b.sport, a.daddr != b.daddr || a.dport != b.dport)
            }
            _ => (false, false),
        }
    }
}

pub fn hops(steps: &[Step]) -> Vec<Hop> {
    let mut out: Vec<Hop> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        // No device and no socket (a free after delivery): the netns it was in.
        let unknown = s.netns == 0 && !out.is_empty();
        if !unknown && out.last().is_none_or(|h| h.netns != s.netns) {
            out.push(Hop { netns: s.netns, in_if: None, out_if: None, tuples: Vec::new(), steps: i..i });
        }
        let hop = out.last_mut().expect("pushed above");
        hop.steps.end = i + 1;
        if s.tuple.saddr.is_some() && hop.tuples.last() != Some(&s.tuple) {
            hop.tuples.push(s.tuple);
        }
        match s.kind {
            Kind::Receive if hop.in_if.is_none() && s.ifindex != 0 => hop.in_if = Some(s.ifname().to_owned()),
            // veth: the sender's net_dev_xmit fires once the peer has the
            // skb, naming the peer; a receive after it means it was not an exit.
            Kind::Receive => hop.out_if = None,
            Kind::Transmit if s.ifindex != 0 => hop.out_if = Some(s.ifname().to_owned()),
            _ => {}
        }
    }
    out
}

/// Open stories by skb address, bounded.
pub struct StoryTable {
    open: HashMap<u64, Story>,
    /// Story ids in the order they began, for evicting the oldest; entries
    /// of stories already ended are skipped when met.
    order: VecDeque<(u64, u64)>,
    next_id: u64,
    max: usize,
    /// skbs whose story ended when they were delivered: their free (and
    /// further copies) belong to that story, not to a new one.
    delivered: HashMap<u64, u64>,
    /// skbs whose story a kprobe on a drop function ended: the free's own
    /// steps after it (`kfree_skbmem`, `skb_release_*`) belong to that
    /// story. The address is not reused before `kfree_skbmem` returns.
    dropped: HashMap<u64, u64>,
    kinds: HashMap<usize, (Name, Kind)>,
}

impl StoryTable {
    pub fn new(max: usize) -> Self {
        Self {
            open: HashMap::with_capacity_and_hasher(max.min(1 << 14), Default::default()),
            order: VecDeque::new(),
            next_id: 1,
            max,
            delivered: HashMap::default(),
            dropped: HashMap::default(),
            kinds: HashMap::default(),
        }
    }

    /// The kind of a function, cached by the interned name's address (the
    /// cache holds the `Arc`, so the address cannot be reused).
    pub fn kind(&mut self, func: &Name) -> Kind {
        let key = Rc::as_ptr(func) as *const u8 as usize;
        match self.kinds.get(&key) {
            Some((name, kind)) if Rc::ptr_eq(name, func) => *kind,
            _ => {
                let kind = Kind::of(func);
                self.kinds.insert(key, (func.clone(), kind));
                kind
            }
        }
    }

    /// Adds the event to its skb's story. Returns the stories that ended:
    /// an evicted one, and this one if the event ends it.
    pub fn add(&mut self, e: &TraceEvent, ended: &mut Vec<(Story, End)>) {
        let kind = self.kind(&e.func);
        let skb = e.raw.skb;
        if let Some(&at) = self.delivered.get(&skb) {
            // The delivered skb's own free or a second copy: not a new story.
            if matches!(kind, Kind::Deliver | Kind::Free)
                && e.drop.as_ref().is_none_or(|d| short(&d.name) == "SKB_CONSUMED")
            {
                if e.freed() {
                    self.delivered.remove(&skb);
                }
                return;
            }
            let _ = at;
            self.delivered.remove(&skb);
        }
        if let Some(at) = self.dropped.remove(&skb)
            && kind == Kind::Free
            && e.drop.is_none()
        {
            if !e.freed() {
                self.dropped.insert(skb, at);
            }
            return;
        }
        if !self.open.contains_key(&skb) {
            if self.open.len() >= self.max {
                self.evict_oldest(ended);
            }
            let id = self.next_id;
            self.next_id += 1;
            self.order.push_back((skb, id));
            // Room for one step: most open stories hold one or two, and
            // 100,000 of them at Vec's first growth (4 steps) took 92 MiB
            // rather than 27 (benches/format.rs).
            self.open.insert(
                skb,
                Story {
                    id,
                    skb,
                    steps: Vec::with_capacity(1),
                    elided: 0,
                    last_ns: e.raw.ktime_ns,
                    ct: None,
                    nft: None,
                },
            );
        }
        let story = self.open.get_mut(&skb).expect("inserted above");
        story.push(Step::new(e, kind));
        if let Some(ct) = &e.ct {
            story.ct = Some(Box::new(ct.clone()));
        }
        if let Some(nft) = e.nft.as_ref().filter(|n| n.is_final()) {
            story.nft = Some(nft.clone());
        }
        let end = if e.freed() {
            Some(if story.last().dropped().is_some() { End::Dropped } else { End::Freed })
        } else if kind == Kind::Deliver {
            if self.delivered.len() >= self.max {
                self.delivered.clear();
            }
            self.delivered.insert(skb, e.raw.ktime_ns);
            Some(End::Delivered)
        } else {
            None
        };
        if end == Some(End::Dropped) && crate::probes::DROP_FUNCTIONS.iter().any(|(f, _)| *f == &*e.func) {
            if self.dropped.len() >= self.max {
                self.dropped.clear();
            }
            self.dropped.insert(skb, e.raw.ktime_ns);
        }
        if let Some(end) = end {
            ended.push((self.open.remove(&skb).expect("present"), end));
        }
    }

    fn evict_oldest(&mut self, ended: &mut Vec<(Story, End)>) {
        while let Some((skb, id)) = self.order.pop_front() {
            if self.open.get(&skb).is_some_and(|s| s.id == id) {
                ended.push((self.open.remove(&skb).expect("present"), End::Evicted));
                return;
            }
        }
    }

    /// Ends every story with no event for `idle_ns` before `now_ns`.
    pub fn sweep(&mut self, now_ns: u64, idle_ns: u64, ended: &mut Vec<(Story, End)>) {
        let idle: Vec<u64> =
            self.open.values().filter(|s| now_ns.saturating_sub(s.last_ns) >= idle_ns).map(|s| s.skb).collect();
        for skb in idle {
            ended.push((self.open.remove(&skb).expect("present"), End::Idle));
        }
        ended.sort_by_key(|(s, _)| s.id);
        if self.order.len() > 2 * self.open.len() + 1024 {
            let open = &self.open;
            self.order.retain(|(skb, id)| open.get(skb).is_some_and(|s| s.id == *id));
        }
        if self.delivered.len() > 1024 {
            self.delivered.retain(|_, at| now_ns.saturating_sub(*at) < idle_ns);
        }
        if self.dropped.len() > 1024 {
            self.dropped.retain(|_, at| now_ns.saturating_sub(*at) < idle_ns);
        }
    }

    /// Ends every open story (the trace is over).
    pub fn drain(&mut self, idle_ns: u64, newest_ns: u64, ended: &mut Vec<(Story, End)>) {
        let mut all: Vec<Story> = self.open.drain().map(|(_, s)| s).collect();
        all.sort_by_key(|s| s.id);
        self.order.clear();
        ended.extend(all.into_iter().map(|s| {
            let end = if newest_ns.saturating_sub(s.last_ns) >= idle_ns { End::Idle } else { End::Exit };
            (s, end)
        }));
    }

    /// The open story of `skb`.
    pub fn get(&self, skb: u64) -> Option<&Story> {
        self.open.get(&skb)
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }
}
