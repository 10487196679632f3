//! The run summary: what the event loop saw (events, lost, drops by reason
//! and location), what was attached and detached, and why the run ended.
//! The loop produces it, consumers print it (the JSON line, the stderr
//! note, `--summary-file`), and `main` maps it to the exit code.

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
    /// CMD exited (and the grace period after it passed).
    Command,
    /// `--timeout` ended CMD.
    Timeout,
    /// `--duration` passed.
    Duration,
    /// The reader of the output went away (`skbtrace | head`).
    Closed,
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
    /// CMD and how it ended, or null without one.
    pub command: Option<CommandOutcome>,
    /// Each assertion asked for, and whether it held.
    pub assertions: Vec<crate::assertions::Outcome>,
    /// What skbtrace exits with.
    pub exit_code: u8,
    /// `--explain`: stories per verdict rule, most first (empty without it).
    pub verdicts: Vec<VerdictCount>,
    /// `--explain`: stories ended early because --explain-max-stories were open.
    pub stories_evicted: u64,
}

/// Stories that got one verdict rule, with the first one's sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerdictCount {
    pub rule: String,
    pub count: u64,
    pub first: String,
}

/// The command run under trace, and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommandOutcome {
    pub argv: Vec<String>,
    pub pid: u32,
    /// Its exit status, when it exited.
    pub status: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// From start to exit.
    pub seconds: f64,
}

impl CommandOutcome {
    /// Its status as a shell reports it: 128+N when signal N killed it.
    pub fn exit_code(&self) -> u8 {
        match (self.status, self.signal) {
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            (None, None) => 0,
        }
    }
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
        for d in &self.drops {
            let at = if d.location.is_empty() { &d.func } else { &d.location };
            lines.push(format!(
                "dropped {}× {} at {at} (netns {}, {}; first {})",
                d.count,
                d.reason,
                d.netns,
                if d.ifname.is_empty() { "no device" } else { &d.ifname },
                if d.tuple.is_empty() { "no tuple" } else { &d.tuple }
            ));
        }
        for v in &self.verdicts {
            lines.push(format!("verdict {}: {} stories (first: {})", v.rule, v.count, v.first));
        }
        if self.stories_evicted > 0 {
            lines.push(format!(
                "{} stories ended early: --explain-max-stories were open (raise it, or narrow the filter)",
                self.stories_evicted
            ));
        }
        if let Some(c) = &self.command {
            let how = match (c.status, c.signal) {
                (Some(code), _) => format!("exited {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => "did not finish".to_owned(),
            };
            lines.push(format!("{} {how} after {:.1}s", c.argv.join(" "), c.seconds));
        }
        for a in &self.assertions {
            let flag = a.assertion.replace('_', "-");
            let given = if a.reasons.is_empty() { String::new() } else { format!("={}", a.reasons) };
            let verdict = if a.passed { "passed" } else { "FAILED" };
            let what = match a.assertion {
                "fail_on_lost" => format!("{} events lost", a.matched),
                _ if a.matched_reasons.is_empty() => "no matching drop".to_owned(),
                _ => format!("{} matching drops: {}", a.matched, a.matched_reasons.join(", ")),
            };
            lines.push(format!("--{flag}{given} {verdict}: {what}"));
        }
        if self.exit_code != 0 {
            lines.push(format!("exit code {}", self.exit_code));
        }
        lines
    }
}

/// Counts what the loop sees; turned into the summary's lists at the end.
#[derive(Default)]
pub struct Tally {
    pub events: u64,
    /// By reason code and location address: the resolver names each of
    /// those one way, so this counts by (reason, location) as printed, and
    /// the key costs no string hashing or name clones per drop.
    drops: foldhash::HashMap<(u32, u64), DropCount>,
}

impl Tally {
    pub fn event(&mut self, e: &TraceEvent) {
        self.events += 1;
        let Some(d) = &e.drop else { return };
        self.drops
            .entry((d.code, e.raw.location))
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
