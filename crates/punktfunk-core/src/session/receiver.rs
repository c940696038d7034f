//! Client side: receive ring → open → replay filter → reassembly → frames.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{DirectionKey, OpenError, Opener};
use crate::error::Result;
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::{Transport, RECV_BATCH, SEGMENTED_RECV_BUFFER};
use crate::wire::{InnerHeader, CLEAR_HEADER_LEN, INNER_HEADER_LEN, TAG_LEN};

use super::reassembly::Reassembler;
use super::{snapshot_with_io, FrameEvent, SessionConfig, StatsHandle};

/// The receiving half of a session.
///
/// It owns a ring of [`RECV_BATCH`] receive buffers, allocated on first use,
/// refilled with one `recv_segments` call when drained and consumed one packet
/// at a time across calls, so a poll never does more work than it must. Where
/// the transport coalesces datagrams (UDP GRO), a buffer holds several of
/// them, opened in place one after the other.
pub struct FrameReceiver<T: Transport> {
    opener: Opener,
    transport: Arc<T>,
    stats: Arc<Stats>,
    reasm: Reassembler,
    datagram_len: usize,
    frame_timeout: Duration,
    coalesce: Duration,
    busy_poll: bool,
    /// The last `recv_batch` came back short: the socket queue was empty then.
    drained: bool,
    ring: Vec<Vec<u8>>,
    lens: [usize; RECV_BATCH],
    /// Segment size of each buffer (its whole length unless coalesced).
    segs: [usize; RECV_BATCH],
    ring_len: usize,
    ring_pos: usize,
    /// Offset of the next datagram inside `ring[ring_pos]`.
    seg_at: usize,
}

impl<T: Transport> FrameReceiver<T> {
    pub(super) fn new(
        config: SessionConfig,
        key: DirectionKey,
        transport: Arc<T>,
        stats: Arc<Stats>,
    ) -> Self {
        FrameReceiver {
            opener: Opener::new(key),
            transport,
            datagram_len: config.fec.datagram_len(),
            frame_timeout: config.frame_timeout,
            coalesce: config.recv_coalesce,
            busy_poll: config.busy_poll,
            drained: false,
            reasm: Reassembler::new(config, stats.clone()),
            stats,
            ring: Vec::new(),
            lens: [0; RECV_BATCH],
            segs: [0; RECV_BATCH],
            ring_len: 0,
            ring_pos: 0,
            seg_at: 0,
        }
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

    /// The reassembler (read-only), e.g. to check memory bounds.
    pub fn reassembler(&self) -> &Reassembler {
        &self.reasm
    }

    /// Returns a delivered frame's buffer so the next frame can reuse it.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.reasm.recycle(buf);
    }

    /// Returns the next frame event if one is ready, without blocking:
    /// `Ok(None)` means "no frame yet". Frames come whole, byte-exact and in
    /// index order; frames that cannot be delivered come as
    /// [`FrameEvent::Lost`]. Bad packets are counted and skipped, never errors;
    /// only a failing socket is (`ERR_PF_IO`).
    pub fn poll_frame(&mut self) -> Result<Option<FrameEvent>> {
        self.next_event(true)
    }

    /// Works through the ring until an event is ready. When the ring is spent
    /// it ages out frames and, if `read` is set, refills the ring with one
    /// `recv_batch`; otherwise it reports "nothing yet".
    fn next_event(&mut self, read: bool) -> Result<Option<FrameEvent>> {
        let now = Instant::now();
        loop {
            if let Some(ev) = self.reasm.pop_event() {
                return Ok(Some(ev));
            }
            if self.ring_pos == self.ring_len {
                self.reasm.expire(now);
                if let Some(ev) = self.reasm.pop_event() {
                    return Ok(Some(ev));
                }
                if !read {
                    return Ok(None);
                }
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
                let n = self
                    .transport
                    .recv_segments(&mut self.ring, &mut self.lens, &mut self.segs)?;
                self.drained = n < RECV_BATCH;
                if n == 0 {
                    return Ok(None);
                }
                self.ring_len = n.min(RECV_BATCH);
                self.ring_pos = 0;
                self.seg_at = 0;
            }
            let (i, at) = (self.ring_pos, self.seg_at);
            let total = self.lens[i];
            let seg = match self.segs[i] {
                s if s == 0 || s > total => total,
                s => s,
            };
            let len = seg.min(total - at);
            self.seg_at += len;
            if self.seg_at >= total {
                self.ring_pos += 1;
                self.seg_at = 0;
            }
            self.process(i, at, len, now);
        }
    }

    /// Like [`FrameReceiver::poll_frame`] but waits (in the kernel) up to
    /// `timeout` for an event. `Ok(None)` when the time ran out.
    ///
    /// Once a read came back short, the socket queue is known to be empty, so
    /// the next read waits for readiness first instead of making an empty call;
    /// after waking it pauses `recv_coalesce` so the burst can queue up and one
    /// `recvmmsg` takes a full batch.
    pub fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        let deadline = Instant::now() + timeout;
        // Wake at least this often to age out incomplete frames on a quiet link.
        let tick = (self.frame_timeout / 4).max(Duration::from_millis(1));
        loop {
            // After a short read the queue was empty: skip the read, wait instead.
            if let Some(ev) = self.next_event(!self.drained)? {
                return Ok(Some(ev));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if self.busy_poll {
                // Read again at once: no sleep, no readiness wait.
                std::hint::spin_loop();
                self.drained = false;
                continue;
            }
            if self.transport.wait_readable((deadline - now).min(tick))? {
                if !self.coalesce.is_zero() {
                    std::thread::sleep(self.coalesce);
                }
                self.drained = false;
            }
        }
    }

    /// Handles the datagram at `ring[i][at..at + len]`.
    fn process(&mut self, i: usize, at: usize, len: usize, now: Instant) {
        let st = &self.stats;
        Stats::add(&st.packets_received, 1);
        Stats::add(&st.bytes_received, len as u64);
        if len != self.datagram_len {
            Stats::add(&st.recv_dropped_malformed, 1);
            return;
        }
        let packet = &mut self.ring[i][at..at + len];
        if let Err(e) = self.opener.open(packet) {
            let counter = match e {
                OpenError::Malformed => &st.recv_dropped_malformed,
                OpenError::Stale => &st.recv_dropped_stale,
                OpenError::Replay => &st.recv_dropped_replay,
                OpenError::Auth => &st.recv_dropped_auth,
            };
            Stats::add(counter, 1);
            return;
        }
        let plain = &packet[CLEAR_HEADER_LEN..len - TAG_LEN];
        let Ok(h) = InnerHeader::decode(plain) else {
            Stats::add(&st.recv_dropped_malformed, 1);
            return;
        };
        if h.is_probe() {
            Stats::add(&st.probe_packets_received, 1);
            return;
        }
        let _ = self.reasm.insert(&h, &plain[INNER_HEADER_LEN..], now);
    }
}
