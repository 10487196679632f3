//! pcap-ng against pcap-parser, byte for byte, and read back by tshark.
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{Block, EnhancedPacketBlock, PcapBlockOwned, PcapNGSlice};

use super::*;

const BOOT_OFFSET_NS: u64 = 1_700_000_000_123_456_789;

fn event(capture: Capture, data: &[u8], len: u32, ifindex: u32, ifname: &[u8]) -> Event {
    let mut ev = Event::zeroed();
    ev.ktime_ns = 5_000_000_042;
    ev.capture = capture as u8;
    ev.data[..data.len()].copy_from_slice(data);
    ev.cap_len = data.len() as u16;
    ev.len = len;
    ev.ifindex = ifindex;
    ev.ifname[..ifname.len()].copy_from_slice(ifname);
    ev
}

fn write(events: &[(Event, &str)]) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new(), 128).unwrap();
    for (ev, comment) in events {
        w.write_event(ev, BOOT_OFFSET_NS, comment).unwrap();
    }
    w.flush().unwrap();
    w.into_inner()
}

/// Parses `bytes` back with pcap-parser's reader, failing on any error or leftover.
fn blocks(bytes: &[u8]) -> Vec<Block<'_>> {
    PcapNGSlice::from_slice(bytes)
        .expect("section header")
        .map(|b| match b.expect("valid block") {
            PcapBlockOwned::NG(b) => b,
            _ => panic!("legacy pcap block in a pcap-ng file"),
        })
        .collect()
}

/// The interface descriptions and packets among `blocks`, in order.
fn split<'a>(blocks: &'a [Block<'a>]) -> (Vec<&'a InterfaceDescriptionBlock<'a>>, Vec<&'a EnhancedPacketBlock<'a>>) {
    let (mut idbs, mut epbs) = (Vec::new(), Vec::new());
    for block in blocks {
        match block {
            Block::InterfaceDescription(idb) => idbs.push(idb),
            Block::EnhancedPacket(epb) => epbs.push(epb),
            _ => {}
        }
    }
    (idbs, epbs)
}

fn opt<'a>(options: &'a [PcapNGOption], code: OptionCode) -> Option<&'a [u8]> {
    options.iter().find(|o| o.code == code).map(|o| o.as_bytes().unwrap())
}

fn if_name<'a>(idb: &'a InterfaceDescriptionBlock) -> &'a str {
    std::str::from_utf8(opt(&idb.options, OPT_IF_NAME).unwrap()).unwrap()
}

fn comment<'a>(epb: &'a EnhancedPacketBlock) -> Option<&'a str> {
    opt(&epb.options, OptionCode::Comment).map(|c| std::str::from_utf8(c).unwrap())
}

#[test]
fn ethernet_event_round_trips() {
    let frame: Vec<u8> = (0..61).collect();
    let ev = event(Capture::Mac, &frame, 98, 2, b"eth0");
    let text = "kfree_skb_reason SKB_DROP_REASON_NO_SOCKET netns=4026531840 if=eth0";
    let bytes = write(&[(ev, text)]);
    let blocks = blocks(&bytes);

    assert!(matches!(blocks[0], Block::SectionHeader(_)));
    assert_eq!(blocks.len(), 3);
    let (idbs, epbs) = split(&blocks);
    let idb = idbs[0];
    assert_eq!(idb.linktype, Linktype::ETHERNET);
    assert_eq!(idb.snaplen, 128);
    assert_eq!(idb.ts_resolution(), Some(1_000_000_000));
    assert_eq!(idb.ts_offset(), 0);
    assert_eq!(if_name(idb), "eth0");

    let epb = epbs[0];
    assert_eq!(epb.if_id, 0);
    let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
    assert_eq!(ts, 5_000_000_042 + BOOT_OFFSET_NS);
    assert_eq!(epb.caplen, 61);
    assert_eq!(epb.orig_len(), 98);
    assert_eq!(epb.packet_data(), &frame[..]);
    assert_eq!(comment(epb), Some(text));
}

