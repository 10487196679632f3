//! Consumers of resolved events. Each gets a [`TraceEvent`] with its names
//! already resolved and never touches the kernel; printers write to any
//! `io::Write`. At the end each gets the [`RunSummary`].

pub(crate) mod fields;
pub mod json;
pub mod pcapng;
pub mod rotate;
mod skb_fields;
pub mod text;

use std::{
    fs::{File, OpenOptions},
    io::{self, IsTerminal as _},
    path::Path,
};

use crate::{
    config::{Format, OutputSpec, usage},
    resolve::{Time, TraceEvent},
    summary::RunSummary,
};

/// What every consumer of events does.
pub trait Consumer {
    /// Before the first event (a header).
    fn start(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn event(&mut self, e: &TraceEvent) -> io::Result<()>;
    /// After each batch of events: what is buffered goes out.
    fn flush(&mut self) -> io::Result<()>;
    /// Before `finish`: end what is still open and add it to the summary.
    fn close(&mut self, _summary: &mut RunSummary) -> io::Result<()> {
        Ok(())
    }
    /// At the end, once everything is detached.
    fn finish(&mut self, _summary: &RunSummary) -> io::Result<()> {
        self.flush()
    }
}

/// Every consumer of a run, fed in order.
#[derive(Default)]
pub struct Consumers(Vec<Box<dyn Consumer>>);

impl Consumers {
    pub fn push(&mut self, c: Box<dyn Consumer>) {
        self.0.push(c);
    }

    pub fn start(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|c| c.start())
    }

    #[inline]
    pub fn event(&mut self, e: &TraceEvent) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|c| c.event(e))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|c| c.flush())
    }

    /// Every consumer closes, even after another failed; the first failure is returned.
    pub fn close(&mut self, summary: &mut RunSummary) -> io::Result<()> {
        let mut first = Ok(());
        for c in &mut self.0 {
            if let Err(e) = c.close(summary)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Every consumer finishes, even after another failed (a closed
    /// standard output must not keep the summary file from being written);
    /// the first failure is returned.
    pub fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        let mut first = Ok(());
        for c in &mut self.0 {
            if let Err(e) = c.finish(summary)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Opens every output before anything is attached, so a bad path is
/// reported (exit 2) with nothing to undo. `boot_offset_ns` turns kernel
/// time into wall time for pcap-ng.
pub fn open(spec: &OutputSpec, summary_file: Option<&Path>, boot_offset_ns: i128) -> anyhow::Result<Consumers> {
    let open_file = |path: &Path, what: &str| -> anyhow::Result<File> {
        File::create(path).map_err(|e| usage(format!("cannot write {what} {}: {e}", path.display())))
    };
    let mut consumers = Consumers::default();
    let text_out: Option<Box<dyn io::Write>> = match &spec.file {
        // A device or a pipe is written through, never rotated: renaming
        // `--output-file /dev/null` would put a growing file in its place.
        Some(path) if rotate::is_special(path) => {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| usage(format!("cannot write --output-file {}: {e}", path.display())))?;
            Some(Box::new(io::BufWriter::with_capacity(1 << 16, file)))
        }
        Some(path) => {
            let file = rotate::RotatingFile::open(path, spec.rotation.clone())
                .map_err(|e| usage(format!("cannot write --output-file {}: {e}", path.display())))?;
            Some(Box::new(io::BufWriter::with_capacity(1 << 16, file)))
        }
        // pcap-ng owns standard output when it is written there.
        None if spec.pcap_to_stdout() => None,
        None if io::stdout().is_terminal() => Some(Box::new(io::LineWriter::new(io::stdout()))),
        None => Some(Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout()))),
    };
    // --explain tells stories where lines would go; with pcap-ng on standard
    // output they have no place, as lines have none, but the verdicts still go
    // into the packet comments and the summary.
    let notes = crate::explain::VerdictNotes::default();
    if let Some(explain) = spec.explain {
        let out = text_out.unwrap_or_else(|| Box::new(io::sink()));
        let env = Box::new(crate::explain::evidence::Host::default());
        let explainer = crate::explain::Explainer::new(out, spec.format, explain, env, notes.clone());
        consumers.push(Box::new(explainer.with_nft_trace(spec.nft_trace)));
    } else if let Some(out) = text_out {
        consumers.push(match spec.format {
            Format::Json => Box::new(json::JsonPrinter::new(out)),
            Format::Text => Box::new(text::TextPrinter::new(out, spec.timestamp, spec.columns)),
        });
    }
    if let Some(path) = &spec.pcap {
        let out: Box<dyn io::Write> = if spec.pcap_to_stdout() {
            Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout()))
        } else {
            Box::new(io::BufWriter::with_capacity(1 << 16, open_file(path, "--output-pcap")?))
        };
        let writer = pcapng::PcapngWriter::new(out, spec.snaplen)?;
        let mut pcap = pcapng::PcapConsumer::new(writer, boot_offset_ns);
        if spec.explain.is_some() {
            pcap = pcap.with_verdicts(notes);
        }
        consumers.push(Box::new(pcap));
    }
    if let Some(path) = summary_file {
        consumers.push(Box::new(SummaryFile(Some(open_file(path, "--summary-file")?))));
    }
    consumers.push(Box::new(SummaryNote));
    Ok(consumers)
}

