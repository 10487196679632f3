//! A read-only view of a BTF blob (vmlinux or a module's split BTF) that
//! indexes type offsets and nothing else. Names stay in the string section
//! and types are decoded when asked for: a start-up reads tens of thousands
//! of types but looks at a few hundred, and a parser that materializes all
//! of them (btf-rs: every string and type allocated) took 1.3 s of a
//! 6-second start in the test VM and most of skbtrace's peak memory.

use std::{path::Path, sync::Arc};

use anyhow::{Context as _, bail, ensure};

pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
pub const KIND_ENUM: u32 = 6;
pub const KIND_FWD: u32 = 7;
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_VOLATILE: u32 = 9;
pub const KIND_CONST: u32 = 10;
pub const KIND_RESTRICT: u32 = 11;
pub const KIND_FUNC: u32 = 12;
pub const KIND_FUNC_PROTO: u32 = 13;
pub const KIND_VAR: u32 = 14;
pub const KIND_DATASEC: u32 = 15;
pub const KIND_FLOAT: u32 = 16;
pub const KIND_DECL_TAG: u32 = 17;
pub const KIND_TYPE_TAG: u32 = 18;
pub const KIND_ENUM64: u32 = 19;

const MAGIC: u16 = 0xeb9f;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_LEN: usize = 12;

/// One BTF blob, with the base it extends when it is split BTF.
pub struct Blob {
    data: Vec<u8>,
    /// Byte offset in `data` of each type, from id `first_id` on.
    types: Vec<u32>,
    first_id: u32,
    strings: usize,
    strings_len: usize,
    /// Offsets below this name strings of `base`.
    first_string: u32,
    base: Option<Arc<Blob>>,
}

/// A type in a [`Blob`].
#[derive(Clone, Copy)]
pub struct Type<'a> {
    pub id: u32,
    blob: &'a Blob,
    at: usize,
}

/// A struct or union member, a function parameter, or an enum value.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    blob: &'a Blob,
    name_off: u32,
    /// Type id (members, parameters) or the value's low 32 bits (enums).
    pub value: u32,
    /// Members: the bit offset (bitfield size masked off). Enum64: the value's high bits.
    pub extra: u32,
    /// Members of a struct or union with `kind_flag`: the bitfield's width in bits, 0 when the
    /// member is not a bitfield. Always 0 for other kinds.
    pub bitfield_bits: u32,
}

impl Blob {
    /// Reads raw BTF (as in `/sys/kernel/btf`), or the `.BTF` section of an
    /// ELF file (a `vmlinux` built with BTF).
    pub fn from_file(path: &Path, base: Option<Arc<Blob>>) -> anyhow::Result<Self> {
        let mut data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if data.starts_with(b"\x7fELF") {
            data = elf_btf_section(&data).with_context(|| format!("finding the .BTF section of {}", path.display()))?;
        }
        Self::parse(data, base).with_context(|| format!("parsing BTF from {}", path.display()))
    }

