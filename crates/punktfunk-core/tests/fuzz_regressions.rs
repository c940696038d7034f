//! Regression inputs for the fuzz targets in `fuzz/` (run them with
//! `scripts/fuzz.sh`), replayed through the public API with the plain test
//! harness: hand-picked nasty inputs per decoder (empty, truncated, maximal
//! lengths, datagrams claiming huge frames) and every crash the fuzzers found,
//! minimized.

use std::sync::Arc;
use std::time::{Duration, Instant};

use punktfunk_core::crypto::Sealer;
use punktfunk_core::session::Reassembler;
use punktfunk_core::transport::RecvMeta;
use punktfunk_core::wire::{
    ClearHeader, InnerHeader, WireError, CLEAR_HEADER_LEN, FLAG_KEYFRAME, FLAG_PADDING, FLAG_PATH,
    FLAG_PROBE, INNER_HEADER_LEN,
};
use punktfunk_core::{
    FecConfig, FrameEvent, FrameMeta, LoopbackTransport, Role, Session, SessionConfig, SessionKeys, Stats,
    StatsSnapshot, Transport,
};

/// The small configuration the fuzz targets use: 64-byte shards, short blocks.
fn small_config() -> SessionConfig {
    SessionConfig {
        fec: FecConfig {
            fec_percent: 10,
            max_data_per_block: 8,
            shard_payload: 64,
        },
        max_frame_bytes: 64 * 1024,
        max_frames_in_flight: 4,
        max_index_lag: 8,
        ..SessionConfig::default()
    }
}

fn header(frame_index: u64, frame_len: u32) -> InnerHeader {
    InnerHeader {
        block_count: 1,
        data_shards: frame_len.div_ceil(64).max(1) as u16,
        frame_index,
        frame_len,
        ..InnerHeader::default()
    }
}

/// Drains the events and checks that every index is reported once, in order,
/// from `*next` on. Returns the delivered frames' indexes.
fn drain_contiguous(r: &mut Reassembler, next: &mut u64) -> Vec<u64> {
    let mut frames = Vec::new();
    while let Some(ev) = r.pop_event() {
        match ev {
            FrameEvent::Frame(f) => {
                assert_eq!(f.index, *next, "frame out of order or reported twice");
                // Checked: in release builds a wrapped index would look in order.
                *next = f.index.checked_add(1).expect("frame index u64::MAX delivered");
                frames.push(f.index);
            }
            FrameEvent::Lost { first_index, count } => {
                assert_eq!(first_index, *next, "lost range out of order or reported twice");
                assert!(count >= 1);
                *next = first_index.checked_add(count).expect("lost range overflows");
            }
        }
    }
    assert_eq!(r.next_index(), *next, "next_index follows the events");
    frames
}

// ---------------------------------------------------------------------------
// wire: clear and inner headers
// ---------------------------------------------------------------------------

#[test]
fn clear_header_rejects_empty_and_truncated_input_with_typed_errors() {
    let full = [1u8, 0, 0, 0, 0, 0, 0, 0, 42];
    for n in 0..CLEAR_HEADER_LEN {
        assert_eq!(
            ClearHeader::decode(&full[..n]),
            Err(WireError::TooShort {
                need: CLEAR_HEADER_LEN,
                have: n
            })
        );
    }
    assert_eq!(ClearHeader::decode(&full), Ok(ClearHeader { seq: 42 }));
    for v in [0u8, 2, 0xFF] {
        let mut b = full;
        b[0] = v;
        assert_eq!(ClearHeader::decode(&b), Err(WireError::UnknownVersion(v)));
    }
}

#[test]
fn inner_header_rejects_empty_and_truncated_input_with_typed_errors() {
    let mut full = [0u8; INNER_HEADER_LEN];
    header(0, 10).encode(&mut full);
    for n in 0..INNER_HEADER_LEN {
        assert_eq!(
            InnerHeader::decode(&full[..n]),
            Err(WireError::TooShort {
                need: INNER_HEADER_LEN,
                have: n
            })
        );
    }
    assert_eq!(InnerHeader::decode(&full), Ok(header(0, 10)));
}

