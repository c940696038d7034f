//! Hostile and malformed packets: each rejected and counted under its
//! reason; nothing a packet claims grows memory beyond the configuration.

use proptest::prelude::*;

use super::*;
use crate::crypto::{DirectionKey, Sealer};
use crate::fec::FecConfig;
use crate::wire::{InnerHeader, CLEAR_HEADER_LEN, FLAG_KEYFRAME, INNER_HEADER_LEN, TAG_LEN};

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
    poll_all(client.receiver(), Instant::now())
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
    let t = Clock::new();
    // Frame 0 needs 2 data shards; only one arrives.
    inject
        .send(&craft(&mut sealer, &half_frame(0), &[1u8; 64]))
        .unwrap();
    assert_eq!(client.poll_frame(t.ms(0)).unwrap(), None);
    // The receiver says when it next needs to run: just after the timeout.
    let due = client.receiver().poll_timeout().expect("a frame is open");
    assert!(due > t.ms(30) && due <= t.ms(31), "{:?}", due - t.0);
    assert_eq!(
        client.poll_frame(t.ms(30)).unwrap(),
        None,
        "not yet at exactly 30 ms"
    );
    assert_eq!(
        client.poll_frame(due).unwrap(),
        Some(FrameEvent::Lost {
            first_index: 0,
            count: 1
        })
    );
    assert_eq!(client.stats().frames_dropped, 1);
    assert_eq!(client.receiver().poll_timeout(), None, "nothing left open");
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
            for ev in poll_all(client.receiver(), Instant::now()) {
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
fn a_flood_of_datagrams_without_events_returns_to_the_caller_and_frames_still_time_out() {
    let cfg = SessionConfig {
        frame_timeout: Duration::from_millis(30),
        ..small_cfg()
    };
    let (inject, mut client, mut sealer) = hostile_client(cfg);
    let t = Clock::new();
    // Half a frame, then far more replays of that datagram than one poll reads.
    let half = craft(&mut sealer, &half_frame(0), &[1u8; 64]);
    let flood = MAX_READS_PER_POLL * crate::transport::RECV_BATCH + 500;
    for _ in 0..=flood {
        inject.send(&half).unwrap();
    }
    // Each poll does bounded work and hands control back, with more to read.
    let mut polls = 0;
    let mut events = Vec::new();
    loop {
        polls += 1;
        if let Some(ev) = client.poll_frame(t.ms(polls * 10)).unwrap() {
            events.push(ev);
        }
        if client.receiver().is_drained() {
            break;
        }
        assert!(polls < 10, "a poll reads a bounded number of batches");
    }
    assert!(polls >= 2, "the flood took more than one poll ({polls})");
    let s = client.stats();
    assert_eq!(s.recv_dropped_replay, flood as u64, "{s:?}");
    assert!(events.is_empty(), "{events:?}");
    // While the backlog held the frame's other shard it did not age out;
    // once caught up, the next poll past its timeout reports it lost.
    let lost = FrameEvent::Lost {
        first_index: 0,
        count: 1,
    };
    events.extend(poll_all(client.receiver(), t.ms(1000)));
    assert!(events.contains(&lost), "{events:?}");
}
