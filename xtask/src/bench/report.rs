//! The BENCHMARKS.md section bodies: how each number was taken, then its tables.

use std::{fmt::Write as _, time::Duration};

use super::{
    format,
    markdown::{Table, thousands},
    overhead::{Config, Expect, Measured, Params, Side, median, paired},
    ready,
    skbtrace::Binary,
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

/// The binaries measured, the baseline's first.
fn binaries<'a>(params: &'a Params<'_>) -> Vec<&'a Binary> {
    params.baseline.into_iter().chain([params.current]).collect()
}

/// A configuration's samples from each of the binaries, in their order
/// (None where the baseline does not take its flags).
fn sides(m: &Measured, many: bool) -> Vec<Option<&Side>> {
    let baseline = many.then_some(m.baseline.as_ref());
    baseline.into_iter().chain([Some(&m.current)]).collect()
}

/// `name` with the binary's revision when there are two.
fn titled(name: &str, bin: &Binary, many: bool) -> String {
    if many { format!("{name} {}", bin.revision) } else { name.to_owned() }
}

pub fn overhead(header: &str, params: &Params<'_>, results: &[Measured]) -> String {
    let secs = params.sample.as_secs_f64();
    let rounds = params.rounds;
    let bins = binaries(params);
    let many = bins.len() > 1;
    let order = if many {
        "one untraced sample, then one traced sample with each binary (the baseline first)"
    } else {
        "one untraced and one traced sample"
    };
    let mut out = format!(
        "{header}\n\n\
         Traffic: {}-byte UDP datagrams sent with `sendmmsg` (batches of 64) by one thread in network \
         namespace A to a closed port in namespace B, over a veth pair. Every one is dropped with \
         NO_SOCKET and fires `skb:kfree_skb` once. Rate: B's `Udp NoPorts` counter per second. \
         (Configurations nf and nf-ct: B drops the flood earlier, with an iptables rule on conntrack \
         state in INPUT, NETFILTER_DROP; rate: the rule's packet counter per second.) \
         Per configuration, {rounds} rounds of {order} in turn, {secs} s each; \
         *ratio* is median traced / median untraced, *paired* the range of the per-round ratios. \
         skbtrace is started before each traced sample and waited for (`--ready-file`), writes to \
         /dev/null, and is stopped with SIGINT after it. *skbtrace CPU* is its user + system time \
         during the traffic, in cores (median).\n\n",
        16,
    );
    let mut head = vec!["config".to_owned(), "skbtrace arguments".into(), "untraced drops/s".into()];
    for name in ["traced drops/s", "ratio", "paired"] {
        head.extend(bins.iter().map(|b| titled(name, b, many)));
    }
    head.push("target".into());
    head.extend(bins.iter().map(|b| titled("skbtrace CPU", b, many)));
    let mut rates = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
    for m in results {
        let u = median(&m.untraced);
        let sides = sides(m, many);
        let each =
            |f: &dyn Fn(&Side) -> String| -> Vec<String> { sides.iter().map(|s| s.map_or("—".into(), f)).collect() };
        let mut row = vec![m.config.key.into(), shell_args(m.config.args), thousands(u as u64)];
        row.extend(each(&|s| thousands(median(&s.traced) as u64)));
        row.extend(each(&|s| format!("{:.3}", median(&s.traced) / u)));
        row.extend(each(&|s| {
            let paired: Vec<f64> = s.traced.iter().zip(&m.untraced).map(|(t, u)| t / u).collect();
            let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.2}–{hi:.2}")
        }));
        row.push(m.config.target.map_or("—".into(), |x| format!("≥ {x}")));
        row.extend(each(&|s| format!("{:.2}", median(&s.cpu))));
        rates.row(row);
    }
    out.push_str(&rates.render());
    out.push('\n');
    for m in results {
        let _ = writeln!(out, "- **{}**: {}", m.config.key, m.config.what);
    }
    if let Some(baseline) = params.baseline {
        let _ = writeln!(out, "{}", unsupported(baseline, results));
    }

    out.push_str(
        "\n### Every drop accounted for\n\n\
         Drops counted (`Udp NoPorts`, or the rule's counter) from ready to the end of the traffic, \
         against skbtrace's own summary on exit (`--summary-file`'s events and lost; a binary from \
         before that flag: its `N events` and `lost M events` on stderr), summed over the rounds. \
         skbtrace sees drops on the whole host, so other work on the machine may add a few events. \
         With --explain, *stories* are the stories told (the summary's verdict counts) and *evicted* \
         those ended early because --explain-max-stories were open: each drop's event frees its skb, \
         which ends its story, so one story per event is expected and none evicted. *skbtrace CPU per \
         event*: its CPU time during the traffic over the events it printed (median).\n\n",
    );
    let mut head = vec!["config"];
    if many {
        head.push("skbtrace");
    }
    head.extend(["drops", "printed", "lost", "stories", "evicted", "check", "skbtrace CPU per event"]);
    let mut events = Table::new(&head);
    for m in results {
        for (bin, side) in bins.iter().zip(sides(m, many)) {
            let Some(side) = side else { continue };
            let e = side.events;
            let seen = e.printed + e.lost;
            let check = match m.config.expect {
                Expect::None => format!("none expected, {seen} seen"),
                Expect::OnePerDrop => format!("printed + lost − drops = {:+}", seen as i64 - side.drops as i64),
                Expect::StoryPerDrop => format!(
                    "printed + lost − drops = {:+}; stories − printed = {:+}",
                    seen as i64 - side.drops as i64,
                    e.stories as i64 - e.printed as i64
                ),
                Expect::Several => format!("{:.2} events per drop", seen as f64 / side.drops.max(1) as f64),
            };
            let explained = m.config.expect == Expect::StoryPerDrop;
            let mut row = vec![m.config.key.to_owned()];
            if many {
                row.push(bin.revision.clone());
            }
            row.extend([
                thousands(side.drops),
                thousands(e.printed),
                thousands(e.lost),
                if explained { thousands(e.stories) } else { "—".into() },
                if explained { thousands(e.evicted) } else { "—".into() },
                check,
                cpu_per_event(m.config, side),
            ]);
            events.row(row);
        }
    }
    out.push_str(&events.render());

    let _ = write!(
        out,
        "\n### Cost per program run\n\n\
         One more traced {secs} s sample per configuration (and binary) with \
         `kernel.bpf_stats_enabled=1` (off during the samples above: it adds two clock reads per \
         run), read from /proc/PID/fdinfo of skbtrace's program descriptors (`run_time_ns`, \
         `run_cnt`). This is the time inside skbtrace's programs, not the tracepoint's own \
         dispatch.\n\n"
    );
    let mut head = vec!["config"];
    if many {
        head.push("skbtrace");
    }
    head.extend(["programs", "runs", "runs per drop", "ns per run"]);
    let mut cost = Table::new(&head);
    for m in results {
        for (bin, side) in bins.iter().zip(sides(m, many)) {
            let Some(side) = side else { continue };
            let s = side.cost.stats;
            let mut row = vec![m.config.key.to_owned()];
            if many {
                row.push(bin.revision.clone());
            }
            row.extend([
                format!("{} {}", s.programs, s.kind),
                thousands(s.run_cnt),
                format!("{:.2}", s.run_cnt as f64 / side.cost.drops.max(1) as f64),
                if s.run_cnt == 0 { "—".into() } else { format!("{:.0}", s.run_time_ns as f64 / s.run_cnt as f64) },
            ]);
            cost.row(row);
        }
    }
    out.push_str(&cost.render());
    out
}

