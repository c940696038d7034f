//! The controller against the link simulator, in virtual time. Each test
//! prints a one-line summary (`--nocapture`); with `PUNKTFUNK_RATE_CSV=<dir>`
//! each also writes its time series to `<dir>/<scenario>.csv`.

use super::sim::{run, Competitor, Link, Outcome, Scenario, Stats, Window};
use super::*;

/// Scenarios run with seed 1; `PUNKTFUNK_RATE_SEED` picks another (to check
/// that a result is not one seed's luck).
fn scenario(link: Link, seconds: f64) -> Scenario {
    let mut sc = Scenario::new(link, seconds);
    if let Some(seed) = std::env::var("PUNKTFUNK_RATE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        sc.seed = seed;
    }
    sc
}

fn mbps(x: f64) -> String {
    format!("{:.0}", x / 1e6)
}

fn report(name: &str, out: &Outcome, s: &Stats) {
    eprintln!(
        "{name}: util {:.1} %, qd p95 {:.1} ms, loss {:.2} %, frames lost {}/{} ({:.2} %), est mean {} min {} Mbit/s, backoffs {}, padding {:.1} %",
        s.utilisation * 100.0,
        s.qd_p95_ms,
        s.loss * 100.0,
        s.frames_lost,
        s.frames,
        s.frame_loss() * 100.0,
        mbps(s.mean_estimate_bps),
        mbps(s.min_estimate_bps),
        out.backoffs,
        s.padding_share * 100.0,
    );
    if let Ok(dir) = std::env::var("PUNKTFUNK_RATE_CSV") {
        let path = std::path::Path::new(&dir).join(format!("{name}.csv"));
        std::fs::write(&path, out.csv()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

#[test]
fn startup_ramps_without_losing_a_frame_then_converges_on_a_fixed_bottleneck() {
    let sc = scenario(Link::fixed(300.0), 12.0);
    let out = run(&sc);
    let ramp = out.stats(0.0, 3.0);
    let s = out.stats(3.0, 12.0);
    report("fixed_300", &out, &s);
    let reach = out.time_to_reach(0.0, 0.8).expect("reaches 80 % of the link");
    eprintln!(
        "  80 % of the link after {reach:.1} s; ramp frames lost {}",
        ramp.frames_lost
    );
    assert!(reach <= 1.5, "start-up took {reach} s");
    assert_eq!(ramp.frames_lost, 0, "no frame lost to the ramp");
    assert!(s.utilisation >= 0.90, "utilisation {}", s.utilisation);
    assert!(s.qd_p95_ms <= 15.0, "queue delay p95 {} ms", s.qd_p95_ms);
    assert!(s.frame_loss() <= 0.005, "frame loss {}", s.frame_loss());
}

#[test]
fn capacity_steps_down_and_up_are_followed() {
    let mut link = Link::fixed(800.0);
    link.rates = vec![(0.0, 800e6), (5.0, 200e6), (12.0, 600e6)];
    let out = run(&scenario(link, 18.0));
    let s = out.stats(2.0, 18.0);
    report("steps_800_200_600", &out, &s);
    let before = out.stats(2.0, 5.0);
    let low = out.stats(7.0, 12.0);
    let loss_end = out.last_loss_after(5.0, 12.0).unwrap_or(0.0);
    let rise = out.time_to_reach(12.0, 0.85);
    eprintln!(
        "  800: util {:.1} %; drop to 200: loss ends after {loss_end:.1} s, then util {:.1} % qd p95 {:.1} ms; rise to 600: 85 % after {rise:?} s; competitor detected {} times",
        before.utilisation * 100.0,
        low.utilisation * 100.0,
        low.qd_p95_ms,
        out.competing_detected
    );
    assert!(before.utilisation >= 0.85, "800: {}", before.utilisation);
    assert!(loss_end <= 1.0, "loss after the drop lasted {loss_end} s");
    assert!(low.utilisation >= 0.85 && low.qd_p95_ms <= 15.0, "{low:?}");
    assert!(rise.is_some_and(|r| r <= 5.0), "85 % of 600 after {rise:?} s");
}

#[test]
fn a_rise_is_followed_within_5_s_wherever_the_saw_tooth_stands() {
    // On a fixed link the estimate saws below it: cut to 0.9, regrown at
    // 8 %/s near the point it was cut at, faster beyond. A link that grows
    // just after a cut waits out that approach first (seen on the real
    // path: 85 % of 600 Mbit/s 4 s after a rise from 200, against 3 s in
    // most runs). Rises at eight phases of the saw-tooth; over seeds 1-100
    // the slowest phase takes 3.2-4.85 s (docs/CONGESTION.md §9).
    let mut worst: f64 = 0.0;
    for i in 0..8 {
        let at = 6.0 + 0.25 * f64::from(i);
        let mut link = Link::fixed(200.0);
        link.rates = vec![(0.0, 200e6), (at, 600e6)];
        let out = run(&scenario(link, at + 6.0));
        let rise = out.time_to_reach(at, 0.85);
        let after = out.stats(at + 4.0, at + 6.0);
        eprintln!(
            "  rise at {at:.2} s: 85 % of 600 after {rise:?} s; then qd p95 {:.1} ms",
            after.qd_p95_ms
        );
        assert_eq!(out.stats(at, at + 6.0).frames_lost, 0, "rise at {at}");
        assert!(after.qd_p95_ms <= 15.0, "rise at {at}: {after:?}");
        worst = worst.max(rise.unwrap_or(f64::INFINITY));
    }
    assert!(worst <= 5.0, "85 % of 600 after {worst} s at worst");
}

#[test]
fn a_host_too_busy_to_fill_its_path_still_follows_a_capacity_drop() {
    // The host's CPUs carry 700 Mbit/s of an 800 Mbit/s LAN path (seen on
    // the real path: 2 MB frames at 38 of 60 fps): its ramp never sees a
    // queue, and its estimate, 1.5x what it sent, stands far above the path
    // when the link falls to 200.
    let mut link = Link::fixed(800.0);
    link.prop_ms = 0.2;
    link.rates = vec![(0.0, 800e6), (5.0, 200e6)];
    let mut sc = scenario(link, 10.0);
    sc.cfg.max_bps = 1_000_000_000;
    sc.host_max_bps = Some(700e6);
    let out = run(&sc);
    let before = out.stats(2.0, 5.0);
    let after = out.stats(6.0, 10.0);
    report("busy_host_800_200", &out, &after);
    let loss_end = out.last_loss_after(5.0, 10.0).unwrap_or(0.0);
    eprintln!(
        "  800: estimate mean {} Mbit/s, util {:.1} %; drop to 200: loss ends after {loss_end:.2} s, frames lost {}; then util {:.1} %, qd p95 {:.1} ms",
        mbps(before.mean_estimate_bps),
        before.utilisation * 100.0,
        out.stats(5.0, 10.0).frames_lost,
        after.utilisation * 100.0,
        after.qd_p95_ms,
    );
    assert!(
        before.utilisation >= 0.8,
        "the host sends what it can: {before:?}"
    );
    assert!(loss_end <= 0.5, "loss after the drop lasted {loss_end} s");
    assert_eq!(after.frames_lost, 0, "{after:?}");
    assert!(after.utilisation >= 0.85 && after.qd_p95_ms <= 15.0, "{after:?}");
}

#[test]
fn a_link_that_shrinks_step_by_step_is_followed_without_mistaking_it_for_a_competitor() {
    // From 3 s the link loses 8 % every 250 ms, 500 down to ~100 Mbit/s
    // over 5 s (a radio link fading): every report may say delivery fell
    // short of sending, cut after cut, as beside a loss-based flow. It must
    // be followed down, not held at a full queue.
    let mut link = Link::fixed(500.0);
    let mut rate = 500e6;
    for i in 0..20 {
        rate *= 0.92;
        link.rates.push((3.0 + 0.25 * f64::from(i), rate));
    }
    let out = run(&scenario(link, 14.0));
    let fading = out.stats(3.0, 8.0);
    let after = out.stats(9.0, 14.0);
    report("fading_500_100", &out, &after);
    eprintln!(
        "  while fading: queue p95 {:.1} ms, frames lost {}; from 9 s: util {:.1} %, queue p95 {:.1} ms; competitor detected {} times",
        fading.qd_p95_ms,
        fading.frames_lost,
        after.utilisation * 100.0,
        after.qd_p95_ms,
        out.competing_detected
    );
    assert!(
        fading.qd_p95_ms <= 30.0,
        "queue p95 while fading {} ms",
        fading.qd_p95_ms
    );
    assert!(after.utilisation >= 0.85, "{after:?}");
    assert!(after.qd_p95_ms <= 15.0, "{after:?}");
    assert_eq!(after.frames_lost, 0, "{after:?}");
}

#[test]
fn a_path_that_stops_delivering_is_backed_off_though_feedback_flows() {
    // For two seconds the path delivers nothing (seen on a real path: a
    // bottleneck that stopped dequeuing), while the client's reports keep
    // coming, each saying "nothing new arrived": no new loss, no samples.
    // Believed, they let the estimate grow while nothing arrived.
    let mut link = Link::fixed(300.0);
    link.loss_bursts = vec![Window {
        from: 5.0,
        to: 7.0,
        value: 1.0,
    }];
    let out = run(&scenario(link, 12.0));
    let s = out.stats(2.0, 12.0);
    report("blackhole_300", &out, &s);
    let during = out.rows.iter().filter(|r| r.t >= 6.0 && r.t < 7.0);
    let max_during = during.map(|r| r.estimate_bps).fold(0.0, f64::max);
    let after = out.stats(9.0, 12.0);
    // Once packets arrive again the estimate ramps back to where it stood
    // before the reports turned stale, not past it: without that bound the
    // ramp reached 1.35-1.5x the link over seeds 1-3.
    let max_after = out
        .rows
        .iter()
        .filter(|r| r.t >= 7.0)
        .map(|r| r.estimate_bps)
        .fold(0.0, f64::max);
    eprintln!(
        "  estimate at most {} Mbit/s in the second second of the blackout; stale reports {}; at most {} Mbit/s after it; util {:.1} % from 2 s after",
        mbps(max_during),
        out.stale_reports,
        mbps(max_after),
        after.utilisation * 100.0
    );
    assert!(
        max_after <= 1.2 * 300e6,
        "the ramp after the blackout went to {max_after}"
    );
    assert!(out.stale_reports > 0);
    assert!(
        max_during <= 0.25 * 300e6,
        "the estimate held at {max_during} while nothing arrived"
    );
    assert!(after.utilisation >= 0.85, "recovered: {after:?}");
}

#[test]
fn random_loss_below_the_fec_budget_is_not_congestion() {
    let mut link = Link::fixed(500.0);
    link.random_loss = 0.02;
    let out = run(&scenario(link, 12.0));
    let s = out.stats(3.0, 12.0);
    report("random_loss_2pct_500", &out, &s);
    assert!(
        s.min_estimate_bps >= 0.80 * 500e6,
        "estimate fell to {}",
        s.min_estimate_bps
    );
    assert!(
        s.mean_estimate_bps >= 0.85 * 500e6,
        "estimate mean {}",
        s.mean_estimate_bps
    );
    assert!(s.frame_loss() <= 0.005, "FEC repairs 2 %: {}", s.frame_loss());
}

#[test]
fn a_busy_clients_late_reports_beside_random_loss_do_not_end_the_ramp() {
    // The client's receive thread stalls 4 ms, 20 times a second (a loaded
    // machine): a report now and then carries a few ms of queue that is not
    // there, beside the 2 % random loss FEC repairs. A ramp that stopped on
    // one such report would settle far below the path.
    let mut link = Link::fixed(500.0);
    link.random_loss = 0.02;
    link.read_stalls_per_s = 20.0;
    link.read_stall_ms = 4.0;
    let out = run(&scenario(link, 12.0));
    let s = out.stats(3.0, 12.0);
    report("random_loss_2pct_busy_client_500", &out, &s);
    assert!(
        s.mean_estimate_bps >= 0.80 * 500e6,
        "estimate mean {}",
        s.mean_estimate_bps
    );
    assert!(s.frame_loss() <= 0.005, "FEC repairs 2 %: {}", s.frame_loss());
}

#[test]
fn arrivals_stamped_early_by_a_stalled_reader_do_not_collapse_the_estimate() {
    // A busy client (as in the test above), and one stall in ten stamps what
    // arrives meanwhile with the time it began (its driver read the clock,
    // then lost the CPU before reading): those one-way delays look short,
    // the delay base is set too low, and every later report shows a
    // standing queue that is not there, and every random loss looks like
    // the queue's. With 4 ms stalls a loss needs the deep queue in two
    // reports in a row, and that alone holds the estimate.
    let early_stamps = |stall_ms: f64, seed_offset: u64| {
        let mut link = Link::fixed(500.0);
        link.random_loss = 0.02;
        link.read_stalls_per_s = 20.0;
        link.read_stall_ms = stall_ms;
        link.early_stall_every = 10;
        let mut sc = scenario(link, 12.0);
        sc.seed += seed_offset;
        run(&sc)
    };
    let out = early_stamps(4.0, 0);
    let s = out.stats(3.0, 12.0);
    report("early_stamps_2pct_500", &out, &s);
    assert!(
        s.mean_estimate_bps >= 0.60 * 500e6,
        "estimate mean {}",
        s.mean_estimate_bps
    );
    assert!(s.frame_loss() <= 0.005, "{}", s.frame_loss());
    // With 5 ms stalls the base set too low makes cut after cut leave the
    // queue delay where it was, and the base is learnt again: over seeds
    // 1-4 the estimate averaged 58 % of the link, 45 % without relearning
    // (other groups of four seeds: 50-68 %). Asserted: the relearning runs,
    // and the estimate does not collapse (6 ms stalls take it to ~20 %).
    let (mut sum, mut resets) = (0.0, 0);
    for k in 0..4 {
        let out = early_stamps(5.0, k);
        sum += out.stats(3.0, 12.0).mean_estimate_bps / 4.0;
        resets += out.base_resets;
    }
    eprintln!(
        "early_stamps_5ms_2pct_500: estimate mean over four seeds {} Mbit/s, base resets {resets}",
        mbps(sum)
    );
    assert!(resets > 0, "the base was learnt again");
    assert!(sum >= 0.40 * 500e6, "estimate mean over four seeds {sum}");
}

#[test]
fn burst_loss_and_a_delay_spike_are_survived() {
    let mut link = Link::fixed(300.0);
    link.loss_bursts = vec![Window {
        from: 4.0,
        to: 4.2,
        value: 0.3,
    }];
    link.delay_spikes = vec![Window {
        from: 7.0,
        to: 7.3,
        value: 40.0,
    }];
    let out = run(&scenario(link, 14.0));
    let s = out.stats(10.0, 14.0);
    report("burst_loss_delay_spike_300", &out, &s);
    let after_burst = out.time_to_reach(4.2, 0.85);
    let after_spike = out.time_to_reach(7.3, 0.85);
    eprintln!("  85 % again {after_burst:?} s after the loss burst, {after_spike:?} s after the spike");
    assert!(after_burst.is_some_and(|t| t <= 3.0), "{after_burst:?}");
    assert!(after_spike.is_some_and(|t| t <= 3.0), "{after_spike:?}");
    assert!(s.utilisation >= 0.88 && s.qd_p95_ms <= 15.0, "{s:?}");
}

#[test]
fn a_competing_loss_based_flow_does_not_starve_either_side() {
    let mut sc = scenario(Link::fixed(300.0), 23.0);
    sc.competitor = Some(Competitor {
        start_s: 3.0,
        stop_s: 23.0,
        max_window: None,
    });
    let out = run(&sc);
    let s = out.stats(3.0, 23.0);
    report("competing_300", &out, &s);
    eprintln!(
        "  shares over 20 s: video {:.1} %, competitor {:.1} %, competitor detected {} times",
        s.utilisation * 100.0,
        s.competitor_share * 100.0,
        out.competing_detected
    );
    assert!(s.utilisation >= 0.25, "video share {}", s.utilisation);
    assert!(
        s.competitor_share >= 0.25,
        "competitor share {}",
        s.competitor_share
    );
}

#[test]
fn a_window_limited_flow_that_holds_a_standing_queue_does_not_starve_the_video() {
    // A TCP flow limited by its window, not by loss: it keeps ~12 ms of the
    // 500 Mbit/s link queued and the FIFO never overflows. The path's
    // propagation is a LAN's (0.1 ms), as in the real-path test. Neither
    // flow may starve, and once it leaves the video takes the link back.
    let mut link = Link::fixed(500.0);
    link.prop_ms = 0.1;
    let mut sc = scenario(link, 30.0);
    sc.competitor = Some(Competitor {
        start_s: 3.0,
        stop_s: 23.0,
        max_window: Some(500e6 / 8.0 * 0.012),
    });
    let out = run(&sc);
    let s = out.stats(3.0, 23.0);
    report("competing_window_500", &out, &s);
    let worst = out
        .rows
        .iter()
        .filter(|r| r.t >= 5.0 && r.t < 23.0)
        .map(|r| r.estimate_bps)
        .fold(f64::MAX, f64::min);
    let back = out.time_to_reach(23.0, 0.8);
    eprintln!(
        "  shares over 20 s: video {:.1} %, competitor {:.1} %; estimate min {} Mbit/s from 5 s; competitor detected {} times; 80 % of the link {:?} s after it left",
        s.utilisation * 100.0,
        s.competitor_share * 100.0,
        mbps(worst),
        out.competing_detected,
        back
    );
    assert!(s.utilisation >= 0.25, "video share {}", s.utilisation);
    assert!(
        s.competitor_share >= 0.25,
        "competitor share {}",
        s.competitor_share
    );
    assert!(
        worst >= 0.1 * 500e6,
        "the estimate fell to {} Mbit/s",
        mbps(worst)
    );
    // As after a capacity rise (the 200 → 600 Mbit/s step: ≤ 5 s).
    assert!(back.is_some_and(|b| b <= 5.0), "took {back:?} s to regrow");
}

#[test]
fn lost_feedback_is_tolerated_and_silence_holds_then_decays_without_collapse() {
    let mut link = Link::fixed(300.0);
    link.feedback_loss = 0.10;
    link.feedback_blackouts = vec![Window {
        from: 6.0,
        to: 8.0,
        value: 1.0,
    }];
    let out = run(&scenario(link, 13.0));
    let lossy = out.stats(3.0, 6.0);
    report("feedback_loss_300", &out, &lossy);
    let at = |t: f64| {
        out.rows
            .iter()
            .find(|r| r.t >= t - 1e-9)
            .expect("row")
            .estimate_bps
    };
    let silent: Vec<f64> = out
        .rows
        .iter()
        .filter(|r| r.t >= 6.0 && r.t < 8.0)
        .map(|r| r.estimate_bps)
        .collect();
    eprintln!(
        "  blackout: estimate {} → {} Mbit/s (min {}), back to 85 % {:?} s after",
        mbps(at(6.0)),
        mbps(at(7.9)),
        mbps(silent.iter().copied().fold(f64::MAX, f64::min)),
        out.time_to_reach(8.0, 0.85)
    );
    assert!(lossy.utilisation >= 0.88, "10 % feedback loss: {lossy:?}");
    assert!(
        silent.windows(2).all(|w| w[1] <= w[0] + 1.0),
        "no growth without information"
    );
    assert!(at(6.9) >= 0.9 * at(6.0), "holds for the first second");
    assert!(at(7.9) < 0.9 * at(6.0), "then decays");
    assert!(at(7.9) >= at(6.0) / 8.0 - 1.0, "never collapses");
    assert!(out.time_to_reach(8.0, 0.85).is_some_and(|t| t <= 3.0));
}

#[test]
fn hostile_feedback_is_dropped_and_cannot_push_the_estimate_out_of_bounds() {
    let mut sc = scenario(Link::fixed(300.0), 8.0);
    sc.hostile_every = Some(3);
    let out = run(&sc);
    let s = out.stats(3.0, 8.0);
    report("hostile_feedback_300", &out, &s);
    eprintln!(
        "  feedback dropped {}, estimate range {}..{} Mbit/s",
        out.feedback_dropped,
        mbps(out.min_estimate),
        mbps(out.max_estimate)
    );
    assert!(out.feedback_dropped > 20);
    assert!(out.min_estimate >= sc.cfg.min_bps as f64);
    assert!(out.max_estimate <= sc.cfg.probe_ceiling() as f64);
    assert!(s.utilisation >= 0.8, "{s:?}");
}

#[test]
fn a_fast_path_is_learned_so_frames_leave_fast() {
    // Loopback-like: a 50 Mbit/s stream on a 10 Gbit/s path.
    let mut sc = scenario(Link::fixed(10_000.0), 3.0);
    sc.link.prop_ms = 0.05;
    sc.cfg.max_bps = 50_000_000;
    let out = run(&sc);
    let s = out.stats(1.0, 3.0);
    report("fast_path_50_on_10g", &out, &s);
    let t_ceiling = out
        .rows
        .iter()
        .find(|r| r.estimate_bps >= 0.99 * sc.cfg.probe_ceiling() as f64)
        .map(|r| r.t);
    let last = out.rows.last().expect("rows");
    let frame_ms = 100_000.0 * 8.0 / last.pacing_bps * 1e3;
    eprintln!("  probe ceiling reached at {t_ceiling:?} s; pacing {} Mbit/s: a 100 KB frame leaves in {frame_ms:.2} ms", mbps(last.pacing_bps));
    let mut lat: Vec<f64> = out.frame_latency_ms.iter().map(|l| l.1).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    let first: Vec<String> = out
        .frame_latency_ms
        .iter()
        .take(8)
        .map(|l| format!("{:.2}", l.1))
        .collect();
    eprintln!(
        "  frame latency over the run: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; the first eight: {}",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        first.join(" ")
    );
    // Reports every 5 ms for the first 100 ms let start-up grow per 5 ms
    // here (the round trip is far shorter): the ceiling within the first
    // 100 ms row (0.3 s at the steady 25 ms cadence).
    assert!(t_ceiling.is_some_and(|t| t <= 0.1), "{t_ceiling:?}");
    assert!(frame_ms <= 1.0);
    // Start-up paces frames at twice the estimate: only the first two
    // (sized for the opening 10 Mbit/s, the first a keyframe of 8 P-frames)
    // wait for the ramp; from the third on every P-frame leaves within
    // 4.5 ms (3.1–3.7 ms over seeds 1–7; pacing at the estimate: 13.7 ms for
    // the third). Keyframes (one
    // a second, 8 P-frames: 0.8 MB) take their time at the probe ceiling.
    assert!(pct(0.5) <= 1.0);
    let later = out
        .frame_latency_ms
        .iter()
        .skip(2)
        .filter(|l| l.0.fract() > 1e-6)
        .map(|l| l.1)
        .fold(0.0, f64::max);
    assert!(later <= 4.5, "{later} ms");
    assert!(s.padding_share < 1e-9, "no padding once the ceiling is known");
    assert_eq!(s.frames_lost, 0);
}

#[test]
fn fixed_mode_neither_probes_nor_adapts() {
    let t0 = std::time::Instant::now();
    let cfg = RateConfig {
        adaptive: false,
        max_bps: 200_000_000,
        ..RateConfig::default()
    };
    let mut rc = RateController::new(cfg, t0);
    rc.on_sent(0, 100, 1401, t0);
    let mut fb = Feedback::default();
    (
        fb.packets_received,
        fb.bytes_received,
        fb.highest_seq,
        fb.packets_lost,
    ) = (50, 50 * 1401, 99, 50);
    fb.push_sample(ArrivalSample {
        seq: 99,
        arrival_us: 1,
    });
    rc.on_feedback(&fb, t0 + std::time::Duration::from_millis(30));
    let s = rc.snapshot();
    assert_eq!(
        (s.state, s.estimate_bps, s.probe_padding_bps),
        (RateState::Fixed, 200_000_000, 0)
    );
    assert_eq!(s.pacing_rate_bps, 400_000_000);
    let budget = WireBudget {
        fec_percent: 10,
        datagram_len: 1401,
        shard_payload: 1344,
    };
    assert_eq!(rc.target_media_bps(&budget), 200_000_000);
    assert_eq!(rc.poll_timeout(), None);
}

#[test]
fn the_wire_budget_pays_fec_from_the_estimate() {
    let b = |fec| WireBudget {
        fec_percent: fec,
        datagram_len: 1401,
        shard_payload: 1344,
    };
    let wire = 300_000_000;
    let m10 = b(10).media_bps(wire);
    let m50 = b(50).media_bps(wire);
    assert!(m50 < m10, "more parity lowers the media rate");
    for fec in [0, 10, 50, 100] {
        let m = b(fec).media_bps(wire);
        assert!(b(fec).wire_bps(m) <= wire + 1, "never raises the wire rate");
    }
    assert!((b(10).overhead() - 1401.0 / 1344.0 * 1.1).abs() < 1e-9);
}

#[test]
fn each_kind_of_bad_feedback_is_counted_and_changes_nothing() {
    use std::time::Duration;
    let t0 = std::time::Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut rc = RateController::new(RateConfig::default(), t0);
    for i in 0..100u64 {
        rc.on_sent(i * 10, 10, 1401, ms(i));
    }
    let report = |seq: u32, got: u64, hi: u64, at: u64| {
        let mut fb = Feedback::default();
        (fb.seq, fb.packets_received, fb.bytes_received, fb.highest_seq) = (seq, got, got * 1401, hi);
        fb.push_sample(ArrivalSample {
            seq: hi,
            arrival_us: at,
        });
        fb
    };
    rc.on_feedback(&report(0, 500, 499, 60_000), ms(60));
    let good = rc.snapshot();
    assert_eq!(good.counters.feedback_used, 1);

    // Random bytes, an input datagram, a truncated report.
    assert!(rc.on_feedback_datagram(&[0x42; 40], ms(61)).is_err());
    assert!(rc.on_feedback_datagram(&[0; 16], ms(61)).is_err());
    let wire = report(1, 600, 599, 70_000).encode().unwrap();
    assert!(rc.on_feedback_datagram(&wire[..wire.len() - 1], ms(61)).is_err());
    // A sequence never sent (above the last), and more packets than were sent.
    rc.on_feedback(&report(2, 600, 5_000, 70_000), ms(70));
    rc.on_feedback(&report(3, 2_000, 999, 70_000), ms(70));
    // Counters and time running backwards.
    rc.on_feedback(&report(4, 400, 599, 70_000), ms(70));
    rc.on_feedback(&report(5, 600, 599, 50_000), ms(70));
    let s = rc.snapshot();
    assert_eq!(s.counters.feedback_dropped, 7, "{:?}", s.counters);
    assert_eq!(s.counters.feedback_used, 1);
    assert_eq!((s.estimate_bps, s.state), (good.estimate_bps, good.state));

    // A report number from the past (reordered) is stale, not hostile.
    rc.on_feedback(&report(9, 600, 599, 70_000), ms(71));
    rc.on_feedback(&report(8, 550, 549, 65_000), ms(72));
    assert_eq!(rc.snapshot().counters.feedback_stale, 1);
    // Samples of sequences in a gap between runs are unmatched, not used.
    rc.on_sent(2_000, 10, 1401, ms(100));
    let mut fb = report(10, 700, 2_005, 90_000);
    fb.clear_samples();
    fb.push_sample(ArrivalSample {
        seq: 1_500,
        arrival_us: 80_000,
    });
    fb.push_sample(ArrivalSample {
        seq: 2_005,
        arrival_us: 90_000,
    });
    rc.on_feedback(&fb, ms(101));
    let s = rc.snapshot();
    assert_eq!(s.counters.samples_unmatched, 1);
    assert!(s.estimate_bps >= rc.config().min_bps && s.estimate_bps <= rc.config().probe_ceiling());
}

#[test]
fn a_forged_report_first_after_a_resync_cannot_set_the_delay_base() {
    // A corrupt report that passes every check with an arrival far in the
    // future becomes the reference, and the honest reports after it are
    // refused until the controller starts over; the report it starts over
    // from has every arrival 100 ms early. Found in the hostile-feedback
    // scenario: the base was set 100 ms low, and every honest report after
    // it read a 100 ms queue for 4 s.
    use std::time::Duration;
    let t0 = std::time::Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut rc = RateController::new(RateConfig::default(), t0);
    // One packet a millisecond, arriving 1 ms after it left (the client's
    // clock 50 s ahead); a report every 20 ms with its last ten arrivals.
    let arrival = |seq: u64| 50_000_000 + (seq + 1) * 1_000;
    let mut report_seq = 0u32;
    let mut report = |hi: u64, shift: i64| {
        let mut fb = Feedback::default();
        (fb.seq, fb.packets_received, fb.bytes_received, fb.highest_seq) =
            (report_seq, hi + 1, (hi + 1) * 1401, hi);
        report_seq += 1;
        for s in hi.saturating_sub(9)..=hi {
            fb.push_sample(ArrivalSample {
                seq: s,
                arrival_us: arrival(s).saturating_add_signed(shift),
            });
        }
        fb
    };
    let mut refused = 0;
    for t in 0..1_200u64 {
        rc.on_sent(t, 1, 1401, ms(t));
        if t % 20 != 19 {
            continue;
        }
        let hi = t - 1;
        let fb = match t {
            // Passes every check; its newest arrival 10 s ahead.
            419 => {
                let mut fb = report(hi, 0);
                fb.push_sample(ArrivalSample {
                    seq: hi,
                    arrival_us: arrival(hi) + 10_000_000,
                });
                fb
            }
            // The eighth refused in a row: the controller starts over from it.
            _ if (439..600).contains(&t) && refused == 7 => report(hi, -100_000),
            _ => report(hi, 0),
        };
        let dropped = rc.snapshot().counters.feedback_dropped;
        rc.on_feedback(&fb, ms(t));
        if (439..600).contains(&t) && rc.snapshot().counters.feedback_dropped > dropped {
            refused += 1;
        }
        if t >= 700 {
            let qd = rc.snapshot().queue_delay_us;
            assert!(qd < 5_000, "at {t} ms: queue delay {qd} µs on an empty path");
        }
    }
    // Seven honest reports, and the forged one (counted, then started over from).
    assert_eq!(refused, 8, "the reports after the corrupt one were refused");
}

#[test]
fn silence_counts_from_the_first_datagram_and_never_ramps() {
    use std::time::Duration;
    let t0 = std::time::Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut rc = RateController::new(RateConfig::default(), t0);
    assert_eq!(rc.poll_timeout(), None, "nothing sent, nothing to wait for");
    // The session sends its first frame 5 s after the controller was made.
    rc.on_sent(0, 50, 1401, ms(5_000));
    assert_eq!(rc.poll_timeout(), Some(ms(5_100)));
    rc.handle_timeout(ms(5_050));
    assert_eq!(rc.state(), RateState::Startup);
    let start = rc.estimate_bps();
    rc.handle_timeout(ms(5_100));
    let s = rc.snapshot();
    assert_eq!(
        (s.state, s.estimate_bps, s.probe_padding_bps),
        (RateState::Hold, start, 0)
    );
    let mut t = 5_100;
    while t < 10_000 {
        t = rc.poll_timeout().map_or(t + 50, |d| (d - t0).as_millis() as u64);
        rc.handle_timeout(ms(t));
        assert!(rc.estimate_bps() <= start, "no growth without information");
    }
    assert_eq!(rc.estimate_bps(), start / 8, "decays to an eighth, no further");
}

#[test]
fn an_application_limited_session_finds_a_faster_path_by_probing() {
    // A 50 Mbit/s stream: the path is 100 Mbit/s for 8 s (one probe runs
    // into it), then 10 Gbit/s.
    let mut link = Link::fixed(100.0);
    link.rates = vec![(0.0, 100e6), (8.0, 10_000e6)];
    let mut sc = scenario(link, 16.0);
    sc.cfg.max_bps = 50_000_000;
    let out = run(&sc);
    let before = out.stats(1.0, 8.0);
    report("app_limited_path_grows", &out, &before);
    let ceiling = sc.cfg.probe_ceiling() as f64;
    let found = out
        .rows
        .iter()
        .find(|r| r.t >= 8.0 && r.estimate_bps >= 0.99 * ceiling)
        .map(|r| r.t - 8.0);
    eprintln!(
        "  on 100 Mbit/s: {} probes, padding {:.1} % of the link; probe ceiling {:?} s after the path grew",
        out.probes,
        before.padding_share * 100.0,
        found
    );
    assert!(out.probes >= 2, "a probe on each path");
    assert!(
        before.mean_estimate_bps >= 80e6 && before.mean_estimate_bps <= 110e6 && before.qd_p95_ms <= 15.0,
        "{before:?}"
    );
    assert!(found.is_some_and(|t| t <= 7.0), "{found:?}");
    assert_eq!(out.stats(0.0, 16.0).frames_lost, 0);
}

/// A 500 Mbit/s link a millisecond away with a 50 ms buffer, as on the
/// real-path test, where no report gets through from 80 ms to `until` s,
/// just as the ramp passes the link: asserts that no frame is lost to the
/// ramp, the queue's p95 stays within `qd_p95_ms`, and 75 % of the link is
/// used over 3 s.
fn ramp_with_reports_held_up(name: &str, until: f64, qd_p95_ms: f64) {
    let mut link = Link::fixed(500.0);
    link.queue_ms = 50.0;
    link.prop_ms = 0.5;
    link.feedback_blackouts = vec![Window {
        from: 0.08,
        to: until,
        value: 1.0,
    }];
    let out = run(&scenario(link, 3.0));
    let s = out.stats(0.0, 3.0);
    report(name, &out, &s);
    assert_eq!(s.frames_lost, 0, "no frame lost to the ramp");
    assert!(s.qd_p95_ms <= qd_p95_ms, "queue delay p95 {} ms", s.qd_p95_ms);
    assert!(s.utilisation >= 0.75, "utilisation {}", s.utilisation);
}

#[test]
fn a_ramp_whose_reports_are_held_up_stops_padding_until_they_come() {
    // No report for 60 ms (a client, or the host's reader, busy for that
    // long: seen on the real path, 91 -> 150 ms). A ramp that kept padding
    // at its last estimate (1.5x what was delivered) overflowed the buffer
    // and lost two frames in every seed (queue p95 21-24 ms).
    ramp_with_reports_held_up("ramp_reports_held_up_500", 0.14, 12.0);
}

#[test]
fn a_ramp_blind_for_200_ms_sends_no_more_media_than_was_delivered() {
    // No report for 220 ms (seen on the real path: a ramp at 717 Mbit/s on
    // a 500 link, the host sending 724 while the reports it had still
    // showed a 1.7 ms queue, the tbf's at 50 ms, 12 frames lost). Padding
    // waits for the reports; media sized to the ramp's estimate (1.5x the
    // delivery rate) did not: queue p95 21-36 ms over seeds 1-6, 1-4
    // frames lost in four of them. In a ramp media follows what the client
    // has seen delivered.
    ramp_with_reports_held_up("ramp_blind_220ms_500", 0.30, 15.0);
}
