//! Verdict rules: a static table, tried in order. A rule triggers on how
//! the story ended, drop-reason *names* (never numbers: they differ per
//! kernel; each rule lists the names every kernel has used) and function
//! names; its `explain` then gathers evidence and builds one sentence a
//! person can act on, or declines (`None`) and lets the next rule try.
//! The last rules always answer.

mod ending;
mod netfilter;

use ending::{delivered, fallback, silent_end, socket_consumed, transmitted, unfinished};
use netfilter::{conntrack_full, ct_invalid, firewall};

pub use super::context::ep;
use super::{
    context::{Confidence, Ctx, Verdict},
    story::{End, Kind, short},
};

pub struct Rule {
    pub id: &'static str,
    /// How the story must have ended.
    pub ends: &'static [End],
    /// Drop reasons (without `SKB_DROP_REASON_`); empty: any.
    pub reasons: &'static [&'static str],
    /// The drop location's function or a step's function; empty: any.
    pub functions: &'static [&'static str],
    pub explain: fn(&mut Ctx<'_>) -> Option<Verdict>,
}

const DROP: &[End] = &[End::Dropped];

pub static RULES: &[Rule] = &[
    Rule { id: "asymmetric-nat-reply", ends: DROP, reasons: &["NO_SOCKET"], functions: &[], explain: asymmetric_nat },
    Rule { id: "closed-port", ends: DROP, reasons: &["NO_SOCKET"], functions: &[], explain: closed_port },
    Rule {
        id: "conntrack-full",
        ends: DROP,
        reasons: &["NETFILTER_DROP"],
        functions: &["nf_hook_slow", "nf_conntrack_in", "__nf_conntrack_alloc"],
        explain: conntrack_full,
    },
    Rule { id: "conntrack-invalid", ends: DROP, reasons: &["NETFILTER_DROP"], functions: &[], explain: ct_invalid },
    Rule { id: "firewall", ends: DROP, reasons: &["NETFILTER_DROP"], functions: &[], explain: firewall },
    Rule { id: "rp-filter", ends: DROP, reasons: &["IP_RPFILTER"], functions: &[], explain: rp_filter },
    Rule {
        id: "no-route",
        ends: DROP,
        reasons: &["IP_INNOROUTES", "IP_OUTNOROUTES", "IP_INADDRERRORS", "IP_INVALID_DEST"],
        functions: &[],
        explain: no_route,
    },
    Rule {
        id: "mtu",
        ends: DROP,
        reasons: &["PKT_TOO_BIG", "FRAG_TOO_FAR", "FRAG_REASM_TIMEOUT"],
        functions: &[],
        explain: mtu,
    },
    Rule {
        id: "socket-rcvbuf",
        ends: DROP,
        reasons: &["SOCKET_RCVBUFF", "PROTO_MEM"],
        functions: &[],
        explain: rcvbuf,
    },
    Rule { id: "delivered", ends: &[End::Delivered], reasons: &[], functions: &[], explain: delivered },
    Rule {
        id: "transmitted",
        ends: &[End::Freed, End::Idle, End::Exit, End::Evicted],
        reasons: &[],
        functions: &[],
        explain: transmitted,
    },
    Rule {
        id: "socket-consumed",
        ends: &[End::Freed, End::Idle, End::Exit],
        reasons: &[],
        functions: &[],
        explain: socket_consumed,
    },
    Rule { id: "silent-end", ends: &[End::Freed], reasons: &[], functions: &[], explain: silent_end },
    Rule {
        id: "unfinished",
        ends: &[End::Idle, End::Exit, End::Evicted],
        reasons: &[],
        functions: &[],
        explain: unfinished,
    },
    Rule { id: "fallback", ends: DROP, reasons: &[], functions: &[], explain: fallback },
];

impl Rule {
    fn triggers(&self, ctx: &Ctx<'_>) -> bool {
        let last = ctx.story.last();
        let reason = last.dropped().map(|d| short(&d.name));
        let location = ctx.location_func();
        self.ends.contains(&ctx.end)
            && (self.reasons.is_empty() || reason.is_some_and(|r| self.reasons.contains(&r)))
            && (self.functions.is_empty()
                || self
                    .functions
                    .iter()
                    .any(|f| location == Some(*f) || ctx.story.steps.iter().any(|s| &*s.func == *f)))
    }
}

