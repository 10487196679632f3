//! Resolve + decode + format throughput on one core, for `cargo xtask bench`
//! (which pins it to a CPU): `cargo bench -p tracer --bench format` prints
//! one JSON line, `{"decode": …, "text": …, "json": …, "explain": …,
//! "explain_rss_mib": …, "explain_vmrss_mib": …, "explain_vmhwm_mib": …}`:
//! events/s, then the memory 100,000 open explain stories take (the growth
//! while they open) and the whole process's resident memory with them open
//! (now and at its peak). `BENCH_EVENTS` sets how many events each measurement formats.

use std::{hint::black_box, io, time::Instant};

use etherparse::PacketBuilder;
use tracer::{
    cli::Timestamp,
    config::{Columns, ExplainSpec, Format},
    decode,
    explain::{Explainer, VerdictNotes, evidence},
    ksym::Kallsyms,
    output::{Consumer, json::JsonPrinter, text::TextPrinter},
    probes::Probe,
    resolve::{DropReasons, Resolver, TraceEvent, Wanted},
};
use tracer_common::{
    Event,
    event::{Capture, FLAG_FREED, FLAG_HAS_REASON},
};

/// A drop of a UDP datagram on loopback, as the tracepoint backend sends it.
fn drop_event() -> Event {
    let mut ev = Event::zeroed();
    ev.skb = 0xffff_8881_1f23_c400;
    ev.cpu = 1;
    ev.pid = 1;
    ev.netns = 4026531840;
    ev.mark = 0x10;
    ev.ifindex = 1;
    ev.ifname[..2].copy_from_slice(b"lo");
    ev.len = 11;
    ev.mtu = 65536;
    ev.protocol = 0x0800u16.to_be();
    ev.flags = FLAG_HAS_REASON;
    ev.reason = 3;
    ev.location = 0xffff_ffff_8100_04bc;
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(53128, 4000)
        .write(&mut pkt, b"hi")
        .expect("a packet builds");
    ev.data[..pkt.len()].copy_from_slice(&pkt);
    ev.cap_len = pkt.len() as u16;
    ev.capture = Capture::Mac as u8;
    ev
}

fn main() -> io::Result<()> {
    let n: u32 = std::env::var("BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000_000);
    let ev = drop_event();
    let kallsyms = Kallsyms::parse("ffffffff81000000 T __udp4_lib_rcv\n");
    let reasons = DropReasons::from_names([(3, "SKB_DROP_REASON_NO_SOCKET".to_owned())]);
    let probes = [Probe { name: "kfree_skb".into() }];

    let started = Instant::now();
    let mut ports = 0u64;
    for _ in 0..n {
        ports += u64::from(black_box(decode::tuple(ev.capture(), ev.packet())).dport);
    }
    let decode = f64::from(n) / started.elapsed().as_secs_f64();
    black_box(ports);

    let wanted = Wanted { timestamp: Timestamp::None, netns_names: false, tunnel: false };
    let rate = |printer: &mut dyn Consumer| -> io::Result<f64> {
        let mut resolver = Resolver::new(&kallsyms, &probes, &reasons, None, wanted);
        let started = Instant::now();
        for _ in 0..n {
            printer.event(&resolver.resolve(black_box(ev), None))?;
        }
        printer.flush()?;
        Ok(f64::from(n) / started.elapsed().as_secs_f64())
    };
    let text = rate(&mut TextPrinter::new(io::BufWriter::new(io::sink()), Timestamp::None, Columns::default()))?;
    let json = rate(&mut JsonPrinter::new(io::BufWriter::new(io::sink())))?;

    // Explain: packets of four events (three on the way, then a drop that
    // ends the story and is judged), each its own skb.
    let mut resolver = Resolver::new(&kallsyms, &probes, &reasons, None, wanted);
    let mut path = ev;
    path.flags = 0;
    let packets: Vec<[TraceEvent; 4]> = (0..1024u64)
        .map(|i| {
            let mut step = |flags, at: u64| {
                let mut raw = if flags == 0 { path } else { ev };
                raw.skb = 0xffff_8881_0000_0000 + i * 0x100;
                raw.ktime_ns = i * 1000 + at;
                raw.flags |= flags;
                resolver.resolve(raw, None)
            };
            [step(0, 1), step(0, 2), step(0, 3), step(FLAG_FREED, 4)]
        })
        .collect();
    let mut flowing = explainer(100_000);
    let started = Instant::now();
    let rounds = (n / 4).max(1);
    for round in 0..rounds {
        for e in &packets[round as usize % packets.len()] {
            flowing.event(black_box(e))?;
        }
    }
    flowing.flush()?;
    let explain = f64::from(rounds * 4) / started.elapsed().as_secs_f64();

    // Memory: 100,000 stories open at once (one event each, never freed).
    let before = status_kib("VmRSS");
    let mut open = explainer(STORIES);
    for i in 0..STORIES as u64 {
        let mut raw = path;
        raw.skb = 0xffff_8882_0000_0000 + i * 0x100;
        raw.ktime_ns = i;
        open.event(&resolver.resolve(raw, None))?;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (vmrss, vmhwm) = (status_kib("VmRSS"), status_kib("VmHWM"));
    let explain_rss_mib = mib(vmrss.saturating_sub(before));
    let (explain_vmrss_mib, explain_vmhwm_mib) = (mib(vmrss), mib(vmhwm));
    black_box(&open);
    println!(
        r#"{{"decode":{decode:.0},"text":{text:.0},"json":{json:.0},"explain":{explain:.0},"explain_rss_mib":{explain_rss_mib:.1},"explain_vmrss_mib":{explain_vmrss_mib:.1},"explain_vmhwm_mib":{explain_vmhwm_mib:.1}}}"#
    );
    Ok(())
}

/// Open stories for the memory measurement.
const STORIES: usize = 100_000;

fn explainer(max_stories: usize) -> Explainer<io::BufWriter<io::Sink>> {
    let spec = ExplainSpec { idle: std::time::Duration::from_secs(3600), max_stories };
    let env = Box::new(evidence::Host::default());
    Explainer::new(io::BufWriter::new(io::sink()), Format::Text, spec, env, VerdictNotes::default())
}

/// This process's `VmRSS` (resident memory) or `VmHWM` (its peak), KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
