//! Forging helpers shared by the `reassembler` and `client_datagrams` targets.

use arbitrary::Arbitrary;
use punktfunk_core::fec::{max_recovery_count, FecConfig, FrameLayout};
use punktfunk_core::wire::{InnerHeader, FLAG_KEYFRAME};

/// A frame index: near the start of the stream, anywhere, or near the top of
/// the index space (where `index + 1` overflows).
#[derive(Arbitrary, Debug)]
pub enum Index {
    Small(u8),
    Raw(u64),
    FromTop(u8),
}

impl Index {
    pub fn get(&self) -> u64 {
        match *self {
            Index::Small(x) => x as u64,
            Index::Raw(x) => x,
            Index::FromTop(x) => u64::MAX - x as u64,
        }
    }
}

/// The input's choices for a header consistent with a frame's layout.
#[derive(Arbitrary, Debug)]
pub struct Fitted {
    pub frame_index: Index,
    pub frame_len: u32,
    pub block: u16,
    pub shard: u16,
    pub m: u8,
    pub keyframe: bool,
    pub pts: u8,
}

impl Fitted {
    /// A header whose counts fit the layout `fec` gives a frame of
    /// `frame_len % (max_frame + 1)` bytes: block and shard indexes in range,
    /// `k` data shards as laid out, `m` recovery shards within the maximum.
    pub fn header(&self, max_frame: usize, fec: &FecConfig) -> InnerHeader {
        let frame_len = self.frame_len as usize % (max_frame + 1);
        let layout = FrameLayout::new(frame_len, fec);
        let b = self.block as usize % layout.blocks;
        let k = layout.block(b).data_shards;
        let m = self.m as usize % (max_recovery_count(k) + 1);
        InnerHeader {
            flags: if self.keyframe { FLAG_KEYFRAME } else { 0 },
            block_index: b as u16,
            block_count: layout.blocks as u16,
            shard_index: (self.shard as usize % (k + m)) as u16,
            data_shards: k as u16,
            recovery_shards: m as u16,
            frame_index: self.frame_index.get(),
            frame_len: frame_len as u32,
            pts: self.pts as u64,
        }
    }
}
