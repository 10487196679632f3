//! Hand-written classic BPF programs, one group per opcode class, run through the translator and
//! compared with libpcap's interpreter at the edges: bounds, zero divisors, wide shifts, unsigned
//! compares, byte order.

use super::{SNAPLEN, kernel, kernel_available, rbpf_vm, reference};
use crate::filter::cbpf_to_ebpf::{MAX_BACKWARD_JUMPS, translate};
use crate::filter::{CbpfInsn, Insn};

// Classic BPF opcodes, spelled out as in pcap/bpf.h.
pub const LD_W_ABS: u16 = 0x20;
pub const LD_H_ABS: u16 = 0x28;
pub const LD_B_ABS: u16 = 0x30;
pub const LD_W_IND: u16 = 0x40;
pub const LD_H_IND: u16 = 0x48;
pub const LD_B_IND: u16 = 0x50;
pub const LD_LEN: u16 = 0x80;
pub const LD_IMM: u16 = 0x00;
pub const LD_MEM: u16 = 0x60;
pub const LDX_IMM: u16 = 0x01;
pub const LDX_MEM: u16 = 0x61;
pub const LDX_LEN: u16 = 0x81;
pub const LDX_MSH: u16 = 0xb1;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU_K: u16 = 0x04;
pub const ALU_X: u16 = 0x0c;
pub const JMP_K: u16 = 0x05;
pub const JMP_X: u16 = 0x0d;
pub const RET_K: u16 = 0x06;
pub const RET_A: u16 = 0x16;
pub const TAX: u16 = 0x07;
pub const TXA: u16 = 0x87;
pub const ALU_OPS: [u16; 10] = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xa0];
pub const DIV: u16 = 0x30;
pub const MOD: u16 = 0x90;
pub const LSH: u16 = 0x60;
pub const RSH: u16 = 0x70;
pub const NEG: u16 = 0x84;
pub const JUMP_OPS: [u16; 4] = [0x10, 0x20, 0x30, 0x40];
pub const JA: u16 = 0x05;

pub fn s(code: u16, k: u32) -> CbpfInsn {
    CbpfInsn { code, jt: 0, jf: 0, k }
}

pub fn j(code: u16, k: u32, jt: u8, jf: u8) -> CbpfInsn {
    CbpfInsn { code, jt, jf, k }
}

/// A program with the inputs it runs on. `expect` is set where libpcap 1.10's interpreter has
/// no defined answer (constant shift ≥ 32, constant division by zero, uninitialized scratch
/// memory, falling off the end) or where the translation deliberately differs (loop limit).
pub struct Case {
    pub name: String,
    pub prog: Vec<CbpfInsn>,
    pub inputs: Vec<Vec<u8>>,
    pub expect: Option<u32>,
}

fn case(name: impl Into<String>, prog: Vec<CbpfInsn>, inputs: &[Vec<u8>]) -> Case {
    Case { name: name.into(), prog, inputs: inputs.to_vec(), expect: None }
}

/// Packets whose byte `i` is `i + 1`, so every load has a distinctive, non-zero value.
fn counting(lengths: &[usize]) -> Vec<Vec<u8>> {
    lengths.iter().map(|&n| (0..n).map(|i| (i + 1) as u8).collect()).collect()
}

fn loads() -> Vec<Case> {
    let inputs = counting(&[0, 1, 2, 3, 4, 5, 13, 14, 54, 251, 252, 253, 255, 256, 300]);
    let mut cases = Vec::new();
    for code in [LD_W_ABS, LD_H_ABS, LD_B_ABS] {
        for k in [0, 1, 2, 3, 4, 12, 250, 251, 252, 253, 254, 255, 256, 1000, 0x7fff_ffff, 0xffff_ffff] {
            cases.push(case(format!("ld abs {code:#x} [{k}]"), vec![s(code, k), s(RET_A, 0)], &inputs));
        }
    }
    for code in [LD_W_IND, LD_H_IND, LD_B_IND] {
        for x in [0, 1, 3, 250, 252, 255, 256, 0x8000_0000, 0xffff_ffff] {
            for k in [0, 2, 250, 0xffff_ffff] {
                let prog = vec![s(LDX_IMM, x), s(code, k), s(RET_A, 0)];
                cases.push(case(format!("ld ind {code:#x} [x={x} + {k}]"), prog, &inputs));
            }
        }
    }
    for k in [0, 5, 14, 254, 255, 256, 0xffff_ffff] {
        let prog = vec![s(LDX_MSH, k), s(TXA, 0), s(RET_A, 0)];
        cases.push(case(format!("ldx msh [{k}]"), prog, &inputs));
    }
    cases.push(case("ld len", vec![s(LD_LEN, 0), s(RET_A, 0)], &inputs));
    cases.push(case("ldx len", vec![s(LDX_LEN, 0), s(TXA, 0), s(RET_A, 0)], &inputs));
    cases
}

