//! Node.js binding of punktfunk-core, the native half of `@punktfunk/core`.
//!
//! This crate is deliberately thin: it converts arguments, owns the session
//! workers ([`SendWorker`], [`RecvWorker`](punktfunk_core::RecvWorker)) and maps errors. Every protocol
//! decision lives in `punktfunk-core`. The TypeScript layer in `src/` is the
//! public API; it validates argument types and turns the errors raised here,
//! which carry their stable `ERR_PF_*` code as the JS error's `code` property
//! ([`Code`]), into `PunktfunkError`s. `napi build` generates `binding.d.ts`
//! (the declarations the TypeScript layer compiles against) and the loader
//! `binding.js` from the `#[napi]` items here.
//!
//! No Rust panic reaches JavaScript: every export runs inside [`guard`], which
//! turns a panic into an `ERR_PF_INTERNAL` error.

#![deny(clippy::all)]

pub mod bench;
pub mod control;
mod lend;
pub mod relay;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::{AsyncTask, Buffer, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Task};
use napi_derive::napi;

use punktfunk_core::{
    Error as CoreError, ErrorKind, FecConfig, FrameEvent, FrameMeta, Impaired, ImpairmentConfig,
    LoopbackTransport, Offload, Pacing, Role, SendWorker, Session, SessionConfig, SessionKeys, StatsHandle,
    StatsSnapshot, Transport, UdpConfig, UdpTransport,
};

/// Datagrams an in-process loopback link holds per direction.
const LOOPBACK_CAPACITY: usize = 1 << 16;

/// Wake-up reasons passed to the JS callback.
const WAKE_READABLE: u32 = 1;
const WAKE_WRITABLE: u32 = 2;

/// The JS wake-up callback, callable from the worker threads. It is a strong
/// (ref'd) handle: like an open socket, an open session keeps the Node.js
/// event loop alive until it is closed.
type Waker = ThreadsafeFunction<u32, (), u32, napi::Status, false>;

fn waker(on_wake: &Function<'_, u32, ()>) -> Result<Arc<Waker>> {
    Ok(Arc::new(
        on_wake
            .build_threadsafe_function::<u32>()
            .callee_handled::<false>()
            .build()
            .map_err(napi_failure)?,
    ))
}

/// A stable error code (`ERR_PF_*`). napi-rs hands it to JavaScript as the
/// `code` property of the thrown error; the message is the bare reason.
#[derive(Clone, Copy, Debug)]
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// The result of every export: an error carries its stable [`Code`].
pub type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// Maps a core error to a JS error with the stable code as its `code`.
fn js_error(e: CoreError) -> napi::Error<Code> {
    napi::Error::new(Code(e.code()), e.message().to_string())
}

fn invalid(msg: impl Into<String>) -> napi::Error<Code> {
    js_error(CoreError::invalid(msg))
}

/// A failure inside napi-rs itself (creating a callback handle and the like).
fn napi_failure(e: napi::Error) -> napi::Error<Code> {
    js_error(CoreError::new(ErrorKind::Internal, e.reason.clone()))
}

/// Settles an async task's outcome on the JS thread: an error becomes a JS
/// error object with its stable `code` (a task's own error type cannot carry one).
fn settle<T>(env: &Env, outcome: Result<T>) -> napi::Result<T> {
    outcome.map_err(|e| napi::Error::from(napi::JsError::from(e).into_unknown(*env)))
}

/// Runs an export body; a panic becomes `ERR_PF_INTERNAL` instead of unwinding into Node.
fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    CoreError::catch_panic("native code", || Ok(f())).unwrap_or_else(|e| Err(js_error(e)))
}

