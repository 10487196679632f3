//! Attach and detach of every discovered skb function in the test VM (TCG),
//! kprobes on Debian 6.1 and 6.12 and kprobe-multi on 6.12, next to pwru's
//! figures measured in the same VM. One boot per kernel runs
//! tests/vm/attach-bench.sh, which prints a `BENCH attach …` line and
//! skbtrace's run summary per backend.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, bail};
use testkit::{
    vm::{self, Kernel, VmOptions},
    workspace_root,
};

use super::markdown::Table;
use testkit::summary::{Backend, Summary};

pub fn measure(bin: &Path, header: &str) -> anyhow::Result<String> {
    let root = workspace_root();
    let mut table = Table::new(&[
        "kernel",
        "backend",
        "functions",
        "ready (s)",
        "attach (s)",
        "detach (s)",
        "stop (s)",
        "attach/s",
        "detach/s",
        "VmHWM (MiB)",
    ]);
    // Runs vary by up to a tenth under TCG: three of each.
    for (kernel, backends) in [
        (Kernel::V6_1, "kprobe kprobe kprobe"),
        (Kernel::V6_12, "kprobe-multi kprobe-multi kprobe-multi kprobe kprobe kprobe"),
    ] {
        let mut opts = VmOptions::new(kernel, bin, root.join("tests/vm/attach-bench.sh"));
        opts.args = backends.split(' ').map(str::to_owned).collect();
        opts.timeout = std::time::Duration::from_secs(1500);
        eprintln!("bench: attaching every skb function in the {kernel} VM ({backends})");
        let out = vm::run(&opts).with_context(|| format!("the {kernel} VM"))?;
        if !out.success() {
            bail!("attach-bench.sh failed in the {kernel} VM:\n{}", out.output);
        }
        for row in rows(kernel, &out.output).with_context(|| format!("in the {kernel} VM:\n{}", out.output))? {
            table.row(row);
        }
    }
    Ok(format!(
        "{header}\n\nqemu TCG, 2 vCPUs, 2 GiB; release build; expression `udp and port 9`; one row per run. *ready* is from \
         spawn to `--ready-file` (BTF, discovery, load and attach); *attach* and *detach* are skbtrace's own \
         `attach_seconds` and `detach_seconds` from its run summary; *stop* is from SIGINT to exit; the rates are from *attach* and *detach*. pwru 1.0.12 \
         in the same VM: ~55 s to attach ~1,400 kprobes one by one and as long to detach; ~10 s to be ready \
         with kprobe-multi, under 1 s to detach.\n\n{}",
        table.render()
    ))
}

/// One table row per backend run: attach-bench.sh's `BENCH attach` line (times
/// seen from outside) and the run summary that follows it.
fn rows(kernel: Kernel, output: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut lines = output.lines();
    while let Some(line) = lines.by_ref().find_map(|l| l.strip_prefix("BENCH attach ")) {
        let f: HashMap<&str, &str> = line.split(' ').filter_map(|kv| kv.split_once('=')).collect();
        if f.get("rc") != Some(&"0") {
            bail!("skbtrace failed: BENCH attach {line}");
        }
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let summary = lines
            .next()
            .and_then(|l| l.strip_prefix("BENCH summary "))
            .with_context(|| format!("no summary after BENCH attach {line}"))?;
        let summary = Summary::parse(summary).with_context(|| format!("the run of BENCH attach {line}"))?;
        let n = summary.attached as f64;
        let (attach, detach) = (summary.attach_seconds, summary.detach_seconds);
        rows.push(vec![
            kernel.to_string(),
            summary.backend.map_or("none", Backend::name).to_owned(),
            format!("{n:.0}"),
            format!("{:.1}", num("attach_s")),
            format!("{attach:.1}"),
            format!("{detach:.1}"),
            format!("{:.1}", num("detach_s")),
            format!("{:.0}", n / attach.max(0.001)),
            format!("{:.0}", n / detach.max(0.001)),
            format!("{:.1}", num("rss_kib") / 1024.0),
        ]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What attach-bench.sh printed in the 6.12 VM.
    const OUTPUT: &str = concat!(
        "BENCH attach backend=kprobe-multi attach_s=2.1 detach_s=1.7 rss_kib=37932 rc=0\n",
        r#"BENCH summary {"summary":{"events":0,"lost":0,"lost_by_probe":[],"drops":[],"backend":"kprobe-multi","#,
        r#""attached":1607,"skipped":0,"attach_seconds":0.131093915,"detached":1,"detach_seconds":0.157406874,"#,
        r#""end":"signal","command":null,"assertions":[],"exit_code":0,"verdicts":[],"stories_evicted":0}}"#,
        "\nskbtrace: attaching kprobe-multi: 1607 targets\nskbtrace: 0 events\n",
    );

    #[test]
    fn a_row_per_run_from_the_summary() {
        let rows = rows(Kernel::V6_12, OUTPUT).unwrap();
        assert_eq!(rows, [["6.12", "kprobe-multi", "1607", "2.1", "0.1", "0.2", "1.7", "12258", "10209", "37.0"]]);
    }

    #[test]
    fn a_failed_run_or_a_missing_summary_is_an_error() {
        assert!(rows(Kernel::V6_12, &OUTPUT.replace("rc=0", "rc=1")).is_err());
        assert!(rows(Kernel::V6_12, &OUTPUT.replace("BENCH summary", "BENCH")).is_err());
    }
}
