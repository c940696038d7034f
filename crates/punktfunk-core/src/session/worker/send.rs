//! The send worker: a thread that owns a [`FrameSink`], takes frames from a
//! bounded queue and runs the sink's schedule (see the [worker docs](super)).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{check_capacity, run_guarded, spawn_named, Notify, Shared, StatsHandle, STOP_CHECK};
use crate::error::{Error, ErrorKind, Result};
use crate::fec::check_fec_percent;
use crate::session::{check_frame_len, FrameMeta, FrameSender};
use crate::stats::StatsSnapshot;
use crate::transport::Transport;

/// What a [`SendWorker`] drives: a [`FrameSender`], or anything that sends
/// frames the same way (a control-plane host session). Sans-IO: every call
/// takes `now` or none, nothing sleeps; the worker thread does the waiting.
pub trait FrameSink: Send + 'static {
    /// Prepares a frame to leave on the sink's schedule from `now`; a frame
    /// still in flight goes out at once first (see [`FrameSender::push_frame`]).
    fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<()>;
    /// Sends what is due at `now`; returns when the sink next needs to run
    /// (`None`: not before new work arrives or [`SendWaker::wake`] is called).
    fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>>;
    /// Sends the rest of the frame in flight at once.
    fn flush(&mut self) -> Result<()>;
    /// Changes the FEC percentage for later frames.
    fn set_fec_percent(&mut self, pct: u8) -> Result<()>;
    /// Largest frame accepted.
    fn max_frame_bytes(&self) -> usize;
    /// Counters, readable from any thread.
    fn stats_handle(&self) -> StatsHandle;
    /// Whether the sink takes the next frame now (see
    /// [`FrameSender::accepts_frame`]); while it does not, frames wait in the
    /// queue. The default always takes one.
    fn accepts_frame(&self) -> bool {
        true
    }
}

impl<T: Transport + 'static> FrameSink for FrameSender<T> {
    fn push_frame(&mut self, data: &[u8], meta: FrameMeta, now: Instant) -> Result<()> {
        FrameSender::push_frame(self, data, meta, now).map(|_| ())
    }
    fn poll_transmit(&mut self, now: Instant) -> Result<Option<Instant>> {
        FrameSender::poll_transmit(self, now)
    }
    fn flush(&mut self) -> Result<()> {
        FrameSender::flush(self)
    }
    fn set_fec_percent(&mut self, pct: u8) -> Result<()> {
        FrameSender::set_fec_percent(self, pct)
    }
    fn max_frame_bytes(&self) -> usize {
        FrameSender::max_frame_bytes(self)
    }
    fn stats_handle(&self) -> StatsHandle {
        FrameSender::stats_handle(self)
    }
    fn accepts_frame(&self) -> bool {
        FrameSender::accepts_frame(self)
    }
}

enum SendJob {
    Frame(Vec<u8>, FrameMeta),
    SetFec(u8),
}

/// A frame the send queue did not take, handed back with the reason.
#[derive(Debug)]
pub struct Rejected {
    /// Why: `ERR_PF_QUEUE_FULL`, `ERR_PF_TIMEOUT`, `ERR_PF_CLOSED`, or the error
    /// that stopped the worker.
    pub error: Error,
    /// The frame's bytes, so the caller can retry without copying again.
    pub data: Vec<u8>,
}

/// The sending half on its own thread, behind a bounded queue of frames.
pub struct SendWorker {
    shared: Arc<Shared<SendJob>>,
    /// Emptied frame buffers, reused by [`SendWorker::take_buffer`].
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    max_frame_bytes: usize,
    stats: StatsHandle,
    thread: Option<JoinHandle<()>>,
}

impl SendWorker {
    /// Starts a send thread owning `sender`, with a queue of `capacity` frames
    /// (`1..=1024`). `notify` is called when a full queue gets room again and
    /// when the worker stops.
    pub fn spawn<S: FrameSink>(sender: S, capacity: usize, notify: Option<Notify>) -> Result<Self> {
        check_capacity(capacity)?;
        let shared = Shared::new(capacity, notify);
        let spare = Arc::new(Mutex::new(Vec::with_capacity(capacity)));
        let stats = sender.stats_handle();
        let max_frame_bytes = sender.max_frame_bytes();
        let (s, p) = (shared.clone(), spare.clone());
        let thread = spawn_named("punktfunk-send", move || send_loop(sender, &s, &p))?;
        Ok(SendWorker {
            shared,
            spare,
            max_frame_bytes,
            stats,
            thread: Some(thread),
        })
    }

