//! Buffers that JavaScript lends for received frames.
//!
//! By default a delivered frame's `Vec` becomes a JS `Buffer` of its own: no
//! copy, but a fresh allocation per frame that the JS garbage collector frees.
//! At a gigabyte per second that is a major collection every few dozen frames
//! and memory the receive thread keeps faulting in anew. A borrowing iterator
//! (`events({ borrow: true })` in `src/session.ts`) lends the session a few
//! buffers instead, and the core's lending receive worker
//! ([`punktfunk_core::session::spawn_lending`]) copies each frame into one
//! (off the JS thread); the iterator lends the buffer again once the loop has
//! moved on.

use napi::bindgen_prelude::Buffer;
use punktfunk_core::session::{spawn_lending, Delivered, LendPool, Notify};
use punktfunk_core::{FrameSource, RecvWorker};

/// Most buffers a session holds on loan at once; more are refused.
const MAX_LENT: usize = 8;

/// A receive thread and the buffers lent to it.
pub(crate) struct Receiving {
    pub(crate) worker: RecvWorker<Delivered<Buffer>>,
    pub(crate) lent: LendPool<Buffer>,
}

impl Receiving {
    /// Starts the receive thread of `receiver`.
    pub(crate) fn spawn<R: FrameSource>(
        receiver: R,
        capacity: usize,
        notify: Option<Notify>,
    ) -> punktfunk_core::Result<Self> {
        let (worker, lent) = spawn_lending(receiver, capacity, notify, MAX_LENT)?;
        Ok(Receiving { worker, lent })
    }
}
