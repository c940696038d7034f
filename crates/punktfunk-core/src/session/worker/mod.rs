//! Session halves on their own threads, behind bounded queues.
//!
//! Applications that must never block on I/O (an event loop, a UI thread, an
//! encoder callback) hand frames to a [`SendWorker`] and take frames from a
//! [`RecvWorker`]. Each worker owns one half of a [`Session`](super::Session)
//! on a dedicated thread:
//!
//! * the send thread takes frames from a queue of at most `capacity` frames and
//!   paces each out ([`FrameSender::push_frame`], [`FrameSender::poll_transmit`]); a full queue is back-pressure
//!   the caller sees ([`SendWorker::try_submit`] hands the frame back,
//!   [`SendWorker::submit`] waits), never unbounded memory;
//! * the receive thread waits in the kernel ([`super::blocking::recv_frame`]) and
//!   queues at most `capacity` [`FrameEvent`]s; while that queue is full it stops
//!   reading, so the socket buffer absorbs the backlog.
//!
//! Both take an optional [`Notify`] callback, called from the worker thread
//! when the caller may make progress after having had to wait (room in a full
//! send queue, an event in an empty receive queue, the worker stopped), so an
//! async runtime can wake a task instead of polling. Per-frame hand-offs make a
//! system call only when the other side is known to be asleep.
//! A worker that hits an I/O error or a bug (a panic) stops and reports the
//! error on every later call; it never takes the process down.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::fec::check_fec_percent;
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::Transport;

use super::{check_frame_len, FrameEvent, FrameMeta, FrameReceiver, FrameSender};

/// Wake-up callback for a worker's owner; called on the worker thread. Keep it
/// short and non-blocking (set a flag, notify a task). It fires on the
/// transitions an owner waits for (send queue full → not full, receive queue
/// empty → not empty) and when the worker stops, not for every frame.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Longest a worker thread sleeps before re-checking whether it should stop;
/// bounds how long `close` takes.
const STOP_CHECK: Duration = Duration::from_millis(20);

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

/// What a [`RecvWorker`] drives: a [`FrameReceiver`], or anything that
/// receives frames the same way (a control-plane client). Blocking: the
/// worker thread calls it in a loop.
pub trait FrameSource: Send + 'static {
    /// Waits up to `timeout` for the next event (see [`super::blocking::recv_frame`]).
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>>;
    /// Counters, readable from any thread.
    fn stats_handle(&self) -> StatsHandle;
}

impl<T: Transport + 'static> FrameSource for FrameReceiver<T> {
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        let wait = self.recv_wait();
        super::blocking::recv_frame(self, timeout, wait)
    }
    fn stats_handle(&self) -> StatsHandle {
        FrameReceiver::stats_handle(self)
    }
}

/// Largest queue a worker accepts.
pub const MAX_WORKER_QUEUE: usize = 1024;

/// Counters of a session, readable from any thread while the halves run elsewhere.
#[derive(Clone)]
pub struct StatsHandle {
    stats: Arc<Stats>,
    io: Arc<dyn Fn() -> crate::transport::IoCounters + Send + Sync>,
}

impl StatsHandle {
    pub(super) fn new<T: Transport + 'static>(stats: Arc<Stats>, transport: Arc<T>) -> Self {
        StatsHandle {
            stats,
            io: Arc::new(move || transport.io_counters()),
        }
    }

    /// A snapshot of every counter, with the transport's system-call counts.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        let io = (self.io)();
        s.send_syscalls = io.send_syscalls;
        s.recv_syscalls = io.recv_syscalls;
        s.recv_wait_syscalls = io.wait_syscalls;
        s.recv_dropped_foreign = io.foreign_dropped;
        s
    }
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHandle").finish_non_exhaustive()
    }
}

/// Queue state shared by a worker thread and its owner.
struct Shared<J> {
    state: Mutex<State<J>>,
    changed: Condvar,
    notify: Mutex<Option<Notify>>,
}

