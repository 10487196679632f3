//! Ending cleanly: SIGTERM, SIGINT when a script started skbtrace in the
//! background (SIGINT begins ignored there), and a reader that goes away
//! (of standard output, or of standard error too).

use std::{
    io::{BufRead as _, BufReader},
    net::UdpSocket,
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use testkit::{ci::require_root, netns::Netns, summary::End};

use crate::skbtrace;

#[test]
fn sigterm_flushes_and_exits_0() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("trm")?;
    let t = skbtrace::command().args(["--filter-netns", &ns.path(), "--filter-func", "kfree_skb"]).start()?;
    // The drop happens inside the send (loopback delivers in the sender's
    // context), so its event is in the ring buffer before the signal.
    ns.send_udp("127.0.0.1", 4900, "x")?;
    t.signal(libc::SIGTERM)?;
    let done = t.wait()?;
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let lines = done.stdout.lines().filter(|l| l.contains(":4900(udp)")).count();
    assert_eq!(lines, 1, "the event was not flushed, or printed twice:\n{}", done.stdout);
    let summary = done.summary()?;
    assert_eq!(summary.events, 1, "{summary:?}");
    assert_eq!(summary.end, End::Signal);
    Ok(())
}

#[test]
fn sigint_works_when_it_began_ignored() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = skbtrace::command()
        .args(["--filter-func", "kfree_skb"])
        .ignore_sigint()
        .stdout(Stdio::null())
        .limits(Duration::from_secs(60), Duration::from_secs(30))
        .start()?;
    let done = t.stop()?;
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    Ok(())
}

#[test]
fn closed_pipe_ends_quietly() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("pip")?;
    let mut t = skbtrace::command().args(["--filter-netns", &ns.path()]).stdout(Stdio::piped()).start()?;
    // Read the header, then go away like `| head -1` does.
    let mut out = BufReader::new(t.take_stdout().expect("piped"));
    let mut header = String::new();
    ns.send_udp("127.0.0.1", 5000, "x")?;
    out.read_line(&mut header)?;
    drop(out);
    // skbtrace learns that the reader left when it next writes: keep giving
    // it events until it exits.
    let started = Instant::now();
    let mut port = 5001;
    while t.try_wait()?.is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "skbtrace kept running after its reader left");
        ns.send_udp("127.0.0.1", port, "x")?;
        port += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = t.wait()?;
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains("panicked") && !done.stderr.contains("Broken pipe"), "{}", done.stderr);
    // It still detached and wrote its summary.
    let summary = done.summary()?;
    assert_eq!(summary.end, End::Closed, "{summary:?}");
    assert_eq!(summary.detached, summary.attached, "{summary:?}");
    Ok(())
}

/// `skbtrace 2>&1 | head -1`: stdout and stderr are one pipe, and its reader
/// is gone before skbtrace writes its closing lines ("N events").
#[test]
fn closed_stderr_is_not_a_crash() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let mut t = skbtrace::command()
        .args(["--filter-func", "kfree_skb"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .limits(Duration::from_secs(60), Duration::from_secs(30))
        .start()?;
    let mut err = BufReader::new(t.take_stderr().expect("piped"));
    let mut first = String::new();
    err.read_line(&mut first)?;
    assert!(first.starts_with("skbtrace: "), "{first}");
    drop(err);
    let done = t.stop()?;
    // A panic writing to the closed stderr would be exit status 101.
    assert_eq!(done.status.code(), Some(0));
    Ok(())
}

/// Sends UDP to a closed port on loopback inside `ns` until `stop` is set
/// (or a minute passed): several events per datagram, far more than a debug
/// build's explain mode prints.
fn flood(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let path = ns.path();
    std::thread::spawn(move || {
        testkit::netns::run_in(Path::new(&path), || {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for _ in 0..256 {
                    let _ = socket.send_to(b"x", "127.0.0.1:4901");
                }
            }
            Ok(())
        })
    })
}

/// A flood faster than skbtrace can print still ends the run on
/// `--duration` and on SIGINT: the loop hands the consumers a batch at a time
/// and looks at its ends between batches (it once drained for as long as the
/// flood lasted).
#[test]
fn a_flood_faster_than_the_reader_still_ends_on_duration_and_sigint() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("fld")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(&ns, stop.clone());
    let run = |extra: &[&str]| {
        skbtrace::command()
            .args(["--filter-netns", &ns.path(), "--explain", "--output-json"])
            .args(extra)
            .stdout(Stdio::null())
            .limits(Duration::from_secs(60), Duration::from_secs(20))
            .start()
    };
    let timed = run(&["--duration", "1s"]).and_then(|t| t.wait());
    let interrupted = run(&[]).and_then(|t| {
        std::thread::sleep(Duration::from_secs(1));
        t.stop()
    });
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the flood thread panicked")?;
    for (done, end) in [(timed?, End::Duration), (interrupted?, End::Signal)] {
        let summary = done.summary()?;
        assert_eq!((done.status.code(), summary.end), (Some(0), end), "{}", done.stderr);
        assert!(summary.lost > 0, "the flood did not outrun skbtrace, so this tested nothing: {summary:?}");
    }
    Ok(())
}
