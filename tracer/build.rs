//! Builds tracer-ebpf for bpfel-unknown-none (nightly, bpf-linker) and leaves
//! the object in OUT_DIR, where main.rs embeds it, without its debug
//! information and BTF. Also names the commit for `--version`
//! (`SKBTRACE_COMMIT`).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow};
use object::build::elf::SectionData;

fn main() -> anyhow::Result<()> {
    println!("cargo:rustc-env=SKBTRACE_COMMIT={}", commit());
    let cargo_metadata::Metadata { packages, .. } =
        cargo_metadata::MetadataCommand::new().no_deps().exec().context("reading the workspace's metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found in the workspace"))?;
    let root_dir =
        ebpf.manifest_path.parent().ok_or_else(|| anyhow!("tracer-ebpf's manifest has no parent directory"))?;
    let package = aya_build::Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)
        .context("building tracer-ebpf; run `cargo xtask setup` if nightly, rust-src or bpf-linker is missing")?;
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR is not set")?;
    strip(&Path::new(&out_dir).join("tracer-ebpf"))
}

/// The short hash of the checked-out commit, or `unknown` outside a git
/// checkout (a source tarball, a crate) or without git. Asks cargo to run
/// this again when HEAD moves: HEAD itself (a checkout), and the branch it
/// points to (a commit), loose or packed. In a worktree HEAD lives in the
/// worktree's git directory and the branches in the common one.
fn commit() -> String {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let Some(hash) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let git_dir = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
    let common_dir = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).map(PathBuf::from);
    let branch = git(&["symbolic-ref", "--quiet", "HEAD"]);
    let mut watched: Vec<PathBuf> = git_dir.iter().map(|d| d.join("HEAD")).collect();
    if let (Some(common), Some(branch)) = (&common_dir, &branch) {
        watched.push(common.join(branch));
        watched.push(common.join("packed-refs"));
    }
    // A path that does not exist would make cargo rerun this every build.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    hash
}

/// Removes DWARF and BTF, four fifths of the object. aya-build always asks
/// for both, but skbtrace loads its programs without BTF, and parsing them
/// at every start took a tenth of a second in a TCG VM.
fn strip(path: &Path) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut elf = object::build::elf::Builder::read(data.as_slice()).context("parsing the eBPF object")?;
    for section in elf.sections.iter_mut() {
        let name = section.name.as_slice();
        let target = name.strip_prefix(b".rel").unwrap_or(name);
        if target.starts_with(b".debug") || target == b".BTF" || target == b".BTF.ext" {
            section.delete = true;
        }
    }
    elf.delete_orphans();
    // bpf-linker names sections from the symbol string table, which the
    // builder reads as that table only: give the names a table of their own.
    if !elf.sections.iter().any(|s| matches!(s.data, SectionData::SectionString)) {
        let names = elf.sections.add();
        names.name = b".shstrtab".to_vec().into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = SectionData::SectionString;
    }
    let mut out = Vec::new();
    elf.write(&mut out).context("writing the stripped eBPF object")?;
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
