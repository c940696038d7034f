//! Rate control: how fast a host may send to one client.
//!
//! A sans-IO controller (no clock, no socket, no thread; every call takes
//! `now`) turns what the host sent ([`RateController::on_sent`]) and what the
//! client reports ([`Feedback`], built by a [`FeedbackBuilder`] on the client
//! and carried as a QUIC datagram, docs/PROTOCOL.md §9.8) into three numbers:
//!
//! * the **path estimate**: the wire rate the path carries for this session;
//! * the **pacing rate**: how fast datagrams leave (a frame goes out at the
//!   path rate, with a bounded burst, so it neither overruns a bottleneck
//!   queue nor crawls where the path is fast);
//! * the **media target** for the encoder: the estimate less FEC and header
//!   overhead ([`WireBudget`]), capped at the application's maximum.
//!
//! docs/CONGESTION.md explains the model, its states and constants, and how
//! it tells random loss (FEC's job) from congestion (queue delay rising, loss
//! at a full queue).
//!
//! ```
//! use punktfunk_core::rate::{RateConfig, RateController, WireBudget};
//! use std::time::Instant;
//!
//! let t0 = Instant::now();
//! let mut rc = RateController::new(RateConfig::default(), t0);
//! rc.on_sent(0, 40, 1401, t0);
//! let budget = WireBudget { fec_percent: 10, datagram_len: 1401, shard_payload: 1344 };
//! let media = rc.target_media_bps(&budget);
//! assert!(media > 0 && media < rc.snapshot().estimate_bps);
//! ```

mod builder;
mod controller;
pub mod feedback;
mod filters;
pub mod sendlog;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use builder::{FeedbackBuilder, FeedbackConfig, MAX_FEEDBACK_INTERVAL, MIN_FEEDBACK_INTERVAL};
pub use controller::RateController;
pub use feedback::{ArrivalSample, Feedback, FeedbackError};
pub use sendlog::{SendLog, SentPacket};

/// Settings of one session's [`RateController`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Adapt to the path (default). `false` fixes the estimate and the media
    /// target at `max_bps` with no probing and no padding.
    pub adaptive: bool,
    /// Path estimate at the start, bit/s (default 10 Mbit/s; clamped into
    /// `min_bps ..= max_bps`).
    pub initial_bps: u64,
    /// Floor of the path estimate, bit/s (default 1 Mbit/s). Nothing the
    /// client reports, or fails to report, takes the estimate below it.
    pub min_bps: u64,
    /// The application's ceiling on the media rate, bit/s (default 1 Gbit/s).
    pub max_bps: u64,
    /// How far the *path* estimate may be probed, bit/s, above the media
    /// ceiling: pacing at the path rate is what makes frames leave fast
    /// where the path is fast. `None` (default): `4 × max_bps`, at least
    /// 1 Gbit/s, at most 3 Gbit/s; never below `max_bps`.
    pub probe_ceiling_bps: Option<u64>,
    /// The client's feedback cadence (default 25 ms); silence is judged
    /// against it.
    pub feedback_interval: Duration,
    /// Bytes the pacer may send at once, at least (default 64 KiB); on a
    /// fast path the burst grows to [`BURST_TIME`] at the estimated rate.
    pub burst_bytes: u32,
    /// Runs the send log keeps (default [`sendlog::DEFAULT_SEND_LOG_RUNS`]).
    pub send_log_runs: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            adaptive: true,
            initial_bps: 10_000_000,
            min_bps: 1_000_000,
            max_bps: 1_000_000_000,
            probe_ceiling_bps: None,
            feedback_interval: Duration::from_millis(25),
            burst_bytes: 64 * 1024,
            send_log_runs: sendlog::DEFAULT_SEND_LOG_RUNS,
        }
    }
}

/// Whole microseconds of `d` (no 128-bit division: this runs per packet).
fn micros(d: Duration) -> u64 {
    d.as_secs().saturating_mul(1_000_000) + u64::from(d.subsec_micros())
}

