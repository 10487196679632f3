//! What a verdict rests on, and where user-space evidence comes from: the
//! netns's name, its listening sockets (`/proc/thread-self/net/{udp,tcp}{,6}`),
//! sysctls, routes and iptables ruleset, each read *inside* the event's netns
//! (entered by inode through `/run/netns/*` or `/proc/*/ns/net`, with setns
//! on a thread of its own). [`Environment`] is the seam: rules are unit-tested
//! against a fake one. [`Host`] caches every answer for a second, so that a
//! flood of drops costs one lookup per netns per second, not one per packet.

use std::{
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use foldhash::HashMap;
use serde::Serialize;

use crate::nft_trace::ruleset;

/// Conntrack's view of a story when the packet carried no entry: `NotInUse`
/// where the netns has no conntrack, else `Unknown`. (A packet that carried
/// one shows it: `Story::ct`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ct {
    Unknown,
    NotInUse,
}

impl Ct {
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown: the packet carried no conntrack entry",
            Self::NotInUse => "conntrack not in use in this netns",
        }
    }
}

/// One fact a verdict used: what, its value, and whether it was inferred
/// (read after the fact, or guessed) rather than seen on the packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
    pub inferred: bool,
}

/// The `evidence` object of a verdict; every field is always present.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Evidence {
    pub netns: u32,
    /// From /run/netns, empty when it has none.
    pub netns_name: String,
    pub ifname: String,
    /// The packet's tuple where the story ended.
    pub tuple: String,
    pub drop_reason: String,
    pub location: String,
    pub ct: String,
    pub facts: Vec<Fact>,
    /// What would have made the verdict surer, and how to get it.
    pub missing: Vec<String>,
    /// The nf_tables rule or policy that dropped it (`--nft-trace`); empty
    /// values otherwise.
    pub nft: NftEvidence,
}

/// `evidence.nft`: what `--nft-trace` saw decide, every field always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NftEvidence {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: String,
    /// `rule`, `policy` (or `return`), empty when none.
    pub r#type: String,
    /// The rule's handle; 0 for a policy or none.
    pub handle: u64,
    /// The rule's text as `nft -a list` prints it (read after the drop),
    /// empty when unknown or a policy.
    pub rule: String,
    pub verdict: String,
}

impl Evidence {
    pub fn fact(&mut self, name: impl Into<String>, value: impl Into<String>, inferred: bool) {
        self.facts.push(Fact { name: name.into(), value: value.into(), inferred });
    }

    pub fn missing(&mut self, what: impl Into<String>) {
        self.missing.push(what.into());
    }
}

/// A socket bound in a netns, from `/proc/net/{udp,tcp}{,6}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// Datagrams dropped at this socket (UDP's `drops` column).
    pub drops: u64,
}

/// Where evidence outside the events comes from.
pub trait Environment {
    /// The netns's name in /run/netns, if it has one.
    fn netns_name(&mut self, netns: u32) -> Option<String>;
    /// Listening TCP or bound UDP sockets (`proto` 6 or 17).
    fn listeners(&mut self, netns: u32, proto: u8) -> Result<Vec<Listener>, String>;
    /// `key` as `sysctl` names it (`net.ipv4.ip_forward`).
    fn sysctl(&mut self, netns: u32, key: &str) -> Result<String, String>;
    /// `ip route get ADDR`'s answer, one line.
    fn route_get(&mut self, netns: u32, addr: IpAddr) -> Result<String, String>;
    /// A device's MTU.
    fn link_mtu(&mut self, netns: u32, dev: &str) -> Result<u32, String>;
    /// `iptables-save` (or `ip6tables-save`) of the netns.
    fn iptables(&mut self, netns: u32, v6: bool) -> Result<String, String>;
    /// The process holding socket `inode`, as `exe:pid`.
    fn socket_owner(&mut self, inode: u64) -> Option<String>;
    fn ct(&mut self, netns: u32) -> Ct;
    /// The conntrack table of the netns, read through ctnetlink, as text:
    /// one `orig=… reply=…` line per entry whose original source is `src`.
    fn ct_entries_from(&mut self, netns: u32, proto: u8, src: (IpAddr, u16)) -> Result<Vec<String>, String>;
    /// nf_tables rule `handle` of a table of the netns: its chain and text.
    fn nft_rule(&mut self, netns: u32, table: &NftTable<'_>, handle: u64) -> Result<ruleset::Rule, String> {
        let _ = (netns, table, handle);
        Err("no nf_tables ruleset here".to_owned())
    }
}