/// Which configurations the baseline sat out, by the flag it lacks.
fn unsupported(baseline: &Binary, results: &[Measured]) -> String {
    let mut by_flag: Vec<(&str, Vec<&str>)> = Vec::new();
    for m in results.iter().filter(|m| m.baseline.is_none()) {
        let flag = baseline.missing(m.config.args).unwrap_or("?");
        match by_flag.iter_mut().find(|(f, _)| *f == flag) {
            Some((_, keys)) => keys.push(m.config.key),
            None => by_flag.push((flag, vec![m.config.key])),
        }
    }
    if by_flag.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by_flag.iter().map(|(flag, keys)| format!("{flag} ({})", keys.join(", "))).collect();
    format!("\n—: skbtrace {} has no {}.", baseline.revision, parts.join(", no "))
}

/// A feature's added cost per program run, from its pair of configurations
/// attached together.
pub fn paired(sample: Duration, measured: &paired::Measured) -> String {
    let p = measured.pairing;
    let (without, with) = (p.without, p.with);
    let mut out = format!(
        "\n### {}\n\n\
         Configurations {without} and {with} (above) attached together, so that every drop runs \
         both programs, and sampled with bpf_stats for {} s. The one attached first runs first, \
         with a colder cache, which costs it about 80 ns: each round is one sample in each order, \
         and the added cost the mean of the two differences. (Sampled one after the other, the \
         configurations differed by ±150 ns from sample to sample.) {}",
        p.title,
        sample.as_secs_f64(),
        p.note,
    );
    if let (Some(check), Some((events, showing))) = (&p.check, measured.checked) {
        let _ = write!(
            out,
            " In a {} ms sample of {with} with --output-json, {} of the flood's {} events carried {}.",
            paired::CHECK_SAMPLE.as_millis(),
            thousands(showing as u64),
            thousands(events as u64),
            check.what
        );
    }
    out.push_str("\n\n");
    let mut t = Table::new(&[
        "round",
        &format!("{without} first: {without} / {with} ns per run"),
        &format!("{with} first: {without} / {with} ns per run"),
        "added ns",
    ]);
    let added: Vec<f64> = measured.rounds.iter().map(paired::Round::added).collect();
    for (i, (r, a)) in measured.rounds.iter().zip(&added).enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            format!("{:.0} / {:.0}", r.without_first.0, r.without_first.1),
            format!("{:.0} / {:.0}", r.with_first.0, r.with_first.1),
            format!("{a:+.0}"),
        ]);
    }
    t.row(vec!["median".into(), String::new(), String::new(), format!("{:+.0} (target {})", median(&added), p.target)]);
    out.push_str(&t.render());
    out
}

