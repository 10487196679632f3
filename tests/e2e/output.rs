//! Output formats and limits.

use crate::util::{cmd::Tracer, netns::Netns, require_root};

/// Every field the README documents for `--output-json`.
const JSON_FIELDS: &[&str] = &[
    "skb",
    "cpu",
    "process",
    "pid",
    "comm",
    "netns",
    "mark",
    "ifindex",
    "ifname",
    "proto",
    "mtu",
    "len",
    "tuple",
    "func",
    "func_column",
    "drop_reason",
    "drop_reason_code",
    "location",
    "ktime_ns",
    "timestamp",
    "tracked",
    "capture",
    "cap_len",
    "stack",
];

#[test]
fn json_has_every_documented_field() {
    if !require_root("json_has_every_documented_field") {
        return;
    }
    let ns = Netns::new("json");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--output-json", "--output-stack", "--timestamp", "current"]);
    ns.send_udp("127.0.0.1", 4600, "x");
    let done = t.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let events = done.json_lines();
    let (summary, events): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.get("summary").is_some());
    assert_eq!(summary.len(), 1, "one summary object at the end");
    assert_eq!(summary[0]["summary"]["events"], events.len() as u64);
    assert!(!events.is_empty());
    for e in &events {
        for f in JSON_FIELDS {
            assert!(e.get(*f).is_some(), "field {f} missing in {e}");
        }
        for f in ["saddr", "daddr", "sport", "dport", "proto", "tcp_flags"] {
            assert!(e["tuple"].get(f).is_some(), "tuple.{f} missing in {e}");
        }
        assert!(e["stack"].is_array());
    }
    assert!(events.iter().any(|e| !e["stack"].as_array().unwrap().is_empty()), "--output-stack gave no stacks");
}

#[test]
fn output_limit_lines_stops_by_itself() {
    if !require_root("output_limit_lines_stops_by_itself") {
        return;
    }
    let ns = Netns::new("limit");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "kfree_skb", "--output-limit-lines", "2"]);
    for port in 4700..4705 {
        ns.send_udp("127.0.0.1", port, "x");
    }
    let done = t.wait();
    assert!(done.status.success(), "{}", done.stderr);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header + 2 events:\n{}", done.stdout);
}

#[test]
fn output_file_gets_the_trace() {
    if !require_root("output_file_gets_the_trace") {
        return;
    }
    let ns = Netns::new("file");
    let path = std::env::temp_dir().join(format!("skbtrace-out-{}.txt", std::process::id()));
    let t = Tracer::start(&[
        "--filter-netns",
        &ns.path(),
        "--filter-func",
        "kfree_skb",
        "--output-file",
        path.to_str().unwrap(),
    ]);
    ns.send_udp("127.0.0.1", 4800, "x");
    let done = t.stop();
    assert!(done.stdout.is_empty(), "stdout should be empty: {}", done.stdout);
    let text = std::fs::read_to_string(&path).expect("output file");
    let _ = std::fs::remove_file(&path);
    assert!(text.contains("127.0.0.1:4800(udp)") && text.contains("SKB_DROP_REASON_NO_SOCKET"), "{text}");
}
