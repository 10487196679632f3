//! What tracing costs the traced traffic: the drop rate of a UDP flood to a
//! closed port, untraced and traced, sample after sample in turn (the rate
//! here moves by ±5–8 % between samples, so only interleaved medians compare).
//! Along the way: whether every drop was printed or counted as lost, how much
//! CPU and memory skbtrace used, and what one run of its eBPF program costs.
//! With a baseline binary (`--baseline`), each round samples it too, between
//! the untraced and the current binary's sample.

pub mod paired;

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use paired::PAIRINGS;

use super::{
    flood::Sender,
    netns::{ADDR_A, ADDR_B, Drops, Pair, Traffic},
    skbtrace::{Binary, Events, Memory, ProgStats, Tracer},
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
/// Untraced flooding before a testbed's first sample: caches, allocator and
/// CPU frequency settle before anything counts.
const WARM_UP: Duration = Duration::from_millis(500);

/// How many events one drop should produce, to check the accounting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The filter matches nothing.
    None,
    /// One `kfree_skb` event per drop.
    OnePerDrop,
    /// `--explain`: one `kfree_skb` event per drop, which ends its skb's
    /// story (the tracepoint frees the skb), so one story per drop too.
    StoryPerDrop,
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
    /// Where the flood is dropped.
    pub traffic: Traffic,
}

impl Config {
    const fn new(key: &'static str, what: &'static str, args: &'static [&'static str], expect: Expect) -> Self {
        Config { key, what, args, target: None, expect, wait_idle: false, traffic: Traffic::ClosedPort }
    }

    const fn target(mut self, ratio: f64) -> Self {
        self.target = Some(ratio);
        self
    }

    const fn idle(mut self) -> Self {
        self.wait_idle = true;
        self
    }

    const fn traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }
}

pub const CONFIGS: [Config; 13] = [
    Config::new(
        "a",
        "drop point, pcap filter matching nothing",
        &["--filter-func", "kfree_skb", "udp and port 9"],
        Expect::None,
    )
    .target(0.93),
    Config::new(
        "a-mark",
        "drop point, mark filter matching nothing",
        &["--filter-func", "kfree_skb", "--filter-mark", "0x7777"],
        Expect::None,
    )
    .target(0.93),
    Config::new(
        "a-expr",
        "drop point, skb expression matching nothing",
        &["--filter-func", "kfree_skb", "--filter-skb-expr", "skb->mark == 0x7777"],
        Expect::None,
    )
    .target(0.93),
    Config::new("b", "drop point, every drop printed", &["--filter-func", "kfree_skb"], Expect::OnePerDrop).target(0.8),
    Config::new(
        "b-pcap5",
        "as b, with a five-clause pcap filter that every drop matches (b's ns per run + the filter's)",
        &["--filter-func", "kfree_skb", "udp and dst port 4000 and src host 10.77.0.1 and not icmp and len > 20"],
        Expect::OnePerDrop,
    )
    .target(0.6),
    Config::new(
        "b-expr2",
        "as b, with a two-clause skb expression that every drop matches (b's ns per run + the expression's)",
        &["--filter-func", "kfree_skb", "--filter-skb-expr", "skb->len > 0 && skb->dev->ifindex != 0"],
        Expect::OnePerDrop,
    )
    .target(0.6),
    Config::new(
        "b-idle",
        "as b, traffic starting once skbtrace is idle after ready",
        &["--filter-func", "kfree_skb"],
        Expect::OnePerDrop,
    )
    .target(0.8)
    .idle(),
    Config::new(
        "b-explain",
        "as b, told as stories (`--explain`): one story per drop, each judged",
        &["--filter-func", "kfree_skb", "--explain"],
        Expect::StoryPerDrop,
    )
    .target(0.7),
    Config::new(
        "b-ct",
        "as b, with the conntrack entry read (`--output-ct`); UDP cleared it before the drop",
        &["--filter-func", "kfree_skb", "--output-ct"],
        Expect::OnePerDrop,
    ),
    Config::new(
        "nf",
        "drop point, every drop printed; the flood dropped by an iptables rule on conntrack state \
         (NETFILTER_DROP, the skb holding its conntrack entry)",
        &["--filter-func", "kfree_skb"],
        Expect::OnePerDrop,
    )
    .traffic(Traffic::Conntrack),
    Config::new(
        "nf-ct",
        "as nf, with the conntrack entry read (`--output-ct`)",
        &["--filter-func", "kfree_skb", "--output-ct"],
        Expect::OnePerDrop,
    )
    .traffic(Traffic::Conntrack),
    Config::new("c", "default tracepoints, everything printed", &[], Expect::Several),
    Config::new("c-filter", "default tracepoints, pcap filter matching nothing", &["udp and port 9"], Expect::None),
];