/// The first rule that triggers and answers.
pub fn judge(ctx: &mut Ctx<'_>) -> Verdict {
    for rule in RULES {
        if rule.triggers(ctx)
            && let Some(mut v) = (rule.explain)(ctx)
        {
            v.rule = rule.id;
            return v;
        }
    }
    unreachable!("the last rules answer for every ending")
}

fn asymmetric_nat(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let t = ctx.story.last().tuple;
    let (src, dst) = (t.saddr?, t.daddr?);
    let snat = ctx.flows.snat_to(ctx.netns(), ctx.proto(), (dst, t.dport))?.clone();
    if snat.dst == (src, t.sport) {
        return None;
    }
    let mut ev = ctx.evidence();
    let ns = ctx.ns();
    ev.fact("request", format!("{} → {} (story {})", ep(snat.orig), ep(snat.dst), snat.story), false);
    ev.fact("snat", format!("{} → {} in {ns}", ep(snat.orig), ep(snat.translated)), false);
    ev.fact("reply", format!("{} → {}", ep((src, t.sport)), ep((dst, t.dport))), false);
    // The entry the request made, from the table itself: its reply tuple is
    // what conntrack waited for.
    match ctx.env.ct_entries_from(ctx.netns(), ctx.proto(), snat.orig) {
        Ok(entries) if !entries.is_empty() => {
            for entry in entries {
                ev.fact("conntrack entry (ctnetlink, after the drop)", entry, true);
            }
            ev.fact("conntrack", "the reply matches neither direction of that entry, so the SNAT was not undone", true);
        }
        Ok(_) => ev.fact("conntrack", "no entry matched the reply (NO_SOCKET after the SNAT was not undone)", true),
        Err(e) => {
            ev.missing(format!("the conntrack table: {e}"));
            ev.fact("conntrack", "no entry matched the reply (NO_SOCKET after the SNAT was not undone)", true);
        }
    }
    if let Some(g) = &ctx.flow.guess {
        ev.fact("relay", format!("{} received on flow {} and sent this (a guess)", g.process, g.flow), true);
    }
    let via = snat.out_if.as_deref().map(|i| format!(" out {i}")).unwrap_or_default();
    let sentence = format!(
        "{} reply from {} to {} dropped in {ns}: no socket — the request went to {} and was source-NATed here \
         from {} to {}{via}; the reply's source differs from the request's destination, so conntrack did not \
         match it and the SNAT was not undone (the replier must answer from {}, e.g. bind to it or use IP_PKTINFO)",
        ctx.proto_name(),
        ep((src, t.sport)),
        ep((dst, t.dport)),
        ep(snat.dst),
        ep(snat.orig),
        ep(snat.translated),
        ep(snat.dst),
    );
    Some(Verdict::new(sentence, ev, Confidence::Full))
}

fn closed_port(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let t = ctx.story.last().tuple;
    let dst = t.daddr?;
    let proto = ctx.proto();
    let netns = ctx.netns();
    let mut ev = ctx.evidence();
    let ns = ctx.ns();
    let answer = if ctx.story.any(Kind::ResetSent) {
        "; the kernel answered with a TCP reset"
    } else if ctx.story.any(Kind::IcmpSent) {
        "; the kernel answered ICMP port unreachable"
    } else {
        ""
    };
    let mut confidence = Confidence::Full;
    let others = match ctx.env.listeners(netns, proto) {
        Ok(all) => {
            let same_port: Vec<String> =
                all.iter().filter(|l| l.port == t.dport).map(|l| ep((l.addr, l.port))).collect();
            ev.fact(
                "listeners on that port",
                if same_port.is_empty() { "none".to_owned() } else { same_port.join(", ") },
                true,
            );
            let covers = all.iter().any(|l| l.port == t.dport && (l.addr == dst || l.addr.is_unspecified()));
            if covers {
                confidence = Confidence::Partial;
                format!("; a socket covering {} listens now (it opened after the packet?)", ep((dst, t.dport)))
            } else if same_port.is_empty() {
                String::new()
            } else {
                format!("; a socket listens on {} only", same_port.join(", "))
            }
        }
        Err(e) => {
            confidence = Confidence::Partial;
            ev.missing(format!("listening sockets: {e}"));
            String::new()
        }
    };
    // Where the sender sent it, when NAT changed the destination on the way.
    let first = ctx.story.steps.first().map(|s| s.tuple).unwrap_or(t);
    let nat = match (&ctx.story.ct, first.daddr) {
        (Some(ct), _) if ct.status.has("DST_NAT") && ct.orig.dst.is_some() => {
            ev.fact("conntrack", ct.to_string(), false);
            let sent = ct.orig.dst.map_or("?".to_owned(), |d| ep((d, ct.orig.dport)));
            format!(" (sent to {sent}; destination NAT made it {})", ep((dst, t.dport)))
        }
        (_, Some(d)) if (d, first.dport) != (dst, t.dport) => {
            format!(" (sent to {}; NAT on the way made it {})", ep((d, first.dport)), ep((dst, t.dport)))
        }
        _ => String::new(),
    };
    if ctx.story.ct.is_none() {
        ev.missing("conntrack (to rule out a NAT reply that was not undone): the packet carried no entry");
    }
    let what = if proto == 6 { "TCP SYN" } else { ctx.proto_name() };
    let sentence = format!(
        "{what} to {} from {} refused in {ns}{nat}: nothing listens on {} there{others}{answer}",
        ep((dst, t.dport)),
        t.saddr.map_or("?".to_owned(), |s| ep((s, t.sport))),
        ep((dst, t.dport)),
    );
    Some(Verdict::new(sentence, ev, confidence))
}