#[test]
fn inner_header_with_maximal_fields_round_trips() {
    let h = InnerHeader {
        flags: FLAG_KEYFRAME | FLAG_PROBE,
        block_index: u16::MAX - 1,
        block_count: u16::MAX,
        shard_index: u16::MAX,
        data_shards: u16::MAX,
        recovery_shards: u16::MAX,
        frame_index: u64::MAX,
        frame_len: u32::MAX,
        pts: u64::MAX,
    };
    let mut b = [0u8; INNER_HEADER_LEN];
    h.encode(&mut b);
    assert_eq!(InnerHeader::decode(&b), Ok(h));
    // A shard index of k + m (u16 + u16 does not overflow the check).
    let mut b2 = b;
    b2[10..12].copy_from_slice(&0u16.to_be_bytes());
    b2[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        InnerHeader::decode(&b2),
        Err(WireError::Inconsistent("shard index outside k + m"))
    );
}

#[test]
fn inner_header_checks_come_in_the_documented_order() {
    // All bytes 0xFF: unknown flags is reported first, then the reserved byte.
    let mut b = [0xFFu8; INNER_HEADER_LEN];
    assert_eq!(
        InnerHeader::decode(&b),
        Err(WireError::UnknownFlags(
            !(FLAG_KEYFRAME | FLAG_PROBE | FLAG_PATH | FLAG_PADDING)
        ))
    );
    b[0] = 0;
    assert_eq!(InnerHeader::decode(&b), Err(WireError::ReservedNotZero(0xFF)));
    b[1] = 0;
    // block_index 0xFFFF ≥ block_count 0xFFFF.
    assert_eq!(
        InnerHeader::decode(&b),
        Err(WireError::Inconsistent("block index outside block count"))
    );
    b[2..4].copy_from_slice(&0u16.to_be_bytes());
    b[8..10].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        InnerHeader::decode(&b),
        Err(WireError::Inconsistent("zero data shards"))
    );
}

// ---------------------------------------------------------------------------
// Reassembler
// ---------------------------------------------------------------------------

#[test]
fn reassembler_counts_nasty_headers_without_allocating() {
    let config = small_config();
    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(config.clone(), stats.clone());
    let now = Instant::now();
    let p = [0u8; 64];

    // A frame claiming 4 GiB: out of bounds before anything is allocated.
    let mut h = header(0, u32::MAX);
    h.block_count = u16::MAX;
    h.data_shards = u16::MAX;
    assert!(r.insert(&h, &p, now).is_err());
    // Just over the limit.
    assert!(r
        .insert(&header(0, config.max_frame_bytes as u32 + 1), &p, now)
        .is_err());
    // Block count that does not match the frame length.
    let mut h = header(0, 100);
    h.block_count = 2;
    assert!(r.insert(&h, &p, now).is_err());
    // Data shard count that does not match the block.
    let mut h = header(0, 100);
    h.data_shards = 1;
    assert!(r.insert(&h, &p, now).is_err());
    // More recovery shards than the 100 % maximum.
    let mut h = header(0, 100);
    h.recovery_shards = 3;
    assert!(r.insert(&h, &p, now).is_err());
    // Payload of the wrong size: empty, short, long.
    for len in [0, 63, 65, 4096] {
        assert!(r.insert(&header(0, 10), &vec![0u8; len], now).is_err());
    }

    let s = stats.snapshot();
    assert_eq!(s.recv_dropped_out_of_bounds, 3, "{s:?}");
    assert_eq!(s.recv_dropped_malformed, 6, "{s:?}");
    assert_eq!(r.open_frames(), 0);
    assert_eq!(r.buffered_bytes(), 0, "rejected headers allocate nothing");
    assert!(r.pop_event().is_none());
}

