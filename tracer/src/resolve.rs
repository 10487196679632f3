//! Turns a wire [`Event`] into a [`TraceEvent`]: function, drop reason and
//! location, process, kernel stack, tuple and time, with every name taken
//! from a cache ([`Name`]), so that resolving allocates nothing per event
//! once the names are known. Consumers get these and never touch the kernel.

use std::{collections::HashMap, rc::Rc};

/// A resolved name (function, drop reason, location, process, netns),
/// shared between the resolver's cache and every event that carries it. `Rc`,
/// not `Arc`: events stay on the event loop's thread, and the atomic counts
/// were about 6 % of a JSON line (perf, benches/format.rs).
pub type Name = Rc<str>;

use aya::maps::{MapData, StackTraceMap};
use tracer_common::{
    Event,
    event::Ct,
    event::{FLAG_FREED, FLAG_HAS_REASON, FLAG_TRACKED},
};

use crate::{
    cli::Timestamp,
    conntrack::{Conntrack, CtNames},
    decode::{self, Tuple, tunnel::Tunnel},
    ksym::Kallsyms,
    netns::names::NetnsNames,
    probes::Probe,
    skb_out::SkbFields,
};

/// One event, resolved: what every consumer reads.
#[derive(Clone, Debug)]
pub struct TraceEvent {
    /// The event as the kernel sent it: numbers and packet bytes.
    pub raw: Event,
    /// The kernel function (kprobes) or tracepoint.
    pub func: Name,
    /// Set where the skb was dropped with a reason.
    pub drop: Option<Dropped>,
    /// The caller of the traced function (`--output-caller`), when it is not
    /// a drop's location.
    pub caller: Option<Name>,
    /// `exe:pid`, comm when the process is gone.
    pub process: Name,
    pub tuple: Tuple,
    /// Kernel stack, innermost first (`--output-stack`).
    pub stack: Vec<Name>,
    /// The `--timestamp` value, when one was asked for.
    pub time: Option<Time>,
    /// The netns's name (`--output-netns-names`), when it has one.
    pub netns_name: Option<Name>,
    /// VXLAN or Geneve inside the packet (`--output-tunnel`).
    pub tunnel: Option<Tunnel>,
    /// `--output-skb-metadata`, `--output-skb-cb`, `--output-skb`,
    /// `--output-skb-shared-info`; set by `collect` when one is given.
    pub skb_fields: Option<Box<SkbFields>>,
    /// Conntrack's entry for the skb, when one is attached and conntrack is
    /// read (`--output-ct`, `--explain`).
    pub ct: Option<Conntrack>,
    /// nf_tables's verdict (`--nft-trace`, events of `__nft_trace_packet`);
    /// set by `collect`.
    pub nft: Option<Box<crate::nft_trace::NftTrace>>,
}

/// A drop: the kernel's reason and where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub code: u32,
    /// `SKB_DROP_REASON_*` by the kernel's own name, or the number as text
    /// when this kernel does not name it.
    pub name: Name,
    /// `symbol+0xoff`: the tracepoint's location, or the caller of the drop
    /// function (kprobes, `--output-caller`).
    pub location: Option<Name>,
}

/// A `--timestamp` value with pwru's meanings, formatted by each printer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// `current`: kernel monotonic time, ns.
    Kernel(u64),
    /// `relative`: ns since the same skb's previous event (0 on its first).
    Delta(u64),
    /// `absolute`: the event's wall-clock time (ns since the Unix epoch,
    /// printed as local date and time) and its kernel time.
    Absolute { wall_ns: i128, ktime_ns: u64 },
}

impl Time {
    /// The TIMESTAMP column's number.
    pub fn column_ns(self) -> u64 {
        match self {
            Self::Kernel(ns) | Self::Delta(ns) | Self::Absolute { ktime_ns: ns, .. } => ns,
        }
    }
}

/// What the resolver adds beyond names, as the output options ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub timestamp: Timestamp,
    pub netns_names: bool,
    pub tunnel: bool,
}

impl Wanted {
    pub fn of(spec: &crate::config::OutputSpec) -> Self {
        Self { timestamp: spec.timestamp, netns_names: spec.columns.netns_names.is_some(), tunnel: spec.columns.tunnel }
    }
}

impl TraceEvent {
    /// The skb's life ends here (a drop or a free): its address may be
    /// reused by the next skb.
    pub fn freed(&self) -> bool {
        self.raw.flags & FLAG_FREED != 0
    }

