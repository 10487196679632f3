//! Compiled expressions in the running kernel.
//!
//! - [`KernelExpr`] runs one with `BPF_PROG_TEST_RUN`: a `raw_tracepoint` program (the type the
//!   tracer's tracepoint programs load as without BTF, with the skb a scalar) whose ctx
//!   argument 0 is the skb's address. The world lives in an array map's value, kernel memory
//!   the real `bpf_probe_read_kernel` reads; the program writes that value's address into its
//!   first 8 bytes on every run (root may leak pointers), which is how the test learns where to
//!   put the world.
//! - [`Counter`] attaches one as `tp_btf` to a real tracepoint and counts the skbs it keeps.
//! - [`verify_tp_btf`] loads one behind a `tp_btf` program on `skb:kfree_skb`, where the skb
//!   is the verifier's trusted BTF pointer, and [`verify_kprobe`] behind a kprobe (pt_regs →
//!   scalar): the verifier only, since those types have no test run (and this kernel no
//!   kprobes to attach to).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::world::World;
use crate::filter::Insn;
use crate::filter::opcode::*;
use crate::sys::{
    BPF_PROG_LOAD, BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP,
    ProgLoadAttr, bpf, bpf_call, map_update_elem,
};

/// What the harness returns when it could not find its map value; no expression returns it.
pub const HARNESS_FAILED: u32 = 0x7ead_beef;

const LD_IMM64: u8 = 0x18;
const ATOMIC: u8 = 0xc0;
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_CALL: u8 = 1;
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `pt_regs.di` on x86-64: a kprobe's first argument.
const PT_REGS_DI: i16 = 112;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

fn world_map(size: usize) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr { map_type: BPF_MAP_TYPE_ARRAY, key_size: 4, value_size: size as u32, max_entries: 1 };
    bpf(BPF_MAP_CREATE, &mut attr)
}

/// Whether this process may load BPF programs; the reason if not.
pub fn available() -> Result<(), String> {
    world_map(8).map(drop).map_err(|e| format!("cannot create a BPF map: {e}"))
}

/// Loads `program` with the verifier's log on failure.
fn load(program: &[Insn], prog_type: u32, attach_type: u32, attach_btf_id: u32) -> Result<OwnedFd, String> {
    let bytes: Vec<u8> = program.iter().flat_map(Insn::to_bytes).collect();
    let mut log = vec![0u8; 1 << 20];
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: program.len() as u32,
        insns: bytes.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type: attach_type,
        attach_btf_id,
        ..Default::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let lines: Vec<&str> = text.lines().collect();
        format!("{e}\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    })
}

/// `main` followed by the expression, with `main`'s pseudo-call at `call` pointed at it.
fn link(mut main: Vec<Insn>, call: usize, expr: &[Insn]) -> Vec<Insn> {
    assert_eq!(main[call].src, PSEUDO_CALL, "harness layout");
    main[call].imm = (main.len() - call - 1) as i32;
    main.extend_from_slice(expr);
    main
}

fn pseudo_call() -> Insn {
    Insn::new(JMP | CALL, 0, PSEUDO_CALL, 0, 0)
}

/// A loaded test program around one expression, with the map its worlds go into.
pub struct KernelExpr {
    prog: OwnedFd,
    map: OwnedFd,
    size: usize,
    /// The kernel address of the map value.
    pub base: u64,
}

impl KernelExpr {
    /// `size`: the largest world image this program will run on.
    pub fn load(expr: &[Insn], size: usize) -> Result<Self, String> {
        let map = world_map(size).map_err(|e| format!("creating the world map: {e}"))?;
        let main = vec![
            Insn::load(DW, 6, 1, 0),
            Insn::store_imm(W, 10, -4, 0),
            Insn::alu64_reg(MOV, 2, 10),
            Insn::alu64_imm(ADD, 2, -4),
            Insn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map.as_raw_fd()),
            Insn::default(),
            Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
            Insn::jmp_imm(JEQ, 0, 0, 4),
            Insn::store(DW, 0, 0, 0),
            Insn::alu64_reg(MOV, 1, 6),
            pseudo_call(),
            Insn::exit(),
            Insn::alu32_imm(MOV, 0, HARNESS_FAILED as i32),
            Insn::exit(),
        ];
        let prog = load(&link(main, 10, expr), BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0)
            .map_err(|log| format!("the verifier rejects the expression:\n{log}"))?;
        let mut this = Self { prog, map, size, base: 0 };
        // A first run (on skb 0: every read fails) leaves the value's address.
        assert_ne!(this.test_run(0), HARNESS_FAILED, "the harness found no map value");
        let value = this.lookup();
        this.base = u64::from_le_bytes(value[..8].try_into().unwrap());
        assert!(this.base >> 47 == 0x1ffff, "map value at {:#x}", this.base);
        Ok(this)
    }

    fn lookup(&self) -> Vec<u8> {
        let mut value = vec![0u8; self.size];
        let key = 0u32;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: (&raw const key) as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        bpf_call(BPF_MAP_LOOKUP_ELEM, &mut attr).expect("BPF_MAP_LOOKUP_ELEM");
        value
    }

    fn test_run(&self, skb: u64) -> u32 {
        let args = [skb];
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            ctx_size_in: 8,
            ctx_in: args.as_ptr() as u64,
            ..Default::default()
        };
        bpf_call(BPF_PROG_TEST_RUN, &mut attr).expect("BPF_PROG_TEST_RUN");
        attr.retval
    }

    /// The verdict for `world` (rebased onto the map value and copied into it).
    pub fn run(&self, world: &World) -> u32 {
        let mut world = world.clone();
        world.rebase(self.base);
        let mut image = world.image.clone();
        assert!(image.len() <= self.size, "world of {} bytes, map of {}", image.len(), self.size);
        image.resize(self.size, 0);
        map_update_elem(self.map.as_raw_fd(), &0u32.to_ne_bytes(), &image).expect("BPF_MAP_UPDATE_ELEM");
        self.test_run(world.skb_addr())
    }
}

