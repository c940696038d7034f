//! The QUIC control plane in C (`#if defined(PUNKTFUNK_FEATURE_QUIC)`): host
//! listen / accept / fingerprint / close, client connect with a pin or trust
//! on first use, client identities and the hosts that admit only listed
//! ones, frames, speed test, input, keyframe requests, close reasons.
//! The calls block (accept, connect, waits) up to the timeouts given.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::path::PathBuf;
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

use pf::control::{
    self, Client, ClientConfig, ClientControl, ClientReceiver, Fingerprint, Host, HostConfig, HostEvent,
    HostSession, Identity, InputEvent, InputFields, InputKind, ProbePolicy, RateSettings, Trust,
};
use pf::session::StatsHandle;
use pf::web::WebConfig;
use pf::{Error, ErrorKind, Frame, FrameMeta};

use super::{
    bytes, config_or_default, ffi, input, items, lend, null, out, parse_addr, read_growable, text,
    write_cstr, PunktfunkFrameEvent, PunktfunkStats, STATS_V1_SIZE,
};

/// Buffer size for a fingerprint: 64 hex digits and a NUL.
pub const PUNKTFUNK_FINGERPRINT_LEN: usize = 65;

/// `PunktfunkInputEvent.kind`: key down (`code`).
pub const PUNKTFUNK_INPUT_KEY_DOWN: u32 = 1;
/// Key up (`code`).
pub const PUNKTFUNK_INPUT_KEY_UP: u32 = 2;
/// Relative mouse motion (`dx`, `dy`).
pub const PUNKTFUNK_INPUT_MOUSE_MOVE: u32 = 3;
/// Absolute mouse position (`x`, `y` in 0..=65535).
pub const PUNKTFUNK_INPUT_MOUSE_MOVE_ABSOLUTE: u32 = 4;
/// Mouse button (`button`, `down`).
pub const PUNKTFUNK_INPUT_MOUSE_BUTTON: u32 = 5;
/// Scroll (`dx`, `dy` in 1/120 notch).
pub const PUNKTFUNK_INPUT_SCROLL: u32 = 6;
/// Gamepad button state (`pad`, `buttons` = `PUNKTFUNK_BTN_*` bits).
pub const PUNKTFUNK_INPUT_GAMEPAD_BUTTONS: u32 = 7;
/// Gamepad axis (`pad`, `axis` = `PUNKTFUNK_AXIS_*`, `value`).
pub const PUNKTFUNK_INPUT_GAMEPAD_AXIS: u32 = 8;

/// Gamepad button bit: A (south).
pub const PUNKTFUNK_BTN_A: u32 = 1 << 0;
/// Gamepad button bit: B (east).
pub const PUNKTFUNK_BTN_B: u32 = 1 << 1;
/// Gamepad button bit: X (west).
pub const PUNKTFUNK_BTN_X: u32 = 1 << 2;
/// Gamepad button bit: Y (north).
pub const PUNKTFUNK_BTN_Y: u32 = 1 << 3;
/// Gamepad button bit: left shoulder.
pub const PUNKTFUNK_BTN_LEFT_SHOULDER: u32 = 1 << 4;
/// Gamepad button bit: right shoulder.
pub const PUNKTFUNK_BTN_RIGHT_SHOULDER: u32 = 1 << 5;
/// Gamepad button bit: back / select.
pub const PUNKTFUNK_BTN_BACK: u32 = 1 << 6;
/// Gamepad button bit: start / menu.
pub const PUNKTFUNK_BTN_START: u32 = 1 << 7;
/// Gamepad button bit: guide / home.
pub const PUNKTFUNK_BTN_GUIDE: u32 = 1 << 8;
/// Gamepad button bit: left stick press.
pub const PUNKTFUNK_BTN_LEFT_STICK: u32 = 1 << 9;
/// Gamepad button bit: right stick press.
pub const PUNKTFUNK_BTN_RIGHT_STICK: u32 = 1 << 10;
/// Gamepad button bit: d-pad up.
pub const PUNKTFUNK_BTN_DPAD_UP: u32 = 1 << 11;
/// Gamepad button bit: d-pad down.
pub const PUNKTFUNK_BTN_DPAD_DOWN: u32 = 1 << 12;
/// Gamepad button bit: d-pad left.
pub const PUNKTFUNK_BTN_DPAD_LEFT: u32 = 1 << 13;
/// Gamepad button bit: d-pad right.
pub const PUNKTFUNK_BTN_DPAD_RIGHT: u32 = 1 << 14;

/// Gamepad axis: left stick horizontal.
pub const PUNKTFUNK_AXIS_LEFT_X: u32 = 0;
/// Gamepad axis: left stick vertical.
pub const PUNKTFUNK_AXIS_LEFT_Y: u32 = 1;
/// Gamepad axis: right stick horizontal.
pub const PUNKTFUNK_AXIS_RIGHT_X: u32 = 2;
/// Gamepad axis: right stick vertical.
pub const PUNKTFUNK_AXIS_RIGHT_Y: u32 = 3;
/// Gamepad axis: left trigger.
pub const PUNKTFUNK_AXIS_LEFT_TRIGGER: u32 = 4;
/// Gamepad axis: right trigger.
pub const PUNKTFUNK_AXIS_RIGHT_TRIGGER: u32 = 5;

/// `PunktfunkHostEvent.kind`: nothing happened within the timeout.
pub const PUNKTFUNK_HOST_EVENT_NONE: u32 = 0;
/// An input event (`input`).
pub const PUNKTFUNK_HOST_EVENT_INPUT: u32 = 1;
/// The client asks for a keyframe (`first_lost`).
pub const PUNKTFUNK_HOST_EVENT_KEYFRAME_REQUEST: u32 = 2;
/// Adaptive FEC moved the percentage (`fec_percent`).
pub const PUNKTFUNK_HOST_EVENT_FEC_CHANGED: u32 = 3;
/// The client left (`close_code`; the reason via `punktfunk_host_session_close_reason`).
pub const PUNKTFUNK_HOST_EVENT_CLOSED: u32 = 4;
/// The rate controller moved the media bitrate the encoder should aim for
/// (`target_kbps`; also `punktfunk_host_session_target_kbps`).
pub const PUNKTFUNK_HOST_EVENT_TARGET_BITRATE: u32 = 5;