    pub fn parse(data: Vec<u8>, base: Option<Arc<Blob>>) -> anyhow::Result<Self> {
        ensure!(data.len() >= 24, "too short for a BTF header");
        let u16_at = |at: usize| u16::from_le_bytes([data[at], data[at + 1]]);
        ensure!(u16_at(0) == MAGIC, "not little-endian BTF (magic {:#06x})", u16_at(0));
        ensure!(data[2] == 1, "unsupported BTF version {}", data[2]);
        let hdr_len = read_u32(&data, 4) as usize;
        let field = |i: usize| read_u32(&data, 8 + 4 * i) as usize;
        let (type_off, type_len, str_off, str_len) = (field(0), field(1), field(2), field(3));
        let type_start = hdr_len + type_off;
        let type_end = type_start + type_len;
        let strings = hdr_len + str_off;
        ensure!(type_end <= data.len() && strings + str_len <= data.len(), "sections extend past the end");

        let (first_id, first_string) = match &base {
            Some(b) => (b.first_id + b.types.len() as u32, b.first_string + b.strings_len as u32),
            // Id 0 is `void`, which has no entry.
            None => (1, 0),
        };
        let mut types = Vec::with_capacity(type_len / 16);
        let mut at = type_start;
        while at < type_end {
            ensure!(at + TYPE_LEN <= type_end, "truncated type at byte {at}");
            types.push(at as u32);
            let info = read_u32(&data, at + 4);
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
                | KIND_FLOAT | KIND_TYPE_TAG => 0,
                kind => bail!("unknown BTF kind {kind} at byte {at}"),
            };
            at += TYPE_LEN + extra;
        }
        ensure!(at == type_end, "the type section does not end on a type");
        Ok(Self { data, types, first_id, strings, strings_len: str_len, first_string, base })
    }

    pub fn types(&self) -> impl Iterator<Item = Type<'_>> {
        self.types.iter().enumerate().map(|(i, &at)| Type { id: self.first_id + i as u32, blob: self, at: at as usize })
    }

    /// The type `id`, here or in the base; `None` for `void` and unknown ids.
    pub fn get(&self, id: u32) -> Option<Type<'_>> {
        if id < self.first_id {
            return self.base.as_deref()?.get(id);
        }
        let at = *self.types.get((id - self.first_id) as usize)? as usize;
        Some(Type { id, blob: self, at })
    }

    /// The string at `off`, here or in the base; empty when out of range.
    pub fn string(&self, off: u32) -> &str {
        if off < self.first_string {
            return self.base.as_deref().map_or("", |b| b.string(off));
        }
        let start = (off - self.first_string) as usize;
        if start >= self.strings_len {
            return "";
        }
        let section = &self.data[self.strings..self.strings + self.strings_len];
        let bytes = &section[start..];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or("")
    }
}

impl<'a> Type<'a> {
    fn word(&self, i: usize) -> u32 {
        read_u32(&self.blob.data, self.at + 4 * i)
    }

    pub fn name(&self) -> &'a str {
        self.blob.string(self.word(0))
    }

    pub fn kind(&self) -> u32 {
        (self.word(1) >> 24) & 0x1f
    }

    fn vlen(&self) -> usize {
        (self.word(1) & 0xffff) as usize
    }

    fn kind_flag(&self) -> bool {
        self.word(1) >> 31 != 0
    }

    /// Structs, unions, enums, ints: the size in bytes.
    pub fn size(&self) -> u32 {
        self.word(2)
    }

    /// Pointers, typedefs, qualifiers, functions, variables: the type referred to.
    pub fn referred(&self) -> Option<Type<'a>> {
        self.blob.get(self.word(2))
    }

    /// Members of a struct or union, parameters of a function prototype,
    /// values of an enum; empty for other kinds.
    pub fn members(&self) -> impl Iterator<Item = Member<'a>> + 'a {
        let (stride, count) = match self.kind() {
            KIND_STRUCT | KIND_UNION | KIND_ENUM64 => (12, self.vlen()),
            KIND_ENUM | KIND_FUNC_PROTO => (8, self.vlen()),
            _ => (0, 0),
        };
        let (blob, start, bitfields) = (self.blob, self.at + TYPE_LEN, self.kind_flag());
        let composite = matches!(self.kind(), KIND_STRUCT | KIND_UNION);
        (0..count).map(move |i| {
            let at = start + i * stride;
            let extra = if stride == 12 { read_u32(&blob.data, at + 8) } else { 0 };
            Member {
                blob,
                name_off: read_u32(&blob.data, at),
                value: read_u32(&blob.data, at + 4),
                // With kind_flag, a member's top 8 bits are its bitfield size.
                extra: if composite && bitfields { extra & 0x00ff_ffff } else { extra },
                bitfield_bits: if composite && bitfields { extra >> 24 } else { 0 },
            }
        })
    }

    /// Ints: whether signed, and the value's bit offset and width inside the int's bytes
    /// (`struct btf_int`'s encoding, offset and bits); `None` for other kinds.
    pub fn int_encoding(&self) -> Option<IntEncoding> {
        (self.kind() == KIND_INT).then(|| {
            let word = self.word(3);
            IntEncoding { signed: (word >> 24) & 1 != 0, bit_offset: (word >> 16) & 0xff, bits: word & 0xff }
        })
    }

    /// Type `id` of the same blob (or its base).
    pub fn sibling(&self, id: u32) -> Option<Type<'a>> {
        self.blob.get(id)
    }

    /// Arrays: the element type id and the number of elements; `None` for other kinds.
    pub fn array(&self) -> Option<(u32, u32)> {
        (self.kind() == KIND_ARRAY).then(|| (self.word(3), self.word(5)))
    }

    /// Enums: whether the values are signed (`kind_flag`); false for other kinds.
    pub fn enum_signed(&self) -> bool {
        matches!(self.kind(), KIND_ENUM | KIND_ENUM64) && self.kind_flag()
    }

    /// Follows typedefs, qualifiers and type tags to the type underneath.
    pub fn strip(self) -> Option<Type<'a>> {
        let mut ty = self;
        for _ in 0..32 {
            match ty.kind() {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => ty = ty.referred()?,
                _ => return Some(ty),
            }
        }
        None
    }
}

