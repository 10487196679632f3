//! One JSON object per line, every field present (zeros included), so that
//! `jq` filters never meet a missing key. The schema is in the README.

use std::io::{self, Write};

use tracer_common::event::Capture;

use super::{
    Consumer,
    fields::{needs_escape, push_hex, push_ip, push_json_str as push_str, push_num, push_proto},
    push_func_column, push_time,
};
use crate::{decode::push_tcp_flag_names, resolve::TraceEvent, summary::RunSummary};

pub struct JsonPrinter<W: Write> {
    out: W,
    /// Lines not yet written: they go to `out` a block at a time, and on
    /// every flush.
    pending: String,
}

/// One write per this many bytes of lines rather than one per line.
const BLOCK: usize = 32 * 1024;

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out, pending: String::with_capacity(BLOCK + 4096) }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        let result = self.out.write_all(self.pending.as_bytes());
        self.pending.clear();
        result
    }
}

/// `,"name":`, one literal per member; pushing it whole, rather than comma,
/// quotes and name one by one, is most of what makes this printer fast.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

// Inlined, so that the literal key's copy is a few moves, not a memcpy call.
#[inline(always)]
fn num(out: &mut String, key: &str, n: impl Into<u64>) {
    out.push_str(key);
    push_num(out, n);
}

#[inline(always)]
fn str(out: &mut String, key: &str, s: &str) {
    out.push_str(key);
    push_str(out, s);
}

/// A string value that `write` appends and that never needs escaping
/// (digits, addresses, protocol and flag names).
#[inline(always)]
fn plain(out: &mut String, key: &str, write: impl FnOnce(&mut String)) {
    out.push_str(key);
    out.push('"');
    write(out);
    out.push('"');
}

/// A tuple's members, the first without a comma before it.
fn tuple(out: &mut String, t: &crate::decode::Tuple) {
    plain(out, "\"saddr\":", |out| t.saddr.into_iter().for_each(|a| push_ip(out, a)));
    plain(out, key!("daddr"), |out| t.daddr.into_iter().for_each(|a| push_ip(out, a)));
    num(out, key!("sport"), t.sport);
    num(out, key!("dport"), t.dport);
    plain(out, key!("proto"), |out| push_proto(out, t.proto));
    plain(out, key!("tcp_flags"), |out| push_tcp_flag_names(out, t.tcp_flags));
}

impl<W: Write> Consumer for JsonPrinter<W> {
    fn event(&mut self, e: &TraceEvent) -> io::Result<()> {
        let ev = &e.raw;
        let t = &e.tuple;
        let out = &mut self.pending;
        // The first member of an object has no comma before it.
        plain(out, "{\"skb\":", |out| push_hex(out, ev.skb, 0));
        num(out, key!("cpu"), ev.cpu);
        str(out, key!("process"), &e.process);
        num(out, key!("pid"), ev.pid);
        str(out, key!("comm"), crate::resolve::c_str(&ev.comm));
        num(out, key!("netns"), ev.netns);
        str(out, key!("netns_name"), e.netns_name.as_deref().unwrap_or(""));
        num(out, key!("mark"), ev.mark);
        num(out, key!("ifindex"), ev.ifindex);
        str(out, key!("ifname"), e.ifname());
        num(out, key!("proto"), u16::from_be(ev.protocol));
        num(out, key!("mtu"), ev.mtu);
        num(out, key!("len"), ev.len);
        out.push_str(concat!(key!("tuple"), "{"));
        tuple(out, t);
        out.push('}');
        match &e.tunnel {
            Some(tunnel) => {
                plain(out, concat!(key!("tunnel"), "{\"kind\":"), |out| out.push_str(tunnel.kind.name()));
                num(out, key!("vni"), tunnel.vni);
                out.push(',');
                tuple(out, &tunnel.inner);
                out.push('}');
            }
            None => out.push_str(concat!(
                key!("tunnel"),
                r#"{"kind":"","vni":0,"saddr":"","daddr":"","sport":0,"dport":0,"proto":"","tcp_flags":""}"#
            )),
        }
        out.push_str(key!("ct"));
        crate::conntrack::json::push(out, e.ct.as_ref());
        out.push_str(key!("nft"));
        crate::nft_trace::push_json(out, e.nft.as_deref());
        str(out, key!("func"), &e.func);
        out.push_str(key!("func_column"));
        out.push('"');
        let start = out.len();
        push_func_column(out, e);
        if needs_escape(&out[start..]) {
            let column = out.split_off(start);
            out.pop();
            push_str(out, &column);
        } else {
            out.push('"');
        }
        str(out, key!("drop_reason"), e.drop.as_ref().map_or("", |d| &d.name));
        num(out, key!("drop_reason_code"), e.drop.as_ref().map_or(0, |d| d.code));
        str(out, key!("location"), e.location().unwrap_or(""));
        num(out, key!("ktime_ns"), ev.ktime_ns);
        plain(out, key!("timestamp"), |out| e.time.into_iter().for_each(|t| push_time(out, t)));
        out.push_str(key!("tracked"));
        out.push_str(if e.tracked() { "true" } else { "false" });
        out.push_str(key!("freed"));
        out.push_str(if e.freed() { "true" } else { "false" });
        let capture = match ev.capture() {
            Capture::Mac => "mac",
            Capture::Network => "network",
            Capture::None => "none",
        };
        plain(out, key!("capture"), |out| out.push_str(capture));
        num(out, key!("cap_len"), ev.cap_len);
        out.push_str(key!("stack"));
        out.push('[');
        for (i, frame) in e.stack.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, frame);
        }
        out.push(']');
        super::skb_fields::push_json(out, e.skb_fields.as_deref());
        out.push_str("}\n");
        if out.len() >= BLOCK {
            self.write_pending()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }

    fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        self.write_pending()?;
        self.out.write_all(summary.to_json_line().as_bytes())?;
        self.out.flush()
    }
}

impl<W: Write> Drop for JsonPrinter<W> {
    /// Lines of a run that ended without a flush (an error) still go out.
    fn drop(&mut self) {
        let _ = self.write_pending();
        let _ = self.out.flush();
    }
}
