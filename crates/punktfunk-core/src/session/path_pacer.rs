//! Pacing at the path rate: a token bucket that datagrams of every frame
//! (and filler) draw from, so a multi-megabyte keyframe leaves at the rate the
//! path carries, with a bounded burst, and never overruns a bottleneck queue.
//!
//! Where the stream-rate pacer ([`super::pacing`]) spreads each frame over
//! part of its interval, this one does not look at frames at all: the rate
//! and the burst come from the rate controller ([`crate::rate`]), and where
//! the path is fast a frame leaves fast. Pure: it is told the time.

use std::time::{Duration, Instant};

/// Shortest time between two paced sends: below this the sender would wake
/// for a handful of datagrams at a time.
const STEP: Duration = Duration::from_micros(250);
/// Most bytes one paced send takes (besides the burst).
const MAX_STEP_BYTES: usize = 32 * 1024;
/// Fewest datagrams one paced send takes.
const MIN_STEP_DATAGRAMS: usize = 8;

/// A token bucket in bytes, filled at the pacing rate up to the burst size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PathPacer {
    rate_bps: u64,
    burst_bytes: usize,
    tokens: f64,
    last: Option<Instant>,
}

impl PathPacer {
    /// A pacer at `rate_bps` whose bucket holds `burst_bytes`, full at first.
    pub(crate) fn new(rate_bps: u64, burst_bytes: usize) -> PathPacer {
        PathPacer {
            rate_bps: rate_bps.max(1),
            burst_bytes,
            tokens: burst_bytes as f64,
            last: None,
        }
    }

    /// Changes the rate and the burst from now on (tokens already earned stay,
    /// up to the new burst).
    pub(crate) fn set(&mut self, rate_bps: u64, burst_bytes: usize, now: Instant) {
        self.refill(now);
        self.rate_bps = rate_bps.max(1);
        self.burst_bytes = burst_bytes;
        self.tokens = self.tokens.min(burst_bytes as f64);
    }

    /// The rate in force, bit/s.
    pub(crate) fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Adds the tokens earned since the last call.
    pub(crate) fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate_bps as f64 / 8.0;
            self.tokens = (self.tokens + earned).min(self.burst_bytes as f64);
        }
        self.last = Some(now);
    }

    /// Datagrams of one paced send at this rate: about [`STEP`] worth, at
    /// least [`MIN_STEP_DATAGRAMS`], at most [`MAX_STEP_BYTES`].
    pub(crate) fn step(&self, datagram_len: usize) -> usize {
        let bytes = (self.rate_bps as f64 / 8.0 * STEP.as_secs_f64()) as usize;
        let max = (MAX_STEP_BYTES / datagram_len.max(1)).max(MIN_STEP_DATAGRAMS);
        (bytes / datagram_len.max(1)).clamp(MIN_STEP_DATAGRAMS, max)
    }

    /// Datagrams the next send waits for: a step, or all of `want` if less,
    /// and never more than the bucket holds.
    fn need(&self, want: usize, datagram_len: usize) -> usize {
        let fits = (self.burst_bytes / datagram_len.max(1)).max(1);
        want.min(self.step(datagram_len)).min(fits)
    }

    /// Takes tokens for up to `want` datagrams of `datagram_len` bytes: how
    /// many may go now. Sends nothing until a whole step (or all of `want`,
    /// if less) is covered, so the sender wakes for steps, not datagrams.
    pub(crate) fn take(&mut self, want: usize, datagram_len: usize, now: Instant) -> usize {
        self.refill(now);
        let need = self.need(want, datagram_len);
        let have = (self.tokens / datagram_len.max(1) as f64) as usize;
        if have < need {
            return 0;
        }
        let n = have.min(want);
        self.tokens -= (n * datagram_len) as f64;
        n
    }

    /// When the bucket holds enough for the next send of up to `want`
    /// datagrams (`now` when it already does).
    pub(crate) fn next_send(&self, want: usize, datagram_len: usize, now: Instant) -> Instant {
        let need = (self.need(want, datagram_len) * datagram_len) as f64;
        let missing = need - self.tokens;
        let last = self.last.unwrap_or(now);
        if missing <= 0.0 {
            return last.max(now);
        }
        last + Duration::from_secs_f64(missing * 8.0 / self.rate_bps as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_the_rest_at_the_rate() {
        let t0 = Instant::now();
        // 80 Mbit/s = 10 MB/s, a 64 KiB bucket, datagrams of 1000 bytes.
        let mut p = PathPacer::new(80_000_000, 64 * 1024);
        assert_eq!(
            p.step(1000),
            8,
            "250 µs at 10 MB/s is 2.5 kB: the 8-datagram floor"
        );
        assert_eq!(p.take(1000, 1000, t0), 65, "the full bucket");
        assert_eq!(p.take(1000, 1000, t0), 0, "then nothing until the bucket refills");
        let next = p.next_send(935, 1000, t0);
        let wait = (next - t0).as_secs_f64();
        assert!(
            (wait - 746.4e-6).abs() < 1e-7,
            "7.464 kB to earn for 8 datagrams: {wait}"
        );
        assert_eq!(p.take(935, 1000, t0 + Duration::from_micros(700)), 0, "not yet");
        assert_eq!(p.take(935, 1000, next), 8);
        // A second of silence fills the bucket to its size, no more.
        let later = next + Duration::from_secs(1);
        assert_eq!(p.take(1000, 1000, later), 65);
        // Over a long run the rate holds: 10 000 datagrams take about a second.
        let mut now = later;
        let mut sent = 0;
        while sent < 10_000 {
            now = p.next_send(10_000 - sent, 1000, now);
            sent += p.take(10_000 - sent, 1000, now);
        }
        let took = (now - later).as_secs_f64();
        assert!((took - 1.0).abs() < 0.002, "{took} s for 10 MB at 10 MB/s");
    }

    #[test]
    fn a_rate_change_keeps_what_was_earned_within_the_new_burst() {
        let t0 = Instant::now();
        let mut p = PathPacer::new(8_000_000, 100_000);
        assert_eq!(p.take(1_000_000, 1000, t0), 100);
        p.set(800_000_000, 20_000, t0 + Duration::from_millis(1));
        assert_eq!(p.rate_bps(), 800_000_000);
        // 1 kB earned at the old rate; then 100 kB/ms at the new one, capped at 20 kB.
        assert_eq!(
            p.take(1_000_000, 1000, t0 + Duration::from_millis(1)),
            0,
            "a send waits for 20"
        );
        // A step at 100 MB/s is 25 datagrams, more than the bucket holds: it
        // waits for a full bucket instead.
        assert_eq!(p.take(1_000_000, 1000, t0 + Duration::from_millis(2)), 20);
        // A small remainder goes as soon as it is covered, not after a whole step.
        assert_eq!(p.take(3, 1000, t0 + Duration::from_micros(2_030)), 3);
    }
}
