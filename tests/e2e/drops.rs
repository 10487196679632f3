//! Drops on this host, through the tracepoint backend: the reason by name,
//! where, and the packet's tuple.

use crate::util::{cmd::Tracer, netns::Netns, require_root};

/// A dropped-UDP event of a JSON run, by destination port.
fn drop_events(events: &[serde_json::Value], port: u64) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["tuple"]["dport"] == port && !e["drop_reason"].as_str().unwrap_or("").is_empty())
        .collect()
}

#[test]
fn udp_to_closed_port_is_no_socket() {
    if !require_root("udp_to_closed_port_is_no_socket") {
        return;
    }
    let ns = Netns::new("drop");
    ns.ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"]);
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "kfree_skb", "--output-json"]);
    ns.send_udp("10.77.0.1", 4000, "hello");
    let done = t.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let events = done.json();
    let drops = drop_events(&events, 4000);
    assert!(!drops.is_empty(), "no drop of the datagram in:\n{}", done.stdout);
    let e = drops[0];
    assert_eq!(e["drop_reason"], "SKB_DROP_REASON_NO_SOCKET", "{e}");
    assert_eq!(e["func"], "kfree_skb");
    assert!(e["location"].as_str().unwrap().starts_with("__udp4_lib_rcv"), "{e}");
    assert_eq!(e["tuple"]["saddr"], "10.77.0.1");
    assert_eq!(e["tuple"]["daddr"], "10.77.0.1");
    assert_eq!(e["tuple"]["proto"], "udp");
    assert_eq!(e["netns"], ns.inode());
}

#[test]
fn text_line_names_the_reason_like_pwru() {
    if !require_root("text_line_names_the_reason_like_pwru") {
        return;
    }
    let ns = Netns::new("text");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "kfree_skb"]);
    ns.send_udp("127.0.0.1", 4000, "hello");
    let done = t.stop();
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert!(lines[0].starts_with("SKB "), "header missing: {}", done.stdout);
    let line = lines
        .iter()
        .find(|l| l.contains("->127.0.0.1:4000(udp)"))
        .unwrap_or_else(|| panic!("no line for the datagram:\n{}", done.stdout));
    assert!(line.contains("kfree_skb(SKB_DROP_REASON_NO_SOCKET) __udp4_lib_rcv+0x"), "{line}");
    assert!(line.contains(&ns.inode().to_string()), "{line}");
}

#[test]
fn iptables_drop_is_netfilter_drop() {
    if !require_root("iptables_drop_is_netfilter_drop") {
        return;
    }
    let ns = Netns::new("ipt");
    ns.sh_ok("iptables -A INPUT -p udp --dport 4001 -j DROP");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "kfree_skb", "--output-json"]);
    ns.send_udp("127.0.0.1", 4001, "hello");
    let done = t.stop();
    let events = done.json();
    let drops = drop_events(&events, 4001);
    assert!(!drops.is_empty(), "no drop in:\n{}", done.stdout);
    assert_eq!(drops[0]["drop_reason"], "SKB_DROP_REASON_NETFILTER_DROP", "{}", drops[0]);
    // iptables-legacy drops in nf_hook_slow, iptables-nft inside nft_do_chain.
    let location = drops[0]["location"].as_str().unwrap();
    assert!(location.starts_with("nf_hook_slow") || location.starts_with("nft_do_chain"), "{}", drops[0]);
}
