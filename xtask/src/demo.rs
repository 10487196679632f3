//! `cargo xtask demo`: two throwaway namespaces joined by a veth pair, one UDP
//! datagram to a port nobody listens on, and skbtrace's trace of its drop.

use std::{
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    fn create() -> anyhow::Result<Self> {
        let id = std::process::id();
        let ns = Self { names: [format!("skbdemo-a-{id}"), format!("skbdemo-b-{id}")] };
        let [a, b] = &ns.names;
        let va = format!("dva{id}");
        let vb = format!("dvb{id}");
        for args in [
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec!["link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b],
            vec!["-n", a, "addr", "add", "10.253.0.1/24", "dev", &va],
            vec!["-n", b, "addr", "add", "10.253.0.2/24", "dev", &vb],
            vec!["-n", a, "link", "set", &va, "up"],
            vec!["-n", b, "link", "set", &vb, "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
        ] {
            ip(&args)?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip").args(args).status().context("running ip (install iproute2)")?;
    if !status.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

pub fn run(bin: &Path) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces: run it as root (sudo -E cargo xtask demo)");
    }
    let ns = Namespaces::create()?;
    let ready = std::env::temp_dir().join(format!("skbtrace-demo-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let expr = "udp and dst port 4000";
    let funcs = "kfree_skb.*|sk_skb_reason_drop|.*udp.*rcv.*|ip_rcv.*|netif_receive_skb.*";
    println!("$ skbtrace --filter-func '{funcs}' --output-limit-lines 20 '{expr}'");
    let mut child = Command::new(bin)
        .args(["--filter-func", funcs, "--output-limit-lines", "20", "--ready-file"])
        .arg(&ready)
        .arg(expr)
        .stdin(Stdio::null())
        .spawn()
        .context("starting skbtrace")?;
    let started = Instant::now();
    while !ready.exists() {
        if started.elapsed() > Duration::from_secs(120) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("skbtrace did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("# sending one UDP datagram from {} to 10.253.0.2:4000, where nothing listens", ns.names[0]);
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.names[0], "bash", "-c", "echo hello > /dev/udp/10.253.0.2/4000"])
        .status()
        .context("sending the datagram")?;
    if !status.success() {
        bail!("sending the datagram failed");
    }
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    let _ = std::fs::remove_file(&ready);
    drop(ns);
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
