use super::*;

/// The rule `nft --debug=netlink` shows for `meta nftrace set 1`:
/// `[ immediate reg 1 0x00000001 ] [ meta set nftrace with reg 1 ]`.
#[test]
fn the_batch_holds_table_chain_and_rule() {
    let mut buf = Vec::new();
    for (i, m) in create("t", true).into_iter().enumerate() {
        push(&mut buf, i as u32 + 1, NLM_F_REQUEST | NLM_F_ACK, NetfilterProtoFamily::Inet, 0, m);
    }
    let mut rest = buf.as_slice();
    let mut kinds = Vec::new();
    while !rest.is_empty() {
        let m = NetlinkMessage::<NetfilterMessage>::deserialize(rest).expect("parses back");
        rest = &rest[m.header.length as usize..];
        kinds.push((m.header.message_type, m.header.sequence_number));
    }
    // (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE, NEWCHAIN, NEWRULE.
    assert_eq!(kinds, [(0x0a00, 1), (0x0a03, 2), (0x0a06, 3)]);
    let text = format!("{:?}", create("t", true));
    assert!(text.contains("Owner") && text.contains("NftraceBit") && text.contains("Value([1])"), "{text}");
    assert!(!format!("{:?}", create("t", false)).contains("Owner"));
    assert_eq!(reply_seq(&[0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]), Some(7));
}

/// The tables of this thread's netns: (name, flags).
fn tables_here() -> Vec<(String, u32)> {
    let socket = Socket::new(NETLINK_NETFILTER).expect("socket");
    let mut t = TraceTable { socket, seq: 0, name: String::new(), owned: false, installed: false };
    t.socket.connect(&SocketAddr::new(0, 0)).expect("connect");
    t.tables().expect("tables").into_iter().map(|t| (t.name, t.flags)).collect()
}

#[test]
fn only_ownerless_tables_of_gone_runs_are_stale() {
    let table = |name: &str, flags| Table { name: name.to_owned(), flags };
    // No process has pid 4294967295; this one has ours.
    assert!(table("skbtrace_nft_trace_4294967295", 0).is_stale());
    assert!(!table("skbtrace_nft_trace_4294967295", TableFlags::Owner.bits()).is_stale());
    assert!(!table(&format!("skbtrace_nft_trace_{}", std::process::id()), 0).is_stale());
    assert!(!table("skbtrace_nft_trace_1", 0).is_stale(), "pid 1 lives");
    assert!(!table("filter", 0).is_stale());
}

/// In a netns of its own (nf_tables's static key is global: tracing is
/// on for the moments the test holds the table). Needs root and
/// nf_tables; skipped without them, except under CI with root.
#[test]
fn installs_beside_another_run_removes_stale_tables_and_cleans_up() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root");
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare on this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let table = match TraceTable::install() {
            Ok(t) => t,
            Err(e) if e.downcast_ref::<NoNfTables>().is_some() && std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: {e:#}");
                return;
            }
            Err(e) => panic!("{e:#}"),
        };
        let owner = TableFlags::Owner.bits();
        assert!(table.owned, "this kernel takes owner tables");
        assert_eq!(tables_here(), [(table.name.clone(), owner)]);
        // A run killed on a kernel without owner tables left this one.
        let mut stale = TraceTable {
            socket: Socket::new(NETLINK_NETFILTER).expect("socket"),
            seq: 0,
            name: format!("{TABLE_PREFIX}_4294967295"),
            owned: false,
            installed: false,
        };
        stale.socket.connect(&SocketAddr::new(0, 0)).expect("connect");
        stale.batch(create(&stale.name.clone(), false)).expect("a table without owner");
        assert_eq!(tables_here().len(), 2);
        // A second skbtrace (another pid): its own table; the stale one goes.
        let second = TraceTable::install_as(format!("{TABLE_PREFIX}_{}_2", std::process::id())).expect("a second");
        let mut names: Vec<String> = tables_here().into_iter().map(|t| t.0).collect();
        names.sort();
        assert_eq!(names, [table.name.clone(), second.name.clone()]);
        drop(table);
        assert_eq!(tables_here().len(), 1);
        drop(second);
        assert_eq!(tables_here(), []);
        // The owner flag: closing the socket (a SIGKILL) removes it too.
        let table = TraceTable::install().expect("again");
        let TraceTable { socket, .. } = &table;
        // SAFETY: closes the socket's descriptor; `forget` below keeps it from being closed twice.
        unsafe { libc::close(socket.as_raw_fd()) };
        std::mem::forget(table);
        assert_eq!(tables_here(), [], "the kernel removed the owner's table");
    })
    .join()
    .expect("the test thread");
}
