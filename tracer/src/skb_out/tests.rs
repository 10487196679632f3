//! Against the running kernel: fields checked against its BTF, and the
//! tracer's programs through its verifier with every flag, as each backend
//! loads them (`tp_btf`, `raw_tp`, kprobe, kprobe-multi: the kprobe programs
//! load where they cannot attach).

use tracer_common::{Config, names};

use super::{SkbOutSpec, compile};
use crate::{
    btf::KernelBtf,
    config::{MapSizes, UsageError},
    filter::match_all,
    loader::{Filters, LoadAs, Loader, Programs},
    sys::{
        BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_TRACING, BPF_TRACE_KPROBE_MULTI,
        BPF_TRACE_RAW_TP,
    },
};

fn btf(test: &str) -> Option<KernelBtf> {
    match KernelBtf::open() {
        Ok(btf) => Some(btf),
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: no kernel BTF under CI: {e}"),
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            None
        }
    }
}

fn spec(metadata: &[&str]) -> SkbOutSpec {
    SkbOutSpec { metadata: metadata.iter().map(|s| s.to_string()).collect(), dump_bytes: 4096, ..SkbOutSpec::default() }
}

#[test]
fn fields_are_checked_against_btf() {
    let Some(btf) = btf("fields_are_checked_against_btf") else { return };
    let ok = compile(&spec(&["skb->mark", "skb->dev->name", "skb->pkt_type", "skb->sk"]), &btf).unwrap();
    let names: Vec<_> = ok.decoder.empty().names.iter().map(|n| n.last.clone()).collect();
    assert_eq!(names, ["mark", "name", "pkt_type", "sk"]);
    let bad = |fields: &[&str]| {
        let e = compile(&spec(fields), &btf).err().unwrap_or_else(|| panic!("{fields:?} compiled"));
        assert!(e.downcast_ref::<UsageError>().is_some(), "{fields:?}: not a usage error: {e:#}");
        e.to_string()
    };
    for (fields, want) in [
        (
            &["skb->hash", "skb->nosuch"][..],
            "--output-skb-metadata skb->nosuch: `skb->nosuch`: struct sk_buff has no member `nosuch`",
        ),
        (&["skb->makr"], "did you mean `mark`?"),
        (&["skb->cb"], "char[48]: char arrays of 1 to 16 bytes only"),
        (&["skb->dev->nd_net"], "a struct or union; pick one of its members"),
        (&["skb->len + 1"], "expected a field path"),
        (&["sk->sk_mark"], "--output-skb-metadata sk->sk_mark: "),
        (&["skb->mark", "skb->len", "skb->hash", "skb->priority", "skb->protocol"], "at most 4 fields"),
    ] {
        let message = bad(fields);
        assert!(message.contains(want), "{fields:?}: {message}");
    }
}

#[test]
fn shared_last_names_are_keyed_by_path() {
    let Some(btf) = btf("shared_last_names_are_keyed_by_path") else { return };
    let c = compile(&spec(&["skb->mark", "skb->sk->sk_mark", "skb->dev->ifindex", "skb->skb_iif"]), &btf).unwrap();
    let keys: Vec<_> = c.decoder.empty().names.iter().map(|n| n.key.clone()).collect();
    assert_eq!(keys, ["mark", "sk_mark", "ifindex", "skb_iif"]);
    let c = compile(&spec(&["skb->dev->name", "skb->sk->sk_prot_creator->name"]), &btf);
    // `struct proto`'s name is char[32]: too long, whatever the key.
    assert!(c.is_err());
}

/// Every program each backend loads, through the verifier with all four flags.
#[test]
fn the_tracers_programs_load_with_every_flag() {
    let Some(btf) = btf("the_tracers_programs_load_with_every_flag") else { return };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "not root under CI");
        return eprintln!("skipping the_tracers_programs_load_with_every_flag: not root");
    }
    let spec = SkbOutSpec {
        metadata: ["skb->mark", "skb->dev->name", "skb->pkt_type", "skb->sk"].map(String::from).to_vec(),
        cb: true,
        skb: true,
        shinfo: true,
        dump_bytes: tracer_common::skb_out::DUMP_BYTES_MAX,
    };
    let compiled = compile(&spec, &btf).unwrap();
    let mut config = Config::zeroed();
    config.offsets = btf.offsets().unwrap();
    config.snaplen = 64;
    let sizes = MapSizes {
        ring_bytes: 1 << 16,
        track_entries: 1,
        cloning_entries: 1,
        stack_entries: 1,
        skb_out_ring_bytes: 1 << 16,
        skb_out_buf_bytes: compiled.config.buffer_bytes(),
    };
    let filters =
        Filters { l2: &match_all(), l3: &match_all(), skb_expr: &match_all(), skb_metadata: &compiled.metadata };
    let load = |programs| Loader::new(&config, &compiled.config, &sizes, programs, &filters);
    let tracepoints = btf.skb_tracepoints();
    let btf_id = |name: &str| tracepoints.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("{name}")).2;
    let loader = load(Programs::Tracepoints).unwrap();
    for (program, tracepoint) in [(names::TP_KFREE_SKB, "kfree_skb"), (names::TP_SKB[0], "netif_receive_skb")] {
        let tp_btf = LoadAs {
            program,
            prog_type: BPF_PROG_TYPE_TRACING,
            expected_attach_type: BPF_TRACE_RAW_TP,
            attach_btf_id: btf_id(tracepoint),
            probe_id: 0,
        };
        loader.load(&tp_btf).unwrap_or_else(|e| panic!("tp_btf {program}: {e:#}"));
        let raw_tp =
            LoadAs { prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT, expected_attach_type: 0, attach_btf_id: 0, ..tp_btf };
        loader.load(&raw_tp).unwrap_or_else(|e| panic!("raw_tp {program}: {e:#}"));
    }
    let loader = load(Programs::Kprobes).unwrap();
    let kprobe = LoadAs {
        program: names::KPROBE_SKB[0],
        prog_type: BPF_PROG_TYPE_KPROBE,
        expected_attach_type: 0,
        attach_btf_id: 0,
        probe_id: 0,
    };
    loader.load(&kprobe).unwrap_or_else(|e| panic!("kprobe: {e:#}"));
    let multi = LoadAs { program: names::KPROBE_MULTI_SKB, expected_attach_type: BPF_TRACE_KPROBE_MULTI, ..kprobe };
    loader.load(&multi).unwrap_or_else(|e| panic!("kprobe-multi: {e:#}"));
}
