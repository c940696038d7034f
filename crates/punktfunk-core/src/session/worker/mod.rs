//! Session halves on their own threads, behind bounded queues.
//!
//! Applications that must never block on I/O (an event loop, a UI thread, an
//! encoder callback) hand frames to a [`SendWorker`] and take frames from a
//! [`RecvWorker`]. Each worker owns one half of a [`Session`](super::Session)
//! on a dedicated thread:
//!
//! * the send thread takes frames from a queue of at most `capacity` frames
//!   and paces each out ([`FrameSender::push_frame`](super::FrameSender::push_frame),
//!   [`FrameSender::poll_transmit`](super::FrameSender::poll_transmit)); a full
//!   queue is back-pressure the caller sees ([`SendWorker::try_submit`] hands
//!   the frame back, [`SendWorker::submit`] waits), never unbounded memory;
//! * the receive thread waits in the kernel ([`super::blocking::recv_frame`])
//!   and queues at most `capacity` [`FrameEvent`](super::FrameEvent)s (or
//!   what a delivery function of the owner's makes of each, on that thread:
//!   [`RecvWorker::spawn_with`]); while that queue is full it stops reading,
//!   so the socket buffer absorbs the backlog.
//!
//! Both take an optional [`Notify`] callback, called from the worker thread
//! when the caller may make progress after having had to wait (room in a full
//! send queue, an event in an empty receive queue, the worker stopped), so an
//! async runtime can wake a task instead of polling. Per-frame hand-offs make a
//! system call only when the other side is known to be asleep.
//! A worker that hits an I/O error or a bug (a panic) stops and reports the
//! error on every later call; it never takes the process down.
//!
//! `send` holds the [`SendWorker`] and its [`FrameSink`], `recv` the
//! [`RecvWorker`] and its [`FrameSource`]; this module the queue they share.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::Transport;

mod lend;
mod recv;
mod send;

pub use lend::{spawn_lending, Delivered, LendPool};
pub use recv::{FrameSource, RecvWorker};
pub use send::{FrameSink, Rejected, SendWaker, SendWorker};

/// Wake-up callback for a worker's owner; called on the worker thread. Keep it
/// short and non-blocking (set a flag, notify a task). It fires on the
/// transitions an owner waits for (send queue full → not full, receive queue
/// empty → not empty) and when the worker stops, not for every frame.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Longest a worker thread sleeps before re-checking whether it should stop;
/// bounds how long `close` takes.
const STOP_CHECK: Duration = Duration::from_millis(20);

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

    /// A handle on counters kept without a transport of ours (a session whose
    /// packets QUIC sends): the system-call counts stay zero.
    #[cfg(feature = "quic")]
    pub(crate) fn detached(stats: Arc<Stats>) -> Self {
        StatsHandle {
            stats,
            io: Arc::new(crate::transport::IoCounters::default),
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

#[cfg(test)]
mod tests;
