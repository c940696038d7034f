//! One client's session on the host: its control tasks, its send thread, and
//! the application's handle.
//!
//! ```text
//! app ── submit ──► [send queue] ──► punktfunk-send: HostSender (FrameSender + probe, sans-IO) ──► UDP
//!                                          ▲ inbox (probe, FEC) + wake
//! quinn ─► control task ─► HostProto::handle ─► actions: events → app, messages → writer task
//! quinn ─► datagram task ─► HostProto::handle_datagram ─► input events → app
//! ```
//!
//! A finished handshake is a [`ParkedSession`]: its tasks run, but it has no
//! send thread and runs no probe until [`super::Host::accept`] hands it to
//! the application as a [`HostSession`]; one not accepted in time is closed.
//! Nothing on the QUIC runtime's thread waits for the data plane: the send
//! thread owns the sender, and the control tasks leave commands in its inbox
//! and wake it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fec::check_fec_percent;
use crate::rate::WireBudget;
use crate::session::{FrameMeta, FrameSender, FrameSink, Notify, SendWaker, SendWorker, StatsHandle};
use crate::stats::StatsSnapshot;
use crate::transport::DataPath;

use super::events::EventQueue;
use super::governor::Share;
use super::host::HostConfig;
use super::host_rate::SessionRate;
use super::identity::Fingerprint;
use super::msg::{clip_reason, close_code, CloseReason, ControlMsg};
use super::proto::host::{probe_refused, DatagramOutcome, HostAction, HostEvent, HostProto};
use super::proto::Negotiated;
use super::runtime::{
    close_conn, close_for_error, close_now, ctrl_channel, peer_closed, read_msg, reason_of, send_ctrl,
    write_loop, CloseSlot, Ctrl, Runtime,
};
use super::web::session as websession;

/// Longest [`HostSession::close`] waits for the frames already queued to go out.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// What the handshake hands over to start a session.
pub(super) struct SessionParts<'a> {
    pub rt: Arc<Runtime>,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub sender: FrameSender<Arc<DataPath>>,
    pub negotiated: Negotiated,
    pub config: &'a HostConfig,
    pub client_fingerprint: Option<Fingerprint>,
    pub data_peer: SocketAddr,
    /// Probes running across the host.
    pub probes: Arc<AtomicU32>,
    /// This session's place under the host-wide ceiling, if there is one.
    pub share: Option<Share>,
}

/// Feedback datagrams waiting for the send thread at most; older ones go
/// (a newer report supersedes them), counted by the rate controller as missing.
const FEEDBACK_BACKLOG: usize = 16;

/// Commands from the control tasks to the send thread.
#[derive(Debug, Default)]
struct Inbox {
    fec: Option<u8>,
    probe: Option<(u32, u32)>,
    stop_probe: bool,
    feedback: std::collections::VecDeque<bytes::Bytes>,
}

/// State the control tasks, the send thread and the application share.
pub(super) struct Shared {
    proto: Mutex<HostProto>,
    inbox: Mutex<Inbox>,
    pub(super) events: EventQueue,
    /// The FEC percentage in force (mirrored for readers on any thread).
    fec_percent: AtomicU8,
    /// The media target the rate controller last published, kbit/s (the
    /// granted bitrate without rate control).
    pub(super) target_kbps: AtomicU32,
    /// The rate controller's congestion back-offs so far (for adaptive FEC).
    congestion_backoffs: AtomicU64,
    /// The application took the session: probes may run.
    accepted: AtomicBool,
    /// Nobody took the session in time; the host closed it.
    expired: AtomicBool,
    /// Wakes the send thread once there is one.
    waker: OnceLock<SendWaker>,
    /// Probes running across the host, and the most allowed at once.
    probes: Arc<AtomicU32>,
    max_probes: u32,
}

