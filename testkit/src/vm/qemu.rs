//! Booting the VM in qemu and collecting its serial console.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::console::Markers;

/// How long qemu gets to exit after the end marker before it is killed; the
/// script's result is already known by then.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);

/// Kernel command line. `panic=-1` reboots at once on a panic, which
/// `-no-reboot` turns into qemu exiting; `oops=panic` makes an oops do the same
/// rather than leave the script hanging. `mitigations=off` saves page-table
/// switches that are slow under TCG.
const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 oops=panic mitigations=off";

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub timeout: Duration,
    /// Copy the script's output to stdout as it arrives.
    pub stream_output: bool,
}

/// The console of a finished (or killed) VM.
pub struct Console {
    /// Lines as printed, `\r` removed.
    pub log: String,
    pub qemu_stderr: String,
    pub exit: ExitStatus,
    /// qemu was killed because the timeout passed before the end marker.
    pub timed_out: bool,
    /// Time from starting qemu to the start marker: kernel boot plus /init's setup.
    pub boot_time: Option<Duration>,
    /// Time from starting qemu to the end marker.
    pub end_time: Option<Duration>,
}

pub fn boot(boot: &Boot, markers: &Markers) -> anyhow::Result<Console> {
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "2G", "-smp", "2"])
        .args(["-nographic", "-no-reboot"])
        // No NIC: tests use loopback and veth pairs, and the default NIC costs boot time.
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initrd)
        .args(["-append", KERNEL_ARGS])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64; install Debian package qemu-system-x86")?;

    let (lines_tx, lines) = mpsc::channel();
    let stdout = qemu.stdout.take().expect("stdout is piped");
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if lines_tx.send(text).is_err() {
                break;
            }
            line.clear();
        }
    });
    let mut stderr = qemu.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let end_prefix = markers.end_prefix();
    let (mut log, mut boot_time, mut end_time, mut killed) = (String::new(), None, None, false);
    let mut deadline = started + boot.timeout;
    loop {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            killed = kill(&mut qemu);
            break;
        };
        match lines.recv_timeout(wait) {
            Ok(line) => {
                if boot_time.is_none() {
                    if markers.is_start(&line) {
                        boot_time = Some(started.elapsed());
                    }
                } else if end_time.is_none() {
                    let output = match line.split_once(&end_prefix) {
                        Some((before, _)) => {
                            end_time = Some(started.elapsed());
                            deadline = deadline.min(Instant::now() + POWEROFF_GRACE);
                            before
                        }
                        None => &line,
                    };
                    if boot.stream_output {
                        print!("{output}");
                    }
                }
                log.push_str(&line);
            }
            // Stdout closed: qemu exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                killed = kill(&mut qemu);
                break;
            }
        }
    }
    let exit = qemu.wait().context("waiting for qemu-system-x86_64")?;
    Ok(Console {
        log,
        qemu_stderr: stderr_reader.join().unwrap_or_default(),
        exit,
        timed_out: killed && end_time.is_none(),
        boot_time,
        end_time,
    })
}

/// Kills qemu; false if it had already exited on its own.
fn kill(qemu: &mut Child) -> bool {
    matches!(qemu.try_wait(), Ok(None)) && qemu.kill().is_ok()
}
