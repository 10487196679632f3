//! Printers. Each gets an event with its names already resolved and writes
//! to any `io::Write`; none of them touches the kernel.

pub mod json;
pub mod pcapng;
pub mod text;

use std::io;

use tracer_common::Event;

use crate::decode::Tuple;

/// One event, resolved.
pub struct Record<'a> {
    pub ev: &'a Event,
    /// Function or tracepoint name.
    pub func: &'a str,
    /// Drop reason name, for drop points.
    pub reason: Option<&'a str>,
    /// Drop location (tracepoints) or caller (`--output-caller`), as `sym+0xoff`.
    pub location: Option<&'a str>,
    /// `exe:pid`.
    pub process: &'a str,
    pub ifname: &'a str,
    pub tuple: &'a Tuple,
    /// Kernel stack, innermost first (`--output-stack`).
    pub stack: &'a [String],
    /// The TIMESTAMP column's value, when one was asked for.
    pub timestamp: Option<&'a str>,
}

/// What every output format does.
pub trait Printer {
    fn header(&mut self) -> io::Result<()>;
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()>;
    /// End-of-run summary: events printed and lost.
    fn summary(&mut self, printed: u64, lost: u64) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// The FUNC column as pwru writes it: `kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)`.
pub fn func_column(rec: &Record<'_>) -> String {
    let mut s = String::with_capacity(64);
    s.push_str(rec.func);
    if let Some(reason) = rec.reason {
        s.push('(');
        s.push_str(reason);
        s.push(')');
    }
    if let Some(loc) = rec.location {
        s.push(' ');
        s.push_str(loc);
    }
    s
}

/// Where a run's output goes: the text or JSON printer, and pcap-ng.
pub struct Sinks {
    printer: Option<Box<dyn Printer>>,
    pcap: Option<pcapng::PcapngWriter<Box<dyn io::Write>>>,
}

impl Sinks {
    /// Opens every output before anything is attached, so a bad path is
    /// reported (exit 2) with nothing to undo.
    pub fn open(args: &crate::cli::Args) -> anyhow::Result<Self> {
        use std::io::IsTerminal as _;
        let open_file = |path: &std::path::Path, what: &str| -> anyhow::Result<std::fs::File> {
            std::fs::File::create(path)
                .map_err(|e| crate::config::usage(format!("cannot write {what} {}: {e}", path.display())))
        };
        let pcap_to_stdout = args.output_pcap.as_deref().is_some_and(|p| p.as_os_str() == "-");
        let pcap = match &args.output_pcap {
            None => None,
            Some(path) => {
                let out: Box<dyn io::Write> = if pcap_to_stdout {
                    Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout()))
                } else {
                    Box::new(io::BufWriter::with_capacity(1 << 16, open_file(path, "--output-pcap")?))
                };
                Some(pcapng::PcapngWriter::new(out, args.snaplen)?)
            }
        };
        let text_out: Option<Box<dyn io::Write>> = match &args.output_file {
            Some(path) => Some(Box::new(io::BufWriter::with_capacity(1 << 16, open_file(path, "--output-file")?))),
            // pcap-ng owns standard output when it is written there.
            None if pcap_to_stdout => None,
            None if io::stdout().is_terminal() => Some(Box::new(io::LineWriter::new(io::stdout()))),
            None => Some(Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout()))),
        };
        let printer: Option<Box<dyn Printer>> = text_out.map(|out| -> Box<dyn Printer> {
            if args.output_json {
                Box::new(json::JsonPrinter::new(out))
            } else {
                Box::new(text::TextPrinter::new(out, args.timestamp != crate::cli::Timestamp::None))
            }
        });
        Ok(Self { printer, pcap })
    }

    pub fn header(&mut self) -> io::Result<()> {
        match &mut self.printer {
            Some(p) => p.header(),
            None => Ok(()),
        }
    }

    pub fn record(&mut self, rec: &Record<'_>, boot_offset_ns: i128) -> io::Result<()> {
        if let Some(p) = &mut self.printer {
            p.record(rec)?;
        }
        if let Some(pcap) = &mut self.pcap {
            let comment = pcap_comment(rec);
            pcap.write_event(rec.ev, boot_offset_ns as u64, &comment)?;
        }
        Ok(())
    }

    pub fn summary(&mut self, printed: u64, lost: u64) -> io::Result<()> {
        match &mut self.printer {
            Some(p) => p.summary(printed, lost),
            None => Ok(()),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(p) = &mut self.printer {
            p.flush()?;
        }
        if let Some(pcap) = &mut self.pcap {
            pcap.flush()?;
        }
        Ok(())
    }
}

/// `kfree_skb_reason SKB_DROP_REASON_NO_SOCKET netns=4026531840 if=eth0 skb=0xffff…`
pub fn pcap_comment(rec: &Record<'_>) -> String {
    let mut s = String::from(rec.func);
    if let Some(r) = rec.reason {
        s.push(' ');
        s.push_str(r);
    }
    if let Some(l) = rec.location {
        s.push(' ');
        s.push_str(l);
    }
    use std::fmt::Write as _;
    let _ = write!(s, " netns={} if={} skb={:#x}", rec.ev.netns, rec.ifname, rec.ev.skb);
    s
}
