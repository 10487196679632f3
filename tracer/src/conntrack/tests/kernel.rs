//! The real tracepoint programs with `CFG_CONNTRACK`, loaded through the
//! loader and attached like a run attaches them, on traffic through a NAT
//! router: what the kernel side copies; and, ignored by default because
//! they print numbers rather than check them, what it costs per program run
//! (`cost_per_run`) and in verifier work (`verifier_work`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, RingBuf};
use regex::Regex;
use tracer_common::{
    Config, Event,
    config::CFG_CONNTRACK,
    event::{Ct, EVENT_HEADER_SIZE, FLAG_CT, record_data_len},
    names,
    skb_out::SkbOutConfig,
};

use super::netns::{NatPath, Netns, require_root, veth};
use crate::{
    btf::KernelBtf,
    config::MapSizes,
    conntrack::{Conntrack, CtNames, CtState},
    filter::match_all,
    loader::{Filters, Loader, Programs},
    probes::{Attached, tracepoint},
};

/// The tracepoint programs for `tracepoints` (a whole-name regex), loaded
/// with `flags`, and their ring buffer.
struct Traced {
    ring: RingBuf<MapData>,
    attached: Attached,
    /// Tracepoint name by probe id.
    names: Vec<String>,
}

impl Traced {
    fn attach(btf: &KernelBtf, flags: u32, tracepoints: &str) -> Self {
        let mut config = Config::zeroed();
        config.offsets = btf.offsets().expect("offsets from BTF");
        config.flags = flags;
        config.snaplen = 128;
        config.wakeup_bytes = u32::MAX;
        let sizes = MapSizes::with_ring(32 << 20);
        let mut loader = Loader::new(
            &config,
            &SkbOutConfig::zeroed(),
            &sizes,
            Programs::Tracepoints,
            &Filters { l2: &match_all(), l3: &match_all(), skb_expr: &match_all(), skb_metadata: &match_all() },
        )
        .expect("linking the eBPF object");
        let re = Regex::new(&format!("^(?:{tracepoints})$")).expect("regex");
        let targets = tracepoint::targets(btf, Some(&re));
        let mut attached = Attached::default();
        tracepoint::attach(&loader, &targets, &mut attached).expect("attaching");
        assert!(attached.skipped.is_empty(), "not attached: {:?}", attached.skipped);
        let ring = RingBuf::try_from(Map::RingBuf(loader.take_map(names::MAP_EVENTS).expect("EVENTS")))
            .expect("EVENTS is a ring buffer");
        Self { ring, attached, names: targets.into_iter().map(|t| t.name).collect() }
    }

    /// Every record waiting in the ring buffer.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(item.to_vec());
        }
        out
    }

    fn program(&self) -> &OwnedFd {
        &self.attached.programs[0]
    }
}

fn available(test: &str) -> Option<KernelBtf> {
    if !require_root(test) {
        return None;
    }
    match KernelBtf::open() {
        Ok(btf) if btf.conntrack_offsets().is_ok() => Some(btf),
        Ok(btf) => {
            let why = btf.conntrack_offsets().unwrap_err();
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            eprintln!("SKIPPED {test}: {why}");
            None
        }
        Err(e) => panic!("{test}: {e:#}"),
    }
}

