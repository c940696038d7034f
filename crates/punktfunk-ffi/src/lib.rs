//! C ABI of punktfunk-core, for Swift and C clients: `include/punktfunk_core.h`.
//!
//! Conventions (the header repeats them):
//!
//! * Functions are `punktfunk_*`, types `Punktfunk*`, constants `PUNKTFUNK_*`.
//! * Every fallible function returns an `int32_t` status: `PUNKTFUNK_OK` (0) or
//!   a negative `PUNKTFUNK_ERR_*` code, the same taxonomy as the TypeScript
//!   SDK's `ERR_PF_*` strings. `punktfunk_last_error_message()` describes the
//!   last failure on the calling thread.
//! * Every export catches panics: a bug inside the library returns
//!   `PUNKTFUNK_ERR_INTERNAL`, it never unwinds into C or aborts the process.
//! * Every pointer argument is checked for NULL and every string for UTF-8.
//! * Handles are opaque, created by `*_new` and released by `*_free`, which
//!   accepts NULL. A handle must not be used from two threads at once.
//! * Option structs start with `struct_size`: fill them with the matching
//!   `*_default` function, so a program built against an older header keeps
//!   working with a newer library.
//! * Borrowed outputs (a received frame's bytes) stay valid until the next call
//!   on the same handle.
//!
//! This crate holds all `extern "C"` code of the project; its `unsafe` blocks
//! only dereference caller pointers, each with the contract that makes it sound
//! in a `// SAFETY:` comment (enforced by the lint below).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::mem::size_of;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "quic")]
mod quic;
#[cfg(feature = "quic")]
pub use quic::*;

use pf::transport::GilbertElliott;
use pf::{
    Error, ErrorKind, FecConfig, Frame, FrameEvent, FrameMeta, Impaired, ImpairmentConfig, LoopbackTransport,
    Offload, Pacing, Role, Session, SessionConfig, SessionKeys, StatsSnapshot, Transport, UdpConfig,
    UdpTransport,
};

/// Version of this ABI. It changes only when a published function or struct
/// layout changes incompatibly; growing an option struct does not change it.
pub const PUNKTFUNK_ABI_VERSION: u32 = 2;

/// `PunktfunkStats::rate_state`: the session has no rate controller of its
/// own (client sessions, `adaptive: false`, browser sessions).
pub const PUNKTFUNK_RATE_STATE_NONE: u64 = 0;
/// `PunktfunkStats::rate_state`: ramping up from the initial rate.
pub const PUNKTFUNK_RATE_STATE_STARTUP: u64 = 1;
/// `PunktfunkStats::rate_state`: an application-limited session probing for
/// a faster path.
pub const PUNKTFUNK_RATE_STATE_PROBE: u64 = 2;
/// `PunktfunkStats::rate_state`: pacing below the estimate for a round so the
/// queue a ramp built drains.
pub const PUNKTFUNK_RATE_STATE_DRAIN: u64 = 3;
/// `PunktfunkStats::rate_state`: tracking the path.
pub const PUNKTFUNK_RATE_STATE_STEADY: u64 = 4;
/// `PunktfunkStats::rate_state`: backed off for congestion, holding until the
/// queue drained.
pub const PUNKTFUNK_RATE_STATE_BACKOFF: u64 = 5;
/// `PunktfunkStats::rate_state`: feedback fell silent; holding, then decaying.
pub const PUNKTFUNK_RATE_STATE_HOLD: u64 = 6;
/// `PunktfunkStats::rate_state`: a fixed rate (`adaptive: false`).
pub const PUNKTFUNK_RATE_STATE_FIXED: u64 = 7;

/// Success.
pub const PUNKTFUNK_OK: i32 = 0;
/// An argument was NULL, not UTF-8, or out of range (`ERR_PF_INVALID_ARG`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_INVALID_ARG: i32 = -1 as i32;
/// The session was closed (`ERR_PF_CLOSED`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_CLOSED: i32 = -2 as i32;
/// The operating system refused a socket operation (`ERR_PF_IO`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_IO: i32 = -3 as i32;
/// A bounded queue was full (`ERR_PF_QUEUE_FULL`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_QUEUE_FULL: i32 = -4 as i32;
/// An operation ran out of time (`ERR_PF_TIMEOUT`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_TIMEOUT: i32 = -5 as i32;
/// The peer broke the protocol (`ERR_PF_PROTOCOL`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_PROTOCOL: i32 = -6 as i32;
/// The host's identity did not match the pinned fingerprint (`ERR_PF_PIN_MISMATCH`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_PIN_MISMATCH: i32 = -7 as i32;
/// A bug inside the library, for example a caught panic (`ERR_PF_INTERNAL`).
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_INTERNAL: i32 = -8 as i32;
/// The host admits only authorized clients, and this one is not among them
/// (`ERR_PF_UNAUTHORIZED`); the message carries the host's reason.
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_UNAUTHORIZED: i32 = -9 as i32;
/// A private key file (the identity's `host-key.der`) may be accessed by
/// users other than its owner and is refused (`ERR_PF_INSECURE_KEY`);
/// `chmod 600` it, or remove it to create a new identity.
#[allow(clippy::unnecessary_cast)] // the cast makes the C macro `(int32_t)-N`, safe in any expression
pub const PUNKTFUNK_ERR_INSECURE_KEY: i32 = -10 as i32;

/// Session role: sends video (seals with the host→client key).
pub const PUNKTFUNK_ROLE_HOST: i32 = 0;
/// Session role: receives video (seals with the client→host key).
pub const PUNKTFUNK_ROLE_CLIENT: i32 = 1;

/// `PunktfunkFrameEvent.kind`: nothing was ready.
pub const PUNKTFUNK_EVENT_NONE: u32 = 0;
/// `PunktfunkFrameEvent.kind`: a complete frame (`data`, `len`, `index`, …).
pub const PUNKTFUNK_EVENT_FRAME: u32 = 1;
/// `PunktfunkFrameEvent.kind`: frames `index … index + count - 1` are lost.
pub const PUNKTFUNK_EVENT_LOST: u32 = 2;

