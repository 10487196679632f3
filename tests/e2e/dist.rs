//! `cargo xtask dist`: the folder people install from, checked as they would
//! check it. The first run builds a static release (minutes); later runs
//! reuse it and the cached static libpcap (about a second). The VM tests
//! (`vm.rs`) run the scenarios with the binary from this folder.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use object::read::elf::{Dyn as _, ElfFile64, ProgramHeader as _};

/// The dist folder, built once per run of this test binary (the dist test
/// and both VM tests share it).
pub fn folder() -> &'static Path {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(dist)
}

/// The folder's skbtrace, checked to be static, and its SHA-256 as the
/// folder's `SHA256SUMS` lists it.
pub fn static_binary() -> (PathBuf, String) {
    let folder = folder();
    let bin = folder.join("skbtrace");
    assert_static(&bin);
    let sums = std::fs::read_to_string(folder.join("SHA256SUMS")).expect("reading the dist folder's SHA256SUMS");
    let sum = sums
        .lines()
        .find_map(|l| l.strip_suffix("  skbtrace"))
        .unwrap_or_else(|| panic!("SHA256SUMS lists no skbtrace:\n{sums}"));
    (bin, sum.to_owned())
}

/// Runs `cargo xtask dist` and returns the folder it printed.
fn dist() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(testkit::workspace_root())
        .args(["xtask", "dist"])
        .output()
        .expect("running cargo xtask dist");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo xtask dist failed ({}):\n{stderr}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("cargo xtask dist printed something other than UTF-8");
    PathBuf::from(stdout.lines().last().expect("cargo xtask dist printed no folder"))
}

/// `git rev-parse --short HEAD`, or None outside a git checkout; under CI
/// that is a failure, since the commit in `--version` then goes unchecked.
fn head_commit() -> Option<String> {
    let out =
        Command::new("git").current_dir(testkit::workspace_root()).args(["rev-parse", "--short", "HEAD"]).output();
    let head = out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if head.is_none() {
        assert!(std::env::var_os("CI").is_none(), "dist: git rev-parse HEAD failed and CI is set: this is a failure");
        eprintln!("dist: not a git checkout (or no git): not checking the commit in --version");
    }
    head
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(out.status.success(), "{} {args:?} exited with {}", bin.display(), out.status);
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

/// What `ldd` would say, from the ELF headers: no dynamic loader
/// (PT_INTERP) and no shared library (DT_NEEDED).
fn assert_static(bin: &Path) {
    let data = std::fs::read(bin).expect("reading the dist binary");
    let elf = ElfFile64::<object::Endianness>::parse(data.as_slice()).expect("the dist binary is a 64-bit ELF");
    let endian = elf.endian();
    for segment in elf.elf_program_headers() {
        assert_ne!(segment.p_type(endian), object::elf::PT_INTERP, "the dist binary asks for a dynamic loader");
        if let Some(dynamic) = segment.dynamic(endian, data.as_slice()).expect("reading the dynamic section") {
            let needed = dynamic.iter().filter(|d| d.d_tag(endian) == object::elf::DT_NEEDED).count();
            assert_eq!(needed, 0, "the dist binary needs shared libraries");
        }
    }
}

/// `sha256sum -c FILE` in `dir`, as a user checks a download.
fn assert_checksums(dir: &Path, file: &str) {
    let out = Command::new("sha256sum").current_dir(dir).args(["--check", "--strict", file]).output();
    let out = out.expect("running sha256sum");
    assert!(
        out.status.success(),
        "sha256sum -c {file} in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn dist_folder_holds_a_static_binary_completions_man_page_and_checksums() {
    let folder = folder();
    let bin = folder.join("skbtrace");
    assert_static(&bin);

    let version = run(&bin, &["--version"]);
    assert!(version.starts_with("skbtrace "), "{version}");
    if let Some(head) = head_commit() {
        assert!(version.contains(&format!("({head})")), "--version {version:?} does not name HEAD {head}");
    }
    assert!(run(&bin, &["--help"]).contains("--filter-func"));

    let bash = run(&bin, &["--generate", "bash"]);
    for flag in ["--filter-func", "--output-json"] {
        assert!(bash.contains(flag), "bash completions do not offer {flag}");
    }
    let shipped = std::fs::read_to_string(folder.join("completions/skbtrace.bash"))
        .expect("reading the shipped bash completions");
    assert_eq!(shipped, bash, "the shipped bash completions are not what the binary generates");
    for file in ["completions/_skbtrace", "completions/skbtrace.fish"] {
        let text = std::fs::read_to_string(folder.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        assert!(text.contains("filter-func"), "{file} does not offer --filter-func");
    }

    let man = std::fs::read_to_string(folder.join("man/skbtrace.1")).expect("reading the man page");
    assert!(man.lines().any(|l| l.starts_with(".TH skbtrace 1")), "no .TH line in the man page");
    for flag in ["--filter-func", "--output-json"] {
        // roff writes a dash as \-.
        assert!(man.contains(&flag.replace('-', "\\-")), "the man page does not describe {flag}");
    }

    assert_checksums(folder, "SHA256SUMS");
    let name = folder.file_name().and_then(|n| n.to_str()).expect("the folder has a name");
    let dist_dir = folder.parent().expect("the folder has a parent");
    assert_checksums(dist_dir, &format!("{name}.tar.gz.sha256"));
}
