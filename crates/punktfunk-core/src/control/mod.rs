//! The QUIC control plane (feature `quic`): host identity and pinning, the
//! `PKF1` handshake, key agreement, input, keyframe requests, FEC changes,
//! loss reports, the speed test and close reasons. docs/PROTOCOL.md §9 has the
//! message formats.
//!
//! The API is blocking, for threads of their own (and for the C ABI and the
//! Node.js binding, which call it from worker threads); QUIC itself runs on a
//! small tokio runtime owned by each [`Host`] and [`Client`].
//!
//! ```text
//! client                                   host
//!   bind data socket (UDP, port Pc)
//!   QUIC connect, ALPN punktfunk/1  ───────► certificate: pinned fingerprint or TOFU
//!   ClientHello{version, bitrate, Pc} ────►  bind data socket Ph, connect to client IP:Pc
//!                                     ◄────  ServerHello{session id, FEC, shard size, bitrate, Ph}
//!   connect data socket to host IP:Ph
//!   keys = HKDF(TLS exporter, session id)    keys = HKDF(TLS exporter, session id)
//!   Ready                             ────►  frames flow on the data plane
//! ```

mod adaptive;
mod identity;
pub mod msg;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::runtime::Runtime as TokioRuntime;

pub use adaptive::{AdaptiveFec, FecBand};
pub use identity::{
    default_config_dir, default_known_hosts, Fingerprint, Identity, KnownHosts, Trust, KNOWN_HOSTS_FILE,
};
pub use msg::{axis, button, close_code, CloseReason, InputEvent, InputFields, InputKind};

use crate::crypto::SessionKeys;
use crate::error::{Error, ErrorKind, Result};
use crate::session::{
    FrameEvent, FrameMeta, FrameReceiver, FrameSender, Role, Session, SessionConfig, SubmitReport,
};
use crate::stats::StatsSnapshot;
use crate::transport::{Impaired, ImpairmentConfig, UdpConfig, UdpTransport};
use identity::{ClientIdentityVerifier, PinVerifier};
use msg::{clip_reason, ControlMsg};

/// ALPN protocol id of the control connection.
pub const ALPN: &[u8] = b"punktfunk/1";
/// Highest bitrate a host grants, kbit/s.
pub const MAX_BITRATE_KBPS: u32 = 2_000_000;
/// Highest speed-test rate a client may ask for, kbit/s.
pub const MAX_PROBE_KBPS: u32 = 3_000_000;
/// Longest speed test, ms.
pub const MAX_PROBE_MS: u32 = 5_000;
/// TLS exporter label for the data-plane key secret (context: the session id).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-pkf1 data plane";
/// How often a client reports its receive counters.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// Host messages a client queues before dropping more (they are tiny; a host
/// that floods them only loses its own messages).
const CLIENT_EVENT_BACKLOG: usize = 256;
/// Receive buffer of a host's data socket, which expects no input.
const HOST_DATA_RECV_BUFFER: usize = 64 * 1024;
/// Reliable input sequence numbers remembered for de-duplication.
const INPUT_DEDUP_WINDOW: u32 = 4096;

type Ctrl = tokio::sync::mpsc::UnboundedSender<ControlMsg>;
/// The close reason a peer sent in its `Close` message, kept because closing
/// the connection locally in answer would otherwise hide it.
type CloseSlot = Arc<Mutex<Option<CloseReason>>>;

fn reason_of(slot: &CloseSlot, conn: &quinn::Connection) -> Option<CloseReason> {
    let stored = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    stored.or_else(|| conn.close_reason().map(|e| close_reason(&e)))
}
type DataSession = Arc<UdpTransport>;

type HostPath = crate::transport::DataPath;

/// The QUIC runtime of a host or client. Tasks hold it too, so the last
/// reference may go away on one of its own threads, where dropping a tokio
/// runtime (which waits for its threads) panics: there it shuts down in the
/// background instead.
struct Runtime(Option<TokioRuntime>);

impl std::ops::Deref for Runtime {
    type Target = TokioRuntime;
    fn deref(&self) -> &TokioRuntime {
        self.0.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

fn runtime() -> Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("punktfunk-quic")
        .enable_all()
        .build()
        .map(|rt| Arc::new(Runtime(Some(rt))))
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the QUIC runtime: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, msg)
}

fn io(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, what.to_string())
}

fn transport_config(idle: Duration, keepalive: Duration) -> Result<Arc<quinn::TransportConfig>> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle).map_err(|_| Error::invalid("idle timeout is too long"))?,
    ));
    t.keep_alive_interval(Some(keepalive));
    t.datagram_receive_buffer_size(Some(1 << 20));
    Ok(Arc::new(t))
}

/// The fingerprint of the certificate the peer presented in the TLS handshake, if any.
fn presented_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| Fingerprint::of(c))
}

/// The error for a handshake the host refused, if it did: an unauthorized
/// client learns why from the close reason.
fn refusal(conn: &quinn::Connection) -> Option<Error> {
    match conn.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code.into_inner() == u64::from(close_code::UNAUTHORIZED) =>
        {
            Some(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "the host refused this client: {}",
                    String::from_utf8_lossy(&c.reason)
                ),
            ))
        }
        _ => None,
    }
}

/// Maps how a QUIC connection ended to a close reason both sides understand.
fn close_reason(e: &quinn::ConnectionError) -> CloseReason {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => CloseReason {
            code: u32::try_from(c.error_code.into_inner()).unwrap_or(close_code::APPLICATION),
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        quinn::ConnectionError::TimedOut => CloseReason {
            code: close_code::IDLE,
            reason: "nothing heard from the peer within the idle timeout".into(),
        },
        quinn::ConnectionError::LocallyClosed => CloseReason {
            code: close_code::NORMAL,
            reason: "closed locally".into(),
        },
        other => CloseReason {
            code: close_code::PROTOCOL,
            reason: other.to_string(),
        },
    }
}

/// Closes a live connection whose peer broke the protocol, with the error as
/// the reason. On a connection that is already closed the read error is just
/// the close, whose own reason must survive, so nothing is done.
fn close_for_protocol_error(conn: &quinn::Connection, e: &Error) {
    if conn.close_reason().is_none() {
        let reason = clip_reason(&e.to_string()).to_string();
        conn.close(quinn::VarInt::from_u32(close_code::PROTOCOL), reason.as_bytes());
    }
}

/// Reads one control message, skipping unknown types; `Ok(None)` at the end of the stream.
async fn read_msg(recv: &mut quinn::RecvStream) -> Result<Option<ControlMsg>> {
    loop {
        let mut h = [0u8; msg::HEADER_LEN];
        match recv.read_exact(&mut h).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(protocol(format!("control stream: {e}"))),
        }
        // The length is checked against the type's bound before anything is buffered.
        let header = msg::decode_header(&h)?;
        let mut payload = vec![0u8; header.len];
        recv.read_exact(&mut payload)
            .await
            .map_err(|e| protocol(format!("control stream: {e}")))?;
        if header.known {
            return msg::decode_payload(header.type_id, &payload).map(Some);
        }
    }
}

