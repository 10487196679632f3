//! What the `--output-*` flags add and remove, as pwru prints it, and
//! `--output-limit-lines`.

use std::{
    io,
    net::{SocketAddr, TcpStream, UdpSocket},
};

use anyhow::{Context as _, ensure};
use testkit::{
    ci::require_root,
    netns::{Netns, veth},
    summary::End,
};

use super::{bound_udp, received, start, stopped, text, to_port};
use crate::scenarios::{dports, target};

/// A TCP connect to a port nobody listens on, from inside `ns`: a SYN, and a reset back.
fn connect_refused(ns: &Netns, port: u16) -> anyhow::Result<()> {
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    ns.run(move || match TcpStream::connect(to) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(io::Error::other(format!("something listens on {to}"))),
    })
}

#[test]
fn output_tcp_flags_names_the_flags_in_the_tuple() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("tcf")?;
    let with = start(&ns, &["--output-tcp-flags"])?;
    let without = start(&ns, &[])?;
    connect_refused(&ns, 4020)?;
    let (with, without) = (stopped(with)?, stopped(without)?);

    let (_, lines) = text(&with);
    let syn = lines.iter().any(|l| l.contains("->127.0.0.1:4020(tcp:SYN) "));
    let rst = lines.iter().any(|l| l.contains(" 127.0.0.1:4020->127.0.0.1:") && l.contains("(tcp:RST|ACK) "));
    ensure!(syn && rst, "the SYN (tcp:SYN) or the reset (tcp:RST|ACK) is missing:\n{}", with.stdout);

    let (_, lines) = text(&without);
    let syn = lines.iter().any(|l| l.contains("->127.0.0.1:4020(tcp) "));
    let rst = lines.iter().any(|l| l.contains(" 127.0.0.1:4020->127.0.0.1:") && l.contains("(tcp) "));
    ensure!(syn && rst, "without --output-tcp-flags, the tuples should end in (tcp):\n{}", without.stdout);
    ensure!(!without.stdout.contains("(tcp:"), "TCP flags without --output-tcp-flags:\n{}", without.stdout);
    Ok(())
}

/// `--output-meta=false` and `--output-tuple=false` (pflag's spelling, the
/// only way to turn them off) take the columns out of the header and lines.
#[test]
fn output_meta_and_tuple_false_remove_their_columns() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("mtf")?;
    let no_meta = start(&ns, &["--output-meta=false"])?;
    let no_tuple = start(&ns, &["--output-tuple=false"])?;
    let neither = start(&ns, &["--output-meta=false", "--output-tuple=false"])?;
    ns.send_udp("127.0.0.1", 4021, "columns")?;
    let (no_meta, no_tuple, neither) = (stopped(no_meta)?, stopped(no_tuple)?, stopped(neither)?);
    let inode = ns.inode()?.to_string();
    let tuple = "127.0.0.1:4021(udp)";

    let (header, lines) = text(&no_meta);
    assert_eq!(header, ["SKB", "CPU", "PROCESS", "TUPLE", "FUNC"], "--output-meta=false:\n{}", no_meta.stdout);
    ensure!(lines.iter().any(|l| l.contains(tuple)), "no line for the datagram:\n{}", no_meta.stdout);
    for line in &lines {
        let columns: Vec<&str> = line.split_whitespace().collect();
        ensure!(!columns.contains(&inode.as_str()), "NETNS is still there: {line}");
        if line.contains(tuple) {
            ensure!(columns[3].ends_with(tuple), "TUPLE is not 4th: {line}");
        }
    }

    let (header, lines) = text(&no_tuple);
    let meta = ["SKB", "CPU", "PROCESS", "NETNS", "MARK/x", "IFACE", "PROTO", "MTU", "LEN", "FUNC"];
    assert_eq!(header, meta, "--output-tuple=false:\n{}", no_tuple.stdout);
    ensure!(!lines.is_empty(), "no lines:\n{}", no_tuple.stdout);
    for line in &lines {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[3], inode, "NETNS is not 4th: {line}");
        ensure!(!line.contains("->") && !line.contains("(udp)"), "a tuple is still there: {line}");
    }

    let (header, lines) = text(&neither);
    assert_eq!(header, ["SKB", "CPU", "PROCESS", "FUNC"], "both =false:\n{}", neither.stdout);
    ensure!(!lines.is_empty(), "no lines:\n{}", neither.stdout);
    for line in &lines {
        ensure!(!line.contains(&inode) && !line.contains("->"), "meta or tuple is still there: {line}");
    }
    Ok(())
}

#[test]
fn output_netns_names_gives_the_ip_netns_name() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("nnm")?;
    let json = start(&ns, &["--output-netns-names", "--output-json"])?;
    let text_run = start(&ns, &["--output-netns-names", "--netns-names-max-length", "40"])?;
    ns.send_udp("127.0.0.1", 4022, "names")?;
    let (json, text_run) = (stopped(json)?, stopped(text_run)?);

    let events = json.events()?;
    ensure!(!to_port(&events, 4022).is_empty(), "no event for the datagram:\n{}", json.stdout);
    for e in &events {
        assert_eq!(e["netns_name"], ns.name(), "{e}");
    }

    let (header, lines) = text(&text_run);
    let at = header.iter().position(|c| *c == "NETNS_NAME").context("no NETNS_NAME column")?;
    assert_eq!((header[at - 1], header[at + 1]), ("LEN", "TUPLE"), "{}", text_run.stdout);
    ensure!(!lines.is_empty(), "no lines:\n{}", text_run.stdout);
    for line in lines {
        assert_eq!(line.split_whitespace().nth(at), Some(ns.name()), "{line}");
    }
    Ok(())
}

