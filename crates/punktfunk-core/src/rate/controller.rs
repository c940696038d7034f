//! The rate controller: a delivery-rate model (BBR's measurement) steered by
//! queue delay (GCC's and SCReAM's signal) and loss at a full queue, with a
//! loss-based mode for a bottleneck shared with loss-based flows.
//! docs/CONGESTION.md gives the reasoning behind every constant here.

use std::time::{Duration, Instant};

use super::feedback::{Feedback, FeedbackError};
use super::filters::{Meter, WindowedMax, WindowedMin};
use super::sendlog::{SendLog, SentPacket};
use super::{RateConfig, RateCounters, RateSnapshot, RateState, WireBudget, BURST_TIME};

mod policy;

/// Below this the queue counts as empty, µs.
const QD_LOW_US: f64 = 3_000.0;
/// Pacing gain in steady state: the sender's queue drains after a keyframe
/// while the bottleneck sees at most 10 % above the estimate.
const PACING_GAIN: f64 = 1.1;
/// Pacing gain while a queue drains (after start-up, a probe or a cut).
const DRAIN_GAIN: f64 = 0.75;
/// Pacing gain in start-up while the queue is empty. Media and padding
/// together stay at the estimate (padding makes up the difference), but a
/// frame leaves at twice it: the encoder's frames grow with the ramp, and
/// paced at the rate they were sized for each would take a whole frame
/// interval to leave. A frame is at most the estimate over the frame rate,
/// so the extra queue it can leave at a bottleneck the ramp has not found is
/// half of that (BBR paces its start-up at 2.89 for the same reason). Once a
/// queue shows, frames go back to the estimate: bursts at twice it near the
/// path's rate made the ramp's exit read a deeper queue than the path had
/// (on a real 500 Mbit/s link with 2 % loss the estimate's 10th percentile
/// fell from ~75 % of the link to 37–74 %).
const STARTUP_PACING_GAIN: f64 = 2.0;
/// Probe padding stops while the bytes sent after the newest packet a report
/// has seen exceed this many feedback rounds (round trip + report gap) at
/// the estimate: a ramp's probe is clocked by the reports, as a window clocks
/// a TCP sender's (BBR's start-up window is 2 × the path's BDP). Without it
/// a ramp whose reports were held up kept padding at its last estimate (on
/// the real path: 59 ms without a report, 1075 Mbit/s sent into a 500 link).
const PADDING_ROUNDS_AHEAD: f64 = 2.0;
/// Bounds of the report spacing a round may take, µs (the builder sends at
/// most one report per 5 ms, and at least one per 50 ms).
const MIN_ROUND_US: f64 = 5_000.0;
const MAX_ROUND_US: f64 = 50_000.0;
/// A report that has not seen a packet sent longer ago than this (or four
/// round trips and two report spacings, if longer), µs, is stale.
const STALE_REPORT_US: u64 = 250_000;
/// What each round of stale reports leaves of the estimate.
const STALE_CUT: f64 = 0.5;
/// Longest a ramp resumed after stale reports waits for their backlog to
/// drain, µs, where four rounds are shorter (a backlog drains in round
/// trips: on a longer path the wait is four rounds).
const RAMP_WAIT_US: u64 = 200_000;
/// Stale reports cut at most this often, µs, however short the round: a
/// client that stalls sends its backlog of reports at once when it runs
/// again, and one stall is one event (seen on the real path: a 400 ms stall
/// at start-up cut 850 Mbit/s to the floor, 106, within a few ms).
const STALE_CUT_SPACING_US: u64 = 100_000;
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
/// Reports of queue delay kept for the trend.
const QD_RING: usize = 4;
/// Reports refused in a row (as older than the last used) before the
/// controller starts over from the next one.
const RESYNC_AFTER: u32 = 8;
/// Recent delivery rates kept.
const RECV_HISTORY: usize = 4;

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

