//! Each rule on hand-built stories (the event sequences this host's
//! tracepoint backend produced in the e2e tests), against a fake
//! environment.
//!
//! Longer than 400 lines: one test per rule and per way it declines, each a
//! few recorded events; kept together so the rule table's coverage reads at once.

use std::{collections::HashMap, net::IpAddr};

use etherparse::PacketBuilder;
use tracer_common::{
    Event,
    event::{Capture, FLAG_FREED, FLAG_HAS_REASON},
};

use super::judge;
use crate::explain::story::short;
use crate::{
    decode,
    explain::{
        context::{Confidence, Ctx, Verdict},
        evidence::{Ct, Environment, Listener, NftTable},
        flow::{FlowInfo, Flows},
        story::{End, Story, StoryTable},
    },
    nft_trace::ruleset::Rule,
    resolve::{Dropped, TraceEvent},
};

/// What the fake host answers.
#[derive(Default)]
pub struct Fake {
    pub listeners: Vec<Listener>,
    pub sysctls: HashMap<String, String>,
    pub routes: HashMap<IpAddr, String>,
    pub iptables: Option<String>,
    /// `nft -a list table` answers: (family table, handle) → (chain, text).
    pub nft_rules: HashMap<(String, u64), (String, String)>,
}

impl Environment for Fake {
    fn netns_name(&mut self, netns: u32) -> Option<String> {
        (netns == 7).then(|| "blue".to_owned())
    }
    fn listeners(&mut self, _: u32, _: u8) -> Result<Vec<Listener>, String> {
        Ok(self.listeners.clone())
    }
    fn sysctl(&mut self, _: u32, key: &str) -> Result<String, String> {
        self.sysctls.get(key).cloned().ok_or_else(|| format!("reading {key}: No such file"))
    }
    fn route_get(&mut self, _: u32, addr: IpAddr) -> Result<String, String> {
        self.routes.get(&addr).cloned().ok_or_else(|| "RTNETLINK answers: Network is unreachable".to_owned())
    }
    fn link_mtu(&mut self, _: u32, dev: &str) -> Result<u32, String> {
        (dev == "tun0").then_some(1400).ok_or_else(|| "no such device".to_owned())
    }
    fn iptables(&mut self, _: u32, _: bool) -> Result<String, String> {
        self.iptables.clone().ok_or_else(|| "running iptables-save: not found".to_owned())
    }
    fn socket_owner(&mut self, inode: u64) -> Option<String> {
        (inode == 42).then(|| "dnsmasq:812".to_owned())
    }
    fn ct(&mut self, _: u32) -> Ct {
        Ct::Unknown
    }
    fn ct_entries_from(&mut self, _: u32, _: u8, _: (IpAddr, u16)) -> Result<Vec<String>, String> {
        Err("no conntrack in tests".to_owned())
    }
    fn nft_rule(&mut self, _: u32, t: &NftTable<'_>, handle: u64) -> Result<Rule, String> {
        let key = (format!("{} {}", t.family, t.table), handle);
        let (chain, text) = self.nft_rules.get(&key).cloned().ok_or("running nft: No such file or directory")?;
        Ok(Rule { chain, text })
    }
}

/// One event: `func` in netns `ns` on `ifname`, UDP (or TCP) `src → dst`;
/// `drop` = (reason, location) frees it with that reason.
pub struct Ev<'a> {
    pub skb: u64,
    pub ns: u32,
    pub ifname: &'a str,
    pub func: &'a str,
    pub src: (&'a str, u16),
    pub dst: (&'a str, u16),
    pub tcp: bool,
    /// With `tcp`: FIN|ACK rather than SYN.
    pub fin: bool,
    pub drop: Option<(&'a str, &'a str)>,
    pub freed: bool,
    pub len: u32,
}

impl Default for Ev<'_> {
    fn default() -> Self {
        Self {
            skb: 0x1000,
            ns: 7,
            ifname: "eth0",
            func: "netif_receive_skb",
            src: ("10.0.0.1", 40000),
            dst: ("10.0.0.2", 4000),
            tcp: false,
            fin: false,
            drop: None,
            freed: false,
            len: 30,
        }
    }
}

