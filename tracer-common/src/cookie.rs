//! The attach cookie of each function on a kprobe-multi link. One program
//! serves every function; the cookie says where its arguments are, so that
//! one program load and one link replace one of each per skb position.
//!
//! Bits 0–3: the skb's argument index (0-based). Bits 4–7: the drop reason's
//! argument index plus one, or 0 when the function has none. Bit 8: the skb
//! is freed here (`--filter-track-skb` forgets it).

const SKB_MASK: u64 = 0xf;
const REASON_SHIFT: u32 = 4;
const FREES: u64 = 1 << 8;

pub const fn encode(skb_arg: u8, reason_arg: Option<u8>, frees: bool) -> u64 {
    let reason = match reason_arg {
        Some(n) => (n as u64 + 1) << REASON_SHIFT,
        None => 0,
    };
    (skb_arg as u64 & SKB_MASK) | reason | if frees { FREES } else { 0 }
}

pub const fn skb_arg(cookie: u64) -> usize {
    (cookie & SKB_MASK) as usize
}

pub const fn reason_arg(cookie: u64) -> Option<usize> {
    match (cookie >> REASON_SHIFT) & 0xf {
        0 => None,
        n => Some(n as usize - 1),
    }
}

pub const fn frees(cookie: u64) -> bool {
    cookie & FREES != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        for skb in 0..5u8 {
            for reason in [None, Some(0), Some(2), Some(5)] {
                for free in [false, true] {
                    let c = encode(skb, reason, free);
                    assert_eq!(skb_arg(c), skb as usize);
                    assert_eq!(reason_arg(c), reason.map(usize::from));
                    assert_eq!(frees(c), free);
                }
            }
        }
    }
}
