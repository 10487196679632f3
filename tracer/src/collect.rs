//! The event loop: drains the ring buffer as it fills, has each event
//! resolved and hands it to the consumers, and ends on SIGINT, SIGTERM, a
//! closed reader, the line limit, `--duration`, or a command's exit (and
//! its grace period). It returns what it saw as a
//! [`RunSummary`]; printing that is the consumers' job.

use std::{
    io,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuHashMap, RingBuf, StackTraceMap};
use tokio::io::unix::AsyncFd;
use tracer_common::{
    Event,
    event::{Ct, Nft},
    names,
};

use crate::{
    command::Running,
    filter::tunnel::TunnelFilter,
    loader::Loader,
    output::Consumers,
    resolve::Resolver,
    skb_out,
    stop::Stop,
    summary::{End, LostAt, RunSummary, Tally},
};

/// The maps the loop reads, taken from the loader.
pub struct Maps {
    ring: RingBuf<MapData>,
    lost: PerCpuHashMap<MapData, u64, u64>,
    /// What the eBPF programs log (`--debug`).
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The records of `--output-skb` and friends.
    pub skb_out: Option<skb_out::reader::Reader>,
}

impl Maps {
    /// The loop's maps, and the STACKS map for the resolver when `stacks`.
    pub fn take(loader: &mut Loader, stacks: bool) -> anyhow::Result<(Self, Option<StackTraceMap<MapData>>)> {
        let ring = RingBuf::try_from(Map::RingBuf(loader.take_map(names::MAP_EVENTS)?))
            .context("opening the EVENTS ring buffer")?;
        let lost = PerCpuHashMap::try_from(Map::PerCpuHashMap(loader.take_map(names::MAP_LOST)?))
            .context("opening the LOST map")?;
        let stacks = if stacks {
            let map = loader.take_map(names::MAP_STACKS)?;
            Some(StackTraceMap::try_from(Map::StackTraceMap(map)).context("opening the STACKS map")?)
        } else {
            None
        };
        Ok((Self { ring, lost, logger: None, skb_out: None }, stacks))
    }
}

/// What happens to each event between the ring and the consumers.
pub struct Stages<'r, 'a> {
    pub resolver: &'r mut Resolver<'a>,
    /// Drops events whose tunnel's inner packet does not match.
    pub tunnel_filter: Option<&'r TunnelFilter>,
}

/// When the loop ends, besides SIGINT and SIGTERM.
pub struct Ending {
    /// After this many events (with a command: stop printing, and wait for it).
    pub limit: Option<u64>,
    /// After this long (`--duration`).
    pub duration: Option<Duration>,
    /// When this command has exited and its grace period passed.
    pub command: Option<(Running, Duration)>,
}

