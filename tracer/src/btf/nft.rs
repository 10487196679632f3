//! nf_tables's layout from BTF, for `--nft-trace`: where
//! `__nft_trace_packet`'s arguments are and the offsets the eBPF side reads
//! behind them (`tracer-ebpf/src/nft.rs` says what it does with them).
//!
//! Contract:
//! - vmlinux's BTF is asked first (nf_tables built in, as on this 6.18
//!   host), then the module's split BTF: the one `--kmods` opened, else
//!   `nf_tables` in the module BTF directory (`/sys/kernel/btf`, present
//!   only while the module is loaded, or beside `--kernel-btf`'s file).
//! - Arguments are recognised by type, not position or name: a pointer to
//!   `struct nft_pktinfo`, `nft_verdict`, `nft_rule_dp`, `nft_traceinfo`,
//!   `nft_chain`, and `enum nft_trace_types`. What is not an argument is
//!   read from `struct nft_traceinfo` (6.1 keeps the packet, rule and verdict
//!   there). Measured: Debian 6.1 `(info, chain, type)`; Debian 6.12 and
//!   6.18 `(pkt, verdict, rule, info, type)`.
//! - Bitfields (`nft_rule_dp`'s `is_last`, `dlen`, `handle`, `nft_table`'s
//!   `family`) become a [`BitField`]: the aligned 64-bit word holding them,
//!   a shift and a width; a field across two words is unsupported.
//! - Every offset the programs need must be found, else [`NftUnavailable`]
//!   says which; only `nft_rule_dp_last.chain` may be missing, when the
//!   function takes the chain itself.

use std::{path::Path, sync::Arc};

use tracer_common::config::{BitField, NFT_ARG_NONE, NFT_OFFSET_NONE, NftOffsets};

use super::{
    KernelBtf,
    conntrack::{find_struct_in, offset_in},
    reader::{Blob, KIND_ENUM, KIND_FUNC, KIND_FUNC_PROTO, KIND_PTR, KIND_STRUCT, Type},
};

/// The module that has nf_tables's types and functions when it is not built in.
pub const MODULE: &str = "nf_tables";
/// The function the program is attached to.
pub const TRACE_FUNCTION: &str = "__nft_trace_packet";

/// Why `--nft-trace` cannot work on this kernel; the text is the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftUnavailable(pub String);

impl std::fmt::Display for NftUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NftUnavailable {}

impl KernelBtf {
    /// nf_tables's layout, from vmlinux's BTF or else the module's.
    pub fn nft_offsets(&self) -> Result<NftOffsets, NftUnavailable> {
        if let Some(func) = find_func(&self.vmlinux, TRACE_FUNCTION) {
            return layout(func, &|name| self.find_struct(name));
        }
        let read;
        let module = match self.modules.iter().find(|(name, _)| name == MODULE) {
            Some((_, blob)) => blob,
            None => {
                read = self.nft_module()?;
                &read
            }
        };
        let func = find_func(module, TRACE_FUNCTION).ok_or_else(|| {
            NftUnavailable(format!("nf_tables's BTF has no {TRACE_FUNCTION}: this kernel's nf_tables cannot be traced"))
        })?;
        layout(func, &|name| find_struct_in(module, name).or_else(|| self.find_struct(name)))
    }

    /// nf_tables's split BTF, read from the module BTF directory.
    fn nft_module(&self) -> Result<Blob, NftUnavailable> {
        let path = self.modules_dir.join(MODULE);
        if !path.exists() {
            let why = if self.external {
                format!("no BTF file {} beside the --kernel-btf file", path.display())
            } else if Path::new("/sys/module").join(MODULE).exists() {
                format!(
                    "the module is loaded but {} is missing (built without CONFIG_DEBUG_INFO_BTF_MODULES?)",
                    path.display()
                )
            } else {
                "the module is not loaded and this kernel's BTF has no nf_tables".to_owned()
            };
            return Err(NftUnavailable(format!("nf_tables's layout is unknown: {why}")));
        }
        Blob::from_file(&path, Some(Arc::clone(&self.vmlinux)))
            .map_err(|e| NftUnavailable(format!("reading the BTF of {MODULE}: {e:#}")))
    }
}

