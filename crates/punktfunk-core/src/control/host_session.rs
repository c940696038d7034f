//! One client's session on the host: its send thread, its control tasks,
//! and the application's handle ([`HostSession`]).
//!
//! ```text
//! app ── submit ──► [send queue] ──► punktfunk-send: HostSender (FrameSender + probe, sans-IO) ──► UDP
//!                                          ▲ inbox (probe, FEC) + wake
//! quinn ─► control task ─► HostProto::handle ─► actions: events → app, messages → writer task
//! quinn ─► datagram task ─► HostProto::handle_datagram ─► input events → app
//! ```
//!
//! Nothing on the QUIC runtime's thread waits for the data plane: the send
//! thread owns the sender; the control tasks leave commands in its inbox and
//! wake it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fec::check_fec_percent;
use crate::session::{
    FrameMeta, FrameSender, FrameSink, Notify, SendWaker, SendWorker, Session, StatsHandle,
};
use crate::stats::StatsSnapshot;
use crate::transport::DataPath;

use super::host::HostConfig;
use super::identity::Fingerprint;
use super::msg::{CloseReason, ControlMsg};
use super::proto::host::{DatagramOutcome, HostAction, HostEvent, HostProto};
use super::proto::Negotiated;
use super::runtime::{
    close_conn, close_for_error, peer_closed, read_msg, reason_of, write_loop, CloseSlot, Ctrl, Runtime,
};

/// Most host events left unread before further input events are dropped
/// (and counted); other events are always queued, and are few.
const HOST_EVENT_BACKLOG: usize = 4096;

/// What the handshake hands over to start a session.
pub(super) struct SessionParts<'a> {
    pub rt: Arc<Runtime>,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub data: Session<Arc<DataPath>>,
    pub negotiated: Negotiated,
    pub config: &'a HostConfig,
    pub client_fingerprint: Option<Fingerprint>,
    pub data_peer: SocketAddr,
}

/// Commands from the control tasks to the send thread.
#[derive(Debug, Default)]
struct Inbox {
    fec: Option<u8>,
    probe: Option<(u32, u32)>,
    stop_probe: bool,
}

/// State the control tasks, the send thread and the application share.
struct Shared {
    proto: Mutex<HostProto>,
    inbox: Mutex<Inbox>,
    /// Input datagrams that could not be decoded, and input events dropped
    /// because the application left too many unread.
    input_dropped: AtomicU64,
    notify: Mutex<Option<Notify>>,
    /// Events queued and not yet taken by the application.
    queued: AtomicUsize,
    /// The FEC percentage in force (mirrored for readers on any thread).
    fec_percent: AtomicU8,
    events: mpsc::Sender<HostEvent>,
}

