//! `--output-file` with pwru's rotation: pwru hands its output to lumberjack
//! (`github.com/cilium/lumberjack/v2`, `LocalTime: true`), and this file does
//! what lumberjack does, with two guarantees lumberjack lacks.
//!
//! What is the same as pwru:
//! - The file is appended to if it exists; a run never truncates an earlier trace.
//! - A file is rotated before a write would make it larger than `max_size`
//!   (`--output-file-max-size`, in MiB: lumberjack's megabyte is 1024 × 1024;
//!   0 means the default, 100).
//! - Rotation renames the file to `<stem>-<local time>.<ext>` in the same
//!   directory, e.g. `trace.log` → `trace-2026-07-13T09-41-07.512.log` (the
//!   time format is `2006-01-02T15-04-05.000` in Go's notation), and opens a
//!   fresh file with the old one's permissions.
//! - After each rotation, and once at open, backups are cleaned up: beyond
//!   the newest `max_backups` (0 keeps all), older than `max_age_days` by the
//!   time in their name (0 keeps all), and the rest gzip-compressed to
//!   `<backup>.gz` when `compress` is set (through `<backup>.gz.tmp`). That
//!   work runs on a thread of its own, as lumberjack's does, so compressing
//!   100 MB never stalls the trace.
//!
//! What is different, on purpose:
//! - **Rotation happens only between whole lines.** Bytes are written
//!   through as soon as a `\n` ends them; the tail of a line not yet ended is
//!   held in memory until its `\n` arrives. So a caller may write a line in
//!   any number of pieces (a `BufWriter` on top flushes mid-line) and every
//!   line still lands in exactly one file, whole. The cost is one line of
//!   memory. A line longer than `max_size` gets a file of its own rather
//!   than an error (lumberjack refuses such a write, and pwru drops the event).
//! - **No backup is overwritten.** lumberjack names backups to the
//!   millisecond and renames over an existing one when two rotations fall in
//!   the same millisecond; here the time in the name is moved on by 1 ms
//!   until the name is free.
//! - **Errors are reported.** Cleanup and compression errors are returned by
//!   [`RotatingFile::finish`] (and logged as they happen); lumberjack drops them.
//! - The directory is not created: a missing directory is an error naming the path.
//!
//! [`RotatingFile::finish`] must be called at the end of a run: it writes a
//! last line that has no `\n`, and waits for compression and cleanup to end.
//! Dropping the writer does the same, ignoring errors.
//!
//! Longer than 400 lines: the writer, its rename/compress/clean-up thread and
//! the rules above hold together; each part is only correct with the others.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

/// lumberjack's default, and pwru's `--output-file-max-size` default, in MiB.
pub const DEFAULT_MAX_SIZE_MB: u64 = 100;
const MIB: u64 = 1024 * 1024;
const GZ: &str = ".gz";
const TMP: &str = ".tmp";
/// Permissions of a new trace file (lumberjack's default).
const NEW_FILE_MODE: u32 = 0o644;

/// How and when to rotate. [`Default`] is pwru's defaults: 100 MiB, keep
/// every backup forever, no compression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Largest size of a file in bytes; a single longer line gets a file of its own.
    pub max_size: u64,
    /// How many backups to keep, newest first; 0 keeps all.
    pub max_backups: usize,
    /// Remove backups whose name is older than this many days; 0 keeps all.
    pub max_age_days: u32,
    /// gzip each backup.
    pub compress: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Self::pwru(DEFAULT_MAX_SIZE_MB, 0, 0, false)
    }
}

impl Rotation {
    /// From pwru's flags as a user gives them: `--output-file-max-size` (MiB,
    /// 0 meaning 100), `--output-file-max-backups`, `--output-file-max-age`
    /// (days) and `--output-file-compress`.
    pub fn pwru(max_size_mb: u64, max_backups: usize, max_age_days: u32, compress: bool) -> Self {
        let mb = if max_size_mb == 0 { DEFAULT_MAX_SIZE_MB } else { max_size_mb };
        Self { max_size: mb.saturating_mul(MIB), max_backups, max_age_days, compress }
    }

