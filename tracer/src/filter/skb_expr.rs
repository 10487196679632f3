//! `--filter-skb-expr`: a C-like boolean expression over the fields of the `struct sk_buff`
//! being traced, such as `skb->len > 100 && skb->dev->ifindex == 4`, type-checked against the
//! running kernel's BTF (`check`) and compiled (`codegen`) to an eBPF subprogram that the tracer
//! enters with a BPF-to-BPF `call` before it builds an event, as it does the pcap filter.
//!
//! # Calling convention
//!
//! - on entry `r1` holds the `struct sk_buff *`, as a scalar (kprobes, `raw_tp`) or as the
//!   verifier's trusted BTF pointer (`tp_btf`); the subprogram only adds offsets to it and hands
//!   the sums to `bpf_probe_read_kernel`;
//! - it returns `r0 == 1` to keep the event and `r0 == 0` to drop it, never anything else, so a
//!   caller may test either the whole register or its low 32 bits;
//! - it clobbers `r0`–`r5` (helper calls), keeps the skb in `r6` (its own: the verifier and the
//!   JITs give each subprogram fresh `r6`–`r9` and restore the caller's) and uses at most
//!   [`MAX_STACK`] bytes of its frame;
//! - every jump is forward and there is no loop: the verifier walks each path once.
//!
//! # The language
//!
//! ```text
//! expr    := expr binop expr | unop expr | postfix
//! binop   := || && | ^ & == != = < <= > >= << >> + - * / %     (C's precedence, lowest first;
//!                                                               `=` is `==`, as in pwru)
//! unop    := ! ~ - +
//! postfix := primary ( "->" name | "." name | "[" constant "]" )*
//! primary := skb | NULL | ENUMERATOR | integer | "string" | "(" expr ")"
//! integer := 123 | 0x7b | 0o173 | 0b1111011, with an optional u/U (unsigned) and l/L suffixes
//! ```
//!
//! Values follow C on an LP64 machine where every operand is first converted to `long`:
//! - every value is 64 bits wide, signed (`long`) or unsigned (`unsigned long`); a field
//!   narrower than 64 bits is a `long` holding its value (zero- or sign-extended as its type
//!   says), a 64-bit field keeps its signedness, a literal is `long` unless it has a `u`
//!   suffix or exceeds `LONG_MAX`;
//! - an operation or comparison is unsigned when either operand is; a shift has its left
//!   operand's type, and uses the low 6 bits of its count; arithmetic wraps;
//! - `/` and `%` truncate toward zero; `x / 0` is 0 and `x % 0` is `x` (eBPF's rule, where C has
//!   none); comparisons, `!`, `&&` and `||` give 0 or 1, and `&&`/`||` short-circuit;
//! - a field declared through a `__be16`/`__be32`/`__be64` typedef reads in host order, as in
//!   pwru: `skb->protocol == 0x0800` is IPv4;
//! - bitfields read as their declared type says (`skb->pkt_type == 0`); enums read as integers,
//!   and an enumerator's name stands for its value;
//! - a pointer field can be compared (`skb->sk != NULL`) and tested for truth, not computed with;
//! - a char array compares with a string literal by C string equality, `==`/`!=` only:
//!   `skb->dev->name == "eth0"` reads the 5 bytes `eth0\0` (all 16 for a 16-byte literal);
//!   `char *` strings are not supported;
//! - array indices are constants, checked against the array's length.
//!
//! Reading a field through a NULL pointer, or a read that faults, makes the whole expression
//! false, whatever operators surround it: `!(skb->sk->sk_mark == 1)` drops skbs without a
//! socket. Test the pointer first to decide otherwise: `skb->sk == NULL || skb->sk->sk_mark == 1`.
//!
//! C parses `skb->mark & 0xff == 0x10` as `skb->mark & (0xff == 0x10)`, always 0. Rather than
//! compile that or guess, a comparison written directly as an operand of `&`, `|` or `^` is an
//! error that shows where the parentheses go.

mod check;
mod codegen;
mod parse;
#[cfg(test)]
mod tests;
mod typed;

use std::fmt;

pub use check::Layout;

use super::Insn;
use crate::btf::KernelBtf;
use crate::btf::ctype::{CType, Enumerator, TypeId};

/// The most stack the subprogram's frame uses, in bytes: an 8-byte read buffer (or up to
/// [`MAX_STRING`] bytes for a string comparison) and the values awaiting the right operand of a
/// binary operator, 8 bytes each.
pub const MAX_STACK: usize = 128;

