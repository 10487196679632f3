//! The run summary skbtrace writes when it exits: one JSON line
//! `{"summary":{…}}` in the `--summary-file`, and the last line of standard
//! output under `--output-json`. Every field is always present, so a missing
//! one is an error here rather than a zero.

use std::{fmt, path::Path, str::FromStr};

use anyhow::{Context as _, bail};
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Summary {
    /// Events printed (or written).
    pub events: u64,
    /// Events that did not fit the ring buffer.
    pub lost: u64,
    pub lost_by_probe: Vec<ProbeLoss>,
    /// Drops seen, by reason.
    pub drops: Vec<DropCount>,
    /// None when nothing was attached (`""` in the JSON).
    #[serde(deserialize_with = "backend_or_none")]
    pub backend: Option<Backend>,
    /// Functions or tracepoints attached, and those that could not be.
    pub attached: u64,
    pub skipped: u64,
    pub attach_seconds: f64,
    pub detached: u64,
    pub detach_seconds: f64,
    pub end: End,
    /// The command run under trace (`-- CMD`), or None.
    pub command: Option<CommandOutcome>,
    /// Each assertion asked for (`--fail-on-drop` …).
    pub assertions: Vec<Assertion>,
    /// What skbtrace exited with.
    pub exit_code: u8,
    /// `--explain`: stories per verdict rule (empty without it).
    pub verdicts: Vec<VerdictCount>,
    /// `--explain`: stories ended early because --explain-max-stories were open.
    pub stories_evicted: u64,
}

/// Stories that got one verdict rule, with the first one's sentence.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VerdictCount {
    pub rule: String,
    pub count: u64,
    pub first: String,
}

/// The command run under trace, and how it ended.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CommandOutcome {
    pub argv: Vec<String>,
    pub pid: u32,
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub seconds: f64,
}

/// One assertion's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Assertion {
    /// `fail_on_drop`, `expect_drop` or `fail_on_lost`.
    pub assertion: String,
    pub reasons: String,
    pub matched: u64,
    pub matched_reasons: Vec<String>,
    pub passed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ProbeLoss {
    pub probe: String,
    pub lost: u64,
}

/// Drops of one reason at one location, with the first one's particulars.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DropCount {
    /// `SKB_DROP_REASON_*`, the kernel's own name.
    pub reason: String,
    pub code: u32,
    /// `symbol+0xoff`, or empty when unknown.
    pub location: String,
    pub count: u64,
    /// The function or tracepoint that saw it.
    pub func: String,
    pub netns: u64,
    pub ifname: String,
    /// The first dropped packet's tuple as the text output prints it.
    pub tuple: String,
}

/// How skbtrace attached, as `--backend` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Kprobe,
    KprobeMulti,
    Tracepoint,
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Signal,
    /// `--output-limit-lines` was reached.
    Limit,
    /// The traced command (`-- CMD`) exited.
    Command,
    /// `--timeout` ended the traced command.
    Timeout,
    /// `--duration` passed.
    Duration,
    /// The reader of skbtrace's output went away.
    Closed,
}

fn backend_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Backend>, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() { Ok(None) } else { name.parse().map(Some).map_err(serde::de::Error::custom) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    summary: Summary,
}

impl Summary {
    /// Parses one `{"summary":{…}}` line.
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let line: Line = serde_json::from_str(line.trim()).with_context(|| format!("not a run summary: {line:?}"))?;
        Ok(line.summary)
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// `--explain`: stories judged, whatever their verdict.
    pub fn stories(&self) -> u64 {
        self.verdicts.iter().map(|v| v.count).sum()
    }

