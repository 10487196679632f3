//! Throwaway network namespaces, veth pairs and bridges with unique names
//! (tests run in parallel), removed in Drop even when a test panics. Traffic
//! only ever goes to addresses inside them.

use std::{
    os::unix::fs::MetadataExt as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!("skbt{}{}{tag}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Runs a shell command inside the namespace.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .expect("running ip netns exec")
    }

    /// Like [`Netns::sh`], panicking when the command fails.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "in {}: {script}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The namespace's inode, as skbtrace prints it in NETNS.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).expect("netns file").ino()
    }

    /// Sends one UDP datagram from inside the namespace (bash's /dev/udp).
    pub fn send_udp(&self, dst: &str, port: u16, payload: &str) {
        self.sh_ok(&format!("echo {payload} | timeout 5 bash -c 'cat > /dev/udp/{dst}/{port}'"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Joins two namespaces with a veth pair: `a_if` in `a` with `a_addr`
/// (CIDR), `b_if` in `b` with `b_addr`. Deleting a namespace deletes its end.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    let a_if = unique("a");
    let b_if = unique("b");
    ip(&["link", "add", &a_if, "netns", &a.name, "type", "veth", "peer", "name", &b_if, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", &a_if]);
    b.ip(&["addr", "add", b_addr, "dev", &b_if]);
    a.ip(&["link", "set", &a_if, "up"]);
    b.ip(&["link", "set", &b_if, "up"]);
    (a_if, b_if)
}
