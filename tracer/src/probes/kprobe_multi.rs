//! The kprobe-multi backend (Linux ≥ 5.18 with fprobe): one program and one
//! link carry every function, each told where its skb is by its cookie, so
//! attach and detach take seconds instead of minutes.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, OwnedFd},
};

use tracer_common::cookie;

use super::{Attached, DROP_FUNCTIONS, kprobe};
use crate::{btf::SkbFunc, loader::Loader, stop::Stop, sys};

const PROGRAM: &str = tracer_common::names::KPROBE_MULTI_SKB;

/// One function on the link.
struct Target<'a> {
    func: &'a SkbFunc,
    name: CString,
    cookie: u64,
}

/// Attaches every function to `program` (from [`load`]). The kernel
/// refuses a link as a whole when one of its functions cannot be probed:
/// such a link is split in two and each half tried again, and a function
/// refused alone is tried as a single kprobe. Returns an error, with
/// nothing attached, when the kernel cannot do kprobe-multi at all, so that
/// `auto` can fall back to kprobes.
pub fn attach(
    program: anyhow::Result<OwnedFd>,
    loader: &Loader,
    funcs: &[SkbFunc],
    attached: &mut Attached,
    stop: &mut Stop,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let program = program?;
    let targets: Vec<Target<'_>> = funcs
        .iter()
        .filter_map(|func| {
            Some(Target { func, name: CString::new(func.name.as_str()).ok()?, cookie: cookie_for(func) })
        })
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let progress = kprobe::Progress::new(targets.len(), "attaching kprobe-multi");
    let prog = program.as_raw_fd();
    let mut link = |names: &[&CString], cookies: &[u64]| sys::link_kprobe_multi(prog, names, cookies);
    let mut linker = Linker { link: &mut link, attached: &mut *attached, refused: Vec::new(), progress: &progress };
    // The first link tells whether the kernel has kprobe-multi at all.
    let unsupported = match linker.try_link(&targets) {
        Ok(()) => None,
        Err(e) if unsupported(&e) => Some(e),
        Err(e) => {
            log::debug!("kprobe-multi refused the whole set ({e}); splitting it");
            linker.split(&targets, stop);
            None
        }
    };
    progress.finish();
    log::debug!("kprobe-multi linked at {:?}", started.elapsed());
    let Linker { refused, .. } = linker;
    if let Some(e) = unsupported {
        return Err(anyhow::anyhow!("kprobe-multi is not supported by this kernel: {e}"));
    }
    attached.programs.push(program);
    if !refused.is_empty() {
        log::debug!("{} functions refused on a kprobe-multi link; trying them as single kprobes", refused.len());
        let retry: Vec<SkbFunc> = refused.into_iter().cloned().collect();
        kprobe::attach(loader, &retry, attached, stop)?;
    }
    Ok(())
}

/// Loads the program every function of the link runs.
pub fn load(loader: &Loader) -> anyhow::Result<OwnedFd> {
    kprobe::load_program(loader, &(PROGRAM.to_owned(), 0), sys::BPF_TRACE_KPROBE_MULTI)
}

/// Where the skb and the drop reason are, for the shared program.
fn cookie_for(func: &SkbFunc) -> u64 {
    let skb_arg = func.skb.0;
    // Both drop functions take the reason right after the skb.
    let reason_arg = DROP_FUNCTIONS.iter().any(|(name, _)| *name == func.name).then_some(skb_arg + 1);
    cookie::encode(skb_arg, reason_arg, super::frees(&func.name))
}

/// Makes one link: symbols and their cookies, in the same order.
type LinkFn<'a> = dyn FnMut(&[&CString], &[u64]) -> std::io::Result<OwnedFd> + 'a;

struct Linker<'a, 'f> {
    link: &'a mut LinkFn<'a>,
    attached: &'a mut Attached,
    refused: Vec<&'f SkbFunc>,
    progress: &'a kprobe::Progress,
}

