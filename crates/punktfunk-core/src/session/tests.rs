//! Scenario tests of the session: real UDP loopback, the in-process pair, and
//! hand-crafted hostile packets.

use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::crypto::{DirectionKey, Sealer};
use crate::fec::FecConfig;
use crate::transport::{Impaired, ImpairmentConfig, LoopbackTransport, UdpTransport};
use crate::wire::{InnerHeader, CLEAR_HEADER_LEN, FLAG_KEYFRAME, INNER_HEADER_LEN, TAG_LEN};

fn keys() -> SessionKeys {
    SessionKeys::derive(&[0x42; 32], b"session tests").unwrap()
}

/// Deterministic frame contents that differ per frame and per byte.
fn pattern(index: u64, len: usize) -> Vec<u8> {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn udp_pair() -> (UdpTransport, UdpTransport) {
    crate::transport::udp_test_pair()
}

/// Receives events until `frames` frames or losses have been accounted for, or 20 s pass.
fn collect<T: Transport>(rx: &mut FrameReceiver<T>, frames: u64) -> Vec<FrameEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    let mut accounted = 0;
    while accounted < frames && Instant::now() < deadline {
        if let Some(ev) = rx.recv_frame(Duration::from_millis(100)).unwrap() {
            accounted += match &ev {
                FrameEvent::Frame(_) => 1,
                FrameEvent::Lost { count, .. } => *count,
            };
            out.push(ev);
        }
    }
    out
}

fn frames_of(events: &[FrameEvent]) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            FrameEvent::Frame(f) => Some(f),
            FrameEvent::Lost { .. } => None,
        })
        .collect()
}

#[test]
fn udp_round_trip_is_exact_and_in_order_from_1_byte_to_4_mb() {
    let sizes = [1usize, 1000, 100_000, 1_000_000, 4_000_000];
    let (a, b) = udp_pair();
    let (mut tx, _) = Session::new(Role::Host, SessionConfig::default(), &keys(), a)
        .unwrap()
        .split();
    let (_, mut rx) = Session::new(Role::Client, SessionConfig::default(), &keys(), b)
        .unwrap()
        .split();
    let client = thread::spawn(move || {
        let events = collect(&mut rx, sizes.len() as u64);
        (events, rx.stats())
    });
    for (i, len) in sizes.iter().enumerate() {
        let r = tx
            .submit_frame(
                &pattern(i as u64, *len),
                FrameMeta {
                    pts: 1000 + i as u64,
                    keyframe: i == 0,
                },
            )
            .unwrap();
        assert_eq!(r.frame_index, i as u64);
        assert_eq!(
            r.packets_dropped,
            0,
            "send buffer too small? {:?}",
            tx.transport().buffer_report()
        );
        // Give the receiver a moment so a 4 MB burst never meets a full queue from the last one.
        thread::sleep(Duration::from_millis(30));
    }
    let (events, stats) = client.join().unwrap();
    let frames = frames_of(&events);
    assert_eq!(frames.len(), sizes.len(), "events: {:?}", events.len());
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert_eq!(f.pts, 1000 + i as u64);
        assert_eq!(f.keyframe, i == 0);
        assert_eq!(f.data.len(), sizes[i]);
        assert!(f.data == pattern(i as u64, sizes[i]), "frame {i} differs");
        assert_eq!(f.recovered_shards, 0);
    }
    assert_eq!(stats.fec_recovered_shards, 0);
    assert_eq!(stats.frames_completed, sizes.len() as u64);
    assert_eq!(stats.recv_dropped_total(), 0);
    let sent = tx.stats();
    // The sender's half counts what it sent; the shared counters differ per side.
    assert_eq!(sent.packets_send_dropped, 0);
    // Batched I/O: far fewer send calls than packets.
    assert!(sent.send_syscalls * 32 <= sent.packets_sent, "{sent:?}");
}

fn loopback_sessions(
    cfg: SessionConfig,
    impair: ImpairmentConfig,
) -> (Session<Impaired<LoopbackTransport>>, Session<LoopbackTransport>) {
    let (a, b) = LoopbackTransport::pair(1 << 20);
    let host = Session::new(Role::Host, cfg.clone(), &keys(), Impaired::new(a, impair)).unwrap();
    let client = Session::new(Role::Client, cfg, &keys(), b).unwrap();
    (host, client)
}