/// What `struct btf_int` says about an int type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntEncoding {
    pub signed: bool,
    pub bit_offset: u32,
    pub bits: u32,
}

impl<'a> Member<'a> {
    pub fn name(&self) -> &'a str {
        self.blob.string(self.name_off)
    }

    /// The member's or parameter's type.
    pub fn ty(&self) -> Option<Type<'a>> {
        self.blob.get(self.value)
    }
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// The contents of the `.BTF` section of a little-endian ELF64 file, as
/// pwru's `btf.LoadSpec` reads a `vmlinux`. Every offset is checked.
fn elf_btf_section(elf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let bytes = |at: usize, n: usize| elf.get(at..at.checked_add(n)?);
    let u16_at = |at: usize| bytes(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes(at, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    let u64_at =
        |at: usize| bytes(at, 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).ok());
    ensure!(elf.len() >= 64 && elf[4] == 2 && elf[5] == 1, "only little-endian 64-bit ELF files are supported");
    let truncated = || anyhow::anyhow!("the ELF file is truncated");
    let (shoff, shentsize) = (u64_at(0x28).ok_or_else(truncated)?, u16_at(0x3a).ok_or_else(truncated)?);
    ensure!(shentsize >= 64, "ELF section headers of {shentsize} bytes, expected 64");
    let header = |i: usize| i.checked_mul(shentsize).and_then(|o| o.checked_add(shoff));
    // More than 0xff00 sections, or a string table index above it, are kept in section 0.
    let mut shnum = u16_at(0x3c).ok_or_else(truncated)?;
    if shnum == 0 {
        shnum = u64_at(shoff + 32).ok_or_else(truncated)?;
    }
    let mut shstrndx = u16_at(0x3e).ok_or_else(truncated)?;
    if shstrndx == 0xffff {
        shstrndx = u32_at(shoff + 40).ok_or_else(truncated)?;
    }
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let h = header(i)?;
        Some((u32_at(h)?, u64_at(h + 24)?, u64_at(h + 32)?))
    };
    let (_, strtab, strtab_len) = section(shstrndx).ok_or_else(truncated)?;
    let names = bytes(strtab, strtab_len).ok_or_else(truncated)?;
    for i in 0..shnum {
        let (name, offset, size) = section(i).ok_or_else(truncated)?;
        let name = names.get(name..).and_then(|n| n.split(|&b| b == 0).next());
        if name == Some(b".BTF") {
            return Ok(bytes(offset, size).ok_or_else(truncated)?.to_vec());
        }
    }
    bail!("the ELF file has no .BTF section (was the kernel built with CONFIG_DEBUG_INFO_BTF=y?)")
}

