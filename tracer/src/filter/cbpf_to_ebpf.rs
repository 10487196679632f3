//! Classic BPF → eBPF: libpcap's filter program rewritten as a BPF-to-BPF subprogram that the
//! kernel verifier accepts, with the semantics of libpcap's `bpf_filter()`.
//! (Over 400 lines on purpose: one translation table, one contract, read together.)
//!
//! # Registers
//!
//! | eBPF     | holds                                                        |
//! |----------|--------------------------------------------------------------|
//! | `r1`     | packet pointer (a map value of `snaplen` bytes), never moved |
//! | `r2`     | valid bytes, clamped to `snaplen`                            |
//! | `r3`     | on entry the packet's length, cBPF's `len`; then A           |
//! | `r4`     | the index register X                                         |
//! | `r5`     | scratch: address of an indirect load                         |
//! | `r0`     | scratch: loop counters; the verdict on exit                  |
//!
//! `r6`–`r9` are callee-saved and never touched, so there is nothing to save or restore.
//! A and X are u32 in cBPF: every operation on them is a 32-bit ALU op or a `JMP32` compare,
//! which also keeps their upper halves zero for the 64-bit bounds checks below.
//!
//! # Bounds checks
//!
//! A load past the valid bytes ends the filter with "no match", as in `bpf_filter()`. Each load
//! is checked at run time against `r2`, and bounded in a way the verifier can follow against
//! `snaplen`, the size of the buffer it knows:
//! - `P[k:n]`: if `k + n > snaplen` the load can never succeed and becomes a jump to "no match"
//!   (the instructions only reachable after it are dropped); otherwise `if r2 < k + n goto
//!   nomatch`, then a load at the constant offset `r1 + k`.
//! - `P[X + k:n]`: `r5 = r4` (through the stack, see below); `if r5 > snaplen - k - n goto
//!   nomatch` gives the verifier its range; `r5 += k + n; if r5 > r2 goto nomatch` checks the
//!   data; the load reads `r1 + r5 - n`.
//!
//! Loads are big-endian (`be16`/`be32` after the load). Division or modulo by zero is "no
//! match"; a shift by 32 or more gives 0; these are `bpf_filter()`'s rules.
//!
//! # Stack
//!
//! Scratch word `M[i]` lives at `r10 - mem + 4 * i`, where `mem` covers the highest word used.
//! It is zeroed on entry when any word is read (so is libpcap's since 1.10.5, and the verifier
//! wants initialized stack). Below it sit one 8-byte counter per loop, the packet's length when
//! the program reads it (saved from `r3` before A takes that register), and a slot whose upper
//! half is a 4-byte word off the 8-byte grid. The verifier tracks a register's range through a
//! spill only at aligned offsets, so a round trip through that word keeps the value and
//! makes the verifier forget what it knew. The frame is at most [`MAX_STACK`] bytes.
//!
//! # Jumps and loops
//!
//! Jumps are emitted with symbolic targets and fixed up once every instruction has its place.
//! cBPF instructions that cannot be reached are dropped: the verifier rejects unreachable code.
//! libpcap jumps backwards for `protochain`. Entering a loop head from above resets its counter
//! to [`MAX_BACKWARD_JUMPS`]; each backward jump decrements it and gives up with "no match" at
//! zero, so the verifier (privileged, kernel ≥ 5.3) sees a bounded loop. The verifier walks
//! such a loop once per iteration; to keep that walk linear, each backward jump also passes A
//! and X through an unaligned stack word, which keeps their values but makes the verifier
//! forget their ranges, so all paths meet the loop head in one state per counter value
//! (`ip6 protochain 6`: 17k verified instructions instead of over 1M).
//!
//! Longer than 400 lines: one translation, instruction class by class; split,
//! the stack layout above would have to be read in several places.

use super::opcode as op;
use super::pcap::cbpf;
use super::{CbpfInsn, FilterError, Insn, MAX_INSNS, MAX_STACK};