/// One session's rate controller. See the [module](super) docs.
///
/// The call contract, in the manner of quinn-proto: the send path records
/// every datagram it hands to the kernel ([`RateController::on_sent`], or
/// [`RateController::on_padding_sent`] for filler and speed-test probes: a
/// report that counts datagrams the log never saw is refused); the QUIC
/// datagram reader passes feedback in ([`RateController::on_feedback_datagram`])
/// and the connection's RTT ([`RateController::on_rtt`]); the driver sleeps
/// until [`RateController::poll_timeout`] and calls
/// [`RateController::handle_timeout`]; after any of these,
/// [`RateController::snapshot`] and [`RateController::target_media_bps`] say
/// how to pace and what the encoder should produce. Nothing reads a clock.
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
    /// Wire bytes sent up to the newest packet a report has seen.
    reported_bytes: u64,
    /// Time between reports (smoothed), µs: with the round trip, the round
    /// the controller grows by (reports come faster during the client's
    /// start-up, docs/PROTOCOL.md §9.8).
    report_gap_us: f64,
    /// When stale reports last cut the estimate, µs.
    last_stale_cut_us: u64,
    /// The age of the first unseen packet at that cut, µs.
    stale_age_us: u64,
    /// The estimate when reports turned stale (the cuts stop at an eighth
    /// of it); `None` while reports are fresh.
    stale_from_est: Option<f64>,
    /// A ramp resumed after stale reports waits until this time, µs, or
    /// until the queue drained, before it grows or ends: the queue it sees
    /// first is the backlog that made the reports stale, and the delivery
    /// rates reported while the client works through it are its catching
    /// up, not the path.
    ramp_wait_until_us: Option<u64>,
    /// Where the ramp after a stale episode ends: the estimate before the
    /// episode (growth past it is the steady state's). Set when the episode
    /// begins, cleared when the ramp ends.
    ramp_cap: Option<f64>,
    /// Silence is measured from here until the first report.
    first_sent_us: Option<u64>,
    hold_until_us: u64,
    drain_until_us: u64,
    last_congestion_est: f64,
    growth_since_us: u64,
    competing: bool,
    ineffective: u32,
    /// Delay cuts in a row, by our own overrun, that left the queue delay
    /// where it was.
    stuck_cuts: u32,
    /// Queue delay at the last cut those are judged against.
    stuck_qd_us: f64,
    /// Queue delay at the last delay cut.
    cut_qd_us: f64,
    /// The queue delay fell below `QD_LOW_US` since the last cut.
    drained_since_cut: bool,
    last_cut_us: u64,
    queue_empty_since_us: Option<u64>,
    sat_run: u32,
    /// Reports in a row whose deep samples (`qd_max`) reached `QD_LOSS_US`.
    deep_qd_run: u32,
    /// Reports in a row that said a ramp (start-up, probe) met the queue.
    ramp_stop_run: u32,
    recv_prev: f64,
    /// The path rate measured before a competitor was detected.
    competing_base: f64,
    /// Best delivery rate of the last 5–10 s.
    path_max: WindowedMax,
    qd_ring: [f64; QD_RING],
    qd_next: usize,
    qd_trend_base: f64,
    silence_est: Option<f64>,
    /// The estimate a probe started from, and when it gives up.
    probe_start_est: f64,
    probe_until_us: u64,
    app_limited_since_us: Option<u64>,
    /// Send rate averaged over ~10 reports.
    send_avg: f64,
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
            reported_bytes: 0,
            report_gap_us: cfg.feedback_interval.as_micros() as f64,
            last_stale_cut_us: 0,
            stale_age_us: 0,
            stale_from_est: None,
            ramp_wait_until_us: None,
            ramp_cap: None,
            first_sent_us: None,
            hold_until_us: 0,
            drain_until_us: 0,
            last_congestion_est: 0.0,
            growth_since_us: 0,
            competing: false,
            ineffective: 0,
            stuck_cuts: 0,
            stuck_qd_us: 0.0,
            cut_qd_us: 0.0,
            drained_since_cut: false,
            last_cut_us: 0,
            queue_empty_since_us: None,
            sat_run: 0,
            deep_qd_run: 0,
            ramp_stop_run: 0,
            recv_prev: 0.0,
            competing_base: 0.0,
            path_max: WindowedMax::new(),
            qd_ring: [0.0; QD_RING],
            qd_next: 0,
            qd_trend_base: 0.0,
            silence_est: None,
            probe_start_est: 0.0,
            probe_until_us: 0,
            app_limited_since_us: None,
            send_avg: 0.0,
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
    /// Sequences must rise from call to call; a call that breaks that (or an
    /// empty run) is ignored and counted in the send log.
    pub fn on_sent(&mut self, first_seq: u64, count: u32, bytes_each: u32, now: Instant) {
        if self.log.on_sent(first_seq, count, bytes_each, now, false) {
            let t = self.log.micros(now);
            self.first_sent_us.get_or_insert(t);
            self.media.add(u64::from(count) * u64::from(bytes_each), t);
        }
    }

    /// Like [`RateController::on_sent`] for probe filler (padding) the
    /// sender added at [`RateSnapshot::probe_padding_bps`].
    pub fn on_padding_sent(&mut self, first_seq: u64, count: u32, bytes_each: u32, now: Instant) {
        if self.log.on_sent(first_seq, count, bytes_each, now, true) {
            let t = self.log.micros(now);
            self.first_sent_us.get_or_insert(t);
        }
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

    /// Whether the first packet `fb` has not seen left too long ago for the
    /// report to say anything about the path now: `Some(age)` of that
    /// packet, µs, when it did.
    fn stale_age(&self, fb: &Feedback, now_us: u64) -> Option<u64> {
        if fb.packets_received == 0 {
            return None;
        }
        let limit = STALE_REPORT_US
            .max(4 * self.srtt.map_or(0, |d| d.as_micros() as u64) + 2 * self.report_gap_us as u64);
        if self.log.last_seq() <= Some(fb.highest_seq) {
            // Everything sent has arrived.
            return None;
        }
        // The first packet the report has not seen left long ago (or the
        // report itself took that long): the path delivers nothing now. Not
        // in the log (sent outside the rate-controlled runs, or older than
        // the log reaches): no verdict.
        let age = now_us.saturating_sub(self.log.lookup(fb.highest_seq + 1)?.sent_us);
        (age > limit).then_some(age)
    }

    /// A stale report. A report that only repeats "nothing new arrived"
    /// while we keep sending looks like a quiet path to every other rule (no
    /// new loss, no queue samples): believed, it let the estimate grow while
    /// a link delivered nothing for seconds. Halve the estimate at most once
    /// per round and per 100 ms until newer packets are reported, and pace
    /// below it meanwhile.
    ///
    /// After the first cut of an episode, another only while the reports
    /// fall further behind (the unseen packet's `age` grew since the last
    /// cut): a client that stalled and now works through its backlog
    /// catches up by itself, and cutting on while it does would take the
    /// estimate to the floor for one stall.
    fn on_stale_report(&mut self, now_us: u64, age: u64) {
        self.counters.stale_reports += 1;
        // Not silence: the client is there.
        self.last_feedback_us = Some(now_us);
        let spacing = self.round_us().max(STALE_CUT_SPACING_US);
        if self.state == RateState::Fixed || now_us < self.last_stale_cut_us + spacing {
            return;
        }
        if self.stale_from_est.is_some() && age < self.stale_age_us {
            return;
        }
        if self.stale_from_est.is_none() && self.state != RateState::Startup {
            // The ramp after this episode ends at the estimate now, unless a
            // ramp was still finding the path (start-up: no bound; a ramp
            // after an earlier episode: that one's, kept).
            self.ramp_cap = Some(self.est);
        }
        let from = *self.stale_from_est.get_or_insert(self.est);
        self.last_stale_cut_us = now_us;
        self.stale_age_us = age;
        self.counters.backoffs_loss += 1;
        self.est = (self.est * STALE_CUT).max(DECAY_FLOOR * from).max(self.min);
        self.last_cut_us = now_us;
        self.hold_until_us = now_us + (2 * self.round_us()).max(100_000);
        self.growth_since_us = self.hold_until_us;
        self.state = RateState::Backoff;
    }

    fn round_us(&self) -> u64 {
        let rtt = self.srtt.unwrap_or(Duration::from_millis(50));
        (rtt.as_micros() as u64).max(self.report_gap_us as u64)
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
        if let Some(p) = self
            .log
            .lookup(fb.highest_seq)
            .filter(|_| fb.packets_received > 0)
        {
            self.reported_bytes = self.reported_bytes.max(p.bytes_through());
        }
        if let Some(age) = self.stale_age(fb, now_us) {
            self.on_stale_report(now_us, age);
            return;
        }
        if self.stale_from_est.take().is_some() && self.state != RateState::Fixed {
            // Packets arrive again: find the path's rate as at start-up, from
            // where the cuts left the estimate (the path may be back whole),
            // once the backlog drained, up to where the estimate was before.
            self.state = RateState::Startup;
            self.ramp_wait_until_us = Some(now_us + (4 * self.round_us()).max(RAMP_WAIT_US));
        }
        if let Some(before) = self.last_feedback_us {
            let gap = now_us.saturating_sub(before) as f64;
            self.report_gap_us = (0.5 * self.report_gap_us + 0.5 * gap).clamp(MIN_ROUND_US, MAX_ROUND_US);
        }
        self.last_feedback_us = Some(now_us);
        if self.silence_est.take().is_some() {
            // Feedback is back: resume what silence interrupted, from where
            // it left the estimate.
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
        // A report with no accepted report before it (the session's first,
        // or the first after a resync) has nothing its arrival times were
        // checked against: they set neither the delay base nor a queue
        // reading (its counters still count). A forged report with
        // every arrival at half its time, accepted as the first after a
        // resync, set the base 100 ms low, and every honest report after it
        // read a 100 ms queue for the 4 s until the stuck-cut rule learnt
        // the base again (a base set too high heals at the next report).
        if n > 0 && prev.is_some() {
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

    /// When the controller next needs [`RateController::handle_timeout`]:
    /// the moment feedback silence turns into a hold, then every 50 ms of
    /// decay. `None` in fixed mode or before anything was sent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == RateState::Fixed {
            return None;
        }
        let since = self.last_feedback_us.or(self.first_sent_us)?;
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
        let Some(since) = self.last_feedback_us.or(self.first_sent_us) else {
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
    /// In the start-up ramp the estimate counts only up to the best delivery
    /// rate the client has reported (never less than the rate the session
    /// opens at); the rest is the probe's padding.
    pub fn target_media_bps(&self, budget: &WireBudget) -> u64 {
        if self.state == RateState::Fixed {
            return self.cfg.max_bps;
        }
        budget
            .media_bps(self.media_wire_bps() as u64)
            .min(self.cfg.max_bps)
    }

    /// The wire rate media may take: the estimate, except in the start-up
    /// ramp, where the estimate's lead over the best delivery rate the
    /// client has reported is the probe's (padding, which waits when the
    /// reports are late; media does not wait). Media sized to a ramp's
    /// estimate went into a 500 Mbit/s link at 1.45x it for 200 ms while the
    /// reports lagged (the real path: the tbf's queue at 50 ms while the
    /// controller's read 1.7 ms, 12 frames lost).
    fn media_wire_bps(&self) -> f64 {
        let delivered = self.recv_max();
        if self.state == RateState::Startup && self.ramp_wait_until_us.is_none() && delivered > 0.0 {
            self.est.min(delivered.max(self.cfg.initial_bps as f64))
        } else {
            self.est
        }
    }

    /// Path estimate, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.est as u64
    }

    /// What the controller is doing.
    pub fn state(&self) -> RateState {
        self.state
    }

    /// Whether the bytes sent since the newest packet a report has seen
    /// are [`PADDING_ROUNDS_AHEAD`] feedback rounds at the estimate or more
    /// (never less than a burst): the probe waits for the reports to catch
    /// up; media still leaves.
    fn padding_ahead(&self) -> bool {
        if self.last_feedback_us.is_none() {
            // Before the first report nothing is clocked: the ramp opens at
            // the initial rate, and the opening frames alone exceed a burst.
            return false;
        }
        let round_s = self.srtt.map_or(0.0, |d| d.as_secs_f64()) + self.report_gap_us / 1e6;
        let allowed = (PADDING_ROUNDS_AHEAD * self.est / 8.0 * round_s).max(f64::from(self.cfg.burst_bytes));
        self.log.total_bytes().saturating_sub(self.reported_bytes) as f64 > allowed
    }

    /// The controller's outputs now.
    pub fn snapshot(&self) -> RateSnapshot {
        let est = self.est;
        let pacing = match self.state {
            RateState::Startup if self.qd_us < QD_LOW_US => {
                (STARTUP_PACING_GAIN * est).min(self.ceiling.max(est))
            }
            RateState::Startup => est,
            RateState::Probe => est,
            RateState::Drain => DRAIN_GAIN * est,
            RateState::Fixed => (2.0 * est).min(self.ceiling.max(est)),
            // Cut for congestion: pace below the estimate until the queue drained.
            RateState::Backoff if self.qd_us >= QD_LOW_US => DRAIN_GAIN * est,
            _ if self.qd_us >= QD_LOW_US || self.competing => est,
            _ => (PACING_GAIN * est).min(self.ceiling.max(est)),
        };
        let padding = if matches!(self.state, RateState::Startup | RateState::Probe) && !self.padding_ahead()
        {
            (est - self.media.bps).max(0.0)
        } else {
            0.0
        };
        RateSnapshot {
            state: self.state,
            estimate_bps: est as u64,
            pacing_rate_bps: pacing as u64,
            burst_bytes: self
                .cfg
                .burst_bytes
                .max((est / 8.0 * BURST_TIME.as_secs_f64()).min(f64::from(u32::MAX)) as u32),
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
