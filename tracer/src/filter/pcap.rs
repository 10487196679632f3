//! libpcap's side: a tcpdump expression compiled to classic BPF on a dead capture handle, and
//! the fields of classic BPF opcodes.

use pcap::{Capture, Linktype};

use super::{FilterError, LinkType};

/// One classic BPF instruction, laid out as libpcap's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `DLT_RAW` as libpcap spells it on Linux. `pcap_open_dead()` takes DLT values, and rejects
/// `LINKTYPE_RAW` (101), the savefile spelling that `pcap::Linktype::RAW` holds.
const DLT_RAW: Linktype = Linktype(12);

pub(super) fn compile(expr: &str, link: LinkType) -> Result<Vec<CbpfInsn>, FilterError> {
    let dlt = match link {
        LinkType::Ethernet => Linktype::ETHERNET,
        LinkType::RawIp => DLT_RAW,
    };
    let program = compile_for(expr, dlt).map_err(|message| {
        // libpcap says "expression rejects all packets" for `arp` on raw IP, and something
        // link-specific for `ether host`; telling the two cases apart takes a second opinion.
        if link != LinkType::Ethernet && compile_for(expr, Linktype::ETHERNET).is_ok() {
            FilterError::WrongLinkType { link, message }
        } else {
            FilterError::Invalid(message)
        }
    })?;
    program
        .get_instructions()
        .iter()
        .map(|insn| parse_insn(&insn.to_string()))
        .collect::<Result<_, _>>()
        .map_err(FilterError::Unsupported)
}

/// libpcap's optimized program for `expr`, or its error message.
fn compile_for(expr: &str, dlt: Linktype) -> Result<pcap::BpfProgram, String> {
    let message = |error: pcap::Error| match error {
        pcap::Error::PcapError(message) => message,
        other => other.to_string(),
    };
    let handle = Capture::dead(dlt).map_err(message)?;
    handle.compile(expr, true).map_err(message)
}

/// The pcap crate keeps `bpf_insn` private but prints it as "code jt jf k".
fn parse_insn(text: &str) -> Result<CbpfInsn, String> {
    let bad = || format!("unexpected instruction text from the pcap crate: {text:?}");
    let mut fields = text.split(' ');
    let mut next = || fields.next().ok_or_else(bad);
    let insn = CbpfInsn {
        code: next()?.parse().map_err(|_| bad())?,
        jt: next()?.parse().map_err(|_| bad())?,
        jf: next()?.parse().map_err(|_| bad())?,
        k: next()?.parse().map_err(|_| bad())?,
    };
    match fields.next() {
        None => Ok(insn),
        Some(_) => Err(bad()),
    }
}

/// Classic BPF opcode fields (pcap/bpf.h).
pub(super) mod cbpf {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;

    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;

    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;

    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;

    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;

    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;

    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;

    /// Every opcode `bpf_filter()` executes.
    #[rustfmt::skip]
    pub const OPCODES: [u16; 49] = [
        RET | K, RET | A,
        LD | W | ABS, LD | H | ABS, LD | B | ABS, LD | W | IND, LD | H | IND, LD | B | IND,
        LD | W | LEN, LD | IMM, LD | MEM, LDX | W | LEN, LDX | IMM, LDX | MEM, LDX | B | MSH,
        ST, STX, MISC | TAX, MISC | TXA,
        JMP | JA,
        JMP | JEQ | K, JMP | JGT | K, JMP | JGE | K, JMP | JSET | K,
        JMP | JEQ | X, JMP | JGT | X, JMP | JGE | X, JMP | JSET | X,
        ALU | ADD | K, ALU | SUB | K, ALU | MUL | K, ALU | DIV | K, ALU | MOD | K,
        ALU | AND | K, ALU | OR | K, ALU | XOR | K, ALU | LSH | K, ALU | RSH | K,
        ALU | ADD | X, ALU | SUB | X, ALU | MUL | X, ALU | DIV | X, ALU | MOD | X,
        ALU | AND | X, ALU | OR | X, ALU | XOR | X, ALU | LSH | X, ALU | RSH | X,
        ALU | NEG,
    ];

    /// Scratch memory words.
    pub const MEMWORDS: u32 = 16;

    pub const fn class(code: u16) -> u16 {
        code & 0x07
    }
    pub const fn size(code: u16) -> u16 {
        code & 0x18
    }
    pub const fn mode(code: u16) -> u16 {
        code & 0xe0
    }
    pub const fn op(code: u16) -> u16 {
        code & 0xf0
    }
    pub const fn src(code: u16) -> u16 {
        code & 0x08
    }
}
