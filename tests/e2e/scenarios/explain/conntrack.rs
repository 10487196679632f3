//! Conntrack in the stories: a segment conntrack calls INVALID, the
//! asymmetric NAT reply (design note §3.4) and a NAT round trip. The
//! stories carry conntrack's entry as the packet last had it, read in the
//! kernel from `skb->_nfct`: with kprobes on any event after conntrack ran
//! in a netns; on the tracepoint backend only where a tracepoint fires
//! while the entry is attached (a transmit after NAT, a netfilter drop),
//! not on the UDP no-socket path, which detaches it before the drop.

use std::{
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use testkit::{
    ci::require_root,
    netns::{Netns, veth},
};

use super::{ns_label, port, raw, sentence, target, trace};

/// The JSON stories that crossed `ns` with `nat` there (`snat`, `snat+dnat`, …).
fn natted_in(stories: &[Value], ns: &Netns, nat: &str) -> anyhow::Result<Vec<Value>> {
    let inode = ns.inode()?;
    Ok(stories
        .iter()
        .filter(|s| s["hops"].as_array().is_some_and(|h| h.iter().any(|h| h["netns"] == inode && h["nat"] == nat)))
        .cloned()
        .collect())
}

/// A UDP socket bound to `addr` in `ns`, whose every receive gives up
/// after 10 s. Sockets are bound before the trace starts (attaching can
/// take seconds in a VM) and stay in the netns they were made in.
fn bound(ns: &Netns, addr: (&str, u16)) -> anyhow::Result<UdpSocket> {
    let s = ns.run(|| UdpSocket::bind(addr))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Runs a server's part on a thread of its own, once the traffic starts.
fn serve(
    f: impl FnOnce() -> std::io::Result<usize> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<usize>> {
    std::thread::spawn(f)
}

fn ct(story: &Value) -> &str {
    story["ct"].as_str().unwrap_or_default()
}

/// A FIN|ACK of no connection to a server whose INPUT drops conntrack
/// INVALID: conntrack finds nothing it could belong to.
#[test]
fn explain_conntrack_invalid_names_the_segment_and_the_rule() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("ic")?, Netns::new("is")?);
    let s_if = veth(&client, "10.92.0.1/24", &server, "10.92.0.2/24")?.b;
    server.sh("iptables -A INPUT -m conntrack --ctstate INVALID -j DROP")?;
    let (p, sport) = (port(11), port(12));
    let (src, dst) = (Ipv4Addr::new(10, 92, 0, 1), Ipv4Addr::new(10, 92, 0, 2));
    let filter = format!("tcp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || {
        let segment = raw::tcp_segment((src, sport), (dst, p), raw::FIN | raw::ACK);
        client.run(|| raw::send(libc::IPPROTO_TCP, src, dst, &segment))?;
        Ok(())
    })?;
    run.line_has(
        "conntrack-invalid",
        &[
            &format!("10.92.0.1:{sport}->10.92.0.2:{p}(tcp) [FIN|ACK] arriving on {s_if}"),
            &format!("dropped as conntrack INVALID in {}", ns_label(&server)?),
            "iptables filter INPUT rule `-A INPUT -m conntrack --ctstate INVALID -j DROP`",
        ],
    );
    let v = run.verdict("conntrack-invalid");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NETFILTER_DROP");
    assert_eq!(v["confidence"], "partial");
    // An INVALID packet keeps no entry: conntrack detached it.
    assert!(!ct(&run.story_of(&v)).starts_with("ct="), "{v}");
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
    // Bound before the trace starts, served once the traffic does (a
    // socket stays in the netns it was made in).
    let echo = bound(&server, ("0.0.0.0", p))?;
    // The proxy: unbound, so it answers from the host's address towards the client.
    let (front, back) = (bound(&host, ("0.0.0.0", p))?, bound(&host, ("0.0.0.0", 0))?);
    let filter = format!("udp and port {p}");
    let run = trace(&[&filter], || {
        let echo = serve(move || {
            let mut buf = [0; 1500];
            let (n, from) = echo.recv_from(&mut buf)?;
            echo.send_to(&buf[..n], from)
        });
        let proxy = serve(move || {
            let mut buf = [0; 1500];
            let (n, client) = front.recv_from(&mut buf)?;
            back.send_to(&buf[..n], ("10.85.3.2", p))?;
            let (m, _) = back.recv_from(&mut buf)?;
            front.send_to(&buf[..m], client)
        });
        client.send_udp("10.85.9.7", p, "asymmetric")?;
        proxy.join().expect("proxy thread")?;
        echo.join().expect("server thread")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })?;
    // Shown with --nocapture: the README's sample comes from here.
    eprintln!("{}", run.text.stdout);
    run.line_has(
        "asymmetric-nat-reply",
        &[
            &format!("reply from 10.85.2.1:{p} to 10.85.2.3:"),
            &format!("the request went to 10.85.9.7:{p}"),
            "source-NATed here from 10.85.1.2:",
            &ns_label(&node)?,
            &format!("out {node_out}"),
        ],
    );
    let v = run.verdict("asymmetric-nat-reply");
    assert_eq!(v["evidence"]["netns"], node.inode()?);
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert!(sentence(&v).contains(&format!("10.85.9.7:{p}")), "{v}");
    let facts = v["evidence"]["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["name"] == "snat" && f["inferred"] == false), "{v}");
    // The table, read over ctnetlink after the drop, still has the request's entry.
    let entry = "orig=10.85.1.2:";
    assert!(facts.iter().any(|f| f["value"].as_str().is_some_and(|s| s.starts_with(entry))), "{v}");

    // Conntrack as the stories carry it. The request left node with the
    // entry it made there: new, source-NATed to node's address.
    let stories = run.stories();
    let requests = natted_in(&stories, &node, "snat")?;
    let request = requests.first().unwrap_or_else(|| panic!("no story NATed in node:\n{}", run.json.stdout));
    let request_ct = ct(request);
    for want in ["ct=NEW ", "SRC_NAT", &format!("->10.85.9.7:{p}(udp) reply=10.85.9.7:{p}->10.85.2.3:")] {
        assert!(request_ct.contains(want), "{want:?} missing from {request_ct}");
    }
    assert!(request_ct.contains("orig=10.85.1.2:"), "{request_ct}");
    let reply = run.story_of(&v);
    if target().kprobes() {
        // Conntrack made the reply an entry of its own (ip_rcv_finish,
        // ip_local_deliver and __udp4_lib_rcv's entry see it): new, its
        // original direction the reply itself, not the request's entry.
        let reply_ct = ct(&reply);
        assert!(reply_ct.starts_with("ct=NEW "), "{reply_ct}");
        assert!(reply_ct.contains(&format!("orig=10.85.2.1:{p}->10.85.2.3:")), "{reply_ct}");
    } else {
        // The tracepoints in node fire before conntrack (netif_receive_skb)
        // or after __udp4_lib_rcv detached the entry (icmp_send, kfree_skb).
        assert_eq!(ct(&reply), "unknown: the packet carried no conntrack entry");
    }
    Ok(())
}

/// A client asks a published address of a router, which DNATs it to a
/// server and MASQUERADEs it out; the server echoes. The request leaves the
/// router with a new entry (both NAT bits), and the reply comes back
/// through it as that same entry's reply. Both backends see it: the
/// router's transmit fires after NAT with the entry attached.
#[test]
fn explain_nat_round_trip_carries_the_requests_entry_both_ways() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, router, server) = (Netns::new("nc")?, Netns::new("nr")?, Netns::new("ns")?);
    veth(&client, "10.93.0.1/24", &router, "10.93.0.2/24")?;
    let r_out = veth(&router, "10.93.1.1/24", &server, "10.93.1.2/24")?.a;
    client.ip(&["route", "add", "default", "via", "10.93.0.2"])?;
    router.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    let p = port(13);
    router.sh(&format!(
        "iptables -t nat -A PREROUTING -d 10.93.9.9 -p udp --dport {p} -j DNAT --to-destination 10.93.1.2 && \
         iptables -t nat -A POSTROUTING -o {r_out} -j MASQUERADE"
    ))?;
    // Both sockets stay open until the trace ends, so that the tracepoint
    // backend (which may not see the copy to the process) finds them bound.
    let echo = std::sync::Arc::new(bound(&server, ("10.93.1.2", p))?);
    let asker = bound(&client, ("10.93.0.1", 0))?;
    let filter = format!("udp and port {p}");
    let run = trace(&[&filter], || {
        let echo = echo.clone();
        let served = serve(move || {
            let mut buf = [0; 1500];
            let (n, from) = echo.recv_from(&mut buf)?;
            echo.send_to(&buf[..n], from)
        });
        asker.send_to(b"round trip", ("10.93.9.9", p))?;
        let mut buf = [0; 64];
        let (_, from) = asker.recv_from(&mut buf)?;
        assert_eq!(from.to_string(), format!("10.93.9.9:{p}"), "the reply's source was not un-NATed");
        served.join().expect("server thread")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })?;
    let client_port = asker.local_addr()?.port();

    let stories = run.stories();
    let natted = natted_in(&stories, &router, "snat+dnat")?;
    let orig = format!("orig=10.93.0.1:{client_port}->10.93.9.9:{p}(udp) reply=10.93.1.2:{p}->10.93.1.1:");
    let request =
        natted.iter().find(|s| s["hops"][0]["tuples"][0].as_str().is_some_and(|t| t.starts_with("10.93.0.1:")));
    let request = request.unwrap_or_else(|| panic!("no request story:\n{}", run.json.stdout));
    let request_ct = ct(request);
    assert!(request_ct.starts_with("ct=NEW ["), "{request_ct}");
    for want in ["SRC_NAT", "DST_NAT", &orig] {
        assert!(request_ct.contains(want), "{want:?} missing from {request_ct}");
    }
    let reply = natted.iter().find(|s| s["hops"][0]["tuples"][0].as_str().is_some_and(|t| t.starts_with("10.93.1.2:")));
    let reply = reply.unwrap_or_else(|| panic!("no reply story:\n{}", run.json.stdout));
    let reply_ct = ct(reply);
    // The request's entry, seen from the reply direction.
    assert!(reply_ct.starts_with("ct=ESTABLISHED_REPLY ["), "{reply_ct}");
    for want in ["SEEN_REPLY", "SRC_NAT", "DST_NAT", &orig] {
        assert!(reply_ct.contains(want), "{want:?} missing from {reply_ct}");
    }
    // The text stories say the same.
    assert!(run.text.stdout.contains("  ct: ct=ESTABLISHED_REPLY ["), "{}", run.text.stdout);
    // Each arrived where a socket is bound: delivered (kprobes see the copy
    // to the process) or inferred so (the tracepoint backend may not).
    for (story, ns, to) in [(request, &server, format!("10.93.1.2:{p}")), (reply, &client, "10.93.0.1:".to_owned())] {
        let v = run
            .json_lines()
            .into_iter()
            .filter_map(|l| l.get("verdict").cloned())
            .find(|v| v["story"] == story["id"])
            .unwrap_or_else(|| panic!("no verdict of story {}", story["id"]));
        assert!(matches!(v["rule"].as_str(), Some("delivered" | "socket-consumed")), "{v}");
        assert_eq!(v["evidence"]["netns"], ns.inode()?, "{v}");
        assert!(sentence(&v).contains(&to), "{to:?} missing from {v}");
    }
    drop((asker, echo));
    Ok(())
}
