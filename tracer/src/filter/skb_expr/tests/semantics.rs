//! The language's rules on hand-written skbs of the made-up layout: each expected verdict is
//! written out here, and the interpreter and rbpf must both give it.

use super::fake::{Fake, off};
use super::verdict;
use super::world::{WILD, World};

const SKB: usize = 64;
const DEV: usize = 256;
const NET: usize = 448;

/// An skb of 150 bytes with mark 0x12345610, IPv4, on eth0 (ifindex 4), no socket.
fn world() -> World {
    let mut w = World::empty(512);
    let at = |o: u64| SKB + o as usize;
    w.put(at(off::LEN), &150u32.to_le_bytes());
    w.put(at(off::MARK), &0x1234_5610u32.to_le_bytes());
    w.put(at(off::PROTOCOL), &[0x08, 0x00]);
    // pkt_type = 5 (bits 0–2), ignore_df = 1 (bit 3).
    w.put(at(off::FLAGS), &[0b1101]);
    // sbits = -3 in 5 bits at bit 6 of byte 35: 0b11101 << 6.
    w.put(at(off::SBITS), &[0x40, 0x07]);
    w.put(at(off::OFFSET), &(-2i16).to_le_bytes());
    w.put(at(off::TSTAMP), &(-5i64).to_le_bytes());
    w.put(at(off::CB), b"abc\0\0\0\0\0");
    w.put(at(off::STATE), &5u32.to_le_bytes());
    w.put(at(off::HASH), &0x00ab_cdefu32.to_le_bytes());
    w.put(at(off::BIG), &u64::MAX.to_le_bytes());
    w.put(at(off::SADDR), &[10, 0, 0, 1]);
    w.put(at(off::TINY), &[0xff]);
    w.put(at(80), &0xffff_ffff_ffff_fff0u64.to_le_bytes());
    w.put(at(off::NEXT), &WILD.to_le_bytes());
    w.point(at(off::DEV), DEV);
    w.put(at(off::SK), &0u64.to_le_bytes());
    w.put(DEV + off::DEV_NAME as usize, b"eth0\0\0\0\0\0\0\0\0\0\0\0\0");
    w.put(DEV + off::DEV_IFINDEX as usize, &4i32.to_le_bytes());
    w.point(DEV + 24, NET);
    w.put(DEV + 32, &0u64.to_le_bytes());
    w.put(NET, &0xf000_0001u32.to_le_bytes());
    w
}

fn assert_verdicts(cases: &[(&str, u64)]) {
    let (layout, w) = (Fake::new(), world());
    for (expr, want) in cases {
        assert_eq!(verdict(expr, &layout, &w), *want, "{expr}");
    }
}

#[test]
fn the_issue_examples() {
    assert_verdicts(&[
        ("skb->len > 100 && skb->dev->ifindex == 4", 1),
        ("skb->len > 200 && skb->dev->ifindex == 4", 0),
        ("(skb->mark & 0xff) == 0x10", 1),
        // __be16 reads in host order, as in pwru.
        ("skb->protocol == 0x0800", 1),
        ("skb->protocol == 0x0008", 0),
        ("skb->dev->name == \"eth0\"", 1),
    ]);
}

#[test]
fn integers_widen_by_their_signedness() {
    assert_verdicts(&[
        ("skb->offset == -2", 1),
        ("skb->offset < 0", 1),
        ("skb->tstamp < 0", 1),
        ("skb->tiny == -1 && skb->tiny < 0", 1),
        // A 64-bit unsigned field makes the comparison unsigned: -1 is its maximum.
        ("skb->big == -1", 1),
        ("skb->big > 0", 1),
        ("skb->big >> 63 == 1", 1),
        // A u32 is a long: subtracting goes negative instead of wrapping at 32 bits.
        ("skb->len - 151 < 0", 1),
        ("skb->len - 151 == -1", 1),
        ("skb->saddr == 0x0a000001", 1),
        ("skb->hash == 0xabcdef && skb->hash16 == 0xcdef", 1),
        ("skb->cb[1] == 98 && skb->cb[3] == 0", 1),
    ]);
}

#[test]
fn bitfields_and_enums() {
    assert_verdicts(&[
        ("skb->pkt_type == 5 && skb->ignore_df == 1", 1),
        ("skb->sbits == -3", 1),
        ("skb->state == ST_BUSY", 1),
        ("skb->state == ST_TOP", 0),
        ("skb->kind == KIND_HUGE", 1),
        ("skb->kind > KIND_SMALL", 1),
    ]);
}

#[test]
fn strings_compare_as_c_strings() {
    assert_verdicts(&[
        ("\"eth0\" == skb->dev->name", 1),
        ("skb->dev->name == \"eth\"", 0),
        ("skb->dev->name == \"eth0 \"", 0),
        ("skb->dev->name != \"eth1\"", 1),
        ("skb->dev->name == \"\"", 0),
        ("skb->cb == \"abc\"", 1),
    ]);
}

#[test]
fn null_and_faulting_pointers_make_the_expression_false() {
    assert_verdicts(&[
        ("skb->sk == NULL", 1),
        ("skb->sk", 0),
        ("skb->sk->sk_mark == 0", 0),
        // Not `!false`: the read fails, so the whole expression does.
        ("!(skb->sk->sk_mark == 1)", 0),
        ("skb->sk == NULL || skb->sk->sk_mark == 1", 1),
        ("skb->next != NULL", 1),
        ("skb->next->len == 0", 0),
        ("skb->dev->dev_addr[0] == 0", 0),
        ("skb->dev->nd_net.net->inum == 0xf0000001", 1),
    ]);
}

#[test]
fn arithmetic_follows_the_documented_rules() {
    assert_verdicts(&[
        ("skb->len / 0 == 0", 1),
        ("skb->len % 0 == 150", 1),
        ("-7 / 2 == -3 && -7 % 2 == -1 && 7 % -2 == 1", 1),
        ("skb->len / -7 == -21 && -skb->len % 7 == -3", 1),
        ("-9223372036854775807 - 1 == 0x8000000000000000u", 1),
        ("(-9223372036854775807 - 1) / -1 == -9223372036854775807 - 1", 1),
        ("1 << 65 == 2", 1),
        ("-8 >> 1 == -4", 1),
        ("0xffffffffffffffff > 0", 1),
        ("-1 > 0u", 1),
        ("~0 == -1", 1),
        ("skb->len * 0x100000000 == 150 << 32", 1),
        ("skb->len", 1),
        ("skb->len == 150 = 1", 1),
    ]);
}

#[test]
fn operators_bind_as_in_c() {
    assert_verdicts(&[
        ("1 + 2 * 3 == 7", 1),
        ("1 << 2 + 1 == 8", 1),
        ("10 - 2 - 3 == 5", 1),
        ("100 / 10 / 5 == 2", 1),
        ("1 || 0 && 0", 1),
        ("(1 || 0) && 0", 0),
        ("!0 + 1 == 2", 1),
        ("-1 < 0", 1),
        ("(2 | 1 ^ 3) == 2", 1),
        ("(6 & 3 | 8) == 10", 1),
        ("1 < 2 == 1", 1),
        ("- -1 == 1 && ~~5 == 5 && !!7 == 1", 1),
        ("skb->len > 100 == 1", 1),
        ("0b101 == 5 && 0o17 == 15 && 0x1F == 31 && 10UL == 10", 1),
    ]);
}
