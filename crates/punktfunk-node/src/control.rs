//! The QUIC control plane for Node.js: hosts that accept clients, clients
//! that connect, input, keyframe requests, speed tests, close reasons.
//! Blocking core calls (accept, connect, speed test, close) run on the libuv
//! thread pool as `AsyncTask`s; frames use the same workers as data-plane
//! sessions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{AsyncTask, Function};
use napi::{Env, Task};
use napi_derive::napi;

use punktfunk_core::control::{
    self, axis, button, Client, ClientConfig, FecBand, Fingerprint, Host, HostConfig, HostEvent, InputEvent,
    InputFields, InputKind, ProbePolicy, ProbeResult, RateSettings, Trust,
};
use punktfunk_core::web::WebConfig;
use punktfunk_core::{ErrorKind, FrameSource};

use super::settle;
use super::{
    guard, impairment_config, invalid, js_error, params_to_config, parse_addr, udp_config, wake, waker,
    Inner, NativeImpairment, NativeParams, NativeSession, Result, Waker, Workers, WAKE_READABLE,
    WAKE_WRITABLE,
};

/// Wake-up reason: a control event (input, keyframe request, close) is queued.
const WAKE_EVENT: u32 = 3;

fn ms(v: f64, name: &str) -> Result<Duration> {
    if v.is_finite() && v > 0.0 && v <= 86_400_000.0 {
        Ok(Duration::from_secs_f64(v / 1e3))
    } else {
        Err(invalid(format!(
            "{name} must be a positive number of milliseconds, got {v}"
        )))
    }
}

/// A file-system path from JS. An empty string is refused (it would quietly
/// mean the current directory, and put a host key there), and so is a NUL
/// byte, which no path can hold.
fn path(p: &str, name: &str) -> Result<PathBuf> {
    if p.is_empty() {
        return Err(invalid(format!("{name} must not be empty")));
    }
    if p.contains('\0') {
        return Err(invalid(format!("{name} {p:?} contains a NUL byte")));
    }
    Ok(PathBuf::from(p))
}

/// Host settings (normalised by the TS layer).
#[napi(object)]
pub struct NativeHostOptions {
    /// Directory of the host identity (default: the user's config directory).
    pub identity_dir: Option<String>,
    /// QUIC listen address.
    pub bind: String,
    /// Data-plane parameters offered to clients.
    pub params: NativeParams,
    /// Highest bitrate granted, kbit/s.
    pub max_bitrate_kbps: f64,
    /// A silent client is dropped after this long, ms.
    pub idle_timeout_ms: f64,
    /// Keep-alive interval, ms.
    pub keepalive_ms: f64,
    /// Adaptive FEC band (both set), or fixed FEC (both absent).
    pub adaptive_min: Option<u32>,
    /// Upper end of the adaptive FEC band.
    pub adaptive_max: Option<u32>,
    /// Data socket buffer size, bytes.
    pub socket_buffer: f64,
    /// Frames each session's send queue holds.
    pub send_queue: u32,
    /// Simulated impairment of every client's data path (demos and tests).
    pub impairment: Option<NativeImpairment>,
    /// Admit only clients presenting one of these certificate fingerprints (hex).
    pub authorized_clients: Option<Vec<String>>,
    /// Adapt each session's rate to its path (default true).
    pub adaptive_rate: Option<bool>,
    /// Media bitrate a session starts at, kbit/s.
    pub initial_kbps: Option<u32>,
    /// Lowest media bitrate asked of the encoder, kbit/s.
    pub min_kbps: Option<u32>,
    /// Ceiling on all sessions' wire rate together, kbit/s.
    pub max_total_kbps: Option<u32>,
    /// Whether the host answers speed-test probes (default true).
    pub probes: Option<bool>,
    /// Highest probe rate, kbit/s (default: the session's granted bitrate).
    pub probe_ceiling_kbps: Option<u32>,
    /// Serve browsers over WebTransport on the same port (default false).
    pub web: Option<bool>,
    /// Browser sessions: frames in flight at most (default 16).
    pub web_window: Option<u32>,
    /// Browser sessions: a frame in flight this long is given up, ms (default 1000).
    pub web_max_frame_age_ms: Option<f64>,
}

