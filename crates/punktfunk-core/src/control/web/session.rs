//! The browser driver: the WebTransport handshake and device proof on a
//! connection that arrived with ALPN `h3`, and the session's carrier: one
//! unidirectional stream per frame, at most `window` in flight.
//!
//! ```text
//! app ── submit ──► [send queue] ──► punktfunk-send: WebSink ──► jobs ──► dispatcher task: open_uni (in order)
//!                                        ▲ wake when a frame leaves the window      └─► frame task: write, finish,
//!                                        └──────────────────────────────────────────────  wait for the ack or give up
//! browser ─► control stream ─► control task ─► input / keyframe events → app
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use web_transport_quinn::{RecvStream, SendStream, Session, SessionError, WebTransportError};

use crate::error::{Error, Result};
use crate::session::{FrameMeta, FrameSink, StatsHandle};
use crate::stats::Stats;

use super::super::governor::Share;
use super::super::host::HostConfig;
use super::super::host_session::{ParkedSession, Shared, WebParts};
use super::super::identity::Fingerprint;
use super::super::msg::{clip_reason, close_code, CloseReason};
use super::super::proto::host::HostEvent;
use super::super::proto::protocol;
use super::super::runtime::{random, CloseSlot, Runtime};
use super::{
    frame_header, hex, verify_proof, HostCerts, WebConfig, WebMsg, MAX_BODY, RESET_GIVEN_UP, WEB_PATH,
};

/// How often a browser session's target is recomputed from the connection.
const RATE_INTERVAL: Duration = Duration::from_millis(50);
/// A target moves the published one when it differs by more than this share.
const TARGET_STEP: f64 = 0.05;
/// Stream, HTTP/3 and QUIC packet overhead taken off the path rate.
const OVERHEAD: f64 = 0.05;
/// Control messages to a browser waiting to be written at most; a page that
/// stops reading its control stream cannot make the host queue more.
pub(in crate::control) const CTRL_BACKLOG: usize = 16;
/// Longest a close waits for the browser to see it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The browser's close reason, or the connection's.
pub(in crate::control) fn web_reason(e: &SessionError) -> CloseReason {
    match e {
        SessionError::WebTransportError(WebTransportError::Closed(code, reason)) => CloseReason {
            code: *code,
            reason: clip_reason(reason).to_string(),
        },
        SessionError::ConnectionError(c) => super::super::runtime::close_reason(c),
        other => CloseReason {
            code: close_code::PROTOCOL,
            reason: clip_reason(&other.to_string()).to_string(),
        },
    }
}

/// Closes a browser session with a reason it can read, and waits (at most
/// [`CLOSE_WAIT`]) for the close to reach it.
pub(in crate::control) async fn close_session(session: &Session, r: &CloseReason) {
    session.close(r.code, clip_reason(&r.reason).as_bytes());
    let _ = tokio::time::timeout(CLOSE_WAIT, session.closed()).await;
}

