//! pwru's sk_buff printing flags on this host: `--output-skb-metadata`,
//! `--output-skb-cb`, `--output-skb` and `--output-skb-shared-info`, on UDP
//! datagrams to a closed port in a namespace of each test's own.

use std::{net::UdpSocket, os::fd::AsRawFd as _};

use anyhow::{Context as _, ensure};
use testkit::{ci::require_root, netns::Netns};

use crate::skbtrace;

/// A mark no other test sets.
const MARK: u32 = 0x5eb;

/// Sends `payload` to 127.0.0.1:`port` inside `ns` from a socket with `SO_MARK` set.
fn send_marked(ns: &Netns, port: u16, payload: &'static [u8]) -> anyhow::Result<()> {
    ns.run(move || {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let mark = MARK;
        // SAFETY: `mark` is a live u32 and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&raw const mark).cast(),
                size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        sock.send_to(payload, ("127.0.0.1", port))
    })
    .context("sending a marked datagram")?;
    Ok(())
}

#[test]
fn metadata_values_are_the_events_own() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("skm")?;
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--output-json", "--output-skb-metadata", "skb->mark,skb->len"])
        .args(["--output-skb-metadata", "skb->dev->name", "--output-skb-cb"])
        .start()?;
    send_marked(&ns, 4700, b"metadata")?;
    let done = t.stop()?;
    ensure!(done.status.success(), "{}", done.stderr);
    let events = done.events()?;
    ensure!(!events.is_empty(), "no events:\n{}", done.stderr);
    for e in &events {
        skbtrace::check_fields(e)?;
        let meta = &e["skb_metadata"];
        ensure!(meta["mark"] == e["mark"] && meta["len"] == e["len"], "skb_metadata differs from the event: {e}");
        ensure!(meta["name"] == e["ifname"], "skb->dev->name is not the event's ifname: {e}");
        ensure!(e["cb"].as_array().is_some_and(|cb| cb.len() == 5), "cb is not five words: {e}");
    }
    ensure!(events.iter().any(|e| e["skb_metadata"]["mark"] == MARK), "no event has the socket's mark");
    ensure!(done.stderr.lines().all(|l| !l.contains("without their")), "records lost:\n{}", done.stderr);
    Ok(())
}

#[test]
fn text_shows_fields_after_func_and_the_dumps_below() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("skd")?;
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--filter-func", "kfree_skb", "--output-skb-metadata", "skb->len"])
        .args(["--output-skb", "--output-skb-shared-info", "--output-skb-cb"])
        .start()?;
    send_marked(&ns, 4701, b"known packet")?;
    let done = t.stop()?;
    ensure!(done.status.success(), "{}", done.stderr);
    let lines: Vec<&str> = done.stdout.lines().collect();
    ensure!(lines.first().is_some_and(|h| h.contains("__sk_buff->cb[]")), "no cb column:\n{}", done.stdout);
    let at = lines
        .iter()
        .position(|l| l.contains("127.0.0.1:4701(udp)") && l.contains("SKB_DROP_REASON_NO_SOCKET"))
        .with_context(|| format!("no drop of the datagram:\n{}", done.stdout))?;
    let line = lines[at];
    // The LEN column, then the same length after FUNC.
    let cols: Vec<&str> = line.split_whitespace().collect();
    let len = cols[8];
    ensure!(line.ends_with(&format!(" len={len}")), "len={len} does not end {line}");
    ensure!(line.contains("[0x00000000,"), "no cb words in {line}");
    let dump = lines[at + 1..].join("\n");
    ensure!(dump.starts_with("(struct sk_buff){"), "no sk_buff dump after the line:\n{dump}");
    let skb_dump = &dump[..dump.find("\n}\n").with_context(|| format!("an unended dump:\n{dump}"))?];
    ensure!(skb_dump.contains(&format!("\n .len = (unsigned int){len},")), "the dump's len differs:\n{skb_dump}");
    ensure!(skb_dump.contains(".protocol = (__be16)8,"), "not IPv4:\n{skb_dump}");
    ensure!(dump.contains("\n(struct skb_shared_info){"), "no shared info dump:\n{dump}");
    Ok(())
}

#[test]
fn json_carries_the_dump() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("skj")?;
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--output-json", "--output-skb", "--set-percpu-buf", "256"])
        .start()?;
    ns.send_udp("127.0.0.1", 4702, "x")?;
    let done = t.stop()?;
    ensure!(done.status.success(), "{}", done.stderr);
    let events = done.events()?;
    ensure!(!events.is_empty());
    for e in &events {
        skbtrace::check_fields(e)?;
        let dump = e["skb_dump"].as_str().context("skb_dump is not a string")?;
        // Cut at --set-percpu-buf, NUL excluded.
        ensure!(dump.starts_with("(struct sk_buff){") && dump.len() <= 255, "{dump:?}");
        ensure!(e["skb_shared_info_dump"] == "" && e["skb_metadata"] == serde_json::json!({}), "{e}");
    }
    Ok(())
}

#[test]
fn bad_fields_and_sizes_exit_2_naming_them() {
    // Checked against BTF when the trace starts: root only.
    let traced = [
        (vec!["--output-skb-metadata", "skb->mark,skb->nosuch"], "--output-skb-metadata skb->nosuch"),
        (vec!["--output-skb-metadata", "skb->cb"], "--output-skb-metadata skb->cb"),
        (vec!["--output-skb-metadata", "skb->headers"], "skb->headers"),
    ];
    let parsed = [
        (vec!["--output-skb-metadata", "skb->mark,skb->len,skb->hash,skb->priority,skb->protocol"], "at most 4"),
        (vec!["--set-percpu-buf", "100000"], "--set-percpu-buf 100000"),
        (vec!["--set-percpu-buf", "8"], "--set-percpu-buf 8"),
    ];
    let root = require_root();
    for (args, needle) in traced.into_iter().filter(|_| root).chain(parsed) {
        let args: Vec<&str> = args.into_iter().chain(["--duration", "10s"]).collect();
        let out = skbtrace::run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in: {err}");
    }
}
