//! tcpdump expressions × generated packets: the translated filter must give libpcap's verdict
//! for every pair, in rbpf and in the kernel.

use super::packets::{self, Packet};
use super::{SNAPLEN, kernel, kernel_available, rbpf_vm, reference};
use crate::filter::{CbpfInsn, FilterError, Insn, LinkType, bytes_read, compile, compile_cbpf};

const EXPRESSIONS: &[&str] = &[
    "",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "vlan",
    "vlan 100",
    "vlan and ip",
    "vlan and udp port 53",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "host 2001:db8::1",
    "src host 2001:db8::2",
    "ip6 dst host ff02::1",
    "net 10.0.0.0/24",
    "src net 192.168.0.0/16",
    "dst net 172.16.0.0/12",
    "net 2001:db8::/32",
    "port 80",
    "tcp port 443",
    "udp port 53",
    "src port 4000",
    "dst port 4000",
    "tcp dst port 22",
    "portrange 1000-4000",
    "tcp src portrange 4000-8080",
    "udp and dst port 4000 and src host 10.0.0.1 and not icmp and len > 20",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-rst != 0 or tcp[tcpflags] & tcp-fin != 0",
    "tcp[13] = 0x12",
    "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
    "icmp[icmptype] = icmp-echo",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp6 and ip6[40] = 128",
    "icmp6[icmp6type] = icmp6-neighborsolicit",
    "ether host 1:2:3:4:5:6",
    "ether src 02:00:00:00:00:01",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x88cc",
    "ether[12:2] = 0x0806",
    "len <= 60",
    "len >= 100",
    "greater 200",
    "less 64",
    "ip[2:2] > 100",
    "ip[0] & 0xf > 5",
    "(ip[0] & 0xf) * 4 = 20",
    "ip[0] & 0xf * 4 != 0",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    "ip[8] < 64",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
    "ip[1] / 4 = 0",
    "ip[2:2] % 7 = 3",
    "ip[9] ^ 6 = 0",
    "ip[0] >> 4 = 4",
    "-ip[9] = -17",
    "ip[16] | ip[17] = 10",
    "udp[4:2] > 16",
    "ip[ip[0] & 0xf] = 0",
    "ip[2:2] / ip[8] > 1",
    "ip[2:2] % ip[9] > 3",
    "ip[0] << (ip[8] & 0x3f) > 0",
    "ip[0] >> (ip[8] & 0x3f) > 0",
    "ip protochain 17",
    "ip protochain 6",
    "ip6 protochain 6",
    "ip6 protochain 17 or ip protochain 6",
    "protochain 58",
    "not ip",
    "not (tcp or udp)",
    "(tcp port 80 or udp port 53) and not host 10.0.0.1",
    "ip and (icmp or (tcp and port 22))",
    "ip6 and (tcp or icmp6)",
    "ip multicast",
    "ip6 multicast",
    "ip6 and ip6[6] = 0",
    "ip and ip[9] = 1 and icmp[0] = 8",
];

/// A loaded filter's `r0` for the captured bytes of a packet of the given length.
type Verdict<'a> = Box<dyn Fn(&[u8], u32) -> u64 + 'a>;

/// One expression compiled for one link type.
pub struct Case {
    pub expr: &'static str,
    pub cbpf: Vec<CbpfInsn>,
    pub ebpf: Vec<Insn>,
}

/// Every expression that libpcap accepts for `link`; link-layer ones must fail as such on raw IP.
pub fn cases(link: LinkType) -> Vec<Case> {
    let mut cases = Vec::new();
    for &expr in EXPRESSIONS {
        match (compile_cbpf(expr, link, SNAPLEN), compile(expr, link, SNAPLEN)) {
            (Ok(cbpf), Ok(compiled)) => cases.push(Case { expr, cbpf, ebpf: compiled.insns }),
            (_, Err(FilterError::WrongLinkType { .. })) if link == LinkType::RawIp => {}
            (cbpf, ebpf) => {
                panic!("{expr:?} on {link:?}: {:?} / {:?}", cbpf.map(|p| p.len()), ebpf.map(|c| c.insns.len()))
            }
        }
    }
    cases
}

fn packets(link: LinkType) -> Vec<Packet> {
    match link {
        LinkType::Ethernet => packets::ethernet_frames(),
        LinkType::RawIp => packets::raw_ip(),
    }
}

/// What a filter sees of a packet's bytes: at most `SNAPLEN`.
fn captured(packet: &Packet) -> &[u8] {
    &packet.data[..packet.data.len().min(SNAPLEN as usize)]
}