/// Longest address string `punktfunk_session_local_address` writes, with its NUL.
pub const PUNKTFUNK_ADDRESS_MAX: usize = 64;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn remember(e: &Error) -> i32 {
    let text = format!("{}: {}", e.code(), e.message()).replace('\0', " ");
    LAST_ERROR.with(|l| *l.borrow_mut() = CString::new(text).unwrap_or_default());
    e.kind().status()
}

/// Runs an export body: maps errors to statuses and panics to `PUNKTFUNK_ERR_INTERNAL`.
fn ffi(body: impl FnOnce() -> Result<(), Error>) -> i32 {
    match Error::catch_panic("punktfunk", body) {
        Ok(()) => PUNKTFUNK_OK,
        Err(e) => remember(&e),
    }
}

fn null(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

/// Borrows a `&mut T` from a caller pointer.
///
/// # Safety
/// `p` must be NULL or point to a valid, exclusively borrowed `T` for `'a`.
unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller promises `p` is NULL or valid and unaliased for 'a.
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

/// Borrows a `&T` from a caller pointer.
///
/// # Safety
/// `p` must be NULL or point to a valid `T` for `'a`.
unsafe fn input<'a, T>(p: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller promises `p` is NULL or valid for 'a.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// Borrows a byte slice; NULL is allowed only for an empty slice.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes for `'a`.
unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    // SAFETY: the caller's contract is the one `items` asks for.
    unsafe { items(p, len, what) }
}

/// Borrows a C array of `len` items; NULL is allowed only for an empty array.
///
/// # Safety
/// `p` must be NULL or point to `len` readable, initialised `T`s for `'a`.
unsafe fn items<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(Error::invalid(format!("{what} length {len} is too large")));
    }
    // SAFETY: non-NULL, at most isize::MAX bytes, and the caller promises `len`
    // readable items.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Reads a growable option struct whose first field is `struct_size`: takes
