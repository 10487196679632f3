//! CI assertions on what a run saw: `--fail-on-drop`, `--expect-drop`,
//! `--fail-on-lost`, and the exit code that follows from them and from the
//! command's status. Drop reasons are matched by *name* (numbers differ per
//! kernel), with or without the `SKB_DROP_REASON_` prefix.

use regex::Regex;
use serde::Serialize;

use crate::{
    config::usage,
    resolve::DropReasons,
    summary::{End, RunSummary},
};

const PREFIX: &str = "SKB_DROP_REASON_";

/// What the bare `--fail-on-drop` does not count: reasons that are part of
/// a healthy connection's life, not a lost packet.
pub const BENIGN: [&str; 7] =
    ["SKB_CONSUMED", "SOCKET_CLOSE", "TCP_OLD_DATA", "TCP_OLD_SEQUENCE", "TCP_OLD_ACK", "TCP_OFOMERGE", "DUP_FRAG"];

/// A set of drop reasons: names and globs to include, `!`-names to exclude.
#[derive(Clone, Debug)]
pub struct DropPatterns {
    /// As the user wrote it (empty for the bare flag).
    pub spec: String,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

#[derive(Clone, Debug)]
enum Pattern {
    Name(String),
    Glob(String, Regex),
}

impl Pattern {
    fn parse(word: &str) -> Self {
        let name = short(word).to_ascii_uppercase();
        if name.contains(['*', '?']) {
            let re = regex::escape(&name).replace(r"\*", ".*").replace(r"\?", ".");
            let re = Regex::new(&format!("^{re}$")).expect("an escaped glob is a valid regex");
            Self::Glob(name, re)
        } else {
            Self::Name(name)
        }
    }

    fn matches(&self, reason: &str) -> bool {
        match self {
            Self::Name(n) => n == short(reason),
            Self::Glob(_, re) => re.is_match(short(reason)),
        }
    }
}

/// A reason's name without the common prefix.
fn short(name: &str) -> &str {
    name.strip_prefix(PREFIX).unwrap_or(name)
}

impl DropPatterns {
    /// `REASON,GLOB*,!REASON…`; empty means every reason but [`BENIGN`].
    pub fn parse(spec: &str, flag: &str) -> anyhow::Result<Self> {
        let (mut include, mut exclude) = (Vec::new(), Vec::new());
        for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.strip_prefix('!') {
                Some("") => return Err(usage(format!("{flag}: '!' needs a reason after it, e.g. !NO_SOCKET"))),
                Some(name) => exclude.push(Pattern::parse(name)),
                None => include.push(Pattern::parse(word)),
            }
        }
        if include.is_empty() {
            include.push(Pattern::parse("*"));
            if spec.trim().is_empty() {
                exclude.extend(BENIGN.iter().map(|n| Pattern::parse(n)));
            }
        }
        Ok(Self { spec: spec.to_owned(), include, exclude })
    }

    /// Every name must be one of this kernel's reasons, and every glob match
    /// one: a typo must not make an assertion pass.
    pub fn validate(&self, reasons: &DropReasons, flag: &str) -> anyhow::Result<()> {
        let known: Vec<&str> = reasons.names().collect();
        for p in self.include.iter().chain(&self.exclude) {
            let (word, found) = match p {
                Pattern::Name(n) => (n, known.iter().any(|k| short(k) == n)),
                Pattern::Glob(g, re) => (g, known.iter().any(|k| re.is_match(short(k)))),
            };
            // The bare flag's benign names need not all exist on every kernel.
            if !found && !(self.spec.trim().is_empty()) {
                return Err(usage(format!(
                    "{flag}: {word} is not a drop reason of this kernel; `skbtrace --list-drop-reasons` lists them"
                )));
            }
        }
        Ok(())
    }

    pub fn matches(&self, reason: &str) -> bool {
        self.include.iter().any(|p| p.matches(reason)) && !self.exclude.iter().any(|p| p.matches(reason))
    }
}

