//! Answers every question about the running kernel's layout from its BTF:
//! which functions and tracepoints take an skb and where, field offsets, and
//! enum names (drop reasons). Nothing kernel-specific is compiled in.

pub mod conntrack;
pub mod ctype;
pub mod nft;
mod reader;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use anyhow::{Context as _, anyhow};
use reader::{
    Blob, KIND_ENUM, KIND_ENUM64, KIND_FUNC, KIND_FUNC_PROTO, KIND_PTR, KIND_STRUCT, KIND_TYPEDEF, KIND_UNION, Type,
};
use tracer_common::config::{CtOffsets, OFFSET_NONE, Offsets, SKB_READ_MAX};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// The running kernel's BTF directory: vmlinux and one file per loaded module.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";

/// The kernel has no BTF; callers exit 1 with this message.
#[derive(Debug)]
pub struct NoBtf;

impl std::fmt::Display for NoBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this kernel has no BTF ({VMLINUX} is missing): skbtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        )
    }
}

impl std::error::Error for NoBtf {}

pub struct KernelBtf {
    vmlinux: Arc<Blob>,
    /// Where module BTF files are: `/sys/kernel/btf`, or the directory of a
    /// `--kernel-btf` file.
    modules_dir: PathBuf,
    /// The file name of vmlinux's BTF in `modules_dir`, which is not a module.
    vmlinux_name: String,
    /// Whether vmlinux's BTF came from `--kernel-btf` rather than the kernel.
    external: bool,
    /// Module BTFs (split on vmlinux) opened with `--kmods`.
    modules: Vec<(String, Blob)>,
    /// Ids of vmlinux's structs and enums by name, built on first use: the
    /// offsets and drop reasons look up some twenty of them, and each
    /// lookup would otherwise walk every type.
    by_name: OnceLock<HashMap<String, Vec<u32>>>,
}

/// Which argument of a function or tracepoint is the skb: 0-based
/// everywhere in skbtrace, printed 1-based as pwru prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkbArg(pub u8);

impl std::fmt::Display for SkbArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0 + 1)
    }
}

/// A function that takes a `struct sk_buff *`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkbFunc {
    pub name: String,
    pub skb: SkbArg,
    /// Module name, or empty for vmlinux.
    pub module: String,
}

impl KernelBtf {
    /// The running kernel's BTF ([`VMLINUX`]).
    pub fn open() -> anyhow::Result<Self> {
        Self::open_path(Path::new(VMLINUX))
    }

    /// The running kernel's BTF, or with `Some(file)` pwru's `--kernel-btf
    /// FILE`: a vmlinux BTF from elsewhere (btfhub, `bpftool btf dump file
    /// /sys/kernel/btf/vmlinux format raw`, or an ELF `vmlinux` with a
    /// `.BTF` section). Module BTF then comes from files beside `file`, named
    /// like the modules (see [`add_modules`](Self::add_modules)).
    pub fn open_from(file: Option<&Path>) -> anyhow::Result<Self> {
        let Some(file) = file else { return Self::open() };
        let vmlinux = Blob::from_file(file, None).with_context(|| {
            format!("reading the kernel BTF given by --kernel-btf {}; it must be a BTF file or an ELF vmlinux with a .BTF section", file.display())
        })?;
        Ok(Self::new(vmlinux, file, true))
    }