struct State<J> {
    queue: VecDeque<J>,
    capacity: usize,
    /// The owner asked the worker to stop.
    stopping: bool,
    /// The worker stopped by itself; every later call reports this.
    failed: Option<Error>,
    /// The worker thread is blocked on the condition variable.
    worker_idle: bool,
    /// Owner threads blocked on the condition variable (in `submit` or `next`).
    owners_blocked: usize,
    /// Someone asked the worker to run its sink now ([`SendWaker::wake`]).
    wake_requested: bool,
    /// The worker's body returned (or panicked): nothing more will be sent.
    ended: bool,
}

impl<J> Shared<J> {
    fn new(capacity: usize, notify: Option<Notify>) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity),
                capacity,
                stopping: false,
                failed: None,
                worker_idle: false,
                owners_blocked: 0,
                wake_requested: false,
                ended: false,
            }),
            changed: Condvar::new(),
            notify: Mutex::new(notify),
        })
    }

    /// Locks the state; a poisoned lock is still consistent (every critical
    /// section is a plain queue operation), so it is recovered.
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes everyone: blocked threads and the owner's callback. Used for
    /// state changes (stop, failure), not on the per-frame path, which only
    /// wakes a side that is known to wait.
    fn wake(&self) {
        self.changed.notify_all();
        self.call_notify();
    }

    fn call_notify(&self) {
        let notify = self.notify.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(n) = notify {
            n();
        }
    }

    /// Waits on the condition variable as an owner thread (counted, so the
    /// worker knows to signal).
    fn owner_wait<'a>(&self, mut st: MutexGuard<'a, State<J>>, wait: Duration) -> MutexGuard<'a, State<J>> {
        st.owners_blocked += 1;
        let mut st = self
            .changed
            .wait_timeout(st, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        st.owners_blocked -= 1;
        st
    }

    /// Waits on the condition variable as the worker thread.
    fn worker_wait<'a>(&self, mut st: MutexGuard<'a, State<J>>, wait: Duration) -> MutexGuard<'a, State<J>> {
        st.worker_idle = true;
        let mut st = self
            .changed
            .wait_timeout(st, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        st.worker_idle = false;
        st
    }

    /// Queues a job for the worker, waking it only if it sleeps.
    fn push_to_worker(&self, mut st: MutexGuard<'_, State<J>>, job: J) {
        st.queue.push_back(job);
        let idle = st.worker_idle;
        drop(st);
        if idle {
            self.changed.notify_all();
        }
    }

    fn fail(&self, error: Error) {
        let mut st = self.lock();
        st.failed.get_or_insert(error);
        drop(st);
        self.wake();
    }
}

fn check_capacity(capacity: usize) -> Result<()> {
    if !(1..=MAX_WORKER_QUEUE).contains(&capacity) {
        return Err(Error::invalid(format!(
            "queue capacity {capacity} is outside 1..={MAX_WORKER_QUEUE}"
        )));
    }
    Ok(())
}

fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the {name} thread: {e}")))
}

