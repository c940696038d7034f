//! Client side: receive ring → open → replay filter → reassembly → frames.
//!
//! The receiver reads no clock and never waits: [`FrameReceiver::poll_frame`]
//! takes `now`, works through what was received (reading a bounded number of
//! batches from the transport) and answers with an event or "nothing yet";
//! [`FrameReceiver::poll_timeout`] says when incomplete frames next age out.
//! The driver (a worker thread, or [`super::blocking`]) waits in between.

use std::sync::Arc;
use std::time::Instant;

use crate::crypto::{DirectionKey, OpenError, Opener};
use crate::error::Result;
use crate::rate::{Feedback, FeedbackBuilder, FeedbackConfig};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::{RecvMeta, Transport, RECV_BATCH, SEGMENTED_RECV_BUFFER};
use crate::wire::{InnerHeader, PathMessage, CLEAR_HEADER_LEN, INNER_HEADER_LEN, TAG_LEN};

use super::blocking::RecvWait;
use super::reassembly::Reassembler;
use super::{snapshot_with_io, FrameEvent, SessionConfig, StatsHandle};

/// Receive batches one [`FrameReceiver::poll_frame`] reads at most before it
/// returns, so a flood that yields no event cannot keep a caller from its
/// clock (frame timeouts, deadlines).
pub const MAX_READS_PER_POLL: usize = 64;

/// The receiving half of a session.
///
/// It owns a ring of [`RECV_BATCH`] receive buffers, allocated on first use,
/// refilled with one `recv_batch` call when drained and consumed one packet
/// at a time across calls, so a poll never does more work than it must. Where
/// the transport coalesces datagrams (UDP GRO), a buffer holds several of
/// them, opened in place one after the other.
pub struct FrameReceiver<T: Transport> {
    opener: Opener,
    transport: Arc<T>,
    stats: Arc<Stats>,
    reasm: Reassembler,
    datagram_len: usize,
    wait: RecvWait,
    /// The last read came back short: the socket queue was empty then
    /// ([`FrameReceiver::is_drained`]).
    drained: bool,
    ring: Vec<Vec<u8>>,
    meta: [RecvMeta; RECV_BATCH],
    ring_len: usize,
    ring_pos: usize,
    /// Offset of the next datagram inside `ring[ring_pos]`.
    seg_at: usize,
    /// The last path-validation message received, for the control plane.
    path: Option<PathMessage>,
    /// Rate feedback to the host, when enabled.
    feedback: Option<Box<FeedbackBuilder>>,
}

impl<T: Transport> FrameReceiver<T> {
    pub(super) fn new(
        config: SessionConfig,
        key: DirectionKey,
        transport: Arc<T>,
        stats: Arc<Stats>,
    ) -> Self {
        crate::fec::warm_up();
        FrameReceiver {
            opener: Opener::new(key),
            transport,
            datagram_len: config.fec.datagram_len(),
            wait: RecvWait {
                coalesce: config.recv_coalesce,
                busy_poll: config.busy_poll,
            },
            drained: false,
            reasm: Reassembler::new(config, stats.clone()),
            stats,
            ring: Vec::new(),
            meta: [RecvMeta::default(); RECV_BATCH],
            ring_len: 0,
            ring_pos: 0,
            seg_at: 0,
            path: None,
            feedback: None,
        }
    }

    /// The last data-path validation message received (a packet flagged
    /// `FLAG_PATH`), once; the control plane answers or checks it.
    pub fn take_path_message(&mut self) -> Option<PathMessage> {
        self.path.take()
    }

    /// The transport this half receives on.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Counters (shared with the sending half) plus system-call counts.
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

    /// Bytes of every datagram this receiver accepts.
    pub fn datagram_len(&self) -> usize {
        self.datagram_len
    }

    /// How a driver should wait for this receiver (from its configuration).
    pub fn recv_wait(&self) -> RecvWait {
        self.wait
    }

    /// The reassembler (read-only), e.g. to check memory bounds.
    pub fn reassembler(&self) -> &Reassembler {
        &self.reasm
    }

