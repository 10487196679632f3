//! tcpdump expressions on whole packets, and pcap-ng that tshark reads.

use std::process::Command;

use testkit::{ci::require_root, netns::Netns};

use crate::skbtrace;

#[test]
fn length_tests_see_the_whole_packet_not_the_copied_bytes() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("gtr")?;
    // The kernel copies at most 256 bytes; tcpdump's `greater` counts every byte of the packet.
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--output-json", "udp port 4000 and greater 600"])
        .start()?;
    for _ in 0..3 {
        ns.send_udp("127.0.0.1", 4000, "s".repeat(100))?;
        ns.send_udp("127.0.0.1", 4000, "L".repeat(1000))?;
    }
    let events = t.stop()?.events()?;
    let drops = events.iter().filter(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET").count();
    assert_eq!(drops, 3, "each long datagram is dropped once, and only those: {events:?}");
    for event in &events {
        let len = event["len"].as_u64().unwrap();
        assert!(len >= 1000, "a short datagram got through: {event}");
    }
    Ok(())
}

#[test]
fn invalid_expression_exits_2_with_libpcaps_message() {
    let out = skbtrace::run(&["udp and and port"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("syntax error") && err.contains("udp and and port"), "{err}");
}

#[test]
fn oversized_expression_says_so() {
    // IPv6 hosts: large after libpcap's optimizer, yet quick to compile.
    let expr = (0..150).map(|i| format!("ip6 host 2001:db8::{i:x}")).collect::<Vec<_>>().join(" or ");
    let out = skbtrace::run(&[&expr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn tshark_reads_the_pcapng_and_agrees_with_the_text() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    if Command::new("tshark").arg("--version").output().is_err() {
        testkit::ci::skip("tshark is not installed (cargo xtask setup installs it)");
        return Ok(());
    }
    let ns = Netns::new("pca")?;
    let pcap = std::env::temp_dir().join(format!("skbtrace-{}.pcapng", std::process::id()));
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--output-json", "--output-pcap", pcap.to_str().unwrap(), "udp port 4000"])
        .start()?;
    // Longer than the headers the filter reads: the rest is copied once the packet matched.
    let payload = "x".repeat(100);
    for _ in 0..3 {
        ns.send_udp("127.0.0.1", 4000, &payload)?;
    }
    let done = t.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let events = done.events()?;
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.comment",
            "-e",
            "ip.src",
        ])
        .args(["-e", "udp.dstport", "-e", "frame.cap_len", "-e", "frame.len", "-e", "udp.length", "-e", "data.data"])
        .output()
        .expect("running tshark");
    let _ = std::fs::remove_file(&pcap);
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<&str> = text.lines().collect();
    assert_eq!(packets.len(), events.len(), "one packet per event:\n{text}");
    for (packet, event) in packets.iter().zip(&events) {
        let fields: Vec<&str> = packet.split('|').collect();
        let comment = fields[0];
        assert!(comment.starts_with(event["func"].as_str().unwrap()), "{comment} vs {event}");
        assert!(comment.contains(&format!("skb={}", event["skb"].as_str().unwrap())), "{comment}");
        assert!(comment.contains(&format!("netns={}", event["netns"])), "{comment}");
        if let Some(reason) = event["drop_reason"].as_str().filter(|r| !r.is_empty()) {
            assert!(comment.contains(reason), "{comment}");
        }
        assert_eq!(fields[1], event["tuple"]["saddr"].as_str().unwrap(), "{packet}");
        assert_eq!(fields[2], "4000", "{packet}");
        // Captured: the default --snaplen of 128 bytes, payload included up to there.
        let (cap_len, len): (usize, usize) = (fields[3].parse().unwrap(), fields[4].parse().unwrap());
        assert_eq!(cap_len, len.min(128), "{packet}");
        // The original length counts every header in front of the payload.
        let udp_payload = fields[5].parse::<usize>().unwrap() - 8;
        let headers = if comment.contains("if=lo") && len > udp_payload + 28 { 14 + 28 } else { 28 };
        assert_eq!(len, headers + udp_payload, "{packet}");
        assert_eq!(fields[6], "78".repeat(cap_len - headers), "payload bytes of {packet}");
    }
    Ok(())
}
