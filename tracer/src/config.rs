//! Second stage of argument handling: flags checked and turned into what the
//! run needs. Every bad input is found here, before anything is attached.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use regex::Regex;
use tracer_common::{
    Config,
    config::{CFG_CALLER, CFG_IFINDEX, CFG_MARK, CFG_NETNS, CFG_PCAP, CFG_PID, CFG_STACK, CFG_TRACK_SKB},
    limits::SNAPLEN_MAX,
};

use crate::cli::Args;

/// Bad input: exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

pub struct RunConfig {
    pub expression: Option<String>,
    pub filter_func: Option<Regex>,
    /// Everything but offsets, which come from BTF.
    pub kernel: Config,
}

impl RunConfig {
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        let expression = (!args.expression.is_empty()).then(|| args.expression.join(" "));
        let filter_func = args
            .filter_func
            .as_deref()
            .map(|re| {
                Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| usage(format!("invalid --filter-func regex {re:?}: {e}")))
            })
            .transpose()?;
        if args.snaplen as usize > SNAPLEN_MAX {
            return Err(usage(format!("--snaplen {} is larger than the maximum, {SNAPLEN_MAX}", args.snaplen)));
        }
        if !args.ring_size.is_power_of_two() || args.ring_size < 4 {
            return Err(usage(format!("--ring-size {} must be a power of two KiB, at least 4", args.ring_size)));
        }
        let mut kernel = Config::zeroed();
        kernel.snaplen = args.snaplen;
        if expression.is_some() {
            kernel.flags |= CFG_PCAP;
        }
        if args.filter_track_skb {
            kernel.flags |= CFG_TRACK_SKB;
        }
        if args.output_stack {
            kernel.flags |= CFG_STACK;
        }
        if args.output_caller {
            kernel.flags |= CFG_CALLER;
        }
        if let Some(mark) = &args.filter_mark {
            let (value, mask) = parse_mark(mark)?;
            kernel.flags |= CFG_MARK;
            kernel.mark = value & mask;
            kernel.mark_mask = mask;
        }
        if let Some(pid) = args.filter_pid {
            kernel.flags |= CFG_PID;
            kernel.pid = pid;
        }
        let netns_path = match &args.filter_netns {
            Some(spec) => {
                let (inode, path) = parse_netns(spec)?;
                kernel.flags |= CFG_NETNS;
                kernel.netns = inode;
                path
            }
            None => None,
        };
        if let Some(name) = &args.filter_ifname {
            kernel.flags |= CFG_IFINDEX;
            kernel.ifindex = ifindex_in(name, netns_path.as_deref())?;
        }
        Ok(Self { expression, filter_func, kernel })
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn parse_mark(spec: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || usage(format!("invalid --filter-mark {spec:?}: expected VALUE or VALUE/MASK, e.g. 0x10/0xff"));
    match spec.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v).ok_or_else(bad)?, parse_u32(m).ok_or_else(bad)?)),
        None => Ok((parse_u32(spec).ok_or_else(bad)?, u32::MAX)),
    }
}

/// `inode:N` or a path to a netns file; returns the inode and the path.
pub fn parse_netns(spec: &str) -> anyhow::Result<(u32, Option<String>)> {
    if let Some(n) = spec.strip_prefix("inode:") {
        let inode = n.parse().map_err(|_| usage(format!("invalid --filter-netns {spec:?}: inode must be a number")))?;
        return Ok((inode, None));
    }
    let meta = std::fs::metadata(spec)
        .map_err(|e| usage(format!("--filter-netns {spec}: {e}; give inode:N or a path like /proc/PID/ns/net")))?;
    Ok((meta.ino() as u32, Some(spec.to_owned())))
}

/// The interface's index, looked up inside the named netns when one is given.
fn ifindex_in(name: &str, netns: Option<&str>) -> anyhow::Result<u32> {
    let lookup = || {
        let c = std::ffi::CString::new(name).map_err(|_| usage("interface name contains NUL"))?;
        // SAFETY: c is a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            let ns = netns.map_or(String::from("skbtrace's network namespace"), |p| p.to_owned());
            return Err(usage(format!("--filter-ifname: no interface named {name:?} in {ns}")));
        }
        Ok(index)
    };
    match netns {
        None => lookup(),
        Some(path) => crate::netns::within(Path::new(path), lookup),
    }
}
