//! Small filters of the rate controller: windowed extremes and a rate meter.

/// Half of the windowed filters' window, µs: a value is remembered 5–10 s.
const HALF_WINDOW_US: u64 = 5_000_000;

/// Two-bucket windowed minimum (a min over the last 5–10 s).
#[derive(Clone, Debug)]
pub(super) struct WindowedMin {
    cur: i64,
    prev: i64,
    started_us: u64,
}

impl WindowedMin {
    pub(super) fn new() -> WindowedMin {
        WindowedMin {
            cur: i64::MAX,
            prev: i64::MAX,
            started_us: 0,
        }
    }

    pub(super) fn update(&mut self, v: i64, now_us: u64) {
        if now_us.saturating_sub(self.started_us) >= HALF_WINDOW_US {
            self.prev = self.cur;
            self.cur = i64::MAX;
            self.started_us = now_us;
        }
        self.cur = self.cur.min(v);
    }

    pub(super) fn get(&self) -> i64 {
        self.cur.min(self.prev)
    }
}

/// Two-bucket windowed maximum over the same window, of a rate.
#[derive(Clone, Debug)]
pub(super) struct WindowedMax(WindowedMin);

impl WindowedMax {
    pub(super) fn update(&mut self, v: f64, now_us: u64) {
        self.0.update(-(v as i64), now_us);
    }

    pub(super) fn get(&self) -> f64 {
        match self.0.get() {
            i64::MAX => 0.0,
            v => -(v as f64),
        }
    }
}

/// A byte-rate meter over ~20 ms buckets (media only: padding excluded).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Meter {
    bucket_start_us: u64,
    bucket_bytes: u64,
    /// The rate, bit/s.
    pub(super) bps: f64,
}

impl Meter {
    pub(super) fn add(&mut self, bytes: u64, now_us: u64) {
        self.roll(now_us);
        self.bucket_bytes += bytes;
    }

    pub(super) fn roll(&mut self, now_us: u64) {
        let age = now_us.saturating_sub(self.bucket_start_us);
        if age >= 20_000 {
            let r = self.bucket_bytes as f64 * 8e6 / age as f64;
            self.bps = if age > 200_000 {
                r
            } else {
                0.5 * self.bps + 0.5 * r
            };
            self.bucket_start_us = now_us;
            self.bucket_bytes = 0;
        }
    }
}

impl WindowedMax {
    /// An empty filter (reads 0).
    pub(super) fn new() -> WindowedMax {
        WindowedMax(WindowedMin::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_are_remembered_for_one_to_two_half_windows() {
        let mut m = WindowedMin::new();
        m.update(50, 0);
        m.update(70, 1_000_000);
        assert_eq!(m.get(), 50);
        m.update(80, HALF_WINDOW_US + 1);
        assert_eq!(m.get(), 50, "the previous half still counts");
        m.update(90, 2 * HALF_WINDOW_US + 2);
        assert_eq!(m.get(), 80);
        let mut x = WindowedMax::new();
        assert_eq!(x.get(), 0.0);
        x.update(300e6, 0);
        x.update(200e6, 10);
        assert_eq!(x.get(), 300e6);
    }

    #[test]
    fn the_meter_follows_a_rate_and_forgets_a_pause() {
        let mut m = Meter::default();
        for ms in 0..200u64 {
            m.add(125_000, ms * 1000); // 1 Gbit/s
        }
        assert!((m.bps - 1e9).abs() < 0.05e9, "{}", m.bps);
        m.add(125, 2_000_000);
        m.roll(2_030_000);
        assert!(m.bps < 0.02e9, "{}", m.bps);
    }
}
