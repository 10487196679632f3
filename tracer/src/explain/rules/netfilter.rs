//! Rules for netfilter drops: conntrack table full, conntrack INVALID,
//! firewall rule or policy. With `--nft-trace` the nf_tables rule (table,
//! chain, hook, handle, and its text read in the netns) or policy was seen;
//! otherwise the hook and rule are inferred from the netns's ruleset, and
//! each sentence says so.

use super::super::{
    context::{Confidence, Ctx, Verdict},
    evidence::{NftEvidence, NftTable},
    iptables,
    story::Kind,
};
use crate::nft_trace;

/// iptables rules of the netns that could have dropped the packet.
pub(super) fn netfilter_candidates(ctx: &mut Ctx<'_>) -> Result<(Vec<iptables::Candidate>, Vec<&'static str>), String> {
    let last = ctx.story.last().clone();
    let netns = ctx.netns();
    let daddr = last.tuple.daddr.ok_or("no IP destination")?;
    let local = ctx.env.route_get(netns, daddr).map(|r| r.starts_with("local")).unwrap_or(false);
    let sent_here = ctx.story.steps.first().is_some_and(|s| s.kind == Kind::Transmit && s.netns == netns);
    let chains: Vec<&'static str> = match (sent_here, local) {
        (true, _) => vec!["OUTPUT"],
        (false, true) => vec!["INPUT"],
        (false, false) => vec!["FORWARD"],
    };
    let save = ctx.env.iptables(netns, daddr.is_ipv6())?;
    let hop = ctx.hops.last().cloned();
    let p = iptables::Packet {
        tuple: last.tuple,
        in_if: hop.as_ref().and_then(|h| h.in_if.as_deref()),
        out_if: hop.as_ref().and_then(|h| h.out_if.as_deref()),
    };
    let all = iptables::candidates(&save, &p, &chains);
    Ok((all, chains))
}

pub(super) fn ct_invalid(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    // --nft-trace saw the rule: the firewall rule names it.
    if ctx.story.nft.as_ref().is_some_and(|n| n.verdict == nft_trace::Verdict::Drop) {
        return None;
    }
    let (cands, chains) = netfilter_candidates(ctx).ok()?;
    let top = cands.first().filter(|c| c.ct_invalid)?;
    let mut ev = ctx.evidence();
    ev.fact("rule", format!("{} {}: {}", top.table, top.chain, top.rule), true);
    ev.fact("hook", chains.join(","), true);
    ev.missing("why conntrack found it INVALID: kprobes (nf_ct_l4proto_log_invalid) would show it");
    let sentence = format!(
        "{} dropped as conntrack INVALID in {} by iptables {} {} rule `{}` (inferred from iptables-save there) — \
         it belongs to no connection conntrack knows or lies outside its window: often asymmetric routing or a \
         lost handshake; consider net.netfilter.nf_conntrack_tcp_be_liberal=1",
        ctx.packet_on(),
        ctx.ns(),
        top.table,
        top.chain,
        top.rule
    );
    Some(Verdict::new(sentence, ev, Confidence::Partial))
}

pub(super) fn conntrack_full(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let netns = ctx.netns();
    let count: u64 = ctx.env.sysctl(netns, "net.netfilter.nf_conntrack_count").ok()?.parse().ok()?;
    let max: u64 = ctx.env.sysctl(netns, "net.netfilter.nf_conntrack_max").ok()?.parse().ok()?;
    if max == 0 || count * 10 < max * 9 {
        return None;
    }
    let mut ev = ctx.evidence();
    ev.fact("net.netfilter.nf_conntrack_count", count.to_string(), true);
    ev.fact("net.netfilter.nf_conntrack_max", max.to_string(), true);
    let sentence = format!(
        "dropped by conntrack in {}: table full ({count}/{max} entries) — raise net.netfilter.nf_conntrack_max \
         or shorten the conntrack timeouts",
        ctx.ns()
    );
    Some(Verdict::new(sentence, ev, Confidence::Partial))
}

