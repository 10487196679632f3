//! `--explain` end to end, on this host (tracepoints) and in the VMs
//! (kprobes): each test builds its own namespaces and addresses, makes a
//! packet go wrong in one way, and checks the `verdict:` line of the text
//! output and the `{"verdict": …}` object of the JSON output (two skbtraces
//! watch the same traffic): the rule, and the addresses, ports, interfaces,
//! netns and chain the sentence names. Addresses, ports and interface names
//! come from the test's own setup and are never assumed.
//!
//! - here: closed ports (UDP, TCP), a firewall rule, the tuning flags;
//! - [`routing`]: reverse-path filter, no route (forwarding off, no route
//!   with forwarding on), a packet too big for the next hop;
//! - [`sockets`]: a full receive buffer, a silent end (an ICMP echo the
//!   kernel answers);
//! - [`conntrack`]: conntrack INVALID, the asymmetric NAT reply and a NAT
//!   round trip, with conntrack's state as the stories carry it.
//!
//! `conntrack-full` has no test: it needs `net.netfilter.nf_conntrack_max`,
//! which only the initial netns may write, and the tests change nothing
//! outside their own namespaces.

mod conntrack;
mod raw;
mod routing;
mod sockets;

use std::net::UdpSocket;

use serde_json::Value;
use testkit::{
    ci::require_root,
    netns::{Netns, veth},
    process::Finished,
};

use super::target;
use crate::skbtrace;

/// A port unlikely to meet other tests' traffic (they use 4000 and friends);
/// each test adds a salt of its own.
fn port(salt: u16) -> u16 {
    20_000 + (std::process::id() % 20_000) as u16 + salt
}

/// With kprobes, the functions the stories and rules read: drops and frees,
/// receive and transmit, routing, netfilter, the protocols' receive and
/// answers, and delivery to a process. Attaching every skb function one by
/// one takes 40 s each way on 6.1 (BENCHMARKS.md); these take about one.
/// Tracepoints: all of them (about 30).
fn funcs() -> Vec<String> {
    let t = target();
    if !t.kprobes() {
        return Vec::new();
    }
    let names = [
        t.drop_func(),
        "kfree_skbmem|consume_skb",
        "ip_rcv|ip_rcv_finish|ip_forward|ip_local_deliver|ip_output|ip_error",
        "nf_hook_slow",
        "__udp4_lib_rcv|tcp_v4_rcv|icmp_rcv",
        "__icmp_send|tcp_v4_send_reset",
        // Delivery: UDP copies a linear skb without skb_copy_datagram_iter.
        "skb_copy_datagram_iter|skb_consume_udp",
        "__dev_queue_xmit",
    ];
    vec!["--filter-func".to_owned(), names.join("|")]
}

/// One run of traffic seen by two skbtraces: text stories and JSON lines.
struct Traced {
    text: Finished,
    json: Finished,
}

