//! What tracing costs the traced traffic: the drop rate of a UDP flood to a
//! closed port, untraced and traced, sample after sample in turn (the rate
//! here moves by ±5–8 % between samples, so only interleaved medians compare).
//! Along the way: whether every drop was printed or counted as lost, how much
//! CPU and memory skbtrace used, and what one run of its eBPF program costs.

use std::{
    net::SocketAddrV4,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    flood::Sender,
    netns::{ADDR_A, ADDR_B, Pair, UdpCounters},
    skbtrace::{Events, Memory, ProgStats, Tracer},
};

const SRC_PORT: u16 = 40_000;
/// Nobody listens here; not 9, which the non-matching filters name.
const DST_PORT: u16 = 4_000;
/// The count bound of one sample, per second of it: far above what one
/// thread sends, so time ends the sample; this only keeps the loop bounded.
const MAX_DATAGRAMS_PER_SEC: u64 = 20_000_000;
/// How long skbtrace must use no CPU to count as idle (`wait_idle` configurations).
const IDLE_QUIET: Duration = Duration::from_millis(100);
/// Time for the last datagrams to leave the receive backlog before the counters are read.
const SETTLE: Duration = Duration::from_millis(50);

/// How many events one drop should produce, to check the accounting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The filter matches nothing.
    None,
    /// One `kfree_skb` event per drop.
    OnePerDrop,
    /// Every tracepoint on the packet's path.
    Several,
}

pub struct Config {
    pub key: &'static str,
    pub what: &'static str,
    pub args: &'static [&'static str],
    /// Traced rate / untraced rate that the design aims for.
    pub target: Option<f64>,
    pub expect: Expect,
    /// Start the traffic only once skbtrace sleeps in its event loop, not
    /// at the ready file (which it writes before it starts reading events).
    pub wait_idle: bool,
}

pub const CONFIGS: [Config; 7] = [
    Config {
        key: "a",
        what: "drop point, pcap filter matching nothing",
        args: &["--filter-func", "kfree_skb", "udp and port 9"],
        target: Some(0.93),
        expect: Expect::None,
        wait_idle: false,
    },
    Config {
        key: "a-mark",
        what: "drop point, mark filter matching nothing",
        args: &["--filter-func", "kfree_skb", "--filter-mark", "0x7777"],
        target: Some(0.93),
        expect: Expect::None,
        wait_idle: false,
    },
    Config {
        key: "b",
        what: "drop point, every drop printed",
        args: &["--filter-func", "kfree_skb"],
        target: Some(0.6),
        expect: Expect::OnePerDrop,
        wait_idle: false,
    },
    Config {
        key: "b-pcap5",
        what: "as b, with a five-clause pcap filter that every drop matches (b's ns per run + the filter's)",
        args: &["--filter-func", "kfree_skb", "udp and dst port 4000 and src host 10.77.0.1 and not icmp and len > 20"],
        target: Some(0.6),
        expect: Expect::OnePerDrop,
        wait_idle: false,
    },
    Config {
        key: "b-idle",
        what: "as b, traffic starting once skbtrace is idle after ready",
        args: &["--filter-func", "kfree_skb"],
        target: Some(0.6),
        expect: Expect::OnePerDrop,
        wait_idle: true,
    },
    Config {
        key: "c",
        what: "default tracepoints, everything printed",
        args: &[],
        target: None,
        expect: Expect::Several,
        wait_idle: false,
    },
    Config {
        key: "c-filter",
        what: "default tracepoints, pcap filter matching nothing",
        args: &["udp and port 9"],
        target: None,
        expect: Expect::None,
        wait_idle: false,
    },
];

pub struct Params<'a> {
    pub bin: &'a Path,
    pub rounds: usize,
    pub sample: Duration,
    /// Keys of the configurations to run; all when empty.
    pub configs: &'a [String],
}

/// One configuration's results.
pub struct Measured {
    pub config: &'static Config,
    /// Drops per second, one per round.
    pub untraced: Vec<f64>,
    pub traced: Vec<f64>,
    /// skbtrace's CPU time over each traced sample, as a fraction of one core.
    pub cpu: Vec<f64>,
    /// NoPorts drops between ready and the end of each traffic, summed over rounds.
    pub drops: u64,
    /// skbtrace's summaries, summed over rounds.
    pub events: Events,
    /// The largest VmHWM and VmRSS seen at the end of a traced sample.
    pub memory: Memory,
    /// From the extra sample taken with `kernel.bpf_stats_enabled`.
    pub cost: Cost,
}

