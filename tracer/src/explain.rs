//! `--explain`: one story per packet instead of one line per event, printed
//! when the story ends, with a `verdict:` sentence a person can act on.
//!
//! - [`story`]: events grouped by skb into stories, bounded; hops by netns.
//! - [`flow`]: stories linked into flows (both directions, NAT, a proxy guess).
//! - [`rules`]: the verdict table; [`context`]: what a rule gets and returns.
//! - [`evidence`]: what is read outside the events (listeners, sysctls,
//!   routes, rulesets inside the netns); [`iptables`]: rules that match.
//! - [`print`]: text and JSON.
//!
//! Time is the events' own (`ktime_ns`): a story is idle when the newest
//! event is `--explain-idle` past its last one; what is still open at the
//! end ends then. Per event this costs a hash lookup and a push onto the
//! story's list (names are the resolver's shared `Rc<str>`).

pub mod context;
pub mod evidence;
pub mod flow;
pub mod iptables;
pub mod print;
pub mod rules;
pub mod story;

use std::{cell::RefCell, collections::HashMap, io, rc::Rc};

use crate::{
    config::{ExplainSpec, Format},
    output::Consumer,
    resolve::TraceEvent,
    summary::{RunSummary, VerdictCount},
};
use context::Ctx;
use evidence::Environment;
use flow::Flows;
use story::{End, Story, StoryTable};

/// The verdict of the story the last event ended, for the pcap-ng writer's
/// packet comment: consumers run in order on one thread, and the explain
/// consumer runs first.
#[derive(Clone, Default)]
pub struct VerdictNotes(Rc<RefCell<Option<(u64, u64, String)>>>);

impl VerdictNotes {
    /// The verdict sentence when `e` is the event that ended a story.
    pub fn for_event(&self, e: &TraceEvent) -> Option<String> {
        let note = self.0.borrow();
        let (skb, ktime, sentence) = note.as_ref()?;
        (*skb == e.raw.skb && *ktime == e.raw.ktime_ns).then(|| sentence.clone())
    }

    fn set(&self, skb: u64, ktime_ns: u64, sentence: &str) {
        *self.0.borrow_mut() = Some((skb, ktime_ns, sentence.to_owned()));
    }
}

pub struct Explainer<W: io::Write> {
    out: W,
    format: Format,
    spec: ExplainSpec,
    stories: StoryTable,
    flows: Flows,
    env: Box<dyn Environment>,
    notes: VerdictNotes,
    ended: Vec<(Story, End)>,
    /// Rule id → (count, first sentence).
    verdicts: HashMap<&'static str, (u64, String)>,
    evicted: u64,
    newest_ns: u64,
    since_sweep: u32,
    buf: String,
    /// `--nft-trace` was given.
    nft_trace: bool,
}

/// Events between two idle sweeps within a batch.
const SWEEP_EVERY: u32 = 4096;

impl<W: io::Write> Explainer<W> {
    pub fn new(out: W, format: Format, spec: ExplainSpec, env: Box<dyn Environment>, notes: VerdictNotes) -> Self {
        Self {
            out,
            format,
            stories: StoryTable::new(spec.max_stories),
            flows: Flows::new(spec.max_stories * 4),
            spec,
            env,
            notes,
            ended: Vec::new(),
            verdicts: HashMap::new(),
            evicted: 0,
            newest_ns: 0,
            since_sweep: 0,
            buf: String::with_capacity(4096),
            nft_trace: false,
        }
    }

    /// Tells the rules that `--nft-trace` was given (nf_tables's verdicts
    /// are among the events), so that they ask for it only when it was not.
    pub fn with_nft_trace(mut self, on: bool) -> Self {
        self.nft_trace = on;
        self
    }

    fn idle_ns(&self) -> u64 {
        self.spec.idle.as_nanos().min(u64::MAX as u128) as u64
    }

    /// Judges and prints the stories that ended.
    fn tell(&mut self) -> io::Result<()> {
        for (story, end) in std::mem::take(&mut self.ended) {
            if end == End::Evicted {
                self.evicted += 1;
            }
            let hops = story.hops();
            let flow = self.flows.assign(&story, &hops);
            let mut ctx = Ctx {
                story: &story,
                hops: &hops,
                end,
                flow: &flow,
                flows: &self.flows,
                env: &mut *self.env,
                nft_trace: self.nft_trace,
            };
            let verdict = rules::judge(&mut ctx);
            let last = story.last();
            self.notes.set(story.skb, last.ktime_ns, &verdict.sentence);
            let entry = self.verdicts.entry(verdict.rule).or_insert_with(|| (0, verdict.sentence.clone()));
            entry.0 += 1;
            let env = &mut self.env;
            let mut names_cache: HashMap<u32, Option<String>> = HashMap::new();
            for h in &hops {
                names_cache.entry(h.netns).or_insert_with(|| env.netns_name(h.netns));
            }
            let names = |n: u32| names_cache.get(&n).cloned().flatten();
            let told = print::Told { story: &story, hops: &hops, end, flow: &flow, verdict: &verdict, names: &names };
            match self.format {
                Format::Text => {
                    print::text(&mut self.buf, &told);
                    self.buf.push('\n');
                }
                Format::Json => print::json(&mut self.buf, &told)?,
            }
            if self.buf.len() >= 1 << 15 {
                self.out.write_all(self.buf.as_bytes())?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    fn sweep(&mut self) -> io::Result<()> {
        self.since_sweep = 0;
        let idle = self.idle_ns();
        self.stories.sweep(self.newest_ns, idle, &mut self.ended);
        self.tell()
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        self.out.flush()
    }
}

impl<W: io::Write> Consumer for Explainer<W> {
    fn event(&mut self, e: &TraceEvent) -> io::Result<()> {
        self.newest_ns = self.newest_ns.max(e.raw.ktime_ns);
        self.stories.add(e, &mut self.ended);
        if let Some(story) = self.stories.get(e.raw.skb) {
            self.flows.learn(story);
        }
        if !self.ended.is_empty() {
            self.tell()?;
        }
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sweep()?;
        self.write_out()
    }

    fn close(&mut self, summary: &mut RunSummary) -> io::Result<()> {
        let idle = self.idle_ns();
        self.stories.drain(idle, self.newest_ns, &mut self.ended);
        self.tell()?;
        let mut counts: Vec<VerdictCount> = self
            .verdicts
            .iter()
            .map(|(rule, (count, first))| VerdictCount {
                rule: (*rule).to_owned(),
                count: *count,
                first: first.clone(),
            })
            .collect();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
        summary.verdicts = counts;
        summary.stories_evicted = self.evicted;
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        if self.format == Format::Json {
            self.buf.push_str(&summary.to_json_line());
        }
        self.write_out()
    }
}

impl<W: io::Write> Drop for Explainer<W> {
    /// Stories of a run that ended on an error still go out.
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

#[cfg(test)]
#[path = "explain/tests.rs"]
mod tests;