/// skbtrace's CPU time per event printed, median over the rounds.
fn cpu_per_event(config: &Config, side: &Side) -> String {
    if side.events.printed == 0 {
        return "—".into();
    }
    let per_drop = match config.expect {
        Expect::Several => side.events.printed as f64 / side.drops.max(1) as f64,
        _ => 1.0,
    };
    let us: Vec<f64> = side.cpu.iter().zip(&side.traced).map(|(cpu, rate)| cpu / (rate * per_drop) * 1e6).collect();
    format!("{:.1} µs", median(&us))
}

/// The largest memory a binary may take, from the targets.
const MEMORY_TARGET: &str = "≤ 64 MiB";

pub fn memory(header: &str, params: &Params<'_>, results: &[Measured]) -> String {
    let bins = binaries(params);
    let many = bins.len() > 1;
    let mut out = format!(
        "{header}\n\n\
         skbtrace's VmHWM (peak) and VmRSS from /proc/PID/status at the end of each traced sample \
         of the overhead benchmark, the largest over its rounds.\n\n"
    );
    let mut head = vec!["config".to_owned(), "skbtrace arguments".into()];
    for name in ["VmHWM", "VmRSS"] {
        head.extend(bins.iter().map(|b| titled(name, b, many)));
    }
    head.push("target".into());
    let mut t = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
    for m in results {
        let sides = sides(m, many);
        let mut row = vec![m.config.key.into(), shell_args(m.config.args)];
        row.extend(sides.iter().map(|s| s.map_or("—".into(), |s| mib(s.memory.hwm_kib))));
        row.extend(sides.iter().map(|s| s.map_or("—".into(), |s| mib(s.memory.rss_kib))));
        row.push(MEMORY_TARGET.into());
        t.row(row);
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

/// One tree's runs of the format benchmark.
pub struct FormatRuns<'a> {
    pub revision: &'a str,
    pub method: format::Method,
    pub rates: &'a [format::Rates],
}

/// The targets of the throughput, lines per second.
const LINES_TARGET: &str = "≥ 2,000,000";

pub fn format(header: &str, runs: usize, measured: &[FormatRuns<'_>]) -> String {
    let many = measured.len() > 1;
    let mut out = format!("{header}\n\n");
    for m in measured {
        let whose = if many { format!("skbtrace {}: ", m.revision) } else { String::new() };
        let how = match m.method {
            format::Method::BenchTarget => {
                "the tracer's bench target `format` (`tracer/benches/format.rs`, calling the library's \
                 resolver and printers): one IPv4/UDP drop event decoded (packet bytes to tuple), and, for \
                 the text and JSON rows, resolved (function, drop reason, location and process from the \
                 resolver's caches) and printed into `io::sink()`"
            }
            format::Method::IgnoredTest => {
                "the tracer's ignored test `output::tests::bench_decode_and_format` (the printers lived in \
                 the binary crate then): one IPv4/UDP drop event decoded (packet bytes to tuple) and, with \
                 names already resolved, printed into `io::sink()`"
            }
        };
        let _ = writeln!(out, "{whose}{how}.");
    }
    let _ = write!(
        out,
        "\nEach in a release build, pinned to one CPU, {runs} runs{}. The live pipeline also reads the \
         ring buffer: compare *skbtrace CPU per event* in the overhead section.\n\n",
        if many { " each, in turn" } else { "" }
    );
    let mut head = vec!["stage".to_owned()];
    for m in measured {
        let rev = if many { format!(" {}", m.revision) } else { String::new() };
        head.extend([format!("events/s{rev} (median)"), format!("min–max{rev}"), format!("ns per event{rev}")]);
    }
    head.push("target".into());
    let mut t = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
    type Stage = fn(&format::Rates) -> Option<f64>;
    let stages: [(&str, Stage, &str); 4] = [
        ("decode", |r| Some(r.decode), "—"),
        ("decode + text line", |r| Some(r.text), LINES_TARGET),
        ("decode + JSON line", |r| Some(r.json), LINES_TARGET),
        ("explain (stories of 4 events, each judged)", |r| r.explain.map(|e| e.rate), "—"),
    ];
    for (stage, rate, target) in stages {
        let mut row = vec![stage.to_owned()];
        for m in measured {
            let rates: Vec<f64> = m.rates.iter().filter_map(rate).collect();
            if rates.is_empty() {
                row.extend(["—".into(), "—".into(), "—".into()]);
                continue;
            }
            let med = median(&rates);
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            row.extend([thousands(med as u64), format!("{}–{}", thousands(lo as u64), thousands(hi as u64))]);
            row.push(format!("{:.0}", 1e9 / med));
        }
        row.push(target.into());
        t.row(row);
    }
    out.push_str(&t.render());
    for m in measured {
        let explain: Vec<format::Explain> = m.rates.iter().filter_map(|r| r.explain).collect();
        if explain.is_empty() {
            continue;
        }
        let of = |f: fn(&format::Explain) -> f64| median(&explain.iter().map(f).collect::<Vec<f64>>());
        let whose = if many { format!("skbtrace {}'s", m.revision) } else { "the".into() };
        let _ = write!(
            out,
            "\nWith 100,000 explain stories open at once (one event each), {whose} bench process grew by \
             {:.1} MiB while they opened, and then had VmRSS {:.1} MiB, VmHWM {:.1} MiB (target for the \
             whole process: {MEMORY_TARGET}); medians of {runs}.\n",
            of(|e| e.growth_mib),
            of(|e| e.vmrss_mib),
            of(|e| e.vmhwm_mib),
        );
    }
    out
}
