//! What to attach and where: targets are chosen from BTF (functions or
//! tracepoints that take an skb), then attached by one of the backends.
//! Every link is a file descriptor; dropping [`Attached`] detaches all.

pub mod kprobe;
pub mod kprobe_multi;
pub mod tracepoint;

use std::{os::fd::OwnedFd, path::Path};

/// What a probe id stands for, so events can be named.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: String,
    /// The skb is dropped here with a reason (kfree_skb and its kprobes).
    pub drop_point: bool,
}

/// Everything attached, and what was not.
#[derive(Default)]
pub struct Attached {
    /// Links and perf events; closing them detaches.
    pub links: Vec<OwnedFd>,
    /// Loaded programs, kept alive until the links are gone.
    pub programs: Vec<OwnedFd>,
    /// Indexed by probe id (tracepoints); kprobe events are named by address.
    pub probes: Vec<Probe>,
    pub attached: usize,
    /// Targets that failed, with why.
    pub skipped: Vec<(String, String)>,
}

impl Attached {
    pub fn summary(&self) -> String {
        format!("attached {}, skipped {}", self.attached, self.skipped.len())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // Links first, then programs: the order the kernel tears down fastest.
        self.links.clear();
        self.programs.clear();
    }
}

/// Whether this kernel can attach kprobes at all.
pub fn kprobes_available() -> bool {
    Path::new(kprobe::PMU_TYPE_PATH).exists()
}

/// Drop functions whose reason we decode: (name, program).
pub const DROP_FUNCTIONS: [(&str, &str); 2] = [
    ("kfree_skb_reason", "kprobe_drop_skb_1_reason_2"),
    ("sk_skb_reason_drop", "kprobe_drop_skb_2_reason_3"),
];

/// Functions where an skb's life ends; `--filter-track-skb` forgets it there.
pub const FREE_FUNCTIONS: [&str; 1] = ["kfree_skbmem"];
