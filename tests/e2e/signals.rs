//! Ending cleanly: SIGTERM, SIGINT when a script started skbtrace in the
//! background (SIGINT begins ignored there), and a reader that goes away
//! (of standard output, or of standard error too).

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::util::{
    cmd::{self, Tracer},
    netns::Netns,
    require_root,
};

#[test]
fn sigterm_flushes_and_exits_0() {
    if !require_root("sigterm_flushes_and_exits_0") {
        return;
    }
    let ns = Netns::new("term");
    let t = Tracer::start(&["--filter-netns", &ns.path(), "--filter-func", "kfree_skb"]);
    ns.send_udp("127.0.0.1", 4900, "x");
    std::thread::sleep(Duration::from_millis(300));
    t.signal(libc::SIGTERM);
    let done = t.wait();
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(done.stdout.contains(":4900(udp)"), "event not flushed:\n{}", done.stdout);
    assert!(done.stderr.contains("1 events") || done.stderr.contains(" events"), "{}", done.stderr);
}

#[test]
fn sigint_works_when_it_began_ignored() {
    if !require_root("sigint_works_when_it_began_ignored") {
        return;
    }
    let ready = std::env::temp_dir().join(format!("skbtrace-bg-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(cmd::bin());
    child.args(["--filter-func", "kfree_skb", "--ready-file"]).arg(&ready);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        child.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = child.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starting skbtrace");
    if let Err(status) = cmd::wait_for_ready(&mut child, &ready, Duration::from_secs(60)) {
        panic!("skbtrace exited ({status}) before it was ready");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = cmd::wait_for_exit(&mut child, Duration::from_secs(30), "skbtrace ignored SIGINT");
    let _ = std::fs::remove_file(&ready);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn closed_pipe_ends_quietly() {
    if !require_root("closed_pipe_ends_quietly") {
        return;
    }
    let ns = Netns::new("pipe");
    let ready = std::env::temp_dir().join(format!("skbtrace-pipe-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(cmd::bin())
        .args(["--filter-netns", &ns.path(), "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting skbtrace");
    if let Err(status) = cmd::wait_for_ready(&mut child, &ready, Duration::from_secs(60)) {
        panic!("skbtrace exited ({status}) before it was ready");
    }
    // Read the header, then go away like `| head -1` does.
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut header = String::new();
    ns.send_udp("127.0.0.1", 5000, "x");
    out.read_line(&mut header).expect("header");
    drop(out);
    let started = Instant::now();
    let mut port = 5001;
    let status = loop {
        if let Some(s) = child.try_wait().expect("polling") {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "skbtrace kept running after its reader left");
        ns.send_udp("127.0.0.1", port, "x");
        port += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&ready);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}

/// `skbtrace 2>&1 | head -1`: stdout and stderr are one pipe, and its reader
/// is gone before skbtrace writes its closing lines ("N events").
#[test]
fn closed_stderr_is_not_a_crash() {
    if !require_root("closed_stderr_is_not_a_crash") {
        return;
    }
    let ready = std::env::temp_dir().join(format!("skbtrace-stderr-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(cmd::bin())
        .args(["--filter-func", "kfree_skb", "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting skbtrace");
    if let Err(status) = cmd::wait_for_ready(&mut child, &ready, Duration::from_secs(60)) {
        panic!("skbtrace exited ({status}) before it was ready");
    }
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    err.read_line(&mut first).expect("a first stderr line");
    assert!(first.starts_with("skbtrace: "), "{first}");
    drop(err);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = cmd::wait_for_exit(&mut child, Duration::from_secs(30), "skbtrace did not end after SIGINT");
    let _ = std::fs::remove_file(&ready);
    // A panic writing to the closed stderr would be exit status 101.
    assert_eq!(status.code(), Some(0));
}