/// Encodes a message for sending. Tests record every message sent, to check
/// that no key material ever appears on the control stream.
fn wire(m: &ControlMsg) -> Vec<u8> {
    let b = m.encode();
    #[cfg(test)]
    tests::SENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(b.clone());
    b
}

/// Writes queued control messages in order until the queue closes.
async fn write_loop(mut send: quinn::SendStream, mut rx: tokio::sync::mpsc::UnboundedReceiver<ControlMsg>) {
    while let Some(m) = rx.recv().await {
        if send.write_all(&wire(&m)).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// The key material of both directions (tests only).
#[cfg(test)]
fn material(keys: &SessionKeys) -> Vec<u8> {
    [keys.host_to_client.material(), keys.client_to_host.material()].concat()
}

fn exported_keys(conn: &quinn::Connection, session_id: &[u8; 16]) -> Result<SessionKeys> {
    let mut secret = [0u8; 32];
    conn.export_keying_material(&mut secret, EXPORTER_LABEL, session_id)
        .map_err(|_| Error::new(ErrorKind::Internal, "TLS keying-material export failed"))?;
    let keys = SessionKeys::derive(&secret, session_id);
    zeroize::Zeroize::zeroize(&mut secret);
    keys
}

/// Bounds a handshake step in time.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: no answer within {limit:?}")))?
}

// ---------------------------------------------------------------- host side

/// Host settings.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Where the certificate lives (created on first use).
    pub identity_dir: PathBuf,
    /// QUIC listen address (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Data-plane parameters offered to clients (FEC, shard size, frame limit).
    pub session: SessionConfig,
    /// Highest bitrate granted, kbit/s (clamped to [`MAX_BITRATE_KBPS`]).
    pub max_bitrate_kbps: u32,
    /// A client silent this long is dropped.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keepalive: Duration,
    /// Adaptive FEC band; `None` keeps the FEC percentage fixed.
    pub adaptive_fec: Option<FecBand>,
    /// Data-plane socket options.
    pub udp: UdpConfig,
    /// Longest a client may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// Simulated network impairment (loss, bursts, reordering...) applied to
    /// every client's data path as it leaves the host, for demos and tests of
    /// FEC over a real socket. `None` (the default) sends untouched.
    pub impairment: Option<ImpairmentConfig>,
    /// The clients admitted, by the fingerprint of the certificate each
    /// presents (`ClientConfig::identity_dir`). `None` (the default) admits
    /// any client that completes the handshake; `Some` refuses every other
    /// client, and those presenting none, with [`close_code::UNAUTHORIZED`]
    /// before a data path is opened for it.
    pub authorized_clients: Option<BTreeSet<Fingerprint>>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            identity_dir: default_config_dir(),
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            session: SessionConfig::default(),
            max_bitrate_kbps: MAX_BITRATE_KBPS,
            idle_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(2),
            adaptive_fec: Some(FecBand::default()),
            udp: UdpConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            impairment: None,
            authorized_clients: None,
        }
    }
}

/// A listening host. Each [`Host::accept`] returns one client's [`HostSession`].
pub struct Host {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    identity: Identity,
    /// Finished handshakes (sessions or the reason one failed), in order of
    /// completion: every connecting client gets its own handshake task, so a
    /// slow or silent one cannot hold up the others.
    ready: Mutex<tokio::sync::mpsc::Receiver<Result<HostSession>>>,
    /// The accept loop, which holds the runtime and the endpoint too.
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Handshakes finished but not yet taken by [`Host::accept`]; beyond this the
/// handshake tasks wait (and time out if nobody accepts).
const ACCEPT_BACKLOG: usize = 64;

/// Accepts every incoming connection and runs its handshake in a task of its own.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    config: HostConfig,
    rt: Arc<Runtime>,
    ready: tokio::sync::mpsc::Sender<Result<HostSession>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (config, rt, ready) = (config.clone(), rt.clone(), ready.clone());
        tokio::spawn(async move {
            let r = host_handshake(incoming, &config, rt).await;
            let _ = ready.send(r).await;
        });
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("fingerprint", &self.identity.fingerprint())
            .field("addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Loads (or creates) the identity and starts listening.
    pub fn listen(config: HostConfig) -> Result<Host> {
        config.session.validate()?;
        let identity = Identity::load_or_create(&config.identity_dir)?;
        Host::with_identity(config, identity)
    }

    /// Starts listening with a given identity.
    pub fn with_identity(config: HostConfig, identity: Identity) -> Result<Host> {
        config.session.validate()?;
        if let Some(imp) = &config.impairment {
            imp.validate()?;
        }
        let rt = runtime()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?
            .with_client_cert_verifier(Arc::new(ClientIdentityVerifier::new(provider())))
            .with_single_cert(identity.cert_chain(), identity.private_key())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("bad host certificate: {e}")))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport_config(config.idle_timeout, config.keepalive)?);
        let endpoint = {
            let _guard = rt.enter();
            quinn::Endpoint::server(server, config.bind)
                .map_err(|e| io(format!("cannot listen on {}: {e}", config.bind)))?
        };
        let (tx, rx) = tokio::sync::mpsc::channel(ACCEPT_BACKLOG);
        let accepting = rt.spawn(accept_loop(endpoint.clone(), config, rt.clone(), tx));
        Ok(Host {
            rt,
            endpoint,
            identity,
            ready: Mutex::new(rx),
            accepting: Mutex::new(Some(accepting)),
        })
    }

    /// The QUIC address clients connect to.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint.local_addr().map_err(Error::from)
    }

    /// The fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The next client whose handshake finished; `Ok(None)` if none finished
    /// within `timeout`. Handshakes run in the background as clients connect
    /// (each bounded by `handshake_timeout`), so a timeout here never cuts one
    /// off. A client that failed its handshake is reported as the error of
    /// this call; the host keeps listening.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Option<HostSession>> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let next = async {
            match ready.recv().await {
                Some(r) => r.map(Some),
                None => Err(Error::closed("the host is closed")),
            }
        };
        match timeout {
            None => self.rt.block_on(next),
            Some(t) => match self.rt.block_on(async { tokio::time::timeout(t, next).await }) {
                Ok(r) => r,
                Err(_) => Ok(None),
            },
        }
    }

    /// Stops listening and closes every connection with `reason`.
    pub fn close(&self, reason: &str) {
        self.endpoint.close(
            quinn::VarInt::from_u32(close_code::HOST_SHUTDOWN),
            reason.as_bytes(),
        );
    }
}

/// Longest a dropped host or client waits for its close frames to leave.
const DRAIN_ON_DROP: Duration = Duration::from_millis(500);

impl Drop for Host {
    fn drop(&mut self) {
        self.endpoint.close(
            quinn::VarInt::from_u32(close_code::HOST_SHUTDOWN),
            b"host shut down",
        );
        // The close frames are sent by the endpoint's driver on the runtime that
        // is about to stop: give them a moment to leave.
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(DRAIN_ON_DROP, self.endpoint.wait_idle()).await });
        // The accept loop ends with the endpoint; wait for it, so that its
        // reference to the runtime is gone and this one is the last (unless
        // sessions are still open). Dropping the last one here, off the
        // runtime, stops it before `drop` returns, and with it the endpoint's
        // socket: the port is free once the host is dropped.
        let accepting = self.accepting.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = accepting {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(DRAIN_ON_DROP, task).await });
        }
    }
}

