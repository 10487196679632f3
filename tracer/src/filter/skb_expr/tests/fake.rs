//! A made-up `struct sk_buff` with one of each kind of member the checker handles (signed and
//! unsigned ints of every width, `__be16`/`__be32`, bitfields across a byte boundary, enums,
//! arrays, an anonymous union, pointers to structs, to bytes and to `void`), so that the tests
//! run without a kernel's BTF and cover cases the running kernel's `sk_buff` may lack.

use crate::btf::ctype::{CKind, CType, Enumerator, Field, TypeId};
use crate::filter::skb_expr::Layout;

/// An enum's name, signedness and values.
type EnumDef = (&'static str, bool, Vec<(&'static str, u64)>);

pub struct Fake {
    types: Vec<CType>,
    enums: Vec<EnumDef>,
    root: TypeId,
}

/// Byte offsets of the made-up members, for tests that write memory images by hand.
pub mod off {
    pub const NEXT: u64 = 0;
    pub const DEV: u64 = 8;
    pub const SK: u64 = 16;
    pub const LEN: u64 = 24;
    pub const MARK: u64 = 28;
    pub const PROTOCOL: u64 = 32;
    /// `pkt_type:3` at bits 0–2, `ignore_df:1` at bit 3.
    pub const FLAGS: u64 = 34;
    /// `sbits:5`, signed, at bits 6–10 from here.
    pub const SBITS: u64 = 35;
    pub const OFFSET: u64 = 38;
    pub const TSTAMP: u64 = 40;
    pub const CB: u64 = 48;
    pub const STATE: u64 = 56;
    pub const HASH: u64 = 60;
    pub const BIG: u64 = 64;
    pub const SADDR: u64 = 72;
    pub const TINY: u64 = 76;
    pub const DEV_NAME: u64 = 0;
    pub const DEV_IFINDEX: u64 = 16;
}

fn field(name: &str, byte: u32, ty: TypeId) -> Field {
    Field { name: name.to_owned(), bit_offset: byte * 8, bitfield_bits: 0, ty }
}

fn bits(name: &str, bit_offset: u32, bits: u32, ty: TypeId) -> Field {
    Field { name: name.to_owned(), bit_offset, bitfield_bits: bits, ty }
}

impl Fake {
    fn add(&mut self, name: &str, kind: CKind) -> TypeId {
        self.types.push(CType { name: name.to_owned(), kind });
        self.types.len() as TypeId
    }

    fn int(&mut self, name: &str, size: u32, signed: bool) -> TypeId {
        self.add(name, CKind::Int { size, signed, big_endian: name.starts_with("__be") })
    }

    pub fn new() -> Self {
        let mut f = Self { types: Vec::new(), enums: Vec::new(), root: 0 };
        let u8_ = f.int("u8", 1, false);
        let s8 = f.int("s8", 1, true);
        let u16_ = f.int("u16", 2, false);
        let s16 = f.int("s16", 2, true);
        let u32_ = f.int("u32", 4, false);
        let int = f.int("int", 4, true);
        let u64_ = f.int("u64", 8, false);
        let s64 = f.int("s64", 8, true);
        let be16 = f.int("__be16", 2, false);
        let be32 = f.int("__be32", 4, false);
        let char_ = f.int("char", 1, true);
        let name16 = f.add("char[16]", CKind::Array { elem: char_, len: 16 });
        let cb = f.add("char[8]", CKind::Array { elem: char_, len: 8 });
        let regs = f.add("u32[4]", CKind::Array { elem: u32_, len: 4 });
        let state = f.add("enum state", CKind::Enum { size: 4, signed: false });
        f.enums.push(("state", false, vec![("ST_IDLE", 0), ("ST_BUSY", 5), ("ST_TOP", 0xffff_ffff)]));
        let kind = f.add("enum kind", CKind::Enum { size: 8, signed: false });
        f.enums.push(("kind", false, vec![("KIND_HUGE", 0xffff_ffff_ffff_fff0), ("KIND_SMALL", 3)]));
        // The same name twice with different values, as distinct kernel enums can have.
        f.enums.push(("left", false, vec![("DUP", 1)]));
        f.enums.push(("right", false, vec![("DUP", 2)]));
        let net = f.add("struct net", CKind::Struct { size: 16, members: vec![field("inum", 0, u32_)] });
        let net_ptr = f.add("struct net *", CKind::Ptr { target: Some(net) });
        let possible_net = f.add("possible_net_t", CKind::Struct { size: 8, members: vec![field("net", 0, net_ptr)] });
        let u8_ptr = f.add("unsigned char *", CKind::Ptr { target: Some(u8_) });
        let dev = f.add(
            "struct net_device",
            CKind::Struct {
                size: 64,
                members: vec![
                    field("name", 0, name16),
                    field("ifindex", 16, int),
                    field("mtu", 20, u32_),
                    field("nd_net", 24, possible_net),
                    field("dev_addr", 32, u8_ptr),
                    field("features", 40, u64_),
                    field("regs", 48, regs),
                ],
            },
        );
        let dev_ptr = f.add("struct net_device *", CKind::Ptr { target: Some(dev) });
        // Filled in below: `struct sock` points to itself.
        let sock = f.add("struct sock", CKind::Other);
        let sock_ptr = f.add("struct sock *", CKind::Ptr { target: Some(sock) });
        f.types[sock as usize - 1].kind = CKind::Struct {
            size: 16,
            members: vec![field("sk_mark", 0, u32_), field("sk_priority", 4, s16), field("next", 8, sock_ptr)],
        };
        let hash = f.add(
            "union <anonymous>",
            CKind::Union { size: 4, members: vec![field("hash", 0, u32_), field("hash16", 0, u16_)] },
        );
        let void_ptr = f.add("void *", CKind::Ptr { target: None });
        let skb = f.add("struct sk_buff", CKind::Other);
        let skb_ptr = f.add("struct sk_buff *", CKind::Ptr { target: Some(skb) });
        f.types[skb as usize - 1].kind = CKind::Struct {
            size: 96,
            members: vec![
                field("next", 0, skb_ptr),
                field("dev", 8, dev_ptr),
                field("sk", 16, sock_ptr),
                field("len", 24, u32_),
                field("mark", 28, u32_),
                field("protocol", 32, be16),
                bits("pkt_type", 34 * 8, 3, u8_),
                bits("ignore_df", 34 * 8 + 3, 1, u8_),
                bits("sbits", 35 * 8 + 6, 5, int),
                field("offset", 38, s16),
                field("tstamp", 40, s64),
                field("cb", 48, cb),
                field("state", 56, state),
                field("", 60, hash),
                field("big", 64, u64_),
                field("saddr", 72, be32),
                field("tiny", 76, s8),
                field("kind", 80, kind),
                field("head", 88, void_ptr),
            ],
        };
        f.root = skb;
        f
    }
}

impl Layout for Fake {
    fn root(&self) -> Option<TypeId> {
        Some(self.root)
    }

    fn ctype(&self, id: TypeId) -> Option<CType> {
        self.types.get((id as usize).checked_sub(1)?).cloned()
    }

    fn enumerators(&self, name: &str) -> Vec<Enumerator> {
        let mut out = Vec::new();
        for (enum_name, signed, values) in &self.enums {
            for (n, value) in values {
                if *n == name {
                    out.push(Enumerator { enum_name: (*enum_name).to_owned(), value: *value, signed: *signed });
                }
            }
        }
        out
    }
}
