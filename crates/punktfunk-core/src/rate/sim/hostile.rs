//! Feedback a broken or malicious client could send.

use super::Rng;
use crate::rate::{ArrivalSample, Feedback};

/// One hostile datagram made from an honest report `fb`.
pub(super) fn hostile(fb: &Feedback, rng: &mut Rng) -> Vec<u8> {
    let mut f = fb.clone();
    match rng.next_u64() % 6 {
        0 => (0..rng.next_u64() % 600).map(|_| rng.next_u64() as u8).collect(),
        1 => {
            // Absurd counters: more than was ever sent.
            f.seq = f.seq.wrapping_add(1_000);
            f.highest_seq = f.highest_seq.saturating_add(1 << 40);
            f.packets_received = f.packets_received.saturating_add(1 << 39);
            f.bytes_received = f.packets_received.saturating_mul(1401);
            f.encode().unwrap_or_default()
        }
        2 => {
            // Time going backwards: the same report with older arrivals.
            f.seq = f.seq.wrapping_add(1);
            let s: Vec<_> = f.samples().to_vec();
            f.clear_samples();
            for x in s {
                f.push_sample(ArrivalSample {
                    seq: x.seq,
                    arrival_us: x.arrival_us / 2,
                });
            }
            f.encode().unwrap_or_default()
        }
        3 => {
            // Counters going backwards.
            f.seq = f.seq.wrapping_add(1);
            f.packets_lost = 0;
            f.packets_received /= 2;
            f.bytes_received /= 2;
            let s: Vec<_> = f.samples().to_vec();
            f.clear_samples();
            for x in s.into_iter().take(f.packets_received as usize) {
                f.push_sample(x);
            }
            f.encode().unwrap_or_default()
        }
        4 => {
            // Samples of sequences never sent (below the highest, in gaps).
            let mut x = fb.encode().unwrap_or_default();
            let n = x.len();
            if n > 60 {
                x[n - 8..n - 4].copy_from_slice(&u32::MAX.to_be_bytes());
            }
            x
        }
        _ => {
            let mut x = fb.encode().unwrap_or_default();
            let i = (rng.next_u64() as usize) % x.len().max(1);
            if let Some(b) = x.get_mut(i) {
                *b ^= 0x5a;
            }
            x
        }
    }
}