/// Close code: normal end (e.g. end of stream).
pub const PUNKTFUNK_CLOSE_NORMAL: u32 = 0;
/// Close code: the peer broke the protocol.
pub const PUNKTFUNK_CLOSE_PROTOCOL: u32 = 1;
/// Close code: nothing heard within the idle timeout.
pub const PUNKTFUNK_CLOSE_IDLE: u32 = 2;
/// Close code: the host shut down.
pub const PUNKTFUNK_CLOSE_HOST_SHUTDOWN: u32 = 3;
/// Close code: the application closed with its own reason.
pub const PUNKTFUNK_CLOSE_APPLICATION: u32 = 4;
/// Close code: the host admits only authorized clients, and this one is not
/// among them (the client's connect returns `PUNKTFUNK_ERR_UNAUTHORIZED`).
pub const PUNKTFUNK_CLOSE_UNAUTHORIZED: u32 = 5;
/// Close code: the closing side failed (an I/O or internal error, or a host
/// that did not accept the session in time); not the peer's fault.
pub const PUNKTFUNK_CLOSE_INTERNAL: u32 = 6;

/// One input event. Set `kind` and the fields it uses; the rest are ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkInputEvent {
    /// `PUNKTFUNK_INPUT_*`.
    pub kind: u32,
    /// Key code (key events).
    pub code: u32,
    /// Horizontal delta (mouse move, scroll).
    pub dx: i32,
    /// Vertical delta (mouse move, scroll).
    pub dy: i32,
    /// Absolute x, 0..=65535.
    pub x: u32,
    /// Absolute y, 0..=65535.
    pub y: u32,
    /// Mouse button number (1 left, 2 middle, 3 right).
    pub button: u32,
    /// Gamepad number.
    pub pad: u32,
    /// Gamepad buttons (`PUNKTFUNK_BTN_*` bits).
    pub buttons: u32,
    /// Gamepad axis (`PUNKTFUNK_AXIS_*`).
    pub axis: u32,
    /// Axis value (sticks −32768..=32767, triggers 0..=32767).
    pub value: i32,
    /// Mouse button pressed (true) or released.
    pub down: bool,
}

/// Something the client told the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkHostEvent {
    /// `PUNKTFUNK_HOST_EVENT_*`.
    pub kind: u32,
    /// New FEC percentage (FEC changes).
    pub fec_percent: u32,
    /// First lost frame (keyframe requests).
    pub first_lost: u64,
    /// The input event (inputs).
    pub input: PunktfunkInputEvent,
    /// Close code (closed).
    pub close_code: u32,
    /// New media target, kbit/s (target bitrate; since ABI 2).
    pub target_kbps: u32,
}

/// Speed-test result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkProbeResult {
    /// Rate asked for, kbit/s.
    pub target_kbps: u32,
    /// Datagrams the host dropped locally.
    pub send_drops: u32,
    /// Rate that arrived, kbit/s.
    pub delivered_kbps: f64,
    /// Datagrams lost, percent.
    pub loss_percent: f64,
    /// Probe datagrams sent.
    pub packets_sent: u64,
    /// Probe datagrams received.
    pub packets_received: u64,
    /// How long the host sent, µs.
    pub duration_us: u64,
    /// The rate the host sent at, kbit/s: below `target_kbps` when the host
    /// clamped the test to its probe ceiling, 0 when it refused the test.
    pub rate_kbps: u32,
}

/// A listening host (opaque).
pub struct PunktfunkHost {
    host: Host,
}

/// One client's session on a host (opaque).
pub struct PunktfunkHostSession {
    session: HostSession,
}

/// A client connected to a host (opaque). Its halves are separate so that
/// the control calls (input, keyframe requests, counters, close) never wait
/// for a receiving thread blocked in `punktfunk_client_next_frame`.
pub struct PunktfunkClient {
    // Dropped in this order, as `Client` drops its halves: receiver first.
    rx: Mutex<ClientRx>,
    control: ClientControl,
    stats: StatsHandle,
}

/// The receiving half and the frame lent to the caller by the last call.
struct ClientRx {
    receiver: ClientReceiver,
    lent: Option<Frame>,
}

impl PunktfunkClient {
    fn new(client: Client) -> PunktfunkClient {
        let (receiver, control) = client.split();
        PunktfunkClient {
            stats: receiver.stats_handle(),
            rx: Mutex::new(ClientRx { receiver, lent: None }),
            control,
        }
    }

    /// The receiving half, for one receiving call at a time; the lent frame
    /// of the previous call goes back to the pool.
    fn rx(&self) -> std::sync::MutexGuard<'_, ClientRx> {
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = rx.lent.take() {
            rx.receiver.recycle(f.data);
        }
        rx
    }
}

/// The control calls run on any thread while another receives: compile-time
/// proof that the handle may be shared.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<PunktfunkClient>();
};

fn to_input(e: &PunktfunkInputEvent) -> Result<InputEvent, Error> {
    let kind = InputKind::from_number(e.kind)
        .ok_or_else(|| Error::invalid(format!("input kind {} is not a PUNKTFUNK_INPUT_* value", e.kind)))?;
    // A C struct has every field; the kind picks the ones that count.
    let fields = InputFields {
        code: Some(e.code),
        dx: Some(e.dx.into()),
        dy: Some(e.dy.into()),
        x: Some(e.x.into()),
        y: Some(e.y.into()),
        button: Some(e.button.into()),
        down: Some(e.down),
        pad: Some(e.pad.into()),
        buttons: Some(e.buttons),
        axis: Some(e.axis.into()),
        value: Some(e.value.into()),
    };
    InputEvent::from_fields(kind, &fields)
}

fn from_input(e: &InputEvent) -> PunktfunkInputEvent {
    let f = e.fields();
    // fields() holds the event's own values, which fit the struct's wider types.
    let unsigned = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let signed = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
    PunktfunkInputEvent {
        kind: e.kind().number(),
        code: f.code.unwrap_or(0),
        dx: signed(f.dx),
        dy: signed(f.dy),
        x: unsigned(f.x),
        y: unsigned(f.y),
        button: unsigned(f.button),
        down: f.down.unwrap_or(false),
        pad: unsigned(f.pad),
        buttons: f.buttons.unwrap_or(0),
        axis: unsigned(f.axis),
        value: signed(f.value),
    }
}

/// Writes a stats snapshot into a caller's growable struct.
///
/// # Safety
/// `out` must be NULL or writable for its `struct_size` bytes.
unsafe fn stats_into(snapshot: pf::StatsSnapshot, out: *mut PunktfunkStats) -> Result<(), Error> {
    let stats = PunktfunkStats::from(snapshot);
    // SAFETY: NULL or writable for its struct_size per the caller's contract.
    unsafe { super::write_growable(out, &stats, "out", STATS_V1_SIZE) }
}

