//! Blocking drivers for the sans-IO halves: the one place (with the workers)
//! that reads the clock, sleeps and waits on the transport.
//!
//! [`FrameSender`] and [`FrameReceiver`] take `now` and say when they next
//! need to run; these functions run them on the calling thread until a frame
//! is sent or an event arrives. Threads of their own (workers, the C ABI's
//! synchronous calls) use them; an event loop drives the halves itself.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::transport::Transport;

use super::{FrameEvent, FrameMeta, FrameReceiver, FrameSender, SubmitReport};

/// How a receiving driver waits between polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvWait {
    /// Pause this long after waking for a new burst so one read takes a full
    /// batch ([`super::SessionConfig::recv_coalesce`]).
    pub coalesce: Duration,
    /// Read again at once instead of waiting in the kernel
    /// ([`super::SessionConfig::busy_poll`]).
    pub busy_poll: bool,
}

/// Sends one frame on its pacing schedule, sleeping between paced sends, and
/// returns once its last datagram went out (at once without pacing).
pub fn send_frame<T: Transport>(
    tx: &mut FrameSender<T>,
    data: &[u8],
    meta: FrameMeta,
) -> Result<SubmitReport> {
    let index = tx.push_frame(data, meta, Instant::now())?;
    loop {
        let next = tx.poll_transmit(Instant::now())?;
        if let Some(report) = tx.take_report().filter(|r| r.frame_index == index) {
            return Ok(report);
        }
        match next {
            Some(at) => sleep_until(at),
            None => {
                return Err(crate::Error::new(
                    crate::ErrorKind::Internal,
                    "the frame did not finish sending",
                ))
            }
        }
    }
}

/// Waits up to `timeout` for the next frame event: polls, and waits in the
/// kernel (`ppoll` on UDP) while the transport is drained, waking at the
/// receiver's next frame timeout. `Ok(None)` when the time ran out.
pub fn recv_frame<T: Transport>(
    rx: &mut FrameReceiver<T>,
    timeout: Duration,
    wait: RecvWait,
) -> Result<Option<FrameEvent>> {
    let deadline = Instant::now() + timeout;
    // Read at first; after a short read, only once the transport is readable.
    let mut readable = !rx.is_drained();
    loop {
        let now = Instant::now();
        let ev = if readable {
            rx.poll_frame(now)?
        } else {
            rx.poll_buffered(now)
        };
        if ev.is_some() {
            return Ok(ev);
        }
        if now >= deadline {
            return Ok(None);
        }
        readable = !rx.is_drained();
        if readable {
            // The read bound was hit: read on with a fresh clock.
            continue;
        }
        if wait.busy_poll {
            std::hint::spin_loop();
            readable = true;
            continue;
        }
        let until = rx.poll_timeout().map_or(deadline, |t| t.min(deadline));
        if rx
            .transport()
            .wait_readable(until.saturating_duration_since(now))?
        {
            if !wait.coalesce.is_zero() {
                std::thread::sleep(wait.coalesce);
            }
            readable = true;
        }
    }
}

/// Sleeps until `at` (returns at once when it has passed).
pub(crate) fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}
