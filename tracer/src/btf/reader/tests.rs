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
