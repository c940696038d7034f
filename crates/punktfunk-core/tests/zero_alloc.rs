//! Steady state allocates nothing per packet, on either side, over real UDP
//! sockets on 127.0.0.1: a counting global allocator watches a warmed-up
//! session send and receive frames (with FEC repairing losses), the way the
//! worker threads drive it.
//!
//! This file holds one test on purpose: the allocator counts every thread of
//! the process, so nothing else may run beside it.

use std::time::{Duration, Instant};

use punktfunk_core::session::{spawn_lending, Delivered};
use punktfunk_core::transport::RecvMeta;
use punktfunk_core::{
    FrameEvent, FrameMeta, Role, SendWorker, Session, SessionConfig, SessionKeys, Transport, UdpConfig,
    UdpTransport,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Drops every `n`-th datagram on send, without allocating (unlike the
/// general-purpose `Impaired`), so the receiver has to rebuild shards.
struct DropEvery<T> {
    inner: T,
    n: usize,
    count: std::sync::atomic::AtomicUsize,
}

impl<T: Transport> Transport for DropEvery<T> {
    fn send_batch(&self, ds: &[&[u8]]) -> std::io::Result<usize> {
        let mut keep: [&[u8]; 1024] = [&[]; 1024];
        let mut kept = 0;
        for d in ds.iter().take(1024) {
            let c = self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if c % self.n != 0 {
                keep[kept] = d;
                kept += 1;
            }
        }
        let sent = self.inner.send_batch(&keep[..kept])?;
        // Network-style losses count as sent.
        Ok(ds.len().min(1024) - (kept - sent))
    }
    fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> std::io::Result<usize> {
        self.inner.recv_batch(bufs, meta)
    }
    fn wait_readable(&self, t: Duration) -> std::io::Result<bool> {
        self.inner.wait_readable(t)
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Sends `frames` and receives each before the next, recycling buffers as an
/// application would. Returns the datagrams sent.
fn stream(
    host: &mut Session<DropEvery<UdpTransport>>,
    client: &mut Session<UdpTransport>,
    frames: &[Vec<u8>],
) -> u64 {
    let before = host.stats().packets_sent;
    for (i, f) in frames.iter().enumerate() {
        host.submit_frame(
            f,
            FrameMeta {
                pts: i as u64,
                keyframe: i == 0,
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "frame {i} did not arrive");
            match client.recv_frame(Duration::from_millis(50)).unwrap() {
                Some(FrameEvent::Frame(got)) => {
                    assert_eq!(got.data.len(), f.len());
                    assert!(got.data == *f, "frame {i} is byte-exact");
                    client.receiver().recycle(got.data);
                    break;
                }
                Some(other) => panic!("frame {i}: {other:?}"),
                None => {}
            }
        }
    }
    host.stats().packets_sent - before
}

#[test]
fn steady_state_allocates_nothing_per_packet_on_either_side() {
    let cfg = UdpConfig::default();
    let a = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let b = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    let keys = SessionKeys::derive(&[7u8; 32], b"zero-alloc").unwrap();
    let mut config = SessionConfig::default();
    config.fec.fec_percent = 20;
    let host_t = DropEvery {
        inner: a,
        n: 25,
        count: Default::default(),
    };
    let mut host = Session::new(Role::Host, config.clone(), &keys, host_t).unwrap();
    let mut client = Session::new(Role::Client, config, &keys, b).unwrap();
    // Two frame sizes that fit the default 208 KB socket buffer even without root.
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|i| frame(if i % 2 == 0 { 120_000 } else { 40_000 }, i as u8))
        .collect();

    // Warm-up: pools, rings, FEC coders and reassembly slots reach their size.
    stream(&mut host, &mut client, &frames[..20]);
    let recovered_before = client.stats().fec_recovered_shards;

    let region = Region::new(GLOBAL);
    let packets = stream(&mut host, &mut client, &frames[20..]);
    let change = region.change();

    let recovered = client.stats().fec_recovered_shards - recovered_before;
    assert!(recovered > 0, "losses were repaired by FEC while measuring");
    assert!(packets > 1000, "{packets} datagrams");
    let per_frame = change.allocations as f64 / 20.0;
    println!(
        "{packets} datagrams, 20 frames, {recovered} shards rebuilt: {} allocations ({per_frame} per frame, {} per packet), {} reallocations",
        change.allocations,
        change.allocations as f64 / packets as f64,
        change.reallocations
    );
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "no allocation while streaming: {change:?}"
    );

    // The same sessions on their worker threads, as the SDKs run them. The
    // application hands each frame in a reused buffer (take_buffer). A
    // delivered frame comes as a buffer of its own to keep (one allocation per
    // frame, the bound; nothing is allocated per packet), or, while the
    // application lends buffers (as the Node binding's borrowing iterators
    // do), copied into one of those on the receive thread, its own buffer
    // recycled: then nothing is allocated at all.
    let (tx, _) = host.split();
    let (_, rx) = client.split();
    let mut tx = SendWorker::spawn(tx, 4, None).unwrap();
    let (mut rx, lent) = spawn_lending::<Vec<u8>, _>(rx, 4, None, 2).unwrap();
    let mut lent_frames = 0;
    let mut run = |frames: &[Vec<u8>]| -> u64 {
        let before = tx.stats().packets_sent;
        for (i, f) in frames.iter().enumerate() {
            let mut buf = tx.take_buffer();
            buf.extend_from_slice(f);
            tx.submit(buf, FrameMeta::default(), None)
                .map_err(|r| r.error)
                .unwrap();
            match rx.next(Some(Duration::from_secs(5))).unwrap() {
                Some(Delivered {
                    event: FrameEvent::Frame(got),
                    lent: None,
                }) => assert!(got.data == *f, "worker frame {i} is byte-exact"),
                Some(Delivered {
                    event: FrameEvent::Frame(_),
                    lent: Some((buf, len)),
                }) => {
                    assert!(buf[..len] == f[..], "lent worker frame {i} is byte-exact");
                    assert!(lent.lend(buf), "lent again");
                    lent_frames += 1;
                }
                other => panic!("worker frame {i}: {other:?}"),
            }
        }
        tx.stats().packets_sent - before
    };
    run(&frames[..20]);
    let region = Region::new(GLOBAL);
    let packets = run(&frames[20..]);
    let change = region.change();
    let per_frame = (change.allocations + change.reallocations) as f64 / 20.0;
    println!("workers: {packets} datagrams, 20 frames: {change:?} ({per_frame} per frame)");
    assert!(
        per_frame <= 1.0,
        "at most the delivered frame's buffer per frame: {change:?}"
    );

    // Lending: two buffers of the largest frame's size, warmed up, then none
    // of the 20 frames allocates.
    for _ in 0..2 {
        assert!(lent.lend(vec![0; 120_000]));
    }
    run(&frames[..20]);
    let region = Region::new(GLOBAL);
    let packets = run(&frames[20..]);
    let change = region.change();
    println!("workers, lent buffers: {packets} datagrams, 20 frames: {change:?}");
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "no allocation while the application lends buffers: {change:?}"
    );
    assert_eq!(lent_frames, 40, "every frame came in a lent buffer");
    tx.close().unwrap();
    rx.close();
}