/// Writes a close reason (code and text), or fails while the session is open.
///
/// # Safety
/// `code` must be NULL or writable; `buf` NULL or `len` writable bytes.
unsafe fn reason_into(
    reason: Option<control::CloseReason>,
    code: *mut u32,
    buf: *mut c_char,
    len: usize,
) -> Result<(), Error> {
    let r = reason.ok_or_else(|| Error::invalid("the session is still open"))?;
    // SAFETY: NULL or writable per the caller's contract.
    *unsafe { out(code, "code") }? = r.code;
    // SAFETY: NULL or `len` writable bytes per the caller's contract.
    unsafe { write_cstr(buf, len, &r.reason) }
}

/// Borrows a file-system path: NUL-terminated UTF-8 and not empty (an empty
/// path would quietly mean the current directory).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
unsafe fn path(p: *const c_char, what: &str) -> Result<PathBuf, Error> {
    // SAFETY: NULL or NUL-terminated per the caller's contract.
    let s = unsafe { text(p, what) }?;
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} is an empty path")));
    }
    Ok(PathBuf::from(s))
}

fn millis(ms: u32, what: &str) -> Result<Duration, Error> {
    if ms == 0 {
        return Err(Error::invalid(format!("{what} must be above zero")));
    }
    Ok(Duration::from_millis(ms.into()))
}

/// An identity directory argument: NULL means the default
/// (`$PUNKTFUNK_CONFIG_DIR`, else `~/.config/punktfunk`), empty is refused.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
unsafe fn identity_dir_or_default(p: *const c_char) -> Result<PathBuf, Error> {
    if p.is_null() {
        return Ok(control::default_config_dir());
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { path(p, "identity_dir") }
}

/// Reads a list of client fingerprints (64 hex digits each, colons allowed):
/// at least one, every entry non-NULL, non-empty and well-formed.
///
/// # Safety
/// `list` must be NULL or point to `len` readable pointers, each NULL or
/// pointing to a NUL-terminated string.
unsafe fn fingerprints(list: *const *const c_char, len: usize) -> Result<BTreeSet<Fingerprint>, Error> {
    // SAFETY: NULL or `len` readable pointers per the caller's contract.
    let entries = unsafe { items(list, len, "authorized") }?;
    if entries.is_empty() {
        return Err(Error::invalid(
            "authorized lists no client (authorized_len is 0); \
             use punktfunk_host_listen to admit any client",
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, &entry)| {
            let what = format!("authorized[{i}]");
            // SAFETY: each entry is NULL or NUL-terminated per the caller's contract.
            let hex = unsafe { text(entry, &what) }?;
            if hex.is_empty() {
                return Err(Error::invalid(format!("{what} is empty, not a fingerprint")));
            }
            Fingerprint::from_hex(hex).map_err(|e| Error::invalid(format!("{what}: {}", e.message())))
        })
        .collect()
}

/// The body of `punktfunk_host_listen` and `punktfunk_host_listen_authorized`
/// once `out` is cleared: `authorized` as `HostConfig::authorized_clients`.
///
/// # Safety
/// As `punktfunk_host_listen`, with `out` already checked.
unsafe fn listen(
    bind: *const c_char,
    identity_dir: *const c_char,
    config: *const super::PunktfunkSessionConfig,
    options: Option<PunktfunkHostOptions>,
    authorized: Option<BTreeSet<Fingerprint>>,
    out: &mut *mut PunktfunkHost,
) -> Result<(), Error> {
    // SAFETY: NULL or NUL-terminated per the caller's contract.
    let bind = parse_addr(unsafe { text(bind, "bind") }?, "bind")?;
    // SAFETY: as above.
    let dir = unsafe { identity_dir_or_default(identity_dir) }?;
    // SAFETY: NULL or a valid config per the caller's contract.
    let cfg = unsafe { config_or_default(config) }?;
    let mut host_cfg = HostConfig {
        identity_dir: dir,
        bind,
        session: cfg.to_core()?,
        udp: cfg.udp_config()?,
        authorized_clients: authorized,
        ..HostConfig::default()
    };
    if let Some(o) = options {
        o.apply(&mut host_cfg)?;
    }
    let host = Host::listen(host_cfg)?;
    *out = Box::into_raw(Box::new(PunktfunkHost { host }));
    Ok(())
}

/// Starts a host listening on `bind` (`"IP:port"`; port 0 picks one), with
/// its identity in `identity_dir` (NULL: `$PUNKTFUNK_CONFIG_DIR`, else
/// `~/.config/punktfunk`; created on first use). `config` (NULL for defaults)
/// sets the data-plane parameters offered to clients; FEC adapts within 3–50 %.
/// Any client that completes the handshake is admitted; see
/// `punktfunk_host_listen_authorized` to admit only listed ones.
///
/// # Safety
/// `bind` must be NULL or NUL-terminated; `identity_dir` NULL or
/// NUL-terminated; `config` NULL or a valid config; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_listen(
    bind: *const c_char,
    identity_dir: *const c_char,
    config: *const super::PunktfunkSessionConfig,
    out: *mut *mut PunktfunkHost,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let out = unsafe { super::out(out, "out") }?;
        *out = ptr::null_mut();
        // SAFETY: the arguments are as the contract above says.
        unsafe { listen(bind, identity_dir, config, None, None, out) }
    })
}

/// Like `punktfunk_host_listen`, but admits only the clients whose identity
/// (`punktfunk_client_connect_as`) has one of the `authorized_len`
/// fingerprints in `authorized` (64 hex digits each, colons allowed; see
/// `punktfunk_identity_fingerprint`). Every other client, and every client
/// that presents no identity, is refused with `PUNKTFUNK_CLOSE_UNAUTHORIZED`
/// before a data path is opened for it: its connect returns
/// `PUNKTFUNK_ERR_UNAUTHORIZED`, and so does the host's
/// `punktfunk_host_accept`, which can be called again to go on listening.
/// The list is copied. An empty list (`authorized_len` 0) and a NULL, empty
/// or malformed entry are `PUNKTFUNK_ERR_INVALID_ARG`, naming the entry.
///
/// # Safety
/// As `punktfunk_host_listen`; `authorized` must be NULL or point to
/// `authorized_len` readable pointers, each NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_listen_authorized(
    bind: *const c_char,
    identity_dir: *const c_char,
    config: *const super::PunktfunkSessionConfig,
    authorized: *const *const c_char,
    authorized_len: usize,
    out: *mut *mut PunktfunkHost,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let out = unsafe { super::out(out, "out") }?;
        *out = ptr::null_mut();
        // SAFETY: NULL or `authorized_len` readable string pointers per the contract.
        let allowed = unsafe { fingerprints(authorized, authorized_len) }?;
        // SAFETY: the other arguments are as the contract above says.
        unsafe { listen(bind, identity_dir, config, None, Some(allowed), out) }
    })
}

