//! Random expressions over a layout's skb: field paths found by walking its members (through
//! pointers, embedded and anonymous structs, arrays), constants that the worlds' fields often
//! hold, every operator. Operands are parenthesized, so the precedence check never fires; the
//! parser's precedence has its own tests.

use super::rng::Rng;
use super::world::{NAMES, VALUES};
use crate::btf::ctype::{CKind, Field, TypeId};
use crate::filter::skb_expr::Layout;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Integer,
    Pointer,
    Chars,
}

pub struct Generator<'a, L> {
    layout: &'a L,
    enumerators: &'a [&'a str],
}

const CMP: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "="];
const ARITH: &[&str] = &["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"];

impl<'a, L: Layout> Generator<'a, L> {
    pub fn new(layout: &'a L, enumerators: &'a [&'a str]) -> Self {
        Self { layout, enumerators }
    }

    /// A boolean-looking expression about `depth` operators deep.
    pub fn expression(&self, rng: &mut Rng, depth: usize) -> String {
        let choice = if depth == 0 { rng.below(3) } else { rng.below(8) };
        match choice {
            0 => {
                let path = self.path(rng, Leaf::Integer);
                format!("{path} {} {}", rng.pick(CMP), self.constant(rng))
            }
            1 => match rng.below(3) {
                0 => format!("{} {} NULL", self.path(rng, Leaf::Pointer), rng.pick(&["==", "!="])),
                1 => self.path(rng, Leaf::Pointer),
                _ => {
                    let name = String::from_utf8(rng.pick(NAMES).to_vec()).unwrap();
                    format!("{} {} \"{name}\"", self.path(rng, Leaf::Chars), rng.pick(&["==", "!="]))
                }
            },
            2 => self.path(rng, Leaf::Integer),
            3 | 4 => {
                let op = rng.pick(&["&&", "||"]);
                format!("({}) {op} ({})", self.expression(rng, depth - 1), self.expression(rng, depth - 1))
            }
            5 => format!("!({})", self.expression(rng, depth - 1)),
            _ => format!("({}) {} ({})", self.arith(rng, depth - 1), rng.pick(CMP), self.arith(rng, depth - 1)),
        }
    }

    fn arith(&self, rng: &mut Rng, depth: usize) -> String {
        match if depth == 0 { rng.below(2) } else { rng.below(6) } {
            0 => self.path(rng, Leaf::Integer),
            1 => self.constant(rng),
            2 => format!("{}({})", rng.pick(&["-", "~", "!", "+"]), self.arith(rng, depth - 1)),
            _ => format!("({}) {} ({})", self.arith(rng, depth - 1), rng.pick(ARITH), self.arith(rng, depth - 1)),
        }
    }

    fn constant(&self, rng: &mut Rng) -> String {
        match rng.below(8) {
            0 if !self.enumerators.is_empty() => rng.pick(self.enumerators).to_owned(),
            1 => format!("-{}", rng.below(300)),
            2 => format!("{:#x}u", rng.pick(VALUES)),
            3 => format!("{}", rng.next() >> rng.below(64)),
            4 => format!("{:#x}", rng.pick(VALUES) & 0xffff),
            _ => format!("{}", rng.pick(VALUES)),
        }
    }

    /// A path to a leaf of the kind asked for; `skb->len`-like when the walk finds none.
    fn path(&self, rng: &mut Rng, want: Leaf) -> String {
        for _ in 0..20 {
            if let Some(path) = self.walk(rng, want) {
                return path;
            }
        }
        match want {
            Leaf::Integer => "skb->len".to_owned(),
            Leaf::Pointer => "skb->dev".to_owned(),
            Leaf::Chars => "skb->dev->name".to_owned(),
        }
    }

    fn walk(&self, rng: &mut Rng, want: Leaf) -> Option<String> {
        let mut text = "skb".to_owned();
        let mut ty = self.layout.root()?;
        let mut arrow = true;
        for _ in 0..6 {
            let members = self.named_members(ty, 0);
            if members.is_empty() {
                return None;
            }
            let m = rng.pick(&members.iter().collect::<Vec<_>>()).clone();
            text += if arrow { "->" } else { "." };
            text += &m.name;
            ty = m.ty;
            // Arrays: stop at a char array, or index one element.
            loop {
                match self.layout.ctype(ty)?.kind {
                    CKind::Array { elem, len } if len > 0 => {
                        let elem_kind = self.layout.ctype(elem)?.kind;
                        if matches!(elem_kind, CKind::Int { size: 1, .. }) && (want == Leaf::Chars || rng.below(2) == 0)
                        {
                            return (want == Leaf::Chars).then_some(text);
                        }
                        text += &format!("[{}]", rng.below(len.min(4) as usize));
                        ty = elem;
                    }
                    _ => break,
                }
            }
            match self.layout.ctype(ty)?.kind {
                CKind::Int { size: 1 | 2 | 4 | 8, .. } | CKind::Enum { .. } => {
                    return (want == Leaf::Integer).then_some(text);
                }
                CKind::Ptr { target: Some(target) }
                    if matches!(self.layout.ctype(target)?.kind, CKind::Struct { .. } | CKind::Union { .. })
                        && (want != Leaf::Pointer || rng.below(3) == 0) =>
                {
                    ty = target;
                    arrow = true;
                }
                CKind::Ptr { .. } => return (want == Leaf::Pointer).then_some(text),
                CKind::Struct { .. } | CKind::Union { .. } => arrow = false,
                _ => return None,
            }
        }
        None
    }

    /// Members reachable by name, anonymous ones looked through.
    fn named_members(&self, ty: TypeId, depth: usize) -> Vec<Field> {
        let Some(CKind::Struct { members, .. } | CKind::Union { members, .. }) = self.layout.ctype(ty).map(|t| t.kind)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in members {
            if !m.name.is_empty() {
                out.push(m);
            } else if depth < 4 {
                out.extend(self.named_members(m.ty, depth + 1));
            }
        }
        out
    }
}
