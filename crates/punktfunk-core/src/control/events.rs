//! A host session's events for the application: bounded whatever the client
//! sends, with keyframe requests and FEC changes coalesced.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::session::Notify;

use super::proto::host::HostEvent;

/// Input events left unread before further ones are dropped (and counted).
pub(super) const INPUT_BACKLOG: usize = 4096;

#[derive(Default)]
struct State {
    queue: VecDeque<HostEvent>,
    inputs: usize,
    /// The `Closed` event was taken: every later read says so.
    closed_taken: bool,
    /// The application was woken and has not yet found the queue empty: a
    /// further event needs no wake-up of its own, since the application reads
    /// until nothing is left. One wake-up per drain, whatever the client sends.
    wake_pending: bool,
}

/// The queue between a session's control tasks and the application. At most
/// [`INPUT_BACKLOG`] input events, one keyframe request (later requests fold
/// into it, keeping the earliest lost frame), one FEC change and one target
/// bitrate (the latest of each) and the close: memory is bounded by the constant, not by
/// what the client sends.
#[derive(Default)]
pub(super) struct EventQueue {
    state: Mutex<State>,
    ready: Condvar,
    notify: Mutex<Option<Notify>>,
    /// Input events dropped because the application left too many unread,
    /// and input datagrams that could not be decoded.
    pub(super) input_dropped: AtomicU64,
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `notify` (from a network thread) when an event lands in a queue
    /// the application has drained (see [`EventQueue::push`]).
    pub(super) fn set_notify(&self, notify: Option<Notify>) {
        *self.notify.lock().unwrap_or_else(|p| p.into_inner()) = notify;
    }