/// Compares `verdict` with libpcap on every packet; returns the disagreements and how many
/// packets libpcap matched per expression.
fn disagreements(
    link: LinkType,
    mut verdict: impl FnMut(&Case) -> Result<Verdict<'_>, String>,
) -> (Vec<String>, Vec<(String, usize)>) {
    let packets = packets(link);
    assert!(packets.len() >= 200, "{} {link:?} packets", packets.len());
    let mut wrong = Vec::new();
    let mut matched = Vec::new();
    let cases = cases(link);
    for case in &cases {
        let run = match verdict(case) {
            Ok(run) => run,
            Err(e) => {
                wrong.push(format!("{:?} ({link:?}): {e}", case.expr));
                continue;
            }
        };
        let mut hits = 0;
        for packet in &packets {
            let data = captured(packet);
            let want = reference::run(&case.cbpf, data, packet.wire_len) != 0;
            hits += usize::from(want);
            let got = run(data, packet.wire_len) != 0;
            if got != want {
                wrong.push(format!("{:?} ({link:?}) on {}: got {got}, libpcap {want}", case.expr, packet.what));
            }
        }
        matched.push((case.expr.to_string(), hits));
    }
    (wrong, matched)
}

fn assert_agree(executor: &str, link: LinkType, (wrong, matched): (Vec<String>, Vec<(String, usize)>)) {
    assert!(
        wrong.is_empty(),
        "{executor} on {link:?}: {} disagreements:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
    // The packets must exercise the filters: each expression matches some and misses some.
    let packets = packets(link).len();
    let dull: Vec<_> = matched
        .iter()
        .filter(|(expr, hits)| (*hits == 0 || *hits == packets) && !expr.is_empty())
        // Reads the IPv4 source address on raw IP, none of which starts with 8.6.
        .filter(|(expr, _)| !(link == LinkType::RawIp && expr == "ether[12:2] = 0x0806"))
        .collect();
    assert!(dull.is_empty(), "{link:?}: expressions matching no packet or all: {dull:?}");
    eprintln!("{executor} on {link:?}: {} expressions × {packets} packets agree with libpcap", matched.len());
}

/// The kernel copies only `bytes_read` bytes before filtering: on every packet, libpcap's
/// verdict on those bytes must be its verdict on everything captured.
#[test]
fn the_bytes_a_filter_reads_decide_its_verdict() {
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let packets = packets(link);
        let mut short = 0;
        for case in cases(link) {
            let reads = bytes_read(&case.cbpf, SNAPLEN) as usize;
            short += usize::from(reads < SNAPLEN as usize);
            for packet in &packets {
                let data = captured(packet);
                let head = &data[..data.len().min(reads)];
                assert_eq!(
                    reference::run(&case.cbpf, data, packet.wire_len) != 0,
                    reference::run(&case.cbpf, head, packet.wire_len) != 0,
                    "{:?} ({link:?}) on {}, reading {reads} bytes",
                    case.expr,
                    packet.what
                );
            }
        }
        // Most expressions read a header or two, not the whole buffer.
        assert!(short * 2 > EXPRESSIONS.len(), "{link:?}: only {short} read less than {SNAPLEN}");
    }
}

fn in_rbpf(case: &Case) -> Result<Verdict<'_>, String> {
    Ok(Box::new(|data, wire_len| {
        rbpf_vm::run(&case.ebpf, data, wire_len, SNAPLEN as usize).unwrap_or_else(|e| panic!("{}: {e}", case.expr))
    }))
}

#[test]
fn expressions_agree_with_libpcap_in_rbpf() {
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        assert_agree("rbpf", link, disagreements(link, in_rbpf));
    }
}

#[test]
fn expressions_agree_with_libpcap_in_the_kernel() {
    if !kernel_available("expressions_agree_with_libpcap_in_the_kernel") {
        return;
    }
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let mut busiest = (0, "");
        let result = disagreements(link, |case| {
            let filter = kernel::KernelFilter::load(&case.ebpf)?;
            if filter.verifier_insns > busiest.0 {
                busiest = (filter.verifier_insns, case.expr);
            }
            Ok(Box::new(move |data, wire_len| {
                let verdict = filter.run(data, wire_len);
                assert_ne!(verdict, kernel::HARNESS_FAILED, "{}", case.expr);
                verdict.into()
            }))
        });
        eprintln!("kernel on {link:?}: the verifier worked hardest on {:?}: {} instructions", busiest.1, busiest.0);
        assert_agree("kernel", link, result);
        // The tracer's own program shares the verifier's budget of 1M instructions.
        assert!(busiest.0 < 100_000, "{busiest:?}");
    }
}