pub(super) fn firewall(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    if let Some(v) = nft_drop(ctx) {
        return Some(v);
    }
    let mut ev = ctx.evidence();
    let ns = ctx.ns();
    let engine = match ctx.location_func() {
        Some(f) if f.starts_with("nft_do_chain") => "an nftables (or iptables-nft) rule or chain policy",
        Some("nf_hook_slow") => "a netfilter hook (iptables-legacy, conntrack or NAT)",
        _ => "netfilter",
    };
    if !ctx.kprobes() {
        ev.missing("the hook and chain: kprobes would show them (nf_hook_slow, nft_do_chain)");
    }
    if ctx.nft_trace {
        ev.missing(
            "--nft-trace saw no nf_tables drop of this packet: another hook dropped it (iptables-legacy, conntrack, NAT)",
        );
    } else {
        ev.missing("the rule handle needs --nft-trace");
    }
    let tuple = ctx.tuple_text();
    let (sentence, confidence) = match netfilter_candidates(ctx) {
        Ok((cands, chains)) => {
            let hook = chains.join("/");
            match cands.iter().find(|c| c.certain).or(cands.first()) {
                Some(c) => {
                    for c in cands.iter().take(5) {
                        let how = if c.certain { "matches the tuple" } else { "may match" };
                        ev.fact(format!("iptables {} {}", c.table, c.chain), format!("{} ({how})", c.rule), true);
                    }
                    let how = if c.certain { "matches" } else { "may match" };
                    (
                        format!(
                            "dropped by {engine} in {ns} at {hook} (inferred): iptables {} {} `{}` {how} {tuple} \
                             (read from iptables-save in that netns after the drop)",
                            c.table, c.chain, c.rule
                        ),
                        if c.certain { Confidence::Partial } else { Confidence::Guess },
                    )
                }
                None => (
                    format!(
                        "dropped by {engine} in {ns} ({tuple}); no iptables rule there matches it at {hook} — \
                         look for a native nftables rule (`nft -a list ruleset` in that netns)"
                    ),
                    Confidence::Partial,
                ),
            }
        }
        Err(e) => {
            ev.missing(format!("the ruleset: {e}"));
            (format!("dropped by {engine} in {ns} ({tuple})"), Confidence::Partial)
        }
    };
    Some(Verdict::new(sentence, ev, confidence))
}

/// The nf_tables rule or policy that dropped the packet, as `--nft-trace`
/// saw it; the rule's text (and its chain, when the kernel side could not
/// name it) is read from the netns's ruleset by handle.
fn nft_drop(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let nft = ctx.story.nft.clone().filter(|n| n.verdict == nft_trace::Verdict::Drop)?;
    let netns = ctx.netns();
    let mut ev = ctx.evidence();
    let ns = ctx.ns();
    let tuple = ctx.tuple_text();
    let policy = nft.kind == nft_trace::Kind::Policy;
    let rule = match policy {
        true => None,
        false => Some(ctx.env.nft_rule(netns, &NftTable { family: nft.family, table: &nft.table }, nft.handle)),
    };
    // The kernel side names the base chain when the rule's was too far.
    let (chain, within) = match &rule {
        Some(Ok(r)) if nft.chain_is_base => (r.chain.clone(), ""),
        _ if nft.chain_is_base => (nft.chain.clone(), " or a chain it jumped to"),
        _ => (nft.chain.clone(), ""),
    };
    ev.nft = NftEvidence {
        family: nft.family.to_owned(),
        table: nft.table.clone(),
        chain: chain.clone(),
        hook: nft.hook.to_owned(),
        r#type: nft.kind.name().to_owned(),
        handle: nft.handle,
        rule: String::new(),
        verdict: nft.verdict.name().to_owned(),
    };
    ev.fact("nft table", nft.table_label(), false);
    ev.fact("nft chain", format!("{chain}{within}"), nft.chain_is_base);
    ev.fact("nft hook", nft.hook, false);
    let place = format!("chain {} {} {chain}{within} (hook {}) in {ns}", nft.family, nft.table, nft.hook);
    let Some(rule) = rule else {
        ev.fact("nft verdict", "policy drop", false);
        let sentence = format!(
            "dropped by the drop policy of nftables {place}: no rule there accepted {tuple} — add an accept rule \
             for it or change the chain's policy"
        );
        return Some(Verdict::new(sentence, ev, Confidence::Full));
    };
    ev.fact("nft rule handle", nft.handle.to_string(), false);
    let (sentence, confidence) = match rule {
        Ok(r) => {
            ev.fact("nft rule", r.text.clone(), true);
            ev.nft.rule = r.text.clone();
            (
                format!("dropped by nftables rule `{}` (handle {}) in {place}: {tuple}", r.text, nft.handle),
                Confidence::Full,
            )
        }
        Err(e) => {
            ev.missing(format!("the rule's text: {e}"));
            (
                format!(
                    "dropped by nftables rule handle {} in {place}: {tuple} (`nft -a list table {} {}` in that netns \
                     shows the rule)",
                    nft.handle, nft.family, nft.table
                ),
                Confidence::Partial,
            )
        }
    };
    Some(Verdict::new(sentence, ev, confidence))
}