    /// Whether backups ever need looking at after a rotation.
    fn has_cleanup(&self) -> bool {
        self.max_backups > 0 || self.max_age_days > 0 || self.compress
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A trace file that rotates like pwru's `--output-file`. See the module
/// documentation for the line contract.
pub struct RotatingFile {
    names: Names,
    rotation: Rotation,
    /// `None` once finished.
    file: Option<File>,
    size: u64,
    /// A line begun but not yet ended by `\n`.
    partial: Vec<u8>,
    /// The time in the last backup's name, in ms since the epoch, so that
    /// names only go forward.
    last_stamp_ms: i64,
    clock: Clock,
    cleaner: Option<Cleaner>,
}

/// Whether `path` exists and is not a regular file (a device such as
/// `/dev/null`, a FIFO, a socket), which is written but never rotated.
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

impl RotatingFile {
    /// Opens `path` for appending (creating it with mode 0644) and cleans up
    /// old backups as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        Self::open_with_clock(path, rotation, Arc::new(SystemTime::now))
    }

    fn open_with_clock(path: &Path, rotation: Rotation, clock: Clock) -> io::Result<Self> {
        let names = Names::new(path)?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(NEW_FILE_MODE)
            .open(path)
            .map_err(|e| context(e, format!("opening the output file {}", path.display())))?;
        let size = file.metadata().map_err(|e| context(e, format!("reading the size of {}", path.display())))?.len();
        let cleaner = rotation.has_cleanup().then(|| Cleaner::start(names.clone(), rotation.clone(), clock.clone()));
        let mut f =
            Self { names, rotation, file: Some(file), size, partial: Vec::new(), last_stamp_ms: 0, clock, cleaner };
        f.request_cleanup();
        Ok(f)
    }

    /// The path being written (the newest file).
    pub fn path(&self) -> &Path {
        &self.names.path
    }

    /// Writes a last line that has no `\n`, closes the file and waits for
    /// compression and cleanup; returns the first error any of them met.
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_mut()
    }

    fn finish_mut(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if !self.partial.is_empty() && self.file.is_some() {
            let last = std::mem::take(&mut self.partial);
            result = self.write_lines(&last);
        }
        if let Some(mut file) = self.file.take() {
            let flushed = file.flush();
            result = result.and(flushed);
        }
        if let Some(cleaner) = self.cleaner.take() {
            result = result.and(cleaner.stop());
        }
        result
    }

    /// Writes `data`, which ends with a line's end (or is the last line),
    /// rotating between lines whenever the next ones do not fit.
    fn write_lines(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.rotation.max_size.saturating_sub(self.size);
            let mut take = if rest.len() as u64 <= room {
                rest.len()
            } else {
                let window = &rest[..room as usize];
                window.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            if take == 0 {
                if self.size > 0 {
                    self.rotate()?;
                    continue;
                }
                // One line longer than a whole file: it gets a file of its own.
                take = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
            }
            let file = self.file.as_mut().ok_or_else(|| io::Error::other("writing after finish"))?;
            file.write_all(&rest[..take])
                .map_err(|e| context(e, format!("writing to {}", self.names.path.display())))?;
            self.size += take as u64;
            rest = &rest[take..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = &self.names.path;
        let mode = match self.file.take() {
            Some(old) => old.metadata().map(|m| m.permissions().mode()).unwrap_or(NEW_FILE_MODE),
            None => return Err(io::Error::other("rotating after finish")),
        };
        let now_ms = unix_ms(self.clock.as_ref()());
        let mut stamp_ms = now_ms.max(self.last_stamp_ms + 1);
        let backup = loop {
            let candidate = self.names.backup(stamp_ms);
            if !exists_in_any_form(&candidate) {
                break candidate;
            }
            stamp_ms += 1;
        };
        self.last_stamp_ms = stamp_ms;
        fs::rename(path, &backup)
            .map_err(|e| context(e, format!("rotating {}: renaming it to {}", path.display(), backup.display())))?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(|e| context(e, format!("rotating {}: opening a new file", path.display())))?;
        // The umask may have taken bits away from the old file's mode.
        let _ = file.set_permissions(Permissions::from_mode(mode));
        self.file = Some(file);
        self.size = 0;
        self.request_cleanup();
        Ok(())
    }

    fn request_cleanup(&mut self) {
        if let Some(cleaner) = &self.cleaner {
            cleaner.request();
        }
    }
}

impl Write for RotatingFile {
    /// Takes all of `buf`: the lines it ends are written, the rest is held
    /// until its `\n` comes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            self.partial.extend_from_slice(buf);
            return Ok(buf.len());
        };
        let (lines, rest) = buf.split_at(last_nl + 1);
        if self.partial.is_empty() {
            self.write_lines(lines)?;
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(lines);
            self.write_lines(&joined)?;
            joined.clear();
            self.partial = joined;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// Flushes the file; a line not yet ended stays held (see the module doc).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        if let Err(e) = self.finish_mut() {
            log::warn!("closing {}: {e}", self.names.path.display());
        }
    }
}

