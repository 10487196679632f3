//! Rules for stories that did not end in an explained drop: delivered,
//! sent out, consumed by a socket (inferred), a silent end, unfinished, and
//! the fallback for any other drop.

use super::{
    super::{
        context::{Confidence, Ctx, Verdict},
        story::{End, Kind},
    },
    ep,
};

pub(super) fn delivered(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let d = ctx.story.delivered()?.clone();
    let ev = ctx.evidence();
    let t = d.tuple;
    let to = t.daddr.map_or("?".to_owned(), |a| ep((a, t.dport)));
    let sentence = format!("delivered to {} on {to} in {}", d.process, ctx.ns());
    Some(Verdict::new(sentence, ev, Confidence::Full))
}

pub(super) fn transmitted(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let hop = ctx.hops.last()?;
    let out = hop.out_if.clone()?;
    // Left by a device, nothing after the transmit but its free.
    let last_path = ctx.story.steps.iter().rev().find(|s| s.kind != Kind::Free)?;
    if last_path.kind != Kind::Transmit {
        return None;
    }
    let ev = ctx.evidence();
    let to = ctx.story.last().tuple.daddr.map_or(String::new(), |d| format!(" towards {d}"));
    let sentence = format!("sent out of {out} in {}{to}: it left the traced scope there", ctx.ns());
    Some(Verdict::new(sentence, ev, Confidence::Full))
}

/// Arrived in a netns where a socket is bound to its destination, then
/// freed without a reason and without a device, or not seen again: the
/// tracepoint backend's view of a packet a socket took (the reading
/// process's `skb_copy_datagram_iovec` does not always fire).
pub(super) fn socket_consumed(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let last = ctx.story.last();
    let before = ctx.story.steps.iter().rev().find(|s| s.kind != Kind::Free)?;
    let freed_after = last.kind == Kind::Free && last.ifindex == 0;
    let last_seen_arriving = ctx.end != End::Freed && last.kind == Kind::Receive;
    if before.kind != Kind::Receive || !(freed_after || last_seen_arriving) {
        return None;
    }
    let t = last.tuple;
    let dst = t.daddr?;
    let (netns, proto) = (ctx.netns(), ctx.proto());
    if proto != 6 && proto != 17 {
        return None;
    }
    let l = ctx
        .env
        .listeners(netns, proto)
        .ok()?
        .into_iter()
        .find(|l| l.port == t.dport && (l.addr == dst || l.addr.is_unspecified()))?;
    let mut ev = ctx.evidence();
    ev.fact("socket", ep((l.addr, l.port)), true);
    ev.missing("the reading process: the skb_copy_datagram_iovec tracepoint did not fire for it");
    let sentence = format!(
        "delivered (inferred) to the socket {} in {}: it arrived on {} and {} while a socket is bound there",
        ep((l.addr, l.port)),
        ctx.ns(),
        before.ifname(),
        if freed_after { "was freed without a drop reason" } else { "was not seen again" }
    );
    Some(Verdict::new(sentence, ev, Confidence::Partial))
}

pub(super) fn silent_end(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let mut ev = ctx.evidence();
    let last = ctx.story.last();
    let before = ctx.story.steps.iter().rev().find(|s| s.kind != Kind::Free).map(|s| s.func.to_string());
    if !ctx.kprobes() {
        ev.missing("which function consumed it: kprobes would show it");
    }
    let after = before.map(|f| format!(" after {f}")).unwrap_or_else(|| " (the first time it was seen)".to_owned());
    let sentence = format!(
        "freed without a drop reason by {} in {} on {}{after}: never delivered to a socket nor sent out — \
         consumed by the kernel (an ICMP or TCP control packet, a clone) or a silent drop",
        last.func,
        ctx.ns(),
        ctx.ifname_or_none()
    );
    Some(Verdict::new(sentence, ev, Confidence::Guess))
}

pub(super) fn unfinished(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let mut ev = ctx.evidence();
    let last = ctx.story.last();
    let why = match ctx.end {
        End::Evicted => "its story was evicted (--explain-max-stories open stories)",
        End::Exit => "the trace ended first",
        _ => "no event came for --explain-idle",
    };
    ev.missing("the rest of its path: the backend saw no more of it (kprobes would)");
    let sentence =
        format!("last seen at {} in {} on {}: {why}; it was not seen freed", last.func, ctx.ns(), ctx.ifname_or_none());
    Some(Verdict::new(sentence, ev, Confidence::Guess))
}

pub(super) fn fallback(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let ev = ctx.evidence();
    let d = ctx.story.last().dropped()?.clone();
    let sentence = format!(
        "dropped in {} on {} ({}): {} at {}; no explanation rule matched",
        ctx.ns(),
        ctx.ifname_or_none(),
        ctx.tuple_text(),
        d.name,
        d.location.as_deref().unwrap_or("an unknown location")
    );
    Some(Verdict::new(sentence, ev, Confidence::Partial))
}
