//! A record's bytes → [`SkbFields`]: each `--output-skb-metadata` field's bytes
//! read as its BTF type says, the way pwru prints them (`mybtf.DumpData`):
//! integers in decimal, enums by name, `bool`s as `true`/`false`, pointers in
//! hex, `char`s and char arrays as text. `__be16`/`__be32` fields read in host
//! order, as `--filter-skb-expr` reads them.

use std::{collections::HashMap, sync::Arc};

use tracer_common::skb_out::SkbOutRecord;

use super::{FieldName, SkbFields};
use crate::{
    btf::{
        KernelBtf,
        ctype::{CKind, CType},
    },
    filter::skb_expr::fields::Field,
};

/// One field's value, for the printers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaValue {
    Unsigned(u64),
    Signed(i64),
    Bool(bool),
    /// An enumerator's name.
    Enum(Arc<str>),
    Ptr(u64),
    /// A `char`: printable ASCII, else shown as a number (pwru's choice).
    Char(u8),
    /// A char array, up to its first NUL.
    Str(String),
}

/// How to read one field's bytes.
#[derive(Clone, Debug)]
enum Kind {
    Unsigned,
    Signed,
    BigEndian,
    Bool,
    Char,
    /// Values to names; signed enums are sign-extended first.
    Enum {
        signed: bool,
        names: Arc<HashMap<u64, Arc<str>>>,
    },
    Ptr,
    Str,
}

#[derive(Clone, Debug)]
struct Reading {
    kind: Kind,
    size: u8,
    bitfield: Option<(u8, u8)>,
}

/// Decodes the records of one run.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    names: Arc<[FieldName]>,
    readings: Vec<Reading>,
}

impl Decoder {
    pub fn new(fields: &[Field], btf: &KernelBtf) -> Self {
        let readings = fields.iter().map(|f| Reading { kind: kind(&f.ty, btf), size: f.size, bitfield: f.bitfield });
        Self { names: names(fields).into(), readings: readings.collect() }
    }

    /// The fields' names alone: an event whose record was lost.
    pub fn empty(&self) -> SkbFields {
        SkbFields { names: self.names.clone(), ..SkbFields::default() }
    }

    pub fn decode(&self, record: &SkbOutRecord<'_>) -> SkbFields {
        let values = self.readings.iter().zip(&record.header.metadata).map(|(r, bytes)| r.value(&bytes[..])).collect();
        SkbFields {
            names: self.names.clone(),
            values,
            cb: record.header.cb,
            skb_dump: String::from_utf8_lossy(record.skb_dump).into_owned(),
            shinfo_dump: String::from_utf8_lossy(record.shinfo_dump).into_owned(),
        }
    }
}

/// pwru's names, and JSON keys that differ: a last identifier two fields share
/// is keyed by the whole path.
fn names(fields: &[Field]) -> Vec<FieldName> {
    fields
        .iter()
        .map(|f| {
            let shared = fields.iter().filter(|g| g.last == f.last).count() > 1;
            FieldName { last: f.last.clone(), key: if shared { f.path.clone() } else { f.last.clone() } }
        })
        .collect()
}

fn kind(ty: &CType, btf: &KernelBtf) -> Kind {
    match ty.kind {
        CKind::Int { big_endian: true, size, .. } if size > 1 => Kind::BigEndian,
        CKind::Int { size: 1, .. } if ty.name == "bool" || ty.name == "_Bool" => Kind::Bool,
        CKind::Int { size: 1, .. } if ty.name == "char" => Kind::Char,
        CKind::Int { signed: true, .. } => Kind::Signed,
        CKind::Int { .. } => Kind::Unsigned,
        CKind::Enum { signed, .. } => {
            let names = ty.name.strip_prefix("enum ").map(|name| btf.enum_names(name)).unwrap_or_default();
            let names = names.into_iter().map(|(v, n)| (u64::from(v), Arc::from(n))).collect();
            Kind::Enum { signed, names: Arc::new(names) }
        }
        CKind::Ptr { .. } => Kind::Ptr,
        _ => Kind::Str,
    }
}

