//! `punktfunk_core::session::Reassembler` driven by an arbitrary sequence of
//! shards, clock advances, expiries, event pops and buffer recycling.
//!
//! Shards come two ways: forged ones (every header field chosen by the input,
//! random payload bytes) and real ones, cut and FEC-encoded from frames the
//! input describes, so the fuzzer can reach block completion and Reed-Solomon
//! recovery with shards that really decode. Forged headers first go through
//! `InnerHeader::encode`/`decode`, as on the real receive path (the reassembler
//! only ever sees headers that decoded).
//!
//! Invariants (docs/PROTOCOL.md §3, §6, §7):
//! * events are contiguous in frame index from 0: every index is reported once,
//!   as a `Frame` or inside a `Lost` range, and `next_index()` follows them;
//! * a delivered frame has exactly the `frame_len`, `pts` and keyframe flag of
//!   the shards accepted for its index (which all agree), and a frame built only
//!   from real shards is byte-exact;
//! * open frames ≤ `max_frames_in_flight`, and the buffered bytes stay under a
//!   bound derived from the configuration alone;
//! * every `insert` outcome is counted in exactly one `Stats` counter.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use punktfunk_core::fec::{recovery_count, FecConfig, FecEncoder, FrameLayout};
use punktfunk_core::session::Reassembler;
use punktfunk_core::wire::{InnerHeader, FLAG_KEYFRAME, INNER_HEADER_LEN};
use punktfunk_core::{FrameEvent, SessionConfig, Stats};

mod forge;
use forge::{Fitted, Index};

const MAX_OPS: usize = 512;
const MAX_REAL_FRAMES: usize = 6;
/// Real frames stay small so encoding them is cheap.
const MAX_REAL_FRAME_LEN: usize = 2048;

#[derive(Arbitrary, Debug)]
struct Config {
    /// `shard_payload = 64 · (1 + x % 2)`: 64 or 128 bytes.
    shard: u8,
    /// `max_data_per_block = 1 + x % 16`: small, so frames span many blocks.
    per_block: u8,
    /// `max_frame_bytes = 1 + x % 64 KiB`.
    max_frame: u16,
    /// `max_frames_in_flight = 1 + x % 4`.
    in_flight: u8,
    /// `frame_timeout = 1 + x ms`.
    timeout_ms: u8,
    /// `max_index_lag = 1 + x % 16`.
    lag: u8,
}

#[derive(Arbitrary, Debug)]
struct RealFrame {
    len: u16,
    pct: u8,
    pts: u64,
    keyframe: bool,
    seed: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A forged shard.
    Forged {
        flags: u8,
        block_index: u16,
        block_count: u16,
        shard_index: u16,
        data_shards: u16,
        recovery_shards: u16,
        frame_index: Index,
        frame_len: u32,
        pts: u8,
        fill: u8,
        /// Payload length off by this much from the shard size (0: right size).
        len_delta: i8,
    },
    /// A forged shard whose counts fit the layout of its frame length (block,
    /// shard and recovery counts taken modulo what the layout allows), so it
    /// passes the cheap checks and reaches slots, completion and recovery.
    Consistent { fitted: Fitted, fill: u8 },
    /// A shard of a real frame (`frame` and `shard` taken modulo the counts).
    Real { frame: u8, shard: u16 },
    /// The clock moves on.
    Advance { ms: u16 },
    /// `expire(now)`.
    Expire,
    /// Pop every event, recycling delivered buffers.
    Drain,
    /// Pop one event but keep its buffer (never recycled).
    PopOne,
    /// Hand the reassembler a foreign buffer of some capacity.
    RecycleForeign { cap: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    frames: Vec<RealFrame>,
    ops: Vec<Op>,
}

/// A real frame cut into shards: every datagram's header and payload.
struct Encoded {
    data: Vec<u8>,
    pts: u64,
    keyframe: bool,
    shards: Vec<(InnerHeader, Vec<u8>)>,
}

fn encode_frame(index: u64, f: &RealFrame, fec: &FecConfig, max_frame: usize) -> Encoded {
    let len = (f.len as usize % (MAX_REAL_FRAME_LEN + 1)).min(max_frame);
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(f.seed) ^ (index as u8))
        .collect();
    let pct = f.pct % 101;
    let s = fec.shard_payload;
    let layout = FrameLayout::new(len, fec);
    let mut enc = FecEncoder::new();
    let mut shards = Vec::new();
    for b in 0..layout.blocks {
        let block = layout.block(b);
        let k = block.data_shards;
        let m = recovery_count(k, pct);
        let header = |i: usize| InnerHeader {
            flags: if f.keyframe { FLAG_KEYFRAME } else { 0 },
            block_index: b as u16,
            block_count: layout.blocks as u16,
            shard_index: i as u16,
            data_shards: k as u16,
            recovery_shards: m as u16,
            frame_index: index,
            frame_len: len as u32,
            pts: f.pts,
        };
        let mut data_shards = Vec::with_capacity(k);
        for i in 0..k {
            let start = ((block.first_shard + i) * s).min(len);
            let end = (start + s).min(len);
            let mut p = vec![0u8; s];
            p[..end - start].copy_from_slice(&data[start..end]);
            data_shards.push(p);
        }
        let mut rec = Vec::new();
        enc.encode(k, m, s, data_shards.iter().map(|p| p.as_slice()), |_, shard| {
            rec.push(shard.to_vec())
        })
        .expect("encoding a valid block");
        assert_eq!(rec.len(), m);
        for (i, p) in data_shards.into_iter().chain(rec).enumerate() {
            shards.push((header(i), p));
        }
    }
    Encoded {
        data,
        pts: f.pts,
        keyframe: f.keyframe,
        shards,
    }
}

