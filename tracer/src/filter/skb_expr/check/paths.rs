//! Field paths: `->`, `.` and `[]` resolved against the layout into a [`Place`] and the type
//! found there, with the errors that name what does not fit.

use super::{Checker, Layout, Operand};
use crate::btf::ctype::{CKind, CType, Field};
use crate::filter::skb_expr::SkbExprError;
use crate::filter::skb_expr::parse::Expr;
use crate::filter::skb_expr::typed::{Place, fold};

impl<L: Layout> Checker<'_, L> {
    /// The object a pointer operand points to.
    pub(super) fn deref(&self, base: &Expr, what: &str) -> Result<(Place, CType), SkbExprError> {
        let bad = |ty: &CType, message: String| SkbExprError::BadAccess {
            expr: self.text(base),
            ty: ty.name.clone(),
            message,
        };
        match self.operand(base)? {
            Operand::Root => {
                let root = self.layout.root().ok_or(SkbExprError::NoSkbType)?;
                Ok((Place::default(), self.ctype(root)?))
            }
            Operand::Object { place, ty, bitfield: None } => match ty.kind {
                CKind::Ptr { target: Some(target) } => {
                    let mut derefs = place.derefs;
                    derefs.push(place.offset);
                    Ok((Place { derefs, offset: 0 }, self.ctype(target)?))
                }
                CKind::Ptr { target: None } => Err(bad(&ty, format!("{what} through `void *`"))),
                CKind::Struct { .. } | CKind::Union { .. } if what == "->" => {
                    Err(bad(&ty, "not a pointer: use `.` instead of `->`".to_owned()))
                }
                _ => Err(bad(&ty, format!("not a pointer: `{what}` needs one"))),
            },
            Operand::Object { ty, .. } => Err(bad(&ty, "a bitfield".to_owned())),
            Operand::Value(..) | Operand::Str => Err(SkbExprError::BadAccess {
                expr: self.text(base),
                ty: "value".to_owned(),
                message: format!("`{what}` needs a field of the skb, not a computed value"),
            }),
        }
    }

    pub(super) fn member(&self, expr: &Expr, base: &Expr, field: &str, arrow: bool) -> Result<Operand, SkbExprError> {
        let (mut place, ty) = if arrow {
            self.deref(base, "->")?
        } else {
            match self.operand(base)? {
                Operand::Object { place, ty, bitfield: None } if !matches!(ty.kind, CKind::Ptr { .. }) => (place, ty),
                Operand::Object { ty, .. } if matches!(ty.kind, CKind::Ptr { .. }) => {
                    return Err(SkbExprError::BadAccess {
                        expr: self.text(base),
                        ty: ty.name,
                        message: "a pointer: use `->` instead of `.`".to_owned(),
                    });
                }
                Operand::Root => {
                    return Err(SkbExprError::BadAccess {
                        expr: "skb".to_owned(),
                        ty: "struct sk_buff *".to_owned(),
                        message: "a pointer: use `->` instead of `.`".to_owned(),
                    });
                }
                _ => {
                    return Err(SkbExprError::BadAccess {
                        expr: self.text(base),
                        ty: "value".to_owned(),
                        message: "`.` needs a struct or union".to_owned(),
                    });
                }
            }
        };
        let members = match &ty.kind {
            CKind::Struct { members, .. } | CKind::Union { members, .. } => members,
            _ => {
                return Err(SkbExprError::BadAccess {
                    expr: self.text(base),
                    ty: ty.name.clone(),
                    message: format!("not a struct or union: it has no member `{field}`"),
                });
            }
        };
        let Some(found) = self.find_member(members, field)? else {
            let mut names = Vec::new();
            self.member_names(members, &mut names, 0)?;
            return Err(SkbExprError::UnknownField {
                path: self.text(expr),
                field: field.to_owned(),
                ty: ty.name.clone(),
                suggestion: did_you_mean(field, &names),
            });
        };
        let ty = self.ctype(found.ty)?;
        place.offset += found.bit_offset / 8;
        let bitfield = (found.bitfield_bits != 0).then_some((found.bit_offset % 8, found.bitfield_bits));
        if bitfield.is_none() && found.bit_offset % 8 != 0 {
            return Err(SkbExprError::Unsupported {
                expr: self.text(expr),
                message: "a member that does not start on a byte".to_owned(),
            });
        }
        Ok(Operand::Object { place, ty, bitfield })
    }

    /// A member by name, looking into anonymous members as C does; offsets from `members`' owner.
    fn find_member(&self, members: &[Field], name: &str) -> Result<Option<Field>, SkbExprError> {
        for m in members {
            if m.name == name {
                return Ok(Some(m.clone()));
            }
            if m.name.is_empty()
                && let CKind::Struct { members: inner, .. } | CKind::Union { members: inner, .. } =
                    self.ctype(m.ty)?.kind
                && let Some(mut found) = self.find_member(&inner, name)?
            {
                found.bit_offset += m.bit_offset;
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn member_names(&self, members: &[Field], out: &mut Vec<String>, depth: usize) -> Result<(), SkbExprError> {
        for m in members {
            if !m.name.is_empty() {
                out.push(m.name.clone());
            } else if depth < 8
                && let CKind::Struct { members: inner, .. } | CKind::Union { members: inner, .. } =
                    self.ctype(m.ty)?.kind
            {
                self.member_names(&inner, out, depth + 1)?;
            }
        }
        Ok(())
    }

    pub(super) fn index(&self, expr: &Expr, base: &Expr, index: &Expr) -> Result<Operand, SkbExprError> {
        let (index_value, _) = self.value(index)?;
        let Some(i) = fold(&index_value) else {
            return Err(SkbExprError::Unsupported {
                expr: self.text(index),
                message: "array indices must be constants".to_owned(),
            });
        };
        let (mut place, elem, len) = match self.operand(base)? {
            Operand::Object { place, ty, bitfield: None } if matches!(ty.kind, CKind::Array { .. }) => {
                let CKind::Array { elem, len } = ty.kind else { unreachable!() };
                (place, elem, Some(len))
            }
            Operand::Object { ty, bitfield: None, .. } if matches!(ty.kind, CKind::Ptr { target: Some(_) }) => {
                let CKind::Ptr { target: Some(target) } = ty.kind else { unreachable!() };
                let (place, _) = self.deref(base, "[]")?;
                (place, target, None)
            }
            Operand::Root => (Place::default(), self.layout.root().ok_or(SkbExprError::NoSkbType)?, None),
            Operand::Object { ty, .. } => {
                return Err(SkbExprError::BadAccess {
                    expr: self.text(base),
                    ty: ty.name,
                    message: "neither an array nor a pointer: it cannot be indexed".to_owned(),
                });
            }
            Operand::Value(..) | Operand::Str => {
                return Err(SkbExprError::BadAccess {
                    expr: self.text(base),
                    ty: "value".to_owned(),
                    message: "only fields of the skb can be indexed".to_owned(),
                });
            }
        };
        // A flexible array member (`len` 0) takes any index, as in C.
        let signed_index = i as i64;
        if signed_index < 0 || len.is_some_and(|len| len != 0 && i >= u64::from(len)) {
            return Err(SkbExprError::BadAccess {
                expr: self.text(expr),
                ty: len.map_or("pointer".to_owned(), |len| format!("array of {len}")),
                message: format!("index {signed_index} is out of range"),
            });
        }
        let ty = self.ctype(elem)?;
        let size = self.size_of(&ty, 0).ok_or_else(|| SkbExprError::Unsupported {
            expr: self.text(base),
            message: format!("elements of type {} have no size", ty.name),
        })?;
        let offset = i.checked_mul(u64::from(size)).and_then(|o| o.checked_add(u64::from(place.offset)));
        place.offset = offset.and_then(|o| u32::try_from(o).ok()).filter(|o| *o < 1 << 24).ok_or_else(|| {
            SkbExprError::BadAccess {
                expr: self.text(expr),
                ty: ty.name.clone(),
                message: "index too large".to_owned(),
            }
        })?;
        Ok(Operand::Object { place, ty, bitfield: None })
    }

    fn size_of(&self, ty: &CType, depth: usize) -> Option<u32> {
        match &ty.kind {
            CKind::Int { size, .. } | CKind::Enum { size, .. } => Some(*size),
            CKind::Ptr { .. } => Some(8),
            CKind::Struct { size, .. } | CKind::Union { size, .. } => Some(*size),
            CKind::Array { elem, len } if depth < 8 => {
                self.size_of(&self.layout.ctype(*elem)?, depth + 1)?.checked_mul(*len)
            }
            _ => None,
        }
    }
}

/// The member name closest to `wrong`, when one is close enough to be a typo.
fn did_you_mean(wrong: &str, names: &[String]) -> Option<String> {
    let limit = (wrong.len() / 3).max(2);
    names
        .iter()
        .map(|n| (edit_distance(wrong, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
