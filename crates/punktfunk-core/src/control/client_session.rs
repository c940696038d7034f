//! A connected client's two halves: the receiver ([`ClientReceiver`], for
//! the thread that reads the data plane) and the control handle
//! ([`ClientControl`], usable from any thread), with the tasks that carry the
//! control stream on the QUIC runtime.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::rate::FeedbackConfig;
use crate::session::{blocking, FrameEvent, FrameReceiver, StatsHandle};
use crate::stats::StatsSnapshot;
use crate::transport::UdpTransport;

use super::identity::Fingerprint;
use super::msg::{self, close_code, CloseReason, ControlMsg, InputEvent};
use super::proto::client::{ClientAction, ClientEvent, ClientProto};
use super::proto::Negotiated;
use super::runtime::{
    close_conn, close_for_error, ctrl_channel, peer_closed, read_msg, reason_of, write_loop, CloseSlot, Ctrl,
    Hooks, Runtime, DRAIN_ON_DROP,
};
use super::{MAX_PROBE_KBPS, MAX_PROBE_MS};

/// Host messages a client queues before dropping more (they are tiny; a host
/// that floods them only loses its own messages).
const CLIENT_EVENT_BACKLOG: usize = 256;

type DataSession = Arc<UdpTransport>;

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
    /// The rate the host sent at, kbit/s: below `target_kbps` when the host
    /// clamped the test to its probe ceiling, 0 when it refused the test
    /// (probes off, its budget spent, another probe running).
    pub rate_kbps: u32,
}

impl ProbeResult {
    /// Whether the host sent at less than was asked for (or not at all).
    pub fn clamped(&self) -> bool {
        self.rate_kbps < self.target_kbps
    }
}

/// What the host said in a `ProbeDone`: packets sent, send drops,
/// duration µs, rate kbit/s.
type ProbeDone = (u64, u64, u64, u32);

/// Host messages for the client's user thread: bounded, with FEC changes
/// folded into the one waiting, and the speed test's result and the close
/// kept apart, so neither is ever crowded out by chatter.
#[derive(Default)]
struct Inbox {
    events: VecDeque<ClientEvent>,
    probe_done: Option<ProbeDone>,
    closed: Option<CloseReason>,
    /// The close was handed out by `poll_event`.
    closed_taken: bool,
}

impl Inbox {
    fn push(&mut self, e: ClientEvent) {
        match e {
            ClientEvent::Closed(r) => self.closed = Some(r),
            ClientEvent::FecChanged { percent } => {
                let full = self.events.len() >= CLIENT_EVENT_BACKLOG;
                let queued = self.events.iter_mut().find_map(|e| match e {
                    ClientEvent::FecChanged { percent } => Some(percent),
                    _ => None,
                });
                match queued {
                    Some(p) => *p = percent,
                    None if !full => self.events.push_back(e),
                    None => {}
                }
            }
        }
    }

    fn pop(&mut self) -> Option<ClientEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if self.closed_taken {
            return None;
        }
        let r = self.closed.clone()?;
        self.closed_taken = true;
        Some(ClientEvent::Closed(r))
    }
}

type SharedInbox = Arc<Mutex<Inbox>>;

/// What a finished handshake hands over.
pub(super) struct ConnectedParts {
    pub rt: Arc<Runtime>,
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub receiver: FrameReceiver<DataSession>,
    /// Frames that arrived before the handshake finished.
    pub early: VecDeque<FrameEvent>,
    pub negotiated: Negotiated,
    pub fingerprint: Fingerprint,
    pub hooks: Hooks,
}

/// The receiving half of a connected client (a [`FrameSource`](crate::session::FrameSource)).
pub struct ClientReceiver {
    receiver: FrameReceiver<DataSession>,
    conn: quinn::Connection,
    slot: CloseSlot,
    pending: VecDeque<FrameEvent>,
}

impl std::fmt::Debug for ClientReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReceiver").finish_non_exhaustive()
    }
}

