//! Turns an event's numbers into names: function, drop reason, process,
//! stack. Printers get these already resolved and never touch the kernel.

use std::collections::HashMap;

use tracer_common::{Event, event::FLAG_HAS_REASON};

use crate::{ksym::Kallsyms, probes::Probe};

/// Drop reasons from the kernel's `enum skb_drop_reason`, and subsystem
/// reasons where the kernel has `enum skb_drop_reason_subsys`.
pub struct DropReasons {
    core: HashMap<u32, String>,
    /// Subsystem id → (enum name prefix, names of that subsystem's enum).
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
}

/// Process names as pwru prints them: `exe:pid`, comm when the process is gone.
#[derive(Default)]
pub struct Processes {
    cache: HashMap<u32, String>,
}

impl Processes {
    pub fn name(&mut self, pid: u32, comm: &[u8; 16]) -> &str {
        self.cache.entry(pid).or_insert_with(|| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.to_string_lossy().into_owned());
            let name = exe.unwrap_or_else(|| c_str(comm).to_owned());
            format!("{name}:{pid}")
        })
    }
}

pub fn c_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap_or("?")
}

/// Names a probe site: a function for kprobes, a tracepoint otherwise.
pub struct Sites<'a> {
    pub kallsyms: &'a Kallsyms,
    pub probes: &'a [Probe],
    pub reasons: &'a DropReasons,
    /// Cache of address → name.
    names: HashMap<u64, String>,
}

impl<'a> Sites<'a> {
    pub fn new(kallsyms: &'a Kallsyms, probes: &'a [Probe], reasons: &'a DropReasons) -> Self {
        Self { kallsyms, probes, reasons, names: HashMap::new() }
    }

    pub fn symbol(&mut self, addr: u64) -> &str {
        let k = self.kallsyms;
        self.names.entry(addr).or_insert_with(|| k.describe(addr))
    }

    /// The FUNC column: `ip_rcv`, `kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)`,
    /// or for tracepoints `kfree_skb(SKB_DROP_REASON_NO_SOCKET) __udp4_lib_rcv+0x4bc`.
    pub fn func(&mut self, ev: &Event) -> (String, Option<String>, Option<String>) {
        let base = if ev.func_ip != 0 {
            self.symbol(ev.func_ip).to_owned()
        } else {
            self.probes.get(ev.probe_id as usize).map_or_else(|| format!("probe#{}", ev.probe_id), |p| p.name.clone())
        };
        let reason = (ev.flags & FLAG_HAS_REASON != 0).then(|| self.reasons.name(ev.reason));
        let location = (ev.location != 0).then(|| self.symbol(ev.location).to_owned());
        (base, reason, location)
    }
}