    /// Queues an event (or folds it into one already queued) and wakes the
    /// application, unless a wake-up is already pending: the `notify` callback
    /// runs once, then not again until a read finds the queue empty.
    pub(super) fn push(&self, ev: HostEvent) {
        let mut st = self.lock();
        match ev {
            HostEvent::Input(_) if st.inputs >= INPUT_BACKLOG => {
                self.input_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            HostEvent::Input(_) => st.inputs += 1,
            HostEvent::KeyframeRequest { first_lost } => {
                let queued = st.queue.iter_mut().find_map(|e| match e {
                    HostEvent::KeyframeRequest { first_lost } => Some(first_lost),
                    _ => None,
                });
                if let Some(f) = queued {
                    *f = (*f).min(first_lost);
                    return;
                }
            }
            HostEvent::FecChanged { percent } => {
                let queued = st.queue.iter_mut().find_map(|e| match e {
                    HostEvent::FecChanged { percent } => Some(percent),
                    _ => None,
                });
                if let Some(p) = queued {
                    *p = percent;
                    return;
                }
            }
            HostEvent::TargetBitrate { kbps } => {
                let queued = st.queue.iter_mut().find_map(|e| match e {
                    HostEvent::TargetBitrate { kbps } => Some(kbps),
                    _ => None,
                });
                if let Some(k) = queued {
                    // Folded, but still a wake-up: a reader of the target
                    // (not of the queue) learns of every change.
                    *k = kbps;
                    drop(st);
                    self.wake();
                    return;
                }
            }
            HostEvent::Closed(_) => {}
        }
        // Target changes always wake (a reader of the target may not read
        // the queue; the controller publishes at most one per report); the
        // rest wake once until the application drains the queue.
        let always = matches!(ev, HostEvent::TargetBitrate { .. });
        st.queue.push_back(ev);
        let first = !std::mem::replace(&mut st.wake_pending, true);
        drop(st);
        if first || always {
            self.wake();
        } else {
            self.ready.notify_all();
        }
    }

    /// Calls the notify callback and wakes blocked readers.
    fn wake(&self) {
        let notify = self.notify.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(n) = notify {
            n();
        }
        self.ready.notify_all();
    }

    /// The next event, waiting up to `timeout` (not at all with zero);
    /// `Ok(None)` when none came. `ERR_PF_CLOSED` once `Closed` was taken.
    pub(super) fn pop(&self, timeout: Duration) -> Result<Option<HostEvent>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.closed_taken {
                return Err(Error::closed("the session is closed"));
            }
            if let Some(ev) = st.queue.pop_front() {
                match ev {
                    HostEvent::Input(_) => st.inputs -= 1,
                    HostEvent::Closed(_) => st.closed_taken = true,
                    _ => {}
                }
                return Ok(Some(ev));
            }
            // Drained: the next event wakes the application again.
            st.wake_pending = false;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            st = self
                .ready
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Events waiting (for tests and bounds checks).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::msg::{CloseReason, InputEvent};

    #[test]
    fn a_flood_of_requests_and_input_stays_within_the_bound_and_nothing_is_lost_silently() {
        let q = EventQueue::default();
        for i in 0..1_500_000u64 {
            q.push(HostEvent::KeyframeRequest {
                first_lost: 1_000_000 - (i % 1000),
            });
            if i % 100 == 0 {
                q.push(HostEvent::FecChanged {
                    percent: (i % 50) as u8,
                });
            }
        }
        for _ in 0..INPUT_BACKLOG + 10 {
            q.push(HostEvent::Input(InputEvent::KeyDown { code: 1 }));
        }
        assert_eq!(
            q.len(),
            2 + INPUT_BACKLOG,
            "one request, one FEC change, the input backlog"
        );
        assert_eq!(
            q.input_dropped.load(Ordering::Relaxed),
            10,
            "input beyond the backlog is counted"
        );
        assert_eq!(
            q.pop(Duration::ZERO).unwrap(),
            Some(HostEvent::KeyframeRequest { first_lost: 999_001 }),
            "the earliest lost frame is kept"
        );
        assert_eq!(
            q.pop(Duration::ZERO).unwrap(),
            Some(HostEvent::FecChanged { percent: 0 }),
            "the latest percentage"
        );
        for _ in 0..INPUT_BACKLOG {
            assert!(matches!(
                q.pop(Duration::ZERO).unwrap(),
                Some(HostEvent::Input(_))
            ));
        }
        // After a request is taken, a new one queues again.
        q.push(HostEvent::KeyframeRequest { first_lost: 5 });
        assert_eq!(
            q.pop(Duration::ZERO).unwrap(),
            Some(HostEvent::KeyframeRequest { first_lost: 5 })
        );
        q.push(HostEvent::Closed(CloseReason {
            code: 0,
            reason: String::new(),
        }));
        assert!(matches!(
            q.pop(Duration::ZERO).unwrap(),
            Some(HostEvent::Closed(_))
        ));
        assert_eq!(
            q.pop(Duration::ZERO).unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }

    #[test]
    fn a_burst_of_events_wakes_the_application_once_per_drain() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let q = EventQueue::default();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        q.set_notify(Some(Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        })));
        for i in 0..100_000u32 {
            q.push(HostEvent::Input(InputEvent::KeyDown { code: i }));
            q.push(HostEvent::KeyframeRequest { first_lost: 7 });
            q.push(HostEvent::FecChanged { percent: 9 });
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 1, "one wake-up for the burst");
        // Reading without draining leaves the wake-up pending.
        q.pop(Duration::ZERO).unwrap().unwrap();
        q.push(HostEvent::Input(InputEvent::KeyDown { code: 1 }));
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        while q.pop(Duration::ZERO).unwrap().is_some() {}
        // Drained: the next event wakes again, once.
        q.push(HostEvent::Input(InputEvent::KeyDown { code: 2 }));
        q.push(HostEvent::Input(InputEvent::KeyDown { code: 3 }));
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
        // An event that lands between the last read and the empty read is
        // still found: the application reads until the queue is empty.
        assert!(q.pop(Duration::ZERO).unwrap().is_some());
        assert!(q.pop(Duration::ZERO).unwrap().is_some());
        q.push(HostEvent::Input(InputEvent::KeyDown { code: 4 }));
        assert!(
            q.pop(Duration::ZERO).unwrap().is_some(),
            "read before the empty read"
        );
        assert!(q.pop(Duration::ZERO).unwrap().is_none());
        q.push(HostEvent::Closed(CloseReason {
            code: 0,
            reason: String::new(),
        }));
        assert_eq!(
            wakes.load(Ordering::Relaxed),
            3,
            "the close wakes a drained reader"
        );
    }
}
