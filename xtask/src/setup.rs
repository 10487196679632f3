//! `cargo xtask setup`: everything a fresh machine needs to build and test
//! skbtrace. Idempotent, and quick when all is there: each step first checks,
//! and only acts when something is missing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Debian packages the build and the tests need.
pub const APT_PACKAGES: &[&str] = &[
    "libpcap-dev",     // the pcap crate links libpcap
    "qemu-system-x86", // the kprobe test VM
    "busybox",         // the VM's userland (the dynamic one, not busybox-static)
    "cpio",
    "iproute2",
    "iptables",
    "nftables", // nft in the VM: the --nft-trace scenario's rules, and the rules' text
    "tshark",   // reads skbtrace's pcap-ng in tests
    "xz-utils", // kernel modules in Debian's packages are compressed
    "zstd",
];

/// What `cargo xtask dist` needs besides [`APT_PACKAGES`]: building libpcap
/// from Debian's source package (`apt-get source` unpacks with dpkg-dev)
/// and linking skbtrace against glibc statically.
pub const DIST_APT_PACKAGES: &[&str] = &[
    "dpkg-dev",
    "gcc",
    "make",
    "flex",      // libpcap's filter scanner
    "bison",     // and parser
    "libc6-dev", // libc.a
];

pub fn run() -> anyhow::Result<()> {
    step("Debian packages", || apt_packages(APT_PACKAGES))?;
    step("nightly toolchain with rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    Ok(())
}

/// The extra steps of `cargo xtask dist`, after [`run`].
pub fn dist() -> anyhow::Result<()> {
    step("Debian packages for dist", || apt_packages(DIST_APT_PACKAGES))
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    f().with_context(|| format!("setup step '{name}' failed"))
}

fn missing_packages(packages: &[&'static str]) -> anyhow::Result<Vec<&'static str>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\n"])
        .args(packages)
        .output()
        .context("running dpkg-query (is this a Debian system?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(packages.iter().copied().filter(|p| !text.lines().any(|l| l == format!("{p} installed"))).collect())
}

fn apt_packages(packages: &[&'static str]) -> anyhow::Result<()> {
    let missing = missing_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let sudo = sudo_prefix();
    run_cmd(Command::new(&sudo[0]).args(&sudo[1..]).args(["apt-get", "update", "-q"]))
        .context("apt-get update failed: check the network and /etc/apt/sources.list")?;
    run_cmd(
        Command::new(&sudo[0])
            .args(&sudo[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("apt-get install {} failed", missing.join(" ")))
}

/// Runs root-only commands directly as root, else through sudo.
fn sudo_prefix() -> Vec<String> {
    if testkit::ci::is_root() { vec!["env".into()] } else { vec!["sudo".into()] }
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running rustc +nightly (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is not installed; run `rustup toolchain install nightly --profile minimal`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rust_src() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("rustup component add rust-src failed")
}

/// The LLVM major version of the nightly toolchain, from `rustc +nightly -vV`.
fn nightly_llvm_major() -> anyhow::Result<u32> {
    let out = Command::new("rustc").args(["+nightly", "-vV"]).output().context("running rustc +nightly -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .context("rustc +nightly -vV printed no LLVM version")
}

fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

fn bpf_linker() -> anyhow::Result<()> {
    // bpf-linker loads the nightly toolchain's libLLVM, which `rustup run`
    // puts on the library path (aya-build runs it the same way).
    let installed = cargo_bin().join("bpf-linker");
    if let Ok(out) = Command::new("rustup").args(["run", "nightly"]).arg(&installed).arg("--version").output()
        && String::from_utf8_lossy(&out.stdout).contains("0.13")
    {
        return Ok(());
    }
    // bpf-linker must use the same LLVM as the nightly rustc that emits the
    // bitcode: point it at the toolchain's own libLLVM.
    let sysroot = nightly_sysroot()?;
    let major = nightly_llvm_major()?;
    let lib = std::fs::read_dir(sysroot.join("lib"))
        .context("listing the nightly toolchain's lib directory")?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so.")))
        .context("the nightly toolchain has no libLLVM.so.*; reinstall it with `rustup toolchain install nightly`")?;
    let prefix = testkit::workspace_root().join("target/llvm-prefix");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    eprintln!("xtask: building bpf-linker against LLVM {major} (about 90 s)");
    run_cmd(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", "^0.13", "--locked", "--no-default-features"])
            .args(["--features", &format!("llvm-{major}")]),
    )
    .context("cargo install bpf-linker failed")
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
