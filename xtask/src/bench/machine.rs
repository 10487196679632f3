//! Where and when a benchmark ran: the line under each BENCHMARKS.md heading.

use std::{path::Path, process::Command, time::SystemTime};

/// Facts about the run that a reader needs to compare numbers.
pub struct Machine {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub revision: String,
    /// 1-minute load average when the benchmark started: other work on the
    /// machine moves the numbers.
    pub load: String,
}

impl Machine {
    pub fn describe(root: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_else(|| "unknown CPU".into());
        let virt = if cpuinfo.lines().any(|l| l.starts_with("flags") && l.contains(" hypervisor")) {
            ", virtual machine"
        } else {
            ""
        };
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| (kib + (1 << 19)) >> 20);
        Self {
            date: utc_now(),
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
            cpu: format!("{model}, {cores} cores, {mem_gib} GiB{virt}"),
            revision: revision(root),
            load: read("/proc/loadavg").split_whitespace().next().unwrap_or("?").to_owned(),
        }
    }

    pub fn line(&self) -> String {
        // Taken before any traffic: a load this high is other work (or the
        // build just before), which moves the numbers.
        let busy = if self.load.parse::<f64>().is_ok_and(|l| l >= 1.0) {
            " (a busy machine: expect more noise than usual)"
        } else {
            ""
        };
        format!(
            "Measured {} on {} ({}); skbtrace {}, release build; load average {} at start{busy}.",
            self.date, self.kernel, self.cpu, self.revision, self.load
        )
    }
}

/// `abc1234`, with `+changes` when the work tree differs from it.
fn revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "(unknown revision)".into() };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}+changes"),
        _ => head,
    }
}

/// `2026-11-28 01:23 UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let day = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", day / 3600, day / 60 % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    }
}
