//! Runs a translated filter in rbpf's interpreter, which needs no privileges and stops at any
//! access outside the packet buffer or the stack.

use crate::filter::Insn;
use crate::filter::opcode::MOV;

/// Filler after the valid bytes: a filter that reads past `r2` sees it and goes wrong.
const POISON: u8 = 0xa5;

/// The filter's `r0` for `data`, captured from a packet of `wire_len` bytes, with a buffer of
/// `snaplen` bytes behind `r1`.
pub fn run(filter: &[Insn], data: &[u8], wire_len: u32, snaplen: usize) -> Result<u64, String> {
    let valid = data.len().min(snaplen);
    let mut buffer = vec![POISON; snaplen];
    buffer[..valid].copy_from_slice(&data[..valid]);
    // rbpf starts programs with r1 = the buffer; the filter also wants r2 = its valid length
    // and r3 = the packet's.
    let mut program = Insn::alu64_imm(MOV, 2, valid as i32).to_bytes().to_vec();
    program.extend(Insn::alu32_imm(MOV, 3, wire_len as i32).to_bytes());
    program.extend(filter.iter().flat_map(Insn::to_bytes));
    let vm = rbpf::EbpfVmRaw::new(Some(&program)).map_err(|e| format!("rbpf rejects the filter: {e}"))?;
    vm.execute_program(&mut buffer).map_err(|e| format!("rbpf: {e}"))
}
