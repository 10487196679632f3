//! The scenarios inside VMs booting Debian's 6.1 and 6.12 cloud kernels
//! (this host's kernel has no kprobes), as aya runs its integration tests:
//! this very test binary is copied into the VM and runs `scenarios::` there
//! (tests/vm/e2e.sh), expecting kprobes on 6.1 and kprobe-multi on 6.12.
//! The skbtrace there is the one users install: the static binary of
//! `cargo xtask dist` (`dist.rs`), with no library copied next to it; the
//! guest prints its checksum, which must be the dist folder's.

use std::{path::Path, process::Command, sync::Mutex, time::Duration};

use anyhow::{Context as _, ensure};
use testkit::{
    ci::require_root,
    summary::Backend,
    vm::{self, Kernel, VmOptions},
};

use crate::{dist, skbtrace};

/// Two TCG VMs on two cores are slower than one after the other.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The module whose tests run in the VM.
const SCENARIOS: &str = "scenarios::";

/// The scenario tests this binary has, by name.
fn scenario_names(binary: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(binary).args(["--list", "--format", "terse", SCENARIOS]).output()?;
    ensure!(out.status.success(), "{} --list failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect();
    ensure!(!names.is_empty(), "no {SCENARIOS} tests in {}", binary.display());
    Ok(names)
}

fn scenarios_in_vm(kernel: Kernel, backend: Backend) -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let binary = std::env::current_exe().context("finding the test binary")?;
    let names = scenario_names(&binary)?;
    let binary_name = binary.file_name().context("the test binary has no name")?.to_string_lossy().into_owned();
    let (dist_bin, dist_sum) = dist::static_binary();
    let mut opts = VmOptions::new(kernel, dist_bin, testkit::workspace_root().join("tests/vm/e2e.sh"));
    opts.args = vec![backend.to_string(), binary_name, SCENARIOS.to_owned()];
    opts.copy = vec![binary, skbtrace::udpsend()];
    // For the overlay scenarios (output_tunnel_shows_and_filters_the_*_inner_tuple).
    opts.modules = vec!["vxlan".to_owned(), "geneve".to_owned()];
    // For explain's asymmetric NAT verdict, which reads the table over ctnetlink.
    opts.modules.push("nf_conntrack_netlink".to_owned());
    opts.timeout = Duration::from_secs(1800);
    let out = vm::run(&opts).with_context(|| format!("the {kernel} VM failed"))?;

    // libtest prints `test NAME ... ok` for each test that passed.
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !out.output.lines().any(|l| l.trim_end() == format!("test {name} ... ok")))
        .collect();
    // e2e.sh's first line: `sha256sum /usr/local/bin/skbtrace`.
    let ran = format!("{dist_sum}  /usr/local/bin/skbtrace");
    ensure!(
        out.output.lines().any(|l| l.trim_end() == ran),
        "the VM did not run the dist binary ({dist_sum}):\n{}",
        out.output
    );
    ensure!(
        out.success() && missing.is_empty(),
        "the scenarios failed in the {kernel} VM (exit status {}; did not pass: {missing:?}):\n{}",
        out.status,
        out.output
    );
    eprintln!(
        "{kernel}: booted in {:.1?}, {} scenarios passed on {backend} in {:.1?}",
        out.boot_time,
        names.len(),
        out.script_time
    );
    Ok(())
}

#[test]
fn kprobes_on_debian_6_1() -> anyhow::Result<()> {
    scenarios_in_vm(Kernel::V6_1, Backend::Kprobe)
}

#[test]
fn kprobe_multi_on_debian_6_12() -> anyhow::Result<()> {
    scenarios_in_vm(Kernel::V6_12, Backend::KprobeMulti)
}