/// the prefix the caller knows, and defaults for anything newer.
///
/// # Safety
/// `p` must be NULL or point to at least `struct_size` readable bytes, where
/// `struct_size` is the first `u32` at `p`.
unsafe fn read_growable<T: Default + Copy>(p: *const T, what: &str, min_size: usize) -> Result<T, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: every growable struct starts with a `u32` struct_size; `p` is valid.
    let size = unsafe { ptr::read(p as *const u32) } as usize;
    if size < min_size {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {size}, below the smallest known layout ({min_size}); \
             initialise it with its *_default function"
        )));
    }
    let mut value = T::default();
    let n = size.min(size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` readable bytes; `value` is a
    // plain `repr(C)` struct of integers and floats (every bit pattern valid)
    // with room for `n <= size_of::<T>()` bytes; the regions do not overlap.
    unsafe { ptr::copy_nonoverlapping(p as *const u8, &mut value as *mut T as *mut u8, n) };
    Ok(value)
}

/// Writes a growable output struct: as many bytes as the caller's
/// `struct_size` says it has room for.
///
/// # Safety
/// `p` must be NULL or point to at least `struct_size` writable bytes, where
/// `struct_size` is the first `u32` at `p`.
unsafe fn write_growable<T: Copy>(p: *mut T, value: &T, what: &str, min_size: usize) -> Result<(), Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: `p` is valid and starts with its u32 struct_size.
    let size = unsafe { ptr::read(p as *const u32) } as usize;
    if size < min_size {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {size}, below the smallest known layout ({min_size})"
        )));
    }
    let n = size.min(size_of::<T>());
    // SAFETY: the caller has room for `size >= n` bytes; `value` is a plain
    // `repr(C)` struct of `size_of::<T>() >= n` bytes; no overlap. The struct_size
    // field is copied from `value` only where it fits, and then restored below.
    unsafe { ptr::copy_nonoverlapping(value as *const T as *const u8, p as *mut u8, n) };
    // SAFETY: as above; the caller's struct_size stays what the caller set.
    unsafe { ptr::write(p as *mut u32, size as u32) };
    Ok(())
}

/// Session parameters (both ends must agree on `shard_payload` and
/// `max_data_shards`). Fill with `punktfunk_session_config_default` first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkSessionConfig {
    /// Size of this struct as the caller knows it: `sizeof(PunktfunkSessionConfig)`.
    pub struct_size: u32,
    /// Recovery shards as a percentage of data shards (0..=100; default 10).
    pub fec_percent: u32,
    /// Most data shards per Reed-Solomon block (1..=16384; default 4096).
    pub max_data_shards: u32,
    /// Frame bytes per datagram, even, 64..=16384 (default 1344).
    pub shard_payload: u32,
    /// Largest frame accepted, in bytes (default 16 MiB).
    pub max_frame_bytes: u64,
    /// Most frames reassembled at once (default 8).
    pub max_frames_in_flight: u32,
    /// An incomplete frame older than this many ms is reported lost (default 200).
    pub frame_timeout_ms: u32,
    /// An incomplete frame this many indices behind the newest is reported lost (default 32).
    pub max_index_lag: u64,
    /// Receive coalescing window in µs, 0..=10000 (default 50).
    pub recv_coalesce_us: u32,
    /// UDP socket buffer size to ask for, bytes (default 32 MiB; ignored by loopback pairs).
    pub socket_buffer_bytes: u32,
    /// Sender pacing: 0 sends each frame in one burst (default), 1 spreads its
    /// datagrams (64 KiB at once, then 32 KiB chunks at `pacing_rate_percent`
    /// of the measured stream rate, within the frame interval). With pacing,
    /// `punktfunk_session_submit_frame` returns once the frame's last datagram
    /// is sent. Added in the second layout of this struct.
    pub pacing: u32,
    /// Pacing rate as a percentage of the measured stream rate (100..=10000;
    /// 0 means the default, 200).
    pub pacing_rate_percent: u32,
    /// Pace at this fixed rate instead, kbit/s (0, the default, measures).
    pub pacing_fixed_rate_kbps: u32,
    /// UDP offload: `PUNKTFUNK_OFFLOAD_AUTO` (0, the default: GSO/GRO where
    /// the kernel has them), `PUNKTFUNK_OFFLOAD_ON` (required) or
    /// `PUNKTFUNK_OFFLOAD_OFF` (sendmmsg/recvmmsg only).
    pub udp_offload: u32,
    /// Receive busy polling: 1 keeps reading instead of sleeping in the kernel
    /// while waiting (a core for lower wake-up latency); 0 (default) sleeps.
    pub busy_poll: u32,
}

/// The first layout of [`PunktfunkSessionConfig`] ended before `pacing`;
/// callers built against it pass this size and get the defaults for the rest.
const CONFIG_V1_SIZE: usize = std::mem::offset_of!(PunktfunkSessionConfig, pacing);

/// UDP offload where the kernel has it (GSO on send, GRO on receive).
pub const PUNKTFUNK_OFFLOAD_AUTO: u32 = 0;
/// UDP offload required: opening a socket fails where the kernel lacks it.
pub const PUNKTFUNK_OFFLOAD_ON: u32 = 1;
/// No UDP offload: `sendmmsg`/`recvmmsg` batches only.
pub const PUNKTFUNK_OFFLOAD_OFF: u32 = 2;

impl PunktfunkSessionConfig {
    fn defaults() -> Self {
        let c = SessionConfig::default();
        PunktfunkSessionConfig {
            struct_size: size_of::<PunktfunkSessionConfig>() as u32,
            fec_percent: c.fec.fec_percent.into(),
            max_data_shards: c.fec.max_data_per_block as u32,
            shard_payload: c.fec.shard_payload as u32,
            max_frame_bytes: c.max_frame_bytes as u64,
            max_frames_in_flight: c.max_frames_in_flight as u32,
            frame_timeout_ms: c.frame_timeout.as_millis() as u32,
            max_index_lag: c.max_index_lag,
            recv_coalesce_us: c.recv_coalesce.as_micros() as u32,
            socket_buffer_bytes: UdpConfig::default().socket_buffer as u32,
            pacing: 0,
            pacing_rate_percent: 0,
            pacing_fixed_rate_kbps: 0,
            udp_offload: PUNKTFUNK_OFFLOAD_AUTO,
            busy_poll: 0,
        }
    }

    /// The socket options these settings ask for.
    fn udp_config(&self) -> Result<UdpConfig, Error> {
        let offload = match self.udp_offload {
            PUNKTFUNK_OFFLOAD_AUTO => Offload::Auto,
            PUNKTFUNK_OFFLOAD_ON => Offload::On,
            PUNKTFUNK_OFFLOAD_OFF => Offload::Off,
            other => {
                return Err(Error::invalid(format!(
                    "udp_offload {other} is not a PUNKTFUNK_OFFLOAD_* value"
                )))
            }
        };
        Ok(UdpConfig {
            socket_buffer: self.socket_buffer_bytes as usize,
            gso: offload,
            gro: offload,
        })
    }

    fn to_core(self) -> Result<SessionConfig, Error> {
        let cfg = SessionConfig {
            fec: FecConfig {
                fec_percent: u8::try_from(self.fec_percent)
                    .map_err(|_| Error::invalid(format!("fec_percent {} is above 100", self.fec_percent)))?,
                max_data_per_block: self.max_data_shards as usize,
                shard_payload: self.shard_payload as usize,
            },
            max_frame_bytes: usize::try_from(self.max_frame_bytes)
                .map_err(|_| Error::invalid("max_frame_bytes is too large"))?,
            max_frames_in_flight: self.max_frames_in_flight as usize,
            frame_timeout: Duration::from_millis(self.frame_timeout_ms.into()),
            max_index_lag: self.max_index_lag,
            recv_coalesce: Duration::from_micros(self.recv_coalesce_us.into()),
            pacing: match self.pacing {
                0 => None,
                1 => Some(Pacing {
                    rate_percent: match self.pacing_rate_percent {
                        0 => Pacing::default().rate_percent,
                        p => p,
                    },
                    fixed_rate_kbps: self.pacing_fixed_rate_kbps,
                    ..Pacing::default()
                }),
                other => return Err(Error::invalid(format!("pacing {other} is neither 0 nor 1"))),
            },
            busy_poll: match self.busy_poll {
                0 => false,
                1 => true,
                other => return Err(Error::invalid(format!("busy_poll {other} is neither 0 nor 1"))),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Simulated network trouble on the host→client side of a loopback pair.
/// Fill with `punktfunk_impairment_default` (everything off) first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkImpairment {
    /// Size of this struct as the caller knows it: `sizeof(PunktfunkImpairment)`.
    pub struct_size: u32,
    /// How many later datagrams overtake a reordered one (default 3).
    pub reorder_depth: u32,
    /// Seed of the pseudo-random generator; equal seeds give equal patterns.
    pub seed: u64,
    /// Drop exactly every n-th datagram (0 = off).
    pub drop_every_nth: u64,
    /// Independent random loss, percent.
    pub loss_percent: f64,
    /// Percent of datagrams delivered out of order.
    pub reorder_percent: f64,
    /// Percent of datagrams delivered twice.
    pub duplicate_percent: f64,
    /// Percent of datagrams with one byte flipped.
    pub corrupt_percent: f64,
    /// Percent of datagrams cut short.
    pub truncate_percent: f64,
    /// Burst loss (Gilbert-Elliott): chance per datagram of entering the bad
    /// state, percent. 0 turns burst loss off.
    pub burst_good_to_bad_percent: f64,
    /// Chance per datagram of leaving the bad state, percent.
    pub burst_bad_to_good_percent: f64,
    /// Loss in the good state, percent.
    pub burst_loss_good_percent: f64,
    /// Loss in the bad state, percent.
    pub burst_loss_bad_percent: f64,
}

const IMPAIRMENT_V1_SIZE: usize = size_of::<PunktfunkImpairment>();

impl PunktfunkImpairment {
    fn to_core(self) -> Result<ImpairmentConfig, Error> {
        let cfg = ImpairmentConfig {
            seed: self.seed,
            loss_percent: self.loss_percent,
            drop_every_nth: self.drop_every_nth,
            // Exactly 0 turns burst loss off; anything else (negative, NaN
            // included) turns it on and is then range-checked by `validate`.
            burst: (self.burst_good_to_bad_percent != 0.0).then_some(GilbertElliott {
                good_to_bad_percent: self.burst_good_to_bad_percent,
                bad_to_good_percent: self.burst_bad_to_good_percent,
                loss_good_percent: self.burst_loss_good_percent,
                loss_bad_percent: self.burst_loss_bad_percent,
            }),
            reorder_percent: self.reorder_percent,
            reorder_depth: self.reorder_depth as usize,
            duplicate_percent: self.duplicate_percent,
            corrupt_percent: self.corrupt_percent,
            truncate_percent: self.truncate_percent,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// One received event. Filled by `punktfunk_client_poll_frame` and
/// `punktfunk_client_wait_frame`; `data` stays valid until the next call on
/// the same session handle.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PunktfunkFrameEvent {
    /// `PUNKTFUNK_EVENT_NONE`, `PUNKTFUNK_EVENT_FRAME` or `PUNKTFUNK_EVENT_LOST`.
    pub kind: u32,
    /// Data shards of this frame rebuilt by FEC (frames only).
    pub recovered_shards: u32,
    /// Frame index (frames), or the first lost index (losses).
    pub index: u64,
    /// Number of lost frames (losses); 1 for a frame.
    pub count: u64,
    /// Presentation timestamp given by the sender (frames only).
    pub pts: u64,
    /// The frame's bytes, borrowed (frames only; NULL otherwise or when empty).
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub len: usize,
    /// Keyframe flag given by the sender (frames only).
    pub keyframe: bool,
}

impl PunktfunkFrameEvent {
    const NONE: PunktfunkFrameEvent = PunktfunkFrameEvent {
        kind: PUNKTFUNK_EVENT_NONE,
        recovered_shards: 0,
        index: 0,
        count: 0,
        pts: 0,
        data: ptr::null(),
        len: 0,
        keyframe: false,
    };
}

/// Every counter of a session. Set `struct_size` to `sizeof(PunktfunkStats)`
/// before calling `punktfunk_session_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkStats {
    /// Size of this struct as the caller knows it: `sizeof(PunktfunkStats)`.
    pub struct_size: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Frames handed to `punktfunk_host_submit_frame`.
    pub frames_submitted: u64,
    /// Frames delivered whole and byte-exact.
    pub frames_completed: u64,
    /// Frames that will never be delivered.
    pub frames_dropped: u64,
    /// Datagrams handed to the kernel (or the in-process link).
    pub packets_sent: u64,
    /// Datagrams read, before any check.
    pub packets_received: u64,
    /// Datagrams dropped locally on send (socket buffer full).
    pub packets_send_dropped: u64,
    /// Received datagrams that failed authentication.
    pub recv_dropped_auth: u64,
    /// Received datagrams already seen (replays, duplicates).
    pub recv_dropped_replay: u64,
    /// Received datagrams with a bad version, length or header.
    pub recv_dropped_malformed: u64,
    /// Authenticated datagrams claiming sizes beyond the configured bounds.
    pub recv_dropped_out_of_bounds: u64,
    /// Datagrams too old to be of use.
    pub recv_dropped_stale: u64,
    /// Authenticated shards that were not needed.
    pub packets_redundant: u64,
    /// Data shards rebuilt by FEC.
    pub fec_recovered_shards: u64,
    /// Wire bytes sent.
    pub bytes_sent: u64,
    /// Wire bytes received.
    pub bytes_received: u64,
    /// Frame bytes delivered.
    pub payload_bytes_delivered: u64,
    /// Send system calls.
    pub send_syscalls: u64,
    /// Receive system calls.
    pub recv_syscalls: u64,
    /// Readiness waits (ppoll) before receiving.
    pub recv_wait_syscalls: u64,
    /// Key epochs started on the send side.
    pub key_rotations: u64,
    /// Speed-test probe datagrams received.
    pub probe_packets_received: u64,
    /// Datagrams from a source other than the session's peer (control-plane sessions).
    pub recv_dropped_foreign: u64,
    /// Times the host's rate controller backed off for congestion (host
    /// sessions; since ABI 2).
    pub congestion_events: u64,
    /// Gauge: the rate controller's path estimate, kbit/s (0 without one).
    pub estimated_kbps: u64,
    /// Gauge: the media bitrate the encoder should aim for, kbit/s: the
    /// figure `punktfunk_host_session_target_kbps` returns.
    pub target_kbps: u64,
    /// Gauge: the QUIC connection's smoothed round-trip time, µs.
    pub rtt_us: u64,
    /// Gauge: queue delay on the path, µs.
    pub queue_delay_us: u64,
    /// Gauge: what the rate controller is doing, a `PUNKTFUNK_RATE_STATE_*`
    /// code (0 without a controller of the session's own). This and the
    /// fields below were appended in the third stats layout: a caller whose
    /// `struct_size` ends at `queue_delay_us` gets the fields it knows.
    pub rate_state: u64,
    /// Gauge: the rate datagrams leave at, kbit/s.
    pub pacing_kbps: u64,
    /// Gauge: the rate the client last measured arriving, kbit/s.
    pub delivery_kbps: u64,
    /// Gauge: 1 while a loss-based flow shares the bottleneck, else 0.
    pub competing_flow: u64,
    /// Client feedback reports the rate controller used.
    pub feedback_reports: u64,
    /// Client feedback datagrams refused (undecodable or contradictory).
    pub feedback_dropped: u64,
    /// Feedback reports too old to describe the path; each round halved the
    /// estimate.
    pub stale_reports: u64,
    /// Times the controller learnt its one-way-delay base again.
    pub delay_base_resets: u64,
    /// Reports with loss judged random (left to FEC, no back-off).
    pub random_loss_reports: u64,
}

/// The layout of ABI 1 (up to `recv_dropped_foreign`): callers built against
/// it still get every counter it has.
const STATS_V1_SIZE: usize = std::mem::offset_of!(PunktfunkStats, congestion_events);
/// The current layout.
const STATS_SIZE: usize = size_of::<PunktfunkStats>();

impl From<StatsSnapshot> for PunktfunkStats {
    fn from(s: StatsSnapshot) -> Self {
        // Destructured without `..`: a new core counter fails to compile here
        // until it is added to the C struct.
        let StatsSnapshot {
            frames_submitted,
            frames_completed,
            frames_dropped,
            packets_sent,
            packets_received,
            packets_send_dropped,
            recv_dropped_auth,
            recv_dropped_replay,
            recv_dropped_malformed,
            recv_dropped_out_of_bounds,
            recv_dropped_stale,
            packets_redundant,
            fec_recovered_shards,
            bytes_sent,
            bytes_received,
            payload_bytes_delivered,
            send_syscalls,
            recv_syscalls,
            recv_wait_syscalls,
            key_rotations,
            probe_packets_received,
            recv_dropped_foreign,
            congestion_events,
            estimated_kbps,
            target_kbps,
            rtt_us,
            queue_delay_us,
            rate_state,
            pacing_kbps,
            delivery_kbps,
            competing_flow,
            feedback_reports,
            feedback_dropped,
            stale_reports,
            delay_base_resets,
            random_loss_reports,
        } = s;
        PunktfunkStats {
            struct_size: STATS_SIZE as u32,
            reserved: 0,
            frames_submitted,
            frames_completed,
            frames_dropped,
            packets_sent,
            packets_received,
            packets_send_dropped,
            recv_dropped_auth,
            recv_dropped_replay,
            recv_dropped_malformed,
            recv_dropped_out_of_bounds,
            recv_dropped_stale,
            packets_redundant,
            fec_recovered_shards,
            bytes_sent,
            bytes_received,
            payload_bytes_delivered,
            send_syscalls,
            recv_syscalls,
            recv_wait_syscalls,
            key_rotations,
            probe_packets_received,
            recv_dropped_foreign,
            congestion_events,
            estimated_kbps,
            target_kbps,
            rtt_us,
            queue_delay_us,
            rate_state,
            pacing_kbps,
            delivery_kbps,
            competing_flow,
            feedback_reports,
            feedback_dropped,
            stale_reports,
            delay_base_resets,
            random_loss_reports,
        }
    }
}

/// An open data-plane session (opaque). Create with
/// `punktfunk_session_new_udp` or `punktfunk_loopback_pair_new`, release with
/// `punktfunk_session_free`.
pub struct PunktfunkSession {
    session: Session<Box<dyn Transport>>,
    udp: Option<Arc<UdpTransport>>,
    /// The frame last handed out; its bytes stay valid until the next call on
    /// this handle, when the buffer is recycled.
    lent: Option<Frame>,
}

impl PunktfunkSession {
    fn new(role: Role, cfg: SessionConfig, keys: &SessionKeys, t: Box<dyn Transport>) -> Result<Self, Error> {
        Ok(PunktfunkSession {
            session: Session::new(role, cfg, keys, t)?,
            udp: None,
            lent: None,
        })
    }

    /// Ends the loan of the last frame: its buffer goes back to the receiver.
    fn reclaim(&mut self) {
        if let Some(f) = self.lent.take() {
            self.session.receiver().recycle(f.data);
        }
    }

    fn lend(&mut self, ev: Option<FrameEvent>, out: &mut PunktfunkFrameEvent) {
        lend(ev, out, &mut self.lent);
    }
}

/// Describes `ev` in `out`; a frame is kept in `lent` so its bytes stay valid
/// until the handle's next call.
fn lend(ev: Option<FrameEvent>, out: &mut PunktfunkFrameEvent, lent: &mut Option<Frame>) {
    *out = PunktfunkFrameEvent::NONE;
    match ev {
        None => {}
        Some(FrameEvent::Lost { first_index, count }) => {
            out.kind = PUNKTFUNK_EVENT_LOST;
            out.index = first_index;
            out.count = count;
        }
        Some(FrameEvent::Frame(f)) => {
            out.kind = PUNKTFUNK_EVENT_FRAME;
            out.index = f.index;
            out.count = 1;
            out.pts = f.pts;
            out.keyframe = f.keyframe;
            out.recovered_shards = f.recovered_shards;
            out.len = f.data.len();
            out.data = if f.data.is_empty() {
                ptr::null()
            } else {
                f.data.as_ptr()
            };
            *lent = Some(f);
        }
    }
}

/// Writes `text` and a NUL into a caller buffer of `len` bytes.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes.
unsafe fn write_cstr(buf: *mut c_char, len: usize, text: &str) -> Result<(), Error> {
    if buf.is_null() {
        return Err(null("buf"));
    }
    if text.len() + 1 > len {
        return Err(Error::invalid(format!(
            "buffer of {len} bytes is too small for {text:?}"
        )));
    }
    // SAFETY: `buf` has `len > text.len()` writable bytes; the source is a
    // separate Rust string.
    unsafe {
        ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

fn keys_from(secret: &[u8], context: &[u8]) -> Result<SessionKeys, Error> {
    SessionKeys::derive_raw(secret, context)
}

fn boxed(s: PunktfunkSession) -> *mut PunktfunkSession {
    Box::into_raw(Box::new(s))
}

/// The ABI version this library implements (`PUNKTFUNK_ABI_VERSION`).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub extern "C" fn punktfunk_abi_version() -> u32 {
    PUNKTFUNK_ABI_VERSION
}

/// A description of the last failure on the calling thread, as
/// `"ERR_PF_CODE: message"`; an empty string if nothing failed yet. Never NULL.
/// The string stays valid until the next failing call on this thread.
///
/// # Safety
/// Always safe to call; do not free or modify the returned string.
#[no_mangle]
pub extern "C" fn punktfunk_last_error_message() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The stable code string of a status (`"ERR_PF_INVALID_ARG"` for
/// `PUNKTFUNK_ERR_INVALID_ARG`, `"OK"` for 0, `"UNKNOWN"` otherwise). Static; never NULL.
///
/// # Safety
/// Always safe to call; do not free or modify the returned string.
#[no_mangle]
pub extern "C" fn punktfunk_status_code(status: i32) -> *const c_char {
    let s: &'static CStr = match status {
        PUNKTFUNK_OK => c"OK",
        PUNKTFUNK_ERR_INVALID_ARG => c"ERR_PF_INVALID_ARG",
        PUNKTFUNK_ERR_CLOSED => c"ERR_PF_CLOSED",
        PUNKTFUNK_ERR_IO => c"ERR_PF_IO",
        PUNKTFUNK_ERR_QUEUE_FULL => c"ERR_PF_QUEUE_FULL",
        PUNKTFUNK_ERR_TIMEOUT => c"ERR_PF_TIMEOUT",
        PUNKTFUNK_ERR_PROTOCOL => c"ERR_PF_PROTOCOL",
        PUNKTFUNK_ERR_PIN_MISMATCH => c"ERR_PF_PIN_MISMATCH",
        PUNKTFUNK_ERR_INTERNAL => c"ERR_PF_INTERNAL",
        PUNKTFUNK_ERR_UNAUTHORIZED => c"ERR_PF_UNAUTHORIZED",
        PUNKTFUNK_ERR_INSECURE_KEY => c"ERR_PF_INSECURE_KEY",
        _ => c"UNKNOWN",
    };
    s.as_ptr()
}

/// Fills `out` with the default session parameters and sets its `struct_size`.
///
/// # Safety
/// `out` must be NULL or point to a writable `PunktfunkSessionConfig`.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_config_default(out: *mut PunktfunkSessionConfig) -> i32 {
    ffi(|| {
        // SAFETY: `out` is NULL or a writable config, per the contract above.
        *unsafe { self::out(out, "out") }? = PunktfunkSessionConfig::defaults();
        Ok(())
    })
}

/// Fills `out` with "no impairment" and sets its `struct_size`.
///
/// # Safety
/// `out` must be NULL or point to a writable `PunktfunkImpairment`.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_impairment_default(out: *mut PunktfunkImpairment) -> i32 {
    ffi(|| {
        // SAFETY: `out` is NULL or a writable impairment struct.
        *unsafe { self::out(out, "out") }? = PunktfunkImpairment {
            struct_size: IMPAIRMENT_V1_SIZE as u32,
            reorder_depth: 3,
            ..Default::default()
        };
        Ok(())
    })
}

