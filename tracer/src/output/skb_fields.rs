//! How the text and JSON printers show `--output-skb-metadata`,
//! `--output-skb-cb`, `--output-skb` and `--output-skb-shared-info`.
//!
//! Text, as pwru: ` NAME=VALUE` per field after FUNC; `[0x%08X,…]` after the
//! meta columns; each dump on lines of its own after the stack. JSON: keys
//! that are always there, `skb_metadata` (`{}` without the flag), `cb` (zeros),
//! `skb_dump` and `skb_shared_info_dump` (empty).

use tracer_common::skb_out::CB_WORDS;

use super::fields::{push_hex, push_json_str, push_num};
use crate::skb_out::{MetaValue, SkbFields};

/// `__sk_buff->cb[]`'s width: five `0x%08X` and their brackets and commas.
pub const CB_WIDTH: usize = CB_WORDS * 10 + CB_WORDS + 1;

/// ` NAME=VALUE` for each field; `NAME=?` when the event's record was lost.
pub fn push_metadata(line: &mut String, fields: &SkbFields) {
    for (i, name) in fields.names.iter().enumerate() {
        line.push(' ');
        line.push_str(&name.last);
        line.push('=');
        match fields.values.get(i) {
            Some(value) => push_text_value(line, value),
            None => line.push('?'),
        }
    }
}

fn push_text_value(line: &mut String, value: &MetaValue) {
    match value {
        MetaValue::Unsigned(n) => push_num(line, *n),
        MetaValue::Signed(n) => line.push_str(itoa::Buffer::new().format(*n)),
        MetaValue::Bool(b) => line.push_str(if *b { "true" } else { "false" }),
        MetaValue::Enum(name) => line.push_str(name),
        MetaValue::Ptr(p) => push_hex(line, *p, 0),
        MetaValue::Char(c) if c.is_ascii_graphic() || *c == b' ' => {
            line.push('\'');
            line.push(char::from(*c));
            line.push('\'');
        }
        MetaValue::Char(c) => push_hex(line, u64::from(*c), 0),
        MetaValue::Str(s) => {
            line.push('"');
            line.push_str(s);
            line.push('"');
        }
    }
}

/// `[0x00000000,0x00000000,…]`, pwru's `__sk_buff->cb[]`.
pub fn push_cb(line: &mut String, cb: &[u32; CB_WORDS]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    line.push('[');
    for (i, word) in cb.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str("0x");
        for shift in (0..8).rev() {
            line.push(char::from(DIGITS[(word >> (4 * shift) & 0xf) as usize]));
        }
    }
    line.push(']');
}

/// The dumps, each on lines of its own, after the event's line and stack.
pub fn push_dumps(out: &mut String, fields: &SkbFields) {
    for dump in [&fields.skb_dump, &fields.shinfo_dump] {
        if !dump.is_empty() {
            out.push_str(dump.trim_end_matches('\n'));
            out.push('\n');
        }
    }
}

/// JSON's four members, each after a comma.
pub fn push_json(out: &mut String, fields: Option<&SkbFields>) {
    let Some(f) = fields else {
        // Every event without these flags: one copy, not a member at a time
        // (a tenth of the JSON printer's time went here).
        out.push_str(EMPTY_JSON);
        return;
    };
    out.push_str(",\"skb_metadata\":{");
    for (i, name) in f.names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, &name.key);
        out.push(':');
        match f.values.get(i) {
            Some(value) => push_json_value(out, value),
            None => out.push_str("null"),
        }
    }
    out.push_str("},\"cb\":[");
    for (i, word) in f.cb.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_num(out, *word);
    }
    out.push_str("],\"skb_dump\":");
    push_json_str(out, &f.skb_dump);
    out.push_str(",\"skb_shared_info_dump\":");
    push_json_str(out, &f.shinfo_dump);
}

/// The members of an event without skb fields.
const EMPTY_JSON: &str = r#","skb_metadata":{},"cb":[0,0,0,0,0],"skb_dump":"","skb_shared_info_dump":"""#;
const _: () = assert!(CB_WORDS == 5, "EMPTY_JSON spells out cb's words");

fn push_json_value(out: &mut String, value: &MetaValue) {
    match value {
        MetaValue::Unsigned(n) => push_num(out, *n),
        MetaValue::Signed(n) => out.push_str(itoa::Buffer::new().format(*n)),
        MetaValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        MetaValue::Enum(name) => push_json_str(out, name),
        MetaValue::Ptr(p) => {
            out.push('"');
            push_hex(out, *p, 0);
            out.push('"');
        }
        MetaValue::Char(c) => push_json_str(out, &char::from(*c).to_string()),
        MetaValue::Str(s) => push_json_str(out, s),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::skb_out::FieldName;

    fn fields() -> SkbFields {
        let name = |last: &str, key: &str| FieldName { last: last.into(), key: key.into() };
        SkbFields {
            names: Arc::from([name("mark", "mark"), name("name", "name"), name("sk", "sk"), name("x", "skb->x")]),
            values: vec![
                MetaValue::Unsigned(16),
                MetaValue::Str("lo".into()),
                MetaValue::Ptr(0),
                MetaValue::Enum("PACKET_HOST".into()),
            ],
            cb: [0, 1, 0xdead_beef, 0, 0xa],
            skb_dump: "(struct sk_buff){\n .len = (unsigned int)84,\n}".into(),
            shinfo_dump: String::new(),
        }
    }

    #[test]
    fn text_is_pwrus() {
        let mut line = String::new();
        push_metadata(&mut line, &fields());
        assert_eq!(line, " mark=16 name=\"lo\" sk=0x0 x=PACKET_HOST");
        let mut line = String::new();
        push_cb(&mut line, &fields().cb);
        assert_eq!(line, "[0x00000000,0x00000001,0xDEADBEEF,0x00000000,0x0000000A]");
        assert_eq!(line.len(), CB_WIDTH);
        let mut out = String::new();
        push_dumps(&mut out, &fields());
        assert_eq!(out, "(struct sk_buff){\n .len = (unsigned int)84,\n}\n");
        let lost = SkbFields { values: Vec::new(), ..fields() };
        let mut line = String::new();
        push_metadata(&mut line, &lost);
        assert_eq!(line, " mark=? name=? sk=? x=?");
        let mut line = String::new();
        for c in [MetaValue::Char(b'a'), MetaValue::Char(0), MetaValue::Signed(-3), MetaValue::Bool(true)] {
            push_text_value(&mut line, &c);
            line.push(' ');
        }
        assert_eq!(line, "'a' 0x0 -3 true ");
    }

    #[test]
    fn json_has_every_key_with_or_without_the_flags() {
        let parse = |fields: Option<&SkbFields>| {
            let mut out = String::from("{\"a\":1");
            push_json(&mut out, fields);
            out.push('}');
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let v = parse(Some(&fields()));
        assert_eq!(
            v["skb_metadata"],
            serde_json::json!({"mark": 16, "name": "lo", "sk": "0x0", "skb->x": "PACKET_HOST"})
        );
        assert_eq!(v["cb"], serde_json::json!([0, 1, 0xdead_beefu32, 0, 10]));
        assert_eq!(v["skb_dump"], fields().skb_dump);
        assert_eq!(v["skb_shared_info_dump"], "");
        let v = parse(None);
        assert_eq!(v["skb_metadata"], serde_json::json!({}));
        assert_eq!(v["cb"], serde_json::json!([0, 0, 0, 0, 0]));
        assert_eq!((&v["skb_dump"], &v["skb_shared_info_dump"]), (&serde_json::json!(""), &serde_json::json!("")));
    }
}
