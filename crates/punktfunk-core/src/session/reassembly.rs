//! Reassembly and FEC recovery of authenticated shards into whole frames.
//!
//! Pure and clock-free: every call takes `now`. Memory is bounded by the
//! configuration alone, whatever packets claim:
//!
//! * at most `max_frames_in_flight` frames are open at once;
//! * an open frame holds its padded bytes (`≤ max_frame_bytes + shard_payload`),
//!   the recovery shards of its blocks (each block's count is capped at the
//!   100 % maximum and each shard is stored once), and bitmaps of one bit per shard.
//!
//! Frames are delivered strictly in index order. When a frame completes, every
//! earlier frame still incomplete is reported lost (a decoder cannot use it any
//! more); frames also die when they time out or fall `max_index_lag` behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::fec::{max_recovery_count, FecDecoder, FrameLayout};
use crate::stats::Stats;
use crate::wire::{InnerHeader, FLAG_KEYFRAME};

use super::{Frame, FrameEvent, SessionConfig};

#[derive(Clone, Copy, Debug, Default)]
struct BlockState {
    /// Recovery shards announced for this block (by its first packet).
    m: Option<u16>,
    data_count: usize,
    rec_count: usize,
    done: bool,
    /// Offset of this block's recovery shards in the frame's recovery bitmap.
    rec_base: usize,
}

#[derive(Clone, Copy, Debug)]
struct RecEntry {
    block: usize,
    index: usize,
    offset: usize,
}

struct Slot {
    active: bool,
    index: u64,
    frame_len: usize,
    flags: u8,
    pts: u64,
    last_seen: Instant,
    layout: FrameLayout,
    data: Vec<u8>,
    data_have: Vec<u64>,
    blocks: Vec<BlockState>,
    rec_have: Vec<u64>,
    rec_arena: Vec<u8>,
    rec_entries: Vec<RecEntry>,
    blocks_done: usize,
    recovered: u32,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn reset_bits(bits: &mut Vec<u64>, n: usize) {
    bits.clear();
    bits.resize(n.div_ceil(64), 0);
}

/// Why [`Reassembler::insert`] did not use a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Header contradicts the configuration or the frame's earlier packets.
    Malformed,
    /// Header claims sizes beyond the negotiated bounds.
    OutOfBounds,
    /// Frame already delivered, given up, or older than every open frame.
    Stale,
    /// Shard not needed: its block is complete or it arrived twice.
    Redundant,
}

/// Turns authenticated shards into in-order [`FrameEvent`]s.
pub struct Reassembler {
    config: SessionConfig,
    stats: Arc<Stats>,
    slots: Vec<Slot>,
    /// Lowest frame index neither delivered nor reported lost.
    next_index: u64,
    newest: Option<u64>,
    /// Bit `i` set: frame `next_index - 1 - i` was delivered (to tell late
    /// duplicates of delivered frames from shards of lost ones).
    delivered_mask: u64,
    decoder: FecDecoder,
    spare: Vec<Vec<u8>>,
    events: VecDeque<FrameEvent>,
}