#[test]
fn one_in_eight_dropped_with_25_percent_fec_delivers_every_frame_exactly() {
    let cfg = SessionConfig {
        fec: FecConfig {
            fec_percent: 25,
            ..Default::default()
        },
        ..Default::default()
    };
    let (mut host, mut client) = loopback_sessions(cfg, ImpairmentConfig::drop_every(8));
    let sizes = [1usize, 5_000, 64_000, 1_000_000, 3_000_000, 200_000];
    for (i, len) in sizes.iter().enumerate() {
        host.submit_frame(&pattern(i as u64, *len), FrameMeta::default())
            .unwrap();
    }
    assert!(host.transport().counters().dropped > 0);
    let events = collect(client.receiver(), sizes.len() as u64);
    let frames = frames_of(&events);
    assert_eq!(frames.len(), sizes.len(), "{:?}", client.stats());
    for (i, f) in frames.iter().enumerate() {
        assert!(f.data == pattern(i as u64, sizes[i]), "frame {i} differs");
    }
    let s = client.stats();
    assert!(s.fec_recovered_shards > 0);
    assert_eq!(s.frames_dropped, 0);
}

/// Test transport: drops the datagrams (counted from 0) that `drop` picks.
struct DropWhere<F> {
    inner: LoopbackTransport,
    count: std::sync::atomic::AtomicU64,
    drop: F,
}

impl<F: Fn(u64) -> bool + Send + Sync> Transport for DropWhere<F> {
    fn send(&self, d: &[u8]) -> std::io::Result<bool> {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if (self.drop)(n) {
            return Ok(true);
        }
        self.inner.send(d)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.inner.recv(buf)
    }
    fn wait_readable(&self, t: Duration) -> std::io::Result<bool> {
        self.inner.wait_readable(t)
    }
}

#[test]
fn loss_beyond_the_fec_budget_drops_that_frame_and_later_frames_still_arrive() {
    let cfg = SessionConfig {
        fec: FecConfig {
            fec_percent: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    // 300 000 bytes = 224 data + 23 recovery shards = 247 datagrams per frame.
    // Frame 1 loses every second datagram, far beyond what 10 % FEC repairs.
    let (a, b) = LoopbackTransport::pair(1 << 20);
    let lossy = DropWhere {
        inner: a,
        count: Default::default(),
        drop: |n: u64| (247..494).contains(&n) && n % 2 == 0,
    };
    let mut host = Session::new(Role::Host, cfg.clone(), &keys(), lossy).unwrap();
    let mut client = Session::new(Role::Client, cfg, &keys(), b).unwrap();
    for i in 0..3 {
        let r = host
            .submit_frame(&pattern(i, 300_000), FrameMeta::default())
            .unwrap();
        assert_eq!(r.data_shards + r.recovery_shards, 247);
    }
    let events = collect(client.receiver(), 3);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(&events[0], FrameEvent::Frame(f) if f.index == 0 && f.data == pattern(0, 300_000)));
    assert_eq!(
        events[1],
        FrameEvent::Lost {
            first_index: 1,
            count: 1
        }
    );
    assert!(matches!(&events[2], FrameEvent::Frame(f) if f.index == 2 && f.data == pattern(2, 300_000)));
    let s = client.stats();
    assert_eq!((s.frames_completed, s.frames_dropped), (2, 1));
    assert_eq!(
        s.recv_dropped_auth + s.recv_dropped_malformed + s.recv_dropped_replay,
        0
    );
}

/// Seals a datagram with an arbitrary inner header, as a (compromised or buggy)
/// peer holding the key could.
fn craft(sealer: &mut Sealer, h: &InnerHeader, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; CLEAR_HEADER_LEN];
    let mut inner = [0u8; INNER_HEADER_LEN];
    h.encode(&mut inner);
    p.extend_from_slice(&inner);
    p.extend_from_slice(payload);
    p.extend_from_slice(&[0u8; TAG_LEN]);
    sealer.seal(&mut p).unwrap();
    p
}

fn h2c() -> DirectionKey {
    keys().host_to_client
}

fn small_cfg() -> SessionConfig {
    SessionConfig {
        fec: FecConfig {
            fec_percent: 20,
            max_data_per_block: 16,
            shard_payload: 64,
        },
        max_frame_bytes: 4096,
        max_frames_in_flight: 4,
        ..Default::default()
    }
}

