//! ctnetlink against this host's kernel: a UDP datagram through a router
//! that DNATs and masquerades, then the router's entry found from either
//! direction, by the router's namespace inode.

use std::time::{Duration, Instant};

use super::netns::{NatPath, require_root};
use crate::{
    btf::KernelBtf,
    conntrack::{
        CtNames, CtTuple,
        netlink::{dump, lookup, netns_path},
    },
};

#[test]
fn finds_the_nat_entry_by_either_direction() {
    if !require_root("finds_the_nat_entry_by_either_direction") {
        return;
    }
    let names = CtNames::from_btf(&KernelBtf::open().expect("kernel BTF"));
    let path = NatPath::new("nl", 93);
    let router = path.router.inode();
    assert_eq!(netns_path(router).expect("the router's netns"), path.router.path());

    let sport = 40123;
    path.send(sport, b"through nat");
    let orig = CtTuple {
        src: Some(path.addr("1.1")),
        dst: Some(path.addr("1.254")),
        proto: 17,
        sport,
        dport: 5000,
        icmp: None,
    };
    // The router handles the datagram in softirq, after send returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        let found = lookup(router, &orig, &names).expect("lookup in the router's table");
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(found.len(), 1, "{found:#?}");
    let entry = &found[0];
    eprintln!("router: {entry}");
    for bit in ["CONFIRMED", "DST_NAT", "SRC_NAT", "DST_NAT_DONE", "SRC_NAT_DONE"] {
        assert!(entry.status.has(bit), "{bit} missing: {entry}");
    }
    assert_eq!(entry.orig, orig);
    assert_eq!((entry.reply.src, entry.reply.sport), (Some(path.addr("2.1")), 4000), "DNAT'd: {entry}");
    assert_eq!(entry.reply.dst, Some(path.addr("2.254")), "masqueraded: {entry}");
    assert!(entry.timeout > 0 && entry.id != 0, "{entry:?}");

    // The reply tuple finds the same entry; a tuple one port off finds none.
    let by_reply = lookup(router, &entry.reply, &names).expect("lookup by the reply tuple");
    assert_eq!(by_reply.iter().map(|e| e.id).collect::<Vec<_>>(), [entry.id]);
    let other = CtTuple { sport: sport + 1, ..orig };
    assert!(lookup(router, &other, &names).expect("lookup").is_empty());
    // Client and server have no conntrack user: empty tables, not errors.
    for ns in [&path.client, &path.server] {
        assert!(dump(ns.inode(), &names).expect("dump of an unused table").is_empty(), "{}", ns.name);
    }
}

#[test]
fn a_missing_namespace_is_an_error_that_says_so() {
    // Inode 1 is never a network namespace.
    let err = netns_path(1).unwrap_err().to_string();
    assert!(err.contains("network namespace 1 not found"), "{err}");
}
