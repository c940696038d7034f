//! The rate controller: a delivery-rate model (BBR's measurement) steered by
//! queue delay (GCC's and SCReAM's signal) and loss at a full queue, with a
//! loss-based mode for a bottleneck shared with loss-based flows.
//! docs/CONGESTION.md gives the reasoning behind every constant here.

use std::time::{Duration, Instant};

use super::feedback::{Feedback, FeedbackError};
use super::sendlog::{SendLog, SentPacket};
use super::{RateConfig, RateCounters, RateSnapshot, RateState, WireBudget};

/// Start-up growth per round: ×1.5 (BBR's 2/ln 2 ≈ 2.89 overshoots a 50 ms
/// queue before a 25 ms feedback cadence can see it).
const STARTUP_GAIN: f64 = 1.5;
/// Queue delay that ends start-up, µs.
const STARTUP_EXIT_QD_US: f64 = 5_000.0;
/// Below this the queue counts as empty, µs.
const QD_LOW_US: f64 = 3_000.0;
/// A standing queue above this is congestion, µs.
const QD_HIGH_US: f64 = 10_000.0;
/// Loss with the queue at least this deep is loss at a full queue, µs.
const QD_LOSS_US: f64 = 4_000.0;
/// Delivery below this share of the send rate means the path is saturated.
const SATURATED: f64 = 0.9;
/// Back-off: the estimate becomes this share of the delivery rate (GCC's β
/// is 0.85; 0.9 keeps utilisation above 90 % with a queue-delay signal).
const BETA: f64 = 0.9;
/// Back-off in loss-based (competing) mode, on the estimate: gentler than
/// CUBIC's 0.7 so the video flow keeps its share.
const BETA_COMPETING: f64 = 0.8;
/// Loss (smoothed) above which FEC cannot keep up: back off whatever the
/// delay (GCC's loss-based controller starts at 10 %).
const HEAVY_LOSS: f64 = 0.10;
/// Growth per second near the last congestion point.
const GROWTH_NEAR: f64 = 0.08;
/// Growth per second away from it, at first; doubles every second of clean
/// growth up to `GROWTH_MAX`.
const GROWTH_FAR: f64 = 0.20;
const GROWTH_MAX: f64 = 0.60;
/// Growth per second beside a loss-based flow, as a share of the best
/// delivery rate of the 5–10 s before it was detected (the path): additive, like the other
/// flow's increase, so neither side takes the other's share.
const GROWTH_COMPETING: f64 = 0.05;
/// How long the last congestion point is remembered, µs: a path whose
/// queue stayed quiet that long may have grown.
const NEAR_MEMORY_US: u64 = 3_000_000;
/// "Near" the last congestion point: this band around it.
const NEAR_LOW: f64 = 0.80;
const NEAR_HIGH: f64 = 1.0;
/// Pacing gain in steady state: the sender's queue drains after a keyframe
/// while the bottleneck sees at most 10 % above the estimate.
const PACING_GAIN: f64 = 1.1;
/// Pacing gain while draining the start-up queue.
const DRAIN_GAIN: f64 = 0.75;
/// The estimate never grows past this multiple of the best delivery rate
/// measured recently (GCC's 1.5 × incoming rate): growth must be proven.
const PROVEN_GAIN: f64 = 1.5;
/// One back-off never cuts below this share of the estimate.
const MAX_CUT: f64 = 0.3;
/// Window of the one-way-delay minimum (two halves), µs.
const BASE_HALF_WINDOW_US: u64 = 5_000_000;
/// Feedback silence before holding, in feedback intervals (at least 100 ms).
const SILENCE_INTERVALS: u32 = 4;
/// Silence before decaying, and the decay's half-life.
const DECAY_AFTER: Duration = Duration::from_secs(1);
const DECAY_HALF_LIFE_S: f64 = 1.0;
/// The decay stops at this share of the estimate when silence began.
const DECAY_FLOOR: f64 = 0.125;
/// Queue delay that cannot be a queue (a clock jump), µs: the base restarts.
const ABSURD_QD_US: f64 = 3_000_000.0;
/// One report spans tens of ms: its one-way delays cannot differ by more
/// than this, µs (a queue that deep is not a queue we can control anyway).
const MAX_SPREAD_US: i64 = 1_000_000;
/// Ineffective delay back-offs in a row that reveal a loss-based competitor.
const INEFFECTIVE_TO_COMPETE: u32 = 2;
/// Queue delay rise over ~100 ms that means the queue grows, µs.
const TREND_US: f64 = 1_000.0;
/// Delivery below this share of the send rate: the queue grows.
const GROWING: f64 = 0.97;
/// A congestion episode: cuts closer than this to the previous one are its
/// follow-ups and need a growing queue, µs.
const EPISODE_US: u64 = 1_000_000;
/// Reports of queue delay kept for the trend.
const QD_RING: usize = 4;
/// Queue empty this long ends the competing mode, µs.
const COMPETING_EXIT_US: u64 = 1_000_000;
/// Reports refused in a row (as older than the last used) before the
/// controller starts over from the next one.
const RESYNC_AFTER: u32 = 8;
/// Recent delivery rates kept.
const RECV_HISTORY: usize = 4;