/// What a client sent the host, besides frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// An input event.
    Input(InputEvent),
    /// The client lost frames from `first_lost` on and asks for a keyframe.
    KeyframeRequest {
        /// First lost frame index.
        first_lost: u64,
    },
    /// The adaptive FEC policy moved the FEC percentage after a loss report.
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// The connection ended; no more events follow.
    Closed(CloseReason),
}

struct HostShared {
    sender: Mutex<FrameSender<Arc<HostPath>>>,
    fec: Mutex<Option<AdaptiveFec>>,
    /// Input datagrams that could not be decoded, and input events dropped
    /// because the application left too many unread.
    input_dropped: AtomicU64,
    notify: Mutex<Option<crate::session::Notify>>,
    /// A speed test is running (one at a time per session).
    probing: std::sync::atomic::AtomicBool,
    /// Events queued and not yet taken by the application.
    queued: std::sync::atomic::AtomicUsize,
}

/// Most host events left unread before further input events are dropped
/// (and counted); other events are always queued, and are few.
const HOST_EVENT_BACKLOG: usize = 4096;

impl HostShared {
    /// The session's frame sender (shared with the speed-test task).
    fn sender(&self) -> std::sync::MutexGuard<'_, FrameSender<Arc<HostPath>>> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a frame, unless the client is gone.
    fn submit(
        &self,
        slot: &CloseSlot,
        conn: &quinn::Connection,
        data: &[u8],
        meta: FrameMeta,
        hurry: &dyn Fn() -> bool,
    ) -> Result<SubmitReport> {
        if let Some(r) = reason_of(slot, conn) {
            return Err(Error::closed(format!("the client is gone: {}", r.reason)));
        }
        let _ = hurry;
        // A paced frame holds the sender until its last datagram is out; a
        // speed test waits for it.
        crate::session::blocking::send_frame(&mut self.sender(), data, meta)
    }

    /// Queues an event for the application and wakes it if it asked to be
    /// woken. Input beyond [`HOST_EVENT_BACKLOG`] unread events is dropped and
    /// counted: memory stays bounded whatever the client sends.
    fn emit(&self, tx: &mpsc::Sender<HostEvent>, ev: HostEvent) {
        if matches!(ev, HostEvent::Input(_)) && self.queued.load(Ordering::Relaxed) >= HOST_EVENT_BACKLOG {
            self.input_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(ev).is_ok() {
            if let Some(n) = self.notify.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                n();
            }
        }
    }
}

/// One client's session on the host: send frames, read its events.
pub struct HostSession {
    #[cfg(test)]
    key_material: Vec<u8>,
    client_fingerprint: Option<Fingerprint>,
    rt: Arc<Runtime>,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    shared: Arc<HostShared>,
    events: Mutex<mpsc::Receiver<HostEvent>>,
    stats: crate::session::StatsHandle,
    peer: SocketAddr,
    data_peer: SocketAddr,
    session_id: [u8; 16],
    granted_bitrate_kbps: u32,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

async fn host_handshake(
    incoming: quinn::Incoming,
    cfg: &HostConfig,
    rt: Arc<Runtime>,
) -> Result<HostSession> {
    let limit = cfg.handshake_timeout;
    let conn = within(limit, "QUIC handshake", async {
        incoming
            .await
            .map_err(|e| protocol(format!("QUIC handshake failed: {e}")))
    })
    .await?;
    match host_handshake_on(conn.clone(), cfg, rt).await {
        Ok(s) => Ok(s),
        Err(e) => {
            // Tell the client why before dropping it.
            close_for_protocol_error(&conn, &e);
            Err(e)
        }
    }
}

async fn host_handshake_on(
    conn: quinn::Connection,
    cfg: &HostConfig,
    rt: Arc<Runtime>,
) -> Result<HostSession> {
    let client_fingerprint = presented_fingerprint(&conn);
    if let Some(allowed) = &cfg.authorized_clients {
        if !client_fingerprint.is_some_and(|f| allowed.contains(&f)) {
            let why = match client_fingerprint {
                Some(f) => format!("client {f} is not authorized on this host"),
                None => "this host admits only authorized clients; the client presented no identity".into(),
            };
            conn.close(
                quinn::VarInt::from_u32(close_code::UNAUTHORIZED),
                clip_reason(&why).as_bytes(),
            );
            return Err(Error::new(
                ErrorKind::Unauthorized,
                format!("refused {}: {why}", conn.remote_address()),
            ));
        }
    }
    let limit = cfg.handshake_timeout;
    let (send, mut recv) = within(limit, "control stream", async {
        conn.accept_bi()
            .await
            .map_err(|e| protocol(format!("no control stream: {e}")))
    })
    .await?;
    let hello = within(limit, "client hello", read_msg(&mut recv)).await?;
    let Some(ControlMsg::ClientHello {
        version,
        requested_bitrate_kbps,
        max_shard_payload,
        capabilities: _,
        data_port,
    }) = hello
    else {
        conn.close(
            quinn::VarInt::from_u32(close_code::PROTOCOL),
            b"expected a client hello",
        );
        return Err(protocol(format!("expected a client hello, got {hello:?}")));
    };
    if version != msg::CONTROL_VERSION {
        conn.close(
            quinn::VarInt::from_u32(close_code::PROTOCOL),
            b"unsupported version",
        );
        return Err(protocol(format!("client speaks control version {version}")));
    }
    // Only now, after an authenticated exchange, is a data path bound for this client.
    let peer = conn.remote_address();
    let data_peer = SocketAddr::new(peer.ip(), data_port);
    let local_ip = conn.local_ip().unwrap_or(if peer.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    });
    let udp = UdpTransport::bind_filtered(SocketAddr::new(local_ip, 0), data_peer, &cfg.udp)
        .map_err(|e| io(format!("cannot open the data socket for {data_peer}: {e}")))?;
    // The host only sends on its data socket: whatever arrives there is
    // unsolicited, is never read, and dies in a small kernel buffer (the
    // kernel counts those drops) instead of a 32 MiB one per client.
    #[cfg(target_os = "linux")]
    let _ = udp.set_recv_buffer(HOST_DATA_RECV_BUFFER);
    let mut session_cfg = cfg.session.clone();
    let shard = session_cfg
        .fec
        .shard_payload
        .min(usize::from(max_shard_payload) & !1);
    session_cfg.fec.shard_payload = shard;
    session_cfg
        .validate()
        .map_err(|e| protocol(format!("client limits rejected: {}", e.message())))?;
    let granted = match requested_bitrate_kbps {
        0 => cfg.max_bitrate_kbps,
        r => r.min(cfg.max_bitrate_kbps),
    }
    .min(MAX_BITRATE_KBPS);
    let mut session_id = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut session_id)
        .map_err(|_| Error::new(ErrorKind::Internal, "no randomness for the session id"))?;
    let data_port = udp.local_addr()?.port();
    let (ctrl, ctrl_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(write_loop(send, ctrl_rx));
    let _ = ctrl.send(ControlMsg::ServerHello {
        session_id,
        fec_percent: session_cfg.fec.fec_percent,
        max_data_shards: session_cfg.fec.max_data_per_block as u16,
        shard_payload: shard as u16,
        max_frame_bytes: session_cfg.max_frame_bytes.min(u32::MAX as usize) as u32,
        granted_bitrate_kbps: granted,
        data_port,
    });
    match within(limit, "ready", read_msg(&mut recv)).await? {
        Some(ControlMsg::Ready) => {}
        other => return Err(protocol(format!("expected ready, got {other:?}"))),
    }
    let keys = exported_keys(&conn, &session_id)?;
    let path = match &cfg.impairment {
        // Each client gets its own generator, seeded apart, so clients do not lose in lockstep.
        Some(imp) => HostPath::Impaired(Box::new(Impaired::new(
            udp,
            ImpairmentConfig {
                seed: imp.seed ^ u64::from_le_bytes(session_id[..8].try_into().unwrap_or_default()),
                ..imp.clone()
            },
        ))),
        None => HostPath::Plain(udp),
    };
    let session = Session::new(Role::Host, session_cfg.clone(), &keys, Arc::new(path))?;
    let (sender, _receiver) = session.split();
    let stats = sender.stats_handle();
    let shared = Arc::new(HostShared {
        sender: Mutex::new(sender),
        fec: Mutex::new(
            cfg.adaptive_fec
                .map(|band| AdaptiveFec::new(band, session_cfg.fec.fec_percent)),
        ),
        input_dropped: AtomicU64::new(0),
        notify: Mutex::new(None),
        probing: Default::default(),
        queued: Default::default(),
    });
    let (tx, events) = mpsc::channel();
    let dedup = Arc::new(Mutex::new(InputDedup::default()));
    let slot = CloseSlot::default();
    tokio::spawn(host_control_loop(
        recv,
        conn.clone(),
        slot.clone(),
        ctrl.clone(),
        shared.clone(),
        tx.clone(),
        dedup.clone(),
    ));
    tokio::spawn(host_datagram_loop(conn.clone(), shared.clone(), tx, dedup));
    Ok(HostSession {
        client_fingerprint,
        #[cfg(test)]
        key_material: material(&keys),
        rt,
        conn,
        slot,
        ctrl,
        shared,
        events: Mutex::new(events),
        stats,
        peer,
        data_peer,
        session_id,
        granted_bitrate_kbps: granted,
    })
}