#[test]
fn tracepoint_events_in_a_nat_namespace_carry_the_entry() {
    let Some(btf) = available("tracepoint_events_in_a_nat_namespace_carry_the_entry") else { return };
    let names = CtNames::from_btf(&btf);
    let path = NatPath::new("tp", 94);
    let mut with = Traced::attach(&btf, CFG_CONNTRACK, "net_dev_queue|kfree_skb");
    let mut without = Traced::attach(&btf, 0, "net_dev_queue|kfree_skb");
    let sport = 40124;
    path.send(sport, b"through nat");

    // Forwarded by the router: DNAT'd in PREROUTING, masqueraded in
    // POSTROUTING, queued on the way to the server with its entry attached.
    let (router, client) = (path.router.inode(), path.client.inode());
    let ours = |ct: &Conntrack| ct.orig.sport == sport && ct.orig.dport == 5000;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen: Vec<(Event, Option<Conntrack>)> = Vec::new();
    let found = loop {
        for r in with.drain() {
            seen.push((Event::from_bytes(&r).expect("a whole event"), Conntrack::from_record(&r, &names)));
        }
        let hit = seen.iter().find(|(e, ct)| {
            e.netns == router && with.names[e.probe_id as usize] == "net_dev_queue" && ct.as_ref().is_some_and(ours)
        });
        if let Some((_, ct)) = hit {
            break ct.clone().expect("checked");
        }
        assert!(Instant::now() < deadline, "no net_dev_queue event with the entry in the router; saw {seen:#?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(found.state, CtState::New, "{found}");
    for bit in ["CONFIRMED", "DST_NAT", "SRC_NAT", "DST_NAT_DONE", "SRC_NAT_DONE"] {
        assert!(found.status.has(bit), "{bit} missing: {found}");
    }
    assert_eq!(found.orig.src, Some(path.addr("1.1")), "{found}");
    assert_eq!(found.orig.dst, Some(path.addr("1.254")), "{found}");
    assert_eq!((found.reply.src, found.reply.sport), (Some(path.addr("2.1")), 4000), "{found}");
    assert_eq!(found.reply.dst, Some(path.addr("2.254")), "masqueraded: {found}");
    assert_eq!(found.orig.proto, 17);
    eprintln!("router: {found}");

    // The client's namespace has no conntrack user: its events carry no block.
    let client_events: Vec<_> = seen.iter().filter(|(e, _)| e.netns == client).collect();
    assert!(!client_events.is_empty(), "no event in the client's namespace");
    assert!(client_events.iter().all(|(e, ct)| e.flags & FLAG_CT == 0 && ct.is_none()), "{client_events:#?}");

    // Without the flag, nothing has a block, not even the router's events.
    let records = without.drain();
    assert!(
        records.iter().any(|r| Event::from_bytes(r).is_some_and(|e| e.netns == router)),
        "the program without the flag saw nothing in the router"
    );
    let bare = |r: &Vec<u8>| {
        let cap_len = Event::from_bytes(r).map_or(0, |e| e.cap_len);
        Ct::from_record(r).is_none() && r.len() == EVENT_HEADER_SIZE + record_data_len(cap_len)
    };
    assert!(records.iter().all(bare), "a record without the flag is the header and the packet bytes alone");
}

/// `run_time_ns` and `run_cnt` of a program, from /proc/self/fdinfo.
fn run_stats(prog: &OwnedFd) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", prog.as_raw_fd())).expect("fdinfo");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in fdinfo"))
    };
    (field("run_time_ns:"), field("run_cnt:"))
}

/// `BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)`: counted while the fd is open,
/// without touching the `kernel.bpf_stats_enabled` sysctl others may use.
fn enable_stats() -> OwnedFd {
    #[repr(C)]
    struct EnableStats {
        kind: u32,
    }
    const BPF_ENABLE_STATS: libc::c_long = 32;
    crate::sys::bpf(BPF_ENABLE_STATS, &mut EnableStats { kind: 0 }).expect("BPF_ENABLE_STATS")
}

/// ns per run of the `kfree_skb` program with and without `CFG_CONNTRACK`,
/// on drops with `_nfct` set (an INPUT rule that uses conntrack) and without
/// (the same rule without it). Both programs are attached at once, so both
/// run on every drop; the order of attaching alternates between rounds.
/// `cargo test -p tracer --lib cost_per_run -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check: floods 480k datagrams"]
fn cost_per_run() {
    let Some(btf) = available("cost_per_run") else { return };
    const BURST: usize = 5000;
    const BURSTS: usize = 8;
    const ROUNDS: usize = 6;
    let pairs: Vec<(&str, Netns, Netns)> =
        [("nfct set", 95, "-m conntrack --ctstate NEW,ESTABLISHED "), ("nfct 0", 96, "")]
            .into_iter()
            .map(|(what, net, m)| {
                let (a, b) = (Netns::new(&format!("k{net}a")), Netns::new(&format!("k{net}b")));
                veth(&a, &format!("10.{net}.0.1/24"), &b, &format!("10.{net}.0.2/24"));
                let rule = format!("iptables -A INPUT -p udp --dport 4000 {m}-j DROP");
                b.exec(&rule.split_whitespace().collect::<Vec<_>>());
                (what, a, b)
            })
            .collect();
    let _stats = enable_stats();
    // (target, flag on) → per-round ns per run.
    let mut samples: HashMap<(&str, bool), Vec<f64>> = HashMap::new();
    for round in 0..ROUNDS {
        let first_on = round % 2 == 0;
        let mut progs: Vec<(bool, Traced)> = Vec::new();
        for on in [first_on, !first_on] {
            progs.push((on, Traced::attach(&btf, if on { CFG_CONNTRACK } else { 0 }, "kfree_skb")));
        }
        for (what, a, b) in &pairs {
            let net: u8 = if *what == "nfct set" { 95 } else { 96 };
            let socket = a.udp_socket(SocketAddr::from(([10, net, 0, 1], 40000)));
            let before: Vec<_> = progs.iter().map(|(_, t)| run_stats(t.program())).collect();
            let mut blocks = 0;
            for _ in 0..BURSTS {
                for _ in 0..BURST {
                    let _ = socket.send_to(b"cost", SocketAddr::from(([10, net, 0, 2], 4000)));
                }
                for (on, t) in &mut progs {
                    let records = t.drain();
                    if *on {
                        blocks += records.iter().filter(|r| Ct::from_record(r).is_some()).count();
                    }
                }
            }
            let want_blocks = *what == "nfct set";
            assert_eq!(blocks > BURST, want_blocks, "{what}: {blocks} events with a ct block ({})", b.name);
            for ((on, t), (time0, cnt0)) in progs.iter().zip(before) {
                let (time, cnt) = run_stats(t.program());
                let ns = (time - time0) as f64 / (cnt - cnt0).max(1) as f64;
                eprintln!(
                    "round {round} {what:>8} flag {:<3}: {ns:6.1} ns/run over {} runs",
                    if *on { "on" } else { "off" },
                    cnt - cnt0
                );
                samples.entry((what, *on)).or_default().push(ns);
            }
        }
    }
    // The program attached first runs first, with the colder cache (about
    // 80 ns here): a round of each order, averaged, cancels that out.
    eprintln!("\nns per run of the kfree_skb program, {} drops per sample:", BURST * BURSTS);
    for (what, _, _) in &pairs {
        let (on, off) = (&samples[&(*what, true)], &samples[&(*what, false)]);
        let added: Vec<f64> =
            (0..ROUNDS / 2).map(|k| ((on[2 * k] - off[2 * k]) + (on[2 * k + 1] - off[2 * k + 1])) / 2.0).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        eprintln!(
            "  {what:>8}: CFG_CONNTRACK on {:6.1}, off {:6.1} (means); added per pair of rounds {:?} ns",
            mean(on),
            mean(off),
            added.iter().map(|a| a.round() as i64).collect::<Vec<_>>()
        );
    }
}

