//! Sender pacing: how each frame's datagrams are spread over time.
//!
//! A frame of several MB handed to the kernel at once leaves a real NIC at line
//! rate, a microburst that overflows switch buffers and the receiver's socket
//! buffer. The paced sender sends a burst budget at once (low latency for small
//! frames), then the rest in chunks at a multiple of the stream rate, never
//! slower than needed to finish within the frame interval, and all at once as
//! soon as the next frame is waiting (so pacing never adds queueing delay).
//!
//! The stream rate and the frame interval are measured (moving averages over
//! the frames submitted), unless a fixed rate is configured.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Pacing settings of a sender ([`super::SessionConfig::pacing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Bytes of datagrams sent at once when a frame starts (default 64 KiB).
    pub burst_bytes: usize,
    /// Bytes of datagrams per paced send after that (default 32 KiB).
    pub chunk_bytes: usize,
    /// Pace at this percentage of the measured stream rate (default 200, i.e.
    /// twice the stream rate; `100..=10000`).
    pub rate_percent: u32,
    /// Pace at this fixed rate instead, kbit/s (0, the default, measures).
    pub fixed_rate_kbps: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            burst_bytes: 64 * 1024,
            chunk_bytes: 32 * 1024,
            rate_percent: 200,
            fixed_rate_kbps: 0,
        }
    }
}

impl Pacing {
    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.burst_bytes == 0 || self.chunk_bytes == 0 {
            return Err(Error::invalid(
                "pacing burst_bytes and chunk_bytes must be above zero",
            ));
        }
        if !(100..=10_000).contains(&self.rate_percent) {
            return Err(Error::invalid(format!(
                "pacing rate_percent {} is outside 100..=10000",
                self.rate_percent
            )));
        }
        Ok(())
    }
}

/// Longest frame interval taken into the average: a pause in the stream must
/// not make the next frames crawl.
const MAX_INTERVAL: Duration = Duration::from_millis(250);
/// Share of the frame interval a frame's datagrams may take at most.
const INTERVAL_SHARE: f64 = 0.8;

/// How one frame goes out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Bytes to send at once.
    pub burst_bytes: usize,
    /// Bytes per later send.
    pub chunk_bytes: usize,
    /// Rate of the later sends, bytes per second (`None`: send everything now).
    pub bytes_per_sec: Option<f64>,
}

/// Measures the stream and plans each frame.
#[derive(Debug)]
pub(crate) struct Pacer {
    cfg: Pacing,
    last_start: Option<Instant>,
    /// Moving averages: seconds between frames, bytes per frame.
    interval: Option<f64>,
    bytes: Option<f64>,
}

impl Pacer {
    pub(crate) fn new(cfg: Pacing) -> Pacer {
        Pacer {
            cfg,
            last_start: None,
            interval: None,
            bytes: None,
        }
    }

    /// Plans a frame of `wire_bytes` starting at `now`, and learns from it.
    pub(crate) fn plan(&mut self, now: Instant, wire_bytes: usize) -> Plan {
        const ALPHA: f64 = 0.125;
        let ewma = |old: Option<f64>, x: f64| Some(old.map_or(x, |o| o + ALPHA * (x - o)));
        if let Some(last) = self.last_start {
            let dt = now
                .saturating_duration_since(last)
                .min(MAX_INTERVAL)
                .as_secs_f64();
            self.interval = ewma(self.interval, dt);
        }
        self.last_start = Some(now);
        self.bytes = ewma(self.bytes, wire_bytes as f64);
        let rate = if self.cfg.fixed_rate_kbps > 0 {
            Some(f64::from(self.cfg.fixed_rate_kbps) * 1000.0 / 8.0)
        } else {
            match (self.interval, self.bytes) {
                (Some(iv), Some(b)) if iv > 0.0 => {
                    let stream = b / iv * f64::from(self.cfg.rate_percent) / 100.0;
                    // A frame larger than average (a keyframe) still finishes within the interval.
                    let within = wire_bytes as f64 / (iv * INTERVAL_SHARE);
                    Some(stream.max(within))
                }
                // The first frame: nothing measured yet.
                _ => None,
            }
        };
        Plan {
            burst_bytes: self.cfg.burst_bytes,
            chunk_bytes: self.cfg.chunk_bytes,
            bytes_per_sec: rate,
        }
    }
}

