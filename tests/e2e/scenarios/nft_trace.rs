//! `--nft-trace`: the nf_tables rule that dropped a packet, by handle and
//! text. With kprobes (the VMs), an nftables rule and an iptables-nft rule
//! drop a datagram each; the events carry the rule and `--explain`'s
//! firewall verdict names its handle and text, and the trace table is gone
//! afterwards. Without kprobes (this host), skbtrace refuses before
//! attaching anything.

use anyhow::{Context as _, ensure};
use serde_json::Value;
use testkit::{ci::require_root, netns::Netns};

use super::target;
use crate::skbtrace;

/// The handle of the rule whose text contains `text`, from `nft -a list table`.
fn handle_of(ns: &Netns, table: &str, text: &str) -> anyhow::Result<u64> {
    let listing = ns.sh(&format!("nft -a list table {table}"))?;
    let line = listing.lines().find(|l| l.contains(text)).with_context(|| format!("no `{text}` in:\n{listing}"))?;
    let handle = line.rsplit("# handle ").next().and_then(|h| h.trim().parse().ok());
    handle.with_context(|| format!("no handle on: {line}"))
}

/// Whether skbtrace's trace table is in this (skbtrace's) netns.
fn trace_table_left() -> anyhow::Result<bool> {
    let out = std::process::Command::new("nft").args(["list", "tables"]).output().context("running nft")?;
    ensure!(out.status.success(), "nft list tables: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).contains("skbtrace_nft_trace"))
}

#[test]
fn nft_trace_names_the_rule_that_dropped() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    if !t.kprobes() {
        // This host: refused, with the reason, before anything is attached.
        let out = skbtrace::run(&["--nft-trace", "--explain", "--duration", "1s"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("--nft-trace needs kprobes") && !err.contains("attached"), "{err}");
        // Asking for the tracepoint backend with it is a usage error.
        let out = t.run(&["--nft-trace"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--nft-trace probes __nft_trace_packet, which needs kprobes"), "{err}");
        return Ok(());
    }
    let ns = Netns::new("nft")?;
    ns.sh("nft add table inet fw && \
         nft add chain inet fw input '{ type filter hook input priority 0; policy accept; }' && \
         nft add rule inet fw input udp dport 4002 counter drop && \
         iptables-nft -A INPUT -p udp --dport 4003 -j DROP")?;
    let nft_handle = handle_of(&ns, "inet fw", "udp dport 4002")?;
    let ipt_handle = handle_of(&ns, "ip filter", "udp dport 4003")?;
    let path = ns.path();
    let common = ["--filter-netns", &path, "--filter-func", t.drop_func(), "--nft-trace"];
    let expr = "udp and (dst port 4002 or dst port 4003)";
    let events = t.start(&[&common[..], &["--output-json", expr]].concat())?;
    let explain = t.command().args(common).args(["--explain", "--output-json", expr]).start()?;
    ns.send_udp("127.0.0.1", 4002, "hello")?;
    ns.send_udp("127.0.0.1", 4003, "hello")?;
    let events = t.stop(events)?;
    let explain = explain.stop()?;
    ensure!(explain.status.success(), "--explain exited {}:\n{}", explain.status, explain.stderr);
    ensure!(!trace_table_left()?, "a table inet skbtrace_nft_trace_PID is still there after the runs");

    // Per event: the rule, the hook, the verdict.
    let events = events.events()?;
    let dropped_by = |port: u64| -> anyhow::Result<&Value> {
        let e = events.iter().find(|e| e["tuple"]["dport"] == port && e["nft"]["verdict"] == "drop");
        e.with_context(|| format!("no nft drop event for port {port} in {events:#?}"))
    };
    let e = dropped_by(4002)?;
    assert_eq!(e["func"], "__nft_trace_packet", "{e}");
    let want = serde_json::json!({"family": "inet", "table": "fw", "chain": "input", "hook": "input",
        "type": "rule", "handle": nft_handle, "verdict": "drop", "target": ""});
    assert_eq!(e["nft"], want, "{e}");
    let e = dropped_by(4003)?;
    assert_eq!(
        (&e["nft"]["family"], &e["nft"]["table"], &e["nft"]["chain"]),
        (&"ip".into(), &"filter".into(), &"INPUT".into())
    );
    assert_eq!(e["nft"]["handle"], ipt_handle, "{e}");

    // Explain: the firewall verdict names the handle and the rule's text.
    let verdicts: Vec<Value> = explain.json_lines()?.into_iter().filter_map(|l| l.get("verdict").cloned()).collect();
    for (port, handle, family, table, text) in
        [(4002, nft_handle, "inet", "fw", "udp dport 4002"), (4003, ipt_handle, "ip", "filter", "udp dport 4003")]
    {
        let v = verdicts
            .iter()
            .find(|v| v["evidence"]["tuple"].as_str().is_some_and(|t| t.contains(&format!(":{port}("))))
            .with_context(|| format!("no verdict for port {port}:\n{}", explain.stdout))?;
        assert_eq!(v["rule"], "firewall", "{v}");
        let nft = &v["evidence"]["nft"];
        assert_eq!((nft["family"].as_str(), nft["table"].as_str()), (Some(family), Some(table)), "{v}");
        assert_eq!(nft["handle"], handle, "{v}");
        let rule = nft["rule"].as_str().unwrap_or("");
        assert!(rule.contains(text) && rule.ends_with("drop"), "{v}");
        let sentence = v["sentence"].as_str().unwrap_or("");
        assert!(sentence.contains(&format!("(handle {handle})")) && sentence.contains(rule), "{sentence}");
        assert_eq!(v["confidence"], "full", "{v}");
    }
    Ok(())
}