/// A VXLAN overlay between two namespaces: the packets leaving the first
/// one's underlay device carry the overlay's datagram, which `--output-tunnel`
/// shows; packets that are not VXLAN have an empty tunnel.
#[test]
fn output_tunnel_shows_the_vxlan_inner_tuple() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    const VNI: u32 = 5123;
    let (a, b) = (Netns::new("vxa")?, Netns::new("vxb")?);
    let underlay = veth(&a, "10.95.0.1/24", &b, "10.95.0.2/24")?;
    let id = VNI.to_string();
    for (ns, dev, remote, addr) in
        [(&a, &underlay.a, "10.95.0.2", "10.96.0.1/24"), (&b, &underlay.b, "10.95.0.1", "10.96.0.2/24")]
    {
        ns.ip(&["link", "add", "vx0", "type", "vxlan", "id", &id, "remote", remote, "dstport", "4789", "dev", dev])?;
        ns.ip(&["addr", "add", addr, "dev", "vx0"])?;
        ns.ip(&["link", "set", "vx0", "up"])?;
    }
    let (server, port) = bound_udp(&b, "10.96.0.2", 0)?;
    let json = start(&a, &["--output-tunnel", "--output-json"])?;
    let text_run = start(&a, &["--output-tunnel"])?;
    let client = a.run(|| UdpSocket::bind("10.96.0.1:0"))?;
    let sport = client.local_addr()?.port();
    client.send_to(b"inner", ("10.96.0.2", port))?;
    received(&server)?;
    a.send_udp("127.0.0.1", 4023, "not a tunnel")?;
    let (json, text_run) = (stopped(json)?, stopped(text_run)?);

    let events = json.events()?;
    let vxlan: Vec<_> = events.iter().filter(|e| e["tunnel"]["kind"] == "vxlan").collect();
    let inner = vxlan.iter().find(|e| e["tunnel"]["dport"] == port).with_context(|| {
        format!("no VXLAN event carrying the datagram to {port} (--output-tunnel):\n{}", json.stdout)
    })?;
    let tunnel = &inner["tunnel"];
    assert_eq!(tunnel["vni"], VNI, "{inner}");
    assert_eq!((&tunnel["saddr"], &tunnel["daddr"]), (&"10.96.0.1".into(), &"10.96.0.2".into()), "{inner}");
    assert_eq!((&tunnel["sport"], &tunnel["proto"]), (&sport.into(), &"udp".into()), "{inner}");
    assert_eq!(inner["tuple"]["dport"], 4789, "the outer tuple is the VXLAN datagram: {inner}");
    assert_eq!(inner["ifname"], underlay.a.as_str(), "{inner}");
    let plain = to_port(&events, 4023);
    ensure!(!plain.is_empty(), "no event for the datagram on lo:\n{}", json.stdout);
    for e in plain {
        assert_eq!((&e["tunnel"]["kind"], &e["tunnel"]["vni"]), (&"".into(), &0.into()), "{e}");
    }

    let (header, lines) = text(&text_run);
    assert_eq!(header.last(), Some(&"TUNNEL"), "{}", text_run.stdout);
    let inner_tuple = format!(" 10.96.0.1:{sport}->10.96.0.2:{port}(udp)");
    ensure!(
        lines.iter().any(|l| l.trim_end().ends_with(&inner_tuple) && l.contains(":4789(udp)")),
        "no line ending with the inner tuple{inner_tuple}:\n{}",
        text_run.stdout
    );
    Ok(())
}

/// `0` is no limit, as in pwru: the run goes on until SIGINT. `2` ends
/// skbtrace by itself after two events.
#[test]
fn output_limit_lines_0_is_no_limit_and_2_stops_after_2() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("lm0")?;
    let mut unlimited = start(&ns, &["--output-limit-lines", "0", "--output-json"])?;
    let two = start(&ns, &["--output-limit-lines", "2", "--output-json"])?;
    for port in 4024..4028 {
        ns.send_udp("127.0.0.1", port, "x")?;
    }
    let two = two.wait()?;
    t.check(&two)?;
    assert_eq!((two.events()?.len(), two.summary()?.events, two.summary()?.end), (2, 2, End::Limit));
    assert!(unlimited.try_wait()?.is_none(), "--output-limit-lines 0 ended skbtrace");
    let unlimited = stopped(unlimited)?;
    let events = unlimited.events()?;
    ensure!(events.len() > 2, "--output-limit-lines 0 printed {} events:\n{}", events.len(), unlimited.stdout);
    let seen = dports(&events);
    for port in 4024..4028 {
        ensure!(seen.contains(&port), "no event for the datagram to {port}:\n{}", unlimited.stdout);
    }
    assert_eq!(unlimited.summary()?.end, End::Signal);
    Ok(())
}