/// Host settings beyond the data-plane parameters: rate adaptation, a
/// host-wide ceiling, speed-test probes. Fill with
/// `punktfunk_host_options_default` first, then change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PunktfunkHostOptions {
    /// Size of this struct as the caller knows it: `sizeof(PunktfunkHostOptions)`.
    pub struct_size: u32,
    /// Highest bitrate granted to a client, kbit/s (default 2 000 000).
    pub max_bitrate_kbps: u32,
    /// 1 (default): each session's rate follows its path (start at
    /// `initial_kbps`, ramp, pace at the path rate, publish the target:
    /// `punktfunk_host_session_target_kbps`). 0: the granted bitrate, paced
    /// at a multiple of the stream rate.
    pub adaptive_rate: u32,
    /// Media bitrate a session starts at, kbit/s (default 10 000).
    pub initial_kbps: u32,
    /// Lowest media bitrate asked of the encoder, kbit/s (default 1000; at
    /// most `initial_kbps`).
    pub min_kbps: u32,
    /// Ceiling on all sessions' wire rate together, shared between them,
    /// kbit/s; 0 (default): none.
    pub max_total_kbps: u32,
    /// 1 (default): answer clients' speed tests; 0: refuse every one.
    pub probes: u32,
    /// Highest speed-test rate, kbit/s; 0 (default): the session's granted bitrate.
    pub probe_ceiling_kbps: u32,
    /// 1: serve browsers too, over WebTransport on the same port
    /// (docs/WEB.md; `punktfunk_host_web_certificate_hash` gives the hash
    /// they pin); 0 (default): native clients only. Added after the first
    /// layout: a caller built against that one gets 0.
    pub web: u32,
}

/// `struct_size` of the first `PunktfunkHostOptions` layout (before `web`).
const HOST_OPTIONS_FIRST_LAYOUT: usize = 9 * size_of::<u32>();

impl PunktfunkHostOptions {
    fn defaults() -> Self {
        let d = HostConfig::default();
        let r = RateSettings::default();
        PunktfunkHostOptions {
            struct_size: size_of::<PunktfunkHostOptions>() as u32,
            max_bitrate_kbps: d.max_bitrate_kbps,
            adaptive_rate: u32::from(r.adaptive),
            initial_kbps: r.initial_kbps,
            min_kbps: r.min_kbps,
            max_total_kbps: d.max_total_kbps.unwrap_or(0),
            probes: u32::from(d.probe.enabled),
            probe_ceiling_kbps: d.probe.ceiling_kbps,
            web: u32::from(d.web.is_some()),
        }
    }

    /// Sets these options on `cfg`; flags other than 0 and 1 are refused,
    /// the rest is checked by the core.
    fn apply(&self, cfg: &mut HostConfig) -> Result<(), Error> {
        let flag = |v: u32, name: &str| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::invalid(format!("options.{name} must be 0 or 1, got {v}"))),
        };
        cfg.max_bitrate_kbps = self.max_bitrate_kbps;
        cfg.rate = RateSettings {
            adaptive: flag(self.adaptive_rate, "adaptive_rate")?,
            initial_kbps: self.initial_kbps,
            min_kbps: self.min_kbps,
        };
        cfg.max_total_kbps = (self.max_total_kbps > 0).then_some(self.max_total_kbps);
        cfg.probe = ProbePolicy {
            enabled: flag(self.probes, "probes")?,
            ceiling_kbps: self.probe_ceiling_kbps,
            ..ProbePolicy::default()
        };
        cfg.web = flag(self.web, "web")?.then(WebConfig::default);
        cfg.validate()
    }
}

/// Fills `out` with the default host options and sets its `struct_size`.
///
/// # Safety
/// `out` must be NULL or point to a writable `PunktfunkHostOptions`.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_options_default(out: *mut PunktfunkHostOptions) -> i32 {
    ffi(|| {
        // SAFETY: `out` is NULL or a writable options struct, per the contract above.
        *unsafe { super::out(out, "out") }? = PunktfunkHostOptions::defaults();
        Ok(())
    })
}

/// `punktfunk_host_listen` with host `options` (NULL: the defaults) and,
/// when `authorized_len` is above 0, the client list of
/// `punktfunk_host_listen_authorized` (`authorized` NULL with
/// `authorized_len` 0 admits any client). Out-of-range options are
/// `PUNKTFUNK_ERR_INVALID_ARG`, naming the field.
///
/// # Safety
/// As `punktfunk_host_listen_authorized`; `options` NULL or valid for its
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_listen_with(
    bind: *const c_char,
    identity_dir: *const c_char,
    config: *const super::PunktfunkSessionConfig,
    options: *const PunktfunkHostOptions,
    authorized: *const *const c_char,
    authorized_len: usize,
    out: *mut *mut PunktfunkHost,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let out = unsafe { super::out(out, "out") }?;
        *out = ptr::null_mut();
        let opts = if options.is_null() {
            PunktfunkHostOptions::defaults()
        } else {
            // SAFETY: non-NULL and valid for its struct_size, per the contract.
            unsafe { read_growable(options, "options", HOST_OPTIONS_FIRST_LAYOUT) }?
        };
        let allowed = if authorized.is_null() && authorized_len == 0 {
            None
        } else {
            // SAFETY: `authorized_len` readable string pointers per the contract.
            Some(unsafe { fingerprints(authorized, authorized_len) }?)
        };
        // SAFETY: the other arguments are as the contract above says.
        unsafe { listen(bind, identity_dir, config, Some(opts), allowed, out) }
    })
}

