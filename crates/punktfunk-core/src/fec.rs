//! Reed-Solomon FEC over GF(2^16) (Leopard-style, via `reed-solomon-simd`).
//!
//! A frame is cut into `N = ceil(len / S)` equal data shards of `S` bytes (the
//! last one zero-padded). Up to `max_data_per_block` data shards form one block,
//! so a multi-MB frame is usually a single block; larger frames are split into
//! blocks of nearly equal size. Each block with `k` data shards gets
//! `m = ceil(k · pct / 100)` recovery shards (at least 2 when FEC is on), and any
//! `k` of its `k + m` shards rebuild it (the code is MDS).
//!
//! Only authenticated shards may reach the decoder: it does not detect corruption.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::error::{Error, Result};
use crate::wire::PACKET_OVERHEAD;

/// Highest FEC percentage (recovery shards = data shards).
pub const MAX_FEC_PERCENT: u8 = 100;
/// Largest number of data shards in one block. With `MAX_FEC_PERCENT` a block
/// has at most 32768 shards, inside the library's limits and a `u16` index.
pub const MAX_DATA_PER_BLOCK: usize = 16_384;
/// Smallest shard payload in bytes.
pub const MIN_SHARD_PAYLOAD: usize = 64;
/// Largest shard payload in bytes (datagrams stay well below 64 KiB).
pub const MAX_SHARD_PAYLOAD: usize = 16_384;

/// FEC parameters of one direction of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FecConfig {
    /// Recovery overhead in percent of data shards, `0..=100`; 0 turns FEC off.
    pub fec_percent: u8,
    /// Most data shards in one FEC block, `1..=16384` (several MB at default shard size).
    pub max_data_per_block: usize,
    /// Shard payload bytes per datagram: even, `64..=16384`. Datagrams are
    /// `shard_payload + 57` bytes; multiples of 64 are fastest for the coder.
    pub shard_payload: usize,
}

impl Default for FecConfig {
    /// 10 % FEC, blocks of up to 4096 shards, 1344-byte shards (1401-byte
    /// datagrams: inside a 1500-byte Ethernet MTU for IPv4 and IPv6).
    fn default() -> Self {
        FecConfig {
            fec_percent: 10,
            max_data_per_block: 4096,
            shard_payload: 1344,
        }
    }
}

/// The one check of a FEC percentage (`0..=`[`MAX_FEC_PERCENT`]), for every
/// place that takes one: configuration, live changes, every binding.
pub fn check_fec_percent(pct: impl Into<u64>) -> Result<u8> {
    let pct = pct.into();
    match u8::try_from(pct) {
        Ok(p) if p <= MAX_FEC_PERCENT => Ok(p),
        _ => Err(Error::invalid(format!(
            "fec_percent {pct} is above {MAX_FEC_PERCENT}"
        ))),
    }
}

impl FecConfig {
    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        check_fec_percent(self.fec_percent)?;
        if !(1..=MAX_DATA_PER_BLOCK).contains(&self.max_data_per_block) {
            return Err(Error::invalid(format!(
                "max_data_per_block {} is outside 1..={MAX_DATA_PER_BLOCK}",
                self.max_data_per_block
            )));
        }
        if !(MIN_SHARD_PAYLOAD..=MAX_SHARD_PAYLOAD).contains(&self.shard_payload)
            || self.shard_payload % 2 != 0
        {
            return Err(Error::invalid(format!(
                "shard_payload {} must be even and within {MIN_SHARD_PAYLOAD}..={MAX_SHARD_PAYLOAD}",
                self.shard_payload
            )));
        }
        let k = self.max_data_per_block;
        let m = max_recovery_count(k);
        if !ReedSolomonEncoder::supports(k, m) {
            return Err(Error::invalid(format!(
                "reed-solomon-simd does not support {k} data + {m} recovery shards"
            )));
        }
        Ok(())
    }

    /// Bytes of one datagram under this configuration.
    pub fn datagram_len(&self) -> usize {
        self.shard_payload + PACKET_OVERHEAD
    }
}

/// Recovery shards for a block of `k` data shards at `pct` percent:
/// `ceil(k · pct / 100)`, at least 2 when `pct > 0`, 0 when FEC is off.
pub fn recovery_count(k: usize, pct: u8) -> usize {
    if pct == 0 {
        return 0;
    }
    (k * pct as usize).div_ceil(100).max(2)
}

