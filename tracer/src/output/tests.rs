use etherparse::PacketBuilder;
use tracer_common::{
    Event,
    event::{Capture, FLAG_HAS_REASON},
};

use super::{Consumer, json::JsonPrinter, text::TextPrinter};
use crate::{
    cli::Timestamp,
    config::Columns,
    decode,
    resolve::{Dropped, TraceEvent},
    summary::RunSummary,
};

fn drop_event() -> Event {
    let mut ev = Event::zeroed();
    ev.skb = 0xffff_8881_1f23_c400;
    ev.cpu = 1;
    ev.netns = 4026531840;
    ev.mark = 0x10;
    ev.ifindex = 1;
    ev.len = 11;
    ev.mtu = 65536;
    ev.ifname[..2].copy_from_slice(b"lo");
    ev.protocol = 0x0800u16.to_be();
    ev.flags = FLAG_HAS_REASON;
    ev.reason = 3;
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(53128, 4000)
        .write(&mut pkt, b"hi")
        .unwrap();
    ev.data[..pkt.len()].copy_from_slice(&pkt);
    ev.cap_len = pkt.len() as u16;
    ev.capture = Capture::Mac as u8;
    ev
}

/// The event as the resolver makes it.
pub fn resolved(raw: Event) -> TraceEvent {
    TraceEvent {
        raw,
        func: "kfree_skb".into(),
        drop: Some(Dropped {
            code: raw.reason,
            name: "SKB_DROP_REASON_NO_SOCKET".into(),
            location: Some("__udp4_lib_rcv+0x4bc".into()),
        }),
        caller: None,
        process: "/usr/bin/bash:20740".into(),
        tuple: decode::tuple(raw.capture(), raw.packet()),
        stack: Vec::new(),
        time: None,
        netns_name: None,
        tunnel: None,
        skb_fields: None,
        nft: None,
        ct: None,
    }
}

#[test]
fn text_line_has_pwru_columns() {
    let mut out = Vec::new();
    let mut p = TextPrinter::new(&mut out, Timestamp::None, Columns::default());
    p.start().unwrap();
    p.event(&resolved(drop_event())).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SKB                CPU PROCESS"), "{}", lines[0]);
    assert!(lines[0].ends_with("TUPLE FUNC"));
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "0xffff88811f23c400",
            "1",
            // pwru's 16 columns: the end, after a `~`.
            "~/bin/bash:20740",
            "4026531840",
            "10",
            "lo:1",
            "0x0800",
            "65536",
            "11",
            "127.0.0.1:53128->127.0.0.1:4000(udp)",
            "kfree_skb(SKB_DROP_REASON_NO_SOCKET)",
            "__udp4_lib_rcv+0x4bc",
        ]
    );
}

/// `--nft-trace`'s verdict after FUNC in text, in `nft` in JSON.
#[test]
fn an_nft_verdict_follows_func() {
    use tracer_common::event::{NFT_TRACETYPE_RULE, Nft};
    let mut wire = Nft::zeroed();
    (wire.handle, wire.verdict, wire.trace_type, wire.family, wire.hook) = (4, 0, NFT_TRACETYPE_RULE, 1, 1);
    wire.table[..2].copy_from_slice(b"fw");
    wire.chain[..5].copy_from_slice(b"input");
    let mut e = resolved(drop_event());
    (e.func, e.drop) = ("__nft_trace_packet".into(), None);
    e.nft = Some(Box::new(crate::nft_trace::NftTrace::from_wire(&wire)));
    let mut out = Vec::new();
    TextPrinter::new(&mut out, Timestamp::None, Columns::default()).event(&e).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with(" __nft_trace_packet nft: inet fw input handle 4 drop (hook input)\n"), "{text}");
    let mut out = Vec::new();
    JsonPrinter::new(&mut out).event(&e).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((v["nft"]["table"].as_str(), v["nft"]["handle"].as_u64()), (Some("fw"), Some(4)));
}