/// A valid one-shard frame header for `small_cfg`.
fn one_shard(index: u64) -> InnerHeader {
    InnerHeader {
        flags: FLAG_KEYFRAME,
        block_index: 0,
        block_count: 1,
        shard_index: 0,
        data_shards: 1,
        recovery_shards: 2,
        frame_index: index,
        frame_len: 10,
        pts: 5,
    }
}

/// A client on the in-process pair, the injecting end, and a sealer holding the host's key.
fn hostile_client(cfg: SessionConfig) -> (LoopbackTransport, Session<LoopbackTransport>, Sealer) {
    let (inject, back) = LoopbackTransport::pair(1 << 16);
    let client = Session::new(Role::Client, cfg, &keys(), back).unwrap();
    (inject, client, Sealer::new(h2c()))
}

/// The first of two data shards of frame `index`: never completes on its own.
fn half_frame(index: u64) -> InnerHeader {
    InnerHeader {
        frame_len: 100,
        data_shards: 2,
        frame_index: index,
        ..one_shard(0)
    }
}

fn drain<T: Transport>(client: &mut Session<T>) -> Vec<FrameEvent> {
    let mut out = Vec::new();
    while let Some(ev) = client.poll_frame().unwrap() {
        out.push(ev);
    }
    out
}

#[test]
fn hostile_packets_are_each_rejected_and_counted_under_their_reason() {
    let (inject, mut client, mut sealer) = hostile_client(small_cfg());
    let payload = [7u8; 64];

    let valid = craft(&mut sealer, &one_shard(0), &payload);
    let mut tampered = craft(&mut sealer, &one_shard(0), &payload);
    tampered[40] ^= 0x01;
    let truncated = craft(&mut sealer, &one_shard(0), &payload)[..100].to_vec();
    let mut forged = vec![0x5au8; valid.len()];
    forged[0] = crate::wire::VERSION;
    let wrong_key = craft(&mut Sealer::new(keys().client_to_host), &one_shard(0), &payload);
    let oversize = craft(
        &mut sealer,
        &InnerHeader {
            frame_len: 1 << 30,
            ..one_shard(0)
        },
        &payload,
    );
    let too_many_recovery = craft(
        &mut sealer,
        &InnerHeader {
            recovery_shards: 3,
            shard_index: 2,
            ..one_shard(0)
        },
        &payload,
    );
    let inconsistent = craft(
        &mut sealer,
        &InnerHeader {
            data_shards: 2,
            ..one_shard(0)
        },
        &payload,
    );
    let mut bad_version = valid.clone();
    bad_version[0] = 9;

    for p in [
        &tampered,
        &truncated,
        &forged,
        &wrong_key,
        &oversize,
        &too_many_recovery,
        &inconsistent,
        &bad_version,
    ] {
        assert!(inject.send(p).unwrap());
    }
    assert!(
        drain(&mut client).is_empty(),
        "nothing hostile may become a frame"
    );
    let s = client.stats();
    assert_eq!(s.recv_dropped_auth, 3, "tampered, forged, wrong key: {s:?}");
    assert_eq!(
        s.recv_dropped_malformed, 3,
        "truncated, inconsistent, bad version: {s:?}"
    );
    assert_eq!(
        s.recv_dropped_out_of_bounds, 2,
        "oversize frame, too many recovery shards: {s:?}"
    );

    // The valid packet still gets through, once; its replay does not.
    inject.send(&valid).unwrap();
    inject.send(&valid).unwrap();
    let events = drain(&mut client);
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], FrameEvent::Frame(f) if f.data == payload[..10] && f.keyframe && f.pts == 5)
    );
    assert_eq!(client.stats().recv_dropped_replay, 1);

    // Stale: far older than the replay window once a much newer packet was seen.
    let mut old = Sealer::new(h2c());
    let old_packet = craft(&mut old, &one_shard(1), &payload);
    let mut newer = Sealer::starting_at(h2c(), crate::crypto::REPLAY_WINDOW + 100);
    inject.send(&craft(&mut newer, &one_shard(1), &payload)).unwrap();
    inject.send(&old_packet).unwrap();
    // A shard for a frame that was already delivered is stale-or-redundant, never a frame.
    inject.send(&craft(&mut newer, &one_shard(0), &payload)).unwrap();
    let events = drain(&mut client);
    assert!(matches!(&events[..], [FrameEvent::Frame(f)] if f.index == 1));
    let s = client.stats();
    assert_eq!(s.recv_dropped_stale, 1, "{s:?}");
    assert_eq!(s.packets_redundant, 1, "{s:?}");
    assert_eq!(s.frames_completed, 2);
}

