//! CI mode, `skbtrace … -- CMD`: the exit code a CI step sees, the command's
//! status and streams passed through, assertions on drops, signals passed
//! on, and the summary a job reads. Each test makes its own namespace.

use std::{net::UdpSocket, time::Duration};

use anyhow::{Context as _, ensure};
use testkit::{
    ci::require_root,
    netns::Netns,
    process::Finished,
    summary::{End, Summary},
};

use super::target;
use crate::skbtrace;

/// Runs skbtrace with `args`, then `--`, then `cmd`, to its end.
fn run(args: &[&str], cmd: &[&str]) -> anyhow::Result<Finished> {
    target().command().args(args).arg("--").args(cmd).spawn()?.wait()
}

/// `CMD`: one UDP datagram from inside `ns` to `dst:port`.
fn send_udp<'a>(ns: &'a Netns, dst: &'a str, port: &'a str, udpsend: &'a str) -> [&'a str; 7] {
    ["ip", "netns", "exec", ns.name(), udpsend, dst, port]
}

fn summary(done: &Finished) -> anyhow::Result<&Summary> {
    done.summary().with_context(|| format!("no summary; stderr:\n{}", done.stderr))
}

#[test]
fn a_drop_fails_the_run_and_is_named() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("cid")?;
    let udpsend = skbtrace::udpsend();
    let cmd = send_udp(&ns, "127.0.0.1", "4711", udpsend.to_str().context("udpsend's path")?);
    let done = run(&["--filter-netns", &ns.path(), "--fail-on-drop", "udp port 4711"], &cmd)?;
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr);
    let s = summary(&done)?;
    let drop = s.drops.iter().find(|d| d.reason.ends_with("NO_SOCKET")).context("no NO_SOCKET drop")?;
    assert!(drop.tuple.contains(":4711(udp)"), "{drop:?}");
    assert_eq!(s.command.as_ref().and_then(|c| c.status), Some(0), "udpsend itself succeeded");
    assert_eq!((s.assertions.len(), s.assertions[0].passed, s.exit_code), (1, false, 3), "{s:?}");
    assert_eq!(s.assertions[0].matched_reasons, std::slice::from_ref(&drop.reason));
    assert!(done.stderr.contains("--fail-on-drop FAILED") && done.stderr.contains("NO_SOCKET"), "{}", done.stderr);
    assert_eq!(s.end, End::Command);
    Ok(())
}

#[test]
fn no_drop_passes_the_commands_status() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("cio")?;
    // A server that is there: nothing is dropped.
    let server = ns.run(|| UdpSocket::bind("127.0.0.1:0"))?;
    let port = server.local_addr()?.port().to_string();
    let udpsend = skbtrace::udpsend();
    let cmd = send_udp(&ns, "127.0.0.1", &port, udpsend.to_str().context("udpsend's path")?);
    let done = run(&["--filter-netns", &ns.path(), "--fail-on-drop", &format!("udp port {port}")], &cmd)?;
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let s = summary(&done)?;
    assert!(s.drops.is_empty() && s.assertions[0].passed, "{s:?}");
    let mut buf = [0; 64];
    assert!(server.recv(&mut buf)? > 0, "the datagram arrived");
    Ok(())
}

#[test]
fn the_commands_status_and_signal_pass_through() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let done = run(&["--filter-func", target().drop_func()], &["sh", "-c", "exit 7"])?;
    assert_eq!(done.status.code(), Some(7), "{}", done.stderr);
    let s = summary(&done)?;
    assert_eq!((s.exit_code, s.command.as_ref().map(|c| c.argv.len())), (7, Some(3)));

    let done = run(&["--filter-func", target().drop_func()], &["sh", "-c", "kill -9 $$"])?;
    assert_eq!(done.status.code(), Some(128 + 9), "{}", done.stderr);
    let c = summary(&done)?.command.clone().context("no command")?;
    assert_eq!((c.status, c.signal), (None, Some(9)));
    Ok(())
}

#[test]
fn timeout_ends_the_command_with_124() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let done = run(&["--filter-func", target().drop_func(), "--timeout", "300ms"], &["sleep", "30"])?;
    assert_eq!(done.status.code(), Some(124), "{}", done.stderr);
    let s = summary(&done)?;
    assert_eq!(s.end, End::Timeout);
    let c = s.command.as_ref().context("no command")?;
    assert_eq!(c.signal, Some(libc::SIGTERM));
    assert!(c.seconds < 10.0, "{c:?}");
    Ok(())
}

#[test]
fn an_expected_drop_that_does_not_happen_fails() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    // In a namespace of its own: other tests' drops elsewhere are not this run's.
    let ns = Netns::new("cie")?;
    let quiet = ["--filter-netns", &ns.path(), "--filter-func", target().drop_func(), "--expect-drop=NO_SOCKET"];
    let done = run(&quiet, &["true"])?;
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr);
    let s = summary(&done)?;
    assert_eq!((s.assertions[0].assertion.as_str(), s.assertions[0].passed), ("expect_drop", false));
    let done = run(&[&quiet[..], &["--drop-exit-code", "42"]].concat(), &["true"])?;
    assert_eq!(done.status.code(), Some(42), "{}", done.stderr);
    Ok(())
}

