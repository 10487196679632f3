//! Drops: the reason by name, where, and the packet's tuple.

use anyhow::Context as _;
use serde_json::Value;
use testkit::{ci::require_root, netns::Netns};

use super::target;

/// The drop events of a JSON run for the datagrams to `port`.
fn drops_to(events: &[Value], port: u64) -> Vec<&Value> {
    events.iter().filter(|e| e["func"] == target().drop_func() && e["tuple"]["dport"] == port).collect()
}

#[test]
fn udp_to_closed_port_is_no_socket() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("drp")?;
    ns.ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"])?;
    let funcs = t.funcs("ip_rcv|__udp4_lib_rcv|ip_local_deliver");
    let tracer = t.start(&["--filter-netns", &ns.path(), "--filter-func", &funcs, "--output-json"])?;
    ns.send_udp("10.77.0.1", 4000, "hello")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let drop =
        *drops_to(&events, 4000).first().with_context(|| format!("no drop of the datagram in:\n{}", done.stdout))?;
    assert_eq!(drop["drop_reason"], "SKB_DROP_REASON_NO_SOCKET", "{drop}");
    assert_eq!(drop["tuple"]["saddr"], "10.77.0.1", "{drop}");
    assert_eq!(drop["tuple"]["daddr"], "10.77.0.1", "{drop}");
    assert_eq!(drop["tuple"]["proto"], "udp", "{drop}");
    assert_eq!(drop["netns"], ns.inode()?, "{drop}");
    assert!(done.summary()?.drops_of("SKB_DROP_REASON_NO_SOCKET") >= 1, "the summary misses the drop");
    // FUNC like pwru's: the function and the reason.
    let column = format!("{}(SKB_DROP_REASON_NO_SOCKET)", t.drop_func());
    if t.kprobes() {
        assert_eq!(drop["func_column"], column.as_str(), "{drop}");
        // Every function on the way saw the same skb.
        for f in ["ip_rcv", "__udp4_lib_rcv"] {
            let seen = events.iter().any(|e| e["func"] == f && e["skb"] == drop["skb"]);
            assert!(seen, "no {f} event for the dropped skb:\n{}", done.stdout);
        }
    } else {
        // The tracepoint says where the kernel dropped it.
        assert!(drop["func_column"].as_str().unwrap_or("").starts_with(&column), "{drop}");
        assert!(drop["location"].as_str().unwrap_or("").starts_with("__udp4_lib_rcv"), "{drop}");
    }
    Ok(())
}

#[test]
fn text_line_names_the_reason_like_pwru() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("txt")?;
    let tracer = t.start(&["--filter-netns", &ns.path(), "--filter-func", t.drop_func()])?;
    ns.send_udp("127.0.0.1", 4000, "hello")?;
    let done = t.stop(tracer)?;
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("SKB ")), "header missing: {}", done.stdout);
    let line = lines
        .iter()
        .find(|l| l.contains("->127.0.0.1:4000(udp)"))
        .with_context(|| format!("no line for the datagram:\n{}", done.stdout))?;
    assert!(line.contains(&format!("{}(SKB_DROP_REASON_NO_SOCKET)", t.drop_func())), "{line}");
    if !t.kprobes() {
        assert!(line.contains("(SKB_DROP_REASON_NO_SOCKET) __udp4_lib_rcv+0x"), "{line}");
    }
    assert!(line.contains(&ns.inode()?.to_string()), "{line}");
    Ok(())
}

#[test]
fn iptables_drop_is_netfilter_drop() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("ipt")?;
    ns.sh("iptables -A INPUT -p udp --dport 4001 -j DROP")?;
    let (path, funcs) = (ns.path(), t.funcs("nf_hook_slow"));
    let mut args = vec!["--filter-netns", &path, "--filter-func", &funcs, "--output-json"];
    if t.kprobes() {
        args.push("--output-caller");
    }
    let tracer = t.start(&args)?;
    ns.send_udp("127.0.0.1", 4001, "hello")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let drop = *drops_to(&events, 4001).first().with_context(|| format!("no drop in:\n{}", done.stdout))?;
    assert_eq!(drop["drop_reason"], "SKB_DROP_REASON_NETFILTER_DROP", "{drop}");
    let location = drop["location"].as_str().unwrap_or("");
    if t.kprobes() {
        // The caller of the drop function (the VM's iptables is legacy).
        assert!(location.starts_with("nf_hook_slow"), "{drop}");
        let seen = events.iter().any(|e| e["func"] == "nf_hook_slow" && e["skb"] == drop["skb"]);
        assert!(seen, "no nf_hook_slow event for the dropped skb:\n{}", done.stdout);
    } else {
        // iptables-legacy drops in nf_hook_slow, iptables-nft inside nft_do_chain.
        assert!(location.starts_with("nf_hook_slow") || location.starts_with("nft_do_chain"), "{drop}");
    }
    Ok(())
}