/// The assertions of a run.
#[derive(Clone, Debug, Default)]
pub struct AssertSpec {
    pub fail_on_drop: Option<DropPatterns>,
    pub expect_drop: Option<DropPatterns>,
    pub fail_on_lost: bool,
    /// The exit code when one fails.
    pub exit_code: u8,
}

impl AssertSpec {
    pub fn validate(&self, reasons: &DropReasons) -> anyhow::Result<()> {
        if let Some(p) = &self.fail_on_drop {
            p.validate(reasons, "--fail-on-drop")?;
        }
        if let Some(p) = &self.expect_drop {
            p.validate(reasons, "--expect-drop")?;
        }
        Ok(())
    }
}

/// One assertion's outcome, as the summary carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `fail_on_drop`, `expect_drop` or `fail_on_lost`.
    pub assertion: &'static str,
    /// The reasons as given (empty for the bare flag).
    pub reasons: String,
    /// Matching drops (or lost events, for `fail_on_lost`).
    pub matched: u64,
    /// The reasons that matched, most first.
    pub matched_reasons: Vec<String>,
    pub passed: bool,
}

/// Judges the summary: fills in `assertions` and `exit_code`.
pub fn judge(spec: &AssertSpec, summary: &mut RunSummary) {
    let matching = |p: &DropPatterns| {
        let drops: Vec<_> = summary.drops.iter().filter(|d| p.matches(&d.reason)).collect();
        let mut reasons: Vec<String> = Vec::new();
        for d in &drops {
            if !reasons.contains(&d.reason) {
                reasons.push(d.reason.clone());
            }
        }
        (drops.iter().map(|d| d.count).sum::<u64>(), reasons)
    };
    let mut out = Vec::new();
    if let Some(p) = &spec.fail_on_drop {
        let (matched, matched_reasons) = matching(p);
        out.push(Outcome {
            assertion: "fail_on_drop",
            reasons: p.spec.clone(),
            matched,
            matched_reasons,
            passed: matched == 0,
        });
    }
    if let Some(p) = &spec.expect_drop {
        let (matched, matched_reasons) = matching(p);
        out.push(Outcome {
            assertion: "expect_drop",
            reasons: p.spec.clone(),
            matched,
            matched_reasons,
            passed: matched > 0,
        });
    }
    if spec.fail_on_lost {
        out.push(Outcome {
            assertion: "fail_on_lost",
            reasons: String::new(),
            matched: summary.lost,
            matched_reasons: Vec::new(),
            passed: summary.lost == 0,
        });
    }
    summary.assertions = out;
    summary.exit_code = exit_code(spec, summary);
}