#[test]
fn reassembler_memory_stays_bounded_under_huge_frames_from_far_apart_indexes() {
    let config = small_config();
    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(config.clone(), stats.clone());
    let now = Instant::now();
    let max = config.max_frame_bytes as u32;
    let layout = punktfunk_core::fec::FrameLayout::new(max as usize, &config.fec);
    let mut next = 0;
    // First shard of many maximal frames, each opening a slot (and evicting).
    for i in 0..64u64 {
        let k = layout.block(0).data_shards as u16;
        let h = InnerHeader {
            block_count: layout.blocks as u16,
            data_shards: k,
            recovery_shards: k,
            shard_index: k, // a recovery shard: stored in the arena
            frame_index: i * 1000,
            frame_len: max,
            ..InnerHeader::default()
        };
        let _ = r.insert(&h, &[0u8; 64], now);
        drain_contiguous(&mut r, &mut next);
        assert!(r.open_frames() <= config.max_frames_in_flight);
        let bound = 2 * 3 * config.max_frames_in_flight * layout.padded_len();
        assert!(r.buffered_bytes() <= bound, "{} > {bound}", r.buffered_bytes());
    }
}

/// Fuzz finding (targets `reassembler` and `client_datagrams`, minimized to
/// this one shard): a shard of frame index `u64::MAX` that completes its frame
/// (here an empty frame: one data shard) overflows `next_index` (`index + 1`
/// in `Reassembler::complete`, session/reassembly.rs): a panic with overflow
/// checks; in release builds `next_index` wraps to 0 and indexes already
/// reported are reported again.
#[test]

fn frame_index_u64_max_does_not_overflow_next_index() {
    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(small_config(), stats.clone());
    let now = Instant::now();
    let mut next = 0;
    let _ = r.insert(&header(u64::MAX, 0), &[1u8; 64], now);
    drain_contiguous(&mut r, &mut next);
    // The stream goes on normally afterwards: frame 0 is new, reported once.
    let _ = r.insert(&header(0, 10), &[2u8; 64], now);
    drain_contiguous(&mut r, &mut next);
    let _ = r.insert(&header(1, 10), &[3u8; 64], now);
    drain_contiguous(&mut r, &mut next);
}

/// Same overflow through `expire` (`i + 1` of the newest expired frame): an
/// incomplete frame `u64::MAX` that times out.
#[test]

fn expiring_frame_index_u64_max_does_not_overflow() {
    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(small_config(), stats.clone());
    let now = Instant::now();
    let mut next = 0;
    // Two data shards; only the first arrives.
    let _ = r.insert(&header(u64::MAX, 100), &[1u8; 64], now);
    drain_contiguous(&mut r, &mut next);
    r.expire(now + Duration::from_secs(3600));
    drain_contiguous(&mut r, &mut next);
}

/// `Reassembler::insert` is public and takes any `InnerHeader`, but indexes
/// with `block_index` and `shard_index` as if `InnerHeader::decode` had checked
/// them: a header with `block_index ≥ block_count` (whose `block_count` matches
/// the layout) panics on `slot.blocks[b]`, and `shard_index ≥ k + m` marks a bit
/// of the next block's recovery range (or past the bitmap). Not reachable from
/// the network (the receiver decodes first); hardening of the public API.
#[test]

fn reassembler_rejects_headers_that_decode_would_refuse() {
    let stats = Arc::new(Stats::default());
    let mut r = Reassembler::new(small_config(), stats.clone());
    let now = Instant::now();
    let mut h = header(0, 10);
    h.block_index = 1; // block_count is 1
    assert!(r.insert(&h, &[0u8; 64], now).is_err());
    let mut h = header(0, 10);
    h.recovery_shards = 2;
    h.shard_index = 3; // k + m = 3
    assert!(r.insert(&h, &[0u8; 64], now).is_err());
    h.shard_index = u16::MAX;
    assert!(r.insert(&h, &[0u8; 64], now).is_err());
    assert_eq!(stats.snapshot().recv_dropped_malformed, 3);
}