/// The trace file's name and its backups' names.
#[derive(Clone, Debug)]
struct Names {
    path: PathBuf,
    dir: PathBuf,
    /// File name up to the extension, plus `-`.
    prefix: String,
    /// `.log`, or empty (Go's `filepath.Ext`: from the last dot of the name).
    ext: String,
}

impl Names {
    fn new(path: &Path) -> io::Result<Self> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the output file {} needs a UTF-8 file name to rotate", path.display()),
                )
            })?
            .to_owned();
        let dot = file_name.rfind('.').unwrap_or(file_name.len());
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            prefix: format!("{}-", &file_name[..dot]),
            ext: file_name[dot..].to_owned(),
        })
    }

    fn backup(&self, unix_ms: i64) -> PathBuf {
        self.dir.join(format!("{}{}{}", self.prefix, local_stamp(unix_ms), self.ext))
    }

    /// The time stamp in a backup's name (`-<stamp>.ext` or `.ext.gz`).
    fn stamp_of<'a>(&self, file_name: &'a str) -> Option<&'a str> {
        let rest = file_name.strip_prefix(&self.prefix)?;
        let rest = rest.strip_suffix(GZ).unwrap_or(rest);
        let stamp = rest.strip_suffix(self.ext.as_str())?;
        is_stamp(stamp).then_some(stamp)
    }
}

fn exists_in_any_form(backup: &Path) -> bool {
    let with = |suffix: &str| {
        let mut s = backup.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    backup.exists() || with(GZ).exists() || with(&format!("{GZ}{TMP}")).exists()
}

/// The thread that removes and compresses backups.
struct Cleaner {
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
    first_error: Arc<Mutex<Option<io::Error>>>,
}

impl Cleaner {
    fn start(names: Names, rotation: Rotation, clock: Clock) -> Self {
        // One pending request is enough: a run looks at every backup there is.
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        let first_error = Arc::new(Mutex::new(None));
        let errors = first_error.clone();
        let thread = std::thread::spawn(move || {
            for () in requests {
                if let Err(e) = clean(&names, &rotation, unix_ms(clock.as_ref()())) {
                    log::warn!("cleaning up the backups of {}: {e}", names.path.display());
                    let mut first = errors.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert(e);
                }
            }
        });
        Self { wake, thread, first_error }
    }

    fn request(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => log::warn!("the backup cleanup thread has stopped"),
        }
    }

    fn stop(self) -> io::Result<()> {
        drop(self.wake);
        if self.thread.join().is_err() {
            return Err(io::Error::other("the backup cleanup thread panicked"));
        }
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.take().map_or(Ok(()), Err)
    }
}