/// Reads an optional config: NULL means defaults.
///
/// # Safety
/// `config` must be NULL or point to a config of at least its `struct_size` bytes.
unsafe fn config_or_default(config: *const PunktfunkSessionConfig) -> Result<PunktfunkSessionConfig, Error> {
    if config.is_null() {
        return Ok(PunktfunkSessionConfig::defaults());
    }
    // SAFETY: non-NULL and valid for its struct_size, per the caller's contract.
    unsafe { read_growable(config, "config", CONFIG_V1_SIZE) }
}

/// Opens a session on a UDP socket bound to `bind` (`"IP:port"`, port 0 picks
/// a free one), sending to `peer` (`"IP:port"`, or NULL to set it later with
/// `punktfunk_session_connect`). Both ends derive their keys from the same
/// `secret` (at least 16 bytes) and `context`, which must not be empty
/// (`PUNKTFUNK_ERR_INVALID_ARG`) and must be unique to this session (e.g. 16
/// random bytes both ends agree on): packet nonces restart at 0 with every
/// session, so a secret used again needs a new context. `config` may be NULL
/// for defaults.
/// On success `*out` is a new handle for `punktfunk_session_free`.
///
/// # Safety
/// String arguments must be NULL or NUL-terminated; `secret`/`context` must
/// point to `secret_len`/`context_len` readable bytes (or be NULL with length
/// 0); `config` must be NULL or a valid config; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_new_udp(
    role: i32,
    bind: *const c_char,
    peer: *const c_char,
    secret: *const u8,
    secret_len: usize,
    context: *const u8,
    context_len: usize,
    config: *const PunktfunkSessionConfig,
    out: *mut *mut PunktfunkSession,
) -> i32 {
    ffi(|| {
        // SAFETY: every pointer is checked or valid per the contract above.
        let out = unsafe { self::out(out, "out") }?;
        *out = ptr::null_mut();
        let role = match role {
            PUNKTFUNK_ROLE_HOST => Role::Host,
            PUNKTFUNK_ROLE_CLIENT => Role::Client,
            r => {
                return Err(Error::invalid(format!(
                    "role {r} is neither PUNKTFUNK_ROLE_HOST nor _CLIENT"
                )))
            }
        };
        // SAFETY: see the function contract.
        let bind = unsafe { text(bind, "bind") }?;
        let peer = if peer.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated per the contract.
            Some(unsafe { text(peer, "peer") }?)
        };
        // SAFETY: see the function contract.
        let (secret, context) = unsafe {
            (
                bytes(secret, secret_len, "secret")?,
                bytes(context, context_len, "context")?,
            )
        };
        // SAFETY: see the function contract.
        let cfg = unsafe { config_or_default(config) }?;
        let keys = keys_from(secret, context)?;
        let local = parse_addr(bind, "bind")?;
        let udp_cfg = cfg.udp_config()?;
        let udp = match peer {
            Some(p) => UdpTransport::connect_to(local, parse_addr(p, "peer")?, &udp_cfg),
            None => UdpTransport::bind(local, &udp_cfg),
        }
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot open a UDP socket on {bind}: {e}")))?;
        let udp = Arc::new(udp);
        let mut s = PunktfunkSession::new(role, cfg.to_core()?, &keys, Box::new(udp.clone()))?;
        s.udp = Some(udp);
        *out = boxed(s);
        Ok(())
    })
}