impl ClientReceiver {
    /// Waits up to `timeout` for the next frame event (see
    /// [`blocking::recv_frame`]). Fails with `ERR_PF_CLOSED` once the session
    /// ended and nothing is left to deliver.
    pub fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        let wait = self.receiver.recv_wait();
        let deadline = Instant::now() + timeout;
        // Waits are cut at each feedback report's due time: the reports keep
        // their cadence whether or not frames arrive.
        loop {
            let now = Instant::now();
            self.send_feedback(now);
            let until = self
                .receiver
                .feedback_timeout()
                .map_or(deadline, |t| t.min(deadline));
            if let Some(ev) =
                blocking::recv_frame(&mut self.receiver, until.saturating_duration_since(now), wait)?
            {
                // A lost frame asks for a report at once.
                self.send_feedback(Instant::now());
                return Ok(Some(ev));
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let Some(r) = reason_of(&self.slot, &self.conn) else {
            return Ok(None);
        };
        // The session ended; what arrived before the end is still delivered.
        match self.receiver.poll_frame(Instant::now())? {
            Some(ev) => Ok(Some(ev)),
            None => Err(Error::closed(format!("the session ended: {}", r.reason))),
        }
    }

    /// Sends the rate-feedback report due at `now`, if one is, as a QUIC
    /// datagram (lossy by design: a lost report is superseded by the next).
    fn send_feedback(&mut self, now: Instant) {
        if let Some(fb) = self.receiver.poll_feedback(now) {
            if let Ok(bytes) = fb.encode() {
                let _ = self.conn.send_datagram(bytes.into());
            }
        }
    }

    /// Reads the data plane for about `wait`, keeping what arrives for later
    /// `recv_frame` calls (while a speed test runs on this thread).
    pub(super) fn pump(&mut self, wait: Duration) -> Result<()> {
        let rw = self.receiver.recv_wait();
        if let Some(ev) = blocking::recv_frame(&mut self.receiver, wait, rw)? {
            self.pending.push_back(ev);
        }
        Ok(())
    }

    /// Returns a delivered frame's buffer for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.receiver.recycle(buf);
    }

    /// Data-plane counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.receiver.stats()
    }

    /// A handle for reading the counters from another thread while this half
    /// waits for frames.
    pub fn stats_handle(&self) -> crate::session::StatsHandle {
        self.receiver.stats_handle()
    }

    /// The local address of the data socket.
    pub fn data_local_addr(&self) -> Result<std::net::SocketAddr> {
        self.receiver.transport().local_addr().map_err(Error::from)
    }
}

impl crate::session::FrameSource for ClientReceiver {
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        ClientReceiver::recv_frame(self, timeout)
    }
    fn stats_handle(&self) -> StatsHandle {
        self.receiver.stats_handle()
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        self.receiver.recycle(buf);
    }
}

/// The control half of a connected client: input, keyframe requests, speed
/// test, host messages, close. Usable from any thread while a
/// [`ClientReceiver`] runs elsewhere (see [`super::Client::split`]).
pub struct ClientControl {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    inbox: SharedInbox,
    input_seq: AtomicU32,
    stats: StatsHandle,
    datagram_len: usize,
    fingerprint: Fingerprint,
    granted_bitrate_kbps: u32,
    session_id: [u8; 16],
    hooks: Hooks,
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

impl ClientControl {
    /// Sends `bytes` as a QUIC datagram, as a misbehaving client might (tests).
    #[cfg(test)]
    pub(crate) fn send_raw_datagram(&self, bytes: &[u8]) {
        let _ = self.conn.send_datagram(bytes::Bytes::copy_from_slice(bytes));
    }

    /// Starts the session's tasks; the two halves.
    pub(super) fn start(p: ConnectedParts) -> (ClientReceiver, ClientControl) {
        let mut receiver = p.receiver;
        receiver.enable_feedback(FeedbackConfig::default());
        let (ctrl, ctrl_rx) = ctrl_channel();
        let inbox = SharedInbox::default();
        let slot = CloseSlot::default();
        let proto = Arc::new(Mutex::new(ClientProto::new(Instant::now())));
        let stats = receiver.stats_handle();
        {
            let _guard = p.rt.enter();
            tokio::spawn(write_loop(p.send, ctrl_rx, p.hooks.on_control_sent.clone()));
            tokio::spawn(control_loop(
                p.recv,
                p.conn.clone(),
                slot.clone(),
                proto.clone(),
                inbox.clone(),
            ));
            tokio::spawn(report_loop(p.conn.clone(), ctrl.clone(), proto, stats.clone()));
        }
        let datagram_len = receiver.datagram_len();
        let receiver = ClientReceiver {
            receiver,
            conn: p.conn.clone(),
            slot: slot.clone(),
            pending: p.early,
        };
        let control = ClientControl {
            rt: p.rt,
            endpoint: p.endpoint,
            conn: p.conn,
            slot,
            ctrl,
            inbox,
            input_seq: AtomicU32::new(0),
            stats,
            datagram_len,
            fingerprint: p.fingerprint,
            granted_bitrate_kbps: p.negotiated.granted_bitrate_kbps,
            session_id: p.negotiated.session_id,
            hooks: p.hooks,
        };
        (receiver, control)
    }

    /// The host's fingerprint (as pinned or first seen).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The bitrate the host granted, kbit/s.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.granted_bitrate_kbps
    }

    /// This session's id.
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// Asks the host for a keyframe (frames from `first_lost` on were lost).
    pub fn request_keyframe(&self, first_lost: u64) -> Result<()> {
        self.send_ctrl(ControlMsg::KeyframeRequest { first_lost })
    }

