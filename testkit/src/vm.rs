//! Runs a test script inside a qemu VM booted with a Debian cloud kernel.
//!
//! This is where kprobe tests run: the development machine's kernel has no
//! kprobes. The VM boots under TCG from a busybox initramfs holding skbtrace,
//! the test files, ip, iptables and the kernel modules the scenarios need. Its
//! /init runs the script between two markers on the serial console, which is
//! how the script's output and exit status come back.
//!
//! Layout under the work dir (`target/vm/`):
//! - `<kernel>/`: the downloaded package, its extracted tree, decompressed modules;
//! - `tools.cpio`: busybox, ip, iptables and their libraries, rebuilt when they change;
//! - `runs/<kernel>-<nonce>/`: one run's initrd and console.log, kept only if it failed.

mod console;
mod cpio;
mod init;
mod initramfs;
mod kernel;
mod modules;
mod qemu;

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow};

pub use kernel::Kernel;

use console::{Markers, Progress};
use initramfs::GUEST_TEST_DIR;

pub struct VmOptions {
    pub kernel: Kernel,
    /// The skbtrace binary; the VM has it at /usr/local/bin/skbtrace, on PATH.
    pub skbtrace: PathBuf,
    /// A host script, run as `sh /test/<its name> <args>` with /test as working directory.
    pub script: PathBuf,
    pub args: Vec<String>,
    /// Host files or directories copied to `/test/<their name>`; ELF files bring
    /// their shared libraries along.
    pub copy: Vec<PathBuf>,
    /// Modules to load besides the scenario set (veth, bridge, conntrack, NAT,
    /// iptables filter and REJECT), e.g. `nf_tables`.
    pub modules: Vec<String>,
    /// For the whole run: boot, script and power-off.
    pub timeout: Duration,
    /// Usually `target/vm`; kernels and the tools archive are cached here.
    pub work_dir: PathBuf,
    /// Copy the script's output to stdout while it runs (for `cargo xtask vm`);
    /// boot messages stay out, they are in the outcome's console log.
    pub stream_output: bool,
}

impl VmOptions {
    /// Options for running `script` with no arguments: nothing else copied in,
    /// the scenario modules only, a 5-minute timeout (TCG on a busy host is
    /// slow), and the cache in the workspace's `target/vm`.
    pub fn new(kernel: Kernel, skbtrace: impl Into<PathBuf>, script: impl Into<PathBuf>) -> Self {
        VmOptions {
            kernel,
            skbtrace: skbtrace.into(),
            script: script.into(),
            args: Vec::new(),
            copy: Vec::new(),
            modules: Vec::new(),
            timeout: Duration::from_secs(300),
            work_dir: crate::workspace_root().join("target").join("vm"),
            stream_output: false,
        }
    }
}

#[derive(Debug)]
pub struct VmOutcome {
    /// The script's stdout and stderr, interleaved as printed on the console.
    pub output: String,
    /// The script's exit status.
    pub status: i32,
    /// The whole serial console, for diagnostics.
    pub console: String,
    /// The guest's `uname -r`.
    pub release: String,
    /// From starting qemu to the script starting: kernel boot plus /init's setup.
    pub boot_time: Duration,
    pub script_time: Duration,
}

impl VmOutcome {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Boots the VM, runs the script, and returns what it printed and its status.
///
/// A script that fails is an `Ok` with a nonzero status. An error means the VM
/// itself failed: it panicked, passed the timeout, or exited without the end
/// marker; the error carries the console's tail and the saved console log.
pub fn run(opts: &VmOptions) -> anyhow::Result<VmOutcome> {
    fs::create_dir_all(&opts.work_dir).with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let image = kernel::fetch(opts.kernel, &opts.work_dir)
        .with_context(|| format!("fetching Debian's {} cloud kernel", opts.kernel))?;
    let wanted: Vec<String> = modules::SCENARIO_MODULES
        .iter()
        .map(|m| m.to_string())
        .chain(opts.modules.iter().map(|m| m.replace('-', "_")))
        .collect();
    let modules =
        modules::prepare(&image, &wanted).with_context(|| format!("preparing modules of kernel {}", image.release))?;
    let tools = initramfs::tools_archive(&opts.work_dir).context("building the VM's tools archive")?;

    let markers = Markers::new();
    let run_dir = opts.work_dir.join("runs").join(format!("{}-{}", opts.kernel, markers.nonce()));
    fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let script_name =
        opts.script.file_name().with_context(|| format!("script {} has no file name", opts.script.display()))?;
    let script = format!("{GUEST_TEST_DIR}/{}", script_name.to_string_lossy());
    let init = init::InitScript { markers: &markers, modules: &modules, script: &script, args: &opts.args };
    let run_archive = initramfs::run_archive(&initramfs::RunFiles {
        init: init.render(),
        release: &image.release,
        modules: &modules,
        skbtrace: &opts.skbtrace,
        script: &opts.script,
        copy: &opts.copy,
    })?;
    let initrd = run_dir.join("initrd");
    initramfs::write_initrd(&tools, &run_archive, &initrd)?;

    let console = qemu::boot(
        &qemu::Boot {
            vmlinuz: &image.vmlinuz,
            initrd: &initrd,
            timeout: opts.timeout,
            stream_output: opts.stream_output,
        },
        &markers,
    )?;
    let console_path = run_dir.join("console.log");
    fs::write(&console_path, &console.log).with_context(|| format!("writing {}", console_path.display()))?;

    let Progress::Finished(script_run) = console::progress(&console.log, &markers) else {
        return Err(vm_failure(opts, &console, &markers, &console_path));
    };
    // The outcome carries the console; the run's files are only kept for failures.
    let _ = fs::remove_dir_all(&run_dir);
    let boot_time = console.boot_time.unwrap_or_default();
    Ok(VmOutcome {
        output: script_run.output,
        status: script_run.status,
        release: image.release,
        boot_time,
        script_time: console.end_time.unwrap_or_default().saturating_sub(boot_time),
        console: console.log,
    })
}

/// Explains why the VM gave no result: what happened, how far it got, and the
/// console's last lines.
fn vm_failure(
    opts: &VmOptions,
    console: &qemu::Console,
    markers: &Markers,
    console_path: &std::path::Path,
) -> anyhow::Error {
    let what = if console.timed_out {
        format!("did not finish within {:?}; qemu was killed", opts.timeout)
    } else if let Some(panic) = console.log.lines().find(|line| line.contains("Kernel panic")) {
        format!("kernel panicked ({})", panic.trim())
    } else {
        format!("qemu exited ({}) without the script's end marker", console.exit)
    };
    let stage = match console::progress(&console.log, markers) {
        Progress::Booting => "before /init started the script (booting or loading modules)",
        _ => "while the script was running",
    };
    let stderr = console.qemu_stderr.trim();
    let stderr = if stderr.is_empty() { String::new() } else { format!("\nqemu stderr:\n{stderr}") };
    anyhow!(
        "VM with kernel {} {what}, {stage}.{stderr}\nconsole tail (full log in {}):\n{}",
        opts.kernel,
        console_path.display(),
        console::tail(&console.log, 40)
    )
}