fn find_func<'a>(blob: &'a Blob, name: &str) -> Option<Type<'a>> {
    blob.types().find(|t| t.kind() == KIND_FUNC && t.name() == name)
}

/// The offsets, given the function and a way to find structs by name.
fn layout<'a>(func: Type<'a>, find: &dyn Fn(&str) -> Option<Type<'a>>) -> Result<NftOffsets, NftUnavailable> {
    let mut o = NftOffsets::NONE;
    let proto = func
        .referred()
        .filter(|t| t.kind() == KIND_FUNC_PROTO)
        .ok_or_else(|| NftUnavailable(format!("{TRACE_FUNCTION} has no prototype in BTF")))?;
    for (i, param) in proto.members().enumerate() {
        let Some(ty) = param.ty().and_then(Type::strip) else { continue };
        let slot = match ty.kind() {
            KIND_ENUM if ty.name() == "nft_trace_types" => &mut o.arg_type,
            KIND_PTR => match ty.referred().and_then(Type::strip).filter(|t| t.kind() == KIND_STRUCT) {
                Some(s) if s.name() == "nft_pktinfo" => &mut o.arg_pkt,
                Some(s) if s.name() == "nft_verdict" => &mut o.arg_verdict,
                Some(s) if s.name() == "nft_rule_dp" => &mut o.arg_rule,
                Some(s) if s.name() == "nft_traceinfo" => &mut o.arg_info,
                Some(s) if s.name() == "nft_chain" => &mut o.arg_chain,
                _ => continue,
            },
            _ => continue,
        };
        *slot = u8::try_from(i).ok().filter(|&i| i < 6).unwrap_or(NFT_ARG_NONE);
    }
    let unknown = |what: &str| NftUnavailable(format!("nf_tables's BTF has no {what}; its layout is not supported"));
    let strukt = |name: &str| find(name).ok_or_else(|| unknown(&format!("struct {name}")));
    let field = |s: &str, path: &str| -> Result<u16, NftUnavailable> {
        offset_in(strukt(s)?, path)
            .and_then(|off| u16::try_from(off).ok())
            .filter(|&off| off != NFT_OFFSET_NONE)
            .ok_or_else(|| unknown(&format!("{s}.{path}")))
    };
    let optional = |s: &str, path: &str| field(s, path).unwrap_or(NFT_OFFSET_NONE);
    let bits = |s: &str, name: &str| -> Result<BitField, NftUnavailable> {
        bit_field(strukt(s)?, name).ok_or_else(|| unknown(&format!("{s}.{name} within one 64-bit word")))
    };
    if o.arg_info == NFT_ARG_NONE || o.arg_type == NFT_ARG_NONE {
        return Err(NftUnavailable(format!(
            "{TRACE_FUNCTION} takes no struct nft_traceinfo or enum nft_trace_types on this kernel: its shape is \
             not one skbtrace knows"
        )));
    }
    // From `info` what is not an argument.
    let info =
        |arg: u8, name: &str| if arg == NFT_ARG_NONE { field("nft_traceinfo", name) } else { Ok(NFT_OFFSET_NONE) };
    o.info_pkt = info(o.arg_pkt, "pkt")?;
    o.info_rule = info(o.arg_rule, "rule")?;
    o.info_verdict = info(o.arg_verdict, "verdict")?;
    o.info_basechain = field("nft_traceinfo", "basechain")?;
    o.pkt_skb = field("nft_pktinfo", "skb")?;
    o.pkt_state = field("nft_pktinfo", "state")?;
    o.state_hook = field("nf_hook_state", "hook")?;
    let rule = strukt("nft_rule_dp")?;
    o.rule_size = u16::try_from(rule.size()).map_err(|_| unknown("a small struct nft_rule_dp"))?;
    o.rule_is_last = bits("nft_rule_dp", "is_last")?;
    o.rule_dlen = bits("nft_rule_dp", "dlen")?;
    o.rule_handle = bits("nft_rule_dp", "handle")?;
    if o.rule_is_last.word != o.rule_dlen.word {
        return Err(unknown("nft_rule_dp.is_last and .dlen in one 64-bit word"));
    }
    o.last_chain = optional("nft_rule_dp_last", "chain");
    if o.arg_chain == NFT_ARG_NONE && o.last_chain == NFT_OFFSET_NONE {
        return Err(unknown("struct nft_rule_dp_last.chain, nor a chain argument"));
    }
    o.basechain_policy = field("nft_base_chain", "policy")?;
    o.basechain_chain = field("nft_base_chain", "chain")?;
    o.chain_table = field("nft_chain", "table")?;
    o.chain_name = field("nft_chain", "name")?;
    o.table_name = field("nft_table", "name")?;
    o.table_family = bits("nft_table", "family")?;
    o.verdict_code = field("nft_verdict", "code")?;
    o.verdict_chain = field("nft_verdict", "chain")?;
    Ok(o)
}