/// The most recovery shards any accepted percentage gives a block of `k`.
pub fn max_recovery_count(k: usize) -> usize {
    recovery_count(k, MAX_FEC_PERCENT)
}

/// How a frame of a given length is cut into blocks of shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Frame length in bytes.
    pub frame_len: usize,
    /// Shard payload bytes.
    pub shard_payload: usize,
    /// Data shards in the whole frame (at least 1, even for an empty frame).
    pub data_shards: usize,
    /// Number of FEC blocks.
    pub blocks: usize,
}

/// One block of a [`FrameLayout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Data shards in the block.
    pub data_shards: usize,
    /// Index of the block's first data shard within the frame.
    pub first_shard: usize,
}

impl FrameLayout {
    /// Lays out `frame_len` bytes with the shard size and block cap of `cfg`.
    pub fn new(frame_len: usize, cfg: &FecConfig) -> FrameLayout {
        let s = cfg.shard_payload.max(1);
        let data_shards = frame_len.div_ceil(s).max(1);
        let blocks = data_shards.div_ceil(cfg.max_data_per_block.max(1));
        FrameLayout {
            frame_len,
            shard_payload: s,
            data_shards,
            blocks,
        }
    }

    /// Blocks get nearly equal shares (the first `N mod B` get one extra shard),
    /// so every block of a frame is protected alike.
    pub fn block(&self, index: usize) -> BlockLayout {
        let base = self.data_shards / self.blocks;
        let extra = self.data_shards % self.blocks;
        BlockLayout {
            data_shards: base + usize::from(index < extra),
            first_shard: index * base + index.min(extra),
        }
    }

    /// Bytes of the padded frame (`data_shards · shard_payload`).
    pub fn padded_len(&self) -> usize {
        self.data_shards * self.shard_payload
    }
}

/// Builds the codec's lookup tables now. They are global, built once per
/// process on first use (tens of milliseconds, about 8 MiB), and a session
/// that left them to its first frame delayed that frame by as much; hosts,
/// clients and both halves of a session call this when they are created, so
/// the cost falls on setup instead. Later calls return at once.
pub fn warm_up() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        // One block each way, one data shard rebuilt: encoding and decoding
        // touch every table either uses.
        const S: usize = MIN_SHARD_PAYLOAD;
        let data = [[1u8; S], [2u8; S]];
        let mut recovery = Vec::new();
        let mut enc = FecEncoder::new();
        let encoded = enc.encode(2, 2, S, data.iter().map(|d| &d[..]), |_, r| {
            recovery.push(r.to_vec())
        });
        let mut dec = FecDecoder::new();
        let decoded = encoded
            .and_then(|()| dec.reset(2, 2, S))
            .and_then(|()| dec.add_original(1, &data[1]))
            .and_then(|()| dec.add_recovery(0, &recovery[0]))
            .and_then(|()| dec.decode(|_, _| {}));
        debug_assert!(decoded.is_ok(), "warming the FEC tables: {decoded:?}");
    });
}

/// A reusable encoder: one per sending session, reset for every block.
#[derive(Default)]
pub struct FecEncoder {
    inner: Option<ReedSolomonEncoder>,
}

impl FecEncoder {
    /// A new encoder; working memory is allocated on first use and reused.
    pub fn new() -> Self {
        FecEncoder::default()
    }

    /// Encodes one block. `data` yields its `k` data shards of `shard_bytes`
    /// each; `out(i, shard)` receives recovery shard `i` for `i` in `0..m`.
    pub fn encode<'a>(
        &mut self,
        k: usize,
        m: usize,
        shard_bytes: usize,
        data: impl Iterator<Item = &'a [u8]>,
        mut out: impl FnMut(usize, &[u8]),
    ) -> Result<()> {
        if m == 0 {
            return Ok(());
        }
        let enc = match &mut self.inner {
            Some(enc) => {
                enc.reset(k, m, shard_bytes).map_err(fec_error)?;
                enc
            }
            slot => slot.insert(ReedSolomonEncoder::new(k, m, shard_bytes).map_err(fec_error)?),
        };
        for shard in data {
            enc.add_original_shard(shard).map_err(fec_error)?;
        }
        let result = enc.encode().map_err(fec_error)?;
        for (i, shard) in result.recovery_iter().enumerate() {
            out(i, shard);
        }
        Ok(())
    }
}

