//! The host driver: listening, accepting, and running each client's
//! handshake ([`proto::host`]) on quinn. Sessions are in [`super::host_session`].

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicServerConfig;

use crate::error::{Error, ErrorKind, Result};
use crate::session::{Role, Session, SessionConfig, MAX_WORKER_QUEUE};
use crate::transport::{DataPath, ImpairmentConfig, UdpConfig, UdpTransport};
use crate::wire::PATH_TOKEN_LEN;

use super::adaptive::FecBand;
use super::governor::{Governor, Share};
use super::host_rate::RateSettings;
use super::host_session::{HostSession, ParkedSession, SessionParts};
use super::identity::{default_config_dir, ClientIdentityVerifier, Fingerprint, Identity};
use super::msg::{clip_reason, close_code};
use super::proto::host::{AwaitingHello, HostOffer, PathStep, ProbePolicy};
use super::runtime::{
    close_for_error, exported_keys, io, presented_fingerprint, provider, random, read_msg, runtime,
    transport_config, within, write_msg, Hooks, Runtime, DRAIN_ON_DROP,
};
use super::web::session as websession;
use super::web::{HostCerts, WebConfig, WEB_ALPN};
use super::{ALPN, MAX_BITRATE_KBPS};

/// Receive buffer of a host's data socket, which expects no input.
const HOST_DATA_RECV_BUFFER: usize = 64 * 1024;

/// Handshakes finished but not yet taken by [`Host::accept`]; beyond this the
/// handshake tasks wait (and time out if nobody accepts).
const ACCEPT_BACKLOG: usize = 64;

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
    /// Frames each session's send queue holds (`1..=1024`, default 4): the
    /// back-pressure a submitter feels ([`HostSession::sender`]).
    pub send_queue: usize,
    /// How the host answers speed tests: on or off, their rate ceiling, a
    /// time budget per client, how many at once.
    pub probe: ProbePolicy,
    /// A finished handshake not taken by [`Host::accept`] within this long is
    /// closed (default 10 s).
    pub accept_timeout: Duration,
    /// How each session adapts to its path: rate control on or off, the
    /// bitrate a session starts at and its floor (the ceiling is the granted
    /// bitrate, [`HostConfig::max_bitrate_kbps`]).
    pub rate: RateSettings,
    /// A ceiling on all sessions together, kbit/s on the wire (`None`, the
    /// default: none): one uplink shared max-min fairly, so no session starves.
    pub max_total_kbps: Option<u32>,
    /// Handshakes in progress at once (default 32); beyond, a connection is
    /// refused. Every new connection is first sent a QUIC Retry, so an address
    /// that cannot receive costs the host no TLS signature.
    pub max_handshakes: usize,
    /// Serve browsers too (default `None`: native clients only): WebTransport
    /// on the same UDP port, told apart by ALPN (docs/WEB.md). The host then
    /// keeps a short-lived certificate for browsers beside its identity
    /// ([`Host::web_certificate_hash`]); [`HostConfig::authorized_clients`]
    /// lists browser devices by the fingerprint of their key.
    pub web: Option<WebConfig>,
    /// Observation points for tests and diagnostics (default: none).
    pub hooks: Hooks,
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
            send_queue: 4,
            probe: ProbePolicy::default(),
            accept_timeout: Duration::from_secs(10),
            rate: RateSettings::default(),
            max_total_kbps: None,
            max_handshakes: 32,
            web: None,
            hooks: Hooks::default(),
        }
    }
}

impl HostConfig {
    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.session.validate()?;
        if let Some(imp) = &self.impairment {
            imp.validate()?;
        }
        if !(1..=MAX_WORKER_QUEUE).contains(&self.send_queue) {
            return Err(Error::invalid(format!(
                "send_queue {} is outside 1..={MAX_WORKER_QUEUE}",
                self.send_queue
            )));
        }
        if self.max_handshakes == 0 {
            return Err(Error::invalid("max_handshakes must be at least 1"));
        }
        if self.accept_timeout.is_zero() {
            return Err(Error::invalid("accept_timeout must be above zero"));
        }
        if self.max_bitrate_kbps == 0 {
            return Err(Error::invalid("max_bitrate_kbps must be above zero"));
        }
        if let Some(web) = &self.web {
            web.validate()?;
        }
        if self.max_total_kbps == Some(0) {
            return Err(Error::invalid("max_total_kbps must be above zero"));
        }
        if self.rate.min_kbps == 0 || self.rate.initial_kbps < self.rate.min_kbps {
            return Err(Error::invalid(format!(
                "rate: min_kbps {} must be at least 1 and at most initial_kbps {}",
                self.rate.min_kbps, self.rate.initial_kbps
            )));
        }
        Ok(())
    }
}

