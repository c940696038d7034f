//! The rate controller's per-packet paths allocate nothing: the host's
//! `RateController::on_sent` (per send batch) and the client's
//! `FeedbackBuilder::on_packet` (per datagram), nor building, encoding into a
//! reused buffer, decoding and applying a report every 25 ms.
//!
//! This file holds one test on purpose: the allocator counts every thread of
//! the process, so nothing else may run beside it.

use std::time::{Duration, Instant};

use punktfunk_core::rate::{Feedback, FeedbackBuilder, FeedbackConfig, RateConfig, RateController};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[test]
fn sending_receiving_and_reporting_allocate_nothing() {
    let t0 = Instant::now();
    let mut rc = RateController::new(RateConfig::default(), t0);
    let mut fbb = FeedbackBuilder::new(FeedbackConfig::default());
    let mut wire = Vec::with_capacity(punktfunk_core::rate::feedback::MAX_FEEDBACK_LEN);
    let mut seq = 0u64;
    let mut now = t0;
    let mut run = |rc: &mut RateController, fbb: &mut FeedbackBuilder, wire: &mut Vec<u8>, ms: u64| {
        for _ in 0..ms {
            // 1 ms: two batches of 32 datagrams (~700 Mbit/s).
            for _ in 0..2 {
                rc.on_sent(seq, 32, 1401, now);
                for i in 0..32 {
                    if (seq + i) % 97 != 0 {
                        fbb.on_packet(seq + i, 1401, now + Duration::from_micros(200));
                    }
                }
                seq += 32;
            }
            now += Duration::from_millis(1);
            if let Some(fb) = fbb.poll_feedback(now) {
                wire.clear();
                fb.encode_into(wire).expect("valid report");
                let back = Feedback::decode(wire).expect("decodes");
                rc.on_feedback(&back, now + Duration::from_millis(5));
            }
            if rc.poll_timeout().is_some_and(|t| t <= now) {
                rc.handle_timeout(now);
            }
        }
    };
    // Warm up, then count.
    run(&mut rc, &mut fbb, &mut wire, 200);
    let region = Region::new(GLOBAL);
    run(&mut rc, &mut fbb, &mut wire, 1000);
    let stats = region.change();
    assert!(
        rc.snapshot().counters.feedback_used >= 40,
        "{:?}",
        rc.snapshot().counters
    );
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "allocated in steady state: {stats:?}"
    );
}