/// Writes the fingerprint of the identity in `identity_dir` (64 hex digits
/// and a NUL; use a buffer of `PUNKTFUNK_FINGERPRINT_LEN`), creating the
/// identity there if there is none: what a host pins (a host identity) or
/// lists in `punktfunk_host_listen_authorized` (a client identity).
/// `identity_dir` NULL means the default, as in `punktfunk_host_listen`.
///
/// # Safety
/// `identity_dir` must be NULL or NUL-terminated; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_identity_fingerprint(
    identity_dir: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // Refuse an unusable buffer before anything is created on disk.
        if buf.is_null() {
            return Err(null("buf"));
        }
        if len < PUNKTFUNK_FINGERPRINT_LEN {
            return Err(Error::invalid(format!(
                "buffer of {len} bytes is too small for a fingerprint (PUNKTFUNK_FINGERPRINT_LEN is {PUNKTFUNK_FINGERPRINT_LEN})"
            )));
        }
        // SAFETY: NULL or NUL-terminated per the contract.
        let dir = unsafe { identity_dir_or_default(identity_dir) }?;
        let fp = Identity::load_or_create(&dir)?.fingerprint();
        // SAFETY: non-NULL with `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &fp.to_hex()) }
    })
}

/// Writes the host's certificate fingerprint (64 hex digits and a NUL; use a
/// buffer of `PUNKTFUNK_FINGERPRINT_LEN`).
///
/// # Safety
/// `host` must be NULL or a live handle; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_fingerprint(
    host: *const PunktfunkHost,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let h = unsafe { input(host, "host") }?;
        // SAFETY: NULL or `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &h.host.fingerprint().to_hex()) }
    })
}

/// Writes the SHA-256 of the certificate browsers pin now (64 hex digits and
/// a NUL; `PUNKTFUNK_FINGERPRINT_LEN` suffices), for a host listening with
/// `options.web` = 1; `PUNKTFUNK_ERR_INVALID_ARG` for one that does not
/// serve browsers. The host renews the certificate before it expires (it is
/// valid 13 days): read the hash when handing it out.
///
/// # Safety
/// `host` must be NULL or a live handle; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_web_certificate_hash(
    host: *const PunktfunkHost,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let h = unsafe { input(host, "host") }?;
        let hash = h
            .host
            .web_certificate_hash()
            .ok_or_else(|| Error::invalid("this host does not serve browsers (options.web is 0)"))?;
        // SAFETY: NULL or `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &Fingerprint(hash).to_hex()) }
    })
}

/// Writes the host's QUIC address (`"IP:port"` and a NUL; `PUNKTFUNK_ADDRESS_MAX` suffices).
///
/// # Safety
/// `host` must be NULL or a live handle; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_local_address(
    host: *const PunktfunkHost,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let h = unsafe { input(host, "host") }?;
        let addr = h.host.local_addr()?.to_string();
        // SAFETY: NULL or `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &addr) }
    })
}

/// Waits up to `timeout_ms` for a client and runs the handshake with it. On
/// success `*out` is its session; `PUNKTFUNK_ERR_TIMEOUT` if nobody came. A
/// client that fails the handshake is reported as this call's error, a client
/// the host does not admit (`punktfunk_host_listen_authorized`) as
/// `PUNKTFUNK_ERR_UNAUTHORIZED`; the host keeps listening after either.
///
/// # Safety
/// `host` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_accept(
    host: *mut PunktfunkHost,
    timeout_ms: u32,
    out: *mut *mut PunktfunkHostSession,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let (h, out) = unsafe { (input(host, "host")?, super::out(out, "out")?) };
        *out = ptr::null_mut();
        match h.host.accept(Some(millis(timeout_ms, "timeout_ms")?))? {
            Some(session) => {
                *out = Box::into_raw(Box::new(PunktfunkHostSession { session }));
                Ok(())
            }
            None => Err(Error::new(
                ErrorKind::Timeout,
                format!("no client within {timeout_ms} ms"),
            )),
        }
    })
}

/// Stops the host (every session is closed with code
/// `PUNKTFUNK_CLOSE_HOST_SHUTDOWN`) and releases it. NULL is ignored.
///
/// # Safety
/// `host` must be NULL or a handle from `punktfunk_host_listen` (or
/// `punktfunk_host_listen_authorized`) not freed before.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_free(host: *mut PunktfunkHost) {
    if host.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a live handle from `punktfunk_host_listen*`, not freed before.
        drop(unsafe { Box::from_raw(host) });
    }));
}

/// Sends one frame to this client.
///
/// # Safety
/// `session` must be NULL or a live handle; `data` NULL (with `len` 0) or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_submit_frame(
    session: *mut PunktfunkHostSession,
    data: *const u8,
    len: usize,
    pts: u64,
    keyframe: bool,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let (s, data) = unsafe { (input(session, "session")?, bytes(data, len, "data")?) };
        s.session.submit_frame(data, FrameMeta { pts, keyframe })?;
        Ok(())
    })
}

/// Waits up to `timeout_ms` for the next thing the client sends (input, a
/// keyframe request, an FEC change, its leaving); `out->kind` is
/// `PUNKTFUNK_HOST_EVENT_NONE` on timeout, and `PUNKTFUNK_ERR_CLOSED` is
/// returned after the `CLOSED` event was delivered.
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_next_event(
    session: *mut PunktfunkHostSession,
    timeout_ms: u32,
    out: *mut PunktfunkHostEvent,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let (s, out) = unsafe { (input(session, "session")?, super::out(out, "out")?) };
        *out = PunktfunkHostEvent::default();
        match s.session.next_event(Duration::from_millis(timeout_ms.into()))? {
            None => {}
            Some(HostEvent::Input(ev)) => {
                out.kind = PUNKTFUNK_HOST_EVENT_INPUT;
                out.input = from_input(&ev);
            }
            Some(HostEvent::KeyframeRequest { first_lost }) => {
                out.kind = PUNKTFUNK_HOST_EVENT_KEYFRAME_REQUEST;
                out.first_lost = first_lost;
            }
            Some(HostEvent::FecChanged { percent }) => {
                out.kind = PUNKTFUNK_HOST_EVENT_FEC_CHANGED;
                out.fec_percent = percent.into();
            }
            Some(HostEvent::TargetBitrate { kbps }) => {
                out.kind = PUNKTFUNK_HOST_EVENT_TARGET_BITRATE;
                out.target_kbps = kbps;
            }
            Some(HostEvent::Closed(r)) => {
                out.kind = PUNKTFUNK_HOST_EVENT_CLOSED;
                out.close_code = r.code;
            }
        }
        Ok(())
    })
}

/// Writes the media bitrate the encoder should aim for now, kbit/s, to
/// `out`: the host's estimate of this client's path less FEC and header
/// overhead, within the granted bitrate (the granted bitrate when rate
/// control is off). Poll it (or watch for
/// `PUNKTFUNK_HOST_EVENT_TARGET_BITRATE`) and set the encoder to it.
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_target_kbps(
    session: *const PunktfunkHostSession,
    out: *mut u32,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let (s, out) = unsafe { (input(session, "session")?, super::out(out, "out")?) };
        *out = s.session.target_bitrate_kbps();
        Ok(())
    })
}

