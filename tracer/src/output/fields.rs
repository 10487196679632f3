//! Writers for the values every printer shows: numbers, hex, addresses.
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
    for _ in out.len() - start..width {
        out.push(' ');
    }
    out.push(' ');
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
    }
}
