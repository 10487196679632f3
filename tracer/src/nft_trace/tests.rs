//! The nf_tables block decoded from ring-buffer bytes, named and printed.

use tracer_common::{
    Event,
    event::{Ct, FLAG_CT, NFT_CHAIN_BASE, NFT_TRACETYPE_POLICY, NFT_TRACETYPE_RULE, Nft},
};

use super::{EMPTY_JSON, Kind, NftTrace, Verdict, push_json};

fn name<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

fn block(handle: u64, verdict: i32, trace_type: u8, target: &str) -> Nft {
    Nft {
        handle,
        verdict,
        trace_type,
        family: 1,
        hook: 1,
        flags: 0,
        table: name("filter"),
        chain: name("input"),
        target: name(target),
    }
}

/// A record as the eBPF side sends it: event, conntrack block (with
/// `FLAG_CT`), nf_tables block.
fn record(flags: u8, nft: Option<Nft>) -> Vec<u8> {
    let ct = (flags & FLAG_CT != 0).then(Ct::zeroed);
    Event::zeroed().to_record(ct.as_ref(), nft.as_ref())
}

#[test]
fn the_block_is_read_only_from_records_that_have_it() {
    let nft = block(4, 0, NFT_TRACETYPE_RULE, "");
    let bytes = record(0, Some(nft));
    assert_eq!(Nft::from_record(&bytes), Some(nft));
    assert_eq!(Ct::from_record(&bytes), None, "no FLAG_CT");
    let both = record(FLAG_CT, Some(nft));
    assert!(Ct::from_record(&both).is_some());
    assert_eq!(Nft::from_record(&both), Some(nft), "after the conntrack block");
    assert_eq!(Nft::from_record(&record(FLAG_CT, None)), None, "no FLAG_NFT");
    assert_eq!(Nft::from_record(&bytes[..bytes.len() - 1]), None, "too short");
}

#[test]
fn a_rule_drop_is_named_as_nft_lists_it() {
    let n = NftTrace::from_wire(&block(4, 0, NFT_TRACETYPE_RULE, ""));
    assert_eq!((n.family, n.table.as_str(), n.chain.as_str(), n.hook), ("inet", "filter", "input", "input"));
    assert_eq!((n.handle, n.kind, &n.verdict), (4, Kind::Rule, &Verdict::Drop));
    assert!(n.is_final() && !n.chain_is_base);
    assert_eq!(n.to_string(), "nft: inet filter input handle 4 drop (hook input)");
    let mut json = String::new();
    push_json(&mut json, Some(&n));
    assert_eq!(
        json,
        r#"{"family":"inet","table":"filter","chain":"input","hook":"input","type":"rule","handle":4,"verdict":"drop","target":""}"#
    );
}

#[test]
fn policies_jumps_and_queues() {
    let policy = NftTrace::from_wire(&block(0, 0, NFT_TRACETYPE_POLICY, ""));
    assert_eq!(policy.to_string(), "nft: inet filter input policy drop (hook input)");
    let mut jump = block(7, -3, NFT_TRACETYPE_RULE, "DOCKER-USER");
    jump.family = 2;
    jump.hook = 2;
    jump.flags = NFT_CHAIN_BASE;
    let jump = NftTrace::from_wire(&jump);
    assert_eq!(jump.to_string(), "nft: ip filter input handle 7 jump DOCKER-USER (hook forward)");
    assert!(!jump.is_final() && jump.chain_is_base);
    assert_eq!(jump.verdict.target(), "DOCKER-USER");
    // NF_QUEUE with queue number 5 in the high bits.
    assert_eq!(NftTrace::from_wire(&block(9, (5 << 16) | 3, NFT_TRACETYPE_RULE, "")).verdict, Verdict::Queue);
    assert_eq!(NftTrace::from_wire(&block(9, -1, NFT_TRACETYPE_RULE, "")).verdict, Verdict::Continue);
}

#[test]
fn the_empty_json_has_the_members_of_a_full_one() {
    let mut full = String::new();
    push_json(&mut full, Some(&NftTrace::from_wire(&block(4, 0, NFT_TRACETYPE_RULE, ""))));
    // The same members in the same order.
    let keys = |s: &str| -> Vec<String> {
        s.trim_matches(['{', '}']).split(',').map(|kv| kv.split(':').next().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(keys(&full), keys(EMPTY_JSON));
    let mut empty = String::new();
    push_json(&mut empty, None);
    assert_eq!(empty, EMPTY_JSON);
}

/// The verifier takes `kprobe_nft_trace` with this kernel's nf_tables
/// layout, with and without the other options that change its path (the
/// VM tests load it on Debian's 6.1 and 6.12).
#[test]
fn the_verifier_takes_the_program() {
    use crate::{
        btf::KernelBtf,
        config::MapSizes,
        filter::match_all,
        loader::{Filters, LoadAs, Loader, Programs},
    };
    use tracer_common::{
        Config,
        config::{CFG_CONNTRACK, CFG_NFT_TRACE, CFG_TRACK_SKB},
        names,
        skb_out::SkbOutConfig,
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = KernelBtf::open().ok();
    let Some(offsets) = btf.as_ref().and_then(|b| b.nft_offsets().ok()).filter(|_| root) else {
        assert!(std::env::var_os("CI").is_none() || !root, "no nf_tables layout under CI");
        eprintln!("SKIPPED: not root, or no nf_tables in this kernel's BTF");
        return;
    };
    let btf = btf.expect("checked above");
    let sizes = MapSizes::with_ring(1 << 20);
    let mut no_walk = offsets;
    no_walk.last_chain = tracer_common::config::NFT_OFFSET_NONE;
    no_walk.arg_chain = 1;
    for (flags, offsets) in
        [(CFG_NFT_TRACE, offsets), (CFG_NFT_TRACE, no_walk), (CFG_NFT_TRACE | CFG_CONNTRACK | CFG_TRACK_SKB, offsets)]
    {
        let mut config = Config::zeroed();
        config.offsets = btf.offsets().expect("offsets");
        config.nft = offsets;
        config.flags = flags;
        config.snaplen = 128;
        let all = match_all();
        let filters = Filters { l2: &all, l3: &all, skb_expr: &all, skb_metadata: &all };
        let loader =
            Loader::new(&config, &SkbOutConfig::zeroed(), &sizes, Programs::Kprobes, &filters).expect("linking");
        let how = LoadAs {
            program: names::KPROBE_NFT_TRACE,
            prog_type: crate::sys::BPF_PROG_TYPE_KPROBE,
            expected_attach_type: 0,
            attach_btf_id: 0,
            probe_id: 0,
        };
        let fd = loader.load(&how).unwrap_or_else(|e| panic!("flags {flags:#x}: {e:#}"));
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))
            .unwrap_or_default();
        let n = info.lines().find_map(|l| l.strip_prefix("verified_insns:")).unwrap_or("?").trim().to_owned();
        eprintln!("flags {flags:#x}: kprobe_nft_trace verified in {n} instructions");
    }
}
