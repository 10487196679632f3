//! In a temporary directory, with a clock the test moves.

use std::{
    io::Read as _,
    sync::atomic::{AtomicI64, AtomicU32, Ordering},
};

use super::*;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("skbtrace-rotate-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 2026-07-13T09:41:07.512 UTC.
const T0: i64 = 1_783_935_667_512;

fn clock_at(ms: &Arc<AtomicI64>) -> Clock {
    let ms = ms.clone();
    Arc::new(move || UNIX_EPOCH + std::time::Duration::from_millis(ms.load(Ordering::Relaxed) as u64))
}

/// A clock that moves on by `step_ms` each time it is read.
fn ticking(step_ms: i64) -> Clock {
    let ms = AtomicI64::new(T0);
    Arc::new(move || UNIX_EPOCH + std::time::Duration::from_millis(ms.fetch_add(step_ms, Ordering::Relaxed) as u64))
}

fn rotation(max_size: u64) -> Rotation {
    Rotation { max_size, ..Rotation::default() }
}

/// Lines of 8 to 60 bytes, numbered, from a fixed pseudo-random sequence.
fn lines(n: usize) -> Vec<String> {
    let mut x = 12345u32;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let pad = (x >> 16) as usize % 50;
            format!("{i:06} {}\n", "x".repeat(pad))
        })
        .collect()
}

/// Writes `text` in pieces of 1 to 37 bytes, cut anywhere (mid-line too).
fn write_in_pieces(w: &mut impl Write, text: &str) {
    let bytes = text.as_bytes();
    let (mut at, mut x) = (0, 7u32);
    while at < bytes.len() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (1 + (x >> 16) as usize % 37).min(bytes.len() - at);
        assert_eq!(w.write(&bytes[at..at + n]).expect("write"), n);
        at += n;
    }
}

/// Every file in `dir`, oldest first (backups by the time in their name,
/// then the trace file itself), decompressed.
fn files_in_order(dir: &Path, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| n != name);
    names.sort();
    names.push(name.to_owned());
    names
        .into_iter()
        .filter(|n| dir.join(n).exists())
        .map(|n| {
            let raw = fs::read(dir.join(&n)).unwrap();
            let data = if n.ends_with(".gz") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).expect("gunzip");
                out
            } else {
                raw
            };
            (n, data)
        })
        .collect()
}

fn concat(files: &[(String, Vec<u8>)]) -> String {
    String::from_utf8(files.iter().flat_map(|(_, d)| d.clone()).collect()).unwrap()
}

#[test]
fn stamp_is_lumberjacks_format() {
    assert_eq!(stamp(0, 0), "1970-01-01T00-00-00.000");
    assert_eq!(stamp(T0, 0), "2026-07-13T09-41-07.512");
    // Local time: two hours east of UTC, and a leap day.
    assert_eq!(stamp(1_709_214_307_089, 7200), "2024-02-29T15-45-07.089");
    assert_eq!(stamp(-1, 0), "1969-12-31T23-59-59.999");
    assert!(is_stamp(&local_stamp(T0)));
    assert!(!is_stamp("2026-07-13T09:41:07.512"));
}

#[test]
fn backup_names_are_lumberjacks() {
    let at = |path: &str| Names::new(Path::new(path)).unwrap().backup(T0).display().to_string();
    let s = local_stamp(T0);
    assert_eq!(at("/tmp/trace.log"), format!("/tmp/trace-{s}.log"));
    assert_eq!(at("/tmp/trace"), format!("/tmp/trace-{s}"));
    assert_eq!(at("out.tar.json"), format!("./out.tar-{s}.json"));
    let names = Names::new(Path::new("/tmp/trace.log")).unwrap();
    assert_eq!(names.stamp_of(&format!("trace-{s}.log")), Some(s.as_str()));
    assert_eq!(names.stamp_of(&format!("trace-{s}.log.gz")), Some(s.as_str()));
    assert_eq!(names.stamp_of(&format!("trace-{s}.log.gz.tmp")), None);
    assert_eq!(names.stamp_of("trace-notastamp.log"), None);
    assert_eq!(names.stamp_of("trace.log"), None);
}

#[test]
fn pwru_defaults() {
    assert_eq!(
        Rotation::default(),
        Rotation { max_size: 100 * 1024 * 1024, max_backups: 0, max_age_days: 0, compress: false }
    );
    assert_eq!(Rotation::pwru(0, 3, 7, true).max_size, 100 * 1024 * 1024, "0 MB means lumberjack's default");
    assert_eq!(Rotation::pwru(5, 0, 0, false).max_size, 5 * 1024 * 1024);
}

#[test]
fn rotates_between_whole_lines_and_loses_nothing() {
    let dir = TempDir::new();
    let path = dir.0.join("trace.log");
    let all = lines(400).concat();
    let mut f = RotatingFile::open_with_clock(&path, rotation(200), ticking(1000)).unwrap();
    write_in_pieces(&mut f, &all);
    f.finish().unwrap();

    let files = files_in_order(&dir.0, "trace.log");
    assert!(files.len() > 50, "only {} files for {} bytes", files.len(), all.len());
    for (name, data) in &files {
        assert!(data.len() <= 200, "{name} has {} bytes", data.len());
        assert!(data.ends_with(b"\n"), "{name} ends mid-line");
        // A file is rotated only when the next line does not fit.
        assert!(data.len() > 200 - 60, "{name} rotated early at {} bytes", data.len());
    }
    assert_eq!(concat(&files), all, "the files, oldest first, are not the lines written, once each, in order");
}