/// Copies the session's counters (set `out->struct_size` first).
///
/// # Safety
/// `session` must be NULL or a live handle; `out` NULL or writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_stats(
    session: *const PunktfunkHostSession,
    out: *mut PunktfunkStats,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        // SAFETY: NULL or writable for its struct_size per the contract.
        unsafe { stats_into(s.session.stats(), out) }
    })
}

/// Writes the fingerprint of the identity the client presented (64 hex
/// digits and a NUL; use a buffer of `PUNKTFUNK_FINGERPRINT_LEN`): who was
/// admitted. `PUNKTFUNK_ERR_INVALID_ARG` if the client presented none
/// (`punktfunk_client_connect`), or for a NULL or small buffer.
///
/// # Safety
/// `session` must be NULL or a live handle; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_client_fingerprint(
    session: *const PunktfunkHostSession,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        if buf.is_null() {
            return Err(null("buf"));
        }
        let fp = s
            .session
            .client_fingerprint()
            .ok_or_else(|| Error::invalid("the client presented no identity"))?;
        // SAFETY: non-NULL with `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &fp.to_hex()) }
    })
}

/// Writes how the session ended (code, and the reason text into `buf`);
/// `PUNKTFUNK_ERR_INVALID_ARG` while it is still open.
///
/// # Safety
/// `session` must be NULL or a live handle; `code` NULL or writable; `buf`
/// NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_close_reason(
    session: *const PunktfunkHostSession,
    code: *mut u32,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        // SAFETY: `code` and `buf` are valid per the contract.
        unsafe { reason_into(s.session.closed_reason(), code, buf, len) }
    })
}

/// Closes this client's session with a code and reason it can read (frames
/// already sent are delivered first; waits up to a second). The handle stays
/// valid until `punktfunk_host_session_free`.
///
/// # Safety
/// `session` must be NULL or a live handle; `reason` NULL (empty) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_close(
    session: *mut PunktfunkHostSession,
    code: u32,
    reason: *const c_char,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let s = unsafe { input(session, "session") }?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: non-NULL, and NUL-terminated per the contract.
            unsafe { text(reason, "reason") }?
        };
        s.session.close(code, reason);
        Ok(())
    })
}

/// Releases a host session (closing it normally if still open). NULL is ignored.
///
/// # Safety
/// `session` must be NULL or a handle from `punktfunk_host_accept` not freed before.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_host_session_free(session: *mut PunktfunkHostSession) {
    if session.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a live handle from `punktfunk_host_accept`, not freed before.
        let s = unsafe { Box::from_raw(session) };
        s.session.close(PUNKTFUNK_CLOSE_NORMAL, "host session released");
    }));
}

/// The body of `punktfunk_client_connect` and `punktfunk_client_connect_as`
/// once `out` is cleared: `identity` as `ClientConfig::identity_dir`.
///
/// # Safety
/// As `punktfunk_client_connect`, with `out` already checked.
unsafe fn connect(
    address: *const c_char,
    pin_hex: *const c_char,
    known_hosts: *const c_char,
    identity: Option<PathBuf>,
    timeout_ms: u32,
    config: *const super::PunktfunkSessionConfig,
    out: &mut *mut PunktfunkClient,
) -> Result<(), Error> {
    // SAFETY: NULL or NUL-terminated per the caller's contract.
    let addr = parse_addr(unsafe { text(address, "address") }?, "address")?;
    let trust = if pin_hex.is_null() {
        let path = if known_hosts.is_null() {
            control::default_known_hosts()
        } else {
            // SAFETY: non-NULL and NUL-terminated per the caller's contract.
            unsafe { path(known_hosts, "known_hosts") }?
        };
        Trust::Tofu(path)
    } else {
        // SAFETY: non-NULL and NUL-terminated per the caller's contract.
        Trust::Pin(Fingerprint::from_hex(unsafe { text(pin_hex, "pin_hex") }?)?)
    };
    // SAFETY: NULL or a valid config per the caller's contract.
    let cfg = unsafe { config_or_default(config) }?;
    let mut cc = ClientConfig::new(trust);
    cc.connect_timeout = millis(timeout_ms, "timeout_ms")?;
    cc.session = cfg.to_core()?;
    cc.udp = cfg.udp_config()?;
    cc.identity_dir = identity;
    let client = Client::connect(addr, cc)?;
    *out = Box::into_raw(Box::new(PunktfunkClient::new(client)));
    Ok(())
}

/// Connects to a host at `address` (`"IP:port"`). With `pin_hex` (64 hex
/// digits) only that fingerprint is accepted; with NULL, trust on first use
/// with the known-hosts file at `known_hosts` (NULL:
/// `~/.config/punktfunk/known_hosts`). A wrong fingerprint returns `PUNKTFUNK_ERR_PIN_MISMATCH` before
/// any data flows; no answer within `timeout_ms` returns `PUNKTFUNK_ERR_TIMEOUT`.
/// `config` (NULL for defaults) sets local receive limits. The client
/// presents no identity: a host that admits only authorized clients refuses
/// it with `PUNKTFUNK_ERR_UNAUTHORIZED` (see `punktfunk_client_connect_as`).
///
/// # Safety
/// String arguments must be NULL or NUL-terminated (`address` non-NULL);
/// `config` NULL or valid; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_connect(
    address: *const c_char,
    pin_hex: *const c_char,
    known_hosts: *const c_char,
    timeout_ms: u32,
    config: *const super::PunktfunkSessionConfig,
    out: *mut *mut PunktfunkClient,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let out = unsafe { super::out(out, "out") }?;
        *out = ptr::null_mut();
        // SAFETY: the arguments are as the contract above says.
        unsafe { connect(address, pin_hex, known_hosts, None, timeout_ms, config, out) }
    })
}