impl Shared {
    fn proto(&self) -> MutexGuard<'_, HostProto> {
        self.proto.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event for the application and wakes it if it asked to be
    /// woken. Input beyond [`HOST_EVENT_BACKLOG`] unread events is dropped and
    /// counted: memory stays bounded whatever the client sends.
    fn emit(&self, ev: HostEvent) {
        if matches!(ev, HostEvent::Input(_)) && self.queued.load(Ordering::Relaxed) >= HOST_EVENT_BACKLOG {
            self.input_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.events.send(ev).is_ok() {
            let notify = self.notify.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(n) = notify {
                n();
            }
        }
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
}

impl HostSender {
    /// Applies what the control tasks asked for since the last run.
    fn take_commands(&mut self, now: Instant) -> Result<()> {
        let Inbox {
            fec,
            probe,
            stop_probe,
        } = std::mem::take(&mut *self.shared.inbox());
        if let Some(pct) = fec {
            self.sender.set_fec_percent(pct)?;
        }
        if stop_probe {
            self.sender.stop_probe(now);
        }
        if let Some((kbps, ms)) = probe {
            self.sender
                .start_probe(kbps, Duration::from_millis(ms.into()), now);
        }
        Ok(())
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
        let next = self.sender.poll_transmit(now)?;
        if let Some(done) = self.sender.take_probe_report() {
            let packets_sent = done.packets_sent;
            let _ = self.ctrl.send(ControlMsg::ProbeDone {
                packets_sent,
                bytes_sent: packets_sent * self.sender.datagram_len() as u64,
                send_drops: done.send_drops,
                duration_us: done.duration.as_micros() as u64,
            });
            self.shared.proto().probe_finished();
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
}

/// One client's session on the host: send frames, read its events.
pub struct HostSession {
    client_fingerprint: Option<Fingerprint>,
    rt: Arc<Runtime>,
    conn: quinn::Connection,
    slot: CloseSlot,
    ctrl: Ctrl,
    shared: Arc<Shared>,
    worker: SendWorker,
    events: Mutex<mpsc::Receiver<HostEvent>>,
    /// The `Closed` event was taken: every later read says the session is closed.
    closed_taken: std::sync::atomic::AtomicBool,
    stats: StatsHandle,
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

impl HostSession {
    /// Starts the session's send thread and control tasks.
    pub(super) fn start(p: SessionParts<'_>) -> Result<HostSession> {
        let (sender, _receiver) = p.data.split();
        let stats = sender.stats_handle();
        let (tx, events) = mpsc::channel();
        let shared = Arc::new(Shared {
            proto: Mutex::new(HostProto::new(&p.negotiated, p.config.adaptive_fec)),
            inbox: Mutex::default(),
            input_dropped: AtomicU64::new(0),
            notify: Mutex::new(None),
            queued: AtomicUsize::new(0),
            fec_percent: AtomicU8::new(sender.fec_percent()),
            events: tx,
        });
        let (ctrl, ctrl_rx) = tokio::sync::mpsc::unbounded_channel();
        let slot = CloseSlot::default();
        let sink = HostSender {
            sender,
            shared: shared.clone(),
            ctrl: ctrl.clone(),
            conn: p.conn.clone(),
            slot: slot.clone(),
        };
        let worker = SendWorker::spawn(sink, p.config.send_queue, None)?;
        let tap = p.config.hooks.on_control_sent.clone();
        let _guard = p.rt.enter();
        tokio::spawn(write_loop(p.send, ctrl_rx, tap));
        let tasks = Tasks {
            conn: p.conn.clone(),
            slot: slot.clone(),
            ctrl: ctrl.clone(),
            shared: shared.clone(),
            waker: worker.waker(),
        };
        tokio::spawn(tasks.clone().control_loop(p.recv));
        tokio::spawn(tasks.datagram_loop());
        let peer = p.conn.remote_address();
        Ok(HostSession {
            client_fingerprint: p.client_fingerprint,
            rt: p.rt.clone(),
            conn: p.conn,
            slot,
            ctrl,
            shared,
            worker,
            events: Mutex::new(events),
            closed_taken: Default::default(),
            stats,
            peer,
            data_peer: p.data_peer,
            session_id: p.negotiated.session_id,
            granted_bitrate_kbps: p.negotiated.granted_bitrate_kbps,
        })
    }

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

    /// Calls `notify` (from a network thread) whenever an event is queued; for
    /// waking an event loop instead of blocking in [`HostSession::next_event`].
    pub fn set_notify(&self, notify: Option<Notify>) {
        *self.shared.notify.lock().unwrap_or_else(|p| p.into_inner()) = notify;
    }

    /// The next event if one is queued, without waiting. `ERR_PF_CLOSED` after
    /// the `Closed` event has been taken.
    pub fn try_next_event(&self) -> Result<Option<HostEvent>> {
        self.check_open()?;
        match self.events.lock().unwrap_or_else(|p| p.into_inner()).try_recv() {
            Ok(e) => Ok(Some(self.taken(e))),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(Error::closed("the session is closed")),
        }
    }

    /// The next event from the client, waiting up to `timeout`; `Ok(None)` on timeout.
    pub fn next_event(&self, timeout: Duration) -> Result<Option<HostEvent>> {
        self.check_open()?;
        match self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(timeout)
        {
            Ok(e) => Ok(Some(self.taken(e))),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::closed("the session is closed")),
        }
    }

    fn taken(&self, e: HostEvent) -> HostEvent {
        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        if matches!(e, HostEvent::Closed(_)) {
            self.closed_taken.store(true, Ordering::Relaxed);
        }
        e
    }

    fn check_open(&self) -> Result<()> {
        if self.closed_taken.load(Ordering::Relaxed) {
            return Err(Error::closed("the session is closed"));
        }
        Ok(())
    }

    /// Sets the FEC percentage from the next queued frame on (and tells the
    /// client); adaptive FEC continues from it.
    pub fn set_fec_percent(&self, percent: u8) -> Result<()> {
        check_fec_percent(percent)?;
        self.worker.set_fec_percent(percent)?;
        self.shared.proto().fec_set(percent);
        self.shared.fec_percent.store(percent, Ordering::Relaxed);
        let _ = self.ctrl.send(ControlMsg::FecChanged { percent });
        Ok(())
    }

    /// The FEC percentage in force.
    pub fn fec_percent(&self) -> u8 {
        self.shared.fec_percent.load(Ordering::Relaxed)
    }

    /// Data-plane counters of this session.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// A handle for reading the counters from any thread.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
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

    /// Closes the session with a code and reason the client can read: the
    /// frames already queued are sent first (waiting up to a second for
    /// them), then the `Close` message goes behind every control message
    /// already sent (waiting up to a second for the client to answer).
    pub fn close(&self, code: u32, reason: &str) {
        let _ = self.worker.finish(Duration::from_secs(1));
        close_conn(&self.rt, &self.conn, &self.ctrl, code, reason);
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
    waker: SendWaker,
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
            let actions = self.shared.proto().handle(m, Instant::now());
            if self.act(actions) {
                break;
            }
        }
        self.conn.closed().await;
        self.shared.inbox().stop_probe = true;
        self.waker.wake();
        let reason = reason_of(&self.slot, &self.conn).unwrap_or(CloseReason {
            code: super::msg::close_code::NORMAL,
            reason: String::new(),
        });
        self.shared.emit(HostEvent::Closed(reason));
    }

    /// Carries out actions in order; true once the session is closing.
    fn act(&self, actions: Vec<HostAction>) -> bool {
        let mut wake = false;
        for a in actions {
            match a {
                HostAction::Event(ev) => self.shared.emit(ev),
                HostAction::Send(m) => {
                    let _ = self.ctrl.send(m);
                }
                HostAction::SetFec(pct) => {
                    self.shared.inbox().fec = Some(pct);
                    self.shared.fec_percent.store(pct, Ordering::Relaxed);
                    wake = true;
                }
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
            self.waker.wake();
        }
        false
    }

    /// Reads the client's QUIC datagrams (input) until the connection ends.
    async fn datagram_loop(self) {
        while let Ok(d) = self.conn.read_datagram().await {
            let outcome = self.shared.proto().handle_datagram(&d, Instant::now());
            match outcome {
                DatagramOutcome::Event(ev) => self.shared.emit(ev),
                DatagramOutcome::Duplicate => {}
                DatagramOutcome::Dropped => {
                    self.shared.input_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