impl Reassembler {
    /// A reassembler for a validated `config`, counting into `stats`.
    pub fn new(config: SessionConfig, stats: Arc<Stats>) -> Self {
        Reassembler {
            config,
            stats,
            slots: Vec::new(),
            next_index: 0,
            newest: None,
            delivered_mask: 0,
            decoder: FecDecoder::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// The next event, if any, in frame-index order.
    pub fn pop_event(&mut self) -> Option<FrameEvent> {
        self.events.pop_front()
    }

    /// Lowest frame index not yet delivered or reported lost.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Frames currently being reassembled.
    pub fn open_frames(&self) -> usize {
        self.slots.iter().filter(|s| s.active).count()
    }

    /// Bytes currently held by open and spare frame buffers (for bound tests).
    pub fn buffered_bytes(&self) -> usize {
        let slots: usize = self
            .slots
            .iter()
            .map(|s| s.data.capacity() + s.rec_arena.capacity())
            .sum();
        slots + self.spare.iter().map(|b| b.capacity()).sum::<usize>()
    }

    /// Returns a delivered frame's buffer for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < self.config.max_frames_in_flight {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Offers one authenticated shard. Counts it under its outcome and queues
    /// any events it causes.
    pub fn insert(&mut self, h: &InnerHeader, payload: &[u8], now: Instant) -> Result<(), Rejection> {
        let r = self.try_insert(h, payload, now);
        let st = &self.stats;
        match r {
            Ok(()) => {}
            Err(Rejection::Malformed) => Stats::add(&st.recv_dropped_malformed, 1),
            Err(Rejection::OutOfBounds) => Stats::add(&st.recv_dropped_out_of_bounds, 1),
            Err(Rejection::Stale) => Stats::add(&st.recv_dropped_stale, 1),
            Err(Rejection::Redundant) => Stats::add(&st.packets_redundant, 1),
        }
        r
    }

    fn try_insert(&mut self, h: &InnerHeader, payload: &[u8], now: Instant) -> Result<(), Rejection> {
        let fec = self.config.fec;
        let s = fec.shard_payload;
        if payload.len() != s {
            return Err(Rejection::Malformed);
        }
        let frame_len = h.frame_len as usize;
        if frame_len > self.config.max_frame_bytes {
            return Err(Rejection::OutOfBounds);
        }
        // The last index can never be delivered (`next_index` would overflow);
        // no sender gets there: indexes count up from 0, one per frame.
        if h.frame_index == u64::MAX {
            return Err(Rejection::OutOfBounds);
        }
        let layout = FrameLayout::new(frame_len, &fec);
        if layout.blocks != h.block_count as usize {
            return Err(Rejection::Malformed);
        }
        let b = h.block_index as usize;
        if b >= layout.blocks {
            return Err(Rejection::Malformed);
        }
        let block = layout.block(b);
        let k = block.data_shards;
        if h.data_shards as usize != k {
            return Err(Rejection::Malformed);
        }
        let m = h.recovery_shards as usize;
        if m > max_recovery_count(k) {
            return Err(Rejection::OutOfBounds);
        }
        if h.shard_index as usize >= k + m {
            return Err(Rejection::Malformed);
        }
        if h.frame_index < self.next_index {
            let age = self.next_index - 1 - h.frame_index;
            return Err(if age < 64 && self.delivered_mask & (1 << age) != 0 {
                Rejection::Redundant
            } else {
                Rejection::Stale
            });
        }
        let si = match self
            .slots
            .iter()
            .position(|x| x.active && x.index == h.frame_index)
        {
            Some(i) => i,
            None => self.open_slot(h, layout, now).ok_or(Rejection::Stale)?,
        };
        let slot = &mut self.slots[si];
        if slot.frame_len != frame_len || slot.flags != h.flags || slot.pts != h.pts {
            return Err(Rejection::Malformed);
        }
        let bs = &mut slot.blocks[b];
        if bs.done {
            return Err(Rejection::Redundant);
        }
        match bs.m {
            None => bs.m = Some(m as u16),
            Some(x) if x as usize != m => return Err(Rejection::Malformed),
            Some(_) => {}
        }
        let shard = h.shard_index as usize;
        if shard < k {
            let g = block.first_shard + shard;
            if bit(&slot.data_have, g) {
                return Err(Rejection::Redundant);
            }
            set_bit(&mut slot.data_have, g);
            slot.data[g * s..(g + 1) * s].copy_from_slice(payload);
            bs.data_count += 1;
        } else {
            let j = shard - k;
            let r = bs.rec_base + j;
            if bit(&slot.rec_have, r) {
                return Err(Rejection::Redundant);
            }
            set_bit(&mut slot.rec_have, r);
            let offset = slot.rec_arena.len();
            slot.rec_arena.extend_from_slice(payload);
            slot.rec_entries.push(RecEntry {
                block: b,
                index: j,
                offset,
            });
            bs.rec_count += 1;
        }
        let index = slot.index;
        // A frame still receiving shards is not lost, however long a slow
        // path takes to carry it: its timeout runs from the last one.
        slot.last_seen = now;
        if bs.data_count == k {
            bs.done = true;
            slot.blocks_done += 1;
        } else if bs.data_count + bs.rec_count >= k {
            bs.done = true;
            slot.blocks_done += 1;
            if Self::recover_block(&mut self.decoder, slot, b, m, &self.stats).is_err() {
                // Cannot happen with k authenticated shards; if it does, the frame
                // is lost rather than delivered wrong.
                let end = slot.index + 1;
                self.declare_lost_until(end);
                return Ok(());
            }
        }
        let complete = slot.blocks_done == slot.layout.blocks;
        // Only a shard that was actually used may move the index cap forward.
        self.advance_newest(index);
        if complete && self.slots[si].active {
            self.complete(si, now);
        }
        Ok(())
    }

    /// Rebuilds the missing data shards of block `b` straight into the frame buffer.
    fn recover_block(
        dec: &mut FecDecoder,
        slot: &mut Slot,
        b: usize,
        m: usize,
        stats: &Stats,
    ) -> crate::Result<()> {
        let s = slot.layout.shard_payload;
        let block = slot.layout.block(b);
        let k = block.data_shards;
        dec.reset(k, m, s)?;
        for i in 0..k {
            let g = block.first_shard + i;
            if bit(&slot.data_have, g) {
                dec.add_original(i, &slot.data[g * s..(g + 1) * s])?;
            }
        }
        for e in slot.rec_entries.iter().filter(|e| e.block == b) {
            dec.add_recovery(e.index, &slot.rec_arena[e.offset..e.offset + s])?;
        }
        let mut restored = 0u32;
        let data = &mut slot.data;
        dec.decode(|i, shard| {
            let g = block.first_shard + i;
            data[g * s..(g + 1) * s].copy_from_slice(shard);
            restored += 1;
        })?;
        slot.recovered += restored;
        Stats::add(&stats.fec_recovered_shards, restored as u64);
        Ok(())
    }

    /// Opens a slot for a new frame, evicting the oldest open frame if all are
    /// busy. `None` when the new frame is older than every open one.
    fn open_slot(&mut self, h: &InnerHeader, layout: FrameLayout, now: Instant) -> Option<usize> {
        let free = match self.slots.iter().position(|x| !x.active) {
            Some(i) => i,
            None if self.slots.len() < self.config.max_frames_in_flight => {
                self.slots.push(Slot {
                    active: false,
                    index: 0,
                    frame_len: 0,
                    flags: 0,
                    pts: 0,
                    last_seen: now,
                    layout,
                    data: Vec::new(),
                    data_have: Vec::new(),
                    blocks: Vec::new(),
                    rec_have: Vec::new(),
                    rec_arena: Vec::new(),
                    rec_entries: Vec::new(),
                    blocks_done: 0,
                    recovered: 0,
                });
                self.slots.len() - 1
            }
            None => {
                let (i, oldest) = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, x)| x.index)
                    .map(|(i, x)| (i, x.index))?;
                if oldest > h.frame_index {
                    return None;
                }
                self.declare_lost_until(oldest + 1);
                i
            }
        };
        let spare = &mut self.spare;
        let slot = &mut self.slots[free];
        if slot.data.capacity() == 0 {
            if let Some(buf) = spare.pop() {
                slot.data = buf;
            }
        }
        slot.active = true;
        slot.index = h.frame_index;
        slot.frame_len = h.frame_len as usize;
        slot.flags = h.flags;
        slot.pts = h.pts;
        slot.last_seen = now;
        slot.layout = layout;
        slot.data.clear();
        slot.data.resize(layout.padded_len(), 0);
        reset_bits(&mut slot.data_have, layout.data_shards);
        slot.blocks.clear();
        let mut rec_base = 0;
        for b in 0..layout.blocks {
            slot.blocks.push(BlockState {
                rec_base,
                ..Default::default()
            });
            rec_base += max_recovery_count(layout.block(b).data_shards);
        }
        reset_bits(&mut slot.rec_have, rec_base);
        slot.rec_arena.clear();
        slot.rec_entries.clear();
        slot.blocks_done = 0;
        slot.recovered = 0;
        Some(free)
    }

