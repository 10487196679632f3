//! `--timestamp` with pwru's meanings: `current` is the kernel's time in ns,
//! `relative` the ns since the same skb's previous event (0 on its first),
//! `absolute` the local date and time in a TIME column first, with the
//! kernel's ns in TIMESTAMP.

use std::collections::HashMap;

use anyhow::{Context as _, ensure};
use testkit::{ci::require_root, netns::Netns};

use super::{in_netns, start, stopped, text, to_port};
use crate::clock::{is_stamp, mono_ns, real_ns, utc_stamp};

/// A TIMESTAMP that should be the kernel's time of an event between `before` and `after`.
fn kernel_ns_within(value: &str, before: u64, after: u64) -> anyhow::Result<()> {
    let ns: u64 = value.parse().with_context(|| format!("TIMESTAMP {value:?} is not a number of ns"))?;
    ensure!((before..=after).contains(&ns), "TIMESTAMP {ns} is not the kernel's time, between {before} and {after}");
    Ok(())
}

#[test]
fn current_is_the_kernel_time_in_ns() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("tsc")?;
    let json = start(&ns, &["--timestamp", "current", "--output-json"])?;
    let text_run = start(&ns, &["--timestamp", "current"])?;
    let before = mono_ns();
    ns.send_udp("127.0.0.1", 4010, "now")?;
    let (json, text_run) = (stopped(json)?, stopped(text_run)?);
    let after = mono_ns();

    let events = json.events()?;
    let ours = to_port(&events, 4010);
    ensure!(!ours.is_empty(), "no event for the datagram:\n{}", json.stdout);
    for e in ours {
        let ktime = e["ktime_ns"].as_u64().context("ktime_ns")?;
        assert_eq!(e["timestamp"], ktime.to_string().as_str(), "timestamp is not ktime_ns: {e}");
        kernel_ns_within(&ktime.to_string(), before, after)?;
    }

    let (header, lines) = text(&text_run);
    assert_eq!(header.get(..5), Some(&["SKB", "CPU", "PROCESS", "TIMESTAMP", "NETNS"][..]), "{}", text_run.stdout);
    let ours: Vec<&str> = lines.into_iter().filter(|l| l.contains("127.0.0.1:4010(udp)")).collect();
    ensure!(!ours.is_empty(), "no line for the datagram:\n{}", text_run.stdout);
    for line in ours {
        let columns: Vec<&str> = line.split_whitespace().collect();
        kernel_ns_within(columns[3], before, after).with_context(|| line.to_owned())?;
        assert_eq!(columns[4], ns.inode()?.to_string(), "NETNS follows TIMESTAMP: {line}");
    }
    Ok(())
}

/// Datagrams to a closed port: the kernel sends the ICMP error before it
/// drops the datagram, so each datagram's events come before and after the
/// error's, and each skb's clock is its own.
#[test]
fn relative_is_per_skb_and_0_on_its_first_event() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("tsr")?;
    let port = 4012;
    // With kprobes, where skbs are freed too: their addresses are reused.
    let tracer = in_netns(&ns, &["kfree_skbmem"]).args(["--timestamp", "relative", "--output-json"]).start()?;
    ns.send_udp("127.0.0.1", port, "first")?;
    ns.send_udp("127.0.0.1", port, "second")?;
    let done = stopped(tracer)?;
    let events = done.events()?;

    // Replays the rule: an skb's clock starts at its first event and ends
    // where its life ends (`freed`), since the address is then reused.
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut firsts = 0;
    let mut interleaved = false;
    let mut previous_skb = "";
    // Skbs to the port seen for the first time. (With kprobes an skb may
    // reuse the address of one whose free went unseen, whose clock it then
    // continues, as pwru's does.)
    let mut datagrams = 0;
    for e in &events {
        let skb = e["skb"].as_str().context("skb")?;
        let ktime = e["ktime_ns"].as_u64().context("ktime_ns")?;
        let expected = match last.get(skb) {
            Some(&at) => {
                interleaved |= previous_skb != skb;
                ktime.saturating_sub(at)
            }
            None => {
                firsts += 1;
                datagrams += usize::from(e["tuple"]["dport"] == port);
                0
            }
        };
        assert_eq!(
            e["timestamp"],
            expected.to_string().as_str(),
            "not the ns since this skb's previous event:\n{e}\nin:\n{}",
            done.stdout
        );
        if e["freed"] == true {
            last.remove(skb);
        } else {
            last.insert(skb, ktime);
        }
        previous_skb = skb;
    }
    ensure!(datagrams >= 1 && firsts >= 2, "fewer than two skbs' first events (timestamp 0):\n{}", done.stdout);
    ensure!(
        interleaved,
        "no skb had an event between two of another's; nothing told per-skb from global:\n{}",
        done.stdout
    );
    Ok(())
}

/// TIME in a time zone that is not the host's: the local time, not UTC.
#[test]
fn absolute_is_local_date_and_time_with_kernel_ns() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    // POSIX TZ: "PTZ", 5 h 30 min east of UTC.
    let (tz, east) = ("PTZ-05:30", 5 * 3600 + 30 * 60);
    let ns = Netns::new("tsa")?;
    let args = ["--timestamp", "absolute"];
    let text_run = in_netns(&ns, &[]).env("TZ", tz).args(args).start()?;
    let json = in_netns(&ns, &[]).env("TZ", tz).args(args).arg("--output-json").start()?;
    let (wall_before, before) = (real_ns(), mono_ns());
    ns.send_udp("127.0.0.1", 4011, "when")?;
    let (text_run, json) = (stopped(text_run)?, stopped(json)?);
    let (wall_after, after) = (real_ns(), mono_ns());
    // A second of slack for the wall clock skbtrace derived at its start.
    let earliest = utc_stamp(wall_before - 1_000_000_000, east, ':');
    let latest = utc_stamp(wall_after + 1_000_000_000, east, ':');
    let local_now = |time: &str| is_stamp(time, ':') && (earliest.as_str()..=latest.as_str()).contains(&time);

    let (header, lines) = text(&text_run);
    assert_eq!(
        header.get(..6),
        Some(&["TIME", "SKB", "CPU", "PROCESS", "TIMESTAMP", "NETNS"][..]),
        "{}",
        text_run.stdout
    );
    let ours: Vec<&str> = lines.into_iter().filter(|l| l.contains("127.0.0.1:4011(udp)")).collect();
    ensure!(!ours.is_empty(), "no line for the datagram:\n{}", text_run.stdout);
    for line in ours {
        let columns: Vec<&str> = line.split_whitespace().collect();
        ensure!(local_now(columns[0]), "TIME {:?} is not the local time in {tz}, {earliest}…{latest}", columns[0]);
        kernel_ns_within(columns[4], before, after).with_context(|| line.to_owned())?;
    }

    let events = json.events()?;
    let ours = to_port(&events, 4011);
    ensure!(!ours.is_empty(), "no event for the datagram:\n{}", json.stdout);
    for e in ours {
        let time = e["timestamp"].as_str().context("timestamp")?;
        ensure!(local_now(time), "timestamp {time:?} is not the local time in {tz}, {earliest}…{latest}: {e}");
        kernel_ns_within(&e["ktime_ns"].to_string(), before, after)?;
    }
    Ok(())
}
