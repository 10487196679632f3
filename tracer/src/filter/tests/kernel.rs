//! Runs a translated filter in the running kernel: the verifier checks it as a BPF-to-BPF
//! subprogram, `BPF_PROG_TEST_RUN` executes it.
//!
//! The test program is a socket filter whose main body copies up to `SNAPLEN` bytes of the skb
//! into an array map value (the same kind of pointer the tracer passes) and calls the filter
//! appended after it. The packet's length travels in the skb's first four bytes, so that it
//! can differ from what was captured.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::filter::Insn;
use crate::filter::opcode::*;
use crate::sys::{BPF_PROG_LOAD, ProgLoadAttr, bpf, bpf_call};

pub const SNAPLEN: usize = 256;

/// What the main body returns when copying the packet failed; no test filter returns it.
pub const HARNESS_FAILED: u32 = 0x7ead_beef;

/// eBPF fields only the harness needs.
const LD: u8 = 0x00;
const IMM: u8 = 0x00;
const CALL: u8 = 0x80;
/// `src` of a `CALL` to a subprogram (`imm` = relative offset) rather than a helper.
const PSEUDO_CALL: u8 = 1;
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;
/// `log_level` bit asking for verifier statistics only.
const BPF_LOG_STATS: u32 = 4;
const ETH_HLEN: usize = 14;
/// IEEE local experimental: test runs check the IP header behind an IP ethertype, and the
/// packets here are often not IP or cut short.
const ETHERTYPE: u16 = 0x88b5;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
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
}

fn packet_map() -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: SNAPLEN as u32,
        max_entries: 1,
        ..Default::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr)
}

/// Whether this process may load BPF programs; the reason if not.
pub fn available() -> Result<(), String> {
    packet_map().map(drop).map_err(|e| format!("cannot create a BPF map: {e}"))
}

/// A loaded test program around one filter.
pub struct KernelFilter {
    prog: OwnedFd,
    _map: OwnedFd,
    /// Instructions the verifier processed for the whole program.
    pub verifier_insns: u64,
}

impl KernelFilter {
    pub fn load(filter: &[Insn]) -> Result<Self, String> {
        let map = packet_map().map_err(|e| format!("creating the packet map: {e}"))?;
        let program = harness(map.as_raw_fd(), filter);
        let (prog, log) = load_program(&program, BPF_LOG_STATS, 1 << 16)
            .or_else(|_| load_program(&program, 1, 1 << 26))
            .map_err(|log| format!("the verifier rejects the filter:\n{log}"))?;
        let verifier_insns =
            log.split_once("processed ").and_then(|(_, rest)| rest.split(' ').next()?.parse().ok()).unwrap_or(0);
        Ok(Self { prog, _map: map, verifier_insns })
    }

    /// The filter's verdict for `data` (truncated to `SNAPLEN` by the harness), captured from a
    /// packet of `wire_len` bytes.
    pub fn run(&self, data: &[u8], wire_len: u32) -> u32 {
        // Test runs want an Ethernet header and pull it off before a socket filter runs.
        let mut frame = vec![0u8; ETH_HLEN];
        frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        frame.extend_from_slice(&wire_len.to_ne_bytes());
        frame.extend_from_slice(data);
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        bpf_call(BPF_PROG_TEST_RUN, &mut attr).expect("BPF_PROG_TEST_RUN");
        attr.retval
    }
}

fn load_program(program: &[Insn], log_level: u32, log_size: usize) -> Result<(OwnedFd, String), String> {
    let bytes: Vec<u8> = program.iter().flat_map(Insn::to_bytes).collect();
    let mut log = vec![0u8; log_size];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: program.len() as u32,
        insns: bytes.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    let result = bpf(BPF_PROG_LOAD, &mut attr);
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).into_owned();
    match result {
        Ok(fd) => Ok((fd, text)),
        Err(e) => {
            // The end of a verifier log says what failed; the rest can be megabytes.
            let tail: String =
                text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            Err(format!("{e}\n{tail}"))
        }
    }
}

/// Socket filter: read the packet's length from the first four bytes, copy the rest into the
/// map value, then `return filter(value, copied, length)`.
fn harness(map_fd: i32, filter: &[Insn]) -> Vec<Insn> {
    let mut p = vec![
        Insn::alu64_reg(MOV, 6, 1),
        Insn::store_imm(W, 10, -4, 0),
        Insn::alu64_reg(MOV, 2, 10),
        Insn::alu64_imm(ADD, 2, -4),
        Insn::new(LD | IMM | DW, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::default(),
        Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
        Insn::jmp_imm(JEQ, 0, 0, 0), // → failed, fixed below
        Insn::alu64_reg(MOV, 7, 0),
        // r9 = the packet's length.
        Insn::alu64_reg(MOV, 1, 6),
        Insn::alu64_imm(MOV, 2, 0),
        Insn::alu64_reg(MOV, 3, 10),
        Insn::alu64_imm(ADD, 3, -8),
        Insn::alu64_imm(MOV, 4, 4),
        Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_SKB_LOAD_BYTES),
        Insn::jmp_imm(JNE, 0, 0, 0), // → failed, fixed below
        Insn::load(W, 9, 10, -8),
        // r8 = the bytes after it, at most SNAPLEN; the load above proves there are ≥ 4.
        Insn::load(W, 8, 6, 0), // __sk_buff.len
        Insn::alu32_imm(ADD, 8, -4),
        Insn::jmp_imm(JLE, 8, SNAPLEN as i32, 1),
        Insn::alu64_imm(MOV, 8, SNAPLEN as i32),
        Insn::jmp_imm(JLT, 8, 1, 6), // nothing to copy
        Insn::alu64_reg(MOV, 1, 6),
        Insn::alu64_imm(MOV, 2, 4),
        Insn::alu64_reg(MOV, 3, 7),
        Insn::alu64_reg(MOV, 4, 8),
        Insn::new(JMP | CALL, 0, 0, 0, BPF_FUNC_SKB_LOAD_BYTES),
        Insn::jmp_imm(JNE, 0, 0, 0), // → failed, fixed below
        Insn::alu64_reg(MOV, 1, 7),
        Insn::alu64_reg(MOV, 2, 8),
        Insn::alu64_reg(MOV, 3, 9),
        Insn::new(JMP | CALL, 0, PSEUDO_CALL, 0, 3), // the filter, after the 3 below
        Insn::exit(),
        Insn::alu32_imm(MOV, 0, HARNESS_FAILED as i32),
        Insn::exit(),
    ];
    let failed = p.len() as i16 - 2;
    for at in [7, 15, 27] {
        assert!(matches!(p[at].code & 0xf0, JEQ | JNE), "harness layout");
        p[at].off = failed - at as i16 - 1;
    }
    p.extend_from_slice(filter);
    p
}
