//! Tests of the filter compiler. Every translated program is held to libpcap's own
//! `bpf_filter()` (`reference`) in two executors: rbpf's interpreter (`rbpf_vm`, no privileges)
//! and the running kernel (`kernel`: the real verifier, then `BPF_PROG_TEST_RUN`).

mod differential;
mod kernel;
mod opcodes;
mod packets;
mod random_programs;
mod rbpf_vm;
mod reference;

use super::{FilterError, Insn, LinkType, MAX_INSNS, bytes_read, compile, compile_cbpf, compile_pair, match_all};

const SNAPLEN: u32 = kernel::SNAPLEN as u32;

/// Whether the kernel tests can run here; prints why not. Under CI, where the tests run as root,
/// BPF being unavailable is a failure instead.
fn kernel_available(test: &str) -> bool {
    match kernel::available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: BPF unavailable under CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why} (run as root to check against the kernel verifier)");
            false
        }
    }
}

#[test]
fn instructions_encode_like_the_kernel() {
    let insn = Insn { code: 0x61, dst: 3, src: 1, off: -2, imm: 0x1234_5678 };
    assert_eq!(insn.to_bytes(), [0x61, 0x13, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]);
}

#[test]
fn match_all_matches_every_packet() {
    for data in [&[][..], &[0x45; 300]] {
        assert_eq!(rbpf_vm::run(&match_all(), data, data.len() as u32, SNAPLEN as usize), Ok(1));
    }
}

#[test]
fn syntax_errors_carry_libpcap_message() {
    match compile("tcp port", LinkType::Ethernet, SNAPLEN) {
        Err(FilterError::Invalid(message)) => {
            assert!(message.contains("syntax error"), "{message}")
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(matches!(compile("ip and arp", LinkType::Ethernet, SNAPLEN), Err(FilterError::Invalid(_))));
    assert!(matches!(compile("ip and arp", LinkType::RawIp, SNAPLEN), Err(FilterError::Invalid(_))));
}

#[test]
fn link_layer_expressions_are_refused_on_raw_ip() {
    for expr in ["arp", "ether host 1:2:3:4:5:6", "vlan", "ether proto 0x88cc"] {
        assert!(compile(expr, LinkType::Ethernet, SNAPLEN).is_ok(), "{expr}");
        match compile(expr, LinkType::RawIp, SNAPLEN) {
            Err(FilterError::WrongLinkType { link: LinkType::RawIp, message }) => {
                assert!(!message.is_empty(), "{expr}");
            }
            other => panic!("{expr}: expected WrongLinkType, got {other:?}"),
        }
    }
}

#[test]
fn raw_ip_filters_read_the_ip_header_at_offset_zero() {
    let cbpf = compile_cbpf("ip[9] = 17", LinkType::RawIp, SNAPLEN).unwrap();
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    packet[9] = 17;
    assert_ne!(reference::run(&cbpf, &packet, 28), 0);
    let ebpf = compile("ip[9] = 17", LinkType::RawIp, SNAPLEN).unwrap().insns;
    assert_ne!(rbpf_vm::run(&ebpf, &packet, 28, SNAPLEN as usize), Ok(0));
}

#[test]
fn oversized_expressions_are_too_large() {
    // libpcap's optimizer folds 500 IPv4 hosts into 2777 instructions, and takes seconds to do it;
    // IPv6 addresses take four compares each.
    let expr = (0..500).map(|i| format!("host 2001:db8::{i:x}")).collect::<Vec<_>>().join(" or ");
    match compile(&expr, LinkType::Ethernet, SNAPLEN) {
        Err(FilterError::TooLarge { insns, .. }) => assert!(insns > MAX_INSNS),
        other => panic!("expected TooLarge, got {:?}", other.map(|p| p.insns.len())),
    }
}

#[test]
fn unusable_snap_lengths_are_refused() {
    for snaplen in [0, 40_000] {
        assert!(matches!(compile("ip", LinkType::Ethernet, snaplen), Err(FilterError::Unsupported(_))));
    }
}

#[test]
fn filters_read_only_the_headers_they_test() {
    let reads = |expr, link| bytes_read(&compile_cbpf(expr, link, SNAPLEN).unwrap(), SNAPLEN);
    // The EtherType.
    assert_eq!(reads("arp", LinkType::Ethernet), 14);
    assert_eq!(reads("ip[9] = 17", LinkType::RawIp), 10);
    // A port lies past an IPv4 header of up to 60 bytes.
    assert_eq!(reads("udp and port 9", LinkType::Ethernet), 14 + 60 + 4);
    assert_eq!(reads("udp and port 9", LinkType::RawIp), 60 + 4);
    // The packet's length comes with it; a header chain has no bound.
    assert_eq!(reads("len > 20", LinkType::Ethernet), 0);
    assert_eq!(
        reads("udp and dst port 4000 and src host 10.0.0.1 and not icmp and len > 20", LinkType::Ethernet),
        14 + 60 + 4
    );
    assert_eq!(reads("ip6 protochain 6", LinkType::Ethernet), SNAPLEN);
    assert_eq!(reads("tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420", LinkType::Ethernet), SNAPLEN);
}

#[test]
fn the_five_clause_example_stays_small() {
    let expr = "udp and dst port 4000 and src host 10.0.0.1 and not icmp and len > 20";
    let insns = compile(expr, LinkType::Ethernet, SNAPLEN).unwrap().insns.len();
    eprintln!("{expr}: {insns} eBPF instructions");
    assert!(insns < 64, "{insns}");
}

#[test]
fn link_layer_expressions_match_nothing_without_a_link_layer() {
    let arp_request = [[0xff; 6].as_slice(), &[2, 0, 0, 0, 0, 1], &[0x08, 0x06], &[0; 28]].concat();
    let (ethernet, raw_ip) = compile_pair("arp", SNAPLEN).unwrap();
    let (ethernet, raw_ip) = (ethernet.insns, raw_ip.insns);
    assert_ne!(rbpf_vm::run(&ethernet, &arp_request, 42, SNAPLEN as usize), Ok(0));
    assert_eq!(rbpf_vm::run(&raw_ip, &arp_request, 42, SNAPLEN as usize), Ok(0));
    assert!(matches!(compile_pair("tcp port", SNAPLEN), Err(FilterError::Invalid(_))));
}