impl<'f> Linker<'_, 'f> {
    /// Links each half of `targets`, halving again what the kernel refuses.
    fn split(&mut self, targets: &[Target<'f>], stop: &mut Stop) {
        for half in [&targets[..targets.len() / 2], &targets[targets.len() / 2..]] {
            if stop.requested() {
                return;
            }
            if half.is_empty() {
                continue;
            }
            match self.try_link(half) {
                Ok(()) => {}
                Err(e) if half.len() == 1 => {
                    log::debug!("kprobe-multi refused {}: {e}", half[0].func.name);
                    self.refused.push(half[0].func);
                    self.progress.inc();
                }
                Err(_) => self.split(half, stop),
            }
        }
    }

    fn try_link(&mut self, targets: &[Target<'_>]) -> std::io::Result<()> {
        let names: Vec<&CString> = targets.iter().map(|t| &t.name).collect();
        let cookies: Vec<u64> = targets.iter().map(|t| t.cookie).collect();
        let link = (self.link)(&names, &cookies)?;
        self.attached.links.push(link);
        self.attached.count += targets.len();
        for _ in targets {
            self.progress.inc();
        }
        Ok(())
    }
}

/// The kernel's internal ENOTSUPP, which some link paths leak to user space.
const ENOTSUPP: i32 = 524;

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL | ENOTSUPP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::SkbArg;

    fn func(name: &str) -> SkbFunc {
        SkbFunc { name: name.to_owned(), skb: SkbArg(0), module: String::new() }
    }

    #[test]
    fn refused_functions_are_split_off_and_the_rest_linked() {
        let funcs: Vec<SkbFunc> = (0..100).map(|i| func(&format!("f{i}"))).collect();
        let targets: Vec<Target<'_>> =
            funcs.iter().map(|f| Target { func: f, name: CString::new(f.name.as_str()).unwrap(), cookie: 0 }).collect();
        // A kernel that refuses any link holding one of these.
        let bad = ["f3", "f4", "f57", "f99"];
        let mut calls = 0;
        let mut link = |names: &[&CString], cookies: &[u64]| {
            calls += 1;
            assert_eq!(names.len(), cookies.len());
            if names.iter().any(|n| bad.contains(&n.to_str().unwrap())) {
                Err(std::io::Error::from_raw_os_error(libc::ESRCH))
            } else {
                std::fs::File::open("/dev/null").map(OwnedFd::from)
            }
        };
        let mut attached = Attached::default();
        let progress = kprobe::Progress::new(targets.len(), "test");
        let mut linker = Linker { link: &mut link, attached: &mut attached, refused: Vec::new(), progress: &progress };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _runtime = rt.enter();
        assert!(linker.try_link(&targets).is_err());
        linker.split(&targets, &mut Stop::install().unwrap());
        let mut refused: Vec<&str> = linker.refused.iter().map(|f| f.name.as_str()).collect();
        refused.sort();
        assert_eq!(refused, ["f3", "f4", "f57", "f99"]);
        assert_eq!(attached.count, 96);
        // Each refused function costs about one link per halving.
        assert!(calls <= 1 + 4 * 2 * 7, "{calls} links tried");
    }

    #[test]
    fn cookies_say_where_the_skb_and_the_reason_are() {
        let mut drop = func("sk_skb_reason_drop");
        drop.skb = SkbArg(1);
        let c = cookie_for(&drop);
        // A drop ends the skb's life: its event carries FLAG_FREED.
        assert_eq!((cookie::skb_arg(c), cookie::reason_arg(c), cookie::frees(c)), (1, Some(2), true));
        let c = cookie_for(&func("kfree_skbmem"));
        assert_eq!((cookie::skb_arg(c), cookie::reason_arg(c), cookie::frees(c)), (0, None, true));
        let mut third = func("ip_rcv_finish");
        third.skb = SkbArg(2);
        let c = cookie_for(&third);
        assert_eq!((cookie::skb_arg(c), cookie::reason_arg(c), cookie::frees(c)), (2, None, false));
    }
}