fn parse_addr(s: &str, what: &str) -> Result<SocketAddr, Error> {
    s.parse()
        .map_err(|_| Error::invalid(format!("{what} {s:?} is not an IP:port address")))
}

/// Creates an in-process host/client pair joined by a memory link, with the
/// whole data plane (FEC, encryption, reassembly) but no network. `impairment`
/// (NULL for none) applies to host→client datagrams; `config` may be NULL for
/// defaults. The pair uses a fixed key: it is for tests and demos.
///
/// # Safety
/// `config`/`impairment` must be NULL or valid structs of their `struct_size`;
/// `host_out` and `client_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_loopback_pair_new(
    config: *const PunktfunkSessionConfig,
    impairment: *const PunktfunkImpairment,
    host_out: *mut *mut PunktfunkSession,
    client_out: *mut *mut PunktfunkSession,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract above.
        let host_out = unsafe { out(host_out, "host_out") }?;
        // SAFETY: as above.
        let client_out = unsafe { out(client_out, "client_out") }?;
        *host_out = ptr::null_mut();
        *client_out = ptr::null_mut();
        // SAFETY: as above.
        let cfg = unsafe { config_or_default(config) }?.to_core()?;
        let imp = if impairment.is_null() {
            None
        } else {
            // SAFETY: non-NULL and valid for its struct_size per the contract.
            Some(unsafe { read_growable(impairment, "impairment", IMPAIRMENT_V1_SIZE) }?.to_core()?)
        };
        let keys = keys_from(b"punktfunk loopback pair key", b"loopback")?;
        let (a, b) = LoopbackTransport::pair(1 << 16);
        let a: Box<dyn Transport> = match imp {
            Some(i) => Box::new(Impaired::new(a, i)),
            None => Box::new(a),
        };
        let host = PunktfunkSession::new(Role::Host, cfg.clone(), &keys, a)?;
        let client = PunktfunkSession::new(Role::Client, cfg, &keys, Box::new(b))?;
        *host_out = boxed(host);
        *client_out = boxed(client);
        Ok(())
    })
}