    fn send_ctrl(&self, m: ControlMsg) -> Result<()> {
        if let Some(r) = self.closed_reason() {
            return Err(Error::closed(format!("the session is closed: {}", r.reason)));
        }
        self.ctrl.try_send(m).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => Error::new(
                ErrorKind::QueueFull,
                "the control stream is backed up: the host is not reading it",
            ),
            tokio::sync::mpsc::error::TrySendError::Closed(_) => Error::closed("the session is closed"),
        })
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
        let lost = self
            .hooks
            .input_datagram_filter
            .as_ref()
            .is_some_and(|keep| !keep(seq));
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

    /// Runs a speed test reading the data plane with `receiver` meanwhile;
    /// frames arriving during the test are kept for its later `recv_frame`
    /// calls. For a split client whose receiver is not on a thread of its own.
    pub fn speed_test_reading(
        &self,
        receiver: &mut ClientReceiver,
        target_kbps: u32,
        duration: Duration,
    ) -> Result<ProbeResult> {
        self.speed_test_with(target_kbps, duration, |wait| receiver.pump(wait))
    }

    /// The speed test; `pump(wait)` keeps the data plane read for about `wait`.
    pub(super) fn speed_test_with(
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
        self.inbox().probe_done = None;
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
            let mut inbox = self.inbox();
            if let Some(done) = inbox.probe_done.take() {
                break done;
            }
            if let Some(r) = &inbox.closed {
                return Err(Error::closed(format!(
                    "the host closed the session: {}",
                    r.reason
                )));
            }
        };
        // Datagrams still in flight or in the socket buffer: read for a moment
        // more (not after a refusal: nothing was sent).
        let grace = Instant::now() + Duration::from_millis(if done.0 == 0 { 0 } else { 150 });
        while Instant::now() < grace {
            pump(Duration::from_millis(10))?;
        }
        let received = self.stats.snapshot().probe_packets_received - before;
        let (sent, drops, us, rate_kbps) = done;
        let secs = (us as f64 / 1e6).max(1e-6);
        let datagram_bits = (self.datagram_len * 8) as f64;
        Ok(ProbeResult {
            target_kbps,
            delivered_kbps: if us == 0 {
                0.0
            } else {
                received as f64 * datagram_bits / secs / 1000.0
            },
            loss_percent: if sent == 0 {
                0.0
            } else {
                (sent.saturating_sub(received)) as f64 * 100.0 / sent as f64
            },
            send_drops: drops,
            packets_sent: sent,
            packets_received: received,
            duration: Duration::from_micros(us),
            rate_kbps,
        })
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next message from the host (FEC changes, close), if one is
    /// waiting. FEC changes fold into the one waiting; the close comes last.
    pub fn poll_event(&self) -> Option<ClientEvent> {
        self.inbox().pop()
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

/// Reads the control stream and does what [`ClientProto`] says, until the
/// connection ends; then reports the close.
async fn control_loop(
    mut recv: quinn::RecvStream,
    conn: quinn::Connection,
    slot: CloseSlot,
    proto: Arc<Mutex<ClientProto>>,
    inbox: SharedInbox,
) {
    loop {
        let m = match read_msg(&mut recv).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                close_for_error(&conn, &e);
                break;
            }
        };
        let action = proto
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle(m, Instant::now());
        match action {
            Some(ClientAction::Event(e)) => inbox.lock().unwrap_or_else(|p| p.into_inner()).push(e),
            Some(ClientAction::ProbeDone {
                packets_sent,
                send_drops,
                duration_us,
                rate_kbps,
            }) => {
                inbox.lock().unwrap_or_else(|p| p.into_inner()).probe_done =
                    Some((packets_sent, send_drops, duration_us, rate_kbps));
            }
            Some(ClientAction::Close(r)) => {
                peer_closed(&slot, &conn, r);
                break;
            }
            None => {}
        }
    }
    conn.closed().await;
    let reason = reason_of(&slot, &conn).unwrap_or(CloseReason {
        code: close_code::NORMAL,
        reason: String::new(),
    });
    inbox
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ClientEvent::Closed(reason));
}

/// Sends loss reports when [`ClientProto`] says they are due, until the
/// connection ends.
async fn report_loop(
    conn: quinn::Connection,
    ctrl: Ctrl,
    proto: Arc<Mutex<ClientProto>>,
    stats: StatsHandle,
) {
    loop {
        let due = proto.lock().unwrap_or_else(|p| p.into_inner()).poll_timeout();
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = conn.closed() => return,
        }
        let report = proto
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle_timeout(Instant::now(), &stats.snapshot());
        // Reports are cumulative: one the stream cannot take now is not missed.
        if let Some(m) = report {
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = ctrl.try_send(m) {
                return;
            }
        }
    }
}