/// An expression attached as `tp_btf` to a tracepoint whose argument 0 is the skb, counting
/// the skbs for which it returns 1.
pub struct Counter {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Counter {
    pub fn attach(expr: &[Insn], typedef_id: u32) -> Result<Self, String> {
        let map = world_map(8).map_err(|e| format!("creating the counter map: {e}"))?;
        let main = vec![
            Insn::load(DW, 1, 1, 0),
            pseudo_call(),
            Insn::jmp_imm(JEQ, 0, 0, 9),
            Insn::store_imm(W, 10, -4, 0),
            Insn::alu64_reg(MOV, 2, 10),
            Insn::alu64_imm(ADD, 2, -4),
            Insn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map.as_raw_fd()),
            Insn::default(),
            Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
            Insn::jmp_imm(JEQ, 0, 0, 2),
            Insn::alu64_imm(MOV, 1, 1),
            // lock *(u64 *)(r0 + 0) += r1
            Insn::new(STX | ATOMIC | DW, 0, 1, 0, 0),
            Insn::alu64_imm(MOV, 0, 0),
            Insn::exit(),
        ];
        let prog = load(&link(main, 1, expr), BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, typedef_id)?;
        let link = crate::sys::raw_tracepoint_open(prog.as_raw_fd(), None).map_err(|e| format!("attaching: {e}"))?;
        Ok(Self { map, _prog: prog, _link: link })
    }

    pub fn count(&self) -> u64 {
        let mut value = [0u8; 8];
        let key = 0u32;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: (&raw const key) as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        bpf_call(BPF_MAP_LOOKUP_ELEM, &mut attr).expect("BPF_MAP_LOOKUP_ELEM");
        u64::from_le_bytes(value)
    }
}

/// Loads `expr` behind a `tp_btf` program on the tracepoint whose `btf_trace_*` typedef is
/// `typedef_id`, where argument 0 is the skb.
pub fn verify_tp_btf(expr: &[Insn], typedef_id: u32) -> Result<(), String> {
    let main = vec![Insn::load(DW, 1, 1, 0), pseudo_call(), Insn::exit()];
    load(&link(main, 1, expr), BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, typedef_id).map(drop)
}

/// Loads `expr` behind a kprobe program whose first argument is the skb.
pub fn verify_kprobe(expr: &[Insn]) -> Result<(), String> {
    let main = vec![Insn::load(DW, 1, 1, PT_REGS_DI), pseudo_call(), Insn::exit()];
    load(&link(main, 1, expr), BPF_PROG_TYPE_KPROBE, 0, 0).map(drop)
}
