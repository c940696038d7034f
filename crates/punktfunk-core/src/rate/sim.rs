//! A seeded link simulator for the rate controller, in virtual time.
//!
//! Host: an encoder (60 fps, a keyframe every second, following the media
//! target with a lag of two frames), FEC (10 %), a token-bucket pacer at the
//! controller's pacing rate with its burst, padding while the controller
//! asks for it, and the controller itself. Path: a tbf-like bottleneck (per
//! packet serialisation at the link rate, a byte-limited FIFO with tail
//! drop), propagation both ways, random and burst loss, delay spikes.
//! Client: a [`FeedbackBuilder`] fed with every datagram that arrives, frame
//! accounting (a frame is lost when fewer than `k` of its `k + m` datagrams
//! arrive). Feedback returns over a lossy reverse path. Optionally a
//! loss-based competing flow (AIMD, CUBIC's β) shares the FIFO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{FeedbackBuilder, FeedbackConfig};
use super::{RateConfig, RateController, RateState, WireBudget};

mod hostile;
mod outcome;

pub(crate) use outcome::{Outcome, Row, Stats};

const TICK_NS: u64 = 250_000;
const ROW_NS: u64 = 100_000_000;
const DGRAM: u32 = 1401;
const SHARD: usize = 1344;
const TCP_PKT: u32 = 1500;
/// Queue delay histogram: buckets of 250 µs up to 200 ms.
const QD_BUCKET_US: u64 = 250;
const QD_BUCKETS: usize = 800;

/// xorshift64*: seeded, tiny.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A window of time `[from, to)` in seconds with a value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub from: f64,
    pub to: f64,
    pub value: f64,
}

/// The path and what happens on it.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// (from second, bit/s), in order; the first starts at 0.
    pub rates: Vec<(f64, f64)>,
    /// Bottleneck queue, in ms of the link rate in force (tbf's `latency`).
    pub queue_ms: f64,
    /// One-way propagation, host → client and back, ms.
    pub prop_ms: f64,
    /// Random loss after the bottleneck, probability.
    pub random_loss: f64,
    /// Extra loss probability in windows.
    pub loss_bursts: Vec<Window>,
    /// Extra one-way delay (ms) in windows; arrivals stay in order.
    pub delay_spikes: Vec<Window>,
    /// Feedback loss probability on the reverse path.
    pub feedback_loss: f64,
    /// Windows in which every feedback datagram is lost.
    pub feedback_blackouts: Vec<Window>,
    /// A busy client: stalls of its receive thread per second, each
    /// `read_stall_ms` long; what arrives meanwhile is stamped when the
    /// thread reads again (as user-space timestamps are).
    pub read_stalls_per_s: f64,
    /// Length of one read stall, ms.
    pub read_stall_ms: f64,
    /// Every `n`th stall (0: none) stamps what arrives during it with the
    /// time the stall began (a driver that read the clock, then lost the CPU
    /// before its read): arrivals look early, one-way delays short.
    pub early_stall_every: u32,
}

impl Link {
    pub(crate) fn fixed(mbps: f64) -> Link {
        Link {
            rates: vec![(0.0, mbps * 1e6)],
            queue_ms: 60.0,
            prop_ms: 10.0,
            random_loss: 0.0,
            loss_bursts: Vec::new(),
            delay_spikes: Vec::new(),
            feedback_loss: 0.0,
            feedback_blackouts: Vec::new(),
            read_stalls_per_s: 0.0,
            read_stall_ms: 0.0,
            early_stall_every: 0,
        }
    }

    fn rate_at(&self, t: f64) -> f64 {
        let mut r = self.rates[0].1;
        for &(from, rate) in &self.rates {
            if t >= from {
                r = rate;
            }
        }
        r
    }
}

fn in_window(ws: &[Window], t: f64) -> Option<f64> {
    ws.iter().find(|w| t >= w.from && t < w.to).map(|w| w.value)
}

/// A loss-based competitor: a congestion window, ×0.7 on loss (once per RTT).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Competitor {
    pub start_s: f64,
    pub stop_s: f64,
    /// The most it keeps in flight, bytes (a receive window, or the
    /// socket buffers of a TCP sender): with a cap that fits in the FIFO it
    /// never sees a loss, and holds a standing queue instead.
    pub max_window: Option<f64>,
}

