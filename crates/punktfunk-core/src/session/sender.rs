//! Host side: frame → shards → FEC → sealed datagrams → `send_batch`.
//!
//! The sender reads no clock and never sleeps. [`FrameSender::push_frame`]
//! prepares a frame (layout, FEC, sealing) into a pool of wire buffers;
//! [`FrameSender::poll_transmit`] hands the transport whatever is due at the
//! `now` it is given and answers when it next needs to run. Pacing (a burst,
//! then chunks at a rate) and the speed-test probe are schedules it keeps, not
//! waits: the driver (a worker thread, or [`super::blocking`]) does the waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{DirectionKey, Sealer};
use crate::error::{Error, ErrorKind, Result};
use crate::fec::{check_fec_percent, recovery_count, FecEncoder, FrameLayout};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::Transport;
use crate::wire::{
    InnerHeader, PathMessage, CLEAR_HEADER_LEN, FLAG_KEYFRAME, FLAG_PADDING, FLAG_PATH, FLAG_PROBE,
    INNER_HEADER_LEN,
};

use super::pacing::{Pacer, Plan, Run};
use super::path_pacer::PathPacer;
use super::{check_frame_len, snapshot_with_io, FrameMeta, SessionConfig, StatsHandle};

/// Offset of the shard payload inside a datagram.
const PAYLOAD_AT: usize = CLEAR_HEADER_LEN + INNER_HEADER_LEN;

/// Datagrams handed to one `send_batch` call at most (slices on the stack).
const SEND_CHUNK: usize = 1024;

/// Probe datagrams sent per paced step at most (the probe's buffer pool).
const PROBE_CHUNK: usize = 256;

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

/// What a finished speed-test probe sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// Probe datagrams handed to the transport.
    pub packets_sent: u64,
    /// Probe datagrams dropped locally (send buffer full).
    pub send_drops: u64,
    /// From the start of the probe to its end (or to when it was stopped).
    pub duration: Duration,
}

/// Datagrams handed to the transport together, with consecutive packet
/// sequences (what a rate controller's send log records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentRun {
    /// Sequence of the first datagram.
    pub first_seq: u64,
    /// Datagrams in the run.
    pub count: u32,
    /// Wire bytes of each.
    pub bytes_each: u32,
    /// Probe filler (a speed test or padding), not media.
    pub filler: bool,
    /// When it left: the `now` of the call that sent it (`None` for a send
    /// outside a timed call, such as [`FrameSender::submit_frame`]).
    pub at: Option<Instant>,
}

/// Runs recorded at most between two drains (a poll sends a few).
const SENT_LOG_CAP: usize = 64;

/// A speed test in progress: filler datagrams on a fixed-rate schedule.
#[derive(Debug)]
struct Probe {
    run: Run,
    started: Instant,
    ends: Instant,
    sent: u64,
    dropped: u64,
}

/// The frame whose datagrams are (partly) still in the pool.
#[derive(Debug)]
struct InFlight {
    run: Run,
    /// Packet sequence of `pool[0]`.
    first_seq: u64,
    /// Datagrams of the frame in the pool.
    total: usize,
    /// Datagrams already handed on (or dropped): the next to go is `pool[at]`.
    at: usize,
    report: SubmitReport,
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
    current: Option<InFlight>,
    /// The report of the last frame whose datagrams all went out.
    finished: Option<SubmitReport>,
    probe: Option<Probe>,
    probe_pool: Vec<Vec<u8>>,
    probe_done: Option<ProbeReport>,
    /// Runs sent since the last [`FrameSender::drain_sent`] (when recording).
    sent_log: Option<Vec<SentRun>>,
    /// The `now` of the timed call in progress, stamped on the runs it sends.
    call_now: Option<Instant>,
    /// Pacing at the path rate ([`FrameSender::set_path_pacing`]), which
    /// replaces the stream-rate pacer.
    path: Option<PathPacer>,
    /// Filler asked for while idle, bit/s, and when the next filler is due.
    padding_bps: u64,
    padding_next: Option<Instant>,
}