    pub fn open_path(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            return Err(NoBtf.into());
        }
        let vmlinux = Blob::from_file(path, None).context("reading the kernel's BTF")?;
        Ok(Self::new(vmlinux, path, false))
    }

    /// `path` is vmlinux's BTF file; module BTF files are beside it.
    fn new(vmlinux: Blob, path: &Path, external: bool) -> Self {
        let modules_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let vmlinux_name = path.file_name().map_or_else(|| "vmlinux".to_owned(), |n| n.to_string_lossy().into_owned());
        Self {
            vmlinux: Arc::new(vmlinux),
            modules_dir,
            vmlinux_name,
            external,
            modules: Vec::new(),
            by_name: OnceLock::new(),
        }
    }

    /// Whether vmlinux's BTF came from a `--kernel-btf` file.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Where module BTF files are read from.
    pub fn modules_dir(&self) -> &Path {
        &self.modules_dir
    }

    /// Loads the BTF of kernel modules: `/sys/kernel/btf/<name>`, or with
    /// `--kernel-btf FILE`, `<FILE's directory>/<name>`. Module BTF is split
    /// BTF whose type ids continue vmlinux's, so it is only read from beside
    /// the vmlinux BTF it was made with. With `--kernel-btf`, a module with no
    /// file there is skipped with a note (its functions are not traced); it is
    /// returned among the skipped names. Without it, a missing module is an error.
    pub fn add_modules(&mut self, names: &[String]) -> anyhow::Result<Vec<String>> {
        let mut skipped = Vec::new();
        for name in names {
            let path = self.modules_dir.join(name);
            if self.external && !path.is_file() {
                crate::note!(
                    "not tracing kernel module {name}: no BTF file {} beside the --kernel-btf file",
                    path.display()
                );
                skipped.push(name.clone());
                continue;
            }
            let btf = Blob::from_file(&path, Some(self.vmlinux.clone()))
                .with_context(|| format!("reading the BTF of kernel module {name} from {}", path.display()))?;
            self.modules.push((name.clone(), btf));
        }
        Ok(skipped)
    }

    /// Names of every module whose BTF [`add_modules`](Self::add_modules)
    /// can read (for `--all-kmods`): the files of `/sys/kernel/btf`, or with
    /// `--kernel-btf`, the other files of its directory.
    pub fn available_modules(&self) -> anyhow::Result<Vec<String>> {
        list_modules(&self.modules_dir, &self.vmlinux_name)
    }

    /// Values and names of an enum, e.g. `skb_drop_reason`.
    pub fn enum_names(&self, name: &str) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        for ty in self.named(name).filter(|t| matches!(t.kind(), KIND_ENUM | KIND_ENUM64)) {
            for value in ty.members() {
                out.entry(value.value).or_insert_with(|| value.name().to_owned());
            }
        }
        out
    }

    /// Byte offset of `path` (dot-separated, through anonymous members) in
    /// `struct name`.
    pub fn offset_of(&self, name: &str, path: &str) -> Option<u32> {
        let mut ty = self.find_struct(name)?;
        let mut total = 0u32;
        for part in path.split('.') {
            let (off, member_type) = member(ty, part)?;
            total += off;
            ty = member_type;
        }
        Some(total)
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        Some(self.find_struct(name)?.size())
    }

    /// The definition of `struct name` (not a forward declaration).
    fn find_struct(&self, name: &str) -> Option<Type<'_>> {
        self.named(name).find(|t| t.kind() == KIND_STRUCT && t.members().next().is_some())
    }

    /// vmlinux's structs and enums called `name`.
    fn named(&self, name: &str) -> impl Iterator<Item = Type<'_>> {
        let index = self.by_name.get_or_init(|| {
            let mut index: HashMap<String, Vec<u32>> = HashMap::new();
            for t in self.vmlinux.types().filter(|t| matches!(t.kind(), KIND_STRUCT | KIND_ENUM | KIND_ENUM64)) {
                if !t.name().is_empty() {
                    index.entry(t.name().to_owned()).or_default().push(t.id);
                }
            }
            index
        });
        index.get(name).into_iter().flatten().filter_map(|&id| self.vmlinux.get(id))
    }

    /// Offsets of every field the eBPF programs read.
    pub fn offsets(&self) -> anyhow::Result<Offsets> {
        let need = |s: &str, p: &str| {
            self.offset_of(s, p)
                .ok_or_else(|| anyhow!("the kernel's BTF has no {s}.{p}; this kernel's layout is not supported"))
        };
        let opt = |s: &str, p: &str| self.offset_of(s, p).unwrap_or(OFFSET_NONE);
        Ok(Offsets {
            skb_head: need("sk_buff", "head")?,
            skb_data: need("sk_buff", "data")?,
            skb_len: need("sk_buff", "len")?,
            skb_mark: opt("sk_buff", "mark"),
            skb_protocol: need("sk_buff", "protocol")?,
            skb_mac_header: need("sk_buff", "mac_header")?,
            skb_network_header: need("sk_buff", "network_header")?,
            skb_tail: need("sk_buff", "tail")?,
            skb_dev: need("sk_buff", "dev")?,
            skb_sk: opt("sk_buff", "sk"),
            dev_ifindex: need("net_device", "ifindex")?,
            dev_name: need("net_device", "name")?,
            dev_mtu: need("net_device", "mtu")?,
            dev_nd_net: opt("net_device", "nd_net.net"),
            sk_net: opt("sock", "__sk_common.skc_net.net"),
            net_inum: opt("net", "ns.inum"),
            skb_read_len: self.struct_size("sk_buff").unwrap_or(0).min(SKB_READ_MAX),
            // Off, not an error, without conntrack: `conntrack_offsets` says why.
            ct: self.conntrack_offsets().unwrap_or(CtOffsets::NONE),
        })
    }

    /// Every function taking a `struct sk_buff *` in argument 1–5, in
    /// vmlinux and in the loaded module BTFs.
    pub fn skb_functions(&self) -> Vec<SkbFunc> {
        let mut out = Vec::new();
        collect_skb_functions(&self.vmlinux, "", &mut out);
        for (module, btf) in &self.modules {
            collect_skb_functions(btf, module, &mut out);
        }
        out
    }

    /// Tracepoints whose arguments include a `struct sk_buff *`, from the
    /// `btf_trace_<name>` typedefs: name, where the skb is in the
    /// tracepoint's own argument list, and the typedef's id.
    pub fn skb_tracepoints(&self) -> Vec<(String, SkbArg, u32)> {
        let mut out = Vec::new();
        for td in self.vmlinux.types().filter(|t| t.kind() == KIND_TYPEDEF) {
            let Some(tp) = td.name().strip_prefix("btf_trace_") else { continue };
            let Some(ptr) = td.referred().filter(|t| t.kind() == KIND_PTR) else { continue };
            let Some(proto) = ptr.referred().filter(|t| t.kind() == KIND_FUNC_PROTO) else { continue };
            // The first parameter is the tracepoint's `void *__data`.
            if let Some(pos) = proto.members().skip(1).position(|p| is_skb_ptr(p.ty())) {
                out.push((tp.to_owned(), SkbArg(pos as u8), td.id));
            }
        }
        out
    }
}

