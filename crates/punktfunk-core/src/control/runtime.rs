//! The QUIC plumbing shared by the host and client drivers: the tokio
//! runtime, quinn and rustls settings, reading and writing framed control
//! messages, key export, closing, and the injectable hooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Runtime as TokioRuntime;

use crate::crypto::SessionKeys;
use crate::error::{Error, ErrorKind, Result};

use super::identity::Fingerprint;
use super::msg::{self, clip_reason, close_code, CloseReason, ControlMsg};
use super::proto::{self, protocol};

/// TLS exporter label for the data-plane key secret (context: the session id).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-pkf1 data plane";
/// Longest a dropped host or client waits for its close frames to leave.
pub(super) const DRAIN_ON_DROP: Duration = Duration::from_millis(500);
/// Longest a graceful close waits for the peer to close the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A callback that observes bytes (see [`Hooks`]).
pub type Tap = Arc<dyn Fn(&[u8]) + Send + Sync>;
/// A callback that observes a session's keys (see [`Hooks::dangerous_on_session_keys`]).
pub type KeyTap = Arc<dyn Fn(&SessionKeys) + Send + Sync>;
/// A callback that decides by sequence number whether an input datagram is sent.
pub type DatagramFilter = Arc<dyn Fn(u32) -> bool + Send + Sync>;

/// Observation and fault-injection points of a host or client, for tests and
/// diagnostics. The default has none and costs nothing.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Sees every control message this end writes, encoded (`PKF1` framing).
    pub on_control_sent: Option<Tap>,
    /// Sees each session's data-plane key material once derived (both
    /// directions). Whoever holds it can read and forge that session's
    /// datagrams: diagnostics and tests only.
    pub dangerous_on_session_keys: Option<KeyTap>,
    /// Decides, by sequence number, whether an input datagram is sent
    /// (`false` pretends the network lost it).
    pub input_datagram_filter: Option<DatagramFilter>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_control_sent", &self.on_control_sent.is_some())
            .field(
                "dangerous_on_session_keys",
                &self.dangerous_on_session_keys.is_some(),
            )
            .field("input_datagram_filter", &self.input_datagram_filter.is_some())
            .finish()
    }
}

/// The QUIC runtime of a host or client. Tasks hold it too, so the last
/// reference may go away on one of its own threads, where dropping a tokio
/// runtime (which waits for its threads) panics: there it shuts down in the
/// background instead.
pub(super) struct Runtime(Option<TokioRuntime>);

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

/// A runtime with one worker thread, `punktfunk-quic`.
pub(super) fn runtime() -> Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("punktfunk-quic")
        .enable_all()
        .build()
        .map(|rt| Arc::new(Runtime(Some(rt))))
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the QUIC runtime: {e}")))
}

/// The rustls crypto provider (ring).
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An error for a failed local operation (socket, runtime).
pub(super) fn io(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, what.to_string())
}

/// Fills `buf` with secure random bytes.
pub(super) fn random(buf: &mut [u8]) -> Result<()> {
    provider()
        .secure_random
        .fill(buf)
        .map_err(|_| Error::new(ErrorKind::Internal, "no secure randomness available"))
}

/// QUIC transport settings of both ends.
pub(super) fn transport_config(idle: Duration, keepalive: Duration) -> Result<Arc<quinn::TransportConfig>> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle).map_err(|_| Error::invalid("idle timeout is too long"))?,
    ));
    t.keep_alive_interval(Some(keepalive));
    t.datagram_receive_buffer_size(Some(1 << 20));
    // A native peer opens one control stream; a browser its HTTP/3 CONNECT
    // and control streams and three unidirectional HTTP/3 streams. Nothing
    // more is read, so no peer may park data in more (quinn's defaults, 100
    // of each at 1.25 MB, would let one connection hold 250 MB here).
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(8u32.into());
    t.stream_receive_window((256u32 << 10).into());
    t.receive_window((1u32 << 20).into());
    Ok(Arc::new(t))
}

/// The fingerprint of the certificate the peer presented in the TLS handshake, if any.
pub(super) fn presented_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| Fingerprint::of(c))
}

