//! Kernel symbols from /proc/kallsyms: address → `name+0xoff`, and which
//! functions can be probed.

use std::{collections::HashSet, fs};

use anyhow::Context as _;

pub struct Kallsyms {
    /// Text symbols sorted by address.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn load() -> anyhow::Result<Self> {
        let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, name.to_owned()))
            })
            .collect();
        syms.sort_unstable();
        Self { syms }
    }

    pub fn names(&self) -> HashSet<&str> {
        self.syms.iter().map(|(_, n)| n.as_str()).collect()
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        let (start, name) = self.syms.get(i.checked_sub(1)?)?;
        Some((name.as_str(), addr - start))
    }

    /// `name` for an exact hit, `name+0xoff` inside, hex otherwise.
    pub fn describe(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((name, 0)) => name.to_owned(),
            Some((name, off)) => format!("{name}+{off:#x}"),
            None => format!("{addr:#x}"),
        }
    }
}

/// Functions ftrace can probe, when tracefs lets us read the list.
pub fn available_filter_functions() -> Option<HashSet<String>> {
    for path in [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
    ] {
        if let Ok(text) = fs::read_to_string(path) {
            return Some(
                text.lines()
                    .filter_map(|l| l.split_ascii_whitespace().next())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_containing_symbol() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t ip_rcv\nffffffff81000200 D data_thing\nffffffff81000300 T kfree_skb_reason\n",
        );
        assert_eq!(k.describe(0xffffffff81000100), "ip_rcv");
        assert_eq!(k.describe(0xffffffff81000123), "ip_rcv+0x23");
        assert_eq!(k.describe(0xffffffff81000301), "kfree_skb_reason+0x1");
        assert_eq!(k.describe(0x10), "0x10");
        assert!(k.names().contains("ip_rcv"));
        assert!(!k.names().contains("data_thing"));
    }
}
