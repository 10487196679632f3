//! Writers for the values every printer shows: numbers, hex, addresses,
//! JSON strings.
//! `write!` goes through `fmt::Formatter` for each (padding, flags, dyn
//! calls); these append bytes directly, which halves the cost of a line.

use std::net::IpAddr;

use crate::decode::Proto;

pub fn push_num(out: &mut String, n: impl Into<u64>) {
    let n: u64 = n.into();
    // CPU, mark, ifindex, reason code: often one digit, which is cheaper
    // pushed than formatted and copied.
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
    } else {
        out.push_str(itoa::Buffer::new().format(n));
    }
}

/// `0x` and the lowercase hex digits of `n`, at least `min_digits` of them.
pub fn push_hex(out: &mut String, n: u64, min_digits: usize) {
    out.push_str("0x");
    push_hex_padded(out, n, min_digits);
}

/// Hex digits without `0x`, as pwru prints MARK/x.
pub fn push_hex_digits(out: &mut String, n: u64) {
    push_hex_padded(out, n, 0);
}

fn push_hex_padded(out: &mut String, n: u64, min_digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut rest = n;
    loop {
        i -= 1;
        buf[i] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    for _ in (buf.len() - i)..min_digits {
        out.push('0');
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

pub fn push_ip(out: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_octet(out, a);
            out.push('.');
            push_octet(out, b);
            out.push('.');
            push_octet(out, c);
            out.push('.');
            push_octet(out, d);
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Up to three digits, written directly: cheaper than itoa's buffer and copy.
fn push_octet(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

/// The protocol's name, or its number (see [`Proto`]'s `Display`).
pub fn push_proto(out: &mut String, proto: Proto) {
    match proto.name() {
        Some(name) => out.push_str(name),
        None => {
            if let Proto::Ip(n) = proto {
                push_num(out, n);
            }
        }
    }
}

/// A left-aligned column: what `write` appends, spaces up to `width`, and
/// the space before the next column.
pub fn column(out: &mut String, width: usize, write: impl FnOnce(&mut String)) {
    let start = out.len();
    write(out);
    let len = out.len() - start;
    push_spaces(out, width.saturating_sub(len) + 1);
}

/// `n` spaces, copied a block at a time rather than pushed one by one:
/// columns pad every line.
pub fn push_spaces(out: &mut String, mut n: usize) {
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

/// `n` spaces at byte `at` of `out`.
pub fn insert_spaces(out: &mut String, at: usize, mut n: usize) {
    while n > 0 {
        let k = n.min(SPACES.len());
        out.insert_str(at, &SPACES[..k]);
        n -= k;
    }
}

const SPACES: &str = "                                                                ";

/// Whether `s` holds a byte JSON must escape: a control character, `"` or
/// `\`. Eight bytes per step, the last step overlapping the one before it
/// rather than a byte loop for the tail: byte by byte, this scan was a
/// quarter of the printer's instructions (callgrind, benches/format.rs).
#[inline]
pub fn needs_escape(s: &str) -> bool {
    let bytes = s.as_bytes();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let last = bytes.len() - 8;
    (0..last).step_by(8).any(|at| special(word(at))) || special(word(last))
}

/// Whether a byte of `x` is one JSON must escape.
#[inline(always)]
const fn special(x: u64) -> bool {
    any_byte_below(x, 0x20) || any_byte_is(x, b'"') || any_byte_is(x, b'\\')
}

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH_BITS: u64 = ONES << 7;

/// Whether some byte of `x` is below `n` (≤ 0x80): subtracting `n` from each
/// byte borrows into its high bit exactly there (the bit-twiddling hacks'
/// `hasless`).
const fn any_byte_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * n as u64) & !x & HIGH_BITS != 0
}

const fn any_byte_is(x: u64, b: u8) -> bool {
    any_byte_below(x ^ (ONES * b as u64), 1)
}

/// Appends `s` as a JSON string.
#[inline(always)]
pub fn push_json_str(out: &mut String, s: &str) {
    if needs_escape(s) {
        out.push_str(&serde_json::to_string(s).expect("a str always serializes"));
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_format_writes_them() {
        for (n, min) in [(0u64, 0), (0x10, 0), (0x800, 4), (0xffff_8881_1f23_c400, 0), (u64::MAX, 4), (5, 4)] {
            let mut s = String::new();
            push_hex(&mut s, n, min);
            assert_eq!(s, format!("{n:#0width$x}", width = min + 2));
        }
        for n in [0u64, 7, 9, 10, 99, 4026531840, u64::MAX] {
            let mut s = String::new();
            push_num(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        for addr in ["10.0.0.1", "0.0.0.0", "255.255.255.255", "100.9.10.199", "2001:db8::1", "::ffff:10.0.0.1"] {
            let mut s = String::new();
            push_ip(&mut s, addr.parse().unwrap());
            assert_eq!(s, addr);
        }
        for proto in [Proto::None, Proto::Arp, Proto::Ip(6), Proto::Ip(17), Proto::Ip(99)] {
            let mut s = String::new();
            push_proto(&mut s, proto);
            assert_eq!(s, proto.to_string());
        }
        let mut s = String::from("a");
        column(&mut s, 4, |s| s.push('b'));
        column(&mut s, 1, |s| s.push_str("long"));
        assert_eq!(s, "ab    long ");
        let mut s = String::from("ab");
        push_spaces(&mut s, 150);
        insert_spaces(&mut s, 1, 70);
        assert_eq!(s, format!("a{}b{}", " ".repeat(70), " ".repeat(150)));
    }

    #[test]
    fn the_word_scan_finds_what_a_byte_scan_finds() {
        let by_byte = |s: &str| s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
        // Every ASCII byte, at every position of strings around the 8-byte steps.
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..0x80u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = std::str::from_utf8(&bytes).unwrap();
                    assert_eq!(needs_escape(s), by_byte(s), "{s:?}");
                }
            }
        }
        // Bytes of multi-byte characters are never below 0x80, nor quotes.
        for s in ["", "é", "ünïcödé naïve façade", "\u{7f}\u{80}\u{ff}\u{2028}", "lo\"", "tab\there"] {
            assert_eq!(needs_escape(s), by_byte(s), "{s:?}");
        }
    }
}
