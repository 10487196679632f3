//! Runs a compiled expression in rbpf's interpreter, with `bpf_probe_read_kernel` reading the
//! test's [`World`]. rbpf's helpers are plain functions, so the world is a thread-local.

use std::cell::RefCell;

use super::world::World;
use crate::filter::Insn;
use crate::filter::skb_expr::MAX_STACK;
use crate::filter::skb_expr::codegen::BPF_FUNC_PROBE_READ_KERNEL;

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

const EFAULT: u64 = 14;

fn probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    // Our programs read at most a string buffer at a time, into their own stack.
    assert!(size as usize <= MAX_STACK, "probe read of {size} bytes");
    let size = size as usize;
    WORLD.with(|w| {
        let w = w.borrow();
        let found = w.as_ref().and_then(|w| w.read(src, size));
        let mut out = vec![0u8; size];
        if let Some(bytes) = found {
            out.copy_from_slice(bytes);
        }
        // SAFETY: the generated code passes `r10 - k` with `k` and `size` inside its frame, which
        // rbpf's stack holds (its verifier and `MAX_STACK` keep the frame inside 512 bytes);
        // the kernel test checks the same code's stack accesses with the real verifier.
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), dst as *mut u8, size) };
        if found.is_some() { 0 } else { EFAULT.wrapping_neg() }
    })
}

/// The program's `r0` for the world's skb.
pub fn run(program: &[Insn], world: &World) -> Result<u64, String> {
    let skb = world.skb_addr();
    // r1 = skb, then the expression.
    let mut bytes = Insn::new(0x18, 1, 0, 0, skb as u32 as i32).to_bytes().to_vec();
    bytes.extend(Insn::new(0, 0, 0, 0, (skb >> 32) as u32 as i32).to_bytes());
    bytes.extend(program.iter().flat_map(Insn::to_bytes));
    let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).map_err(|e| format!("rbpf rejects the program: {e}"))?;
    vm.register_helper(BPF_FUNC_PROBE_READ_KERNEL as u32, probe_read_kernel).map_err(|e| e.to_string())?;
    WORLD.with(|w| *w.borrow_mut() = Some(world.clone()));
    let result = vm.execute_program(&mut []).map_err(|e| format!("rbpf: {e}"));
    WORLD.with(|w| *w.borrow_mut() = None);
    result
}