/// `--summary-file`: the summary's JSON line, written at the end.
struct SummaryFile(Option<File>);

impl Consumer for SummaryFile {
    fn event(&mut self, _: &TraceEvent) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        use io::Write as _;
        match self.0.take() {
            Some(mut f) => f.write_all(summary.to_json_line().as_bytes()),
            None => Ok(()),
        }
    }
}

/// Under GitHub Actions: each drop a failed assertion matched, as an
/// `::error` workflow command (on stderr, which the runner reads too), so
/// that it shows on the job's page.
pub struct GithubAnnotations;

impl Consumer for GithubAnnotations {
    fn event(&mut self, _: &TraceEvent) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        use io::Write as _;
        let failed: Vec<&str> = summary
            .assertions
            .iter()
            .filter(|a| !a.passed)
            .flat_map(|a| a.matched_reasons.iter().map(String::as_str))
            .collect();
        let mut err = io::stderr().lock();
        for d in summary.drops.iter().filter(|d| failed.contains(&d.reason.as_str())) {
            // Workflow commands end at a newline; '%' starts an escape.
            let text =
                format!("{}x {} at {} (netns {}, {}, {})", d.count, d.reason, d.location, d.netns, d.ifname, d.tuple)
                    .replace('%', "%25")
                    .replace('\n', "%0A");
            writeln!(err, "::error title=skbtrace: packet dropped::{text}")?;
        }
        for a in summary.assertions.iter().filter(|a| !a.passed && a.matched_reasons.is_empty()) {
            writeln!(err, "::error title=skbtrace: {} failed::{} matched {}", a.assertion, a.reasons, a.matched)?;
        }
        Ok(())
    }
}

/// The summary in a few words on stderr.
struct SummaryNote;

impl Consumer for SummaryNote {
    fn event(&mut self, _: &TraceEvent) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> io::Result<()> {
        for line in summary.note_lines() {
            crate::note!("{line}");
        }
        Ok(())
    }
}

/// Appends the FUNC column as pwru writes it:
/// `kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)`, then the location.
pub fn push_func_column(out: &mut String, e: &TraceEvent) {
    out.push_str(&e.func);
    if let Some(d) = &e.drop {
        out.push('(');
        out.push_str(&d.name);
        out.push(')');
    }
    if let Some(loc) = e.location() {
        out.push(' ');
        out.push_str(loc);
    }
}

/// Appends a timestamp as JSON's `timestamp` shows it: the TIMESTAMP
/// column's number, or for `absolute` the local date and time.
pub fn push_time(out: &mut String, t: Time) {
    match t {
        Time::Kernel(ns) | Time::Delta(ns) => fields::push_num(out, ns),
        Time::Absolute { wall_ns, .. } => push_local_time(out, wall_ns),
    }
}

/// `2026-12-01T06:14:07.123`: local time to the millisecond, pwru's TIME.
pub fn push_local_time(out: &mut String, wall_ns: i128) {
    use std::fmt::Write as _;
    let secs = wall_ns.div_euclid(1_000_000_000) as libc::time_t;
    let millis = wall_ns.rem_euclid(1_000_000_000) / 1_000_000;
    // SAFETY: tm is plain data that localtime_r fills in; both pointers are
    // to locals.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
}

/// `kfree_skb_reason SKB_DROP_REASON_NO_SOCKET netns=4026531840 if=eth0 skb=0xffff…`
pub fn pcap_comment(e: &TraceEvent) -> String {
    let mut s = String::with_capacity(128);
    s.push_str(&e.func);
    if let Some(d) = &e.drop {
        s.push(' ');
        s.push_str(&d.name);
    }
    if let Some(l) = e.location() {
        s.push(' ');
        s.push_str(l);
    }
    use std::fmt::Write as _;
    let _ = write!(s, " netns={} if={} skb={:#x}", e.raw.netns, e.ifname(), e.raw.skb);
    s
}

#[cfg(test)]
mod tests;
