//! Sliding replay window over packet sequences.

/// Sequences tracked behind the newest one: 2^17 (about 0.7 s at 2 Gbps of
/// 1.4 KB packets). Anything older is refused as stale.
pub const REPLAY_WINDOW: u64 = 1 << 17;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Why a sequence was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Older than the window.
    Stale,
    /// Already seen.
    Replay,
}

/// A bitmap of the last [`REPLAY_WINDOW`] sequences, indexed modulo the window.
/// Checking is separate from committing so that only authenticated packets
/// move the window.
#[derive(Clone)]
pub struct ReplayWindow {
    bits: Box<[u64]>,
    highest: Option<u64>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// An empty window (16 KiB bitmap).
    pub fn new() -> Self {
        ReplayWindow {
            bits: vec![0u64; WORDS].into_boxed_slice(),
            highest: None,
        }
    }

    /// The newest committed sequence.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % REPLAY_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Would `seq` be accepted? Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(h) = self.highest else {
            return Ok(());
        };
        if seq > h {
            return Ok(());
        }
        if h - seq >= REPLAY_WINDOW {
            return Err(ReplayError::Stale);
        }
        let (w, bit) = Self::slot(seq);
        if self.bits[w] & bit != 0 {
            Err(ReplayError::Replay)
        } else {
            Ok(())
        }
    }

    /// Marks `seq` as seen (call only after [`ReplayWindow::check`] passed and
    /// the packet authenticated), sliding the window forward if it is newest.
    pub fn commit(&mut self, seq: u64) {
        match self.highest {
            Some(h) if seq <= h => {}
            Some(h) => {
                self.clear_range(h + 1, seq);
                self.highest = Some(seq);
            }
            None => self.highest = Some(seq),
        }
        let (w, bit) = Self::slot(seq);
        self.bits[w] |= bit;
    }

    /// Clears the bits of sequences `from..=to` (they are new to the window).
    fn clear_range(&mut self, from: u64, to: u64) {
        if to - from >= REPLAY_WINDOW {
            self.bits.fill(0);
            return;
        }
        let mut s = from;
        while s <= to {
            let (w, bit) = Self::slot(s);
            if s % 64 == 0 && to - s >= 63 {
                self.bits[w] = 0;
                s += 64;
            } else {
                self.bits[w] &= !bit;
                s += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn window_accepts_new_rejects_seen_and_stale() {
        let mut w = ReplayWindow::new();
        for s in [5u64, 3, 9, 4] {
            assert_eq!(w.check(s), Ok(()));
            w.commit(s);
        }
        assert_eq!(w.check(3), Err(ReplayError::Replay));
        assert_eq!(w.check(6), Ok(()));
        w.commit(REPLAY_WINDOW + 20);
        assert_eq!(w.check(20), Err(ReplayError::Stale));
        assert_eq!(w.check(21), Ok(()), "just inside the window and unseen");
        assert_eq!(w.check(REPLAY_WINDOW + 20), Err(ReplayError::Replay));
    }

    #[test]
    fn sliding_clears_reused_slots() {
        let mut w = ReplayWindow::new();
        w.commit(10);
        // Slot of 10 is reused by 10 + WINDOW; after sliding it must read as unseen.
        w.commit(10 + REPLAY_WINDOW - 1);
        assert_eq!(w.check(10 + REPLAY_WINDOW), Ok(()));
        w.commit(10 + REPLAY_WINDOW);
        assert_eq!(w.check(10 + REPLAY_WINDOW), Err(ReplayError::Replay));
    }

    proptest! {
        #[test]
        fn matches_a_reference_set(seqs in proptest::collection::vec(0u64..400_000, 1..300)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            for s in seqs {
                let expect = match highest {
                    Some(h) if s <= h && h - s >= REPLAY_WINDOW => Err(ReplayError::Stale),
                    _ if seen.contains(&s) => Err(ReplayError::Replay),
                    _ => Ok(()),
                };
                prop_assert_eq!(w.check(s), expect);
                if expect.is_ok() {
                    w.commit(s);
                    seen.insert(s);
                    highest = Some(highest.map_or(s, |h| h.max(s)));
                }
            }
        }
    }
}
