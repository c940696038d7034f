//! The client side of rate feedback, sans-IO: the receive path calls
//! [`FeedbackBuilder::on_packet`] for every authenticated data datagram (O(1),
//! no allocation), and the driver asks [`FeedbackBuilder::poll_feedback`] at
//! [`FeedbackBuilder::poll_timeout`].

use std::time::{Duration, Instant};

use super::feedback::{ArrivalSample, Feedback, MAX_SAMPLES};

/// Settings of a [`FeedbackBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedbackConfig {
    /// Cadence of regular reports (default 25 ms; clamped to 20–50 ms).
    pub interval: Duration,
    /// Least time between two reports, urgent ones included (default 5 ms).
    pub min_gap: Duration,
    /// For this long after the first datagram, reports go every `min_gap`
    /// instead of every `interval` (default 100 ms, at most 1 s): the host's
    /// start-up grows the rate once per report or round trip, whichever is
    /// longer, so on a fast path it finds the path's rate in tens of
    /// milliseconds instead of hundreds, and the first frames are not
    /// paced at a rate far below the path's.
    pub startup: Duration,
    /// A missing sequence counts as lost once this many later sequences have
    /// arrived (default 64: reordering deeper than that is rare and costs
    /// only a false loss).
    pub reorder_allowance: u32,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            interval: Duration::from_millis(25),
            min_gap: Duration::from_millis(5),
            startup: Duration::from_millis(100),
            reorder_allowance: 64,
        }
    }
}

/// Shortest and longest cadence a builder accepts.
pub const MIN_FEEDBACK_INTERVAL: Duration = Duration::from_millis(20);
/// See [`MIN_FEEDBACK_INTERVAL`].
pub const MAX_FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);

/// Longest fast-report start-up.
const MAX_STARTUP: Duration = Duration::from_secs(1);

/// Sequences the loss bitmap covers behind the classification edge.
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Client side of rate feedback: counts datagrams, detects gaps, keeps a
/// fixed set of arrival samples spread over the interval, and says when a
/// report is due.
#[derive(Clone, Debug)]
pub struct FeedbackBuilder {
    cfg: FeedbackConfig,
    epoch: Option<Instant>,
    received: u64,
    bytes: u64,
    highest: u64,
    lost: u64,
    /// Every sequence below this one is classified (received or lost).
    edge: u64,
    /// Received bits of sequences `edge .. edge + WINDOW`, indexed by `seq % WINDOW`.
    bits: [u64; WORDS],
    late: u64,
    samples: [ArrivalSample; MAX_SAMPLES],
    nsamples: usize,
    stride: u64,
    since_sample: u64,
    in_interval: u64,
    newest: Option<ArrivalSample>,
    newest_in_ring: bool,
    last_arrival_us: u64,
    next_due: Option<Instant>,
    urgent: bool,
    last_sent: Option<Instant>,
    seq: u32,
}