impl<T: Transport> FrameSender<T> {
    pub(super) fn new(
        config: SessionConfig,
        key: DirectionKey,
        transport: Arc<T>,
        stats: Arc<Stats>,
    ) -> Self {
        crate::fec::warm_up();
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
            current: None,
            finished: None,
            probe: None,
            probe_pool: Vec::new(),
            probe_done: None,
            sent_log: None,
            call_now: None,
            path: None,
            padding_bps: 0,
            padding_next: None,
        }
    }

    /// Starts (or stops) recording every run of datagrams handed to the
    /// transport, for [`FrameSender::drain_sent`]. At most 64 runs are kept
    /// between drains; older ones are dropped (drain after every poll).
    pub fn record_sent(&mut self, on: bool) {
        self.sent_log = on.then(|| Vec::with_capacity(SENT_LOG_CAP));
    }

    /// Hands over the runs recorded since the last call, oldest first.
    pub fn drain_sent(&mut self, mut f: impl FnMut(SentRun)) {
        if let Some(log) = self.sent_log.as_mut() {
            for r in log.drain(..) {
                f(r);
            }
        }
    }

    fn log_sent(&mut self, first_seq: u64, count: usize, filler: bool) {
        let bytes_each = self.config.fec.datagram_len() as u32;
        if let (Some(log), true) = (self.sent_log.as_mut(), count > 0) {
            if log.len() == SENT_LOG_CAP {
                log.remove(0);
            }
            log.push(SentRun {
                first_seq,
                count: count as u32,
                bytes_each,
                filler,
                at: self.call_now,
            });
        }
    }

    /// Paces every datagram from now on at `rate_bps` with bursts of at most
    /// `burst_bytes`, across frames (replacing the stream-rate pacer): a
    /// frame waits for the one before it ([`FrameSender::accepts_frame`])
    /// rather than pushing it out. Called again, changes the rate.
    pub fn set_path_pacing(&mut self, rate_bps: u64, burst_bytes: u32, now: Instant) {
        let burst = (burst_bytes as usize).max(self.datagram_len());
        match self.path.as_mut() {
            Some(p) => p.set(rate_bps, burst, now),
            None => self.path = Some(PathPacer::new(rate_bps, burst)),
        }
    }

    /// Sends probe filler at `bps` while no frame is going out (padding a
    /// rate controller asks for to probe the path); 0 stops it. Only with
    /// path pacing, whose rate it never exceeds.
    pub fn set_padding(&mut self, bps: u64) {
        if bps == 0 {
            self.padding_next = None;
        }
        self.padding_bps = bps;
    }

    /// Whether [`FrameSender::push_frame`] takes a frame now without hurrying
    /// the one before it: always with stream-rate pacing (which sends the rest
    /// of a frame at once when the next one comes), only once the last frame
    /// is out with path pacing (a queue at the host, not at the bottleneck).
    pub fn accepts_frame(&self) -> bool {
        self.path.is_none() || self.current.is_none()
    }

    /// The transport this half sends on.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Counters (shared with the receiving half) plus system-call counts.
    pub fn stats(&self) -> StatsSnapshot {
        snapshot_with_io(&self.stats, &*self.transport)
    }

    /// The session's live counters (shared with the receiving half).
    pub fn counters(&self) -> &Arc<Stats> {
        &self.stats
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
        self.fec_percent = check_fec_percent(pct)?;
        Ok(())
    }

    /// Splits `data` into shards, adds FEC, seals every datagram and hands the
    /// whole frame to the transport at once, whatever the pacing (a frame
    /// still being paced goes out first). Datagrams the transport could not
    /// take are counted as `packets_send_dropped`, never an error. Fails with
    /// `ERR_PF_INVALID_ARG` if the frame exceeds `max_frame_bytes`, or
    /// `ERR_PF_IO` if the socket itself failed.
    pub fn submit_frame(&mut self, data: &[u8], meta: FrameMeta) -> Result<SubmitReport> {
        self.call_now = None;
        self.flush()?;
        let first_seq = self.sealer.next_seq();
        let (total, mut report) = self.prepare(data, meta)?;
        let sent = send_all(&*self.transport, &self.pool[..total]).map_err(Error::from)?;
        report.packets_sent = sent;
        report.packets_dropped = total - sent;
        self.count_sent(sent, total - sent);
        self.log_sent(first_seq, sent, false);
        Ok(report)
    }

    /// Prepares a frame (layout, FEC, sealing) to leave on the pacing
    /// schedule from `now`; [`FrameSender::poll_transmit`] sends it. A frame
    /// still being paced goes out at once first: pacing never queues frames.
    /// Returns the frame's index. Errors as [`FrameSender::submit_frame`].
    pub fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<u64> {
        self.call_now = Some(now);
        self.flush()?;
        let first_seq = self.sealer.next_seq();
        let (total, report) = self.prepare(data, meta)?;
        let dlen = self.datagram_len();
        let plan = match self.pacer.as_mut() {
            Some(p) => p.plan(now, total * dlen),
            None => Plan {
                burst_bytes: 0,
                chunk_bytes: 0,
                bytes_per_sec: None,
            },
        };
        self.current = Some(InFlight {
            run: Run::new(total, dlen, plan, now),
            first_seq,
            total,
            at: 0,
            report,
        });
        Ok(report.frame_index)
    }

    /// Hands the transport every datagram due at `now` (of the frame in
    /// flight and of a running probe) and returns when the sender next needs
    /// to run: `None` when nothing is scheduled.
    pub fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>> {
        self.call_now = Some(now);
        let dlen = self.datagram_len();
        match (self.path.as_mut(), self.current.as_mut()) {
            (Some(p), Some(c)) => {
                let n = p.take(c.total - c.at, dlen, now);
                self.transmit(n)?;
            }
            (None, Some(c)) => {
                let n = c.run.take_due(now);
                self.transmit(n)?;
            }
            (Some(_), None) => self.pad(now)?,
            (None, None) => {}
        }
        self.poll_probe(now)?;
        Ok(self.next_timeout(now))
    }

    /// Sends the filler due at `now` while idle under path pacing.
    fn pad(&mut self, now: Instant) -> Result<()> {
        let dlen = self.datagram_len();
        let Some(p) = self.path.as_mut() else {
            return Ok(());
        };
        let rate = self.padding_bps.min(p.rate_bps());
        if rate == 0 {
            return Ok(());
        }
        let next = *self.padding_next.get_or_insert(now);
        if next > now {
            return Ok(());
        }
        let step = p.step(dlen);
        let n = p.take(step, dlen, now);
        if n > 0 {
            self.send_filler(n, FLAG_PROBE | FLAG_PADDING)?;
            let spacing = Duration::from_secs_f64((n * dlen * 8) as f64 / rate as f64);
            // A late thread does not catch up with filler: it is optional.
            self.padding_next = Some((next + spacing).max(now));
        }
        Ok(())
    }

    /// When [`FrameSender::poll_transmit`] next has something to send, as
    /// seen at `now` (`None`: nothing is scheduled).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.next_timeout(now)
    }

    fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let dlen = self.datagram_len();
        let frame = match (&self.path, &self.current) {
            (Some(p), Some(c)) => Some(p.next_send(c.total - c.at, dlen, now)),
            (None, Some(c)) => c.run.next_due(),
            (Some(p), None) if self.padding_bps > 0 => {
                let due = self.padding_next.unwrap_or(now);
                Some(due.max(p.next_send(p.step(dlen), dlen, now)))
            }
            _ => None,
        };
        let probe = self.probe.as_ref().map(|p| p.run.next_due().unwrap_or(p.ends));
        match (frame, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends the rest of the frame in flight at once (the next frame is
    /// waiting, or the session closes).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(c) = self.current.as_mut() {
            let n = c.run.take_all();
            self.transmit(n)?;
        }
        Ok(())
    }

    /// Whether a frame is still being paced out.
    pub fn is_sending(&self) -> bool {
        self.current.is_some()
    }

    /// The report of the last frame whose datagrams have all gone out, once.
    pub fn take_report(&mut self) -> Option<SubmitReport> {
        self.finished.take()
    }

    /// Hands the next `n` datagrams of the frame in flight to the transport.
    fn transmit(&mut self, n: usize) -> Result<()> {
        let dlen = self.config.fec.datagram_len();
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        let mut run = None;
        if n > 0 {
            let end = (c.at + n).min(c.total);
            // A chunk the full buffer refused is lost; later chunks try again.
            let sent = send_all(&*self.transport, &self.pool[c.at..end]).map_err(Error::from)?;
            let dropped = end - c.at - sent;
            let first_seq = c.first_seq + c.at as u64;
            c.at = end;
            c.report.packets_sent += sent;
            c.report.packets_dropped += dropped;
            count_sent(&self.stats, sent, dropped, dlen);
            run = Some((first_seq, sent));
        }
        if c.at >= c.total {
            self.finished = self.current.take().map(|c| c.report);
        }
        if let Some((first_seq, sent)) = run {
            self.log_sent(first_seq, sent, false);
        }
        Ok(())
    }

    fn count_sent(&self, sent: usize, dropped: usize) {
        count_sent(&self.stats, sent, dropped, self.datagram_len());
    }

    /// Builds and seals the frame's datagrams into the pool. Returns their
    /// number and the frame's report (nothing sent yet).
    fn prepare(&mut self, data: &[u8], meta: FrameMeta) -> Result<(usize, SubmitReport)> {
        check_frame_len(data.len(), self.config.max_frame_bytes)?;
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
                encode_header(buf, &header);
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
        seal_all(&mut self.sealer, &self.stats, &mut self.pool[..total])?;
        // The index is spent even if the socket fails later: sequences were used.
        self.next_index += 1;
        Stats::add(&self.stats.frames_submitted, 1);
        Ok((total, report))
    }

    /// Sends `count` probe datagrams (speed-test filler) at once, in batches
    /// of at most [`crate::SEND_BATCH`]: full-size, sealed like frame
    /// datagrams, flagged `FLAG_PROBE` so the receiver counts
    /// (`probe_packets_received`) and discards them. They use packet sequences
    /// but no frame index. Returns `(sent, dropped)`; dropped datagrams are
    /// counted as send drops.
    pub fn send_probe(&mut self, count: usize) -> Result<(usize, usize)> {
        self.send_filler(count, FLAG_PROBE)
    }

    /// Filler flagged `flags` (a speed test's probes, or padding), each
    /// batch logged as a filler run.
    fn send_filler(&mut self, count: usize, flags: u8) -> Result<(usize, usize)> {
        let datagram_len = self.datagram_len();
        let batch = count.min(PROBE_CHUNK);
        if self.probe_pool.len() < batch {
            self.probe_pool.resize_with(batch, || vec![0u8; datagram_len]);
        }
        let header = InnerHeader {
            flags,
            block_count: 1,
            data_shards: 1,
            frame_index: self.next_index,
            ..Default::default()
        };
        let (mut sent_total, mut dropped_total) = (0, 0);
        let mut left = count;
        while left > 0 {
            let n = left.min(PROBE_CHUNK);
            let bufs = &mut self.probe_pool[..n];
            for buf in bufs.iter_mut() {
                encode_header(buf, &header);
                buf[PAYLOAD_AT..PAYLOAD_AT + self.config.fec.shard_payload].fill(0);
            }
            let first_seq = self.sealer.next_seq();
            seal_all(&mut self.sealer, &self.stats, bufs)?;
            let sent = send_all(&*self.transport, &self.probe_pool[..n]).map_err(Error::from)?;
            self.count_sent(sent, n - sent);
            self.log_sent(first_seq, sent, true);
            sent_total += sent;
            dropped_total += n - sent;
            left -= n;
        }
        Ok((sent_total, dropped_total))
    }

    /// Sends one data-path validation message (a full-size datagram flagged
    /// `FLAG_PATH`, sealed like any other) at once. Returns whether the
    /// transport took it.
    pub fn send_path(&mut self, message: PathMessage) -> Result<bool> {
        self.call_now = None;
        let datagram_len = self.datagram_len();
        if self.probe_pool.is_empty() {
            self.probe_pool.push(vec![0u8; datagram_len]);
        }
        let header = InnerHeader {
            flags: FLAG_PATH,
            block_count: 1,
            data_shards: 1,
            frame_index: self.next_index,
            ..Default::default()
        };
        let buf = &mut self.probe_pool[0];
        encode_header(buf, &header);
        let payload = &mut buf[PAYLOAD_AT..PAYLOAD_AT + self.config.fec.shard_payload];
        payload.fill(0);
        message.encode(payload);
        let first_seq = self.sealer.next_seq();
        seal_all(&mut self.sealer, &self.stats, &mut self.probe_pool[..1])?;
        let sent = send_all(&*self.transport, &self.probe_pool[..1]).map_err(Error::from)?;
        self.count_sent(sent, 1 - sent);
        self.log_sent(first_seq, sent, true);
        Ok(sent == 1)
    }

    /// Starts a speed test at `now`: probe filler at `rate_kbps` for
    /// `duration`, paced by [`FrameSender::poll_transmit`] alongside frames.
    /// A probe already running is replaced (its report is kept).
    pub fn start_probe(&mut self, rate_kbps: u32, duration: Duration, now: Instant) {
        if let Some(done) = self.stop_probe(now) {
            self.probe_done = Some(done);
        }
        let dlen = self.datagram_len();
        let bytes_per_sec = f64::from(rate_kbps) * 1000.0 / 8.0;
        let total = (bytes_per_sec * duration.as_secs_f64() / dlen as f64).ceil() as usize;
        // Steps of about a millisecond, within the probe's buffer pool.
        let chunk = ((bytes_per_sec / 1000.0) as usize).clamp(dlen, PROBE_CHUNK * dlen);
        let plan = Plan {
            burst_bytes: 0,
            chunk_bytes: chunk,
            bytes_per_sec: Some(bytes_per_sec),
        };
        self.probe = Some(Probe {
            run: Run::new(total, dlen, plan, now).catching_up(),
            started: now,
            ends: now + duration,
            sent: 0,
            dropped: 0,
        });
    }

    /// Ends a running probe early; its report so far.
    pub fn stop_probe(&mut self, now: Instant) -> Option<ProbeReport> {
        self.probe.take().map(|p| ProbeReport {
            packets_sent: p.sent,
            send_drops: p.dropped,
            duration: now.saturating_duration_since(p.started),
        })
    }

    /// Whether a probe is running.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// The report of a probe that ran to its end, once.
    pub fn take_probe_report(&mut self) -> Option<ProbeReport> {
        self.probe_done.take()
    }

    fn poll_probe(&mut self, now: Instant) -> Result<()> {
        let Some(p) = self.probe.as_mut() else {
            return Ok(());
        };
        let n = p.run.take_due(now);
        if n > 0 {
            let (sent, dropped) = self.send_filler(n, FLAG_PROBE)?;
            if let Some(p) = self.probe.as_mut() {
                p.sent += sent as u64;
                p.dropped += dropped as u64;
            }
        }
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.run.remaining() == 0 && now >= p.ends)
        {
            self.probe_done = self.stop_probe(now);
        }
        Ok(())
    }
}

/// Counts datagrams handed to the transport and dropped locally.
fn count_sent(stats: &Stats, sent: usize, dropped: usize, datagram_len: usize) {
    Stats::add(&stats.packets_sent, sent as u64);
    Stats::add(&stats.packets_send_dropped, dropped as u64);
    Stats::add(&stats.bytes_sent, (sent * datagram_len) as u64);
}

/// Writes the inner header into its place in a datagram buffer.
fn encode_header(buf: &mut [u8], header: &InnerHeader) {
    let h: &mut [u8; INNER_HEADER_LEN] = (&mut buf[CLEAR_HEADER_LEN..PAYLOAD_AT])
        .try_into()
        .expect("a datagram buffer holds the inner header");
    header.encode(h);
}

/// Seals every datagram in place and counts key rotations.
fn seal_all(sealer: &mut Sealer, stats: &Stats, bufs: &mut [Vec<u8>]) -> Result<()> {
    let before = sealer.rotations();
    for buf in bufs {
        sealer
            .seal(buf)
            .map_err(|e| Error::new(ErrorKind::Closed, e.to_string()))?;
    }
    Stats::add(&stats.key_rotations, sealer.rotations() - before);
    Ok(())
}