#[test]
fn incomplete_frames_time_out_and_are_reported_lost() {
    let cfg = SessionConfig {
        frame_timeout: Duration::from_millis(30),
        ..small_cfg()
    };
    let (inject, mut client, mut sealer) = hostile_client(cfg);
    // Frame 0 needs 2 data shards; only one arrives.
    inject
        .send(&craft(&mut sealer, &half_frame(0), &[1u8; 64]))
        .unwrap();
    assert_eq!(client.poll_frame().unwrap(), None);
    let ev = client.recv_frame(Duration::from_secs(2)).unwrap();
    assert_eq!(
        ev,
        Some(FrameEvent::Lost {
            first_index: 0,
            count: 1
        })
    );
    assert_eq!(client.stats().frames_dropped, 1);
}

#[test]
fn a_frame_far_behind_the_newest_is_dropped_by_the_index_cap() {
    let cfg = SessionConfig {
        max_index_lag: 4,
        frame_timeout: Duration::from_secs(60),
        ..small_cfg()
    };
    let (inject, mut client, mut sealer) = hostile_client(cfg);
    inject
        .send(&craft(&mut sealer, &half_frame(0), &[1u8; 64]))
        .unwrap();
    // Frame 10 arrives (incomplete too): frames 0..6 are now more than 4 behind.
    inject
        .send(&craft(&mut sealer, &half_frame(10), &[1u8; 64]))
        .unwrap();
    let events = drain(&mut client);
    assert_eq!(
        events,
        vec![FrameEvent::Lost {
            first_index: 0,
            count: 6
        }]
    );
    assert_eq!(client.receiver().reassembler().open_frames(), 1);
}

#[test]
fn more_open_frames_than_slots_evict_the_oldest() {
    let (inject, mut client, mut sealer) = hostile_client(small_cfg());
    for i in 0..6 {
        inject
            .send(&craft(&mut sealer, &half_frame(i), &[1u8; 64]))
            .unwrap();
    }
    let events = drain(&mut client);
    assert_eq!(
        events,
        vec![
            FrameEvent::Lost {
                first_index: 0,
                count: 1
            },
            FrameEvent::Lost {
                first_index: 1,
                count: 1
            }
        ]
    );
    assert_eq!(client.receiver().reassembler().open_frames(), 4);
}

fn arb_header() -> impl Strategy<Value = InnerHeader> {
    let cfg = small_cfg();
    // Any field values at all (the sealed header need not even decode).
    let random = (any::<(u8, u16, u16, u16, u16, u16)>(), any::<(u64, u32, u64)>()).prop_map(
        |(
            (flags, block_index, block_count, shard_index, data_shards, recovery_shards),
            (frame_index, frame_len, pts),
        )| {
            InnerHeader {
                flags,
                block_index,
                block_count,
                shard_index,
                data_shards,
                recovery_shards,
                frame_index,
                frame_len,
                pts,
            }
        },
    );
    let plausible = (
        0u32..2 * cfg.max_frame_bytes as u32,
        any::<u16>(),
        any::<u16>(),
        0u64..40,
        any::<u8>(),
    )
        .prop_map(move |(frame_len, bsel, ssel, frame_index, flags)| {
            let layout = crate::fec::FrameLayout::new(frame_len as usize, &cfg.fec);
            let b = bsel as usize % layout.blocks;
            let k = layout.block(b).data_shards;
            let m = (ssel as usize % (2 * k + 3)) as u16;
            InnerHeader {
                flags: flags & FLAG_KEYFRAME,
                block_index: b as u16,
                block_count: layout.blocks as u16,
                shard_index: (ssel as usize % (k + m as usize)) as u16,
                data_shards: k as u16,
                recovery_shards: m,
                frame_index,
                frame_len,
                pts: 0,
            }
        });
    prop_oneof![random, plausible]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_datagrams_never_panic_and_memory_stays_bounded(
        junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..50),
        sealed in proptest::collection::vec(arb_header(), 0..300),
    ) {
        let cfg = small_cfg();
        let (inject, mut client, mut sealer) = hostile_client(cfg.clone());
        let s = cfg.fec.shard_payload;
        // Per open frame: padded data + recovery arena (≤ 100 % + 2 per block); spare buffers too.
        let blocks = crate::fec::FrameLayout::new(cfg.max_frame_bytes, &cfg.fec).blocks;
        let per_frame = 2 * (cfg.max_frame_bytes + s) + 2 * blocks * s;
        let bound = 2 * cfg.max_frames_in_flight * per_frame;
        for j in &junk {
            inject.send(j).unwrap();
        }
        prop_assert!(drain(&mut client).is_empty(), "junk never becomes a frame");
        for h in &sealed {
            inject.send(&craft(&mut sealer, h, &[h.shard_index as u8; 64])).unwrap();
            while let Some(ev) = client.poll_frame().unwrap() {
                if let FrameEvent::Frame(f) = ev {
                    // Whatever is delivered is whole: its length is what the header said.
                    prop_assert!(f.data.len() <= cfg.max_frame_bytes);
                    client.receiver().recycle(f.data);
                }
            }
            let used = client.receiver().reassembler().buffered_bytes();
            prop_assert!(used <= bound, "{} bytes buffered, bound {}", used, bound);
        }
        let st = client.stats();
        prop_assert_eq!(st.packets_received, (junk.len() + sealed.len()) as u64);
    }
}