/// Delivers each reliable input event once, whichever copy (datagram or
/// stream) arrives first.
#[derive(Default)]
struct InputDedup {
    seen: BTreeSet<u32>,
}

impl InputDedup {
    /// True the first time `seq` is offered. Remembers the last
    /// [`INPUT_DEDUP_WINDOW`] sequences offered (bounded whatever the client
    /// sends), so every later copy of one of them is refused.
    fn first(&mut self, seq: u32) -> bool {
        if !self.seen.insert(seq) {
            return false;
        }
        if self.seen.len() > INPUT_DEDUP_WINDOW as usize {
            self.seen.pop_first();
        }
        true
    }
}

async fn host_control_loop(
    mut recv: quinn::RecvStream,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    shared: Arc<HostShared>,
    tx: mpsc::Sender<HostEvent>,
    dedup: Arc<Mutex<InputDedup>>,
) {
    loop {
        let m = match read_msg(&mut recv).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                close_for_protocol_error(&conn, &e);
                break;
            }
        };
        match m {
            ControlMsg::KeyframeRequest { first_lost } => {
                shared.emit(&tx, HostEvent::KeyframeRequest { first_lost });
            }
            ControlMsg::Input { seq, event }
                if dedup.lock().unwrap_or_else(|p| p.into_inner()).first(seq) =>
            {
                shared.emit(&tx, HostEvent::Input(event));
            }
            ControlMsg::LossReport { .. } => {
                let change = shared
                    .fec
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .and_then(|a| a.on_report(&m));
                if let Some(pct) = change {
                    let applied = shared.sender().set_fec_percent(pct);
                    if applied.is_ok() {
                        let _ = ctrl.send(ControlMsg::FecChanged { percent: pct });
                        shared.emit(&tx, HostEvent::FecChanged { percent: pct });
                    }
                }
            }
            // One probe at a time: the guard claims the slot, and an
            // overlapping request falls through to the catch-all (ignored).
            ControlMsg::ProbeRequest {
                target_kbps,
                duration_ms,
            } if !shared.probing.swap(true, Ordering::AcqRel) => {
                let shared = shared.clone();
                let ctrl = ctrl.clone();
                tokio::task::spawn_blocking(move || {
                    let done = run_probe(
                        &shared,
                        target_kbps.min(MAX_PROBE_KBPS),
                        duration_ms.min(MAX_PROBE_MS),
                    );
                    shared.probing.store(false, Ordering::Release);
                    let _ = ctrl.send(done);
                });
            }
            ControlMsg::Close(r) => {
                // Store the reason first: a reader racing the close sees it.
                let (code, text) = (r.code, r.reason.clone());
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                conn.close(quinn::VarInt::from_u32(code), text.as_bytes());
                break;
            }
            // Host-bound streams carry nothing else; ignore what does not apply.
            _ => {}
        }
    }
    conn.closed().await;
    let reason = reason_of(&slot, &conn).unwrap_or(CloseReason {
        code: close_code::NORMAL,
        reason: String::new(),
    });
    shared.emit(&tx, HostEvent::Closed(reason));
}

