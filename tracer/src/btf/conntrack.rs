//! Conntrack's layout from BTF: the offsets the eBPF side reads
//! (`skb->_nfct`, `struct nf_conn`'s status, mark, zone and both tuples) and
//! the names of `enum ip_conntrack_status` and `enum ip_conntrack_info`.
//!
//! Contract:
//! - vmlinux's BTF is asked first. Debian's 6.1 and 6.12 build conntrack as a
//!   module yet keep `struct nf_conn` in vmlinux's BTF; where a kernel does
//!   not, the module's split BTF (`/sys/kernel/btf/nf_conntrack`, present only
//!   while the module is loaded) is asked next.
//! - Neither has `struct nf_conn` (or `sk_buff._nfct`): [`CtUnavailable`],
//!   which says why; `offsets()` then puts [`CtOffsets::NONE`] in the
//!   configuration and the programs never read an entry.
//! - A field a kernel lacks by configuration (`mark` without
//!   `CONFIG_NF_CONNTRACK_MARK`, the zone without `CONFIG_NF_CONNTRACK_ZONES`)
//!   is `CT_OFFSET_NONE`; the eBPF side leaves it 0.
//! - Every present field lies within the first `read_len` ≤ `CT_READ_MAX`
//!   bytes of `struct nf_conn`, which the eBPF side reads in one go and then
//!   indexes without further checks; an optional field past them is
//!   `CT_OFFSET_NONE`, a required one makes conntrack unavailable.
//! - `tuplehash[1]` is `tuplehash`'s offset plus the size of
//!   `struct nf_conntrack_tuple_hash`: the BTF reader does not index arrays.
//! - `struct nf_conntrack_tuple` must be laid out as [`NfConntrackTuple`]
//!   (the eBPF side reads a tuple's fields at fixed places); a kernel that
//!   differs has conntrack unavailable, with a note saying why.

use std::{path::Path, sync::Arc};

use super::{
    KernelBtf, member, reader::Blob, reader::KIND_ENUM, reader::KIND_ENUM64, reader::KIND_STRUCT, reader::Type,
};
use tracer_common::config::{CT_OFFSET_NONE, CT_READ_MAX, CtOffsets, NfConntrackTuple, OFFSET_NONE};

/// The module whose BTF has conntrack's types when vmlinux's has not.
pub const MODULE: &str = "nf_conntrack";

/// Why conntrack cannot be read on this kernel; the text is meant for a
/// `skbtrace: …` note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtUnavailable(pub String);

impl std::fmt::Display for CtUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CtUnavailable {}

/// One enumerator: its name as in the kernel and its value.
pub type EnumValue = (String, u64);

impl KernelBtf {
    /// Offsets of the conntrack fields, from vmlinux's BTF or else
    /// nf_conntrack's.
    pub fn conntrack_offsets(&self) -> Result<CtOffsets, CtUnavailable> {
        let skb_nfct = self.offset_of("sk_buff", "_nfct").ok_or_else(|| {
            CtUnavailable("the kernel's BTF has no sk_buff._nfct: this kernel is built without conntrack".into())
        })?;
        if self.find_struct("nf_conn").is_some() {
            return ct_offsets(skb_nfct, &|s, p| self.offset_of(s, p), &|s| self.struct_size(s));
        }
        let module = self.conntrack_module()?;
        let find = |name: &str| find_struct_in(&module, name);
        ct_offsets(skb_nfct, &|s, p| offset_in(find(s)?, p), &|s| Some(find(s)?.size()))
    }

    /// `enum ip_conntrack_status` (`IPS_*`) and `enum ip_conntrack_info`
    /// (`IP_CT_*`), in declaration order; empty when neither BTF has them.
    pub fn conntrack_enums(&self) -> (Vec<EnumValue>, Vec<EnumValue>) {
        let mut status = enum_values(self.named("ip_conntrack_status"));
        let mut info = enum_values(self.named("ip_conntrack_info"));
        if (status.is_empty() || info.is_empty())
            && let Ok(module) = self.conntrack_module()
        {
            let named = |name: &'static str| module.types().filter(move |t| t.name() == name);
            if status.is_empty() {
                status = enum_values(named("ip_conntrack_status"));
            }
            if info.is_empty() {
                info = enum_values(named("ip_conntrack_info"));
            }
        }
        (status, info)
    }