pub fn config(key: &str) -> Option<&'static Config> {
    CONFIGS.iter().find(|c| c.key == key)
}

pub struct Params<'a> {
    pub current: &'a Binary,
    /// Sampled in the same rounds, on the configurations whose flags it takes.
    pub baseline: Option<&'a Binary>,
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
    pub current: Side,
    /// None without a baseline, or when it does not take the configuration's flags.
    pub baseline: Option<Side>,
}

/// One binary's samples of a configuration.
#[derive(Default)]
pub struct Side {
    /// Drops per second, one per round.
    pub traced: Vec<f64>,
    /// skbtrace's CPU time over each traced sample, as a fraction of one core.
    pub cpu: Vec<f64>,
    /// Drops between ready and the end of each traffic, summed over rounds.
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

impl Side {
    fn add(&mut self, t: Traced) {
        self.traced.push(t.rate);
        self.cpu.push(t.cpu);
        self.drops += t.drops;
        self.events += t.events;
        self.memory.hwm_kib = self.memory.hwm_kib.max(t.memory.hwm_kib);
        self.memory.rss_kib = self.memory.rss_kib.max(t.memory.rss_kib);
    }
}

/// Two namespaces dropping the flood one way, the sender into them and the
/// counter of their drops.
struct Testbed {
    sender: Sender,
    drops: Drops,
    /// Last, so that the namespaces go after the socket in them.
    _pair: Pair,
}

struct Bench<'a> {
    params: &'a Params<'a>,
    closed_port: Testbed,
    /// Made when a configuration first needs it.
    conntrack: Option<Testbed>,
}