/// The longest string literal a char array can be compared with.
pub const MAX_STRING: usize = 64;

/// The largest expression, in eBPF instructions.
pub const MAX_INSNS: usize = super::MAX_INSNS;

/// The expression's root: `skb` is a pointer to this struct.
pub const ROOT_STRUCT: &str = "sk_buff";

/// Why an expression yields no filter. Each is the user's mistake (a usage error), except
/// [`SkbExprError::NoSkbType`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkbExprError {
    /// Not an expression of the grammar; `at` is a byte offset into it.
    Syntax { at: usize, message: String },
    /// `field` is not a member of `ty`, the type of `path`.
    UnknownField { path: String, field: String, ty: String, suggestion: Option<String> },
    /// An identifier that is neither `skb`, `NULL` nor one of the kernel's enumerators.
    UnknownName { name: String },
    /// An enumerator defined with different values in several enums.
    AmbiguousName { name: String, enums: Vec<String> },
    /// `->`, `.` or `[]` applied to an operand of the wrong type (`expr` has type `ty`).
    BadAccess { expr: String, ty: String, message: String },
    /// An operand whose type the operator cannot take.
    TypeMismatch { expr: String, ty: String, message: String },
    /// A comparison written as an operand of a bitwise operator; `suggestion` shows the usual
    /// intent with parentheses.
    Precedence { expr: String, suggestion: String },
    /// Valid C that this compiler does not handle.
    Unsupported { expr: String, message: String },
    /// More than [`MAX_INSNS`] instructions or [`MAX_STACK`] bytes of stack.
    TooLarge { insns: usize, stack: usize },
    /// The kernel's BTF has no `struct sk_buff`.
    NoSkbType,
}

impl fmt::Display for SkbExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { at, message } => write!(f, "--filter-skb-expr: at byte {at}: {message}"),
            Self::UnknownField { path, field, ty, suggestion } => {
                write!(f, "--filter-skb-expr: `{path}`: {ty} has no member `{field}`")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => Ok(()),
                }
            }
            Self::UnknownName { name } => write!(
                f,
                "--filter-skb-expr: unknown name `{name}`: expected `skb`, `NULL` or an enumerator of the kernel"
            ),
            Self::AmbiguousName { name, enums } => write!(
                f,
                "--filter-skb-expr: `{name}` has different values in enums {}; write the number",
                enums.join(", ")
            ),
            Self::BadAccess { expr, ty, message } | Self::TypeMismatch { expr, ty, message } => {
                write!(f, "--filter-skb-expr: `{expr}` ({ty}): {message}")
            }
            Self::Precedence { expr, suggestion } => write!(
                f,
                "--filter-skb-expr: `{expr}` compares before the bitwise operator, as in C; \
                 write `{suggestion}` (or parenthesize the comparison)"
            ),
            Self::Unsupported { expr, message } => write!(f, "--filter-skb-expr: `{expr}`: {message}"),
            Self::TooLarge { insns, stack } => write!(
                f,
                "--filter-skb-expr: expression too large: {insns} eBPF instructions (max {MAX_INSNS}), \
                 {stack} bytes of stack (max {MAX_STACK})"
            ),
            Self::NoSkbType => write!(f, "--filter-skb-expr: the kernel's BTF has no struct {ROOT_STRUCT}"),
        }
    }
}

impl std::error::Error for SkbExprError {}

/// Compiles `expr` into the subprogram described in the module docs, against the running
/// kernel's types.
pub fn compile(expr: &str, btf: &KernelBtf) -> Result<Vec<Insn>, SkbExprError> {
    compile_with(expr, btf)
}

/// [`compile`] against any source of kernel types.
pub fn compile_with(expr: &str, layout: &impl Layout) -> Result<Vec<Insn>, SkbExprError> {
    let parsed = parse::parse(expr)?;
    let typed = check::check(expr, &parsed, layout)?;
    codegen::generate(&typed)
}

impl Layout for KernelBtf {
    fn root(&self) -> Option<TypeId> {
        self.struct_id(ROOT_STRUCT)
    }

    fn ctype(&self, id: TypeId) -> Option<CType> {
        KernelBtf::ctype(self, id)
    }

    fn enumerators(&self, name: &str) -> Vec<Enumerator> {
        KernelBtf::enumerators(self, name)
    }
}
