//! Micro-benchmarks of the rate controller's hot paths: the host's
//! `RateController::on_sent` (once per send batch) and the client's
//! `FeedbackBuilder::on_packet` (once per datagram), plus applying one full
//! report. Run with `cargo bench -p punktfunk-core --bench rate` (about 10 s
//! plus the build).

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use punktfunk_core::rate::{FeedbackBuilder, FeedbackConfig, RateConfig, RateController};

fn hot_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let t0 = Instant::now();

    let mut rc = RateController::new(RateConfig::default(), t0);
    let mut seq = 0u64;
    g.bench_function("on_sent_run_of_32", |b| {
        b.iter(|| {
            rc.on_sent(black_box(seq), 32, 1401, t0 + Duration::from_nanos(seq * 100));
            seq += 32;
        })
    });

    let mut fbb = FeedbackBuilder::new(FeedbackConfig::default());
    let mut seq = 0u64;
    g.bench_function("feedback_on_packet", |b| {
        b.iter(|| {
            fbb.on_packet(black_box(seq), 1401, t0 + Duration::from_nanos(seq * 11_000));
            seq += 1;
        })
    });

    // Applying one full report (64 samples) against a warm send log; the
    // sends and arrivals that make the report are set up untimed.
    let rc = std::cell::RefCell::new(RateController::new(RateConfig::default(), t0));
    let mut fbb = FeedbackBuilder::new(FeedbackConfig::default());
    let mut seq = 0u64;
    let mut now = t0;
    g.bench_function("on_feedback_64_samples", |b| {
        b.iter_batched(
            || {
                let mut rc = rc.borrow_mut();
                for _ in 0..64 {
                    rc.on_sent(seq, 32, 1401, now);
                    for i in 0..32 {
                        fbb.on_packet(seq + i, 1401, now + Duration::from_micros(100));
                    }
                    seq += 32;
                    now += Duration::from_micros(400);
                }
                now += Duration::from_millis(25);
                (fbb.poll_feedback(now).expect("due"), now)
            },
            |(fb, at)| rc.borrow_mut().on_feedback(black_box(&fb), at),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
