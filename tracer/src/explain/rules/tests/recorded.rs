//! Stories as the e2e scenarios (tests/e2e/scenarios/explain) recorded
//! them, on this host's tracepoints and in the VMs' kprobes, and the
//! verdicts they must get: each test here pins a fix those runs led to.

use super::{Ev, Fake, event, verdict_of};
use crate::explain::context::Confidence;

fn sysctls(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn mtu_counts_the_length_at_the_drop_not_with_the_senders_mac_header() {
    // A 1400-byte datagram with DF, forwarded towards a 1280-byte link: the
    // sender's transmit counts 1442 bytes (Ethernet header included), the
    // router's receive, ICMP and drop 1428 (the IP packet).
    let mut env = Fake {
        routes: [("10.0.0.2".parse().unwrap(), "10.0.0.2 dev tun0 src 10.8.0.1".into())].into(),
        ..Fake::default()
    };
    let events = vec![
        event(Ev { ns: 5, ifname: "veth0", func: "net_dev_queue", len: 1442, ..Ev::default() }, 1),
        event(Ev { ns: 5, ifname: "veth0", func: "net_dev_start_xmit", len: 1442, ..Ev::default() }, 2),
        event(Ev { len: 1428, ..Ev::default() }, 3),
        event(Ev { func: "icmp_send", len: 1428, ..Ev::default() }, 4),
        event(Ev { func: "kfree_skb", len: 1428, drop: Some(("PKT_TOO_BIG", "ip_forward+0x2c0")), ..Ev::default() }, 5),
    ];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "mtu");
    assert!(
        v.sentence
            .starts_with("1428-byte packet dropped in netns 7 (blue) at ip_forward: larger than the MTU 1400 of tun0"),
        "{}",
        v.sentence
    );
    assert!(v.evidence.facts.iter().any(|f| f.name == "length" && f.value == "1428"), "{:?}", v.evidence.facts);
}

#[test]
fn conntrack_invalid_names_the_segment_its_flags_and_the_device() {
    // A lone FIN|ACK: conntrack finds no connection it could belong to.
    let mut env = Fake {
        iptables: Some(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n".into(),
        ),
        routes: [("10.0.0.2".parse().unwrap(), "local 10.0.0.2 dev lo table local src 10.0.0.2".into())].into(),
        ..Fake::default()
    };
    let seg = |func, ns, ifname, drop| Ev { func, ns, ifname, drop, tcp: true, fin: true, ..Ev::default() };
    let events = vec![
        event(seg("net_dev_queue", 5, "veth0", None), 1),
        event(seg("netif_receive_skb", 7, "eth0", None), 2),
        event(seg("kfree_skb", 7, "eth0", Some(("NETFILTER_DROP", "nft_do_chain+0x46f"))), 3),
    ];
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "conntrack-invalid");
    assert!(
        v.sentence.starts_with(
            "10.0.0.1:40000->10.0.0.2:4000(tcp) [FIN|ACK] arriving on eth0 dropped as conntrack INVALID in netns 7 \
             (blue) by iptables filter INPUT rule `-A INPUT -m conntrack --ctstate INVALID -j DROP`"
        ),
        "{}",
        v.sentence
    );
    assert_eq!(v.confidence, Confidence::Partial);
}

