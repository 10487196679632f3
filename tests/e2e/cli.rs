//! Flags, usage errors and privileges.

use testkit::ci::require_root;

use crate::skbtrace;

#[test]
fn version_and_help() {
    let out = skbtrace::run(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("skbtrace "));
    let out = skbtrace::run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--filter-func", "--output-json", "--backend", "--filter-track-skb", "--output-pcap"] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn unknown_flag_prints_usage_and_exits_2() {
    let out = skbtrace::run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Usage:"), "no usage in: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_values_exit_2_and_name_the_value() {
    for (args, needle) in [
        (vec!["--filter-func", "(unclosed"], "(unclosed"),
        (vec!["--filter-mark", "zz"], "zz"),
        (vec!["--filter-netns", "/nonexistent/ns"], "/nonexistent/ns"),
        (vec!["--filter-ifname", "nosuchif0"], "nosuchif0"),
        (vec!["--output-pcap", "/nonexistent/dir/x.pcapng"], "/nonexistent/dir/x.pcapng"),
    ] {
        let out = skbtrace::run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: message does not name {needle}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn filter_func_matching_nothing_exits_2() {
    if !require_root() {
        return;
    }
    let out = skbtrace::run(&["--filter-func", "no_such_function_xyz"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("matches no"), "{err}");
}

#[test]
fn without_privileges_names_missing_capabilities() {
    if !require_root() {
        return;
    }
    // Drop to nobody with no capabilities, as an unprivileged user would run it.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(skbtrace::bin())
        .arg("udp")
        .output()
        .expect("running setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON"), "{err}");
}

#[test]
fn kprobe_backend_without_kprobes_fails_clearly() {
    if !require_root() {
        return;
    }
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        eprintln!("this kernel has kprobes; nothing to check");
        return;
    }
    for backend in ["kprobe", "kprobe-multi"] {
        let out = skbtrace::run(&["--backend", backend]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot attach kprobes") && err.contains("--backend tracepoint"), "{err}");
        assert!(!err.contains("panicked"));
    }
}
