//! One host session's rate control, wired: the [`RateController`] fed from
//! the session's sender (what left, when) and the client's feedback, and its
//! answers applied to the sender (path-rate pacing, padding) and published
//! (the counters' gauges, the target the encoder should follow).
//!
//! Runs on the session's send thread, beside the sender it drives: no lock
//! between the two, and the controller sees every datagram as it leaves.

use std::time::Instant;

use crate::rate::{RateConfig, RateController, WireBudget};
use crate::session::FrameSender;
use crate::stats::Stats;
use crate::transport::Transport;

use super::governor::Share;

/// How a host's sessions adapt to their paths ([`super::HostConfig::rate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSettings {
    /// Adapt each session to its path (default): rate control, pacing at
    /// the path rate, a media target that follows the path. `false` keeps
    /// the application's own rate and the stream-rate pacer.
    pub adaptive: bool,
    /// Media bitrate a session starts at, kbit/s (default 10 000): a session
    /// ramps up from here, it does not open at the ceiling.
    pub initial_kbps: u32,
    /// Lowest media bitrate asked of the encoder, kbit/s (default 1000).
    pub min_kbps: u32,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            adaptive: true,
            initial_kbps: 10_000,
            min_kbps: 1000,
        }
    }
}

/// A change of the media target big enough to tell the application.
const TARGET_CHANGE: f64 = 0.03;

/// The rate control of one session (see the module docs).
pub(super) struct SessionRate {
    ctl: RateController,
    budget: WireBudget,
    share: Option<Share>,
    /// The target last published, bit/s.
    published: u64,
    congestion_seen: u64,
    /// Congestion back-offs so far, as of the last update.
    congestion_backoffs: u64,
}

impl SessionRate {
    /// Rate control for a session granted `ceiling_kbps`, sending datagrams
    /// of `budget`'s shape, sharing the host's ceiling through `share`.
    pub(super) fn new(
        s: &RateSettings,
        ceiling_kbps: u32,
        budget: WireBudget,
        share: Option<Share>,
        now: Instant,
    ) -> SessionRate {
        let max = u64::from(ceiling_kbps.max(1)) * 1000;
        let min = (u64::from(s.min_kbps) * 1000).min(max);
        let cfg = RateConfig {
            adaptive: true,
            // The controller works in wire bits: the media figures gain the overhead.
            initial_bps: budget.wire_bps(u64::from(s.initial_kbps) * 1000),
            min_bps: budget.wire_bps(min),
            max_bps: max,
            ..RateConfig::default()
        };
        SessionRate {
            ctl: RateController::new(cfg, now),
            budget,
            share,
            published: 0,
            congestion_seen: 0,
            congestion_backoffs: 0,
        }
    }

    /// One feedback datagram from the client (a bad one is counted by the
    /// controller and changes nothing).
    pub(super) fn on_feedback(&mut self, bytes: &[u8], now: Instant) {
        let _ = self.ctl.on_feedback_datagram(bytes, now);
    }

    /// Feeds the controller what left since the last call and the RTT; times
    /// out silence; applies pacing and padding to `sender` and publishes the
    /// gauges in `stats`. Returns the new media target, kbit/s, when it moved
    /// enough to tell the application (the caller publishes it, gauge
    /// included: [`super::host_session`]'s `Shared::publish_target`).
    pub(super) fn update<T: Transport>(
        &mut self,
        sender: &mut FrameSender<T>,
        rtt: std::time::Duration,
        fec_percent: u8,
        stats: &Stats,
        now: Instant,
    ) -> Option<u32> {
        let ctl = &mut self.ctl;
        sender.drain_sent(|r| {
            // Stamped with the time it left, not this call's: a frame's first
            // burst leaves in push_frame, up to a frame interval before the
            // next poll, and a late stamp would shrink the one-way delay the
            // queue is measured against.
            let at = r.at.unwrap_or(now);
            if r.filler {
                ctl.on_padding_sent(r.first_seq, r.count, r.bytes_each, at);
            } else {
                ctl.on_sent(r.first_seq, r.count, r.bytes_each, at);
            }
        });
        ctl.on_rtt(rtt);
        if ctl.poll_timeout().is_some_and(|t| t <= now) {
            ctl.handle_timeout(now);
        }
        let snap = ctl.snapshot();
        // The host-wide ceiling caps what this session may use on the wire.
        let cap = self.share.as_ref().map_or(u64::MAX, |s| s.cap(snap.estimate_bps));
        sender.set_path_pacing(snap.pacing_rate_bps.min(cap), snap.burst_bytes, now);
        sender.set_padding(
            snap.probe_padding_bps
                .min(cap.saturating_sub(snap.estimate_bps.min(cap))),
        );
        self.budget.fec_percent = fec_percent;
        let target = ctl.target_media_bps(&self.budget).min(self.budget.media_bps(cap));
        let events = snap.counters.backoffs();
        Stats::add(&stats.congestion_events, events - self.congestion_seen);
        self.congestion_seen = events;
        self.congestion_backoffs = snap.counters.congestion_backoffs();
        Stats::set(&stats.estimated_kbps, snap.estimate_bps.min(cap) / 1000);
        Stats::set(&stats.rtt_us, snap.rtt_us);
        Stats::set(&stats.queue_delay_us, snap.queue_delay_us);
        Stats::set(&stats.rate_state, snap.state.code());
        Stats::set(&stats.pacing_kbps, snap.pacing_rate_bps.min(cap) / 1000);
        Stats::set(&stats.delivery_kbps, snap.delivery_bps / 1000);
        Stats::set(&stats.competing_flow, u64::from(snap.competing));
        let c = &snap.counters;
        Stats::set(&stats.feedback_reports, c.feedback_used);
        Stats::set(&stats.feedback_dropped, c.feedback_dropped);
        Stats::set(&stats.stale_reports, c.stale_reports);
        Stats::set(&stats.delay_base_resets, c.base_resets);
        Stats::set(&stats.random_loss_reports, c.random_loss_reports);
        let moved = (target as f64 - self.published as f64).abs() > self.published as f64 * TARGET_CHANGE;
        if self.published == 0 || moved {
            self.published = target;
            return Some((target / 1000).min(u64::from(u32::MAX)) as u32);
        }
        None
    }

    /// Back-offs for congestion as of the last update
    /// ([`crate::rate::RateCounters::congestion_backoffs`]).
    pub(super) fn congestion_backoffs(&self) -> u64 {
        self.congestion_backoffs
    }

    /// When the controller next needs the clock.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.ctl.poll_timeout()
    }
}