/// The exit code, the first that applies: a failed assertion, a timeout,
/// the command's own status, else 0. (Usage and skbtrace's own errors
/// never reach a summary.)
fn exit_code(spec: &AssertSpec, summary: &RunSummary) -> u8 {
    if summary.assertions.iter().any(|a| !a.passed) {
        return spec.exit_code;
    }
    if summary.end == End::Timeout {
        return 124;
    }
    summary.command.as_ref().map_or(0, |c| c.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{CommandOutcome, DropCount};

    fn reasons() -> DropReasons {
        DropReasons::from_names(
            ["NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP", "SOCKET_CLOSE", "TCP_OLD_DATA", "SKB_CONSUMED"]
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32 + 1, format!("{PREFIX}{n}"))),
        )
    }

    fn drop(reason: &str, count: u64) -> DropCount {
        DropCount {
            reason: format!("{PREFIX}{reason}"),
            code: 0,
            location: String::new(),
            count,
            func: "kfree_skb".into(),
            netns: 1,
            ifname: "lo".into(),
            tuple: String::new(),
        }
    }

    #[test]
    fn names_globs_and_exclusions() {
        let p = DropPatterns::parse("NO_SOCKET, SKB_DROP_REASON_netfilter_*", "--fail-on-drop").unwrap();
        assert!(p.matches("SKB_DROP_REASON_NO_SOCKET"));
        assert!(p.matches("SKB_DROP_REASON_NETFILTER_DROP"));
        assert!(!p.matches("SKB_DROP_REASON_NOT_SPECIFIED"));
        p.validate(&reasons(), "--fail-on-drop").unwrap();
        let p = DropPatterns::parse("*,!NO_SOCKET", "--fail-on-drop").unwrap();
        assert!(!p.matches("SKB_DROP_REASON_NO_SOCKET"));
        assert!(p.matches("SKB_DROP_REASON_NETFILTER_DROP"));
    }

    #[test]
    fn the_bare_flag_leaves_out_benign_reasons() {
        let p = DropPatterns::parse("", "--fail-on-drop").unwrap();
        assert!(p.matches("SKB_DROP_REASON_NO_SOCKET"));
        assert!(p.matches("SKB_DROP_REASON_NOT_SPECIFIED"));
        assert!(!p.matches("SKB_DROP_REASON_SOCKET_CLOSE"));
        assert!(!p.matches("SKB_DROP_REASON_TCP_OLD_DATA"));
        // Benign names missing from a kernel are no error.
        p.validate(&DropReasons::from_names([(2, format!("{PREFIX}NO_SOCKET"))]), "--fail-on-drop").unwrap();
    }

    #[test]
    fn unknown_names_and_empty_globs_are_usage_errors() {
        for spec in ["NOT_A_REASON", "NETFLITER_*", "NO_SOCKET,!NOPE"] {
            let p = DropPatterns::parse(spec, "--fail-on-drop").unwrap();
            let e = p.validate(&reasons(), "--fail-on-drop").unwrap_err();
            assert!(e.downcast_ref::<crate::config::UsageError>().is_some(), "{spec}: {e}");
            assert!(e.to_string().contains("--list-drop-reasons"), "{e}");
        }
        assert!(DropPatterns::parse("!", "--fail-on-drop").is_err());
    }

    #[test]
    fn exit_code_precedence() {
        let spec = AssertSpec {
            fail_on_drop: Some(DropPatterns::parse("NO_SOCKET", "").unwrap()),
            exit_code: 3,
            ..AssertSpec::default()
        };
        let cmd = |status, signal| CommandOutcome { status, signal, ..CommandOutcome::default() };
        let mut s = RunSummary { end: End::Command, command: Some(cmd(Some(7), None)), ..RunSummary::default() };
        judge(&spec, &mut s);
        assert_eq!(s.exit_code, 7, "no drop: the command's status");
        s.drops = vec![drop("NO_SOCKET", 2), drop("SOCKET_CLOSE", 1)];
        judge(&spec, &mut s);
        assert_eq!((s.exit_code, s.assertions[0].matched), (3, 2));
        assert_eq!(s.assertions[0].matched_reasons, [format!("{PREFIX}NO_SOCKET")]);
        s.drops.clear();
        s.end = End::Timeout;
        judge(&spec, &mut s);
        assert_eq!(s.exit_code, 124);
        s.end = End::Command;
        s.command = Some(cmd(None, Some(9)));
        judge(&spec, &mut s);
        assert_eq!(s.exit_code, 128 + 9);

        let expect = AssertSpec {
            expect_drop: Some(DropPatterns::parse("NO_SOCKET", "").unwrap()),
            fail_on_lost: true,
            exit_code: 42,
            ..AssertSpec::default()
        };
        let mut s = RunSummary::default();
        judge(&expect, &mut s);
        assert_eq!(s.exit_code, 42, "the expected drop did not happen");
        s.drops = vec![drop("NO_SOCKET", 1)];
        judge(&expect, &mut s);
        assert_eq!(s.exit_code, 0);
        s.lost = 1;
        judge(&expect, &mut s);
        assert_eq!(s.exit_code, 42, "lost events fail --fail-on-lost");
    }
}