/// The error for a handshake the host refused, if it did: an unauthorized
/// client learns why from the close reason.
pub(super) fn refusal(conn: &quinn::Connection) -> Option<Error> {
    match close_reason(&conn.close_reason()?) {
        CloseReason { code, reason } if code == close_code::UNAUTHORIZED => Some(Error::new(
            ErrorKind::Unauthorized,
            format!("the host refused this client: {reason}"),
        )),
        _ => None,
    }
}

/// Maps how a QUIC connection ended to a close reason both sides understand.
pub(super) fn close_reason(e: &quinn::ConnectionError) -> CloseReason {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => CloseReason {
            code: u32::try_from(c.error_code.into_inner()).unwrap_or(close_code::APPLICATION),
            // The peer's bytes are cut before decoding (a QUIC close frame can
            // carry a reason as long as a datagram), then again at a character.
            reason: clip_reason(&String::from_utf8_lossy(
                &c.reason[..c.reason.len().min(msg::MAX_REASON_LEN)],
            ))
            .to_string(),
        },
        quinn::ConnectionError::TimedOut => CloseReason {
            code: close_code::IDLE,
            reason: "nothing heard from the peer within the idle timeout".into(),
        },
        quinn::ConnectionError::LocallyClosed => CloseReason {
            code: close_code::NORMAL,
            reason: "closed locally".into(),
        },
        // A transport close from the peer prints the peer's reason too.
        other => CloseReason {
            code: close_code::PROTOCOL,
            reason: clip_reason(&other.to_string()).to_string(),
        },
    }
}

/// Closes the connection at once with `r` (its reason clipped to the bound).
pub(super) fn close_now(conn: &quinn::Connection, r: &CloseReason) {
    conn.close(quinn::VarInt::from_u32(r.code), clip_reason(&r.reason).as_bytes());
}

/// Closes a live connection because of `e`, with the code [`proto::close_for`]
/// gives it. On a connection that is already closed the error is just the
/// close, whose own reason must survive, so nothing is done.
pub(super) fn close_for_error(conn: &quinn::Connection, e: &Error) {
    if conn.close_reason().is_none() {
        close_now(conn, &proto::close_for(e));
    }
}

/// The close reason a peer sent in its `Close` message, kept because closing
/// the connection locally in answer would otherwise hide it.
pub(super) type CloseSlot = Arc<Mutex<Option<CloseReason>>>;

/// How the connection ended, if it did: the peer's `Close` first, else quinn's view.
pub(super) fn reason_of(slot: &CloseSlot, conn: &quinn::Connection) -> Option<CloseReason> {
    let stored = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    stored.or_else(|| conn.close_reason().map(|e| close_reason(&e)))
}

/// The peer sent `Close`: keep its reason (a reader racing the close sees
/// it) and close the connection with the same code and reason.
pub(super) fn peer_closed(slot: &CloseSlot, conn: &quinn::Connection, r: CloseReason) {
    let answer = r.clone();
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    close_now(conn, &answer);
}