impl FeedbackBuilder {
    /// A builder with `cfg` (interval clamped to 20–50 ms, allowance at least 1).
    pub fn new(cfg: FeedbackConfig) -> FeedbackBuilder {
        let cfg = FeedbackConfig {
            interval: cfg.interval.clamp(MIN_FEEDBACK_INTERVAL, MAX_FEEDBACK_INTERVAL),
            min_gap: cfg.min_gap.min(MIN_FEEDBACK_INTERVAL),
            startup: cfg.startup.min(MAX_STARTUP),
            reorder_allowance: cfg.reorder_allowance.clamp(1, (WINDOW / 2) as u32),
        };
        FeedbackBuilder {
            cfg,
            epoch: None,
            received: 0,
            bytes: 0,
            highest: 0,
            lost: 0,
            edge: 0,
            bits: [0; WORDS],
            late: 0,
            samples: [ArrivalSample::default(); MAX_SAMPLES],
            nsamples: 0,
            stride: 1,
            since_sample: 0,
            in_interval: 0,
            newest: None,
            newest_in_ring: false,
            last_arrival_us: 0,
            next_due: None,
            urgent: false,
            last_sent: None,
            seq: 0,
        }
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> FeedbackConfig {
        self.cfg
    }

    /// Datagrams that arrived after they had been counted lost (reordered
    /// deeper than the allowance). They count as received; the loss stays.
    pub fn late_packets(&self) -> u64 {
        self.late
    }

    /// Records one authenticated data datagram. O(1), no allocation. Call it
    /// after the replay filter: a sequence must be seen once.
    pub fn on_packet(&mut self, seq: u64, wire_bytes: u32, arrival: Instant) {
        let epoch = *self.epoch.get_or_insert(arrival);
        // Arrivals on the wire are in order even when a caller's timestamps are not.
        let arrival_us = super::micros(arrival.saturating_duration_since(epoch)).max(self.last_arrival_us);
        self.last_arrival_us = arrival_us;
        if self.next_due.is_none() {
            self.next_due = Some(arrival + self.interval_at(arrival));
        }
        self.received += 1;
        self.bytes += u64::from(wire_bytes);
        self.in_interval += 1;
        self.track_loss(seq);

        let s = ArrivalSample { seq, arrival_us };
        self.newest = Some(s);
        self.since_sample += 1;
        if self.since_sample >= self.stride {
            self.since_sample = 0;
            if self.nsamples == MAX_SAMPLES - 1 {
                self.thin();
            }
            self.samples[self.nsamples] = s;
            self.nsamples += 1;
            self.newest_in_ring = true;
        } else {
            self.newest_in_ring = false;
        }
    }

    /// Keeps every other sample and doubles the stride: the ring never
    /// overflows, whatever the packet rate.
    fn thin(&mut self) {
        let mut w = 0;
        for r in (1..self.nsamples).step_by(2) {
            self.samples[w] = self.samples[r];
            w += 1;
        }
        self.nsamples = w;
        self.stride = self.stride.saturating_mul(2);
    }

    fn track_loss(&mut self, seq: u64) {
        if self.received == 1 {
            // The first datagram anchors the window; earlier sequences never count.
            self.edge = seq;
            self.highest = seq;
        }
        if seq < self.edge {
            self.late += 1;
            return;
        }
        if seq > self.highest {
            self.highest = seq;
        }
        let allowance = u64::from(self.cfg.reorder_allowance);
        let new_edge = self.highest.saturating_sub(allowance - 1).max(self.edge);
        self.advance(new_edge);
        // seq >= edge and seq <= highest < edge + allowance <= edge + WINDOW.
        let i = (seq % WINDOW) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// Classifies every sequence below `to`: a missing bit is a loss.
    fn advance(&mut self, to: u64) {
        if to <= self.edge {
            return;
        }
        if to - self.edge >= WINDOW {
            let seen: u64 = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
            self.lost += (to - self.edge) - seen;
            self.bits = [0; WORDS];
            self.edge = to;
            return;
        }
        while self.edge < to {
            let i = self.edge % WINDOW;
            let bit = i % 64;
            let n = (64 - bit).min(to - self.edge);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            let w = &mut self.bits[(i / 64) as usize];
            self.lost += n - u64::from((*w & mask).count_ones());
            *w &= !mask;
            self.edge += n;
        }
    }

    /// A frame was lost: the next report goes out as soon as the rate bound
    /// allows (at most one report per `min_gap`).
    pub fn on_frame_lost(&mut self, _now: Instant) {
        if self.epoch.is_some() {
            self.urgent = true;
        }
    }

    /// The cadence at `now`: `min_gap` during start-up, else `interval`.
    fn interval_at(&self, now: Instant) -> Duration {
        match self.epoch {
            Some(first) if now.saturating_duration_since(first) < self.cfg.startup => self.cfg.min_gap,
            _ => self.cfg.interval,
        }
    }

    /// When the builder next wants [`FeedbackBuilder::poll_feedback`] called;
    /// `None` before the first datagram.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = self.next_due?;
        if self.urgent {
            let early = self.last_sent.map_or(due, |t| t + self.cfg.min_gap);
            return Some(early.min(due));
        }
        Some(due)
    }

    /// The report due at `now`, if any. Reports keep their cadence after the
    /// first datagram even when nothing new arrived (that silence is itself
    /// information for the host).
    pub fn poll_feedback(&mut self, now: Instant) -> Option<Feedback> {
        let due = self.poll_timeout()?;
        if now < due {
            return None;
        }
        let mut fb = Feedback::default();
        fb.seq = self.seq;
        fb.urgent = self.urgent;
        fb.packets_received = self.received;
        fb.bytes_received = self.bytes;
        fb.highest_seq = self.highest;
        fb.packets_lost = self.lost;
        let newest = self.newest.map_or(0, |s| s.arrival_us);
        for s in &self.samples[..self.nsamples] {
            // Too far behind to encode: skip (only after a jump of 2^32 sequences).
            if self.highest - s.seq <= u64::from(u32::MAX) && newest - s.arrival_us <= u64::from(u32::MAX) {
                fb.push_sample(*s);
            }
        }
        if let (Some(s), false) = (self.newest, self.newest_in_ring) {
            if self.in_interval > 0 {
                fb.push_sample(s);
            }
        }
        // The next interval starts with a stride that fits its expected count.
        let target = (MAX_SAMPLES - 2) as u64;
        self.stride = self.in_interval.div_ceil(target).max(1);
        self.since_sample = 0;
        self.nsamples = 0;
        self.in_interval = 0;
        self.newest_in_ring = false;
        self.urgent = false;
        self.last_sent = Some(now);
        self.next_due = Some(now + self.interval_at(now));
        self.seq = self.seq.wrapping_add(1);
        Some(fb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(base: Instant, us: u64) -> Instant {
        base + Duration::from_micros(us)
    }

    #[test]
    fn reports_come_every_5_ms_for_the_first_100_ms_then_every_25() {
        let base = Instant::now();
        let mut b = FeedbackBuilder::new(FeedbackConfig::default());
        b.on_packet(0, 1401, base);
        let mut sent = Vec::new();
        let mut now = base;
        while now < t(base, 200_000) {
            if b.poll_feedback(now).is_some() {
                sent.push(now.duration_since(base).as_micros() as u64);
            }
            now = b.poll_timeout().unwrap();
        }
        let gaps: Vec<u64> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        let fast = sent.iter().filter(|&&at| at <= 100_000).count();
        assert_eq!(fast, 20, "5 ms apart within the first 100 ms: {sent:?}");
        assert!(gaps.iter().take(19).all(|&g| g == 5_000), "{gaps:?}");
        assert!(gaps.iter().rev().take(3).all(|&g| g == 25_000), "{gaps:?}");
    }

    #[test]
    fn the_builder_counts_gaps_after_the_allowance_and_keeps_its_cadence() {
        let base = Instant::now();
        // The steady cadence (the start-up's faster one has its own test).
        let mut b = FeedbackBuilder::new(FeedbackConfig {
            startup: Duration::ZERO,
            ..FeedbackConfig::default()
        });
        assert_eq!(b.poll_timeout(), None);
        assert!(b.poll_feedback(t(base, 1_000_000)).is_none());
        // 0..200 with 50 and 51 missing; 100 arrives late but within the allowance.
        for seq in (0..200u64).filter(|s| ![50, 51, 100].contains(s)) {
            b.on_packet(seq, 1401, t(base, seq * 10));
            if seq == 120 {
                b.on_packet(100, 1401, t(base, seq * 10 + 1));
            }
        }
        assert_eq!(b.poll_timeout(), Some(t(base, 25_000)));
        assert!(b.poll_feedback(t(base, 24_999)).is_none());
        let fb = b.poll_feedback(t(base, 25_000)).unwrap();
        assert_eq!(
            (fb.seq, fb.packets_received, fb.highest_seq, fb.packets_lost),
            (0, 198, 199, 2)
        );
        assert_eq!(fb.bytes_received, 198 * 1401);
        let s = fb.samples();
        assert!(s.len() <= MAX_SAMPLES && s.len() >= 32, "{}", s.len());
        assert_eq!(
            s.last().unwrap().seq,
            199,
            "the newest datagram is always sampled"
        );
        assert!(s.windows(2).all(|w| w[0].arrival_us <= w[1].arrival_us));
        assert!(
            s[0].seq < 10,
            "samples cover the interval from its start: {:?}",
            s[0]
        );
        assert_eq!(Feedback::decode(&fb.encode().unwrap()).unwrap(), fb);
        // Nothing new: the cadence holds, with no samples.
        let fb = b.poll_feedback(t(base, 50_000)).unwrap();
        assert_eq!((fb.seq, fb.samples().len()), (1, 0));
    }

    #[test]
    fn a_frame_loss_asks_for_a_report_at_once_within_the_rate_bound() {
        let base = Instant::now();
        let mut b = FeedbackBuilder::new(FeedbackConfig::default());
        b.on_packet(0, 1000, base);
        let _ = b.poll_feedback(t(base, 25_000)).unwrap();
        b.on_packet(1, 1000, t(base, 26_000));
        b.on_frame_lost(t(base, 26_000));
        assert_eq!(
            b.poll_timeout(),
            Some(t(base, 30_000)),
            "5 ms after the last report"
        );
        let fb = b.poll_feedback(t(base, 30_000)).unwrap();
        assert!(fb.urgent);
        b.on_frame_lost(t(base, 31_000));
        assert_eq!(b.poll_timeout(), Some(t(base, 35_000)));
    }

    #[test]
    fn huge_gaps_and_heavy_rates_stay_bounded() {
        let base = Instant::now();
        let mut b = FeedbackBuilder::new(FeedbackConfig::default());
        for seq in 0..100_000u64 {
            b.on_packet(seq, 1401, t(base, seq / 10));
        }
        b.on_packet(10_000_000, 1401, t(base, 10_001));
        let fb = b.poll_feedback(t(base, 25_000)).unwrap();
        assert!(fb.samples().len() <= MAX_SAMPLES);
        assert_eq!(fb.packets_lost, 10_000_000 - 100_000 - 63);
        fb.check().unwrap();
    }
}
