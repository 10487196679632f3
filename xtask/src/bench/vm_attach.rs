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
        let mut lines = out.output.lines();
        while let Some(line) = lines.by_ref().find_map(|l| l.strip_prefix("BENCH attach ")) {
            let f: HashMap<&str, &str> = line.split(' ').filter_map(|kv| kv.split_once('=')).collect();
            let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let summary = lines
                .next()
                .and_then(|l| l.strip_prefix("BENCH summary "))
                .with_context(|| format!("no summary after BENCH attach {line}:\n{}", out.output))?;
            let summary = Summary::parse(summary).with_context(|| format!("the {kernel} VM's run of {line}"))?;
            let n = summary.attached as f64;
            let (attach, detach) = (summary.attach_seconds, summary.detach_seconds);
            table.row(vec![
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
