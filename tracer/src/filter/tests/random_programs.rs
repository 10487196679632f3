//! Random classic BPF programs (forward jumps, every opcode) on random packets, compared with
//! libpcap: combinations no hand-written case thinks of.

use super::kernel_available;
use super::opcodes::*;
use crate::filter::CbpfInsn;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }
}

/// A value near the edges more often than not.
fn value(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => rng.pick(&[0, 1, 2, 31, 32, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff]),
        1 => rng.next(),
        _ => rng.below(300),
    }
}

/// One instruction other than a return; jumps skip fewer than `jump_room` instructions.
fn insn(rng: &mut Rng, jump_room: u32) -> CbpfInsn {
    let offset = |rng: &mut Rng| rng.pick(&[0, 1, 2, 6, 12, 13, 14, 20, 23, 26, 30, 40, 54, 60, 250, 253, 256]);
    match rng.below(16) {
        0 => s(rng.pick(&[LD_W_ABS, LD_H_ABS, LD_B_ABS]), offset(rng)),
        1 => s(rng.pick(&[LD_W_IND, LD_H_IND, LD_B_IND]), offset(rng)),
        2 => s(LDX_MSH, offset(rng)),
        3 => s(rng.pick(&[LD_IMM, LDX_IMM]), value(rng)),
        4 => s(rng.pick(&[LD_MEM, LDX_MEM, ST, STX]), rng.below(4)),
        5 => s(rng.pick(&[LD_LEN, LDX_LEN, TAX, TXA, NEG]), 0),
        6 | 7 => s(ALU_X | rng.pick(&ALU_OPS), 0),
        8 | 9 => {
            let op = rng.pick(&ALU_OPS);
            // libpcap 1.10's interpreter has no defined result for these; libpcap never emits them.
            let k = match op {
                DIV | MOD => value(rng).max(1),
                LSH | RSH => rng.below(32),
                _ => value(rng),
            };
            s(ALU_K | op, k)
        }
        10 => s(JA, rng.below(jump_room)),
        _ => {
            let room = jump_room.min(256);
            let (jt, jf) = (rng.below(room) as u8, rng.below(room) as u8);
            match rng.below(2) {
                0 => j(JMP_K | rng.pick(&JUMP_OPS), value(rng), jt, jf),
                _ => j(JMP_X | rng.pick(&JUMP_OPS), 0, jt, jf),
            }
        }
    }
}

/// A program that initializes the scratch words it may read, then runs `len` random
/// instructions and returns A, with a few early returns along the way.
fn program(rng: &mut Rng, len: u32) -> Vec<CbpfInsn> {
    let mut prog = vec![s(LD_IMM, value(rng)), s(ST, 0), s(ST, 1), s(ST, 2), s(ST, 3), s(LDX_IMM, value(rng))];
    for i in 0..len {
        // Jumps may land anywhere up to the final return.
        let room = len - i;
        debug_assert!(room >= 1);
        prog.push(match rng.below(20) {
            0 => s(RET_K, value(rng)),
            1 => s(RET_A, 0),
            _ => insn(rng, room),
        });
    }
    prog.push(s(RET_A, 0));
    prog
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    (0..400)
        .map(|n| {
            let len = 4 + rng.below(40);
            let prog = program(&mut rng, len);
            let inputs = (0..8)
                .map(|_| {
                    let len = rng.pick(&[0, 1, 14, 20, 34, 40, 54, 60, 100, 255, 256, 300]);
                    (0..len).map(|_| rng.next() as u8).collect()
                })
                .collect();
            Case { name: format!("random program {n}"), prog, inputs, expect: None }
        })
        .collect()
}

#[test]
fn random_programs_agree_with_libpcap_in_rbpf() {
    let wrong = mismatches(&cases(), in_rbpf);
    assert!(wrong.is_empty(), "{} mismatches:\n{}", wrong.len(), wrong[..wrong.len().min(30)].join("\n"));
}

#[test]
fn random_programs_agree_with_libpcap_in_the_kernel() {
    if !kernel_available("random_programs_agree_with_libpcap_in_the_kernel") {
        return;
    }
    let wrong = mismatches(&cases(), in_kernel);
    assert!(wrong.is_empty(), "{} mismatches:\n{}", wrong.len(), wrong[..wrong.len().min(30)].join("\n"));
}
