//! Two throwaway network namespaces (the test kit's) joined by a veth pair,
//! set up so that nothing but the flood crosses it; how the receiving
//! namespace drops the flood; and the counter of those drops.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use testkit::netns::{Netns, run_in, veth};

/// Sender side address (namespace A) and receiver side address (namespace B).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const MAC_A: &str = "02:5b:00:00:00:01";
const MAC_B: &str = "02:5b:00:00:00:02";

/// Where namespace B drops the flood to its UDP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Nothing listens: UDP drops it with NO_SOCKET, after clearing the
    /// skb's conntrack reference (`_nfct`), and counts it in `Udp NoPorts`.
    ClosedPort,
    /// An iptables rule in INPUT that matches on conntrack state drops it
    /// with NETFILTER_DROP, while the skb still holds its (new, never
    /// confirmed) conntrack entry; the rule counts it.
    Conntrack,
}

/// Both namespaces, and the rules in them, are removed when it is dropped,
/// on every exit path.
pub struct Pair {
    a: Netns,
    b: Netns,
    traffic: Traffic,
}

/// The rule of [`Traffic::Conntrack`] (iptables uses the nf_tables backend
/// where there is one), and how to read its packet counter.
fn conntrack_rule(port: u16) -> String {
    format!("iptables -w -A INPUT -p udp --dport {port} -m conntrack --ctstate NEW,ESTABLISHED -j DROP")
}
const READ_RULE: [&str; 5] = ["iptables", "-w", "-nvxL", "INPUT", "1"];

impl Pair {
    /// The namespaces, dropping UDP to `port` in B as `traffic` says.
    pub fn create(traffic: Traffic, port: u16) -> anyhow::Result<Self> {
        let (a, b) = (Netns::new("ba")?, Netns::new("bb")?);
        for ns in [&a, &b] {
            // No IPv6: its router solicitations and MLD reports would be drops
            // of their own in the other namespace. Set before the veth exists.
            ns.run(|| std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"))
                .context("disabling IPv6 in the benchmark namespaces")?;
        }
        let ends = veth(&a, &format!("{ADDR_A}/24"), &b, &format!("{ADDR_B}/24"))?;
        let (a_ip, b_ip) = (ADDR_A.to_string(), ADDR_B.to_string());
        // Fixed addresses and permanent neighbours: no ARP queueing (and
        // dropping) mid-sample. veth takes a new address while up.
        a.ip(&["link", "set", "dev", &ends.a, "address", MAC_A])?;
        b.ip(&["link", "set", "dev", &ends.b, "address", MAC_B])?;
        a.ip(&["neigh", "replace", &b_ip, "lladdr", MAC_B, "dev", &ends.a, "nud", "permanent"])?;
        b.ip(&["neigh", "replace", &a_ip, "lladdr", MAC_A, "dev", &ends.b, "nud", "permanent"])?;
        if traffic == Traffic::Conntrack {
            b.sh(&conntrack_rule(port)).context("adding the conntrack drop rule (needs iptables)")?;
        }
        Ok(Self { a, b, traffic })
    }

    /// The counter of B's drops of the flood.
    pub fn drops(&self) -> anyhow::Result<Drops> {
        Ok(match self.traffic {
            Traffic::ClosedPort => Drops::NoPorts(UdpCounters::open(&self.path_b())?),
            Traffic::Conntrack => Drops::Rule(self.b.name().to_owned()),
        })
    }

    /// The sending namespace.
    pub fn path_a(&self) -> PathBuf {
        PathBuf::from(self.a.path())
    }

    /// The receiving namespace, where every datagram is dropped.
    pub fn path_b(&self) -> PathBuf {
        PathBuf::from(self.b.path())
    }
}

/// Drops of the flood so far in namespace B.
pub enum Drops {
    /// [`Traffic::ClosedPort`]: `Udp NoPorts`.
    NoPorts(UdpCounters),
    /// [`Traffic::Conntrack`]: the packet counter of the drop rule in the namespace named so.
    Rule(String),
}

impl Drops {
    pub fn read(&mut self) -> anyhow::Result<u64> {
        match self {
            Self::NoPorts(counters) => counters.no_ports(),
            Self::Rule(netns) => {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", netns])
                    .args(READ_RULE)
                    .output()
                    .context("running iptables")?;
                let text = String::from_utf8_lossy(&out.stdout);
                let cmd = READ_RULE.join(" ");
                first_number(&text).with_context(|| format!("{cmd} printed no packet count: {text:?}"))
            }
        }
    }
}

/// `       3      132 DROP  17 …` (iptables -nvxL CHAIN N) → 3.
fn first_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
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
    use super::{first_number, snmp_value};

    #[test]
    fn reads_a_rule_counter() {
        let line = "       3      132 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            \
                    udp dpt:4000 ctstate NEW,ESTABLISHED\n";
        assert_eq!(first_number(line), Some(3));
        assert_eq!(first_number("iptables: Index of listing too big.\n"), None);
    }

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
