//! Drops on the way through IP routing: the reverse-path filter, no route
//! (forwarding off; forwarding on and no route) and a packet larger than
//! the next hop's MTU. Each test has a client, and a router or server
//! netns that drops; the sysctls the verdicts read are set here, as a new
//! netns takes IPv4's from the initial one (the host's or the VM's).

use std::net::{Ipv4Addr, UdpSocket};

use testkit::{
    ci::require_root,
    netns::{Netns, veth},
};

use super::{ns_label, port, sentence, trace};

/// The value of the evidence fact `name` of a JSON verdict.
fn fact<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    let facts = v["evidence"]["facts"].as_array().unwrap_or_else(|| panic!("no facts in {v}"));
    let f = facts.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no fact {name:?} in {v}"));
    f["value"].as_str().unwrap_or_default()
}

/// A server with two links: the client's, where rp_filter is strict, and
/// another by which the route back to the client's second address leads.
#[test]
fn explain_rp_filter_names_the_interface_the_sysctl_and_the_route_back() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server, other) = (Netns::new("rc")?, Netns::new("rs")?, Netns::new("ro")?);
    let link = veth(&client, "10.86.0.1/24", &server, "10.86.0.2/24")?;
    let back = veth(&server, "10.86.1.1/24", &other, "10.86.1.2/24")?.a;
    // The client sends from an address of its own whose subnet the server
    // reaches by the other link.
    client.ip(&["addr", "add", "10.86.1.5/32", "dev", "lo"])?;
    // ARP asks from the link's own address: asked from 10.86.1.5, the
    // server's ARP would fail the same reverse-path check and never answer.
    client.sh(&format!("sysctl -qw net.ipv4.conf.{}.arp_announce=2", link.a))?;
    server.sh(&format!("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{}.rp_filter=1", link.b))?;
    let p = port(5);
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || {
        client.run(|| UdpSocket::bind(("10.86.1.5", 0))?.send_to(b"spoofed?", ("10.86.0.2", p)))?;
        Ok(())
    })?;
    let s_if = link.b.as_str();
    run.line_has(
        "rp-filter",
        &[
            &format!("dropped by the reverse-path filter in {} on {s_if} (rp_filter=1)", ns_label(&server)?),
            &format!("the route back to 10.86.1.5 leaves via {back}, not {s_if} — asymmetric routing"),
            &format!("set net.ipv4.conf.{s_if}.rp_filter=2 (loose)"),
        ],
    );
    let v = run.verdict("rp-filter");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["ifname"], s_if);
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_IP_RPFILTER");
    assert_eq!(
        v["evidence"]["tuple"].as_str().map(|t| t.contains(&format!("->10.86.0.2:{p}(udp)"))),
        Some(true),
        "{v}"
    );
    assert_eq!(fact(&v, &format!("net.ipv4.conf.{s_if}.rp_filter")), "1");
    assert!(fact(&v, "route back to 10.86.1.5").contains(&format!("dev {back}")), "{v}");
    assert_eq!(v["confidence"], "full");
    Ok(())
}

/// A client, a router and a server in a line; the client's default route
/// is the router.
struct Line {
    client: Netns,
    router: Netns,
    _server: Netns,
    /// The router's link from the client.
    r_in: String,
    /// The router's link to the server.
    r_out: String,
}

fn line(net: u8) -> anyhow::Result<Line> {
    let (client, router, server) = (Netns::new("lc")?, Netns::new("lr")?, Netns::new("ls")?);
    let r_in = veth(&client, &format!("10.{net}.0.1/24"), &router, &format!("10.{net}.0.2/24"))?.b;
    let r_out = veth(&router, &format!("10.{net}.1.1/24"), &server, &format!("10.{net}.1.2/24"))?.a;
    client.ip(&["route", "add", "default", "via", &format!("10.{net}.0.2")])?;
    server.ip(&["route", "add", "default", "via", &format!("10.{net}.1.1")])?;
    Ok(Line { client, router, _server: server, r_in, r_out })
}

