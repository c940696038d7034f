//! An in-process datagram pair for tests, benchmarks and demos.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{RecvMeta, Transport};

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Vec<u8>>,
    /// Spent buffers kept for reuse, so steady-state traffic allocates nothing.
    free: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Channel {
    inbox: Mutex<Inbox>,
    ready: Condvar,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // A panic elsewhere cannot leave the queue half-updated (every critical
        // section is a single push/pop), so a poisoned lock is safe to reuse.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One end of an in-memory datagram pipe. Bounded: when the peer's queue holds
/// `capacity` datagrams, further sends are dropped (`Ok(false)`) like a full
/// socket buffer. Datagram boundaries are preserved.
pub struct LoopbackTransport {
    inbound: Arc<Channel>,
    outbound: Arc<Channel>,
    capacity: usize,
}

impl std::fmt::Debug for LoopbackTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackTransport")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl LoopbackTransport {
    /// Two connected ends; each queues up to `capacity` datagrams for the other.
    pub fn pair(capacity: usize) -> (LoopbackTransport, LoopbackTransport) {
        let a = Arc::new(Channel::default());
        let b = Arc::new(Channel::default());
        let capacity = capacity.max(1);
        (
            LoopbackTransport {
                inbound: a.clone(),
                outbound: b.clone(),
                capacity,
            },
            LoopbackTransport {
                inbound: b,
                outbound: a,
                capacity,
            },
        )
    }

    /// Datagrams waiting to be received on this end.
    pub fn pending(&self) -> usize {
        self.inbound.lock().queue.len()
    }
}

impl Transport for LoopbackTransport {
    fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut inbox = self.outbound.lock();
        let room = self.capacity.saturating_sub(inbox.queue.len());
        let n = datagrams.len().min(room);
        for d in &datagrams[..n] {
            let mut buf = inbox.free.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(d);
            inbox.queue.push_back(buf);
        }
        drop(inbox);
        if n > 0 {
            self.outbound.ready.notify_one();
        }
        Ok(n)
    }

    fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let mut inbox = self.inbound.lock();
        let mut got = 0;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some(d) = inbox.queue.pop_front() else {
                break;
            };
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            *m = RecvMeta::single(n);
            inbox.free.push(d);
            got += 1;
        }
        Ok(got)
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut inbox = self.inbound.lock();
        while inbox.queue.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            inbox = self
                .inbound
                .ready
                .wait_timeout(inbox, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_preserves_boundaries_and_order() {
        let (a, b) = LoopbackTransport::pair(16);
        assert!(a.send(b"one").unwrap());
        assert_eq!(a.send_batch(&[b"two", b"three!"]).unwrap(), 2);
        let mut bufs = vec![vec![0u8; 8]; 4];
        let mut meta = [RecvMeta::default(); 4];
        assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 3);
        assert_eq!(&bufs[0][..meta[0].len], b"one");
        assert_eq!(&bufs[1][..meta[1].len], b"two");
        assert_eq!(&bufs[2][..meta[2].len], b"three!");
        assert_eq!(meta[2].segment, 6, "one datagram per buffer");
        assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 0);
    }

    #[test]
    fn full_queue_drops_instead_of_blocking() {
        let (a, b) = LoopbackTransport::pair(2);
        assert_eq!(a.send_batch(&[b"1", b"2", b"3"]).unwrap(), 2);
        assert!(!a.send(b"4").unwrap());
        assert_eq!(b.pending(), 2);
    }

    #[test]
    fn wait_readable_wakes_on_send_from_another_thread() {
        let (a, b) = LoopbackTransport::pair(4);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            started_rx.recv().unwrap();
            a.send(b"x").unwrap();
            a
        });
        assert!(!b.wait_readable(Duration::ZERO).unwrap(), "nothing sent yet");
        started_tx.send(()).unwrap();
        assert!(b.wait_readable(Duration::from_secs(5)).unwrap());
        t.join().unwrap();
        assert!(!b.wait_readable(Duration::ZERO).unwrap() || b.pending() == 1);
    }
}
