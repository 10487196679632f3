//! vmlinux's types as a C expression sees them: typedefs and qualifiers looked through, sizes,
//! signedness, bitfields, array lengths and enum values decoded, and each type's C spelling kept
//! for messages (`struct net_device *`, `__be16`, `char[16]`). `filter::skb_expr` type-checks
//! against this view; nothing here knows about expressions.

use super::KernelBtf;
use super::reader::{
    KIND_ARRAY, KIND_CONST, KIND_ENUM, KIND_ENUM64, KIND_FLOAT, KIND_FUNC_PROTO, KIND_FWD, KIND_INT, KIND_PTR,
    KIND_RESTRICT, KIND_STRUCT, KIND_TYPE_TAG, KIND_TYPEDEF, KIND_UNION, KIND_VOLATILE, Type,
};

/// A BTF type id; 0 is `void`.
pub type TypeId = u32;

/// One type, looked through typedefs and qualifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CType {
    /// How C spells the type as declared, typedef name included: `__be16`, `struct sock *`.
    pub name: String,
    pub kind: CKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CKind {
    /// An integer (`_Bool` and `char` included). `big_endian`: declared through a typedef whose
    /// name starts with `__be`, as pwru decides it.
    Int {
        size: u32,
        signed: bool,
        big_endian: bool,
    },
    Enum {
        size: u32,
        signed: bool,
    },
    /// `target` is `None` for `void *`.
    Ptr {
        target: Option<TypeId>,
    },
    Array {
        elem: TypeId,
        len: u32,
    },
    Struct {
        size: u32,
        members: Vec<Field>,
    },
    Union {
        size: u32,
        members: Vec<Field>,
    },
    /// Floats, functions, `void`, structs declared but never defined.
    Other,
}

/// A struct or union member; anonymous members have an empty name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// From the start of the enclosing struct.
    pub bit_offset: u32,
    /// The width of a bitfield, 0 for an ordinary member.
    pub bitfield_bits: u32,
    pub ty: TypeId,
}

/// One value of an enum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumerator {
    pub enum_name: String,
    /// The value's 64 bits, sign-extended for signed enums.
    pub value: u64,
    pub signed: bool,
}

/// Typedef chains and nested declarators are short; this bounds the walk on a malformed blob.
const MAX_DEPTH: usize = 32;

impl KernelBtf {
    /// The id of `struct name`'s definition in vmlinux.
    pub fn struct_id(&self, name: &str) -> Option<TypeId> {
        self.find_struct(name).map(|t| t.id)
    }

    /// Type `id` of vmlinux; `None` for `void` and unknown ids.
    pub fn ctype(&self, id: TypeId) -> Option<CType> {
        let declared = self.vmlinux.get(id)?;
        let mut ty = declared.strip()?;
        if ty.kind() == KIND_FWD {
            // A pointer to a struct that this compilation unit only declared.
            ty = self.named(ty.name()).find(|t| matches!(t.kind(), KIND_STRUCT | KIND_UNION))?;
        }
        let kind = match ty.kind() {
            KIND_INT => {
                let signed = ty.int_encoding().is_some_and(|e| e.signed);
                CKind::Int { size: ty.size(), signed, big_endian: big_endian(declared) }
            }
            KIND_ENUM | KIND_ENUM64 => CKind::Enum { size: ty.size(), signed: ty.enum_signed() },
            KIND_PTR => CKind::Ptr { target: ty.referred().map(|t| t.id) },
            KIND_ARRAY => {
                let (elem, len) = ty.array()?;
                CKind::Array { elem, len }
            }
            KIND_STRUCT => CKind::Struct { size: ty.size(), members: fields(ty) },
            KIND_UNION => CKind::Union { size: ty.size(), members: fields(ty) },
            _ => CKind::Other,
        };
        Some(CType { name: spelling(Some(declared), 0), kind })
    }

    /// Every enum value called `name`, in vmlinux's enums (several when enums disagree).
    pub fn enumerators(&self, name: &str) -> Vec<Enumerator> {
        let mut out = Vec::new();
        for ty in self.vmlinux.types().filter(|t| matches!(t.kind(), KIND_ENUM | KIND_ENUM64)) {
            let signed = ty.enum_signed();
            for m in ty.members().filter(|m| m.name() == name) {
                let value = match (ty.kind(), signed) {
                    (KIND_ENUM64, _) => u64::from(m.value) | u64::from(m.extra) << 32,
                    (_, true) => m.value as i32 as i64 as u64,
                    (_, false) => u64::from(m.value),
                };
                out.push(Enumerator { enum_name: ty.name().to_owned(), value, signed });
            }
        }
        out
    }
}

