//! Adaptive FEC: the host moves each session's FEC percentage within a band
//! from the client's loss reports: up quickly while frames die or repairs
//! grow, down slowly while the link is clean. Frames that die while the rate
//! controller backs off for congestion are the controller's to answer, not
//! FEC's: parity does not raise a full queue's capacity. docs/PROTOCOL.md
//! §9.6 states the policy.

use super::msg::ControlMsg;

/// The band the FEC percentage moves in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FecBand {
    /// Lowest percentage.
    pub min: u8,
    /// Highest percentage.
    pub max: u8,
}

impl Default for FecBand {
    /// 3–50 %. On a clean link the policy needs 2 % (its two points over
    /// twice the loss); the floor keeps one more, so loss that starts
    /// between two reports (250 ms apart) finds some parity in hand. Every
    /// point above that is media rate the estimate cannot carry
    /// (docs/BENCHMARKS.md, "FEC's floor").
    fn default() -> Self {
        FecBand { min: 3, max: 50 }
    }
}

/// Clean reports in a row before the percentage steps down.
const CLEAN_REPORTS_TO_STEP_DOWN: u32 = 3;

/// Reports a congestion back-off counts for: the one it came in and the
/// next (a loss report and the rate feedback that led to the cut travel
/// separately, so either may arrive first).
const CONGESTION_REPORTS: usize = 2;

/// The policy state of one session.
#[derive(Clone, Debug)]
pub struct AdaptiveFec {
    band: FecBand,
    current: u8,
    last: Option<[u64; 4]>,
    clean: u32,
    /// Congestion back-offs of the session's rate control so far.
    backoffs: u64,
    /// `backoffs` as it stood at the last reports, newest first.
    backoffs_at: [u64; CONGESTION_REPORTS],
    /// The last raise for a dead frame, while a back-off may still show it
    /// was congestion's: the percentage before it.
    undo: Option<u8>,
    /// Reports since that raise.
    undo_age: usize,
}

impl AdaptiveFec {
    /// Starts at `start`, clamped into `band` (whose bounds are ordered and at most 100).
    pub fn new(band: FecBand, start: u8) -> AdaptiveFec {
        let max = band.max.min(100);
        let band = FecBand {
            min: band.min.min(max),
            max,
        };
        AdaptiveFec {
            band,
            current: start.clamp(band.min, band.max),
            last: None,
            clean: 0,
            backoffs: 0,
            backoffs_at: [0; CONGESTION_REPORTS],
            undo: None,
            undo_age: 0,
        }
    }

    /// The session's rate control has backed off for congestion `total`
    /// times so far (a growing queue or loss at a full one; not loss alone,
    /// which is FEC's). Call before each report; a count that goes backwards
    /// is ignored.
    pub fn note_congestion(&mut self, total: u64) {
        self.backoffs = self.backoffs.max(total);
    }

    /// The percentage in force.
    pub fn current(&self) -> u8 {
        self.current
    }

    /// Follows a manual change (clamped into the band).
    pub fn set_current(&mut self, pct: u8) {
        self.current = pct.clamp(self.band.min, self.band.max);
        self.clean = 0;
        self.undo = None;
    }

    /// Feeds a loss report; returns the new percentage if it changed.
    pub fn on_report(&mut self, m: &ControlMsg) -> Option<u8> {
        match *m {
            ControlMsg::LossReport {
                frames_completed,
                frames_dropped,
                fec_recovered_shards,
                packets_received,
            } => self.on_counters(
                frames_completed,
                frames_dropped,
                fec_recovered_shards,
                packets_received,
            ),
            _ => None,
        }
    }