/// A table as `nft list table` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NftTable<'a> {
    pub family: &'a str,
    pub table: &'a str,
}

/// The real host, with a cache.
#[derive(Default)]
pub struct Host {
    /// Where each netns was found, and when a netns that was not found was
    /// last looked for: a flood of events from it must not rescan /proc.
    paths: HashMap<u32, (Instant, Option<PathBuf>, Option<String>)>,
    /// netns → key → when it was read and what. By netns first, so that a
    /// lookup needs no owned key: every verdict asks a few of these.
    cache: HashMap<u32, HashMap<String, Read>>,
}

/// When a value was read, and what was read (or why it could not be).
type Read = (Instant, Result<String, String>);

const TTL: Duration = Duration::from_secs(1);

impl Host {
    /// A path to open for `netns`, and its /run/netns name.
    fn locate(&mut self, netns: u32) -> (Option<PathBuf>, Option<String>) {
        if let Some((path, name)) = self.located(netns) {
            return (path.clone(), name.clone());
        }
        let inode = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.ino());
        let mut found = (None, None);
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for entry in dir.flatten() {
                if inode(&entry.path()) == Some(netns.into()) {
                    found = (Some(entry.path()), Some(entry.file_name().to_string_lossy().into_owned()));
                    break;
                }
            }
        }
        if found.0.is_none()
            && let Ok(dir) = std::fs::read_dir("/proc")
        {
            let want = format!("net:[{netns}]");
            for entry in dir.flatten() {
                let path = entry.path().join("ns/net");
                if std::fs::read_link(&path).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                    found.0 = Some(path);
                    break;
                }
            }
        }
        if self.paths.len() > 4096 {
            self.paths.clear();
        }
        self.paths.insert(netns, (Instant::now(), found.0.clone(), found.1.clone()));
        found
    }

    /// Where `netns` was found, while that is still worth believing.
    fn located(&self, netns: u32) -> Option<(&Option<PathBuf>, &Option<String>)> {
        let (at, path, name) = self.paths.get(&netns)?;
        (path.is_some() || at.elapsed() < TTL).then_some((path, name))
    }

    /// `f` run inside `netns`, cached under `key` for a second.
    fn inside(
        &mut self,
        netns: u32,
        key: &str,
        f: impl FnOnce() -> Result<String, String> + Send,
    ) -> Result<String, String> {
        if let Some((at, v)) = self.cache.get(&netns).and_then(|keys| keys.get(key))
            && at.elapsed() < TTL
        {
            return v.clone();
        }
        let value = match self.locate(netns).0 {
            None => Err(format!("netns {netns} is gone (no /run/netns entry or process holds it)")),
            Some(path) => crate::netns::within(&path, || Ok(f())).unwrap_or_else(|e| Err(format!("{e:#}"))),
        };
        // Counted only here, once per value read: lookups stay free.
        if self.cache.values().map(HashMap::len).sum::<usize>() > 4096 {
            self.cache.clear();
        }
        self.cache.entry(netns).or_default().insert(key.to_owned(), (Instant::now(), value.clone()));
        value
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Environment for Host {
    fn netns_name(&mut self, netns: u32) -> Option<String> {
        match self.located(netns) {
            Some((_, name)) => name.clone(),
            None => self.locate(netns).1,
        }
    }

    fn listeners(&mut self, netns: u32, proto: u8) -> Result<Vec<Listener>, String> {
        let name = if proto == 6 { "tcp" } else { "udp" };
        let text = self.inside(netns, name, move || {
            // thread-self: /proc/self/net is the thread group leader's netns.
            let mut all = String::new();
            for file in [name.to_owned(), format!("{name}6")] {
                if let Ok(t) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
                    all.push_str(&t);
                }
            }
            Ok(all)
        })?;
        Ok(parse_proc_net(&text, proto == 6))
    }

    fn sysctl(&mut self, netns: u32, key: &str) -> Result<String, String> {
        let path = || format!("/proc/sys/{}", key.replace('.', "/"));
        self.inside(netns, key, move || {
            let path = path();
            std::fs::read_to_string(&path).map(|s| s.trim().to_owned()).map_err(|e| format!("reading {path}: {e}"))
        })
    }

    fn route_get(&mut self, netns: u32, addr: IpAddr) -> Result<String, String> {
        let a = addr.to_string();
        self.inside(netns, &format!("route {a}"), move || {
            run("ip", &["route", "get", &a]).map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        })
    }

    fn link_mtu(&mut self, netns: u32, dev: &str) -> Result<u32, String> {
        let d = dev.to_owned();
        let text = self.inside(netns, &format!("mtu {dev}"), move || run("ip", &["-o", "link", "show", "dev", &d]))?;
        let mtu = text.split_whitespace().skip_while(|w| *w != "mtu").nth(1);
        mtu.and_then(|m| m.parse().ok()).ok_or_else(|| format!("no mtu in `ip link show dev {dev}`: {text}"))
    }

    fn iptables(&mut self, netns: u32, v6: bool) -> Result<String, String> {
        let program = if v6 { "ip6tables-save" } else { "iptables-save" };
        self.inside(netns, program, move || run(program, &[]))
    }

    fn socket_owner(&mut self, inode: u64) -> Option<String> {
        let want = format!("socket:[{inode}]");
        for proc in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
            if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str())) {
                let pid = proc.file_name().to_string_lossy().into_owned();
                let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                return Some(format!("{}:{pid}", comm.trim()));
            }
        }
        None
    }

    fn ct_entries_from(&mut self, netns: u32, proto: u8, src: (IpAddr, u16)) -> Result<Vec<String>, String> {
        // Status bits by number are enough here: the tuples are the evidence.
        let names = crate::conntrack::CtNames::default();
        let entries = crate::conntrack::netlink::dump(netns, &names).map_err(|e| format!("{e:#}"))?;
        Ok(entries
            .iter()
            .filter(|e| e.orig.proto == proto && e.orig.src == Some(src.0) && e.orig.sport == src.1)
            .map(|e| format!("orig={} reply={}", e.orig, e.reply))
            .collect())
    }

    fn nft_rule(&mut self, netns: u32, table: &NftTable<'_>, handle: u64) -> Result<ruleset::Rule, String> {
        let args = ["-a", "list", "table", table.family, table.table].map(str::to_owned);
        let key = args.join(" ");
        let listing = self.inside(netns, &key, move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("nft", &args).map_err(|e| match e.contains("No such file") {
                true => "nft is not installed (Debian package nftables)".to_owned(),
                false => e,
            })
        })?;
        ruleset::find_rule(&listing, handle)
            .ok_or_else(|| format!("no rule with handle {handle} in `nft {key}` now (deleted since?)"))
    }

    fn ct(&mut self, netns: u32) -> Ct {
        match self.sysctl(netns, "net.netfilter.nf_conntrack_count") {
            Err(e) if e.contains("No such file") => Ct::NotInUse,
            _ => Ct::Unknown,
        }
    }
}