pub fn event(e: Ev<'_>, ktime_ns: u64) -> TraceEvent {
    let mut raw = Event::zeroed();
    raw.skb = e.skb;
    raw.ktime_ns = ktime_ns;
    raw.netns = e.ns;
    raw.ifindex = if e.ifname.is_empty() { 0 } else { 2 };
    raw.ifname[..e.ifname.len()].copy_from_slice(e.ifname.as_bytes());
    raw.pid = 99;
    raw.len = e.len;
    raw.flags = if e.freed || e.drop.is_some() { FLAG_FREED } else { 0 };
    let ip = |s: &str| match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!("IPv4 in these tests"),
    };
    let mut pkt = Vec::new();
    let b = PacketBuilder::ipv4(ip(e.src.0), ip(e.dst.0), 64);
    if e.tcp && e.fin {
        b.tcp(e.src.1, e.dst.1, 1, 1000).fin().ack(1).write(&mut pkt, &[]).unwrap();
    } else if e.tcp {
        b.tcp(e.src.1, e.dst.1, 1, 1000).syn().write(&mut pkt, &[]).unwrap();
    } else {
        b.udp(e.src.1, e.dst.1).write(&mut pkt, b"hi").unwrap();
    }
    raw.data[..pkt.len()].copy_from_slice(&pkt);
    raw.cap_len = pkt.len() as u16;
    raw.capture = Capture::Network as u8;
    let drop = e.drop.map(|(name, loc)| {
        raw.flags |= FLAG_HAS_REASON;
        Dropped { code: 3, name: format!("SKB_DROP_REASON_{name}").into(), location: Some(loc.into()) }
    });
    TraceEvent {
        raw,
        func: e.func.into(),
        drop,
        caller: None,
        process: "proc:99".into(),
        tuple: decode::tuple(Capture::Network, &raw.data[..pkt.len()]),
        stack: Vec::new(),
        time: None,
        netns_name: None,
        tunnel: None,
        ct: None,
        skb_fields: None,
        nft: None,
    }
}

/// Feeds events in order; returns the stories that ended, with the flows that saw them.
pub fn stories(events: Vec<TraceEvent>) -> (Vec<(Story, End)>, Flows) {
    let mut table = StoryTable::new(100);
    let mut flows = Flows::new(100);
    let mut ended = Vec::new();
    for e in &events {
        table.add(e, &mut ended);
        if let Some(s) = table.get(e.raw.skb) {
            flows.learn(s);
        }
    }
    table.drain(1_000_000_000, events.last().map_or(0, |e| e.raw.ktime_ns), &mut ended);
    (ended, flows)
}

/// The verdict of the story of `skb`.
pub fn verdict_of(events: Vec<TraceEvent>, skb: u64, env: &mut Fake) -> Verdict {
    let (ended, mut flows) = stories(events);
    let mut found = None;
    for (story, end) in &ended {
        let hops = story.hops();
        let flow = flows.assign(story, &hops);
        if story.skb == skb {
            found = Some((story.clone(), *end, flow));
        }
    }
    let (story, end, flow): (Story, End, FlowInfo) = found.expect("a story of that skb");
    let hops = story.hops();
    let nft_trace = story.steps.iter().any(|s| &*s.func == crate::btf::nft::TRACE_FUNCTION);
    judge(&mut Ctx { story: &story, hops: &hops, end, flow: &flow, flows: &flows, env, nft_trace })
}