    /// A handle that makes the send thread run its sink now (from any thread,
    /// without blocking): for a sink that also takes commands from elsewhere.
    pub fn waker(&self) -> SendWaker {
        SendWaker {
            shared: self.shared.clone(),
        }
    }

    /// Replaces the callback set at spawn (`None` removes it).
    pub fn set_notify(&self, notify: Option<Notify>) {
        *self.shared.notify.lock().unwrap_or_else(|p| p.into_inner()) = notify;
    }

    /// An empty buffer to copy the next frame into; reuses the buffers of
    /// frames already sent, so steady streaming does not allocate.
    pub fn take_buffer(&self) -> Vec<u8> {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = spare.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Largest frame accepted, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn check_frame(&self, data: Vec<u8>) -> std::result::Result<Vec<u8>, Rejected> {
        match check_frame_len(data.len(), self.max_frame_bytes) {
            Ok(()) => Ok(data),
            Err(error) => Err(Rejected { error, data }),
        }
    }

    /// Queues a frame if there is room; otherwise hands it back with
    /// `ERR_PF_QUEUE_FULL` at once. Never blocks on I/O.
    pub fn try_submit(&self, data: Vec<u8>, meta: FrameMeta) -> std::result::Result<(), Rejected> {
        self.submit(data, meta, Some(Duration::ZERO))
    }

    /// Queues a frame, waiting up to `timeout` (forever with `None`) for room.
    /// Fails with `ERR_PF_QUEUE_FULL` for a zero timeout, `ERR_PF_TIMEOUT` when
    /// a longer wait ran out, `ERR_PF_INVALID_ARG` for an oversize frame and
    /// `ERR_PF_CLOSED` after [`SendWorker::close`].
    pub fn submit(
        &self,
        data: Vec<u8>,
        meta: FrameMeta,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), Rejected> {
        let data = self.check_frame(data)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = st.failed.clone() {
                return Err(Rejected { error: e, data });
            }
            if st.stopping {
                let error = Error::closed("the session is closed");
                return Err(Rejected { error, data });
            }
            if st.queue.len() < st.capacity {
                self.shared.push_to_worker(st, SendJob::Frame(data, meta));
                return Ok(());
            }
            let wait = match deadline {
                None => STOP_CHECK,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        let error = if timeout == Some(Duration::ZERO) {
                            Error::new(ErrorKind::QueueFull, "the send queue is full")
                        } else {
                            Error::new(ErrorKind::Timeout, "the send queue stayed full")
                        };
                        return Err(Rejected { error, data });
                    }
                    (d - now).min(STOP_CHECK)
                }
            };
            st = self.shared.owner_wait(st, wait);
        }
    }

    /// Changes the FEC percentage for frames queued from now on (`0..=100`).
    /// Does not wait for queue room: it is applied in queue order even when
    /// the queue is full, and a change right behind another one replaces it,
    /// so changes cannot pile up.
    pub fn set_fec_percent(&self, pct: u8) -> Result<()> {
        check_fec_percent(pct)?;
        let mut st = self.shared.lock();
        if let Some(e) = st.failed.clone() {
            return Err(e);
        }
        if st.stopping {
            return Err(Error::closed("the session is closed"));
        }
        if let Some(SendJob::SetFec(last)) = st.queue.back_mut() {
            *last = pct;
            return Ok(());
        }
        self.shared.push_to_worker(st, SendJob::SetFec(pct));
        Ok(())
    }

    /// Jobs waiting for the send thread: frames and FEC changes.
    pub fn pending_jobs(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Frames waiting in the queue.
    pub fn queued(&self) -> usize {
        let st = self.shared.lock();
        st.queue
            .iter()
            .filter(|j| matches!(j, SendJob::Frame(..)))
            .count()
    }

    /// Whether a frame would be queued right now without waiting.
    pub fn has_room(&self) -> bool {
        let st = self.shared.lock();
        st.queue.len() < st.capacity && !st.stopping && st.failed.is_none()
    }

    /// The error that stopped the worker, if it stopped by itself.
    pub fn failure(&self) -> Option<Error> {
        self.shared.lock().failed.clone()
    }

    /// Counters of the whole session.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Sends every frame already queued (what is still paced goes at once)
    /// and stops sending, waiting up to `timeout` for that; later submits
    /// fail with `ERR_PF_CLOSED`. For owners that share the worker; the
    /// thread itself is joined by [`SendWorker::close`] or on drop. Returns
    /// the error that stopped the worker early, if any, and `ERR_PF_TIMEOUT`
    /// when the queue did not drain in time.
    pub fn finish(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        st.stopping = true;
        drop(st);
        self.shared.wake();
        st = self.shared.lock();
        while !st.ended {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the send queue did not drain in time",
                ));
            }
            st = self.shared.owner_wait(st, (deadline - now).min(STOP_CHECK));
        }
        match st.failed.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends every frame already queued, then stops the thread and waits for
    /// it. Later submits fail with `ERR_PF_CLOSED`. Returns the error that
    /// stopped the worker early, if any. Calling it again does nothing.
    pub fn close(&mut self) -> Result<()> {
        self.shared.lock().stopping = true;
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.shared.lock().failed.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for SendWorker {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::fmt::Debug for SendWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendWorker")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

fn send_loop<S: FrameSink>(mut sender: S, shared: &Shared<SendJob>, spare: &Mutex<Vec<Vec<u8>>>) {
    run_guarded(shared, "send", || {
        // When the sink next needs to run (a paced chunk, a probe step).
        let mut next: Option<Instant> = None;
        loop {
            let (job, was_full, owners_blocked) = {
                let mut st = shared.lock();
                loop {
                    // A frame waits while the sink is still busy with the last
                    // one (path pacing); other jobs and the schedule go on.
                    // Closing hurries: what is queued goes out now.
                    let ready = match st.queue.front() {
                        Some(SendJob::Frame(..)) => st.stopping || sender.accepts_frame(),
                        Some(_) => true,
                        None => false,
                    };
                    if ready {
                        let job = st.queue.pop_front();
                        break (job, st.queue.len() + 1 >= st.capacity, st.owners_blocked);
                    }
                    if st.stopping && st.queue.is_empty() {
                        // Everything queued is handed on; what is still paced goes at once.
                        drop(st);
                        return sender.flush();
                    }
                    if std::mem::take(&mut st.wake_requested) {
                        break (None, false, 0);
                    }
                    let now = Instant::now();
                    let wait = match next {
                        Some(t) if t <= now => break (None, false, 0),
                        Some(t) => (t - now).min(STOP_CHECK),
                        None => STOP_CHECK,
                    };
                    st = shared.worker_wait(st, wait);
                }
            };
            // Room just opened up: let a blocked submitter in, and tell the owner
            // if the queue had been full (the only time it waits for room).
            if owners_blocked > 0 {
                shared.changed.notify_all();
            }
            if was_full {
                shared.call_notify();
            }
            match job {
                // A frame still being paced goes at once: the next one is waiting.
                Some(SendJob::Frame(data, meta)) => {
                    sender.push_frame(&data, meta, Instant::now())?;
                    let mut spare = spare.lock().unwrap_or_else(|p| p.into_inner());
                    if spare.len() < spare.capacity() {
                        spare.push(data);
                    }
                }
                Some(SendJob::SetFec(pct)) => sender.set_fec_percent(pct)?,
                None => {}
            }
            next = sender.poll_transmit(Instant::now())?;
        }
    });
}

/// Makes a [`SendWorker`]'s thread run its sink now (see [`SendWorker::waker`]).
#[derive(Clone)]
pub struct SendWaker {
    shared: Arc<Shared<SendJob>>,
}

impl SendWaker {
    /// Asks the send thread to poll its sink at once; never blocks on I/O.
    pub fn wake(&self) {
        let mut st = self.shared.lock();
        st.wake_requested = true;
        let idle = st.worker_idle;
        drop(st);
        if idle {
            self.shared.changed.notify_all();
        }
    }
}

impl std::fmt::Debug for SendWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendWaker").finish_non_exhaustive()
    }
}