#[test]
fn no_route_names_the_packet_and_the_device_it_came_in_by() {
    let drop = |reason| {
        vec![
            event(Ev { ns: 5, ifname: "veth0", func: "net_dev_queue", ..Ev::default() }, 1),
            event(Ev::default(), 2),
            event(Ev { func: "kfree_skb", drop: Some((reason, "ip_error+0x94")), ..Ev::default() }, 3),
        ]
    };
    // Forwarding off: the kernel answers EHOSTUNREACH, counted as an address error, no ICMP.
    let mut env = Fake { sysctls: sysctls(&[("net.ipv4.ip_forward", "0")]), ..Fake::default() };
    let v = verdict_of(drop("IP_INADDRERRORS"), 0x1000, &mut env);
    assert_eq!(v.rule, "no-route");
    assert!(
        v.sentence.starts_with(
            "10.0.0.1:40000->10.0.0.2:4000(udp) arriving on eth0 dropped in netns 7 (blue) (IP_INADDRERRORS): \
             forwarding is off there (net.ipv4.ip_forward=0)"
        ),
        "{}",
        v.sentence
    );
    // Forwarding on, no route: ENETUNREACH, and an ICMP net unreachable.
    let mut env = Fake { sysctls: sysctls(&[("net.ipv4.ip_forward", "1")]), ..Fake::default() };
    let mut events = drop("IP_INNOROUTES");
    events.insert(2, event(Ev { func: "icmp_send", ..Ev::default() }, 2));
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "no-route");
    assert!(
        v.sentence.ends_with(
            "(IP_INNOROUTES): no route to 10.0.0.2 (RTNETLINK answers: Network is unreachable); ICMP unreachable \
             sent back"
        ),
        "{}",
        v.sentence
    );
}

#[test]
fn kfree_skbmem_ends_a_story_as_a_free() {
    // kprobes: an ICMP echo request, answered by the kernel with a new skb
    // and consumed; kfree_skbmem is the free (consume_skb is not).
    let ping = |func, freed| Ev { func, freed, ..Ev::default() };
    let events = vec![
        event(ping("ip_rcv", false), 1),
        event(ping("icmp_rcv", false), 2),
        event(ping("consume_skb", false), 3),
        event(ping("kfree_skbmem", true), 4),
    ];
    let v = verdict_of(events, 0x1000, &mut Fake::default());
    assert_eq!(v.rule, "silent-end");
    assert!(
        v.sentence.starts_with("freed without a drop reason by kfree_skbmem in netns 7 (blue) on eth0 after icmp_rcv"),
        "{}",
        v.sentence
    );
    // Delivered, then freed: the free belongs to the delivered story, not to a new one.
    let (ended, _) = super::stories(vec![
        event(ping("ip_rcv", false), 1),
        event(ping("skb_copy_datagram_iter", false), 2),
        event(ping("kfree_skbmem", true), 3),
    ]);
    assert_eq!(ended.len(), 1, "{ended:?}");
}

#[test]
fn with_kprobes_a_drop_names_its_caller_and_its_free_is_no_story_of_its_own() {
    // The 6.12 VM (kprobe-multi): the drop function's caller is the
    // location, and kfree_skbmem follows the drop on the same skb.
    let mut env = Fake {
        routes: [("10.0.0.2".parse().unwrap(), "10.0.0.2 dev tun0 src 10.8.0.1".into())].into(),
        ..Fake::default()
    };
    let step = |func, drop, freed| Ev { func, drop, freed, len: 1428, ..Ev::default() };
    let events = vec![
        event(step("ip_rcv", None, false), 1),
        event(step("ip_forward", None, false), 2),
        event(step("__icmp_send", None, false), 3),
        event(step("sk_skb_reason_drop", Some(("PKT_TOO_BIG", "ip_forward+0x4c4")), true), 4),
        event(step("kfree_skbmem", None, true), 5),
    ];
    let (ended, _) = super::stories(events.clone());
    assert_eq!(ended.len(), 1, "{ended:?}");
    let v = verdict_of(events, 0x1000, &mut env);
    assert_eq!(v.rule, "mtu");
    assert!(v.sentence.starts_with("1428-byte packet dropped in netns 7 (blue) at ip_forward: "), "{}", v.sentence);
    // The tracepoint's drop is the free itself: a later event of that
    // address is a new skb's, even a lone free.
    let (ended, _) = super::stories(vec![
        event(Ev { func: "kfree_skb", drop: Some(("NO_SOCKET", "__udp4_lib_rcv+0x4bc")), ..Ev::default() }, 1),
        event(Ev { func: "consume_skb", freed: true, ..Ev::default() }, 2),
    ]);
    assert_eq!(ended.len(), 2, "{ended:?}");
}
