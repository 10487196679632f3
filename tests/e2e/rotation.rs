//! `--output-file` rotated as pwru rotates it (lumberjack): backups named
//! `<stem>-<local time>.<ext>`, as many kept as `--output-file-max-backups`
//! says, gzipped under `--output-file-compress`; and what pwru does not
//! promise: every line whole in one file, none lost. Traffic enough for a
//! few 1 MiB files, in a namespace of the test's own.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, ensure};
use testkit::{ci::require_root, netns::Netns, process::Finished};

use crate::{
    clock::{is_stamp, local_stamp, real_ns},
    skbtrace,
};

const STEM: &str = "trace-";
const EXT: &str = ".log";
/// Rotations each run waits for (a bound on the traffic sent for them too).
const ROTATIONS: usize = 4;
const MAX_DATAGRAMS: u32 = 20_000;

/// A directory of the test's own, removed in Drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("skbtrace-rotation-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A backup's name without `.gz`, when it is one: `trace-<stamp>.log`.
fn backup_name(name: &str) -> Option<&str> {
    let plain = name.strip_suffix(".gz").unwrap_or(name);
    let stamp = plain.strip_prefix(STEM)?.strip_suffix(EXT)?;
    is_stamp(stamp, '-').then_some(plain)
}

fn names_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().into_string().map_err(|n| anyhow::anyhow!("a file name not UTF-8: {n:?}"))?);
    }
    names.sort();
    Ok(names)
}

/// A run of skbtrace writing JSON (one event a line, stacks making lines
/// long) to `dir/trace.log` with 1 MiB files and `extra` flags, fed
/// datagrams until it has rotated [`ROTATIONS`] times.
struct Rotated {
    done: Finished,
    /// Every backup name seen during the run, `.gz` left out.
    backups_seen: Vec<String>,
    /// The local time before the run and after it, as backup names write it.
    earliest: String,
    latest: String,
}

fn run(dir: &Path, extra: &[&str]) -> anyhow::Result<Rotated> {
    let ns = Netns::new("rot")?;
    let earliest = local_stamp(real_ns() - 1_000_000_000, '-');
    let tracer = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--output-json", "--output-stack", "--output-file-max-size", "1"])
        .arg("--output-file")
        .arg(dir.join("trace.log"))
        .args(extra)
        .start()?;
    let mut backups_seen: Vec<String> = Vec::new();
    for i in 0..MAX_DATAGRAMS {
        ns.send_udp("127.0.0.1", 4900, "rotate me")?;
        if i % 20 == 0 {
            for name in names_in(dir)? {
                if let Some(backup) = backup_name(&name)
                    && !backups_seen.iter().any(|b| b == backup)
                {
                    backups_seen.push(backup.to_owned());
                }
            }
            if backups_seen.len() >= ROTATIONS {
                break;
            }
        }
    }
    let done = tracer.stop()?;
    ensure!(done.status.success(), "skbtrace exited {}:\n{}", done.status, done.stderr);
    ensure!(
        backups_seen.len() >= ROTATIONS,
        "{MAX_DATAGRAMS} datagrams made {} rotations, not {ROTATIONS}: {backups_seen:?}",
        backups_seen.len()
    );
    let latest = local_stamp(real_ns() + 1_000_000_000, '-');
    Ok(Rotated { done, backups_seen, earliest, latest })
}

/// The files now in `dir`: (name, content, decompressed when `.gz`).
fn contents(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for name in names_in(dir)? {
        let bytes = fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
        let text = if name.ends_with(".gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_string(&mut text)
                .with_context(|| format!("{name} is not gzip of UTF-8 text"))?;
            text
        } else {
            String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8"))?
        };
        files.push((name, text));
    }
    Ok(files)
}

/// Every file ends with a whole line and each line is a whole JSON object;
/// returns the event lines (the summary left out) of all of them.
fn whole_lines(files: &[(String, String)]) -> anyhow::Result<usize> {
    let mut events = 0;
    for (name, text) in files {
        ensure!(
            text.ends_with('\n'),
            "{name} ends in the middle of a line: {:?}",
            &text[text.len().saturating_sub(80)..]
        );
        for (i, line) in text.lines().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{name} line {}: not a whole JSON line: {line:.120}", i + 1))?;
            events += usize::from(value.get("summary").is_none());
        }
    }
    Ok(events)
}

/// Backup names as pwru's lumberjack writes them, with the local time of the run.
fn check_names(rotated: &Rotated, names: &[String]) -> anyhow::Result<()> {
    for name in names.iter().filter(|n| n.as_str() != "trace.log") {
        let backup = backup_name(name).with_context(|| format!("{name} is not named trace-<local time>.log[.gz]"))?;
        let stamp = &backup[STEM.len()..backup.len() - EXT.len()];
        ensure!(
            (rotated.earliest.as_str()..=rotated.latest.as_str()).contains(&stamp),
            "{name}: not the local time of the run ({}…{})",
            rotated.earliest,
            rotated.latest
        );
    }
    Ok(())
}

#[test]
fn max_backups_0_keeps_every_line_of_every_rotation() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let dir = TempDir::new("all")?;
    let rotated = run(&dir.0, &["--output-file-max-backups", "0"])?;
    let files = contents(&dir.0)?;
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    check_names(&rotated, &names)?;
    ensure!(names.len() > ROTATIONS, "every backup kept and trace.log: {names:?}");
    ensure!(names.iter().all(|n| !n.ends_with(".gz")), "compressed without --output-file-compress: {names:?}");
    let lines = whole_lines(&files)?;
    let summary = rotated.done.summary()?;
    assert_eq!(lines as u64, summary.events, "event lines in {names:?} against the summary's events");
    Ok(())
}

#[test]
fn max_backups_2_keeps_the_newest_2() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let dir = TempDir::new("two")?;
    let rotated = run(&dir.0, &["--output-file-max-backups", "2"])?;
    let files = contents(&dir.0)?;
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    check_names(&rotated, &names)?;
    let backups: Vec<&String> = names.iter().filter(|n| n.as_str() != "trace.log").collect();
    ensure!(backups.len() == 2, "{} rotations, 2 backups should remain: {names:?}", rotated.backups_seen.len());
    // Every backup there was, including one made after the last look.
    let mut all: Vec<&String> = rotated.backups_seen.iter().chain(backups.iter().copied()).collect();
    all.sort();
    all.dedup();
    ensure!(backups == all[all.len() - 2..], "not the newest two of {all:?} remain: {names:?}");
    whole_lines(&files)?;
    Ok(())
}

#[test]
fn compress_gzips_backups_into_whole_lines() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let dir = TempDir::new("gz")?;
    let rotated = run(&dir.0, &["--output-file-compress"])?;
    let files = contents(&dir.0)?;
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    check_names(&rotated, &names)?;
    let backups: Vec<&String> = names.iter().filter(|n| n.as_str() != "trace.log").collect();
    ensure!(backups.len() >= ROTATIONS, "{names:?}");
    ensure!(backups.iter().all(|n| n.ends_with(".log.gz")), "a backup left uncompressed or half done: {names:?}");
    let lines = whole_lines(&files)?;
    assert_eq!(lines as u64, rotated.done.summary()?.events, "event lines in {names:?} against the summary's events");
    Ok(())
}