/// A host identity on disk.
#[napi(object)]
pub struct NativeIdentity {
    /// The directory holding it.
    pub dir: String,
    /// The certificate fingerprint clients pin (64 hex digits).
    pub fingerprint: String,
    /// Whether it was created by this call.
    pub created: bool,
}

/// Loads the host identity in `dir` (default: the user's config directory),
/// creating it if there is none.
#[napi]
pub fn load_identity(dir: Option<String>) -> Result<NativeIdentity> {
    guard(|| {
        let dir = match dir {
            Some(d) => path(&d, "identityDir")?,
            None => control::default_config_dir(),
        };
        let created = !control::Identity::exists_in(&dir);
        let id = control::Identity::load_or_create(&dir).map_err(js_error)?;
        Ok(NativeIdentity {
            dir: dir.display().to_string(),
            fingerprint: id.fingerprint().to_hex(),
            created,
        })
    })
}

/// The rate settings in `opts`, the core's defaults for what is absent.
fn rate_settings(opts: &NativeHostOptions) -> RateSettings {
    let d = RateSettings::default();
    RateSettings {
        adaptive: opts.adaptive_rate.unwrap_or(d.adaptive),
        initial_kbps: opts.initial_kbps.unwrap_or(d.initial_kbps),
        min_kbps: opts.min_kbps.unwrap_or(d.min_kbps),
    }
}

/// The browser settings in `opts` (`None` unless `web` is true); the core
/// checks the ranges.
fn web_config(opts: &NativeHostOptions) -> Result<Option<WebConfig>> {
    if opts.web != Some(true) {
        return Ok(None);
    }
    let d = WebConfig::default();
    Ok(Some(WebConfig {
        window: match opts.web_window {
            Some(w) => u16::try_from(w).map_err(|_| invalid(format!("web.window {w} is outside 1..=256")))?,
            None => d.window,
        },
        max_frame_age: match opts.web_max_frame_age_ms {
            Some(v) => ms(v, "web.maxFrameAgeMs")?,
            None => d.max_frame_age,
        },
    }))
}

/// A listening host.
#[napi]
pub struct NativeHost {
    /// `None` once closed; accepts in progress hold their own reference.
    host: Mutex<Option<Arc<Host>>>,
}

impl NativeHost {
    fn host(&self) -> Result<Arc<Host>> {
        self.host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| js_error(punktfunk_core::Error::closed("the host is closed")))
    }
}

/// Starts a host: loads or creates its identity and listens.
#[napi]
pub fn host_listen(opts: NativeHostOptions) -> Result<NativeHost> {
    guard(|| {
        let band = match (opts.adaptive_min, opts.adaptive_max) {
            (Some(min), Some(max)) if min <= max && max <= 100 => Some(FecBand {
                min: min as u8,
                max: max as u8,
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "adaptiveFec must be { min, max } with 0 <= min <= max <= 100",
                ))
            }
        };
        let cfg = HostConfig {
            identity_dir: match &opts.identity_dir {
                Some(d) => path(d, "identityDir")?,
                None => control::default_config_dir(),
            },
            bind: parse_addr(&opts.bind, "bind address")?,
            session: params_to_config(&opts.params)?,
            max_bitrate_kbps: (opts.max_bitrate_kbps.max(1.0) as u64).min(u32::MAX.into()) as u32,
            idle_timeout: ms(opts.idle_timeout_ms, "idleTimeoutMs")?,
            keepalive: ms(opts.keepalive_ms, "keepaliveMs")?,
            adaptive_fec: band,
            udp: udp_config(opts.socket_buffer, &opts.params)?,
            impairment: opts.impairment.as_ref().map(impairment_config).transpose()?,
            authorized_clients: opts
                .authorized_clients
                .as_ref()
                .map(|list| {
                    list.iter()
                        .enumerate()
                        .map(|(i, f)| {
                            Fingerprint::from_hex(f)
                                .map_err(|e| invalid(format!("authorizedClients[{i}]: {}", e.message())))
                        })
                        .collect::<Result<_>>()
                })
                .transpose()?,
            send_queue: opts.send_queue as usize,
            rate: rate_settings(&opts),
            max_total_kbps: opts.max_total_kbps,
            probe: ProbePolicy {
                enabled: opts.probes.unwrap_or(true),
                ceiling_kbps: opts.probe_ceiling_kbps.unwrap_or(0),
                ..ProbePolicy::default()
            },
            web: web_config(&opts)?,
            ..HostConfig::default()
        };
        let host = Host::listen(cfg).map_err(js_error)?;
        Ok(NativeHost {
            host: Mutex::new(Some(Arc::new(host))),
        })
    })
}