#[test]
fn every_impairment_at_once_never_yields_a_corrupt_frame_and_the_books_balance() {
    let cfg = SessionConfig {
        fec: FecConfig {
            fec_percent: 30,
            ..Default::default()
        },
        ..Default::default()
    };
    let impair = ImpairmentConfig {
        seed: 99,
        loss_percent: 3.0,
        reorder_percent: 3.0,
        reorder_depth: 5,
        duplicate_percent: 2.0,
        corrupt_percent: 1.0,
        truncate_percent: 1.0,
        ..Default::default()
    };
    let (mut host, mut client) = loopback_sessions(cfg, impair);
    let n = 60u64;
    for i in 0..n {
        let len = if i % 10 == 0 {
            600_000
        } else {
            20_000 + (i as usize * 3001) % 150_000
        };
        host.submit_frame(
            &pattern(i, len),
            FrameMeta {
                pts: i,
                keyframe: i % 10 == 0,
            },
        )
        .unwrap();
    }
    let c = host.transport().counters();
    assert!(c.dropped > 0 && c.reordered > 0 && c.duplicated > 0 && c.corrupted > 0 && c.truncated > 0);
    let events = collect(client.receiver(), n);
    for f in frames_of(&events) {
        let len = if f.index % 10 == 0 {
            600_000
        } else {
            20_000 + (f.index as usize * 3001) % 150_000
        };
        assert!(f.data == pattern(f.index, len), "frame {} corrupt", f.index);
        assert_eq!(f.pts, f.index);
    }
    let s = client.stats();
    assert_eq!(s.frames_completed + s.frames_dropped, n, "{s:?}");
    assert!(
        s.frames_completed >= n - 2,
        "30 % FEC should carry 3 % loss: {s:?}"
    );
    assert!(s.fec_recovered_shards > 0);
    // Corrupted datagrams fail authentication, truncated ones have the wrong
    // length; a duplicate of a damaged datagram counts twice, nothing else counts.
    assert!(s.recv_dropped_auth > 0 && s.recv_dropped_malformed > 0, "{s:?}");
    assert!(s.recv_dropped_auth + s.recv_dropped_malformed >= c.corrupted.max(c.truncated));
    assert!(s.recv_dropped_auth + s.recv_dropped_malformed <= c.corrupted + c.truncated + c.duplicated);
    assert!(
        s.recv_dropped_replay > 0,
        "duplicates are caught by the replay window"
    );
}

/// Test transport: counts `recv_batch` calls and the ones that found nothing.
struct CountingRecv {
    inner: LoopbackTransport,
    calls: std::sync::atomic::AtomicU64,
    empty: std::sync::atomic::AtomicU64,
}