/// Sockets of `/proc/net/{udp,tcp}{,6}`: UDP's bound ones, TCP's listening
/// ones (state 0A).
pub fn parse_proc_net(text: &str, tcp: bool) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 || cols[0] == "sl" {
            continue;
        }
        if tcp && cols[3] != "0A" {
            continue;
        }
        let Some((addr, port)) = cols[1].split_once(':') else { continue };
        let (Some(addr), Ok(port)) = (proc_addr(addr), u16::from_str_radix(port, 16)) else { continue };
        out.push(Listener {
            addr,
            port,
            inode: cols[9].parse().unwrap_or(0),
            drops: if tcp { 0 } else { cols.last().and_then(|d| d.parse().ok()).unwrap_or(0) },
        });
    }
    out
}

/// `0100007F` → 127.0.0.1: each 32-bit word in host (little-endian) order.
fn proc_addr(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<u32>> =
        (0..hex.len() / 8).map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()).collect();
    let bytes: Vec<u8> = words?.iter().flat_map(|w| w.to_le_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_and_tcp() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 0100007F:0FA0 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 45678 2 0000000000000000 7\n";
        let l = parse_proc_net(udp, false);
        assert_eq!(l, [Listener { addr: "127.0.0.1".parse().unwrap(), port: 4000, inode: 45678, drops: 7 }]);
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 20 4 30 10 -1\n";
        let l = parse_proc_net(tcp, true);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].addr.to_string(), l[0].port), ("0.0.0.0".to_owned(), 8080));
        let v6 = "  0: 00000000000000000000000001000000:0FA0 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0\n";
        assert_eq!(parse_proc_net(v6, false)[0].addr.to_string(), "::1");
    }
}