#[derive(Clone, Copy, Default)]
pub struct Cost {
    pub stats: ProgStats,
    pub drops: u64,
}

struct Traced {
    rate: f64,
    cpu: f64,
    drops: u64,
    events: Events,
    memory: Memory,
}

struct Bench<'a> {
    params: &'a Params<'a>,
    sender: Sender,
    counters: UdpCounters,
}

/// The pcap filter's cost per program run: configurations b and b-pcap5
/// (every drop printed, without and with a five-clause expression that
/// matches them) attached together under bpf_stats, so that both programs
/// run on every drop.
pub struct FilterCost {
    pub rounds: Vec<FilterRound>,
}

/// Two samples: the one attached first runs first, with the colder cache,
/// which costs it about 80 ns; each order once cancels that out.
pub struct FilterRound {
    /// ns per run of (b, b-pcap5), b attached first.
    pub b_first: (f64, f64),
    /// ns per run of (b, b-pcap5), b-pcap5 attached first.
    pub pcap_first: (f64, f64),
}

impl FilterRound {
    pub fn added(&self) -> f64 {
        ((self.b_first.1 - self.b_first.0) + (self.pcap_first.1 - self.pcap_first.0)) / 2.0
    }
}

pub fn measure(params: &Params<'_>) -> anyhow::Result<(Vec<Measured>, Option<FilterCost>)> {
    let pair = Pair::create()?;
    let sender = Sender::new(&pair.path_a(), SocketAddrV4::new(ADDR_A, SRC_PORT), SocketAddrV4::new(ADDR_B, DST_PORT))?;
    let counters = UdpCounters::open(&pair.path_b())?;
    let mut bench = Bench { params, sender, counters };
    // Caches, allocator and CPU frequency settle before anything counts.
    bench.untraced(Duration::from_millis(500)).context("warming up")?;
    let results = CONFIGS
        .iter()
        .filter(|c| params.configs.is_empty() || params.configs.iter().any(|k| k == c.key))
        .map(|c| bench.config(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let find = |key| results.iter().find(|m| m.config.key == key).map(|m| m.config);
    let filter = match (find("b"), find("b-pcap5")) {
        (Some(without), Some(with)) => Some(bench.filter_cost(without, with)?),
        _ => None,
    };
    drop(pair);
    Ok((results, filter))
}

impl Bench<'_> {
    fn config(&mut self, config: &'static Config) -> anyhow::Result<Measured> {
        let mut m = Measured {
            config,
            untraced: Vec::new(),
            traced: Vec::new(),
            cpu: Vec::new(),
            drops: 0,
            events: Events::default(),
            memory: Memory::default(),
            cost: Cost::default(),
        };
        let rounds = self.params.rounds;
        for round in 1..=rounds {
            let untraced = self.untraced(self.params.sample)?;
            let t = self.traced(config).with_context(|| format!("traced sample of configuration {}", config.key))?;
            eprintln!(
                "bench: {:<8} round {round}/{rounds}: untraced {:>9.0}/s, traced {:>9.0}/s, printed {}, lost {}",
                config.key, untraced, t.rate, t.events.printed, t.events.lost
            );
            m.untraced.push(untraced);
            m.traced.push(t.rate);
            m.cpu.push(t.cpu);
            m.drops += t.drops;
            m.events.printed += t.events.printed;
            m.events.lost += t.events.lost;
            m.memory.hwm_kib = m.memory.hwm_kib.max(t.memory.hwm_kib);
            m.memory.rss_kib = m.memory.rss_kib.max(t.memory.rss_kib);
        }
        m.cost = self.cost(config).with_context(|| format!("bpf_stats sample of configuration {}", config.key))?;
        Ok(m)
    }

    fn filter_cost(&mut self, without: &Config, with: &Config) -> anyhow::Result<FilterCost> {
        let mut cost = FilterCost { rounds: Vec::new() };
        for n in 1..=self.params.rounds {
            let b_first = self.together(without, with)?;
            let (with_ns, without_ns) = self.together(with, without)?;
            let round = FilterRound { b_first, pcap_first: (without_ns, with_ns) };
            eprintln!(
                "bench: filter cost round {n}/{}: b first {:.0} / {:.0} ns per run, b-pcap5 first {:.0} / {:.0}: {:+.0} ns",
                self.params.rounds,
                round.b_first.0,
                round.b_first.1,
                round.pcap_first.0,
                round.pcap_first.1,
                round.added(),
            );
            cost.rounds.push(round);
        }
        Ok(cost)
    }

    /// One sample with both configurations attached, `first` first; their ns per run.
    fn together(&mut self, first: &Config, second: &Config) -> anyhow::Result<(f64, f64)> {
        let tracers = [self.spawn(first)?, self.spawn(second)?];
        let stats = BpfStats::enable()?;
        let before = [tracers[0].prog_stats()?, tracers[1].prog_stats()?];
        self.flood(self.params.sample)?;
        let after = [tracers[0].prog_stats()?, tracers[1].prog_stats()?];
        drop(stats);
        for tracer in tracers {
            tracer.stop()?;
        }
        let ns = |i: usize| {
            (after[i].run_time_ns - before[i].run_time_ns) as f64 / (after[i].run_cnt - before[i].run_cnt).max(1) as f64
        };
        Ok((ns(0), ns(1)))
    }

    /// Floods for `duration`; returns drops per second.
    fn untraced(&mut self, duration: Duration) -> anyhow::Result<f64> {
        Ok(self.flood(duration)?.0)
    }

    /// Floods for one sample; returns drops per second and the drop count.
    fn flood(&mut self, duration: Duration) -> anyhow::Result<(f64, u64)> {
        let before = self.counters.no_ports()?;
        let max = (MAX_DATAGRAMS_PER_SEC as f64 * duration.as_secs_f64()) as u64;
        let sent = self.sender.flood(duration, max)?;
        std::thread::sleep(SETTLE);
        let drops = self.counters.no_ports()? - before;
        // Datagrams lost before UDP (a full backlog, say) would make the
        // NoPorts rate understate the work done: say so.
        if sent.datagrams > drops + drops / 100 {
            eprintln!("bench: warning: sent {} datagrams but only {drops} reached the closed port", sent.datagrams);
        }
        Ok((drops as f64 / sent.elapsed.as_secs_f64(), drops))
    }

    fn spawn(&self, config: &Config) -> anyhow::Result<Tracer> {
        let mut tracer = Tracer::spawn(self.params.bin, config.args)?;
        tracer.wait_ready()?;
        if config.wait_idle {
            tracer.wait_idle(IDLE_QUIET)?;
        }
        Ok(tracer)
    }

    fn traced(&mut self, config: &Config) -> anyhow::Result<Traced> {
        let tracer = self.spawn(config)?;
        let cpu_before = tracer.cpu_time()?;
        let started = Instant::now();
        let (rate, drops) = self.flood(self.params.sample)?;
        let cpu = (tracer.cpu_time()? - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
        let memory = tracer.memory()?;
        let events = tracer.stop()?;
        Ok(Traced { rate, cpu, drops, events, memory })
    }

    /// One more traced sample with the kernel's per-program statistics on.
    /// Kept out of the rate samples because counting adds two clock reads to
    /// every program run.
    fn cost(&mut self, config: &Config) -> anyhow::Result<Cost> {
        let tracer = self.spawn(config)?;
        let stats = BpfStats::enable()?;
        let before = tracer.prog_stats()?;
        let (_, drops) = self.flood(self.params.sample)?;
        let after = tracer.prog_stats()?;
        drop(stats);
        tracer.stop()?;
        Ok(Cost {
            stats: ProgStats {
                programs: after.programs,
                kind: after.kind,
                run_time_ns: after.run_time_ns - before.run_time_ns,
                run_cnt: after.run_cnt - before.run_cnt,
            },
            drops,
        })
    }
}

/// `kernel.bpf_stats_enabled=1` until dropped, then back to what it was.
struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> anyhow::Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(Self { previous: previous.trim().to_owned() })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.previous);
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
