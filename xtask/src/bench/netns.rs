//! Two throwaway network namespaces joined by a veth pair, removed in Drop
//! even on error; running code inside one of them; and the receiving
//! namespace's UDP counters.

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};

/// Sender side address (namespace A) and receiver side address (namespace B).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const MAC_A: &str = "02:5b:00:00:00:01";
const MAC_B: &str = "02:5b:00:00:00:02";

pub struct Pair {
    names: [String; 2],
}

impl Pair {
    pub fn create() -> anyhow::Result<Self> {
        let id = std::process::id();
        let pair = Self { names: [format!("skbbench-a-{id}"), format!("skbbench-b-{id}")] };
        let [a, b] = &pair.names;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        for ns in [pair.path_a(), pair.path_b()] {
            // No IPv6: its router solicitations and MLD reports would be drops
            // of their own in the other namespace.
            run_in(&ns, || std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"))
                .context("disabling IPv6 in the benchmark namespaces")?;
        }
        let (va, vb) = (format!("sbba{id}"), format!("sbbb{id}"));
        let (a4, b4) = (format!("{ADDR_A}/24"), format!("{ADDR_B}/24"));
        let (a_ip, b_ip) = (ADDR_A.to_string(), ADDR_B.to_string());
        #[rustfmt::skip]
        let veth = vec![
            "link", "add", &va, "address", MAC_A, "netns", a,
            "type", "veth", "peer", "name", &vb, "address", MAC_B, "netns", b,
        ];
        for args in [
            veth,
            vec!["-n", a, "addr", "add", &a4, "dev", &va],
            vec!["-n", b, "addr", "add", &b4, "dev", &vb],
            vec!["-n", a, "link", "set", &va, "up"],
            vec!["-n", b, "link", "set", &vb, "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
            // Permanent neighbours: no ARP queueing (and dropping) mid-sample.
            vec!["-n", a, "neigh", "replace", &b_ip, "lladdr", MAC_B, "dev", &va, "nud", "permanent"],
            vec!["-n", b, "neigh", "replace", &a_ip, "lladdr", MAC_A, "dev", &vb, "nud", "permanent"],
        ] {
            ip(&args)?;
        }
        Ok(pair)
    }

    /// The sending namespace.
    pub fn path_a(&self) -> PathBuf {
        netns_path(&self.names[0])
    }

    /// The receiving namespace, where every datagram is dropped.
    pub fn path_b(&self) -> PathBuf {
        netns_path(&self.names[1])
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `f` on a fresh thread that has entered the network namespace at
/// `netns`; the thread ends with `f`, so no other code runs in there.
/// Sockets and `/proc/thread-self/net` files opened by `f` stay bound to that
/// namespace after it returns.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> anyhow::Result<T> {
    let ns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let joined = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns only changes this thread's namespace; the fd is valid.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
    });
    let result = joined.map_err(|_| anyhow!("a thread in {} panicked", netns.display()))?;
    result.with_context(|| format!("inside {}", netns.display()))
}

/// `/proc/net/snmp` of one namespace, opened once and re-read.
pub struct UdpCounters {
    file: File,
    text: String,
}

impl UdpCounters {
    pub fn open(netns: &Path) -> anyhow::Result<Self> {
        let file = run_in(netns, || File::open("/proc/thread-self/net/snmp"))?;
        Ok(Self { file, text: String::with_capacity(4096) })
    }

    /// The `Udp NoPorts` counter: datagrams dropped because no socket had their port.
    pub fn no_ports(&mut self) -> anyhow::Result<u64> {
        self.text.clear();
        self.file.seek(SeekFrom::Start(0)).context("rewinding /proc/net/snmp")?;
        self.file.read_to_string(&mut self.text).context("reading /proc/net/snmp")?;
        snmp_value(&self.text, "Udp", "NoPorts").context("/proc/net/snmp has no Udp NoPorts counter")
    }
}

/// A counter from `/proc/net/snmp`'s pairs of lines (`Udp: names…`, `Udp: values…`).
fn snmp_value(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::snmp_value;

    #[test]
    fn reads_udp_no_ports() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors\nUdp: 5 1234 0\n\
                    UdpLite: InDatagrams NoPorts InErrors\nUdpLite: 0 0 0\n";
        assert_eq!(snmp_value(text, "Udp", "NoPorts"), Some(1234));
        assert_eq!(snmp_value(text, "UdpLite", "NoPorts"), Some(0));
        assert_eq!(snmp_value(text, "Tcp", "NoPorts"), None);
    }
}