/// The pacer's burst in time at the estimated rate: a burst of this long at
/// the path's rate adds at most this much queue at its bottleneck, and on a
/// fast path it lets a whole frame leave at once (at 3 Gbit/s, 750 KB: a
/// 300 Mbit/s stream's frame at 60 fps).
pub const BURST_TIME: Duration = Duration::from_millis(2);

/// Highest probe ceiling the default picks, bit/s.
pub const DEFAULT_PROBE_CEILING_CAP: u64 = 3_000_000_000;

impl RateConfig {
    /// The probe ceiling in force, bit/s.
    pub fn probe_ceiling(&self) -> u64 {
        let max = self.max_bps.max(1);
        let p = self.probe_ceiling_bps.unwrap_or_else(|| {
            max.saturating_mul(4)
                .clamp(1_000_000_000, DEFAULT_PROBE_CEILING_CAP)
        });
        p.max(max)
    }
}

/// What the controller is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateState {
    /// Ramping from the initial rate (×1.5 per round, with padding) until
    /// the queue grows or the probe ceiling is reached.
    Startup,
    /// An application-limited session probes for a faster path (×1.25 per
    /// round, with padding) after 5 s without congestion.
    Probe,
    /// Left start-up or a probe: pacing below the estimate for a round so the
    /// queue the ramp built drains.
    Drain,
    /// Tracking the path: slow growth near the last congestion point, faster
    /// away from it.
    Steady,
    /// Backed off for congestion; holding until the queue drained.
    Backoff,
    /// No feedback for several intervals: holding, then decaying.
    Hold,
    /// `adaptive: false`.
    Fixed,
}

impl RateState {
    /// Every state, in the order of their codes (1, 2, …).
    pub const ALL: [RateState; 7] = [
        RateState::Startup,
        RateState::Probe,
        RateState::Drain,
        RateState::Steady,
        RateState::Backoff,
        RateState::Hold,
        RateState::Fixed,
    ];

    /// The state's code in the session counters (`rate_state`): 1 for
    /// start-up to 7 for fixed, in the order of [`RateState::ALL`]; 0 there
    /// means the session has no rate controller.
    pub fn code(self) -> u64 {
        match self {
            RateState::Startup => 1,
            RateState::Probe => 2,
            RateState::Drain => 3,
            RateState::Steady => 4,
            RateState::Backoff => 5,
            RateState::Hold => 6,
            RateState::Fixed => 7,
        }
    }

    /// The state a `rate_state` code names (`None` for 0 and unknown codes).
    pub fn from_code(code: u64) -> Option<RateState> {
        RateState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// A short lower-case name: `startup`, `probe`, `drain`, `steady`,
    /// `backoff`, `hold`, `fixed`.
    pub fn name(self) -> &'static str {
        match self {
            RateState::Startup => "startup",
            RateState::Probe => "probe",
            RateState::Drain => "drain",
            RateState::Steady => "steady",
            RateState::Backoff => "backoff",
            RateState::Hold => "hold",
            RateState::Fixed => "fixed",
        }
    }

    /// The name of a `rate_state` code: a state's [`RateState::name`], or
    /// `none` (0: no rate controller; or a code this build does not know).
    pub fn name_of_code(code: u64) -> &'static str {
        RateState::from_code(code).map_or("none", RateState::name)
    }
}

