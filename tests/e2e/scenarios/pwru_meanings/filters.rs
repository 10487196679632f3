//! `--filter-ifname` scoped to one namespace, `--filter-skb-expr` and
//! `--kernel-btf`, with pwru's meanings.

use std::collections::HashSet;

use anyhow::{Context as _, ensure};
use testkit::{
    ci::require_root,
    netns::{Netns, veth},
};

use super::{bound_udp, received, refused, rename, start, stopped, to_port};
use crate::scenarios::{dports, target};

/// Two namespaces, each with an `eth0` (a veth end renamed) to a peer with
/// the same addresses: only the namespace tells the two apart.
/// `--filter-netns A --filter-ifname eth0` sees A's datagram, not B's.
#[test]
fn filter_ifname_names_an_interface_of_filter_netns() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (a, a_peer, b, b_peer) = (Netns::new("ia")?, Netns::new("iap")?, Netns::new("ib")?, Netns::new("ibp")?);
    let (a_port, b_port) = (4034, 4035);
    let mut servers = Vec::new();
    for (ns, peer, port) in [(&a, &a_peer, a_port), (&b, &b_peer, b_port)] {
        let ends = veth(ns, "10.94.0.1/24", peer, "10.94.0.2/24")?;
        rename(ns, &ends.a, "eth0")?;
        servers.push(bound_udp(peer, "10.94.0.2", port)?.0);
    }
    let [a_server, b_server] = <[_; 2]>::try_from(servers).expect("two servers");
    let tracer = start(&a, &["--filter-ifname", "eth0", "--output-json"])?;
    a.send_udp("10.94.0.2", a_port, "from a")?;
    b.send_udp("10.94.0.2", b_port, "from b")?;
    received(&a_server)?;
    received(&b_server)?;
    let done = stopped(tracer)?;
    let events = done.events()?;
    let ports = dports(&events);
    ensure!(ports.contains(&a_port.into()), "A's datagram on A's eth0 is missing:\n{}", done.stdout);
    ensure!(!ports.contains(&b_port.into()), "B's datagram on B's eth0 got through:\n{}", done.stdout);
    let a_inode = a.inode()?;
    for e in &events {
        assert_eq!((&e["netns"], &e["ifname"]), (&a_inode.into(), &"eth0".into()), "{e}");
    }
    Ok(())
}

/// Without `--filter-netns`, the interface is one of skbtrace's own
/// namespace: `lo` there is not the test namespace's `lo`. A second run,
/// scoped to the namespace, shows the traffic was there to be seen.
#[test]
fn filter_ifname_alone_is_in_skbtraces_own_namespace() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("ilo")?;
    let own_lo = t.command().args(super::funcs(&[])).args(["--filter-ifname", "lo", "--output-json"]).start()?;
    let scoped = start(&ns, &["--output-json"])?;
    ns.send_udp("127.0.0.1", 4030, "ns lo")?;
    let (own_lo, scoped) = (stopped(own_lo)?, stopped(scoped)?);
    ensure!(
        !to_port(&scoped.events()?, 4030).is_empty(),
        "the namespace's datagram was not seen at all:\n{}",
        scoped.stdout
    );
    let inode = ns.inode()?;
    for e in own_lo.events()? {
        ensure!(e["netns"] != inode, "--filter-ifname lo matched the test namespace's lo: {e}");
    }
    Ok(())
}

#[test]
fn filter_ifname_with_an_inode_is_a_usage_error() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("iin")?;
    let inode = format!("inode:{}", ns.inode()?);
    let (code, err) = refused(&["--filter-netns", &inode, "--filter-ifname", "lo"])?;
    assert_eq!(code, Some(2), "{err}");
    ensure!(
        err.contains("--filter-ifname") && err.contains(&inode),
        "the message should name both flags' values: {err}"
    );
    Ok(())
}

/// Three datagrams: small and big on `lo`, small over a veth. Each
/// expression keeps exactly those it holds for.
#[test]
fn filter_skb_expr_keeps_what_it_holds_for() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (a, b) = (Netns::new("sxa")?, Netns::new("sxb")?);
    veth(&a, "10.97.0.1/24", &b, "10.97.0.2/24")?;
    let (server, veth_port) = bound_udp(&b, "10.97.0.2", 0)?;
    let expr = |e: &'static str| ["--filter-skb-expr", e, "--output-json"];
    let tracers = [
        ("skb->len > 500", start(&a, &expr("skb->len > 500"))?),
        ("skb->len < 500", start(&a, &expr("skb->len < 500"))?),
        ("skb->dev->name == \"lo\"", start(&a, &expr("skb->dev->name == \"lo\""))?),
    ];
    a.send_udp("127.0.0.1", 4031, [b's'; 10])?;
    a.send_udp("127.0.0.1", 4032, [b'b'; 1000])?;
    a.send_udp("10.97.0.2", veth_port, [b's'; 10])?;
    received(&server)?;
    let veth_port = u64::from(veth_port);
    for ((name, tracer), keeps) in tracers.into_iter().zip([&[4032][..], &[4031, veth_port], &[4031, 4032]]) {
        let done = stopped(tracer)?;
        let events = done.events()?;
        let seen: HashSet<u64> = dports(&events).into_iter().filter(|p| [4031, 4032, veth_port].contains(p)).collect();
        assert_eq!(seen, keeps.iter().copied().collect(), "--filter-skb-expr '{name}':\n{}", done.stdout);
        if name.contains("name") {
            ensure!(events.iter().all(|e| e["ifname"] == "lo"), "'{name}' kept another device:\n{}", done.stdout);
        }
    }
    Ok(())
}

#[test]
fn filter_skb_expr_mistakes_are_usage_errors() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let drop = target().drop_func();
    for (expr, says) in [
        // An unknown field, named, and the one meant.
        ("skb->lenx > 100", &["`lenx`", "did you mean `len`"][..]),
        // A number compared with a string.
        ("skb->len == \"lo\"", &["`skb->len`", "string"][..]),
    ] {
        let (code, err) = refused(&["--filter-func", drop, "--filter-skb-expr", expr])?;
        assert_eq!(code, Some(2), "--filter-skb-expr '{expr}': {err}");
        ensure!(says.iter().all(|s| err.contains(s)), "--filter-skb-expr '{expr}' should say {says:?}: {err}");
        ensure!(!err.contains("attached"), "--filter-skb-expr '{expr}' attached something: {err}");
    }
    Ok(())
}

/// A copy of the running kernel's BTF, given as a file, works as the kernel's.
#[test]
fn kernel_btf_reads_a_copy_of_the_kernels() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("skbtrace-btf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("vmlinux");
    std::fs::copy("/sys/kernel/btf/vmlinux", &copy).context("copying /sys/kernel/btf/vmlinux")?;
    let ns = Netns::new("btf")?;
    let tracer = start(&ns, &["--kernel-btf", copy.to_str().context("temp path")?, "--output-json"]);
    let result = tracer.and_then(|tracer| {
        ns.send_udp("127.0.0.1", 4033, "btf")?;
        stopped(tracer)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let done = result?;
    let events = done.events()?;
    let dropped = to_port(&events, 4033).iter().any(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET");
    ensure!(dropped, "no drop of the datagram with --kernel-btf:\n{}", done.stdout);
    Ok(())
}
