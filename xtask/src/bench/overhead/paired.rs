//! An added cost per program run too small to see from one bpf_stats sample
//! to the next (those differ by ±150 ns): two configurations, without and
//! with one feature, attached together, so that every drop runs both
//! programs, and sampled with bpf_stats. The one attached first runs first,
//! with a colder cache, which costs it about 80 ns: each round is one sample
//! in each order, and the added cost the mean of the two differences.

use super::{ADDR_A, Bench, BpfStats, Config, Tracer, config};

/// A feature's cost: configuration `with` is `without` plus the feature.
pub struct Pairing {
    pub title: &'static str,
    /// Configuration keys; both run on the same traffic.
    pub without: &'static str,
    pub with: &'static str,
    /// What else the reader should know about this pair.
    pub note: &'static str,
    /// The added ns per run that the design aims for.
    pub target: &'static str,
    /// A JSON pointer into `with`'s `--output-json` events that shows the
    /// feature at work when it is a non-empty string: a short sample counts them.
    pub check: Option<Check>,
}

pub struct Check {
    pub pointer: &'static str,
    pub what: &'static str,
}

/// A JSON sample this long shows what the events carry.
pub const CHECK_SAMPLE: std::time::Duration = std::time::Duration::from_millis(50);

pub const PAIRINGS: [Pairing; 4] = [
    Pairing {
        title: "The pcap filter's cost per hit",
        without: "b",
        with: "b-pcap5",
        note: "Either way the kernel makes one copy of the packet's first bytes: --snaplen's 128, or more \
               if the filter can read further (this one reads 78).",
        target: "≤ 50",
        check: None,
    },
    Pairing {
        title: "The skb expression's cost per hit",
        without: "b",
        with: "b-expr2",
        note: "The expression is a subprogram that reads the skb's fields with `bpf_probe_read_kernel` \
               (here `len`, then `dev` and the device's `ifindex`) before the event is built.",
        target: "≤ 50",
        check: None,
    },
    Pairing {
        title: "Reading the conntrack entry when the skb has one",
        without: "nf",
        with: "nf-ct",
        note: "The flood is dropped by an iptables rule on conntrack state (NETFILTER_DROP), so `_nfct` \
               is set at the drop: --output-ct reads the `nf_conn` it points to with one helper call.",
        target: "≤ 50",
        check: Some(Check { pointer: "/ct/nf_conn", what: "a conntrack entry (`ct.nf_conn` set)" }),
    },
    Pairing {
        title: "Reading the conntrack entry when the skb has none",
        without: "b",
        with: "b-ct",
        note: "The closed-port flood: UDP drops the skb's conntrack reference before the drop, so \
               --output-ct costs one load and a test of `_nfct`.",
        target: "≈ 0",
        check: Some(Check { pointer: "/ct/nf_conn", what: "a conntrack entry (`ct.nf_conn` set)" }),
    },
];

pub struct Measured {
    pub pairing: &'static Pairing,
    pub rounds: Vec<Round>,
    /// From the JSON sample: (the flood's events, those showing the feature).
    pub checked: Option<(usize, usize)>,
}

/// ns per run of (without, with), in each order.
pub struct Round {
    pub without_first: (f64, f64),
    pub with_first: (f64, f64),
}

impl Round {
    pub fn added(&self) -> f64 {
        ((self.without_first.1 - self.without_first.0) + (self.with_first.1 - self.with_first.0)) / 2.0
    }
}

impl Bench<'_> {
    pub(super) fn paired(&mut self, pairing: &'static Pairing) -> anyhow::Result<Measured> {
        let find = |key| config(key).ok_or_else(|| anyhow::anyhow!("no configuration {key}"));
        let (without, with) = (find(pairing.without)?, find(pairing.with)?);
        anyhow::ensure!(without.traffic == with.traffic, "{} and {} flood differently", without.key, with.key);
        let checked = match &pairing.check {
            Some(check) => Some(self.check(with, check)?),
            None => None,
        };
        let mut rounds = Vec::new();
        for n in 1..=self.params.rounds {
            let without_first = self.together(without, with)?;
            let (with_ns, without_ns) = self.together(with, without)?;
            let round = Round { without_first, with_first: (without_ns, with_ns) };
            eprintln!(
                "bench: {} / {} round {n}/{}: {} first {:.0} / {:.0} ns per run, {} first {:.0} / {:.0}: {:+.0} ns",
                without.key,
                with.key,
                self.params.rounds,
                without.key,
                round.without_first.0,
                round.without_first.1,
                with.key,
                round.with_first.0,
                round.with_first.1,
                round.added(),
            );
            rounds.push(round);
        }
        Ok(Measured { pairing, rounds, checked })
    }

    /// One sample with both configurations attached, `first` first; their ns per run.
    fn together(&mut self, first: &Config, second: &Config) -> anyhow::Result<(f64, f64)> {
        let bin = self.params.current;
        let tracers = [self.spawn(bin, first)?, self.spawn(bin, second)?];
        let stats = BpfStats::enable()?;
        let before = [tracers[0].prog_stats()?, tracers[1].prog_stats()?];
        self.flood(first.traffic, self.params.sample)?;
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

    /// A short `--output-json` sample of `config`: the flood's events (from
    /// its source address: skbtrace sees the whole host's drops), and those
    /// where `check.pointer` is a non-empty string.
    fn check(&mut self, config: &Config, check: &Check) -> anyhow::Result<(usize, usize)> {
        let mut args = config.args.to_vec();
        args.insert(0, "--output-json");
        let mut tracer = Tracer::spawn_capturing(self.params.current, &args)?;
        tracer.wait_ready()?;
        self.flood(config.traffic, CHECK_SAMPLE)?;
        let (_, mut events) = tracer.stop_with_json()?;
        let src = ADDR_A.to_string();
        events.retain(|e| e.pointer("/tuple/saddr").and_then(|v| v.as_str()) == Some(&src));
        let showing =
            events.iter().filter(|e| e.pointer(check.pointer).and_then(|v| v.as_str()).is_some_and(|s| !s.is_empty()));
        Ok((events.len(), showing.count()))
    }
}
