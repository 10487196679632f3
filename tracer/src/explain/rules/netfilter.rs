//! Rules for netfilter drops: conntrack table full, conntrack INVALID,
//! firewall rule or policy. On the tracepoint backend the hook and rule
//! are inferred from the netns's ruleset, and each sentence says so.

use super::super::{
    context::{Confidence, Ctx, Verdict},
    iptables,
    story::Kind,
};

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
    ev.missing("the rule handle needs --nft-trace");
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