/// The session parameters both ends agree on plus local receive limits
/// (`SessionConfig` in the core), in JS units.
#[napi(object)]
pub struct NativeParams {
    /// FEC overhead percentage (0..=100).
    pub fec_percent: u32,
    /// Most data shards per FEC block.
    pub max_data_shards: u32,
    /// Shard payload bytes per datagram.
    pub shard_payload: u32,
    /// Largest frame, in bytes.
    pub max_frame_bytes: f64,
    /// Most frames reassembled at once.
    pub max_frames_in_flight: u32,
    /// Incomplete-frame timeout, milliseconds.
    pub frame_timeout_ms: f64,
    /// Index lag after which an incomplete frame is dropped.
    pub max_index_lag: f64,
    /// Receive coalescing window, microseconds.
    pub recv_coalesce_us: f64,
    /// Sender pacing; absent: each frame goes out in one burst.
    pub pacing: Option<NativePacing>,
    /// UDP offload (GSO/GRO): "auto", "on" or "off"; absent: "auto".
    pub offload: Option<String>,
    /// Receive busy polling instead of sleeping in the kernel.
    pub busy_poll: Option<bool>,
}

/// Sender pacing settings (`punktfunk_core::session::Pacing`).
#[napi(object)]
#[derive(Clone, Copy)]
pub struct NativePacing {
    /// Bytes sent at once when a frame starts.
    pub burst_bytes: u32,
    /// Bytes per paced send after that.
    pub chunk_bytes: u32,
    /// Pace at this percentage of the measured stream rate.
    pub rate_percent: u32,
    /// Fixed pacing rate, kbit/s (0: measure the stream).
    pub fixed_rate_kbps: u32,
}

impl From<Pacing> for NativePacing {
    fn from(p: Pacing) -> Self {
        NativePacing {
            burst_bytes: p.burst_bytes.min(u32::MAX as usize) as u32,
            chunk_bytes: p.chunk_bytes.min(u32::MAX as usize) as u32,
            rate_percent: p.rate_percent,
            fixed_rate_kbps: p.fixed_rate_kbps,
        }
    }
}

/// The UDP socket options of a session: buffer size and offload.
pub(crate) fn udp_config(socket_buffer: f64, params: &NativeParams) -> Result<UdpConfig> {
    if !(socket_buffer.is_finite() && socket_buffer >= 0.0) {
        return Err(invalid(format!(
            "socketBufferBytes must be a non-negative integer, got {socket_buffer}"
        )));
    }
    let offload = match params.offload.as_deref() {
        None | Some("auto") => Offload::Auto,
        Some("on") => Offload::On,
        Some("off") => Offload::Off,
        Some(other) => {
            return Err(invalid(format!(
                "udpOffload must be 'auto', 'on' or 'off', got {other:?}"
            )))
        }
    };
    Ok(UdpConfig {
        socket_buffer: socket_buffer as usize,
        gso: offload,
        gro: offload,
    })
}

impl From<&SessionConfig> for NativeParams {
    fn from(c: &SessionConfig) -> Self {
        NativeParams {
            fec_percent: c.fec.fec_percent.into(),
            max_data_shards: c.fec.max_data_per_block as u32,
            shard_payload: c.fec.shard_payload as u32,
            max_frame_bytes: c.max_frame_bytes as f64,
            max_frames_in_flight: c.max_frames_in_flight as u32,
            frame_timeout_ms: c.frame_timeout.as_secs_f64() * 1e3,
            max_index_lag: c.max_index_lag as f64,
            recv_coalesce_us: c.recv_coalesce.as_secs_f64() * 1e6,
            pacing: c.pacing.map(NativePacing::from),
            offload: None,
            busy_poll: Some(c.busy_poll),
        }
    }
}

/// Everything a session needs, already normalised and type-checked by the TS layer.
#[napi(object)]
pub struct NativeConfig {
    /// Shared secret (at least 16 bytes) the session keys are derived from.
    pub secret: Buffer,
    /// Context bytes mixed into the key derivation.
    pub context: Buffer,
    /// Session parameters.
    pub params: NativeParams,
    /// Frames the send queue holds.
    pub send_queue: u32,
    /// Events the receive queue holds.
    pub recv_queue: u32,
    /// Whether to start a receive thread.
    pub receive: bool,
}