impl Transport for CountingRecv {
    fn send(&self, d: &[u8]) -> std::io::Result<bool> {
        self.inner.send(d)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.inner.recv(buf)
    }
    fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.inner.recv_batch(bufs, lens)?;
        self.calls.fetch_add(1, Relaxed);
        if n == 0 {
            self.empty.fetch_add(1, Relaxed);
        }
        Ok(n)
    }
    fn wait_readable(&self, t: Duration) -> std::io::Result<bool> {
        self.inner.wait_readable(t)
    }
}

#[test]
fn a_waiting_receiver_makes_no_empty_reads_and_takes_full_batches() {
    use std::sync::atomic::Ordering::Relaxed;
    let (a, b) = LoopbackTransport::pair(1 << 16);
    let counting = CountingRecv {
        inner: b,
        calls: Default::default(),
        empty: Default::default(),
    };
    let mut host = Session::new(Role::Host, SessionConfig::default(), &keys(), a).unwrap();
    let mut client = Session::new(Role::Client, SessionConfig::default(), &keys(), counting).unwrap();
    // 100 000 bytes = 75 data + 8 recovery datagrams.
    host.submit_frame(&pattern(0, 100_000), FrameMeta::default())
        .unwrap();
    let ev = client.recv_frame(Duration::from_secs(2)).unwrap();
    assert!(matches!(ev, Some(FrameEvent::Frame(ref f)) if f.data == pattern(0, 100_000)));
    // Waiting on a quiet link: at most the one read that found the queue empty.
    assert_eq!(client.recv_frame(Duration::from_millis(60)).unwrap(), None);
    let t = client.transport();
    assert!(
        t.empty.load(Relaxed) <= 1,
        "{} empty reads",
        t.empty.load(Relaxed)
    );
    // The frame took full batches of 32: ceil(83 / 32) = 3 reads that found data
    // (the last one short), but the frame completes after 75 data shards.
    assert!(t.calls.load(Relaxed) - t.empty.load(Relaxed) <= 3);
}

