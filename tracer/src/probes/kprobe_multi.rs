//! The kprobe-multi backend (Linux ≥ 5.18 with fprobe): one link per skb
//! argument position carries all its functions, so attach and detach take
//! seconds instead of minutes.

use std::{collections::BTreeMap, ffi::CString, os::fd::AsRawFd as _};

use super::{Attached, in_parallel, kprobe};
use crate::{btf::SkbFunc, loader::Loader, stop::Stop, sys};

/// Attaches every function; a group the kernel refuses as a whole (one
/// unprobeable symbol fails the link) is retried with single kprobes.
/// Returns an error, with nothing attached, when the kernel cannot do
/// kprobe-multi at all, so that `auto` can fall back to kprobes.
pub fn attach(loader: &Loader, funcs: &[SkbFunc], attached: &mut Attached, stop: &mut Stop) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let programs = kprobe::load_programs(loader, funcs, sys::BPF_TRACE_KPROBE_MULTI)?;
    log::debug!("kprobe-multi programs loaded in {:?}", started.elapsed());
    let mut groups: BTreeMap<(String, u32), Vec<&SkbFunc>> = BTreeMap::new();
    for func in funcs {
        groups.entry(kprobe::program_for(func)).or_default().push(func);
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let link = |(key, group): &((String, u32), Vec<&SkbFunc>)| {
        let syms: Vec<CString> = group.iter().filter_map(|f| CString::new(f.name.as_str()).ok()).collect();
        sys::link_kprobe_multi(programs[key].as_raw_fd(), &syms)
    };
    // The first link tells whether the kernel has kprobe-multi at all; the
    // others are made together, since the kernel resolves each one's
    // symbols on its own.
    let Some((first, rest)) = groups.split_first() else { return Ok(()) };
    let first_link = match link(first) {
        Err(e) if unsupported(&e) => return Err(anyhow::anyhow!("kprobe-multi is not supported by this kernel: {e}")),
        result => result,
    };
    let progress = kprobe::Progress::new(funcs.len(), "attaching kprobe-multi");
    for _ in &first.1 {
        progress.inc();
    }
    let rest_links = in_parallel(rest, rest.len(), Some(stop), |_, group| {
        let result = link(group);
        for _ in &group.1 {
            progress.inc();
        }
        result
    });
    progress.finish();
    let mut links = Vec::new();
    let mut retry = Vec::new();
    for ((key, group), result) in groups.iter().zip(std::iter::once(Some(first_link)).chain(rest_links)) {
        match result {
            Some(Ok(link)) => links.push((link, group.len())),
            Some(Err(e)) => {
                log::debug!("kprobe-multi link for {} failed ({e}); retrying its functions one by one", key.0);
                retry.extend(group.iter().map(|f| (*f).clone()));
            }
            // Stopped before this group.
            None => {}
        }
    }
    for (link, n) in links {
        attached.links.push(link);
        attached.attached += n;
    }
    attached.programs.extend(programs.into_values());
    if !retry.is_empty() {
        kprobe::attach(loader, &retry, attached, stop)?;
    }
    Ok(())
}

/// The kernel's internal ENOTSUPP, which some link paths leak to user space.
const ENOTSUPP: i32 = 524;

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL | ENOTSUPP))
}
