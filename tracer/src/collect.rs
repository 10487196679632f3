//! The event loop: drains the ring buffer as it fills, has each event
//! resolved and hands it to the consumers, and ends on SIGINT, SIGTERM, a
//! closed reader or the line limit. It returns what it saw as a
//! [`RunSummary`]; printing that is the consumers' job.

use std::{io, time::Duration};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuHashMap, RingBuf, StackTraceMap};
use tokio::io::unix::AsyncFd;
use tracer_common::{Event, names};

use crate::{
    config::EndSpec,
    loader::Loader,
    output::Consumers,
    resolve::Resolver,
    stop::Stop,
    summary::{End, LostAt, RunSummary, Tally},
};

/// The maps the loop reads, taken from the loader.
pub struct Maps {
    ring: RingBuf<MapData>,
    lost: PerCpuHashMap<MapData, u64, u64>,
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
        Ok((Self { ring, lost }, stacks))
    }
}

/// Drains the ring until a stop, feeding `consumers`; returns the summary's
/// counts (the caller adds what was attached and detached).
pub fn run(
    rt: &tokio::runtime::Runtime,
    stop: &mut Stop,
    maps: Maps,
    mut logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    resolver: &mut Resolver<'_>,
    consumers: &mut Consumers,
    end: &EndSpec,
) -> anyhow::Result<RunSummary> {
    let Maps { ring, lost } = maps;
    let mut state = State { resolver, consumers, tally: Tally::default(), short: 0, limit: end.limit };
    state.consumers.start()?;
    // SAFETY: the RingBuf owns its descriptor and lives inside the AsyncFd,
    // so the descriptor stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(io::Error::from).context("watching the ring buffer")?;
    let ended: anyhow::Result<End> = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = stop.wait() => return Ok(End::Signal),
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    let ended = state.drain(guard.get_inner_mut())?;
                    guard.clear_ready();
                    state.consumers.flush()?;
                    if let Some(end) = ended {
                        return Ok(end);
                    }
                }
                _ = tick.tick() => {
                    if let Some(l) = logger.as_mut() {
                        l.flush();
                    }
                    let ended = state.drain(ring.get_mut())?;
                    state.consumers.flush()?;
                    if let Some(end) = ended {
                        return Ok(end);
                    }
                }
            }
        }
    });
    let end = ended?;
    if end == End::Signal {
        // Events already in the ring happened before the signal: they count.
        state.drain(ring.get_mut())?;
        state.consumers.flush()?;
    }
    if state.short > 0 {
        log::warn!("{} ring buffer records were too short to be events; counted as lost", state.short);
    }
    let lost_by_probe = lost_by_probe(&lost, state.resolver);
    Ok(RunSummary {
        events: state.tally.events,
        lost: lost_by_probe.iter().map(|l| l.lost).sum::<u64>() + state.short,
        lost_by_probe,
        drops: state.tally.drops(),
        end,
        ..RunSummary::default()
    })
}

struct State<'r, 'a> {
    resolver: &'r mut Resolver<'a>,
    consumers: &'r mut Consumers,
    tally: Tally,
    /// Records too short to be an event.
    short: u64,
    limit: Option<u64>,
}

impl State<'_, '_> {
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> io::Result<Option<End>> {
        while let Some(item) = ring.next() {
            let Some(raw) = Event::from_bytes(&item) else {
                self.short += 1;
                continue;
            };
            drop(item);
            let event = self.resolver.resolve(raw);
            self.tally.event(&event);
            self.consumers.event(&event)?;
            if self.limit.is_some_and(|l| self.tally.events >= l) {
                return Ok(Some(End::Limit));
            }
        }
        Ok(None)
    }
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