fn udp_no_socket(dst: (&'static str, u16)) -> Vec<TraceEvent> {
    vec![
        event(Ev { dst, ..Ev::default() }, 1),
        event(Ev { dst, func: "icmp_send", ..Ev::default() }, 2),
        event(Ev { dst, func: "kfree_skb", drop: Some(("NO_SOCKET", "__udp4_lib_rcv+0x4bc")), ..Ev::default() }, 3),
    ]
}

#[test]
fn closed_udp_port_names_the_port_the_netns_and_a_listener_elsewhere() {
    let mut env = Fake {
        listeners: vec![Listener { addr: "127.0.0.1".parse().unwrap(), port: 4000, inode: 1, drops: 0 }],
        ..Fake::default()
    };
    let v = verdict_of(udp_no_socket(("10.0.0.2", 4000)), 0x1000, &mut env);
    assert_eq!(v.rule, "closed-port");
    assert_eq!(
        v.sentence,
        "UDP to 10.0.0.2:4000 from 10.0.0.1:40000 refused in netns 7 (blue): nothing listens on 10.0.0.2:4000 \
         there; a socket listens on 127.0.0.1:4000 only; the kernel answered ICMP port unreachable"
    );
    assert_eq!(v.confidence, Confidence::Full);
    assert_eq!(v.evidence.netns_name, "blue");
    assert_eq!(v.evidence.drop_reason, "SKB_DROP_REASON_NO_SOCKET");
}

#[test]
fn closed_tcp_port_says_the_kernel_reset_it() {
    let ev = |func, drop| Ev { func, drop, tcp: true, ..Ev::default() };
    let events = vec![
        event(ev("netif_receive_skb", None), 1),
        event(ev("tcp_send_reset", None), 2),
        event(ev("kfree_skb", Some(("NO_SOCKET", "tcp_v4_rcv+0x1a0"))), 3),
    ];
    let v = verdict_of(events, 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "closed-port");
    assert!(v.sentence.starts_with("TCP SYN to 10.0.0.2:4000"), "{}", v.sentence);
    assert!(v.sentence.ends_with("the kernel answered with a TCP reset"), "{}", v.sentence);
}

#[test]
fn a_reply_to_a_masqueraded_source_from_another_address_is_an_asymmetric_nat() {
    // The request: in from the client, out SNATed to 10.40.0.3:40000.
    let req =
        |func, ifname, src, ns| Ev { skb: 0x2000, func, ifname, src, ns, dst: ("198.51.100.7", 4000), ..Ev::default() };
    let rep = |func, drop| Ev {
        skb: 0x3000,
        func,
        ifname: "eth0",
        src: ("10.40.0.1", 4000),
        dst: ("10.40.0.3", 40000),
        drop,
        ..Ev::default()
    };
    let events = vec![
        event(req("netif_receive_skb", "vc", ("10.30.0.2", 40000), 7), 1),
        event(req("net_dev_queue", "eth0", ("10.40.0.3", 40000), 7), 2),
        event(req("netif_receive_skb", "hv", ("10.40.0.3", 40000), 9), 3),
        event(rep("netif_receive_skb", None), 4),
        event(rep("kfree_skb", Some(("NO_SOCKET", "__udp4_lib_rcv+0x4bc"))), 5),
    ];
    let v = verdict_of(events.clone(), 0x3000, &mut Fake::default());
    assert_eq!(v.rule, "asymmetric-nat-reply");
    assert!(
        v.sentence.starts_with(
            "UDP reply from 10.40.0.1:4000 to 10.40.0.3:40000 dropped in netns 7 (blue): no socket — the request \
             went to 198.51.100.7:4000 and was source-NATed here from 10.30.0.2:40000 to 10.40.0.3:40000 out eth0"
        ),
        "{}",
        v.sentence
    );
    // A reply from the address the request went to is not this case.
    let mut fair = events;
    for e in &mut fair[3..] {
        *e = event(
            Ev {
                skb: 0x3000,
                src: ("198.51.100.7", 4000),
                dst: ("10.40.0.3", 40000),
                func: if e.drop.is_some() { "kfree_skb" } else { "netif_receive_skb" },
                drop: e.drop.as_ref().map(|_| ("NO_SOCKET", "__udp4_lib_rcv+0x4bc")),
                ..Ev::default()
            },
            e.raw.ktime_ns,
        );
    }
    assert_eq!(verdict_of(fair, 0x3000, &mut Fake::default()).rule, "closed-port");
}

#[test]
fn firewall_names_the_matching_iptables_rule_as_inferred() {
    let mut env = Fake {
        iptables: Some(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1/32 -p udp -m udp --dport 4000 -j DROP\nCOMMIT\n".into(),
        ),
        routes: [("10.0.0.2".parse().unwrap(), "local 10.0.0.2 dev lo table local src 10.0.0.2".into())].into(),
        ..Fake::default()
    };
    let events = vec![
        event(Ev::default(), 1),
        event(Ev { func: "kfree_skb", drop: Some(("NETFILTER_DROP", "nft_do_chain+0x4a1")), ..Ev::default() }, 2),
    ];
    let v = verdict_of(events.clone(), 0x1000, &mut env);
    assert_eq!(v.rule, "firewall");
    assert!(v.sentence.contains("at INPUT (inferred): iptables filter INPUT `-A INPUT -s 10.0.0.1/32 -p udp -m udp --dport 4000 -j DROP` matches"), "{}", v.sentence);
    assert!(v.evidence.missing.iter().any(|m| m.contains("--nft-trace")));
    assert_eq!(v.confidence, Confidence::Partial);
    // No ruleset: the sentence says what is missing.
    let v = verdict_of(events, 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "firewall");
    assert!(v.evidence.missing.iter().any(|m| m.contains("iptables-save")), "{:?}", v.evidence.missing);
}

#[test]
fn a_ct_state_invalid_rule_makes_it_conntrack_invalid_and_a_full_table_conntrack_full() {
    let drop = |loc| {
        vec![
            event(Ev::default(), 1),
            event(Ev { func: "kfree_skb", drop: Some(("NETFILTER_DROP", loc)), ..Ev::default() }, 2),
        ]
    };
    let mut env = Fake {
        iptables: Some("*filter\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n".into()),
        ..Fake::default()
    };
    let v = verdict_of(drop("nft_do_chain+0x4a1"), 0x1000, &mut env);
    assert_eq!(v.rule, "conntrack-invalid");
    assert!(v.sentence.contains("--ctstate INVALID"), "{}", v.sentence);
    let mut env = Fake {
        sysctls: [("net.netfilter.nf_conntrack_count", "262144"), ("net.netfilter.nf_conntrack_max", "262144")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        ..Fake::default()
    };
    let v = verdict_of(drop("nf_hook_slow+0x9c"), 0x1000, &mut env);
    assert_eq!(v.rule, "conntrack-full");
    assert!(v.sentence.contains("table full (262144/262144 entries)"), "{}", v.sentence);
}

#[test]
fn rp_filter_names_the_interface_the_sysctl_and_where_the_route_back_leads() {
    let mut env = Fake {
        sysctls: [("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.eth0.rp_filter", "1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        routes: [("10.0.0.1".parse().unwrap(), "10.0.0.1 via 10.9.0.1 dev eth1 src 10.9.0.2".into())].into(),
        ..Fake::default()
    };
    let events = vec![event(
        Ev { func: "kfree_skb", drop: Some(("IP_RPFILTER", "ip_rcv_finish_core+0x2d1")), ..Ev::default() },
        1,
    )];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "rp-filter");
    assert!(
        v.sentence.contains("on eth0 (rp_filter=1): the route back to 10.0.0.1 leaves via eth1, not eth0"),
        "{}",
        v.sentence
    );
    assert_eq!(v.confidence, Confidence::Full);
}

#[test]
fn no_route_with_forwarding_off_says_so() {
    let mut env = Fake { sysctls: [("net.ipv4.ip_forward".to_owned(), "0".to_owned())].into(), ..Fake::default() };
    let events =
        vec![event(Ev { func: "kfree_skb", drop: Some(("IP_INADDRERRORS", "ip_error+0x7f")), ..Ev::default() }, 1)];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "no-route");
    assert!(v.sentence.contains("forwarding is off there (net.ipv4.ip_forward=0)"), "{}", v.sentence);
}

#[test]
fn mtu_names_the_length_the_device_and_its_mtu() {
    let mut env = Fake {
        routes: [("10.0.0.2".parse().unwrap(), "10.0.0.2 dev tun0 src 10.8.0.1".into())].into(),
        ..Fake::default()
    };
    let events = vec![
        event(Ev { len: 1500, ..Ev::default() }, 1),
        event(Ev { func: "icmp_send", len: 1500, ..Ev::default() }, 2),
        event(Ev { func: "kfree_skb", len: 1500, drop: Some(("PKT_TOO_BIG", "ip_forward+0x3c1")), ..Ev::default() }, 3),
    ];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "mtu");
    assert!(
        v.sentence
            .starts_with("1500-byte packet dropped in netns 7 (blue) at ip_forward: larger than the MTU 1400 of tun0"),
        "{}",
        v.sentence
    );
    assert!(v.sentence.contains("ICMP fragmentation-needed sent back to 10.0.0.1"));
}

#[test]
fn receive_buffer_full_names_the_socket_and_its_process() {
    let mut env = Fake {
        listeners: vec![Listener { addr: "0.0.0.0".parse().unwrap(), port: 4000, inode: 42, drops: 17 }],
        ..Fake::default()
    };
    let events = vec![
        event(Ev::default(), 1),
        event(Ev { func: "kfree_skb", drop: Some(("SOCKET_RCVBUFF", "__udp_queue_rcv_skb+0x9e")), ..Ev::default() }, 2),
    ];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "socket-rcvbuf");
    assert!(v.sentence.starts_with("dropped at dnsmasq:812's socket 0.0.0.0:4000 in netns 7 (blue): its receive buffer is full (17 drops so far)"), "{}", v.sentence);
}