/// Gilbert-Elliott burst loss parameters (percentages).
#[napi(object)]
pub struct NativeBurst {
    /// Chance per packet of moving from the good to the bad state.
    pub good_to_bad_percent: f64,
    /// Chance per packet of moving from the bad back to the good state.
    pub bad_to_good_percent: f64,
    /// Loss while good.
    pub loss_good_percent: f64,
    /// Loss while bad.
    pub loss_bad_percent: f64,
}

/// Impairment of the host→client direction of a loopback pair.
#[napi(object)]
pub struct NativeImpairment {
    /// Seed of the pseudo-random generator.
    pub seed: f64,
    /// Independent random loss, percent.
    pub loss_percent: f64,
    /// Drop every n-th datagram (0 = off).
    pub drop_every_nth: f64,
    /// Burst loss.
    pub burst: Option<NativeBurst>,
    /// Percent reordered.
    pub reorder_percent: f64,
    /// How far a reordered datagram is overtaken.
    pub reorder_depth: u32,
    /// Percent duplicated.
    pub duplicate_percent: f64,
    /// Percent with a flipped byte.
    pub corrupt_percent: f64,
    /// Percent truncated.
    pub truncate_percent: f64,
}

/// One event from the receive queue.
#[napi(object)]
pub struct NativeEvent {
    /// Whether this reports lost frames (else it is a frame): a flag, not a
    /// string, so an event costs no string.
    pub lost: bool,
    /// Frame index, or the first lost index.
    pub index: f64,
    /// Number of lost frames (1 for a frame).
    pub count: f64,
    /// Presentation timestamp.
    pub pts: f64,
    /// Keyframe flag.
    pub keyframe: bool,
    /// Data shards rebuilt by FEC.
    pub recovered_shards: u32,
    /// The frame's bytes: handed over without a copy, or a buffer lent with
    /// `lend` that holds them in its first `length` bytes.
    pub data: Option<Buffer>,
    /// The frame's length in bytes.
    pub length: f64,
    /// Whether `data` is a lent buffer (see `NativeSession::lend`).
    pub lent: bool,
}

/// Socket buffer sizes the kernel granted.
#[napi(object)]
pub struct NativeBufferReport {
    /// Requested bytes.
    pub requested: f64,
    /// Granted send buffer bytes.
    pub send_granted: f64,
    /// Granted receive buffer bytes.
    pub recv_granted: f64,
    /// Whether the privileged FORCE options were used.
    pub forced: bool,
    /// A hint for raising the limits, when the buffers are small.
    pub warning: Option<String>,
}

fn to_u64(v: f64, name: &str) -> Result<u64> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 {
        Ok(v as u64)
    } else {
        Err(invalid(format!(
            "{name} must be a non-negative safe integer, got {v}"
        )))
    }
}

/// A duration from a JS number of `units_per_second` fractions of a second
/// (1e3 for ms, 1e6 for µs). Negative, NaN and values beyond `Duration` are
/// refused here (converting them would panic or wrap).
fn duration(v: f64, units_per_second: f64, name: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v / units_per_second).map_err(|_| {
        invalid(format!(
            "{name} must be a non-negative number within range, got {v}"
        ))
    })
}

