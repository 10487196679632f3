//! Kernel modules for the VM: finding them in the extracted package, ordering
//! them so that each loads after what it depends on, and decompressing them.
//!
//! Debian's image packages ship no `modules.dep` (depmod runs in postinst), so
//! dependencies come from each module's own `.modinfo` section (`depends=`), the
//! same field depmod reads.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::kernel::KernelImage;

/// Modules the test scenarios need: veth pairs, bridges, conntrack, iptables
/// NAT/filter/REJECT on IPv4 and IPv6 (legacy iptables), nf_tables (with
/// iptables-nft's compat matches) for `--nft-trace`.
pub const SCENARIO_MODULES: &[&str] = &[
    "veth",
    "bridge",
    "nf_conntrack",
    "nf_nat",
    "nf_defrag_ipv4",
    "nf_defrag_ipv6",
    "iptable_filter",
    "iptable_nat",
    "ip6table_filter",
    "ip6table_nat",
    "ipt_REJECT",
    "ip6t_REJECT",
    "xt_nat",
    "xt_MASQUERADE",
    "xt_conntrack",
    "xt_tcpudp",
    "iptable_mangle",
    "xt_mark",
    "nf_tables",
    "nft_compat",
];

/// A module ready to copy into the initramfs.
pub struct Module {
    pub name: String,
    /// An uncompressed `.ko` on the host, so the guest's modprobe needs no decompressor.
    pub file: PathBuf,
    /// Modules it needs loaded first (direct dependencies, not built-in ones).
    pub depends: Vec<String>,
}

/// Returns `wanted` and everything they depend on, dependencies first.
/// Modules built into the kernel are left out.
pub fn prepare(image: &KernelImage, wanted: &[String]) -> anyhow::Result<Vec<Module>> {
    let tree = ModuleTree::read(&image.modules_dir)?;
    let plain_dir = image.cache_dir.join("modules");
    fs::create_dir_all(&plain_dir).with_context(|| format!("creating {}", plain_dir.display()))?;
    let mut files = HashMap::new();
    let order = load_order(wanted, |name| {
        if tree.builtin.contains(name) {
            return Ok(None);
        }
        let packaged = tree.files.get(name).with_context(|| {
            format!(
                "module {name} is neither in {} nor built into kernel {}",
                image.modules_dir.display(),
                image.release
            )
        })?;
        let plain = decompressed(packaged, &plain_dir.join(format!("{name}.ko")))?;
        let elf = fs::read(&plain).with_context(|| format!("reading {}", plain.display()))?;
        let depends = modinfo_depends(&elf).with_context(|| format!("reading modinfo of {name}"))?;
        files.insert(name.to_owned(), (plain, depends.clone()));
        Ok(Some(depends))
    })?;
    Ok(order
        .into_iter()
        .map(|name| {
            let (file, mut depends) = files.remove(&name).expect("resolved above");
            depends.retain(|dep| !tree.builtin.contains(dep));
            Module { name, file, depends }
        })
        .collect())
}

/// A `modules.dep` for modules in load order, all in one directory, as
/// busybox's modprobe reads it: each line lists every module the first one
/// needs, directly or not, in the order depmod writes them (the last is
/// loaded first).
pub fn modules_dep(modules: &[Module]) -> String {
    let mut transitive: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut dep = String::new();
    for module in modules {
        // Dependencies come earlier in load order, so theirs are already known.
        let mut needs: Vec<&str> = Vec::new();
        for direct in &module.depends {
            for name in transitive.get(direct.as_str()).into_iter().flatten().chain([&direct.as_str()]) {
                if !needs.contains(name) {
                    needs.push(name);
                }
            }
        }
        needs.sort_by_key(|name| modules.iter().position(|m| m.name == *name));
        dep.push_str(&format!("{}.ko:", module.name));
        for name in needs.iter().rev() {
            dep.push_str(&format!(" {name}.ko"));
        }
        dep.push('\n');
        transitive.insert(&module.name, needs);
    }
    dep
}

struct ModuleTree {
    /// Module name (`nf_conntrack`) to its file in the package.
    files: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl ModuleTree {
    fn read(modules_dir: &Path) -> anyhow::Result<Self> {
        let mut files = HashMap::new();
        let mut dirs = vec![modules_dir.join("kernel")];
        while let Some(dir) = dirs.pop() {
            let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Some(name) = module_name(&path) {
                    files.insert(name, path);
                }
            }
        }
        let builtin_list = modules_dir.join("modules.builtin");
        let builtin = fs::read_to_string(&builtin_list)
            .with_context(|| format!("reading {}", builtin_list.display()))?
            .lines()
            .filter_map(|line| module_name(Path::new(line)))
            .collect();
        Ok(ModuleTree { files, builtin })
    }
}

/// `kernel/net/bridge/bridge.ko.xz` -> `bridge`. Names use `_` where files may
/// use `-`, as in `depends=`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].into_iter().find_map(|suffix| file.strip_suffix(suffix))?;
    Some(stem.replace('-', "_"))
}