/// The client exits as soon as it has sent; the reply comes 150 ms later,
/// to a port nobody listens on any more, within the grace period.
#[test]
fn a_reply_after_the_command_exits_is_traced() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("cig")?;
    let server = ns.run(|| UdpSocket::bind("127.0.0.1:0"))?;
    let port = server.local_addr()?.port();
    // The datagram comes once skbtrace has attached, which takes minutes
    // with kprobes in a TCG VM on a busy host: as long as skbtrace may take.
    server.set_read_timeout(Some(Duration::from_secs(300)))?;
    let replier = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0; 64];
        let (_, client) = server.recv_from(&mut buf)?;
        std::thread::sleep(Duration::from_millis(150));
        server.send_to(b"late", client).map(|_| ())
    });
    let udpsend = skbtrace::udpsend();
    let port_s = port.to_string();
    let cmd = send_udp(&ns, "127.0.0.1", &port_s, udpsend.to_str().context("udpsend's path")?);
    let filter = format!("udp port {port}");
    let done = run(&["--filter-netns", &ns.path(), "--grace", "1s", &filter], &cmd)?;
    replier.join().expect("the replier thread")?;
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let s = summary(&done)?;
    let reply = format!("127.0.0.1:{port}->");
    assert!(
        s.drops.iter().any(|d| d.reason.ends_with("NO_SOCKET") && d.tuple.starts_with(&reply)),
        "the reply's drop was not traced: {s:?}"
    );
    Ok(())
}

#[test]
fn sigterm_reaches_the_command() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    // The script says when its trap is set: a signal before that (skbtrace is
    // ready before the command has run a line) would end sh by default.
    let armed = std::env::temp_dir().join(format!("skbtrace-ci-trap-{}", std::process::id()));
    let _ = std::fs::remove_file(&armed);
    let script = format!("trap 'exit 9' TERM; : > '{}'; while :; do sleep 0.05; done", armed.display());
    let t = target().command().args(["--filter-func", target().drop_func(), "--", "sh", "-c", &script]).start()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !armed.exists() {
        ensure!(std::time::Instant::now() < deadline, "the command did not set its trap within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&armed);
    t.signal(libc::SIGTERM)?;
    let done = t.wait()?;
    assert_eq!(done.status.code(), Some(9), "the command's own status after its trap ran: {}", done.stderr);
    let s = summary(&done)?;
    assert_eq!((s.end, s.command.as_ref().and_then(|c| c.status)), (End::Signal, Some(9)));
    Ok(())
}

#[test]
fn the_commands_streams_are_its_own() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("skbtrace-ci-streams-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("trace.txt");
    let trace = trace.to_str().context("temp path")?;
    let cmd = ["sh", "-c", "echo out-line; echo err-line >&2; ls -l /proc/$$/fd"];
    let done = run(&["--filter-func", target().drop_func(), "--output-file", trace], &cmd)?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let mut out = done.stdout.lines();
    assert_eq!(out.next(), Some("out-line"), "{}", done.stdout);
    assert!(done.stderr.lines().any(|l| l == "err-line"), "{}", done.stderr);
    // Nothing of skbtrace's reaches the command: no BPF or perf descriptor.
    assert!(!done.stdout.contains("bpf") && !done.stdout.contains("perf_event"), "{}", done.stdout);
    let s = summary(&done)?;
    assert_eq!(s.detached, s.attached, "{s:?}");
    Ok(())
}

#[test]
fn under_sudo_the_command_runs_as_the_user() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let as_user = |extra: &[&str]| -> anyhow::Result<String> {
        let done = target()
            .command()
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .args(["--filter-func", target().drop_func()])
            .args(extra)
            .args(["--", "id", "-u"])
            .spawn()?
            .wait()?;
        ensure!(done.status.success(), "{}", done.stderr);
        // id's line. skbtrace's header shares the stream and may come
        // first: skbtrace flushes on a timer, which can beat a slow exec
        // (the 6.1 VM under TCG, the dist binary).
        let id = done.stdout.lines().find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        Ok(id.unwrap_or_default().to_owned())
    };
    assert_eq!(as_user(&[])?, "65534");
    assert_eq!(as_user(&["--cmd-as-root"])?, "0");
    Ok(())
}

#[test]
fn bad_command_lines_attach_nothing() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    for (args, code, says) in [
        (&["--"][..], 2, "must be followed by a command"),
        (&["--", "no-such-command-skbtrace"][..], 127, "command not found"),
        (&["--fail-on-drop=NOT_A_REASON", "--", "true"][..], 2, "--list-drop-reasons"),
        (&["--timeout", "abc", "--", "true"][..], 2, "not a duration"),
        (&["--grace", "1s"][..], 2, "applies to a command"),
    ] {
        let out = target().run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("skbtrace: attached"), "{args:?} attached something: {err}");
    }
    Ok(())
}
