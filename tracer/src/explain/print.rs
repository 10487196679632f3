//! A story and its verdict as text (a block ending in `verdict: …`) or as
//! two JSON lines (`{"story": …}`, `{"verdict": …}`), every field always
//! present. Names are spelled out on every line: netns inode and name,
//! interfaces, tuples.

use std::{fmt::Write as _, io};

use serde::Serialize;

use super::{
    context::{Verdict, ns_label},
    flow::FlowInfo,
    story::{End, Hop, Story},
};
use crate::output::text::tuple_column;

/// A story as printed: the story, its hops, how it ended and its verdict.
pub struct Told<'a> {
    pub story: &'a Story,
    pub hops: &'a [Hop],
    pub end: End,
    pub flow: &'a FlowInfo,
    pub verdict: &'a Verdict,
    /// netns inode → /run/netns name.
    pub names: &'a dyn Fn(u32) -> Option<String>,
}

pub fn text(out: &mut String, t: &Told<'_>) {
    let s = t.story;
    let first = s.steps.first().expect("a story has steps");
    let dur_us = s.last_ns.saturating_sub(first.ktime_ns) / 1000;
    let _ = write!(out, "story {} flow {}  skb {:#x}  {}", s.id, t.flow.id, s.skb, tuple_or_none(&first.tuple));
    let _ = writeln!(out, "  {} events, {dur_us} µs", s.steps.len() as u64 + s.elided);
    if let Some(g) = &t.flow.guess {
        let _ = writeln!(
            out,
            "  linked to flow {} through {} (a guess: it received there, then sent this)",
            g.flow, g.process
        );
    }
    for hop in t.hops {
        let ns = ns_label(hop.netns, (t.names)(hop.netns).as_deref());
        let _ = write!(out, "  {ns}");
        if let Some(i) = &hop.in_if {
            let _ = write!(out, "  in {i}");
        }
        if let Some(o) = &hop.out_if {
            let _ = write!(out, "  out {o}");
        }
        out.push('\n');
        let tuples: Vec<String> = hop.tuples.iter().map(tuple_column).collect();
        if !tuples.is_empty() {
            let nat = match hop.nat() {
                (true, true) => "  (SNAT+DNAT here)",
                (true, false) => "  (SNAT here)",
                (false, true) => "  (DNAT here)",
                _ => "",
            };
            let _ = writeln!(out, "      {}{nat}", tuples.join(" ⇒ "));
        }
        let _ = writeln!(out, "      {}", funcs(s, hop).join(" → "));
    }
    if s.elided > 0 {
        let _ = writeln!(out, "  ({} events in the middle not kept)", s.elided);
    }
    let _ = writeln!(out, "  ct: {}", t.verdict.evidence.ct);
    let _ = writeln!(out, "  end: {}", end_text(t));
    for f in &t.verdict.evidence.facts {
        let how = if f.inferred { " (inferred)" } else { "" };
        let _ = writeln!(out, "  evidence: {}: {}{how}", f.name, f.value);
    }
    for m in &t.verdict.evidence.missing {
        let _ = writeln!(out, "  missing: {m}");
    }
    let _ = writeln!(out, "verdict: {} [{}, {}]", t.verdict.sentence, t.verdict.rule, t.verdict.confidence.name());
}

fn tuple_or_none(t: &crate::decode::Tuple) -> String {
    let s = tuple_column(t);
    if s.is_empty() { "(no IP tuple)".to_owned() } else { s }
}

/// The hop's functions, repeats folded.
fn funcs<'s>(s: &'s Story, hop: &Hop) -> Vec<&'s str> {
    let mut names: Vec<&str> = Vec::new();
    for step in &s.steps[hop.steps.clone()] {
        if names.last() != Some(&&*step.func) {
            names.push(&step.func);
        }
    }
    names
}

