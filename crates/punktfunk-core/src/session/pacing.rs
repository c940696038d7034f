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
