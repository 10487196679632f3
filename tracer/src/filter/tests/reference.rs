//! libpcap's own interpreter, the reference every translated filter is held to.

use crate::filter::CbpfInsn;

unsafe extern "C" {
    /// Exported by libpcap (which the pcap crate links); `pc` must end every path in a return.
    fn bpf_filter(pc: *const CbpfInsn, p: *const u8, wirelen: u32, buflen: u32) -> u32;
}

/// `bpf_filter()`'s return value for `data` captured from a packet of `wire_len` bytes.
pub fn run(prog: &[CbpfInsn], data: &[u8], wire_len: u32) -> u32 {
    assert!(!prog.is_empty());
    // SAFETY: libpcap reads at most `buflen` bytes of `p` and stays inside `prog`, whose
    // layout is `struct bpf_insn`; the tests only hand it programs that end in returns.
    unsafe { bpf_filter(prog.as_ptr(), data.as_ptr(), wire_len, data.len() as u32) }
}