/// Two-bucket windowed minimum (a min over the last 5–10 s).
#[derive(Clone, Debug)]
struct WindowedMin {
    cur: i64,
    prev: i64,
    started_us: u64,
}

impl WindowedMin {
    fn new() -> WindowedMin {
        WindowedMin {
            cur: i64::MAX,
            prev: i64::MAX,
            started_us: 0,
        }
    }

    fn update(&mut self, v: i64, now_us: u64) {
        if now_us.saturating_sub(self.started_us) >= BASE_HALF_WINDOW_US {
            self.prev = self.cur;
            self.cur = i64::MAX;
            self.started_us = now_us;
        }
        self.cur = self.cur.min(v);
    }

    fn get(&self) -> i64 {
        self.cur.min(self.prev)
    }
}

/// Two-bucket windowed maximum over the same window, of a rate.
#[derive(Clone, Debug)]
struct WindowedMax(WindowedMin);

impl WindowedMax {
    fn update(&mut self, v: f64, now_us: u64) {
        self.0.update(-(v as i64), now_us);
    }

    fn get(&self) -> f64 {
        match self.0.get() {
            i64::MAX => 0.0,
            v => -(v as f64),
        }
    }
}

/// The newest paired sample of the previous report: where the next delivery
/// rate is measured from.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    arrival_us: u64,
    bytes_received: u64,
    sent: SentPacket,
}

/// Cumulative fields of the last report used.
#[derive(Clone, Copy, Debug)]
struct LastReport {
    seq: u32,
    packets_received: u64,
    bytes_received: u64,
    packets_lost: u64,
    newest_arrival_us: u64,
}

/// What one report says, reduced.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    qd_avg: f64,
    qd_max: f64,
    recv_bps: Option<f64>,
    send_bps: Option<f64>,
    loss: f64,
}

/// A byte-rate meter over ~20 ms buckets (media only: padding excluded).
#[derive(Clone, Copy, Debug, Default)]
struct Meter {
    bucket_start_us: u64,
    bucket_bytes: u64,
    bps: f64,
}

impl Meter {
    fn add(&mut self, bytes: u64, now_us: u64) {
        self.roll(now_us);
        self.bucket_bytes += bytes;
    }

