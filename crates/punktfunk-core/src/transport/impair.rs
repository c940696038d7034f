//! A seeded network-impairment wrapper usable around any [`Transport`].
//!
//! Impairments apply on the send side, as the network would: a "lost" datagram
//! still counts as sent for the caller. The same seed and the same sequence of
//! calls give the same impairments, so tests never depend on luck.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{IoCounters, RecvMeta, Transport};

/// Two-state burst-loss model (Gilbert-Elliott). Probabilities are in percent
/// and are applied per datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Chance of moving from the good to the bad state.
    pub good_to_bad_percent: f64,
    /// Chance of moving from the bad back to the good state.
    pub bad_to_good_percent: f64,
    /// Loss chance while good.
    pub loss_good_percent: f64,
    /// Loss chance while bad.
    pub loss_bad_percent: f64,
}

/// What to do to datagrams. Every field defaults to "off".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImpairmentConfig {
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// Independent random loss, percent of datagrams.
    pub loss_percent: f64,
    /// Drop exactly every n-th datagram (1-based; 0 = off). Deterministic loss for tests.
    pub drop_every_nth: u64,
    /// Burst loss on top of the other losses.
    pub burst: Option<GilbertElliott>,
    /// Percent of datagrams held back and sent later in the same batch.
    pub reorder_percent: f64,
    /// How many later datagrams overtake a held one (at least 1).
    pub reorder_depth: usize,
    /// Percent of datagrams sent twice.
    pub duplicate_percent: f64,
    /// Percent of datagrams with one byte flipped.
    pub corrupt_percent: f64,
    /// Percent of datagrams cut short at a random length.
    pub truncate_percent: f64,
}

impl ImpairmentConfig {
    /// Only deterministic every-n-th loss.
    pub fn drop_every(n: u64) -> Self {
        ImpairmentConfig {
            drop_every_nth: n,
            ..Default::default()
        }
    }

    /// Only independent random loss.
    pub fn random_loss(seed: u64, percent: f64) -> Self {
        ImpairmentConfig {
            seed,
            loss_percent: percent,
            ..Default::default()
        }
    }

    /// Checks that every percentage is a number in `0..=100` and the reorder
    /// depth is at most [`MAX_REORDER_DEPTH`]; errors name the field.
    pub fn validate(&self) -> crate::Result<()> {
        let mut percents = vec![
            ("loss_percent", self.loss_percent),
            ("reorder_percent", self.reorder_percent),
            ("duplicate_percent", self.duplicate_percent),
            ("corrupt_percent", self.corrupt_percent),
            ("truncate_percent", self.truncate_percent),
        ];
        if let Some(b) = &self.burst {
            percents.extend([
                ("burst.good_to_bad_percent", b.good_to_bad_percent),
                ("burst.bad_to_good_percent", b.bad_to_good_percent),
                ("burst.loss_good_percent", b.loss_good_percent),
                ("burst.loss_bad_percent", b.loss_bad_percent),
            ]);
        }
        for (name, v) in percents {
            if !(0.0..=100.0).contains(&v) {
                return Err(crate::Error::invalid(format!("{name} {v} is outside 0..=100")));
            }
        }
        if self.reorder_depth > MAX_REORDER_DEPTH {
            return Err(crate::Error::invalid(format!(
                "reorder_depth {} is above {MAX_REORDER_DEPTH}",
                self.reorder_depth
            )));
        }
        Ok(())
    }
}

/// Largest [`ImpairmentConfig::reorder_depth`] accepted by [`ImpairmentConfig::validate`].
pub const MAX_REORDER_DEPTH: usize = 4096;

/// Counts of what the wrapper did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairmentCounters {
    /// Datagrams that passed through (or were attempted).
    pub seen: u64,
    /// Datagrams dropped (random, every-n-th or burst).
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Datagrams that were overtaken by later ones.
    pub reordered: u64,
    /// Datagrams with a flipped byte.
    pub corrupted: u64,
    /// Datagrams cut short.
    pub truncated: u64,
}

/// splitmix64: tiny, fast, and good enough for impairment decisions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        unit * 100.0 < percent
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy)]
enum Slot {
    /// Index into the caller's batch, sent unchanged.
    Borrowed(usize),
    /// Index into the scratch buffers (a modified copy).
    Owned(usize),
}

struct State {
    config: ImpairmentConfig,
    rng: Rng,
    in_bad_state: bool,
    count: u64,
    scratch: Vec<Vec<u8>>,
    scratch_used: usize,
    plan: Vec<Slot>,
    held: Vec<(Slot, usize)>,
}

#[derive(Default)]
struct Counters {
    seen: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    corrupted: AtomicU64,
    truncated: AtomicU64,
}

/// Wraps a transport and impairs what is sent through it.
pub struct Impaired<T> {
    inner: T,
    state: Mutex<State>,
    counters: Counters,
}

