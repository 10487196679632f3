//! Throwaway network namespaces and veth pairs with unique names (tests run
//! in parallel), removed in Drop even when a test panics; code and UDP
//! senders run inside them on a thread that entered the namespace. Traffic
//! only ever goes to addresses inside them.

use std::{
    fs::File,
    io,
    net::{SocketAddr, UdpSocket},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, anyhow, bail};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other namespace or interface of this or a parallel run has;
/// short enough for an interface name (15 bytes) when `tag` has at most 3.
fn unique(tag: &str) -> String {
    format!("skbt{}{}{tag}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Runs `ip ARGS`; an error carries its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A named network namespace (`ip netns add`), with `lo` up.
pub struct Netns {
    name: String,
}

impl Netns {
    /// `tag` (at most 3 characters) ends the generated name, to tell
    /// namespaces apart in a failure's output.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = unique(tag);
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, as `--filter-netns` takes it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The namespace's inode, as skbtrace prints it in NETNS.
    pub fn inode(&self) -> anyhow::Result<u64> {
        let path = self.path();
        Ok(std::fs::metadata(&path).with_context(|| format!("reading {path}"))?.ino())
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to and spawn. `ip`
    /// execs the program in place: the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a shell command inside the namespace; returns its standard
    /// output, or an error with its standard error.
    pub fn sh(&self, script: &str) -> anyhow::Result<String> {
        let out = self.command("sh").args(["-c", script]).output().context("running ip netns exec")?;
        if !out.status.success() {
            bail!("in {}: {script}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a thread inside the namespace (see [`run_in`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> anyhow::Result<T> {
        run_in(Path::new(&self.path()), f)
    }

    /// Sends one UDP datagram from inside the namespace.
    pub fn send_udp(&self, dst: &str, port: u16, payload: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let ip = dst.parse().with_context(|| format!("{dst} is not an IP address"))?;
        let to = SocketAddr::new(ip, port);
        let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
        let payload = payload.as_ref();
        self.run(|| UdpSocket::bind(bind)?.send_to(payload, to)).with_context(|| format!("sending UDP to {to}"))?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// The two ends of a veth pair.
pub struct Veth {
    /// The end in the first namespace.
    pub a: String,
    pub b: String,
}

/// Joins two namespaces with a veth pair, each end addressed (CIDR) and up.
/// Deleting a namespace deletes its end.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> anyhow::Result<Veth> {
    let pair = Veth { a: unique("a"), b: unique("b") };
    ip(&["link", "add", &pair.a, "netns", &a.name, "type", "veth", "peer", "name", &pair.b, "netns", &b.name])?;
    a.ip(&["addr", "add", a_addr, "dev", &pair.a])?;
    b.ip(&["addr", "add", b_addr, "dev", &pair.b])?;
    a.ip(&["link", "set", &pair.a, "up"])?;
    b.ip(&["link", "set", &pair.b, "up"])?;
    Ok(pair)
}

/// Runs `f` on a fresh thread that has entered the network namespace at
/// `netns`; the thread ends with `f`, so no other code runs in there.
/// Sockets and `/proc/thread-self/net` files opened by `f` stay bound to that
/// namespace after it returns.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> anyhow::Result<T> {
    let ns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let joined = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns only changes this thread's namespace; the fd is valid.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
    });
    let result = joined.map_err(|_| anyhow!("a thread in {} panicked", netns.display()))?;
    result.with_context(|| format!("inside {}", netns.display()))
}
