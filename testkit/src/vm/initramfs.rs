//! The VM's initramfs, as two concatenated cpio archives (the kernel unpacks
//! each in turn):
//! - tools: busybox with its applets, ip, legacy iptables, nsenter and their
//!   libraries. It depends only on the host, so it is built once and cached;
//!   resolving iptables' ~120 extension libraries with ldd takes over a second.
//! - run: /init, the kernel's modules with a modules.dep for busybox modprobe,
//!   skbtrace and the test files.

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    cpio::Archive,
    modules::{self, Module},
};

/// Where the test script and the copied files land in the guest; also the
/// script's working directory.
pub const GUEST_TEST_DIR: &str = "/test";
pub const GUEST_SKBTRACE: &str = "/usr/local/bin/skbtrace";

/// Bump when the tools archive's layout changes, so cached copies are rebuilt.
const TOOLS_LAYOUT: u32 = 1;

/// Returns the cached tools archive, building it if the host's tools changed.
pub fn tools_archive(work_dir: &Path) -> anyhow::Result<PathBuf> {
    let tools = HostTools::find()?;
    let stamp = tools.stamp()?;
    let archive_path = work_dir.join("tools.cpio");
    let stamp_path = work_dir.join("tools.stamp");
    if archive_path.exists() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(archive_path);
    }
    let archive = tools.archive()?;
    // Written under a per-process name and renamed: parallel runs may rebuild at once.
    let partial = work_dir.join(format!("tools.cpio.partial{}", std::process::id()));
    write_archive(&archive, &partial)?;
    fs::rename(&partial, &archive_path)
        .with_context(|| format!("renaming {} to {}", partial.display(), archive_path.display()))?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(archive_path)
}

/// What one run adds on top of the tools.
pub struct RunFiles<'a> {
    pub init: String,
    pub release: &'a str,
    pub modules: &'a [Module],
    pub skbtrace: &'a Path,
    pub script: &'a Path,
    pub copy: &'a [PathBuf],
}

pub fn run_archive(files: &RunFiles) -> anyhow::Result<Archive> {
    let mut archive = Archive::default();
    archive.add_bytes("/init", files.init.as_bytes(), 0o755);
    let modules_dir = merged_usr(&Path::new("/lib/modules").join(files.release));
    for module in files.modules {
        archive.add_host_file(modules_dir.join(format!("{}.ko", module.name)), &module.file);
    }
    archive.add_bytes(modules_dir.join("modules.dep"), modules::modules_dep(files.modules), 0o644);
    add_program(&mut archive, GUEST_SKBTRACE, files.skbtrace).context("adding the skbtrace binary to the VM")?;
    let test_dir = Path::new(GUEST_TEST_DIR);
    archive.add_dir(test_dir);
    add_host_path(&mut archive, &test_dir.join(file_name(files.script)?), files.script)?;
    for path in files.copy {
        add_host_path(&mut archive, &test_dir.join(file_name(path)?), path)?;
    }
    Ok(archive)
}

/// Writes the initrd qemu loads: the cached tools archive, then the run's.
pub fn write_initrd(tools: &Path, run: &Archive, initrd: &Path) -> anyhow::Result<()> {
    fs::copy(tools, initrd).with_context(|| format!("copying {} to {}", tools.display(), initrd.display()))?;
    let file =
        fs::OpenOptions::new().append(true).open(initrd).with_context(|| format!("opening {}", initrd.display()))?;
    write_to_file(run, file, initrd)
}

fn write_archive(archive: &Archive, path: &Path) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_to_file(archive, file, path)
}

fn write_to_file(archive: &Archive, file: fs::File, path: &Path) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(file);
    archive.write_to(&mut out).with_context(|| format!("writing {}", path.display()))?;
    out.flush().with_context(|| format!("writing {}", path.display()))
}

/// Adds a file or a directory tree under `guest`; ELF files bring their libraries.
fn add_host_path(archive: &mut Archive, guest: &Path, host: &Path) -> anyhow::Result<()> {
    let metadata = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    if !metadata.is_dir() {
        return if is_elf(host)? {
            add_program(archive, guest, host)
        } else {
            archive.add_host_file(guest, host);
            Ok(())
        };
    }
    archive.add_dir(guest);
    for entry in fs::read_dir(host).with_context(|| format!("listing {}", host.display()))? {
        let entry = entry?;
        add_host_path(archive, &guest.join(entry.file_name()), &entry.path())?;
    }
    Ok(())
}

