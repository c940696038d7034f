//! Micro-benchmarks of the per-packet and per-frame CPU work of the data plane:
//! AES-128-GCM seal/open of one datagram and Reed-Solomon encode/decode of a
//! 1 MiB frame. Run with `cargo bench -p punktfunk-core --bench data_plane`.
//!
//! Sample counts and times are kept small so the whole run stays well under two
//! minutes on a 2-core machine (about 35 s plus the build).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use punktfunk_core::crypto::{Backend, DirectionKey, Opener, Sealer};
use punktfunk_core::fec::{recovery_count, FecDecoder, FecEncoder};

/// A datagram as the session sizes them on a typical path (headers and tag included).
const PACKET_BYTES: usize = 1200;
/// One large video frame.
const FRAME_BYTES: usize = 1 << 20;
/// The session's default shard payload (1401-byte datagrams).
const SHARD: usize = 1344;

fn key() -> DirectionKey {
    DirectionKey::new([0x42; 16], [7; 4])
}

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("aes128gcm_1200B");
    g.throughput(Throughput::Bytes(PACKET_BYTES as u64));
    g.sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // Both AES-GCM implementations side by side (ring is the default).
    for backend in Backend::ALL {
        let name = backend.name();
        // Resealing the same buffer is fine: the sealer takes a fresh sequence each time.
        let mut sealer = Sealer::with_backend(key(), 0, backend);
        let mut packet = vec![0xA5u8; PACKET_BYTES];
        g.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| sealer.seal(black_box(&mut packet)).expect("sequences left"))
        });

        // Opening needs packets never seen by this opener (it rejects replays), so the
        // untimed setup seals fresh ones; sequences only grow across batches, so one
        // opener serves the whole run.
        let mut sealer = Sealer::with_backend(key(), 0, backend);
        let mut opener = Opener::with_backend(key(), backend);
        let plain = vec![0xA5u8; PACKET_BYTES];
        g.bench_function(format!("open/{name}"), |b| {
            b.iter_batched(
                || {
                    let mut p = plain.clone();
                    sealer.seal(&mut p).expect("sequences left");
                    p
                },
                |mut p| opener.open(black_box(&mut p)).expect("fresh packet opens"),
                BatchSize::SmallInput,
            )
        });

        // The full round trip one datagram costs across both ends.
        let mut sealer = Sealer::with_backend(key(), 0, backend);
        let mut opener = Opener::with_backend(key(), backend);
        g.bench_function(format!("seal+open/{name}"), |b| {
            b.iter_batched(
                || plain.clone(),
                |mut p| {
                    sealer.seal(&mut p).expect("sequences left");
                    opener.open(black_box(&mut p)).expect("fresh packet opens")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The data shards of a 1 MiB frame: k = ceil(1 MiB / 1344) = 781.
fn frame_shards() -> Vec<Vec<u8>> {
    let k = FRAME_BYTES.div_ceil(SHARD);
    (0..k)
        .map(|i| (0..SHARD).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect()
}

fn fec(c: &mut Criterion) {
    let data = frame_shards();
    let k = data.len();
    let mut g = c.benchmark_group("fec_1MiB");
    // Throughput counts frame (data) bytes, the figure that compares to a link rate.
    g.throughput(Throughput::Bytes((k * SHARD) as u64));
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));

    for pct in [10u8, 25] {
        let m = recovery_count(k, pct);
        let mut enc = FecEncoder::new();
        // Recovery shards are copied out, as the sender copies them into datagrams.
        let mut rec = vec![vec![0u8; SHARD]; m];
        g.bench_function(format!("encode_{pct}pct_k{k}_m{m}"), |b| {
            b.iter(|| {
                enc.encode(k, m, SHARD, data.iter().map(|d| d.as_slice()), |i, s| {
                    rec[i].copy_from_slice(s)
                })
                .expect("encode")
            })
        });

        // Worst case: as many data shards lost as there are recovery shards,
        // spread over the block, so every recovery shard is needed.
        let lost: Vec<bool> = (0..k).map(|i| i * m % k < m).collect();
        assert_eq!(lost.iter().filter(|&&l| l).count(), m);
        let mut dec = FecDecoder::new();
        let mut rebuilt = vec![0u8; SHARD];
        g.bench_function(format!("decode_{pct}pct_k{k}_lose{m}"), |b| {
            b.iter(|| {
                dec.reset(k, m, SHARD).expect("reset");
                for (i, d) in data.iter().enumerate().filter(|(i, _)| !lost[*i]) {
                    dec.add_original(i, d).expect("add original");
                }
                for (i, r) in rec.iter().enumerate() {
                    dec.add_recovery(i, r).expect("add recovery");
                }
                let mut n = 0;
                dec.decode(|_, s| {
                    rebuilt.copy_from_slice(s);
                    n += 1;
                })
                .expect("decode");
                assert_eq!(n, m);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, crypto, fec);
criterion_main!(benches);