    /// How many drops had `reason` (an `SKB_DROP_REASON_*` name).
    pub fn drops_of(&self, reason: &str) -> u64 {
        self.drops.iter().filter(|d| d.reason == reason).map(|d| d.count).sum()
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kprobe => "kprobe",
            Backend::KprobeMulti => "kprobe-multi",
            Backend::Tracepoint => "tracepoint",
        }
    }

    /// Whether it attaches to kernel functions (and so sees every function on
    /// a packet's path) rather than to tracepoints.
    pub fn is_kprobe(self) -> bool {
        matches!(self, Backend::Kprobe | Backend::KprobeMulti)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "kprobe" => Ok(Backend::Kprobe),
            "kprobe-multi" => Ok(Backend::KprobeMulti),
            "tracepoint" => Ok(Backend::Tracepoint),
            other => bail!("no backend {other:?}; there are kprobe, kprobe-multi and tracepoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = concat!(
        r#"{"summary":{"events":12,"lost":0,"lost_by_probe":[{"probe":"kfree_skb","lost":0}],"drops":[{"#,
        r#""reason":"SKB_DROP_REASON_NO_SOCKET","code":3,"location":"__udp4_lib_rcv+0x4bc","count":1,"#,
        r#""func":"kfree_skb","netns":4026532178,"ifname":"lo","tuple":"127.0.0.1:39091->127.0.0.1:4000(udp)"}],"#,
        r#""backend":"kprobe","attached":1463,"skipped":3,"attach_seconds":37.2,"detached":1463,"#,
        r#""detach_seconds":40.1,"end":"signal","command":null,"assertions":[],"exit_code":0,"verdicts":[{"rule":"closed-port","count":1,"#,
        r#""first":"UDP to 127.0.0.1:4000 refused"}],"stories_evicted":0}}"#
    );

    #[test]
    fn parses_the_documented_line() {
        let s = Summary::parse(LINE).unwrap();
        assert_eq!((s.events, s.lost, s.attached, s.skipped, s.detached), (12, 0, 1463, 3, 1463));
        assert_eq!(s.lost_by_probe, [ProbeLoss { probe: "kfree_skb".into(), lost: 0 }]);
        assert_eq!(s.drops_of("SKB_DROP_REASON_NO_SOCKET"), 1);
        assert_eq!(s.drops_of("SKB_DROP_REASON_NETFILTER_DROP"), 0);
        assert_eq!((s.backend, s.end), (Some(Backend::Kprobe), End::Signal));
        assert_eq!(s.drops[0].location, "__udp4_lib_rcv+0x4bc");
        assert_eq!((s.attach_seconds, s.detach_seconds), (37.2, 40.1));
        assert_eq!((s.verdicts[0].rule.as_str(), s.verdicts[0].count, s.stories_evicted), ("closed-port", 1, 0));
    }

    #[test]
    fn names_backends_as_the_flag_does() {
        for b in [Backend::Kprobe, Backend::KprobeMulti, Backend::Tracepoint] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(serde_json::from_str::<Backend>(&format!("{:?}", b.name())).unwrap(), b);
        }
        assert!("auto".parse::<Backend>().is_err());
        let end = |name: &str| serde_json::from_str::<End>(&format!("{name:?}")).unwrap();
        assert_eq!(
            ["signal", "limit", "command", "timeout", "duration", "closed"].map(end),
            [End::Signal, End::Limit, End::Command, End::Timeout, End::Duration, End::Closed]
        );
    }

    #[test]
    fn nothing_attached_has_no_backend() {
        let s = Summary::parse(&LINE.replace(r#""backend":"kprobe""#, r#""backend":"""#)).unwrap();
        assert_eq!(s.backend, None);
        assert!(Summary::parse(&LINE.replace(r#""backend":"kprobe""#, r#""backend":"fentry""#)).is_err());
    }

    #[test]
    fn a_missing_field_or_an_event_line_is_an_error() {
        assert!(Summary::parse(&LINE.replace(r#""lost":0,"#, "")).is_err());
        assert!(Summary::parse(r#"{"skb":"0xffff","func":"kfree_skb"}"#).is_err());
        assert!(Summary::parse(r#"{"summary":{"events":1,"lost":0}}"#).is_err());
        assert!(Summary::parse("skbtrace: 1 events").is_err());
    }
}