/// Like `punktfunk_client_connect`, but presents the identity in
/// `identity_dir` (a certificate and key, created there on first use, the
/// same kind a host has) to the host, which may admit clients by its
/// fingerprint (`punktfunk_host_listen_authorized`; read it with
/// `punktfunk_identity_fingerprint`). A host that does not admit this
/// identity returns `PUNKTFUNK_ERR_UNAUTHORIZED`, with its reason in
/// `punktfunk_last_error_message()`. `identity_dir` NULL or empty is
/// `PUNKTFUNK_ERR_INVALID_ARG` (use `punktfunk_client_connect` to present none).
///
/// # Safety
/// As `punktfunk_client_connect`; `identity_dir` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_connect_as(
    address: *const c_char,
    pin_hex: *const c_char,
    known_hosts: *const c_char,
    identity_dir: *const c_char,
    timeout_ms: u32,
    config: *const super::PunktfunkSessionConfig,
    out: *mut *mut PunktfunkClient,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let out = unsafe { super::out(out, "out") }?;
        *out = ptr::null_mut();
        if identity_dir.is_null() {
            return Err(Error::invalid(
                "identity_dir is NULL; use punktfunk_client_connect to present no identity",
            ));
        }
        // SAFETY: non-NULL and NUL-terminated per the contract.
        let dir = unsafe { path(identity_dir, "identity_dir") }?;
        // SAFETY: the other arguments are as the contract above says.
        unsafe { connect(address, pin_hex, known_hosts, Some(dir), timeout_ms, config, out) }
    })
}

/// Writes the host's fingerprint as pinned or first seen (use `PUNKTFUNK_FINGERPRINT_LEN`).
///
/// # Safety
/// `client` must be NULL or a live handle; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_fingerprint(
    client: *const PunktfunkClient,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let c = unsafe { input(client, "client") }?;
        // SAFETY: NULL or `len` writable bytes per the contract.
        unsafe { write_cstr(buf, len, &c.control.fingerprint().to_hex()) }
    })
}

/// Waits up to `timeout_ms` for the next frame event (`out->kind`
/// `PUNKTFUNK_EVENT_NONE` on timeout). `data` stays valid until the next
/// receiving call (this or `punktfunk_client_speed_test`) on this handle.
/// Returns `PUNKTFUNK_ERR_CLOSED` once the host ended the session and
/// everything was delivered.
///
/// Threads: the receiving calls run one at a time (a second waits for the
/// first). Every other client call (`_send_input`, `_request_keyframe`,
/// `_stats`, `_fingerprint`, `_close_reason`, `_close`) may run on other
/// threads at the same time and never waits for a receiving call: a receiving
/// thread and an input thread share one handle. Only `_free` needs every
/// other call to have returned.
///
/// # Safety
/// `client` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_next_frame(
    client: *mut PunktfunkClient,
    timeout_ms: u32,
    out: *mut PunktfunkFrameEvent,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract (shared: other threads
        // may be in the control calls at the same time).
        let (c, out) = unsafe { (input(client, "client")?, super::out(out, "out")?) };
        *out = PunktfunkFrameEvent::NONE;
        let mut rx = c.rx();
        let ev = rx.receiver.recv_frame(Duration::from_millis(timeout_ms.into()))?;
        lend(ev, out, &mut rx.lent);
        Ok(())
    })
}

/// Runs a speed test: the host sends probe filler at `target_kbps`
/// (1..=3000000) for `duration_ms` (1..=5000) through the data plane.
/// Frames arriving meanwhile are kept for later `punktfunk_client_next_frame` calls.
///
/// # Safety
/// `client` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_speed_test(
    client: *mut PunktfunkClient,
    target_kbps: u32,
    duration_ms: u32,
    out: *mut PunktfunkProbeResult,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract (shared, as in next_frame).
        let (c, out) = unsafe { (input(client, "client")?, super::out(out, "out")?) };
        let mut rx = c.rx();
        let r = c.control.speed_test_reading(
            &mut rx.receiver,
            target_kbps,
            Duration::from_millis(duration_ms.into()),
        )?;
        *out = PunktfunkProbeResult {
            target_kbps: r.target_kbps,
            send_drops: u32::try_from(r.send_drops).unwrap_or(u32::MAX),
            delivered_kbps: r.delivered_kbps,
            loss_percent: r.loss_percent,
            packets_sent: r.packets_sent,
            packets_received: r.packets_received,
            duration_us: r.duration.as_micros() as u64,
            rate_kbps: r.rate_kbps,
        };
        Ok(())
    })
}

/// Sends an input event to the host (key and button edges are never lost).
///
/// # Safety
/// `client` must be NULL or a live handle; `event` NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_send_input(
    client: *const PunktfunkClient,
    event: *const PunktfunkInputEvent,
) -> i32 {
    ffi(|| {
        // SAFETY: checked or valid per the contract.
        let (c, e) = unsafe { (input(client, "client")?, input(event, "event")?) };
        c.control.send_input(to_input(e)?)
    })
}

/// Asks the host for a keyframe (frames from `first_lost` on were lost).
///
/// # Safety
/// `client` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_request_keyframe(
    client: *const PunktfunkClient,
    first_lost: u64,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let c = unsafe { input(client, "client") }?;
        c.control.request_keyframe(first_lost)
    })
}

/// Copies the client's counters (set `out->struct_size` first).
///
/// # Safety
/// `client` must be NULL or a live handle; `out` NULL or writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_stats(
    client: *const PunktfunkClient,
    out: *mut PunktfunkStats,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let c = unsafe { input(client, "client") }?;
        // SAFETY: NULL or writable for its struct_size per the contract.
        unsafe { stats_into(c.stats.snapshot(), out) }
    })
}

/// Writes how the session ended (code, and the reason into `buf`);
/// `PUNKTFUNK_ERR_INVALID_ARG` while it is still open.
///
/// # Safety
/// `client` must be NULL or a live handle; `code` NULL or writable; `buf` NULL
/// or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_close_reason(
    client: *const PunktfunkClient,
    code: *mut u32,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let c = unsafe { input(client, "client") }?;
        // SAFETY: `code` and `buf` are valid per the contract.
        unsafe { reason_into(c.control.closed_reason(), code, buf, len) }
    })
}

/// Closes the session with a code and reason the host can read (input already
/// sent is delivered first; waits up to a second). The handle stays valid
/// until `punktfunk_client_free`.
///
/// # Safety
/// `client` must be NULL or a live handle; `reason` NULL (empty) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_close(
    client: *mut PunktfunkClient,
    code: u32,
    reason: *const c_char,
) -> i32 {
    ffi(|| {
        // SAFETY: NULL or a live handle per the contract.
        let c = unsafe { input(client, "client") }?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: non-NULL, and NUL-terminated per the contract.
            unsafe { text(reason, "reason") }?
        };
        c.control.close(code, reason);
        Ok(())
    })
}

