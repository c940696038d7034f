//! Frames in, datagrams out, and back: the data-plane session.
//!
//! A [`Session`] has a [`FrameSender`] (host role: video out) and a
//! [`FrameReceiver`] (client role: video in). Both directions are symmetric on
//! the wire; the [`Role`] only picks which direction key seals and which opens.
//! The halves can be split onto separate threads with [`Session::split`].

pub mod blocking;
mod pacing;
mod path_pacer;
mod reassembly;
mod receiver;
mod sender;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use blocking::RecvWait;
pub use pacing::Pacing;
pub use reassembly::Reassembler;
pub use receiver::{FrameReceiver, MAX_READS_PER_POLL};
pub use sender::{FrameSender, ProbeReport, SubmitReport};
pub use worker::{
    spawn_lending, Delivered, FrameSink, FrameSource, LendPool, Notify, RecvWorker, Rejected, SendWaker,
    SendWorker, StatsHandle, MAX_WORKER_QUEUE,
};

use crate::crypto::SessionKeys;
use crate::error::{Error, Result};
use crate::fec::{FecConfig, FrameLayout};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::Transport;

/// Largest `max_frame_bytes` a session accepts (256 MiB).
pub const MAX_FRAME_BYTES_LIMIT: usize = 256 * 1024 * 1024;
/// Most frames one receiver reassembles at once.
pub const MAX_FRAMES_IN_FLIGHT_LIMIT: usize = 256;

/// The one check of a frame's length against `max_frame_bytes`, for the
/// sender, the workers and every binding.
pub fn check_frame_len(len: usize, max_frame_bytes: usize) -> Result<()> {
    if len > max_frame_bytes {
        return Err(Error::invalid(format!(
            "frame of {len} bytes exceeds max_frame_bytes {max_frame_bytes}"
        )));
    }
    Ok(())
}

/// Which end of the stream this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends video (seals with host→client keys, opens client→host).
    Host,
    /// Receives video (seals with client→host keys, opens host→client).
    Client,
}

/// Everything both ends must agree on, plus local receive limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// FEC and shard size (negotiated; both ends must use the same shard size
    /// and block cap, while the percentage may differ and change live).
    pub fec: FecConfig,
    /// Largest frame accepted, in bytes (`1..=256 MiB`). Bounds reassembly memory.
    pub max_frame_bytes: usize,
    /// Most frames reassembled at once (`1..=256`); a new frame beyond this
    /// evicts the oldest incomplete one.
    pub max_frames_in_flight: usize,
    /// An incomplete frame that receives no shard for this long is dropped
    /// (a frame still arriving over a slow path is not).
    pub frame_timeout: Duration,
    /// Hard cap in frame indices: an incomplete frame more than this many
    /// indices behind the newest one seen is dropped, whatever its age.
    pub max_index_lag: u64,
    /// Receive coalescing: after [`FrameReceiver::recv_frame`] wakes for a new
    /// burst, it waits this long before reading so one `recvmmsg` takes a full
    /// batch instead of the first few datagrams. Adds at most this much latency
    /// per burst; zero turns it off (`0..=10 ms`).
    pub recv_coalesce: Duration,
    /// Sender pacing ([`Pacing`]): spread each frame's datagrams instead of
    /// handing them to the kernel at once. `None` (the default here) sends each
    /// frame in one burst; the worker-driven hosts of the SDKs turn it on.
    /// With pacing, [`FrameSender::submit_frame`] returns once the frame's last
    /// datagram is sent, up to most of a frame interval later.
    pub pacing: Option<Pacing>,
    /// Busy polling: while waiting for datagrams the receiver keeps reading
    /// (non-blocking) instead of sleeping in the kernel, trading a core for the
    /// wake-up latency of `ppoll` (tens of µs). Off by default.
    pub busy_poll: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            fec: FecConfig::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            max_frames_in_flight: 8,
            frame_timeout: Duration::from_millis(200),
            max_index_lag: 32,
            recv_coalesce: Duration::from_micros(50),
            pacing: None,
            busy_poll: false,
        }
    }
}

impl SessionConfig {
    /// Checks every field; errors name the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        self.fec.validate()?;
        if !(1..=MAX_FRAME_BYTES_LIMIT).contains(&self.max_frame_bytes) {
            return Err(Error::invalid(format!(
                "max_frame_bytes {} is outside 1..={MAX_FRAME_BYTES_LIMIT}",
                self.max_frame_bytes
            )));
        }
        let layout = FrameLayout::new(self.max_frame_bytes, &self.fec);
        if layout.blocks > u16::MAX as usize {
            return Err(Error::invalid(format!(
                "max_frame_bytes {} needs {} FEC blocks, more than {}; raise shard_payload or max_data_per_block",
                self.max_frame_bytes,
                layout.blocks,
                u16::MAX
            )));
        }
        if !(1..=MAX_FRAMES_IN_FLIGHT_LIMIT).contains(&self.max_frames_in_flight) {
            return Err(Error::invalid(format!(
                "max_frames_in_flight {} is outside 1..={MAX_FRAMES_IN_FLIGHT_LIMIT}",
                self.max_frames_in_flight
            )));
        }
        if self.frame_timeout.is_zero() {
            return Err(Error::invalid("frame_timeout must be above zero"));
        }
        if self.max_index_lag == 0 {
            return Err(Error::invalid("max_index_lag must be at least 1"));
        }
        if self.recv_coalesce > Duration::from_millis(10) {
            return Err(Error::invalid(format!(
                "recv_coalesce {:?} is above 10 ms",
                self.recv_coalesce
            )));
        }
        if let Some(p) = &self.pacing {
            p.validate()?;
        }
        Ok(())
    }
}

