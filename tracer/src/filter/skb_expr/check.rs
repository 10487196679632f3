//! Type check: [`Expr`] → [`Typed`], against the kernel's types. Field paths become a chain of
//! pointer reads and a final offset; every operator gets the signedness the module docs' rules
//! give it; whatever C would reject, or this compiler cannot do, is an error naming the operand.

use super::SkbExprError;
use super::parse::{BinOp, Expr, ExprKind, UnOp};
use super::typed::{Arith, Cmp, Convert, Node, Place, Read, Typed};
use crate::btf::ctype::{CKind, CType, Enumerator, TypeId};

mod paths;

/// Where the checker learns the kernel's types: the running kernel's BTF, or a made-up layout
/// in tests.
pub trait Layout {
    /// `struct sk_buff`.
    fn root(&self) -> Option<TypeId>;
    fn ctype(&self, id: TypeId) -> Option<CType>;
    fn enumerators(&self, name: &str) -> Vec<Enumerator>;
}

/// A checked operand that is not (yet) a value.
enum Operand {
    /// `skb` itself.
    Root,
    /// An object in memory of type `ty`; `bitfield` is `(shift, bits)` past `place.offset`.
    Object {
        place: Place,
        ty: CType,
        bitfield: Option<(u32, u32)>,
    },
    Value(Typed, ValueKind),
    /// A string literal, only valid as an operand of `==`/`!=` (see `string_eq`).
    Str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Integer,
    Pointer,
}

struct Checker<'a, L> {
    src: &'a str,
    layout: &'a L,
}

pub fn check(src: &str, expr: &Expr, layout: &impl Layout) -> Result<Typed, SkbExprError> {
    let checker = Checker { src, layout };
    let (value, _) = checker.value(expr)?;
    Ok(value)
}

fn long(node: Node) -> Typed {
    Typed { node, signed: true }
}