/// Closes a session and releases its handle. NULL is ignored. Frames borrowed
/// from this handle become invalid.
///
/// # Safety
/// `session` must be NULL or a handle from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_free(session: *mut PunktfunkSession) {
    if session.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a live handle created by `boxed` and not freed before.
        drop(unsafe { Box::from_raw(session) });
    }));
}

/// Writes the bound local address (`"IP:port"`, NUL-terminated) of a UDP
/// session into `buf`; `buf_len` of `PUNKTFUNK_ADDRESS_MAX` always suffices.
/// Fails with `PUNKTFUNK_ERR_INVALID_ARG` for loopback sessions or a small buffer.
///
/// # Safety
/// `session` must be NULL or a live handle; `buf` must be NULL or point to
/// `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_local_address(
    session: *const PunktfunkSession,
    buf: *mut c_char,
    buf_len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        if buf.is_null() {
            return Err(null("buf"));
        }
        let udp = s
            .udp
            .as_ref()
            .ok_or_else(|| Error::invalid("a loopback session has no address"))?;
        let addr = udp.local_addr()?.to_string();
        // SAFETY: `buf` is non-NULL with `buf_len` writable bytes per the contract.
        unsafe { write_cstr(buf, buf_len, &addr) }
    })
}

/// Sets or changes the peer (`"IP:port"`) of a UDP session.
///
/// # Safety
/// `session` must be NULL or a live handle; `peer` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_connect(
    session: *mut PunktfunkSession,
    peer: *const c_char,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { out(session, "session") }?;
        // SAFETY: NULL or NUL-terminated per the contract.
        let peer = parse_addr(unsafe { text(peer, "peer") }?, "peer")?;
        let udp = s
            .udp
            .as_ref()
            .ok_or_else(|| Error::invalid("a loopback session cannot connect"))?;
        udp.connect(peer)?;
        Ok(())
    })
}