#[test]
fn json_line_has_every_field() {
    let mut out = Vec::new();
    let mut p = JsonPrinter::new(&mut out);
    p.event(&resolved(drop_event())).unwrap();
    p.finish(&RunSummary { events: 1, ..RunSummary::default() }).unwrap();
    drop(p);
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(v["skb"], "0xffff88811f23c400");
    assert_eq!(v["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
    assert_eq!(v["drop_reason_code"], 3);
    assert_eq!(v["tuple"]["dport"], 4000);
    assert_eq!(v["proto"], 0x0800);
    assert_eq!(v["stack"], serde_json::json!([]));
    let s: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(s["summary"]["events"], 1);
}

#[test]
fn json_strings_are_escaped_and_every_key_is_there() {
    let mut ev = drop_event();
    ev.flags |= tracer_common::event::FLAG_TRACKED;
    let stack = ["ip_rcv+0x10", "odd \"frame\"\\\n"];
    let mut e = resolved(ev);
    e.process = "a \"quoted\" exe\\path:1".into();
    e.stack = stack.iter().map(|f| (*f).into()).collect();
    e.caller = e.drop.take().and_then(|d| d.location);
    let mut out = Vec::new();
    JsonPrinter::new(&mut out).event(&e).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["process"], *e.process);
    assert_eq!(v["stack"], serde_json::json!(stack));
    assert_eq!(v["tracked"], true);
    assert_eq!(v["freed"], false);
    assert_eq!(v["drop_reason"], "");
    assert_eq!(v["drop_reason_code"], 0);
    assert_eq!(v["func_column"], "kfree_skb __udp4_lib_rcv+0x4bc");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "skb",
        "cpu",
        "process",
        "pid",
        "comm",
        "netns",
        "netns_name",
        "mark",
        "ifindex",
        "ifname",
        "proto",
        "mtu",
        "len",
        "tuple",
        "tunnel",
        "ct",
        "nft",
        "func",
        "func_column",
        "drop_reason",
        "drop_reason_code",
        "location",
        "ktime_ns",
        "timestamp",
        "tracked",
        "freed",
        "capture",
        "cap_len",
        "stack",
        "skb_metadata",
        "cb",
        "skb_dump",
        "skb_shared_info_dump",
    ];
    want.sort();
    assert_eq!(keys, want);
    let tuple_keys: Vec<&str> = v["tuple"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(tuple_keys, ["daddr", "dport", "proto", "saddr", "sport", "tcp_flags"]);
    let nft_keys: Vec<&str> = v["nft"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(nft_keys, ["chain", "family", "handle", "hook", "table", "target", "type", "verdict"]);
    assert_eq!(v["tuple"]["saddr"], "127.0.0.1");
    assert_eq!(v["tuple"]["proto"], "udp");
}

fn text(timestamp: Timestamp, columns: Columns, events: &[TraceEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = TextPrinter::new(&mut out, timestamp, columns);
    p.start().unwrap();
    for e in events {
        p.event(e).unwrap();
    }
    String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn pwru_columns_come_and_go_with_their_flags() {
    let e = resolved(drop_event());
    let none = Columns { meta: false, tuple: false, ..Columns::default() };
    let lines = text(Timestamp::None, none, std::slice::from_ref(&e));
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["SKB", "CPU", "PROCESS", "FUNC"]);
    assert_eq!(lines[1].split_whitespace().count(), 5, "{}", lines[1]);

    let mut syn = drop_event();
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut pkt, b"")
        .unwrap();
    syn.data[..pkt.len()].copy_from_slice(&pkt);
    syn.cap_len = pkt.len() as u16;
    let flags = Columns { tcp_flags: true, tunnel: true, netns_names: Some(12), ..Columns::default() };
    let mut named = resolved(syn);
    named.netns_name = Some("blue".into());
    let lines = text(Timestamp::None, flags, &[named]);
    assert!(lines[0].ends_with("TUPLE FUNC TUNNEL"), "{}", lines[0]);
    assert!(lines[0].contains("NETNS_NAME"), "{}", lines[0]);
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(cols.contains(&"10.0.0.1:40000->10.0.0.2:80(tcp:SYN)"), "{cols:?}");
    assert!(cols.contains(&"blue"), "{cols:?}");
    assert_eq!(cols.last(), Some(&":0->:0()"), "no tunnel: pwru's empty tuple");
}

#[test]
fn timestamps_as_pwru_prints_them() {
    let mut e = resolved(drop_event());
    e.time = Some(crate::resolve::Time::Delta(1500));
    let lines = text(Timestamp::Relative, Columns::default(), std::slice::from_ref(&e));
    assert!(lines[0].starts_with("SKB") && lines[0].contains("PROCESS          TIMESTAMP"), "{}", lines[0]);
    assert_eq!(lines[1].split_whitespace().nth(3), Some("1500"));

    e.time = Some(crate::resolve::Time::Absolute { wall_ns: 1_700_000_000_123_456_789, ktime_ns: 42 });
    let lines = text(Timestamp::Absolute, Columns::default(), std::slice::from_ref(&e));
    assert!(lines[0].starts_with("TIME "), "{}", lines[0]);
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    // Local date and time to the millisecond, then the kernel's ns after PROCESS.
    assert_eq!(cols[0].len(), "2023-11-14T22:13:20.123".len(), "{cols:?}");
    assert!(cols[0].ends_with(".123") && cols[0].as_bytes()[10] == b'T', "{cols:?}");
    assert_eq!(cols[4], "42");
}
