//! A story and its verdict as text (a block ending in `verdict: …`) or as
//! two JSON lines (`{"story": …}`, `{"verdict": …}`), every field always
//! present. Names are spelled out on every line: netns inode and name,
//! interfaces, tuples.

use std::{fmt::Write as _, io};

use serde::Serialize;

use super::{
    context::{Verdict, push_ns_label},
    flow::FlowInfo,
    story::{End, Hop, Story},
};
use crate::output::{
    fields::{push_hex, push_num},
    text::{push_tuple_column, tuple_column},
};

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

/// Pushed piece by piece rather than through `write!`: formatting was a
/// third of the explain consumer's time (callgrind, benches/format.rs).
pub fn text(out: &mut String, t: &Told<'_>) {
    let s = t.story;
    let first = s.steps.first().expect("a story has steps");
    let dur_us = s.last_ns.saturating_sub(first.ktime_ns) / 1000;
    out.push_str("story ");
    push_num(out, s.id);
    out.push_str(" flow ");
    push_num(out, t.flow.id);
    out.push_str("  skb ");
    push_hex(out, s.skb, 0);
    out.push_str("  ");
    push_tuple_or_none(out, &first.tuple);
    out.push_str("  ");
    push_num(out, s.steps.len() as u64 + s.elided);
    out.push_str(" events, ");
    push_num(out, dur_us);
    out.push_str(" µs\n");
    if let Some(g) = &t.flow.guess {
        let _ = writeln!(
            out,
            "  linked to flow {} through {} (a guess: it received there, then sent this)",
            g.flow, g.process
        );
    }
    for hop in t.hops {
        out.push_str("  ");
        push_ns_label(out, hop.netns, (t.names)(hop.netns).as_deref());
        if let Some(i) = &hop.in_if {
            out.push_str("  in ");
            out.push_str(i);
        }
        if let Some(o) = &hop.out_if {
            out.push_str("  out ");
            out.push_str(o);
        }
        out.push('\n');
        if !hop.tuples.is_empty() {
            out.push_str("      ");
            for (i, tuple) in hop.tuples.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ⇒ ");
                }
                push_tuple_column(out, tuple);
            }
            out.push_str(match hop.nat() {
                (true, true) => "  (SNAT+DNAT here)",
                (true, false) => "  (SNAT here)",
                (false, true) => "  (DNAT here)",
                _ => "",
            });
            out.push('\n');
        }
        out.push_str("      ");
        for (i, func) in funcs(s, hop).iter().enumerate() {
            if i > 0 {
                out.push_str(" → ");
            }
            out.push_str(func);
        }
        out.push('\n');
    }
    if s.elided > 0 {
        let _ = writeln!(out, "  ({} events in the middle not kept)", s.elided);
    }
    let v = t.verdict;
    out.push_str("  ct: ");
    out.push_str(&v.evidence.ct);
    out.push('\n');
    out.push_str("  end: ");
    push_end(out, t);
    out.push('\n');
    for f in &v.evidence.facts {
        out.push_str("  evidence: ");
        out.push_str(&f.name);
        out.push_str(": ");
        out.push_str(&f.value);
        out.push_str(if f.inferred { " (inferred)\n" } else { "\n" });
    }
    for m in &v.evidence.missing {
        out.push_str("  missing: ");
        out.push_str(m);
        out.push('\n');
    }
    out.push_str("verdict: ");
    out.push_str(&v.sentence);
    out.push_str(" [");
    out.push_str(v.rule);
    out.push_str(", ");
    out.push_str(v.confidence.name());
    out.push_str("]\n");
}

fn push_tuple_or_none(out: &mut String, t: &crate::decode::Tuple) {
    let start = out.len();
    push_tuple_column(out, t);
    if out.len() == start {
        out.push_str("(no IP tuple)");
    }
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

/// `dropped REASON at LOCATION in netns … on DEV`, `delivered to PROCESS in …`.
fn push_end(out: &mut String, t: &Told<'_>) {
    let last = t.story.last();
    match (t.end, last.dropped()) {
        (End::Dropped, Some(d)) => {
            out.push_str("dropped ");
            out.push_str(&d.name);
            out.push_str(" at ");
            out.push_str(d.location.as_deref().unwrap_or(&last.func));
        }
        (End::Delivered, _) => {
            out.push_str("delivered to ");
            out.push_str(&last.process);
        }
        (end, _) => {
            out.push_str(end.name());
            out.push_str(" at ");
            out.push_str(&last.func);
        }
    }
    out.push_str(" in ");
    push_ns_label(out, last.netns, (t.names)(last.netns).as_deref());
    out.push_str(" on ");
    out.push_str(if last.ifindex == 0 { "no device" } else { last.ifname() });
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