async fn host_datagram_loop(
    conn: quinn::Connection,
    shared: Arc<HostShared>,
    tx: mpsc::Sender<HostEvent>,
    dedup: Arc<Mutex<InputDedup>>,
) {
    while let Ok(d) = conn.read_datagram().await {
        match msg::decode_input_datagram(&d) {
            Ok((seq, event)) => {
                let deliver =
                    !event.must_arrive() || dedup.lock().unwrap_or_else(|p| p.into_inner()).first(seq);
                if deliver {
                    shared.emit(&tx, HostEvent::Input(event));
                }
            }
            Err(_) => {
                shared.input_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends probe filler at `kbps` for `ms` through the data plane, paced in
/// 1 ms steps; never touches the frame index.
fn run_probe(shared: &HostShared, kbps: u32, ms: u32) -> ControlMsg {
    let datagram_bits = {
        let s = shared.sender();
        (s.datagram_len() * 8) as f64
    };
    let start = Instant::now();
    let duration = Duration::from_millis(ms.into());
    let per_sec = f64::from(kbps) * 1000.0 / datagram_bits;
    let (mut sent, mut drops) = (0u64, 0u64);
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        if due > sent + drops {
            let n = (due - sent - drops).min(4096) as usize;
            let r = shared.sender().send_probe(n);
            match r {
                Ok((s, d)) => {
                    sent += s as u64;
                    drops += d as u64;
                }
                Err(_) => break,
            }
        } else {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let bytes = sent * (datagram_bits as u64 / 8);
    ControlMsg::ProbeDone {
        packets_sent: sent,
        bytes_sent: bytes,
        send_drops: drops,
        duration_us: start.elapsed().as_micros() as u64,
    }
}

impl HostSession {
    /// Sends a frame to this client (see [`FrameSender::submit_frame`]).
    pub fn submit_frame(&self, data: &[u8], meta: FrameMeta) -> Result<SubmitReport> {
        self.shared.submit(&self.slot, &self.conn, data, meta, &|| false)
    }

    /// A handle that sends this session's frames from another thread (a
    /// [`FrameSink`](crate::session::FrameSink), e.g. for a `SendWorker`).
    pub fn sink(&self) -> HostSink {
        HostSink {
            shared: self.shared.clone(),
            conn: self.conn.clone(),
            slot: self.slot.clone(),
            stats: self.shared.sender().stats_handle(),
        }
    }

    /// Calls `notify` (from a network thread) whenever an event is queued; for
    /// waking an event loop instead of blocking in [`HostSession::next_event`].
    pub fn set_notify(&self, notify: Option<crate::session::Notify>) {
        *self.shared.notify.lock().unwrap_or_else(|p| p.into_inner()) = notify;
    }

    /// The next event if one is queued, without waiting. `ERR_PF_CLOSED` after
    /// the `Closed` event has been taken.
    pub fn try_next_event(&self) -> Result<Option<HostEvent>> {
        match self.events.lock().unwrap_or_else(|p| p.into_inner()).try_recv() {
            Ok(e) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Ok(Some(e))
            }
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(Error::closed("the session is closed")),
        }
    }

    /// The next event from the client, waiting up to `timeout`; `Ok(None)` on timeout.
    pub fn next_event(&self, timeout: Duration) -> Result<Option<HostEvent>> {
        match self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(timeout)
        {
            Ok(e) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Ok(Some(e))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::closed("the session is closed")),
        }
    }

    /// Sets the FEC percentage (and tells the client); adaptive FEC continues from it.
    pub fn set_fec_percent(&self, percent: u8) -> Result<()> {
        self.shared.sender().set_fec_percent(percent)?;
        if let Some(a) = self.shared.fec.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            a.set_current(percent);
        }
        let _ = self.ctrl.send(ControlMsg::FecChanged { percent });
        Ok(())
    }

    /// The FEC percentage in use.
    pub fn fec_percent(&self) -> u8 {
        self.shared.sender().fec_percent()
    }

    /// Data-plane counters of this session.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Input datagrams that could not be decoded (counted and dropped).
    pub fn input_dropped(&self) -> u64 {
        self.shared.input_dropped.load(Ordering::Relaxed)
    }

    /// The client's QUIC address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The fingerprint of the certificate the client presented (`None` if it
    /// presented none): what [`HostConfig::authorized_clients`] lists.
    pub fn client_fingerprint(&self) -> Option<Fingerprint> {
        self.client_fingerprint
    }

    /// The client's data-plane address (the only source the data socket accepts).
    pub fn data_peer(&self) -> SocketAddr {
        self.data_peer
    }

    /// This session's id (also bound into its keys).
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// The bitrate granted in the handshake, kbit/s.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.granted_bitrate_kbps
    }

    /// How the connection ended, if it did.
    pub fn closed_reason(&self) -> Option<CloseReason> {
        reason_of(&self.slot, &self.conn)
    }

    /// Closes the session with a code and reason the client can read; frames
    /// and messages already sent are delivered first. Waits up to a second.
    pub fn close(&self, code: u32, reason: &str) {
        close_conn(&self.rt, &self.conn, &self.ctrl, code, reason);
    }
}

/// Longest a graceful close waits for the peer to close the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Closes gracefully: the `Close` message goes down the control stream behind
/// everything already queued, the peer closes the connection with that code
/// and reason (so both ends read the same), and after [`CLOSE_WAIT`] without
/// an answer the connection is closed locally.
fn close_conn(rt: &Runtime, conn: &quinn::Connection, ctrl: &Ctrl, code: u32, reason: &str) {
    if conn.close_reason().is_some() {
        return;
    }
    let text = clip_reason(reason);
    let sent = ctrl
        .send(ControlMsg::Close(CloseReason {
            code,
            reason: text.to_string(),
        }))
        .is_ok();
    if sent {
        let _ = rt.block_on(async { tokio::time::timeout(CLOSE_WAIT, conn.closed()).await });
    }
    if conn.close_reason().is_none() {
        conn.close(quinn::VarInt::from_u32(code), text.as_bytes());
    }
}

/// Sends a host session's frames from any thread (see [`HostSession::sink`]).
pub struct HostSink {
    shared: Arc<HostShared>,
    conn: quinn::Connection,
    slot: CloseSlot,
    stats: crate::session::StatsHandle,
}

impl std::fmt::Debug for HostSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSink").finish_non_exhaustive()
    }
}

impl crate::session::FrameSink for HostSink {
    fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<()> {
        if let Some(r) = reason_of(&self.slot, &self.conn) {
            return Err(Error::closed(format!("the client is gone: {}", r.reason)));
        }
        self.shared.sender().push_frame(data, meta, now).map(|_| ())
    }

    fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>> {
        self.shared.sender().poll_transmit(now)
    }

    fn flush(&mut self) -> Result<()> {
        self.shared.sender().flush()
    }

    fn set_fec_percent(&mut self, pct: u8) -> Result<()> {
        self.shared.sender().set_fec_percent(pct)
    }

    fn max_frame_bytes(&self) -> usize {
        self.shared.sender().max_frame_bytes()
    }

    fn stats_handle(&self) -> crate::session::StatsHandle {
        self.stats.clone()
    }
}

// -------------------------------------------------------------- client side

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How to trust the host.
    pub trust: Trust,
    /// Bitrate to ask for, kbit/s (0 = as much as the host grants).
    pub requested_bitrate_kbps: u32,
    /// Largest shard payload accepted.
    pub max_shard_payload: u16,
    /// Local receive limits (the FEC and shard fields come from the host).
    pub session: SessionConfig,
    /// Data-plane socket options.
    pub udp: UdpConfig,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// A silent host is dropped after this long.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keepalive: Duration,
    /// Present the identity in this directory (created on first use, the
    /// same kind a host has) to the host, which may admit clients by its
    /// fingerprint (`HostConfig::authorized_clients`). `None` (the default)
    /// presents none.
    pub identity_dir: Option<PathBuf>,
}

impl ClientConfig {
    /// Settings that trust `trust`, with defaults for the rest.
    pub fn new(trust: Trust) -> ClientConfig {
        ClientConfig {
            trust,
            requested_bitrate_kbps: 0,
            max_shard_payload: crate::fec::MAX_SHARD_PAYLOAD as u16,
            session: SessionConfig::default(),
            udp: UdpConfig::default(),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(2),
            identity_dir: None,
        }
    }
}

/// What the host told the client, besides frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The host changed the FEC percentage.
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// The connection ended.
    Closed(CloseReason),
}

