//! `--output-skb-metadata`: field paths such as `skb->dev->name`, each resolved against the
//! kernel's BTF exactly as `--filter-skb-expr` resolves its operands (`check`), and compiled into
//! one subprogram that copies their bytes (`codegen::generate_reads`). Printing them is
//! `crate::skb_out`'s job.
//!
//! # Calling convention
//!
//! - on entry `r1` holds the `struct sk_buff *`, as for the expression, and `r2` points to
//!   [`METADATA_MAX`] slots of [`METADATA_BYTES`] writable bytes (a map value) that the caller
//!   has zeroed;
//! - field `i`'s [`Field::size`] bytes are copied to slot `i` with `bpf_probe_read_kernel`, which
//!   zeroes them when the read fails; a NULL pointer on the path leaves them zero;
//! - it returns `r0 == 0`, clobbers `r0`–`r5`, keeps the skb in `r6` and the slots in `r7` (its
//!   own, as for the expression) and uses 8 bytes of its frame;
//! - every jump is forward and there is no loop.

use tracer_common::skb_out::{METADATA_BYTES, METADATA_MAX};

use super::check::{self, Layout};
use super::{SkbExprError, codegen, parse};
use crate::btf::ctype::{CKind, CType};
use crate::filter::Insn;

/// One field to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// As given, spaces trimmed.
    pub path: String,
    /// The final identifier (`name` in `skb->dev->name`): what pwru prints before `=`.
    pub last: String,
    pub ty: CType,
    /// Bytes copied: the value's, a char array's, or those holding a bitfield.
    pub size: u8,
    /// A bitfield's `(shift, bits)` within the bytes copied.
    pub bitfield: Option<(u8, u8)>,
}

/// Why a path cannot be printed: the path, and the checker's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub error: SkbExprError,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--output-skb-metadata {}: {}", self.path, self.error.detail())
    }
}

impl std::error::Error for FieldError {}

/// Checks `paths` (at most [`METADATA_MAX`]) and compiles the subprogram the module docs describe.
pub fn compile(paths: &[String], layout: &impl Layout) -> Result<(Vec<Insn>, Vec<Field>), FieldError> {
    let fields = paths.iter().map(|p| field(p.trim(), layout)).collect::<Result<Vec<_>, _>>()?;
    if let Some(extra) = fields.get(METADATA_MAX) {
        let error = SkbExprError::Unsupported {
            expr: extra.field.path.clone(),
            message: format!("at most {METADATA_MAX} fields (pwru's limit)"),
        };
        return Err(FieldError { path: extra.field.path.clone(), error });
    }
    let reads: Vec<_> = fields.iter().map(|f| (f.place.clone(), f.field.size)).collect();
    let insns = codegen::generate_reads(&reads, METADATA_BYTES);
    Ok((insns, fields.into_iter().map(|f| f.field).collect()))
}

struct Placed {
    place: super::typed::Place,
    field: Field,
}

fn field(path: &str, layout: &impl Layout) -> Result<Placed, FieldError> {
    let fail = |error| FieldError { path: path.to_owned(), error };
    let unsupported = |message: String| fail(SkbExprError::Unsupported { expr: path.to_owned(), message });
    let last = path.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
    if !path.starts_with("skb") || last.is_empty() || last.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(unsupported("expected a field path such as skb->mark or skb->dev->name".to_owned()));
    }
    let parsed = parse::parse(path).map_err(fail)?;
    let check::Object { place, ty, bitfield } = check::object(path, &parsed, layout).map_err(fail)?;
    let size = match (&ty.kind, bitfield) {
        (CKind::Int { big_endian: true, .. }, Some(_)) => {
            return Err(unsupported("big-endian bitfields are not supported".to_owned()));
        }
        (CKind::Int { .. } | CKind::Enum { .. }, Some((shift, bits))) => (shift + bits).div_ceil(8).next_power_of_two(),
        (CKind::Int { size, .. } | CKind::Enum { size, .. }, None) => *size,
        (CKind::Ptr { .. }, None) => 8,
        (CKind::Array { elem, len }, None)
            if layout.ctype(*elem).is_some_and(|e| matches!(e.kind, CKind::Int { size: 1, .. })) =>
        {
            if *len == 0 || *len as usize > METADATA_BYTES {
                return Err(unsupported(format!(
                    "{}: char arrays of 1 to {METADATA_BYTES} bytes only (a device name)",
                    ty.name
                )));
            }
            *len
        }
        (CKind::Struct { .. } | CKind::Union { .. }, _) => {
            return Err(unsupported(format!("{}: a struct or union; pick one of its members", ty.name)));
        }
        _ => return Err(unsupported(format!("{}: only integers, enums, pointers and char arrays print", ty.name))),
    };
    if size > 8 && !matches!(ty.kind, CKind::Array { .. }) || !matches!(size, 1..=16) {
        return Err(unsupported(format!("{}: {size} bytes, more than the 8 a value can have", ty.name)));
    }
    let bitfield = bitfield.map(|(shift, bits)| (shift as u8, bits as u8));
    Ok(Placed { place, field: Field { path: path.to_owned(), last: last.to_owned(), ty, size: size as u8, bitfield } })
}
