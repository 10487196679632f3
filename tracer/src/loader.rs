//! Loads skbtrace's eBPF object with aya-obj's public steps: parse, create
//! the maps (with our configuration in `.rodata` and the sizes we chose),
//! relocate and link each program, splice generated code into it (the pcap
//! filter, the skb expression, the probe id) and load it with the program and attach type we
//! need, which aya 0.14 cannot do (kprobe-multi, one object loaded as both
//! `tp_btf` and `raw_tp`). aya's own loader did all of it a second time —
//! most of a second in a TCG VM — for maps alone.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::MapData;
use aya_obj::{EbpfSectionKind, Object, ProgramSection, generated::bpf_insn};
use tracer_common::{
    Config,
    limits::{FILTER_L2_SYMBOL, FILTER_L3_SYMBOL, FILTER_SKB_EXPR_SYMBOL, PROBE_ID_SYMBOL},
    names,
};

use crate::{config::MapSizes, filter::Insn, sys};

/// The eBPF object built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

impl MapSizes {
    fn max_entries(&self, map: &str) -> Option<u32> {
        match map {
            names::MAP_EVENTS => Some(self.ring_bytes),
            names::MAP_TRACKED => Some(self.track_entries),
            names::MAP_CLONING => Some(self.cloning_entries),
            names::MAP_STACKS => Some(self.stack_entries),
            _ => None,
        }
    }
}

/// The generated code spliced into the programs: the pcap filter for each
/// kind of capture and the `--filter-skb-expr` subprogram (match-all when
/// unused; the programs call it only with `CFG_SKB_EXPR`).
pub struct Filters<'a> {
    pub l2: &'a [Insn],
    pub l3: &'a [Insn],
    pub skb_expr: &'a [Insn],
}

/// The object with its maps created and every program linked, ready to be
/// loaded in as many copies as there are attach targets.
pub struct Loader {
    maps: HashMap<String, MapData>,
    /// Linked instructions per program name, with the filters spliced in but
    /// the probe id still a placeholder.
    programs: HashMap<String, Linked>,
}

struct Linked {
    insns: Vec<bpf_insn>,
    /// Where the probe-id subprogram starts and ends in `insns`.
    probe_id: Option<(usize, usize)>,
}

/// How to load one copy of a program.
pub struct LoadAs<'a> {
    pub program: &'a str,
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
    pub probe_id: u32,
}

/// Which programs a run can load: linking the others would only cost time
/// (a third of a second in a TCG VM for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programs {
    Kprobes,
    Tracepoints,
}

impl Programs {
    fn includes(self, section: &ProgramSection) -> bool {
        match self {
            Self::Kprobes => matches!(section, ProgramSection::KProbe | ProgramSection::KRetProbe),
            Self::Tracepoints => matches!(section, ProgramSection::RawTracePoint),
        }
    }
}

const BPF_MAP_TYPE_RINGBUF: u32 = 27;

impl Loader {
    /// The object with `config` patched in and `filters` spliced in.
    pub fn new(config: &Config, sizes: &MapSizes, programs: Programs, filters: &Filters<'_>) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let mut obj = Object::parse(OBJECT).context("parsing the embedded eBPF object")?;
        log::debug!("object parsed in {:?}", started.elapsed());
        obj.patch_map_data(HashMap::from([(names::GLOBAL_CONFIG, aya_obj_global(config))]))
            .context("writing the configuration into the eBPF object")?;
        replace_function(&mut obj, FILTER_L2_SYMBOL, &encode(filters.l2))?;
        replace_function(&mut obj, FILTER_L3_SYMBOL, &encode(filters.l3))?;
        replace_function(&mut obj, FILTER_SKB_EXPR_SYMBOL, &encode(filters.skb_expr))?;

        let mut maps = HashMap::new();
        let mut relocations: Vec<(String, RawFd, aya_obj::Map)> = Vec::new();
        for (name, map) in &obj.maps {
            let created = create_map(name, map, sizes)?;
            relocations.push((name.clone(), created.fd().as_fd().as_raw_fd(), map.clone()));
            maps.insert(name.clone(), created);
        }
        log::debug!("maps created at {:?}", started.elapsed());
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(relocations.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)), &text_sections)
            .context("relocating map references")?;

        // Find the probe-id placeholder's body before linking, so that we can
        // find it again in each linked program.
        let probe_id_body = obj
            .functions
            .values()
            .find(|f| f.name == PROBE_ID_SYMBOL)
            .map(|f| f.instructions.clone())
            .ok_or_else(|| anyhow!("the eBPF object has no {PROBE_ID_SYMBOL} function"))?;
        obj.programs.retain(|_, program| programs.includes(&program.section));
        obj.relocate_calls(&text_sections).context("linking eBPF subprograms")?;

        let mut programs = HashMap::new();
        for (name, program) in &obj.programs {
            let function = &obj.functions[&program.function_key()];
            let insns = function.instructions.clone();
            let probe_id = find_body(&insns, &probe_id_body).map(|start| (start, start + probe_id_body.len()));
            programs.insert(name.clone(), Linked { insns, probe_id });
        }
        Ok(Self { maps, programs })
    }

    /// Hands over a map, for reading it from user space.
    pub fn take_map(&mut self, name: &str) -> anyhow::Result<MapData> {
        self.maps.remove(name).ok_or_else(|| anyhow!("the eBPF object has no {name} map"))
    }

    pub fn load(&self, how: &LoadAs<'_>) -> anyhow::Result<OwnedFd> {
        let linked =
            self.programs.get(how.program).ok_or_else(|| anyhow!("the eBPF object has no program {}", how.program))?;
        let mut insns = linked.insns.clone();
        if let Some((start, end)) = linked.probe_id {
            // The placeholder is at least 2 instructions long (load, exit);
            // pad the rest with jumps-to-next so offsets stay put.
            let body = [mov64_imm(0, how.probe_id as i32), exit()];
            if end - start < body.len() {
                bail!("the probe-id placeholder is too short to patch");
            }
            insns[start] = body[0];
            for slot in &mut insns[start + 1..end - 1] {
                *slot = ja(0);
            }
            insns[end - 1] = body[1];
        }
        let raw: Vec<u64> = insns.iter().map(insn_to_u64).collect();
        sys::prog_load(&sys::ProgLoad {
            prog_type: how.prog_type,
            expected_attach_type: how.expected_attach_type,
            attach_btf_id: how.attach_btf_id,
            name: how.program,
            insns: &raw,
        })
        .map_err(|e| {
            let log = verifier_summary(&e.log);
            anyhow!("the kernel refused to load eBPF program {}: {}{log}", how.program, e.error)
        })
    }
}

