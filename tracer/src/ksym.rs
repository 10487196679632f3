//! Kernel symbols from /proc/kallsyms: address → `name+0xoff`, and which
//! functions can be probed.

use std::{collections::HashSet, fs};

use anyhow::Context as _;

pub struct Kallsyms {
    /// Text symbols sorted by address: address, and the name's place in `names`.
    syms: Vec<(u64, u32, u32)>,
    /// Every name, one after another: one allocation instead of 100,000.
    names: String,
}

/// /proc/kallsyms being read on a thread of its own: the kernel takes longer
/// to print it than skbtrace takes to read its BTF and load its programs
/// (seconds in an emulated VM), and only some paths need it before attaching.
pub struct Loading {
    thread: Option<std::thread::JoinHandle<anyhow::Result<Kallsyms>>>,
    loaded: Option<Kallsyms>,
}

impl Loading {
    /// Starts reading on a thread.
    pub fn start() -> anyhow::Result<Self> {
        let mut loading = Self::later();
        loading.begin()?;
        Ok(loading)
    }

    /// Reads nothing until [`begin`](Self::begin) or [`get`](Self::get).
    pub fn later() -> Self {
        Self { thread: None, loaded: None }
    }

    /// Starts reading on a thread, unless that has begun or is done.
    pub fn begin(&mut self) -> anyhow::Result<()> {
        if self.thread.is_none() && self.loaded.is_none() {
            let thread = std::thread::Builder::new()
                .name("kallsyms".into())
                .spawn(Kallsyms::load)
                .context("starting a thread to read /proc/kallsyms")?;
            self.thread = Some(thread);
        }
        Ok(())
    }

    /// Waits for the symbols, reading them here if nothing has begun.
    pub fn get(&mut self) -> anyhow::Result<&Kallsyms> {
        if let Some(thread) = self.thread.take() {
            let loaded = thread.join().map_err(|_| anyhow::anyhow!("reading /proc/kallsyms failed"))??;
            self.loaded = Some(loaded);
        }
        if self.loaded.is_none() {
            self.loaded = Some(Kallsyms::load()?);
        }
        Ok(self.loaded.as_ref().expect("loaded above"))
    }
}

impl Kallsyms {
    pub fn load() -> anyhow::Result<Self> {
        let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut names = String::new();
        let mut syms: Vec<(u64, u32, u32)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                if !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                let start = names.len() as u32;
                names.push_str(name);
                Some((addr, start, name.len() as u32))
            })
            .collect();
        syms.sort_unstable();
        Self { syms, names }
    }

    fn name(&self, (_, start, len): &(u64, u32, u32)) -> &str {
        &self.names[*start as usize..(*start + *len) as usize]
    }

    pub fn names(&self) -> HashSet<&str> {
        self.syms.iter().map(|s| self.name(s)).collect()
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.syms.partition_point(|(a, ..)| *a <= addr);
        let sym = self.syms.get(i.checked_sub(1)?)?;
        Some((self.name(sym), addr - sym.0))
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
    for path in
        ["/sys/kernel/tracing/available_filter_functions", "/sys/kernel/debug/tracing/available_filter_functions"]
    {
        if let Ok(text) = fs::read_to_string(path) {
            return Some(text.lines().filter_map(|l| l.split_ascii_whitespace().next()).map(str::to_owned).collect());
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

    #[test]
    fn module_lines_short_addresses_and_any_order_parse() {
        let k = Kallsyms::parse(
            "ffffffffc0a01000 t br_handle_frame\t[bridge]\n\
             c1000000 T ip_rcv\n\
             ffffffff81000300 W weak_one\n\
             ffffffffc0a01010 t garbage_\u{7f}\n\
             not a line\n\
             ffffffffzz000000 T bad_hex\n",
        );
        assert_eq!(k.describe(0xffffffffc0a01004), "br_handle_frame+0x4");
        assert_eq!(k.describe(0xc1000000), "ip_rcv");
        assert_eq!(k.describe(0xffffffff81000300), "weak_one");
        assert!(k.names().contains("br_handle_frame"));
        assert!(!k.names().contains("bad_hex"));
    }
}
