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

/// The overlays `--output-tunnel` decodes, as `ip link add … type KIND` makes them.
#[derive(Clone, Copy)]
enum Overlay {
    Vxlan,
    Geneve,
}

impl Overlay {
    /// The kind in `--output-tunnel`'s JSON, and in `ip link add`.
    fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
        }
    }

    /// The outer UDP destination port (IANA's for each).
    fn port(self) -> u16 {
        match self {
            Self::Vxlan => 4789,
            Self::Geneve => 6081,
        }
    }

    /// `ip link add` arguments for the overlay device `dev` to `remote` over `underlay`.
    fn link_add(self, dev: &str, vni: &str, remote: &str, underlay: &str) -> Vec<String> {
        let mut args = vec!["link", "add", dev, "type", self.name(), "id", vni, "remote", remote];
        let port = self.port().to_string();
        if let Self::Vxlan = self {
            // VXLAN needs its port and underlay device; Geneve routes to `remote` on 6081.
            args.extend(["dstport", &port, "dev", underlay]);
        }
        args.into_iter().map(str::to_owned).collect()
    }
}

/// An overlay between two namespaces (`subnet`: the second octet of its
/// addresses): the packets leaving the first one's underlay device carry the
/// overlay's datagram, which `--output-tunnel` shows; packets that are not in
/// a tunnel have an empty one. `--filter-tunnel-pcap-l3` and `-l2` match the
/// inner packet: the datagram's port selects it, another port selects nothing.
fn overlay_scenario(overlay: Overlay, vni: u32, subnet: u8) -> anyhow::Result<()> {
    let kind = overlay.name();
    let (a, b) = (Netns::new(&kind[..3])?, Netns::new(&kind[..3])?);
    let (a_under, b_under) = (format!("10.{subnet}.0.1"), format!("10.{subnet}.0.2"));
    let (a_inner, b_inner) = (format!("10.{}.0.1", subnet + 1), format!("10.{}.0.2", subnet + 1));
    let underlay = veth(&a, &format!("{a_under}/24"), &b, &format!("{b_under}/24"))?;
    let id = vni.to_string();
    for (ns, dev, remote, addr) in [(&a, &underlay.a, &b_under, &a_inner), (&b, &underlay.b, &a_under, &b_inner)] {
        let add = overlay.link_add("ovl0", &id, remote, dev);
        ns.ip(&add.iter().map(String::as_str).collect::<Vec<_>>())?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ovl0"])?;
        ns.ip(&["link", "set", "ovl0", "up"])?;
    }
    let (server, port) = bound_udp(&b, &b_inner, 0)?;
    let selects = format!("udp and dst port {port}");
    let json = start(&a, &["--output-tunnel", "--output-json"])?;
    let text_run = start(&a, &["--output-tunnel"])?;
    let l3 = start(&a, &["--output-tunnel", "--output-json", "--filter-tunnel-pcap-l3", &selects])?;
    let l2 = start(&a, &["--output-json", "--filter-tunnel-pcap-l2", &selects])?;
    let none = start(&a, &["--output-json", "--filter-tunnel-pcap-l3", "udp and dst port 9"])?;
    let client = a.run(|| UdpSocket::bind((a_inner.as_str(), 0)))?;
    let sport = client.local_addr()?.port();
    client.send_to(b"inner", (b_inner.as_str(), port))?;
    received(&server)?;
    a.send_udp("127.0.0.1", 4023, "not a tunnel")?;
    let (json, text_run) = (stopped(json)?, stopped(text_run)?);
    let (l3, l2, none) = (stopped(l3)?, stopped(l2)?, stopped(none)?);

    let events = json.events()?;
    let inner =
        events.iter().find(|e| e["tunnel"]["kind"] == kind && e["tunnel"]["dport"] == port).with_context(|| {
            format!("no {kind} event carrying the datagram to {port} (--output-tunnel):\n{}", json.stdout)
        })?;
    let tunnel = &inner["tunnel"];
    assert_eq!(tunnel["vni"], vni, "{inner}");
    assert_eq!((&tunnel["saddr"], &tunnel["daddr"]), (&a_inner.as_str().into(), &b_inner.as_str().into()), "{inner}");
    assert_eq!((&tunnel["sport"], &tunnel["proto"]), (&sport.into(), &"udp".into()), "{inner}");
    assert_eq!(inner["tuple"]["dport"], overlay.port(), "the outer tuple is the {kind} datagram: {inner}");
    assert_eq!(inner["ifname"], underlay.a.as_str(), "{inner}");
    let plain = to_port(&events, 4023);
    ensure!(!plain.is_empty(), "no event for the datagram on lo:\n{}", json.stdout);
    for e in plain {
        assert_eq!((&e["tunnel"]["kind"], &e["tunnel"]["vni"]), (&"".into(), &0.into()), "{e}");
    }

    let (header, lines) = text(&text_run);
    assert_eq!(header.last(), Some(&"TUNNEL"), "{}", text_run.stdout);
    let inner_tuple = format!(" {a_inner}:{sport}->{b_inner}:{port}(udp)");
    let outer_port = format!(":{}(udp)", overlay.port());
    ensure!(
        lines.iter().any(|l| l.trim_end().ends_with(&inner_tuple) && l.contains(&outer_port)),
        "no line ending with the inner tuple{inner_tuple}:\n{}",
        text_run.stdout
    );

    // The inner filters keep exactly the tunnelled datagram's events.
    for (flag, run) in [("--filter-tunnel-pcap-l3", &l3), ("--filter-tunnel-pcap-l2", &l2)] {
        let events = run.events()?;
        ensure!(!events.is_empty(), "{flag} {selects:?} kept no event:\n{}", run.stdout);
        for e in &events {
            assert_eq!(e["tuple"]["dport"], overlay.port(), "{flag} {selects:?} kept another packet: {e}");
        }
    }
    ensure!(l3.events()?.iter().all(|e| e["tunnel"]["dport"] == port), "{}", l3.stdout);
    ensure!(none.events()?.is_empty(), "an inner filter matching nothing kept events:\n{}", none.stdout);
    Ok(())
}

#[test]
fn output_tunnel_shows_and_filters_the_vxlan_inner_tuple() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    overlay_scenario(Overlay::Vxlan, 5123, 95)
}

/// This host's kernel has no Geneve (CONFIG_GENEVE unset: `ip link add …
/// type geneve` answers "Unknown device type"); Debian's kernels have it as
/// a module, which the VMs load, and there it must work.
#[test]
fn output_tunnel_shows_and_filters_the_geneve_inner_tuple() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    if !target().kprobes() && !kernel_has_geneve()? {
        eprintln!("this kernel has no Geneve: the Geneve scenario runs in the VMs (cargo test -p skbtrace-tests vm::)");
        return Ok(());
    }
    overlay_scenario(Overlay::Geneve, 6123, 97)
}

/// Whether `ip link add … type geneve` works here, tried in a namespace of its own.
fn kernel_has_geneve() -> anyhow::Result<bool> {
    let ns = Netns::new("gnv")?;
    match ns.ip(&["link", "add", "probe0", "type", "geneve", "id", "1", "remote", "10.0.0.1"]) {
        Ok(()) => Ok(true),
        Err(e) if format!("{e:#}").contains("Unknown device type") => Ok(false),
        Err(e) => Err(e),
    }
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
