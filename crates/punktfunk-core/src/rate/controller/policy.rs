//! The controller's decisions: what a report means (growing queue, loss at
//! a full queue, random loss, a competitor) and what the estimate does about
//! it. docs/CONGESTION.md explains each rule and constant.

use super::*;

/// Start-up growth per round: ×1.5 (BBR's 2/ln 2 ≈ 2.89 overshoots a 50 ms
/// queue before a 25 ms feedback cadence can see it).
const STARTUP_GAIN: f64 = 1.5;
/// Probe growth per round (BBR's ProbeBW up-gain).
const PROBE_GAIN: f64 = 1.25;
/// Application-limited this long, and no cut for as long, before a probe, µs.
const PROBE_AFTER_US: u64 = 5_000_000;
/// Rounds a probe may last (1.25^20 ≈ 87×).
const PROBE_ROUNDS: u64 = 20;
/// Sending below this share of the estimate (averaged) is application-limited.
const APP_LIMITED: f64 = 0.8;
/// Sending at this share of the estimate (averaged) restarts the wait for a
/// probe: the hysteresis keeps a keyframe's burst from restarting it.
const NOT_APP_LIMITED: f64 = 0.9;
/// Weight of one report in the average send rate (~10 reports).
const SEND_AVG_GAIN: f64 = 0.1;
/// Queue delay that ends start-up, µs.
const STARTUP_EXIT_QD_US: f64 = 5_000.0;
/// A standing queue above this is congestion, µs.
const QD_HIGH_US: f64 = 10_000.0;
/// Loss with the queue at least this deep is loss at a full queue, µs.
const QD_LOSS_US: f64 = 4_000.0;
/// Reports in a row that must reach `QD_LOSS_US` before a loss is the
/// queue's: a full queue stays full for the next report, while a client
/// whose reader lost the CPU for a few ms stamps one report's arrivals late,
/// and with random loss in every report each such stall read as a tail drop
/// (2 % loss and twenty 4 ms reader stalls a second: estimate mean 68–79 %
/// of the link over seeds 1–5, 85–89 % with two reports).
const DEEP_QD_REPORTS: u32 = 2;
/// Delay cuts in a row that leave the queue delay unmoved (see
/// `STUCK_QD_SHARE`) before the delay base is learnt again.
const STUCK_CUTS: u32 = 3;
/// "Unmoved": the queue delay after a cut still this share of the one at
/// the cut before (a queue we caused drains when we cut).
const STUCK_QD_SHARE: f64 = 0.8;
/// Reports in a row that must see the queue before a ramp stops.
const RAMP_STOP_REPORTS: u32 = 2;
/// Reports in a row with the path saturated that make a loss the queue's.
const SAT_RUN_LOSS: u32 = 3;
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
/// The estimate never grows past this multiple of the best delivery rate
/// measured recently (GCC's 1.5 × incoming rate): growth must be proven.
const PROVEN_GAIN: f64 = 1.5;
/// One back-off never cuts below this share of the estimate.
const MAX_CUT: f64 = 0.3;
/// Ineffective delay back-offs in a row that reveal a loss-based competitor.
const INEFFECTIVE_TO_COMPETE: u32 = 2;
/// Queue delay rise over ~100 ms that means the queue grows, µs.
const TREND_US: f64 = 1_000.0;
/// Delivery below this share of the send rate: the queue grows.
const GROWING: f64 = 0.97;
/// A congestion episode: cuts closer than this to the previous one are its
/// follow-ups and need a growing queue, µs.
const EPISODE_US: u64 = 1_000_000;
/// Queue empty this long ends the competing mode, µs.
const COMPETING_EXIT_US: u64 = 1_000_000;
/// In the competing mode, a queue this deep and growing is cut once per
/// episode though nothing was lost, µs (deeper than a bottleneck buffer's
/// usual 50 ms).
const QD_COMPETING_MAX_US: f64 = 60_000.0;
/// Queue empty this long forgets ineffective cuts, µs: a competitor's queue
/// comes and goes with its window (one empty report proves nothing).
const INEFFECTIVE_FORGET_US: u64 = 500_000;
/// Leaving the competing mode below this share of the path measured before
/// it, the controller ramps as at start-up (the other flow's share is free).
const RAMP_AFTER_COMPETING: f64 = 0.5;
/// Beside a loss-based flow, sending below this share of the estimate is
/// application-limited: the other flow's load costs this host CPU time as
/// well, and a sender late by a few ms must not stop the share's growth.
const APP_LIMITED_COMPETING: f64 = 0.5;

