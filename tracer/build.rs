//! Builds tracer-ebpf for bpfel-unknown-none (nightly, bpf-linker) and leaves
//! the object in OUT_DIR, where main.rs embeds it, without its debug
//! information and BTF.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use object::build::elf::SectionData;

fn main() -> anyhow::Result<()> {
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
