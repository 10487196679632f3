//! A deterministic set of test packets: IPv4 (options, fragments, TCP/UDP/ICMP), IPv6 (extension
//! headers, TCP/UDP/ICMPv6), ARP, 802.1Q, truncated and longer than the snap length.

/// A packet as the filter sees it: `data` are the captured bytes, `wire_len` the original length.
pub struct Packet {
    pub data: Vec<u8>,
    pub wire_len: u32,
    pub what: String,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMP6: u8 = 58;
const GRE: u8 = 47;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DST_OPTS: u8 = 60;
const AH: u8 = 51;
const NO_NEXT: u8 = 59;

const V4_ADDRS: [[u8; 4]; 7] =
    [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 1, 7], [192, 168, 1, 10], [172, 16, 5, 4], [8, 8, 8, 8], [224, 0, 0, 251]];
const V6_ADDRS: [&str; 5] = ["::1", "fe80::1", "2001:db8::1", "2001:db8::2", "ff02::1"];
const MACS: [[u8; 6]; 4] = [[1, 2, 3, 4, 5, 6], [2, 0, 0, 0, 0, 1], [0xff; 6], [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]];
const PORTS: [u16; 12] = [0, 22, 53, 80, 443, 1023, 1024, 3999, 4000, 4001, 8080, 65535];
const ICMP_TYPES: [u8; 6] = [0, 3, 5, 8, 11, 13];
const ICMP6_TYPES: [u8; 6] = [1, 128, 129, 133, 135, 136];
const TCP_FLAGS: [u8; 7] = [0x02, 0x12, 0x10, 0x18, 0x04, 0x01, 0x11];

/// xorshift64: the same packets on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn v6(addr: &str) -> [u8; 16] {
    addr.parse::<std::net::Ipv6Addr>().expect("test address").octets()
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn icmp(kind: u8, code: u8) -> Vec<u8> {
    vec![kind, code, 0, 0, 0, 1, 0, 1]
}

/// An IPv4 header; `frag` holds the flags and fragment offset field.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, frag: u16, options: usize, l4: &[u8]) -> Vec<u8> {
    let header_len = 20 + options;
    let mut h = vec![0; header_len];
    h[0] = 0x40 | (header_len / 4) as u8;
    h[2..4].copy_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    for (i, byte) in h[20..].iter_mut().enumerate() {
        *byte = if i + 1 == options { 0 } else { 1 }; // NOPs, then end of options
    }
    h.extend_from_slice(l4);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An IPv6 extension header of `kind` in front of `rest`.
fn ext(kind: u8, next: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = match kind {
        FRAGMENT => vec![next, 0, 0, 0, 0, 0, 0, 7],
        // Hop-by-hop, routing, destination options: 8 * (1 + len) bytes.
        _ => {
            let len = if kind == ROUTING { 1 } else { 0 };
            let mut h = vec![0; 8 * (1 + len)];
            h[0] = next;
            h[1] = len as u8;
            h
        }
    };
    h.extend_from_slice(rest);
    h
}