/// One run.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub seconds: f64,
    pub link: Link,
    pub cfg: RateConfig,
    pub fps: u32,
    pub fec_percent: u8,
    pub competitor: Option<Competitor>,
    /// Every n-th feedback datagram is replaced by hostile bytes.
    pub hostile_every: Option<u32>,
    /// A host that cannot send faster than this, bit/s (busy CPUs): its
    /// encoder produces at most this much media and nothing, media or
    /// padding, leaves faster. `None`: no limit.
    pub host_max_bps: Option<f64>,
    pub seed: u64,
}

impl Scenario {
    pub(crate) fn new(link: Link, seconds: f64) -> Scenario {
        Scenario {
            seconds,
            link,
            cfg: RateConfig::default(),
            fps: 60,
            fec_percent: 10,
            competitor: None,
            hostile_every: None,
            host_max_bps: None,
            seed: 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Media(u64),
    Padding,
    Tcp,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    at_ns: u64,
    seq: u64,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
struct FrameRec {
    id: u64,
    k: u32,
    n: u32,
    received: u32,
    resolved: u32,
    /// When the encoder handed it over, ns.
    born_ns: u64,
}

struct Bottleneck {
    free_ns: u64,
    last_arrival_ns: u64,
}

/// Runs a scenario.
pub(crate) fn run(sc: &Scenario) -> Outcome {
    let base = Instant::now();
    let at = |ns: u64| base + Duration::from_nanos(ns);
    let end_ns = (sc.seconds * 1e9) as u64;
    let mut rng = Rng::new(sc.seed);
    let prop_ns = (sc.link.prop_ms * 1e6) as u64;
    let budget = WireBudget {
        fec_percent: sc.fec_percent,
        datagram_len: DGRAM as usize,
        shard_payload: SHARD,
    };
    let mut rc = RateController::new(sc.cfg, base);
    let mut fbb = FeedbackBuilder::new(FeedbackConfig {
        interval: sc.cfg.feedback_interval,
        ..FeedbackConfig::default()
    });

    let mut link = Bottleneck {
        free_ns: 0,
        last_arrival_ns: 0,
    };
    let mut to_client: VecDeque<InFlight> = VecDeque::new();
    let mut to_host: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut tcp_notes: VecDeque<(u64, bool, u32)> = VecDeque::new();
    let mut frames: VecDeque<FrameRec> = VecDeque::new();
    let mut latencies: Vec<(f64, f64)> = Vec::new();
    let mut pacer_queue: VecDeque<(u64, u32)> = VecDeque::new(); // (frame id, datagrams left)
    let mut tokens = 0.0f64;
    let mut pad_tokens = 0.0f64;
    // Without a host limit it never runs out.
    let mut host_tokens = if sc.host_max_bps.is_some() {
        0.0
    } else {
        f64::INFINITY
    };
    let mut seq = 0u64;
    let mut frame_id = 0u64;
    let frame_ns = 1_000_000_000 / u64::from(sc.fps);
    let mut next_frame_ns = 0u64;
    let mut targets: VecDeque<u64> = VecDeque::from(vec![rc.target_media_bps(&budget); 3]);
    let mut fb_count = 0u32;

    // Competitor state.
    let mut tcp_cwnd = 10.0 * f64::from(TCP_PKT);
    let mut tcp_wmax = tcp_cwnd;
    let mut tcp_inflight = 0.0f64;
    let mut tcp_last_cut_ns = 0u64;
    let mut tcp_slow_start = true;

    let mut rows: Vec<Row> = Vec::new();
    let new_row = |t: f64| Row {
        t,
        link_bps: 0.0,
        estimate_bps: 0.0,
        target_bps: 0.0,
        pacing_bps: 0.0,
        state: RateState::Startup,
        goodput_bps: 0.0,
        padding_bps: 0.0,
        competitor_bps: 0.0,
        sent: 0,
        dropped: 0,
        frames: 0,
        frames_lost: 0,
        qd_hist: vec![0; QD_BUCKETS],
    };
    let mut row = new_row(0.0);
    let mut row_bits = [0.0f64; 3];
    let mut min_est = f64::MAX;
    let mut max_est = 0.0f64;

    let mut now_ns = 0u64;
    // The client's receive thread reads nothing until then (a read stall).
    let mut stalled_until_ns = 0u64;
    let mut stall_from_ns = 0u64;
    let mut stalls = 0u32;
    let mut early = false;
    let stall_ns = (sc.link.read_stall_ms * 1e6) as u64;
    let stall_per_tick = sc.link.read_stalls_per_s * TICK_NS as f64 / 1e9;
    while now_ns < end_ns {
        let t = now_ns as f64 / 1e9;
        let tick_end = now_ns + TICK_NS;
        if stall_per_tick > 0.0 && now_ns >= stalled_until_ns && rng.unit() < stall_per_tick {
            stall_from_ns = now_ns;
            stalled_until_ns = now_ns + stall_ns;
            stalls += 1;
            let every = sc.link.early_stall_every;
            early = every > 0 && stalls % every == 0;
        }
        let stamp = |at_ns: u64| match (at_ns >= stalled_until_ns, early) {
            (true, _) => at(at_ns),
            (false, true) => at(stall_from_ns),
            (false, false) => at(stalled_until_ns),
        };

        // 1. Deliveries at the client.
        while to_client.front().is_some_and(|p| p.at_ns < tick_end) {
            let p = to_client.pop_front().expect("checked");
            match p.kind {
                Kind::Tcp => {
                    row_bits[2] += f64::from(TCP_PKT) * 8.0;
                    tcp_notes.push_back((p.at_ns + prop_ns, false, TCP_PKT));
                }
                Kind::Padding => {
                    row_bits[1] += f64::from(DGRAM) * 8.0;
                    fbb.on_packet(p.seq, DGRAM, stamp(p.at_ns));
                }
                Kind::Media(f) => {
                    row_bits[0] += f64::from(DGRAM) * 8.0;
                    fbb.on_packet(p.seq, DGRAM, stamp(p.at_ns));
                    if let Some(fr) = frames.iter_mut().find(|fr| fr.id == f) {
                        fr.received += 1;
                        fr.resolved += 1;
                        // Decodable with its k-th datagram: the frame's latency.
                        if fr.received == fr.k {
                            latencies.push((fr.born_ns as f64 / 1e9, (p.at_ns - fr.born_ns) as f64 / 1e6));
                        }
                    }
                }
            }
            // Frames whose every datagram is accounted for.
            while frames.front().is_some_and(|fr| fr.resolved == fr.n) {
                let fr = frames.pop_front().expect("checked");
                row.frames += 1;
                if fr.received < fr.k {
                    row.frames_lost += 1;
                    fbb.on_frame_lost(at(p.at_ns));
                }
            }
            // 2. Feedback from the client.
            if fbb.poll_timeout().is_some_and(|d| d <= at(p.at_ns)) {
                emit_feedback(
                    &mut fbb,
                    at(p.at_ns),
                    p.at_ns,
                    sc,
                    &mut rng,
                    &mut fb_count,
                    prop_ns,
                    &mut to_host,
                );
            }
        }
        if fbb.poll_timeout().is_some_and(|d| d <= at(tick_end)) {
            emit_feedback(
                &mut fbb,
                at(tick_end),
                tick_end,
                sc,
                &mut rng,
                &mut fb_count,
                prop_ns,
                &mut to_host,
            );
        }

        // 3. Feedback at the host.
        while to_host.front().is_some_and(|f| f.0 <= now_ns) {
            let (_, bytes) = to_host.pop_front().expect("checked");
            let qd = link.free_ns.saturating_sub(now_ns);
            rc.on_rtt(Duration::from_nanos(2 * prop_ns + qd));
            let _ = rc.on_feedback_datagram(&bytes, at(now_ns));
        }
        if rc.poll_timeout().is_some_and(|d| d <= at(now_ns)) {
            rc.handle_timeout(at(now_ns));
        }

        // 4. Competitor: a window-based loss-based flow (CUBIC's β, growth
        //    back to the last maximum in about two seconds).
        while tcp_notes.front().is_some_and(|n| n.0 <= now_ns) {
            let (_, lost, bytes) = tcp_notes.pop_front().expect("checked");
            tcp_inflight = (tcp_inflight - f64::from(bytes)).max(0.0);
            if lost {
                let rtt = 2 * prop_ns + link.free_ns.saturating_sub(now_ns);
                if now_ns > tcp_last_cut_ns + rtt {
                    tcp_wmax = tcp_cwnd;
                    tcp_cwnd = (0.7 * tcp_cwnd).max(4.0 * f64::from(TCP_PKT));
                    tcp_slow_start = false;
                    tcp_last_cut_ns = now_ns;
                }
            } else if tcp_slow_start {
                tcp_cwnd += f64::from(bytes);
            }
        }
        let link_rate = sc.link.rate_at(t);
        let mut tcp_n = 0;
        if let Some(c) = sc.competitor {
            if t >= c.start_s && t < c.stop_s {
                if !tcp_slow_start {
                    tcp_cwnd += 0.15 * tcp_wmax * TICK_NS as f64 / 1e9;
                }
                if let Some(cap) = c.max_window {
                    tcp_cwnd = tcp_cwnd.min(cap);
                }
                while tcp_inflight + f64::from(TCP_PKT) <= tcp_cwnd && tcp_n < 256 {
                    tcp_inflight += f64::from(TCP_PKT);
                    tcp_n += 1;
                }
            }
        }

        // 5. Encoder.
        while next_frame_ns <= now_ns {
            targets.push_back(rc.target_media_bps(&budget));
            let target =
                (targets.pop_front().expect("three entries") as f64).min(sc.host_max_bps.unwrap_or(f64::MAX));
            let fps = f64::from(sc.fps);
            let key = frame_id % u64::from(sc.fps) == 0;
            let p_size = target / 8.0 / fps * fps / (fps - 1.0 + 8.0);
            let size = if key {
                8.0 * p_size
            } else {
                p_size * (0.8 + 0.4 * rng.unit())
            };
            let k = ((size as usize).div_ceil(SHARD)).max(1) as u32;
            let m = super::super::fec::recovery_count(k as usize, sc.fec_percent) as u32;
            frames.push_back(FrameRec {
                id: frame_id,
                k,
                n: k + m,
                received: 0,
                resolved: 0,
                born_ns: now_ns,
            });
            pacer_queue.push_back((frame_id, k + m));
            frame_id += 1;
            next_frame_ns += frame_ns;
        }

        // 6. Pacer: media first, then padding, within the pacing rate and burst.
        let snap = rc.snapshot();
        let dt = TICK_NS as f64 / 1e9;
        let burst = f64::from(snap.burst_bytes).max(f64::from(DGRAM));
        tokens = (tokens + snap.pacing_rate_bps as f64 * dt / 8.0).min(burst);
        pad_tokens = if snap.probe_padding_bps == 0 {
            0.0
        } else {
            (pad_tokens + snap.probe_padding_bps as f64 * dt / 8.0).min(burst)
        };
        if let Some(max) = sc.host_max_bps {
            host_tokens = (host_tokens + max * dt / 8.0).min(burst);
        }
        let mut sends: Vec<Kind> = Vec::new();
        while tokens >= f64::from(DGRAM) && host_tokens >= f64::from(DGRAM) {
            if let Some(front) = pacer_queue.front_mut() {
                sends.push(Kind::Media(front.0));
                front.1 -= 1;
                if front.1 == 0 {
                    pacer_queue.pop_front();
                }
            } else if pad_tokens >= f64::from(DGRAM) {
                pad_tokens -= f64::from(DGRAM);
                sends.push(Kind::Padding);
            } else {
                break;
            }
            tokens -= f64::from(DGRAM);
            host_tokens -= f64::from(DGRAM);
        }
        // Runs for the controller, one per kind change (as a sender's batches).
        let mut i = 0;
        while i < sends.len() {
            let pad = matches!(sends[i], Kind::Padding);
            let mut j = i;
            while j < sends.len() && matches!(sends[j], Kind::Padding) == pad {
                j += 1;
            }
            let count = (j - i) as u32;
            if pad {
                rc.on_padding_sent(seq, count, DGRAM, at(now_ns));
            } else {
                rc.on_sent(seq, count, DGRAM, at(now_ns));
            }
            i = j;
            // The run's datagrams get consecutive sequences below.
            seq += u64::from(count);
        }
        let mut next_seq = seq - sends.len() as u64;
        // Interleave ours and the competitor's within the tick.
        let total = sends.len() + tcp_n;
        let (mut a, mut b) = (0usize, 0usize);
        for slot in 0..total {
            let t_arr = now_ns + TICK_NS * slot as u64 / total.max(1) as u64 + prop_ns / 2;
            let ours = b >= tcp_n || (a < sends.len() && a * tcp_n <= b * sends.len());
            let (kind, size, s) = if ours {
                let k = sends[a];
                a += 1;
                next_seq += 1;
                (k, DGRAM, next_seq - 1)
            } else {
                b += 1;
                (Kind::Tcp, TCP_PKT, 0)
            };
            // The bottleneck (half-way along the path).
            let rate = sc.link.rate_at(t_arr as f64 / 1e9);
            let limit_bytes = rate / 8.0 * sc.link.queue_ms / 1e3;
            let backlog_ns = link.free_ns.saturating_sub(t_arr);
            let backlog_bytes = backlog_ns as f64 * rate / 8e9;
            if !matches!(kind, Kind::Tcp) {
                row.sent += 1;
            }
            if backlog_bytes + f64::from(size) > limit_bytes {
                match kind {
                    Kind::Tcp => tcp_notes.push_back((t_arr + prop_ns + prop_ns / 2, true, size)),
                    Kind::Media(f) => {
                        row.dropped += 1;
                        resolve_lost(&mut frames, f);
                    }
                    Kind::Padding => row.dropped += 1,
                }
                continue;
            }
            let start = link.free_ns.max(t_arr);
            link.free_ns = start + (f64::from(size) * 8e9 / rate) as u64;
            let tq = t_arr as f64 / 1e9;
            let mut lost = rng.unit() < sc.link.random_loss;
            if let Some(p) = in_window(&sc.link.loss_bursts, tq) {
                lost |= rng.unit() < p;
            }
            if !matches!(kind, Kind::Tcp) {
                let qd_us = (start - t_arr) / 1000;
                let bucket = ((qd_us / QD_BUCKET_US) as usize).min(QD_BUCKETS - 1);
                row.qd_hist[bucket] += 1;
            }
            if lost {
                match kind {
                    Kind::Tcp => tcp_notes.push_back((link.free_ns + prop_ns, true, size)),
                    Kind::Media(f) => resolve_lost(&mut frames, f),
                    Kind::Padding => {}
                }
                continue;
            }
            let spike = in_window(&sc.link.delay_spikes, tq).unwrap_or(0.0);
            let arrive = (link.free_ns + prop_ns / 2 + (spike * 1e6) as u64).max(link.last_arrival_ns);
            link.last_arrival_ns = arrive;
            to_client.push_back(InFlight {
                at_ns: arrive,
                seq: s,
                kind,
            });
        }

        // 7. Rows.
        if (now_ns + TICK_NS) % ROW_NS == 0 {
            let s = rc.snapshot();
            row.link_bps = link_rate;
            row.estimate_bps = s.estimate_bps as f64;
            row.target_bps = rc.target_media_bps(&budget) as f64;
            row.pacing_bps = s.pacing_rate_bps as f64;
            row.state = s.state;
            row.goodput_bps = row_bits[0] / 0.1;
            row.padding_bps = row_bits[1] / 0.1;
            row.competitor_bps = row_bits[2] / 0.1;
            row_bits = [0.0; 3];
            rows.push(std::mem::replace(
                &mut row,
                new_row((now_ns + TICK_NS) as f64 / 1e9),
            ));
        }
        let e = rc.estimate_bps() as f64;
        min_est = min_est.min(e);
        max_est = max_est.max(e);
        now_ns = tick_end;
    }
    let s = rc.snapshot();
    Outcome {
        rows,
        backoffs: s.counters.backoffs(),
        feedback_dropped: s.counters.feedback_dropped,
        competing_detected: s.counters.competing_detected,
        probes: s.counters.probes,
        base_resets: s.counters.base_resets,
        stale_reports: s.counters.stale_reports,
        min_estimate: min_est,
        max_estimate: max_est,
        frame_latency_ms: latencies,
    }
}

fn resolve_lost(frames: &mut VecDeque<FrameRec>, f: u64) {
    if let Some(fr) = frames.iter_mut().find(|fr| fr.id == f) {
        fr.resolved += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn emit_feedback(
    fbb: &mut FeedbackBuilder,
    now: Instant,
    now_ns: u64,
    sc: &Scenario,
    rng: &mut Rng,
    count: &mut u32,
    prop_ns: u64,
    to_host: &mut VecDeque<(u64, Vec<u8>)>,
) {
    let Some(fb) = fbb.poll_feedback(now) else {
        return;
    };
    *count += 1;
    let t = now_ns as f64 / 1e9;
    if rng.unit() < sc.link.feedback_loss || in_window(&sc.link.feedback_blackouts, t).is_some() {
        return;
    }
    let mut bytes = fb.encode().expect("the builder makes valid reports");
    if sc.hostile_every.is_some_and(|n| *count % n == 0) {
        bytes = hostile::hostile(&fb, rng);
    }
    to_host.push_back((now_ns + prop_ns, bytes));
}
