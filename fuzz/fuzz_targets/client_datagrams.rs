//! A client `Session` over a `LoopbackTransport`, fed datagrams chosen by the
//! input.
//!
//! A real host `Session` with the same keys (`SessionKeys::derive(&[7; 32],
//! b"fuzz")`) first submits the frames and probes the input describes; its
//! sealed datagrams are captured. The input then injects a sequence of
//! datagrams into the client:
//!
//! * raw bytes (length-prefixed by `arbitrary`),
//! * captured host datagrams as they are (in any order, duplicated or left out:
//!   the only way past authentication besides forging),
//! * captured datagrams with a byte flipped, truncated or extended,
//! * datagrams forged *with the host's key* (a `Sealer` far ahead in sequence
//!   space): any inner header and payload, as a buggy or hostile peer holding
//!   the session keys could send. They reach steps 6-17 of PROTOCOL.md §3 with
//!   arbitrary headers.
//!
//! After every poll: events are contiguous in index from 0; a frame whose index
//! no forged datagram named is byte-exact equal to the frame the host submitted
//! under that index (with its pts and keyframe flag); the reassembler's memory
//! stays under a bound from the configuration. At the end the counters add up:
//! every injected datagram is read once, each unauthentic one is dropped, and
//! frame and byte counts match the events.

#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use punktfunk_core::crypto::Sealer;
use punktfunk_core::transport::RecvMeta;
use punktfunk_core::fec::{FecConfig, FrameLayout};
use punktfunk_core::wire::{CLEAR_HEADER_LEN, FLAG_PROBE, INNER_HEADER_LEN, TAG_LEN};
use punktfunk_core::{
    FrameEvent, FrameMeta, LoopbackTransport, Role, Session, SessionConfig, SessionKeys, Transport,
};

mod forge;
use forge::{Fitted, Index};

const MAX_HOST_STEPS: usize = 8;
const MAX_OPS: usize = 512;
const MAX_FRAME: usize = 2048;
const SHARD: usize = 64;
/// First sequence of the forging sealer: far above the host's (a few hundred
/// packets at most), inside the replay window so host packets stay acceptable.
const FORGED_SEQ: u64 = 1 << 16;

fn keys() -> &'static SessionKeys {
    static KEYS: OnceLock<SessionKeys> = OnceLock::new();
    KEYS.get_or_init(|| SessionKeys::derive(&[7u8; 32], b"fuzz").expect("32-byte secret"))
}

