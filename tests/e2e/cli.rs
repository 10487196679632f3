//! Flags, usage errors and privileges.

use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};
use testkit::{
    ci::require_root,
    summary::{End, Summary},
};

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

/// A `--kernel-btf` file that is not there is the user's mistake on the
/// command line, as a missing `--filter-netns` or `--output-pcap` path is:
/// exit 2 (usage error, nothing attached), naming the file.
#[test]
fn kernel_btf_missing_file_is_a_usage_error() {
    if !require_root() {
        return;
    }
    let missing = "/nonexistent/skbtrace-btf/vmlinux";
    let out = skbtrace::run(&["--kernel-btf", missing, "--filter-func", "kfree_skb", "--duration", "20s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(missing), "the message does not name {missing}: {err}");
    assert!(!err.contains("attached") && !err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(2), "a missing --kernel-btf file is a usage error: {err}");
}

/// The GitHub Actions example in README.md, run as written but for the
/// artifact's path (this build), `sudo` (root already) and `cargo test`
/// (`true`): it must parse, exit 0, and write the files its upload step names.
#[test]
fn readme_github_actions_example_runs() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let readme = std::fs::read_to_string(testkit::workspace_root().join("README.md"))?;
    let example = readme_ci_command(&readme)?;
    let bin = skbtrace::bin();
    let command = example
        .strip_prefix("sudo ")
        .context("the example no longer starts with sudo")?
        .replace("skbtrace/skbtrace", &bin.to_string_lossy());
    let command = command.strip_suffix("-- cargo test").context("the example no longer ends with -- cargo test")?;
    let command = format!("{command}-- true");

    let dir = std::env::temp_dir().join(format!("skbtrace-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = Command::new("sh").arg("-c").arg(&command).current_dir(&dir).stdin(Stdio::null()).output();
    let written = |flag: &str| -> anyhow::Result<String> {
        let name = flag_value(&command, flag).with_context(|| format!("the example has no {flag}"))?;
        std::fs::read_to_string(dir.join(&name)).with_context(|| format!("{flag} {name} was not written"))
    };
    let files = (written("--summary-file"), written("--output-file"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.context("running sh")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "the README's example exited {}: {command}\n{err}", out.status);
    let (summary, trace) = (files.0?, files.1?);
    let summary = Summary::parse(&summary)?;
    ensure!(summary.exit_code == 0 && summary.end == End::Command, "{summary:?}");
    // --output-json's last line is the summary too.
    ensure!(Summary::parse(trace.lines().last().unwrap_or(""))? == summary, "{trace}");
    // The upload step's pattern takes both files.
    let pattern = readme
        .lines()
        .skip_while(|l| !l.contains("actions/upload-artifact"))
        .find_map(|l| l.trim().strip_prefix("path: "))
        .context("no path in the README's upload-artifact step")?;
    for flag in ["--summary-file", "--output-file"] {
        let name = flag_value(&command, flag).unwrap_or_default();
        ensure!(glob(pattern, &name), "the upload step's {pattern} does not take {flag} {name}");
    }
    Ok(())
}

/// The command line that runs skbtrace in the README's `run: |` block,
/// continuation lines joined.
fn readme_ci_command(readme: &str) -> anyhow::Result<String> {
    let mut lines = readme.lines().skip_while(|l| l.trim() != "run: |").skip(1);
    let mut command = String::new();
    for line in lines.by_ref() {
        let line = line.trim();
        if !command.is_empty() || line.contains("skbtrace/skbtrace --") {
            match line.strip_suffix('\\') {
                Some(part) => command.push_str(part),
                None => {
                    command.push_str(line);
                    return Ok(command);
                }
            }
        }
        ensure!(!line.starts_with("- "), "no skbtrace command in the README's run: | block");
    }
    anyhow::bail!("no `run: |` block calling skbtrace/skbtrace in README.md")
}

/// Whether `name` matches `pattern`, whose only wildcard is `*`.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => name.starts_with(head) && (head.len()..=name.len()).any(|i| glob(rest, &name[i..])),
    }
}

/// The word after `flag` in a shell command line without quoting around it.
fn flag_value(command: &str, flag: &str) -> Option<String> {
    let mut words = command.split_whitespace();
    words.find(|w| *w == flag)?;
    words.next().map(str::to_owned)
}

#[test]
fn glob_matches_as_the_upload_step_does() {
    assert!(glob("skbtrace*.json*", "skbtrace-summary.json"));
    assert!(glob("skbtrace*.json*", "skbtrace.jsonl"));
    assert!(!glob("skbtrace*.json*", "skbtrace.txt"));
    assert!(!glob("skbtrace*.json*", "trace.json"));
}

/// `--help` says what each `--timestamp` mode prints, with pwru's meanings
/// (and skbtrace's output): `current` the kernel's ns, `relative` per skb,
/// `absolute` the local date and time.
#[test]
fn help_describes_timestamp_modes_as_they_print() {
    let out = skbtrace::run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let says = |mode: &str| -> String {
        let prefix = format!("- {mode}:");
        help.lines().find_map(|l| l.trim().strip_prefix(&prefix)).map(|d| d.trim().to_lowercase()).unwrap_or_default()
    };
    let (current, relative, absolute) = (says("current"), says("relative"), says("absolute"));
    assert!(current.contains("kernel") && !current.contains("wall"), "--timestamp current: {current:?}");
    assert!(relative.contains("skb"), "--timestamp relative is per skb: {relative:?}");
    assert!(absolute.contains("local") || absolute.contains("date"), "--timestamp absolute: {absolute:?}");
}
