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
mod tests;