#[cfg(test)]
mod tests {
    //! Held to btf-rs, a full parser, on the running kernel's BTF: every type's kind, name,
    //! referred type, size and members must agree.
    use btf_rs::{Btf, BtfType, Type as Full};

    use super::*;

    fn kind_of(ty: &Full) -> u32 {
        match ty {
            Full::Void => 0,
            Full::Int(_) => KIND_INT,
            Full::Ptr(_) => KIND_PTR,
            Full::Array(_) => KIND_ARRAY,
            Full::Struct(_) => KIND_STRUCT,
            Full::Union(_) => KIND_UNION,
            Full::Enum(_) => KIND_ENUM,
            Full::Fwd(_) => KIND_FWD,
            Full::Typedef(_) => KIND_TYPEDEF,
            Full::Volatile(_) => KIND_VOLATILE,
            Full::Const(_) => KIND_CONST,
            Full::Restrict(_) => KIND_RESTRICT,
            Full::Func(_) => KIND_FUNC,
            Full::FuncProto(_) => KIND_FUNC_PROTO,
            Full::Var(_) => KIND_VAR,
            Full::Datasec(_) => KIND_DATASEC,
            Full::Float(_) => KIND_FLOAT,
            Full::DeclTag(_) => KIND_DECL_TAG,
            Full::TypeTag(_) => KIND_TYPE_TAG,
            Full::Enum64(_) => KIND_ENUM64,
        }
    }

    /// (name, type id or value, bit offset or high value bits) of every member.
    fn members_of(btf: &Btf, ty: &Full) -> Vec<(String, u32, u32)> {
        let name = |m: &dyn BtfType| btf.resolve_name(m).unwrap_or_default();
        match ty {
            Full::Struct(s) | Full::Union(s) => {
                s.members.iter().map(|m| (name(m), m.get_type_id().unwrap(), m.bit_offset())).collect()
            }
            Full::Enum(e) => e.members.iter().map(|m| (name(m), m.val(), 0)).collect(),
            Full::Enum64(e) => e.members.iter().map(|m| (name(m), m.val() as u32, (m.val() >> 32) as u32)).collect(),
            Full::FuncProto(p) => p.parameters.iter().map(|m| (name(m), m.get_type_id().unwrap(), 0)).collect(),
            _ => Vec::new(),
        }
    }

    fn agree(full: &Btf, blob: &Blob) -> usize {
        let mut checked = 0;
        for ty in blob.types() {
            let want = full.resolve_type_by_id(ty.id).unwrap_or_else(|e| panic!("btf-rs has no type {}: {e}", ty.id));
            let what = format!("type {} ({:?})", ty.id, ty.name());
            assert_eq!(ty.kind(), kind_of(&want), "{what}");
            let name = want.as_btf_type().and_then(|t| full.resolve_name(t).ok()).unwrap_or_default();
            assert_eq!(ty.name(), name, "{what}");
            if let Some(referred) = want.as_btf_type().and_then(|t| t.get_type_id().ok())
                && matches!(ty.kind(), KIND_PTR | KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_FUNC)
            {
                assert_eq!(ty.referred().map_or(0, |t| t.id), referred, "{what}");
            }
            if let Full::Struct(s) | Full::Union(s) = &want {
                assert_eq!(ty.size() as usize, s.size(), "{what}");
                let bits: Vec<u32> = ty.members().map(|m| m.bitfield_bits).collect();
                let want: Vec<u32> = s.members.iter().map(|m| m.bitfield_size().unwrap_or(0)).collect();
                assert_eq!(bits, want, "{what}: bitfield sizes");
            }
            if let Full::Int(i) = &want {
                assert_eq!(ty.int_encoding().map(|e| e.signed), Some(i.is_signed()), "{what}");
            }
            if let Full::Array(a) = &want {
                let elem = a.get_type_id().unwrap();
                assert_eq!(ty.array(), Some((elem, a.len() as u32)), "{what}");
            }
            match &want {
                Full::Enum(e) => assert_eq!(ty.enum_signed(), e.is_signed(), "{what}"),
                Full::Enum64(e) => assert_eq!(ty.enum_signed(), e.is_signed(), "{what}"),
                _ => {}
            }
            let members: Vec<_> = ty.members().map(|m| (m.name().to_owned(), m.value, m.extra)).collect();
            assert_eq!(members, members_of(full, &want), "{what}");
            checked += 1;
        }
        checked
    }