/// Adds an executable and the shared libraries `ldd` says it loads.
fn add_program(archive: &mut Archive, guest: impl AsRef<Path>, host: &Path) -> anyhow::Result<()> {
    archive.add_host_file(guest, host);
    for library in shared_libraries(&[host])? {
        archive.add_host_file(merged_usr(&library), library);
    }
    Ok(())
}

/// The programs the test scripts use besides busybox.
struct HostTools {
    busybox: PathBuf,
    ip: PathBuf,
    xtables: PathBuf,
    /// iptables' match and target extensions, loaded with dlopen (invisible to ldd).
    xtables_extensions: Vec<PathBuf>,
    nsenter: Option<PathBuf>,
    /// nft and iptables-nft, for the `--nft-trace` scenario (nftables and
    /// iptables packages); left out when the host lacks them.
    nft: Option<PathBuf>,
    xtables_nft: Option<PathBuf>,
}

impl HostTools {
    fn find() -> anyhow::Result<Self> {
        let busybox = host_program("busybox", "busybox")?;
        let xtables = host_program("xtables-legacy-multi", "iptables")?;
        let extensions_dir = ["/usr/lib/x86_64-linux-gnu/xtables", "/lib/x86_64-linux-gnu/xtables"]
            .into_iter()
            .map(PathBuf::from)
            .find(|dir| dir.is_dir())
            .context("no xtables extension directory; install Debian package iptables")?;
        let mut xtables_extensions = Vec::new();
        for entry in fs::read_dir(&extensions_dir).with_context(|| format!("listing {}", extensions_dir.display()))? {
            xtables_extensions.push(entry?.path());
        }
        xtables_extensions.sort();
        Ok(HostTools {
            busybox,
            ip: host_program("ip", "iproute2")?,
            xtables,
            xtables_extensions,
            nsenter: host_program("nsenter", "util-linux").ok(),
            nft: host_program("nft", "nftables").ok(),
            xtables_nft: host_program("xtables-nft-multi", "iptables").ok(),
        })
    }

    fn programs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.busybox, &self.ip, &self.xtables]
            .into_iter()
            .chain(&self.nsenter)
            .chain(&self.nft)
            .chain(&self.xtables_nft)
    }

    /// Identifies the host tools' versions: paths, sizes and modification times.
    fn stamp(&self) -> anyhow::Result<String> {
        let mut stamp = format!("layout {TOOLS_LAYOUT}\n");
        for path in self.programs().chain(&self.xtables_extensions) {
            let metadata = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            stamp.push_str(&format!("{} {} {}\n", path.display(), metadata.len(), metadata.mtime()));
        }
        Ok(stamp)
    }

    fn archive(&self) -> anyhow::Result<Archive> {
        if shared_libraries(&[&self.busybox])?.is_empty() {
            bail!(
                "{} is statically linked: install Debian package busybox, not busybox-static \
                 (the static one runs its own applets even where PATH names ip or iptables)",
                self.busybox.display()
            );
        }
        let mut archive = Archive::default();
        // Keep the host's merged-/usr symlinks so that paths compiled into the
        // tools (the loader in /lib64, iptables' extension dir) resolve alike.
        for top in ["bin", "sbin", "lib", "lib64"] {
            if let Ok(target) = fs::read_link(Path::new("/").join(top)) {
                archive.add_symlink(top, target.to_string_lossy());
            }
        }
        for dir in ["/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/mnt", "/etc", "/usr/local/bin"] {
            archive.add_dir(dir);
        }
        // The kernel opens /dev/console for /init before anything is mounted.
        archive.add_char_device("/dev/console", 5, 1);
        archive.add_symlink("/var/run", "../run");
        archive.add_bytes("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
        archive.add_bytes("/etc/group", "root:x:0:\n", 0o644);
        archive.add_bytes("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644);
        archive.add_bytes("/etc/nsswitch.conf", "hosts: files\n", 0o644);
        for etc in ["/etc/protocols", "/etc/services"] {
            if Path::new(etc).exists() {
                archive.add_host_file(etc, etc);
            }
        }

        // Applets first: the real tools added below replace same-named applets.
        let busybox_guest = merged_usr(&self.busybox);
        for applet in busybox_applets(&self.busybox)? {
            archive.add_symlink(merged_usr(&Path::new("/").join(applet)), busybox_guest.to_string_lossy());
        }
        for program in self.programs() {
            archive.add_host_file(merged_usr(program), program);
        }
        let xtables_guest = merged_usr(&self.xtables);
        let xtables_name = file_name(&self.xtables)?;
        // xtables-legacy-multi picks the tool by argv[0].
        for name in [
            "iptables",
            "iptables-save",
            "iptables-restore",
            "iptables-legacy",
            "ip6tables",
            "ip6tables-save",
            "ip6tables-restore",
            "ip6tables-legacy",
        ] {
            archive.add_symlink(xtables_guest.with_file_name(name), xtables_name.to_string_lossy());
        }
        if let Some(multi) = &self.xtables_nft {
            let guest = merged_usr(multi);
            let name = file_name(multi)?.to_string_lossy();
            for tool in ["iptables-nft", "iptables-nft-save", "ip6tables-nft", "ip6tables-nft-save"] {
                archive.add_symlink(guest.with_file_name(tool), name.as_ref());
            }
        }
        for extension in &self.xtables_extensions {
            archive.add_host_file(merged_usr(extension), extension);
        }
        let all: Vec<&Path> = self.programs().chain(&self.xtables_extensions).map(PathBuf::as_path).collect();
        for library in shared_libraries(&all)? {
            archive.add_host_file(merged_usr(&library), library);
        }
        Ok(archive)
    }
}

/// Finds a program in the usual directories, or says which package provides it.
fn host_program(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("{name} not found; install Debian package {package}"))
}