/// Releases a client (closing it normally if still open). NULL is ignored.
///
/// # Safety
/// `client` must be NULL or a handle from `punktfunk_client_connect` (or
/// `punktfunk_client_connect_as`) not freed before.
#[no_mangle]
pub unsafe extern "C" fn punktfunk_client_free(client: *mut PunktfunkClient) {
    if client.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a live handle from `punktfunk_client_connect*`, not freed before.
        drop(unsafe { Box::from_raw(client) });
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pf::control::{axis, button};
    use std::ffi::CString;

    #[test]
    fn input_constants_match_the_core() {
        let b = [
            (PUNKTFUNK_BTN_A, button::A),
            (PUNKTFUNK_BTN_B, button::B),
            (PUNKTFUNK_BTN_X, button::X),
            (PUNKTFUNK_BTN_Y, button::Y),
            (PUNKTFUNK_BTN_LEFT_SHOULDER, button::LEFT_SHOULDER),
            (PUNKTFUNK_BTN_RIGHT_SHOULDER, button::RIGHT_SHOULDER),
            (PUNKTFUNK_BTN_BACK, button::BACK),
            (PUNKTFUNK_BTN_START, button::START),
            (PUNKTFUNK_BTN_GUIDE, button::GUIDE),
            (PUNKTFUNK_BTN_LEFT_STICK, button::LEFT_STICK),
            (PUNKTFUNK_BTN_RIGHT_STICK, button::RIGHT_STICK),
            (PUNKTFUNK_BTN_DPAD_UP, button::DPAD_UP),
            (PUNKTFUNK_BTN_DPAD_DOWN, button::DPAD_DOWN),
            (PUNKTFUNK_BTN_DPAD_LEFT, button::DPAD_LEFT),
            (PUNKTFUNK_BTN_DPAD_RIGHT, button::DPAD_RIGHT),
        ];
        for (c, core) in b {
            assert_eq!(c, core);
        }
        let a = [
            (PUNKTFUNK_AXIS_LEFT_X, axis::LEFT_X),
            (PUNKTFUNK_AXIS_LEFT_Y, axis::LEFT_Y),
            (PUNKTFUNK_AXIS_RIGHT_X, axis::RIGHT_X),
            (PUNKTFUNK_AXIS_RIGHT_Y, axis::RIGHT_Y),
            (PUNKTFUNK_AXIS_LEFT_TRIGGER, axis::LEFT_TRIGGER),
            (PUNKTFUNK_AXIS_RIGHT_TRIGGER, axis::RIGHT_TRIGGER),
        ];
        for (c, core) in a {
            assert_eq!(c, u32::from(core));
        }
        let codes = [
            (PUNKTFUNK_CLOSE_NORMAL, control::close_code::NORMAL),
            (PUNKTFUNK_CLOSE_PROTOCOL, control::close_code::PROTOCOL),
            (PUNKTFUNK_CLOSE_IDLE, control::close_code::IDLE),
            (PUNKTFUNK_CLOSE_HOST_SHUTDOWN, control::close_code::HOST_SHUTDOWN),
            (PUNKTFUNK_CLOSE_APPLICATION, control::close_code::APPLICATION),
            (PUNKTFUNK_CLOSE_UNAUTHORIZED, control::close_code::UNAUTHORIZED),
        ];
        for (c, core) in codes {
            assert_eq!(c, core);
        }
        let kinds = [
            (PUNKTFUNK_INPUT_KEY_DOWN, InputKind::KeyDown),
            (PUNKTFUNK_INPUT_KEY_UP, InputKind::KeyUp),
            (PUNKTFUNK_INPUT_MOUSE_MOVE, InputKind::MouseMove),
            (PUNKTFUNK_INPUT_MOUSE_MOVE_ABSOLUTE, InputKind::MouseMoveAbsolute),
            (PUNKTFUNK_INPUT_MOUSE_BUTTON, InputKind::MouseButton),
            (PUNKTFUNK_INPUT_SCROLL, InputKind::Scroll),
            (PUNKTFUNK_INPUT_GAMEPAD_BUTTONS, InputKind::GamepadButtons),
            (PUNKTFUNK_INPUT_GAMEPAD_AXIS, InputKind::GamepadAxis),
        ];
        for (c, core) in kinds {
            assert_eq!(c, core.number());
        }
    }

    #[test]
    fn authorized_lists_are_read_entry_by_entry() {
        let hex = "ab".repeat(32);
        let colons = vec!["cd"; 32].join(":");
        let good = [CString::new(hex.as_str()).unwrap(), CString::new(colons).unwrap()];
        let ptrs: Vec<*const c_char> = good.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: `ptrs` holds two pointers to live NUL-terminated strings.
        let set = unsafe { fingerprints(ptrs.as_ptr(), ptrs.len()) }.unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&Fingerprint([0xab; 32])) && set.contains(&Fingerprint([0xcd; 32])));

        let (empty, short) = (CString::new("").unwrap(), CString::new("abc").unwrap());
        let refused: [(Vec<*const c_char>, &str); 4] = [
            (vec![ptrs[0], ptr::null()], "authorized[1] is NULL"),
            (vec![empty.as_ptr()], "authorized[0] is empty"),
            (
                vec![ptrs[1], ptrs[0], short.as_ptr()],
                "authorized[2]: a fingerprint is 64 hex digits",
            ),
            (vec![], "authorized lists no client"),
        ];
        for (list, why) in refused {
            // SAFETY: every entry is NULL or a live NUL-terminated string.
            let e = unsafe { fingerprints(list.as_ptr(), list.len()) }.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains(why), "{e}");
        }
        // SAFETY: NULL with a length is refused before anything is read.
        let e = unsafe { fingerprints(ptr::null(), 3) }.unwrap_err();
        assert!(e.message().contains("authorized is NULL"), "{e}");
        // SAFETY: NULL with length 0 reads nothing.
        let e = unsafe { fingerprints(ptr::null(), 0) }.unwrap_err();
        assert!(e.message().contains("punktfunk_host_listen"), "{e}");
    }

    #[test]
    fn input_events_convert_both_ways() {
        let evs = [
            InputEvent::KeyDown { code: 5 },
            InputEvent::MouseMoveAbsolute { x: 9, y: 65535 },
            InputEvent::Scroll { dx: -120, dy: 3 },
            InputEvent::GamepadAxis {
                pad: 1,
                axis: axis::RIGHT_Y,
                value: -7,
            },
        ];
        for e in evs {
            assert_eq!(to_input(&from_input(&e)).unwrap(), e);
        }
        let bad = PunktfunkInputEvent {
            kind: PUNKTFUNK_INPUT_SCROLL,
            dx: 1 << 20,
            ..Default::default()
        };
        assert!(to_input(&bad).is_err());
    }
}
