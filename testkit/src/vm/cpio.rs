//! A newc ("070701") cpio writer: the format the kernel unpacks as an initramfs.
//!
//! Written here rather than shelling out to `cpio` so that device nodes and
//! ownership come out right without root, and entries never depend on the host's
//! directory layout.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

enum Entry {
    Dir,
    File { contents: Contents, mode: u32 },
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

enum Contents {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// The entries of one archive, keyed by their path inside the guest.
///
/// Adding an entry adds its parent directories; adding a path twice keeps the
/// last one, so a real tool can replace a busybox applet of the same name.
/// Sorted order puts every directory before what it contains.
#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Archive {
    pub fn add_dir(&mut self, guest: impl AsRef<Path>) {
        let guest = relative(guest.as_ref());
        self.add_parents(&guest);
        self.entries.insert(guest, Entry::Dir);
    }

    /// Copies a host file, keeping its permission bits. Symlinks are followed.
    pub fn add_host_file(&mut self, guest: impl AsRef<Path>, host: impl Into<PathBuf>) {
        self.add(guest.as_ref(), Entry::File { contents: Contents::Host(host.into()), mode: 0 });
    }

    pub fn add_bytes(&mut self, guest: impl AsRef<Path>, bytes: impl Into<Vec<u8>>, mode: u32) {
        self.add(guest.as_ref(), Entry::File { contents: Contents::Bytes(bytes.into()), mode });
    }

    pub fn add_symlink(&mut self, guest: impl AsRef<Path>, target: impl Into<String>) {
        self.add(guest.as_ref(), Entry::Symlink(target.into()));
    }

    pub fn add_char_device(&mut self, guest: impl AsRef<Path>, major: u32, minor: u32) {
        self.add(guest.as_ref(), Entry::CharDevice { major, minor });
    }

    fn add(&mut self, guest: &Path, entry: Entry) {
        let guest = relative(guest);
        self.add_parents(&guest);
        self.entries.insert(guest, entry);
    }

    fn add_parents(&mut self, guest: &Path) {
        for parent in guest.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            // A symlinked directory (merged /usr's /lib -> usr/lib) stays a symlink.
            self.entries.entry(parent.to_path_buf()).or_insert(Entry::Dir);
        }
    }

    /// Writes the archive, reading host files as it goes.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let name = path
                .to_str()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("non-UTF-8 path {path:?}")))?;
            let header = |mode, size, rdev: (u32, u32)| Header { ino, mode, size, rdev, name };
            match entry {
                Entry::Dir => header(S_IFDIR | 0o755, 0, (0, 0)).write_to(&mut out, &[])?,
                Entry::Symlink(target) => {
                    header(S_IFLNK | 0o777, target.len(), (0, 0)).write_to(&mut out, target.as_bytes())?
                }
                Entry::CharDevice { major, minor } => {
                    header(S_IFCHR | 0o600, 0, (*major, *minor)).write_to(&mut out, &[])?
                }
                Entry::File { contents, mode } => {
                    // Read whole so the size in the header matches the bytes written.
                    let (data, mode) = match contents {
                        Contents::Bytes(bytes) => (bytes.clone(), *mode),
                        Contents::Host(host) => {
                            let data = fs::read(host).map_err(|e| with_path(e, host))?;
                            let mode = fs::metadata(host).map_err(|e| with_path(e, host))?;
                            (data, mode.permissions().mode() & 0o7777)
                        }
                    };
                    header(S_IFREG | mode, data.len(), (0, 0)).write_to(&mut out, &data)?
                }
            }
        }
        Header { ino: 0, mode: 0, size: 0, rdev: (0, 0), name: "TRAILER!!!" }.write_to(&mut out, &[])
    }
}

struct Header<'a> {
    ino: u32,
    mode: u32,
    size: usize,
    rdev: (u32, u32),
    name: &'a str,
}

impl Header<'_> {
    fn write_to(&self, out: &mut impl Write, data: &[u8]) -> io::Result<()> {
        let size =
            u32::try_from(self.size).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let name_size = self.name.len() + 1;
        let nlink = if self.mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [self.ino, self.mode, 0, 0, nlink, 0, size, 0, 0, self.rdev.0, self.rdev.1, name_size as u32, 0];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        out.write_all(header.as_bytes())?;
        out.write_all(self.name.as_bytes())?;
        out.write_all(&[0])?;
        // The name is padded so that data starts on a 4-byte boundary (header is 110 bytes).
        out.write_all(&[0; 3][..pad4(110 + name_size)])?;
        out.write_all(data)?;
        out.write_all(&[0; 3][..pad4(data.len())])
    }
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn relative(guest: &Path) -> PathBuf {
    guest.strip_prefix("/").unwrap_or(guest).to_path_buf()
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("reading {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(archive: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = 0;
        while at < archive.len() {
            assert_eq!(&archive[at..at + 6], b"070701", "header at {at}");
            let field = |i: usize| {
                let hex = std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
                usize::from_str_radix(hex, 16).unwrap()
            };
            let (size, name_size) = (field(6), field(11));
            let name = &archive[at + 110..at + 110 + name_size - 1];
            names.push(String::from_utf8(name.to_vec()).unwrap());
            at += 110 + name_size + pad4(110 + name_size);
            at += size + pad4(size);
        }
        names
    }

    #[test]
    fn parents_come_before_children_and_trailer_ends() {
        let mut archive = Archive::default();
        archive.add_bytes("/usr/bin/x", b"abc".to_vec(), 0o755);
        archive.add_symlink("/bin", "usr/bin");
        archive.add_char_device("/dev/console", 5, 1);
        let mut out = Vec::new();
        archive.write_to(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert_eq!(names(&out), ["bin", "dev", "dev/console", "usr", "usr/bin", "usr/bin/x", "TRAILER!!!"]);
    }

    #[test]
    fn later_entry_replaces_earlier() {
        let mut archive = Archive::default();
        archive.add_symlink("/usr/sbin/ip", "/usr/bin/busybox");
        archive.add_bytes("/usr/sbin/ip", b"real".to_vec(), 0o755);
        let mut out = Vec::new();
        archive.write_to(&mut out).unwrap();
        assert_eq!(names(&out), ["usr", "usr/sbin", "usr/sbin/ip", "TRAILER!!!"]);
        assert!(out.windows(4).any(|w| w == b"real"));
    }
}