/// Reads one control message; `Ok(None)` at the end of the stream.
async fn read_msg(recv: &mut RecvStream) -> Result<Option<WebMsg>> {
    let mut h = [0u8; 3];
    match recv.read_exact(&mut h).await {
        Ok(()) => {}
        Err(web_transport_quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(protocol(format!("control stream: {e}"))),
    }
    let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
    if len > MAX_BODY {
        return Err(protocol(format!(
            "web message of {len} bytes, at most {MAX_BODY}"
        )));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| protocol(format!("control stream: {e}")))?;
    WebMsg::decode(h[0], &body).map(Some)
}

async fn write_msg(send: &mut SendStream, m: &WebMsg) -> Result<()> {
    send.write_all(&m.encode())
        .await
        .map_err(|e| Error::closed(format!("control stream: {e}")))
}

/// One browser's handshake on a connection that finished its QUIC handshake
/// with ALPN `h3`: WebTransport, then Challenge → Hello → Welcome.
pub(in crate::control) async fn handshake(
    conn: quinn::Connection,
    cfg: &HostConfig,
    web: &WebConfig,
    certs: &HostCerts,
    rt: Arc<Runtime>,
    share: Option<Share>,
) -> Result<ParkedSession> {
    let request = web_transport_quinn::Request::accept(conn.clone())
        .await
        .map_err(|e| protocol(format!("WebTransport handshake failed: {e}")))?;
    if request.url.path() != WEB_PATH {
        let path = request.url.path().to_string();
        let _ = request
            .reject(web_transport_quinn::http::StatusCode::NOT_FOUND)
            .await;
        return Err(protocol(format!("a browser asked for {path}, not {WEB_PATH}")));
    }
    let session = request
        .ok()
        .await
        .map_err(|e| protocol(format!("WebTransport handshake failed: {e}")))?;
    match admit(&session, cfg, certs).await {
        Ok((send, recv, device)) => {
            let mut session_id = [0u8; 16];
            random(&mut session_id)?;
            Ok(ParkedSession::start_web(WebParts {
                rt,
                conn,
                session,
                send,
                recv,
                config: cfg,
                web: web.clone(),
                device,
                session_id,
                share,
            }))
        }
        Err(e) => {
            close_session(&session, &super::super::proto::close_for(&e)).await;
            Err(e)
        }
    }
}

/// Challenge → Hello: the device proves its key; a host with a list admits it
/// only if listed.
async fn admit(
    session: &Session,
    cfg: &HostConfig,
    certs: &HostCerts,
) -> Result<(SendStream, RecvStream, Fingerprint)> {
    let (mut send, mut recv) = session
        .accept_bi()
        .await
        .map_err(|e| protocol(format!("no control stream: {e}")))?;
    let mut nonce = [0u8; 32];
    random(&mut nonce)?;
    write_msg(&mut send, &WebMsg::Challenge(nonce)).await?;
    let Some(WebMsg::Hello { key, signature }) = read_msg(&mut recv).await? else {
        return Err(protocol("the browser did not answer the challenge with Hello"));
    };
    let device = verify_proof(&key, &signature, &nonce, &certs.web_hashes())?;
    if let Some(allowed) = &cfg.authorized_clients {
        if !allowed.contains(&device) {
            return Err(Error::new(
                crate::error::ErrorKind::Unauthorized,
                format!("browser device {} is not authorized on this host", hex(&device.0)),
            ));
        }
    }
    Ok((send, recv, device))
}

/// A frame on its way to the dispatcher.
struct Job {
    index: u64,
    meta: FrameMeta,
    data: Bytes,
    queued: Instant,
}

/// What the frame tasks share with the send thread.
#[derive(Clone)]
struct Flight {
    inflight: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    shared: Arc<Shared>,
    max_age: Duration,
}

impl Flight {
    fn done(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        self.shared.wake_sender();
    }
}

/// Opens one stream per frame, in frame order, and hands each to a task.
async fn dispatch(session: Session, mut jobs: mpsc::UnboundedReceiver<Job>, flight: Flight) {
    while let Some(job) = jobs.recv().await {
        let Ok(stream) = session.open_uni().await else {
            flight.done();
            break;
        };
        tokio::spawn(send_frame(stream, job, flight.clone()));
    }
    // The session ended: frames still queued never leave.
    while jobs.try_recv().is_ok() {
        flight.done();
    }
}

/// Writes one frame and waits for the browser's QUIC stack to acknowledge it;
/// one that is not through within the frame age is given up.
async fn send_frame(mut stream: SendStream, job: Job, flight: Flight) {
    let header = frame_header(job.index, job.meta.pts, job.meta.keyframe, job.data.len() as u32);
    let len = (header.len() + job.data.len()) as u64;
    let deadline = tokio::time::Instant::from_std(job.queued + flight.max_age);
    let through = tokio::time::timeout_at(deadline, async {
        stream.write_all(&header).await.ok()?;
        stream.write_chunk(job.data).await.ok()?;
        stream.finish().ok()?;
        Stats::add(&flight.stats.bytes_sent, len);
        stream.stopped().await.ok()
    })
    .await;
    match through {
        // Acknowledged in full.
        Ok(Some(None)) => {}
        // Late: reset, the browser reports it lost.
        Err(_) => {
            let _ = stream.reset(RESET_GIVEN_UP);
            Stats::add(&flight.stats.frames_dropped, 1);
        }
        // Stopped by the browser, or the session is gone.
        Ok(_) => Stats::add(&flight.stats.frames_dropped, 1),
    }
    flight.done();
}

/// What the application's handle keeps of a browser session: enough to end
/// it after its last frame.
pub(in crate::control) struct WebHandle {
    pub(in crate::control) session: Session,
    next_index: Arc<AtomicU64>,
    ctrl: mpsc::Sender<WebMsg>,
    max_age: Duration,
}

impl WebHandle {
    /// Ends the session after the frames already handed to the send thread:
    /// tells the browser which frame was the last and lets it close once it
    /// has settled every one (docs/WEB.md, Close); closes from here if it has
    /// not within the frame age and a second. Closing at once instead would
    /// discard frames the browser's QUIC stack holds but the page has not read.
    pub(in crate::control) async fn close(&self, slot: &CloseSlot, r: CloseReason) {
        {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_some() || self.session.close_reason().is_some() {
                return;
            }
            *s = Some(r.clone());
        }
        let bye = WebMsg::Close {
            next_index: self.next_index.load(Ordering::Acquire),
            code: r.code,
            reason: r.reason.clone(),
        };
        if self.ctrl.try_send(bye).is_ok() {
            let limit = self.max_age + CLOSE_WAIT;
            if tokio::time::timeout(limit, self.session.closed()).await.is_ok() {
                return;
            }
        }
        close_session(&self.session, &r).await;
    }
}

/// The send thread's end of a browser session.
pub(in crate::control) struct WebSink {
    jobs: mpsc::UnboundedSender<Job>,
    inflight: Arc<AtomicUsize>,
    window: usize,
    next_index: Arc<AtomicU64>,
    max_frame_bytes: usize,
    stats: Arc<Stats>,
    handle: StatsHandle,
    session: Session,
    slot: CloseSlot,
    shared: Arc<Shared>,
    ctrl: mpsc::Sender<WebMsg>,
    rate: Option<WebRate>,
}

/// A browser session's target: what QUIC's congestion controller lets the
/// connection carry, within the granted bitrate and the host-wide share.
struct WebRate {
    granted_kbps: u32,
    share: Option<Share>,
    published: u32,
    next: Instant,
}

impl WebSink {
    /// The sink and the tasks behind it (spawned on the current runtime).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::control) fn start(
        session: Session,
        web: &WebConfig,
        max_frame_bytes: usize,
        slot: CloseSlot,
        shared: Arc<Shared>,
        ctrl: mpsc::Sender<WebMsg>,
        adaptive: bool,
        granted_kbps: u32,
        share: Option<Share>,
    ) -> (WebSink, WebHandle) {
        let stats = Arc::new(Stats::default());
        let inflight = Arc::new(AtomicUsize::new(0));
        let (jobs, rx) = mpsc::unbounded_channel();
        let flight = Flight {
            inflight: inflight.clone(),
            stats: stats.clone(),
            shared: shared.clone(),
            max_age: web.max_frame_age,
        };
        tokio::spawn(dispatch(session.clone(), rx, flight));
        let next_index = Arc::new(AtomicU64::new(0));
        let handle = WebHandle {
            session: session.clone(),
            next_index: next_index.clone(),
            ctrl: ctrl.clone(),
            max_age: web.max_frame_age,
        };
        let sink = WebSink {
            jobs,
            inflight,
            window: usize::from(web.window),
            next_index,
            max_frame_bytes,
            handle: StatsHandle::detached(stats.clone()),
            stats,
            session,
            slot,
            shared,
            ctrl,
            rate: adaptive.then(|| WebRate {
                granted_kbps,
                share,
                published: 0,
                next: Instant::now(),
            }),
        };
        (sink, handle)
    }

    fn update_rate(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.rate.as_mut()?;
        if now < rate.next {
            return Some(rate.next);
        }
        rate.next = now + RATE_INTERVAL;
        let path = quinn::Connection::stats(&self.session).path;
        let rtt = self.session.rtt().max(Duration::from_micros(50));
        let estimate_bps = (path.cwnd as f64 * 8.0 / rtt.as_secs_f64()) as u64;
        let wire_bps = rate.share.as_ref().map_or(estimate_bps, |s| s.cap(estimate_bps));
        let target = ((wire_bps as f64 * (1.0 - OVERHEAD)) / 1000.0).min(f64::from(rate.granted_kbps)) as u32;
        let target = target.max(1);
        Stats::set(&self.stats.estimated_kbps, estimate_bps / 1000);
        Stats::set(&self.stats.rtt_us, rtt.as_micros() as u64);
        Stats::set(&self.stats.congestion_events, path.congestion_events);
        let moved =
            (f64::from(target) - f64::from(rate.published)).abs() > f64::from(rate.published) * TARGET_STEP;
        if moved {
            rate.published = target;
            self.shared.publish_target(target, &self.stats);
            // A page that stops reading its control stream fills the queue:
            // later targets are dropped (the gauge and the event still move).
            let _ = self.ctrl.try_send(WebMsg::Target(target));
        }
        Some(rate.next)
    }
}

