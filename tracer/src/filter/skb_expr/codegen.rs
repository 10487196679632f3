//! Code generation: [`Typed`] → eBPF, the subprogram the module docs describe.
//!
//! # Registers and stack
//!
//! | eBPF      | holds                                                              |
//! |-----------|--------------------------------------------------------------------|
//! | `r6`      | the skb, copied from `r1` on entry                                 |
//! | `r0`      | the value of the node being generated                              |
//! | `r1`–`r5` | scratch, and the arguments of `bpf_probe_read_kernel`              |
//!
//! The frame holds a read buffer at `r10 - buf` (8 bytes, or the longest string compared,
//! rounded up to 8) and below it one 8-byte slot per pending left operand: a binary operator
//! evaluates its left side into `r0`, stores it in the slot of its depth, evaluates its right
//! side, then combines the slot (reloaded into `r1`) with `r0`. Helper calls clobber `r0`–`r5`,
//! so nothing else is kept in registers across a read.
//!
//! # Reads
//!
//! A [`Place`] is read with one `bpf_probe_read_kernel` per pointer on its path and one for the
//! field. A helper error, or a NULL pointer on the way, jumps to a common exit returning 0: the
//! whole expression is false. The helper's size is always a constant.
//!
//! # Jumps
//!
//! All forward, to labels fixed up at the end; no instruction is unreachable, as the verifier
//! requires (the common exit is only emitted when some read uses it).
//!
//! Longer than 400 lines: the emitter and its label fix-ups share the
//! register and stack conventions above; split, they would be read apart.

use super::typed::{Arith, Cmp, Convert, Node, Place, Read, Typed};
use super::{MAX_INSNS, MAX_STACK, SkbExprError};
use crate::filter::Insn;
use crate::filter::opcode::*;

/// `bpf_probe_read_kernel(void *dst, u32 size, const void *unsafe_ptr)`.
pub const BPF_FUNC_PROBE_READ_KERNEL: i32 = 113;
const LD_IMM64: u8 = 0x18;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const SKB: u8 = 6;
const FP: u8 = 10;

type Label = usize;

struct Gen {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (jump instruction, target).
    fixups: Vec<(usize, Label)>,
    fail: Label,
    fail_used: bool,
    /// Size of the read buffer at the top of the frame.
    buf: usize,
    /// Deepest pending-operand slot used, counted from 1.
    slots: usize,
}

pub fn generate(root: &Typed) -> Result<Vec<Insn>, SkbExprError> {
    let buf = longest_string(root).next_multiple_of(8).max(8);
    let mut g =
        Gen { insns: Vec::new(), labels: Vec::new(), fixups: Vec::new(), fail: 0, fail_used: false, buf, slots: 0 };
    g.fail = g.label();
    g.push(Insn::alu64_reg(MOV, SKB, R1));
    g.value(root, 0);
    // Only 0 or 1 leaves the subprogram.
    g.push(Insn::jmp_imm(JEQ, R0, 0, 1));
    g.push(Insn::alu64_imm(MOV, R0, 1));
    g.push(Insn::exit());
    if g.fail_used {
        g.bind(g.fail);
        g.push(Insn::alu64_imm(MOV, R0, 0));
        g.push(Insn::exit());
    }
    let stack = g.buf + 8 * g.slots;
    if g.insns.len() > MAX_INSNS || stack > MAX_STACK {
        return Err(SkbExprError::TooLarge { insns: g.insns.len(), stack });
    }
    Ok(g.finish())
}

/// The `--output-skb-metadata` subprogram (`fields.rs` states its contract): field `i`, `size`
/// bytes at `place`, is copied to `r2 + i * slot`; a NULL pointer or a failed read on the way
/// to it skips to the next field.
pub fn generate_reads(reads: &[(Place, u8)], slot: usize) -> Vec<Insn> {
    const OUT: u8 = 7;
    let mut g =
        Gen { insns: Vec::new(), labels: Vec::new(), fixups: Vec::new(), fail: 0, fail_used: false, buf: 8, slots: 0 };
    g.push(Insn::alu64_reg(MOV, SKB, R1));
    g.push(Insn::alu64_reg(MOV, OUT, R2));
    for (i, (place, size)) in reads.iter().enumerate() {
        g.fail = g.label();
        g.address(place);
        g.push(Insn::alu64_reg(MOV, R1, OUT));
        g.add(R1, (i * slot) as u32);
        g.push(Insn::alu64_imm(MOV, R2, i32::from(*size)));
        // On failure the helper zeroes the slot: nothing to test.
        g.push(Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_PROBE_READ_KERNEL));
        g.bind(g.fail);
    }
    g.push(Insn::alu64_imm(MOV, R0, 0));
    g.push(Insn::exit());
    g.finish()
}