// ---------------------------------------------------------------------------
// Client session over a loopback transport
// ---------------------------------------------------------------------------

fn keys() -> SessionKeys {
    SessionKeys::derive(&[7u8; 32], b"fuzz").unwrap()
}

fn client(config: SessionConfig) -> (LoopbackTransport, Session<LoopbackTransport>) {
    let (inject, t) = LoopbackTransport::pair(4096);
    let client = Session::new(Role::Client, config, &keys(), t).unwrap();
    (inject, client)
}

fn poll_all(client: &mut Session<LoopbackTransport>) -> Vec<FrameEvent> {
    let mut events = Vec::new();
    while let Some(ev) = client.poll_frame(std::time::Instant::now()).unwrap() {
        events.push(ev);
    }
    events
}

/// A datagram sealed with the host's key (as a peer holding the session keys
/// could send), carrying `inner` and a zero payload.
fn forged(sealer: &mut Sealer, inner: &InnerHeader, shard_payload: usize) -> Vec<u8> {
    let mut d = vec![0u8; CLEAR_HEADER_LEN + INNER_HEADER_LEN + shard_payload + 16];
    let h: &mut [u8; INNER_HEADER_LEN] = (&mut d[CLEAR_HEADER_LEN..CLEAR_HEADER_LEN + INNER_HEADER_LEN])
        .try_into()
        .unwrap();
    inner.encode(h);
    sealer.seal(&mut d).unwrap();
    d
}

#[test]
fn client_drops_datagrams_of_every_wrong_length_and_counts_them() {
    let config = small_config();
    let dlen = config.fec.datagram_len();
    let (inject, mut client) = client(config);
    let lens = [0, 1, CLEAR_HEADER_LEN, dlen - 1, dlen + 1, dlen + 2, 65_535];
    for len in lens {
        let mut d = vec![0u8; len];
        if let Some(v) = d.first_mut() {
            *v = 1;
        }
        assert!(inject.send(&d).unwrap());
    }
    assert!(poll_all(&mut client).is_empty());
    let s = client.stats();
    assert_eq!(s.packets_received, lens.len() as u64);
    assert_eq!(s.recv_dropped_malformed, lens.len() as u64, "{s:?}");
    // Longer datagrams show up one byte too long (the receive buffers are dlen + 1).
    let read: u64 = lens.iter().map(|&l| l.min(dlen + 1) as u64).sum();
    assert_eq!(s.bytes_received, read);
}

#[test]
fn client_drops_unauthentic_and_replayed_datagrams() {
    let config = small_config();
    let keys = keys();
    let (host_t, host_peer) = LoopbackTransport::pair(4096);
    let mut host = Session::new(Role::Host, config.clone(), &keys, host_t).unwrap();
    let frame: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
    host.submit_frame(
        &frame,
        FrameMeta {
            pts: 9,
            keyframe: true,
        },
    )
    .unwrap();
    let dlen = config.fec.datagram_len();
    let mut bufs = vec![vec![0u8; dlen]; 64];
    let mut meta = [RecvMeta::default(); 64];
    let n = host_peer.recv_batch(&mut bufs, &mut meta).unwrap();
    let real: Vec<Vec<u8>> = bufs
        .iter()
        .zip(&meta)
        .take(n)
        .map(|(b, m)| b[..m.len].to_vec())
        .collect();
    assert!(real.len() > 2);

    let (inject, mut client) = client(config);
    // Every byte position flipped in the first datagram: none authenticates.
    for at in 0..dlen {
        let mut d = real[0].clone();
        d[at] ^= 0x80;
        inject.send(&d).unwrap();
    }
    // Then the real ones, each twice.
    for d in &real {
        inject.send(d).unwrap();
        inject.send(d).unwrap();
    }
    let events = poll_all(&mut client);
    let s = client.stats();
    assert_eq!(s.packets_received, (dlen + 2 * real.len()) as u64);
    // Byte 0 is the version: malformed; the rest fail authentication.
    assert_eq!(s.recv_dropped_malformed, 1, "{s:?}");
    assert_eq!(s.recv_dropped_auth, dlen as u64 - 1, "{s:?}");
    assert_eq!(s.recv_dropped_replay, real.len() as u64, "{s:?}");
    match &events[..] {
        [FrameEvent::Frame(f)] => {
            assert_eq!(f.data, frame);
            assert_eq!((f.index, f.pts, f.keyframe), (0, 9, true));
        }
        other => panic!("expected the frame, got {other:?}"),
    }
}

