//! Decoding, text and JSON on hand-built events, with enum names as the
//! kernel's BTF declares them (6.18's order, aliases and masks included).

use std::net::IpAddr;

use tracer_common::event::{CT_SIZE, CT4_SIZE, Ct, CtTuple as RawTuple, EVENT_HEADER_SIZE, Event};

use super::*;

mod kernel;
mod netlink;
mod netns;

fn names() -> CtNames {
    let e = |list: &[(&str, u64)]| list.iter().map(|(n, v)| (n.to_string(), *v)).collect::<Vec<_>>();
    let status = e(&[
        ("IPS_EXPECTED_BIT", 0),
        ("IPS_EXPECTED", 1),
        ("IPS_SEEN_REPLY_BIT", 1),
        ("IPS_SEEN_REPLY", 2),
        ("IPS_ASSURED_BIT", 2),
        ("IPS_ASSURED", 4),
        ("IPS_CONFIRMED_BIT", 3),
        ("IPS_CONFIRMED", 8),
        ("IPS_SRC_NAT_BIT", 4),
        ("IPS_SRC_NAT", 16),
        ("IPS_DST_NAT_BIT", 5),
        ("IPS_DST_NAT", 32),
        ("IPS_NAT_MASK", 48),
        ("IPS_SRC_NAT_DONE_BIT", 7),
        ("IPS_SRC_NAT_DONE", 128),
        ("IPS_DST_NAT_DONE_BIT", 8),
        ("IPS_DST_NAT_DONE", 256),
        ("IPS_NAT_DONE_MASK", 384),
        ("IPS_UNTRACKED_BIT", 12),
        ("IPS_UNTRACKED", 4096),
        ("IPS_NAT_CLASH_BIT", 12),
        ("IPS_NAT_CLASH", 4096),
        ("__IPS_MAX_BIT", 16),
    ]);
    let info = e(&[
        ("IP_CT_ESTABLISHED", 0),
        ("IP_CT_RELATED", 1),
        ("IP_CT_NEW", 2),
        ("IP_CT_IS_REPLY", 3),
        ("IP_CT_ESTABLISHED_REPLY", 3),
        ("IP_CT_RELATED_REPLY", 4),
        ("IP_CT_NUMBER", 5),
        ("IP_CT_UNTRACKED", 7),
    ]);
    CtNames::from_enums(&status, &info)
}

/// An address as the eBPF side stores it: the kernel's bytes, as words.
fn words(bytes: [u8; 16]) -> [u32; 4] {
    let mut out = [0; 4];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_ne_bytes(chunk.try_into().unwrap());
    }
    out
}

fn v4_tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> RawTuple {
    let v4 = |a: [u8; 4]| {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        words(b)
    };
    RawTuple {
        src: v4(src),
        dst: v4(dst),
        // Ports in memory are big-endian.
        src_u: u16::from_ne_bytes(sport.to_be_bytes()),
        dst_u: u16::from_ne_bytes(dport.to_be_bytes()),
        l3num: 2,
        protonum: proto,
        _pad: 0,
    }
}

/// A DNAT'd UDP flow: 10.0.0.1:4000 → 10.0.0.2:5000, rewritten to 10.0.0.2:53.
fn dnat() -> Ct {
    Ct {
        nf_conn: 0xffff_8881_0000_1000,
        status: 8 | 32 | 256,
        orig: v4_tuple([10, 0, 0, 1], 4000, [10, 0, 0, 2], 5000, 17),
        reply: v4_tuple([10, 0, 0, 2], 53, [10, 0, 0, 1], 4000, 17),
        mark: 0,
        zone: 0,
        zone_dir: 0,
        ctinfo: 2,
    }
}

