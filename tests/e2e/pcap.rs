//! tcpdump expressions run in the kernel, and pcap-ng that tshark reads.

use std::process::Command;

use crate::util::{cmd::Tracer, netns::Netns, require_root};

#[test]
fn expression_keeps_one_flow_of_two() {
    if !require_root("expression_keeps_one_flow_of_two") {
        return;
    }
    let ns = Netns::new("flows");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--output-json", "udp and dst port 4000"]);
    // Two flows, interleaved: only the first matches.
    for i in 0..5 {
        ns.send_udp("127.0.0.1", 4000, &format!("match{i}"));
        ns.send_udp("127.0.0.1", 4002, &format!("other{i}"));
    }
    let events = t.stop().json();
    let to_4000 = events.iter().filter(|e| e["tuple"]["dport"] == 4000).count();
    assert!(events.iter().all(|e| e["tuple"]["dport"] == 4000), "an event of the other flow got through: {events:?}");
    // Each datagram is seen at several tracepoints and dropped once.
    let drops = events.iter().filter(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET").count();
    assert_eq!(drops, 5, "every datagram of the matching flow is dropped once: {events:?}");
    assert!(to_4000 > drops);
}

#[test]
fn length_tests_see_the_whole_packet_not_the_copied_bytes() {
    if !require_root("length_tests_see_the_whole_packet_not_the_copied_bytes") {
        return;
    }
    let ns = Netns::new("greater");
    // The kernel copies at most 256 bytes; tcpdump's `greater` counts every byte of the packet.
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--output-json", "udp port 4000 and greater 600"]);
    for _ in 0..3 {
        ns.send_udp("127.0.0.1", 4000, &"s".repeat(100));
        ns.send_udp("127.0.0.1", 4000, &"L".repeat(1000));
    }
    let events = t.stop().json();
    let drops = events.iter().filter(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET").count();
    assert_eq!(drops, 3, "each long datagram is dropped once, and only those: {events:?}");
    for event in &events {
        let len = event["len"].as_u64().unwrap();
        assert!(len >= 1000, "a short datagram got through: {event}");
    }
}

#[test]
fn invalid_expression_exits_2_with_libpcaps_message() {
    let out = crate::util::cmd::run(&["udp and and port"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("syntax error") && err.contains("udp and and port"), "{err}");
}

#[test]
fn oversized_expression_says_so() {
    // IPv6 hosts: large after libpcap's optimizer, yet quick to compile.
    let expr = (0..150).map(|i| format!("ip6 host 2001:db8::{i:x}")).collect::<Vec<_>>().join(" or ");
    let out = crate::util::cmd::run(&[&expr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn tshark_reads_the_pcapng_and_agrees_with_the_text() {
    if !require_root("tshark_reads_the_pcapng_and_agrees_with_the_text") {
        return;
    }
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tshark is missing under CI (cargo xtask setup installs it)");
        eprintln!("SKIPPED: tshark not installed");
        return;
    }
    let ns = Netns::new("pcap");
    let pcap = std::env::temp_dir().join(format!("skbtrace-{}.pcapng", std::process::id()));
    let t = Tracer::start(&[
        "--filter-netns",
        &ns.path(),
        "--output-json",
        "--output-pcap",
        pcap.to_str().unwrap(),
        "udp port 4000",
    ]);
    // Longer than the headers the filter reads: the rest is copied once the packet matched.
    let payload = "x".repeat(100);
    for _ in 0..3 {
        ns.send_udp("127.0.0.1", 4000, &payload);
    }
    let done = t.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let events = done.json();
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
}