/// A run of `total` equal datagrams leaving on a schedule: a burst at once,
/// then chunks at a rate, chunk `i` due at `origin + bytes before it / rate`.
/// Both frames and speed-test probes go out as runs. Pure: it is told the
/// time and answers how many datagrams may go and when the next ones are due.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    total: usize,
    sent: usize,
    /// Datagrams sent at once when the run starts.
    burst: usize,
    /// Datagrams per later send.
    chunk: usize,
    datagram_len: usize,
    /// Bytes per second of the later sends; `None` sends everything at once.
    rate: Option<f64>,
    /// The schedule's origin; moved forward when a send is late, so a late
    /// thread sends one chunk now rather than a burst of overdue ones.
    origin: Instant,
    /// Keep the average rate instead: a late thread catches up, a few
    /// chunks per step ([`Run::catching_up`]).
    catch_up: bool,
}

/// Chunks a catching-up run sends per step at most.
const CATCH_UP_CHUNKS: usize = 4;

impl Run {
    /// A run of `total` datagrams of `datagram_len` bytes starting at `now`.
    pub(crate) fn new(total: usize, datagram_len: usize, plan: Plan, now: Instant) -> Run {
        let datagrams = |bytes: usize| bytes.div_ceil(datagram_len.max(1)).max(1);
        let rate = plan.bytes_per_sec.filter(|r| *r > 0.0 && r.is_finite());
        Run {
            total,
            sent: 0,
            burst: if plan.burst_bytes == 0 {
                0
            } else {
                datagrams(plan.burst_bytes)
            },
            chunk: datagrams(plan.chunk_bytes),
            datagram_len,
            rate,
            origin: now,
            catch_up: false,
        }
    }

    /// The same run, but one that keeps its average rate when the thread is
    /// late (a speed test measures the rate it was asked for): overdue chunks
    /// go out, at most [`CATCH_UP_CHUNKS`] per step, and the schedule stays put.
    pub(crate) fn catching_up(mut self) -> Run {
        self.catch_up = true;
        self
    }

    /// Datagrams of the run not yet sent.
    pub(crate) fn remaining(&self) -> usize {
        self.total - self.sent
    }