    #[test]
    fn every_type_agrees_with_btf_rs() {
        let path = Path::new(crate::btf::VMLINUX);
        if !path.exists() {
            assert!(std::env::var_os("CI").is_none(), "{} missing under CI", path.display());
            eprintln!("SKIPPED: {} missing", path.display());
            return;
        }
        let full = Btf::from_file(path).unwrap();
        let blob = Arc::new(Blob::from_file(path, None).unwrap());
        let n = agree(&full, &blob);
        assert!(n > 10_000, "only {n} types");
        // Split BTF of a module, when one is loaded: ids and strings continue vmlinux's.
        let module = std::fs::read_dir("/sys/kernel/btf")
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n != "vmlinux"));
        if let Some(module) = module {
            let full = Btf::from_split_file(&module, &full).unwrap();
            let split = Blob::from_file(&module, Some(blob.clone())).unwrap();
            let n = agree(&full, &split);
            eprintln!("{}: {n} types agree", module.display());
        }
    }

    /// An ELF64 file with a `.text` and a `.BTF` section holding `btf`.
    fn elf_with_btf(btf: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.text\0.BTF\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let text_at = elf.len();
        elf.extend_from_slice(&[0xc3; 16]);
        let btf_at = elf.len();
        elf.extend_from_slice(btf);
        let strtab_at = elf.len();
        elf.extend_from_slice(shstrtab);
        let shoff = elf.len();
        // null, .text, .BTF, .shstrtab: (name offset, file offset, size).
        for (name, at, size) in [(0, 0, 0), (1, text_at, 16), (7, btf_at, btf.len()), (12, strtab_at, shstrtab.len())] {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&(name as u32).to_le_bytes());
            h[24..32].copy_from_slice(&(at as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        }
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_the_btf_section_of_an_elf_vmlinux() {
        let btf = b"pretend this is BTF";
        let elf = elf_with_btf(btf);
        assert_eq!(elf_btf_section(&elf).unwrap(), btf);
        for cut in [10, 70, elf.len() - 30] {
            let err = elf_btf_section(&elf[..cut]).unwrap_err().to_string();
            assert!(err.contains("truncated") || err.contains("64-bit"), "cut at {cut}: {err}");
        }
        let mut no_btf = elf.clone();
        let at = no_btf.windows(4).position(|w| w == b".BTF").unwrap();
        no_btf[at + 1] = b'X';
        assert!(elf_btf_section(&no_btf).unwrap_err().to_string().contains("no .BTF section"));
    }

    #[test]
    fn malformed_blobs_are_errors() {
        let path = Path::new(crate::btf::VMLINUX);
        let Ok(data) = std::fs::read(path) else { return };
        assert!(Blob::parse(data[..16].to_vec(), None).is_err());
        let mut bad = data.clone();
        bad[0] = 0;
        assert!(Blob::parse(bad, None).is_err());
        // Cut inside the type section.
        let hdr_len = read_u32(&data, 4) as usize;
        let type_len = read_u32(&data, 12) as usize;
        let mut cut = data.clone();
        cut[12..16].copy_from_slice(&((type_len - 5) as u32).to_le_bytes());
        assert!(Blob::parse(cut, None).is_err(), "type section of {} bytes after {hdr_len}", type_len - 5);
    }
}
