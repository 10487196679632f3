//! Generated expressions × generated worlds: the compiled program must give the interpreter's
//! verdict in rbpf and in the kernel, on the made-up layout and on the running kernel's
//! `struct sk_buff`. Then the examples and the generated programs through the verifier
//! as the tracer loads them (`tp_btf`, kprobe).

use super::fake::Fake;
use super::random::Generator;
use super::rng::Rng;
use super::world::World;
use super::{compile, interp, kernel, kernel_available, kernel_btf, rbpf_vm};
use crate::btf::KernelBtf;
use crate::filter::skb_expr::{Layout, SkbExprError};

const FAKE_ENUMS: &[&str] = &["ST_BUSY", "ST_TOP", "KIND_HUGE", "KIND_SMALL"];
const KERNEL_ENUMS: &[&str] = &["TCP_ESTABLISHED", "SKB_DROP_REASON_NO_SOCKET", "PKT_HASH_TYPE_L4"];

/// Expressions the generator makes for `seed`, compiled; how many were refused.
fn expressions(
    layout: &impl Layout,
    enums: &[&str],
    seed: u64,
    n: usize,
) -> (Vec<(String, super::Typed, Vec<crate::filter::Insn>)>, usize) {
    let mut rng = Rng::new(seed);
    let generator = Generator::new(layout, enums);
    let mut out = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let expr = generator.expression(&mut rng, 1 + i % 4);
        match compile(&expr, layout) {
            Ok((typed, insns)) => out.push((expr, typed, insns)),
            // Kernel types the language has no value for (floats, 16-byte ints), or too big.
            Err(
                SkbExprError::Unsupported { .. } | SkbExprError::TypeMismatch { .. } | SkbExprError::TooLarge { .. },
            ) => refused += 1,
            Err(e) => panic!("{expr}: {e}"),
        }
    }
    (out, refused)
}

/// Runs every expression on `worlds` worlds in rbpf; returns how many verdicts were 1.
fn against_rbpf(layout: &impl Layout, enums: &[&str], seed: u64, exprs: usize, worlds: usize) -> (usize, usize) {
    let (compiled, refused) = expressions(layout, enums, seed, exprs);
    assert!(refused * 4 < exprs, "{refused} of {exprs} generated expressions refused");
    let mut rng = Rng::new(seed ^ 0x5eed);
    let (mut ones, mut runs) = (0, 0);
    for _ in 0..worlds {
        let world = World::random(layout, &mut rng, 12);
        for (expr, typed, insns) in &compiled {
            let want = interp::verdict(typed, &world, world.skb_addr());
            let got = rbpf_vm::run(insns, &world).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(got, want, "{expr}: rbpf says {got}, the interpreter {want}");
            ones += want as usize;
            runs += 1;
        }
    }
    (ones, runs)
}

#[test]
fn generated_expressions_in_rbpf_on_the_made_up_layout() {
    let (ones, runs) = against_rbpf(&Fake::new(), FAKE_ENUMS, 1, 400, 30);
    eprintln!("{runs} runs, {ones} matched");
    // Both verdicts are common, or the test would prove little.
    assert!(ones * 10 > runs && ones * 10 < runs * 9, "{ones} of {runs}");
}

#[test]
fn generated_expressions_in_rbpf_on_the_kernels_sk_buff() {
    let Some(btf) = kernel_btf("generated_expressions_in_rbpf_on_the_kernels_sk_buff") else { return };
    let (ones, runs) = against_rbpf(&btf, KERNEL_ENUMS, 2, 200, 8);
    eprintln!("{runs} runs, {ones} matched");
    assert!(ones * 20 > runs, "{ones} of {runs}");
}

/// Runs the generated expressions in the kernel and in the interpreter, on the same worlds;
/// returns how many verdicts were 1, of how many.
fn against_kernel(layout: &impl Layout, enums: &[&str], seed: u64, exprs: usize, worlds: usize) -> (usize, usize) {
    let (compiled, _) = expressions(layout, enums, seed, exprs);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let worlds: Vec<World> = (0..worlds).map(|_| World::random(layout, &mut rng, 12)).collect();
    let size = worlds.iter().map(|w| w.image.len()).max().unwrap_or(0);
    let (mut ones, mut runs) = (0, 0);
    for (expr, typed, insns) in &compiled {
        let prog = kernel::KernelExpr::load(insns, size).unwrap_or_else(|e| panic!("{expr}: {e}"));
        for world in &worlds {
            let mut rebased = world.clone();
            rebased.rebase(prog.base);
            let want = interp::verdict(typed, &rebased, rebased.skb_addr());
            let got = prog.run(world);
            assert_eq!(u64::from(got), want, "{expr}: the kernel says {got}, the interpreter {want}");
            ones += want as usize;
            runs += 1;
        }
    }
    (ones, runs)
}