#[napi]
impl NativeHost {
    /// The QUIC address clients connect to.
    #[napi]
    pub fn address(&self) -> Result<String> {
        guard(|| Ok(self.host()?.local_addr().map_err(js_error)?.to_string()))
    }

    /// The certificate fingerprint clients pin (64 hex digits).
    #[napi]
    pub fn fingerprint(&self) -> Result<String> {
        guard(|| Ok(self.host()?.fingerprint().to_hex()))
    }

    /// SHA-256 of the certificate browsers pin now (64 hex digits), or `null`
    /// when the host does not serve browsers. It changes when the certificate
    /// is renewed: read it when handing it out.
    #[napi]
    pub fn web_certificate_hash(&self) -> Result<Option<String>> {
        guard(|| {
            Ok(self
                .host()?
                .web_certificate_hash()
                .map(|h| Fingerprint(h).to_hex()))
        })
    }

    /// Waits up to `timeout_ms` for a client and runs the handshake; resolves
    /// with its session, or `null` on timeout.
    #[napi(ts_return_type = "Promise<NativeSession | null>")]
    pub fn accept(&self, timeout_ms: f64, on_wake: Function<'_, u32, ()>) -> Result<AsyncTask<AcceptTask>> {
        guard(|| {
            Ok(AsyncTask::new(AcceptTask {
                host: self.host()?,
                timeout: ms(timeout_ms, "timeoutMs")?,
                waker: waker(&on_wake)?,
            }))
        })
    }

    /// Stops listening, closes every session with `reason` and releases the
    /// port (off the JS thread; pending accepts end first).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, reason: String) -> AsyncTask<HostCloseTask> {
        let host = self.host.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = &host {
            h.close(&reason);
        }
        AsyncTask::new(HostCloseTask { host })
    }
}

/// Drops a host off the JS thread (its close frames drain for up to 0.5 s).
pub struct HostCloseTask {
    host: Option<Arc<Host>>,
}

impl Task for HostCloseTask {
    type Output = Result<()>;
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            drop(self.host.take());
            Ok(())
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<()> {
        settle(&env, output)
    }
}

/// Accepts one client off the JS thread.
pub struct AcceptTask {
    host: Arc<Host>,
    timeout: Duration,
    waker: Arc<Waker>,
}

impl Task for AcceptTask {
    type Output = Result<Option<NativeSession>>;
    type JsValue = Option<NativeSession>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            let Some(session) = self.host.accept(Some(self.timeout)).map_err(js_error)? else {
                return Ok(None);
            };
            session.set_notify(Some(wake(&self.waker, WAKE_EVENT)));
            session
                .sender()
                .set_notify(Some(wake(&self.waker, WAKE_WRITABLE)));
            let stats = session.stats_handle();
            let workers = Workers {
                send: None,
                recv: None,
                host: Some(Arc::new(session)),
                client: None,
                udp: None,
            };
            Ok(Some(NativeSession::new(workers, stats)))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(&env, output)
    }
}

/// Client settings (normalised by the TS layer).
#[napi(object)]
pub struct NativeClientOptions {
    /// Pinned fingerprint (hex); exclusive with `tofu_dir`.
    pub pin: Option<String>,
    /// Trust on first use with this known-hosts file (default: the user's).
    pub known_hosts: Option<String>,
    /// Trust on first use (when no pin is given).
    pub trust_on_first_use: bool,
    /// Bitrate to ask for, kbit/s (0 = as granted).
    pub requested_bitrate_kbps: f64,
    /// Give up connecting after this long, ms.
    pub connect_timeout_ms: f64,
    /// A silent host is dropped after this long, ms.
    pub idle_timeout_ms: f64,
    /// Keep-alive interval, ms.
    pub keepalive_ms: f64,
    /// Local receive limits (FEC and shard size come from the host).
    pub params: NativeParams,
    /// Data socket buffer size, bytes.
    pub socket_buffer: f64,
    /// Events the receive queue holds.
    pub recv_queue: u32,
    /// Present the identity in this directory to the host (created on first use).
    pub identity_dir: Option<String>,
}