/// Returns an uncompressed copy of `packaged` at `plain`, decompressing only if
/// the cache does not have it yet.
fn decompressed(packaged: &Path, plain: &Path) -> anyhow::Result<PathBuf> {
    let tool = match packaged.extension().and_then(|e| e.to_str()) {
        Some("ko") => return Ok(packaged.to_path_buf()),
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("unexpected module file {}", packaged.display()),
    };
    if plain.exists() {
        return Ok(plain.to_path_buf());
    }
    let output = Command::new(tool)
        .arg("-dc")
        .arg(packaged)
        .output()
        .with_context(|| format!("starting {tool}; install it (Debian package xz-utils or zstd)"))?;
    if !output.status.success() {
        bail!("{tool} -dc {} failed: {}", packaged.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    // Write then rename: parallel runs may decompress the same module.
    let partial = plain.with_extension(format!("ko.partial{}", std::process::id()));
    fs::write(&partial, &output.stdout).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, plain).with_context(|| format!("renaming to {}", plain.display()))?;
    Ok(plain.to_path_buf())
}

/// Orders `wanted` and their dependencies so that each comes after everything
/// it depends on. `depends` returns a module's direct dependencies, or `None`
/// for a module that needs no loading (built in).
fn load_order(
    wanted: &[String],
    mut depends: impl FnMut(&str) -> anyhow::Result<Option<Vec<String>>>,
) -> anyhow::Result<Vec<String>> {
    enum Visit {
        Enter(String),
        Leave(String),
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<Visit> = wanted.iter().rev().map(|m| Visit::Enter(m.clone())).collect();
    while let Some(visit) = stack.pop() {
        match visit {
            Visit::Enter(name) => {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(deps) = depends(&name)? else {
                    continue;
                };
                stack.push(Visit::Leave(name));
                stack.extend(deps.into_iter().rev().map(Visit::Enter));
            }
            Visit::Leave(name) => order.push(name),
        }
    }
    Ok(order)
}

/// The `depends=` list from a module's `.modinfo` section.
fn modinfo_depends(elf: &[u8]) -> anyhow::Result<Vec<String>> {
    let modinfo = elf_section(elf, ".modinfo").context("no .modinfo section")?;
    let depends = modinfo.split(|&b| b == 0).find_map(|field| field.strip_prefix(b"depends=")).unwrap_or_default();
    Ok(std::str::from_utf8(depends)
        .context("depends= is not UTF-8")?
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| name.replace('-', "_"))
        .collect())
}

/// The contents of a named section of a 64-bit little-endian ELF file.
fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?) as usize);
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?) as usize);
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?) as usize);
    // ELFCLASS64, ELFDATA2LSB: the only kind x86-64 modules come in.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let section = |index: usize| {
        let header = shoff + index * shentsize;
        let (name, offset, size) = (u32_at(header)?, u64_at(header + 24)?, u64_at(header + 32)?);
        Some((name, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    (0..shnum).find_map(|index| {
        let (name, contents) = section(index)?;
        let name = names.get(name..)?.split(|&b| b == 0).next()?;
        (name == wanted.as_bytes()).then_some(contents)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a section-name table and a `.modinfo` section.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        for (name, offset, size) in [(0, 0, 0), (1, names_at, names.len()), (11, modinfo_at, modinfo.len())] {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&(name as u32).to_le_bytes());
            header[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            header[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=nf_conntrack,nf-defrag-ipv6\0name=nf_nat\0");
        assert_eq!(modinfo_depends(&elf).unwrap(), ["nf_conntrack", "nf_defrag_ipv6"]);
        let elf = elf_with_modinfo(b"depends=\0name=veth\0");
        assert!(modinfo_depends(&elf).unwrap().is_empty());
        assert!(modinfo_depends(b"not an elf").is_err());
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let graph: HashMap<&str, Vec<&str>> = HashMap::from([
            ("iptable_nat", vec!["ip_tables", "nf_nat"]),
            ("nf_nat", vec!["nf_conntrack", "libcrc32c"]),
            ("nf_conntrack", vec!["nf_defrag_ipv4", "libcrc32c"]),
            ("ip_tables", vec!["x_tables"]),
            ("xt_nat", vec!["nf_nat", "x_tables"]),
            ("x_tables", vec![]),
            ("nf_defrag_ipv4", vec![]),
            ("veth", vec![]),
        ]);
        let wanted = ["veth", "xt_nat", "iptable_nat"].map(String::from);
        let order = load_order(&wanted, |name| {
            // libcrc32c stands for a module built into the kernel.
            if name == "libcrc32c" {
                return Ok(None);
            }
            let deps = graph.get(name).with_context(|| format!("no {name}"))?;
            Ok(Some(deps.iter().map(|d| d.to_string()).collect()))
        })
        .unwrap();
        assert_eq!(
            order,
            ["veth", "nf_defrag_ipv4", "nf_conntrack", "nf_nat", "x_tables", "xt_nat", "ip_tables", "iptable_nat"]
        );
    }

    #[test]
    fn writes_modules_dep_with_all_dependencies() {
        let module = |name: &str, depends: &[&str]| Module {
            name: name.to_owned(),
            file: PathBuf::new(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
        };
        let modules = [
            module("nf_defrag_ipv4", &[]),
            module("nf_conntrack", &["nf_defrag_ipv4"]),
            module("nf_nat", &["nf_conntrack"]),
            module("x_tables", &[]),
            module("xt_nat", &["nf_nat", "x_tables"]),
        ];
        assert_eq!(
            modules_dep(&modules),
            "nf_defrag_ipv4.ko:\n\
             nf_conntrack.ko: nf_defrag_ipv4.ko\n\
             nf_nat.ko: nf_conntrack.ko nf_defrag_ipv4.ko\n\
             x_tables.ko:\n\
             xt_nat.ko: x_tables.ko nf_nat.ko nf_conntrack.ko nf_defrag_ipv4.ko\n"
        );
    }

    #[test]
    fn names_modules_like_depmod() {
        assert_eq!(module_name(Path::new("kernel/net/bridge/bridge.ko.xz")).as_deref(), Some("bridge"));
        assert_eq!(module_name(Path::new("kernel/x/nf-foo.ko")).as_deref(), Some("nf_foo"));
        assert_eq!(module_name(Path::new("modules.order")), None);
    }
}
