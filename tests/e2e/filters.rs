//! Each in-kernel filter flag shown to include what matches and exclude what
//! does not.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use crate::util::{
    cmd::Tracer,
    netns::{Netns, veth},
    require_root,
};

fn dports(events: &[serde_json::Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["tuple"]["dport"].as_u64()).filter(|p| *p != 0).collect()
}

#[test]
fn filter_netns_keeps_only_that_namespace() {
    if !require_root("filter_netns_keeps_only_that_namespace") {
        return;
    }
    let (a, b) = (Netns::new("nsa"), Netns::new("nsb"));
    let t = Tracer::start(&[
        "--filter-netns",
        &format!("inode:{}", a.inode()),
        "--filter-func",
        "kfree_skb",
        "--output-json",
    ]);
    a.send_udp("127.0.0.1", 4100, "a");
    b.send_udp("127.0.0.1", 4101, "b");
    let events = t.stop().json();
    let ports = dports(&events);
    assert!(ports.contains(&4100), "{ports:?}");
    assert!(!ports.contains(&4101), "{ports:?}");
    assert!(events.iter().all(|e| e["netns"] == a.inode()));
}

#[test]
fn filter_mark_matches_value_and_mask() {
    if !require_root("filter_mark_matches_value_and_mask") {
        return;
    }
    let ns = Netns::new("mark");
    ns.sh_ok("iptables -t mangle -A OUTPUT -p udp --dport 4200 -j MARK --set-mark 0x1234");
    let t = Tracer::start(&[
        "--filter-netns",
        &ns.path(),
        "--filter-func",
        "kfree_skb",
        "--filter-mark",
        "0x34/0xff",
        "--output-json",
    ]);
    ns.send_udp("127.0.0.1", 4200, "marked");
    ns.send_udp("127.0.0.1", 4201, "unmarked");
    let events = t.stop().json();
    let ports = dports(&events);
    assert!(ports.contains(&4200), "{ports:?}");
    assert!(!ports.contains(&4201), "{ports:?}");
    assert!(events.iter().all(|e| e["mark"] == 0x1234), "{events:?}");
}

#[test]
fn filter_ifname_keeps_only_that_interface() {
    if !require_root("filter_ifname_keeps_only_that_interface") {
        return;
    }
    let (a, b) = (Netns::new("ifa"), Netns::new("ifb"));
    let (_, b_if) = veth(&a, "10.78.0.1/24", &b, "10.78.0.2/24");
    let t = Tracer::start(&[
        "--filter-netns",
        &b.path(),
        "--filter-ifname",
        &b_if,
        "--filter-func",
        "kfree_skb|netif_receive_skb",
        "--output-json",
    ]);
    a.send_udp("10.78.0.2", 4300, "over-veth");
    b.send_udp("127.0.0.1", 4301, "over-lo");
    let events = t.stop().json();
    let ports = dports(&events);
    assert!(ports.contains(&4300), "{ports:?}");
    assert!(!ports.contains(&4301), "{ports:?}");
    assert!(events.iter().all(|e| e["ifname"] == b_if.as_str()), "{events:?}");
}

#[test]
fn filter_pid_keeps_only_that_process() {
    if !require_root("filter_pid_keeps_only_that_process") {
        return;
    }
    let ns = Netns::new("pid");
    // A sender that waits for a line on stdin, so its pid is known before it sends.
    let mut sender = Command::new("ip")
        .args(["netns", "exec", &ns.name, "bash", "-c", "read x; echo hi > /dev/udp/127.0.0.1/4400"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting the sender");
    let pid = sender.id().to_string(); // ip netns exec execs bash in place
    let t = Tracer::start(&["--filter-pid", &pid, "--filter-func", "kfree_skb", "--output-json"]);
    ns.send_udp("127.0.0.1", 4401, "other-process");
    sender.stdin.take().expect("stdin").write_all(b"go\n").expect("waking the sender");
    assert!(sender.wait().expect("sender").success());
    let events = t.stop().json();
    let ports = dports(&events);
    assert!(ports.contains(&4400), "{ports:?}");
    assert!(!ports.contains(&4401), "{ports:?}");
}

#[test]
fn filter_func_selects_tracepoints() {
    if !require_root("filter_func_selects_tracepoints") {
        return;
    }
    let ns = Netns::new("func");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "netif_receive_skb", "--output-json"]);
    ns.send_udp("127.0.0.1", 4500, "x");
    let events = t.stop().json();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["func"] == "netif_receive_skb"), "{events:?}");
}