/// The core's session parameters from their JS form.
fn params_to_config(p: &NativeParams) -> Result<SessionConfig> {
    let cfg = SessionConfig {
        fec: FecConfig {
            fec_percent: u8::try_from(p.fec_percent)
                .map_err(|_| invalid(format!("fec_percent {} is above 100", p.fec_percent)))?,
            max_data_per_block: p.max_data_shards as usize,
            shard_payload: p.shard_payload as usize,
        },
        max_frame_bytes: to_u64(p.max_frame_bytes, "max_frame_bytes")? as usize,
        max_frames_in_flight: p.max_frames_in_flight as usize,
        frame_timeout: duration(p.frame_timeout_ms, 1e3, "frameTimeoutMs")?,
        max_index_lag: to_u64(p.max_index_lag, "max_index_lag")?,
        recv_coalesce: duration(p.recv_coalesce_us, 1e6, "recvCoalesceUs")?,
        pacing: p.pacing.map(|n| Pacing {
            burst_bytes: n.burst_bytes as usize,
            chunk_bytes: n.chunk_bytes as usize,
            rate_percent: n.rate_percent,
            fixed_rate_kbps: n.fixed_rate_kbps,
        }),
        busy_poll: p.busy_poll.unwrap_or(false),
    };
    cfg.validate().map_err(js_error)?;
    Ok(cfg)
}

fn session_config(c: &NativeConfig) -> Result<(SessionConfig, SessionKeys)> {
    let keys = SessionKeys::derive_raw(&c.secret, &c.context).map_err(js_error)?;
    Ok((params_to_config(&c.params)?, keys))
}

pub(crate) fn impairment_config(i: &NativeImpairment) -> Result<ImpairmentConfig> {
    let cfg = ImpairmentConfig {
        seed: to_u64(i.seed, "impairment.seed")?,
        loss_percent: i.loss_percent,
        drop_every_nth: to_u64(i.drop_every_nth, "impairment.dropEveryNth")?,
        burst: i
            .burst
            .as_ref()
            .map(|b| punktfunk_core::transport::GilbertElliott {
                good_to_bad_percent: b.good_to_bad_percent,
                bad_to_good_percent: b.bad_to_good_percent,
                loss_good_percent: b.loss_good_percent,
                loss_bad_percent: b.loss_bad_percent,
            }),
        reorder_percent: i.reorder_percent,
        reorder_depth: i.reorder_depth as usize,
        duplicate_percent: i.duplicate_percent,
        corrupt_percent: i.corrupt_percent,
        truncate_percent: i.truncate_percent,
    };
    cfg.validate().map_err(js_error)?;
    Ok(cfg)
}

pub(crate) fn parse_addr(s: &str, what: &str) -> Result<SocketAddr> {
    s.parse()
        .map_err(|_| invalid(format!("{what} {s:?} is not an IP:port socket address")))
}

/// The workers of one session; `None` once closed.
struct Workers {
    send: Option<SendWorker>,
    recv: Option<lend::Receiving>,
    /// The control-plane side of a session accepted by a host.
    host: Option<Arc<punktfunk_core::control::HostSession>>,
    /// The control-plane side of a connected client.
    client: Option<Arc<punktfunk_core::control::ClientControl>>,
    /// The socket of a UDP session. It lives with the workers, so closing
    /// the session releases the port, not whenever the JS object is collected.
    udp: Option<Arc<UdpTransport>>,
}

impl Workers {
    /// The send queue: the session's own, or a host session's.
    fn sender(&self) -> Result<&SendWorker> {
        match (&self.send, &self.host) {
            (Some(s), _) => Ok(s),
            (None, Some(h)) => Ok(h.sender()),
            (None, None) => Err(invalid(
                "this session only receives; frames are submitted by the host",
            )),
        }
    }
}

/// A session's counters: live while it runs, a final copy once closed. The
/// live handle reads the transport's system-call counts, so it holds the
/// socket; freezing it on close lets the socket go.
enum Counters {
    Live(StatsHandle),
    Final(Box<StatsSnapshot>),
}

