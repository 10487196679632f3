//! pwru's flags with pwru's meanings, checked as a pwru user would check
//! them: what each `--timestamp` mode prints, `--output-limit-lines 0`,
//! `--filter-ifname` scoped to a namespace, the columns that `--output-*`
//! add and remove, `--filter-skb-expr`, `--kernel-btf`, `--output-tunnel`
//! and `--output-netns-names`. Each test makes its own namespaces and
//! traces only them.

mod filters;
mod output;
mod timestamp;

use std::{net::UdpSocket, time::Duration};

use anyhow::{Context as _, ensure};
use testkit::{
    netns::Netns,
    process::{Finished, Skbtrace, Tracer},
};

use super::target;

/// The drop, receive and transmit points, and with kprobes `more` too. The
/// tracepoint backend attaches all of its tracepoints (about 30) instead.
fn funcs(more: &[&str]) -> Vec<String> {
    let t = target();
    if !t.kprobes() {
        return Vec::new();
    }
    let mut names = vec![t.drop_func(), t.receive_func(), t.transmit_func()];
    names.extend_from_slice(more);
    vec!["--filter-func".to_owned(), names.join("|")]
}

/// skbtrace on this backend, tracing `ns` only, at the functions of [`funcs`].
fn in_netns(ns: &Netns, more_funcs: &[&str]) -> Skbtrace {
    target().command().args(["--filter-netns", &ns.path()]).args(funcs(more_funcs))
}

/// Starts skbtrace tracing `ns` with `args` added.
fn start(ns: &Netns, args: &[&str]) -> anyhow::Result<Tracer> {
    in_netns(ns, &[]).args(args).start()
}

/// The text output's header, split into column names, and its other lines.
fn text(done: &Finished) -> (Vec<&str>, Vec<&str>) {
    let mut lines = done.stdout.lines();
    let header = lines.next().unwrap_or("").split_whitespace().collect();
    (header, lines.collect())
}

/// A UDP socket bound inside `ns` to `addr` and `port` (0: any), and its port.
fn bound_udp(ns: &Netns, addr: &str, port: u16) -> anyhow::Result<(UdpSocket, u16)> {
    let addr = addr.to_owned();
    let socket = ns.run(move || UdpSocket::bind((addr.as_str(), port)))?;
    socket.set_read_timeout(Some(Duration::from_secs(20)))?;
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}

/// Waits (boundedly) for a datagram on `socket`: the sender's packet has
/// passed every point between, so its events are in the ring buffer.
fn received(socket: &UdpSocket) -> anyhow::Result<usize> {
    let mut buf = [0; 2048];
    socket.recv(&mut buf).context("waiting for a datagram that should have arrived")
}

/// Checks a run that ended by SIGINT on this backend and returns it.
fn stopped(tracer: Tracer) -> anyhow::Result<Finished> {
    target().stop(tracer)
}

/// The events of a JSON run whose (outer) tuple goes to `port`.
fn to_port(events: &[serde_json::Value], port: u16) -> Vec<&serde_json::Value> {
    events.iter().filter(|e| e["tuple"]["dport"] == port).collect()
}

/// `ip -n NS link set OLD name NEW`, which needs the link down, and up again.
fn rename(ns: &Netns, old: &str, new: &str) -> anyhow::Result<()> {
    ns.ip(&["link", "set", old, "down"])?;
    ns.ip(&["link", "set", old, "name", new])?;
    ns.ip(&["link", "set", new, "up"])
}

/// Runs skbtrace on this backend to its end; `--duration` keeps a command
/// line that should have been refused from tracing for ever.
fn refused(args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let mut all = vec!["--duration", "20s"];
    all.extend_from_slice(args);
    let out = target().run(&all);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!err.contains("panicked"), "skbtrace {args:?} panicked:\n{err}");
    Ok((out.status.code(), err))
}