/// File names in `dir` other than `vmlinux` (the base BTF), sorted.
fn list_modules(dir: &Path, vmlinux: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing module BTF files in {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing module BTF files in {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != vmlinux && entry.file_type().is_ok_and(|t| !t.is_dir()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Finds a member by name, descending into anonymous structs and unions;
/// returns its byte offset and its type with typedefs stripped.
fn member<'a>(ty: Type<'a>, name: &str) -> Option<(u32, Type<'a>)> {
    if !matches!(ty.kind(), KIND_STRUCT | KIND_UNION) {
        return None;
    }
    for m in ty.members() {
        let off = m.extra / 8;
        let Some(member_type) = m.ty().and_then(Type::strip) else { continue };
        let member_name = m.name();
        if member_name == name {
            return Some((off, member_type));
        }
        if member_name.is_empty()
            && let Some((inner, t)) = member(member_type, name)
        {
            return Some((off + inner, t));
        }
    }
    None
}

fn collect_skb_functions(btf: &Blob, module: &str, out: &mut Vec<SkbFunc>) {
    for func in btf.types().filter(|t| t.kind() == KIND_FUNC) {
        let Some(proto) = func.referred().filter(|t| t.kind() == KIND_FUNC_PROTO) else { continue };
        let Some(pos) = proto.members().take(5).position(|p| is_skb_ptr(p.ty())) else { continue };
        out.push(SkbFunc { name: func.name().to_owned(), skb: SkbArg(pos as u8), module: module.to_owned() });
    }
}

/// Whether `ty` is a pointer to (a qualified or typedef'd) `struct sk_buff`.
/// Like pwru, a parameter typed through a typedef of the pointer is not.
fn is_skb_ptr(ty: Option<Type<'_>>) -> bool {
    let Some(ptr) = ty.filter(|t| t.kind() == KIND_PTR) else { return false };
    ptr.referred().and_then(Type::strip).is_some_and(|t| t.kind() == KIND_STRUCT && t.name() == "sk_buff")
}

#[cfg(test)]
mod tests;
