//! The BENCHMARKS.md section bodies: how each number was taken, then its tables.

use std::{fmt::Write as _, time::Duration};

use super::{
    format,
    markdown::{Table, thousands},
    overhead::{Expect, FilterCost, FilterRound, Measured, median},
    ready,
};

/// skbtrace's arguments as a shell would take them.
fn shell_args(args: &[&str]) -> String {
    if args.is_empty() {
        return "(none)".into();
    }
    let quoted: Vec<String> =
        args.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { (*a).to_owned() }).collect();
    format!("`{}`", quoted.join(" "))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn overhead(header: &str, rounds: usize, sample: Duration, results: &[Measured]) -> String {
    let secs = sample.as_secs_f64();
    let mut out = format!(
        "{header}\n\n\
         Traffic: {}-byte UDP datagrams sent with `sendmmsg` (batches of 64) by one thread in network \
         namespace A to a closed port in namespace B, over a veth pair. Every one is dropped with \
         NO_SOCKET and fires `skb:kfree_skb` once. Rate: B's `Udp NoPorts` counter per second. \
         Per configuration, {rounds} rounds of one untraced and one traced {secs} s sample in turn; \
         *ratio* is median traced / median untraced, *paired* the range of the per-round ratios. \
         skbtrace is started before each traced sample and waited for (`--ready-file`), writes to \
         /dev/null, and is stopped with SIGINT after it. *skbtrace CPU* is its user + system time \
         during the traffic, in cores (median).\n\n",
        16,
    );
    let mut rates = Table::new(&[
        "config",
        "skbtrace arguments",
        "untraced drops/s",
        "traced drops/s",
        "ratio",
        "paired",
        "target",
        "skbtrace CPU",
    ]);
    for m in results {
        let (u, t) = (median(&m.untraced), median(&m.traced));
        let paired: Vec<f64> = m.traced.iter().zip(&m.untraced).map(|(t, u)| t / u).collect();
        let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        rates.row(vec![
            m.config.key.into(),
            shell_args(m.config.args),
            thousands(u as u64),
            thousands(t as u64),
            format!("{:.3}", t / u),
            format!("{lo:.2}–{hi:.2}"),
            m.config.target.map_or("—".into(), |x| format!("≥ {x}")),
            format!("{:.2}", median(&m.cpu)),
        ]);
    }
    out.push_str(&rates.render());
    out.push('\n');
    for m in results {
        let _ = writeln!(out, "- **{}**: {}", m.config.key, m.config.what);
    }

    out.push_str(
        "\n### Every drop accounted for\n\n\
         Drops counted by `Udp NoPorts` from ready to the end of the traffic, against skbtrace's own \
         summary on exit (`N events`, `lost M events`), summed over the rounds. skbtrace sees drops \
         on the whole host, so other work on the machine may add a few events. *skbtrace CPU per \
         event*: its CPU time during the traffic over the events it printed (median).\n\n",
    );
    let mut events = Table::new(&["config", "drops", "printed", "lost", "check", "skbtrace CPU per event"]);
    for m in results {
        let seen = m.events.printed + m.events.lost;
        let check = match m.config.expect {
            Expect::None => format!("none expected, {seen} seen"),
            Expect::OnePerDrop => format!("printed + lost − drops = {:+}", seen as i64 - m.drops as i64),
            Expect::Several => format!("{:.2} events per drop", seen as f64 / m.drops.max(1) as f64),
        };
        events.row(vec![
            m.config.key.into(),
            thousands(m.drops),
            thousands(m.events.printed),
            thousands(m.events.lost),
            check,
            cpu_per_event(m),
        ]);
    }
    out.push_str(&events.render());

    let _ = write!(
        out,
        "\n### Cost per program run\n\n\
         One more traced {secs} s sample per configuration with `kernel.bpf_stats_enabled=1` (off \
         during the samples above: it adds two clock reads per run), read from /proc/PID/fdinfo of \
         skbtrace's program descriptors (`run_time_ns`, `run_cnt`). This is the time inside \
         skbtrace's programs, not the tracepoint's own dispatch.\n\n"
    );
    let mut cost = Table::new(&["config", "programs", "runs", "runs per drop", "ns per run"]);
    for m in results {
        let s = m.cost.stats;
        cost.row(vec![
            m.config.key.into(),
            format!("{} {}", s.programs, s.kind),
            thousands(s.run_cnt),
            format!("{:.2}", s.run_cnt as f64 / m.cost.drops.max(1) as f64),
            if s.run_cnt == 0 { "—".into() } else { format!("{:.0}", s.run_time_ns as f64 / s.run_cnt as f64) },
        ]);
    }
    out.push_str(&cost.render());
    out
}

