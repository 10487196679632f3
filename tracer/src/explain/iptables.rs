//! Which iptables rules could have dropped a packet: `iptables-save` of the
//! netns, read after the fact, its DROP and REJECT rules (and DROP chain
//! policies) matched against the packet's tuple. On the tracepoint backend
//! this is inference, and every answer says so; a rule using a match this
//! reader does not understand is reported as one that *may* match.

use std::net::IpAddr;

use crate::decode::{Proto, Tuple};

/// A DROP or REJECT that may explain a drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub table: String,
    pub chain: String,
    /// The rule as iptables-save prints it, or `policy DROP`.
    pub rule: String,
    /// Every condition of the rule was understood and matches.
    pub certain: bool,
    /// The rule matches on conntrack state INVALID.
    pub ct_invalid: bool,
}

/// What is known of the packet besides its tuple.
#[derive(Clone, Copy, Debug, Default)]
pub struct Packet<'a> {
    pub tuple: Tuple,
    pub in_if: Option<&'a str>,
    pub out_if: Option<&'a str>,
}

const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// DROP/REJECT rules of `save` that match `p`, then the DROP policies of
/// the built-in chains in `chains` (e.g. INPUT, FORWARD).
pub fn candidates(save: &str, p: &Packet<'_>, chains: &[&str]) -> Vec<Candidate> {
    let mut table = String::new();
    let mut out = Vec::new();
    let mut policies = Vec::new();
    for line in save.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            if let (Some(chain), Some("DROP")) = (words.next(), words.next())
                && table == "filter"
                && chains.contains(&chain)
            {
                policies.push(Candidate {
                    table: table.clone(),
                    chain: chain.to_owned(),
                    rule: "policy DROP".to_owned(),
                    certain: true,
                    ct_invalid: false,
                });
            }
        } else if line.starts_with("-A ")
            && let Some(c) = judge(&table, line, p)
            // Rules of other built-in chains never see this packet; user chains may.
            && (chains.contains(&c.chain.as_str()) || !BUILT_IN.contains(&c.chain.as_str()))
        {
            out.push(c);
        }
    }
    out.sort_by_key(|c| !c.certain);
    out.extend(policies);
    out
}

/// The rule as a candidate when it drops and does not rule `p` out.
fn judge(table: &str, line: &str, p: &Packet<'_>) -> Option<Candidate> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let chain = words.get(1)?.to_string();
    let mut certain = true;
    let mut ct_invalid = false;
    let mut verdict = None;
    let mut i = 2;
    let t = &p.tuple;
    while i < words.len() {
        let negate = words[i] == "!";
        if negate {
            i += 1;
        }
        let opt = *words.get(i)?;
        let arg = words.get(i + 1).copied();
        let step = |ok: Option<bool>| -> Option<bool> { ok.map(|m| m != negate) };
        let matched = match opt {
            "-s" => step(arg.and_then(|a| t.saddr.map(|s| in_cidr(s, a)))),
            "-d" => step(arg.and_then(|a| t.daddr.map(|d| in_cidr(d, a)))),
            "-p" => step(arg.map(|a| proto_is(t.proto, a))),
            "--dport" | "--dports" | "--destination-port" => step(arg.map(|a| port_in(t.dport, a))),
            "--sport" | "--sports" | "--source-port" => step(arg.map(|a| port_in(t.sport, a))),
            "-i" => step(p.in_if.zip(arg).map(|(i, a)| if_is(i, a))),
            "-o" => step(p.out_if.zip(arg).map(|(o, a)| if_is(o, a))),
            "--ctstate" | "--state" => {
                ct_invalid |= arg.is_some_and(|a| a.split(',').any(|s| s == "INVALID")) && !negate;
                None
            }
            "-m" | "--reject-with" => Some(true),
            "-j" => {
                verdict = arg;
                Some(true)
            }
            _ => None,
        };
        match matched {
            Some(false) => return None,
            Some(true) => {}
            None => certain = false,
        }
        // Options with a value take two words, a few flags one.
        i += if opt == "--syn" { 1 } else { 2 };
    }
    matches!(verdict, Some("DROP" | "REJECT")).then(|| Candidate {
        table: table.to_owned(),
        chain,
        rule: line.to_owned(),
        certain,
        ct_invalid,
    })
}