/// Runs a worker body, turning a panic into a sticky internal error.
fn run_guarded<J>(shared: &Shared<J>, what: &str, body: impl FnOnce() -> Result<()>) {
    let outcome = Error::catch_panic(&format!("the {what} thread"), body);
    shared.lock().ended = true;
    match outcome {
        Err(e) => shared.fail(e),
        Ok(()) => shared.wake(),
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

/// The sending half on its own thread (see the [module docs](self)).
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

/// The receiving half on its own thread (see the [module docs](self)).
pub struct RecvWorker {
    shared: Arc<Shared<FrameEvent>>,
    stats: StatsHandle,
    thread: Option<JoinHandle<()>>,
}

impl RecvWorker {
    /// Starts a receive thread owning `receiver`, queueing up to `capacity`
    /// events (`1..=1024`). `notify` is called when an event lands in an empty
    /// queue and when the worker stops.
    pub fn spawn<R: FrameSource>(receiver: R, capacity: usize, notify: Option<Notify>) -> Result<Self> {
        check_capacity(capacity)?;
        let shared = Shared::new(capacity, notify);
        let stats = receiver.stats_handle();
        let s = shared.clone();
        let thread = spawn_named("punktfunk-recv", move || recv_loop(receiver, &s))?;
        Ok(RecvWorker {
            shared,
            stats,
            thread: Some(thread),
        })
    }

    /// The next event if one is queued (`Ok(None)` if not). After
    /// [`RecvWorker::close`] it fails with `ERR_PF_CLOSED`; after the worker
    /// stopped on an error, it returns the queued events first, then that error.
    pub fn try_next(&self) -> Result<Option<FrameEvent>> {
        self.next(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (forever with `None`) for the next event;
    /// `Ok(None)` when the time ran out.
    pub fn next(&self, timeout: Option<Duration>) -> Result<Option<FrameEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            if st.stopping {
                return Err(Error::closed("the session is closed"));
            }
            if let Some(ev) = st.queue.pop_front() {
                // The receive thread waits for room only while the queue is full.
                let wake = st.worker_idle && st.queue.len() + 1 >= st.capacity;
                drop(st);
                if wake {
                    self.shared.changed.notify_all();
                }
                return Ok(Some(ev));
            }
            if let Some(e) = st.failed.clone() {
                return Err(e);
            }
            let wait = match deadline {
                None => STOP_CHECK,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    d - now
                }
            };
            st = self.shared.owner_wait(st, wait);
        }
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// The error that stopped the worker, if it stopped by itself.
    pub fn failure(&self) -> Option<Error> {
        self.shared.lock().failed.clone()
    }

    /// Counters of the whole session.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops the thread (within about 20 ms) and waits for it; queued events
    /// are discarded and later calls fail with `ERR_PF_CLOSED`. Calling it
    /// again does nothing.
    pub fn close(&mut self) {
        {
            let mut st = self.shared.lock();
            st.stopping = true;
            st.queue.clear();
        }
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RecvWorker {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for RecvWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvWorker")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

fn recv_loop<R: FrameSource>(mut receiver: R, shared: &Shared<FrameEvent>) {
    run_guarded(shared, "receive", || loop {
        {
            // Wait for room first: while the queue is full the socket buffer
            // holds the backlog.
            let mut st = shared.lock();
            while st.queue.len() >= st.capacity && !st.stopping {
                st = shared.worker_wait(st, STOP_CHECK);
            }
            if st.stopping {
                return Ok(());
            }
        }
        if let Some(ev) = receiver.recv_frame(STOP_CHECK)? {
            let mut st = shared.lock();
            if st.stopping {
                return Ok(());
            }
            st.queue.push_back(ev);
            let (was_empty, owners_blocked) = (st.queue.len() == 1, st.owners_blocked);
            drop(st);
            if owners_blocked > 0 {
                shared.changed.notify_all();
            }
            // The owner waits for events only while the queue is empty.
            if was_empty {
                shared.call_notify();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Role, Session, SessionConfig};
    use crate::transport::{Impaired, ImpairmentConfig, LoopbackTransport};
    use crate::SessionKeys;

    fn pair(capacity: usize) -> (SendWorker, RecvWorker) {
        let keys = SessionKeys::derive(&[9u8; 32], b"worker test").unwrap();
        let (a, b) = LoopbackTransport::pair(1 << 16);
        let a: Box<dyn Transport> = Box::new(Impaired::new(a, ImpairmentConfig::drop_every(20)));
        let host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
        let client = Session::new(Role::Client, SessionConfig::default(), &keys, b).unwrap();
        let (tx, _) = host.split();
        let (_, rx) = client.split();
        (
            SendWorker::spawn(tx, capacity, None).unwrap(),
            RecvWorker::spawn(rx, capacity, None).unwrap(),
        )
    }

    #[test]
    fn frames_cross_threads_in_order_and_exact() {
        let (mut tx, mut rx) = pair(4);
        let frames: Vec<Vec<u8>> = (0..40u32)
            .map(|i| vec![i as u8; 1 + (i as usize * 7919) % 300_000])
            .collect();
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 40 {
                match rx.next(Some(Duration::from_secs(5))).unwrap() {
                    Some(FrameEvent::Frame(f)) => got.push(f.data),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let s = rx.stats();
            rx.close();
            (got, s)
        });
        for (i, f) in frames.iter().enumerate() {
            let mut buf = tx.take_buffer();
            buf.extend_from_slice(f);
            tx.submit(
                buf,
                FrameMeta {
                    pts: i as u64,
                    keyframe: false,
                },
                None,
            )
            .unwrap();
        }
        let (got, stats) = receiver.join().unwrap();
        assert_eq!(got, frames);
        assert!(stats.fec_recovered_shards > 0, "every 20th packet was dropped");
        tx.close().unwrap();
    }

    #[test]
    fn full_queue_rejects_then_close_refuses() {
        let (mut tx, mut rx) = pair(1);
        // Fill faster than the thread drains: some try_submit must see a full queue.
        let mut full = 0;
        for i in 0..200 {
            let buf = vec![1u8; 1_000_000];
            match tx.try_submit(
                buf,
                FrameMeta {
                    pts: i,
                    keyframe: false,
                },
            ) {
                Ok(()) => {}
                Err(r) => {
                    assert_eq!(r.error.kind(), ErrorKind::QueueFull);
                    assert_eq!(r.data.len(), 1_000_000, "the frame comes back intact");
                    full += 1;
                }
            }
        }
        assert!(full > 0, "a 1-frame queue under 200 MB must fill");
        let oversize = vec![0u8; tx.max_frame_bytes() + 1];
        let r = tx.try_submit(oversize, FrameMeta::default()).unwrap_err();
        assert_eq!(r.error.kind(), ErrorKind::InvalidArgument);
        assert!(tx.set_fec_percent(101).is_err());
        tx.close().unwrap();
        let r = tx.try_submit(vec![1], FrameMeta::default()).unwrap_err();
        assert_eq!(r.error.kind(), ErrorKind::Closed);
        assert_eq!(tx.set_fec_percent(5).unwrap_err().kind(), ErrorKind::Closed);
        rx.close();
        assert_eq!(rx.try_next().unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn notify_fires_for_events_and_close() {
        let keys = SessionKeys::derive(&[3u8; 32], b"notify").unwrap();
        let (a, b) = LoopbackTransport::pair(4096);
        let mut host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
        let client = Session::new(Role::Client, SessionConfig::default(), &keys, b).unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        let notify: Notify = Arc::new(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let (_, rx) = client.split();
        let mut rx = RecvWorker::spawn(rx, 8, Some(notify)).unwrap();
        host.submit_frame(&[5u8; 5000], FrameMeta::default()).unwrap();
        let ev = rx.next(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(ev, Some(FrameEvent::Frame(ref f)) if f.data == [5u8; 5000]));
        // The callback runs on the worker thread right after the push; the
        // event may be taken before it returns, so wait for it (bounded).
        let t0 = Instant::now();
        while count.load(std::sync::atomic::Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(2) {
            std::thread::yield_now();
        }
        assert!(count.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        let before = count.load(std::sync::atomic::Ordering::SeqCst);
        rx.close();
        assert!(
            count.load(std::sync::atomic::Ordering::SeqCst) > before,
            "close wakes the owner"
        );
        assert_eq!(rx.queued(), 0);
    }

    #[test]
    fn bad_capacity_is_refused() {
        let keys = SessionKeys::derive(&[3u8; 32], b"cap").unwrap();
        let (a, _b) = LoopbackTransport::pair(16);
        let host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
        let (tx, _) = host.split();
        let e = SendWorker::spawn(tx, 0, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
