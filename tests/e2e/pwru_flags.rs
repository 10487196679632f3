//! Every flag of pwru 1.0.12 (`internal/pwru/types.go` `SetFlags`; `main.go`
//! registers none of its own), with what skbtrace does with it. A pwru user's
//! command line must either work or be refused with a message that says what
//! to use instead or why not: never clap's bare "unexpected argument".
//!
//! The README's "Coming from pwru" table says the same in prose; keep the two together.

use std::path::PathBuf;

use crate::skbtrace as cmd;

/// What skbtrace does with a pwru flag.
#[derive(Clone, Copy, Debug)]
pub enum Status {
    /// Accepted, with pwru's meaning.
    Same,
    /// Refused (exit 2) with a message naming skbtrace's spelling.
    #[expect(dead_code, reason = "every pwru flag skbtrace has is spelled as pwru spells it, so far")]
    Equivalent(&'static str),
    /// Refused (exit 2) with a message naming the flag and saying why.
    NotYet(&'static str),
}

use Status::{NotYet, Same};

pub struct PwruFlag {
    /// As a pwru user types it.
    pub flag: &'static str,
    /// An example value pwru accepts: a separate argument, or `=value`
    /// glued to the flag. `{tmp}` is a fresh temporary directory.
    pub value: Option<&'static str>,
    pub status: Status,
}

const fn flag(flag: &'static str, value: Option<&'static str>, status: Status) -> PwruFlag {
    PwruFlag { flag, value, status }
}

const LATER_FENTRY: &str = "tracing tc and XDP BPF programs (fentry/fexit) and the helpers they call is a later step";

/// In the order of `SetFlags`. Boolean flags take `--flag=false` too, as in
/// pwru (pflag); that is the only way to turn off `--output-meta` and
/// `--output-tuple`, whose default is on.
pub const PWRU_FLAGS: &[PwruFlag] = &[
    flag("--help", None, Same),
    flag("-h", None, Same),
    flag("--version", None, Same),
    flag("--kernel-btf", Some("/sys/kernel/btf/vmlinux"), Same),
    flag("--kmods", Some("nf_conntrack"), Same),
    flag("--all-kmods", None, Same),
    flag("--filter-func", Some("kfree_skb.*"), Same),
    flag(
        "--filter-non-skb-funcs",
        Some("fib_table_lookup"),
        NotYet("needs attributing non-skb functions to a packet by stack (pwru's --filter-track-skb-by-stackid)"),
    ),
    flag("--filter-netns", Some("/proc/self/ns/net"), Same),
    flag("--filter-mark", Some("0xa00/0xf00"), Same),
    flag("--filter-track-skb", None, Same),
    flag(
        "--filter-track-skb-by-stackid",
        None,
        NotYet("following an skb across re-allocation by its stack frame is not implemented"),
    ),
    flag("--filter-trace-tc", None, NotYet(LATER_FENTRY)),
    flag("--filter-tunnel-pcap-l2", Some("host 10.0.0.1"), Same),
    flag("--filter-tunnel-pcap-l3", Some("host 10.0.0.1"), Same),
    flag("--filter-trace-xdp", None, NotYet(LATER_FENTRY)),
    flag("--filter-track-bpf-helpers", None, NotYet(LATER_FENTRY)),
    flag("--filter-ifname", Some("lo"), Same),
    flag(
        "--filter-kprobe-batch",
        Some("10"),
        NotYet("skbtrace attaches in parallel and sizes its batches itself; there is no knob"),
    ),
    flag("--filter-skb-expr", Some("skb->mark == 1"), Same),
    flag("--filter-xdp-expr", Some("xdp->rxq->dev->ifindex == 1"), NotYet(LATER_FENTRY)),
    flag("--timestamp", Some("absolute"), Same),
    flag("--output-meta", None, Same),
    flag("--output-meta", Some("=false"), Same),
    flag("--output-netns-names", None, Same),
    flag("--netns-names-max-length", Some("20"), Same),
    flag("--output-tuple", None, Same),
    flag("--output-tuple", Some("=false"), Same),
    flag("--output-skb", None, Same),
    flag("--output-skb-shared-info", None, Same),
    flag("--output-tunnel", None, Same),
    flag("--output-stack", None, Same),
    flag("--output-bpfmap", None, NotYet("BPF map helper arguments come with BPF helper tracing, a later step")),
    flag("--output-caller", None, Same),
    flag("--output-limit-lines", Some("1"), Same),
    flag("--output-skb-cb", None, Same),
    flag("--output-tcp-flags", None, Same),
    flag("--output-skb-metadata", Some("skb->hash"), Same),
    flag("--output-xdp-metadata", Some("xdp->rxq->queue_index"), NotYet(LATER_FENTRY)),
    flag("--output-file", Some("{tmp}/trace.log"), Same),
    flag("--output-file-max-size", Some("10"), Same),
    flag("--output-file-max-backups", Some("3"), Same),
    flag("--output-file-max-age", Some("7"), Same),
    flag("--output-file-compress", None, Same),
    flag("--output-json", None, Same),
    flag("--ready-file", Some("{tmp}/ready"), Same),
    flag("--backend", Some("kprobe-multi"), Same),
    flag("--set-percpu-buf", Some("8192"), Same),
    flag("--debug", None, Same),
];

/// Every flag name `pflag` registers in pwru 1.0.12's `SetFlags`, `-h` aside.
const PWRU_1_0_12_NAMES: [&str; 46] = [
    "help",
    "version",
    "kernel-btf",
    "kmods",
    "all-kmods",
    "filter-func",
    "filter-non-skb-funcs",
    "filter-netns",
    "filter-mark",
    "filter-track-skb",
    "filter-track-skb-by-stackid",
    "filter-trace-tc",
    "filter-tunnel-pcap-l2",
    "filter-tunnel-pcap-l3",
    "filter-trace-xdp",
    "filter-track-bpf-helpers",
    "filter-ifname",
    "filter-kprobe-batch",
    "filter-skb-expr",
    "filter-xdp-expr",
    "timestamp",
    "output-meta",
    "output-netns-names",
    "netns-names-max-length",
    "output-tuple",
    "output-skb",
    "output-skb-shared-info",
    "output-tunnel",
    "output-stack",
    "output-bpfmap",
    "output-caller",
    "output-limit-lines",
    "output-skb-cb",
    "output-tcp-flags",
    "output-skb-metadata",
    "output-xdp-metadata",
    "output-file",
    "output-file-max-size",
    "output-file-max-backups",
    "output-file-max-age",
    "output-file-compress",
    "output-json",
    "ready-file",
    "backend",
    "set-percpu-buf",
    "debug",
];

impl PwruFlag {
    fn args(&self, tmp: &std::path::Path) -> Vec<String> {
        let value = self.value.map(|v| v.replace("{tmp}", &tmp.display().to_string()));
        match value {
            None => vec![self.flag.to_owned()],
            Some(v) if v.starts_with('=') => vec![format!("{}{v}", self.flag)],
            Some(v) => vec![self.flag.to_owned(), v],
        }
    }

    /// Whether the flag makes skbtrace print something and exit by itself.
    fn exits_alone(&self) -> bool {
        matches!(self.flag, "--help" | "-h" | "--version")
    }
}

#[test]
fn the_table_has_every_pwru_flag_once() {
    let mut names: Vec<&str> =
        PWRU_FLAGS.iter().map(|f| f.flag.trim_start_matches('-')).filter(|n| *n != "h").collect();
    names.dedup();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "a flag is listed twice, apart from its =false row");
    let mut want = PWRU_1_0_12_NAMES.to_vec();
    want.sort_unstable();
    assert_eq!(sorted, want, "the table and pwru 1.0.12's flags differ");
}

/// Runs skbtrace with each pwru flag, alongside `--list-funcs` so that
/// nothing is attached, and checks what the table says. Collects every
/// mismatch before failing, so one run lists them all.
#[test]
fn pwru_command_lines_work_or_say_why_not() {
    let tmp = std::env::temp_dir().join(format!("skbtrace-pwru-flags-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("creating a temp dir");
    let _cleanup = RemoveDir(tmp.clone());

    let mut failures = Vec::new();
    for f in PWRU_FLAGS {
        let mut args = f.args(&tmp);
        if !f.exits_alone() {
            args.push("--list-funcs".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cmd::run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let first_line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let shown = format!("skbtrace {}: exit {code:?}: {first_line}", args.join(" "));
        if err.contains("panicked") || code.is_none() {
            failures.push(format!("crashed: {shown}"));
            continue;
        }
        // clap's words for a flag or value it does not know.
        let unknown = ["unexpected argument", "unexpected value", "invalid value", "unrecognized"]
            .iter()
            .any(|usage| err.contains(usage));
        match f.status {
            Same if f.exits_alone() && code != Some(0) => failures.push(format!("should exit 0: {shown}")),
            Same if code == Some(2) && unknown => {
                failures.push(format!("refused, but pwru's meaning is supported: {shown}"))
            }
            Same => {}
            Status::Equivalent(ours) if code != Some(2) || !err.contains(ours) => {
                failures.push(format!("should exit 2 naming {ours}: {shown}"))
            }
            NotYet(why) if code != Some(2) || unknown || !err.contains(f.flag) => {
                failures.push(format!("should exit 2, name {} and say why ({why}): {shown}", f.flag))
            }
            Status::Equivalent(_) | NotYet(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} pwru flags:\n{}", failures.len(), PWRU_FLAGS.len(), failures.join("\n"));
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