fn immediates_and_memory() -> Vec<Case> {
    let none = [vec![]];
    let mut cases = vec![
        case("ld imm", vec![s(LD_IMM, 0xdead_0001), s(RET_A, 0)], &none),
        case("ldx imm, txa", vec![s(LDX_IMM, 0xffff_ffff), s(TXA, 0), s(RET_A, 0)], &none),
        case("tax", vec![s(LD_IMM, 77), s(TAX, 0), s(LD_IMM, 1), s(TXA, 0), s(RET_A, 0)], &none),
        case(
            "st, ldx mem, stx, ld mem",
            vec![
                s(LD_IMM, 0x8000_0001),
                s(ST, 3),
                s(LDX_MEM, 3),
                s(TXA, 0),
                s(LD_IMM, 0),
                s(STX, 15),
                s(LD_MEM, 15),
                s(RET_A, 0),
            ],
            &none,
        ),
    ];
    let mut unwritten = case("ld mem before any st", vec![s(LD_MEM, 7), s(RET_A, 0)], &none);
    unwritten.expect = Some(0);
    cases.push(unwritten);
    cases
}

fn alu() -> Vec<Case> {
    let none = [vec![]];
    let values = [0, 1, 3, 7, 31, 32, 33, 12345, 0x8000_0000, 0xffff_ffff];
    let mut cases = Vec::new();
    for op in ALU_OPS {
        for a in values {
            for b in values {
                let prog = vec![s(LD_IMM, a), s(LDX_IMM, b), s(ALU_X | op, 0), s(RET_A, 0)];
                cases.push(case(format!("alu x {op:#x}: {a:#x}, {b:#x}"), prog, &none));
                let mut by_k = case(
                    format!("alu k {op:#x}: {a:#x}, {b:#x}"),
                    vec![s(LD_IMM, a), s(ALU_K | op, b), s(RET_A, 0)],
                    &none,
                );
                by_k.expect = match op {
                    DIV | MOD if b == 0 => Some(0),
                    LSH | RSH if b >= 32 => Some(0),
                    _ => None,
                };
                cases.push(by_k);
            }
        }
    }
    for a in values {
        cases.push(case(format!("neg {a:#x}"), vec![s(LD_IMM, a), s(NEG, 0), s(RET_A, 0)], &none));
    }
    // A zero divisor ends the filter: the `ret #1` after it is not reached.
    for op in [DIV, MOD] {
        let prog = vec![s(LD_IMM, 5), s(LDX_IMM, 0), s(ALU_X | op, 0), s(RET_K, 1)];
        cases.push(case(format!("{op:#x} by x = 0"), prog, &none));
    }
    cases
}

fn jumps() -> Vec<Case> {
    let none = [vec![]];
    let values = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
    let shapes: [(u8, u8); 5] = [(0, 1), (1, 0), (1, 2), (2, 1), (1, 1)];
    let mut cases = Vec::new();
    for op in JUMP_OPS {
        for a in values {
            for b in values {
                for (jt, jf) in shapes {
                    let tail = [s(RET_K, 10), s(RET_K, 20), s(RET_K, 30)];
                    let mut by_x = vec![s(LD_IMM, a), s(LDX_IMM, b), j(JMP_X | op, 0, jt, jf)];
                    by_x.extend(tail);
                    cases.push(case(format!("jmp x {op:#x} {a:#x} {b:#x} {jt}/{jf}"), by_x, &none));
                    let mut by_k = vec![s(LD_IMM, a), j(JMP_K | op, b, jt, jf)];
                    by_k.extend(tail);
                    cases.push(case(format!("jmp k {op:#x} {a:#x} {b:#x} {jt}/{jf}"), by_k, &none));
                }
            }
        }
    }
    cases.push(case("ja +1", vec![s(JA, 1), s(RET_K, 1), s(RET_K, 2)], &none));
    cases.push(case("ja +0", vec![s(JA, 0), s(RET_K, 1), s(RET_K, 2)], &none));
    cases
}