struct Inner {
    workers: Mutex<Option<Workers>>,
    counters: Mutex<Counters>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Workers>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closed() -> napi::Error<Code> {
        js_error(CoreError::closed("the session is closed"))
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every counter now.
    fn snapshot(&self) -> StatsSnapshot {
        match &*self.counters() {
            Counters::Live(h) => h.snapshot(),
            Counters::Final(s) => **s,
        }
    }

    /// Keeps the final counters and drops the live handle (after the workers stopped).
    fn freeze_counters(&self) {
        let mut c = self.counters();
        if let Counters::Live(h) = &*c {
            *c = Counters::Final(Box::new(h.snapshot()));
        }
    }

    /// The UDP socket: `None` for other sessions and once closed.
    fn udp(&self) -> Option<Arc<UdpTransport>> {
        self.lock().as_ref().and_then(|w| w.udp.clone())
    }
}

/// A data-plane session with its send (and optionally receive) thread.
#[napi]
pub struct NativeSession {
    inner: Arc<Inner>,
}

fn start_session(
    role: Role,
    c: &NativeConfig,
    transport: Box<dyn Transport>,
    udp: Option<Arc<UdpTransport>>,
    waker: Arc<Waker>,
) -> Result<NativeSession> {
    let (cfg, keys) = session_config(c)?;
    let session = Session::new(role, cfg, &keys, transport).map_err(js_error)?;
    let (sender, receiver) = session.split();
    let stats = sender.stats_handle();
    // The workers hold the only references to the waker: once they are gone
    // (after close) it is released and no longer keeps the event loop alive.
    let send = SendWorker::spawn(sender, c.send_queue as usize, Some(wake(&waker, WAKE_WRITABLE)))
        .map_err(js_error)?;
    let recv = if c.receive {
        Some(
            lend::Receiving::spawn(receiver, c.recv_queue as usize, Some(wake(&waker, WAKE_READABLE)))
                .map_err(js_error)?,
        )
    } else {
        None
    };
    let workers = Workers {
        send: Some(send),
        recv,
        host: None,
        client: None,
        udp,
    };
    Ok(NativeSession::new(workers, stats))
}

impl NativeSession {
    fn new(workers: Workers, stats: StatsHandle) -> Self {
        NativeSession {
            inner: Arc::new(Inner {
                workers: Mutex::new(Some(workers)),
                counters: Mutex::new(Counters::Live(stats)),
            }),
        }
    }
}

/// A worker callback that wakes JS with `kind` (never blocks the worker).
fn wake(waker: &Arc<Waker>, kind: u32) -> punktfunk_core::session::Notify {
    let w = waker.clone();
    Arc::new(move || {
        w.call(kind, ThreadsafeFunctionCallMode::NonBlocking);
    })
}

/// Creates a session over a UDP socket bound to `bind`, sending to `peer` (if
/// given). `on_wake(1)` means "events may be ready", `on_wake(2)` "the send
/// queue has room"; both also fire when the session stops.
#[napi]
pub fn create_udp_session(
    role: String,
    bind: String,
    peer: Option<String>,
    socket_buffer: f64,
    config: NativeConfig,
    on_wake: Function<'_, u32, ()>,
) -> Result<NativeSession> {
    guard(|| {
        let role = match role.as_str() {
            "host" => Role::Host,
            "client" => Role::Client,
            other => {
                return Err(invalid(format!(
                    "role must be \"host\" or \"client\", got {other:?}"
                )))
            }
        };
        let local = parse_addr(&bind, "bind address")?;
        let udp_cfg = udp_config(socket_buffer, &config.params)?;
        let udp = match &peer {
            Some(p) => UdpTransport::connect_to(local, parse_addr(p, "peer address")?, &udp_cfg),
            None => UdpTransport::bind(local, &udp_cfg),
        }
        .map_err(|e| {
            js_error(CoreError::new(
                ErrorKind::Io,
                format!("cannot open UDP socket on {bind}: {e}"),
            ))
        })?;
        let udp = Arc::new(udp);
        start_session(role, &config, Box::new(udp.clone()), Some(udp), waker(&on_wake)?)
    })
}

/// Creates an in-process host/client pair; `impairment` applies to host→client datagrams.
#[napi]
pub fn create_loopback_pair(
    config: NativeConfig,
    impairment: Option<NativeImpairment>,
    on_host_wake: Function<'_, u32, ()>,
    on_client_wake: Function<'_, u32, ()>,
) -> Result<Vec<NativeSession>> {
    guard(|| {
        let (a, b) = LoopbackTransport::pair(LOOPBACK_CAPACITY);
        let a: Box<dyn Transport> = match &impairment {
            Some(i) => Box::new(Impaired::new(a, impairment_config(i)?)),
            None => Box::new(a),
        };
        let host = start_session(Role::Host, &config, a, None, waker(&on_host_wake)?)?;
        let client = start_session(Role::Client, &config, Box::new(b), None, waker(&on_client_wake)?)?;
        Ok(vec![host, client])
    })
}

/// Defaults of every session parameter, from the core.
#[napi(object)]
pub struct NativeDefaults {
    /// Session parameters.
    pub params: NativeParams,
    /// Socket buffer size requested, bytes.
    pub socket_buffer: f64,
    /// Largest send or receive queue.
    pub max_queue: u32,
    /// Lowest percentage of a host's adaptive FEC band.
    pub adaptive_fec_min: u32,
    /// Highest percentage of a host's adaptive FEC band.
    pub adaptive_fec_max: u32,
}

/// Defaults of every session parameter.
#[napi]
pub fn defaults() -> NativeDefaults {
    let band = punktfunk_core::control::FecBand::default();
    NativeDefaults {
        params: (&SessionConfig::default()).into(),
        socket_buffer: UdpConfig::default().socket_buffer as f64,
        max_queue: punktfunk_core::session::MAX_WORKER_QUEUE as u32,
        adaptive_fec_min: u32::from(band.min),
        adaptive_fec_max: u32::from(band.max),
    }
}

/// Every stable error code, in C status order (-1, -2, …).
#[napi]
pub fn error_codes() -> Vec<String> {
    ErrorKind::ALL.iter().map(|k| k.code().to_string()).collect()
}

/// Names of every stats counter, in core order (snake_case).
#[napi]
pub fn stats_fields() -> Vec<String> {
    StatsSnapshot::default()
        .fields()
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect()
}

/// Names of the rate controller's states, indexed by the `rate_state`
/// counter's code (0 `none`: no controller of the session's own).
#[napi]
pub fn rate_state_names() -> Vec<String> {
    use punktfunk_core::rate::RateState;
    (0..=RateState::ALL.len() as u64)
        .map(|code| RateState::name_of_code(code).to_string())
        .collect()
}

/// Panics inside native code on purpose, to prove the panic guard (tests only).
#[napi]
pub fn debug_panic() -> Result<()> {
    guard(|| panic!("deliberate panic for testing"))
}

#[napi]
impl NativeSession {
    /// Queues a copy of `data` if the send queue has room; `false` if it is full.
    #[napi]
    pub fn try_submit(&self, data: &[u8], pts: f64, keyframe: bool) -> Result<bool> {
        guard(|| {
            let pts = to_u64(pts, "pts")?;
            let guard = self.inner.lock();
            let w = guard.as_ref().ok_or_else(Inner::closed)?;
            if w.udp.as_ref().is_some_and(|u| !u.has_peer()) {
                return Err(invalid(
                    "no peer address yet: pass `peer` or call connect() first",
                ));
            }
            let send = w.sender()?;
            if let Some(r) = w.host.as_ref().and_then(|h| h.closed_reason()) {
                return Err(js_error(CoreError::closed(format!(
                    "the client is gone: {}",
                    r.reason
                ))));
            }
            if data.len() > send.max_frame_bytes() {
                return Err(invalid(format!(
                    "frame of {} bytes exceeds maxFrameBytes {}",
                    data.len(),
                    send.max_frame_bytes()
                )));
            }
            if let Some(e) = send.failure() {
                return Err(js_error(e));
            }
            if !send.has_room() {
                return Ok(false);
            }
            let mut buf = send.take_buffer();
            buf.extend_from_slice(data);
            match send.try_submit(buf, FrameMeta { pts, keyframe }) {
                Ok(()) => Ok(true),
                Err(r) if r.error.kind() == ErrorKind::QueueFull => Ok(false),
                Err(r) => Err(js_error(r.error)),
            }
        })
    }