/// Result of a speed test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeResult {
    /// Rate asked for, kbit/s.
    pub target_kbps: u32,
    /// Rate that arrived, kbit/s (wire bytes of delivered probe datagrams over the host's send time).
    pub delivered_kbps: f64,
    /// Datagrams the host sent that did not arrive, percent.
    pub loss_percent: f64,
    /// Datagrams the host dropped locally (its socket buffer was full).
    pub send_drops: u64,
    /// Probe datagrams sent by the host.
    pub packets_sent: u64,
    /// Probe datagrams received.
    pub packets_received: u64,
    /// How long the host sent.
    pub duration: Duration,
}

/// The control half of a connected client: input, keyframe requests, speed
/// test, host messages, close. Usable from any thread while a
/// [`ClientReceiver`] runs elsewhere (see [`Client::split`]).
pub struct ClientControl {
    #[cfg(test)]
    key_material: Vec<u8>,
    /// Tests: pretend every input datagram is lost.
    #[cfg(test)]
    drop_datagrams: std::sync::atomic::AtomicBool,
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    events: Mutex<mpsc::Receiver<HostMessage>>,
    /// Host events read while a speed test waited for its result, for `poll_event`.
    held: Mutex<std::collections::VecDeque<ClientEvent>>,
    input_seq: std::sync::atomic::AtomicU32,
    stats: crate::session::StatsHandle,
    datagram_len: usize,
    fingerprint: Fingerprint,
    granted_bitrate_kbps: u32,
    session_id: [u8; 16],
}

impl Drop for ClientControl {
    fn drop(&mut self) {
        close_conn(
            &self.rt,
            &self.conn,
            &self.ctrl,
            close_code::NORMAL,
            "client closed",
        );
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(DRAIN_ON_DROP, self.endpoint.wait_idle()).await });
    }
}

impl std::fmt::Debug for ClientControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientControl")
            .field("host", &self.conn.remote_address())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The receiving half of a connected client (a [`FrameSource`](crate::session::FrameSource)).
pub struct ClientReceiver {
    receiver: FrameReceiver<DataSession>,
    conn: quinn::Connection,
    slot: CloseSlot,
    pending: std::collections::VecDeque<FrameEvent>,
}

impl std::fmt::Debug for ClientReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReceiver").finish_non_exhaustive()
    }
}

impl ClientReceiver {
    /// Waits up to `timeout` for the next frame event (see
    /// [`FrameReceiver::recv_frame`]). Fails with `ERR_PF_CLOSED` once the
    /// session ended and nothing is left to deliver.
    pub fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        let wait = self.receiver.recv_wait();
        match crate::session::blocking::recv_frame(&mut self.receiver, timeout, wait)? {
            Some(ev) => Ok(Some(ev)),
            None => match reason_of(&self.slot, &self.conn) {
                Some(r) => Err(Error::closed(format!("the session ended: {}", r.reason))),
                None => Ok(None),
            },
        }
    }

    /// Returns a delivered frame's buffer for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.receiver.recycle(buf);
    }

    /// Data-plane counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.receiver.stats()
    }
}

impl crate::session::FrameSource for ClientReceiver {
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        ClientReceiver::recv_frame(self, timeout)
    }
    fn stats_handle(&self) -> crate::session::StatsHandle {
        self.receiver.stats_handle()
    }
}

/// A client connected to a host: receives frames, sends input. Use it from
/// one thread, or [`Client::split`] it into a receiver and a control handle.
pub struct Client {
    receiver: ClientReceiver,
    control: ClientControl,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.control.fmt(f)
    }
}

/// Host messages routed to the client's user thread.
enum HostMessage {
    Event(ClientEvent),
    ProbeDone {
        packets_sent: u64,
        send_drops: u64,
        duration_us: u64,
    },
}

impl Client {
    /// Connects to a host, checks its identity, runs the handshake and opens
    /// the data plane. A wrong fingerprint fails with `ERR_PF_PIN_MISMATCH`
    /// before any data flows; no answer fails with `ERR_PF_TIMEOUT` after
    /// `connect_timeout`.
    pub fn connect(host: SocketAddr, config: ClientConfig) -> Result<Client> {
        config.session.validate()?;
        let rt = runtime()?;
        let known = match &config.trust {
            Trust::Pin(_) => None,
            Trust::Tofu(path) => Some(KnownHosts::at(path.clone())),
        };
        let expected = match (&config.trust, &known) {
            (Trust::Pin(fp), _) => Some(*fp),
            (Trust::Tofu(_), Some(k)) => k.lookup(&host.to_string())?,
            _ => None,
        };
        let verifier = Arc::new(PinVerifier::new(expected, provider()));
        let seen = verifier.seen.clone();
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match &config.identity_dir {
            None => tls.with_no_client_auth(),
            Some(dir) => {
                let me = Identity::load_or_create(dir)?;
                tls.with_client_auth_cert(me.cert_chain(), me.private_key())
                    .map_err(|e| Error::new(ErrorKind::Internal, format!("bad client certificate: {e}")))?
            }
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut client_cfg = quinn::ClientConfig::new(Arc::new(crypto));
        client_cfg.transport_config(transport_config(config.idle_timeout, config.keepalive)?);
        let local: SocketAddr = if host.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = {
            let _guard = rt.enter();
            quinn::Endpoint::client(local).map_err(|e| io(format!("cannot open a QUIC socket: {e}")))?
        };
        endpoint.set_default_client_config(client_cfg);
        let limit = config.connect_timeout;
        let result = rt.block_on(within(limit, &format!("connecting to {host}"), async {
            let connecting = endpoint
                .connect(host, "punktfunk.invalid")
                .map_err(|e| Error::invalid(format!("cannot connect to {host}: {e}")))?;
            let conn = connecting.await.map_err(|e| {
                if seen.lock().unwrap_or_else(|p| p.into_inner()).mismatch {
                    let got = seen.lock().unwrap_or_else(|p| p.into_inner()).fingerprint;
                    Error::new(
                        ErrorKind::PinMismatch,
                        format!(
                            "host {host} presented fingerprint {}, expected {}; refusing to connect",
                            got.map(|f| f.to_hex()).unwrap_or_default(),
                            expected.map(|f| f.to_hex()).unwrap_or_default()
                        ),
                    )
                } else {
                    protocol(format!("QUIC handshake with {host} failed: {e}"))
                }
            })?;
            // A host that refuses this client closes the connection; say so
            // rather than what the failed read saw.
            client_handshake(conn.clone(), host, &config)
                .await
                .map_err(|e| refusal(&conn).unwrap_or(e))
        }));
        let (conn, slot, ctrl, receiver, events, hello) = match result {
            Ok(v) => v,
            Err(e) => {
                endpoint.close(
                    quinn::VarInt::from_u32(close_code::PROTOCOL),
                    e.message().as_bytes(),
                );
                return Err(e);
            }
        };
        let fingerprint = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fingerprint
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no certificate seen"))?;
        if let (Some(k), None) = (&known, expected) {
            k.record(&host.to_string(), fingerprint)?;
        }
        let stats = receiver.stats_handle();
        let datagram_len = receiver.datagram_len();
        Ok(Client {
            receiver: ClientReceiver {
                receiver,
                conn: conn.clone(),
                slot: slot.clone(),
                pending: Default::default(),
            },
            control: ClientControl {
                #[cfg(test)]
                key_material: hello.2,
                #[cfg(test)]
                drop_datagrams: Default::default(),
                rt,
                endpoint,
                conn,
                slot,
                ctrl,
                events: Mutex::new(events),
                held: Mutex::default(),
                input_seq: Default::default(),
                stats,
                datagram_len,
                fingerprint,
                granted_bitrate_kbps: hello.0,
                session_id: hello.1,
            },
        })
    }

    /// Splits into the receiving half (for a thread of its own, e.g. a
    /// [`RecvWorker`](crate::session::RecvWorker)) and the control half.
    pub fn split(self) -> (ClientReceiver, ClientControl) {
        (self.receiver, self.control)
    }

    /// The control half.
    pub fn control(&self) -> &ClientControl {
        &self.control
    }

    /// The host's fingerprint (as pinned or first seen).
    pub fn fingerprint(&self) -> Fingerprint {
        self.control.fingerprint
    }

    /// The bitrate the host granted, kbit/s.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.control.granted_bitrate_kbps
    }

