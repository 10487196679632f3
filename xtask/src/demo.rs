//! `cargo xtask demo`: two throwaway namespaces joined by a veth pair, one UDP
//! datagram to a port nobody listens on, and skbtrace's trace of its drop.

use std::{
    path::Path,
    process::{ExitCode, Stdio},
    time::Duration,
};

use anyhow::bail;
use testkit::{
    netns::{Netns, veth},
    process::Skbtrace,
};

pub fn run(bin: &Path) -> anyhow::Result<ExitCode> {
    if !testkit::ci::is_root() {
        bail!("the demo creates network namespaces: run it as root (sudo -E cargo xtask demo)");
    }
    let (a, b) = (Netns::new("da")?, Netns::new("db")?);
    veth(&a, "10.253.0.1/24", &b, "10.253.0.2/24")?;
    let expr = "udp and dst port 4000";
    let funcs = "kfree_skb.*|sk_skb_reason_drop|.*udp.*rcv.*|ip_rcv.*|netif_receive_skb.*";
    println!("$ skbtrace --filter-func '{funcs}' --output-limit-lines 20 '{expr}'");
    let tracer = Skbtrace::new(bin)
        .args(["--filter-func", funcs, "--output-limit-lines", "20", expr])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .start()?;
    println!("# sending one UDP datagram from {} to 10.253.0.2:4000, where nothing listens", a.name());
    // From a shell, as a user would (the PROCESS column then says bash).
    let status = a.command("bash").args(["-c", "echo hello > /dev/udp/10.253.0.2/4000"]).status()?;
    if !status.success() {
        bail!("sending the datagram failed ({status})");
    }
    // Time to print the trace before Ctrl-C (a demo, not a test: nothing depends on it).
    std::thread::sleep(Duration::from_secs(1));
    let done = tracer.stop()?;
    Ok(if done.status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