/// How often one loop may jump backwards per entry before the filter says "no match". libpcap
/// since 1.10.5 has the same limit, per packet; 1.10.3 has none, so a crafted chain of more than
/// 64 headers matches there and not here.
pub(crate) const MAX_BACKWARD_JUMPS: i32 = 64;

const RET: u8 = 0;
const PKT: u8 = 1;
const LEN: u8 = 2;
const A: u8 = 3;
/// Holds the packet's length on entry only: A takes over the register.
const WIRE_LEN: u8 = 3;
const X: u8 = 4;
const ADDR: u8 = 5;
const FP: u8 = 10;

/// Rejects buffer sizes whose offsets would not fit eBPF's 16-bit `off` field.
pub(super) fn check_snaplen(snaplen: u32) -> Result<(), FilterError> {
    if (1..=i16::MAX as u32).contains(&snaplen) {
        Ok(())
    } else {
        Err(FilterError::Unsupported(format!("snaplen {snaplen} is outside 1..=32767")))
    }
}

/// Translates libpcap's program into the subprogram described in the module docs.
pub(super) fn translate(prog: &[CbpfInsn], snaplen: u32) -> Result<Vec<Insn>, FilterError> {
    check_snaplen(snaplen)?;
    let layout = Layout::new(prog, snaplen)?;
    let mut translator = Translator {
        prog,
        snaplen,
        layout,
        code: Vec::new(),
        fixups: Vec::new(),
        entry: vec![0; prog.len()],
        loop_head: vec![0; prog.len()],
    };
    translator.prologue();
    for pc in 0..prog.len() {
        if translator.layout.reachable[pc] {
            translator.insn(pc)?;
        }
    }
    translator.finish()
}

/// Where the code of a jump target starts.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A cBPF instruction entered from above: through its loop counter reset, if it has one.
    Entry(usize),
    /// A loop head entered by a backward jump: past the counter reset.
    LoopHead(usize),
    /// The shared `return 0`.
    NoMatch,
}

/// What the translation needs to know about the whole cBPF program before emitting code.
struct Layout {
    reachable: Vec<bool>,
    /// Counter slot of each backward-jump target.
    loop_slot: Vec<Option<usize>>,
    loops: usize,
    /// Bytes of stack for `M[]`, a multiple of 8.
    mem_bytes: usize,
    mem_read: bool,
    /// Whether the program reads cBPF's `len`, kept in a stack slot.
    wire_len: bool,
    /// Whether an indirect load or a loop needs the word at `launder_off`.
    launders: bool,
}

impl Layout {
    fn new(prog: &[CbpfInsn], snaplen: u32) -> Result<Self, FilterError> {
        let mut reachable = vec![false; prog.len()];
        let mut loop_slot = vec![None; prog.len()];
        let mut loops = 0;
        let mut mem_words = 0;
        let mut mem_read = false;
        let mut indirect = false;
        let mut wire_len = false;
        let mut work = if prog.is_empty() { vec![] } else { vec![0] };
        while let Some(pc) = work.pop() {
            if std::mem::replace(&mut reachable[pc], true) {
                continue;
            }
            let insn = prog[pc];
            if !cbpf::OPCODES.contains(&insn.code) {
                return Err(unsupported(pc, insn, "unknown opcode"));
            }
            indirect |= cbpf::class(insn.code) == cbpf::LD && cbpf::mode(insn.code) == cbpf::IND;
            wire_len |= matches!(cbpf::class(insn.code), cbpf::LD | cbpf::LDX) && cbpf::mode(insn.code) == cbpf::LEN;
            if uses_mem(insn.code) {
                if insn.k >= cbpf::MEMWORDS {
                    return Err(unsupported(pc, insn, "scratch memory index out of range"));
                }
                mem_words = mem_words.max(insn.k as usize + 1);
                mem_read |= matches!(cbpf::class(insn.code), cbpf::LD | cbpf::LDX);
            }
            for next in successors(prog, pc, snaplen)? {
                if next <= pc && loop_slot[next].is_none() {
                    loop_slot[next] = Some(loops);
                    loops += 1;
                }
                work.push(next);
            }
        }
        let mem_bytes = (mem_words * 4).next_multiple_of(8);
        Ok(Self { reachable, loop_slot, loops, mem_bytes, mem_read, wire_len, launders: indirect || loops > 0 })
    }