/// `X` counts up to `limit` in a loop closed by a backward `ja`, as libpcap's `protochain` does.
fn counting_loop(limit: u32) -> Vec<CbpfInsn> {
    vec![
        s(LDX_IMM, 0),
        s(TXA, 0),
        s(ALU_K, 1),
        s(TAX, 0),
        j(JMP_K | 0x30, limit, 1, 0),
        s(JA, -5i32 as u32),
        s(RET_A, 0),
    ]
}

fn control_flow() -> Vec<Case> {
    let none = [vec![]];
    let short = counting(&[0, 10]);
    let mut cases = vec![
        case("ret k", vec![s(RET_K, 7)], &none),
        case("ret 0", vec![s(RET_K, 0)], &none),
        case("ret a, initially 0", vec![s(RET_A, 0)], &none),
        case("dead code after ret", vec![s(RET_K, 1), s(LD_IMM, 5), s(RET_A, 0)], &none),
        case("load never in bounds", vec![s(LD_B_ABS, 300), s(RET_K, 1)], &short),
        case("loop", counting_loop(10), &none),
        case("loop at the limit", counting_loop(MAX_BACKWARD_JUMPS as u32 + 1), &none),
    ];
    let mut over = case("loop over the limit", counting_loop(MAX_BACKWARD_JUMPS as u32 + 2), &none);
    over.expect = Some(0);
    cases.push(over);
    let mut fall_off = case("falls off the end", vec![s(LD_IMM, 1)], &none);
    fall_off.expect = Some(0);
    cases.push(fall_off);
    cases
}

pub fn all_cases() -> Vec<Case> {
    [loads(), immediates_and_memory(), alu(), jumps(), control_flow()].into_iter().flatten().collect()
}

/// Runs every case's translation with `exec` and lists where it disagrees with libpcap.
pub fn mismatches(cases: &[Case], mut exec: impl FnMut(&Case, &[Insn]) -> Result<Vec<u32>, String>) -> Vec<String> {
    let mut wrong = Vec::new();
    for case in cases {
        let ebpf = match translate(&case.prog, SNAPLEN) {
            Ok(ebpf) => ebpf,
            Err(e) => {
                wrong.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        let got = match exec(case, &ebpf) {
            Ok(got) => got,
            Err(e) => {
                wrong.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        for (input, got) in case.inputs.iter().zip(got) {
            let seen = &input[..input.len().min(SNAPLEN as usize)];
            let want = case.expect.unwrap_or_else(|| reference::run(&case.prog, seen, input.len() as u32));
            if got != want {
                wrong.push(format!("{} on {} bytes: got {got:#x}, libpcap {want:#x}", case.name, input.len()));
            }
        }
    }
    wrong
}

pub fn in_rbpf(case: &Case, ebpf: &[Insn]) -> Result<Vec<u32>, String> {
    case.inputs
        .iter()
        .map(|input| {
            let r0 = rbpf_vm::run(ebpf, input, input.len() as u32, SNAPLEN as usize)?;
            u32::try_from(r0).map_err(|_| format!("r0 {r0:#x} has upper bits set"))
        })
        .collect()
}

pub fn in_kernel(case: &Case, ebpf: &[Insn]) -> Result<Vec<u32>, String> {
    let filter = kernel::KernelFilter::load(ebpf)?;
    Ok(case.inputs.iter().map(|input| filter.run(input, input.len() as u32)).collect())
}

fn assert_none(test: &str, wrong: Vec<String>) {
    assert!(
        wrong.is_empty(),
        "{test}: {} mismatches, first ones:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
}

#[test]
fn each_opcode_agrees_with_libpcap_in_rbpf() {
    let cases = all_cases();
    assert!(cases.len() > 1000, "{}", cases.len());
    assert_none("rbpf", mismatches(&cases, in_rbpf));
}

#[test]
fn each_opcode_agrees_with_libpcap_in_the_kernel() {
    if !kernel_available("each_opcode_agrees_with_libpcap_in_the_kernel") {
        return;
    }
    assert_none("kernel", mismatches(&all_cases(), in_kernel));
}