fn json(ct: Option<&Conntrack>) -> serde_json::Value {
    let mut out = String::new();
    json::push(&mut out, ct);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn states_come_from_the_enum_names() {
    let n = names();
    assert_eq!(n.state(0), CtState::Established);
    assert_eq!(n.state(2), CtState::New);
    assert_eq!(n.state(3), CtState::EstablishedReply, "IP_CT_IS_REPLY is an alias");
    assert_eq!(n.state(7), CtState::Untracked);
    assert_eq!(n.state(5), CtState::Other(5), "IP_CT_NUMBER is a count, not a state");
    assert_eq!(n.state(6).to_string(), "ctinfo 6");
    // Without BTF names nothing is guessed.
    assert_eq!(CtNames::default().state(2), CtState::Other(2));
}

#[test]
fn status_bits_come_from_the_enum_names() {
    let n = names();
    let s = n.status(8 | 16 | 128 | 4096 | (1 << 20));
    assert_eq!(s.names().collect::<Vec<_>>(), ["CONFIRMED", "SRC_NAT", "SRC_NAT_DONE", "NAT_CLASH"]);
    assert_eq!(s.unnamed(), 1 << 20);
    assert_eq!(s.to_string(), "CONFIRMED|SRC_NAT|SRC_NAT_DONE|NAT_CLASH|0x100000");
    assert!(s.has("SRC_NAT") && s.has("IPS_SRC_NAT") && !s.has("DST_NAT") && !s.has("NAT_MASK"));
    assert_eq!(n.status(0).to_string(), "");
    assert_eq!(CtNames::default().status(0x30).to_string(), "0x30");
}

#[test]
fn decodes_a_dnat_entry() {
    let ct = Conntrack::decode(&dnat(), &names());
    assert_eq!(ct.state, CtState::New);
    assert!(ct.status.has("DST_NAT") && ct.status.has("CONFIRMED"));
    assert_eq!(ct.orig.src, Some(IpAddr::from([10, 0, 0, 1])));
    assert_eq!((ct.orig.sport, ct.orig.dport, ct.reply.sport), (4000, 5000, 53));
    assert_eq!(
        ct.to_string(),
        "ct=NEW [CONFIRMED|DST_NAT|DST_NAT_DONE] orig=10.0.0.1:4000->10.0.0.2:5000(udp) \
         reply=10.0.0.2:53->10.0.0.1:4000(udp)"
    );
    let j = json(Some(&ct));
    assert_eq!(j["state"], "NEW");
    assert_eq!(j["nf_conn"], "0xffff888100001000");
    assert_eq!(j["status"], 296);
    assert_eq!(j["status_flags"], serde_json::json!(["CONFIRMED", "DST_NAT", "DST_NAT_DONE"]));
    assert_eq!(j["orig"]["daddr"], "10.0.0.2");
    assert_eq!(j["orig"]["dport"], 5000);
    assert_eq!(j["reply"]["sport"], 53);
    assert_eq!(j["reply"]["proto"], "udp");
}

#[test]
fn ipv6_icmp_zone_and_mark() {
    let mut raw = dnat();
    let mut t = RawTuple { l3num: 10, protonum: 58, ..Default::default() };
    t.src = words("fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    t.dst = words("fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    t.src_u = u16::from_ne_bytes(7u16.to_be_bytes());
    // ICMPv6 echo request: type 128, code 0, in that order in memory.
    t.dst_u = u16::from_ne_bytes([128, 0]);
    raw.orig = t;
    raw.reply = RawTuple { src: t.dst, dst: t.src, dst_u: u16::from_ne_bytes([129, 0]), ..t };
    raw.status = 8 | 2;
    raw.ctinfo = 3;
    raw.zone = 5;
    raw.zone_dir = 3;
    raw.mark = 0x42;
    let ct = Conntrack::decode(&raw, &names());
    assert_eq!(ct.orig.icmp, Some(Icmp { id: 7, kind: 128, code: 0 }));
    assert_eq!((ct.orig.sport, ct.orig.dport), (0, 0));
    assert_eq!(
        ct.to_string(),
        "ct=ESTABLISHED_REPLY [SEEN_REPLY|CONFIRMED] orig=[fd00::1]->[fd00::2](icmp6 id 7 type 128 code 0) \
         reply=[fd00::2]->[fd00::1](icmp6 id 7 type 129 code 0) zone=5 mark=0x42"
    );
    let j = json(Some(&ct));
    assert_eq!(j["orig"]["saddr"], "fd00::1");
    assert_eq!(j["orig"]["icmp_type"], 128);
    assert_eq!(j["reply"]["icmp_type"], 129);
    assert_eq!(j["zone"], 5);
    assert_eq!(j["mark"], 0x42);
}

#[test]
fn untracked_and_no_entry() {
    let raw = Ct { ctinfo: 7, ..Ct::zeroed() };
    let ct = Conntrack::decode(&raw, &names());
    assert!(!ct.has_entry());
    assert_eq!(ct.to_string(), "ct=UNTRACKED");
    let j = json(Some(&ct));
    assert_eq!(j["state"], "UNTRACKED");
    assert_eq!(j["nf_conn"], "");
    assert_eq!(j["orig"]["saddr"], "");

    // No entry at all: every key there, empty.
    let none = json(None);
    let with = json(Some(&Conntrack::decode(&dnat(), &names())));
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&none), keys(&with));
    assert_eq!(keys(&none["orig"]), keys(&with["orig"]));
    assert_eq!(none["state"], "");
    assert_eq!(none["status_flags"], serde_json::json!([]));
    assert_eq!(none["reply"]["proto"], "");
}

