//! The clocks skbtrace's timestamps come from, read by the test itself:
//! the kernel's monotonic clock (`ktime_ns`, TIMESTAMP) and the wall clock
//! (`--timestamp absolute`'s TIME, backup file names), formatted as
//! skbtrace and pwru format them.

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts, a local.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_MONOTONIC in ns: what `bpf_ktime_get_ns` returns in the kernel.
pub fn mono_ns() -> u64 {
    u64::try_from(now(libc::CLOCK_MONOTONIC)).expect("the monotonic clock is positive")
}

/// CLOCK_REALTIME in ns since the Unix epoch.
pub fn real_ns() -> i128 {
    now(libc::CLOCK_REALTIME)
}

/// `2026-12-01T06:14:07.123` for `unix_ns` moved by `offset_secs` (a time
/// zone east of UTC), with `sep` between hours, minutes and seconds: `:` as
/// TIME prints it, `-` as backup names have it.
pub fn utc_stamp(unix_ns: i128, offset_secs: i64, sep: char) -> String {
    let ns = unix_ns + i128::from(offset_secs) * 1_000_000_000;
    let secs = ns.div_euclid(1_000_000_000) as libc::time_t;
    // SAFETY: tm is plain data that gmtime_r fills in; both pointers are to locals.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&secs, &mut tm);
        tm
    };
    format(&tm, ns.rem_euclid(1_000_000_000) / 1_000_000, sep)
}

/// As [`utc_stamp`], in this process's local time zone (`TZ`, else /etc/localtime).
pub fn local_stamp(unix_ns: i128, sep: char) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as libc::time_t;
    // SAFETY: as in utc_stamp.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format(&tm, unix_ns.rem_euclid(1_000_000_000) / 1_000_000, sep)
}

fn format(tm: &libc::tm, millis: i128, sep: char) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}{sep}{:02}{sep}{:02}.{millis:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Whether `s` has the shape of a stamp: `YYYY-MM-DDTHH?MM?SS.mmm`, `?` being `sep`.
pub fn is_stamp(s: &str, sep: char) -> bool {
    let pattern = format!("dddd-dd-ddTdd{sep}dd{sep}dd.ddd");
    s.len() == pattern.len()
        && s.chars().zip(pattern.chars()).all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p })
}

#[test]
fn stamps_read_as_skbtrace_writes_them() {
    // 2026-07-13T09:41:07.512 UTC.
    let ns = 1_783_935_667_512_000_000;
    assert_eq!(utc_stamp(ns, 0, ':'), "2026-07-13T09:41:07.512");
    assert_eq!(utc_stamp(ns, 5 * 3600 + 1800, '-'), "2026-07-13T15-11-07.512");
    assert!(is_stamp("2026-07-13T09:41:07.512", ':'));
    assert!(!is_stamp("2026-07-13T09:41:07.512", '-'));
    assert!(!is_stamp("2026-07-13T09:41:07", ':'));
    assert!(is_stamp(&local_stamp(real_ns(), '-'), '-'));
}
