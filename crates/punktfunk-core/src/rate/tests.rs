//! The controller against the link simulator, in virtual time. Each test
//! prints a one-line summary (`--nocapture`); with `PUNKTFUNK_RATE_CSV=<dir>`
//! each also writes its time series to `<dir>/<scenario>.csv`.

use super::sim::{run, Competitor, Link, Outcome, Scenario, Stats, Window};
use super::*;

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
    let sc = Scenario::new(Link::fixed(300.0), 12.0);
    let out = run(&sc);
    let ramp = out.stats(0.0, 3.0);
    let s = out.stats(3.0, 12.0);
    report("fixed_300", &out, &s);
    let reach = out.time_to_reach(0.0, 0.8).expect("reaches 80 % of the link");
    eprintln!("  80 % of the link after {reach:.1} s; ramp frames lost {}", ramp.frames_lost);
    assert!(reach <= 1.5, "start-up took {reach} s");
    assert_eq!(ramp.frames_lost, 0, "no frame lost to the ramp");
    assert!(s.utilisation >= 0.90, "utilisation {}", s.utilisation);
    assert!(s.qd_p95_ms <= 15.0, "queue delay p95 {} ms", s.qd_p95_ms);
    assert!(s.frame_loss() <= 0.005, "frame loss {}", s.frame_loss());
}
