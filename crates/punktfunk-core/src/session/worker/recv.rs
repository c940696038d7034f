//! The receive worker: a thread that owns a [`FrameSource`], waits in the
//! kernel for frames and queues at most `capacity` events (see the
//! [worker docs](super)).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{check_capacity, run_guarded, spawn_named, Notify, Shared, StatsHandle, STOP_CHECK};
use crate::error::{Error, Result};
use crate::session::{blocking, FrameEvent, FrameReceiver};
use crate::stats::StatsSnapshot;
use crate::transport::Transport;

/// What a [`RecvWorker`] drives: a [`FrameReceiver`], or anything that
/// receives frames the same way (a control-plane client). Blocking: the
/// worker thread calls it in a loop.
pub trait FrameSource: Send + 'static {
    /// Waits up to `timeout` for the next event (see [`blocking::recv_frame`]).
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>>;
    /// Counters, readable from any thread.
    fn stats_handle(&self) -> StatsHandle;
    /// Takes back a delivered frame's buffer so a later frame can reuse it
    /// (dropping it is the default).
    fn recycle(&mut self, buf: Vec<u8>) {
        drop(buf);
    }
}

impl<T: Transport + 'static> FrameSource for FrameReceiver<T> {
    fn recv_frame(&mut self, timeout: Duration) -> Result<Option<FrameEvent>> {
        let wait = self.recv_wait();
        blocking::recv_frame(self, timeout, wait)
    }
    fn stats_handle(&self) -> StatsHandle {
        FrameReceiver::stats_handle(self)
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        FrameReceiver::recycle(self, buf);
    }
}

/// The receiving half on its own thread, behind a bounded queue of events:
/// [`FrameEvent`]s, or what a delivery function made of each
/// ([`RecvWorker::spawn_with`]).
pub struct RecvWorker<E = FrameEvent> {
    shared: Arc<Shared<E>>,
    stats: StatsHandle,
    thread: Option<JoinHandle<()>>,
}

impl RecvWorker {
    /// Starts a receive thread owning `receiver`, queueing up to `capacity`
    /// events (`1..=1024`). `notify` is called when an event lands in an empty
    /// queue and when the worker stops.
    pub fn spawn<R: FrameSource>(receiver: R, capacity: usize, notify: Option<Notify>) -> Result<Self> {
        Self::spawn_with(receiver, capacity, notify, |_, ev| ev)
    }
}

impl<E> RecvWorker<E> {
    /// Like [`RecvWorker::spawn`], but each event passes through `deliver` on
    /// the receive thread before it is queued: for a binding that copies
    /// frames into buffers of its own there, off its caller's thread, and
    /// hands the frame's buffer back with [`FrameSource::recycle`].
    pub fn spawn_with<R, F>(receiver: R, capacity: usize, notify: Option<Notify>, deliver: F) -> Result<Self>
    where
        E: Send + 'static,
        R: FrameSource,
        F: FnMut(&mut R, FrameEvent) -> E + Send + 'static,
    {
        check_capacity(capacity)?;
        let shared = Shared::new(capacity, notify);
        let stats = receiver.stats_handle();
        let s = shared.clone();
        let thread = spawn_named("punktfunk-recv", move || recv_loop(receiver, deliver, &s))?;
        Ok(RecvWorker {
            shared,
            stats,
            thread: Some(thread),
        })
    }

    /// The next event if one is queued (`Ok(None)` if not). After
    /// [`RecvWorker::close`] it fails with `ERR_PF_CLOSED`; after the worker
    /// stopped on an error, it returns the queued events first, then that error.
    pub fn try_next(&self) -> Result<Option<E>> {
        self.next(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (forever with `None`) for the next event;
    /// `Ok(None)` when the time ran out.
    pub fn next(&self, timeout: Option<Duration>) -> Result<Option<E>> {
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

impl<E> Drop for RecvWorker<E> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<E> std::fmt::Debug for RecvWorker<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvWorker")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

fn recv_loop<R, E, F>(mut receiver: R, mut deliver: F, shared: &Shared<E>)
where
    R: FrameSource,
    F: FnMut(&mut R, FrameEvent) -> E,
{
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
            let ev = deliver(&mut receiver, ev);
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
