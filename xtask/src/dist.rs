//! `cargo xtask dist`: skbtrace as people install it. One folder,
//! `target/dist/skbtrace-<version>-x86_64-linux/`, holding a statically
//! linked release binary (the eBPF object is embedded, libpcap linked in,
//! glibc static), its shell completions and man page (from the binary's own
//! `--generate`), the README and `SHA256SUMS`; next to it the folder as a
//! `.tar.gz` with its `.sha256`. Prints the folder's path on stdout.

mod deb_source;
mod libpcap;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};
use object::read::elf::{Dyn as _, ElfFile64, ProgramHeader as _};
use testkit::workspace_root;

/// glibc, linked statically (`+crt-static`). The musl target would need
/// its own libpcap build with musl-gcc and musl's slower allocator.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// What `--generate` writes, and where it goes in the folder.
const GENERATED: &[(&str, &str)] = &[
    ("bash", "completions/skbtrace.bash"),
    ("zsh", "completions/_skbtrace"),
    ("fish", "completions/skbtrace.fish"),
    ("man", "man/skbtrace.1"),
];

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let target_dir = target_dir();
    let libpcap = libpcap::static_lib(&target_dir.join("dist/libpcap"))?;
    let bin = build(&target_dir, &libpcap)?;
    check_static(&bin)?;
    let folder = assemble(&bin, &target_dir.join("dist"))?;
    eprintln!("xtask: dist done in {:.0?}: {}", started.elapsed(), folder.display());
    println!("{}", folder.display());
    Ok(())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, as cargo does.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The release build for [`TARGET`], against the static libpcap. Naming
/// the target keeps `+crt-static` off build scripts and proc macros, and
/// the result in its own directory, apart from the ordinary release build.
fn build(target_dir: &Path, libpcap: &libpcap::Libpcap) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let target_env = TARGET.to_uppercase().replace('-', "_");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--package", "tracer", "--bin", "skbtrace", "--target", TARGET])
        .env("LIBPCAP_LIBDIR", &libpcap.lib_dir)
        .env("LIBPCAP_VER", &libpcap.version)
        .env(format!("CARGO_TARGET_{target_env}_RUSTFLAGS"), "-C target-feature=+crt-static")
        // Either would take precedence over the target's flags above.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run_cmd(&mut cmd).context("building the static skbtrace failed")?;
    eprintln!("xtask: static skbtrace built in {:.0?}", started.elapsed());
    Ok(target_dir.join(TARGET).join("release/skbtrace"))
}

/// Fails unless `bin` is a static executable: no program interpreter (the
/// dynamic loader) and no shared library needed.
fn check_static(bin: &Path) -> anyhow::Result<()> {
    let data = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let elf = ElfFile64::<object::Endianness>::parse(data.as_slice())
        .with_context(|| format!("parsing {} as a 64-bit ELF", bin.display()))?;
    let endian = elf.endian();
    for segment in elf.elf_program_headers() {
        ensure!(
            segment.p_type(endian) != object::elf::PT_INTERP,
            "{} asks for a dynamic loader (PT_INTERP): it is not statically linked",
            bin.display()
        );
        if let Some(dynamic) = segment.dynamic(endian, data.as_slice()).context("reading the dynamic section")? {
            let needed = dynamic.iter().filter(|d| d.d_tag(endian) == object::elf::DT_NEEDED).count();
            ensure!(needed == 0, "{} needs {needed} shared libraries (DT_NEEDED)", bin.display());
        }
    }
    Ok(())
}

/// Fills the folder (made afresh) and writes the tarball and checksums.
fn assemble(bin: &Path, dist: &Path) -> anyhow::Result<PathBuf> {
    let version_line = output(Command::new(bin).arg("--version"))?;
    let version = env!("CARGO_PKG_VERSION");
    ensure!(
        version_line.starts_with(&format!("skbtrace {version} (")),
        "{} --version says {version_line:?}, expected skbtrace {version} (commit)",
        bin.display()
    );
    let name = format!("skbtrace-{version}-x86_64-linux");
    let folder = dist.join(&name);
    if folder.exists() {
        fs::remove_dir_all(&folder).with_context(|| format!("removing the old {}", folder.display()))?;
    }
    for sub in ["completions", "man"] {
        fs::create_dir_all(folder.join(sub)).with_context(|| format!("creating {}", folder.join(sub).display()))?;
    }
    fs::copy(bin, folder.join("skbtrace")).with_context(|| format!("copying {}", bin.display()))?;
    fs::copy(workspace_root().join("README.md"), folder.join("README.md")).context("copying README.md")?;
    for (kind, file) in GENERATED {
        let text = output(Command::new(bin).args(["--generate", kind]))?;
        fs::write(folder.join(file), text).with_context(|| format!("writing {file}"))?;
    }

    let mut files: Vec<&str> = vec!["README.md", "skbtrace"];
    files.extend(GENERATED.iter().map(|(_, file)| *file));
    files.sort_unstable();
    let sums = output(Command::new("sha256sum").current_dir(&folder).args(&files))?;
    fs::write(folder.join("SHA256SUMS"), sums).context("writing SHA256SUMS")?;

    let tarball = format!("{name}.tar.gz");
    let mut tar = Command::new("tar");
    tar.current_dir(dist).args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--use-compress-program=gzip -n",
    ]);
    if let Some(time) = commit_time() {
        tar.arg(format!("--mtime=@{time}"));
    }
    run_cmd(tar.args(["-cf", &tarball, &name])).context("packing the tarball")?;
    let sum = output(Command::new("sha256sum").current_dir(dist).arg(&tarball))?;
    fs::write(dist.join(format!("{tarball}.sha256")), sum).context("writing the tarball's checksum")?;
    Ok(folder)
}

/// The commit's time, so that the tarball's file times do not depend on
/// when it was built.
fn commit_time() -> Option<String> {
    let out = Command::new("git").current_dir(workspace_root()).args(["log", "-1", "--format=%ct"]).output().ok()?;
    let time = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !time.is_empty()).then_some(time)
}

/// Runs `cmd` and returns its standard output; fails with its standard
/// error when it fails.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed something other than UTF-8"))
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_refused() {
        // This test binary is linked dynamically, as cargo builds it.
        let me = std::env::current_exe().unwrap();
        let err = check_static(&me).unwrap_err().to_string();
        assert!(err.contains("PT_INTERP"), "{err}");
    }
}