    /// This session's id.
    pub fn session_id(&self) -> [u8; 16] {
        self.control.session_id
    }

    /// Waits up to `timeout` for the next frame event; `ERR_PF_CLOSED` once the
    /// host ended the session and nothing is left.
    pub fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        self.receiver.recv_frame(timeout)
    }

    /// Returns a delivered frame's buffer for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.receiver.recycle(buf);
    }

    /// Asks the host for a keyframe (see [`ClientControl::request_keyframe`]).
    pub fn request_keyframe(&self, first_lost: u64) -> Result<()> {
        self.control.request_keyframe(first_lost)
    }

    /// Sends an input event (see [`ClientControl::send_input`]).
    pub fn send_input(&self, event: InputEvent) -> Result<()> {
        self.control.send_input(event)
    }

    /// Runs a speed test, reading the data plane meanwhile; frames arriving
    /// during the test are kept for later `recv_frame` calls.
    pub fn speed_test(&mut self, target_kbps: u32, duration: Duration) -> Result<ProbeResult> {
        let Client { receiver, control } = self;
        control.speed_test_with(target_kbps, duration, |wait| {
            let rw = receiver.receiver.recv_wait();
            if let Some(ev) = crate::session::blocking::recv_frame(&mut receiver.receiver, wait, rw)? {
                receiver.pending.push_back(ev);
            }
            Ok(())
        })
    }

    /// The next message from the host (FEC changes, close), if one is waiting.
    pub fn poll_event(&self) -> Option<ClientEvent> {
        self.control.poll_event()
    }

    /// Data-plane counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.receiver.stats()
    }

    /// How the connection ended, if it did.
    pub fn closed_reason(&self) -> Option<CloseReason> {
        self.control.closed_reason()
    }

    /// Closes the session (see [`ClientControl::close`]).
    pub fn close(&self, code: u32, reason: &str) {
        self.control.close(code, reason)
    }
}

impl ClientControl {
    /// The host's fingerprint (as pinned or first seen).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The bitrate the host granted, kbit/s.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.granted_bitrate_kbps
    }

    /// Asks the host for a keyframe (frames from `first_lost` on were lost).
    pub fn request_keyframe(&self, first_lost: u64) -> Result<()> {
        self.send_ctrl(ControlMsg::KeyframeRequest { first_lost })
    }

    fn send_ctrl(&self, m: ControlMsg) -> Result<()> {
        if let Some(r) = self.closed_reason() {
            return Err(Error::closed(format!("the session is closed: {}", r.reason)));
        }
        self.ctrl
            .send(m)
            .map_err(|_| Error::closed("the session is closed"))
    }

    /// Sends an input event: as a QUIC datagram (lowest latency), and for key
    /// and button edges also on the reliable stream, so they cannot be lost
    /// (the host delivers whichever copy arrives first).
    pub fn send_input(&self, event: InputEvent) -> Result<()> {
        let seq = self.input_seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if let Some(r) = self.closed_reason() {
            return Err(Error::closed(format!("the session is closed: {}", r.reason)));
        }
        let d = msg::encode_input_datagram(seq, &event);
        #[cfg(test)]
        let lost = self.drop_datagrams.load(Ordering::Relaxed);
        #[cfg(not(test))]
        let lost = false;
        let datagram_ok = lost || self.conn.send_datagram(bytes::Bytes::copy_from_slice(&d)).is_ok();
        if event.must_arrive() || !datagram_ok {
            self.send_ctrl(ControlMsg::Input { seq, event })?;
        }
        Ok(())
    }

    /// Runs a speed test while another thread keeps reading the data plane
    /// (a split client's receiver, e.g. in a `RecvWorker`).
    pub fn speed_test(&self, target_kbps: u32, duration: Duration) -> Result<ProbeResult> {
        self.speed_test_with(target_kbps, duration, |wait| {
            std::thread::sleep(wait);
            Ok(())
        })
    }

    /// The speed test; `pump(wait)` keeps the data plane read for about `wait`.
    fn speed_test_with(
        &self,
        target_kbps: u32,
        duration: Duration,
        mut pump: impl FnMut(Duration) -> Result<()>,
    ) -> Result<ProbeResult> {
        if target_kbps == 0 || target_kbps > MAX_PROBE_KBPS {
            return Err(Error::invalid(format!(
                "target {target_kbps} kbit/s is outside 1..={MAX_PROBE_KBPS}"
            )));
        }
        let ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
        if ms == 0 || ms > MAX_PROBE_MS {
            return Err(Error::invalid(format!(
                "probe duration {ms} ms is outside 1..={MAX_PROBE_MS}"
            )));
        }
        // A result left over from an earlier test that timed out is not ours.
        loop {
            let next = self.events.lock().unwrap_or_else(|p| p.into_inner()).try_recv();
            match next {
                Ok(HostMessage::Event(e)) => self.hold(e),
                Ok(HostMessage::ProbeDone { .. }) => {}
                Err(_) => break,
            }
        }
        let before = self.stats.snapshot().probe_packets_received;
        self.send_ctrl(ControlMsg::ProbeRequest {
            target_kbps,
            duration_ms: ms,
        })?;
        let deadline = Instant::now() + duration + Duration::from_secs(5);
        let done = loop {
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the host did not finish the speed test",
                ));
            }
            pump(Duration::from_millis(5))?;
            let next = self.events.lock().unwrap_or_else(|p| p.into_inner()).try_recv();
            match next {
                Ok(HostMessage::ProbeDone {
                    packets_sent,
                    send_drops,
                    duration_us,
                }) => break (packets_sent, send_drops, duration_us),
                Ok(HostMessage::Event(ClientEvent::Closed(r))) => {
                    return Err(Error::closed(format!(
                        "the host closed the session: {}",
                        r.reason
                    )))
                }
                Ok(HostMessage::Event(e)) => self.hold(e),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => return Err(Error::closed("the session is closed")),
            }
        };
        // Datagrams still in flight or in the socket buffer: read for a moment more.
        let grace = Instant::now() + Duration::from_millis(150);
        while Instant::now() < grace {
            pump(Duration::from_millis(10))?;
        }
        let received = self.stats.snapshot().probe_packets_received - before;
        let (sent, drops, us) = done;
        let secs = (us as f64 / 1e6).max(1e-6);
        let datagram_bits = (self.datagram_len * 8) as f64;
        Ok(ProbeResult {
            target_kbps,
            delivered_kbps: received as f64 * datagram_bits / secs / 1000.0,
            loss_percent: if sent == 0 {
                0.0
            } else {
                (sent.saturating_sub(received)) as f64 * 100.0 / sent as f64
            },
            send_drops: drops,
            packets_sent: sent,
            packets_received: received,
            duration: Duration::from_micros(us),
        })
    }

    /// Keeps a host event for `poll_event` (the oldest goes beyond the bound).
    fn hold(&self, e: ClientEvent) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= CLIENT_EVENT_BACKLOG {
            held.pop_front();
        }
        held.push_back(e);
    }

    /// The next message from the host (FEC changes, close), if one is waiting.
    pub fn poll_event(&self) -> Option<ClientEvent> {
        if let Some(e) = self.held.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
            return Some(e);
        }
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match events.try_recv() {
                Ok(HostMessage::Event(e)) => return Some(e),
                Ok(HostMessage::ProbeDone { .. }) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Data-plane counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// How the connection ended, if it did.
    pub fn closed_reason(&self) -> Option<CloseReason> {
        reason_of(&self.slot, &self.conn)
    }

    /// Closes the session with a code and reason the host can read; input and
    /// messages already sent are delivered first. Waits up to a second.
    pub fn close(&self, code: u32, reason: &str) {
        close_conn(&self.rt, &self.conn, &self.ctrl, code, reason);
    }
}