impl RateController {
    pub(super) fn decide(&mut self, r: Reading, now_us: u64) {
        let round = self.round_us();
        let dt = now_us.saturating_sub(self.last_update_us).min(2 * round) as f64 / 1e6;
        self.track_queue(r, now_us);
        // Loss is the queue's when the queue is deep, or when the path stayed
        // saturated for three reports (~75 ms: a queue-less policer): a
        // saturated report or two beside a loss are as often the receiver's
        // scheduling (a busy client reads in bursts) as a full queue, and
        // random loss is FEC's to repair.
        let tail_loss = r.loss > 0.0 && (self.deep_qd_run >= DEEP_QD_REPORTS || self.sat_run >= SAT_RUN_LOSS);
        if r.loss > 0.0 && !tail_loss {
            self.counters.random_loss_reports += 1;
        }

        match self.state {
            RateState::Startup if self.ramp_wait_until_us.is_some() => {
                // Resumed after stale reports: neither grow nor stop on the
                // backlog that made them stale. Once it drained, ramp on
                // what the path delivers from now on (a ramp on the rates
                // reported while the client caught up jumped to 1.5x the
                // path and stalled the client again, on the real path).
                if r.qd_avg < QD_LOW_US || self.ramp_wait_until_us.is_some_and(|t| now_us >= t) {
                    self.ramp_wait_until_us = None;
                    self.recv_hist = [0.0; super::RECV_HISTORY];
                    self.recv_prev = 0.0;
                }
            }
            RateState::Startup | RateState::Probe => {
                let probing = self.state == RateState::Probe;
                // A ramp ends on the queue, not on one report's late samples:
                // loss counts here only beside a standing queue (a scheduling
                // hiccup of the client's makes qd_max deep, not the average).
                let ramp_loss = tail_loss && (r.qd_avg >= QD_LOW_US || self.sat_run >= SAT_RUN_LOSS);
                let stop = r.qd_avg >= STARTUP_EXIT_QD_US
                    || ramp_loss
                    || (self.sat_run >= 2 && r.qd_max >= QD_LOW_US);
                // Twice in a row: a real queue persists for the next report, a
                // late report (the client descheduled for a few ms) does not.
                self.ramp_stop_run = if stop { self.ramp_stop_run + 1 } else { 0 };
                if self.ramp_stop_run >= RAMP_STOP_REPORTS {
                    self.ramp_stop_run = 0;
                    // Behind a standing queue the client receives at the
                    // path's rate now; the ramp's best report may be from
                    // before a capacity drop (a session whose encoder never
                    // filled the path stays in its ramp, its estimate 1.5x
                    // what it sent: seen on the real path at 1170 Mbit/s
                    // when an 800 link fell to 200).
                    let recent = r.recv_bps.map(|v| v.max(self.recv_prev));
                    let proven = match recent {
                        Some(v) if self.sat_run >= 2 || r.qd_avg >= QD_LOW_US => v,
                        _ => self.recv_max(),
                    }
                    .max(self.min);
                    // A probe keeps what was already known to work.
                    let floor = if probing { self.probe_start_est } else { 0.0 };
                    let before = self.est;
                    self.est = (BETA * proven).max(floor).min(self.est);
                    // A ramp that overshot backs off like any other cut
                    // (and frames it lost are congestion's, not FEC's).
                    if self.est < before {
                        if ramp_loss {
                            self.counters.backoffs_loss += 1;
                        } else {
                            self.counters.backoffs_delay += 1;
                        }
                    }
                    self.last_congestion_est = proven;
                    self.ramp_cap = None;
                    self.state = RateState::Drain;
                    self.drain_until_us = now_us + round;
                    self.growth_since_us = now_us;
                } else if probing && now_us >= self.probe_until_us {
                    // The padding never came (or the path never pushed back):
                    // keep only what the client saw delivered.
                    self.est = self.recv_max().min(self.est).max(self.probe_start_est);
                    self.state = RateState::Steady;
                    self.app_limited_since_us = None;
                } else {
                    let gain = if probing { PROBE_GAIN } else { STARTUP_GAIN };
                    let grown = self.est * gain.powf(dt * 1e6 / round as f64);
                    let proven = PROVEN_GAIN * self.recv_max().max(self.cfg.initial_bps as f64);
                    // A ramp after stale reports ends where the estimate
                    // stood before them: on a host whose threads ran late,
                    // one more late report let it ramp to 1.5x the path.
                    let cap = self
                        .ramp_cap
                        .filter(|_| !probing)
                        .map_or(self.ceiling, |c| c.min(self.ceiling));
                    self.est = grown.min(proven.max(self.est)).min(cap);
                    if self.est >= cap {
                        self.ramp_cap = None;
                        self.state = RateState::Steady;
                        self.growth_since_us = now_us;
                        self.app_limited_since_us = None;
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
        // Beside a loss-based flow delay is no signal, but a queue past any
        // bottleneck buffer's that still grows, without a loss, is not the
        // other flow filling a buffer: it is a host's backlog filling up
        // (seen on the real path: 70-130 ms, TCP's round trip with it and
        // its share gone). Once per episode.
        let bloat = self.competing && r.qd_avg >= QD_COMPETING_MAX_US && growing && fresh;
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
        if (delay || tail) && !deep && !self.competing && can_cut && target < before {
            // Cut after cut, and the queue delay stays where it was: a queue
            // that does not drain when we send less is not ours. Beside a
            // loss-based flow the competing mode takes over; otherwise the
            // delay base is stale (set too low by an arrival stamped early),
            // and every random loss would look like the queue's. Learn the
            // base again instead of cutting on. Not while delivery falls
            // short of sending (saturated): that queue is real (after a
            // capacity drop it drains over several cuts, and a base learnt
            // on it would hide it).
            let unmoved = self.stuck_qd_us > 0.0
                && r.qd_avg >= STUCK_QD_SHARE * self.stuck_qd_us
                && now_us < self.last_cut_us + 2 * EPISODE_US;
            self.stuck_cuts = if unmoved { self.stuck_cuts + 1 } else { 0 };
            self.stuck_qd_us = r.qd_avg;
            if self.stuck_cuts >= STUCK_CUTS {
                self.stuck_cuts = 0;
                self.stuck_qd_us = 0.0;
                self.base = WindowedMin::new();
                self.counters.base_resets += 1;
                self.last_cut_us = now_us;
                self.hold_until_us = now_us + (2 * self.round_us()).max(100_000);
                return;
            }
        }
        if (delay || tail || heavy || bloat) && can_cut && target < before {
            // Loss that FEC cannot repair, and nothing else: it says nothing
            // about capacity.
            let heavy_only = heavy && !tail && !delay && !bloat;
            if heavy_only {
                self.counters.backoffs_heavy_loss += 1;
            } else if bloat && !tail {
                self.counters.backoffs_delay += 1;
            } else if delay {
                if deep {
                    // Delivery fell short of sending: the path carries about
                    // what arrived (whether that was ours to give up is
                    // `judge_deep_cut`'s question).
                    self.counters.backoffs_delay += 1;
                    self.judge_deep_cut(r.qd_avg, now_us);
                } else {
                    self.counters.backoffs_delay += 1;
                    self.judge_cut(r.qd_avg, growing, now_us);
                }
            } else {
                self.counters.backoffs_loss += 1;
            }
            self.est = target.max(MAX_CUT * before);
            if !heavy_only {
                self.last_congestion_est = before;
            }
            self.last_cut_us = now_us;
            self.drained_since_cut = false;
            self.hold_until_us = now_us + (2 * self.round_us()).max(100_000);
            self.growth_since_us = self.hold_until_us;
            self.state = RateState::Backoff;
            return;
        }
        if self.state == RateState::Backoff {
            return;
        }
        // Judged over ~10 reports: one report inside a keyframe's burst
        // sends at the pacing rate even when the encoder is far below it.
        let app_limited = if self.competing {
            self.send_avg < APP_LIMITED_COMPETING * self.est
        } else {
            self.send_avg < APP_LIMITED * self.est
        };
        if self.send_avg >= NOT_APP_LIMITED * self.est {
            self.app_limited_since_us = None;
        } else if app_limited && self.maybe_probe(r, now_us) {
            return;
        }
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
            // AIMD converges to a share where neither starves. Not while
            // delivery falls short of sending (more would only queue), and
            // never past the path itself: without a loss the queue would
            // otherwise grow wherever it can (on a busy host, in the
            // receiver's input backlog: 100 ms and more, TCP's round trip
            // with it, and its share gone).
            if self.sat_run > 0 {
                return;
            }
            let step = GROWTH_COMPETING * self.competing_base.max(self.est) * dt;
            let cap = (PROVEN_GAIN * self.recv_max()).min(self.competing_base);
            self.est = (self.est + step).min(cap.max(self.est));
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

    /// An application-limited session learns nothing about its path: from
    /// time to time it probes with padding (like start-up, ×1.25 per round),
    /// so pacing follows a path that became faster. Returns whether a probe
    /// started.
    fn maybe_probe(&mut self, r: Reading, now_us: u64) -> bool {
        let since = *self.app_limited_since_us.get_or_insert(now_us);
        let quiet = now_us >= self.last_cut_us + PROBE_AFTER_US && now_us >= since + PROBE_AFTER_US;
        if !quiet || self.competing || self.est >= self.ceiling || r.qd_avg >= QD_LOW_US {
            return false;
        }
        self.state = RateState::Probe;
        self.probe_start_est = self.est;
        self.probe_until_us = now_us + PROBE_ROUNDS * self.round_us();
        self.app_limited_since_us = None;
        self.counters.probes += 1;
        true
    }

    /// A delay cut made while the queue is still as deep as at the previous
    /// cut, and still rising, did not help: the queue is not ours. Twice in a
    /// row reveals a loss-based competitor; from then on the controller
    /// backs off for loss at the full queue only (GCC's answer is an
    /// adaptive threshold; BBR's a delivery-rate model that ignores delay).
    fn judge_cut(&mut self, qd_us: f64, growing: bool, now_us: u64) {
        let recent = now_us < self.last_cut_us + 2 * EPISODE_US;
        if recent && growing && qd_us >= self.cut_qd_us - 1_000.0 {
            self.note_ineffective();
        } else {
            self.ineffective = 0;
        }
        self.cut_qd_us = qd_us;
    }

    /// A cut to the delivery rate (the path saturated) made once the previous
    /// cut's hold was over, within its episode, with the queue never drained
    /// in between: after an overrun of our own the first such cut drains the
    /// queue, and a link that keeps shrinking (a fading radio) is followed
    /// down cut by cut, each draining the queue for a moment; when another
    /// flow takes every share we give up, its queue stays. Counts towards
    /// the competing mode like an ineffective delay cut.
    fn judge_deep_cut(&mut self, qd_us: f64, now_us: u64) {
        let follow_up = self.last_cut_us > 0
            && !self.drained_since_cut
            && now_us >= self.hold_until_us
            && now_us < self.last_cut_us + 2 * EPISODE_US;
        if follow_up {
            self.note_ineffective();
        } else {
            self.ineffective = 0;
        }
        self.cut_qd_us = qd_us;
    }

    /// One more cut that did not help; two in a row enter the competing mode.
    fn note_ineffective(&mut self) {
        self.ineffective += 1;
        if self.ineffective >= INEFFECTIVE_TO_COMPETE && !self.competing {
            self.competing = true;
            self.competing_base = self.path_max.get().max(self.est);
            self.counters.competing_detected += 1;
        }
    }

    /// The competing mode ends once the queue stayed empty for a second;
    /// the estimate it leaves may be a small share of a path now free, so
    /// the controller measures the path again as at start-up.
    fn track_queue(&mut self, r: Reading, now_us: u64) {
        if r.qd_avg < QD_LOW_US {
            self.drained_since_cut = true;
            let since = *self.queue_empty_since_us.get_or_insert(now_us);
            if now_us - since >= INEFFECTIVE_FORGET_US {
                // A queue that stayed empty this long was drained.
                self.ineffective = 0;
            }
            if self.competing && now_us - since >= COMPETING_EXIT_US {
                self.competing = false;
                if self.state == RateState::Steady && self.est < RAMP_AFTER_COMPETING * self.competing_base {
                    self.state = RateState::Startup;
                    self.ramp_cap = None;
                }
            }
        } else {
            self.queue_empty_since_us = None;
        }
        self.deep_qd_run = if r.qd_max >= QD_LOSS_US {
            self.deep_qd_run + 1
        } else {
            0
        };
        self.sat_run = match (r.recv_bps, r.send_bps) {
            (Some(rv), Some(sd)) if rv < SATURATED * sd * (1.0 - r.loss) => self.sat_run + 1,
            (Some(_), Some(_)) => 0,
            _ => self.sat_run,
        };
        if let Some(sd) = r.send_bps {
            self.send_avg += SEND_AVG_GAIN * (sd - self.send_avg);
        }
        // Queue delay ~100 ms ago (four reports) for the trend.
        self.qd_trend_base = self.qd_ring[self.qd_next % QD_RING];
        self.qd_ring[self.qd_next % QD_RING] = r.qd_avg;
        self.qd_next += 1;
    }
}
