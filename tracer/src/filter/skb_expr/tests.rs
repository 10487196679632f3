//! Tests of the skb expression compiler. Every compiled expression is held to an interpreter of
//! the checked expression (`interp`) in two executors: rbpf (`rbpf_vm`, no privileges, no BTF
//! needed with the made-up layout in `fake`) and the running kernel (`kernel`: the real
//! verifier, `bpf_probe_read_kernel` and `BPF_PROG_TEST_RUN`). `semantics` pins the language's
//! rules on hand-written cases, `errors` the messages, `differential` runs generated
//! expressions on generated memory, against the made-up layout and the kernel's own.

mod differential;
mod errors;
mod fake;
mod in_the_tracer;
mod interp;
mod kernel;
mod live;
mod random;
mod rbpf_vm;
mod rng;
mod semantics;
mod world;

use super::typed::Typed;
use super::{Layout, SkbExprError, check, codegen, parse};
use crate::btf::KernelBtf;
use crate::filter::Insn;
use world::World;

/// The checked expression and its program.
fn compile(expr: &str, layout: &impl Layout) -> Result<(Typed, Vec<Insn>), SkbExprError> {
    let typed = check::check(expr, &parse::parse(expr)?, layout)?;
    let insns = codegen::generate(&typed)?;
    Ok((typed, insns))
}

/// The verdict of `expr` on `world`, after checking that the interpreter and rbpf agree.
fn verdict(expr: &str, layout: &impl Layout, world: &World) -> u64 {
    let (typed, insns) = compile(expr, layout).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let want = interp::verdict(&typed, world, world.skb_addr());
    let got = rbpf_vm::run(&insns, world).unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(got, want, "{expr}: rbpf says {got}, the interpreter {want}");
    want
}

/// The running kernel's BTF, or why the test is skipped. Under CI it must be there.
fn kernel_btf(test: &str) -> Option<KernelBtf> {
    match KernelBtf::open() {
        Ok(btf) => Some(btf),
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: no kernel BTF under CI: {e}"),
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            None
        }
    }
}

/// Whether the kernel tests can run here; prints why not. Under CI, where the tests run as root,
/// BPF being unavailable is a failure instead.
fn kernel_available(test: &str) -> bool {
    match kernel::available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{test}: BPF unavailable under CI: {why}"),
        Err(why) => {
            eprintln!("skipping {test}: {why} (run as root to check against the kernel)");
            false
        }
    }
}
