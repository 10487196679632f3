//! skbtrace's eBPF programs: thin entry points, one per way an skb reaches us
//! (kprobe argument position, tracepoint argument position, drop points).
//! Each calls [`capture::handle`], which does the work.
//!
//! `unsafe` here is of three kinds, each with a `// SAFETY:` note: BPF
//! helpers (the kernel checks their pointers; we pass our own buffers with
//! their true sizes), reads of the per-CPU scratch maps (a program runs to
//! the end on one CPU, so nothing else touches them meanwhile), and volatile
//! reads of the configuration user space patched into the object.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod filter;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod names;
#[cfg(target_arch = "bpf")]
mod nft;
#[cfg(target_arch = "bpf")]
mod probes;
#[cfg(target_arch = "bpf")]
mod skb_dump;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Built for the host only so that `cargo check --workspace` works; the
    // real artifact is built for bpfel-unknown-none by tracer/build.rs.
}