type Handshake = (
    quinn::Connection,
    CloseSlot,
    Ctrl,
    FrameReceiver<DataSession>,
    mpsc::Receiver<HostMessage>,
    (u32, [u8; 16], Vec<u8>),
);

async fn client_handshake(
    conn: quinn::Connection,
    host: SocketAddr,
    cfg: &ClientConfig,
) -> Result<Handshake> {
    let local_ip = conn.local_ip().unwrap_or(if host.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    });
    let udp = UdpTransport::bind(SocketAddr::new(local_ip, 0), &cfg.udp)
        .map_err(|e| io(format!("cannot open the data socket: {e}")))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| protocol(format!("no control stream: {e}")))?;
    let hello = ControlMsg::ClientHello {
        version: msg::CONTROL_VERSION,
        requested_bitrate_kbps: cfg.requested_bitrate_kbps,
        max_shard_payload: cfg.max_shard_payload,
        capabilities: msg::CAP_PROBE | msg::CAP_INPUT,
        data_port: udp.local_addr()?.port(),
    };
    send.write_all(&wire(&hello))
        .await
        .map_err(|e| protocol(format!("control stream: {e}")))?;
    let hello = read_msg(&mut recv).await?;
    let Some(ControlMsg::ServerHello {
        session_id,
        fec_percent,
        max_data_shards,
        shard_payload,
        max_frame_bytes,
        granted_bitrate_kbps,
        data_port,
    }) = hello
    else {
        return Err(protocol(format!("expected a server hello, got {hello:?}")));
    };
    if shard_payload > cfg.max_shard_payload {
        return Err(protocol(format!(
            "host chose shard payload {shard_payload}, above the {} asked for",
            cfg.max_shard_payload
        )));
    }
    let mut session_cfg = cfg.session.clone();
    session_cfg.fec = crate::fec::FecConfig {
        fec_percent,
        max_data_per_block: max_data_shards.into(),
        shard_payload: shard_payload.into(),
    };
    session_cfg.max_frame_bytes = session_cfg.max_frame_bytes.min(max_frame_bytes as usize).max(1);
    session_cfg
        .validate()
        .map_err(|e| protocol(format!("host parameters rejected: {}", e.message())))?;
    // Only the host's data socket may feed this session; others are counted.
    udp.set_filter_peer(SocketAddr::new(conn.remote_address().ip(), data_port));
    let keys = exported_keys(&conn, &session_id)?;
    #[cfg(test)]
    let km = material(&keys);
    #[cfg(not(test))]
    let km = Vec::new();
    let session = Session::new(Role::Client, session_cfg, &keys, Arc::new(udp))?;
    let (_sender, receiver) = session.split();
    // Ready is written before connect returns, so a client that closes at
    // once still completes the handshake the host is waiting on.
    send.write_all(&wire(&ControlMsg::Ready))
        .await
        .map_err(|e| protocol(format!("control stream: {e}")))?;
    let (ctrl, ctrl_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(write_loop(send, ctrl_rx));
    let (tx, events) = mpsc::sync_channel(CLIENT_EVENT_BACKLOG);
    let slot = CloseSlot::default();
    tokio::spawn(client_control_loop(recv, conn.clone(), slot.clone(), tx));
    tokio::spawn(loss_report_loop(
        conn.clone(),
        ctrl.clone(),
        receiver.stats_handle(),
    ));
    Ok((
        conn,
        slot,
        ctrl,
        receiver,
        events,
        (granted_bitrate_kbps, session_id, km),
    ))
}

async fn client_control_loop(
    mut recv: quinn::RecvStream,
    conn: quinn::Connection,
    slot: CloseSlot,
    tx: mpsc::SyncSender<HostMessage>,
) {
    loop {
        match read_msg(&mut recv).await {
            Ok(Some(ControlMsg::FecChanged { percent })) => {
                let _ = tx.try_send(HostMessage::Event(ClientEvent::FecChanged { percent }));
            }
            Ok(Some(ControlMsg::ProbeDone {
                packets_sent,
                send_drops,
                duration_us,
                ..
            })) => {
                let _ = tx.try_send(HostMessage::ProbeDone {
                    packets_sent,
                    send_drops,
                    duration_us,
                });
            }
            Ok(Some(ControlMsg::Close(r))) => {
                let (code, text) = (r.code, r.reason.clone());
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                conn.close(quinn::VarInt::from_u32(code), text.as_bytes());
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                close_for_protocol_error(&conn, &e);
                break;
            }
        }
    }
    conn.closed().await;
    let reason = reason_of(&slot, &conn).unwrap_or(CloseReason {
        code: close_code::NORMAL,
        reason: String::new(),
    });
    let _ = tx.try_send(HostMessage::Event(ClientEvent::Closed(reason)));
}

/// Sends the client's cumulative receive counters every [`LOSS_REPORT_INTERVAL`].
async fn loss_report_loop(conn: quinn::Connection, ctrl: Ctrl, stats: crate::session::StatsHandle) {
    let mut tick = tokio::time::interval(LOSS_REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = stats.snapshot();
                let report = ControlMsg::LossReport {
                    frames_completed: s.frames_completed,
                    frames_dropped: s.frames_dropped,
                    fec_recovered_shards: s.fec_recovered_shards,
                    packets_received: s.packets_received,
                };
                if ctrl.send(report).is_err() {
                    return;
                }
            }
            _ = conn.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