    /// Whether a frame would be queued right now (false once closed or failed).
    #[napi]
    pub fn writable(&self) -> bool {
        self.inner
            .lock()
            .as_ref()
            .and_then(|w| w.sender().ok())
            .is_some_and(|s| s.has_room())
    }

    /// Frames waiting in the send queue.
    #[napi]
    pub fn send_queued(&self) -> Result<u32> {
        guard(|| {
            let g = self.inner.lock();
            let w = g.as_ref().ok_or_else(Inner::closed)?;
            Ok(w.sender().map_or(0, |s| s.queued()) as u32)
        })
    }

    /// The next received event, or `null` if none is queued.
    #[napi]
    pub fn poll(&self) -> Result<Option<NativeEvent>> {
        guard(|| {
            let g = self.inner.lock();
            let w = g.as_ref().ok_or_else(Inner::closed)?;
            let recv = w
                .recv
                .as_ref()
                .ok_or_else(|| invalid("this session does not receive; create it with `receive: true`"))?;
            let Some(punktfunk_core::session::Delivered { event, lent }) =
                recv.worker.try_next().map_err(js_error)?
            else {
                return Ok(None);
            };
            Ok(Some(match event {
                FrameEvent::Frame(f) => {
                    let (data, length, lent) = match lent {
                        Some((buf, len)) => (buf, len, true),
                        None => {
                            let len = f.data.len();
                            (Buffer::from(f.data), len, false)
                        }
                    };
                    NativeEvent {
                        lost: false,
                        index: f.index as f64,
                        count: 1.0,
                        pts: f.pts as f64,
                        keyframe: f.keyframe,
                        recovered_shards: f.recovered_shards,
                        data: Some(data),
                        length: length as f64,
                        lent,
                    }
                }
                FrameEvent::Lost { first_index, count } => NativeEvent {
                    lost: true,
                    index: first_index as f64,
                    count: count as f64,
                    pts: 0.0,
                    keyframe: false,
                    recovered_shards: 0,
                    data: None,
                    length: 0.0,
                    lent: false,
                },
            }))
        })
    }