/// Member `name` of `ty` as a field of the aligned 64-bit word it lies in;
/// a plain (non-bitfield) integer member of up to 8 bytes works too.
fn bit_field(ty: Type<'_>, name: &str) -> Option<BitField> {
    let m = ty.members().find(|m| m.name() == name)?;
    let bits = match m.bitfield_bits {
        0 => m.ty().and_then(Type::strip)?.size() * 8,
        n => n,
    };
    let word = m.extra / 64 * 8;
    let shift = m.extra % 64;
    (shift + bits <= 64 && bits > 0).then_some(BitField {
        word: u16::try_from(word).ok()?,
        shift: shift as u8,
        bits: bits as u8,
    })
}

#[cfg(test)]
mod tests {
    //! Against the running kernel's BTF (6.18 here, nf_tables built in), and
    //! the layouts read from Debian's 6.1 and 6.12 modules (`pahole`).
    use super::*;

    #[test]
    fn bit_fields_take_words_shifts_and_widths() {
        // nft_rule_dp: is_last:1, dlen:12, handle:42 in one u64.
        let handle = BitField { word: 0, shift: 13, bits: 42 };
        let word: u64 = 1 | (100 << 1) | (0x3_ffff_ffff << 13);
        assert_eq!(handle.get(word), 0x3_ffff_ffff);
        assert_eq!(BitField { word: 0, shift: 1, bits: 12 }.get(word), 100);
        assert_eq!(BitField { word: 0, shift: 0, bits: 1 }.get(word), 1);
        assert_eq!(BitField { word: 0, shift: 0, bits: 64 }.get(u64::MAX), u64::MAX);
    }

    #[test]
    fn this_kernels_layout() {
        let Ok(k) = KernelBtf::open() else {
            assert!(std::env::var_os("CI").is_none(), "no kernel BTF under CI");
            eprintln!("SKIPPED: no kernel BTF");
            return;
        };
        let o = match k.nft_offsets() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                return;
            }
        };
        eprintln!("{o:#?}");
        assert!(o.arg_info != NFT_ARG_NONE && o.arg_type != NFT_ARG_NONE);
        // Each piece from exactly one place: an argument, or nft_traceinfo.
        for (arg, off) in [(o.arg_pkt, o.info_pkt), (o.arg_rule, o.info_rule), (o.arg_verdict, o.info_verdict)] {
            assert!((arg == NFT_ARG_NONE) != (off == NFT_OFFSET_NONE), "{arg} {off}");
        }
        assert!(o.arg_chain != NFT_ARG_NONE || o.last_chain != NFT_OFFSET_NONE);
        // nft_rule_dp: an 8-byte header of bitfields, a 42-bit handle.
        assert_eq!(o.rule_size, 8);
        assert_eq!((o.rule_is_last.shift, o.rule_is_last.bits), (0, 1));
        assert_eq!((o.rule_dlen.shift, o.rule_dlen.bits), (1, 12));
        assert_eq!((o.rule_handle.word, o.rule_handle.shift, o.rule_handle.bits), (0, 13, 42));
        assert_eq!(o.table_family.bits, 6);
        assert_eq!((o.pkt_skb, o.state_hook, o.verdict_code), (0, 0, 0));
        assert!(o.basechain_chain > o.basechain_policy);
    }
}
