//! The reference: the checked expression evaluated directly, with the module docs' rules
//! (`typed::arith`, `typed::compare`), over a [`World`]'s memory.

use super::world::World;
use crate::filter::skb_expr::typed::{Convert, Node, Place, Read, Typed, arith, compare};

/// A read that failed: the whole expression is false.
struct Fault;

/// The verdict, 0 or 1, for the skb at `skb`.
pub fn verdict(t: &Typed, world: &World, skb: u64) -> u64 {
    match value(t, world, skb) {
        Ok(v) => u64::from(v != 0),
        Err(Fault) => 0,
    }
}

fn address(place: &Place, world: &World, skb: u64) -> Result<u64, Fault> {
    let mut addr = skb;
    for &offset in &place.derefs {
        let bytes = world.read(addr.wrapping_add(u64::from(offset)), 8).ok_or(Fault)?;
        addr = u64::from_le_bytes(bytes.try_into().unwrap());
        if addr == 0 {
            return Err(Fault);
        }
    }
    Ok(addr.wrapping_add(u64::from(place.offset)))
}

fn read(r: &Read, world: &World, skb: u64) -> Result<u64, Fault> {
    let size = usize::from(r.size);
    let bytes = world.read(address(&r.place, world, skb)?, size).ok_or(Fault)?;
    let mut le = [0u8; 8];
    le[..size].copy_from_slice(bytes);
    let raw = u64::from_le_bytes(le);
    let width = 8 * u32::from(r.size);
    Ok(match r.convert {
        Convert::Unsigned => raw,
        Convert::Signed => ((raw << (64 - width)) as i64 >> (64 - width)) as u64,
        Convert::BigEndian => {
            let mut be = [0u8; 8];
            be[8 - size..].copy_from_slice(bytes);
            u64::from_be_bytes(be)
        }
        Convert::Bitfield { shift, bits, signed } => {
            let v = raw >> shift;
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let v = v & mask;
            let sign = bits < 64 && signed && v >> (bits - 1) & 1 == 1;
            if sign { v | !mask } else { v }
        }
    })
}

fn value(t: &Typed, world: &World, skb: u64) -> Result<u64, Fault> {
    let v = |x: &Typed| value(x, world, skb);
    Ok(match &t.node {
        Node::Const(c) => *c,
        Node::Read(r) => read(r, world, skb)?,
        Node::StrEq { place, bytes } => {
            let found = world.read(address(place, world, skb)?, bytes.len()).ok_or(Fault)?;
            u64::from(found == bytes.as_slice())
        }
        Node::Not(x) => u64::from(v(x)? == 0),
        Node::BitNot(x) => !v(x)?,
        Node::Neg(x) => v(x)?.wrapping_neg(),
        Node::Arith { op, signed, left, right } => {
            let (a, b) = (v(left)?, v(right)?);
            arith(*op, *signed, a, b)
        }
        Node::Cmp { op, signed, left, right } => {
            let (a, b) = (v(left)?, v(right)?);
            u64::from(compare(*op, *signed, a, b))
        }
        Node::And(a, b) => u64::from(v(a)? != 0 && v(b)? != 0),
        Node::Or(a, b) => u64::from(v(a)? != 0 || v(b)? != 0),
    })
}
