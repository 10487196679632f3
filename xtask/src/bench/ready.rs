//! Time from spawning skbtrace to its `--ready-file` existing: what every
//! test and every user waits before the first packet is traced.

use std::time::Duration;

use super::skbtrace::{Binary, Tracer};

pub struct Config {
    pub what: &'static str,
    pub args: &'static [&'static str],
}

pub const CONFIGS: [Config; 3] = [
    Config { what: "drop point only", args: &["--filter-func", "kfree_skb"] },
    Config { what: "drop point, pcap filter", args: &["--filter-func", "kfree_skb", "udp and port 9"] },
    Config { what: "default tracepoints", args: &[] },
];

/// How long one start took, from spawn.
pub struct Timing {
    /// The ready file exists.
    pub ready: Duration,
    /// skbtrace last used CPU before sleeping in its event loop: the ready
    /// file comes before symbols are loaded and events are read.
    pub idle: Duration,
}

/// How long skbtrace must use no CPU to count as idle.
const QUIET: Duration = Duration::from_millis(200);

/// `runs` starts of `config`.
pub fn measure(bin: &Binary, config: &Config, runs: usize) -> anyhow::Result<Vec<Timing>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut tracer = Tracer::spawn(bin, config.args)?;
        let ready = tracer.wait_ready()?;
        let idle = tracer.wait_idle(QUIET)?;
        times.push(Timing { ready, idle });
        tracer.stop()?;
    }
    Ok(times)
}