/// Sends one frame: FEC, encryption and one batch of datagrams. Never blocks on
/// a full socket buffer (those datagrams are counted as send drops). `data`
/// may be NULL when `len` is 0. A UDP session without a peer yet gives
/// `PUNKTFUNK_ERR_INVALID_ARG`.
///
/// # Safety
/// `session` must be NULL or a live handle; `data` must be NULL or point to
/// `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_submit_frame(
    session: *mut PunktfunkSession,
    data: *const u8,
    len: usize,
    pts: u64,
    keyframe: bool,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { out(session, "session") }?;
        // SAFETY: NULL or `len` readable bytes per the contract.
        let data = unsafe { bytes(data, len, "data") }?;
        if s.udp.as_ref().is_some_and(|u| !u.has_peer()) {
            return Err(Error::invalid(
                "no peer address yet: pass a peer to punktfunk_session_new_udp or call punktfunk_session_connect first",
            ));
        }
        s.session.submit_frame(data, FrameMeta { pts, keyframe })?;
        Ok(())
    })
}

/// Returns the next received event without waiting: `out->kind` is
/// `PUNKTFUNK_EVENT_NONE` when nothing is ready. A frame's `data` stays valid
/// until the next call on this handle.
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_poll_frame(
    session: *mut PunktfunkSession,
    out: *mut PunktfunkFrameEvent,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or valid per the contract.
        let (s, out) = unsafe { (self::out(session, "session")?, self::out(out, "out")?) };
        s.reclaim();
        *out = PunktfunkFrameEvent::NONE;
        let ev = s.session.poll_frame(std::time::Instant::now())?;
        s.lend(ev, out);
        Ok(())
    })
}