/// One cleanup, as lumberjack's `millRunOnce`: newest first, keep
/// `max_backups` (a backup and its `.gz` count once), drop those older than
/// `max_age_days`, compress the rest.
fn clean(names: &Names, rotation: &Rotation, now_ms: i64) -> io::Result<()> {
    let mut backups: Vec<(String, String)> = Vec::new();
    let entries = fs::read_dir(&names.dir).map_err(|e| context(e, format!("listing {}", names.dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| context(e, format!("listing {}", names.dir.display())))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stamp) = names.stamp_of(&file_name) {
            backups.push((stamp.to_owned(), file_name));
        }
    }
    // The stamp's format sorts as time does.
    backups.sort_by(|a, b| b.cmp(a));

    let mut remove = Vec::new();
    let mut keep = Vec::new();
    let mut kept_names: Vec<&str> = Vec::new();
    for (stamp, file_name) in &backups {
        let base = file_name.strip_suffix(GZ).unwrap_or(file_name);
        if !kept_names.contains(&base) {
            kept_names.push(base);
        }
        if rotation.max_backups > 0 && kept_names.len() > rotation.max_backups {
            remove.push(file_name);
        } else {
            keep.push((stamp, file_name));
        }
    }
    if rotation.max_age_days > 0 {
        let cutoff = local_stamp(now_ms - i64::from(rotation.max_age_days) * 86_400_000);
        let (old, young): (Vec<_>, Vec<_>) = keep.into_iter().partition(|(stamp, _)| stamp.as_str() < cutoff.as_str());
        remove.extend(old.into_iter().map(|(_, n)| n));
        keep = young;
    }

    let mut result = Ok(());
    for file_name in remove {
        let path = names.dir.join(file_name);
        if let Err(e) = fs::remove_file(&path) {
            result = result.and(Err(context(e, format!("removing the old backup {}", path.display()))));
        }
    }
    if rotation.compress {
        for (_, file_name) in keep.into_iter().filter(|(_, n)| !n.ends_with(GZ)) {
            result = result.and(compress(&names.dir.join(file_name)));
        }
    }
    result
}

/// `backup` → `backup.gz` through `backup.gz.tmp`, with the same permissions;
/// then `backup` is removed.
fn compress(backup: &Path) -> io::Result<()> {
    let gz = PathBuf::from(format!("{}{GZ}", backup.display()));
    let tmp = PathBuf::from(format!("{}{GZ}{TMP}", backup.display()));
    let what = |step: &str| format!("compressing {} ({step})", backup.display());
    let run = || -> io::Result<()> {
        let mut src = File::open(backup).map_err(|e| context(e, what("opening it")))?;
        let mode = src.metadata().map_err(|e| context(e, what("reading its mode")))?.permissions().mode();
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| context(e, what("creating the .gz.tmp file")))?;
        let mut enc = flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::default());
        io::copy(&mut src, &mut enc).map_err(|e| context(e, what("writing")))?;
        let out = enc.finish().map_err(|e| context(e, what("writing")))?;
        let out = out.into_inner().map_err(|e| context(e.into_error(), what("writing")))?;
        out.sync_all().map_err(|e| context(e, what("syncing")))?;
        fs::rename(&tmp, &gz).map_err(|e| context(e, what("renaming the .gz.tmp file")))?;
        fs::remove_file(backup).map_err(|e| context(e, what("removing the uncompressed backup")))
    };
    let result = run();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `2006-01-02T15-04-05.000` in local time, as lumberjack names backups.
fn local_stamp(unix_ms: i64) -> String {
    stamp(unix_ms, local_offset_secs(unix_ms.div_euclid(1000)))
}

/// The local time zone's offset from UTC at `unix_secs`.
fn local_offset_secs(unix_secs: i64) -> i64 {
    let t: libc::time_t = unix_secs;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are
    // valid for the call, and localtime_r (unlike localtime) keeps no shared state.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// `YYYY-MM-DDTHH-MM-SS.mmm` for `unix_ms` at `offset_secs` east of UTC.
fn stamp(unix_ms: i64, offset_secs: i64) -> String {
    let local_ms = unix_ms + offset_secs * 1000;
    let (days, ms_of_day) = (local_ms.div_euclid(86_400_000), local_ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}.{:03}", secs / 3600, secs / 60 % 60, secs % 60, ms_of_day % 1000)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether `s` has the shape `0000-00-00T00-00-00.000`.
fn is_stamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00-00-00.000";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &want)| if want == b'0' { c.is_ascii_digit() } else { c == want })
}

#[cfg(test)]
mod tests;