fn longest_string(t: &Typed) -> usize {
    match &t.node {
        Node::StrEq { bytes, .. } => bytes.len(),
        Node::Const(_) | Node::Read(_) => 0,
        Node::Not(x) | Node::BitNot(x) | Node::Neg(x) => longest_string(x),
        Node::Arith { left, right, .. }
        | Node::Cmp { left, right, .. }
        | Node::And(left, right)
        | Node::Or(left, right) => longest_string(left).max(longest_string(right)),
    }
}

/// Fits an instruction's sign-extended 32-bit immediate.
fn imm(v: u64) -> Option<i32> {
    i32::try_from(v as i64).ok()
}

impl Gen {
    /// The instructions, with every jump pointed at its label.
    fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label].expect("every label is bound");
            self.insns[at].off = i16::try_from(target as isize - at as isize - 1).expect("MAX_INSNS keeps jumps short");
        }
        self.insns
    }

    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    fn label(&mut self) -> Label {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: Label) {
        self.labels[label] = Some(self.insns.len());
    }

    fn jump(&mut self, insn: Insn, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(insn);
    }

    fn fail_if(&mut self, insn: Insn) {
        self.fail_used = true;
        self.jump(insn, self.fail);
    }

    /// The offset from `r10` of pending-operand slot `depth`.
    fn slot(&mut self, depth: usize) -> i16 {
        self.slots = self.slots.max(depth + 1);
        -((self.buf + 8 * (depth + 1)) as i16)
    }

    fn constant(&mut self, dst: u8, v: u64) {
        match imm(v) {
            Some(k) => self.push(Insn::alu64_imm(MOV, dst, k)),
            None => {
                self.push(Insn::new(LD_IMM64, dst, 0, 0, v as u32 as i32));
                self.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
            }
        }
    }

    /// `r0 = 1` when the jump `insn` (with `off` 2) is taken, else 0.
    fn flag(&mut self, insn: Insn) {
        self.push(Insn { off: 2, ..insn });
        self.push(Insn::alu64_imm(MOV, R0, 0));
        self.push(Insn::ja(1));
        self.push(Insn::alu64_imm(MOV, R0, 1));
    }

    fn value(&mut self, t: &Typed, depth: usize) {
        match &t.node {
            Node::Const(v) => self.constant(R0, *v),
            Node::Read(read) => self.read(read),
            Node::StrEq { place, bytes } => self.str_eq(place, bytes),
            Node::Not(x) => {
                self.value(x, depth);
                self.flag(Insn::jmp_imm(JEQ, R0, 0, 0));
            }
            Node::BitNot(x) => {
                self.value(x, depth);
                self.push(Insn::alu64_imm(XOR, R0, -1));
            }
            Node::Neg(x) => {
                self.value(x, depth);
                self.negate(R0);
            }
            Node::Arith { op, signed, left, right } => self.arith(*op, *signed, left, right, depth),
            Node::Cmp { op, signed, left, right } => self.compare(*op, *signed, left, right, depth),
            Node::And(left, right) | Node::Or(left, right) => {
                // `&&` leaves early on a false operand, `||` on a true one.
                let (early, early_value) = if matches!(t.node, Node::And(..)) { (JEQ, 0) } else { (JNE, 1) };
                let (out, end) = (self.label(), self.label());
                self.value(left, depth);
                self.jump(Insn::jmp_imm(early, R0, 0, 0), out);
                self.value(right, depth);
                self.jump(Insn::jmp_imm(early, R0, 0, 0), out);
                self.push(Insn::alu64_imm(MOV, R0, 1 - early_value));
                self.jump(Insn::ja(0), end);
                self.bind(out);
                self.push(Insn::alu64_imm(MOV, R0, early_value));
                self.bind(end);
            }
        }
    }

    /// `reg = -reg`, without `BPF_NEG` (which some interpreters get wrong on `i64::MIN`).
    fn negate(&mut self, reg: u8) {
        self.push(Insn::alu64_imm(MOV, R2, 0));
        self.push(Insn::alu64_reg(SUB, R2, reg));
        self.push(Insn::alu64_reg(MOV, reg, R2));
    }

    /// Left operand into `r1`, right into `r0`.
    fn operands(&mut self, left: &Typed, right: &Typed, depth: usize) {
        self.value(left, depth);
        let slot = self.slot(depth);
        self.push(Insn::store(DW, FP, slot, R0));
        self.value(right, depth + 1);
        self.push(Insn::load(DW, R1, FP, slot));
    }

    fn arith(&mut self, op: Arith, signed: bool, left: &Typed, right: &Typed, depth: usize) {
        let code = match op {
            Arith::Add => ADD,
            Arith::Sub => SUB,
            Arith::Mul => MUL,
            Arith::Div => DIV,
            Arith::Mod => MOD,
            Arith::And => AND,
            Arith::Or => OR,
            Arith::Xor => XOR,
            Arith::Shl => LSH,
            Arith::Shr if signed => ARSH,
            Arith::Shr => RSH,
        };
        if let Node::Const(k) = right.node
            && let Some(k) = imm(k)
        {
            let direct = match op {
                Arith::Shl | Arith::Shr => Some(k & 63),
                Arith::Div | Arith::Mod => (!signed && k > 0).then_some(k),
                _ => Some(k),
            };
            if let Some(k) = direct {
                self.value(left, depth);
                self.push(Insn::alu64_imm(code, R0, k));
                return;
            }
        }
        self.operands(left, right, depth);
        match op {
            Arith::Shl | Arith::Shr => {
                self.push(Insn::alu64_imm(AND, R0, 63));
                self.push(Insn::alu64_reg(code, R1, R0));
            }
            Arith::Div | Arith::Mod => self.divide(op, signed),
            _ => self.push(Insn::alu64_reg(code, R1, R0)),
        }
        self.push(Insn::alu64_reg(MOV, R0, R1));
    }

    /// `r1 = r1 / r0` or `r1 % r0`: by zero gives 0 or `r1`; signed truncates toward zero.
    fn divide(&mut self, op: Arith, signed: bool) {
        let code = if op == Arith::Div { DIV } else { MOD };
        let (nonzero, done) = (self.label(), self.label());
        self.jump(Insn::jmp_imm(JNE, R0, 0, 0), nonzero);
        if op == Arith::Div {
            self.push(Insn::alu64_imm(MOV, R1, 0));
        }
        self.jump(Insn::ja(0), done);
        self.bind(nonzero);
        if !signed {
            self.push(Insn::alu64_reg(code, R1, R0));
            self.bind(done);
            return;
        }
        // Divide magnitudes; r4 says whether to negate the result (the quotient's sign is
        // both signs', the remainder's the dividend's).
        self.push(Insn::alu64_imm(MOV, R4, 0));
        for (reg, flips) in [(R1, true), (R0, op == Arith::Div)] {
            let positive = self.label();
            self.jump(Insn::jmp_imm(JSGE, reg, 0, 0), positive);
            self.negate(reg);
            if flips {
                self.push(Insn::alu64_imm(XOR, R4, 1));
            }
            self.bind(positive);
        }
        self.push(Insn::alu64_reg(code, R1, R0));
        self.jump(Insn::jmp_imm(JEQ, R4, 0, 0), done);
        self.negate(R1);
        self.bind(done);
    }

    fn compare(&mut self, op: Cmp, signed: bool, left: &Typed, right: &Typed, depth: usize) {
        let code = match (op, signed) {
            (Cmp::Eq, _) => JEQ,
            (Cmp::Ne, _) => JNE,
            (Cmp::Lt, false) => JLT,
            (Cmp::Le, false) => JLE,
            (Cmp::Gt, false) => JGT,
            (Cmp::Ge, false) => JGE,
            (Cmp::Lt, true) => JSLT,
            (Cmp::Le, true) => JSLE,
            (Cmp::Gt, true) => JSGT,
            (Cmp::Ge, true) => JSGE,
        };
        if let Node::Const(k) = right.node
            && let Some(k) = imm(k)
        {
            self.value(left, depth);
            self.flag(Insn::jmp_imm(code, R0, k, 0));
            return;
        }
        self.operands(left, right, depth);
        self.flag(Insn::jmp_reg(code, R1, R0, 0));
    }

    /// `r3` = the address of `place`, following its pointers; `r10 - 8` serves as buffer.
    fn address(&mut self, place: &Place) {
        self.push(Insn::alu64_reg(MOV, R3, SKB));
        for &offset in &place.derefs {
            self.add(R3, offset);
            self.probe_read(-8, 8);
            self.push(Insn::load(DW, R3, FP, -8));
            self.fail_if(Insn::jmp_imm(JEQ, R3, 0, 0));
        }
        self.add(R3, place.offset);
    }

    fn add(&mut self, reg: u8, offset: u32) {
        if offset != 0 {
            self.push(Insn::alu64_imm(ADD, reg, offset as i32));
        }
    }

    /// `bpf_probe_read_kernel(r10 + at, size, r3)`; an error ends the expression as false.
    fn probe_read(&mut self, at: i16, size: i32) {
        self.push(Insn::alu64_reg(MOV, R1, FP));
        self.push(Insn::alu64_imm(ADD, R1, i32::from(at)));
        self.push(Insn::alu64_imm(MOV, R2, size));
        self.push(Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_PROBE_READ_KERNEL));
        self.fail_if(Insn::jmp_imm(JNE, R0, 0, 0));
    }

    fn read(&mut self, read: &Read) {
        self.address(&read.place);
        self.probe_read(-8, i32::from(read.size));
        let size = match read.size {
            1 => B,
            2 => H,
            4 => W,
            _ => DW,
        };
        self.push(Insn::load(size, R0, FP, -8));
        let width = 8 * i32::from(read.size);
        match read.convert {
            Convert::Unsigned => {}
            Convert::Signed if width < 64 => {
                self.push(Insn::alu64_imm(LSH, R0, 64 - width));
                self.push(Insn::alu64_imm(ARSH, R0, 64 - width));
            }
            Convert::Signed => {}
            Convert::BigEndian => self.push(Insn::be(R0, width)),
            Convert::Bitfield { shift, bits, signed } => {
                let (shift, bits) = (i32::from(shift), i32::from(bits));
                if 64 - shift - bits > 0 {
                    self.push(Insn::alu64_imm(LSH, R0, 64 - shift - bits));
                }
                if bits < 64 {
                    self.push(Insn::alu64_imm(if signed { ARSH } else { RSH }, R0, 64 - bits));
                }
            }
        }
    }

    /// `r0` = whether the bytes at `place` start with `bytes`.
    fn str_eq(&mut self, place: &Place, bytes: &[u8]) {
        let at = -(self.buf as i16);
        self.address(place);
        self.probe_read(at, bytes.len() as i32);
        let (differ, end) = (self.label(), self.label());
        let mut pos = 0;
        while pos < bytes.len() {
            let chunk = [8, 4, 2, 1].into_iter().find(|c| pos + c <= bytes.len()).expect("1 always fits");
            let mut le = [0u8; 8];
            le[..chunk].copy_from_slice(&bytes[pos..pos + chunk]);
            let want = u64::from_le_bytes(le);
            let size = match chunk {
                8 => DW,
                4 => W,
                2 => H,
                _ => B,
            };
            self.push(Insn::load(size, R1, FP, at + pos as i16));
            match chunk {
                8 => {
                    self.constant(R2, want);
                    self.jump(Insn::jmp_reg(JNE, R1, R2, 0), differ);
                }
                4 => self.jump(Insn::jmp32_imm(JNE, R1, want as u32 as i32, 0), differ),
                _ => self.jump(Insn::jmp_imm(JNE, R1, want as i32, 0), differ),
            }
            pos += chunk;
        }
        self.push(Insn::alu64_imm(MOV, R0, 1));
        self.jump(Insn::ja(0), end);
        self.bind(differ);
        self.push(Insn::alu64_imm(MOV, R0, 0));
        self.bind(end);
    }
}
