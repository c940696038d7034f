//! Frames delivered into buffers the application lends.
//!
//! A [`RecvWorker`] hands each frame over in a buffer of its own, which the
//! application then frees. Where freeing is expensive (a garbage-collected
//! runtime, at a gigabyte per second) the application can lend a few buffers
//! instead: [`spawn_lending`] copies each frame, on the receive thread, into a
//! lent buffer large enough and gives the frame's own buffer back to the
//! receiver, so nothing is allocated per frame. With no lent buffer free, or
//! none large enough, a frame comes the usual way.

use std::sync::{Arc, Mutex};

use super::{FrameSource, Notify, RecvWorker};
use crate::error::Result;
use crate::session::FrameEvent;

/// What a lending receive worker queues: the event, and for a frame copied
/// into a lent buffer that buffer and the frame's length (the frame's own
/// `data` is then empty).
#[derive(Debug)]
pub struct Delivered<B> {
    /// The event; a frame's `data` is empty when it went into `lent`.
    pub event: FrameEvent,
    /// The lent buffer holding the frame in its first `.1` bytes.
    pub lent: Option<(B, usize)>,
}

/// The buffers lent to one receive worker (see [`spawn_lending`]).
pub struct LendPool<B> {
    free: Arc<Mutex<Vec<B>>>,
    max: usize,
}

impl<B: AsMut<[u8]>> LendPool<B> {
    /// Takes `buf` on loan for a later frame; `false` (keeping nothing) when
    /// the most buffers the pool holds are already waiting or `buf` is empty.
    /// The caller must not touch a lent buffer until a [`Delivered`] hands it
    /// back.
    pub fn lend(&self, mut buf: B) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if buf.as_mut().is_empty() || free.len() >= self.max {
            return false;
        }
        free.push(buf);
        true
    }

    /// Lets go of waiting buffers shorter than `min_len` (frames have
    /// outgrown them); returns how many.
    pub fn retire(&self, min_len: usize) -> usize {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let before = free.len();
        free.retain_mut(|b| b.as_mut().len() >= min_len);
        before - free.len()
    }
}

/// Starts a receive worker (see [`RecvWorker::spawn`]) that delivers frames
/// into buffers lent to the returned pool, at most `max_lent` of them
/// waiting at once.
pub fn spawn_lending<B, R>(
    receiver: R,
    capacity: usize,
    notify: Option<Notify>,
    max_lent: usize,
) -> Result<(RecvWorker<Delivered<B>>, LendPool<B>)>
where
    B: AsMut<[u8]> + Send + 'static,
    R: FrameSource,
{
    let free: Arc<Mutex<Vec<B>>> = Arc::new(Mutex::new(Vec::with_capacity(max_lent)));
    let pool = free.clone();
    let worker = RecvWorker::spawn_with(receiver, capacity, notify, move |source, event| {
        deliver(&pool, source, event)
    })?;
    Ok((worker, LendPool { free, max: max_lent }))
}

/// Runs on the receive thread for every event: a frame goes into the first
/// lent buffer large enough, and its own buffer back to `source`.
fn deliver<B: AsMut<[u8]>, R: FrameSource>(
    free: &Mutex<Vec<B>>,
    source: &mut R,
    mut event: FrameEvent,
) -> Delivered<B> {
    let FrameEvent::Frame(f) = &mut event else {
        return Delivered { event, lent: None };
    };
    let len = f.data.len();
    let taken = {
        let mut free = free.lock().unwrap_or_else(|p| p.into_inner());
        free.iter_mut()
            .position(|b| b.as_mut().len() >= len)
            .map(|i| free.swap_remove(i))
    };
    let Some(mut buf) = taken else {
        return Delivered { event, lent: None };
    };
    buf.as_mut()[..len].copy_from_slice(&f.data);
    source.recycle(std::mem::take(&mut f.data));
    Delivered {
        event,
        lent: Some((buf, len)),
    }
}