/// The ring-buffer record as the eBPF side writes it.
fn record(ct: Option<Ct>) -> Vec<u8> {
    let mut event = Event::zeroed();
    event.skb = 0xffff_8881_dead_0000;
    event.cap_len = 5;
    event.data[..5].copy_from_slice(b"bytes");
    event.to_record(ct.as_ref(), None)
}

#[test]
fn records_carry_the_block_only_with_the_flag() {
    let names = names();
    let with = record(Some(dnat()));
    // The header, the 5 packet bytes rounded up to 8, the IPv4 block.
    assert_eq!(with.len(), EVENT_HEADER_SIZE + 8 + CT4_SIZE);
    let event = Event::from_bytes(&with).expect("an event");
    assert_eq!((event.skb, event.packet()), (0xffff_8881_dead_0000, &b"bytes"[..]), "the event decodes as before");
    let ct = Conntrack::from_record(&with, &names).expect("a ct block");
    assert_eq!(ct.reply.sport, 53);

    let without = record(None);
    assert_eq!(without.len(), EVENT_HEADER_SIZE + 8);
    assert!(Conntrack::from_record(&without, &names).is_none());
    // The flag without the bytes (a short record) is no block, not garbage.
    let mut short = with.clone();
    short.truncate(with.len() - 1);
    assert!(Ct::from_record(&short).is_none());
}

#[test]
fn either_block_gives_back_the_entry() {
    let mut v6 = dnat();
    v6.orig.l3num = 10;
    v6.orig.src[3] = 0x0100_0000;
    let mut wide_status = dnat();
    wide_status.status |= 1 << 40;
    let mut untracked = Ct::zeroed();
    untracked.ctinfo = 7;
    let mut marked = dnat();
    (marked.mark, marked.zone, marked.zone_dir, marked.reply.protonum) = (0x42, 5, 3, 6);
    for (ct, len) in
        [(dnat(), CT4_SIZE), (marked, CT4_SIZE), (v6, CT_SIZE), (wide_status, CT_SIZE), (untracked, CT_SIZE)]
    {
        let bytes = record(Some(ct));
        assert_eq!(bytes.len(), EVENT_HEADER_SIZE + 8 + len, "{ct:?}");
        assert_eq!(Ct::from_record(&bytes), Some(ct));
    }
}