/// The last lines of a verifier log, which say why it refused.
fn verifier_summary(log: &str) -> String {
    if log.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    format!("\nverifier log (last {} lines):\n  {}", tail.len(), tail.join("\n  "))
}

fn aya_obj_global(config: &Config) -> (&[u8], bool) {
    // SAFETY: Config is repr(C) plain data without padding.
    let bytes = unsafe { std::slice::from_raw_parts((config as *const Config).cast::<u8>(), size_of::<Config>()) };
    (bytes, true)
}

/// Replaces a subprogram's body. Its section offset is moved out of the
/// section so that relocations of neighbouring functions never land in the
/// longer body (the new code has no relocations of its own).
fn replace_function(obj: &mut Object, name: &str, insns: &[bpf_insn]) -> anyhow::Result<()> {
    let function = obj
        .functions
        .values_mut()
        .find(|f| f.name == name)
        .ok_or_else(|| anyhow!("the eBPF object has no {name} function"))?;
    function.instructions = insns.to_vec();
    function.section_offset = usize::MAX / 2;
    function.func_info = Default::default();
    function.line_info = Default::default();
    Ok(())
}

fn find_body(haystack: &[bpf_insn], needle: &[bpf_insn]) -> Option<usize> {
    let key = |i: &bpf_insn| insn_to_u64(i);
    let needle: Vec<u64> = needle.iter().map(key).collect();
    let hay: Vec<u64> = haystack.iter().map(key).collect();
    hay.windows(needle.len()).position(|w| w == needle.as_slice())
}

/// Creates one map with the size asked for; global data (`.rodata`,
/// `.data`, `.bss`) gets its initial value, and `.rodata` is frozen so that
/// the verifier can rely on the configuration in it.
fn create_map(name: &str, map: &aya_obj::Map, sizes: &MapSizes) -> anyhow::Result<MapData> {
    let mut map = map.clone();
    if let Some(entries) = sizes.max_entries(name) {
        map.set_max_entries(entries);
    }
    if map.map_type() == BPF_MAP_TYPE_RINGBUF {
        // The kernel wants a power-of-two number of pages, and no value size.
        let page = page_size();
        map.set_max_entries(map.max_entries().div_ceil(page).next_power_of_two() * page);
        map.set_value_size(0);
    }
    let global = matches!(map.section_kind(), EbpfSectionKind::Rodata | EbpfSectionKind::Data | EbpfSectionKind::Bss);
    let data = global.then(|| map.data().to_vec());
    let frozen = map.section_kind() == EbpfSectionKind::Rodata;
    let created = MapData::create(map, name, None).with_context(|| format!("creating eBPF map {name}"))?;
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        let fd = created.fd().as_fd().as_raw_fd();
        sys::map_update_elem(fd, &0u32.to_ne_bytes(), &data)
            .with_context(|| format!("initializing eBPF map {name}"))?;
        if frozen {
            sys::map_freeze(fd).with_context(|| format!("freezing eBPF map {name}"))?;
        }
    }
    Ok(created)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

fn encode(insns: &[Insn]) -> Vec<bpf_insn> {
    insns.iter().map(|i| insn_from_u64(u64::from_le_bytes(i.to_bytes()))).collect()
}

fn insn_to_u64(insn: &bpf_insn) -> u64 {
    // SAFETY: bpf_insn is the kernel's 8-byte instruction.
    unsafe { std::mem::transmute_copy::<bpf_insn, u64>(insn) }
}

fn insn_from_u64(raw: u64) -> bpf_insn {
    // SAFETY: as above.
    unsafe { std::mem::transmute_copy::<u64, bpf_insn>(&raw) }
}

fn mov64_imm(dst: u8, imm: i32) -> bpf_insn {
    insn_from_u64(u64::from_le_bytes(Insn { code: 0xb7, dst, src: 0, off: 0, imm }.to_bytes()))
}

fn ja(off: i16) -> bpf_insn {
    insn_from_u64(u64::from_le_bytes(Insn { code: 0x05, dst: 0, src: 0, off, imm: 0 }.to_bytes()))
}

fn exit() -> bpf_insn {
    insn_from_u64(u64::from_le_bytes(Insn { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 }.to_bytes()))
}