/// Starts both skbtraces with `--explain` and `args`, runs the traffic,
/// stops them and checks that they ended well on the expected backend.
fn trace(args: &[&str], traffic: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Traced> {
    let t = target();
    let text = t.command().arg("--explain").args(funcs()).args(args).start()?;
    let json = t.command().args(["--explain", "--output-json"]).args(funcs()).args(args).start()?;
    traffic()?;
    let (text, json) = (text.stop()?, json.stop()?);
    t.check_exit(&text)?;
    t.check_exit(&json)?;
    Ok(Traced { text, json })
}

impl Traced {
    /// The text verdict line of the first story whose verdict has `rule`.
    fn line(&self, rule: &str) -> &str {
        let tag = format!("[{rule}, ");
        let done = &self.text;
        done.stdout
            .lines()
            .find(|l| l.starts_with("verdict: ") && l.contains(&tag))
            .unwrap_or_else(|| panic!("no `verdict:` line of rule {rule}:\n{}\n{}", done.stdout, done.stderr))
    }

    /// Asserts that the text verdict line of `rule` contains each of `want`.
    fn line_has(&self, rule: &str, want: &[&str]) {
        let line = self.line(rule);
        for w in want {
            assert!(line.contains(w), "{w:?} missing from {line}\n{}", self.text.stdout);
        }
    }

    fn json_lines(&self) -> Vec<Value> {
        self.json.json_lines().expect("JSON lines")
    }

    /// The first JSON verdict of `rule`; the summary must count it.
    fn verdict(&self, rule: &str) -> Value {
        let lines = self.json_lines();
        let summary = lines.iter().find_map(|l| l.get("summary")).expect("a summary line");
        assert!(summary["verdicts"].as_array().is_some_and(|v| v.iter().any(|v| v["rule"] == rule)), "{summary}");
        lines
            .into_iter()
            .filter_map(|l| l.get("verdict").cloned())
            .find(|v| v["rule"] == rule)
            .unwrap_or_else(|| panic!("no JSON verdict of rule {rule}:\n{}", self.json.stdout))
    }

    /// The JSON story a verdict is about.
    fn story_of(&self, verdict: &Value) -> Value {
        self.stories()
            .into_iter()
            .find(|s| s["id"] == verdict["story"])
            .unwrap_or_else(|| panic!("no story {} in:\n{}", verdict["story"], self.json.stdout))
    }

    /// Every JSON story.
    fn stories(&self) -> Vec<Value> {
        self.json_lines().into_iter().filter_map(|l| l.get("story").cloned()).collect()
    }
}

/// The sentence of a JSON verdict.
fn sentence(v: &Value) -> &str {
    v["sentence"].as_str().unwrap_or_else(|| panic!("no sentence in {v}"))
}

/// `netns 4026532385 (skbt319722ah)`, as the sentences name a netns.
fn ns_label(ns: &Netns) -> anyhow::Result<String> {
    Ok(format!("netns {} ({})", ns.inode()?, ns.name()))
}

#[test]
fn explain_closed_udp_port_names_the_listener_on_another_address() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("ec")?, Netns::new("es")?);
    let s_if = veth(&client, "10.82.0.1/24", &server, "10.82.0.2/24")?.b;
    let p = port(1);
    // Listens on loopback only: the datagram to the veth address finds no socket.
    let sock = server.run(|| UdpSocket::bind(("127.0.0.1", p)))?;
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || client.send_udp("10.82.0.2", p, "closed"))?;
    drop(sock);
    run.line_has(
        "closed-port",
        &[
            &format!("nothing listens on 10.82.0.2:{p}"),
            &format!("127.0.0.1:{p} only"),
            &ns_label(&server)?,
            "ICMP port unreachable",
        ],
    );
    assert!(run.text.stdout.contains(&format!("in {s_if}")), "{}", run.text.stdout);
    assert!(run.text.stderr.contains("verdict closed-port: 1 stories"), "{}", run.text.stderr);
    let v = run.verdict("closed-port");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["netns_name"], server.name());
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert_eq!(v["confidence"], "full");
    assert!(sentence(&v).contains(&format!("10.82.0.2:{p}")), "{v}");
    Ok(())
}

#[test]
fn explain_tcp_to_a_closed_port_is_refused_with_a_reset() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("tc")?, Netns::new("ts")?);
    let s_if = veth(&client, "10.83.0.1/24", &server, "10.83.0.2/24")?.b;
    let p = port(2);
    let filter = format!("tcp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || {
        // Refused: the connect fails, as it should.
        let refused = client.run(|| std::net::TcpStream::connect(("10.83.0.2", p)).map(|_| ()));
        assert!(refused.is_err(), "nothing listens, yet the connection succeeded");
        Ok(())
    })?;
    run.line_has(
        "closed-port",
        &[&format!("TCP SYN to 10.83.0.2:{p} from 10.83.0.1:"), &ns_label(&server)?, "answered with a TCP reset"],
    );
    let v = run.verdict("closed-port");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert!(sentence(&v).contains(&format!("nothing listens on 10.83.0.2:{p}")), "{v}");
    Ok(())
}

#[test]
fn explain_firewall_drop_names_the_iptables_rule() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("fc")?, Netns::new("fs")?);
    let s_if = veth(&client, "10.84.0.1/24", &server, "10.84.0.2/24")?.b;
    let p = port(3);
    server.sh(&format!("iptables -A INPUT -s 10.84.0.1 -p udp --dport {p} -j DROP"))?;
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || client.send_udp("10.84.0.2", p, "blocked"))?;
    run.line_has(
        "firewall",
        &["at INPUT (inferred)", "iptables filter INPUT", &format!("--dport {p} -j DROP"), &ns_label(&server)?],
    );
    let v = run.verdict("firewall");
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NETFILTER_DROP");
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert!(sentence(&v).contains("10.84.0.1:") && sentence(&v).contains(&format!("10.84.0.2:{p}")), "{v}");
    // Legacy iptables (the VMs) drops in nf_hook_slow, iptables-nft (this
    // host) inside nft_do_chain: the sentence names which.
    let location = v["evidence"]["location"].as_str().unwrap_or("");
    let engine = if location.starts_with("nft_do_chain") { "an nftables" } else { "a netfilter hook" };
    assert!(sentence(&v).starts_with(&format!("dropped by {engine}")), "{v}");
    assert!(v["evidence"]["missing"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("--nft-trace")));
    Ok(())
}

#[test]
fn explain_tuning_flags_need_explain() {
    for args in [&["--explain-idle", "1s"][..], &["--explain", "--explain-max-stories", "0"]] {
        let out = skbtrace::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