/// Connects to a host off the JS thread; resolves with the client session.
#[napi(ts_return_type = "Promise<NativeSession>")]
pub fn client_connect(
    address: String,
    opts: NativeClientOptions,
    on_wake: Function<'_, u32, ()>,
) -> Result<AsyncTask<ConnectTask>> {
    guard(|| {
        let host = parse_addr(&address, "host address")?;
        let trust = match (&opts.pin, opts.trust_on_first_use) {
            (Some(p), false) => Trust::Pin(Fingerprint::from_hex(p).map_err(js_error)?),
            (None, true) => Trust::Tofu(match &opts.known_hosts {
                Some(f) => path(f, "knownHosts")?,
                None => control::default_known_hosts(),
            }),
            (Some(_), true) => return Err(invalid("pass either pin or trustOnFirstUse, not both")),
            (None, false) => {
                return Err(invalid(
                    "say how to trust the host: { pin } or { trustOnFirstUse: true, knownHosts? }",
                ))
            }
        };
        let mut cfg = ClientConfig::new(trust);
        cfg.requested_bitrate_kbps =
            (opts.requested_bitrate_kbps.max(0.0) as u64).min(u32::MAX.into()) as u32;
        cfg.connect_timeout = ms(opts.connect_timeout_ms, "connectTimeoutMs")?;
        cfg.idle_timeout = ms(opts.idle_timeout_ms, "idleTimeoutMs")?;
        cfg.keepalive = ms(opts.keepalive_ms, "keepaliveMs")?;
        cfg.session = params_to_config(&opts.params)?;
        cfg.udp = udp_config(opts.socket_buffer, &opts.params)?;
        cfg.identity_dir = opts
            .identity_dir
            .as_deref()
            .map(|d| path(d, "identityDir"))
            .transpose()?;
        Ok(AsyncTask::new(ConnectTask {
            host,
            cfg: Some(cfg),
            waker: waker(&on_wake)?,
            recv_queue: opts.recv_queue,
        }))
    })
}

/// Connects off the JS thread.
pub struct ConnectTask {
    host: SocketAddr,
    cfg: Option<ClientConfig>,
    waker: Arc<Waker>,
    recv_queue: u32,
}

impl Task for ConnectTask {
    type Output = Result<NativeSession>;
    type JsValue = NativeSession;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            let cfg = self.cfg.take().ok_or_else(|| invalid("connect task reused"))?;
            let client = Client::connect(self.host, cfg).map_err(js_error)?;
            let (receiver, control) = client.split();
            let stats = FrameSource::stats_handle(&receiver);
            let recv = crate::lend::Receiving::spawn(
                receiver,
                self.recv_queue as usize,
                Some(wake(&self.waker, WAKE_READABLE)),
            )
            .map_err(js_error)?;
            let workers = Workers {
                send: None,
                recv: Some(recv),
                host: None,
                client: Some(Arc::new(control)),
                udp: None,
            };
            Ok(NativeSession::new(workers, stats))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(&env, output)
    }
}

/// An input event in JS form (`type` names the variant; unused fields are absent).
#[napi(object)]
#[derive(Default)]
pub struct NativeInput {
    /// `keyDown`, `keyUp`, `mouseMove`, `mouseMoveAbsolute`, `mouseButton`,
    /// `scroll`, `gamepadButtons` or `gamepadAxis`.
    pub r#type: String,
    /// Key code.
    pub code: Option<u32>,
    /// Horizontal delta (mouse move, scroll).
    pub dx: Option<i32>,
    /// Vertical delta (mouse move, scroll).
    pub dy: Option<i32>,
    /// Absolute x, 0..=65535.
    pub x: Option<u32>,
    /// Absolute y, 0..=65535.
    pub y: Option<u32>,
    /// Mouse button number.
    pub button: Option<u32>,
    /// Button pressed.
    pub down: Option<bool>,
    /// Gamepad number.
    pub pad: Option<u32>,
    /// Gamepad button bits.
    pub buttons: Option<u32>,
    /// Gamepad axis.
    pub axis: Option<u32>,
    /// Axis value.
    pub value: Option<i32>,
}

