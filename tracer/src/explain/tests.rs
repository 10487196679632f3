//! The consumer: stories end when they should, are bounded, print every
//! field, and hand their verdict to the pcap-ng comment.

use std::time::Duration;

use super::{
    Explainer, VerdictNotes,
    rules::tests::{Ev, Fake, event},
};
use crate::{
    config::{ExplainSpec, Format},
    output::Consumer,
    summary::RunSummary,
};

fn explainer(format: Format, max_stories: usize) -> (Explainer<Vec<u8>>, VerdictNotes) {
    let notes = VerdictNotes::default();
    let spec = ExplainSpec { idle: Duration::from_millis(500), max_stories };
    (Explainer::new(Vec::new(), format, spec, Box::new(Fake::default()), notes.clone()), notes)
}

fn finish(mut x: Explainer<Vec<u8>>) -> (String, RunSummary) {
    let mut summary = RunSummary::default();
    x.close(&mut summary).unwrap();
    x.finish(&summary).unwrap();
    let out = String::from_utf8(std::mem::take(&mut x.out)).unwrap();
    (out, summary)
}

fn drop_ev(skb: u64, t: u64) -> crate::resolve::TraceEvent {
    event(Ev { skb, func: "kfree_skb", drop: Some(("NO_SOCKET", "__udp4_lib_rcv+0x4bc")), ..Ev::default() }, t)
}

#[test]
fn a_drop_ends_its_story_at_once_and_the_pcap_comment_gets_the_verdict() {
    let (mut x, notes) = explainer(Format::Text, 10);
    let rx = event(Ev::default(), 1);
    x.event(&rx).unwrap();
    assert_eq!(notes.for_event(&rx), None);
    let d = drop_ev(0x1000, 2);
    x.event(&d).unwrap();
    assert!(notes.for_event(&d).is_some_and(|v| v.starts_with("UDP to 10.0.0.2:4000")));
    let (out, summary) = finish(x);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("story 1 flow 1  skb 0x1000  10.0.0.1:40000->10.0.0.2:4000(udp)  2 events"), "{out}");
    assert!(lines.contains(&"  netns 7 (blue)  in eth0"), "{out}");
    assert!(lines.contains(&"      netif_receive_skb → kfree_skb"), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("verdict: UDP to 10.0.0.2:4000") && l.ends_with("[closed-port, full]")),
        "{out}"
    );
    assert_eq!(summary.verdicts.len(), 1);
    assert_eq!((summary.verdicts[0].rule.as_str(), summary.verdicts[0].count), ("closed-port", 1));
}

#[test]
fn idle_stories_end_by_event_time_and_open_ones_at_the_end() {
    let (mut x, _) = explainer(Format::Text, 10);
    x.event(&event(Ev { skb: 1, ..Ev::default() }, 1_000)).unwrap();
    x.event(&event(Ev { skb: 2, ..Ev::default() }, 600_000_000)).unwrap();
    x.flush().unwrap();
    let told = String::from_utf8(x.out.clone()).unwrap();
    assert!(told.contains("story 1 ") && !told.contains("story 2 "), "{told}");
    assert!(told.contains("end: idle at netif_receive_skb"), "{told}");
    let (out, summary) = finish(x);
    assert!(out.contains("story 2 ") && out.contains("end: open_at_exit"), "{out}");
    assert_eq!(summary.verdicts[0].count, 2);
}

#[test]
fn open_stories_are_capped_and_the_evicted_counted() {
    let (mut x, _) = explainer(Format::Text, 3);
    for skb in 1..=10 {
        x.event(&event(Ev { skb, ..Ev::default() }, skb)).unwrap();
    }
    assert_eq!(x.stories.open(), 3);
    let (_, summary) = finish(x);
    assert_eq!(summary.stories_evicted, 7);
    assert_eq!(summary.verdicts.iter().map(|v| v.count).sum::<u64>(), 10);
    assert!(summary.note_lines().iter().any(|l| l.starts_with("7 stories ended early")));
}

#[test]
fn a_long_story_keeps_its_first_and_last_steps() {
    let (mut x, _) = explainer(Format::Text, 3);
    for t in 0..1000 {
        x.event(&event(Ev::default(), t)).unwrap();
    }
    x.event(&drop_ev(0x1000, 1000)).unwrap();
    let (out, _) = finish(x);
    assert!(out.contains("1001 events") && out.contains("(937 events in the middle not kept)"), "{out}");
    assert!(out.contains("→ kfree_skb"), "{out}");
}

#[test]
fn json_has_a_story_and_a_verdict_line_with_every_field_then_the_summary() {
    let (mut x, _) = explainer(Format::Json, 10);
    x.event(&event(Ev::default(), 1)).unwrap();
    x.event(&drop_ev(0x1000, 2)).unwrap();
    let (out, _) = finish(x);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    let keys = |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let story = &lines[0]["story"];
    let mut want = [
        "id",
        "flow",
        "flow_link",
        "skb",
        "start_ns",
        "end_ns",
        "events",
        "elided",
        "end",
        "hops",
        "ct",
        "drop",
        "funcs",
    ];
    want.sort();
    assert_eq!(keys(story), want);
    assert_eq!(keys(&story["hops"][0]), ["in_if", "nat", "netns", "netns_name", "out_if", "tuples"]);
    assert_eq!(story["end"], "dropped");
    assert_eq!(story["drop"]["reason"], "SKB_DROP_REASON_NO_SOCKET");
    let v = &lines[1]["verdict"];
    assert_eq!(keys(v), ["confidence", "evidence", "flow", "rule", "sentence", "story"]);
    assert_eq!(
        keys(&v["evidence"]),
        ["ct", "drop_reason", "facts", "ifname", "location", "missing", "netns", "netns_name", "nft", "tuple"]
    );
    assert_eq!(keys(&v["evidence"]["nft"]), ["chain", "family", "handle", "hook", "rule", "table", "type", "verdict"]);
    assert_eq!(v["rule"], "closed-port");
    assert_eq!(v["confidence"], "full");
    assert_eq!(lines[2]["summary"]["verdicts"][0]["rule"], "closed-port");
    assert_eq!(lines[2]["summary"]["stories_evicted"], 0);
}

