//! `--filter-track-skb`: an skb that matched once is followed through NAT
//! rewrites, across namespaces, and (with kprobes) into its clones.

use std::collections::HashSet;

use anyhow::Context as _;
use testkit::{
    ci::require_root,
    netns::{Netns, ip, veth},
};

use super::target;

/// A routed path across namespaces with SNAT: the same skb is seen before
/// and after the rewrite, on each interface, with the tuple as NAT changes it.
#[test]
fn snat_on_a_router_shows_both_tuples() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let (client, router, server) = (Netns::new("cli")?, Netns::new("rtr")?, Netns::new("srv")?);
    let r_in = veth(&client, "10.81.1.1/24", &router, "10.81.1.254/24")?.b;
    let out = veth(&router, "10.81.2.254/24", &server, "10.81.2.1/24")?;
    client.ip(&["route", "add", "default", "via", "10.81.1.254"])?;
    router.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))?;
    router.sh(&format!("iptables -t nat -A POSTROUTING -o {} -j MASQUERADE", out.a))?;

    let (path, funcs) = (router.path(), t.funcs(&format!("{}|{}", t.receive_func(), t.transmit_func())));
    let mut args = vec!["--filter-netns", &path, "--filter-track-skb", "--output-json", "udp and dst port 4000"];
    if t.kprobes() {
        args.extend(["--filter-func", &funcs]);
    }
    let tracer = t.start(&args)?;
    client.send_udp("10.81.2.1", 4000, "through-nat")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let ours: Vec<_> = events.iter().filter(|e| e["tuple"]["dport"] == 4000).collect();
    let func_is = |e: &serde_json::Value, prefix: &str| e["func"].as_str().is_some_and(|f| f.starts_with(prefix));

    let before = ours
        .iter()
        .find(|e| e["tuple"]["saddr"] == "10.81.1.1" && e["ifname"] == r_in.as_str())
        .with_context(|| format!("no receive event on {r_in} with the original source:\n{}", done.stdout))?;
    let after = ours
        .iter()
        .find(|e| {
            e["tuple"]["saddr"] == "10.81.2.254" && e["ifname"] == out.a.as_str() && func_is(e, t.transmit_func())
        })
        .with_context(|| format!("no transmit event on {} with the rewritten source:\n{}", out.a, done.stdout))?;
    assert_eq!(before["skb"], after["skb"], "the rewrite should be seen on the same skb:\n{}", done.stdout);
    assert!(ours.iter().any(|e| func_is(e, t.receive_func())), "no receive event:\n{}", done.stdout);
    // Tracking follows the skb out of the router's namespace to the server,
    // where it is dropped.
    let dropped = ours
        .iter()
        .find(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET")
        .with_context(|| format!("the drop at the server is missing:\n{}", done.stdout))?;
    assert_eq!(dropped["skb"], before["skb"]);
    assert_eq!(dropped["ifname"], out.b.as_str());
    assert_eq!(dropped["netns"], server.inode()?);
    assert_eq!(dropped["tracked"], true);
    Ok(())
}

/// DNAT: the expression matches the packet before the rewrite only;
/// tracking keeps it after.
#[test]
fn dnat_is_followed_on_the_same_skb() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let (a, b) = (Netns::new("dna")?, Netns::new("dnb")?);
    veth(&a, "10.30.0.1/24", &b, "10.30.0.2/24")?;
    b.sh("iptables -t nat -A PREROUTING -p udp --dport 5000 -j DNAT --to-destination 10.30.0.2:4000")?;
    let funcs = if t.kprobes() {
        t.funcs("ip_rcv|ip_rcv_finish|ip_local_deliver|__udp4_lib_rcv|nf_nat_ipv4_pre_routing|nf_nat_inet_fn")
    } else {
        format!("{}|{}", t.drop_func(), t.receive_func())
    };
    let path = b.path();
    let expression = "udp and dst port 5000";
    let tracer = t.start(&[
        "--filter-netns",
        &path,
        "--filter-track-skb",
        "--filter-func",
        &funcs,
        "--output-json",
        expression,
    ])?;
    a.send_udp("10.30.0.2", 5000, "hello")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let before = events
        .iter()
        .find(|e| e["tuple"]["dport"] == 5000)
        .with_context(|| format!("no event before DNAT:\n{}", done.stdout))?;
    let after = events
        .iter()
        .find(|e| e["tuple"]["dport"] == 4000 && e["skb"] == before["skb"])
        .with_context(|| format!("no event after DNAT for the same skb:\n{}", done.stdout))?;
    assert_eq!(after["tracked"], true, "the rewritten packet passed without tracking: {after}");
    let dropped = events.iter().any(|e| {
        e["func"] == t.drop_func() && e["tuple"]["dport"] == 4000 && e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET"
    });
    assert!(dropped, "no NO_SOCKET drop after DNAT:\n{}", done.stdout);
    Ok(())
}

/// A bridge flooding a frame for an unknown MAC to two ports clones the skb
/// for all but the last port. Only the skb entering on `b0` passes
/// `--filter-ifname`; with kprobes, tracking follows the clone too.
#[test]
fn bridge_flood_is_followed_out_of_every_port() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let (s, b, r) = (Netns::new("bs")?, Netns::new("bb")?, Netns::new("br")?);
    b.ip(&["link", "add", "br0", "type", "bridge"])?;
    b.ip(&["link", "set", "br0", "up"])?;
    for (peer, end, port) in [(&s, "s0", "b0"), (&r, "r1", "b1"), (&r, "r2", "b2")] {
        ip(&["link", "add", end, "netns", peer.name(), "type", "veth", "peer", "name", port, "netns", b.name()])?;
        b.ip(&["link", "set", port, "master", "br0"])?;
        b.ip(&["link", "set", port, "up"])?;
        peer.ip(&["link", "set", end, "up"])?;
    }
    s.ip(&["addr", "add", "10.60.0.1/24", "dev", "s0"])?;
    s.ip(&["neigh", "add", "10.60.0.99", "lladdr", "02:00:00:00:00:99", "dev", "s0"])?;
    let path = b.path();
    let mut args = vec!["--filter-netns", &path, "--filter-ifname", "b0", "--filter-track-skb", "--output-json"];
    if t.kprobes() {
        let funcs =
            "netif_rx|__netif_rx|br_handle_frame_finish|br_flood|__br_forward|br_dev_queue_push_xmit|__dev_queue_xmit";
        args.extend(["--kmods", "bridge", "--filter-func", funcs]);
    }
    args.push("udp and dst port 4800");
    let tracer = t.start(&args)?;
    s.send_udp("10.60.0.99", 4800, "flood")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let out: HashSet<&str> = events
        .iter()
        .filter(|e| e["ifname"] == "b1" || e["ifname"] == "b2")
        .filter_map(|e| e["skb"].as_str())
        .collect();
    // The original skb leaves by the last port; with kprobes, its clone by the other.
    let expected = if t.kprobes() { 2 } else { 1 };
    assert!(out.len() >= expected, "{} skbs seen leaving the bridge, not {expected}:\n{}", out.len(), done.stdout);
    Ok(())
}
