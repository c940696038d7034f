//! A paced UDP load generator and a counting sink in one process, for
//! measuring relays (ours or another tool) that carry datagrams from one UDP
//! port to another on 127.0.0.1.
//!
//! ```text
//! cargo run --release -p punktfunk-core --example udp_load -- \
//!     --to 127.0.0.1:5000 --listen 127.0.0.1:6000 --mbps 500 --seconds 5 [--size 1316]
//! cargo run --release -p punktfunk-core --example udp_load -- \
//!     --flood 127.0.0.1:5000,127.0.0.1:5001 --pps 100000 --seconds 5
//! ```
//!
//! With `--flood`, it only sends garbage: datagrams of random length
//! (1…1500 bytes) and random content, spread over the given addresses, at
//! `--pps` for `--seconds`, and prints how many it sent.
//!
//! The generator sends `--size`-byte datagrams (MPEG-TS sized by default) to
//! `--to` at `--mbps` of payload for `--seconds`, in 1 ms ticks through
//! `sendmmsg`; each carries its sequence number in its first 8 bytes. The sink
//! reads what arrives at `--listen` until nothing came for a second after the
//! generator finished (at most 10 s more) and prints one JSON object: sent and
//! the rate the generator really achieved (a busy machine may make it slower
//! than asked), received, unique, duplicates, out-of-order arrivals, loss in
//! percent, the delivered rate, and send drops (datagrams the generator's own
//! socket refused). Loopback only: both addresses must be 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use punktfunk_core::transport::RecvMeta;
use punktfunk_core::{Offload, Transport, UdpConfig, UdpTransport, RECV_BATCH};

const USAGE: &str =
    "usage: udp_load --to 127.0.0.1:PORT --listen 127.0.0.1:PORT --mbps R --seconds S [--size BYTES]";

