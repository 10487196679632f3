//! pwru's `--output-skb-metadata`, `--output-skb-cb`, `--output-skb` and
//! `--output-skb-shared-info`, user side: what the programs are told to send
//! (from the kernel's BTF, at load), and their records turned into values
//! for the printers. The wire format, and how a record finds its event:
//! `tracer_common::skb_out`.
//!
//! `bpf_snprintf_btf`, which makes the dumps, is in `bpf_tracing_func_proto`
//! since Linux 5.10, which kprobe, `raw_tp` and `tp_btf` programs share: every
//! backend can dump, on every kernel skbtrace runs on. It needs the running
//! kernel's own BTF (`/sys/kernel/btf/vmlinux`).

pub mod reader;
pub mod values;

use std::sync::Arc;

use anyhow::Context as _;
use tracer_common::skb_out::{CB_WORDS, SKB_OUT_CB, SKB_OUT_METADATA, SKB_OUT_SHINFO, SKB_OUT_SKB, SkbOutConfig};

use crate::{
    btf::{KernelBtf, VMLINUX},
    config::usage,
    filter::{self, Insn, skb_expr::fields},
};
pub use values::MetaValue;

/// What the command line asks for (`config.rs` checks the numbers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkbOutSpec {
    /// `--output-skb-metadata`, as given.
    pub metadata: Vec<String>,
    /// `--output-skb-cb`.
    pub cb: bool,
    /// `--output-skb`.
    pub skb: bool,
    /// `--output-skb-shared-info`.
    pub shinfo: bool,
    /// `--set-percpu-buf`: room for each dump, NUL included.
    pub dump_bytes: u32,
}

impl SkbOutSpec {
    /// The `SKB_OUT_*` bits: 0 when nothing is asked for.
    pub fn what(&self) -> u32 {
        [
            (!self.metadata.is_empty(), SKB_OUT_METADATA),
            (self.cb, SKB_OUT_CB),
            (self.skb, SKB_OUT_SKB),
            (self.shinfo, SKB_OUT_SHINFO),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |what, (_, bit)| what | bit)
    }

    /// The configuration without the kernel's offsets and type ids: enough to size the maps.
    pub fn config(&self) -> SkbOutConfig {
        SkbOutConfig { what: self.what(), dump_bytes: self.dump_bytes, ..SkbOutConfig::zeroed() }
    }
}

/// A `--output-skb-metadata` field as printers name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldName {
    /// The path's last identifier, printed before `=` (pwru's name).
    pub last: String,
    /// Its key in JSON's `skb_metadata`: `last`, or the whole path when two fields share it.
    pub key: String,
}

/// What one event carries of these flags; empty when none was given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SkbFields {
    /// The `--output-skb-metadata` fields, the same for every event.
    pub names: Arc<[FieldName]>,
    /// Their values here, in the same order; empty when the record was lost.
    pub values: Vec<MetaValue>,
    /// `((struct qdisc_skb_cb *)skb->cb)->data` under `--output-skb-cb`, else zeros.
    pub cb: [u32; CB_WORDS],
    /// `bpf_snprintf_btf` of the `struct sk_buff` (`--output-skb`).
    pub skb_dump: String,
    /// Of its `struct skb_shared_info` (`--output-skb-shared-info`).
    pub shinfo_dump: String,
}

/// Everything a run needs for these flags, compiled against the kernel's BTF.
pub struct Compiled {
    /// Patched into the object.
    pub config: SkbOutConfig,
    /// The `--output-skb-metadata` subprogram (`fields.rs`); a plain return without the flag.
    pub metadata: Vec<Insn>,
    /// Turns records into [`SkbFields`].
    pub decoder: values::Decoder,
}

impl Compiled {
    /// The reader of `SKB_OUT`, when a flag asked for records.
    pub fn reader(&self, loader: &mut crate::loader::Loader) -> anyhow::Result<Option<reader::Reader>> {
        if self.config.what == 0 {
            return Ok(None);
        }
        let map = aya::maps::Map::RingBuf(loader.take_map(tracer_common::names::MAP_SKB_OUT)?);
        let ring = aya::maps::RingBuf::try_from(map).context("opening the SKB_OUT ring buffer")?;
        Ok(Some(reader::Reader::new(ring, self.decoder.clone())))
    }
}

/// Checks the fields and finds the types, offsets and ids the programs need.
/// Bad fields are usage errors naming the field.
pub fn compile(spec: &SkbOutSpec, btf: &KernelBtf) -> anyhow::Result<Compiled> {
    let mut config = spec.config();
    let (metadata, fields) = if spec.metadata.is_empty() {
        (filter::match_all(), Vec::new())
    } else {
        fields::compile(&spec.metadata, btf).map_err(|e| usage(e.to_string()))?
    };
    if spec.cb {
        let cb = btf.offset_of("sk_buff", "cb");
        let data = btf.offset_of("qdisc_skb_cb", "data");
        let (Some(cb), Some(data)) = (cb, data) else {
            return Err(usage("--output-skb-cb: the kernel's BTF has no sk_buff.cb or qdisc_skb_cb.data"));
        };
        config.cb_data = cb + data;
    }
    if spec.skb || spec.shinfo {
        dump_ids(&mut config, spec, btf)?;
    }
    let decoder = values::Decoder::new(&fields, btf);
    Ok(Compiled { config, metadata, decoder })
}

/// The vmlinux type ids `bpf_snprintf_btf` takes, and where `skb_shinfo` is.
fn dump_ids(config: &mut SkbOutConfig, spec: &SkbOutSpec, btf: &KernelBtf) -> anyhow::Result<()> {
    let flag = if spec.skb { "--output-skb" } else { "--output-skb-shared-info" };
    if !std::path::Path::new(VMLINUX).exists() {
        return Err(usage(format!(
            "{flag} needs the running kernel's own BTF ({VMLINUX}), which bpf_snprintf_btf reads; this kernel has none"
        )));
    }
    // The helper names types by their ids in the running kernel's BTF: with
    // --kernel-btf, the ids come from the kernel's own.
    let own;
    let btf = if btf.is_external() {
        own = KernelBtf::open().context("reading the running kernel's BTF for --output-skb")?;
        &own
    } else {
        btf
    };
    let id = |name: &str| {
        btf.struct_id(name).ok_or_else(|| anyhow::anyhow!("{flag}: the kernel's BTF has no struct {name}"))
    };
    config.skb_btf_id = id("sk_buff")?;
    if spec.shinfo {
        config.shinfo_btf_id = id("skb_shared_info")?;
        let offset = |field: &str| {
            btf.offset_of("sk_buff", field)
                .ok_or_else(|| anyhow::anyhow!("--output-skb-shared-info: the kernel's BTF has no sk_buff.{field}"))
        };
        config.skb_head = offset("head")?;
        config.skb_end = offset("end")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