fn to_input(i: &NativeInput) -> Result<InputEvent> {
    let kind = InputKind::from_name(&i.r#type)
        .ok_or_else(|| invalid(format!("unknown input type {:?}", i.r#type)))?;
    let wide = |v: Option<u32>| v.map(i64::from);
    let fields = InputFields {
        code: i.code,
        dx: i.dx.map(i64::from),
        dy: i.dy.map(i64::from),
        x: wide(i.x),
        y: wide(i.y),
        button: wide(i.button),
        down: i.down,
        pad: wide(i.pad),
        buttons: i.buttons,
        axis: wide(i.axis),
        value: i.value.map(i64::from),
    };
    InputEvent::from_fields(kind, &fields).map_err(js_error)
}

fn from_input(e: &InputEvent) -> NativeInput {
    let f = e.fields();
    // Every field fits: fields() holds the event's own (narrower) values.
    let narrow = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let signed = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
    NativeInput {
        r#type: e.kind().name().into(),
        code: f.code,
        dx: signed(f.dx),
        dy: signed(f.dy),
        x: narrow(f.x),
        y: narrow(f.y),
        button: narrow(f.button),
        down: f.down,
        pad: narrow(f.pad),
        buttons: f.buttons,
        axis: narrow(f.axis),
        value: signed(f.value),
    }
}

/// Something the client told the host.
#[napi(object)]
pub struct NativeHostEvent {
    /// `input`, `keyframeRequest`, `fecChanged`, `targetBitrate` or `closed`.
    pub kind: String,
    /// The input event (`input`).
    pub input: Option<NativeInput>,
    /// First lost frame (`keyframeRequest`).
    pub first_lost: Option<f64>,
    /// New FEC percentage (`fecChanged`).
    pub percent: Option<u32>,
    /// Close code (`closed`).
    pub code: Option<u32>,
    /// Close reason (`closed`).
    pub reason: Option<String>,
    /// New media target, kbit/s (`targetBitrate`).
    pub kbps: Option<u32>,
}

/// How a session ended.
#[napi(object)]
pub struct NativeCloseReason {
    /// Close code (0 normal, 1 protocol, 2 idle, 3 host shutdown, 4 application).
    pub code: u32,
    /// Reason text.
    pub reason: String,
}

/// Speed-test result.
#[napi(object)]
pub struct NativeProbeResult {
    /// Rate asked for, kbit/s.
    pub target_kbps: f64,
    /// Rate delivered, kbit/s.
    pub delivered_kbps: f64,
    /// Lost datagrams, percent.
    pub loss_percent: f64,
    /// Datagrams the host dropped locally.
    pub send_drops: f64,
    /// Probe datagrams sent.
    pub packets_sent: f64,
    /// Probe datagrams received.
    pub packets_received: f64,
    /// Send duration, ms.
    pub duration_ms: f64,
    /// The rate the host sent at, kbit/s (below the target when it clamped
    /// the test to its ceiling, 0 when it refused it).
    pub rate_kbps: f64,
}

/// Facts about a control-plane session.
#[napi(object)]
pub struct NativeControlInfo {
    /// Session id, hex.
    pub session_id: String,
    /// Granted bitrate, kbit/s.
    pub granted_bitrate_kbps: u32,
    /// The peer's certificate fingerprint, hex: the host's on a client; on a
    /// host, the client's if it presented one.
    pub fingerprint: Option<String>,
    /// The client's QUIC address (host side).
    pub peer: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl NativeSession {
    fn with_host<T>(&self, f: impl FnOnce(&control::HostSession) -> Result<T>) -> Result<T> {
        let g = self.inner.lock();
        let w = g.as_ref().ok_or_else(Inner::closed)?;
        let h = w
            .host
            .as_ref()
            .ok_or_else(|| invalid("not a session accepted by a host"))?;
        f(h)
    }

    fn client_control(&self) -> Result<Arc<control::ClientControl>> {
        let g = self.inner.lock();
        let w = g.as_ref().ok_or_else(Inner::closed)?;
        w.client
            .clone()
            .ok_or_else(|| invalid("not a client connected to a host"))
    }
}

#[napi]
impl NativeSession {
    /// The next thing the client told the host, or `null`.
    #[napi]
    pub fn poll_host_event(&self) -> Result<Option<NativeHostEvent>> {
        guard(|| {
            self.with_host(|h| {
                let ev = match h.try_next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::Closed => return Ok(None),
                    Err(e) => return Err(js_error(e)),
                };
                let base = |kind: &str| NativeHostEvent {
                    kind: kind.into(),
                    input: None,
                    first_lost: None,
                    percent: None,
                    code: None,
                    reason: None,
                    kbps: None,
                };
                Ok(Some(match ev {
                    HostEvent::Input(i) => NativeHostEvent {
                        input: Some(from_input(&i)),
                        ..base("input")
                    },
                    HostEvent::KeyframeRequest { first_lost } => NativeHostEvent {
                        first_lost: Some(first_lost as f64),
                        ..base("keyframeRequest")
                    },
                    HostEvent::FecChanged { percent } => NativeHostEvent {
                        percent: Some(percent.into()),
                        ..base("fecChanged")
                    },
                    HostEvent::TargetBitrate { kbps } => NativeHostEvent {
                        kbps: Some(kbps),
                        ..base("targetBitrate")
                    },
                    HostEvent::Closed(r) => NativeHostEvent {
                        code: Some(r.code),
                        reason: Some(r.reason),
                        ..base("closed")
                    },
                }))
            })
        })
    }

    /// Session facts (control-plane sessions only).
    #[napi]
    pub fn control_info(&self) -> Result<Option<NativeControlInfo>> {
        guard(|| {
            let g = self.inner.lock();
            let Some(w) = g.as_ref() else { return Ok(None) };
            if let Some(h) = &w.host {
                return Ok(Some(NativeControlInfo {
                    session_id: hex(&h.session_id()),
                    granted_bitrate_kbps: h.granted_bitrate_kbps(),
                    fingerprint: h.client_fingerprint().map(|f| f.to_hex()),
                    peer: Some(h.peer().to_string()),
                }));
            }
            Ok(w.client.as_ref().map(|c| NativeControlInfo {
                session_id: String::new(),
                granted_bitrate_kbps: c.granted_bitrate_kbps(),
                fingerprint: Some(c.fingerprint().to_hex()),
                peer: None,
            }))
        })
    }

    /// The media bitrate the encoder should aim for now, kbit/s (host sessions).
    #[napi]
    pub fn target_kbps(&self) -> Result<u32> {
        guard(|| self.with_host(|h| Ok(h.target_bitrate_kbps())))
    }

    /// How a host session's frames travel: `native` (FEC datagrams) or `web`
    /// (a browser's WebTransport streams).
    #[napi(ts_return_type = "'native' | 'web'")]
    pub fn carrier(&self) -> Result<String> {
        guard(|| {
            self.with_host(|h| {
                Ok(match h.carrier() {
                    control::Carrier::Native => "native",
                    control::Carrier::Web => "web",
                }
                .to_string())
            })
        })
    }

    /// The FEC percentage in use (host sessions).
    #[napi]
    pub fn fec_percent(&self) -> Result<u32> {
        guard(|| self.with_host(|h| Ok(h.fec_percent().into())))
    }

    /// How the control connection ended, if it did.
    #[napi]
    pub fn close_reason(&self) -> Result<Option<NativeCloseReason>> {
        guard(|| {
            let g = self.inner.lock();
            let Some(w) = g.as_ref() else { return Ok(None) };
            let r = match (&w.host, &w.client) {
                (Some(h), _) => h.closed_reason(),
                (_, Some(c)) => c.closed_reason(),
                _ => None,
            };
            Ok(r.map(|r| NativeCloseReason {
                code: r.code,
                reason: r.reason,
            }))
        })
    }

    /// Sends an input event to the host (client sessions).
    #[napi]
    pub fn send_input(&self, event: NativeInput) -> Result<()> {
        guard(|| {
            let ev = to_input(&event)?;
            self.client_control()?.send_input(ev).map_err(js_error)
        })
    }

    /// Asks the host for a keyframe (client sessions).
    #[napi]
    pub fn request_keyframe(&self, first_lost: f64) -> Result<()> {
        guard(|| {
            let idx = super::to_u64(first_lost, "firstLost")?;
            self.client_control()?.request_keyframe(idx).map_err(js_error)
        })
    }

    /// Runs a speed test off the JS thread (client sessions).
    #[napi(ts_return_type = "Promise<NativeProbeResult>")]
    pub fn speed_test(&self, target_kbps: f64, duration_ms: f64) -> Result<AsyncTask<ProbeTask>> {
        guard(|| {
            let target = super::to_u64(target_kbps, "targetKbps")?;
            let target =
                u32::try_from(target).map_err(|_| invalid(format!("targetKbps {target} is too large")))?;
            Ok(AsyncTask::new(ProbeTask {
                control: self.client_control()?,
                target,
                duration: ms(duration_ms, "durationMs")?,
            }))
        })
    }
}

/// A speed test off the JS thread.
pub struct ProbeTask {
    control: Arc<control::ClientControl>,
    target: u32,
    duration: Duration,
}

impl Task for ProbeTask {
    type Output = Result<ProbeResult>;
    type JsValue = NativeProbeResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            self.control
                .speed_test(self.target, self.duration)
                .map_err(js_error)
        }))
    }

    fn resolve(&mut self, env: Env, r: Self::Output) -> napi::Result<NativeProbeResult> {
        let r = settle(&env, r)?;
        Ok(NativeProbeResult {
            target_kbps: r.target_kbps.into(),
            delivered_kbps: r.delivered_kbps,
            loss_percent: r.loss_percent,
            send_drops: r.send_drops as f64,
            packets_sent: r.packets_sent as f64,
            packets_received: r.packets_received as f64,
            duration_ms: r.duration.as_secs_f64() * 1e3,
            rate_kbps: r.rate_kbps.into(),
        })
    }
}