#[test]
fn generated_expressions_in_the_kernel() {
    if !kernel_available("generated_expressions_in_the_kernel") {
        return;
    }
    let (ones, runs) = against_kernel(&Fake::new(), FAKE_ENUMS, 3, 60, 10);
    eprintln!("made-up layout: {runs} kernel runs, {ones} matched");
    assert!(ones * 10 > runs && ones * 10 < runs * 9, "{ones} of {runs}");
    let Some(btf) = kernel_btf("generated_expressions_in_the_kernel") else { return };
    let (ones, runs) = against_kernel(&btf, KERNEL_ENUMS, 4, 40, 4);
    eprintln!("kernel sk_buff: {runs} kernel runs, {ones} matched");
    assert!(ones * 20 > runs, "{ones} of {runs}");
}

const EXAMPLES: &[&str] = &[
    "skb->len > 100 && skb->dev->ifindex == 4",
    "(skb->mark & 0xff) == 0x10",
    "skb->protocol == 0x0800",
    "skb->dev->name == \"eth0\"",
    "skb->dev->nd_net.net->ns.inum != 0 && skb->pkt_type == 0 && skb->sk->__sk_common.skc_state == TCP_ESTABLISHED",
    "skb->sk != NULL && skb->sk->sk_mark % 3 == -skb->len / 7",
    "skb->cb[4] == 1 || skb->users.refs.counter > 1",
];

#[test]
fn the_examples_pass_the_verifier_where_the_tracer_loads_them() {
    let Some(btf) = kernel_btf("the_examples_pass_the_verifier") else { return };
    if !kernel_available("the_examples_pass_the_verifier") {
        return;
    }
    let kfree_skb = btf.skb_tracepoints().into_iter().find(|t| t.0 == "kfree_skb").expect("skb:kfree_skb").2;
    let (generated, _) = expressions(&btf, KERNEL_ENUMS, 5, 40);
    let examples =
        EXAMPLES.iter().map(|e| (e.to_string(), compile(e, &btf).unwrap_or_else(|err| panic!("{e}: {err}")).1));
    for (expr, insns) in examples.chain(generated.into_iter().map(|(e, _, i)| (e, i))) {
        kernel::verify_tp_btf(&insns, kfree_skb).unwrap_or_else(|log| panic!("tp_btf refuses {expr}:\n{log}"));
        kernel::verify_kprobe(&insns).unwrap_or_else(|log| panic!("kprobe refuses {expr}:\n{log}"));
    }
}

#[test]
fn the_kernels_offsets_are_those_of_its_btf() {
    let Some(btf) = kernel_btf("the_kernels_offsets_are_those_of_its_btf") else { return };
    use crate::filter::skb_expr::typed::{Node, Place};
    let place = |expr: &str| match compile(expr, &btf).unwrap().0.node {
        Node::Cmp { left, .. } => match left.node {
            Node::Read(r) => r.place,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let off = |s: &str, p: &str| btf.offset_of(s, p).unwrap();
    assert_eq!(place("skb->len > 0"), Place { derefs: vec![], offset: off("sk_buff", "len") });
    assert_eq!(
        place("skb->dev->ifindex == 4"),
        Place { derefs: vec![off("sk_buff", "dev")], offset: off("net_device", "ifindex") }
    );
    assert_eq!(
        place("skb->dev->nd_net.net->ns.inum == 4"),
        Place { derefs: vec![off("sk_buff", "dev"), off("net_device", "nd_net.net")], offset: off("net", "ns.inum") }
    );
    let e = compile("skb->lenx > 1", &btf).unwrap_err();
    assert!(e.to_string().contains("did you mean `len`?"), "{e}");
    let _: &KernelBtf = &btf;
}