struct Args {
    to: SocketAddr,
    listen: SocketAddr,
    mbps: f64,
    seconds: f64,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (mut to, mut listen, mut mbps, mut seconds, mut size) = (None, None, None, None, 1316usize);
    while let Some(flag) = a.next() {
        let v = a.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: bad value {v:?}");
        match flag.as_str() {
            "--to" => to = Some(v.parse::<SocketAddr>().map_err(|_| format!("--to {v:?}"))?),
            "--listen" => listen = Some(v.parse::<SocketAddr>().map_err(|_| format!("--listen {v:?}"))?),
            "--mbps" => mbps = Some(v.parse::<f64>().map_err(|_| bad())?),
            "--seconds" => seconds = Some(v.parse::<f64>().map_err(|_| bad())?),
            "--size" => size = v.parse::<usize>().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let (Some(to), Some(listen), Some(mbps), Some(seconds)) = (to, listen, mbps, seconds) else {
        return Err("--to, --listen, --mbps and --seconds are required".into());
    };
    if !to.ip().is_loopback() || !listen.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    if !(mbps > 0.0 && mbps <= 20_000.0 && seconds > 0.0 && seconds <= 60.0 && (8..=65_000).contains(&size)) {
        return Err("--mbps in (0, 20000], --seconds in (0, 60], --size in 8..=65000".into());
    }
    Ok(Args {
        to,
        listen,
        mbps,
        seconds,
        size,
    })
}

/// `--flood A,B,… --pps N --seconds S`: random datagrams to every address.
fn flood(argv: &[String]) -> Result<(), String> {
    let (mut targets, mut pps, mut seconds) = (Vec::new(), 100_000.0f64, 5.0f64);
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--flood" => {
                for a in v.split(',') {
                    let addr: SocketAddr = a.parse().map_err(|_| format!("--flood {a:?}"))?;
                    if !addr.ip().is_loopback() {
                        return Err("loopback addresses only".into());
                    }
                    targets.push(addr);
                }
            }
            "--pps" => pps = v.parse().map_err(|_| format!("--pps {v:?}"))?,
            "--seconds" => seconds = v.parse().map_err(|_| format!("--seconds {v:?}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if targets.is_empty() || !(pps > 0.0 && pps <= 2_000_000.0 && seconds > 0.0 && seconds <= 60.0) {
        return Err("--flood needs addresses, --pps in (0, 2e6], --seconds in (0, 60]".into());
    }
    let plain = UdpConfig {
        gso: Offload::Off,
        gro: Offload::Off,
        ..UdpConfig::default()
    };
    let socks: Vec<UdpTransport> = targets
        .iter()
        .map(|t| {
            let s = UdpTransport::bind("127.0.0.1:0".parse().expect("literal address"), &plain)?;
            s.connect(*t)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| e.to_string())?;
    // xorshift64*: fast, and the same garbage on every run.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 1500]).collect();
    let total = (pps * seconds) as u64;
    let start = Instant::now();
    let (mut sent, mut refused) = (0u64, 0u64);
    while sent + refused < total {
        let due = ((start.elapsed().as_secs_f64() * pps) as u64).min(total);
        if due <= sent + refused {
            thread::sleep(Duration::from_micros(500));
            continue;
        }
        let k = ((due - sent - refused) as usize).min(bufs.len());
        let mut lens = [0usize; 64];
        for (b, len) in bufs.iter_mut().zip(lens.iter_mut()).take(k) {
            *len = 1 + (next() % 1500) as usize;
            for chunk in b[..*len].chunks_mut(8) {
                let r = next().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
        }
        let refs: Vec<&[u8]> = bufs.iter().zip(lens).take(k).map(|(b, l)| &b[..l]).collect();
        let sock = &socks[(next() % socks.len() as u64) as usize];
        let ok = sock.send_batch(&refs).unwrap_or(0) as u64;
        sent += ok;
        refused += k as u64 - ok;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"refused\":{refused},\"seconds\":{secs:.3},\"pps\":{:.0},\"targets\":{}}}",
        sent as f64 / secs,
        targets.len()
    );
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "--flood") {
        if let Err(e) = flood(&argv) {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
        return;
    }
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("udp_load: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    let plain = UdpConfig {
        gso: Offload::Off,
        gro: Offload::Off,
        ..UdpConfig::default()
    };
    let sink = UdpTransport::bind(args.listen, &plain)?;
    let gen = UdpTransport::bind("127.0.0.1:0".parse().expect("literal address"), &plain)?;
    gen.connect(args.to)?;
    let done = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let send_secs = std::sync::Mutex::new(0.0f64);
    let drops = AtomicU64::new(0);
    let per_sec = args.mbps * 1e6 / 8.0 / args.size as f64;
    let total = (per_sec * args.seconds).round() as u64;
    let start = Instant::now();
    let (received, unique, duplicates, reordered, last_at) = thread::scope(|s| {
        s.spawn(|| {
            let mut bufs = vec![vec![0u8; args.size]; 1024];
            let mut n = 0u64;
            while n < total {
                // Everything due by now, in 1 ms ticks.
                let due = ((start.elapsed().as_secs_f64() * per_sec) as u64).min(total);
                if due <= n {
                    thread::sleep(Duration::from_micros(1000));
                    continue;
                }
                let k = ((due - n) as usize).min(bufs.len());
                for (i, b) in bufs[..k].iter_mut().enumerate() {
                    b[..8].copy_from_slice(&(n + i as u64).to_be_bytes());
                }
                let refs: Vec<&[u8]> = bufs[..k].iter().map(|b| b.as_slice()).collect();
                let ok = gen.send_batch(&refs).unwrap_or(0);
                drops.fetch_add((k - ok) as u64, Ordering::Relaxed);
                n += k as u64;
                sent.store(n, Ordering::Relaxed);
            }
            *send_secs.lock().unwrap_or_else(|p| p.into_inner()) = start.elapsed().as_secs_f64();
            done.store(true, Ordering::Release);
        });
        let mut seen = vec![0u64; (total as usize).div_ceil(64) + 1];
        let mut bufs = vec![vec![0u8; 65_536]; RECV_BATCH];
        let mut meta = [RecvMeta::default(); RECV_BATCH];
        let (mut received, mut unique, mut dups, mut reordered, mut max_seq) =
            (0u64, 0u64, 0u64, 0u64, None::<u64>);
        let mut last = Instant::now();
        let hard_end = start + Duration::from_secs_f64(args.seconds + 10.0);
        loop {
            let now = Instant::now();
            if now > hard_end || (done.load(Ordering::Acquire) && now - last > Duration::from_secs(1)) {
                break;
            }
            let n = sink.recv_batch(&mut bufs, &mut meta).unwrap_or(0);
            if n == 0 {
                let _ = sink.wait_readable(Duration::from_millis(50));
                continue;
            }
            last = Instant::now();
            for (b, m) in bufs.iter().zip(&meta).take(n) {
                let len = m.len;
                received += 1;
                if len < 8 {
                    continue;
                }
                let seq = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                if seq >= total {
                    continue;
                }
                let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                if seen[w] & bit != 0 {
                    dups += 1;
                    continue;
                }
                seen[w] |= bit;
                unique += 1;
                if max_seq.is_some_and(|m| seq < m) {
                    reordered += 1;
                }
                max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
            }
        }
        (received, unique, dups, reordered, last)
    });
    let sent = sent.load(Ordering::Relaxed);
    let secs = (last_at - start).as_secs_f64().max(1e-3);
    let loss = if sent == 0 {
        0.0
    } else {
        (sent - unique.min(sent)) as f64 / sent as f64 * 100.0
    };
    let send_secs = send_secs
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .max(1e-3);
    println!(
        "{{\"targetMbps\":{},\"size\":{},\"sent\":{sent},\"sentMbps\":{:.2},\"sendSeconds\":{send_secs:.3},\"received\":{received},\"unique\":{unique},\"duplicates\":{duplicates},\"reordered\":{reordered},\"lossPercent\":{loss:.4},\"deliveredMbps\":{:.2},\"generatorDrops\":{}}}",
        args.mbps,
        args.size,
        sent as f64 * args.size as f64 * 8.0 / send_secs / 1e6,
        unique as f64 * args.size as f64 * 8.0 / secs / 1e6,
        drops.load(Ordering::Relaxed)
    );
    Ok(())
}