fn rp_filter(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let last = ctx.story.last().clone();
    let netns = ctx.netns();
    let ifname = last.ifname().to_owned();
    let mut ev = ctx.evidence();
    let mut read = |key: String, ev: &mut super::evidence::Evidence| match ctx.env.sysctl(netns, &key) {
        Ok(v) => {
            ev.fact(key, v.clone(), true);
            v.parse::<u8>().ok()
        }
        Err(e) => {
            ev.missing(format!("{key}: {e}"));
            None
        }
    };
    let all = read("net.ipv4.conf.all.rp_filter".to_owned(), &mut ev);
    let dev = read(format!("net.ipv4.conf.{ifname}.rp_filter"), &mut ev);
    let effective = all.max(dev);
    let src = last.tuple.saddr;
    let back = src.map(|s| ctx.env.route_get(netns, s));
    let back_dev = match &back {
        Some(Ok(r)) => {
            ev.fact(format!("route back to {}", src.expect("some")), r.clone(), true);
            route_dev(r)
        }
        Some(Err(e)) => {
            ev.missing(format!("the route back: {e}"));
            None
        }
        None => None,
    };
    let src = src.map_or("?".to_owned(), |s| s.to_string());
    let leads = match &back_dev {
        Some(d) if *d != ifname => format!("the route back to {src} leaves via {d}, not {ifname} — asymmetric routing"),
        Some(d) => format!("the route back to {src} leaves via {d} (the same device: check the source address)"),
        None => format!("there is no usable route back to {src}"),
    };
    let mode = effective.map_or("rp_filter".to_owned(), |m| format!("rp_filter={m}"));
    let sentence = format!(
        "dropped by the reverse-path filter in {} on {ifname} ({mode}): {leads}; set \
         net.ipv4.conf.{ifname}.rp_filter=2 (loose) or route {src} back via {ifname}",
        ctx.ns()
    );
    let confidence = if back_dev.is_some_and(|d| d != ifname) { Confidence::Full } else { Confidence::Partial };
    Some(Verdict::new(sentence, ev, confidence))
}

fn route_dev(route: &str) -> Option<String> {
    let mut words = route.split_whitespace();
    words.by_ref().find(|w| *w == "dev")?;
    words.next().map(str::to_owned)
}

fn no_route(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let last = ctx.story.last().clone();
    let netns = ctx.netns();
    let dst = last.tuple.daddr;
    let mut ev = ctx.evidence();
    let key = if dst.is_some_and(|d| d.is_ipv6()) { "net.ipv6.conf.all.forwarding" } else { "net.ipv4.ip_forward" };
    let forwarding = ctx.env.sysctl(netns, key);
    match &forwarding {
        Ok(v) => ev.fact(key, v.clone(), true),
        Err(e) => ev.missing(format!("{key}: {e}")),
    }
    let route = dst.map(|d| ctx.env.route_get(netns, d));
    match &route {
        Some(Ok(r)) => ev.fact("ip route get", r.clone(), true),
        Some(Err(e)) => ev.fact("ip route get", e.clone(), true),
        None => {}
    }
    let dst = dst.map_or("?".to_owned(), |d| d.to_string());
    let reason = short(&last.dropped()?.name).to_owned();
    let why = if forwarding.as_deref() == Ok("0") && reason != "IP_OUTNOROUTES" {
        format!("forwarding is off there ({key}=0), so a packet for {dst}, not an address of this netns, is not routed")
    } else {
        match &route {
            Some(Ok(r)) => format!("no usable route to {dst} (ip route get: {r})"),
            Some(Err(e)) => format!("no route to {dst} ({e})"),
            None => format!("no route to {dst}"),
        }
    };
    let icmp = if ctx.story.any(Kind::IcmpSent) { "; ICMP unreachable sent back" } else { "" };
    let sentence = format!("{} dropped in {} ({reason}): {why}{icmp}", ctx.packet_on(), ctx.ns());
    Some(Verdict::new(sentence, ev, Confidence::Full))
}