    /// nf_conntrack's split BTF: the one `--kmods` opened, else read now.
    fn conntrack_module(&self) -> Result<Blob, CtUnavailable> {
        let path = Path::new("/sys/kernel/btf").join(MODULE);
        if !path.exists() {
            return Err(CtUnavailable(format!(
                "the kernel's BTF has no struct nf_conn and {} is missing: load the module \
                 (modprobe {MODULE}) to see conntrack entries",
                path.display()
            )));
        }
        Blob::from_file(&path, Some(Arc::clone(&self.vmlinux)))
            .map_err(|e| CtUnavailable(format!("reading the BTF of {MODULE}: {e:#}")))
    }
}

/// The offsets, from any BTF: `offset(struct, path)` and `size(struct)`.
fn ct_offsets(
    skb_nfct: u32,
    offset: &dyn Fn(&str, &str) -> Option<u32>,
    size: &dyn Fn(&str) -> Option<u32>,
) -> Result<CtOffsets, CtUnavailable> {
    let missing =
        |what: &str| CtUnavailable(format!("the kernel's BTF has no {what}; its conntrack layout is unknown"));
    let need = |s: &str, p: &str| offset(s, p).ok_or_else(|| missing(&format!("{s}.{p}")));
    let opt = |s: &str, p: &str| offset(s, p).unwrap_or(OFFSET_NONE);

    let tuplehash = need("nf_conn", "tuplehash")?;
    let in_hash = need("nf_conntrack_tuple_hash", "tuple")?;
    let hash_size = size("nf_conntrack_tuple_hash").ok_or_else(|| missing("struct nf_conntrack_tuple_hash"))?;
    let tuple_fields = [
        ("src.u3", core::mem::offset_of!(NfConntrackTuple, src_u3)),
        ("src.u.all", core::mem::offset_of!(NfConntrackTuple, src_u)),
        ("src.l3num", core::mem::offset_of!(NfConntrackTuple, l3num)),
        ("dst.u3", core::mem::offset_of!(NfConntrackTuple, dst_u3)),
        ("dst.u.all", core::mem::offset_of!(NfConntrackTuple, dst_u)),
        ("dst.protonum", core::mem::offset_of!(NfConntrackTuple, protonum)),
    ];
    for (path, ours) in tuple_fields {
        let theirs = need("nf_conntrack_tuple", path)?;
        if theirs as usize != ours {
            return Err(CtUnavailable(format!(
                "the kernel's struct nf_conntrack_tuple has {path} at byte {theirs}, where skbtrace reads it at \
                 {ours}: this kernel's conntrack layout is not supported"
            )));
        }
    }
    let orig = tuplehash + in_hash;
    let reply = tuplehash + hash_size + in_hash;
    let status = need("nf_conn", "status")?;
    // The eBPF side reads the first CT_READ_MAX bytes of the entry and
    // nothing else, and loads each field aligned for its type (C lays them
    // out so): an optional field past them is absent, a required one makes
    // the layout unsupported (a debug kernel with a huge spinlock_t?).
    // (offset, size, alignment of the loads)
    let fits = |(off, len, align): (u32, u32, u32)| off != OFFSET_NONE && off + len <= CT_READ_MAX && off % align == 0;
    let tuple = (core::mem::size_of::<NfConntrackTuple>() as u32, core::mem::align_of::<NfConntrackTuple>() as u32);
    let required = [(status, 8, 8), (orig, tuple.0, tuple.1), (reply, tuple.0, tuple.1)];
    if let Some((off, _, align)) = required.into_iter().find(|f| !fits(*f)) {
        return Err(CtUnavailable(format!(
            "a struct nf_conn field at byte {off} is past the {CT_READ_MAX} bytes skbtrace reads or not \
             {align}-byte aligned: this kernel's conntrack layout is not supported"
        )));
    }
    let optional =
        [(opt("nf_conn", "mark"), 4, 4), (opt("nf_conn", "zone.id"), 2, 2), (opt("nf_conn", "zone.dir"), 1, 1)]
            .map(|f| if fits(f) { f } else { (OFFSET_NONE, 0, 1) });
    let read_len = required.iter().chain(&optional).filter(|f| f.0 != OFFSET_NONE).map(|(off, len, _)| off + len);
    let read_len = read_len.max().unwrap_or(0);
    // Everything is below CT_READ_MAX now, so every offset fits a u16.
    let short = |off: u32| if off == OFFSET_NONE { CT_OFFSET_NONE } else { off as u16 };
    Ok(CtOffsets {
        skb_nfct,
        status: short(status),
        mark: short(optional[0].0),
        zone_id: short(optional[1].0),
        zone_dir: short(optional[2].0),
        orig: short(orig),
        reply: short(reply),
        read_len: read_len as u16,
        _pad: 0,
    })
}