#[test]
fn client_counts_authentic_datagrams_claiming_huge_frames() {
    let config = small_config();
    let keys = keys();
    let s = config.fec.shard_payload;
    let mut sealer = Sealer::new(keys.host_to_client.clone());
    let (inject, mut client) = client(config.clone());
    let cases = [
        // 4 GiB frame: step 8, out of bounds.
        InnerHeader {
            block_count: u16::MAX,
            data_shards: u16::MAX,
            frame_len: u32::MAX,
            ..InnerHeader::default()
        },
        // One byte over max_frame_bytes.
        header(0, config.max_frame_bytes as u32 + 1),
        // A fitting frame length but a block count far above its layout: step 9.
        InnerHeader {
            block_index: 9,
            block_count: u16::MAX,
            data_shards: 1,
            frame_len: 100,
            ..InnerHeader::default()
        },
        // Recovery shards above max(k, 2): step 11.
        InnerHeader {
            recovery_shards: u16::MAX,
            shard_index: u16::MAX,
            ..header(0, 64)
        },
    ];
    for h in &cases {
        inject.send(&forged(&mut sealer, h, s)).unwrap();
    }
    // An undecodable inner header behind a valid seal: step 6.
    let mut bad = header(0, 10);
    bad.data_shards = 0;
    inject.send(&forged(&mut sealer, &bad, s)).unwrap();
    // A probe: counted, discarded.
    let probe = InnerHeader {
        flags: FLAG_PROBE,
        ..header(0, 0)
    };
    inject.send(&forged(&mut sealer, &probe, s)).unwrap();

    assert!(poll_all(&mut client).is_empty());
    let st: StatsSnapshot = client.stats();
    assert_eq!(st.packets_received, 6);
    assert_eq!(st.recv_dropped_out_of_bounds, 3, "{st:?}");
    assert_eq!(st.recv_dropped_malformed, 2, "{st:?}");
    assert_eq!(st.probe_packets_received, 1, "{st:?}");
    assert_eq!(client.receiver().reassembler().buffered_bytes(), 0);
}

/// The `u64::MAX` overflow reached end to end: one datagram sealed with the
/// host's key panics the client's `poll_frame` (with overflow checks).
#[test]

