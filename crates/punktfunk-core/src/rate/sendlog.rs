//! The host's record of what it sent, keyed by packet sequence, so the client's
//! arrival samples can be paired with send times without changing the data
//! plane's wire format.
//!
//! A session's datagrams all have one wire size and one send call hands a run
//! of consecutive sequences to the kernel at one instant, so the log keeps
//! runs, not packets: [`SendLog::on_sent`] is O(1) whatever the run length.
//! The ring is allocated once; the oldest runs are overwritten (and counted).

use std::time::Instant;

/// Runs the default log keeps: 65 536 runs of 32 bytes (2 MiB). Even with
/// one datagram per send call that is 250 ms of 1.2 KB datagrams at 2 Gbit/s.
pub const DEFAULT_SEND_LOG_RUNS: usize = 1 << 16;

/// Bit of `Run::bytes_each` marking padding (probe filler).
const PADDING_BIT: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, Default)]
struct Run {
    first_seq: u64,
    /// Wire bytes sent before this run (cumulative over the session).
    bytes_before: u64,
    sent_us: u64,
    count: u32,
    /// Bytes per datagram; the top bit marks padding.
    bytes_each: u32,
}

/// What the log knows of one sent datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentPacket {
    /// Packet sequence.
    pub seq: u64,
    /// Send time, µs since the log's epoch.
    pub sent_us: u64,
    /// Wire bytes sent before this datagram (cumulative).
    pub bytes_before: u64,
    /// Wire bytes of this datagram.
    pub bytes: u32,
    /// Probe filler rather than media.
    pub padding: bool,
}

impl SentPacket {
    /// Wire bytes sent up to and including this datagram.
    pub fn bytes_through(&self) -> u64 {
        self.bytes_before + u64::from(self.bytes)
    }
}

/// Counters of a [`SendLog`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendLogCounters {
    /// Runs recorded.
    pub runs: u64,
    /// Datagrams recorded.
    pub packets: u64,
    /// Runs overwritten before they aged out (the ring was full).
    pub overwritten: u64,
    /// Calls refused: sequences not above the last run, or an empty run.
    pub refused: u64,
}

/// A fixed ring of send runs.
#[derive(Clone, Debug)]
pub struct SendLog {
    runs: Box<[Run]>,
    /// Physical index of the next write.
    head: usize,
    len: usize,
    epoch: Instant,
    total_bytes: u64,
    /// One past the last sequence recorded.
    next_seq: Option<u64>,
    last_us: u64,
    counters: SendLogCounters,
}

impl SendLog {
    /// A log of `runs` entries (at least 16), times measured from `epoch`.
    pub fn new(runs: usize, epoch: Instant) -> SendLog {
        SendLog {
            runs: vec![Run::default(); runs.max(16)].into_boxed_slice(),
            head: 0,
            len: 0,
            epoch,
            total_bytes: 0,
            next_seq: None,
            last_us: 0,
            counters: SendLogCounters::default(),
        }
    }

    /// µs from the epoch to `now` (0 before it).
    pub fn micros(&self, now: Instant) -> u64 {
        super::micros(now.saturating_duration_since(self.epoch))
    }

    /// Records `count` datagrams of `bytes_each` wire bytes with sequences
    /// `first_seq ..`, handed to the kernel at `now`. O(1), no allocation.
    /// Returns false (counted) for an empty run or one that does not start
    /// above the previous run.
    pub fn on_sent(
        &mut self,
        first_seq: u64,
        count: u32,
        bytes_each: u32,
        now: Instant,
        padding: bool,
    ) -> bool {
        let sane = count > 0
            && bytes_each > 0
            && bytes_each < PADDING_BIT
            && self.next_seq.is_none_or(|n| first_seq >= n)
            && first_seq.checked_add(u64::from(count)).is_some();
        if !sane {
            self.counters.refused += 1;
            return false;
        }
        // Times never run backwards, even if a caller's do.
        let sent_us = self.micros(now).max(self.last_us);
        self.last_us = sent_us;
        if self.len == self.runs.len() {
            self.counters.overwritten += 1;
        } else {
            self.len += 1;
        }
        self.runs[self.head] = Run {
            first_seq,
            bytes_before: self.total_bytes,
            sent_us,
            count,
            bytes_each: bytes_each | if padding { PADDING_BIT } else { 0 },
        };
        self.head = (self.head + 1) % self.runs.len();
        self.total_bytes += u64::from(count) * u64::from(bytes_each);
        self.next_seq = Some(first_seq + u64::from(count));
        self.counters.runs += 1;
        self.counters.packets += u64::from(count);
        true
    }

    fn at(&self, i: usize) -> &Run {
        let cap = self.runs.len();
        &self.runs[(self.head + cap - self.len + i) % cap]
    }

    /// The datagram with sequence `seq`, if it was sent and is still in the
    /// ring. O(log runs).
    pub fn lookup(&self, seq: u64) -> Option<SentPacket> {
        if self.len == 0 || seq >= self.next_seq? {
            return None;
        }
        // The last run whose first sequence is at or below `seq`.
        let (mut lo, mut hi) = (0, self.len);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.at(mid).first_seq <= seq {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let r = self.at(lo);
        let k = seq.checked_sub(r.first_seq)?;
        if k >= u64::from(r.count) {
            return None; // a gap between runs
        }
        let bytes = r.bytes_each & !PADDING_BIT;
        Some(SentPacket {
            seq,
            sent_us: r.sent_us,
            bytes_before: r.bytes_before + k * u64::from(bytes),
            bytes,
            padding: r.bytes_each & PADDING_BIT != 0,
        })
    }

    /// Highest sequence recorded.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.map(|n| n - 1)
    }

    /// Wire bytes recorded over the session.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Counters so far.
    pub fn counters(&self) -> SendLogCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn runs_are_found_by_any_sequence_inside_them() {
        let t0 = Instant::now();
        let mut log = SendLog::new(16, t0);
        assert!(log.on_sent(0, 10, 1401, t0, false));
        assert!(log.on_sent(10, 5, 1401, t0 + Duration::from_micros(700), true));
        assert!(log.on_sent(100, 1, 1401, t0 + Duration::from_millis(1), false));
        let p = log.lookup(12).unwrap();
        assert_eq!((p.sent_us, p.bytes_before, p.padding), (700, 12 * 1401, true));
        assert_eq!(log.lookup(0).unwrap().sent_us, 0);
        assert_eq!(log.lookup(50), None, "never sent");
        assert_eq!(log.lookup(101), None, "not yet sent");
        assert_eq!(log.lookup(100).unwrap().bytes_through(), 16 * 1401);
        assert!(!log.on_sent(50, 1, 1401, t0, false), "sequences only go up");
        assert!(!log.on_sent(200, 0, 1401, t0, false));
        assert_eq!(log.counters().refused, 2);
    }

    #[test]
    fn the_oldest_runs_are_overwritten_and_counted() {
        let t0 = Instant::now();
        let mut log = SendLog::new(16, t0);
        for i in 0..40u64 {
            log.on_sent(i * 4, 4, 1000, t0 + Duration::from_micros(i), false);
        }
        assert_eq!(log.counters().overwritten, 24);
        assert_eq!(log.lookup(0), None);
        assert_eq!(
            log.lookup(24 * 4),
            Some(SentPacket {
                seq: 96,
                sent_us: 24,
                bytes_before: 96_000,
                bytes: 1000,
                padding: false
            })
        );
        assert_eq!(log.lookup(159).unwrap().sent_us, 39);
    }
}
