//! Printers. Each gets an event with its names already resolved and writes
//! to any `io::Write`; none of them touches the kernel.

mod fields;
pub mod json;
pub mod pcapng;
pub mod rotate;
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

/// Appends the FUNC column as pwru writes it:
/// `kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)`.
pub fn push_func_column(out: &mut String, rec: &Record<'_>) {
    out.push_str(rec.func);
    if let Some(reason) = rec.reason {
        out.push('(');
        out.push_str(reason);
        out.push(')');
    }
    if let Some(loc) = rec.location {
        out.push(' ');
        out.push_str(loc);
    }
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

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;
    use tracer_common::{
        Event,
        event::{Capture, FLAG_HAS_REASON},
    };

    use super::{Printer, Record, json::JsonPrinter, text::TextPrinter};
    use crate::decode;

    fn drop_event() -> Event {
        let mut ev = Event::zeroed();
        ev.skb = 0xffff_8881_1f23_c400;
        ev.cpu = 1;
        ev.netns = 4026531840;
        ev.mark = 0x10;
        ev.ifindex = 1;
        ev.len = 11;
        ev.mtu = 65536;
        ev.protocol = 0x0800u16.to_be();
        ev.flags = FLAG_HAS_REASON;
        ev.reason = 3;
        let mut pkt = Vec::new();
        PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(53128, 4000)
            .write(&mut pkt, b"hi")
            .unwrap();
        ev.data[..pkt.len()].copy_from_slice(&pkt);
        ev.cap_len = pkt.len() as u16;
        ev.capture = Capture::Mac as u8;
        ev
    }

    fn record<'a>(ev: &'a Event, tuple: &'a decode::Tuple) -> Record<'a> {
        Record {
            ev,
            func: "kfree_skb",
            reason: Some("SKB_DROP_REASON_NO_SOCKET"),
            location: Some("__udp4_lib_rcv+0x4bc"),
            process: "/usr/bin/bash:20740",
            ifname: "lo",
            tuple,
            stack: &[],
            timestamp: None,
        }
    }

    #[test]
    fn text_line_has_pwru_columns() {
        let ev = drop_event();
        let tuple = decode::tuple(ev.capture(), ev.packet());
        let mut out = Vec::new();
        let mut p = TextPrinter::new(&mut out, false);
        p.header().unwrap();
        p.record(&record(&ev, &tuple)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SKB                CPU PROCESS"), "{}", lines[0]);
        assert!(lines[0].ends_with("TUPLE FUNC"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "0xffff88811f23c400",
                "1",
                "/usr/bin/bash:20740",
                "4026531840",
                "0x10",
                "lo:1",
                "0x0800",
                "65536",
                "11",
                "127.0.0.1:53128->127.0.0.1:4000(udp)",
                "kfree_skb(SKB_DROP_REASON_NO_SOCKET)",
                "__udp4_lib_rcv+0x4bc",
            ]
        );
    }

    #[test]
    fn json_line_has_every_field() {
        let ev = drop_event();
        let tuple = decode::tuple(ev.capture(), ev.packet());
        let mut out = Vec::new();
        let mut p = JsonPrinter::new(&mut out);
        p.record(&record(&ev, &tuple)).unwrap();
        p.summary(1, 0).unwrap();
        drop(p);
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(v["skb"], "0xffff88811f23c400");
        assert_eq!(v["drop_reason"], "SKB_DROP_REASON_NO_SOCKET");
        assert_eq!(v["drop_reason_code"], 3);
        assert_eq!(v["tuple"]["dport"], 4000);
        assert_eq!(v["proto"], 0x0800);
        assert_eq!(v["stack"], serde_json::json!([]));
        let s: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(s["summary"]["events"], 1);
    }

    #[test]
    fn json_strings_are_escaped_and_every_key_is_there() {
        let mut ev = drop_event();
        ev.flags |= tracer_common::event::FLAG_TRACKED;
        let tuple = decode::tuple(ev.capture(), ev.packet());
        let stack = ["ip_rcv+0x10".to_owned(), "odd \"frame\"\\\n".to_owned()];
        let mut rec = record(&ev, &tuple);
        rec.process = "a \"quoted\" exe\\path:1";
        rec.stack = &stack;
        rec.reason = None;
        let mut out = Vec::new();
        JsonPrinter::new(&mut out).record(&rec).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["process"], rec.process);
        assert_eq!(v["stack"], serde_json::json!(stack));
        assert_eq!(v["tracked"], true);
        assert_eq!(v["drop_reason"], "");
        assert_eq!(v["drop_reason_code"], 0);
        assert_eq!(v["func_column"], "kfree_skb __udp4_lib_rcv+0x4bc");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "skb",
            "cpu",
            "process",
            "pid",
            "comm",
            "netns",
            "mark",
            "ifindex",
            "ifname",
            "proto",
            "mtu",
            "len",
            "tuple",
            "func",
            "func_column",
            "drop_reason",
            "drop_reason_code",
            "location",
            "ktime_ns",
            "timestamp",
            "tracked",
            "capture",
            "cap_len",
            "stack",
        ];
        want.sort();
        assert_eq!(keys, want);
        let tuple_keys: Vec<&str> = v["tuple"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(tuple_keys, ["daddr", "dport", "proto", "saddr", "sport", "tcp_flags"]);
        assert_eq!(v["tuple"]["saddr"], "127.0.0.1");
        assert_eq!(v["tuple"]["proto"], "udp");
    }

    /// Decode + format throughput on one core, printed for `cargo xtask bench`.
    #[test]
    #[ignore = "benchmark: run by cargo xtask bench"]
    fn bench_decode_and_format() {
        // Fewer under callgrind, whose instruction counts are steadier than time here.
        let n: u32 = std::env::var("BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000_000);
        let ev = drop_event();
        let started = std::time::Instant::now();
        let mut ports = 0u64;
        for _ in 0..n {
            ports += u64::from(std::hint::black_box(decode::tuple(ev.capture(), ev.packet())).dport);
        }
        let rate = f64::from(n) / started.elapsed().as_secs_f64();
        println!("BENCH decode {rate:.0} events/s ({ports})");
        for json in [false, true] {
            let mut sink = std::io::BufWriter::new(std::io::sink());
            let started = std::time::Instant::now();
            {
                let mut p: Box<dyn Printer> = if json {
                    Box::new(JsonPrinter::new(&mut sink))
                } else {
                    Box::new(TextPrinter::new(&mut sink, false))
                };
                for _ in 0..n {
                    let tuple = decode::tuple(ev.capture(), ev.packet());
                    p.record(&record(&ev, &tuple)).unwrap();
                }
                p.flush().unwrap();
            }
            let rate = f64::from(n) / started.elapsed().as_secs_f64();
            println!("BENCH format {} {:.0} events/s", if json { "json" } else { "text" }, rate);
        }
    }
}