#[test]
fn explain_no_route_with_forwarding_off_names_the_sysctl() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let l = line(87)?;
    l.router.sh("sysctl -qw net.ipv4.ip_forward=0")?;
    let p = port(6);
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &l.router.path(), &filter], || l.client.send_udp("10.87.1.2", p, "fwd"))?;
    run.line_has(
        "no-route",
        &[
            "10.87.0.1:",
            &format!("->10.87.1.2:{p}(udp) arriving on {} dropped in {}", l.r_in, ns_label(&l.router)?),
            "(IP_INADDRERRORS): forwarding is off there (net.ipv4.ip_forward=0)",
        ],
    );
    let v = run.verdict("no-route");
    assert_eq!(v["evidence"]["netns"], l.router.inode()?);
    assert_eq!(v["evidence"]["ifname"], l.r_in.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_IP_INADDRERRORS");
    assert_eq!(fact(&v, "net.ipv4.ip_forward"), "0");
    // The route exists: forwarding is what is missing.
    assert!(fact(&v, "ip route get").contains(&format!("dev {}", l.r_out)), "{v}");
    Ok(())
}

#[test]
fn explain_no_route_with_forwarding_on_names_the_destination_and_the_icmp() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let l = line(88)?;
    l.router.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    let p = port(7);
    let filter = format!("udp and port {p}");
    // Beyond the router, which has no default route.
    let run = trace(&["--filter-netns", &l.router.path(), &filter], || l.client.send_udp("10.88.9.9", p, "nowhere"))?;
    run.line_has(
        "no-route",
        &[
            &format!("->10.88.9.9:{p}(udp) arriving on {} dropped in {}", l.r_in, ns_label(&l.router)?),
            "(IP_INNOROUTES): no route to 10.88.9.9",
            "ICMP unreachable sent back",
        ],
    );
    let v = run.verdict("no-route");
    assert_eq!(v["evidence"]["ifname"], l.r_in.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_IP_INNOROUTES");
    assert_eq!(fact(&v, "net.ipv4.ip_forward"), "1");
    assert!(sentence(&v).contains("10.88.0.1:"), "{v}");
    Ok(())
}

/// A datagram the client may not fragment (DF), forwarded by the router
/// towards a link of MTU 1280: dropped with PKT_TOO_BIG in ip_forward, and
/// the router tells the client the MTU (ICMP fragmentation needed).
#[test]
fn explain_mtu_names_the_length_the_next_hop_and_its_mtu() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let l = line(89)?;
    l.router.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    l.router.ip(&["link", "set", &l.r_out, "mtu", "1280"])?;
    let p = port(8);
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &l.router.path(), &filter], || {
        l.client.run(|| {
            let s = UdpSocket::bind(("0.0.0.0", 0))?;
            dont_fragment(&s)?;
            s.send_to(&[0x5a; 1400], (Ipv4Addr::new(10, 89, 1, 2), p))
        })?;
        Ok(())
    })?;
    // 1400 bytes of payload, 8 of UDP header, 20 of IP header.
    run.line_has(
        "mtu",
        &[
            &format!("1428-byte packet dropped in {} at ip_forward", ns_label(&l.router)?),
            &format!("larger than the MTU 1280 of {}, its way to 10.89.1.2", l.r_out),
            "(DF); ICMP fragmentation-needed sent back to 10.89.0.1",
        ],
    );
    let v = run.verdict("mtu");
    assert_eq!(v["evidence"]["netns"], l.router.inode()?);
    assert_eq!(v["evidence"]["ifname"], l.r_in.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_PKT_TOO_BIG");
    assert!(v["evidence"]["location"].as_str().is_some_and(|l| l.starts_with("ip_forward+")), "{v}");
    assert_eq!(fact(&v, "length"), "1428");
    Ok(())
}

/// IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF on every datagram, never fragment.
fn dont_fragment(s: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = libc::IP_PMTUDISC_DO;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` is a c_int of `len` bytes, the fd a live socket.
    let r = unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, (&raw const on).cast(), len)
    };
    if r != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}
