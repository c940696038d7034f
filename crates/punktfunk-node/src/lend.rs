//! Buffers that JavaScript lends for received frames.
//!
//! By default a delivered frame's `Vec` becomes a JS `Buffer` of its own: no
//! copy, but a fresh allocation per frame that the JS garbage collector frees.
//! At a gigabyte per second that is a major collection every few dozen frames
//! and memory the receive thread keeps faulting in anew. A borrowing iterator
//! (`events({ borrow: true })` in `src/session.ts`) lends the session a few
//! buffers instead; the receive thread copies each frame into one that fits
//! (off the JS thread), hands the frame's own buffer back to the receiver, and
//! the iterator lends the buffer again once the loop has moved on. With no
//! lent buffer free, or none large enough, a frame is delivered the default way.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::Buffer;
use punktfunk_core::session::Notify;
use punktfunk_core::{FrameEvent, FrameSource, RecvWorker};

/// Most buffers a session holds on loan at once; more are refused.
pub(crate) const MAX_LENT: usize = 8;

/// A receive thread and the buffers lent to it.
pub(crate) struct Receiving {
    pub(crate) worker: RecvWorker<Delivered>,
    lent: Arc<Mutex<Vec<Buffer>>>,
}

/// What the receive thread queues: the event, and for a frame copied into a
/// lent buffer that buffer and the frame's length (the event's own data is
/// then empty).
pub(crate) struct Delivered {
    pub(crate) event: FrameEvent,
    pub(crate) lent: Option<(Buffer, usize)>,
}

impl Receiving {
    /// Starts the receive thread of `receiver` (see [`RecvWorker::spawn_with`]).
    pub(crate) fn spawn<R: FrameSource>(
        receiver: R,
        capacity: usize,
        notify: Option<Notify>,
    ) -> punktfunk_core::Result<Self> {
        let lent: Arc<Mutex<Vec<Buffer>>> = Arc::default();
        let pool = lent.clone();
        let worker = RecvWorker::spawn_with(receiver, capacity, notify, move |source, event| {
            deliver(&pool, source, event)
        })?;
        Ok(Receiving { worker, lent })
    }

    /// Takes `buf` on loan for a later frame; `false` (keeping nothing) when
    /// [`MAX_LENT`] buffers are already waiting or `buf` is empty.
    pub(crate) fn lend(&self, buf: Buffer) -> bool {
        let mut lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
        if buf.is_empty() || lent.len() >= MAX_LENT {
            return false;
        }
        lent.push(buf);
        true
    }

    /// Lets go of waiting lent buffers shorter than `min_len` (frames have
    /// outgrown them); returns how many.
    pub(crate) fn retire(&self, min_len: usize) -> usize {
        let mut lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
        let before = lent.len();
        lent.retain(|b| b.len() >= min_len);
        before - lent.len()
    }
}

/// Runs on the receive thread for every event: a frame goes into the first
/// lent buffer large enough, and its own buffer back to `source`.
fn deliver<R: FrameSource>(lent: &Mutex<Vec<Buffer>>, source: &mut R, mut event: FrameEvent) -> Delivered {
    let FrameEvent::Frame(f) = &mut event else {
        return Delivered { event, lent: None };
    };
    let len = f.data.len();
    let taken = {
        let mut free = lent.lock().unwrap_or_else(|p| p.into_inner());
        free.iter()
            .position(|b| b.len() >= len)
            .map(|i| free.swap_remove(i))
    };
    let Some(mut buf) = taken else {
        return Delivered { event, lent: None };
    };
    buf[..len].copy_from_slice(&f.data);
    source.recycle(std::mem::take(&mut f.data));
    Delivered {
        event,
        lent: Some((buf, len)),
    }
}