/// Congestion events and drops, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateCounters {
    /// Feedback reports taken into account.
    pub feedback_used: u64,
    /// Feedback datagrams refused: undecodable, contradicting earlier
    /// reports or what was sent, or time going backwards.
    pub feedback_dropped: u64,
    /// Reports older than one already used (reordered), ignored.
    pub feedback_stale: u64,
    /// Arrival samples whose sequence the send log does not hold.
    pub samples_unmatched: u64,
    /// Back-offs for a growing queue (delay).
    pub backoffs_delay: u64,
    /// Back-offs for loss at a full queue (congestion loss).
    pub backoffs_loss: u64,
    /// Back-offs for loss above what FEC can repair, whatever the delay.
    pub backoffs_heavy_loss: u64,
    /// Reports with loss judged random (flat delay, path not saturated):
    /// no back-off.
    pub random_loss_reports: u64,
    /// Times feedback fell silent long enough to hold.
    pub silences: u64,
    /// Times a loss-based competitor was detected.
    pub competing_detected: u64,
    /// Probes an application-limited session made for a faster path.
    pub probes: u64,
    /// Times the one-way-delay base was learnt again because cut after cut
    /// left the queue delay where it was (a base set too low by an early
    /// arrival stamp).
    pub base_resets: u64,
    /// Reports whose newest packet left so long ago that they say nothing
    /// of the path now: nothing newer arrives (a path that stopped
    /// delivering) or the reports themselves are held up. Each round of them
    /// halves the estimate, as a retransmission timeout does a congestion
    /// window.
    pub stale_reports: u64,
}

impl RateCounters {
    /// All back-offs.
    pub fn backoffs(&self) -> u64 {
        self.backoffs_delay + self.backoffs_loss + self.backoffs_heavy_loss
    }

    /// Back-offs for congestion: a growing queue or loss at a full one (and
    /// stale reports). Not loss alone, which FEC answers.
    pub fn congestion_backoffs(&self) -> u64 {
        self.backoffs_delay + self.backoffs_loss
    }
}

/// The controller's outputs at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSnapshot {
    /// What the controller is doing.
    pub state: RateState,
    /// Path estimate: the wire rate this session may use on average, bit/s.
    /// Always within `min_bps ..= probe ceiling`.
    pub estimate_bps: u64,
    /// Rate datagrams leave at, bit/s (above the estimate by a small gain so
    /// the sender's queue drains after a keyframe; below it while draining).
    pub pacing_rate_bps: u64,
    /// Bytes the pacer may send at once: `burst_bytes` of the
    /// configuration, or [`BURST_TIME`] at the estimate if that is more.
    pub burst_bytes: u32,
    /// Filler the sender should add to its media, bit/s, while the
    /// controller probes (start-up, probe); 0 otherwise.
    pub probe_padding_bps: u64,
    /// Latest delivery rate measured at the client, bit/s (0: none yet).
    pub delivery_bps: u64,
    /// Queue delay: one-way delay above its recent minimum, µs.
    pub queue_delay_us: u64,
    /// Smoothed round-trip time from the QUIC connection, µs (0: unknown).
    pub rtt_us: u64,
    /// Loss in the latest report, per mille.
    pub loss_permille: u32,
    /// A loss-based flow shares the bottleneck: the standing queue is not
    /// ours to drain, the controller backs off for loss only.
    pub competing: bool,
    /// Congestion events and drops.
    pub counters: RateCounters,
}

/// The wire cost of media: turns a path rate into the media rate it carries
/// under a session's FEC and datagram framing. Adaptive FEC spends from this
/// budget: more parity lowers the media rate, never raises the wire rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireBudget {
    /// FEC recovery percentage in force (0..=100).
    pub fec_percent: u8,
    /// Wire bytes per datagram (shard payload + headers + tag).
    pub datagram_len: usize,
    /// Media bytes per datagram.
    pub shard_payload: usize,
}

impl WireBudget {
    /// Wire bytes per media byte (≥ 1): framing × (1 + FEC share). Blocks
    /// have at least 2 recovery shards when FEC is on; frames of a few
    /// shards pay more than this, large frames pay this.
    pub fn overhead(&self) -> f64 {
        let payload = self.shard_payload.max(1) as f64;
        let framing = (self.datagram_len as f64 / payload).max(1.0);
        framing * (1.0 + f64::from(self.fec_percent.min(100)) / 100.0)
    }

    /// Media bit/s that fit in `wire_bps`.
    pub fn media_bps(&self, wire_bps: u64) -> u64 {
        (wire_bps as f64 / self.overhead()) as u64
    }

    /// Wire bit/s that `media_bps` costs.
    pub fn wire_bps(&self, media_bps: u64) -> u64 {
        (media_bps as f64 * self.overhead()).ceil() as u64
    }
}
