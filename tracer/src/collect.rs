//! The event loop: drains the ring buffer as it fills, resolves names, feeds
//! the printers, and ends cleanly on SIGINT, SIGTERM, a closed reader or the
//! line limit, reporting lost events on the way out.

use std::{io, time::Duration};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuHashMap, RingBuf, StackTraceMap};
use tokio::io::unix::AsyncFd;
use tracer_common::Event;

use crate::{
    cli::{Args, Timestamp},
    decode,
    ksym::Kallsyms,
    loader::Loader,
    output::{Record, Sinks},
    probes::Attached,
    resolve::{DropReasons, Processes, Sites, c_str},
    stop::Stop,
};

/// Why the loop stopped.
enum End {
    Signal,
    Limit,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    rt: &tokio::runtime::Runtime,
    stop: &mut Stop,
    loader: &mut Loader,
    mut logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    attached: &Attached,
    kallsyms: &Kallsyms,
    reasons: &DropReasons,
    mut sinks: Sinks,
    args: &Args,
) -> anyhow::Result<()> {
    let ring = RingBuf::try_from(Map::RingBuf(loader.take_map("EVENTS")?)).context("opening the EVENTS ring buffer")?;
    let stacks: Option<StackTraceMap<MapData>> = if args.output_stack {
        Some(StackTraceMap::try_from(Map::StackTraceMap(loader.take_map("STACKS")?)).context("opening STACKS")?)
    } else {
        None
    };
    let lost_map: PerCpuHashMap<MapData, u64, u64> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(loader.take_map("LOST")?)).context("opening the LOST map")?;

    let mut state = State {
        sites: Sites::new(kallsyms, &attached.probes, reasons),
        processes: Processes::default(),
        stacks,
        kallsyms,
        timestamp: args.timestamp,
        boot_offset_ns: boot_offset_ns(),
        last_ktime: 0,
        printed: 0,
        limit: args.output_limit_lines,
    };

    sinks.header()?;
    // SAFETY: the RingBuf owns its descriptor and lives inside the AsyncFd,
    // so the descriptor stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(io::Error::from).context("watching the ring buffer")?;
    let result: anyhow::Result<End> = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = stop.wait() => return Ok(End::Signal),
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    let end = drain(guard.get_inner_mut(), &mut state, &mut sinks)?;
                    guard.clear_ready();
                    sinks.flush()?;
                    if let Some(end) = end {
                        return Ok(end);
                    }
                }
                _ = tick.tick() => {
                    if let Some(l) = logger.as_mut() {
                        l.flush();
                    }
                    let end = drain(ring.get_mut(), &mut state, &mut sinks)?;
                    sinks.flush()?;
                    if let Some(end) = end {
                        return Ok(end);
                    }
                }
            }
        }
    });
    if let End::Signal = result? {
        // Events already in the ring happened before the signal: print them.
        drain(ring.get_mut(), &mut state, &mut sinks)?;
    }

    let lost = count_lost(&lost_map);
    sinks.summary(state.printed, lost)?;
    sinks.flush()?;
    if lost > 0 {
        note!("lost {lost} events (the ring buffer was full; try a larger --ring-size or a narrower filter)");
    }
    note!("{} events", state.printed);
    Ok(())
}

struct State<'a> {
    sites: Sites<'a>,
    processes: Processes,
    stacks: Option<StackTraceMap<MapData>>,
    kallsyms: &'a Kallsyms,
    timestamp: Timestamp,
    boot_offset_ns: i128,
    last_ktime: u64,
    printed: u64,
    limit: Option<u64>,
}

fn drain(ring: &mut RingBuf<MapData>, st: &mut State<'_>, sinks: &mut Sinks) -> io::Result<Option<End>> {
    while let Some(item) = ring.next() {
        let Some(ev) = Event::from_bytes(&item) else { continue };
        drop(item);
        emit(&ev, st, sinks)?;
        st.printed += 1;
        if st.limit.is_some_and(|l| st.printed >= l) {
            return Ok(Some(End::Limit));
        }
    }
    Ok(None)
}

fn emit(ev: &Event, st: &mut State<'_>, sinks: &mut Sinks) -> io::Result<()> {
    let (func, reason, location) = st.sites.func(ev);
    let tuple = decode::tuple(ev.capture(), ev.packet());
    let stack = match (&st.stacks, ev.stack_id) {
        (Some(map), id) if id >= 0 => map
            .get(&(id as u32), 0)
            .map(|trace| trace.frames().iter().map(|f| st.kallsyms.describe(f.ip)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let timestamp = match st.timestamp {
        Timestamp::None => None,
        Timestamp::Absolute => Some(ev.ktime_ns.to_string()),
        Timestamp::Relative => {
            let delta = if st.last_ktime == 0 { 0 } else { ev.ktime_ns.saturating_sub(st.last_ktime) };
            Some(delta.to_string())
        }
        Timestamp::Current => Some(wall_clock(ev.ktime_ns as i128 + st.boot_offset_ns)),
    };
    st.last_ktime = ev.ktime_ns;
    let process = st.processes.name(ev.pid, &ev.comm);
    let rec = Record {
        ev,
        func: &func,
        reason: reason.as_deref(),
        location: location.as_deref(),
        process,
        ifname: c_str(&ev.ifname),
        tuple: &tuple,
        stack: &stack,
        timestamp: timestamp.as_deref(),
    };
    sinks.record(&rec, st.boot_offset_ns)
}

fn count_lost(map: &PerCpuHashMap<MapData, u64, u64>) -> u64 {
    map.iter().filter_map(Result::ok).map(|(_, per_cpu)| per_cpu.iter().sum::<u64>()).sum()
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn `bpf_ktime_get_ns` into wall time.
pub fn boot_offset_ns() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into ts.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

/// `HH:MM:SS.nnnnnnnnn` (UTC).
fn wall_clock(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{:09}", day / 3600, day / 60 % 60, day % 60, nanos)
}