    /// Passed only because `--filter-track-skb` already knew the skb.
    pub fn tracked(&self) -> bool {
        self.raw.flags & FLAG_TRACKED != 0
    }

    pub fn ifname(&self) -> &str {
        c_str(&self.raw.ifname)
    }

    /// The drop's location, else the caller.
    pub fn location(&self) -> Option<&str> {
        match &self.drop {
            Some(d) => d.location.as_deref(),
            None => self.caller.as_deref(),
        }
    }
}

/// Drop reasons from the kernel's `enum skb_drop_reason`, and subsystem
/// reasons where the kernel has `enum skb_drop_reason_subsys`.
pub struct DropReasons {
    core: HashMap<u32, String>,
    /// Subsystem id → that subsystem's reasons (value → name).
    subsys: HashMap<u32, HashMap<u32, String>>,
}

/// Subsystem reasons carry the subsystem id in the upper 16 bits.
const SUBSYS_SHIFT: u32 = 16;

impl DropReasons {
    pub fn from_btf(btf: &crate::btf::KernelBtf) -> Self {
        let core = btf.enum_names("skb_drop_reason");
        let mut subsys = HashMap::new();
        // e.g. SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE → enum mac80211_drop_reason
        for (id, name) in btf.enum_names("skb_drop_reason_subsys") {
            let Some(sub) = name.strip_prefix("SKB_DROP_REASON_SUBSYS_") else { continue };
            if id == 0 || sub == "NUM" {
                continue;
            }
            let family = sub.split('_').next().unwrap_or(sub).to_ascii_lowercase();
            let names = btf.enum_names(&format!("{family}_drop_reason"));
            if !names.is_empty() {
                subsys.insert(id, names);
            }
        }
        Self { core, subsys }
    }

    /// From a list of `(value, name)`, for tests.
    pub fn from_names(names: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self { core: names.into_iter().collect(), subsys: HashMap::new() }
    }

    /// The reason's name, or its number when the kernel does not name it.
    pub fn name(&self, value: u32) -> String {
        if let Some(n) = self.core.get(&value) {
            return n.clone();
        }
        let sub = value >> SUBSYS_SHIFT;
        if let Some(n) = self.subsys.get(&sub).and_then(|names| names.get(&value)) {
            return n.clone();
        }
        value.to_string()
    }

    /// Every reason, by value.
    pub fn by_value(&self) -> Vec<(u32, &str)> {
        let mut all: Vec<(u32, &str)> = self
            .core
            .iter()
            .chain(self.subsys.values().flat_map(|names| names.iter()))
            .map(|(v, n)| (*v, n.as_str()))
            .collect();
        all.sort();
        all
    }

    /// Every name this kernel has, core reasons first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.core.values().chain(self.subsys.values().flat_map(HashMap::values)).map(String::as_str)
    }
}

pub fn c_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap_or("?")
}

/// Everything names are looked up in, and their caches.
pub struct Resolver<'a> {
    kallsyms: &'a Kallsyms,
    /// Indexed by probe id (tracepoints).
    probes: Vec<Name>,
    reasons: &'a DropReasons,
    reason_names: FastMap<u32, Name>,
    symbols: FastMap<u64, Name>,
    processes: FastMap<u32, Name>,
    /// The STACKS map, under `--output-stack`.
    stacks: Option<StackTraceMap<MapData>>,
    wanted: Wanted,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn kernel time into wall time.
    boot_offset_ns: i128,
    /// `--timestamp relative`: each live skb's previous event.
    last_seen: FastMap<u64, u64>,
    netns_names: Option<(NetnsNames, NamesByInode)>,
    /// Conntrack's enum names, when conntrack is read.
    ct_names: Option<CtNames>,
}

/// Netns names as the events carry them, or `None` for a nameless netns.
type NamesByInode = FastMap<u32, Option<Name>>;

/// The maps looked up for every event.
type FastMap<K, V> = foldhash::HashMap<K, V>;

/// Live skbs `--timestamp relative` remembers before it starts afresh: a
/// bound on memory when frees are not traced.
const LAST_SEEN_MAX: usize = 1 << 20;

impl<'a> Resolver<'a> {
    pub fn new(
        kallsyms: &'a Kallsyms,
        probes: &[Probe],
        reasons: &'a DropReasons,
        stacks: Option<StackTraceMap<MapData>>,
        wanted: Wanted,
    ) -> Self {
        Self {
            kallsyms,
            probes: probes.iter().map(|p| Name::from(p.name.as_str())).collect(),
            reasons,
            reason_names: FastMap::default(),
            symbols: FastMap::default(),
            processes: FastMap::default(),
            stacks,
            wanted,
            boot_offset_ns: boot_offset_ns(),
            last_seen: FastMap::default(),
            netns_names: wanted.netns_names.then(|| (NetnsNames::scan(), FastMap::default())),
            ct_names: None,
        }
    }

