//! `--explain`: each test builds its own namespaces, makes a packet go
//! wrong in one way, and checks the `verdict:` line of the text output and
//! the `{"verdict": …}` object of the JSON output (two skbtraces watch the
//! same traffic). Addresses, ports and interface names come from the test's
//! own setup and are never assumed.

use std::{net::UdpSocket, path::Path, time::Duration};

use testkit::{
    ci::require_root,
    netns::{Netns, run_in, veth},
    process::Finished,
};

use crate::skbtrace;

/// A port unlikely to meet other tests' traffic (they use 4000 and friends).
fn port(salt: u16) -> u16 {
    20_000 + (std::process::id() % 20_000) as u16 + salt
}

/// Runs `f` on a thread of its own inside `ns`, alongside the test.
fn inside<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let path = ns.path();
    std::thread::spawn(move || run_in(Path::new(&path), f))
}

/// Both outputs of one run of traffic: text stories and JSON lines.
fn trace_both(args: &[&str], traffic: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<(Finished, Finished)> {
    let text = skbtrace::command().arg("--explain").args(args).start()?;
    let json = skbtrace::command().args(["--explain", "--output-json"]).args(args).start()?;
    traffic()?;
    let (text, json) = (text.stop()?, json.stop()?);
    assert!(text.status.success(), "{}", text.stderr);
    assert!(json.status.success(), "{}", json.stderr);
    Ok((text, json))
}

/// The text verdict line of the story whose verdict has `rule`.
fn verdict_line<'a>(done: &'a Finished, rule: &str) -> &'a str {
    let tag = format!("[{rule}, ");
    done.stdout
        .lines()
        .find(|l| l.starts_with("verdict: ") && l.contains(&tag))
        .unwrap_or_else(|| panic!("no `verdict:` line of rule {rule}:\n{}\n{}", done.stdout, done.stderr))
}

fn json_verdict(done: &Finished, rule: &str) -> serde_json::Value {
    let lines = done.json_lines().expect("JSON lines");
    let summary = lines.iter().find_map(|l| l.get("summary")).expect("a summary line");
    assert!(summary["verdicts"].as_array().is_some_and(|v| v.iter().any(|v| v["rule"] == rule)), "{summary}");
    lines
        .into_iter()
        .filter_map(|l| l.get("verdict").cloned())
        .find(|v| v["rule"] == rule)
        .unwrap_or_else(|| panic!("no JSON verdict of rule {rule}:\n{}", done.stdout))
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
    let (text, json) =
        trace_both(&["--filter-netns", &server.path(), &filter], || client.send_udp("10.82.0.2", p, "closed"))?;
    drop(sock);
    let line = verdict_line(&text, "closed-port");
    for want in [
        format!("nothing listens on 10.82.0.2:{p}"),
        format!("127.0.0.1:{p} only"),
        format!("netns {} ({})", server.inode()?, server.name()),
        "ICMP port unreachable".to_owned(),
    ] {
        assert!(line.contains(&want), "{want:?} missing from {line}");
    }
    assert!(text.stdout.contains(&format!("in {s_if}")), "{}", text.stdout);
    assert!(text.stderr.contains("verdict closed-port: 1 stories"), "{}", text.stderr);
    let v = json_verdict(&json, "closed-port");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["netns_name"], server.name());
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert_eq!(v["confidence"], "full");
    assert!(v["sentence"].as_str().unwrap().contains(&format!("10.82.0.2:{p}")), "{v}");
    Ok(())
}

#[test]
fn explain_tcp_to_a_closed_port_is_refused_with_a_reset() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("tc")?, Netns::new("ts")?);
    veth(&client, "10.83.0.1/24", &server, "10.83.0.2/24")?;
    let p = port(2);
    let filter = format!("tcp and port {p}");
    let (text, json) = trace_both(&["--filter-netns", &server.path(), &filter], || {
        // Refused: the connect fails, as it should.
        let refused = client.run(|| std::net::TcpStream::connect(("10.83.0.2", p)).map(|_| ()));
        assert!(refused.is_err(), "nothing listens, yet the connection succeeded");
        Ok(())
    })?;
    let line = verdict_line(&text, "closed-port");
    assert!(line.contains(&format!("TCP SYN to 10.83.0.2:{p}")), "{line}");
    assert!(line.contains("reset"), "{line}");
    let v = json_verdict(&json, "closed-port");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    Ok(())
}

