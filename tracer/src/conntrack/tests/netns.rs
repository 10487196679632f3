//! Throwaway network namespaces for the conntrack tests: created with `ip`,
//! configured with `ip`/`iptables` run inside them, removed on drop.

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::Command,
};

/// Whether the test can run: root, or a skip message (a failure under CI).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs root under CI");
    eprintln!("SKIPPED {test}: needs root (network namespaces, iptables, eBPF)");
    false
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {}: {e}", args.join(" ")));
    assert!(out.status.success(), "{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("skbct-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn inode(&self) -> u32 {
        std::fs::metadata(self.path()).expect("netns file").ino() as u32
    }

    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// A command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A UDP socket bound inside the namespace (it stays there once made).
    pub fn udp_socket(&self, bind: SocketAddr) -> UdpSocket {
        crate::netns::within(&self.path(), || Ok(UdpSocket::bind(bind)?)).expect("UDP socket in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A veth pair between `a` and `b`, addressed (`a.b.c.d/len`) and up;
/// returns the interface names.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{}x{n}", std::process::id());
    let (ia, ib) = (format!("cta{tag}"), format!("ctb{tag}"));
    run("ip", &["link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", &ia]);
    b.ip(&["addr", "add", b_addr, "dev", &ib]);
    a.ip(&["link", "set", &ia, "up"]);
    b.ip(&["link", "set", &ib, "up"]);
    (ia, ib)
}

/// client (10.N.1.1) → router (10.N.1.254 | 10.N.2.254) → server (10.N.2.1).
/// The router DNATs UDP port 5000 to the server's port 4000 and masquerades
/// what leaves towards the server; nothing listens on the server.
pub struct NatPath {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    pub net: u8,
}

impl NatPath {
    pub fn new(tag: &str, net: u8) -> Self {
        let (client, router, server) =
            (Netns::new(&format!("{tag}c")), Netns::new(&format!("{tag}r")), Netns::new(&format!("{tag}s")));
        let a = |host: &str| format!("10.{net}.{host}");
        veth(&client, &a("1.1/24"), &router, &a("1.254/24"));
        let (r_out, _) = veth(&router, &a("2.254/24"), &server, &a("2.1/24"));
        client.ip(&["route", "add", "default", "via", &a("1.254")]);
        server.ip(&["route", "add", "default", "via", &a("2.254")]);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let to = a("2.1:4000");
        router.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "--dport",
            "5000",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
        router.exec(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", &r_out, "-j", "MASQUERADE"]);
        Self { client, router, server, net }
    }

    pub fn addr(&self, host: &str) -> std::net::IpAddr {
        format!("10.{}.{host}", self.net).parse().expect("address")
    }

    /// One datagram from the client's `sport` to the router's DNAT'd port.
    pub fn send(&self, sport: u16, payload: &[u8]) {
        let socket = self.client.udp_socket(SocketAddr::new(self.addr("1.1"), sport));
        socket.send_to(payload, SocketAddr::new(self.addr("1.254"), 5000)).expect("sending the datagram");
    }
}