fn client_survives_an_authentic_datagram_with_frame_index_u64_max() {
    let config = small_config();
    let keys = keys();
    let s = config.fec.shard_payload;
    let mut sealer = Sealer::new(keys.host_to_client.clone());
    let (inject, mut client) = client(config);
    inject
        .send(&forged(&mut sealer, &header(u64::MAX, 10), s))
        .unwrap();
    let mut next = 0u64;
    for ev in poll_all(&mut client) {
        match ev {
            FrameEvent::Frame(f) => {
                assert_eq!(f.index, next);
                next = f.index.checked_add(1).expect("frame index u64::MAX delivered");
            }
            FrameEvent::Lost { first_index, count } => {
                assert_eq!(first_index, next);
                next = first_index.checked_add(count).expect("lost range overflows");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Control messages (feature `quic`)
// ---------------------------------------------------------------------------

#[cfg(feature = "quic")]
mod control {
    use punktfunk_core::control::msg::{
        decode, decode_header, decode_input_datagram, decode_payload, CloseReason, ControlMsg, InputEvent,
        HEADER_LEN, MAGIC, MAX_REASON_LEN, MAX_UNKNOWN_PAYLOAD,
    };
    use punktfunk_core::ErrorKind;

    fn frame(type_id: u16, len: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&type_id.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn protocol_error<T: std::fmt::Debug>(r: punktfunk_core::Result<T>) {
        match r {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "{e}"),
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    #[test]
    fn empty_and_truncated_messages_are_protocol_errors() {
        let whole = ControlMsg::KeyframeRequest { first_lost: 7 }.encode();
        for n in 0..whole.len() {
            protocol_error(decode(&whole[..n]));
        }
        assert_eq!(
            decode(&whole).unwrap(),
            Some(ControlMsg::KeyframeRequest { first_lost: 7 })
        );
        protocol_error(decode_input_datagram(&[]));
        protocol_error(InputEvent::decode(&[]));
    }

    #[test]
    fn headers_claiming_huge_lengths_are_refused_before_buffering() {
        for type_id in (0..=12u16).chain([999, u16::MAX]) {
            let h: [u8; HEADER_LEN] = frame(type_id, u32::MAX, &[]).try_into().unwrap();
            protocol_error(decode_header(&h));
        }
        // Unknown types: skippable up to the limit, refused above it.
        let h: [u8; HEADER_LEN] = frame(999, MAX_UNKNOWN_PAYLOAD as u32, &[]).try_into().unwrap();
        assert!(!decode_header(&h).unwrap().known);
        let h: [u8; HEADER_LEN] = frame(999, MAX_UNKNOWN_PAYLOAD as u32 + 1, &[])
            .try_into()
            .unwrap();
        protocol_error(decode_header(&h));
        // Whole message: a payload longer or shorter than announced.
        protocol_error(decode(&frame(3, 0, &[0])));
        protocol_error(decode(&frame(4, 8, &[0; 7])));
        assert_eq!(decode(&frame(999, 3, &[1, 2, 3])).unwrap(), None);
    }

    #[test]
    fn close_reasons_must_be_utf8_and_bounded() {
        protocol_error(decode(&frame(10, 6, &[0, 0, 0, 1, 0xC3, 0x28])));
        let long = [b'a'; MAX_REASON_LEN + 1];
        let mut p = vec![0, 0, 0, 1];
        p.extend_from_slice(&long);
        protocol_error(decode(&frame(10, p.len() as u32, &p)));
        p.pop();
        let m = decode(&frame(10, p.len() as u32, &p)).unwrap().unwrap();
        assert_eq!(
            m,
            ControlMsg::Close(CloseReason {
                code: 1,
                reason: "a".repeat(MAX_REASON_LEN)
            })
        );
        assert_eq!(m.encode(), frame(10, p.len() as u32, &p));
    }

    #[test]
    fn input_events_with_bad_kinds_fields_or_padding_are_refused() {
        let mut ev = [0u8; 12];
        for kind in [0u8, 9, 0xFF] {
            ev[0] = kind;
            protocol_error(InputEvent::decode(&ev));
        }
        ev = InputEvent::MouseButton {
            button: 1,
            down: true,
        }
        .encode();
        ev[2] = 2; // `down` must be 0 or 1
        protocol_error(InputEvent::decode(&ev));
        ev = InputEvent::GamepadAxis {
            pad: 0,
            axis: 0,
            value: 5,
        }
        .encode();
        ev[2] = 6; // axis out of range
        protocol_error(InputEvent::decode(&ev));
        ev = InputEvent::KeyDown { code: 4 }.encode();
        ev[11] = 1; // padding
        protocol_error(InputEvent::decode(&ev));
        // decode_payload re-checks lengths for callers that skip decode_header.
        protocol_error(decode_payload(9, &[0; 15]));
        protocol_error(decode_payload(999, &[]));
    }
}