    /// Decodes the events' conntrack blocks with these names.
    pub fn with_conntrack(mut self, names: CtNames) -> Self {
        self.ct_names = Some(names);
        self
    }

    pub fn boot_offset_ns(&self) -> i128 {
        self.boot_offset_ns
    }

    /// `ct`: the record's conntrack block, when it has one.
    pub fn resolve(&mut self, raw: Event, ct: Option<&Ct>) -> TraceEvent {
        let func = if raw.func_ip != 0 {
            self.symbol(raw.func_ip)
        } else {
            self.probes.get(raw.probe_id as usize).cloned().unwrap_or_else(|| format!("probe#{}", raw.probe_id).into())
        };
        let location = (raw.location != 0).then(|| self.symbol(raw.location));
        let (drop, caller) = if raw.flags & FLAG_HAS_REASON != 0 {
            let reasons = self.reasons;
            let name = self.reason_names.entry(raw.reason).or_insert_with(|| reasons.name(raw.reason).into()).clone();
            (Some(Dropped { code: raw.reason, name, location }), None)
        } else {
            (None, location)
        };
        let tuple = decode::tuple(raw.capture(), raw.packet());
        let stack = self.stack(raw.stack_id);
        let time = self.time(&raw);
        let process = self.process(raw.pid, &raw.comm);
        let netns_name = self.netns_name(raw.netns);
        let tunnel = if self.wanted.tunnel { decode::tunnel(raw.capture(), raw.packet()) } else { None };
        let ct = ct.zip(self.ct_names.as_ref()).map(|(ct, names)| Conntrack::decode(ct, names));
        TraceEvent {
            raw,
            func,
            drop,
            caller,
            process,
            tuple,
            stack,
            time,
            netns_name,
            tunnel,
            ct,
            skb_fields: None,
            nft: None,
        }
    }

    /// A probe as the LOST map keys it: the function's address (kprobes)
    /// or the probe id (tracepoints).
    pub fn site_name(&mut self, key: u64) -> Name {
        match usize::try_from(key).ok().and_then(|i| self.probes.get(i)) {
            Some(name) => name.clone(),
            None => self.symbol(key),
        }
    }

    fn symbol(&mut self, addr: u64) -> Name {
        let k = self.kallsyms;
        self.symbols.entry(addr).or_insert_with(|| k.describe(addr).into()).clone()
    }

    fn process(&mut self, pid: u32, comm: &[u8; 16]) -> Name {
        self.processes
            .entry(pid)
            .or_insert_with(|| {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.to_string_lossy().into_owned());
                let name = exe.unwrap_or_else(|| c_str(comm).to_owned());
                format!("{name}:{pid}").into()
            })
            .clone()
    }

    fn stack(&mut self, id: i32) -> Vec<Name> {
        let (Some(map), Ok(id)) = (&self.stacks, u32::try_from(id)) else { return Vec::new() };
        let Ok(trace) = map.get(&id, 0) else { return Vec::new() };
        let ips: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
        ips.into_iter().map(|ip| self.symbol(ip)).collect()
    }

    fn time(&mut self, raw: &Event) -> Option<Time> {
        let ktime_ns = raw.ktime_ns;
        match self.wanted.timestamp {
            Timestamp::None => None,
            Timestamp::Current => Some(Time::Kernel(ktime_ns)),
            Timestamp::Absolute => Some(Time::Absolute { wall_ns: ktime_ns as i128 + self.boot_offset_ns, ktime_ns }),
            Timestamp::Relative => {
                // The skb's address is reused once it is freed: its story,
                // and its clock, end there.
                let last = if raw.flags & FLAG_FREED != 0 {
                    self.last_seen.remove(&raw.skb)
                } else {
                    if self.last_seen.len() >= LAST_SEEN_MAX {
                        self.last_seen.clear();
                    }
                    self.last_seen.insert(raw.skb, ktime_ns)
                };
                Some(Time::Delta(last.map_or(0, |l| ktime_ns.saturating_sub(l))))
            }
        }
    }

    fn netns_name(&mut self, inode: u32) -> Option<Name> {
        let (names, cache) = self.netns_names.as_mut()?;
        cache.entry(inode).or_insert_with(|| names.name(inode).map(Name::from)).clone()
    }
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

#[cfg(test)]
mod tests;
