//! BENCHMARKS.md: one section per benchmark between HTML-comment markers,
//! each replaced in place when that benchmark runs again; and the tables in
//! them, aligned so that they read the same in a terminal.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

/// The sections, in the order a fresh BENCHMARKS.md lists them.
pub const SECTIONS: [(&str, &str); 5] = [
    ("overhead", "Drop-point overhead on the host (tracepoint backend)"),
    ("memory", "Resident memory while attached"),
    ("ready", "Time to ready"),
    ("format", "Decode and format throughput"),
    ("vm", "Attaching every skb function in the VM (kprobes)"),
];

const PREAMBLE: &str = "# skbtrace benchmarks\n\n\
Written by `cargo xtask bench` (see `xtask/src/bench.rs` for how each number is taken); \
each section is replaced when its benchmark runs again, so sections may come from different \
days and revisions: each says when, where and on what it was measured. These are measurements \
of one machine, not pass/fail tests.\n";

fn markers(key: &str) -> (String, String) {
    (format!("<!-- bench:{key} -->"), format!("<!-- /bench:{key} -->"))
}

fn title(key: &str) -> &'static str {
    SECTIONS.iter().find(|(k, _)| *k == key).map_or("", |(_, t)| t)
}

/// A fresh file: the preamble and an empty section for each benchmark.
fn skeleton() -> String {
    let mut text = String::from(PREAMBLE);
    for (key, title) in SECTIONS {
        let (begin, end) = markers(key);
        let _ = write!(text, "\n{begin}\n## {title}\n\n_Not measured yet._\n{end}\n");
    }
    text
}

/// Replaces section `key` of the file at `path` (created if missing) with
/// a `## title` heading and `body`.
pub fn update_section(path: &Path, key: &str, body: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => skeleton(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text = with_section(text, key, body);
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn with_section(mut text: String, key: &str, body: &str) -> String {
    let (begin, end) = markers(key);
    let block = format!("{begin}\n## {}\n\n{}\n{end}", title(key), body.trim_end());
    match (text.find(&begin), text.find(&end)) {
        (Some(s), Some(e)) if s < e => text.replace_range(s..e + end.len(), &block),
        _ => {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push('\n');
            text.push_str(&block);
            text.push('\n');
        }
    }
    text
}

/// A Markdown table with padded columns.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Self {
        Self { head: head.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            std::iter::once(&self.head)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..self.head.len()).map(width).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| format!("{:<w$}", cells.get(i).map_or("", String::as_str)))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.head);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place() {
        let text = with_section(skeleton(), "ready", "first");
        let text = with_section(text, "overhead", "numbers");
        let text = with_section(text, "ready", "second");
        assert!(!text.contains("first"));
        let order: Vec<usize> = ["numbers", "second", "## Decode"].iter().map(|s| text.find(s).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(text.matches("<!-- bench:ready -->").count(), 1);
    }

    #[test]
    fn unknown_sections_are_appended() {
        let text = with_section("# hand-written\n".into(), "memory", "m");
        assert!(text.starts_with("# hand-written\n\n<!-- bench:memory -->\n## Resident memory"));
    }

    #[test]
    fn tables_and_numbers() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["long cell".into(), "1".into()]);
        assert_eq!(t.render(), "| a         | bb  |\n| --------- | --- |\n| long cell | 1   |\n");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