fn mtu(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let last = ctx.story.last().clone();
    let netns = ctx.netns();
    let mut ev = ctx.evidence();
    // The length where it was dropped, from its IP header on: earlier
    // steps (a device's transmit) count the MAC header too, which the
    // MTU does not.
    let len = last.len;
    ev.fact("length", len.to_string(), false);
    let dst = last.tuple.daddr?;
    let route = ctx.env.route_get(netns, dst);
    let out = route.as_ref().ok().and_then(|r| route_dev(r));
    let mtu = out.as_deref().and_then(|dev| ctx.env.link_mtu(netns, dev).ok());
    if let Ok(r) = &route {
        ev.fact("route", r.clone(), true);
    }
    let toward = match (&out, &mtu) {
        (Some(d), Some(m)) => format!("larger than the MTU {m} of {d}, its way to {dst}"),
        (Some(d), None) => format!("larger than the MTU of {d}, its way to {dst}"),
        _ => format!("larger than the path MTU towards {dst}"),
    };
    if mtu.is_none() {
        ev.missing("the outgoing device's MTU");
    }
    let icmp = if ctx.story.any(Kind::IcmpSent) {
        format!(
            "; ICMP fragmentation-needed sent back to {}",
            last.tuple.saddr.map_or("?".to_owned(), |s| s.to_string())
        )
    } else {
        String::new()
    };
    let sentence = format!(
        "{len}-byte packet dropped in {} at {}: {toward}, and it may not be fragmented (DF){icmp} — lower the \
         sender's MTU/MSS or let PMTU discovery work (ICMP must pass back)",
        ctx.ns(),
        ctx.location_func().unwrap_or(&last.func)
    );
    Some(Verdict::new(sentence, ev, Confidence::Full))
}

fn rcvbuf(ctx: &mut Ctx<'_>) -> Option<Verdict> {
    let t = ctx.story.last().tuple;
    let netns = ctx.netns();
    let mut ev = ctx.evidence();
    let dst = t.daddr?;
    let listener = match ctx.env.listeners(netns, ctx.proto()) {
        Ok(all) => all.into_iter().find(|l| l.port == t.dport && (l.addr == dst || l.addr.is_unspecified())),
        Err(e) => {
            ev.missing(format!("the socket: {e}"));
            None
        }
    };
    let owner = listener.as_ref().and_then(|l| ctx.env.socket_owner(l.inode));
    let socket = match (&listener, &owner) {
        (Some(l), Some(o)) => format!("{o}'s socket {}", ep((l.addr, l.port))),
        (Some(l), None) => format!("the socket {} (inode {})", ep((l.addr, l.port)), l.inode),
        _ => format!("the socket of {}", ep((dst, t.dport))),
    };
    if let Some(l) = &listener {
        ev.fact("socket drops so far", l.drops.to_string(), true);
    }
    let rmem = ctx.env.sysctl(netns, "net.core.rmem_max").ok();
    if let Some(r) = &rmem {
        ev.fact("net.core.rmem_max", r.clone(), true);
    }
    let drops = listener.as_ref().map(|l| format!(" ({} drops so far)", l.drops)).unwrap_or_default();
    let sentence = format!(
        "dropped at {socket} in {}: its receive buffer is full{drops} — the application reads too slowly; read \
         faster or raise SO_RCVBUF (net.core.rmem_max={})",
        ctx.ns(),
        rmem.as_deref().unwrap_or("?")
    );
    let confidence = if owner.is_some() { Confidence::Full } else { Confidence::Partial };
    Some(Verdict::new(sentence, ev, confidence))
}

#[cfg(test)]
#[path = "rules/tests.rs"]
pub(super) mod tests;