/// A reusable decoder: one per receiving session, reset for every block.
///
/// Use it in steps so the caller can lend shards from the same buffer the
/// rebuilt ones are written back into: [`FecDecoder::reset`], then
/// [`FecDecoder::add_original`] / [`FecDecoder::add_recovery`] for any `k`
/// received shards, then [`FecDecoder::decode`].
#[derive(Default)]
pub struct FecDecoder {
    inner: Option<ReedSolomonDecoder>,
}

impl FecDecoder {
    /// A new decoder; working memory is allocated on first use and reused.
    pub fn new() -> Self {
        FecDecoder::default()
    }

    /// Starts a block of `k` data and `m` recovery shards of `shard_bytes`.
    pub fn reset(&mut self, k: usize, m: usize, shard_bytes: usize) -> Result<()> {
        match &mut self.inner {
            Some(dec) => dec.reset(k, m, shard_bytes).map_err(fec_error),
            slot => {
                *slot = Some(ReedSolomonDecoder::new(k, m, shard_bytes).map_err(fec_error)?);
                Ok(())
            }
        }
    }

    fn started(&mut self) -> Result<&mut ReedSolomonDecoder> {
        self.inner
            .as_mut()
            .ok_or_else(|| Error::new(crate::error::ErrorKind::Internal, "FEC decoder used before reset"))
    }

    /// Adds received data shard `index` (`0..k`).
    pub fn add_original(&mut self, index: usize, shard: &[u8]) -> Result<()> {
        self.started()?
            .add_original_shard(index, shard)
            .map_err(fec_error)
    }

    /// Adds received recovery shard `index` (`0..m`).
    pub fn add_recovery(&mut self, index: usize, shard: &[u8]) -> Result<()> {
        self.started()?
            .add_recovery_shard(index, shard)
            .map_err(fec_error)
    }

    /// Rebuilds the missing data shards; `restored(i, shard)` is called once per
    /// rebuilt data shard `i`.
    pub fn decode(&mut self, mut restored: impl FnMut(usize, &[u8])) -> Result<()> {
        let result = self.started()?.decode().map_err(fec_error)?;
        for (i, shard) in result.restored_original_iter() {
            restored(i, shard);
        }
        Ok(())
    }
}