#[test]
fn explain_firewall_drop_names_the_iptables_rule() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("fc")?, Netns::new("fs")?);
    veth(&client, "10.84.0.1/24", &server, "10.84.0.2/24")?;
    let p = port(3);
    server.sh(&format!("iptables -A INPUT -s 10.84.0.1 -p udp --dport {p} -j DROP"))?;
    let filter = format!("udp and port {p}");
    let (text, json) =
        trace_both(&["--filter-netns", &server.path(), &filter], || client.send_udp("10.84.0.2", p, "blocked"))?;
    let line = verdict_line(&text, "firewall");
    for want in ["at INPUT (inferred)", "iptables filter INPUT", &format!("--dport {p} -j DROP"), server.name()] {
        assert!(line.contains(want), "{want:?} missing from {line}");
    }
    let v = json_verdict(&json, "firewall");
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NETFILTER_DROP");
    assert!(v["evidence"]["missing"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("--nft-trace")));
    Ok(())
}

/// The case of the design note (§3.4): a client behind MASQUERADE in netns
/// "node" asks a published address of the host; a userland proxy on the
/// host relays to a server and answers from its unbound socket, so from the
/// host's address on the node link, not the published one. In "node" the
/// reply matches no conntrack entry, the SNAT is not undone, and no socket
/// owns the masqueraded address: NO_SOCKET.
#[test]
fn explain_asymmetric_nat_reply_names_both_addresses() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, node, host, server) = (Netns::new("ac")?, Netns::new("an")?, Netns::new("ah")?, Netns::new("as")?);
    veth(&client, "10.85.1.2/24", &node, "10.85.1.1/24")?;
    let node_out = veth(&node, "10.85.2.3/24", &host, "10.85.2.1/24")?.a;
    veth(&host, "10.85.3.1/24", &server, "10.85.3.2/24")?;
    host.ip(&["addr", "add", "10.85.9.7/32", "dev", "lo"])?;
    client.ip(&["route", "add", "default", "via", "10.85.1.1"])?;
    node.ip(&["route", "add", "default", "via", "10.85.2.1"])?;
    node.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    node.sh(&format!("iptables -t nat -A POSTROUTING -o {node_out} -j MASQUERADE"))?;
    let p = port(4);
    let echo = inside(&server, move || {
        let s = UdpSocket::bind(("0.0.0.0", p))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0; 1500];
        let (n, from) = s.recv_from(&mut buf)?;
        s.send_to(&buf[..n], from)?;
        Ok(())
    });
    let proxy = inside(&host, move || {
        let front = UdpSocket::bind(("0.0.0.0", p))?;
        front.set_read_timeout(Some(Duration::from_secs(10)))?;
        let back = UdpSocket::bind(("0.0.0.0", 0))?;
        back.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0; 1500];
        let (n, client) = front.recv_from(&mut buf)?;
        back.send_to(&buf[..n], ("10.85.3.2", p))?;
        let (m, _) = back.recv_from(&mut buf)?;
        // Unbound: the source is the host's address towards the client.
        front.send_to(&buf[..m], client)?;
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(100));
    let filter = format!("udp and port {p}");
    let (text, json) = trace_both(&[&filter], || {
        client.send_udp("10.85.9.7", p, "asymmetric")?;
        proxy.join().expect("proxy thread")?;
        echo.join().expect("server thread")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })?;
    // Shown with --nocapture: the README's sample comes from here.
    eprintln!("{}", text.stdout);
    let line = verdict_line(&text, "asymmetric-nat-reply");
    for want in [
        format!("reply from 10.85.2.1:{p} to 10.85.2.3:"),
        format!("the request went to 10.85.9.7:{p}"),
        "source-NATed here from 10.85.1.2:".to_owned(),
        format!("netns {} ({})", node.inode()?, node.name()),
        format!("out {node_out}"),
    ] {
        assert!(line.contains(&want), "{want:?} missing from {line}\n{}", text.stdout);
    }
    let v = json_verdict(&json, "asymmetric-nat-reply");
    assert_eq!(v["evidence"]["netns"], node.inode()?);
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert!(v["sentence"].as_str().unwrap().contains(&format!("10.85.9.7:{p}")), "{v}");
    let facts = v["evidence"]["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["name"] == "snat" && f["inferred"] == false), "{v}");
    Ok(())
}

#[test]
fn explain_tuning_flags_need_explain() {
    for args in [&["--explain-idle", "1s"][..], &["--explain", "--explain-max-stories", "0"]] {
        let out = skbtrace::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