fn end_text(t: &Told<'_>) -> String {
    let last = t.story.last();
    let at = format!(
        "in {} on {}",
        ns_label(last.netns, (t.names)(last.netns).as_deref()),
        if last.ifindex == 0 { "no device" } else { last.ifname() }
    );
    match (t.end, last.dropped()) {
        (End::Dropped, Some(d)) => {
            format!("dropped {} at {} {at}", d.name, d.location.as_deref().unwrap_or(&last.func))
        }
        (End::Delivered, _) => format!("delivered to {} {at}", last.process),
        (end, _) => format!("{} at {} {at}", end.name(), last.func),
    }
}

#[derive(Serialize)]
struct StoryJson<'a> {
    id: u64,
    flow: u64,
    /// `{flow, process, guess: true}` or null.
    flow_link: Option<LinkJson<'a>>,
    skb: String,
    start_ns: u64,
    end_ns: u64,
    events: u64,
    elided: u64,
    end: &'static str,
    hops: Vec<HopJson>,
    ct: &'a str,
    drop: DropJson<'a>,
    funcs: Vec<&'a str>,
}

#[derive(Serialize)]
struct LinkJson<'a> {
    flow: u64,
    process: &'a str,
    guess: bool,
}

#[derive(Serialize)]
struct HopJson {
    netns: u32,
    netns_name: String,
    in_if: String,
    out_if: String,
    tuples: Vec<String>,
    nat: &'static str,
}

#[derive(Serialize)]
struct DropJson<'a> {
    reason: &'a str,
    location: &'a str,
}

#[derive(Serialize)]
struct VerdictJson<'a> {
    story: u64,
    flow: u64,
    rule: &'a str,
    sentence: &'a str,
    evidence: &'a super::evidence::Evidence,
    confidence: super::context::Confidence,
}

pub fn json(out: &mut String, t: &Told<'_>) -> io::Result<()> {
    let s = t.story;
    let drop = t.story.last().dropped();
    let story = StoryJson {
        id: s.id,
        flow: t.flow.id,
        flow_link: t.flow.guess.as_ref().map(|g| LinkJson { flow: g.flow, process: &g.process, guess: true }),
        skb: format!("{:#x}", s.skb),
        start_ns: s.first_ns(),
        end_ns: s.last_ns,
        events: s.steps.len() as u64 + s.elided,
        elided: s.elided,
        end: t.end.name(),
        hops: t
            .hops
            .iter()
            .map(|h| HopJson {
                netns: h.netns,
                netns_name: (t.names)(h.netns).unwrap_or_default(),
                in_if: h.in_if.clone().unwrap_or_default(),
                out_if: h.out_if.clone().unwrap_or_default(),
                tuples: h.tuples.iter().map(tuple_column).collect(),
                nat: match h.nat() {
                    (true, true) => "snat+dnat",
                    (true, false) => "snat",
                    (false, true) => "dnat",
                    _ => "",
                },
            })
            .collect(),
        ct: &t.verdict.evidence.ct,
        drop: DropJson {
            reason: drop.map_or("", |d| &d.name),
            location: drop.and_then(|d| d.location.as_deref()).unwrap_or(""),
        },
        funcs: s.steps.iter().map(|st| &*st.func).collect(),
    };
    let v = t.verdict;
    let verdict = VerdictJson {
        story: s.id,
        flow: t.flow.id,
        rule: v.rule,
        sentence: &v.sentence,
        evidence: &v.evidence,
        confidence: v.confidence,
    };
    #[derive(Serialize)]
    struct S<'a> {
        story: StoryJson<'a>,
    }
    #[derive(Serialize)]
    struct V<'a> {
        verdict: VerdictJson<'a>,
    }
    out.push_str(&serde_json::to_string(&S { story }).map_err(io::Error::other)?);
    out.push('\n');
    out.push_str(&serde_json::to_string(&V { verdict }).map_err(io::Error::other)?);
    out.push('\n');
    Ok(())
}