/// The verifier's work (`verified_insns`) per program with and without
/// `CFG_CONNTRACK`: the flag is in frozen `.rodata`, so without it the
/// verifier drops the conntrack path and the programs cost what they did.
/// `cargo test -p tracer --lib verifier_work -- --ignored --nocapture`
#[test]
#[ignore = "prints numbers for a person to read"]
fn verifier_work() {
    let Some(btf) = available("verifier_work") else { return };
    let sizes = MapSizes::with_ring(1 << 20);
    let kfree_skb = tracepoint::targets(&btf, Some(&Regex::new("^kfree_skb$").expect("regex")))
        .pop()
        .expect("the kfree_skb tracepoint");
    for flags in
        [0, CFG_CONNTRACK, tracer_common::config::CFG_TRACK_SKB, CFG_CONNTRACK | tracer_common::config::CFG_TRACK_SKB]
    {
        let mut config = Config::zeroed();
        config.offsets = btf.offsets().expect("offsets");
        config.flags = flags;
        config.snaplen = 128;
        let mut line = format!("flags {flags:#06x}:");
        for (programs, program, prog_type, attach_type, btf_id) in [
            (
                Programs::Tracepoints,
                names::TP_KFREE_SKB,
                crate::sys::BPF_PROG_TYPE_TRACING,
                crate::sys::BPF_TRACE_RAW_TP,
                kfree_skb.btf_id,
            ),
            (Programs::Tracepoints, names::TP_SKB[0], crate::sys::BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0),
            (
                Programs::Kprobes,
                names::KPROBE_MULTI_SKB,
                crate::sys::BPF_PROG_TYPE_KPROBE,
                crate::sys::BPF_TRACE_KPROBE_MULTI,
                0,
            ),
            (Programs::Kprobes, names::KPROBE_SKB[0], crate::sys::BPF_PROG_TYPE_KPROBE, 0, 0),
        ] {
            let loader = Loader::new(
                &config,
                &SkbOutConfig::zeroed(),
                &sizes,
                programs,
                &Filters { l2: &match_all(), l3: &match_all(), skb_expr: &match_all(), skb_metadata: &match_all() },
            )
            .expect("linking");
            let how = crate::loader::LoadAs {
                program,
                prog_type,
                expected_attach_type: attach_type,
                attach_btf_id: btf_id,
                probe_id: 0,
            };
            match loader.load(&how) {
                Ok(fd) => {
                    let info =
                        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
                    let n =
                        info.lines().find_map(|l| l.strip_prefix("verified_insns:")).unwrap_or("?").trim().to_owned();
                    line.push_str(&format!(" {program} {n}"));
                }
                Err(e) => {
                    line.push_str(&format!(" {program} refused ({})", e.to_string().lines().next().unwrap_or("")))
                }
            }
        }
        eprintln!("{line}");
    }
}