#[test]
fn endings_without_a_drop() {
    let free = |ifname| Ev { func: "consume_skb", freed: true, ifname, ..Ev::default() };
    // Delivered, as the tracepoint backend sees it: freed with no device where a socket is bound.
    let mut env = Fake {
        listeners: vec![Listener { addr: "0.0.0.0".parse().unwrap(), port: 4000, inode: 1, drops: 0 }],
        ..Fake::default()
    };
    let v = verdict_of(vec![event(Ev::default(), 1), event(Ev { ns: 0, ..free("") }, 2)], 0x1000, &mut env);
    assert_eq!(v.rule, "socket-consumed");
    assert_eq!(v.evidence.netns, 7);
    // Freed with nothing listening: a silent end.
    let v = verdict_of(vec![event(Ev::default(), 1), event(free("eth0"), 2)], 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "silent-end");
    assert!(v.evidence.missing.iter().any(|m| m.contains("kprobes")));
    // Sent out of a device, then freed by its driver.
    let sent = vec![event(Ev { func: "net_dev_start_xmit", ..Ev::default() }, 1), event(free("eth0"), 2)];
    let v = verdict_of(sent, 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "transmitted");
    assert!(v.sentence.starts_with("sent out of eth0 in netns 7 (blue) towards 10.0.0.2"), "{}", v.sentence);
    // Never seen again.
    let v = verdict_of(vec![event(Ev::default(), 1)], 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "unfinished");
    // Any other drop: the fallback names reason, location, netns and device.
    let other =
        vec![event(Ev { func: "kfree_skb", drop: Some(("QDISC_DROP", "__dev_queue_xmit+0x88")), ..Ev::default() }, 1)];
    let v = verdict_of(other, 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "fallback");
    assert!(
        v.sentence.contains("netns 7 (blue) on eth0")
            && v.sentence.contains("SKB_DROP_REASON_QDISC_DROP at __dev_queue_xmit+0x88")
    );
}