    /// Returns a delivered frame's buffer so the next frame can reuse it.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.reasm.recycle(buf);
    }

    /// The next frame event at `now`, without blocking: `Ok(None)` means
    /// nothing more is there right now. Frames come whole, byte-exact and in
    /// index order; frames that cannot be delivered come as
    /// [`FrameEvent::Lost`]. Bad packets are counted and skipped, never
    /// errors; only a failing socket is (`ERR_PF_IO`).
    ///
    /// Works through the datagrams already read, reads more from the
    /// transport, at most [`MAX_READS_PER_POLL`] batches per call (a stream of
    /// datagrams that yields no event still returns to the caller; then
    /// [`FrameReceiver::is_drained`] is false: call again, with a fresh
    /// `now`), and once it has caught up with the transport ages out frames
    /// older than `frame_timeout` at `now`.
    pub fn poll_frame(&mut self, now: Instant) -> Result<Option<FrameEvent>> {
        let mut reads = 0;
        loop {
            if let Some(ev) = self.poll_buffered(now) {
                return Ok(Some(ev));
            }
            if reads == MAX_READS_PER_POLL {
                return Ok(None);
            }
            reads += 1;
            if self.fill_ring()? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next event from what was already read (and from frames aging out
    /// at `now`), without touching the transport: for a driver woken by a
    /// timeout rather than by readiness.
    pub fn poll_buffered(&mut self, now: Instant) -> Option<FrameEvent> {
        loop {
            if let Some(ev) = self.reasm.pop_event() {
                // A lost frame is news the host's rate controller wants at once.
                if let (FrameEvent::Lost { .. }, Some(fb)) = (&ev, self.feedback.as_mut()) {
                    fb.on_frame_lost(now);
                }
                return Some(ev);
            }
            if self.ring_pos == self.ring_len {
                // Frames age only once every datagram that had arrived is
                // processed: a backlog still in the socket may hold a frame's
                // missing shards, however long it takes to work through.
                if self.drained {
                    self.reasm.expire(now);
                }
                return self.reasm.pop_event();
            }
            let (i, at) = (self.ring_pos, self.seg_at);
            let RecvMeta {
                len: total,
                segment,
                arrival,
            } = self.meta[i];
            let seg = if segment == 0 || segment > total {
                total
            } else {
                segment
            };
            let len = seg.min(total - at);
            self.seg_at += len;
            if self.seg_at >= total {
                self.ring_pos += 1;
                self.seg_at = 0;
            }
            self.process(i, at, len, arrival.unwrap_or(now), now);
        }
    }

    /// Reads one batch into the ring; returns how many buffers were filled.
    fn fill_ring(&mut self) -> Result<usize> {
        if self.ring.is_empty() {
            // Coalesced datagrams need room for a whole GRO buffer; else one
            // spare byte makes a longer datagram show up as the wrong length.
            let len = if self.transport.enable_segmented_receive() {
                SEGMENTED_RECV_BUFFER
            } else {
                self.datagram_len + 1
            };
            self.ring = vec![vec![0u8; len]; RECV_BATCH];
        }
        let n = self.transport.recv_batch(&mut self.ring, &mut self.meta)?;
        self.drained = n < RECV_BATCH;
        self.ring_len = n.min(RECV_BATCH);
        self.ring_pos = 0;
        self.seg_at = 0;
        Ok(self.ring_len)
    }

    /// Whether the last read found the transport's queue empty (and every
    /// datagram read is processed): a driver waits for readiness (until
    /// [`FrameReceiver::poll_timeout`]) instead of polling again at once.
    pub fn is_drained(&self) -> bool {
        self.drained && self.ring_pos == self.ring_len
    }

    /// When the oldest incomplete frame times out (the driver's latest wake-up
    /// while waiting for datagrams); `None` with no frame open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reasm.next_expiry()
    }

    /// When the next rate-feedback report is due ([`FrameReceiver::poll_feedback`]).
    pub fn feedback_timeout(&self) -> Option<Instant> {
        self.feedback.as_ref().and_then(|f| f.poll_timeout())
    }

    /// Starts counting every authenticated datagram for rate feedback to the
    /// host ([`FrameReceiver::poll_feedback`]). Arrival times come from the
    /// kernel where the transport offers them ([`Transport::enable_arrival_times`]:
    /// a receive thread that lost the CPU for a few ms would otherwise report
    /// a queue the path does not have), else from the time of the read.
    pub fn enable_feedback(&mut self, config: FeedbackConfig) {
        self.transport.enable_arrival_times();
        self.feedback = Some(Box::new(FeedbackBuilder::new(config)));
    }

    /// The rate-feedback report due at `now`, if one is (on its cadence, or
    /// at once after a lost frame); see [`crate::rate::FeedbackBuilder`].
    pub fn poll_feedback(&mut self, now: Instant) -> Option<Feedback> {
        self.feedback.as_mut()?.poll_feedback(now)
    }

    /// Handles the datagram at `ring[i][at..at + len]`, which reached the
    /// host at `arrival` (the kernel's time, or `now` where the transport has
    /// none).
    fn process(&mut self, i: usize, at: usize, len: usize, arrival: Instant, now: Instant) {
        let st = &self.stats;
        Stats::add(&st.packets_received, 1);
        Stats::add(&st.bytes_received, len as u64);
        if len != self.datagram_len {
            Stats::add(&st.recv_dropped_malformed, 1);
            return;
        }
        let packet = &mut self.ring[i][at..at + len];
        let seq = match self.opener.open(packet) {
            Ok(seq) => seq,
            Err(e) => {
                let counter = match e {
                    OpenError::Malformed => &st.recv_dropped_malformed,
                    OpenError::Stale => &st.recv_dropped_stale,
                    OpenError::Replay => &st.recv_dropped_replay,
                    OpenError::Auth => &st.recv_dropped_auth,
                };
                Stats::add(counter, 1);
                return;
            }
        };
        // Every authenticated datagram is the host's: the rate feedback counts it.
        if let Some(fb) = self.feedback.as_mut() {
            fb.on_packet(seq, len as u32, arrival);
        }
        let plain = &packet[CLEAR_HEADER_LEN..len - TAG_LEN];
        let Ok(h) = InnerHeader::decode(plain) else {
            Stats::add(&st.recv_dropped_malformed, 1);
            return;
        };
        if h.is_padding() {
            // Filler the host's rate controller probes the path with: not
            // needed, not a speed test.
            Stats::add(&st.packets_redundant, 1);
            return;
        }
        if h.is_probe() {
            Stats::add(&st.probe_packets_received, 1);
            return;
        }
        if h.is_path() {
            match PathMessage::decode(&plain[INNER_HEADER_LEN..]) {
                Ok(m) => self.path = Some(m),
                Err(_) => Stats::add(&st.recv_dropped_malformed, 1),
            }
            return;
        }
        let _ = self.reasm.insert(&h, &plain[INNER_HEADER_LEN..], now);
    }
}
