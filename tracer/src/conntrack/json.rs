//! The `ct` member of a JSON event. Like the rest of the schema, every field
//! is always there: an event without an entry has `"state":""`, empty
//! addresses and lists and zeros, so `jq` filters never meet a missing key.
//!
//! ```json
//! {"state":"NEW","nf_conn":"0xffff8881…","status":392,"status_flags":["CONFIRMED","DST_NAT"],
//!  "zone":0,"zone_dir":0,"mark":0,
//!  "orig":{"saddr":"10.0.0.1","daddr":"10.0.0.2","proto":"udp","sport":4000,"dport":53,
//!          "icmp_id":0,"icmp_type":0,"icmp_code":0},
//!  "reply":{…}}
//! ```
//! `nf_conn` is the entry's kernel address (a flow key within a netns; "" for
//! none), `status` the raw bits, `status_flags` their BTF names. `proto` is a
//! name where there is one, else the protocol number as a string.

use std::fmt::Write as _;

use super::{Conntrack, CtTuple};

/// Appends the `ct` object (the value only; the caller writes the key).
pub fn push(out: &mut String, ct: Option<&Conntrack>) {
    let Some(ct) = ct else {
        out.push_str(concat!(
            r#"{"state":"","nf_conn":"","status":0,"status_flags":[],"zone":0,"zone_dir":0,"mark":0,"#,
            r#""orig":{"saddr":"","daddr":"","proto":"","sport":0,"dport":0,"icmp_id":0,"icmp_type":0,"icmp_code":0},"#,
            r#""reply":{"saddr":"","daddr":"","proto":"","sport":0,"dport":0,"icmp_id":0,"icmp_type":0,"icmp_code":0}}"#
        ));
        return;
    };
    // Writing into a String cannot fail.
    let _ = write!(out, r#"{{"state":"{}","nf_conn":"#, ct.state);
    if ct.has_entry() {
        let _ = write!(out, r#""{:#x}""#, ct.nf_conn);
    } else {
        out.push_str(r#""""#);
    }
    let _ = write!(out, r#","status":{},"status_flags":["#, ct.status.bits);
    for (i, name) in ct.status.names().enumerate() {
        // BTF identifiers: nothing to escape.
        let _ = write!(out, r#"{}"{name}""#, if i > 0 { "," } else { "" });
    }
    let _ = write!(out, r#"],"zone":{},"zone_dir":{},"mark":{},"orig":"#, ct.zone, ct.zone_dir, ct.mark);
    push_tuple(out, ct.has_entry().then_some(&ct.orig));
    out.push_str(r#","reply":"#);
    push_tuple(out, ct.has_entry().then_some(&ct.reply));
    out.push('}');
}

fn push_tuple(out: &mut String, t: Option<&CtTuple>) {
    let t = t.copied().unwrap_or_default();
    let addr = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let proto = if t.src.is_some() || t.proto != 0 { t.proto_name() } else { "".into() };
    let icmp = t.icmp.unwrap_or_default();
    let _ = write!(
        out,
        r#"{{"saddr":"{}","daddr":"{}","proto":"{proto}","sport":{},"dport":{},"icmp_id":{},"icmp_type":{},"icmp_code":{}}}"#,
        addr(t.src),
        addr(t.dst),
        t.sport,
        t.dport,
        icmp.id,
        icmp.kind,
        icmp.code
    );
}