struct Checker {
    /// Lowest index not yet reported.
    expected: u64,
    /// `(frame_len, flags, pts)` of the shards accepted for each index.
    accepted: HashMap<u64, (u32, u8, u64)>,
    /// Indexes that received a forged shard (their bytes are unknown).
    tainted: HashSet<u64>,
    frames: u64,
    lost: u64,
    delivered_bytes: u64,
}

impl Checker {
    fn event(&mut self, ev: &FrameEvent, real: &[Encoded]) {
        match ev {
            FrameEvent::Frame(f) => {
                assert_eq!(f.index, self.expected, "frames come in index order, none skipped");
                self.expected = f.index.checked_add(1).expect("frame index u64::MAX delivered");
                let &(len, flags, pts) = self
                    .accepted
                    .get(&f.index)
                    .expect("a delivered frame had accepted shards");
                assert_eq!(f.data.len(), len as usize, "frame data length equals frame_len");
                assert_eq!(f.pts, pts);
                assert_eq!(f.keyframe, flags & FLAG_KEYFRAME != 0);
                if let Some(r) = real.get(f.index as usize) {
                    if !self.tainted.contains(&f.index) {
                        assert!(f.data == r.data, "real frame {} delivered wrong", f.index);
                        assert_eq!((f.pts, f.keyframe), (r.pts, r.keyframe));
                    }
                }
                self.frames += 1;
                self.delivered_bytes += f.data.len() as u64;
            }
            FrameEvent::Lost { first_index, count } => {
                assert_eq!(*first_index, self.expected, "lost ranges are contiguous");
                assert!(*count >= 1, "empty lost range");
                self.expected = first_index.checked_add(*count).expect("lost range overflows");
                self.lost += count;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let c = &input.config;
    let config = SessionConfig {
        fec: FecConfig {
            fec_percent: 10,
            max_data_per_block: 1 + c.per_block as usize % 16,
            shard_payload: 64 * (1 + c.shard as usize % 2),
        },
        max_frame_bytes: 1 + c.max_frame as usize,
        max_frames_in_flight: 1 + c.in_flight as usize % 4,
        frame_timeout: Duration::from_millis(1 + c.timeout_ms as u64),
        max_index_lag: 1 + c.lag as u64 % 16,
        ..SessionConfig::default()
    };
    config.validate().expect("the fuzz config is valid");
    let s = config.fec.shard_payload;
    let in_flight = config.max_frames_in_flight;
    // §7: per open frame its padded bytes and at most as many recovery bytes;
    // at most `in_flight` spare buffers; Vec growth may double a capacity.
    let padded_max = FrameLayout::new(config.max_frame_bytes, &config.fec).padded_len();
    let bound = 2 * 3 * in_flight * padded_max;

    let real: Vec<Encoded> = input
        .frames
        .iter()
        .take(MAX_REAL_FRAMES)
        .enumerate()
        .map(|(i, f)| encode_frame(i as u64, f, &config.fec, config.max_frame_bytes))
        .collect();

    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(config.clone(), stats.clone());
    let start = Instant::now();
    let mut now = start;
    let mut ck = Checker {
        expected: 0,
        accepted: HashMap::new(),
        tainted: HashSet::new(),
        frames: 0,
        lost: 0,
        delivered_bytes: 0,
    };
    let (mut inserts, mut oks) = (0u64, 0u64);
    let mut payload = Vec::new();

    let mut insert = |r: &mut Reassembler, ck: &mut Checker, h: &InnerHeader, p: &[u8], now: Instant| {
        inserts += 1;
        if r.insert(h, p, now).is_ok() {
            oks += 1;
            let meta = (h.frame_len, h.flags, h.pts);
            let prev = *ck.accepted.entry(h.frame_index).or_insert(meta);
            assert_eq!(prev, meta, "accepted shards of one frame disagree");
        }
    };

    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Forged {
                flags,
                block_index,
                block_count,
                shard_index,
                data_shards,
                recovery_shards,
                frame_index,
                frame_len,
                pts,
                fill,
                len_delta,
            } => {
                let frame_index = frame_index.get();
                let h = InnerHeader {
                    flags: *flags,
                    block_index: *block_index,
                    block_count: *block_count,
                    shard_index: *shard_index,
                    data_shards: *data_shards,
                    recovery_shards: *recovery_shards,
                    frame_index,
                    frame_len: *frame_len,
                    pts: *pts as u64,
                };
                let mut wire = [0u8; INNER_HEADER_LEN];
                h.encode(&mut wire);
                // The receive path hands on only headers that decode.
                let Ok(h) = InnerHeader::decode(&wire) else {
                    continue;
                };
                ck.tainted.insert(h.frame_index);
                let len = (s as isize + *len_delta as isize).max(0) as usize;
                payload.clear();
                payload.resize(len, *fill);
                insert(&mut r, &mut ck, &h, &payload, now);
            }
            Op::Consistent { fitted, fill } => {
                let h = fitted.header(config.max_frame_bytes, &config.fec);
                ck.tainted.insert(h.frame_index);
                payload.clear();
                payload.resize(s, *fill);
                insert(&mut r, &mut ck, &h, &payload, now);
            }
            Op::Real { frame, shard } => {
                if real.is_empty() {
                    continue;
                }
                let f = &real[*frame as usize % real.len()];
                let (h, p) = &f.shards[*shard as usize % f.shards.len()];
                insert(&mut r, &mut ck, h, p, now);
            }
            Op::Advance { ms } => now += Duration::from_millis(*ms as u64),
            Op::Expire => r.expire(now),
            Op::Drain => {
                while let Some(ev) = r.pop_event() {
                    ck.event(&ev, &real);
                    if let FrameEvent::Frame(f) = ev {
                        r.recycle(f.data);
                    }
                }
            }
            Op::PopOne => {
                if let Some(ev) = r.pop_event() {
                    ck.event(&ev, &real);
                }
            }
            Op::RecycleForeign { cap } => {
                // Only capacities a delivered frame could have (the bound is
                // about what the network can cause, not what the app hands back).
                let cap = *cap as usize % (padded_max + 1);
                r.recycle(Vec::with_capacity(cap));
            }
        }
        assert!(r.open_frames() <= in_flight, "more open frames than slots");
        let held = r.buffered_bytes();
        assert!(held <= bound, "reassembler holds {held} bytes, bound {bound}");
    }
    r.expire(now + Duration::from_secs(3600));
    while let Some(ev) = r.pop_event() {
        ck.event(&ev, &real);
    }
    assert_eq!(r.next_index(), ck.expected, "next_index follows the events");

    let st = stats.snapshot();
    assert_eq!(st.frames_completed, ck.frames);
    assert_eq!(st.frames_dropped, ck.lost);
    assert_eq!(st.payload_bytes_delivered, ck.delivered_bytes);
    let rejected = st.recv_dropped_malformed
        + st.recv_dropped_out_of_bounds
        + st.recv_dropped_stale
        + st.packets_redundant;
    assert_eq!(rejected + oks, inserts, "every insert is counted once: {st:?}");
});