fn fec_error(e: reed_solomon_simd::Error) -> Error {
    Error::new(crate::error::ErrorKind::Internal, format!("reed-solomon: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn warming_the_tables_leaves_a_working_codec() {
        warm_up();
        warm_up();
        let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 64]).collect();
        let mut rec = Vec::new();
        FecEncoder::new()
            .encode(4, 2, 64, data.iter().map(|d| &d[..]), |_, r| rec.push(r.to_vec()))
            .unwrap();
        let mut dec = FecDecoder::new();
        dec.reset(4, 2, 64).unwrap();
        for i in [0, 2] {
            dec.add_original(i, &data[i]).unwrap();
        }
        for (i, r) in rec.iter().enumerate() {
            dec.add_recovery(i, r).unwrap();
        }
        let mut got = Vec::new();
        dec.decode(|i, s| got.push((i, s.to_vec()))).unwrap();
        got.sort();
        assert_eq!(got, vec![(1, data[1].clone()), (3, data[3].clone())]);
    }

    #[test]
    fn recovery_counts_follow_the_rule() {
        assert_eq!(recovery_count(100, 0), 0);
        assert_eq!(recovery_count(1, 10), 2);
        assert_eq!(recovery_count(100, 10), 10);
        assert_eq!(recovery_count(101, 10), 11);
        assert_eq!(recovery_count(781, 25), 196);
        assert_eq!(max_recovery_count(16_384), 16_384);
    }

    #[test]
    fn config_validation_names_the_field() {
        assert!(FecConfig::default().validate().is_ok());
        let bad = [
            FecConfig {
                fec_percent: 101,
                ..Default::default()
            },
            FecConfig {
                max_data_per_block: 0,
                ..Default::default()
            },
            FecConfig {
                max_data_per_block: MAX_DATA_PER_BLOCK + 1,
                ..Default::default()
            },
            FecConfig {
                shard_payload: 1343,
                ..Default::default()
            },
            FecConfig {
                shard_payload: 32,
                ..Default::default()
            },
            FecConfig {
                shard_payload: 20_000,
                ..Default::default()
            },
        ];
        for cfg in bad {
            let e = cfg.validate().unwrap_err();
            assert_eq!(e.code(), "ERR_PF_INVALID_ARG", "{cfg:?}");
        }
        let extreme = FecConfig {
            fec_percent: 100,
            max_data_per_block: MAX_DATA_PER_BLOCK,
            shard_payload: 64,
        };
        assert!(extreme.validate().is_ok());
    }

    #[test]
    fn layout_splits_large_frames_into_balanced_blocks() {
        let cfg = FecConfig {
            max_data_per_block: 100,
            shard_payload: 64,
            ..Default::default()
        };
        let l = FrameLayout::new(64 * 250 + 1, &cfg);
        assert_eq!((l.data_shards, l.blocks), (251, 3));
        let ks: Vec<usize> = (0..3).map(|b| l.block(b).data_shards).collect();
        assert_eq!(ks, vec![84, 84, 83]);
        assert_eq!(l.block(2).first_shard, 168);
        assert_eq!(FrameLayout::new(0, &cfg).data_shards, 1);
    }

    fn shards(k: usize, s: usize, seed: u64) -> Vec<Vec<u8>> {
        (0..k)
            .map(|i| {
                (0..s)
                    .map(|j| ((i as u64 * 131 + j as u64 * 7 + seed) % 251) as u8)
                    .collect()
            })
            .collect()
    }

    /// Encodes, erases `lost` data shards and keeps only `k` shards in total,
    /// then checks the decoder rebuilds exactly what was lost.
    fn roundtrip(
        enc: &mut FecEncoder,
        dec: &mut FecDecoder,
        k: usize,
        m: usize,
        s: usize,
        erase: &[usize],
        seed: u64,
    ) {
        let data = shards(k, s, seed);
        let mut rec = vec![Vec::new(); m];
        enc.encode(k, m, s, data.iter().map(|d| d.as_slice()), |i, r| {
            rec[i] = r.to_vec()
        })
        .unwrap();
        let lost: Vec<usize> = erase
            .iter()
            .map(|e| e % k)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .take(m)
            .collect();
        dec.reset(k, m, s).unwrap();
        for i in (0..k).filter(|i| !lost.contains(i)) {
            dec.add_original(i, &data[i]).unwrap();
        }
        // Exactly k shards: as many recovery shards as were lost, starting at a
        // seed-chosen position so every recovery index gets exercised.
        let start = (seed % m as u64) as usize;
        for i in (0..lost.len()).map(|j| (start + j) % m) {
            dec.add_recovery(i, &rec[i]).unwrap();
        }
        let mut got = Vec::new();
        dec.decode(|i, d| got.push((i, d.to_vec()))).unwrap();
        got.sort();
        assert_eq!(got.len(), lost.len());
        for (i, d) in got {
            assert!(lost.contains(&i));
            assert_eq!(d, data[i], "shard {i} of {k}+{m} rebuilt wrong");
        }
    }

    #[test]
    fn rebuilds_the_worst_case_of_m_lost_data_shards_at_k_1000() {
        let (mut e, mut d) = (FecEncoder::new(), FecDecoder::new());
        let erase: Vec<usize> = (0..250).map(|i| i * 4).collect();
        roundtrip(&mut e, &mut d, 1000, 250, 128, &erase, 1);
        // Reuse across different sizes.
        roundtrip(&mut e, &mut d, 3, 2, 64, &[0, 2], 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_k_of_k_plus_m_rebuild_the_block(
            k in 1usize..=1200,
            pct in 1u8..=60,
            s_units in 1usize..=12,
            erase in proptest::collection::vec(any::<usize>(), 0..400),
            seed in any::<u64>(),
        ) {
            let m = recovery_count(k, pct);
            let (mut e, mut d) = (FecEncoder::new(), FecDecoder::new());
            roundtrip(&mut e, &mut d, k, m, s_units * 64, &erase, seed);
        }
    }
}