fn fields(ty: Type<'_>) -> Vec<Field> {
    ty.members()
        .map(|m| {
            let mut field =
                Field { name: m.name().to_owned(), bit_offset: m.extra, bitfield_bits: m.bitfield_bits, ty: m.value };
            // Without kind_flag a bitfield is an int type narrower than its bytes.
            if field.bitfield_bits == 0
                && let Some(int) = m.ty().and_then(Type::strip)
                && let Some(encoding) = int.int_encoding()
                && (encoding.bits != int.size() * 8 || encoding.bit_offset != 0)
            {
                field.bitfield_bits = encoding.bits;
                field.bit_offset += encoding.bit_offset;
            }
            field
        })
        .collect()
}

/// Whether a typedef called `__be…` lies between `ty` and the type underneath.
fn big_endian(ty: Type<'_>) -> bool {
    let mut ty = Some(ty);
    for _ in 0..MAX_DEPTH {
        match ty {
            Some(t) if t.kind() == KIND_TYPEDEF && t.name().starts_with("__be") => return true,
            Some(t)
                if matches!(t.kind(), KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG) =>
            {
                ty = t.referred()
            }
            _ => return false,
        }
    }
    false
}

/// C's spelling of a type, qualifiers left out.
fn spelling(ty: Option<Type<'_>>, depth: usize) -> String {
    let Some(ty) = ty else { return "void".to_owned() };
    if depth > MAX_DEPTH {
        return "…".to_owned();
    }
    let named = |tag: &str| {
        let name = ty.name();
        if name.is_empty() { format!("{tag} <anonymous>") } else { format!("{tag} {name}") }
    };
    match ty.kind() {
        KIND_INT | KIND_FLOAT | KIND_TYPEDEF => ty.name().to_owned(),
        KIND_STRUCT => named("struct"),
        KIND_UNION => named("union"),
        KIND_ENUM | KIND_ENUM64 => named("enum"),
        KIND_FWD => named("struct"),
        KIND_PTR => format!("{} *", spelling(ty.referred(), depth + 1)),
        KIND_ARRAY => {
            let (elem, len) = ty.array().unwrap_or((0, 0));
            format!("{}[{len}]", spelling(ty.sibling(elem), depth + 1))
        }
        KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => spelling(ty.referred(), depth + 1),
        KIND_FUNC_PROTO => "function".to_owned(),
        _ => ty.name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! Against the running kernel's BTF.
    use super::*;

    #[test]
    fn sk_buff_members_have_their_c_types() {
        let Ok(btf) = KernelBtf::open() else {
            assert!(std::env::var_os("CI").is_none(), "no BTF under CI");
            return eprintln!("SKIPPED: no {}", crate::btf::VMLINUX);
        };
        let skb = btf.struct_id("sk_buff").expect("struct sk_buff");
        let CKind::Struct { members, size } = btf.ctype(skb).unwrap().kind else { panic!("not a struct") };
        assert!(size > 100, "sk_buff of {size} bytes");
        assert!(members.iter().any(|m| m.name.is_empty()), "sk_buff has anonymous members");
        // Most members sit in anonymous structs and unions (`struct_group(headers, …)`).
        let find = |name: &str| find_nested(&btf, skb, name).unwrap_or_else(|| panic!("sk_buff.{name}"));
        let len = find("len");
        assert_eq!(btf.ctype(len.ty).unwrap().kind, CKind::Int { size: 4, signed: false, big_endian: false });
        assert_eq!(len.bit_offset / 8, btf.offset_of("sk_buff", "len").unwrap());
        let protocol = btf.ctype(find("protocol").ty).unwrap();
        assert_eq!(protocol.name, "__be16");
        assert_eq!(protocol.kind, CKind::Int { size: 2, signed: false, big_endian: true });
        assert_eq!(btf.ctype(find("dev").ty).unwrap().name, "struct net_device *");
        assert_eq!(btf.ctype(find("cb").ty).unwrap().name, "char[48]");
        // pkt_type is a 3-bit bitfield on every kernel skbtrace supports.
        let pkt_type = find_nested(&btf, skb, "pkt_type").expect("pkt_type");
        assert_eq!(pkt_type.bitfield_bits, 3);
    }

    #[test]
    fn enumerators_have_their_values() {
        let Ok(btf) = KernelBtf::open() else { return };
        let found = btf.enumerators("SKB_NOT_DROPPED_YET");
        assert!(found.iter().any(|e| e.enum_name == "skb_drop_reason" && e.value == 0), "{found:?}");
        assert!(btf.enumerators("NO_SUCH_ENUMERATOR_HERE").is_empty());
    }

    /// A member by name, looking into anonymous members.
    fn find_nested(btf: &KernelBtf, id: TypeId, name: &str) -> Option<Field> {
        let members = match btf.ctype(id)?.kind {
            CKind::Struct { members, .. } | CKind::Union { members, .. } => members,
            _ => return None,
        };
        for m in members {
            if m.name == name {
                return Some(m);
            }
            if m.name.is_empty()
                && let Some(mut inner) = find_nested(btf, m.ty, name)
            {
                inner.bit_offset += m.bit_offset;
                return Some(inner);
            }
        }
        None
    }
}