#[test]
fn every_rule_matches_reason_names_the_running_kernel_has() {
    // Names, never numbers: each rule lists every kernel's names, and at
    // least one of them must be this kernel's (6.1 lacks IP_INVALID_DEST).
    let Ok(btf) = crate::btf::KernelBtf::open() else {
        eprintln!("no kernel BTF here: the names are checked where there is one");
        return;
    };
    let reasons = crate::resolve::DropReasons::from_btf(&btf);
    let names: Vec<&str> = reasons.names().map(short).collect();
    for rule in super::RULES.iter().filter(|r| !r.reasons.is_empty()) {
        assert!(
            rule.reasons.iter().any(|r| names.contains(r)),
            "{}: none of {:?} in this kernel",
            rule.id,
            rule.reasons
        );
    }
    assert_eq!(super::RULES.last().map(|r| r.id), Some("fallback"));
}

/// `__nft_trace_packet`'s event (`--nft-trace`): `verdict` by the rule with
/// `handle` (0: the chain's policy) in `inet filter input`.
fn nft_event(verdict: i32, handle: u64, ktime_ns: u64) -> TraceEvent {
    use tracer_common::event::{NFT_TRACETYPE_POLICY, NFT_TRACETYPE_RULE, Nft};
    let mut wire = Nft::zeroed();
    wire.handle = handle;
    wire.verdict = verdict;
    wire.trace_type = if handle == 0 { NFT_TRACETYPE_POLICY } else { NFT_TRACETYPE_RULE };
    wire.family = 1;
    wire.hook = 1;
    wire.table[..6].copy_from_slice(b"filter");
    wire.chain[..5].copy_from_slice(b"input");
    let mut e = event(Ev { func: crate::btf::nft::TRACE_FUNCTION, ..Ev::default() }, ktime_ns);
    e.nft = Some(Box::new(crate::nft_trace::NftTrace::from_wire(&wire)));
    e
}

