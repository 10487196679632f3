//! What to attach and where: targets are chosen from BTF (functions or
//! tracepoints that take an skb), then attached by one of the backends.
//! Every link is a file descriptor; dropping [`Attached`] detaches all.

pub mod kprobe;
pub mod kprobe_multi;
pub mod plan;
pub mod tracepoint;

use std::{
    os::fd::OwnedFd,
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use tracer_common::names;

use crate::stop::Stop;

/// What a probe id stands for, so events can be named.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: String,
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
    /// Targets attached.
    pub count: usize,
    /// Targets that failed, with why.
    pub skipped: Vec<(String, String)>,
    /// The backend that attached them.
    pub backend: &'static str,
}

impl Attached {
    pub fn summary(&self) -> String {
        format!("attached {}, skipped {}", self.count, self.skipped.len())
    }

    /// Detaches everything now; returns how many links were closed.
    pub fn detach(&mut self) -> usize {
        // Links go first, then programs.
        let closed = close_links(std::mem::take(&mut self.links));
        self.programs.clear();
        closed
    }

    /// The links, to be closed by the event loop when it ends ([`Detach`]);
    /// the programs stay until [`Attached::detach`].
    pub fn take_links(&mut self) -> Detach {
        Detach { links: std::mem::take(&mut self.links), done: None }
    }
}

/// Links closed once, when the event loop ends and before its last drain
/// (while attached, a flood never lets the ring run dry), and timed.
pub struct Detach {
    links: Vec<OwnedFd>,
    done: Option<(usize, f64)>,
}

impl Detach {
    pub fn now(&mut self) {
        if self.done.is_none() {
            let started = std::time::Instant::now();
            let closed = close_links(std::mem::take(&mut self.links));
            self.done = Some((closed, started.elapsed().as_secs_f64()));
        }
    }

    /// How many links were closed, and in how many seconds (closing them now if not yet).
    pub fn result(mut self) -> (usize, f64) {
        self.now();
        self.done.unwrap_or_default()
    }
}

fn close_links(links: Vec<OwnedFd>) -> usize {
    let closed = links.len();
    if links.len() < 64 {
        drop(links);
    } else {
        detach_many(links);
    }
    closed
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Closes many kprobe links from several threads, with expedited RCU, and
/// says so (a progress bar on a terminal, then the time taken): after Ctrl-C
/// this can take as long as attaching did.
///
/// Where the time goes (Debian 6.1 and 6.12, sched_switch callchains in the
/// TCG VM): closing a kprobe perf event detaches its program, and kernels
/// with a recent use-after-free fix for programs that may sleep then wait
/// for an RCU tasks-trace grace period while holding `bpf_event_mutex`. One
/// such wait per kprobe, one at a time, is nearly all of the detach (25-28
/// ms each there). Disarming the probe, an ftrace update as costly as arming
/// it, runs meanwhile in another thread. Expedited RCU shortens the normal
/// grace period inside each of those waits.
fn detach_many(mut links: Vec<OwnedFd>) {
    let started = std::time::Instant::now();
    let total = links.len();
    let progress = kprobe::Progress::new(total, "detaching kprobes");
    let _expedited = ExpeditedRcu::enable();
    // As many threads as attach used: with 32, contention on the kernel's
    // locks made detaching 1,463 kprobes take 41 s rather than 35.
    let chunk = total.div_ceil(kprobe::workers());
    std::thread::scope(|s| {
        while !links.is_empty() {
            let part: Vec<OwnedFd> = links.drain(..chunk.min(links.len())).collect();
            let progress = &progress;
            s.spawn(move || {
                for link in part {
                    drop(link);
                    progress.inc();
                }
            });
        }
    });
    progress.finish();
    note!("detached {total} in {:.1}s", started.elapsed().as_secs_f64());
}

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// `/sys/kernel/rcu_expedited` at 1 until dropped, then back to 0. An
/// expedited grace period interrupts every CPU instead of waiting for each
/// to pass a quiescent state: microseconds instead of milliseconds. In a
/// TCG VM this took detaching 1,463 kprobes from 59 s to 38 s (attaching
/// them takes 40 s). Does nothing where the setting is already on or cannot
/// be written. Only a SIGKILL during the detach can leave it on.
struct ExpeditedRcu {
    enabled: bool,
}

impl ExpeditedRcu {
    fn enable() -> Self {
        let off = std::fs::read_to_string(RCU_EXPEDITED).is_ok_and(|v| v.trim() == "0");
        let enabled = off
            && std::fs::write(RCU_EXPEDITED, "1")
                .inspect_err(|e| log::debug!("cannot write {RCU_EXPEDITED}: {e}"))
                .is_ok();
        Self { enabled }
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        if self.enabled
            && let Err(e) = std::fs::write(RCU_EXPEDITED, "0")
        {
            note!("could not set {RCU_EXPEDITED} back to 0: {e}");
        }
    }
}

/// Raises the open-file limit to its hard maximum: every kprobe is a file
/// descriptor, and the usual soft limit of 1,024 is fewer than the kernel's
/// skb functions.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::debug!("raising RLIMIT_NOFILE failed: {}", std::io::Error::last_os_error());
            }
        }
    }
}

/// Runs `f(index, item)` on every item from `workers` threads (attaching is mostly waiting
/// on the kernel) and returns the results in item order. When `stop` is
/// given, a stop signal ends the run early; items not reached are `None`.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    stop: Option<&mut Stop>,
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    let workers = workers.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !cancel.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(i, item);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((i, result));
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        if let Some(stop) = stop {
            // Ctrl-C during a long attach stops it; what is attached is
            // detached when `Attached` drops.
            while done.load(Ordering::Relaxed) < workers {
                if stop.requested() {
                    cancel.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    let mut ordered: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, result) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        ordered[i] = Some(result);
    }
    ordered
}

/// Whether this kernel can attach kprobes at all.
pub fn kprobes_available() -> bool {
    Path::new(kprobe::PMU_TYPE_PATH).exists()
}

/// Drop functions whose reason we decode: (name, program). The skb is freed
/// there too.
pub const DROP_FUNCTIONS: [(&str, &str); 2] = [
    ("kfree_skb_reason", names::KPROBE_DROP_SKB_0_REASON_1),
    ("sk_skb_reason_drop", names::KPROBE_DROP_SKB_1_REASON_2),
];

/// Functions where an skb's life ends besides the drop functions: events
/// there carry `FLAG_FREED`, and `--filter-track-skb` forgets the skb.
pub const FREE_FUNCTIONS: [&str; 1] = ["kfree_skbmem"];

/// Whether the skb's life ends in function `name`.
pub fn frees(name: &str) -> bool {
    FREE_FUNCTIONS.contains(&name) || DROP_FUNCTIONS.iter().any(|(drop, _)| *drop == name)
}