/// What a host's listener did with incoming connections ([`Host::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Connections answered with a QUIC Retry (their address was not yet
    /// validated; a client that really is there comes back with the token).
    pub retried: u64,
    /// Connections refused because `max_handshakes` were in progress.
    pub refused: u64,
    /// Handshakes started (address validated, under the limit).
    pub handshakes: u64,
}

#[derive(Default)]
struct Counters {
    retried: AtomicU64,
    refused: AtomicU64,
    handshakes: AtomicU64,
}

/// A listening host. Each [`Host::accept`] returns one client's [`HostSession`].
pub struct Host {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    identity: Identity,
    /// The identity's certificate and, serving browsers, the web certificate.
    certs: Arc<HostCerts>,
    /// Finished handshakes (sessions or the reason one failed), in order of
    /// completion: every connecting client gets its own handshake task, so a
    /// slow or silent one cannot hold up the others.
    ready: Mutex<tokio::sync::mpsc::Receiver<Result<ParkedSession>>>,
    /// The accept loop, which holds the runtime and the endpoint too.
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Arc<Counters>,
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
        config.validate()?;
        let identity = Identity::load_or_create(&config.identity_dir)?;
        Host::with_identity(config, identity)
    }

    /// Starts listening with a given identity.
    pub fn with_identity(config: HostConfig, identity: Identity) -> Result<Host> {
        config.validate()?;
        // Here rather than on a network thread when the first session starts.
        crate::fec::warm_up();
        let rt = runtime()?;
        let web_dir = config.web.as_ref().map(|_| config.identity_dir.as_path());
        let certs = Arc::new(HostCerts::new(&identity, web_dir, provider())?);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?
            .with_client_cert_verifier(Arc::new(ClientIdentityVerifier::new(provider())))
            .with_cert_resolver(certs.clone());
        tls.alpn_protocols = vec![ALPN.to_vec()];
        if certs.web_enabled() {
            tls.alpn_protocols.push(WEB_ALPN.to_vec());
        }
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport_config(config.idle_timeout, config.keepalive)?);
        // A client's address is the one its handshake proved; a packet from
        // elsewhere is not followed (a migration would aim the session at an
        // address that never proved it can receive).
        server.migration(false);
        let endpoint = {
            let _guard = rt.enter();
            quinn::Endpoint::server(server, config.bind)
                .map_err(|e| io(format!("cannot listen on {}: {e}", config.bind)))?
        };
        let (tx, rx) = tokio::sync::mpsc::channel(ACCEPT_BACKLOG);
        let counters = Arc::new(Counters::default());
        let accepting = rt.spawn(accept_loop(
            endpoint.clone(),
            config,
            rt.clone(),
            tx,
            counters.clone(),
            certs.clone(),
        ));
        Ok(Host {
            rt,
            endpoint,
            identity,
            certs,
            ready: Mutex::new(rx),
            accepting: Mutex::new(Some(accepting)),
            counters,
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

    /// SHA-256 of the certificate browsers pin now (`serverCertificateHashes`),
    /// when the host serves browsers ([`HostConfig::web`]). It changes when
    /// the certificate is renewed (docs/WEB.md), so read it when handing it out.
    pub fn web_certificate_hash(&self) -> Option<[u8; 32]> {
        self.certs.web_hash()
    }

    /// What the listener did with incoming connections so far.
    pub fn counters(&self) -> HostCounters {
        let c = &self.counters;
        HostCounters {
            retried: c.retried.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            handshakes: c.handshakes.load(Ordering::Relaxed),
        }
    }

    /// The next client whose handshake finished; `Ok(None)` if none finished
    /// within `timeout`. Handshakes run in the background as clients connect
    /// (each bounded by `handshake_timeout`), so a timeout here never cuts one
    /// off. A client that failed its handshake is reported as the error of
    /// this call; the host keeps listening. A finished handshake waits at
    /// most `accept_timeout` for this call; the host closes one that waited
    /// longer, and this call skips it.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Option<HostSession>> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let next = async {
            loop {
                match ready.recv().await {
                    Some(Ok(parked)) if parked.expired() => continue,
                    Some(r) => return r.map(Some),
                    None => return Err(Error::closed("the host is closed")),
                }
            }
        };
        let parked = match timeout {
            None => self.rt.block_on(next)?,
            Some(t) => match self.rt.block_on(async { tokio::time::timeout(t, next).await }) {
                Ok(r) => r?,
                Err(_) => None,
            },
        };
        parked.map(ParkedSession::activate).transpose()
    }

    /// Stops listening and closes every connection with `reason`.
    pub fn close(&self, reason: &str) {
        self.endpoint.close(
            quinn::VarInt::from_u32(close_code::HOST_SHUTDOWN),
            clip_reason(reason).as_bytes(),
        );
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.close("host shut down");
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

/// Accepts every incoming connection and runs its handshake in a task of its
/// own, at most `max_handshakes` at once. A connection from an address QUIC
/// has not validated yet is answered with a Retry first.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    config: HostConfig,
    rt: Arc<Runtime>,
    ready: tokio::sync::mpsc::Sender<Result<ParkedSession>>,
    counters: Arc<Counters>,
    certs: Arc<HostCerts>,
) {
    if certs.web_enabled() {
        tokio::spawn(renew_web_certificate(certs.clone()));
    }
    let config = Arc::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_handshakes));
    let probes = Arc::new(AtomicU32::new(0));
    let governor = config.max_total_kbps.map(|k| Governor::new(u64::from(k) * 1000));
    while let Some(incoming) = endpoint.accept().await {
        if !incoming.remote_address_validated() {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        counters.handshakes.fetch_add(1, Ordering::Relaxed);
        let (config, rt, ready, probes) = (config.clone(), rt.clone(), ready.clone(), probes.clone());
        let share = governor.as_ref().map(|g| g.join());
        let certs = certs.clone();
        tokio::spawn(async move {
            let r = handshake(incoming, &config, rt, probes, share, &certs).await;
            // The slot is held until there is room to hand the result over
            // (waiting sessions count against the limit too), and freed
            // before anyone can see the result.
            if let Ok(room) = ready.reserve().await {
                drop(slot);
                room.send(r);
            }
        });
    }
}