fn in_cidr(addr: IpAddr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap_or((cidr, if cidr.contains(':') { "128" } else { "32" }));
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else { return false };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn proto_is(p: Proto, name: &str) -> bool {
    match (p.name(), p) {
        _ if name == "all" => true,
        (Some(n), _) if n == name => true,
        (_, Proto::Ip(n)) => name.parse::<u8>() == Ok(n),
        _ => false,
    }
}

fn port_in(port: u16, spec: &str) -> bool {
    spec.split(',').any(|part| match part.split_once(':') {
        Some((lo, hi)) => {
            lo.parse::<u16>().is_ok_and(|lo| port >= lo) && hi.parse::<u16>().map_or(true, |hi| port <= hi)
        }
        None => part.parse::<u16>() == Ok(port),
    })
}

fn if_is(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(s: &str, sp: u16, d: &str, dp: u16) -> Tuple {
        Tuple {
            saddr: Some(s.parse().unwrap()),
            daddr: Some(d.parse().unwrap()),
            sport: sp,
            dport: dp,
            proto: Proto::Ip(17),
            tcp_flags: 0,
        }
    }

    const SAVE: &str = "# Generated by iptables-nft-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [3:120]\n\
:OUTPUT ACCEPT [0:0]\n-A INPUT -s 10.9.0.0/16 -p udp -m udp --dport 4000 -j DROP\n\
-A INPUT -p tcp -m tcp --dport 22 -j DROP\n-A INPUT -m conntrack --ctstate INVALID -j DROP\n\
-A INPUT -i eth9 -p udp -j REJECT --reject-with icmp-port-unreachable\n-A INPUT -p udp -j ACCEPT\nCOMMIT\n";

    #[test]
    fn rules_that_match_the_tuple_come_first_then_unsure_ones_then_policies() {
        let p = Packet { tuple: udp("10.9.1.1", 5555, "10.8.0.2", 4000), in_if: Some("eth0"), out_if: None };
        let c = candidates(SAVE, &p, &["INPUT"]);
        assert_eq!(c.len(), 2, "{c:#?}");
        assert!(c[0].certain && c[0].rule.contains("--dport 4000"));
        assert!(!c[1].certain && c[1].ct_invalid);
        let c = candidates(SAVE, &p, &["FORWARD"]);
        assert_eq!(c.last().unwrap().rule, "policy DROP");
        let other = Packet { tuple: udp("10.7.1.1", 5555, "10.8.0.2", 4001), in_if: Some("eth9"), out_if: None };
        let c = candidates(SAVE, &other, &["INPUT"]);
        assert!(c.iter().any(|c| c.certain && c.rule.contains("REJECT")), "{c:#?}");
        assert!(!c.iter().any(|c| c.rule.contains("--dport 4000")));
    }

    #[test]
    fn negation_ranges_and_wildcards() {
        assert!(in_cidr("10.1.2.3".parse().unwrap(), "10.1.0.0/16"));
        assert!(!in_cidr("10.2.2.3".parse().unwrap(), "10.1.0.0/16"));
        assert!(in_cidr("fd00::1".parse().unwrap(), "fd00::/8"));
        assert!(port_in(4005, "4000:4010") && port_in(53, "22,53") && !port_in(54, "22,53"));
        assert!(if_is("veth12", "veth+") && !if_is("eth0", "veth+"));
        let p = Packet { tuple: udp("10.1.1.1", 1, "10.2.2.2", 4000), in_if: None, out_if: None };
        let save = "*filter\n-A INPUT ! -s 10.1.0.0/16 -j DROP\n-A INPUT ! -s 10.3.0.0/16 -j DROP\n";
        let c = candidates(save, &p, &["INPUT"]);
        assert_eq!(c.len(), 1);
        assert!(c[0].rule.contains("10.3.0.0"));
    }
}
