//! What skbtrace finds to attach to, and attaching to all of it.

use std::{collections::HashSet, time::Duration};

use testkit::{ci::require_root, netns::Netns, summary::Backend};

use super::target;

#[test]
fn list_funcs_names_the_drop_point() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let out = t.run(&["--list-funcs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = |line: &str| text.lines().any(|l| l.starts_with(line));
    if t.kprobes() {
        // Name, position of the skb argument, module.
        assert!(text.lines().count() > 1000, "fewer than 1000 skb functions listed:\n{text}");
        assert!(listed("ip_rcv\t1\tvmlinux"), "ip_rcv not listed at position 1:\n{text}");
        let drop = match t.drop_func() {
            "sk_skb_reason_drop" => "sk_skb_reason_drop\t2\tvmlinux",
            _ => "kfree_skb_reason\t1\tvmlinux",
        };
        assert!(listed(drop), "{drop:?} not listed:\n{text}");
    } else {
        assert!(listed("kfree_skb\t1"), "{text}");
        assert!(listed("netif_receive_skb\t"), "{text}");
    }
    Ok(())
}

/// Everything that can be attached, at once: with kprobes every function
/// that takes an skb (~1,400), detached again at the end.
#[test]
fn every_function_attached_and_detached() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("all")?;
    // One kprobe at a time, in a TCG VM: about a minute each way.
    let limit = Duration::from_secs(900);
    let tracer = t
        .command()
        .args(["--filter-netns", &ns.path(), "--output-json", "udp and dst port 4600"])
        .limits(limit, limit)
        .start()?;
    ns.send_udp("127.0.0.1", 4600, "hello")?;
    let done = t.stop(tracer)?;
    let summary = done.summary()?;
    let events = done.events()?;
    let funcs: HashSet<&str> = events.iter().filter_map(|e| e["func"].as_str()).collect();
    assert!(funcs.contains(t.drop_func()), "the drop is missing: {funcs:?}");
    if t.kprobes() {
        assert!(summary.attached > 1000, "{} functions attached, not over 1000", summary.attached);
        assert!(funcs.len() >= 5, "the datagram was seen in fewer than 5 functions: {funcs:?}");
    } else {
        assert!(summary.attached >= 5, "{} tracepoints attached", summary.attached);
        assert!(funcs.len() >= 2, "the datagram was seen at fewer than 2 tracepoints: {funcs:?}");
    }
    if t.backend == Backend::Kprobe {
        // One kprobe per function, each detached by itself.
        assert_eq!(summary.detached, summary.attached, "not every kprobe was detached");
    }
    Ok(())
}