/// One client's handshake, from the QUIC handshake to a parked session.
async fn handshake(
    incoming: quinn::Incoming,
    cfg: &HostConfig,
    rt: Arc<Runtime>,
    probes: Arc<AtomicU32>,
    share: Option<Share>,
    certs: &HostCerts,
) -> Result<ParkedSession> {
    let conn = within(cfg.handshake_timeout, "QUIC handshake", async {
        incoming
            .await
            .map_err(|e| super::proto::protocol(format!("QUIC handshake failed: {e}")))
    })
    .await?;
    let limit = cfg.handshake_timeout;
    let result = match (&cfg.web, alpn_of(&conn).as_deref() == Some(WEB_ALPN)) {
        (Some(web), true) => {
            let conn = conn.clone();
            within(
                limit,
                "browser handshake",
                websession::handshake(conn, cfg, web, certs, rt, share),
            )
            .await
        }
        _ => within(limit, "handshake", handshake_on(&conn, cfg, rt, probes, share)).await,
    };
    if let Err(e) = &result {
        // Tell the client why before dropping it.
        close_for_error(&conn, e);
    }
    result
}

/// The protocol the TLS handshake agreed on.
fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// How often the web certificate's age is checked.
const WEB_RENEW_CHECK: Duration = Duration::from_secs(3600);

/// Renews the web certificate before it expires, for as long as the host runs.
async fn renew_web_certificate(certs: Arc<HostCerts>) {
    loop {
        tokio::time::sleep(WEB_RENEW_CHECK).await;
        // A failure (a full disk) is retried at the next check; the current
        // certificate stays in use until then.
        let _ = certs.renew(std::time::SystemTime::now());
    }
}

/// Refuses a client that is not on the host's list.
fn admit(conn: &quinn::Connection, cfg: &HostConfig) -> Result<Option<Fingerprint>> {
    let presented = presented_fingerprint(conn);
    let Some(allowed) = &cfg.authorized_clients else {
        return Ok(presented);
    };
    if presented.is_some_and(|f| allowed.contains(&f)) {
        return Ok(presented);
    }
    let why = match presented {
        Some(f) => format!("client {f} is not authorized on this host"),
        None => "this host admits only authorized clients; the client presented no identity".into(),
    };
    conn.close(
        quinn::VarInt::from_u32(close_code::UNAUTHORIZED),
        clip_reason(&why).as_bytes(),
    );
    Err(Error::new(
        ErrorKind::Unauthorized,
        format!("refused {}: {why}", conn.remote_address()),
    ))
}

