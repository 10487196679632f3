//! Each in-kernel filter shown to include what matches and exclude what does
//! not: the flags and a tcpdump expression.

use std::{io::Write as _, process::Stdio};

use testkit::{
    ci::require_root,
    netns::{Netns, veth},
};

use super::{dports, target};
use crate::skbtrace;

#[test]
fn filter_netns_keeps_only_that_namespace() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let (a, b) = (Netns::new("nsa")?, Netns::new("nsb")?);
    let inode = format!("inode:{}", a.inode()?);
    let tracer = t.start(&["--filter-netns", &inode, "--filter-func", t.drop_func(), "--output-json"])?;
    a.send_udp("127.0.0.1", 4100, "a")?;
    b.send_udp("127.0.0.1", 4101, "b")?;
    let events = t.stop(tracer)?.events()?;
    let ports = dports(&events);
    assert!(ports.contains(&4100), "{ports:?}");
    assert!(!ports.contains(&4101), "{ports:?}");
    assert!(events.iter().all(|e| e["netns"] == a.inode().unwrap()), "{events:?}");
    Ok(())
}

#[test]
fn filter_mark_matches_value_and_mask() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("mrk")?;
    ns.sh("iptables -t mangle -A OUTPUT -p udp --dport 4200 -j MARK --set-mark 0x1234")?;
    let path = ns.path();
    let tracer = t.start(&[
        "--filter-netns",
        &path,
        "--filter-func",
        t.drop_func(),
        "--filter-mark",
        "0x34/0xff",
        "--output-json",
    ])?;
    ns.send_udp("127.0.0.1", 4200, "marked")?;
    ns.send_udp("127.0.0.1", 4201, "unmarked")?;
    let events = t.stop(tracer)?.events()?;
    let ports = dports(&events);
    assert!(ports.contains(&4200), "{ports:?}");
    assert!(!ports.contains(&4201), "{ports:?}");
    assert!(events.iter().all(|e| e["mark"] == 0x1234), "an event without the mark: {events:?}");
    Ok(())
}

#[test]
fn filter_ifname_keeps_only_that_interface() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let (a, b) = (Netns::new("ifa")?, Netns::new("ifb")?);
    let ends = veth(&a, "10.78.0.1/24", &b, "10.78.0.2/24")?;
    let funcs = format!("{}|{}", t.drop_func(), t.receive_func());
    let tracer =
        t.start(&["--filter-netns", &b.path(), "--filter-ifname", &ends.b, "--filter-func", &funcs, "--output-json"])?;
    a.send_udp("10.78.0.2", 4300, "over-veth")?;
    b.send_udp("127.0.0.1", 4301, "over-lo")?;
    let events = t.stop(tracer)?.events()?;
    let ports = dports(&events);
    assert!(ports.contains(&4300), "{ports:?}");
    assert!(!ports.contains(&4301), "{ports:?}");
    assert!(events.iter().all(|e| e["ifname"] == ends.b.as_str()), "{events:?}");
    Ok(())
}

#[test]
fn filter_pid_keeps_only_that_process() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("pid")?;
    // A sender that waits for a line on stdin, so that its pid is known
    // before it sends: `ip netns exec` and `exec` keep the pid.
    let script = format!("read go && exec {} 127.0.0.1 4400", skbtrace::udpsend().display());
    let mut sender = ns.command("sh").args(["-c", &script]).stdin(Stdio::piped()).spawn()?;
    let pid = sender.id().to_string();
    let tracer = t.start(&["--filter-pid", &pid, "--filter-func", t.drop_func(), "--output-json"])?;
    ns.send_udp("127.0.0.1", 4401, "other-process")?;
    sender.stdin.take().expect("piped").write_all(b"go\n")?;
    assert!(sender.wait()?.success(), "the sender failed");
    let ports = dports(&t.stop(tracer)?.events()?);
    assert!(ports.contains(&4400), "{ports:?}");
    assert!(!ports.contains(&4401), "{ports:?}");
    Ok(())
}

#[test]
fn filter_func_selects_only_those() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("fun")?;
    let tracer = t.start(&["--filter-netns", &ns.path(), "--filter-func", t.receive_func(), "--output-json"])?;
    ns.send_udp("127.0.0.1", 4500, "x")?;
    let events = t.stop(tracer)?.events()?;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["func"] == t.receive_func()), "{events:?}");
    Ok(())
}

#[test]
fn expression_keeps_one_flow_of_two() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("flw")?;
    let funcs = t.funcs("ip_rcv|__udp4_lib_rcv");
    let path = ns.path();
    // Kprobes on a few functions; tracepoints: all of them.
    let mut args = vec!["--filter-netns", &path, "--output-json", "udp and dst port 4000"];
    if t.kprobes() {
        args.extend(["--filter-func", &funcs]);
    }
    let tracer = t.start(&args)?;
    // Two flows, interleaved: only the first matches.
    for i in 0..5 {
        ns.send_udp("127.0.0.1", 4000, format!("match{i}"))?;
        ns.send_udp("127.0.0.1", 4002, format!("other{i}"))?;
    }
    let events = t.stop(tracer)?.events()?;
    assert!(events.iter().all(|e| e["tuple"]["dport"] == 4000), "an event of the other flow got through: {events:?}");
    // Each datagram is seen at several places and dropped once.
    let drops: Vec<_> = events.iter().filter(|e| e["func"] == t.drop_func()).collect();
    assert_eq!(drops.len(), 5, "every datagram of the matching flow is dropped once: {events:?}");
    assert!(drops.iter().all(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET"), "{drops:?}");
    assert!(events.len() > drops.len(), "{events:?}");
    Ok(())
}
