//! The run summary: what the event loop saw (events, lost, drops by reason
//! and location), what was attached and detached, and why the run ended.
//! The loop produces it, consumers print it (the JSON line, the stderr
//! note, `--summary-file`), and `main` maps it to the exit code.

use std::{collections::HashMap, sync::Arc};

use serde::Serialize;

use crate::resolve::TraceEvent;

/// Why the event loop ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// SIGINT or SIGTERM (or a stop before anything was traced).
    #[default]
    Signal,
    /// `--output-limit-lines` reached.
    Limit,
}

/// The final JSON object, `{"summary": …}`; every field is always present.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// Events read from the kernel and handed to the consumers.
    pub events: u64,
    /// Events the kernel could not queue (ring buffer full).
    pub lost: u64,
    /// Lost events per probe, most first.
    pub lost_by_probe: Vec<LostAt>,
    /// Drops by reason and location, most first.
    pub drops: Vec<DropCount>,
    /// `kprobe`, `kprobe-multi` or `tracepoint`; empty when nothing was attached.
    pub backend: &'static str,
    pub attached: usize,
    pub skipped: usize,
    pub attach_seconds: f64,
    pub detached: usize,
    pub detach_seconds: f64,
    pub end: End,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostAt {
    pub probe: String,
    pub lost: u64,
}

/// Drops of one reason at one location, with the first one's particulars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropCount {
    /// `SKB_DROP_REASON_*`.
    pub reason: String,
    pub code: u32,
    /// `symbol+0xoff`, or empty when unknown.
    pub location: String,
    pub count: u64,
    /// The function or tracepoint that saw it.
    pub func: String,
    pub netns: u32,
    pub ifname: String,
    /// The first dropped packet's tuple as the text output prints it.
    pub tuple: String,
}

#[derive(Serialize)]
struct Wrapped<'a> {
    summary: &'a RunSummary,
}

impl RunSummary {
    /// The summary as one JSON line, `{"summary": {…}}`, newline included.
    pub fn to_json_line(&self) -> String {
        let mut s = serde_json::to_string(&Wrapped { summary: self }).expect("the summary always serializes");
        s.push('\n');
        s
    }

    /// Human-readable lines for stderr (without the `skbtrace: ` prefix).
    pub fn note_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.lost > 0 {
            lines.push(format!(
                "lost {} events (the ring buffer was full; try a larger --ring-size or a narrower filter)",
                self.lost
            ));
        }
        lines.push(format!("{} events", self.events));
        lines
    }
}

/// Counts what the loop sees; turned into the summary's lists at the end.
#[derive(Default)]
pub struct Tally {
    pub events: u64,
    drops: HashMap<(Arc<str>, Option<Arc<str>>), DropCount>,
}

impl Tally {
    pub fn event(&mut self, e: &TraceEvent) {
        self.events += 1;
        let Some(d) = &e.drop else { return };
        self.drops
            .entry((d.name.clone(), d.location.clone()))
            .or_insert_with(|| DropCount {
                reason: d.name.to_string(),
                code: d.code,
                location: d.location.as_deref().unwrap_or("").to_owned(),
                count: 0,
                func: e.func.to_string(),
                netns: e.raw.netns,
                ifname: e.ifname().to_owned(),
                tuple: crate::output::text::tuple_column(&e.tuple),
            })
            .count += 1;
    }

    /// Drops, most first, then by reason and location.
    pub fn drops(&self) -> Vec<DropCount> {
        let mut drops: Vec<DropCount> = self.drops.values().cloned().collect();
        drops.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| (&a.reason, &a.location).cmp(&(&b.reason, &b.location)))
        });
        drops
    }
}