impl<T: Transport> Impaired<T> {
    /// Wraps `inner` with the given impairments.
    pub fn new(inner: T, config: ImpairmentConfig) -> Self {
        let seed = config.seed;
        Impaired {
            inner,
            state: Mutex::new(State {
                config,
                rng: Rng(seed ^ 0x5EED_F00D),
                in_bad_state: false,
                count: 0,
                scratch: Vec::new(),
                scratch_used: 0,
                plan: Vec::new(),
                held: Vec::new(),
            }),
            counters: Counters::default(),
        }
    }

    /// Changes the impairments from the next datagram on (the random
    /// generator continues, so a run stays reproducible).
    pub fn set_config(&self, config: ImpairmentConfig) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).config = config;
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// What the wrapper has done so far.
    pub fn counters(&self) -> ImpairmentCounters {
        let c = &self.counters;
        ImpairmentCounters {
            seen: c.seen.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            reordered: c.reordered.load(Ordering::Relaxed),
            corrupted: c.corrupted.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Decides whether the next datagram is lost.
    fn lose(st: &mut State, cfg: &ImpairmentConfig) -> bool {
        st.count += 1;
        let mut lost = cfg.drop_every_nth > 0 && st.count % cfg.drop_every_nth == 0;
        lost |= st.rng.chance(cfg.loss_percent);
        if let Some(ge) = cfg.burst {
            let flip = if st.in_bad_state {
                ge.bad_to_good_percent
            } else {
                ge.good_to_bad_percent
            };
            if st.rng.chance(flip) {
                st.in_bad_state = !st.in_bad_state;
            }
            let p = if st.in_bad_state {
                ge.loss_bad_percent
            } else {
                ge.loss_good_percent
            };
            lost |= st.rng.chance(p);
        }
        lost
    }

    /// Copies `d` into a scratch buffer (reused across calls) and returns its slot.
    fn own(st: &mut State, d: &[u8]) -> usize {
        let i = st.scratch_used;
        st.scratch_used += 1;
        if st.scratch.len() <= i {
            st.scratch.push(Vec::new());
        }
        let buf = &mut st.scratch[i];
        buf.clear();
        buf.extend_from_slice(d);
        i
    }

    /// Turns the batch into a plan of slots to send, applying every impairment.
    fn plan(&self, st: &mut State, datagrams: &[&[u8]]) {
        let cfg = st.config.clone();
        let cfg = &cfg;
        st.plan.clear();
        st.held.clear();
        st.scratch_used = 0;
        for (i, d) in datagrams.iter().enumerate() {
            Self::bump(&self.counters.seen);
            if Self::lose(st, cfg) {
                Self::bump(&self.counters.dropped);
                continue;
            }
            let mut slot = Slot::Borrowed(i);
            if !d.is_empty() && st.rng.chance(cfg.corrupt_percent) {
                let o = Self::own(st, d);
                let at = st.rng.below(d.len());
                st.scratch[o][at] ^= 1 << st.rng.below(8);
                slot = Slot::Owned(o);
                Self::bump(&self.counters.corrupted);
            }
            if d.len() > 1 && st.rng.chance(cfg.truncate_percent) {
                let o = match slot {
                    Slot::Owned(o) => o,
                    Slot::Borrowed(_) => Self::own(st, d),
                };
                let keep = st.rng.below(d.len());
                st.scratch[o].truncate(keep);
                slot = Slot::Owned(o);
                Self::bump(&self.counters.truncated);
            }
            let dup = st.rng.chance(cfg.duplicate_percent);
            if st.rng.chance(cfg.reorder_percent) {
                st.held.push((slot, cfg.reorder_depth.max(1)));
                Self::bump(&self.counters.reordered);
            } else {
                st.plan.push(slot);
                Self::release_due(st);
                if dup {
                    st.plan.push(slot);
                    Self::bump(&self.counters.duplicated);
                }
                continue;
            }
            if dup {
                // The duplicate of a held datagram goes out now, the original later.
                st.plan.push(slot);
                Self::bump(&self.counters.duplicated);
            }
        }
        // Nothing is held across calls: what is still held goes out last.
        let State { plan, held, .. } = st;
        plan.extend(held.drain(..).map(|(s, _)| s));
    }

    /// One datagram passed: count down the held ones and release those due.
    fn release_due(st: &mut State) {
        let mut i = 0;
        while i < st.held.len() {
            st.held[i].1 -= 1;
            if st.held[i].1 == 0 {
                let (slot, _) = st.held.remove(i);
                st.plan.push(slot);
            } else {
                i += 1;
            }
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Impaired<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impaired")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Transport for Impaired<T> {
    /// Returns the number of the caller's datagrams that were not dropped
    /// *locally* by the inner transport; network-style losses count as sent.
    fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *st;
        self.plan(st, datagrams);
        let out: Vec<&[u8]> = st
            .plan
            .iter()
            .map(|s| match s {
                Slot::Borrowed(i) => datagrams[*i],
                Slot::Owned(o) => st.scratch[*o].as_slice(),
            })
            .collect();
        let sent = self.inner.send_batch(&out)?;
        let local_drops = out.len() - sent;
        Ok(datagrams.len().saturating_sub(local_drops))
    }

    // Receiving is not impaired: the wrapper shapes what this end sends.
    fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.inner.recv_batch(bufs, meta)
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        self.inner.wait_readable(timeout)
    }

    fn io_counters(&self) -> IoCounters {
        self.inner.io_counters()
    }

    fn enable_segmented_receive(&self) -> bool {
        self.inner.enable_segmented_receive()
    }

    fn enable_arrival_times(&self) -> bool {
        self.inner.enable_arrival_times()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LoopbackTransport;

    fn run(cfg: ImpairmentConfig, n: usize) -> (Vec<Vec<u8>>, ImpairmentCounters) {
        let (a, b) = LoopbackTransport::pair(100_000);
        let imp = Impaired::new(a, cfg);
        let msgs: Vec<Vec<u8>> = (0..n as u32).map(|i| i.to_be_bytes().repeat(4)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        for chunk in refs.chunks(100) {
            imp.send_batch(chunk).unwrap();
        }
        (crate::transport::testing::drain(&b, 64), imp.counters())
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(ImpairmentConfig::random_loss(1, 5.0).validate().is_ok());
        let e = ImpairmentConfig::random_loss(1, f64::NAN).validate().unwrap_err();
        assert!(e.message().contains("loss_percent"), "{e}");
        let mut c = ImpairmentConfig {
            burst: Some(GilbertElliott {
                good_to_bad_percent: 1.0,
                bad_to_good_percent: 30.0,
                loss_good_percent: 0.0,
                loss_bad_percent: 101.0,
            }),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .message()
            .contains("burst.loss_bad_percent"));
        c.burst = None;
        c.reorder_depth = MAX_REORDER_DEPTH + 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn every_nth_drops_exactly() {
        let (out, c) = run(ImpairmentConfig::drop_every(8), 800);
        assert_eq!(c.dropped, 100);
        assert_eq!(out.len(), 700);
    }

    #[test]
    fn random_loss_is_seeded_and_near_its_rate() {
        let (out1, c1) = run(ImpairmentConfig::random_loss(7, 10.0), 10_000);
        let (out2, _) = run(ImpairmentConfig::random_loss(7, 10.0), 10_000);
        assert_eq!(out1, out2, "same seed, same losses");
        assert!((800..1200).contains(&c1.dropped), "dropped {}", c1.dropped);
    }

    #[test]
    fn burst_loss_clusters() {
        let cfg = ImpairmentConfig {
            seed: 3,
            burst: Some(GilbertElliott {
                good_to_bad_percent: 1.0,
                bad_to_good_percent: 20.0,
                loss_good_percent: 0.0,
                loss_bad_percent: 100.0,
            }),
            ..Default::default()
        };
        let (out, c) = run(cfg, 20_000);
        assert!(c.dropped > 0);
        // Count runs of consecutive losses from the gaps in the sequence numbers.
        let seqs: Vec<u32> = out
            .iter()
            .map(|m| u32::from_be_bytes(m[..4].try_into().unwrap()))
            .collect();
        let gaps: Vec<u32> = seqs
            .windows(2)
            .map(|w| w[1] - w[0] - 1)
            .filter(|g| *g > 0)
            .collect();
        let mean_gap = gaps.iter().sum::<u32>() as f64 / gaps.len() as f64;
        assert!(
            mean_gap > 2.5,
            "losses should come in bursts, mean run {mean_gap}"
        );
    }

    #[test]
    fn reorder_duplicate_corrupt_truncate_do_what_they_say() {
        let cfg = ImpairmentConfig {
            seed: 11,
            reorder_percent: 5.0,
            reorder_depth: 3,
            duplicate_percent: 5.0,
            corrupt_percent: 5.0,
            truncate_percent: 5.0,
            ..Default::default()
        };
        let (out, c) = run(cfg, 2000);
        assert_eq!(out.len() as u64, 2000 + c.duplicated);
        assert!(c.reordered > 0 && c.duplicated > 0 && c.corrupted > 0 && c.truncated > 0);
        let short = out.iter().filter(|m| m.len() < 16).count() as u64;
        assert!(short >= c.truncated, "{short} short vs {} truncated", c.truncated);
        let seqs: Vec<u32> = out
            .iter()
            .filter(|m| m.len() == 16)
            .map(|m| u32::from_be_bytes(m[..4].try_into().unwrap()))
            .collect();
        assert!(seqs.windows(2).any(|w| w[1] < w[0]), "something was reordered");
    }
}