#[test]
fn one_idb_per_link_type_and_interface() {
    let ip = [0x60, 0, 0, 0];
    let bytes = write(&[
        (event(Capture::Mac, &[1; 14], 14, 2, b"eth0"), "a"),
        // Same device, bytes from the network header: a second interface.
        (event(Capture::Network, &ip, 40, 2, b"eth0"), "b"),
        (event(Capture::Mac, &[2; 14], 14, 2, b"eth0"), "c"),
        (event(Capture::Mac, &[3; 14], 14, 3, b"veth1"), "d"),
        // Leftover bytes after the NUL are not part of the name.
        (event(Capture::Mac, &[4; 14], 14, 3, b"veth1\0x"), "e"),
        (event(Capture::Network, &ip, 40, 2, b"eth0"), "f"),
    ]);
    let blocks = blocks(&bytes);
    let (idbs, epbs) = split(&blocks);
    let described: Vec<_> = idbs.iter().map(|i| (i.linktype, if_name(i))).collect();
    assert_eq!(described, [(Linktype::ETHERNET, "eth0"), (Linktype::RAW, "eth0"), (Linktype::ETHERNET, "veth1"),]);
    let ids: Vec<_> = epbs.iter().map(|e| (e.if_id, comment(e).unwrap())).collect();
    assert_eq!(ids, [(0, "a"), (1, "b"), (0, "c"), (2, "d"), (2, "e"), (1, "f")]);
    // Each IDB precedes the first packet that uses it.
    assert!(matches!(blocks[1], Block::InterfaceDescription(_)));
    assert!(matches!(blocks[3], Block::InterfaceDescription(_)));
}

#[test]
fn event_without_bytes_is_an_empty_raw_packet() {
    let mut ev = event(Capture::None, &[], 1500, 0, b"");
    // cap_len is ignored when nothing was captured.
    ev.cap_len = 20;
    let bytes = write(&[(ev, "no bytes"), (event(Capture::None, &[], 60, 7, b""), "")]);
    let blocks = blocks(&bytes);
    let (idbs, epbs) = split(&blocks);
    assert_eq!(idbs.len(), 2);
    assert!(idbs.iter().all(|i| i.linktype == Linktype::RAW));
    assert_eq!(if_name(idbs[0]), "any");
    assert_eq!(if_name(idbs[1]), "ifindex 7");
    assert_eq!(epbs.len(), 2);
    assert_eq!((epbs[0].caplen, epbs[0].orig_len()), (0, 1500));
    assert_eq!(comment(epbs[0]), Some("no bytes"));
    // An empty comment is left out rather than written empty.
    assert!(epbs[1].options.is_empty());
}

#[test]
fn original_length_counts_from_the_first_captured_byte() {
    let orig_len = |ev: Event| {
        let bytes = write(&[(ev, "x")]);
        split(&blocks(&bytes)).1[0].orig_len()
    };
    // A probe that sees skb->data past the MAC header: len counts from data.
    let mut ev = event(Capture::Mac, &[0; 64], 50, 1, b"lo");
    ev.data_offset = 14;
    assert_eq!(orig_len(ev), 64);
    ev.len = 1500;
    assert_eq!(orig_len(ev), 1514);
    // Never below what was captured, whatever the kernel said.
    ev.len = 10;
    ev.data_offset = -20;
    assert_eq!(orig_len(ev), 64);
}

#[test]
fn long_comments_are_cut_on_a_character_boundary() {
    // Cut to the option's 16-bit length, on a character boundary.
    let long = "é".repeat(40_000);
    let bytes = write(&[(event(Capture::Network, &[0x45; 3], 3, 1, b"lo"), &long)]);
    let blocks = blocks(&bytes);
    let kept = comment(split(&blocks).1[0]).unwrap();
    assert_eq!(kept.len(), 65_534);
    assert!(long.starts_with(kept));
}