/// The input constants: gamepad button bits and axis numbers, by name.
#[napi(object)]
pub struct NativeInputConstants {
    /// `[name, bit]` pairs.
    pub buttons: Vec<(String, u32)>,
    /// `[name, number]` pairs.
    pub axes: Vec<(String, u32)>,
}

/// The input constants of the core.
#[napi]
pub fn input_constants() -> NativeInputConstants {
    let b = [
        ("A", button::A),
        ("B", button::B),
        ("X", button::X),
        ("Y", button::Y),
        ("LEFT_SHOULDER", button::LEFT_SHOULDER),
        ("RIGHT_SHOULDER", button::RIGHT_SHOULDER),
        ("BACK", button::BACK),
        ("START", button::START),
        ("GUIDE", button::GUIDE),
        ("LEFT_STICK", button::LEFT_STICK),
        ("RIGHT_STICK", button::RIGHT_STICK),
        ("DPAD_UP", button::DPAD_UP),
        ("DPAD_DOWN", button::DPAD_DOWN),
        ("DPAD_LEFT", button::DPAD_LEFT),
        ("DPAD_RIGHT", button::DPAD_RIGHT),
    ];
    let a = [
        ("LEFT_X", axis::LEFT_X),
        ("LEFT_Y", axis::LEFT_Y),
        ("RIGHT_X", axis::RIGHT_X),
        ("RIGHT_Y", axis::RIGHT_Y),
        ("LEFT_TRIGGER", axis::LEFT_TRIGGER),
        ("RIGHT_TRIGGER", axis::RIGHT_TRIGGER),
    ];
    NativeInputConstants {
        buttons: b.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        axes: a.iter().map(|(n, v)| (n.to_string(), u32::from(*v))).collect(),
    }
}
