//! In-kernel pcap filters: a tcpdump expression is compiled by libpcap to classic BPF
//! (`pcap`), then translated into an eBPF subprogram (`cbpf_to_ebpf`) that the tracer
//! splices into its eBPF program and enters with a BPF-to-BPF `call`.
//!
//! The subprogram's calling convention:
//! - on entry `r1` points to the packet bytes: a map value the verifier knows is readable for
//!   `snaplen` bytes (skbtrace passes a `SNAPLEN_MAX` = 256 byte buffer);
//! - `r2` is the number of valid bytes in it, a u32; values above `snaplen` are clamped;
//! - `r3` is the packet's length from the same first byte, a u32: what cBPF calls `len`;
//! - it returns `r0 == 0` for "no match", non-zero for "match";
//! - it clobbers `r0`–`r5` only, and uses at most [`MAX_STACK`] bytes of its own stack frame.
//!
//! Semantics are those of libpcap's `bpf_filter()` with `buflen = r2` and `wirelen = r3`: a load
//! past the valid bytes means "no match", never an error, and `len`, `greater` and `less` test
//! the whole packet's length, as tcpdump's do, whatever was copied.

mod cbpf_to_ebpf;
mod pcap;
pub mod skb_expr;
#[cfg(test)]
mod tests;
pub mod tunnel;

use std::fmt;

pub use pcap::CbpfInsn;

/// The largest filter, in eBPF instructions, that [`compile`] returns.
pub const MAX_INSNS: usize = 4096;

/// The most stack the subprogram's frame uses, in bytes: cBPF scratch memory `M[0..16]`, one
/// 8-byte counter per loop (libpcap loops only for `protochain`) and one 8-byte scratch slot.
/// Typical filters use 0–8 bytes, `protochain 58` (two loops) 32.
pub const MAX_STACK: usize = 128;

/// One eBPF instruction; a 64-bit immediate load (`lddw`) takes two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's encoding: code, `dst | src << 4`, then `off` and `imm` little-endian.
    pub fn to_bytes(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [self.code, (self.dst & 0x0f) | (self.src << 4), off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }
}

/// What the first byte of the filtered buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// An Ethernet header (possibly followed by 802.1Q tags).
    Ethernet,
    /// An IPv4 or IPv6 header, told apart by its version nibble.
    RawIp,
}

/// Why an expression yields no filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// libpcap rejected the expression; this is its message.
    Invalid(String),
    /// The expression is valid, but not for this link type (e.g. `arp` on raw IP); libpcap's
    /// message for the link type asked for.
    WrongLinkType { link: LinkType, message: String },
    /// The translation exceeds [`MAX_INSNS`] instructions or [`MAX_STACK`] bytes of stack.
    TooLarge { insns: usize, stack: usize },
    /// libpcap produced classic BPF this translator does not handle, or `snaplen` is unusable.
    Unsupported(String),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) => write!(f, "invalid filter expression: {message}"),
            Self::WrongLinkType { link, message } => {
                let link = match link {
                    LinkType::Ethernet => "Ethernet",
                    LinkType::RawIp => "raw IP",
                };
                write!(f, "filter expression does not apply to {link} packets: {message}")
            }
            Self::TooLarge { insns, stack } => write!(
                f,
                "filter expression too large: {insns} eBPF instructions (max {MAX_INSNS}), \
                 {stack} bytes of stack (max {MAX_STACK})"
            ),
            Self::Unsupported(message) => write!(f, "cannot translate filter: {message}"),
        }
    }
}

impl std::error::Error for FilterError {}

/// Compiles a tcpdump expression into the eBPF subprogram described in the module docs.
/// `snaplen` is the number of bytes readable at `r1` (skbtrace: `SNAPLEN_MAX`).
pub fn compile(expr: &str, link: LinkType, snaplen: u32) -> Result<Compiled, FilterError> {
    let cbpf = compile_cbpf(expr, link, snaplen)?;
    Ok(Compiled { insns: cbpf_to_ebpf::translate(&cbpf, snaplen)?, reads: bytes_read(&cbpf, snaplen) })
}

/// libpcap's classic BPF for `expr`, optimized. `snaplen` is checked as in [`compile`]; it does not
/// change libpcap's code.
pub fn compile_cbpf(expr: &str, link: LinkType, snaplen: u32) -> Result<Vec<CbpfInsn>, FilterError> {
    cbpf_to_ebpf::check_snaplen(snaplen)?;
    pcap::compile(expr, link)
}

/// The subprogram for "no filter": it matches every packet.
pub fn match_all() -> Vec<Insn> {
    vec![Insn::alu32_imm(opcode::MOV, 0, 1), Insn::exit()]
}

/// One compiled expression: its subprogram and how many leading packet bytes it can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    pub insns: Vec<Insn>,
    /// The kernel copies at least these bytes before running the filter, however short
    /// `--snaplen` is.
    pub reads: u32,
}

