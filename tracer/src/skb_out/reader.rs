//! Finds each event's record in `SKB_OUT`: the programs send it just before
//! the event, from the same CPU, with the same `skb`, `ktime_ns` and `cpu`
//! (`tracer_common::skb_out`). So when an event is read its record is there,
//! behind those of the CPU's earlier events; records of other CPUs read on
//! the way wait for their events in a queue per CPU.

use std::collections::{HashMap, VecDeque};

use aya::maps::{MapData, RingBuf};
use tracer_common::{Event, skb_out::SkbOutRecord};

use super::{SkbFields, values::Decoder};

/// Records waiting for their event, per CPU, at most: a CPU's events come
/// in the order of its records, so more means those events were lost.
const WAITING_MAX: usize = 4096;

/// A source of records: the ring buffer, or a list in tests.
pub trait Records {
    /// The next record's bytes, handed to `f`; `None` when there is none.
    fn next_record<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Option<T>;
}

impl Records for RingBuf<MapData> {
    fn next_record<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        self.next().map(|item| f(&item))
    }
}

struct Waiting {
    skb: u64,
    ktime_ns: u64,
    fields: SkbFields,
}

pub struct Reader<R = RingBuf<MapData>> {
    records: R,
    decoder: Decoder,
    waiting: HashMap<u32, VecDeque<Waiting>>,
    /// Events printed without their record (`SKB_OUT` was full).
    pub missing: u64,
}

impl<R: Records> Reader<R> {
    pub fn new(records: R, decoder: Decoder) -> Self {
        Self { records, decoder, waiting: HashMap::new(), missing: 0 }
    }

    /// The fields of `ev`, from its record.
    pub fn fields_for(&mut self, ev: &Event) -> SkbFields {
        self.find(ev).unwrap_or_else(|| {
            self.missing += 1;
            self.decoder.empty()
        })
    }

    /// Reads past the record of `ev`, an event that is not printed.
    pub fn skip(&mut self, ev: &Event) {
        self.find(ev);
    }

    fn find(&mut self, ev: &Event) -> Option<SkbFields> {
        if let Some(found) = self.take_waiting(ev) {
            return Some(found);
        }
        let decoder = &self.decoder;
        while let Some(record) =
            self.records.next_record(|bytes| SkbOutRecord::from_bytes(bytes).map(|r| (r.header, decoder.decode(&r))))
        {
            let Some((header, fields)) = record else { continue };
            if (header.cpu, header.ktime_ns, header.skb) == (ev.cpu, ev.ktime_ns, ev.skb) {
                return Some(fields);
            }
            let queue = self.waiting.entry(header.cpu).or_default();
            if queue.len() >= WAITING_MAX {
                queue.pop_front();
            }
            queue.push_back(Waiting { skb: header.skb, ktime_ns: header.ktime_ns, fields });
            // A later record of the same CPU: this event's was lost.
            if header.cpu == ev.cpu && header.ktime_ns > ev.ktime_ns {
                break;
            }
        }
        None
    }

    /// `ev`'s record among those read already; older ones of its CPU go, their
    /// events lost.
    fn take_waiting(&mut self, ev: &Event) -> Option<SkbFields> {
        let queue = self.waiting.get_mut(&ev.cpu)?;
        while let Some(w) = queue.front() {
            if w.ktime_ns > ev.ktime_ns {
                return None;
            }
            let w = queue.pop_front().expect("front exists");
            if (w.ktime_ns, w.skb) == (ev.ktime_ns, ev.skb) {
                return Some(w.fields);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::skb_out::{METADATA_BYTES, METADATA_MAX, SKB_OUT_HEADER_SIZE, SkbOutHeader};

    use super::*;

    impl Records for VecDeque<Vec<u8>> {
        fn next_record<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
            self.pop_front().map(|r| f(&r))
        }
    }

    fn record(cpu: u32, ktime_ns: u64, dump: &str) -> Vec<u8> {
        let header = SkbOutHeader {
            skb: 0x100 + u64::from(cpu),
            ktime_ns,
            cpu,
            skb_len: dump.len() as u32,
            shinfo_len: 0,
            _pad: 0,
            metadata: [[0; METADATA_BYTES]; METADATA_MAX],
            cb: [cpu; 5],
            _pad2: 0,
        };
        // SAFETY: the header is plain data without padding.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const header).cast::<u8>(), SKB_OUT_HEADER_SIZE) };
        [bytes, dump.as_bytes()].concat()
    }

    fn event(cpu: u32, ktime_ns: u64) -> Event {
        let mut ev = Event::zeroed();
        (ev.cpu, ev.ktime_ns, ev.skb) = (cpu, ktime_ns, 0x100 + u64::from(cpu));
        ev
    }

    #[test]
    fn each_event_gets_its_own_record() {
        // CPU 1's record for time 20 was lost, as was CPU 0's event at time 5.
        let records = VecDeque::from([
            record(0, 5, "a"),
            record(1, 10, "b"),
            record(0, 11, "c"),
            record(1, 30, "d"),
            record(0, 40, "e"),
        ]);
        let mut reader = Reader::new(records, Decoder::default());
        let dump = |r: &mut Reader<VecDeque<Vec<u8>>>, cpu, t| r.fields_for(&event(cpu, t)).skb_dump;
        assert_eq!(dump(&mut reader, 1, 10), "b");
        assert_eq!(dump(&mut reader, 0, 11), "c", "the record at 5, whose event was lost, is skipped");
        assert_eq!(dump(&mut reader, 1, 20), "", "its record was lost");
        assert_eq!(reader.missing, 1);
        assert_eq!(dump(&mut reader, 1, 30), "d");
        assert_eq!(dump(&mut reader, 0, 40), "e");
        assert_eq!(dump(&mut reader, 0, 50), "", "nothing left");
        assert_eq!(reader.missing, 2);
    }
}
