//! Where packets end at a host: a socket whose receive buffer is full, and
//! a packet the kernel consumes itself (an ICMP echo request it answers),
//! which no rule can call a drop or a delivery: a silent end.

use std::{
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd as _,
};

use testkit::{
    ci::require_root,
    netns::{Netns, veth},
};

use super::{ns_label, port, raw, sentence, target, trace};

/// SO_RCVBUF as small as the kernel allows (it doubles and floors the value).
fn tiny_receive_buffer(s: &UdpSocket) -> std::io::Result<()> {
    let size: libc::c_int = 1;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` is a c_int of `len` bytes, the fd a live socket.
    let r =
        unsafe { libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw const size).cast(), len) };
    if r != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// A socket that never reads, with the smallest buffer: after the first
/// datagram or two, the rest are dropped with SOCKET_RCVBUFF. The verdict
/// names the socket and the process holding it (this test).
#[test]
fn explain_full_receive_buffer_names_the_socket_and_its_process() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("bc")?, Netns::new("bs")?);
    let s_if = veth(&client, "10.90.0.1/24", &server, "10.90.0.2/24")?.b;
    let p = port(9);
    // Held until the stories have ended: the verdict looks the socket up.
    let sock = server.run(|| {
        let s = UdpSocket::bind(("10.90.0.2", p))?;
        tiny_receive_buffer(&s)?;
        Ok(s)
    })?;
    let filter = format!("udp and port {p}");
    let run = trace(&["--filter-netns", &server.path(), &filter], || {
        client.run(|| {
            let s = UdpSocket::bind(("0.0.0.0", 0))?;
            for _ in 0..8 {
                s.send_to(&[0x42; 1000], ("10.90.0.2", p))?;
            }
            Ok(())
        })
    })?;
    drop(sock);
    let me = std::process::id();
    run.line_has(
        "socket-rcvbuf",
        &[
            &format!(":{me}'s socket 10.90.0.2:{p} in {}", ns_label(&server)?),
            "its receive buffer is full",
            "drops so far",
            "net.core.rmem_max=",
        ],
    );
    let v = run.verdict("socket-rcvbuf");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "SKB_DROP_REASON_SOCKET_RCVBUFF");
    assert_eq!(v["confidence"], "full");
    assert!(sentence(&v).contains(&format!(":{me}'s socket")), "{v}");
    Ok(())
}

/// An ICMP echo request: the kernel answers with a new skb and frees the
/// request without a drop reason, and no socket ever sees it.
#[test]
fn explain_an_echo_request_the_kernel_answers_is_a_silent_end() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let (client, server) = (Netns::new("pc")?, Netns::new("ps")?);
    let s_if = veth(&client, "10.91.0.1/24", &server, "10.91.0.2/24")?.b;
    let (src, dst) = (Ipv4Addr::new(10, 91, 0, 1), Ipv4Addr::new(10, 91, 0, 2));
    let run = trace(&["--filter-netns", &server.path(), "icmp[icmptype] == icmp-echo"], || {
        client.run(|| raw::send(libc::IPPROTO_ICMP, src, dst, &raw::icmp_echo(port(10))))?;
        Ok(())
    })?;
    let t = target();
    // The function that freed it: the tracepoint's, or with kprobes the
    // one that frees every skb's memory, after icmp_rcv.
    let (freed_by, after) =
        if t.kprobes() { ("kfree_skbmem", "icmp_rcv") } else { ("consume_skb", "netif_receive_skb") };
    run.line_has(
        "silent-end",
        &[
            &format!("freed without a drop reason by {freed_by} in {} on {s_if} after {after}", ns_label(&server)?),
            "never delivered to a socket nor sent out",
        ],
    );
    let v = run.verdict("silent-end");
    assert_eq!(v["evidence"]["netns"], server.inode()?);
    assert_eq!(v["evidence"]["ifname"], s_if.as_str());
    assert_eq!(v["evidence"]["drop_reason"], "");
    assert_eq!(v["evidence"]["tuple"], "10.91.0.1->10.91.0.2(icmp)");
    assert_eq!(v["confidence"], "guess");
    // Only the tracepoint backend misses the functions in between.
    let missing = v["evidence"]["missing"].as_array().map_or(0, |m| m.len());
    assert_eq!(missing, if t.kprobes() { 0 } else { 1 }, "{v}");
    assert_eq!(run.story_of(&v)["end"], "freed");
    Ok(())
}