/// The filter's cost per hit, from b and b-pcap5 attached together.
pub fn filter_cost(sample: Duration, cost: &FilterCost) -> String {
    let mut out = format!(
        "\n### The pcap filter's cost per hit\n\n\
         Configurations b and b-pcap5 (every drop printed, without and with a five-clause \
         expression that every drop matches) attached together, so that every drop runs both \
         programs, and sampled with bpf_stats for {} s. The one attached first runs first, with \
         a colder cache, which costs it about 80 ns: each round is one sample in each order, and \
         its added cost the mean of the two differences. (Sampled one after the other, the \
         configurations differed by ±150 ns from sample to sample.) Either way the kernel makes \
         one copy of the packet's first bytes: --snaplen's 128, or more if the filter can read \
         further (this one reads 78).\n\n",
        sample.as_secs_f64()
    );
    let mut t =
        Table::new(&["round", "b first: b / b-pcap5 ns per run", "b-pcap5 first: b / b-pcap5 ns per run", "added ns"]);
    let added: Vec<f64> = cost.rounds.iter().map(FilterRound::added).collect();
    for (i, (r, a)) in cost.rounds.iter().zip(&added).enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            format!("{:.0} / {:.0}", r.b_first.0, r.b_first.1),
            format!("{:.0} / {:.0}", r.pcap_first.0, r.pcap_first.1),
            format!("{a:+.0}"),
        ]);
    }
    t.row(vec!["median".into(), String::new(), String::new(), format!("{:+.0} (target ≤ 50)", median(&added))]);
    out.push_str(&t.render());
    out
}

/// skbtrace's CPU time per event printed, median over the rounds.
fn cpu_per_event(m: &Measured) -> String {
    if m.events.printed == 0 {
        return "—".into();
    }
    let per_drop = match m.config.expect {
        Expect::Several => m.events.printed as f64 / m.drops.max(1) as f64,
        _ => 1.0,
    };
    let us: Vec<f64> = m.cpu.iter().zip(&m.traced).map(|(cpu, rate)| cpu / (rate * per_drop) * 1e6).collect();
    format!("{:.1} µs", median(&us))
}

pub fn memory(header: &str, results: &[Measured]) -> String {
    let mut out = format!(
        "{header}\n\n\
         skbtrace's VmHWM (peak) and VmRSS from /proc/PID/status at the end of each traced sample \
         of the overhead benchmark, the largest over its rounds.\n\n"
    );
    let mut t = Table::new(&["config", "skbtrace arguments", "VmHWM", "VmRSS", "target"]);
    for m in results {
        let target = if m.config.key == "b" { "≤ 64 MiB" } else { "—" };
        t.row(vec![
            m.config.key.into(),
            shell_args(m.config.args),
            mib(m.memory.hwm_kib),
            mib(m.memory.rss_kib),
            target.into(),
        ]);
    }
    out.push_str(&t.render());
    out
}

pub fn ready(header: &str, runs: usize, results: &[(&ready::Config, Vec<ready::Timing>)]) -> String {
    let mut out = format!(
        "{header}\n\n\
         From spawning `skbtrace --ready-file PATH ARGS` to PATH existing (polled every millisecond), \
         without traffic; {runs} runs each. *Idle* is when skbtrace last used CPU before sleeping in \
         its event loop (to the 10 ms clock tick): it writes the ready file before loading kernel \
         symbols, so events of the time in between wait in the ring buffer.\n\n"
    );
    let mut t = Table::new(&["what", "skbtrace arguments", "ready (median)", "min", "max", "target", "idle (median)"]);
    let ms = |d: f64| format!("{:.0} ms", d * 1000.0);
    for (config, times) in results {
        let ready: Vec<f64> = times.iter().map(|t| t.ready.as_secs_f64()).collect();
        let idle: Vec<f64> = times.iter().map(|t| t.idle.as_secs_f64()).collect();
        t.row(vec![
            config.what.into(),
            shell_args(config.args),
            ms(median(&ready)),
            ms(ready.iter().copied().fold(f64::INFINITY, f64::min)),
            ms(ready.iter().copied().fold(0.0, f64::max)),
            "≤ 500 ms".into(),
            ms(median(&idle)),
        ]);
    }
    out.push_str(&t.render());
    out
}

pub fn format(header: &str, runs: usize, results: &[format::Rates]) -> String {
    let mut out = format!(
        "{header}\n\n\
         The tracer's bench target `format` (`tracer/benches/format.rs`, calling the library's \
         resolver and printers), release build, pinned to one CPU, {runs} runs: one IPv4/UDP drop \
         event decoded (packet bytes to tuple), and, for the text and JSON rows, resolved \
         (function, drop reason, location and process from the resolver's caches) and printed \
         into `io::sink()`. The live pipeline also reads the ring buffer: compare *skbtrace CPU \
         per event* in the overhead section.\n\n"
    );
    let mut t = Table::new(&["stage", "events/s (median)", "min", "max", "ns per event"]);
    let stages = [
        ("decode", results.iter().map(|r| r.decode).collect::<Vec<f64>>()),
        ("resolve + decode + text line", results.iter().map(|r| r.text).collect()),
        ("resolve + decode + JSON line", results.iter().map(|r| r.json).collect()),
        ("resolve + explain (stories of 4 events, each judged)", results.iter().map(|r| r.explain).collect()),
    ];
    for (stage, rates) in stages {
        let m = median(&rates);
        t.row(vec![
            stage.into(),
            thousands(m as u64),
            thousands(rates.iter().copied().fold(f64::INFINITY, f64::min) as u64),
            thousands(rates.iter().copied().fold(0.0, f64::max) as u64),
            format!("{:.0}", 1e9 / m),
        ]);
    }
    out.push_str(&t.render());
    let rss: Vec<f64> = results.iter().map(|r| r.explain_rss_mib).collect();
    out.push_str(&format!(
        "\n100,000 explain stories open at once (one event each) take {:.1} MiB of resident memory \
         (median of {runs}; growth of the bench process while they open).\n",
        median(&rss)
    ));
    out
}