/// A struct defined in `blob` itself (not its base).
pub(super) fn find_struct_in<'a>(blob: &'a Blob, name: &str) -> Option<Type<'a>> {
    blob.types().find(|t| t.kind() == KIND_STRUCT && t.name() == name && t.members().next().is_some())
}

/// Byte offset of the dot-separated `path` in `ty`.
pub(super) fn offset_in(mut ty: Type<'_>, path: &str) -> Option<u32> {
    let mut total = 0;
    for part in path.split('.') {
        let (off, next) = member(ty, part)?;
        total += off;
        ty = next;
    }
    Some(total)
}

/// The values of the first enum among `types`, in declaration order.
fn enum_values<'a>(mut types: impl Iterator<Item = Type<'a>>) -> Vec<EnumValue> {
    let Some(ty) = types.find(|t| matches!(t.kind(), KIND_ENUM | KIND_ENUM64)) else { return Vec::new() };
    let wide = ty.kind() == KIND_ENUM64;
    ty.members()
        .map(|m| {
            let value = if wide { u64::from(m.extra) << 32 | u64::from(m.value) } else { u64::from(m.value) };
            (m.name().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Against the running kernel's BTF (6.18 here, netfilter built in), and
    //! the layout the design note measured on Debian's 6.1 and 6.12.
    use super::*;

    fn kernel() -> Option<KernelBtf> {
        match KernelBtf::open() {
            Ok(k) => Some(k),
            Err(_) if std::env::var_os("CI").is_some() => panic!("{} missing under CI", super::super::VMLINUX),
            Err(_) => {
                eprintln!("SKIPPED: no kernel BTF");
                None
            }
        }
    }

    #[test]
    fn offsets_follow_the_kernel_layout() {
        let Some(k) = kernel() else { return };
        let o = match k.conntrack_offsets() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                return;
            }
        };
        eprintln!("{o:#?}");
        assert!(o.skb_nfct < 256, "_nfct is inside the sk_buff prefix read at once");
        // The reply tuple is one tuple_hash after the original.
        let step = o.reply - o.orig;
        assert!(step >= 40, "{step}");
        assert!(o.status >= o.reply + 40);
        assert!(o.read_len > o.status && u32::from(o.read_len) <= CT_READ_MAX);
    }

    #[test]
    fn enums_name_the_status_bits_and_states() {
        let Some(k) = kernel() else { return };
        let (status, info) = k.conntrack_enums();
        if status.is_empty() {
            assert!(k.conntrack_offsets().is_err(), "offsets without the status enum");
            eprintln!("SKIPPED: no conntrack enums in this kernel's BTF");
            return;
        }
        let value = |list: &[EnumValue], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(value(&status, "IPS_SRC_NAT"), Some(1 << value(&status, "IPS_SRC_NAT_BIT").unwrap()));
        assert!(value(&status, "IPS_DST_NAT").is_some_and(u64::is_power_of_two));
        assert!(value(&info, "IP_CT_NEW").is_some());
        assert!(value(&info, "IP_CT_ESTABLISHED_REPLY").is_some());
    }
}