#[test]
fn with_nft_trace_the_firewall_names_the_rule_handle_and_text() {
    let drop =
        || event(Ev { func: "kfree_skb", drop: Some(("NETFILTER_DROP", "nft_do_chain+0x4a1")), ..Ev::default() }, 9);
    // A counter rule matched (continue), an earlier hook accepted, then rule 4 dropped.
    let events = vec![event(Ev::default(), 1), nft_event(1, 2, 2), nft_event(-1, 3, 3), nft_event(0, 4, 4), drop()];
    let mut env = Fake {
        nft_rules: [(("inet filter".to_owned(), 4), ("input".to_owned(), "udp dport 4000 drop".to_owned()))].into(),
        // An INVALID rule in iptables-save does not take the verdict from the rule nft saw.
        iptables: Some("*filter\n-A INPUT -m conntrack --ctstate INVALID -j DROP\n".into()),
        ..Fake::default()
    };
    let v = verdict_of(events.clone(), 0x1000, &mut env);
    assert_eq!(v.rule, "firewall");
    assert_eq!(
        v.sentence,
        "dropped by nftables rule `udp dport 4000 drop` (handle 4) in chain inet filter input (hook input) in netns 7 \
         (blue): 10.0.0.1:40000->10.0.0.2:4000(udp)"
    );
    assert_eq!(v.confidence, Confidence::Full);
    assert_eq!((v.evidence.nft.handle, v.evidence.nft.rule.as_str()), (4, "udp dport 4000 drop"));
    assert_eq!((v.evidence.nft.table.as_str(), v.evidence.nft.hook.as_str()), ("filter", "input"));
    assert!(v.evidence.missing.is_empty(), "{:?}", v.evidence.missing);

    // Without nft on the host: the handle, and what is missing.
    let v = verdict_of(events, 0x1000, &mut Fake::default());
    assert!(v.sentence.starts_with("dropped by nftables rule handle 4 in chain inet filter input"), "{}", v.sentence);
    assert!(v.evidence.missing.iter().any(|m| m.contains("the rule's text: running nft")), "{:?}", v.evidence.missing);
    assert_eq!(v.confidence, Confidence::Partial);

    // The rule lay too far down its chain for the kernel side: the base
    // chain came, and the listing names the rule's own.
    let mut far = nft_event(0, 4, 4);
    far.nft.as_mut().expect("nft").chain_is_base = true;
    let mut env = Fake {
        nft_rules: [(("inet filter".to_owned(), 4), ("blocked".to_owned(), "ip saddr 10.0.0.1 drop".to_owned()))]
            .into(),
        ..Fake::default()
    };
    let v = verdict_of(vec![event(Ev::default(), 1), far.clone(), drop()], 0x1000, &mut env);
    assert!(v.sentence.contains("in chain inet filter blocked (hook input)"), "{}", v.sentence);
    let v = verdict_of(vec![event(Ev::default(), 1), far, drop()], 0x1000, &mut Fake::default());
    assert!(v.sentence.contains("chain inet filter input or a chain it jumped to (hook input)"), "{}", v.sentence);

    // The chain's policy.
    let v = verdict_of(vec![event(Ev::default(), 1), nft_event(0, 0, 2), drop()], 0x1000, &mut Fake::default());
    assert!(
        v.sentence.starts_with("dropped by the drop policy of nftables chain inet filter input (hook input)"),
        "{}",
        v.sentence
    );
    assert_eq!(v.evidence.nft.r#type, "policy");

    // --nft-trace saw only accepts: another hook dropped it, and the verdict says so.
    let v = verdict_of(vec![event(Ev::default(), 1), nft_event(1, 2, 2), drop()], 0x1000, &mut Fake::default());
    assert!(v.evidence.missing.iter().any(|m| m.contains("saw no nf_tables drop")), "{:?}", v.evidence.missing);
    assert_eq!(v.evidence.nft, Default::default());
}

/// The events the e2e scenarios recorded, and what they changed.
#[path = "tests/recorded.rs"]
mod recorded;