/// Drains the ring until the end, feeding `consumers`; returns the summary's
/// counts (the caller adds what was attached and detached).
pub fn run(
    rt: &tokio::runtime::Runtime,
    stop: &mut Stop,
    maps: Maps,
    stages: Stages<'_, '_>,
    consumers: &mut Consumers,
    ending: Ending,
    detach: &mut dyn FnMut(),
) -> anyhow::Result<RunSummary> {
    let Stages { resolver, tunnel_filter } = stages;
    let Maps { ring, lost, mut logger, skb_out } = maps;
    let Ending { limit, duration, command } = ending;
    let (mut command, grace) = match command {
        Some((running, grace)) => (Some(running), grace),
        None => (None, Duration::ZERO),
    };
    let mut state = State {
        resolver,
        tunnel_filter,
        consumers,
        skb_out,
        tally: Tally::default(),
        short: 0,
        limit,
        command: command.is_some(),
    };
    state.consumers.start()?;
    // SAFETY: the RingBuf owns its descriptor and lives inside the AsyncFd,
    // so the descriptor stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(io::Error::from).context("watching the ring buffer")?;
    let started = Instant::now();
    let ended: anyhow::Result<End> = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let duration_at = duration.map(|d| started + d);
        let mut timeout_at = command.as_ref().and_then(|c| c.timeout).map(|t| started + t);
        let mut kill_at = None;
        let mut grace_until = None;
        // What ends the loop once the command has exited.
        let mut after_command = End::Command;
        let running = |c: &Option<Running>| c.as_ref().is_some_and(Running::running);
        loop {
            tokio::select! {
                // The ends first: under a flood the ring is always ready.
                biased;
                signal = stop.wait() => match command.as_ref().filter(|c| c.running()) {
                    // Passed on; the loop ends once the command has.
                    Some(c) => {
                        c.signal(if after_command == End::Signal { libc::SIGKILL } else { signal });
                        after_command = End::Signal;
                    }
                    None => return Ok(End::Signal),
                },
                exited = wait_for(&mut command), if running(&command) => {
                    exited.context("waiting for the command")?;
                    if after_command == End::Signal {
                        return Ok(End::Signal);
                    }
                    grace_until = Some(Instant::now() + grace);
                }
                _ = sleep_until(grace_until), if grace_until.is_some() => return Ok(after_command),
                _ = sleep_until(timeout_at), if timeout_at.is_some() && running(&command) => {
                    command.iter().for_each(|c| c.signal(libc::SIGTERM));
                    after_command = End::Timeout;
                    timeout_at = None;
                    kill_at = Some(Instant::now() + KILL_AFTER);
                }
                _ = sleep_until(kill_at), if kill_at.is_some() && running(&command) => {
                    command.iter().for_each(|c| c.signal(libc::SIGKILL));
                    kill_at = None;
                }
                _ = sleep_until(duration_at), if duration_at.is_some() => return Ok(End::Duration),
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    let drained = state.drain_and_flush(guard.get_inner_mut(), DRAIN_BATCH)?;
                    // A batch cut short leaves the ring ready, to be drained on
                    // the next turn, once the runtime has looked at its timers
                    // and signals (which it does only when the task yields).
                    if !drained.more {
                        guard.clear_ready();
                    }
                    if let Some(end) = drained.ended {
                        return Ok(end);
                    }
                    if drained.more {
                        tokio::task::yield_now().await;
                    }
                }
                _ = tick.tick() => {
                    if let Some(l) = logger.as_mut() {
                        l.flush();
                    }
                    let drained = state.drain_and_flush(ring.get_mut(), DRAIN_BATCH)?;
                    if let Some(end) = drained.ended {
                        return Ok(end);
                    }
                    if drained.more {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    });
    let end = ended?;
    // Detached first: while attached, a flood never lets the ring run dry.
    detach();
    if !matches!(end, End::Limit | End::Closed) {
        // Events already in the ring happened before the end: they count.
        state.drain_and_flush(ring.get_mut(), usize::MAX)?;
    }
    if state.short > 0 {
        log::warn!("{} ring buffer records were too short to be events; counted as lost", state.short);
    }
    if let Some(missing) = state.skb_out.as_ref().map(|r| r.missing).filter(|&n| n > 0) {
        log::warn!("{missing} events came without their --output-skb… fields: their ring buffer was full");
    }
    let lost_by_probe = lost_by_probe(&lost, state.resolver);
    Ok(RunSummary {
        events: state.tally.events,
        lost: lost_by_probe.iter().map(|l| l.lost).sum::<u64>() + state.short,
        lost_by_probe,
        drops: state.tally.drops(),
        end,
        command: command.as_ref().map(Running::outcome),
        ..RunSummary::default()
    })
}

/// After `--timeout`'s SIGTERM, how long the command has before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(2);

async fn wait_for(command: &mut Option<Running>) -> io::Result<()> {
    match command {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct State<'r, 'a> {
    resolver: &'r mut Resolver<'a>,
    tunnel_filter: Option<&'r TunnelFilter>,
    consumers: &'r mut Consumers,
    skb_out: Option<skb_out::reader::Reader>,
    tally: Tally,
    /// Records too short to be an event.
    short: u64,
    limit: Option<u64>,
    /// A command runs: the limit stops the printing, not the loop.
    command: bool,
}

impl State<'_, '_> {
    /// Drains the ring and flushes the consumers; a reader that went away
    /// (`skbtrace | head`) ends the loop like a signal, so that the run still
    /// detaches and writes its summary.
    fn drain_and_flush(&mut self, ring: &mut RingBuf<MapData>, most: usize) -> io::Result<Drained> {
        let drained = self.drain(ring, most).and_then(|drained| self.consumers.flush().map(|()| drained));
        match drained {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Drained { ended: Some(End::Closed), more: false }),
            other => other,
        }
    }

    /// Hands at most `most` records to the consumers.
    fn drain(&mut self, ring: &mut RingBuf<MapData>, most: usize) -> io::Result<Drained> {
        for _ in 0..most {
            let Some(item) = ring.next() else {
                return Ok(Drained { ended: None, more: false });
            };
            let Some(raw) = Event::from_bytes(&item) else {
                self.short += 1;
                continue;
            };
            let ct = Ct::from_record(&item);
            let nft = Nft::from_record(&item);
            drop(item);
            let skipped = self.tunnel_filter.is_some_and(|f| !f.accepts(raw.capture(), raw.packet()))
                // Only with a command, which the loop waits for.
                || self.limit.is_some_and(|l| self.tally.events >= l);
            if skipped {
                // Its record goes too, or SKB_OUT would fill up.
                if let Some(reader) = &mut self.skb_out {
                    reader.skip(&raw);
                }
                continue;
            }
            let mut event = self.resolver.resolve(raw, ct.as_ref());
            event.nft = nft.map(|n| Box::new(crate::nft_trace::NftTrace::from_wire(&n)));
            if let Some(reader) = &mut self.skb_out {
                event.skb_fields = Some(Box::new(reader.fields_for(&event.raw)));
            }
            self.tally.event(&event);
            self.consumers.event(&event)?;
            if !self.command && self.limit.is_some_and(|l| self.tally.events >= l) {
                return Ok(Drained { ended: Some(End::Limit), more: false });
            }
        }
        Ok(Drained { ended: None, more: true })
    }
}

/// Records handed over per turn of the loop: a few milliseconds' worth, so
/// that a flood faster than the consumers cannot keep the loop from seeing
/// a signal, `--duration` or the command's exit.
const DRAIN_BATCH: usize = 4096;

/// What one drain did.
struct Drained {
    /// The run ended in it (limit, closed reader).
    ended: Option<End>,
    /// It stopped at its bound with records left.
    more: bool,
}

/// Lost events per probe, named, most first.
fn lost_by_probe(map: &PerCpuHashMap<MapData, u64, u64>, resolver: &mut Resolver<'_>) -> Vec<LostAt> {
    let mut out: Vec<LostAt> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(key, per_cpu)| LostAt { probe: resolver.site_name(key).to_string(), lost: per_cpu.iter().sum() })
        .filter(|l| l.lost > 0)
        .collect();
    out.sort_by(|a, b| b.lost.cmp(&a.lost).then_with(|| a.probe.cmp(&b.probe)));
    out
}