fn ethernet(dst: [u8; 6], src: [u8; 6], tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, tci) in tags.iter().enumerate() {
        // An outer 802.1ad tag when there are two.
        let tpid: u16 = if i + 1 < tags.len() { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    a
}

fn packet(data: Vec<u8>, what: String) -> Packet {
    Packet { wire_len: data.len() as u32, data, what }
}

fn l4(rng: &mut Rng, proto: u8) -> (Vec<u8>, String) {
    let payload = vec![0x47; rng.pick(&[0, 4, 10, 100, 300])];
    match proto {
        TCP => {
            let (s, d, f) = (rng.pick(&PORTS), rng.pick(&PORTS), rng.pick(&TCP_FLAGS));
            let mut body = payload;
            if rng.chance(15) {
                body = b"GET / HTTP/1.1\r\n".to_vec();
            }
            (tcp(s, d, f, &body), format!("tcp {s}>{d} flags {f:#x} +{}", body.len()))
        }
        UDP => {
            let (s, d) = (rng.pick(&PORTS), rng.pick(&PORTS));
            (udp(s, d, &payload), format!("udp {s}>{d} +{}", payload.len()))
        }
        ICMP => {
            let t = rng.pick(&ICMP_TYPES);
            (icmp(t, 0), format!("icmp type {t}"))
        }
        ICMP6 => {
            let t = rng.pick(&ICMP6_TYPES);
            (icmp(t, 0), format!("icmp6 type {t}"))
        }
        _ => (payload, format!("proto {proto}")),
    }
}

/// IPv4 and IPv6 packets without a link-layer header.
fn ip_packets() -> Vec<Packet> {
    let mut rng = Rng(0x5eed_f00d_cafe_d00d);
    let mut packets = Vec::new();
    for _ in 0..130 {
        let proto = rng.pick(&[TCP, TCP, UDP, UDP, ICMP, GRE]);
        let (body, what) = l4(&mut rng, proto);
        let (src, dst) = (rng.pick(&V4_ADDRS), rng.pick(&V4_ADDRS));
        let ttl = rng.pick(&[0, 1, 64, 255]);
        let frag = rng.pick(&[0, 0, 0, 0x4000, 0x2000, 0x2000 | 3, 0x0010]);
        let options = rng.pick(&[0, 0, 0, 4, 12, 40]);
        packets.push(packet(
            ipv4(src, dst, proto, ttl, frag, options, &body),
            format!("ip {src:?}>{dst:?} ttl {ttl} frag {frag:#x} opts {options} {what}"),
        ));
    }
    for _ in 0..90 {
        let proto = rng.pick(&[TCP, UDP, ICMP6, NO_NEXT]);
        let (mut chain, what) = l4(&mut rng, proto);
        let mut next = proto;
        let mut exts = Vec::new();
        for _ in 0..rng.pick(&[0, 0, 1, 1, 2, 3]) {
            let kind = rng.pick(&[HOP_BY_HOP, DST_OPTS, ROUTING, FRAGMENT]);
            chain = ext(kind, next, &chain);
            next = kind;
            exts.push(kind);
        }
        let (src, dst) = (rng.pick(&V6_ADDRS), rng.pick(&V6_ADDRS));
        packets.push(packet(ipv6(v6(src), v6(dst), next, &chain), format!("ip6 {src}>{dst} ext {exts:?} {what}")));
    }
    packets.extend(authentication_header_packets());
    packets
}

/// Packets that the expressions under test look for and random ones rarely are.
fn targeted() -> Vec<Packet> {
    let v4 = |proto, l4: &[u8]| ipv4([10, 0, 0, 1], [10, 0, 0, 2], proto, 64, 0, 0, l4);
    let v6 = |next, l4: &[u8]| ipv6(v6("fe80::1"), v6("ff02::1"), next, l4);
    vec![
        packet(v4(UDP, &udp(1234, 4000, b"hello")), "udp 10.0.0.1 > 10.0.0.2:4000".into()),
        packet(v4(ICMP, &icmp(8, 0)), "icmp echo 10.0.0.1 > 10.0.0.2".into()),
        packet(v6(ICMP6, &icmp(135, 0)), "icmp6 neighbor solicitation".into()),
        packet(v6(TCP, &tcp(1, 22, 0x02, &[])), "ip6 tcp syn to 22".into()),
    ]
}

/// libpcap 1.10's `protochain` sets X to the AH length instead of adding it, so after an AH it
/// reads the next header at a fixed offset into the IP header. These packets put headers there
/// that end the walk; a packet that led it round in a circle would hang libpcap's own
/// `bpf_filter()`, which has no limit on backward jumps.
fn authentication_header_packets() -> Vec<Packet> {
    let ah = |next: u8, len: u8| {
        let mut h = vec![0; (len as usize + 2) * 4];
        h[0] = next;
        h[1] = len;
        h
    };
    // AH length 4 → X = 24, the destination address, read as a destination options header
    // (next header 6, length 1) → X = 40 → TCP.
    let mut dst = v6("2001:db8::2");
    dst[0] = TCP;
    let rest = [ah(DST_OPTS, 4), ext(DST_OPTS, TCP, &tcp(1, 80, 2, &[]))].concat();
    let v6_packet = ipv6(v6("2001:db8::1"), dst, AH, &rest);
    // AH length 1 → X = 12, the source address, read as another AH (next header 17, length 0).
    let rest = [ah(AH, 1), ah(UDP, 1), udp(1, 53, &[])].concat();
    let v4_packet = ipv4([17, 0, 0, 1], [10, 0, 0, 1], AH, 64, 0, 0, &rest);
    vec![packet(v6_packet, "ip6 ah, dstopts, tcp".into()), packet(v4_packet, "ip ah, ah, udp".into())]
}

/// Cuts packets short at places where filters look.
fn truncated(packets: &[Packet], lengths: &[usize], step: usize) -> Vec<Packet> {
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate().step_by(step) {
        let cut = lengths[i % lengths.len()].min(p.data.len());
        out.push(Packet {
            data: p.data[..cut].to_vec(),
            wire_len: p.wire_len,
            what: format!("{} cut to {cut}", p.what),
        });
    }
    out
}

/// Packets starting with an IPv4 or IPv6 header.
pub fn raw_ip() -> Vec<Packet> {
    let mut packets = ip_packets();
    packets.extend(targeted());
    let cut = truncated(&packets, &[0, 1, 9, 10, 19, 20, 23, 33, 39, 40, 41, 43, 47, 55], 5);
    packets.extend(cut);
    packets.push(packet(vec![0x50; 40], "IP version 5".into()));
    packets
}

/// Packets starting with an Ethernet header.
pub fn ethernet_frames() -> Vec<Packet> {
    let mut rng = Rng(0xe7e7_0001_2345_6789);
    let mut packets = Vec::new();
    for p in ip_packets() {
        let ethertype = if p.data[0] >> 4 == 4 { 0x0800 } else { 0x86dd };
        let tags: &[u16] = rng.pick(&[&[][..], &[], &[], &[100], &[0x2064], &[7, 100]]);
        let (dst, src) = (rng.pick(&MACS), rng.pick(&MACS));
        let data = ethernet(dst, src, tags, ethertype, &p.data);
        packets.push(packet(data, format!("eth {dst:x?}>{src:x?} vlan {tags:?} {}", p.what)));
    }
    for p in targeted() {
        let ethertype = if p.data[0] >> 4 == 4 { 0x0800 } else { 0x86dd };
        let data = ethernet(MACS[0], MACS[1], &[], ethertype, &p.data);
        packets.push(packet(data, format!("eth {}", p.what)));
    }
    for i in 0..20 {
        let (op, spa, tpa) = (1 + (i % 2) as u16, rng.pick(&V4_ADDRS), rng.pick(&V4_ADDRS));
        let sha = rng.pick(&MACS);
        let ethertype = if i % 7 == 6 { 0x8035 } else { 0x0806 }; // a few RARP
        let tags: &[u16] = if i % 5 == 4 { &[100] } else { &[] };
        let data = ethernet([0xff; 6], sha, tags, ethertype, &arp(op, sha, spa, tpa));
        packets.push(packet(data, format!("arp op {op} {spa:?}>{tpa:?} ethertype {ethertype:#x}")));
    }
    for ethertype in [0x88cc, 0x8137, 0x0800, 0x86dd, 0x0806] {
        // An empty payload after an IP ethertype.
        packets
            .push(packet(ethernet(MACS[0], MACS[1], &[], ethertype, &[]), format!("ethertype {ethertype:#x} empty")));
    }
    let cut = truncated(&packets, &[0, 1, 6, 13, 14, 15, 17, 18, 23, 24, 30, 34, 35, 37, 47, 54, 55, 60], 4);
    packets.extend(cut);
    packets
}