    /// `M[]`, then the loop counters, the packet's length, and a slot for `launder_off`.
    fn stack_bytes(&self) -> usize {
        self.wire_len_end() + if self.launders { 8 } else { 0 }
    }

    fn wire_len_end(&self) -> usize {
        self.mem_bytes + 8 * self.loops + if self.wire_len { 8 } else { 0 }
    }

    /// Frame offset of the saved packet length.
    fn wire_len_off(&self) -> i16 {
        -(self.wire_len_end() as i16)
    }

    /// Frame offset of `M[word]`.
    fn mem_off(&self, word: u32) -> i16 {
        (4 * word as i64 - self.mem_bytes as i64) as i16
    }

    /// Frame offset of a loop counter.
    fn counter_off(&self, slot: usize) -> i16 {
        -((self.mem_bytes + 8 * (slot + 1)) as i16)
    }

    /// Frame offset of the 4-byte word off the 8-byte grid (see the module docs).
    fn launder_off(&self) -> i16 {
        -(self.stack_bytes() as i16) + 4
    }
}

fn uses_mem(code: u16) -> bool {
    match cbpf::class(code) {
        cbpf::LD | cbpf::LDX => cbpf::mode(code) == cbpf::MEM,
        cbpf::ST | cbpf::STX => true,
        _ => false,
    }
}

/// The cBPF instructions control can reach from `pc`. Returns, loads that can never be in
/// bounds and divisions by a constant zero have none; falling off the end means "no match".
fn successors(prog: &[CbpfInsn], pc: usize, snaplen: u32) -> Result<Vec<usize>, FilterError> {
    let insn = prog[pc];
    let target = |delta: i64| {
        let to = pc as i64 + 1 + delta;
        if (0..prog.len() as i64).contains(&to) {
            Ok(to as usize)
        } else {
            Err(unsupported(pc, insn, "jump out of the program"))
        }
    };
    let code = insn.code;
    Ok(match cbpf::class(code) {
        cbpf::RET => vec![],
        // libpcap sign-extends `k` of an unconditional jump: `protochain` jumps backwards.
        cbpf::JMP if cbpf::op(code) == cbpf::JA => vec![target(insn.k as i32 as i64)?],
        cbpf::JMP => vec![target(insn.jt.into())?, target(insn.jf.into())?],
        _ if always_fails(insn, snaplen) => vec![],
        _ if pc + 1 < prog.len() => vec![pc + 1],
        _ => vec![],
    })
}

/// Whether `insn` ends the filter with "no match" whatever the packet: a load whose constant
/// part alone reaches past the buffer, or a division by a constant zero.
fn always_fails(insn: CbpfInsn, snaplen: u32) -> bool {
    let code = insn.code;
    let past_end = |size: u16| insn.k as u64 + load_bytes(size) as u64 > snaplen as u64;
    match (cbpf::class(code), cbpf::mode(code)) {
        (cbpf::LD, cbpf::ABS | cbpf::IND) => past_end(cbpf::size(code)),
        (cbpf::LDX, cbpf::MSH) => past_end(cbpf::B),
        (cbpf::ALU, _) => matches!(cbpf::op(code), cbpf::DIV | cbpf::MOD) && cbpf::src(code) == cbpf::K && insn.k == 0,
        _ => false,
    }
}

fn load_bytes(size: u16) -> u32 {
    match size {
        cbpf::W => 4,
        cbpf::H => 2,
        _ => 1,
    }
}