    /// Lends `buf` for a later frame: the receive thread copies a frame that
    /// fits into it, and `poll` returns it with `lent: true`. The caller must
    /// not touch it until then. `false` (nothing kept) when the session does
    /// not receive, is closed, or already holds the most lent buffers.
    #[napi]
    pub fn lend(&self, buf: Buffer) -> Result<bool> {
        guard(|| {
            let g = self.inner.lock();
            Ok(g.as_ref()
                .and_then(|w| w.recv.as_ref())
                .is_some_and(|r| r.lent.lend(buf)))
        })
    }

    /// Lets go of lent buffers still waiting that are shorter than
    /// `min_length` bytes; returns how many (0 once closed).
    #[napi]
    pub fn retire_lent(&self, min_length: f64) -> Result<u32> {
        guard(|| {
            let min = to_u64(min_length, "minLength")? as usize;
            let g = self.inner.lock();
            Ok(g.as_ref()
                .and_then(|w| w.recv.as_ref())
                .map_or(0, |r| r.lent.retire(min)) as u32)
        })
    }

    /// Changes the FEC percentage for frames submitted from now on.
    #[napi]
    pub fn set_fec_percent(&self, percent: u32) -> Result<()> {
        guard(|| {
            let pct = punktfunk_core::fec::check_fec_percent(percent).map_err(js_error)?;
            let g = self.inner.lock();
            let w = g.as_ref().ok_or_else(Inner::closed)?;
            if let Some(h) = &w.host {
                // Tells the client too, and re-bases adaptive FEC.
                return h.set_fec_percent(pct).map_err(js_error);
            }
            w.sender()?.set_fec_percent(pct).map_err(js_error)
        })
    }

