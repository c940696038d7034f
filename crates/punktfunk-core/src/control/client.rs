//! The client driver: connecting, checking the host's identity, and running
//! the handshake ([`proto::client`](super::proto::client)) on quinn. The
//! connected halves are in [`super::client_session`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;

use crate::error::{Error, ErrorKind, Result};
use crate::session::{FrameEvent, FrameReceiver, Role, Session, SessionConfig};
use crate::stats::StatsSnapshot;
use crate::transport::{UdpConfig, UdpTransport};

use super::client_session::{ClientControl, ClientReceiver, ConnectedParts, ProbeResult};
use super::identity::{Fingerprint, Identity, KnownHosts, PinVerifier, Trust};
use super::msg::{close_code, CloseReason, InputEvent};
use super::proto::client::{AwaitingServerHello, ClientEvent, ClientOffer};
use super::proto::protocol;
use super::runtime::{
    exported_keys, io, provider, read_msg, refusal, runtime, transport_config, within, write_msg, Hooks,
};
use super::ALPN;

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
    /// Observation and fault-injection points for tests and diagnostics
    /// (default: none).
    pub hooks: Hooks,
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
            hooks: Hooks::default(),
        }
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

impl Client {
    /// Connects to a host, checks its identity, runs the handshake and opens
    /// the data plane. A wrong fingerprint fails with `ERR_PF_PIN_MISMATCH`
    /// before any data flows; no answer fails with `ERR_PF_TIMEOUT` after
    /// `connect_timeout`.
    pub fn connect(host: SocketAddr, config: ClientConfig) -> Result<Client> {
        config.session.validate()?;
        // Here rather than on a network thread when the first session starts.
        crate::fec::warm_up();
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
        let client_cfg = quic_config(&config, verifier)?;
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
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.mismatch {
                    Error::new(
                        ErrorKind::PinMismatch,
                        format!(
                            "host {host} presented fingerprint {}, expected {}; refusing to connect",
                            seen.fingerprint.map(|f| f.to_hex()).unwrap_or_default(),
                            expected.map(|f| f.to_hex()).unwrap_or_default()
                        ),
                    )
                } else {
                    protocol(format!("QUIC handshake with {host} failed: {e}"))
                }
            })?;
            // A host that refuses this client closes the connection; say so
            // rather than what the failed read saw.
            handshake(&conn, &config)
                .await
                .map(|h| (conn.clone(), h))
                .map_err(|e| refusal(&conn).unwrap_or(e))
        }));
        let (conn, (negotiated, receiver, early, send, recv)) = match result {
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
        let (receiver, control) = ClientControl::start(ConnectedParts {
            rt,
            endpoint,
            conn,
            send,
            recv,
            receiver,
            early,
            negotiated,
            fingerprint,
            hooks: config.hooks.clone(),
        });
        Ok(Client { receiver, control })
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
        self.control.fingerprint()
    }

    /// The bitrate the host granted, kbit/s.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.control.granted_bitrate_kbps()
    }

    /// This session's id.
    pub fn session_id(&self) -> [u8; 16] {
        self.control.session_id()
    }

    /// The local address of the data socket (where the host's datagrams arrive).
    pub fn data_local_addr(&self) -> Result<SocketAddr> {
        self.receiver.data_local_addr()
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
        control.speed_test_with(target_kbps, duration, |wait| receiver.pump(wait))
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

/// The QUIC client settings: TLS 1.3 with the pinning verifier, the client
/// identity when configured, our ALPN.
fn quic_config(config: &ClientConfig, verifier: Arc<PinVerifier>) -> Result<quinn::ClientConfig> {
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
    Ok(client_cfg)
}

type Handshake = (
    super::proto::Negotiated,
    FrameReceiver<Arc<UdpTransport>>,
    VecDeque<FrameEvent>,
    quinn::SendStream,
    quinn::RecvStream,
);

/// How often the data socket is checked for the host's path challenge.
const PATH_POLL: Duration = Duration::from_millis(5);

/// Drives [`proto::client`](super::proto::client)'s phases over the control
/// stream: hello, the host's answer, the data session, `Ready`, then the data
/// socket answers the host's path challenges until the host says the path is
/// validated.
async fn handshake(conn: &quinn::Connection, cfg: &ClientConfig) -> Result<Handshake> {
    let local_ip = conn.local_ip().unwrap_or(if conn.remote_address().is_ipv4() {
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
    let offer = ClientOffer {
        requested_bitrate_kbps: cfg.requested_bitrate_kbps,
        max_shard_payload: cfg.max_shard_payload,
        session: cfg.session.clone(),
    };
    let tap = cfg.hooks.on_control_sent.as_ref();
    let (awaiting, hello) = AwaitingServerHello::start(offer, udp.local_addr()?.port());
    write_msg(&mut send, &hello, tap).await?;
    let answer = read_msg(&mut recv).await?;
    let (validating, ready) = awaiting.on_message(answer)?;
    let negotiated = validating.negotiated();
    // Only the host's data socket may feed this session; others are counted.
    udp.set_filter_peer(SocketAddr::new(
        conn.remote_address().ip(),
        negotiated.host_data_port,
    ));
    let keys = exported_keys(conn, &negotiated.session_id, &cfg.hooks)?;
    let data = Session::new(Role::Client, negotiated.session.clone(), &keys, Arc::new(udp))?;
    let (mut sender, mut receiver) = data.split();
    // Ready is written before connect returns, so a client that closes at
    // once still completes the handshake the host is waiting on.
    write_msg(&mut send, &ready, tap).await?;
    // Frames can overtake the host's word that the path is validated: they
    // are kept for the application, not dropped.
    let mut early = VecDeque::new();
    let host_says = {
        // The read of the host's next message stays pending across the polls.
        let mut next = std::pin::pin!(read_msg(&mut recv));
        loop {
            tokio::select! {
                m = &mut next => break m?,
                _ = tokio::time::sleep(PATH_POLL) => {
                    while let Some(ev) = receiver.poll_frame(std::time::Instant::now())? {
                        early.push_back(ev);
                    }
                    if let Some(answer) = receiver.take_path_message().and_then(|m| validating.on_path(m)) {
                        sender.send_path(answer)?;
                    }
                }
            }
        }
    };
    let negotiated = validating.on_message(host_says)?;
    Ok((negotiated, receiver, early, send, recv))
}