/// The configurations, then the pairings whose two configurations both ran.
pub fn measure(params: &Params<'_>) -> anyhow::Result<(Vec<Measured>, Vec<paired::Measured>)> {
    let mut bench = Bench { params, closed_port: Testbed::create(Traffic::ClosedPort)?, conntrack: None };
    let results = CONFIGS
        .iter()
        .filter(|c| params.configs.is_empty() || params.configs.iter().any(|k| k == c.key))
        .map(|c| bench.config(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ran = |key| results.iter().any(|m: &Measured| m.config.key == key);
    let pairs = PAIRINGS
        .iter()
        .filter(|p| ran(p.without) && ran(p.with))
        .map(|p| bench.paired(p).with_context(|| format!("{} (paired)", p.title)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((results, pairs))
}

impl Testbed {
    fn create(traffic: Traffic) -> anyhow::Result<Self> {
        let pair = Pair::create(traffic, DST_PORT)?;
        let src = SocketAddrV4::new(ADDR_A, SRC_PORT);
        let sender = Sender::new(&pair.path_a(), src, SocketAddrV4::new(ADDR_B, DST_PORT))?;
        let mut bed = Self { sender, drops: pair.drops()?, _pair: pair };
        bed.flood(WARM_UP).context("warming up")?;
        Ok(bed)
    }

    /// Floods for `duration`; returns drops per second and the drop count.
    fn flood(&mut self, duration: Duration) -> anyhow::Result<(f64, u64)> {
        let before = self.drops.read()?;
        let max = (MAX_DATAGRAMS_PER_SEC as f64 * duration.as_secs_f64()) as u64;
        let sent = self.sender.flood(duration, max)?;
        std::thread::sleep(SETTLE);
        let drops = self.drops.read()? - before;
        // Datagrams lost before the drop point (a full backlog, say) would
        // make the drop rate understate the work done: say so.
        if sent.datagrams > drops + drops / 100 {
            eprintln!("bench: warning: sent {} datagrams but only {drops} reached the drop point", sent.datagrams);
        }
        Ok((drops as f64 / sent.elapsed.as_secs_f64(), drops))
    }
}

impl Bench<'_> {
    fn config(&mut self, config: &'static Config) -> anyhow::Result<Measured> {
        let baseline = self.params.baseline.filter(|b| b.missing(config.args).is_none());
        let mut m = Measured {
            config,
            untraced: Vec::new(),
            current: Side::default(),
            baseline: baseline.map(|_| Side::default()),
        };
        let rounds = self.params.rounds;
        let sample = self.params.sample;
        for round in 1..=rounds {
            let (untraced, _) = self.flood(config.traffic, sample)?;
            m.untraced.push(untraced);
            let mut line = format!("bench: {:<9} round {round}/{rounds}: untraced {untraced:>9.0}/s", config.key);
            let sides = baseline.into_iter().zip(m.baseline.as_mut()).chain([(self.params.current, &mut m.current)]);
            for (bin, side) in sides {
                let t = self
                    .traced(bin, config)
                    .with_context(|| format!("traced sample of configuration {} ({})", config.key, bin.revision))?;
                line += &format!(
                    ", {} {:>9.0}/s (printed {}, lost {})",
                    bin.revision, t.rate, t.events.printed, t.events.lost
                );
                side.add(t);
            }
            eprintln!("{line}");
        }
        let sides = baseline.into_iter().zip(m.baseline.as_mut()).chain([(self.params.current, &mut m.current)]);
        for (bin, side) in sides {
            side.cost = self
                .cost(bin, config)
                .with_context(|| format!("bpf_stats sample of configuration {} ({})", config.key, bin.revision))?;
        }
        Ok(m)
    }

    fn testbed(&mut self, traffic: Traffic) -> anyhow::Result<&mut Testbed> {
        Ok(match traffic {
            Traffic::ClosedPort => &mut self.closed_port,
            Traffic::Conntrack => match &mut self.conntrack {
                Some(bed) => bed,
                none => none.insert(Testbed::create(traffic)?),
            },
        })
    }

    /// Floods for one sample; returns drops per second and the drop count.
    fn flood(&mut self, traffic: Traffic, duration: Duration) -> anyhow::Result<(f64, u64)> {
        self.testbed(traffic)?.flood(duration)
    }

    fn spawn(&self, bin: &Binary, config: &Config) -> anyhow::Result<Tracer> {
        let mut tracer = Tracer::spawn(bin, config.args)?;
        tracer.wait_ready()?;
        if config.wait_idle {
            tracer.wait_idle(IDLE_QUIET)?;
        }
        Ok(tracer)
    }

    fn traced(&mut self, bin: &Binary, config: &Config) -> anyhow::Result<Traced> {
        let tracer = self.spawn(bin, config)?;
        let cpu_before = tracer.cpu_time()?;
        let started = Instant::now();
        let (rate, drops) = self.flood(config.traffic, self.params.sample)?;
        let cpu = (tracer.cpu_time()? - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
        let memory = tracer.memory()?;
        let events = tracer.stop()?;
        Ok(Traced { rate, cpu, drops, events, memory })
    }

    /// One more traced sample with the kernel's per-program statistics on.
    /// Kept out of the rate samples because counting adds two clock reads to
    /// every program run.
    fn cost(&mut self, bin: &Binary, config: &Config) -> anyhow::Result<Cost> {
        let tracer = self.spawn(bin, config)?;
        let stats = BpfStats::enable()?;
        let before = tracer.prog_stats()?;
        let (_, drops) = self.flood(config.traffic, self.params.sample)?;
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