/// How often the data socket is checked for the client's path response.
const PATH_POLL: Duration = Duration::from_millis(5);

/// Drives [`proto::host`](super::proto::host)'s phases over the control
/// stream, then validates the client's data address.
async fn handshake_on(
    conn: &quinn::Connection,
    cfg: &HostConfig,
    rt: Arc<Runtime>,
    probes: Arc<AtomicU32>,
    share: Option<Share>,
) -> Result<ParkedSession> {
    let client_fingerprint = admit(conn, cfg)?;
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| super::proto::protocol(format!("no control stream: {e}")))?;
    let offer = HostOffer {
        session: cfg.session.clone(),
        max_bitrate_kbps: cfg.max_bitrate_kbps,
    };
    let hello = read_msg(&mut recv).await?;
    let received = AwaitingHello::new(offer).on_message(hello)?;
    // Only now, after an authenticated exchange, is a data socket bound for
    // this client; nothing but path challenges goes out on it until the
    // address answers.
    let data_peer = SocketAddr::new(conn.remote_address().ip(), received.client_data_port());
    let udp = bind_data_socket(conn, data_peer, &cfg.udp)?;
    let mut session_id = [0u8; 16];
    random(&mut session_id)?;
    let (awaiting_ready, server_hello) = received.answer(udp.local_addr()?.port(), session_id);
    let tap = cfg.hooks.on_control_sent.as_ref();
    write_msg(&mut send, &server_hello, tap).await?;
    let ready = read_msg(&mut recv).await?;
    let mut token = [0u8; PATH_TOKEN_LEN];
    random(&mut token)?;
    let mut path = awaiting_ready.on_message(ready, token, Instant::now())?;
    let keys = exported_keys(conn, &session_id, &cfg.hooks)?;
    // Each client gets its own impairment generator, seeded apart, so clients do not lose in lockstep.
    let impairment = cfg.impairment.clone().map(|imp| ImpairmentConfig {
        seed: imp.seed ^ u64::from_le_bytes(session_id[..8].try_into().unwrap_or_default()),
        ..imp
    });
    let data = Session::new(
        Role::Host,
        cfg.session.clone(),
        &keys,
        Arc::new(DataPath::new(udp, impairment)),
    )?;
    let (mut sender, mut receiver) = data.split();
    let (negotiated, validated) = loop {
        let now = Instant::now();
        if let Some(challenge) = path.poll_transmit(now)? {
            sender.send_path(challenge)?;
        }
        let _ = receiver.poll_frame(now)?;
        if let Some(m) = receiver.take_path_message() {
            match path.on_path(m) {
                PathStep::Validated(negotiated, validated) => break (negotiated, validated),
                PathStep::Pending(still) => path = still,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PATH_POLL) => {}
            e = conn.closed() => return Err(super::proto::protocol(format!("closed during the handshake: {e}"))),
        }
    };
    write_msg(&mut send, &validated, tap).await?;
    Ok(ParkedSession::start(SessionParts {
        rt,
        conn: conn.clone(),
        send,
        recv,
        sender,
        negotiated,
        config: cfg,
        client_fingerprint,
        data_peer,
        probes,
        share,
    }))
}

/// The host's data socket for one client: bound on the address the QUIC
/// connection arrived at, sending to (and accepting only) `data_peer`.
fn bind_data_socket(
    conn: &quinn::Connection,
    data_peer: SocketAddr,
    udp: &UdpConfig,
) -> Result<UdpTransport> {
    let local_ip = conn.local_ip().unwrap_or(if data_peer.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    });
    let sock = UdpTransport::bind_filtered(SocketAddr::new(local_ip, 0), data_peer, udp)
        .map_err(|e| io(format!("cannot open the data socket for {data_peer}: {e}")))?;
    // The host only sends on its data socket: whatever arrives there is
    // unsolicited, is never read, and dies in a small kernel buffer (the
    // kernel counts those drops) instead of a 32 MiB one per client.
    let _ = sock.set_recv_buffer(HOST_DATA_RECV_BUFFER);
    Ok(sock)
}