impl Shared {
    fn new(
        proto: HostProto,
        fec_percent: u8,
        target_kbps: u32,
        probes: Arc<AtomicU32>,
        max_probes: u32,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            proto: Mutex::new(proto),
            inbox: Mutex::default(),
            events: EventQueue::default(),
            fec_percent: AtomicU8::new(fec_percent),
            target_kbps: AtomicU32::new(target_kbps),
            congestion_backoffs: AtomicU64::new(0),
            accepted: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            waker: OnceLock::new(),
            probes,
            max_probes,
        })
    }

    fn proto(&self) -> MutexGuard<'_, HostProto> {
        self.proto.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a new media target: the getter, the stats gauge (one
    /// figure, so that both always agree) and the event, in that order.
    pub(super) fn publish_target(&self, kbps: u32, stats: &crate::stats::Stats) {
        self.target_kbps.store(kbps, Ordering::Relaxed);
        crate::stats::Stats::set(&stats.target_kbps, u64::from(kbps));
        self.events.push(HostEvent::TargetBitrate { kbps });
    }

    pub(super) fn wake_sender(&self) {
        if let Some(w) = self.waker.get() {
            w.wake();
        }
    }

    /// Takes one of the host's probe slots, if one is free.
    fn claim_probe(&self) -> bool {
        self.probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_probes).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_probe(&self) {
        self.probes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The send thread's sink: the session's [`FrameSender`], which also runs the
/// speed test, and the inbox the control tasks fill.
struct HostSender {
    sender: FrameSender<Arc<DataPath>>,
    shared: Arc<Shared>,
    ctrl: Ctrl,
    conn: quinn::Connection,
    slot: CloseSlot,
    /// The rate of the probe running, kbit/s.
    probe_kbps: u32,
    /// Rate control, unless the host turned it off.
    rate: Option<SessionRate>,
    stats: Arc<crate::stats::Stats>,
}

impl HostSender {
    /// Applies what the control tasks asked for since the last run.
    fn take_commands(&mut self, now: Instant) -> Result<()> {
        let Inbox {
            fec,
            probe,
            stop_probe,
            feedback,
        } = std::mem::take(&mut *self.shared.inbox());
        if let Some(rate) = self.rate.as_mut() {
            for f in &feedback {
                rate.on_feedback(f, now);
            }
        }
        if let Some(pct) = fec {
            self.sender.set_fec_percent(pct)?;
        }
        match probe {
            // The session ended before the probe could start, or the host
            // runs as many probes as it allows: refused.
            Some(_) if stop_probe || !self.shared.claim_probe() => {
                self.shared.proto().probe_finished();
                send_ctrl(&self.ctrl, probe_refused());
            }
            Some((kbps, ms)) => {
                self.probe_kbps = kbps;
                self.sender
                    .start_probe(kbps, Duration::from_millis(ms.into()), now);
            }
            None if stop_probe && self.sender.stop_probe(now).is_some() => self.probe_over(),
            None => {}
        }
        Ok(())
    }

    fn probe_over(&mut self) {
        self.shared.proto().probe_finished();
        self.shared.release_probe();
    }
}

impl FrameSink for HostSender {
    fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<()> {
        if let Some(r) = reason_of(&self.slot, &self.conn) {
            return Err(Error::closed(format!("the client is gone: {}", r.reason)));
        }
        self.sender.push_frame(data, meta, now).map(|_| ())
    }

    fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>> {
        self.take_commands(now)?;
        let mut next = self.sender.poll_transmit(now)?;
        if let Some(rate) = self.rate.as_mut() {
            let fec = self.sender.fec_percent();
            if let Some(kbps) = rate.update(&mut self.sender, self.conn.rtt(), fec, &self.stats, now) {
                self.shared.publish_target(kbps, &self.stats);
            }
            self.shared
                .congestion_backoffs
                .store(rate.congestion_backoffs(), Ordering::Relaxed);
            // The pacing may have changed: when the sender next sends.
            next = earliest(self.sender.poll_timeout(now), rate.poll_timeout());
        }
        if let Some(done) = self.sender.take_probe_report() {
            let packets_sent = done.packets_sent;
            send_ctrl(
                &self.ctrl,
                ControlMsg::ProbeDone {
                    packets_sent,
                    bytes_sent: packets_sent * self.sender.datagram_len() as u64,
                    send_drops: done.send_drops,
                    duration_us: done.duration.as_micros() as u64,
                    rate_kbps: self.probe_kbps,
                },
            );
            self.probe_over();
        }
        Ok(next)
    }

    fn flush(&mut self) -> Result<()> {
        self.sender.flush()
    }

    fn set_fec_percent(&mut self, pct: u8) -> Result<()> {
        self.sender.set_fec_percent(pct)
    }

    fn max_frame_bytes(&self) -> usize {
        self.sender.max_frame_bytes()
    }

    fn stats_handle(&self) -> StatsHandle {
        self.sender.stats_handle()
    }

    fn accepts_frame(&self) -> bool {
        self.sender.accepts_frame()
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Drop for HostSender {
    fn drop(&mut self) {
        // A probe cut short by the end of the session frees its host slot.
        if self.sender.probing() {
            self.shared.release_probe();
        }
    }
}

/// What a session is, whether or not the application took it yet.
struct Common {
    client_fingerprint: Option<Fingerprint>,
    rt: Arc<Runtime>,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    shared: Arc<Shared>,
    stats: StatsHandle,
    peer: SocketAddr,
    data_peer: SocketAddr,
    session_id: [u8; 16],
    granted_bitrate_kbps: u32,
    /// The WebTransport session of a browser (`None`: a native client).
    web: Option<websession::WebHandle>,
}

/// What the send thread drives: a native client's data plane or a browser's streams.
enum Sink {
    Native(Box<HostSender>),
    Web(Box<websession::WebSink>),
}

/// How a session's frames travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// A native client: FEC and AES-GCM datagrams on the data plane.
    Native,
    /// A browser: one WebTransport stream per frame (docs/WEB.md).
    Web,
}

/// What a browser's handshake hands over to start a session.
pub(super) struct WebParts<'a> {
    pub rt: Arc<Runtime>,
    pub conn: quinn::Connection,
    pub session: web_transport_quinn::Session,
    pub send: web_transport_quinn::SendStream,
    pub recv: web_transport_quinn::RecvStream,
    pub config: &'a HostConfig,
    pub web: super::web::WebConfig,
    pub device: Fingerprint,
    pub session_id: [u8; 16],
    pub share: Option<Share>,
}

/// A finished handshake the application has not taken yet (see the module docs).
pub(super) struct ParkedSession {
    common: Common,
    sink: Sink,
    send_queue: usize,
    /// Closes the session if nobody accepts it in time.
    watchdog: tokio::task::JoinHandle<()>,
}

impl ParkedSession {
    /// Starts the session's control tasks; the application gets it from
    /// [`ParkedSession::activate`] within `HostConfig::accept_timeout`.
    pub(super) fn start(p: SessionParts<'_>) -> ParkedSession {
        let mut sender = p.sender;
        let stats = sender.stats_handle();
        let granted = p.negotiated.granted_bitrate_kbps;
        let now = Instant::now();
        let shared = Shared::new(
            HostProto::new(&p.negotiated, p.config.adaptive_fec, p.config.probe, now),
            sender.fec_percent(),
            // Until the controller's first answer: where it starts.
            if p.config.rate.adaptive {
                p.config.rate.initial_kbps.min(granted)
            } else {
                granted
            },
            p.probes,
            p.config.probe.max_concurrent,
        );
        let (ctrl, ctrl_rx) = ctrl_channel();
        let slot = CloseSlot::default();
        let tap = p.config.hooks.on_control_sent.clone();
        let _guard = p.rt.enter();
        tokio::spawn(write_loop(p.send, ctrl_rx, tap));
        let tasks = Tasks {
            conn: p.conn.clone(),
            slot: slot.clone(),
            ctrl: ctrl.clone(),
            shared: shared.clone(),
        };
        tokio::spawn(tasks.clone().control_loop(p.recv));
        tokio::spawn(tasks.datagram_loop());
        let watchdog = tokio::spawn(watchdog(p.conn.clone(), shared.clone(), p.config.accept_timeout));
        let rate = p.config.rate.adaptive.then(|| {
            let budget = WireBudget {
                fec_percent: sender.fec_percent(),
                datagram_len: sender.datagram_len(),
                shard_payload: p.negotiated.session.fec.shard_payload,
            };
            sender.record_sent(true);
            SessionRate::new(&p.config.rate, granted, budget, p.share, now)
        });
        let sink = HostSender {
            stats: sender.counters().clone(),
            sender,
            shared: shared.clone(),
            ctrl: ctrl.clone(),
            conn: p.conn.clone(),
            slot: slot.clone(),
            probe_kbps: 0,
            rate,
        };
        ParkedSession {
            common: Common {
                client_fingerprint: p.client_fingerprint,
                rt: p.rt.clone(),
                peer: p.conn.remote_address(),
                conn: p.conn,
                slot,
                ctrl,
                shared,
                stats,
                data_peer: p.data_peer,
                session_id: p.negotiated.session_id,
                granted_bitrate_kbps: p.negotiated.granted_bitrate_kbps,
                web: None,
            },
            sink: Sink::Native(Box::new(sink)),
            send_queue: p.config.send_queue,
            watchdog,
        }
    }

    /// Starts a browser session's tasks (docs/WEB.md); like [`ParkedSession::start`].
    pub(super) fn start_web(p: WebParts<'_>) -> ParkedSession {
        let granted = p.config.max_bitrate_kbps;
        let negotiated = Negotiated {
            session_id: p.session_id,
            session: p.config.session.clone(),
            granted_bitrate_kbps: granted,
            host_data_port: 0,
            client_data_port: 0,
        };
        // No FEC and no speed test on a browser session: only the event queue
        // and the target are used.
        let probe = super::proto::host::ProbePolicy {
            enabled: false,
            ..p.config.probe
        };
        let start = if p.config.rate.adaptive {
            p.config.rate.initial_kbps.min(granted)
        } else {
            granted
        };
        let shared = Shared::new(
            HostProto::new(&negotiated, None, probe, Instant::now()),
            0,
            start,
            Arc::new(AtomicU32::new(0)),
            0,
        );
        let slot = CloseSlot::default();
        let (ctrl, ctrl_rx) = ctrl_channel();
        let _guard = p.rt.enter();
        let (web_tx, web_rx) = tokio::sync::mpsc::channel(websession::CTRL_BACKLOG);
        let max_frame_bytes = p.config.session.max_frame_bytes;
        let _ = web_tx.try_send(super::web::WebMsg::Welcome {
            session_id: p.session_id,
            max_frame_bytes: u32::try_from(max_frame_bytes).unwrap_or(u32::MAX),
            granted_kbps: granted,
            window: p.web.window,
        });
        if p.config.rate.adaptive {
            let _ = web_tx.try_send(super::web::WebMsg::Target(start));
        }
        tokio::spawn(websession::write_loop(p.send, web_rx));
        tokio::spawn(websession::control_loop(
            p.recv,
            p.session.clone(),
            slot.clone(),
            shared.clone(),
        ));
        // Nothing reads the native control channel of a browser session.
        drop(ctrl_rx);
        let watchdog = tokio::spawn(watchdog(p.conn.clone(), shared.clone(), p.config.accept_timeout));
        let (sink, handle) = websession::WebSink::start(
            p.session.clone(),
            &p.web,
            max_frame_bytes,
            slot.clone(),
            shared.clone(),
            web_tx,
            p.config.rate.adaptive,
            granted,
            p.share,
        );
        ParkedSession {
            common: Common {
                client_fingerprint: Some(p.device),
                rt: p.rt.clone(),
                peer: p.conn.remote_address(),
                data_peer: p.conn.remote_address(),
                conn: p.conn,
                slot,
                ctrl,
                shared,
                stats: sink.stats_handle(),
                session_id: p.session_id,
                granted_bitrate_kbps: granted,
                web: Some(handle),
            },
            sink: Sink::Web(Box::new(sink)),
            send_queue: p.config.send_queue,
            watchdog,
        }
    }

    /// Whether the host closed the session because nobody accepted it in
    /// time. (A session the client closed meanwhile is still handed over:
    /// the application learns who came, and reads the close.)
    pub(super) fn expired(&self) -> bool {
        self.common.shared.expired.load(Ordering::Acquire)
    }

    /// Hands the session to the application: starts its send thread.
    pub(super) fn activate(self) -> Result<HostSession> {
        self.watchdog.abort();
        let c = self.common;
        c.shared.accepted.store(true, Ordering::Release);
        let worker = match self.sink {
            Sink::Native(s) => SendWorker::spawn(*s, self.send_queue, None)?,
            Sink::Web(s) => SendWorker::spawn(*s, self.send_queue, None)?,
        };
        let _ = c.shared.waker.set(worker.waker());
        // Commands left while parked (a FEC change) apply now.
        c.shared.wake_sender();
        Ok(HostSession { c, worker })
    }
}

/// Closes a parked session that was not accepted within `limit`.
async fn watchdog(conn: quinn::Connection, shared: Arc<Shared>, limit: Duration) {
    tokio::time::sleep(limit).await;
    if !shared.accepted.load(Ordering::Acquire) {
        shared.expired.store(true, Ordering::Release);
        close_now(
            &conn,
            &CloseReason {
                code: close_code::INTERNAL,
                reason: format!("the host did not accept the session within {limit:?}"),
            },
        );
    }
}

/// One client's session on the host: send frames, read its events.
pub struct HostSession {
    c: Common,
    worker: SendWorker,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("peer", &self.c.peer)
            .field("data_peer", &self.c.data_peer)
            .finish_non_exhaustive()
    }
}

impl HostSession {
    /// Queues a frame for this client, waiting while the send queue is full
    /// (the queue's capacity is [`HostConfig::send_queue`]); the send thread
    /// paces it out. Fails with `ERR_PF_CLOSED` once the client is gone and
    /// `ERR_PF_INVALID_ARG` for a frame above `max_frame_bytes`.
    pub fn submit_frame(&self, data: &[u8], meta: FrameMeta) -> Result<()> {
        if let Some(r) = self.closed_reason() {
            return Err(Error::closed(format!("the client is gone: {}", r.reason)));
        }
        let mut buf = self.worker.take_buffer();
        buf.extend_from_slice(data);
        self.worker.submit(buf, meta, None).map_err(|r| r.error)
    }

    /// The session's send queue, for callers that must not block (try a
    /// submit, reuse buffers, get woken when room opens).
    pub fn sender(&self) -> &SendWorker {
        &self.worker
    }

    /// Calls `notify` (from a network thread) when an event is queued after
    /// the application found the queue empty; for waking an event loop
    /// instead of blocking in [`HostSession::next_event`]. Wake-ups coalesce:
    /// one per drain, however many events the client sends, so read with
    /// [`HostSession::try_next_event`] until it returns `None` after each.
    pub fn set_notify(&self, notify: Option<Notify>) {
        self.c.shared.events.set_notify(notify);
    }

    /// The next event if one is queued, without waiting. `ERR_PF_CLOSED` after
    /// the `Closed` event has been taken.
    pub fn try_next_event(&self) -> Result<Option<HostEvent>> {
        self.c.shared.events.pop(Duration::ZERO)
    }

    /// The next event from the client, waiting up to `timeout`; `Ok(None)` on
    /// timeout. Events are bounded: input beyond 4096 unread events is dropped
    /// and counted ([`HostSession::input_dropped`]), keyframe requests and FEC
    /// changes fold into the one already waiting.
    pub fn next_event(&self, timeout: Duration) -> Result<Option<HostEvent>> {
        self.c.shared.events.pop(timeout)
    }

    /// Sets the FEC percentage from the next queued frame on (and tells the
    /// client); adaptive FEC continues from it.
    pub fn set_fec_percent(&self, percent: u8) -> Result<()> {
        if self.c.web.is_some() {
            return Err(websession::no_fec());
        }
        check_fec_percent(percent)?;
        self.worker.set_fec_percent(percent)?;
        self.c.shared.proto().fec_set(percent);
        self.c.shared.fec_percent.store(percent, Ordering::Relaxed);
        send_ctrl(&self.c.ctrl, ControlMsg::FecChanged { percent });
        Ok(())
    }

    /// The FEC percentage in force.
    pub fn fec_percent(&self) -> u8 {
        self.c.shared.fec_percent.load(Ordering::Relaxed)
    }

    /// Data-plane counters of this session.
    pub fn stats(&self) -> StatsSnapshot {
        self.c.stats.snapshot()
    }

    /// A handle for reading the counters from any thread.
    pub fn stats_handle(&self) -> StatsHandle {
        self.c.stats.clone()
    }

    /// Input datagrams that could not be decoded, and input events dropped
    /// because too many were left unread (counted, never silent).
    pub fn input_dropped(&self) -> u64 {
        self.c.shared.events.input_dropped.load(Ordering::Relaxed)
    }

    /// The client's QUIC address.
    pub fn peer(&self) -> SocketAddr {
        self.c.peer
    }

    /// The fingerprint of the certificate the client presented (`None` if it
    /// presented none): what [`HostConfig::authorized_clients`] lists.
    pub fn client_fingerprint(&self) -> Option<Fingerprint> {
        self.c.client_fingerprint
    }

    /// The client's data-plane address: validated in the handshake (it
    /// answered a challenge sent there), the only destination of this
    /// session's datagrams and the only source its data socket accepts.
    pub fn data_peer(&self) -> SocketAddr {
        self.c.data_peer
    }

    /// This session's id (also bound into its keys).
    pub fn session_id(&self) -> [u8; 16] {
        self.c.session_id
    }

    /// The bitrate granted in the handshake, kbit/s: the ceiling of this
    /// session's media rate.
    pub fn granted_bitrate_kbps(&self) -> u32 {
        self.c.granted_bitrate_kbps
    }

    /// The media bitrate the encoder should aim for now, kbit/s: the rate
    /// controller's estimate of the path less FEC and header overhead, within
    /// the granted bitrate (and the host-wide ceiling's share). Without rate
    /// control, the granted bitrate. Changes also arrive as
    /// [`HostEvent::TargetBitrate`].
    pub fn target_bitrate_kbps(&self) -> u32 {
        self.c.shared.target_kbps.load(Ordering::Relaxed)
    }

    /// How the connection ended, if it did.
    pub fn closed_reason(&self) -> Option<CloseReason> {
        match &self.c.web {
            Some(web) => websession::web_closed(&self.c.slot, &web.session),
            None => reason_of(&self.c.slot, &self.c.conn),
        }
    }

    /// How this session's frames travel: a native client's data plane or a
    /// browser's WebTransport streams.
    pub fn carrier(&self) -> Carrier {
        if self.c.web.is_some() {
            Carrier::Web
        } else {
            Carrier::Native
        }
    }

    /// Closes the session with a code and reason the client can read: the
    /// frames already queued are sent first (waiting up to
    /// [`CLOSE_DRAIN`] for them), then the `Close` message goes behind every
    /// control message already sent (waiting up to a second for the client
    /// to answer).
    pub fn close(&self, code: u32, reason: &str) {
        let _ = self.worker.finish(CLOSE_DRAIN);
        match &self.c.web {
            Some(web) => {
                let r = CloseReason {
                    code,
                    reason: clip_reason(reason).to_string(),
                };
                self.c.rt.block_on(web.close(&self.c.slot, r));
            }
            None => close_conn(&self.c.rt, &self.c.conn, &self.c.ctrl, code, reason),
        }
    }
}

impl Drop for HostSession {
    fn drop(&mut self) {
        // Frames already queued go out; then the send thread ends.
        let _ = self.worker.close();
    }
}

/// What the session's tasks on the QUIC runtime share.
#[derive(Clone)]
struct Tasks {
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    shared: Arc<Shared>,
}

impl Tasks {
    /// Reads the control stream and does what [`HostProto`] says, until the
    /// connection ends; then reports the close and stops any probe.
    async fn control_loop(self, mut recv: quinn::RecvStream) {
        loop {
            let m = match read_msg(&mut recv).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    close_for_error(&self.conn, &e);
                    break;
                }
            };
            let actions = {
                let mut proto = self.shared.proto();
                proto.note_congestion(self.shared.congestion_backoffs.load(Ordering::Relaxed));
                proto.handle(m, Instant::now())
            };
            if self.act(actions) {
                break;
            }
        }
        self.conn.closed().await;
        self.shared.inbox().stop_probe = true;
        self.shared.wake_sender();
        let reason = reason_of(&self.slot, &self.conn).unwrap_or(CloseReason {
            code: close_code::NORMAL,
            reason: String::new(),
        });
        self.shared.events.push(HostEvent::Closed(reason));
    }

    /// Carries out actions in order; true once the session is closing.
    fn act(&self, actions: Vec<HostAction>) -> bool {
        let mut wake = false;
        for a in actions {
            match a {
                HostAction::Event(ev) => self.shared.events.push(ev),
                HostAction::Send(m) => send_ctrl(&self.ctrl, m),
                HostAction::SetFec(pct) => {
                    self.shared.inbox().fec = Some(pct);
                    self.shared.fec_percent.store(pct, Ordering::Relaxed);
                    wake = true;
                }
                // The send thread runs it: only once the application took the
                // session (a parked one has no send thread yet).
                HostAction::StartProbe { kbps, ms } => {
                    self.shared.inbox().probe = Some((kbps, ms));
                    wake = true;
                }
                HostAction::Close(r) => {
                    peer_closed(&self.slot, &self.conn, r);
                    return true;
                }
            }
        }
        if wake {
            self.shared.wake_sender();
        }
        false
    }

    /// Reads the client's QUIC datagrams (input) until the connection ends.
    async fn datagram_loop(self) {
        while let Ok(d) = self.conn.read_datagram().await {
            let outcome = self.shared.proto().handle_datagram(&d, Instant::now());
            match outcome {
                DatagramOutcome::Event(ev) => self.shared.events.push(ev),
                DatagramOutcome::Duplicate => {}
                DatagramOutcome::Feedback => {
                    let mut inbox = self.shared.inbox();
                    if inbox.feedback.len() == FEEDBACK_BACKLOG {
                        inbox.feedback.pop_front();
                    }
                    inbox.feedback.push_back(d);
                    drop(inbox);
                    self.shared.wake_sender();
                }
                DatagramOutcome::Dropped => {
                    self.shared.events.input_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