/// Reads one control message, skipping unknown types; `Ok(None)` at the end of the stream.
pub(super) async fn read_msg(recv: &mut quinn::RecvStream) -> Result<Option<ControlMsg>> {
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

/// Encodes a message for the wire, showing it to the tap.
fn encode(m: &ControlMsg, tap: Option<&Tap>) -> Vec<u8> {
    let b = m.encode();
    if let Some(t) = tap {
        t(&b);
    }
    b
}

/// Writes one message directly (during the handshake, before the writer task).
pub(super) async fn write_msg(send: &mut quinn::SendStream, m: &ControlMsg, tap: Option<&Tap>) -> Result<()> {
    send.write_all(&encode(m, tap))
        .await
        .map_err(|e| protocol(format!("control stream: {e}")))
}

/// Control messages queued for the stream at most: a peer that stops
/// reading holds up its stream, and the queue does not grow beyond this.
pub(super) const CTRL_BACKLOG: usize = 256;

/// The sending end of a session's control-message queue: bounded, and FEC
/// changes fold into the one already waiting (the peer needs the latest
/// percentage, not every step), so a burst of them cannot crowd out the rest.
#[derive(Clone, Debug)]
pub(super) struct Ctrl {
    tx: tokio::sync::mpsc::Sender<ControlMsg>,
    fec: Arc<Mutex<Option<u8>>>,
}

/// The writer's end of [`Ctrl`].
pub(super) struct CtrlReceiver {
    rx: tokio::sync::mpsc::Receiver<ControlMsg>,
    fec: Arc<Mutex<Option<u8>>>,
}

/// A control-message queue of [`CTRL_BACKLOG`].
pub(super) fn ctrl_channel() -> (Ctrl, CtrlReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(CTRL_BACKLOG);
    let fec = Arc::new(Mutex::new(None));
    (Ctrl { tx, fec: fec.clone() }, CtrlReceiver { rx, fec })
}

impl Ctrl {
    /// Queues a message; fails when the queue is full or the writer is gone.
    pub(super) fn try_send(
        &self,
        m: ControlMsg,
    ) -> std::result::Result<(), tokio::sync::mpsc::error::TrySendError<ControlMsg>> {
        if let ControlMsg::FecChanged { percent } = m {
            let mut pending = self.fec.lock().unwrap_or_else(|p| p.into_inner());
            if pending.replace(percent).is_some() {
                // One is queued already; the writer sends the latest value.
                return Ok(());
            }
        }
        self.tx.try_send(m)
    }
}

/// Queues a message whose loss only costs the peer information (a FEC
/// change, a probe result): with the queue full the peer is not reading,
/// and the message is dropped rather than held.
pub(super) fn send_ctrl(ctrl: &Ctrl, m: ControlMsg) {
    let _ = ctrl.try_send(m);
}

/// Writes queued control messages in order until the queue closes.
pub(super) async fn write_loop(mut send: quinn::SendStream, mut rx: CtrlReceiver, tap: Option<Tap>) {
    while let Some(mut m) = rx.rx.recv().await {
        if let ControlMsg::FecChanged { percent } = &mut m {
            if let Some(latest) = rx.fec.lock().unwrap_or_else(|p| p.into_inner()).take() {
                *percent = latest;
            }
        }
        if send.write_all(&encode(&m, tap.as_ref())).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// The data-plane keys of a session, from the TLS session and its id.
pub(super) fn exported_keys(
    conn: &quinn::Connection,
    session_id: &[u8; 16],
    hooks: &Hooks,
) -> Result<SessionKeys> {
    let mut secret = [0u8; 32];
    conn.export_keying_material(&mut secret, EXPORTER_LABEL, session_id)
        .map_err(|_| Error::new(ErrorKind::Internal, "TLS keying-material export failed"))?;
    let keys = SessionKeys::derive(&secret, session_id);
    zeroize::Zeroize::zeroize(&mut secret);
    let keys = keys?;
    if let Some(h) = &hooks.dangerous_on_session_keys {
        h(&keys);
    }
    Ok(keys)
}

/// Bounds a handshake step in time.
pub(super) async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: no answer within {limit:?}")))?
}

/// Closes gracefully: the `Close` message goes down the control stream behind
/// everything already queued, the peer closes the connection with that code
/// and reason (so both ends read the same), and after a second without an
/// answer the connection is closed locally.
pub(super) fn close_conn(rt: &Runtime, conn: &quinn::Connection, ctrl: &Ctrl, code: u32, reason: &str) {
    if conn.close_reason().is_some() {
        return;
    }
    let r = CloseReason {
        code,
        reason: clip_reason(reason).to_string(),
    };
    // With the queue full (the peer stopped reading) the close goes at once.
    if ctrl.try_send(ControlMsg::Close(r.clone())).is_ok() {
        let _ = rt.block_on(async { tokio::time::timeout(CLOSE_WAIT, conn.closed()).await });
    }
    if conn.close_reason().is_none() {
        close_now(conn, &r);
    }
}
