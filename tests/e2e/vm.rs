//! Kprobe tests in a VM: wired when the VM harness lands.
