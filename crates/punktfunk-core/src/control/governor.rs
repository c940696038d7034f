//! The host-wide ceiling: one uplink shared by every session's rate
//! controller, max-min fairly.
//!
//! Each session tells the governor what it could use (its path estimate) and
//! gets back its cap: sessions that want less than an equal share keep what
//! they want, and what they leave is split evenly among the others. No
//! session starves, and the caps never add up to more than the ceiling.
//! Pure bookkeeping behind a mutex held for a sort of at most a few dozen
//! entries; sessions call it once per feedback report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Sessions share a ceiling through this (see the module docs).
#[derive(Debug)]
pub(super) struct Governor {
    total_bps: u64,
    demands: Mutex<BTreeMap<u64, u64>>,
    next_id: Mutex<u64>,
}

impl Governor {
    /// A governor sharing `total_bps`.
    pub(super) fn new(total_bps: u64) -> Arc<Governor> {
        Arc::new(Governor {
            total_bps,
            demands: Mutex::new(BTreeMap::new()),
            next_id: Mutex::new(0),
        })
    }

    /// Registers a session; it counts until the handle is dropped.
    pub(super) fn join(self: &Arc<Self>) -> Share {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        // A newcomer asks for an equal share until it knows better.
        self.demands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, u64::MAX);
        Share {
            governor: self.clone(),
            id,
        }
    }

    fn cap(&self, id: u64, demand_bps: u64) -> u64 {
        let mut demands = self.demands.lock().unwrap_or_else(|p| p.into_inner());
        demands.insert(id, demand_bps);
        max_min_share(self.total_bps, demands.values().copied(), demand_bps)
    }
}

/// One session's place at the governor.
#[derive(Debug)]
pub(super) struct Share {
    governor: Arc<Governor>,
    id: u64,
}

impl Share {
    /// Records what this session could use now and returns its cap, bit/s.
    pub(super) fn cap(&self, demand_bps: u64) -> u64 {
        self.governor.cap(self.id, demand_bps)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.governor
            .demands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The max-min fair share of `total` for a session demanding `mine` among
/// `demands` (which include `mine`): demands below the water level are met
/// whole, the rest split what is left evenly.
fn max_min_share(total: u64, demands: impl Iterator<Item = u64>, mine: u64) -> u64 {
    let mut sorted: Vec<u64> = demands.collect();
    sorted.sort_unstable();
    let mut left = total;
    let mut n = sorted.len() as u64;
    for d in sorted {
        let level = left / n.max(1);
        if d >= level {
            // Everyone from here on gets the level.
            return mine.min(level);
        }
        left -= d;
        n -= 1;
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    #[test]
    fn sessions_that_want_less_keep_it_and_the_rest_share_evenly() {
        let g = Governor::new(300 * M);
        let (a, b, c) = (g.join(), g.join(), g.join());
        // Newcomers ask for everything: a third each.
        assert_eq!(a.cap(u64::MAX), 100 * M);
        // One needs only 40: the other two split the remaining 260.
        assert_eq!(b.cap(40 * M), 40 * M);
        assert_eq!(a.cap(500 * M), 130 * M);
        assert_eq!(c.cap(500 * M), 130 * M);
        // The caps never add up to more than the ceiling.
        assert!(a.cap(500 * M) + b.cap(40 * M) + c.cap(500 * M) <= 300 * M);
        // A session that leaves frees its share.
        drop(b);
        assert_eq!(a.cap(500 * M), 150 * M);
        drop(c);
        assert_eq!(a.cap(500 * M), 300 * M);
        assert_eq!(a.cap(10 * M), 10 * M, "alone and modest: what it asks");
    }

    #[test]
    fn no_session_starves_however_many_join() {
        let g = Governor::new(1000 * M);
        let shares: Vec<Share> = (0..16).map(|_| g.join()).collect();
        for s in &shares {
            assert!(s.cap(u64::MAX) >= 1000 * M / 16 - 1);
        }
    }
}