    /// Feeds cumulative client counters; returns the new percentage if it changed.
    ///
    /// Policy, per report (deltas since the previous one):
    /// * estimated loss `r` = rebuilt shards / (received datagrams + rebuilt shards);
    ///   the percentage needed is `2·r·100 + 2` (twice the loss, plus 2 points);
    /// * the path is congested when the rate control backed off for congestion
    ///   ([`AdaptiveFec::note_congestion`]) since the report before the previous
    ///   one; then nothing is raised: the loss is a full queue's, which the
    ///   rate control answers, and more parity would only take media rate (a
    ///   congested report without a dead frame or a need above the current
    ///   percentage counts as clean);
    /// * a frame died on a path not congested → at least `current + 10` and
    ///   at least what is needed (up fast); if a congestion back-off follows
    ///   by the next report, that raise is undone (the frame was congestion's);
    /// * more needed than in force → exactly what is needed (up fast);
    /// * otherwise, after 3 clean reports in a row → down by a tenth (at least 1
    ///   point), never below what is needed (down slowly);
    /// * always within the band; a report without new frames changes nothing.
    pub fn on_counters(&mut self, completed: u64, dropped: u64, recovered: u64, received: u64) -> Option<u8> {
        let now = [completed, dropped, recovered, received];
        let last = self.last.replace(now)?;
        let [d_completed, d_dropped, d_recovered, d_received] =
            std::array::from_fn(|i| now[i].saturating_sub(last[i]));
        if d_completed.saturating_add(d_dropped) == 0 {
            return None;
        }
        let loss = d_recovered as f64 / d_received.saturating_add(d_recovered).max(1) as f64;
        let needed = ((2.0 * loss * 100.0).ceil() as u32 + 2).min(100) as u8;
        let congested = self.backoffs > self.backoffs_at[CONGESTION_REPORTS - 1];
        let backed_off_now = self.backoffs > self.backoffs_at[0];
        self.backoffs_at.rotate_right(1);
        self.backoffs_at[0] = self.backoffs;
        let before = self.current;
        let (min, max) = (self.band.min, self.band.max);
        // A raise for a dead frame that a congestion back-off followed.
        if let Some(prior) = self.undo.take() {
            self.undo_age += 1;
            if backed_off_now {
                self.current = self.current.min(prior.max(needed)).clamp(min, max);
            } else if self.undo_age < CONGESTION_REPORTS {
                self.undo = Some(prior);
            }
        }
        if congested && (d_dropped > 0 || needed > self.current) {
            self.clean = 0;
        } else if d_dropped > 0 {
            // A raise still open to undo keeps the level before it.
            self.undo = Some(self.undo.unwrap_or(self.current));
            self.undo_age = 0;
            self.current = self.current.saturating_add(10).max(needed).clamp(min, max);
            self.clean = 0;
        } else if needed > self.current {
            self.current = needed.clamp(min, max);
            self.clean = 0;
        } else {
            self.clean += 1;
            if self.clean >= CLEAN_REPORTS_TO_STEP_DOWN {
                self.clean = 0;
                let step = (self.current / 10).max(1);
                self.current = self.current.saturating_sub(step).max(needed).clamp(min, max);
            }
        }
        (self.current != before).then_some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{FrameEvent, FrameMeta, Role, Session, SessionConfig};
    use crate::transport::{Impaired, ImpairmentConfig, LoopbackTransport};
    use crate::SessionKeys;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn band_is_respected_and_quiet_reports_change_nothing() {
        let mut a = AdaptiveFec::new(FecBand { min: 5, max: 30 }, 80);
        assert_eq!(a.current(), 30);
        assert_eq!(a.on_counters(0, 0, 0, 0), None, "first report is the baseline");
        assert_eq!(a.on_counters(0, 0, 0, 100), None, "no new frames, no decision");
        assert_eq!(
            a.on_counters(10, 5, 0, 200),
            None,
            "already at the top of the band"
        );
        a.set_current(1);
        assert_eq!(a.current(), 5);
    }

    /// Feeds one report of `frames` completed frames, `dropped` dead ones and
    /// `recovered` rebuilt shards of 1000 received datagrams.
    fn report(a: &mut AdaptiveFec, totals: &mut [u64; 4], frames: u64, dropped: u64, recovered: u64) -> u8 {
        totals[0] += frames;
        totals[1] += dropped;
        totals[2] += recovered;
        totals[3] += 1000;
        a.on_counters(totals[0], totals[1], totals[2], totals[3]);
        a.current()
    }

    #[test]
    fn frames_lost_while_the_rate_control_backs_off_raise_no_parity() {
        let mut a = AdaptiveFec::new(FecBand { min: 5, max: 50 }, 5);
        let mut t = [0u64; 4];
        report(&mut a, &mut t, 0, 0, 0);
        // A queue overflows: the rate control cuts, frames die, shards are rebuilt.
        a.note_congestion(1);
        assert_eq!(report(&mut a, &mut t, 15, 3, 80), 5, "the cut's own report");
        assert_eq!(report(&mut a, &mut t, 15, 1, 40), 5, "the report after the cut");
        // The cut is two reports old: a dead frame is FEC's again.
        assert_eq!(report(&mut a, &mut t, 15, 1, 0), 15);
        // ... and more loss than FEC carries, too.
        assert_eq!(report(&mut a, &mut t, 15, 0, 100), 21);
    }

    #[test]
    fn a_raise_for_a_dead_frame_is_undone_when_a_congestion_back_off_follows() {
        let mut a = AdaptiveFec::new(FecBand { min: 5, max: 50 }, 5);
        let mut t = [0u64; 4];
        report(&mut a, &mut t, 0, 0, 0);
        // The loss report comes first, the rate feedback's cut after it.
        assert_eq!(report(&mut a, &mut t, 15, 2, 0), 15);
        assert_eq!(report(&mut a, &mut t, 15, 1, 0), 25, "a second raise");
        a.note_congestion(3);
        assert_eq!(
            report(&mut a, &mut t, 15, 0, 10),
            5,
            "both undone: the loss was congestion's"
        );
        // Without a back-off within two reports the raise stands.
        report(&mut a, &mut t, 15, 0, 0);
        report(&mut a, &mut t, 15, 0, 0);
        assert_eq!(report(&mut a, &mut t, 15, 1, 0), 15);
        report(&mut a, &mut t, 15, 0, 0);
        report(&mut a, &mut t, 15, 0, 0);
        a.note_congestion(4);
        assert_eq!(
            report(&mut a, &mut t, 15, 0, 0),
            14,
            "a clean report steps down, congested or not"
        );
        // A count that goes backwards is ignored.
        a.note_congestion(0);
        assert_eq!(a.backoffs, 4);
    }

    /// Streams `frames` frames of 100 kB through `host`→`client`, feeding the
    /// policy a report every 4 frames like the client's timer would; returns
    /// frames lost and the mean FEC percentage used.
    fn phase(
        host: &mut Session<Arc<Impaired<LoopbackTransport>>>,
        client: &mut Session<LoopbackTransport>,
        policy: &mut AdaptiveFec,
        frames: usize,
    ) -> (u64, f64) {
        let lost_before = client.stats().frames_dropped;
        let mut pct_sum = 0.0;
        for i in 0..frames {
            host.sender().set_fec_percent(policy.current()).unwrap();
            pct_sum += f64::from(policy.current());
            host.submit_frame(&vec![i as u8; 100_000], FrameMeta::default())
                .unwrap();
            while let Some(ev) = client.poll_frame(std::time::Instant::now()).unwrap() {
                if let FrameEvent::Frame(f) = ev {
                    client.receiver().recycle(f.data);
                }
            }
            if i % 4 == 3 {
                let s = client.stats();
                policy.on_counters(
                    s.frames_completed,
                    s.frames_dropped,
                    s.fec_recovered_shards,
                    s.packets_received,
                );
            }
        }
        (
            client.stats().frames_dropped - lost_before,
            pct_sum / frames as f64,
        )
    }

    #[test]
    fn rising_loss_is_met_quickly_and_overhead_falls_back_slowly() {
        let keys = SessionKeys::derive(&[4u8; 32], b"adaptive").unwrap();
        let (a, b) = LoopbackTransport::pair(1 << 16);
        let link = Arc::new(Impaired::new(a, ImpairmentConfig::random_loss(11, 0.0)));
        let cfg = SessionConfig {
            frame_timeout: Duration::from_millis(10),
            ..SessionConfig::default()
        };
        let mut host = Session::new(Role::Host, cfg.clone(), &keys, link.clone()).unwrap();
        let mut client = Session::new(Role::Client, cfg, &keys, b).unwrap();
        let floor = FecBand::default().min;
        let mut policy = AdaptiveFec::new(FecBand::default(), floor);

        let (lost_clean, pct_clean) = phase(&mut host, &mut client, &mut policy, 40);
        assert_eq!(lost_clean, 0);
        assert!(
            pct_clean <= f64::from(floor) + 1e-9,
            "a clean link stays at the floor ({pct_clean})"
        );

        link.set_config(ImpairmentConfig::random_loss(12, 8.0));
        let (lost_rise, _) = phase(&mut host, &mut client, &mut policy, 20);
        let raised = policy.current();
        assert!(
            raised >= 16,
            "8 % loss pushes FEC to at least twice that, got {raised}"
        );
        let (lost_after, _) = phase(&mut host, &mut client, &mut policy, 60);
        assert_eq!(
            lost_after, 0,
            "after the rise, frames stop dying ({lost_rise} died during it)"
        );

        link.set_config(ImpairmentConfig::random_loss(13, 0.0));
        let (lost_fall, _) = phase(&mut host, &mut client, &mut policy, 160);
        assert_eq!(lost_fall, 0);
        assert!(
            policy.current() <= raised / 2,
            "overhead falls back on a clean link: {} (was {raised})",
            policy.current()
        );
    }
}