    /// Delivers the frame in slot `si`, reporting earlier incomplete frames lost.
    fn complete(&mut self, si: usize, now: Instant) {
        let index = self.slots[si].index;
        self.declare_lost_until(index);
        let spare = self.spare.pop().unwrap_or_default();
        let slot = &mut self.slots[si];
        slot.active = false;
        let mut data = std::mem::replace(&mut slot.data, spare);
        data.truncate(slot.frame_len);
        Stats::add(&self.stats.frames_completed, 1);
        Stats::add(&self.stats.payload_bytes_delivered, data.len() as u64);
        self.events.push_back(FrameEvent::Frame(Frame {
            index,
            pts: slot.pts,
            keyframe: slot.flags & FLAG_KEYFRAME != 0,
            received_at: now,
            recovered_shards: slot.recovered,
            data,
        }));
        self.next_index = index + 1;
        self.delivered_mask = (self.delivered_mask << 1) | 1;
    }

    /// Reports frames `next_index..end` lost and closes their slots.
    fn declare_lost_until(&mut self, end: u64) {
        if end <= self.next_index {
            return;
        }
        for slot in self.slots.iter_mut().filter(|x| x.active && x.index < end) {
            slot.active = false;
        }
        let count = end - self.next_index;
        self.events.push_back(FrameEvent::Lost {
            first_index: self.next_index,
            count,
        });
        Stats::add(&self.stats.frames_dropped, count);
        self.delivered_mask = if count >= 64 {
            0
        } else {
            self.delivered_mask << count
        };
        self.next_index = end;
    }

    /// Records a newly seen index and drops frames more than `max_index_lag` behind it.
    fn advance_newest(&mut self, index: u64) {
        if self.newest.is_some_and(|n| n >= index) {
            return;
        }
        self.newest = Some(index);
        if let Some(floor) = index.checked_sub(self.config.max_index_lag) {
            self.declare_lost_until(floor);
        }
    }

    /// When [`Reassembler::expire`] next drops a frame: just after the open
    /// frame heard from least recently reaches `frame_timeout` without a new
    /// shard. `None` with no frame open.
    pub fn next_expiry(&self) -> Option<Instant> {
        let timeout = self.config.frame_timeout + std::time::Duration::from_nanos(1);
        self.slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.last_seen + timeout)
            .min()
    }

    /// Drops open frames that received no shard for `frame_timeout`
    /// (and, to keep order, every earlier frame).
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.config.frame_timeout;
        let newest_expired = self
            .slots
            .iter()
            .filter(|x| x.active && now.saturating_duration_since(x.last_seen) > timeout)
            .map(|x| x.index)
            .max();
        if let Some(i) = newest_expired {
            self.declare_lost_until(i + 1);
        }
    }
}
