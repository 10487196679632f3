//! The kprobe-multi backend (Linux ≥ 5.18 with fprobe): one link per skb
//! argument position carries all its functions, so attach and detach take
//! seconds instead of minutes.

use std::{collections::BTreeMap, ffi::CString, os::fd::AsRawFd as _};

use super::{Attached, kprobe};
use crate::{btf::SkbFunc, loader::Loader, stop::Stop, sys};

/// Attaches every function; a group the kernel refuses as a whole (one
/// unprobeable symbol fails the link) is retried with single kprobes.
/// Returns an error only when kprobe-multi itself is unsupported and nothing
/// was attached, so that `auto` can fall back.
pub fn attach(loader: &Loader, funcs: &[SkbFunc], attached: &mut Attached, stop: &mut Stop) -> anyhow::Result<()> {
    let programs = kprobe::load_programs(loader, funcs, sys::BPF_TRACE_KPROBE_MULTI)?;
    let mut groups: BTreeMap<(String, u32), Vec<&SkbFunc>> = BTreeMap::new();
    for func in funcs {
        groups.entry(kprobe::program_for(func)).or_default().push(func);
    }
    let progress = kprobe::Progress::new(funcs.len(), "attaching kprobe-multi");
    let mut retry = Vec::new();
    let mut first_error = None;
    for (key, group) in &groups {
        if stop.requested() {
            break;
        }
        let syms: Vec<CString> = group.iter().filter_map(|f| CString::new(f.name.as_str()).ok()).collect();
        match sys::link_kprobe_multi(programs[key].as_raw_fd(), &syms) {
            Ok(link) => {
                attached.links.push(link);
                attached.attached += group.len();
            }
            Err(e) => {
                log::debug!("kprobe-multi link for {} failed: {e}", key.0);
                first_error.get_or_insert(e);
                retry.extend(group.iter().map(|f| (*f).clone()));
            }
        }
        for _ in group {
            progress.inc();
        }
    }
    progress.finish();
    attached.programs.extend(programs.into_values());
    if let Some(e) = first_error {
        if attached.attached == 0 && matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
            return Err(anyhow::anyhow!("kprobe-multi is not supported by this kernel: {e}"));
        }
        kprobe::attach(loader, &retry, attached, stop)?;
    }
    Ok(())
}
