//! Reading the script's output and exit status out of the VM's serial console.
//!
//! /init prints a start marker before the script and an end marker with its
//! exit status after it. Both carry a nonce made for this run, so that nothing
//! the script prints (a previous run's console log, say) can pass for them.

use std::{
    hash::{BuildHasher as _, Hasher as _},
    time::SystemTime,
};

pub struct Markers {
    nonce: String,
}

impl Markers {
    pub fn new() -> Self {
        // RandomState is seeded from the OS's randomness; mixing in the time and
        // pid keeps two markers from one process distinct.
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
        hasher.write_u32(std::process::id());
        Markers { nonce: format!("{:016x}", hasher.finish()) }
    }

    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    pub fn start(&self) -> String {
        format!("SKBTRACE-VM-START {}", self.nonce)
    }

    /// The firmware's terminal resets (`ESC c`, clear screen) can precede the
    /// start marker on its line, so only the line's end must match.
    pub fn is_start(&self, line: &str) -> bool {
        line.trim_end().ends_with(&self.start())
    }

    /// Followed by the script's exit status, e.g. `SKBTRACE-VM-END 1f2e... rc=0`.
    pub fn end_prefix(&self) -> String {
        format!("SKBTRACE-VM-END {} rc=", self.nonce)
    }
}

/// What the script printed and how it exited.
#[derive(Debug, PartialEq, Eq)]
pub struct ScriptRun {
    pub output: String,
    pub status: i32,
}

/// Where the console stands relative to the markers.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The kernel is booting or /init is setting up.
    Booting,
    /// The script is running; holds its output so far.
    Running(String),
    Finished(ScriptRun),
}

/// Reads the markers out of a console log (lines ending in `\n`, the serial
/// line's `\r` already removed).
pub fn progress(console: &str, markers: &Markers) -> Progress {
    let Some(start_at) = console.lines().position(|line| markers.is_start(line)) else {
        return Progress::Booting;
    };
    let end_prefix = markers.end_prefix();
    let mut output = String::new();
    for line in console.lines().skip(start_at + 1) {
        // A script whose last line lacks a newline leaves it in front of the marker.
        if let Some((before, after)) = line.split_once(&end_prefix) {
            output.push_str(before);
            if let Ok(status) = after.trim().parse() {
                return Progress::Finished(ScriptRun { output, status });
            }
            return Progress::Running(output);
        }
        output.push_str(line);
        output.push('\n');
    }
    Progress::Running(output)
}

/// The last `lines` lines of the console, for error messages.
pub fn tail(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_differ_per_run() {
        assert_ne!(Markers::new().nonce(), Markers::new().nonce());
    }

    #[test]
    fn finds_output_between_markers() {
        let markers = Markers::new();
        let console = format!(
            "[    0.000000] Linux version 6.1\ninit noise\n\x1bc\x1b[2J{}\nline 1\nSKBTRACE-VM-END fake rc=0\nno newline{}3\nreboot: Power down\n",
            markers.start(),
            markers.end_prefix()
        );
        assert_eq!(
            progress(&console, &markers),
            Progress::Finished(ScriptRun {
                output: "line 1\nSKBTRACE-VM-END fake rc=0\nno newline".to_owned(),
                status: 3
            })
        );
    }

    #[test]
    fn reports_booting_and_running() {
        let markers = Markers::new();
        assert_eq!(progress("[ 0.1] booting\n", &markers), Progress::Booting);
        let running = format!("{}\nstep 1\n", markers.start());
        assert_eq!(progress(&running, &markers), Progress::Running("step 1\n".to_owned()));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\n", 5), "a");
    }
}