impl<L: Layout> Checker<'_, L> {
    fn text(&self, e: &Expr) -> String {
        self.src.get(e.span.0..e.span.1).unwrap_or_default().trim().to_owned()
    }

    fn ctype(&self, id: TypeId) -> Result<CType, SkbExprError> {
        self.layout.ctype(id).ok_or_else(|| SkbExprError::Unsupported {
            expr: format!("BTF type {id}"),
            message: "missing or malformed in the kernel's BTF".to_owned(),
        })
    }

    /// `expr` as a value, with whether it is a pointer.
    fn value(&self, expr: &Expr) -> Result<(Typed, ValueKind), SkbExprError> {
        match self.operand(expr)? {
            Operand::Value(v, kind) => Ok((v, kind)),
            Operand::Root => Err(SkbExprError::TypeMismatch {
                expr: self.text(expr),
                ty: "struct sk_buff *".to_owned(),
                message: "the skb pointer itself is never NULL here; test one of its fields, e.g. skb->len".to_owned(),
            }),
            Operand::Str => Err(SkbExprError::TypeMismatch {
                expr: self.text(expr),
                ty: "string".to_owned(),
                message: "a string can only be compared (== or !=) with a char array".to_owned(),
            }),
            Operand::Object { place, ty, bitfield } => self.read(expr, place, ty, bitfield),
        }
    }

    /// The value of the object at `place`.
    fn read(
        &self,
        expr: &Expr,
        place: Place,
        ty: CType,
        bitfield: Option<(u32, u32)>,
    ) -> Result<(Typed, ValueKind), SkbExprError> {
        let not_a_number = |what: &str| SkbExprError::TypeMismatch {
            expr: self.text(expr),
            ty: ty.name.clone(),
            message: format!("{what}, not a number"),
        };
        let (size, signed, big_endian) = match ty.kind {
            CKind::Int { size, signed, big_endian } => (size, signed, big_endian),
            CKind::Enum { size, signed } => (size, signed, false),
            CKind::Ptr { .. } => {
                let read = Read { place, size: 8, convert: Convert::Unsigned };
                return Ok((Typed { node: Node::Read(read), signed: false }, ValueKind::Pointer));
            }
            CKind::Array { .. } => {
                return Err(not_a_number("an array: index it, or compare a char array with a string"));
            }
            CKind::Struct { .. } | CKind::Union { .. } => {
                return Err(not_a_number("a struct or union: pick one of its members with `.`"));
            }
            CKind::Other => return Err(not_a_number("a type that cannot be read")),
        };
        if let Some((shift, bits)) = bitfield {
            let bytes = (shift + bits).div_ceil(8).next_power_of_two();
            if bytes > 8 || big_endian {
                return Err(SkbExprError::Unsupported {
                    expr: self.text(expr),
                    message: "this bitfield's layout (wider than 8 bytes, or big-endian) is not supported".to_owned(),
                });
            }
            let convert = Convert::Bitfield { shift: shift as u8, bits: bits as u8, signed };
            let read = Read { place, size: bytes as u8, convert };
            return Ok((Typed { node: Node::Read(read), signed: signed || bits < 64 }, ValueKind::Integer));
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(SkbExprError::Unsupported {
                expr: self.text(expr),
                message: format!("{size}-byte integers are not supported"),
            });
        }
        let convert = match (big_endian, signed) {
            (true, _) if size > 1 => Convert::BigEndian,
            (_, true) => Convert::Signed,
            _ => Convert::Unsigned,
        };
        let read = Read { place, size: size as u8, convert };
        Ok((Typed { node: Node::Read(read), signed: size < 8 || signed }, ValueKind::Integer))
    }

    fn operand(&self, expr: &Expr) -> Result<Operand, SkbExprError> {
        match &expr.kind {
            ExprKind::Int { value, unsigned } => Ok(Operand::Value(
                Typed { node: Node::Const(*value), signed: !unsigned && *value <= i64::MAX as u64 },
                ValueKind::Integer,
            )),
            ExprKind::Str(_) => Ok(Operand::Str),
            ExprKind::Name(name) => self.name(name),
            ExprKind::Member { base, field, arrow } => self.member(expr, base, field, *arrow),
            ExprKind::Index { base, index } => self.index(expr, base, index),
            ExprKind::Unary(op, operand) => self.unary(*op, operand),
            ExprKind::Binary(op, left, right) => self.binary(expr, *op, left, right),
        }
    }

    fn name(&self, name: &str) -> Result<Operand, SkbExprError> {
        match name {
            "skb" => return Ok(Operand::Root),
            "NULL" => return Ok(Operand::Value(long(Node::Const(0)), ValueKind::Pointer)),
            _ => {}
        }
        let found = self.layout.enumerators(name);
        let Some(first) = found.first() else {
            return Err(SkbExprError::UnknownName { name: name.to_owned() });
        };
        if found.iter().any(|e| e.value != first.value) {
            let mut enums: Vec<String> = found.iter().map(|e| format!("enum {}", e.enum_name)).collect();
            enums.dedup();
            return Err(SkbExprError::AmbiguousName { name: name.to_owned(), enums });
        }
        let signed = first.signed || first.value <= i64::MAX as u64;
        Ok(Operand::Value(Typed { node: Node::Const(first.value), signed }, ValueKind::Integer))
    }

    fn unary(&self, op: UnOp, operand: &Expr) -> Result<Operand, SkbExprError> {
        let (value, kind) = self.value(operand)?;
        if op != UnOp::Not && kind == ValueKind::Pointer {
            return Err(self.pointer_math(operand));
        }
        let signed = value.signed;
        let node = match op {
            UnOp::Not => return Ok(Operand::Value(long(Node::Not(Box::new(value))), ValueKind::Integer)),
            UnOp::Plus => return Ok(Operand::Value(value, ValueKind::Integer)),
            UnOp::BitNot => Node::BitNot(Box::new(value)),
            UnOp::Neg => Node::Neg(Box::new(value)),
        };
        Ok(Operand::Value(Typed { node, signed }, ValueKind::Integer))
    }

    fn pointer_math(&self, operand: &Expr) -> SkbExprError {
        SkbExprError::TypeMismatch {
            expr: self.text(operand),
            ty: "pointer".to_owned(),
            message: "pointers can be compared and tested, not computed with".to_owned(),
        }
    }

    fn binary(&self, expr: &Expr, op: BinOp, left: &Expr, right: &Expr) -> Result<Operand, SkbExprError> {
        self.check_precedence(expr, op, left, right)?;
        if !matches!(op, BinOp::Eq | BinOp::Ne)
            && let Some(s) = [left, right].into_iter().find(|e| matches!(e.kind, ExprKind::Str(_)))
        {
            return Err(SkbExprError::TypeMismatch {
                expr: self.text(s),
                ty: "string".to_owned(),
                message: "a string can only be compared (== or !=) with a char array".to_owned(),
            });
        }
        if matches!(op, BinOp::Eq | BinOp::Ne)
            && let Some(eq) = self.string_eq(left, right)?
        {
            let node = if op == BinOp::Eq { eq } else { Node::Not(Box::new(long(eq))) };
            return Ok(Operand::Value(long(node), ValueKind::Integer));
        }
        let (l, lk) = self.value(left)?;
        let (r, rk) = self.value(right)?;
        let both_signed = l.signed && r.signed;
        let (l, r) = (Box::new(l), Box::new(r));
        let logical = |node| Ok(Operand::Value(long(node), ValueKind::Integer));
        let cmp = |op| logical(Node::Cmp { op, signed: both_signed, left: l.clone(), right: r.clone() });
        match op {
            BinOp::Or => return logical(Node::Or(l, r)),
            BinOp::And => return logical(Node::And(l, r)),
            BinOp::Eq => return cmp(Cmp::Eq),
            BinOp::Ne => return cmp(Cmp::Ne),
            BinOp::Lt => return cmp(Cmp::Lt),
            BinOp::Le => return cmp(Cmp::Le),
            BinOp::Gt => return cmp(Cmp::Gt),
            BinOp::Ge => return cmp(Cmp::Ge),
            _ => {}
        }
        for (side, kind) in [(left, lk), (right, rk)] {
            if kind == ValueKind::Pointer {
                return Err(self.pointer_math(side));
            }
        }
        let (op, signed) = match op {
            BinOp::BitOr => (Arith::Or, both_signed),
            BinOp::BitXor => (Arith::Xor, both_signed),
            BinOp::BitAnd => (Arith::And, both_signed),
            BinOp::Shl => (Arith::Shl, l.signed),
            BinOp::Shr => (Arith::Shr, l.signed),
            BinOp::Add => (Arith::Add, both_signed),
            BinOp::Sub => (Arith::Sub, both_signed),
            BinOp::Mul => (Arith::Mul, both_signed),
            BinOp::Div => (Arith::Div, both_signed),
            BinOp::Mod => (Arith::Mod, both_signed),
            _ => unreachable!("logical operators and comparisons returned above"),
        };
        Ok(Operand::Value(Typed { node: Node::Arith { op, signed, left: l, right: r }, signed }, ValueKind::Integer))
    }

    /// `a & b == c` and `a == b & c`: C compares first, which is rarely what was meant.
    fn check_precedence(&self, expr: &Expr, op: BinOp, left: &Expr, right: &Expr) -> Result<(), SkbExprError> {
        if !matches!(op, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor) {
            return Ok(());
        }
        let suggestion = match (&left.kind, &right.kind) {
            (_, ExprKind::Binary(cmp, b, c)) if cmp.is_comparison() && !right.parens => {
                format!("({} {} {}) {} {}", self.text(left), op.symbol(), self.text(b), cmp.symbol(), self.text(c))
            }
            (ExprKind::Binary(cmp, a, b), _) if cmp.is_comparison() && !left.parens => {
                format!("{} {} ({} {} {})", self.text(a), cmp.symbol(), self.text(b), op.symbol(), self.text(right))
            }
            _ => return Ok(()),
        };
        Err(SkbExprError::Precedence { expr: self.text(expr), suggestion })
    }

    /// `array == "literal"` (either way round), when one side is a string.
    fn string_eq(&self, left: &Expr, right: &Expr) -> Result<Option<Node>, SkbExprError> {
        let (array, literal) = match (&left.kind, &right.kind) {
            (_, ExprKind::Str(s)) => (left, s),
            (ExprKind::Str(s), _) => (right, s),
            _ => return Ok(None),
        };
        let mismatch = |ty: String, message: &str| SkbExprError::TypeMismatch {
            expr: self.text(array),
            ty,
            message: message.to_owned(),
        };
        let Operand::Object { place, ty, bitfield: None } = self.operand(array)? else {
            return Err(mismatch("value".to_owned(), "only a char array can be compared with a string"));
        };
        let len = match ty.kind {
            CKind::Array { elem, len } if matches!(self.ctype(elem)?.kind, CKind::Int { size: 1, .. }) => len,
            CKind::Ptr { .. } => {
                return Err(SkbExprError::Unsupported {
                    expr: self.text(array),
                    message: "comparing a `char *` with a string is not supported, only char arrays".to_owned(),
                });
            }
            _ => return Err(mismatch(ty.name, "only a char array can be compared with a string")),
        };
        if literal.contains(&0) {
            return Err(mismatch(ty.name, "the string has a NUL byte inside; C's comparison would stop there"));
        }
        let mut bytes = literal.clone();
        if bytes.len() > len as usize {
            return Err(mismatch(ty.name, &format!("holds at most {len} bytes; the string never matches")));
        }
        if bytes.len() < len as usize {
            bytes.push(0);
        }
        if bytes.len() > super::MAX_STRING {
            return Err(SkbExprError::Unsupported {
                expr: self.text(array),
                message: format!("strings longer than {} bytes are not supported", super::MAX_STRING - 1),
            });
        }
        Ok(Some(Node::StrEq { place, bytes }))
    }
}