    fn roll(&mut self, now_us: u64) {
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

/// One session's rate controller. See the [module](super) docs.
#[derive(Clone, Debug)]
pub struct RateController {
    cfg: RateConfig,
    epoch: Instant,
    min: f64,
    ceiling: f64,
    log: SendLog,
    state: RateState,
    est: f64,
    srtt: Option<Duration>,
    last: Option<LastReport>,
    anchor: Option<Anchor>,
    base: WindowedMin,
    qd_us: f64,
    loss_smooth: f64,
    reading: Reading,
    recv_hist: [f64; RECV_HISTORY],
    recv_next: usize,
    media: Meter,
    last_update_us: u64,
    last_feedback_us: Option<u64>,
    hold_until_us: u64,
    drain_until_us: u64,
    last_congestion_est: f64,
    growth_since_us: u64,
    competing: bool,
    ineffective: u32,
    /// Queue delay at the last delay cut.
    cut_qd_us: f64,
    last_cut_us: u64,
    queue_empty_since_us: Option<u64>,
    sat_run: u32,
    recv_prev: f64,
    /// The path rate measured before a competitor was detected.
    competing_base: f64,
    /// Best delivery rate of the last 5–10 s.
    path_max: WindowedMax,
    qd_ring: [f64; QD_RING],
    qd_next: usize,
    qd_trend_base: f64,
    silence_est: Option<f64>,
    /// The state a silence interrupted.
    before_hold: RateState,
    refused_run: u32,
    counters: RateCounters,
}

impl RateController {
    /// A controller for one session, starting at `now`.
    pub fn new(cfg: RateConfig, now: Instant) -> RateController {
        let ceiling = cfg.probe_ceiling() as f64;
        let max = cfg.max_bps.max(1) as f64;
        let min = (cfg.min_bps.max(1) as f64).min(max);
        let (state, est) = if cfg.adaptive {
            (RateState::Startup, (cfg.initial_bps as f64).clamp(min, max))
        } else {
            (RateState::Fixed, max)
        };
        RateController {
            cfg,
            epoch: now,
            min,
            ceiling,
            log: SendLog::new(cfg.send_log_runs, now),
            state,
            est,
            srtt: None,
            last: None,
            anchor: None,
            base: WindowedMin::new(),
            qd_us: 0.0,
            loss_smooth: 0.0,
            reading: Reading::default(),
            recv_hist: [0.0; RECV_HISTORY],
            recv_next: 0,
            media: Meter::default(),
            last_update_us: 0,
            last_feedback_us: None,
            hold_until_us: 0,
            drain_until_us: 0,
            last_congestion_est: 0.0,
            growth_since_us: 0,
            competing: false,
            ineffective: 0,
            cut_qd_us: 0.0,
            last_cut_us: 0,
            queue_empty_since_us: None,
            sat_run: 0,
            recv_prev: 0.0,
            competing_base: 0.0,
            path_max: WindowedMax(WindowedMin::new()),
            qd_ring: [0.0; QD_RING],
            qd_next: 0,
            qd_trend_base: 0.0,
            silence_est: None,
            before_hold: RateState::Steady,
            refused_run: 0,
            counters: RateCounters::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    /// Media datagrams `first_seq .. first_seq + count` of `bytes_each` wire
    /// bytes were handed to the kernel at `now`. O(1), no allocation.
    pub fn on_sent(&mut self, first_seq: u64, count: u32, bytes_each: u32, now: Instant) {
        if self.log.on_sent(first_seq, count, bytes_each, now, false) {
            let t = self.log.micros(now);
            self.media.add(u64::from(count) * u64::from(bytes_each), t);
        }
    }

    /// Like [`RateController::on_sent`] for probe filler (padding) the
    /// sender added at [`RateSnapshot::probe_padding_bps`].
    pub fn on_padding_sent(&mut self, first_seq: u64, count: u32, bytes_each: u32, now: Instant) {
        self.log.on_sent(first_seq, count, bytes_each, now, true);
    }

    /// The QUIC connection's smoothed RTT (sets the round length of probing
    /// and holds).
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.srtt = Some(rtt.clamp(Duration::from_micros(100), Duration::from_secs(10)));
    }

    /// The send log (for diagnostics).
    pub fn send_log(&self) -> &SendLog {
        &self.log
    }

    /// Decodes and applies one feedback datagram. A refused datagram is
    /// counted in [`RateCounters::feedback_dropped`] and changes nothing else.
    pub fn on_feedback_datagram(&mut self, bytes: &[u8], now: Instant) -> Result<(), FeedbackError> {
        match Feedback::decode(bytes) {
            Ok(fb) => {
                self.on_feedback(&fb, now);
                Ok(())
            }
            Err(e) => {
                self.counters.feedback_dropped += 1;
                Err(e)
            }
        }
    }

    fn round_us(&self) -> u64 {
        let rtt = self.srtt.unwrap_or(Duration::from_millis(50));
        rtt.max(self.cfg.feedback_interval).as_micros() as u64
    }

    /// Applies one client report. Reports that contradict earlier ones or
    /// what was sent are counted drops; older ones are ignored (stale).
    pub fn on_feedback(&mut self, fb: &Feedback, now: Instant) {
        if fb.check().is_err() {
            self.counters.feedback_dropped += 1;
            return;
        }
        let now_us = self.log.micros(now);
        self.media.roll(now_us);
        let newest_arrival = fb.samples().last().map(|s| s.arrival_us);
        if fb.packets_received > 0 && self.log.last_seq().is_none_or(|l| fb.highest_seq > l) {
            // Claims a sequence the host never sent.
            self.counters.feedback_dropped += 1;
            return;
        }
        let sent = self.log.counters();
        if fb.packets_received > sent.packets
            || fb.packets_lost > sent.packets
            || fb.bytes_received > self.log.total_bytes()
        {
            // More than was ever sent.
            self.counters.feedback_dropped += 1;
            return;
        }
        if let Some(last) = self.last {
            // Order by content, not by the report number: a report can only
            // be newer if its counters and arrivals did not run backwards.
            let backwards = fb.packets_received < last.packets_received
                || fb.bytes_received < last.bytes_received
                || fb.packets_lost < last.packets_lost
                || newest_arrival.is_some_and(|a| a < last.newest_arrival_us);
            let duplicate = fb.seq == last.seq;
            if backwards || duplicate {
                if fb.seq.wrapping_sub(last.seq) > u32::MAX / 2 || duplicate {
                    self.counters.feedback_stale += 1;
                } else {
                    self.counters.feedback_dropped += 1;
                }
                self.refused_run += 1;
                if self.refused_run < RESYNC_AFTER {
                    return;
                }
                // Refused many times in a row: the reference itself was bad
                // (one corrupt report that passed every check). Start over
                // from this report.
                self.last = None;
                self.anchor = None;
                self.base = WindowedMin::new();
            }
        }
        self.refused_run = 0;
        let prev = self.last.replace(LastReport {
            seq: fb.seq,
            packets_received: fb.packets_received,
            bytes_received: fb.bytes_received,
            packets_lost: fb.packets_lost,
            newest_arrival_us: newest_arrival.unwrap_or(self.last.map_or(0, |l| l.newest_arrival_us)),
        });
        self.counters.feedback_used += 1;
        self.last_feedback_us = Some(now_us);
        if let Some(est) = self.silence_est.take() {
            // Feedback is back: resume what silence interrupted, from where
            // it left the estimate.
            self.last_congestion_est = est;
            if self.state == RateState::Hold {
                self.state = self.before_hold;
            }
        }
        if self.state == RateState::Fixed {
            return;
        }
        let reading = self.read(fb, prev, now_us);
        self.reading = reading;
        self.decide(reading, now_us);
        self.est = self.est.clamp(self.min, self.ceiling);
        self.last_update_us = now_us;
    }

    /// Pairs samples with send records: queue delay, delivery and loss.
    fn read(&mut self, fb: &Feedback, prev: Option<LastReport>, now_us: u64) -> Reading {
        let mut owd = [0i64; super::feedback::MAX_SAMPLES];
        let mut n = 0;
        let mut newest: Option<(u64, SentPacket)> = None;
        for s in fb.samples() {
            match self.log.lookup(s.seq) {
                Some(p) => {
                    owd[n] = s.arrival_us as i64 - p.sent_us as i64;
                    n += 1;
                    newest = Some((s.arrival_us, p));
                }
                None => self.counters.samples_unmatched += 1,
            }
        }
        let mut r = Reading::default();
        // Robust order statistics: one odd sample (reordering, or a report
        // bent on misleading) moves neither the base nor the queue estimate.
        let sorted = &mut owd[..n];
        sorted.sort_unstable();
        let trim = n / 8;
        if n > 0 && sorted[n - 1] - sorted[0] > MAX_SPREAD_US {
            // Arrival times no path produces: ignore the samples.
            self.counters.feedback_dropped += 1;
            n = 0;
            newest = None;
        }
        if n > 0 {
            let sorted = &owd[..n];
            self.base.update(sorted[trim], now_us);
            let base = self.base.get();
            let kept = &sorted[trim..n - trim];
            let sum: f64 = kept.iter().map(|&d| (d - base) as f64).sum();
            r.qd_avg = sum / kept.len() as f64;
            r.qd_max = (sorted[n - 1 - trim] - base) as f64;
            if r.qd_max > ABSURD_QD_US {
                // The client's clock jumped: restart the base from this report.
                self.base = WindowedMin::new();
                self.base.update(sorted[trim], now_us);
                r.qd_avg = 0.0;
                r.qd_max = 0.0;
            }
            self.qd_us = r.qd_avg;
        }
        if let Some((arrival_us, sent)) = newest {
            if let Some(a) = self.anchor {
                let d_arr = arrival_us.saturating_sub(a.arrival_us);
                let d_sent = sent.sent_us.saturating_sub(a.sent.sent_us);
                if sent.seq > a.sent.seq && d_arr >= 2_000 && fb.bytes_received > a.bytes_received {
                    let recv = (fb.bytes_received - a.bytes_received) as f64 * 8e6 / d_arr as f64;
                    r.recv_bps = Some(recv);
                    self.recv_prev = self.recv_hist[(self.recv_next + RECV_HISTORY - 1) % RECV_HISTORY];
                    self.recv_hist[self.recv_next % RECV_HISTORY] = recv;
                    self.path_max.update(recv, now_us);
                    self.recv_next += 1;
                    if d_sent >= 1_000 {
                        let bytes = sent.bytes_through().saturating_sub(a.sent.bytes_through());
                        r.send_bps = Some(bytes as f64 * 8e6 / d_sent as f64);
                    }
                }
            }
            self.anchor = Some(Anchor {
                arrival_us,
                bytes_received: fb.bytes_received,
                sent,
            });
        }
        if let Some(p) = prev {
            let lost = fb.packets_lost - p.packets_lost;
            let got = fb.packets_received - p.packets_received;
            if lost + got > 0 {
                r.loss = lost as f64 / (lost + got) as f64;
            }
        }
        self.loss_smooth += 0.25 * (r.loss - self.loss_smooth);
        r
    }

    fn recv_max(&self) -> f64 {
        self.recv_hist.iter().copied().fold(0.0, f64::max)
    }

    fn decide(&mut self, r: Reading, now_us: u64) {
        let round = self.round_us();
        let dt = now_us.saturating_sub(self.last_update_us).min(2 * round) as f64 / 1e6;
        let saturated = matches!((r.recv_bps, r.send_bps),
            (Some(rv), Some(sd)) if rv < SATURATED * sd * (1.0 - r.loss));
        let tail_loss = r.loss > 0.0 && (r.qd_max >= QD_LOSS_US || saturated);
        if r.loss > 0.0 && !tail_loss {
            self.counters.random_loss_reports += 1;
        }
        self.track_queue(r, now_us);

        match self.state {
            RateState::Startup => {
                if r.qd_avg >= STARTUP_EXIT_QD_US || tail_loss || (saturated && r.qd_max >= QD_LOW_US) {
                    let proven = self.recv_max().max(self.min);
                    self.est = (BETA * proven).min(self.est);
                    self.last_congestion_est = proven;
                    self.state = RateState::Drain;
                    self.drain_until_us = now_us + round;
                    self.growth_since_us = now_us;
                } else {
                    let grown = self.est * STARTUP_GAIN.powf(dt * 1e6 / round as f64);
                    let proven = PROVEN_GAIN * self.recv_max().max(self.cfg.initial_bps as f64);
                    self.est = grown.min(proven.max(self.est)).min(self.ceiling);
                    if self.est >= self.ceiling {
                        self.state = RateState::Steady;
                        self.growth_since_us = now_us;
                    }
                }
            }
            RateState::Drain => {
                if r.qd_avg < QD_LOW_US || now_us >= self.drain_until_us + 4 * round {
                    self.state = RateState::Steady;
                    self.hold_until_us = now_us;
                }
            }
            RateState::Steady | RateState::Backoff | RateState::Hold => {
                if self.state == RateState::Backoff && now_us >= self.hold_until_us {
                    self.state = RateState::Steady;
                }
                self.steady(r, now_us, dt, tail_loss);
            }
            RateState::Fixed => {}
        }
    }

    fn steady(&mut self, r: Reading, now_us: u64, dt: f64, tail_loss: bool) {
        let heavy = self.loss_smooth > HEAVY_LOSS;
        // The queue grows when it rose over the last ~100 ms, or when the
        // client receives slower than we send.
        let rising = r.qd_avg - self.qd_trend_base >= TREND_US;
        let growing = rising
            || matches!((r.recv_bps, r.send_bps),
                (Some(rv), Some(sd)) if rv < GROWING * sd * (1.0 - r.loss));
        // The first reaction of an episode needs only a deep queue; later
        // ones need it to be still growing: a standing delay our cut did not
        // drain is not ours (a delay spike, another flow).
        let fresh = now_us >= self.last_cut_us + EPISODE_US;
        let deep = self.sat_run >= 2;
        let delay = !self.competing
            && ((r.qd_avg >= QD_HIGH_US && (growing || fresh)) || (r.qd_avg >= QD_LOW_US && deep));
        let tail = tail_loss && (!self.competing || r.qd_max >= QD_LOSS_US);
        let before = self.est;
        let recv = r.recv_bps.unwrap_or(before).max(self.recv_prev);
        // Twice in a row the client received well below what we sent: the
        // path carries about that much (BBR's delivery rate). Otherwise the
        // estimate was just past the path: a step back suffices.
        let target = if self.competing {
            BETA_COMPETING * before
        } else if heavy && !tail && !delay {
            before * (1.0 - 0.5 * self.loss_smooth)
        } else if deep {
            BETA * recv
        } else {
            BETA * before
        };
        let can_cut = now_us >= self.hold_until_us || (deep && target < BETA * before);
        if (delay || tail || heavy) && can_cut && target < before {
            if heavy && !tail && !delay {
                self.counters.backoffs_heavy_loss += 1;
            } else if delay {
                self.counters.backoffs_delay += 1;
                if deep {
                    // We overran the path ourselves: that says nothing of others.
                    self.ineffective = 0;
                    self.cut_qd_us = r.qd_avg;
                } else {
                    self.judge_cut(r.qd_avg, growing, now_us);
                }
            } else {
                self.counters.backoffs_loss += 1;
            }
            self.est = target.max(MAX_CUT * before);
            if !(heavy && !tail && !delay) {
                // Loss that FEC cannot repair says nothing about capacity.
                self.last_congestion_est = before;
            }
            self.last_cut_us = now_us;
            self.hold_until_us = now_us + (2 * self.round_us()).max(100_000);
            self.growth_since_us = self.hold_until_us;
            self.state = RateState::Backoff;
            return;
        }
        if self.state == RateState::Backoff {
            return;
        }
        let app_limited = r.send_bps.is_some_and(|s| s < 0.8 * self.est);
        let queue_ok = if self.competing {
            !tail_loss
        } else {
            r.qd_avg < QD_LOW_US
        };
        if !queue_ok || app_limited || now_us < self.hold_until_us {
            if !queue_ok {
                self.growth_since_us = now_us;
            }
            return;
        }
        let near = !self.competing
            && now_us < self.last_cut_us + NEAR_MEMORY_US
            && self.last_congestion_est > 0.0
            && self.est >= NEAR_LOW * self.last_congestion_est
            && self.est <= NEAR_HIGH * self.last_congestion_est;
        if self.competing {
            // Additive, in shares of the path the flows share (as measured
            // before the other flow came): AIMD beside
            // AIMD converges to a share where neither starves.
            let step = GROWTH_COMPETING * self.competing_base.max(self.est) * dt;
            self.est = (self.est + step).min(PROVEN_GAIN * self.recv_max().max(self.est));
            return;
        }
        let rate = if near {
            self.growth_since_us = now_us;
            GROWTH_NEAR
        } else {
            let clean_s = now_us.saturating_sub(self.growth_since_us) as f64 / 1e6;
            (GROWTH_FAR * 2f64.powf(clean_s)).min(GROWTH_MAX)
        };
        let grown = self.est * (1.0 + rate).powf(dt);
        let proven = PROVEN_GAIN * self.recv_max();
        self.est = grown.min(proven.max(self.est));
    }

    /// A delay cut made while the queue is still as deep as at the previous
    /// cut, and still rising, did not help: the queue is not ours. Twice in a
    /// row reveals a loss-based competitor; from then on the controller
    /// backs off for loss at the full queue only (GCC's answer is an
    /// adaptive threshold; BBR's a delivery-rate model that ignores delay).
    fn judge_cut(&mut self, qd_us: f64, growing: bool, now_us: u64) {
        let recent = now_us < self.last_cut_us + 2 * EPISODE_US;
        if recent && growing && qd_us >= self.cut_qd_us - 1_000.0 {
            self.ineffective += 1;
            if self.ineffective >= INEFFECTIVE_TO_COMPETE && !self.competing {
                self.competing = true;
                self.competing_base = self.path_max.get().max(self.est);
                self.counters.competing_detected += 1;
            }
        } else {
            self.ineffective = 0;
        }
        self.cut_qd_us = qd_us;
    }

    /// The competing mode ends once the queue stayed empty for a second.
    fn track_queue(&mut self, r: Reading, now_us: u64) {
        if r.qd_avg < QD_LOW_US {
            self.ineffective = 0;
            let since = *self.queue_empty_since_us.get_or_insert(now_us);
            if self.competing && now_us - since >= COMPETING_EXIT_US {
                self.competing = false;
            }
        } else {
            self.queue_empty_since_us = None;
        }
        self.sat_run = match (r.recv_bps, r.send_bps) {
            (Some(rv), Some(sd)) if rv < SATURATED * sd * (1.0 - r.loss) => self.sat_run + 1,
            (Some(_), Some(_)) => 0,
            _ => self.sat_run,
        };
        // Queue delay ~100 ms ago (four reports) for the trend.
        self.qd_trend_base = self.qd_ring[self.qd_next % QD_RING];
        self.qd_ring[self.qd_next % QD_RING] = r.qd_avg;
        self.qd_next += 1;
    }

    /// When the controller next needs [`RateController::handle_timeout`]:
    /// the moment feedback silence turns into a hold, then every 50 ms of
    /// decay. `None` in fixed mode or before anything was sent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == RateState::Fixed {
            return None;
        }
        let since = self.last_feedback_us.or_else(|| self.log.last_seq().map(|_| 0))?;
        let hold = self.silence_after_us();
        let at = if self.silence_est.is_some() {
            self.last_update_us + 50_000
        } else {
            since + hold
        };
        Some(self.epoch + Duration::from_micros(at))
    }

    fn silence_after_us(&self) -> u64 {
        (self.cfg.feedback_interval.as_micros() as u64 * u64::from(SILENCE_INTERVALS)).max(100_000)
    }

    /// Feedback silence: after four intervals the estimate holds (no growth,
    /// no padding); after a second it halves every second, down to an eighth
    /// of where it was (never below the floor). Fresh feedback ends it.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == RateState::Fixed {
            return;
        }
        let now_us = self.log.micros(now);
        let Some(since) = self.last_feedback_us.or_else(|| self.log.last_seq().map(|_| 0)) else {
            return;
        };
        let silent = now_us.saturating_sub(since);
        if silent < self.silence_after_us() {
            return;
        }
        let start = *self.silence_est.get_or_insert_with(|| {
            self.counters.silences += 1;
            self.est
        });
        if self.state != RateState::Hold {
            self.before_hold = match self.state {
                RateState::Startup => RateState::Startup,
                _ => RateState::Steady,
            };
        }
        self.state = RateState::Hold;
        let decay_us = DECAY_AFTER.as_micros() as u64;
        if silent > decay_us {
            let halvings = (silent - decay_us) as f64 / 1e6 / DECAY_HALF_LIFE_S;
            let floor = (DECAY_FLOOR * start).max(self.min);
            self.est = (start * 0.5f64.powf(halvings)).max(floor).min(self.est);
        }
        self.est = self.est.clamp(self.min, self.ceiling);
        self.last_update_us = now_us;
    }

    /// The media rate the encoder should produce, bit/s: the estimate less
    /// `budget`'s overhead, capped at `max_bps` (in fixed mode: `max_bps`).
    pub fn target_media_bps(&self, budget: &WireBudget) -> u64 {
        if self.state == RateState::Fixed {
            return self.cfg.max_bps;
        }
        budget.media_bps(self.est as u64).min(self.cfg.max_bps)
    }

    /// Path estimate, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.est as u64
    }

    /// What the controller is doing.
    pub fn state(&self) -> RateState {
        self.state
    }

    /// The controller's outputs now.
    pub fn snapshot(&self) -> RateSnapshot {
        let est = self.est;
        let pacing = match self.state {
            RateState::Startup => est,
            RateState::Drain => DRAIN_GAIN * est,
            RateState::Fixed => (2.0 * est).min(self.ceiling.max(est)),
            // Cut for congestion: pace below the estimate until the queue drained.
            RateState::Backoff if self.qd_us >= QD_LOW_US => DRAIN_GAIN * est,
            _ if self.qd_us >= QD_LOW_US || self.competing => est,
            _ => (PACING_GAIN * est).min(self.ceiling.max(est)),
        };
        let padding = if self.state == RateState::Startup {
            (est - self.media.bps).max(0.0)
        } else {
            0.0
        };
        RateSnapshot {
            state: self.state,
            estimate_bps: est as u64,
            pacing_rate_bps: pacing as u64,
            burst_bytes: self.cfg.burst_bytes,
            probe_padding_bps: padding as u64,
            delivery_bps: self.reading.recv_bps.unwrap_or(0.0) as u64,
            queue_delay_us: self.qd_us.max(0.0) as u64,
            rtt_us: self.srtt.map_or(0, |d| d.as_micros() as u64),
            loss_permille: (self.reading.loss * 1000.0).round() as u32,
            competing: self.competing,
            counters: self.counters,
        }
    }
}