    /// When the next chunk is due (`None` once the run is done).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.sent >= self.total {
            return None;
        }
        let Some(rate) = self.rate else {
            return Some(self.origin);
        };
        if self.sent < self.burst {
            return Some(self.origin);
        }
        let bytes = ((self.sent - self.burst) * self.datagram_len) as f64;
        Some(self.origin + Duration::from_secs_f64(bytes / rate))
    }

    /// How many datagrams may go at `now` (0 while the next chunk is not due).
    /// A chunk late by a whole chunk interval or more (the thread was not
    /// scheduled in time) moves the schedule, so the run goes on at its rate
    /// instead of catching up with a burst of overdue chunks.
    pub(crate) fn take_due(&mut self, now: Instant) -> usize {
        let Some(due) = self.next_due() else {
            return 0;
        };
        if due > now {
            return 0;
        }
        let n = match self.rate {
            None => self.remaining(),
            Some(_) if self.sent < self.burst => self.burst.min(self.total) - self.sent,
            Some(rate) => {
                let interval = Duration::from_secs_f64((self.chunk * self.datagram_len) as f64 / rate);
                let late = now - due;
                if self.catch_up {
                    let overdue = (late.as_secs_f64() / interval.as_secs_f64()) as usize + 1;
                    (overdue.min(CATCH_UP_CHUNKS) * self.chunk).min(self.remaining())
                } else {
                    if late >= interval {
                        self.origin += late;
                    }
                    self.chunk.min(self.remaining())
                }
            }
        };
        self.sent += n;
        n
    }

    /// Everything left may go now (the next frame is waiting).
    pub(crate) fn take_all(&mut self) -> usize {
        let n = self.remaining();
        self.sent = self.total;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_stream_and_keyframes_finish_within_the_interval() {
        let mut p = Pacer::new(Pacing::default());
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(p.plan(t0, 100_000).bytes_per_sec, None, "nothing measured yet");
        // 100 kB every 10 ms: a 10 MB/s stream, paced at twice that.
        let mut rate = 0.0;
        for i in 1..100 {
            rate = p.plan(ms(i * 10), 100_000).bytes_per_sec.unwrap();
        }
        assert!((rate - 20e6).abs() < 0.5e6, "{rate}");
        // A 5x keyframe must go out within 80 % of the 10 ms interval: 62.5 MB/s at least.
        let key = p.plan(ms(1000), 500_000).bytes_per_sec.unwrap();
        assert!(key >= 500_000.0 / 0.008 * 0.99, "{key}");
        // A long pause does not make the next frame crawl.
        let after = p.plan(ms(60_000), 100_000).bytes_per_sec.unwrap();
        assert!(after > 2e6, "{after}");
    }

    #[test]
    fn a_run_sends_its_burst_then_chunks_on_schedule_and_a_late_thread_does_not_catch_up() {
        let t0 = Instant::now();
        let us = |n: u64| t0 + Duration::from_micros(n);
        // 100 datagrams of 1000 B: 10 at once, then 5 every 500 µs (10 MB/s).
        let plan = Plan {
            burst_bytes: 10_000,
            chunk_bytes: 5_000,
            bytes_per_sec: Some(10e6),
        };
        let mut run = Run::new(100, 1000, plan, t0);
        assert_eq!(run.take_due(t0), 10, "the burst");
        assert_eq!(run.next_due(), Some(t0));
        assert_eq!(run.take_due(t0), 5, "the first chunk is due at once");
        assert_eq!(run.next_due(), Some(us(500)));
        assert_eq!(run.take_due(us(499)), 0, "not yet");
        assert_eq!(run.take_due(us(560)), 5, "slightly late: on schedule");
        assert_eq!(run.next_due(), Some(us(1000)), "the schedule did not move");
        // Two whole intervals late: one chunk, and the schedule moves.
        assert_eq!(run.take_due(us(2000)), 5);
        assert_eq!(run.take_due(us(2000)), 0, "no burst of overdue chunks");
        assert_eq!(run.next_due(), Some(us(2500)));
        assert_eq!(run.remaining(), 75);
        assert_eq!(run.take_all(), 75);
        assert_eq!(run.next_due(), None);
        // A catching-up run keeps its rate: two intervals late, it sends the
        // overdue chunks (a few per step) and keeps the schedule.
        let mut run = Run::new(100, 1000, plan, t0).catching_up();
        assert_eq!(run.take_due(t0), 10);
        assert_eq!(run.take_due(t0), 5);
        assert_eq!(run.take_due(us(1100)), 10, "the chunks due at 0.5 and 1.0 ms");
        assert_eq!(run.next_due(), Some(us(1500)), "the schedule did not move");
        assert_eq!(run.take_due(us(9000)), 20, "at most four chunks per step");
        // Without a rate everything goes at once.
        let plan = Plan {
            bytes_per_sec: None,
            ..plan
        };
        let mut run = Run::new(7, 1000, plan, t0);
        assert_eq!(run.take_due(t0), 7);
        assert_eq!(run.take_due(t0), 0);
    }

    #[test]
    fn a_fixed_rate_wins_and_bad_settings_are_named() {
        let cfg = Pacing {
            fixed_rate_kbps: 8_000,
            ..Pacing::default()
        };
        let mut p = Pacer::new(cfg);
        assert_eq!(p.plan(Instant::now(), 10).bytes_per_sec, Some(1e6));
        let bad = Pacing {
            rate_percent: 50,
            ..Pacing::default()
        };
        assert!(bad.validate().unwrap_err().message().contains("rate_percent"));
        assert!(Pacing {
            chunk_bytes: 0,
            ..Pacing::default()
        }
        .validate()
        .is_err());
    }
}