#[test]
fn probe_datagrams_are_counted_and_leave_frames_alone() {
    let keys = SessionKeys::derive(&[5u8; 32], b"probe").unwrap();
    let (a, b) = LoopbackTransport::pair(1 << 14);
    let mut host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
    let mut client = Session::new(Role::Client, SessionConfig::default(), &keys, b).unwrap();
    host.submit_frame(&[1u8; 5000], FrameMeta::default()).unwrap();
    let (sent, dropped) = host.sender().send_probe(150).unwrap();
    assert_eq!((sent, dropped), (150, 0));
    host.submit_frame(&[2u8; 5000], FrameMeta::default()).unwrap();
    let mut frames = Vec::new();
    while let Some(ev) = client.recv_frame(Duration::from_millis(50)).unwrap() {
        match ev {
            FrameEvent::Frame(f) => frames.push((f.index, f.data[0])),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(frames, vec![(0, 1), (1, 2)], "probes take no frame index");
    let s = client.stats();
    assert_eq!(s.probe_packets_received, 150);
    assert_eq!(s.frames_dropped, 0);
    assert_eq!(host.stats().packets_sent, s.packets_received);
}

/// The shape a stream of datagrams arrived in: bursts separated by gaps.
#[derive(Debug)]
struct BurstShape {
    bursts: usize,
    largest_burst_bytes: usize,
    median_gap: Duration,
    spread: Duration,
}

/// Reads `count` datagrams as they arrive, each stamped by the kernel, and
/// groups them into bursts: arrivals less than `split` apart belong together.
fn arrival_shape(t: &UdpTransport, count: usize, split: Duration) -> BurstShape {
    let mut buf = vec![0u8; 2048];
    let mut arrivals = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.len() < count && Instant::now() < deadline {
        match t.recv_timestamped(&mut buf).unwrap() {
            Some((len, stamp)) => arrivals.push((stamp.expect("kernel timestamp"), len)),
            None => {
                t.wait_readable(Duration::from_millis(5)).unwrap();
            }
        }
    }
    assert_eq!(arrivals.len(), count, "every datagram arrived");
    let (mut bursts, mut gaps, mut largest, mut current) = (1, Vec::new(), 0, 0);
    for w in arrivals.windows(2) {
        current += w[0].1;
        let gap = w[1].0.saturating_sub(w[0].0);
        if gap >= split {
            largest = largest.max(current);
            current = 0;
            bursts += 1;
            gaps.push(gap);
        }
    }
    largest = largest.max(current + arrivals.last().map_or(0, |a| a.1));
    gaps.sort();
    BurstShape {
        bursts,
        largest_burst_bytes: largest,
        median_gap: gaps.get(gaps.len() / 2).copied().unwrap_or_default(),
        spread: arrivals.last().unwrap().0.saturating_sub(arrivals[0].0),
    }
}

#[test]
fn the_paced_sender_spreads_a_frame_into_small_bursts_with_regular_gaps() {
    let frame = pattern(1, 1 << 20);
    let mut shapes = Vec::new();
    // Unpaced, then paced at a fixed 400 Mbit/s: 64 KiB at once, then 32 KiB
    // every 655 µs, about 21 ms for the frame's 1.1 MB of datagrams.
    let paced = Pacing {
        fixed_rate_kbps: 400_000,
        ..Pacing::default()
    };
    for pacing in [None, Some(paced)] {
        let (a, b) = udp_pair();
        b.enable_rx_timestamps().unwrap();
        let config = SessionConfig {
            pacing,
            ..SessionConfig::default()
        };
        let mut host = Session::new(Role::Host, config.clone(), &keys(), a).unwrap();
        let datagram = config.fec.datagram_len();
        let shape = thread::scope(|s| {
            let sender = s.spawn(|| host.submit_frame(&frame, FrameMeta::default()).unwrap());
            let count = {
                let l = crate::fec::FrameLayout::new(frame.len(), &config.fec);
                (0..l.blocks)
                    .map(|i| {
                        let k = l.block(i).data_shards;
                        k + crate::fec::recovery_count(k, config.fec.fec_percent)
                    })
                    .sum::<usize>()
            };
            let shape = arrival_shape(&b, count, Duration::from_micros(100));
            let report = sender.join().unwrap();
            assert_eq!(report.packets_dropped, 0);
            shape
        });
        println!(
            "pacing {:?}: {shape:?} ({} B datagrams)",
            pacing.map(|p| p.fixed_rate_kbps),
            datagram
        );
        shapes.push(shape);
    }
    let (burst, spread) = (&shapes[0], &shapes[1]);
    let frame_wire = frame.len() * 11 / 10;
    // Unpaced the frame leaves in one burst; a busy machine may pause the
    // sending thread once or twice, so ask for most of it, not all.
    assert!(
        burst.largest_burst_bytes * 10 >= frame_wire * 4,
        "unpaced, the frame leaves in one or a few large bursts: {burst:?}"
    );
    assert!(
        spread.largest_burst_bytes <= 160 * 1024,
        "paced, no burst is more than a few chunks: {spread:?}"
    );
    assert!(spread.bursts >= 15, "{spread:?}");
    assert!(
        spread.spread >= Duration::from_millis(10) && spread.spread <= Duration::from_millis(80),
        "about 21 ms at 400 Mbit/s: {spread:?}"
    );
    assert!(
        spread.median_gap >= Duration::from_micros(300) && spread.median_gap <= Duration::from_millis(3),
        "chunks about 655 µs apart: {spread:?}"
    );
}

#[test]
fn busy_polling_receives_without_sleeping_in_the_kernel() {
    let (a, b) = udp_pair();
    let config = SessionConfig {
        busy_poll: true,
        ..SessionConfig::default()
    };
    let mut host = Session::new(Role::Host, config.clone(), &keys(), a).unwrap();
    let mut client = Session::new(Role::Client, config, &keys(), b).unwrap();
    let waits0 = client.stats().recv_wait_syscalls;
    let receiver = thread::spawn(move || {
        let got = collect(client.receiver(), 5);
        (got, client.stats())
    });
    for i in 0..5u64 {
        thread::sleep(Duration::from_millis(10));
        host.submit_frame(&pattern(i, 30_000), FrameMeta::default())
            .unwrap();
    }
    let (got, st) = receiver.join().unwrap();
    assert_eq!(got.len(), 5);
    for (i, ev) in got.iter().enumerate() {
        match ev {
            FrameEvent::Frame(f) => assert_eq!(f.data, pattern(i as u64, 30_000)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(st.recv_wait_syscalls - waits0, 0, "no ppoll: it kept reading");
    assert!(st.recv_syscalls > 10, "{} reads while waiting", st.recv_syscalls);
}
