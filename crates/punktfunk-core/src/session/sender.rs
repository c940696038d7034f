//! Host side: frame → shards → FEC → sealed datagrams → one `send_batch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{DirectionKey, Sealer};
use crate::error::{Error, ErrorKind, Result};
use crate::fec::{recovery_count, FecEncoder, FrameLayout, MAX_FEC_PERCENT};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::Transport;
use crate::wire::{InnerHeader, CLEAR_HEADER_LEN, FLAG_KEYFRAME, FLAG_PROBE, INNER_HEADER_LEN};

use super::pacing::Pacer;
use super::{snapshot_with_io, FrameMeta, SessionConfig, StatsHandle};

/// Offset of the shard payload inside a datagram.
const PAYLOAD_AT: usize = CLEAR_HEADER_LEN + INNER_HEADER_LEN;

/// Datagrams handed to one `send_batch` call at most (slices on the stack).
const SEND_CHUNK: usize = 1024;

/// Hands `bufs` to the transport in order without allocating: the slices go
/// through a fixed array, [`SEND_CHUNK`] at a time. Stops at the first chunk
/// the transport did not take whole (its send buffer is full: the rest would
/// be dropped too). Returns how many were taken.
fn send_all<T: Transport + ?Sized>(transport: &T, bufs: &[Vec<u8>]) -> std::io::Result<usize> {
    let mut refs: [&[u8]; SEND_CHUNK] = [&[]; SEND_CHUNK];
    let mut sent = 0;
    for chunk in bufs.chunks(SEND_CHUNK) {
        for (r, b) in refs.iter_mut().zip(chunk) {
            *r = b.as_slice();
        }
        let n = transport.send_batch(&refs[..chunk.len()])?.min(chunk.len());
        sent += n;
        if n < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

/// What happened to one submitted frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitReport {
    /// Index the frame was sent under.
    pub frame_index: u64,
    /// Data shards across all blocks.
    pub data_shards: usize,
    /// Recovery shards across all blocks.
    pub recovery_shards: usize,
    /// FEC blocks.
    pub blocks: usize,
    /// Datagrams handed to the transport.
    pub packets_sent: usize,
    /// Datagrams dropped locally (send buffer full).
    pub packets_dropped: usize,
}

/// The sending half of a session. Owns the frame index, the sealer, the FEC
/// encoder and a pool of wire buffers reused from frame to frame.
pub struct FrameSender<T: Transport> {
    config: SessionConfig,
    fec_percent: u8,
    sealer: Sealer,
    encoder: FecEncoder,
    transport: Arc<T>,
    stats: Arc<Stats>,
    next_index: u64,
    /// Wire buffers, each exactly one datagram long; grows to the largest frame.
    pool: Vec<Vec<u8>>,
    /// Spreads each frame's datagrams ([`SessionConfig::pacing`]).
    pacer: Option<Pacer>,
}

impl<T: Transport> FrameSender<T> {
    pub(super) fn new(
        config: SessionConfig,
        key: DirectionKey,
        transport: Arc<T>,
        stats: Arc<Stats>,
    ) -> Self {
        FrameSender {
            fec_percent: config.fec.fec_percent,
            pacer: config.pacing.map(Pacer::new),
            config,
            sealer: Sealer::new(key),
            encoder: FecEncoder::new(),
            transport,
            stats,
            next_index: 0,
            pool: Vec::new(),
        }
    }

    /// The transport this half sends on.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Counters (shared with the receiving half) plus system-call counts.
    pub fn stats(&self) -> StatsSnapshot {
        snapshot_with_io(&self.stats, &*self.transport)
    }

    /// A handle for reading the session's counters from another thread.
    pub fn stats_handle(&self) -> StatsHandle
    where
        T: 'static,
    {
        StatsHandle::new(self.stats.clone(), self.transport.clone())
    }

    /// Bytes of every datagram this sender sends.
    pub fn datagram_len(&self) -> usize {
        self.config.fec.datagram_len()
    }

    /// Largest frame accepted, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.config.max_frame_bytes
    }

    /// The index the next frame will get.
    pub fn next_frame_index(&self) -> u64 {
        self.next_index
    }

    /// The FEC percentage used for the next frame.
    pub fn fec_percent(&self) -> u8 {
        self.fec_percent
    }

    /// Changes the FEC percentage from the next frame on (`0..=100`). The
    /// receiver needs no notice: every packet carries its block's k and m.
    pub fn set_fec_percent(&mut self, pct: u8) -> Result<()> {
        if pct > MAX_FEC_PERCENT {
            return Err(Error::invalid(format!(
                "fec_percent {pct} is above {MAX_FEC_PERCENT}"
            )));
        }
        self.fec_percent = pct;
        Ok(())
    }

    /// Splits `data` into shards, adds FEC, seals every datagram and hands the
    /// frame to the transport: in one `send_batch` call, or spread out when
    /// pacing is on ([`SessionConfig::pacing`]; then this returns once the last
    /// datagram is sent). Datagrams the transport could not take are counted
    /// as `packets_send_dropped`, never an error. Fails with
    /// `ERR_PF_INVALID_ARG` if the frame exceeds `max_frame_bytes`, or
    /// `ERR_PF_IO` if the socket itself failed.
    pub fn submit_frame(&mut self, data: &[u8], meta: FrameMeta) -> Result<SubmitReport> {
        self.submit_frame_paced(data, meta, &|| false)
    }

    /// [`FrameSender::submit_frame`], asking `hurry` between paced sends:
    /// `true` (say, because the next frame is waiting) sends the rest of this
    /// frame at once, so pacing never holds up the stream.
    pub fn submit_frame_paced(
        &mut self,
        data: &[u8],
        meta: FrameMeta,
        hurry: &dyn Fn() -> bool,
    ) -> Result<SubmitReport> {
        if data.len() > self.config.max_frame_bytes {
            return Err(Error::invalid(format!(
                "frame of {} bytes exceeds max_frame_bytes {}",
                data.len(),
                self.config.max_frame_bytes
            )));
        }
        let s = self.config.fec.shard_payload;
        let layout = FrameLayout::new(data.len(), &self.config.fec);
        let index = self.next_index;
        let mut report = SubmitReport {
            frame_index: index,
            blocks: layout.blocks,
            ..Default::default()
        };
        let total: usize = (0..layout.blocks)
            .map(|b| {
                let k = layout.block(b).data_shards;
                k + recovery_count(k, self.fec_percent)
            })
            .sum();
        let datagram_len = self.config.fec.datagram_len();
        if self.pool.len() < total {
            self.pool.resize_with(total, || vec![0u8; datagram_len]);
        }
        let mut header = InnerHeader {
            flags: if meta.keyframe { FLAG_KEYFRAME } else { 0 },
            block_count: layout.blocks as u16,
            frame_index: index,
            frame_len: data.len() as u32,
            pts: meta.pts,
            ..Default::default()
        };
        let mut at = 0;
        for b in 0..layout.blocks {
            let block = layout.block(b);
            let k = block.data_shards;
            let m = recovery_count(k, self.fec_percent);
            header.block_index = b as u16;
            header.data_shards = k as u16;
            header.recovery_shards = m as u16;
            let (block_bufs, _) = self.pool[at..].split_at_mut(k + m);
            for (i, buf) in block_bufs.iter_mut().enumerate() {
                header.shard_index = i as u16;
                let h: &mut [u8; INNER_HEADER_LEN] = (&mut buf[CLEAR_HEADER_LEN..PAYLOAD_AT])
                    .try_into()
                    .expect("inner header slice");
                header.encode(h);
                if i < k {
                    let start = ((block.first_shard + i) * s).min(data.len());
                    let end = (start + s).min(data.len());
                    let payload = &mut buf[PAYLOAD_AT..PAYLOAD_AT + s];
                    payload[..end - start].copy_from_slice(&data[start..end]);
                    payload[end - start..].fill(0);
                }
            }
            let (data_bufs, rec_bufs) = block_bufs.split_at_mut(k);
            self.encoder.encode(
                k,
                m,
                s,
                data_bufs.iter().map(|b| &b[PAYLOAD_AT..PAYLOAD_AT + s]),
                |i, shard| rec_bufs[i][PAYLOAD_AT..PAYLOAD_AT + s].copy_from_slice(shard),
            )?;
            report.data_shards += k;
            report.recovery_shards += m;
            at += k + m;
        }
        let before = self.sealer.rotations();
        for buf in &mut self.pool[..total] {
            self.sealer
                .seal(buf)
                .map_err(|e| Error::new(ErrorKind::Closed, e.to_string()))?;
        }
        Stats::add(&self.stats.key_rotations, self.sealer.rotations() - before);
        // The index is spent even if the socket fails below: sequences were used.
        self.next_index += 1;
        Stats::add(&self.stats.frames_submitted, 1);
        let sent = self.send_frame(total, datagram_len, hurry).map_err(Error::from)?;
        report.packets_sent = sent;
        report.packets_dropped = total - sent;
        let st = &self.stats;
        Stats::add(&st.packets_sent, sent as u64);
        Stats::add(&st.packets_send_dropped, (total - sent) as u64);
        Stats::add(&st.bytes_sent, (sent * datagram_len) as u64);
        Ok(report)
    }

    /// Sends the first `total` pooled datagrams, paced when pacing is on.
    /// Returns how many the transport took.
    fn send_frame(
        &mut self,
        total: usize,
        datagram_len: usize,
        hurry: &dyn Fn() -> bool,
    ) -> std::io::Result<usize> {
        let transport = &*self.transport;
        let pool = &self.pool[..total];
        let Some(pacer) = self.pacer.as_mut() else {
            return send_all(transport, pool);
        };
        let start = Instant::now();
        let plan = pacer.plan(start, total * datagram_len);
        let datagrams = |bytes: usize| bytes.div_ceil(datagram_len).max(1);
        let first = datagrams(plan.burst_bytes).min(total);
        let mut sent = send_all(transport, &pool[..first])?;
        let Some(rate) = plan.bytes_per_sec.filter(|r| *r > 0.0) else {
            return Ok(sent + send_all(transport, &pool[first..])?);
        };
        let chunk = datagrams(plan.chunk_bytes);
        let mut at = first;
        // The schedule's origin: chunk i leaves at `base + bytes before it / rate`.
        let mut base = start;
        while at < total {
            if hurry() {
                sent += send_all(transport, &pool[at..])?;
                break;
            }
            let due = base + Duration::from_secs_f64(((at - first) * datagram_len) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                // Late (the thread was not scheduled in time): send this chunk now
                // and move the schedule, rather than catch up with a burst of
                // overdue chunks. The frame may finish later; the next frame
                // waiting makes `hurry` send the rest at once.
                base += now - due;
            }
            let end = (at + chunk).min(total);
            // A chunk the full buffer refused is lost; later chunks try again.
            sent += send_all(transport, &pool[at..end])?;
            at = end;
        }
        Ok(sent)
    }

    /// Sends `count` probe datagrams (speed-test filler) in batches of at most
    /// [`crate::SEND_BATCH`]: full-size, sealed like frame datagrams, flagged
    /// `FLAG_PROBE` so the receiver counts (`probe_packets_received`) and
    /// discards them. They use packet sequences but no frame index. Returns
    /// `(sent, dropped)`; dropped datagrams are counted as send drops.
    pub fn send_probe(&mut self, count: usize) -> Result<(usize, usize)> {
        let datagram_len = self.config.fec.datagram_len();
        let n = count.min(crate::SEND_BATCH);
        if self.pool.len() < n {
            self.pool.resize_with(n, || vec![0u8; datagram_len]);
        }
        let header = InnerHeader {
            flags: FLAG_PROBE,
            block_count: 1,
            data_shards: 1,
            frame_index: self.next_index,
            ..Default::default()
        };
        let (mut sent_total, mut dropped_total) = (0, 0);
        let mut left = count;
        while left > 0 {
            let n = left.min(crate::SEND_BATCH);
            for buf in &mut self.pool[..n] {
                let h: &mut [u8; INNER_HEADER_LEN] = (&mut buf[CLEAR_HEADER_LEN..PAYLOAD_AT])
                    .try_into()
                    .expect("inner header slice");
                header.encode(h);
                buf[PAYLOAD_AT..PAYLOAD_AT + self.config.fec.shard_payload].fill(0);
                let before = self.sealer.rotations();
                self.sealer
                    .seal(buf)
                    .map_err(|e| Error::new(ErrorKind::Closed, e.to_string()))?;
                Stats::add(&self.stats.key_rotations, self.sealer.rotations() - before);
            }
            let sent = send_all(&*self.transport, &self.pool[..n]).map_err(Error::from)?;
            let st = &self.stats;
            Stats::add(&st.packets_sent, sent as u64);
            Stats::add(&st.packets_send_dropped, (n - sent) as u64);
            Stats::add(&st.bytes_sent, (sent * datagram_len) as u64);
            sent_total += sent;
            dropped_total += n - sent;
            left -= n;
        }
        Ok((sent_total, dropped_total))
    }
}