#[derive(Arbitrary, Debug)]
enum HostStep {
    Frame {
        len: u16,
        pct: u8,
        pts: u64,
        keyframe: bool,
        seed: u8,
    },
    Probe {
        count: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Raw(Vec<u8>),
    Real {
        i: u16,
    },
    Flip {
        i: u16,
        at: u8,
        xor: u8,
    },
    Resize {
        i: u16,
        len: u8,
    },
    Forge {
        flags: u8,
        reserved: u8,
        block_index: u16,
        block_count: u16,
        shard_index: u16,
        data_shards: u16,
        recovery_shards: u16,
        frame_index: Index,
        frame_len: u32,
        pts: u8,
        fill: u8,
    },
    /// Forged with the host's key like `Forge`, but with counts that fit the
    /// layout of the frame length, so it gets past the reassembler's cheap checks.
    ForgeConsistent {
        fitted: Fitted,
        fill: u8,
    },
    /// Poll the client until it has nothing more.
    Poll,
    /// Poll once.
    PollOne,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Receiver-local limits: `max_frames_in_flight = 1 + x % 4`.
    in_flight: u8,
    /// `max_index_lag = 1 + x % 16`.
    lag: u8,
    /// `max_data_per_block = 1 + x % 16`.
    per_block: u8,
    host: Vec<HostStep>,
    ops: Vec<Op>,
}

struct Submitted {
    data: Vec<u8>,
    pts: u64,
    keyframe: bool,
}

struct Checker {
    expected: u64,
    frames: u64,
    lost: u64,
    delivered_bytes: u64,
}

fn poll(
    client: &mut Session<LoopbackTransport>,
    ck: &mut Checker,
    submitted: &[Submitted],
    tainted: &HashSet<u64>,
    max_frame: usize,
    once: bool,
) {
    loop {
        let ev = match client.poll_frame(Instant::now()).expect("loopback receive never fails") {
            Some(ev) => ev,
            None if client.receiver().is_drained() => return,
            None => continue,
        };
        match ev {
            FrameEvent::Frame(f) => {
                assert_eq!(f.index, ck.expected, "frames come in index order, none skipped");
                ck.expected = f.index.checked_add(1).expect("frame index u64::MAX delivered");
                assert!(f.data.len() <= max_frame);
                if !tainted.contains(&f.index) {
                    let s = submitted
                        .get(f.index as usize)
                        .unwrap_or_else(|| panic!("frame {} was never submitted", f.index));
                    assert!(f.data == s.data, "frame {} is not what the host sent", f.index);
                    assert_eq!((f.pts, f.keyframe), (s.pts, s.keyframe), "frame {}", f.index);
                }
                ck.frames += 1;
                ck.delivered_bytes += f.data.len() as u64;
                client.receiver().recycle(f.data);
            }
            FrameEvent::Lost { first_index, count } => {
                assert_eq!(first_index, ck.expected, "lost ranges are contiguous");
                assert!(count >= 1);
                ck.expected = first_index.checked_add(count).expect("lost range overflows");
                ck.lost += count;
            }
        }
        if once {
            return;
        }
    }
}

fuzz_target!(|input: Input| {
    let keys = keys();
    let fec = FecConfig {
        fec_percent: 10,
        max_data_per_block: 1 + input.per_block as usize % 16,
        shard_payload: SHARD,
    };
    let host_config = SessionConfig {
        fec,
        max_frame_bytes: MAX_FRAME,
        max_frames_in_flight: 4,
        // Long enough that nothing times out during one run: the outcome must
        // not depend on the wall clock.
        frame_timeout: Duration::from_secs(30),
        max_index_lag: 16,
        ..SessionConfig::default()
    };
    let client_config = SessionConfig {
        max_frames_in_flight: 1 + input.in_flight as usize % 4,
        max_index_lag: 1 + input.lag as u64 % 16,
        ..host_config.clone()
    };
    let dlen = fec.datagram_len();

    // The host: submit frames and probes, capture the datagrams.
    let (host_t, host_peer) = LoopbackTransport::pair(1 << 16);
    let mut host = Session::new(Role::Host, host_config, keys, host_t).expect("host config");
    let mut submitted = Vec::new();
    let mut real: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut buf = vec![0u8; dlen + 1];
    for step in input.host.iter().take(MAX_HOST_STEPS) {
        let probe = match *step {
            HostStep::Frame {
                len,
                pct,
                pts,
                keyframe,
                seed,
            } => {
                let len = len as usize % (MAX_FRAME + 1);
                let data: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
                    .collect();
                host.sender()
                    .set_fec_percent(pct % 101)
                    .expect("valid percentage");
                let rep = host
                    .submit_frame(&data, FrameMeta { pts, keyframe })
                    .expect("submit");
                assert_eq!(rep.frame_index, submitted.len() as u64);
                assert_eq!(rep.packets_dropped, 0);
                submitted.push(Submitted { data, pts, keyframe });
                false
            }
            HostStep::Probe { count } => {
                let (sent, dropped) = host.sender().send_probe(count as usize % 4).expect("probe");
                assert_eq!(dropped, 0);
                let _ = sent;
                true
            }
        };
        for d in drain(&host_peer, &mut buf) {
            assert_eq!(d.len(), dlen, "the host sends full-size datagrams");
            real.push((d, probe));
        }
    }
    let hs = host.stats();
    assert_eq!(hs.frames_submitted, submitted.len() as u64);
    assert_eq!(hs.packets_sent, real.len() as u64);

    // Datagrams that authenticate: the captured ones and the forged ones.
    let mut authentic: HashSet<Vec<u8>> = real.iter().map(|(d, _)| d.clone()).collect();
    let real_probes: HashSet<Vec<u8>> = real.iter().filter(|(_, p)| *p).map(|(d, _)| d.clone()).collect();
    let mut forged_probes: HashSet<Vec<u8>> = HashSet::new();
    let mut forger = Sealer::starting_at(keys.host_to_client.clone(), FORGED_SEQ);
    let mut tainted: HashSet<u64> = HashSet::new();

    let (inject, client_t) = LoopbackTransport::pair(1 << 16);
    let mut client =
        Session::new(Role::Client, client_config.clone(), keys, client_t).expect("client config");
    let padded_max = FrameLayout::new(client_config.max_frame_bytes, &fec).padded_len();
    let bound = 2 * 3 * client_config.max_frames_in_flight * padded_max;
    let mut ck = Checker {
        expected: 0,
        frames: 0,
        lost: 0,
        delivered_bytes: 0,
    };
    let (mut injected, mut injected_bytes, mut unauthentic, mut probes_in) = (0u64, 0u64, 0u64, 0u64);
    let mut d: Vec<u8> = Vec::with_capacity(512);

    for op in input.ops.iter().take(MAX_OPS) {
        d.clear();
        match op {
            Op::Raw(bytes) => d.extend_from_slice(&bytes[..bytes.len().min(256)]),
            Op::Real { i } | Op::Flip { i, .. } | Op::Resize { i, .. } => {
                if real.is_empty() {
                    continue;
                }
                d.extend_from_slice(&real[*i as usize % real.len()].0);
                match *op {
                    Op::Flip { at, xor, .. } => {
                        let at = at as usize % dlen;
                        d[at] ^= xor.max(1);
                    }
                    Op::Resize { len, .. } => d.resize(len as usize % (dlen + 3), 0xA5),
                    _ => {}
                }
            }
            Op::Forge {
                flags,
                reserved,
                block_index,
                block_count,
                shard_index,
                data_shards,
                recovery_shards,
                frame_index,
                frame_len,
                pts,
                fill,
            } => {
                let index = frame_index.get();
                d.resize(dlen, *fill);
                let h = &mut d[CLEAR_HEADER_LEN..CLEAR_HEADER_LEN + INNER_HEADER_LEN];
                h[0] = *flags;
                h[1] = *reserved;
                h[2..4].copy_from_slice(&block_index.to_be_bytes());
                h[4..6].copy_from_slice(&block_count.to_be_bytes());
                h[6..8].copy_from_slice(&shard_index.to_be_bytes());
                h[8..10].copy_from_slice(&data_shards.to_be_bytes());
                h[10..12].copy_from_slice(&recovery_shards.to_be_bytes());
                h[12..20].copy_from_slice(&index.to_be_bytes());
                h[20..24].copy_from_slice(&frame_len.to_be_bytes());
                h[24..32].copy_from_slice(&(*pts as u64).to_be_bytes());
                debug_assert_eq!(d.len() - TAG_LEN, CLEAR_HEADER_LEN + INNER_HEADER_LEN + SHARD);
                forger.seal(&mut d).expect("sequence space left");
                tainted.insert(index);
                if flags & FLAG_PROBE != 0 {
                    forged_probes.insert(d.clone());
                }
                authentic.insert(d.clone());
            }
            Op::ForgeConsistent { fitted, fill } => {
                let h = fitted.header(MAX_FRAME, &fec);
                d.resize(dlen, *fill);
                let inner: &mut [u8; INNER_HEADER_LEN] = (&mut d
                    [CLEAR_HEADER_LEN..CLEAR_HEADER_LEN + INNER_HEADER_LEN])
                    .try_into()
                    .expect("inner header slice");
                h.encode(inner);
                forger.seal(&mut d).expect("sequence space left");
                tainted.insert(h.frame_index);
                authentic.insert(d.clone());
            }
            Op::Poll | Op::PollOne => {
                let once = matches!(op, Op::PollOne);
                poll(&mut client, &mut ck, &submitted, &tainted, MAX_FRAME, once);
                let held = client.receiver().reassembler().buffered_bytes();
                assert!(held <= bound, "reassembler holds {held} bytes, bound {bound}");
                continue;
            }
        }
        assert!(inject.send(&d).expect("loopback send"), "loopback queue full");
        injected += 1;
        // The receive buffers are one byte longer than a datagram.
        injected_bytes += d.len().min(dlen + 1) as u64;
        if !authentic.contains(&d) {
            unauthentic += 1;
        }
        if real_probes.contains(&d) || forged_probes.contains(&d) {
            probes_in += 1;
        }
    }
    poll(&mut client, &mut ck, &submitted, &tainted, MAX_FRAME, false);
    assert_eq!(
        client.transport().pending(),
        0,
        "polling until None reads everything"
    );
    let held = client.receiver().reassembler().buffered_bytes();
    assert!(held <= bound, "reassembler holds {held} bytes, bound {bound}");
    assert_eq!(client.receiver().reassembler().next_index(), ck.expected);

    let st = client.stats();
    assert_eq!(st.packets_received, injected, "{st:?}");
    assert_eq!(st.bytes_received, injected_bytes, "{st:?}");
    assert_eq!(st.frames_completed, ck.frames, "{st:?}");
    assert_eq!(st.frames_dropped, ck.lost, "{st:?}");
    assert_eq!(st.payload_bytes_delivered, ck.delivered_bytes, "{st:?}");
    assert!(
        st.recv_dropped_total() >= unauthentic,
        "unauthentic datagrams are dropped: {st:?}"
    );
    assert!(
        st.recv_dropped_total() + st.packets_redundant + st.probe_packets_received <= st.packets_received,
        "a datagram is counted under one outcome at most: {st:?}"
    );
    assert!(st.probe_packets_received <= probes_in, "{st:?}");
    assert_eq!(
        (st.frames_submitted, st.packets_sent),
        (0, 0),
        "the client sends nothing"
    );
});

/// Every datagram waiting on `t`, each read into `buf` (one datagram long).
fn drain(t: &LoopbackTransport, buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut meta = [RecvMeta::default()];
    while t.recv_batch(std::slice::from_mut(buf), &mut meta).expect("loopback") == 1 {
        out.push(buf[..meta[0].len].to_vec());
    }
    out
}