/// Like `punktfunk_client_poll_frame`, but waits (in the kernel) up to
/// `timeout_ms` for an event; `out->kind` is `PUNKTFUNK_EVENT_NONE` on timeout.
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_wait_frame(
    session: *mut PunktfunkSession,
    timeout_ms: u32,
    out: *mut PunktfunkFrameEvent,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or valid per the contract.
        let (s, out) = unsafe { (self::out(session, "session")?, self::out(out, "out")?) };
        s.reclaim();
        *out = PunktfunkFrameEvent::NONE;
        let ev = s.session.recv_frame(Duration::from_millis(timeout_ms.into()))?;
        s.lend(ev, out);
        Ok(())
    })
}

/// Changes the FEC percentage (0..=100) for frames sent from now on; the
/// receiver needs no notice.
///
/// # Safety
/// `session` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_set_fec_percent(
    session: *mut PunktfunkSession,
    percent: u32,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { out(session, "session") }?;
        let pct = u8::try_from(percent)
            .map_err(|_| Error::invalid(format!("fec_percent {percent} is above 100")))?;
        s.session.sender().set_fec_percent(pct)
    })
}

/// Copies every counter of the session into `out`. Set `out->struct_size` to
/// `sizeof(PunktfunkStats)` first.
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable for its
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_session_stats(
    session: *const PunktfunkSession,
    out: *mut PunktfunkStats,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        let stats = PunktfunkStats::from(s.session.stats());
        // SAFETY: NULL or writable for its struct_size per the contract.
        unsafe { write_growable(out, &stats, "out", STATS_V1_SIZE) }
    })
}

/// Panics inside the library on purpose and returns what any export returns
/// then: `PUNKTFUNK_ERR_INTERNAL`. For testing the panic guard. The panic
/// message is printed to stderr by the Rust runtime.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub extern "C" fn punktfunk_debug_panic() -> i32 {
    ffi(|| panic!("deliberate panic requested by punktfunk_debug_panic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_state_codes_match_the_core() {
        use pf::rate::RateState;
        let c = [
            PUNKTFUNK_RATE_STATE_STARTUP,
            PUNKTFUNK_RATE_STATE_PROBE,
            PUNKTFUNK_RATE_STATE_DRAIN,
            PUNKTFUNK_RATE_STATE_STEADY,
            PUNKTFUNK_RATE_STATE_BACKOFF,
            PUNKTFUNK_RATE_STATE_HOLD,
            PUNKTFUNK_RATE_STATE_FIXED,
        ];
        let core: Vec<u64> = RateState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(c.to_vec(), core);
        assert_eq!(RateState::from_code(PUNKTFUNK_RATE_STATE_NONE), None);
    }

    #[test]
    fn statuses_match_the_core_taxonomy() {
        // The length ties the two lists: a new core kind fails to compile here.
        let c: [i32; ErrorKind::ALL.len()] = [
            PUNKTFUNK_ERR_INVALID_ARG,
            PUNKTFUNK_ERR_CLOSED,
            PUNKTFUNK_ERR_IO,
            PUNKTFUNK_ERR_QUEUE_FULL,
            PUNKTFUNK_ERR_TIMEOUT,
            PUNKTFUNK_ERR_PROTOCOL,
            PUNKTFUNK_ERR_PIN_MISMATCH,
            PUNKTFUNK_ERR_INTERNAL,
            PUNKTFUNK_ERR_UNAUTHORIZED,
            PUNKTFUNK_ERR_INSECURE_KEY,
        ];
        for (kind, status) in ErrorKind::ALL.iter().zip(c) {
            assert_eq!(kind.status(), status, "{kind:?}");
            // SAFETY: punktfunk_status_code returns a static NUL-terminated string.
            let code = unsafe { CStr::from_ptr(punktfunk_status_code(status)) };
            assert_eq!(code.to_str().unwrap(), kind.code());
        }
    }

    #[test]
    fn stats_struct_has_every_core_counter() {
        let fields = StatsSnapshot::default().fields().len();
        assert_eq!(STATS_SIZE, 8 + 8 * fields, "two u32 then one u64 per counter");
        assert_eq!(STATS_V1_SIZE, 8 + 8 * 22, "ABI 1 had 22 counters");
    }

    #[test]
    fn shorter_structs_from_older_callers_are_refused_or_prefixed() {
        let mut cfg = PunktfunkSessionConfig::defaults();
        cfg.struct_size = 8;
        // SAFETY: `cfg` is a valid config on the stack.
        let e = unsafe { read_growable(&cfg, "config", CONFIG_V1_SIZE) }.unwrap_err();
        assert!(e.message().contains("struct_size"));
        // A caller with a larger (newer) struct: we read only what we know.
        cfg.struct_size = (CONFIG_V1_SIZE + 64) as u32;
        cfg.fec_percent = 33;
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Bigger {
            cfg: PunktfunkSessionConfig,
            extra: [u8; 64],
        }
        let big = Bigger {
            cfg,
            extra: [0xAA; 64],
        };
        // SAFETY: `big` has struct_size readable bytes.
        let got = unsafe { read_growable(&big.cfg, "config", CONFIG_V1_SIZE) }.unwrap();
        assert_eq!(got.fec_percent, 33);
    }
}