impl Reading {
    fn value(&self, bytes: &[u8]) -> MetaValue {
        let n = usize::from(self.size).min(bytes.len());
        if matches!(self.kind, Kind::Str) {
            let end = bytes[..n].iter().position(|&b| b == 0).unwrap_or(n);
            return MetaValue::Str(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
        let mut le = [0u8; 8];
        le[..n.min(8)].copy_from_slice(&bytes[..n.min(8)]);
        let mut raw = u64::from_le_bytes(le);
        let mut bits = 8 * n.min(8) as u32;
        if let Some((shift, width)) = self.bitfield {
            raw >>= shift;
            bits = u32::from(width);
        }
        if bits < 64 {
            raw &= (1u64 << bits) - 1;
        }
        let signed = |raw: u64| (raw << (64 - bits)) as i64 >> (64 - bits);
        match &self.kind {
            Kind::Unsigned => MetaValue::Unsigned(raw),
            Kind::Signed => MetaValue::Signed(signed(raw)),
            Kind::BigEndian => MetaValue::Unsigned(match n {
                2 => u64::from((raw as u16).swap_bytes()),
                4 => u64::from((raw as u32).swap_bytes()),
                _ => raw.swap_bytes(),
            }),
            Kind::Bool => MetaValue::Bool(raw != 0),
            Kind::Char => MetaValue::Char(raw as u8),
            Kind::Enum { signed: is_signed, names } => {
                let value = if *is_signed { signed(raw) as u64 } else { raw };
                // BTF keeps 32-bit enumerators as u32s.
                match names.get(&value).or_else(|| names.get(&(value as u32 as u64))) {
                    Some(name) => MetaValue::Enum(name.clone()),
                    None if *is_signed => MetaValue::Signed(value as i64),
                    None => MetaValue::Unsigned(value),
                }
            }
            Kind::Ptr => MetaValue::Ptr(raw),
            Kind::Str => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: Kind, size: u8, bitfield: Option<(u8, u8)>) -> Reading {
        Reading { kind, size, bitfield }
    }

    #[test]
    fn bytes_read_as_their_types() {
        let r = |kind, size, bytes: &[u8]| reading(kind, size, None).value(bytes);
        assert_eq!(r(Kind::Unsigned, 4, &[0x2a, 0, 0, 0, 9]), MetaValue::Unsigned(42));
        assert_eq!(r(Kind::Signed, 2, &[0xfe, 0xff]), MetaValue::Signed(-2));
        assert_eq!(r(Kind::Signed, 8, &[0xff; 8]), MetaValue::Signed(-1));
        assert_eq!(r(Kind::BigEndian, 2, &[0x08, 0x00]), MetaValue::Unsigned(0x0800));
        assert_eq!(r(Kind::Bool, 1, &[2]), MetaValue::Bool(true));
        assert_eq!(r(Kind::Char, 1, b"a"), MetaValue::Char(b'a'));
        assert_eq!(r(Kind::Ptr, 8, &0xffff_8881_0000_0040u64.to_le_bytes()), MetaValue::Ptr(0xffff_8881_0000_0040));
        assert_eq!(r(Kind::Str, 16, b"lo\0\0garbage\0\0\0\0\0"), MetaValue::Str("lo".into()));
        assert_eq!(r(Kind::Str, 4, b"eth0"), MetaValue::Str("eth0".into()));
    }

    #[test]
    fn bitfields_and_enums() {
        // 3 bits from bit 5: 0b101.
        let pkt_type = reading(Kind::Unsigned, 1, Some((5, 3)));
        assert_eq!(pkt_type.value(&[0b1010_0000]), MetaValue::Unsigned(5));
        let signed = reading(Kind::Signed, 1, Some((0, 2)));
        assert_eq!(signed.value(&[0b11]), MetaValue::Signed(-1));
        let names = Arc::new(HashMap::from([(1u64, Arc::from("ONE")), (u64::from(u32::MAX), Arc::from("MINUS"))]));
        let e = |signed, bytes: &[u8]| reading(Kind::Enum { signed, names: names.clone() }, 4, None).value(bytes);
        assert_eq!(e(false, &[1, 0, 0, 0]), MetaValue::Enum("ONE".into()));
        assert_eq!(e(false, &[7, 0, 0, 0]), MetaValue::Unsigned(7));
        assert_eq!(e(true, &[0xff; 4]), MetaValue::Enum("MINUS".into()));
        assert_eq!(e(true, &[0xfe, 0xff, 0xff, 0xff]), MetaValue::Signed(-2));
    }
}