/// Applet paths relative to /, e.g. `bin/sh`, `sbin/insmod`.
fn busybox_applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !output.status.success() {
        bail!("{} --list-full failed ({})", busybox.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
}

/// The shared libraries (and the dynamic loader) the given ELF files load,
/// as `ldd` resolves them on this host. Empty for static executables.
fn shared_libraries(files: &[&Path]) -> anyhow::Result<BTreeSet<PathBuf>> {
    let output = Command::new("ldd").args(files).output().context("running ldd (Debian package libc-bin)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && !stdout.contains("statically linked") {
        // ldd fails for static executables ("not a dynamic executable").
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("not a dynamic executable") {
            bail!("ldd {files:?} failed ({}): {}{}", output.status, stdout, stderr.trim());
        }
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {files:?}"))
}

fn parse_ldd(stdout: &str) -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut libraries = BTreeSet::new();
    // Lines without a leading tab name the file when ldd is given several.
    for line in stdout.lines().filter_map(|line| line.strip_prefix('\t')) {
        let resolved = match line.split_once(" => ") {
            Some((name, "not found")) => bail!("library {name} not found"),
            Some((_, resolved)) => resolved,
            None => line, // the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
        };
        let path = resolved.split(" (0x").next().unwrap_or(resolved);
        // Skips the vDSO, which has no file.
        if path.starts_with('/') {
            libraries.insert(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// Where a host path lives in the guest: `/lib/x` becomes `/usr/lib/x` when the
/// host's `/lib` is a symlink to `usr/lib`, so the guest never has a directory
/// where the tools archive put a symlink.
fn merged_usr(path: &Path) -> PathBuf {
    let mut components = path.components();
    let (Some(root), Some(top)) = (components.next(), components.next()) else {
        return path.to_path_buf();
    };
    let top_path = Path::new(root.as_os_str()).join(top);
    match fs::read_link(&top_path) {
        Ok(target) if target.is_relative() => Path::new("/").join(target).join(components.as_path()),
        _ => path.to_path_buf(),
    }
}

fn is_elf(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"\x7fELF")
}

fn file_name(path: &Path) -> anyhow::Result<&std::ffi::OsStr> {
    path.file_name().with_context(|| format!("{} has no file name", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let stdout = "/usr/sbin/ip:\n\
            \tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f4c)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f4c)\n\
            /usr/bin/busybox:\n\
            \tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f4c)\n";
        let libraries: Vec<_> = parse_ldd(stdout).unwrap().into_iter().collect();
        assert_eq!(
            libraries,
            [Path::new("/lib/x86_64-linux-gnu/libbpf.so.1"), Path::new("/lib64/ld-linux-x86-64.so.2")]
        );
        assert!(parse_ldd("\tlibpcap.so.0.8 => not found\n").is_err());
    }
}
