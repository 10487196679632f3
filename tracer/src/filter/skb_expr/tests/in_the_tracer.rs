//! The tracer's own programs with an expression spliced in by the loader, through the verifier
//! as `tp_btf` and as `raw_tp`: the call site in `capture.rs`, the calling convention and the
//! stack the caller leaves; and the kprobe programs, which load (as a kprobe and as the
//! kprobe-multi program) on a kernel that cannot attach them.

use super::{compile, kernel_available, kernel_btf};
use crate::config::MapSizes;
use crate::filter::match_all;
use crate::loader::{Filters, LoadAs, Loader, Programs};
use crate::sys::{
    BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_TRACING, BPF_TRACE_KPROBE_MULTI, BPF_TRACE_RAW_TP,
};
use tracer_common::Config;
use tracer_common::config::CFG_SKB_EXPR;
use tracer_common::names;

#[test]
fn the_tracers_programs_load_with_an_expression() {
    let Some(btf) = kernel_btf("the_tracers_programs_load_with_an_expression") else { return };
    if !kernel_available("the_tracers_programs_load_with_an_expression") {
        return;
    }
    let mut config = Config::zeroed();
    config.offsets = btf.offsets().unwrap();
    config.flags = CFG_SKB_EXPR;
    config.snaplen = 64;
    let sizes = MapSizes { ring_bytes: 1 << 16, track_entries: 1, cloning_entries: 1, stack_entries: 1 };
    let tracepoints = btf.skb_tracepoints();
    // Without the flag the call is dead code, and match-all is spliced in.
    let plain = Config { flags: 0, ..config };
    let loader = Loader::new(
        &plain,
        &sizes,
        Programs::Tracepoints,
        &Filters { l2: &match_all(), l3: &match_all(), skb_expr: &match_all() },
    )
    .unwrap();
    let kfree_skb = tracepoints.iter().find(|t| t.0 == "kfree_skb").expect("kfree_skb").2;
    let tp_btf = LoadAs {
        program: names::TP_KFREE_SKB,
        prog_type: BPF_PROG_TYPE_TRACING,
        expected_attach_type: BPF_TRACE_RAW_TP,
        attach_btf_id: kfree_skb,
        probe_id: 0,
    };
    loader.load(&tp_btf).unwrap_or_else(|e| panic!("without an expression: {e:#}"));
    let btf_id = |name: &str| tracepoints.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("{name}")).2;
    for expr in ["skb->len > 100 && skb->dev->ifindex == 4", "skb->dev->name == \"lo\" || skb->protocol == 0x86dd"] {
        let (_, insns) = compile(expr, &btf).unwrap();
        let loader = Loader::new(
            &config,
            &sizes,
            Programs::Tracepoints,
            &Filters { l2: &match_all(), l3: &match_all(), skb_expr: &insns },
        )
        .unwrap();
        for (program, tracepoint) in [("tp_kfree_skb", "kfree_skb"), ("tp_skb_0", "netif_receive_skb")] {
            let tp_btf = LoadAs {
                program,
                prog_type: BPF_PROG_TYPE_TRACING,
                expected_attach_type: BPF_TRACE_RAW_TP,
                attach_btf_id: btf_id(tracepoint),
                probe_id: 0,
            };
            loader.load(&tp_btf).unwrap_or_else(|e| panic!("{expr}: tp_btf {program}: {e:#}"));
            let raw_tp =
                LoadAs { prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT, expected_attach_type: 0, attach_btf_id: 0, ..tp_btf };
            loader.load(&raw_tp).unwrap_or_else(|e| panic!("{expr}: raw_tp {program}: {e:#}"));
        }
        let loader = Loader::new(
            &config,
            &sizes,
            Programs::Kprobes,
            &Filters { l2: &match_all(), l3: &match_all(), skb_expr: &insns },
        )
        .unwrap();
        let kprobe = LoadAs {
            program: names::KPROBE_SKB[0],
            prog_type: BPF_PROG_TYPE_KPROBE,
            expected_attach_type: 0,
            attach_btf_id: 0,
            probe_id: 0,
        };
        loader.load(&kprobe).unwrap_or_else(|e| panic!("{expr}: kprobe: {e:#}"));
        let multi = LoadAs { program: names::KPROBE_MULTI_SKB, expected_attach_type: BPF_TRACE_KPROBE_MULTI, ..kprobe };
        loader.load(&multi).unwrap_or_else(|e| panic!("{expr}: kprobe-multi: {e:#}"));
    }
}