fn unsupported(pc: usize, insn: CbpfInsn, why: &str) -> FilterError {
    FilterError::Unsupported(format!(
        "{why}: classic BPF instruction {pc} {{ code: {:#06x}, jt: {}, jf: {}, k: {:#x} }}",
        insn.code, insn.jt, insn.jf, insn.k
    ))
}

struct Translator<'a> {
    prog: &'a [CbpfInsn],
    snaplen: u32,
    layout: Layout,
    code: Vec<Insn>,
    /// Jumps whose offset is set in `finish`.
    fixups: Vec<(usize, Target)>,
    entry: Vec<usize>,
    loop_head: Vec<usize>,
}

impl Translator<'_> {
    fn emit(&mut self, insn: Insn) {
        self.code.push(insn);
    }

    fn jump(&mut self, insn: Insn, to: Target) {
        self.fixups.push((self.code.len(), to));
        self.code.push(insn);
    }

    fn prologue(&mut self) {
        self.emit(Insn::alu32_reg(op::MOV, LEN, LEN));
        self.emit(Insn::jmp_imm(op::JLE, LEN, self.snaplen as i32, 1));
        self.emit(Insn::alu64_imm(op::MOV, LEN, self.snaplen as i32));
        if self.layout.wire_len {
            self.emit(Insn::store(op::W, FP, self.layout.wire_len_off(), WIRE_LEN));
        }
        self.emit(Insn::alu32_imm(op::MOV, A, 0));
        self.emit(Insn::alu32_imm(op::MOV, X, 0));
        if self.layout.mem_read {
            for off in (0..self.layout.mem_bytes).step_by(8) {
                let off = (off as i64 - self.layout.mem_bytes as i64) as i16;
                self.emit(Insn::store_imm(op::DW, FP, off, 0));
            }
        }
    }

    fn insn(&mut self, pc: usize) -> Result<(), FilterError> {
        self.entry[pc] = self.code.len();
        if let Some(slot) = self.layout.loop_slot[pc] {
            self.emit(Insn::alu64_imm(op::MOV, RET, MAX_BACKWARD_JUMPS));
            self.emit(Insn::store(op::DW, FP, self.layout.counter_off(slot), RET));
        }
        self.loop_head[pc] = self.code.len();

        let insn = self.prog[pc];
        if always_fails(insn, self.snaplen) {
            self.jump(Insn::ja(0), Target::NoMatch);
            return Ok(());
        }
        let (code, k) = (insn.code, insn.k);
        // `Layout` has checked the opcode against `cbpf::OPCODES`.
        match cbpf::class(code) {
            cbpf::LD => match cbpf::mode(code) {
                cbpf::IMM => self.emit(Insn::alu32_imm(op::MOV, A, k as i32)),
                cbpf::ABS => self.load_abs(cbpf::size(code), k),
                cbpf::IND => self.load_ind(cbpf::size(code), k),
                cbpf::MEM => self.emit(Insn::load(op::W, A, FP, self.layout.mem_off(k))),
                _ => self.emit(Insn::load(op::W, A, FP, self.layout.wire_len_off())),
            },
            cbpf::LDX => match cbpf::mode(code) {
                cbpf::IMM => self.emit(Insn::alu32_imm(op::MOV, X, k as i32)),
                cbpf::MEM => self.emit(Insn::load(op::W, X, FP, self.layout.mem_off(k))),
                cbpf::LEN => self.emit(Insn::load(op::W, X, FP, self.layout.wire_len_off())),
                _ => self.load_msh(k),
            },
            cbpf::ST => self.emit(Insn::store(op::W, FP, self.layout.mem_off(k), A)),
            cbpf::STX => self.emit(Insn::store(op::W, FP, self.layout.mem_off(k), X)),
            cbpf::ALU => self.alu(cbpf::op(code), cbpf::src(code), k),
            cbpf::JMP => self.jmp(pc, insn),
            cbpf::RET if code == cbpf::RET | cbpf::A => {
                self.emit(Insn::alu32_reg(op::MOV, RET, A));
                self.emit(Insn::exit());
            }
            cbpf::RET if k == 0 => self.jump(Insn::ja(0), Target::NoMatch),
            cbpf::RET => {
                self.emit(Insn::alu32_imm(op::MOV, RET, k as i32));
                self.emit(Insn::exit());
            }
            _ => match code & 0xf8 {
                cbpf::TAX => self.emit(Insn::alu32_reg(op::MOV, X, A)),
                _ => self.emit(Insn::alu32_reg(op::MOV, A, X)),
            },
        }
        Ok(())
    }

    fn load_abs(&mut self, size: u16, k: u32) {
        let end = k + load_bytes(size);
        self.jump(Insn::jmp_imm(op::JLT, LEN, end as i32, 0), Target::NoMatch);
        self.emit(Insn::load(ebpf_size(size), A, PKT, k as i16));
        self.swap(size);
    }

    fn load_ind(&mut self, size: u16, k: u32) {
        let n = load_bytes(size);
        let end = k + n;
        // On a path it failed to rule out, the verifier can hold contradictory bounds for X
        // (6.1 does not decide `if w3 > w4` with a constant w3) and then refuses X as a pointer
        // offset. Copied through the unaligned word, X arrives with bounds derived afresh.
        let launder = self.layout.launder_off();
        self.emit(Insn::store(op::W, FP, launder, X));
        self.emit(Insn::load(op::W, ADDR, FP, launder));
        // Bounds the offset for the verifier, then checks X + k + n against the valid bytes.
        self.jump(Insn::jmp_imm(op::JGT, ADDR, (self.snaplen - end) as i32, 0), Target::NoMatch);
        self.emit(Insn::alu64_imm(op::ADD, ADDR, end as i32));
        self.jump(Insn::jmp_reg(op::JGT, ADDR, LEN, 0), Target::NoMatch);
        self.emit(Insn::alu64_reg(op::ADD, ADDR, PKT));
        self.emit(Insn::load(ebpf_size(size), A, ADDR, -(n as i16)));
        self.swap(size);
    }

    /// `X = (P[k] & 0xf) << 2`: the IPv4 header length.
    fn load_msh(&mut self, k: u32) {
        self.jump(Insn::jmp_imm(op::JLT, LEN, (k + 1) as i32, 0), Target::NoMatch);
        self.emit(Insn::load(op::B, X, PKT, k as i16));
        self.emit(Insn::alu32_imm(op::AND, X, 0xf));
        self.emit(Insn::alu32_imm(op::LSH, X, 2));
    }

    fn swap(&mut self, size: u16) {
        match size {
            cbpf::W => self.emit(Insn::be(A, 32)),
            cbpf::H => self.emit(Insn::be(A, 16)),
            _ => {}
        }
    }

    fn alu(&mut self, operation: u16, src: u16, k: u32) {
        let operation = operation as u8; // cBPF and eBPF share the ALU operation codes
        match (operation, src) {
            (op::NEG, _) => self.emit(Insn::new(op::ALU | op::NEG, A, 0, 0, 0)),
            (op::LSH | op::RSH, cbpf::K) if k >= 32 => self.emit(Insn::alu32_imm(op::MOV, A, 0)),
            (op::LSH | op::RSH, cbpf::X) => {
                self.emit(Insn::jmp32_imm(op::JLT, X, 32, 2));
                self.emit(Insn::alu32_imm(op::MOV, A, 0));
                self.emit(Insn::ja(1));
                self.emit(Insn::alu32_reg(operation, A, X));
            }
            (op::DIV | op::MOD, cbpf::X) => {
                self.jump(Insn::jmp32_imm(op::JEQ, X, 0, 0), Target::NoMatch);
                self.emit(Insn::alu32_reg(operation, A, X));
            }
            (_, cbpf::K) => self.emit(Insn::alu32_imm(operation, A, k as i32)),
            (_, _) => self.emit(Insn::alu32_reg(operation, A, X)),
        }
    }

    fn jmp(&mut self, pc: usize, insn: CbpfInsn) {
        let next = pc + 1;
        let code = insn.code;
        let (cond, inverse) = match cbpf::op(code) {
            cbpf::JEQ => (op::JEQ, Some(op::JNE)),
            cbpf::JGT => (op::JGT, Some(op::JLE)),
            cbpf::JGE => (op::JGE, Some(op::JLT)),
            cbpf::JSET => (op::JSET, None),
            _ => {
                let to = (next as i64 + insn.k as i32 as i64) as usize;
                if to < next {
                    self.backward_jump(to);
                } else if to > next {
                    self.jump(Insn::ja(0), Target::Entry(to));
                }
                return;
            }
        };
        let compare = |operation| match cbpf::src(code) {
            cbpf::K => Insn::jmp32_imm(operation, A, insn.k as i32, 0),
            _ => Insn::jmp32_reg(operation, A, X, 0),
        };
        let on_true = next + insn.jt as usize;
        let on_false = next + insn.jf as usize;
        match inverse {
            _ if on_true == on_false => {
                if on_true != next {
                    self.jump(Insn::ja(0), Target::Entry(on_true));
                }
            }
            _ if on_false == next => self.jump(compare(cond), Target::Entry(on_true)),
            Some(inverse) if on_true == next => self.jump(compare(inverse), Target::Entry(on_false)),
            _ => {
                self.jump(compare(cond), Target::Entry(on_true));
                self.jump(Insn::ja(0), Target::Entry(on_false));
            }
        }
    }

    fn backward_jump(&mut self, to: usize) {
        let slot = self.layout.loop_slot[to].expect("Layout gives every backward target a slot");
        let off = self.layout.counter_off(slot);
        self.emit(Insn::load(op::DW, RET, FP, off));
        self.jump(Insn::jmp_imm(op::JEQ, RET, 0, 0), Target::NoMatch);
        self.emit(Insn::alu64_imm(op::ADD, RET, -1));
        self.emit(Insn::store(op::DW, FP, off, RET));
        // Every iteration then reaches the loop head in the same verifier state except for the
        // counter; otherwise X's range differs per path and iteration, and the states to verify
        // grow with the square of the iteration count (past 1M instructions for `protochain`).
        let launder = self.layout.launder_off();
        for reg in [A, X] {
            self.emit(Insn::store(op::W, FP, launder, reg));
            self.emit(Insn::load(op::W, reg, FP, launder));
        }
        self.jump(Insn::ja(0), Target::LoopHead(to));
    }

    /// Appends the shared "no match" exit if anything needs it, and resolves jumps.
    fn finish(mut self) -> Result<Vec<Insn>, FilterError> {
        let last = self.layout.reachable.iter().rposition(|&r| r);
        let falls_off = last.is_some_and(|pc| {
            // The last reachable instruction can only fall through if it is the program's last.
            let insn = self.prog[pc];
            pc + 1 == self.prog.len()
                && !matches!(cbpf::class(insn.code), cbpf::RET | cbpf::JMP)
                && !always_fails(insn, self.snaplen)
        });
        let no_match = self.code.len();
        if falls_off || last.is_none() || self.fixups.iter().any(|(_, to)| matches!(to, Target::NoMatch)) {
            self.emit(Insn::alu32_imm(op::MOV, RET, 0));
            self.emit(Insn::exit());
        }
        let stack = self.layout.stack_bytes();
        if self.code.len() > MAX_INSNS || stack > MAX_STACK {
            return Err(FilterError::TooLarge { insns: self.code.len(), stack });
        }
        for &(at, to) in &self.fixups {
            let target = match to {
                Target::Entry(pc) => self.entry[pc],
                Target::LoopHead(pc) => self.loop_head[pc],
                Target::NoMatch => no_match,
            };
            self.code[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        Ok(self.code)
    }
}

fn ebpf_size(size: u16) -> u8 {
    match size {
        cbpf::W => op::W,
        cbpf::H => op::H,
        _ => op::B,
    }
}