    /// Every counter of the session, in the order of `statsFields()`.
    #[napi]
    pub fn stats(&self) -> Result<Vec<f64>> {
        guard(|| {
            Ok(self
                .inner
                .snapshot()
                .fields()
                .into_iter()
                .map(|(_, v)| v as f64)
                .collect())
        })
    }

    /// Sets (or changes) the UDP peer address.
    #[napi]
    pub fn connect(&self, peer: String) -> Result<()> {
        guard(|| {
            let udp = {
                let g = self.inner.lock();
                let w = g.as_ref().ok_or_else(Inner::closed)?;
                w.udp
                    .clone()
                    .ok_or_else(|| invalid("only UDP sessions can connect"))?
            };
            let addr = parse_addr(&peer, "peer address")?;
            udp.connect(addr).map_err(|e| {
                js_error(CoreError::new(
                    ErrorKind::Io,
                    format!("cannot connect to {addr}: {e}"),
                ))
            })?;
            Ok(())
        })
    }

    /// The local socket address (`null` for loopback sessions and once closed).
    #[napi]
    pub fn local_address(&self) -> Result<Option<String>> {
        guard(|| match self.inner.udp() {
            None => Ok(None),
            Some(u) => u
                .local_addr()
                .map(|a| Some(a.to_string()))
                .map_err(|e| js_error(CoreError::from(e))),
        })
    }

    /// The peer address, if connected (`null` for loopback sessions and once closed).
    #[napi]
    pub fn peer_address(&self) -> Result<Option<String>> {
        guard(|| match self.inner.udp() {
            None => Ok(None),
            Some(u) => Ok(u.peer_addr().ok().map(|a| a.to_string())),
        })
    }

    /// What the kernel granted for the socket buffers (`null` for loopback
    /// sessions and once closed).
    #[napi]
    pub fn buffer_report(&self) -> Result<Option<NativeBufferReport>> {
        guard(|| {
            Ok(self.inner.udp().map(|u| {
                let r = u.buffer_report();
                NativeBufferReport {
                    requested: r.requested as f64,
                    send_granted: r.send_granted as f64,
                    recv_granted: r.recv_granted as f64,
                    forced: r.forced,
                    warning: r.warning(),
                }
            }))
        })
    }

    /// Stops accepting frames, sends what is queued, stops both threads and
    /// waits for them on the libuv thread pool. Resolves with the error that
    /// had stopped the session early, if any; closing twice is a no-op.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, code: Option<u32>, reason: Option<String>) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask {
            inner: self.inner.clone(),
            workers: self.inner.lock().take(),
            code: code.unwrap_or(punktfunk_core::control::close_code::NORMAL),
            reason: reason.unwrap_or_else(|| "closed".into()),
        })
    }
}

/// Joins a session's workers off the JS thread.
pub struct CloseTask {
    inner: Arc<Inner>,
    workers: Option<Workers>,
    code: u32,
    reason: String,
}

impl Task for CloseTask {
    type Output = Result<()>;
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            let Some(mut w) = self.workers.take() else {
                return Ok(());
            };
            if let Some(r) = w.recv.as_mut() {
                r.worker.close();
            }
            let sent = w.send.as_mut().map_or(Ok(()), |s| s.close());
            // Control-plane sessions close gracefully, with the caller's reason.
            if let Some(h) = &w.host {
                h.close(self.code, &self.reason);
            }
            if let Some(c) = &w.client {
                c.close(self.code, &self.reason);
            }
            // The counters are final now; the live handle's hold on the socket
            // goes, and dropping `w` at the end releases the wake-up callback
            // and the socket itself.
            self.inner.freeze_counters();
            sent.map_err(js_error)
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<()> {
        settle(&env, output)
    }
}