/// The Enhanced Packet Block laid out by hand is the one pcap-parser's
/// `ToVec` writes for the same fields.
#[test]
fn packet_block_matches_pcap_parser_serialization() {
    // Every padding length, for packet bytes and for comments.
    let cases = [(0, ""), (1, "a"), (2, "ab"), (3, "abc"), (64, "four"), (65, "odd")];
    for (data_len, text) in cases {
        let data: Vec<u8> = (0..data_len).collect();
        let bytes = write(&[(event(Capture::Network, &data, 1000, 1, b"lo"), text)]);
        let blocks = blocks(&bytes);
        let epb_start = bytes.len() - split(&blocks).1[0].block_len1 as usize;

        let mut options = Vec::new();
        if !text.is_empty() {
            options.push(option(OptionCode::Comment, text.as_bytes()));
        }
        let ts = 5_000_000_042 + BOOT_OFFSET_NS;
        let mut expected = EnhancedPacketBlock {
            block_type: 0,
            block_len1: 0,
            if_id: 0,
            ts_high: (ts >> 32) as u32,
            ts_low: ts as u32,
            caplen: data_len.into(),
            origlen: 1000,
            data: &data,
            options,
            block_len2: 0,
        };
        assert_eq!(bytes[epb_start..], expected.to_vec().unwrap()[..]);
    }
}

/// Whether tshark can run; outside CI a missing tshark skips (said on stderr).
fn tshark_present() -> bool {
    let found = std::process::Command::new("tshark").arg("--version").output();
    if found.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "tshark is missing (Debian package tshark) and CI is set");
    eprintln!("skipping: tshark not found; install the Debian package tshark to run this test");
    false
}

/// Runs `tshark -r -` on `capture` printing `fields`, one line per packet.
fn tshark_fields(capture: &[u8], fields: &[&str]) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", "-", "-T", "fields", "-E", "separator=|"]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(capture).unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    let digit = |d: u8| (d as char).to_digit(16).unwrap() as u8;
    digits.chunks(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

/// What a user opening the file in Wireshark sees: one packet per event,
/// the comment, the decoded ports, the interface and the time.
#[test]
fn tshark_reads_the_capture() {
    if !tshark_present() {
        return;
    }
    let udp4 = hex(
        "020000000002 020000000001 0800 \
         4500001e 00010000 40110000 0a000001 0a000002 \
         3039 0fa0 000a 0000 6869", // 12345 -> 4000, "hi"
    );
    let syn6 = hex(
        "60000000 0014 06 40 fe800000000000000000000000000001 \
         fe800000000000000000000000000002 \
         9c40 01bb 00000001 00000000 5002 ffff 0000 0000", // 40000 -> 443, SYN
    );
    let drop = "kfree_skb_reason SKB_DROP_REASON_NO_SOCKET netns=4026531840 if=eth0 skb=0xffff888100c0ffee";
    let capture = write(&[
        (event(Capture::Mac, &udp4, 44, 2, b"eth0"), drop),
        (event(Capture::Network, &syn6, 60, 1, b"lo"), "ip6_rcv_core"),
        (event(Capture::None, &[], 1500, 0, b""), "consume_skb"),
    ]);
    let fields =
        ["udp.dstport", "tcp.dstport", "tcp.flags.syn", "frame.interface_name", "frame.len", "frame.time_epoch"];
    // Wireshark 3.6+ calls the packet comment frame.comment; older ones pkt_comment.
    let run = |comment| tshark_fields(&capture, &[&[comment][..], &fields].concat());
    let out = run("frame.comment")
        .or_else(|_| run("pkt_comment"))
        .unwrap_or_else(|err| panic!("tshark cannot read the capture: {err}"));
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(lines.len(), 3, "one packet per event:\n{out}");
    assert_eq!(lines[0][..2], [drop, "4000"], "{out}");
    assert_eq!(lines[0][4..], ["eth0", "44", "1700000005.123456831"], "{out}");
    assert_eq!(lines[1][..3], ["ip6_rcv_core", "", "443"], "{out}");
    // A SYN: tshark prints booleans as 1 (4.0) or True (4.2+).
    assert!(["1", "True"].contains(&lines[1][3]), "{out}");
    assert_eq!(lines[2][..2], ["consume_skb", ""], "{out}");
    assert_eq!(lines[2][4..6], ["any", "1500"], "{out}");
}
