//! The checked expression that code generation and the tests' interpreter consume, and the
//! meaning of its operators on 64-bit values (the module docs' rules), shared by the constant
//! folder here and the interpreter.

/// An expression with its value's type: `signed` is C's `long`, otherwise `unsigned long`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typed {
    pub node: Node,
    pub signed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Const(u64),
    Read(Read),
    /// C string equality of the char array at `place` with `bytes` (the literal, plus its NUL
    /// when the array is longer): 1 when the first `bytes.len()` bytes are equal.
    StrEq {
        place: Place,
        bytes: Vec<u8>,
    },
    Not(Box<Typed>),
    BitNot(Box<Typed>),
    Neg(Box<Typed>),
    /// `signed` picks signed division, remainder and right shift.
    Arith {
        op: Arith,
        signed: bool,
        left: Box<Typed>,
        right: Box<Typed>,
    },
    /// `signed` picks signed ordering.
    Cmp {
        op: Cmp,
        signed: bool,
        left: Box<Typed>,
        right: Box<Typed>,
    },
    And(Box<Typed>, Box<Typed>),
    Or(Box<Typed>, Box<Typed>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A location in kernel memory: start at the skb; for each of `derefs`, add it and read the
/// pointer there (NULL ends the expression as false); then add `offset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub derefs: Vec<u32>,
    pub offset: u32,
}

/// A field read: `size` bytes at `place`, then one of the conversions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub place: Place,
    /// 1, 2, 4 or 8.
    pub size: u8,
    pub convert: Convert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convert {
    /// Zero-extend.
    Unsigned,
    /// Sign-extend from `size` bytes.
    Signed,
    /// Swap from big endian (`__be*`), zero-extending.
    BigEndian,
    /// Bits `shift..shift + bits` of the bytes read, as a little-endian number, sign-extended
    /// when `signed`.
    Bitfield { shift: u8, bits: u8, signed: bool },
}

/// The value of an expression that reads no memory (array indices).
pub fn fold(t: &Typed) -> Option<u64> {
    let b = u64::from;
    Some(match &t.node {
        Node::Const(v) => *v,
        Node::Read(_) | Node::StrEq { .. } => return None,
        Node::Not(x) => b(fold(x)? == 0),
        Node::BitNot(x) => !fold(x)?,
        Node::Neg(x) => fold(x)?.wrapping_neg(),
        Node::And(x, y) => b(fold(x)? != 0 && fold(y)? != 0),
        Node::Or(x, y) => b(fold(x)? != 0 || fold(y)? != 0),
        Node::Arith { op, signed, left, right } => arith(*op, *signed, fold(left)?, fold(right)?),
        Node::Cmp { op, signed, left, right } => b(compare(*op, *signed, fold(left)?, fold(right)?)),
    })
}

/// The module docs' arithmetic, on 64-bit values.
pub fn arith(op: Arith, signed: bool, a: u64, b: u64) -> u64 {
    let (sa, sb) = (a as i64, b as i64);
    match op {
        Arith::Add => a.wrapping_add(b),
        Arith::Sub => a.wrapping_sub(b),
        Arith::Mul => a.wrapping_mul(b),
        Arith::Div if b == 0 => 0,
        Arith::Mod if b == 0 => a,
        Arith::Div if signed => sa.wrapping_div(sb) as u64,
        Arith::Mod if signed => sa.wrapping_rem(sb) as u64,
        Arith::Div => a / b,
        Arith::Mod => a % b,
        Arith::And => a & b,
        Arith::Or => a | b,
        Arith::Xor => a ^ b,
        Arith::Shl => a << (b & 63),
        Arith::Shr if signed => (sa >> (b & 63)) as u64,
        Arith::Shr => a >> (b & 63),
    }
}

pub fn compare(op: Cmp, signed: bool, a: u64, b: u64) -> bool {
    let ord = if signed { (a as i64).cmp(&(b as i64)) } else { a.cmp(&b) };
    match op {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Lt => ord.is_lt(),
        Cmp::Le => ord.is_le(),
        Cmp::Gt => ord.is_gt(),
        Cmp::Ge => ord.is_ge(),
    }
}