impl FrameSink for WebSink {
    fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<()> {
        if let Some(r) = web_closed(&self.slot, &self.session) {
            return Err(Error::closed(format!("the client is gone: {}", r.reason)));
        }
        if data.len() > self.max_frame_bytes {
            return Err(Error::invalid(format!(
                "frame of {} bytes exceeds max_frame_bytes {}",
                data.len(),
                self.max_frame_bytes
            )));
        }
        Stats::add(&self.stats.frames_submitted, 1);
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let job = Job {
            index: self.next_index.load(Ordering::Relaxed),
            meta,
            data: Bytes::copy_from_slice(data),
            queued: now,
        };
        self.next_index.fetch_add(1, Ordering::Release);
        if self.jobs.send(job).is_err() {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::closed("the client is gone"));
        }
        Ok(())
    }

    fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>> {
        Ok(self.update_rate(now))
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn set_fec_percent(&mut self, _pct: u8) -> Result<()> {
        Err(no_fec())
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn stats_handle(&self) -> StatsHandle {
        self.handle.clone()
    }

    fn accepts_frame(&self) -> bool {
        self.inflight.load(Ordering::Acquire) < self.window
    }
}

/// The error for FEC on a browser session.
pub(in crate::control) fn no_fec() -> Error {
    Error::invalid("a browser session carries frames on QUIC streams: it has no FEC to set")
}

/// How a browser session ended, if it did: the reason kept, else the session's.
pub(in crate::control) fn web_closed(slot: &CloseSlot, session: &Session) -> Option<CloseReason> {
    let stored = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    stored.or_else(|| session.close_reason().map(|e| web_reason(&e)))
}

/// Writes the host's control messages (Welcome first, then Target changes).
pub(in crate::control) async fn write_loop(mut send: SendStream, mut rx: mpsc::Receiver<WebMsg>) {
    while let Some(m) = rx.recv().await {
        if write_msg(&mut send, &m).await.is_err() {
            break;
        }
    }
}

/// Reads the browser's control stream until the session ends, then reports
/// the close.
pub(in crate::control) async fn control_loop(
    mut recv: RecvStream,
    session: Session,
    slot: CloseSlot,
    shared: Arc<Shared>,
) {
    loop {
        match read_msg(&mut recv).await {
            Ok(Some(WebMsg::Input(e))) => shared.events.push(HostEvent::Input(e)),
            Ok(Some(WebMsg::KeyframeRequest(first_lost))) => {
                shared.events.push(HostEvent::KeyframeRequest { first_lost })
            }
            Ok(Some(other)) => {
                let e = protocol(format!("unexpected web message from the browser: {other:?}"));
                close_with(&session, &slot, super::super::proto::close_for(&e)).await;
                break;
            }
            Ok(None) => break,
            Err(e) => {
                if session.close_reason().is_none() {
                    close_with(&session, &slot, super::super::proto::close_for(&e)).await;
                }
                break;
            }
        }
    }
    let e = session.closed().await;
    let reason = {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        s.get_or_insert_with(|| web_reason(&e)).clone()
    };
    shared.events.push(HostEvent::Closed(reason));
}

/// Keeps `r` as the session's close reason, and closes with it.
pub(in crate::control) async fn close_with(session: &Session, slot: &CloseSlot, r: CloseReason) {
    {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_some() {
            return;
        }
        *s = Some(r.clone());
    }
    close_session(session, &r).await;
}
