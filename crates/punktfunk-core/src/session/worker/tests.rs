//! The workers end to end: two threads, a loopback pair, real queues.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::session::{FrameEvent, FrameMeta, Role, Session, SessionConfig};
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
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let (signal, notified) = mpsc::channel();
    let notify: Notify = Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        let _ = signal.send(());
    });
    let (_, rx) = client.split();
    let mut rx = RecvWorker::spawn(rx, 8, Some(notify)).unwrap();
    host.submit_frame(&[5u8; 5000], FrameMeta::default()).unwrap();
    let ev = rx.next(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(ev, Some(FrameEvent::Frame(ref f)) if f.data == [5u8; 5000]));
    // The callback runs on the worker thread right after the push; the event
    // may be taken before it returns, so wait for its signal.
    notified
        .recv_timeout(Duration::from_secs(5))
        .expect("an event in an empty queue notifies the owner");
    let before = count.load(Ordering::SeqCst);
    rx.close();
    assert!(count.load(Ordering::SeqCst) > before, "close wakes the owner");
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

/// A delivery function runs on the receive thread before the event is
/// queued, and the queue holds what it returns (here each frame copied out and
/// its buffer handed back; tests/zero_alloc.rs shows the recycling).
#[test]
fn delivery_function_runs_on_the_receive_thread() {
    let keys = SessionKeys::derive(&[9u8; 32], b"worker test").unwrap();
    let (a, b) = LoopbackTransport::pair(1 << 16);
    let host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
    let client = Session::new(Role::Client, SessionConfig::default(), &keys, b).unwrap();
    let (tx, _) = host.split();
    let (_, rx) = client.split();
    let tx = SendWorker::spawn(tx, 1, None).unwrap();
    let main = std::thread::current().id();
    let mut rx = RecvWorker::spawn_with(rx, 1, None, move |source, ev| match ev {
        FrameEvent::Frame(mut f) => {
            let data = std::mem::take(&mut f.data);
            let copy = data.clone();
            FrameSource::recycle(source, data);
            (std::thread::current().id(), f.index, copy)
        }
        other => panic!("unexpected {other:?}"),
    })
    .unwrap();
    for i in 0..8u8 {
        let mut buf = tx.take_buffer();
        buf.extend_from_slice(&[i; 100_000]);
        tx.submit(
            buf,
            FrameMeta {
                pts: i.into(),
                keyframe: false,
            },
            None,
        )
        .unwrap();
        let (thread, index, copy) = rx.next(Some(Duration::from_secs(5))).unwrap().expect("a frame");
        assert_ne!(thread, main, "delivered on the receive thread");
        assert_eq!((index, copy), (u64::from(i), vec![i; 100_000]));
    }
    rx.close();
}
