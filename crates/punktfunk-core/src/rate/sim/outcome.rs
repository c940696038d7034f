//! What a simulated run measured, and its aggregates.

use std::fmt::Write as _;

use super::{QD_BUCKETS, QD_BUCKET_US};
use crate::rate::RateState;

/// 100 ms of the run.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub t: f64,
    pub link_bps: f64,
    pub estimate_bps: f64,
    pub target_bps: f64,
    pub pacing_bps: f64,
    pub state: RateState,
    /// Media and FEC datagrams delivered, wire bit/s (padding excluded).
    pub goodput_bps: f64,
    pub padding_bps: f64,
    pub competitor_bps: f64,
    pub sent: u64,
    pub dropped: u64,
    pub frames: u64,
    pub frames_lost: u64,
    pub qd_hist: Vec<u32>,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub rows: Vec<Row>,
    pub backoffs: u64,
    pub feedback_dropped: u64,
    pub competing_detected: u64,
    pub probes: u64,
    pub base_resets: u64,
    /// Reports whose news was too old to act on.
    pub stale_reports: u64,
    pub min_estimate: f64,
    pub max_estimate: f64,
    /// Per delivered frame: when the encoder handed it over (s) and how long
    /// until its last needed datagram reached the client (ms, in whole
    /// simulator ticks).
    pub frame_latency_ms: Vec<(f64, f64)>,
}

/// Aggregates over a time range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub utilisation: f64,
    pub competitor_share: f64,
    pub qd_p95_ms: f64,
    pub loss: f64,
    pub frames: u64,
    pub frames_lost: u64,
    pub mean_estimate_bps: f64,
    pub min_estimate_bps: f64,
    pub padding_share: f64,
}

impl Stats {
    pub(crate) fn frame_loss(&self) -> f64 {
        self.frames_lost as f64 / self.frames.max(1) as f64
    }
}

impl Outcome {
    pub(crate) fn stats(&self, from: f64, to: f64) -> Stats {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.t >= from - 1e-9 && r.t < to - 1e-9)
            .collect();
        let n = rows.len().max(1) as f64;
        let cap: f64 = rows.iter().map(|r| r.link_bps).sum();
        let good: f64 = rows.iter().map(|r| r.goodput_bps).sum();
        let comp: f64 = rows.iter().map(|r| r.competitor_bps).sum();
        let pad: f64 = rows.iter().map(|r| r.padding_bps).sum();
        let sent: u64 = rows.iter().map(|r| r.sent).sum();
        let dropped: u64 = rows.iter().map(|r| r.dropped).sum();
        let mut hist = vec![0u64; QD_BUCKETS];
        for r in &rows {
            for (h, &c) in hist.iter_mut().zip(&r.qd_hist) {
                *h += u64::from(c);
            }
        }
        let total: u64 = hist.iter().sum();
        let mut acc = 0;
        let mut p95 = QD_BUCKETS;
        for (i, &c) in hist.iter().enumerate() {
            acc += c;
            if acc * 100 >= total * 95 {
                p95 = i + 1;
                break;
            }
        }
        Stats {
            utilisation: good / cap.max(1.0),
            competitor_share: comp / cap.max(1.0),
            qd_p95_ms: if total == 0 {
                0.0
            } else {
                (p95 as u64 * QD_BUCKET_US) as f64 / 1000.0
            },
            loss: dropped as f64 / sent.max(1) as f64,
            frames: rows.iter().map(|r| r.frames).sum(),
            frames_lost: rows.iter().map(|r| r.frames_lost).sum(),
            mean_estimate_bps: rows.iter().map(|r| r.estimate_bps).sum::<f64>() / n,
            min_estimate_bps: rows.iter().map(|r| r.estimate_bps).fold(f64::MAX, f64::min),
            padding_share: pad / cap.max(1.0),
        }
    }

    /// Seconds after `from` until the goodput over a 0.5 s window first
    /// reaches `share` of the link.
    pub(crate) fn time_to_reach(&self, from: f64, share: f64) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.t >= from - 1e-9)
            .find(|r| self.stats(r.t, r.t + 0.5).utilisation >= share)
            .map(|r| r.t + 0.5 - from)
    }

    /// Last row at or after `from` with any of our datagrams dropped at the bottleneck.
    pub(crate) fn last_loss_after(&self, from: f64, to: f64) -> Option<f64> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.t >= from - 1e-9 && r.t < to && r.dropped > 0)
            .map(|r| r.t + 0.1 - from)
    }

    /// The time series as CSV.
    pub(crate) fn csv(&self) -> String {
        let mut s = String::from(
            "t_s,link_mbps,estimate_mbps,target_mbps,pacing_mbps,goodput_mbps,padding_mbps,competitor_mbps,loss,queue_delay_p95_ms,frames_lost,state\n",
        );
        for r in &self.rows {
            let single = Outcome {
                rows: vec![r.clone()],
                ..self.clone_empty()
            };
            let st = single.stats(r.t, r.t + 0.1);
            let _ = writeln!(
                s,
                "{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.4},{:.2},{},{:?}",
                r.t,
                r.link_bps / 1e6,
                r.estimate_bps / 1e6,
                r.target_bps / 1e6,
                r.pacing_bps / 1e6,
                r.goodput_bps / 1e6,
                r.padding_bps / 1e6,
                r.competitor_bps / 1e6,
                st.loss,
                st.qd_p95_ms,
                r.frames_lost,
                r.state
            );
        }
        s
    }

    fn clone_empty(&self) -> Outcome {
        Outcome {
            rows: Vec::new(),
            backoffs: 0,
            feedback_dropped: 0,
            competing_detected: 0,
            base_resets: 0,
            stale_reports: 0,
            probes: 0,
            min_estimate: 0.0,
            max_estimate: 0.0,
            frame_latency_ms: Vec::new(),
        }
    }
}