#[test]
fn a_line_longer_than_a_file_gets_a_file_of_its_own() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let long = format!("{}\n", "L".repeat(250));
    let all = format!("short 1\n{long}short 2\n");
    let mut f = RotatingFile::open_with_clock(&path, rotation(100), ticking(1000)).unwrap();
    write_in_pieces(&mut f, &all);
    f.finish().unwrap();
    let files = files_in_order(&dir.0, "t.log");
    let sizes: Vec<usize> = files.iter().map(|(_, d)| d.len()).collect();
    assert_eq!(sizes, [8, 251, 8]);
    assert_eq!(concat(&files), all);
}

#[test]
fn a_last_line_without_newline_is_written_at_finish() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let mut f = RotatingFile::open(&path, Rotation::default()).unwrap();
    f.write_all(b"one\ntw").unwrap();
    f.flush().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one\n", "half a line is held, not written");
    f.write_all(b"o").unwrap();
    f.finish().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one\ntwo");
}

#[test]
fn appends_to_an_existing_file_and_rotates_it_when_full() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    fs::write(&path, "old 1\nold 2\n").unwrap();
    let mut f = RotatingFile::open_with_clock(&path, rotation(20), ticking(1000)).unwrap();
    f.write_all(b"new 1\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"old 1\nold 2\nnew 1\n");
    f.write_all(b"new 2\n").unwrap();
    f.finish().unwrap();
    let files = files_in_order(&dir.0, "t.log");
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].1, b"new 2\n");
    assert_eq!(concat(&files), "old 1\nold 2\nnew 1\nnew 2\n");
}

#[test]
fn rotations_in_the_same_millisecond_overwrite_nothing() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let all = lines(100).concat();
    // A clock that never moves: every backup wants the same name.
    let mut f = RotatingFile::open_with_clock(&path, rotation(64), ticking(0)).unwrap();
    write_in_pieces(&mut f, &all);
    f.finish().unwrap();
    let files = files_in_order(&dir.0, "t.log");
    assert!(files.len() > 20);
    assert_eq!(concat(&files), all);
    let first = &files[0].0;
    assert_eq!(first, &format!("t-{}.log", local_stamp(T0)), "the first backup has the clock's time");
}

#[test]
fn max_backups_keeps_the_newest() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let all = lines(200);
    let mut f =
        RotatingFile::open_with_clock(&path, Rotation { max_backups: 3, ..rotation(150) }, ticking(1000)).unwrap();
    write_in_pieces(&mut f, &all.concat());
    f.finish().unwrap();
    let files = files_in_order(&dir.0, "t.log");
    assert_eq!(files.len(), 4, "3 backups and the trace file: {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());
    // What is left is the end of the trace, whole lines, with no gap.
    let kept = concat(&files);
    assert!(all.concat().ends_with(&kept));
    let first = kept.lines().next().unwrap();
    assert!(all.iter().any(|l| l.trim_end() == first), "the oldest kept file starts mid-line: {first:?}");
}

#[test]
fn compress_gzips_every_backup() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let all = lines(300).concat();
    let mut f =
        RotatingFile::open_with_clock(&path, Rotation { compress: true, ..rotation(500) }, ticking(1000)).unwrap();
    write_in_pieces(&mut f, &all);
    f.finish().unwrap();
    let files = files_in_order(&dir.0, "t.log");
    assert!(files.len() > 5);
    let (backups, current) = files.split_at(files.len() - 1);
    assert_eq!(current[0].0, "t.log", "the trace file itself is not compressed");
    for (name, _) in backups {
        assert!(name.ends_with(".log.gz"), "{name} is not a compressed backup");
    }
    assert_eq!(concat(&files), all);
    let gz = fs::read(dir.0.join(&backups[0].0)).unwrap();
    assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip magic");
}

#[test]
fn max_age_removes_backups_named_older() {
    let dir = TempDir::new();
    let path = dir.0.join("t.log");
    let day = 86_400_000;
    let old = dir.0.join(format!("t-{}.log", local_stamp(T0 - 10 * day)));
    let old_gz = dir.0.join(format!("t-{}.log.gz", local_stamp(T0 - 9 * day)));
    let young = dir.0.join(format!("t-{}.log", local_stamp(T0 - day)));
    let unrelated = [dir.0.join("t-notastamp.log"), dir.0.join("other.log")];
    for p in [&old, &old_gz, &young].into_iter().chain(&unrelated) {
        fs::write(p, "x\n").unwrap();
    }
    let now = Arc::new(AtomicI64::new(T0));
    let f =
        RotatingFile::open_with_clock(&path, Rotation { max_age_days: 5, ..rotation(100) }, clock_at(&now)).unwrap();
    f.finish().unwrap();
    assert!(!old.exists() && !old_gz.exists(), "backups older than 5 days are removed");
    assert!(young.exists());
    assert!(unrelated.iter().all(|p| p.exists()), "files not named like backups are left alone");
}

#[test]
fn a_missing_directory_is_an_error_naming_the_path() {
    let dir = TempDir::new();
    let path = dir.0.join("no/such/dir/t.log");
    let err = RotatingFile::open(&path, Rotation::default()).err().expect("an error");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// `--output-file /dev/null` (the benchmarks' sink) once had 100 MiB
/// written, was renamed to a backup and replaced by a growing file.
#[test]
fn devices_and_sockets_are_special_and_never_rotated() {
    let dir = TempDir::new();
    let socket = dir.0.join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let regular = dir.0.join("t.log");
    fs::write(&regular, "x\n").unwrap();
    assert!(is_special(Path::new("/dev/null")) && is_special(&socket));
    assert!(!is_special(&regular) && !is_special(&dir.0.join("missing.log")));
}