#[test]
fn a_delivered_skb_s_free_is_part_of_its_story() {
    let (mut x, _) = explainer(Format::Text, 10);
    x.event(&event(Ev::default(), 1)).unwrap();
    x.event(&event(Ev { func: "skb_copy_datagram_iovec", ..Ev::default() }, 2)).unwrap();
    x.event(&event(Ev { func: "consume_skb", freed: true, ..Ev::default() }, 3)).unwrap();
    let (out, summary) = finish(x);
    assert_eq!(summary.verdicts.len(), 1, "{out}");
    assert_eq!(summary.verdicts[0].rule, "delivered");
    assert!(out.contains("verdict: delivered to proc:99 on 10.0.0.2:4000 in netns 7 (blue)"), "{out}");
}

/// The text block, whole: NAT across two netns and a drop, two stories
/// that went idle (UDP at a socket queue, a TCP SYN) and one open at exit.
#[test]
fn stories_print_as_before() {
    let (mut x, _) = explainer(Format::Text, 10);
    let hop = |ns, ifname, func, dst| Ev { ns, ifname, func, dst, ..Ev::default() };
    x.event(&event(hop(7, "eth0", "netif_receive_skb", ("10.0.0.2", 4000)), 1_000)).unwrap();
    x.event(&event(hop(7, "eth0", "nf_hook_slow", ("10.9.0.2", 53)), 2_000)).unwrap();
    x.event(&event(hop(8, "veth1", "netif_receive_skb", ("10.9.0.2", 53)), 3_000)).unwrap();
    let drop = Some(("NO_SOCKET", "__udp4_lib_rcv+0x4bc"));
    x.event(&event(Ev { ns: 8, ifname: "", func: "kfree_skb", dst: ("10.9.0.2", 53), drop, ..Ev::default() }, 9_000))
        .unwrap();
    x.event(&event(Ev { skb: 0x2000, func: "udp_queue_rcv_one_skb", ..Ev::default() }, 10_000)).unwrap();
    x.event(&event(Ev { skb: 0x3000, tcp: true, ..Ev::default() }, 20_000)).unwrap();
    x.event(&event(Ev { skb: 0x4000, ..Ev::default() }, 900_000_000)).unwrap();
    let (out, _) = finish(x);
    let want = r#"story 1 flow 1  skb 0x1000  10.0.0.1:40000->10.0.0.2:4000(udp)  4 events, 8 µs
  netns 7 (blue)  in eth0
      10.0.0.1:40000->10.0.0.2:4000(udp) ⇒ 10.0.0.1:40000->10.9.0.2:53(udp)  (DNAT here)
      netif_receive_skb → nf_hook_slow
  netns 8  in veth1
      10.0.0.1:40000->10.9.0.2:53(udp)
      netif_receive_skb → kfree_skb
  ct: unknown: the packet carried no conntrack entry
  end: dropped SKB_DROP_REASON_NO_SOCKET at __udp4_lib_rcv+0x4bc in netns 8 on no device
  evidence: listeners on that port: none (inferred)
  missing: conntrack (to rule out a NAT reply that was not undone): the packet carried no entry
verdict: UDP to 10.9.0.2:53 from 10.0.0.1:40000 refused in netns 8 (sent to 10.0.0.2:4000; NAT on the way made it 10.9.0.2:53): nothing listens on 10.9.0.2:53 there [closed-port, full]

story 2 flow 1  skb 0x2000  10.0.0.1:40000->10.0.0.2:4000(udp)  1 events, 0 µs
  netns 7 (blue)
      10.0.0.1:40000->10.0.0.2:4000(udp)
      udp_queue_rcv_one_skb
  ct: unknown: the packet carried no conntrack entry
  end: idle at udp_queue_rcv_one_skb in netns 7 (blue) on eth0
  missing: the rest of its path: the backend saw no more of it (kprobes would)
verdict: last seen at udp_queue_rcv_one_skb in netns 7 (blue) on eth0: no event came for --explain-idle; it was not seen freed [unfinished, guess]

story 3 flow 2  skb 0x3000  10.0.0.1:40000->10.0.0.2:4000(tcp)  1 events, 0 µs
  netns 7 (blue)  in eth0
      10.0.0.1:40000->10.0.0.2:4000(tcp)
      netif_receive_skb
  ct: unknown: the packet carried no conntrack entry
  end: idle at netif_receive_skb in netns 7 (blue) on eth0
  missing: the rest of its path: the backend saw no more of it (kprobes would)
verdict: last seen at netif_receive_skb in netns 7 (blue) on eth0: no event came for --explain-idle; it was not seen freed [unfinished, guess]

story 4 flow 1  skb 0x4000  10.0.0.1:40000->10.0.0.2:4000(udp)  1 events, 0 µs
  netns 7 (blue)  in eth0
      10.0.0.1:40000->10.0.0.2:4000(udp)
      netif_receive_skb
  ct: unknown: the packet carried no conntrack entry
  end: open_at_exit at netif_receive_skb in netns 7 (blue) on eth0
  missing: the rest of its path: the backend saw no more of it (kprobes would)
verdict: last seen at netif_receive_skb in netns 7 (blue) on eth0: the trace ended first; it was not seen freed [unfinished, guess]

"#;
    assert_eq!(out, want, "{out}");
}