/// What the sender says about a frame, besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Presentation timestamp, carried opaquely (typically microseconds).
    pub pts: u64,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
}

/// A frame delivered whole and byte-exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Index assigned by the sender, counting from 0.
    pub index: u64,
    /// Presentation timestamp from [`FrameMeta`].
    pub pts: u64,
    /// Keyframe flag from [`FrameMeta`].
    pub keyframe: bool,
    /// When the last needed shard arrived.
    pub received_at: Instant,
    /// Data shards of this frame rebuilt by FEC.
    pub recovered_shards: u32,
    /// The frame's bytes. Hand the buffer back with
    /// [`FrameReceiver::recycle`] to avoid an allocation per frame.
    pub data: Vec<u8>,
}

/// One outcome of polling the receiver, in frame-index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete frame.
    Frame(Frame),
    /// Frames `first_index .. first_index + count` will never be delivered
    /// (lost beyond what FEC could repair, timed out, or superseded by a later
    /// complete frame). A good moment to ask the host for a keyframe.
    Lost {
        /// First lost frame index.
        first_index: u64,
        /// Number of consecutive lost frames.
        count: u64,
    },
}

/// Both halves of a data-plane session over one transport.
pub struct Session<T: Transport> {
    sender: FrameSender<T>,
    receiver: FrameReceiver<T>,
}

impl<T: Transport> Session<T> {
    /// Creates a session. Fails with `ERR_PF_INVALID_ARG` if `config` is invalid.
    pub fn new(role: Role, config: SessionConfig, keys: &SessionKeys, transport: T) -> Result<Self> {
        config.validate()?;
        let transport = Arc::new(transport);
        let stats = Arc::new(Stats::default());
        let (seal_key, open_key) = match role {
            Role::Host => (&keys.host_to_client, &keys.client_to_host),
            Role::Client => (&keys.client_to_host, &keys.host_to_client),
        };
        Ok(Session {
            sender: FrameSender::new(config.clone(), seal_key.clone(), transport.clone(), stats.clone()),
            receiver: FrameReceiver::new(config, open_key.clone(), transport, stats),
        })
    }

    /// Sends a frame and returns once its last datagram went out: at once,
    /// or on the pacing schedule when [`SessionConfig::pacing`] is set (then
    /// this blocks for up to most of a frame interval; see
    /// [`blocking::send_frame`]).
    pub fn submit_frame(&mut self, data: &[u8], meta: FrameMeta) -> Result<SubmitReport> {
        blocking::send_frame(&mut self.sender, data, meta)
    }

    /// The next frame event at `now` without blocking (see [`FrameReceiver::poll_frame`]).
    pub fn poll_frame(&mut self, now: Instant) -> Result<Option<FrameEvent>> {
        self.receiver.poll_frame(now)
    }

    /// Waits up to `timeout` for the next frame event (see [`blocking::recv_frame`]).
    pub fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        let wait = self.receiver.recv_wait();
        blocking::recv_frame(&mut self.receiver, timeout, wait)
    }

    /// Counters of both halves, with the transport's system-call counts.
    pub fn stats(&self) -> StatsSnapshot {
        self.receiver.stats()
    }

    /// The shared transport.
    pub fn transport(&self) -> &T {
        self.sender.transport()
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut FrameSender<T> {
        &mut self.sender
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut FrameReceiver<T> {
        &mut self.receiver
    }

    /// Splits into halves that can live on different threads (they share the
    /// transport and the counters).
    pub fn split(self) -> (FrameSender<T>, FrameReceiver<T>) {
        (self.sender, self.receiver)
    }
}

/// Copies the transport's system-call counts into a counter snapshot.
fn snapshot_with_io<T: Transport>(stats: &Stats, transport: &T) -> StatsSnapshot {
    let mut s = stats.snapshot();
    let io = transport.io_counters();
    s.send_syscalls = io.send_syscalls;
    s.recv_syscalls = io.recv_syscalls;
    s.recv_wait_syscalls = io.wait_syscalls;
    s.recv_dropped_foreign = io.foreign_dropped;
    s
}

#[cfg(test)]
mod tests;