/// The subprograms for packets with an Ethernet header and for packets that start at the IP
/// header. An expression about the link layer (`arp`, `ether host …`) cannot match a packet
/// without one, so its raw-IP program matches nothing (`not arp` too: libpcap cannot say what
/// it means there).
pub fn compile_pair(expr: &str, snaplen: u32) -> Result<(Compiled, Compiled), FilterError> {
    let ethernet = compile(expr, LinkType::Ethernet, snaplen)?;
    let raw_ip = match compile(expr, LinkType::RawIp, snaplen) {
        Err(FilterError::WrongLinkType { .. }) => {
            Compiled { insns: vec![Insn::alu32_imm(opcode::MOV, 0, 0), Insn::exit()], reads: 0 }
        }
        other => other?,
    };
    Ok((ethernet, raw_ip))
}

/// How many leading bytes of a packet `prog` can read, at most `limit` (the buffer size).
/// Giving the filter only these bytes gives the same verdict as giving it `limit` bytes.
pub fn bytes_read(prog: &[CbpfInsn], limit: u32) -> u32 {
    use pcap::cbpf::{ABS, B, H, IMM, IND, LD, LDX, LEN, MISC, MSH, TAX, W, class, mode, size};
    // The largest value X can hold. libpcap sets it from an IPv4 header length
    // (`ldxb 4*([k]&0xf)`, at most 60) or a constant; from A or scratch memory it is
    // unbounded, and so are indexed loads.
    let mut x_max = 0u64;
    for insn in prog {
        match (class(insn.code), mode(insn.code)) {
            // The packet's length comes in a register, not from its bytes.
            (LD | LDX, LEN) => {}
            (LDX, MSH) => x_max = x_max.max(60),
            (LDX, IMM) => x_max = x_max.max(u64::from(insn.k)),
            (LDX, _) => return limit,
            (MISC, _) if insn.code == MISC | TAX => return limit,
            _ => {}
        }
    }
    let mut most = 0u64;
    for insn in prog {
        let width = match size(insn.code) {
            W => 4,
            H => 2,
            B => 1,
            _ => 0,
        };
        let end = match (class(insn.code), mode(insn.code)) {
            (LD, ABS) => u64::from(insn.k) + width,
            (LD, IND) => x_max + u64::from(insn.k) + width,
            (LDX, MSH) => u64::from(insn.k) + 1,
            _ => 0,
        };
        most = most.max(end);
    }
    most.min(u64::from(limit)) as u32
}

/// The eBPF opcode fields the translation emits (linux/bpf.h, linux/bpf_common.h). cBPF shares
/// the ALU operation codes, so those not named here pass through from libpcap's program.
pub(crate) mod opcode {
    // Instruction classes.
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    // Memory access sizes and modes.
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const MEM: u8 = 0x60;
    // Operand source.
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    // ALU operations.
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const ARSH: u8 = 0xc0;
    pub const END: u8 = 0xd0;
    /// With `END`: convert to big endian.
    pub const TO_BE: u8 = 0x08;
    // Jump operations.
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const JSGT: u8 = 0x60;
    pub const JSGE: u8 = 0x70;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const JSLT: u8 = 0xc0;
    pub const JSLE: u8 = 0xd0;
}

/// Constructors named after the instruction they build; jump offsets are relative to the
/// instruction after the jump, as in the kernel.
impl Insn {
    pub(crate) const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self { code, dst, src, off, imm }
    }

    pub(crate) const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(opcode::ALU | op | opcode::K, dst, 0, 0, imm)
    }

    pub(crate) const fn alu32_reg(op: u8, dst: u8, src: u8) -> Self {
        Self::new(opcode::ALU | op | opcode::X, dst, src, 0, 0)
    }

    pub(crate) const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(opcode::ALU64 | op | opcode::K, dst, 0, 0, imm)
    }

    pub(crate) const fn alu64_reg(op: u8, dst: u8, src: u8) -> Self {
        Self::new(opcode::ALU64 | op | opcode::X, dst, src, 0, 0)
    }

    /// Byte swap of the low `bits` (16 or 32) from big endian, zero-extending the rest.
    pub(crate) const fn be(dst: u8, bits: i32) -> Self {
        Self::new(opcode::ALU | opcode::END | opcode::TO_BE, dst, 0, 0, bits)
    }

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub(crate) const fn load(size: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(opcode::LDX | opcode::MEM | size, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub(crate) const fn store(size: u8, dst: u8, off: i16, src: u8) -> Self {
        Self::new(opcode::STX | opcode::MEM | size, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub(crate) const fn store_imm(size: u8, dst: u8, off: i16, imm: i32) -> Self {
        Self::new(opcode::ST | opcode::MEM | size, dst, 0, off, imm)
    }

    /// 64-bit compare of `dst` with `imm` (sign-extended), jumping `off` if true.
    pub(crate) const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(opcode::JMP | op | opcode::K, dst, 0, off, imm)
    }

    pub(crate) const fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(opcode::JMP | op | opcode::X, dst, src, off, 0)
    }

    /// 32-bit compare of the low halves of `dst` and `imm`.
    pub(crate) const fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(opcode::JMP32 | op | opcode::K, dst, 0, off, imm)
    }

    pub(crate) const fn jmp32_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(opcode::JMP32 | op | opcode::X, dst, src, off, 0)
    }

    pub(crate) const fn ja(off: i16) -> Self {
        Self::new(opcode::JMP | opcode::JA, 0, 0, off, 0)
    }

    pub(crate) const fn exit() -> Self {
        Self::new(opcode::JMP | opcode::EXIT, 0, 0, 0, 0)
    }
}
