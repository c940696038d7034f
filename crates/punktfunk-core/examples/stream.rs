//! Quick start: stream synthetic video frames through two `Session`s over real
//! UDP on 127.0.0.1 and check every delivered frame byte for byte.
//!
//! ```text
//! cargo run --release -p punktfunk-core --example stream -- [--seconds N] [--rate-mbps R]
//!     [--frame-bytes B] [--fec PCT] [--loss PCT]
//! ```
//!
//! A host thread submits frames paced to the target rate (every 10th frame is a
//! keyframe three times larger); a client thread receives them. `--loss` drops
//! datagrams at random on the host side (default 1 %, `--loss 0` for none), so
//! the FEC recoveries become visible.
//! Exits with code 1 if any frame arrived corrupt.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use punktfunk_core::{
    FrameEvent, FrameMeta, Impaired, ImpairmentConfig, Role, Session, SessionConfig, SessionKeys,
    StatsSnapshot, Transport, UdpConfig, UdpTransport,
};

const USAGE: &str = "usage: stream [--seconds N] [--frame-bytes B] [--rate-mbps R] [--fec PCT] [--loss PCT]";

struct Args {
    seconds: f64,
    frame_bytes: usize,
    rate_mbps: f64,
    fec: u8,
    loss: f64,
}

fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("bad value {value:?} for {flag}\n{USAGE}"))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 5.0,
        frame_bytes: 1 << 20,
        rate_mbps: 1000.0,
        fec: 10,
        // A little simulated loss by default, so the demo shows FEC at work.
        loss: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => a.seconds = num(&flag, it.next())?,
            "--frame-bytes" => a.frame_bytes = num(&flag, it.next())?,
            "--rate-mbps" => a.rate_mbps = num(&flag, it.next())?,
            "--fec" => a.fec = num(&flag, it.next())?,
            "--loss" => a.loss = num(&flag, it.next())?,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    // Keep every run bounded.
    let (secs_ok, loss_ok) = (
        a.seconds > 0.0 && a.seconds <= 600.0,
        (0.0..=100.0).contains(&a.loss),
    );
    if !secs_ok || !loss_ok || a.rate_mbps <= 0.0 || a.fec > 100 {
        return Err(format!(
            "--seconds must be in (0, 600], --rate-mbps above 0, --fec and --loss in 0..=100\n{USAGE}"
        ));
    }
    if a.frame_bytes == 0 || a.frame_bytes > 64 << 20 {
        return Err("--frame-bytes must be in 1..=67108864".into());
    }
    Ok(a)
}

/// Every 10th frame is a keyframe, three times the size: the burst a real
/// encoder produces, and the one that overflows small socket buffers.
fn frame_len(index: u64, base: usize) -> usize {
    if index % 10 == 0 {
        3 * base
    } else {
        base
    }
}

/// The pattern word at 8-byte position `j` of frame `index`. Mixing the index in
/// means a frame delivered under the wrong index (or from a stale buffer) fails.
fn word(index: u64, j: usize) -> [u8; 8] {
    (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j as u64).to_le_bytes()
}

fn fill(buf: &mut Vec<u8>, index: u64, len: usize) {
    buf.resize(len, 0);
    for (j, chunk) in buf.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&word(index, j)[..chunk.len()]);
    }
}

fn verify(data: &[u8], index: u64, base: usize) -> bool {
    let words_ok = data
        .chunks(8)
        .zip(0..)
        .all(|(c, j)| c == &word(index, j)[..c.len()]);
    data.len() == frame_len(index, base) && words_ok
}

/// The run's settings plus what the host publishes for the client's progress lines.
struct Run {
    args: Args,
    start: Instant,
    frames_sent: AtomicU64,
    send_drops: AtomicU64,
    host_done: AtomicBool,
}

struct ClientResult {
    stats: StatsSnapshot,
    delivered: u64,
    corrupt: u64,
    last_frame_at: Instant,
}

/// Returns the host's counters and when it stopped sending.
fn run_host(mut host: Session<Arc<dyn Transport>>, run: &Run) -> (StatsSnapshot, Instant) {
    let (args, start) = (&run.args, run.start);
    let bits_per_sec = args.rate_mbps * 1e6;
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut buf = Vec::new();
    let (mut due, mut index) = (start, 0u64);
    while due < end {
        // Sleep until this frame's due time; a late frame goes out at once.
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let len = frame_len(index, args.frame_bytes);
        fill(&mut buf, index, len);
        let meta = FrameMeta {
            pts: (due - start).as_micros() as u64,
            keyframe: index % 10 == 0,
        };
        match host.submit_frame(&buf, meta) {
            Ok(r) => run
                .send_drops
                .fetch_add(r.packets_dropped as u64, Ordering::Relaxed),
            Err(e) => {
                eprintln!("host: submit failed: {e}");
                break;
            }
        };
        run.frames_sent.fetch_add(1, Ordering::Relaxed);
        // Pace by bytes, so a keyframe takes three slots' worth of time.
        due += Duration::from_secs_f64(len as f64 * 8.0 / bits_per_sec);
        index += 1;
    }
    run.host_done.store(true, Ordering::Release);
    (host.stats(), Instant::now())
}

fn run_client(mut client: Session<UdpTransport>, run: &Run) -> ClientResult {
    let (args, start) = (&run.args, run.start);
    let (mut delivered, mut lost, mut corrupt) = (0u64, 0u64, 0u64);
    let mut last_frame_at = start;
    let (mut tick, mut last_bytes) = (start + Duration::from_secs(1), 0u64);
    // Hard bound: the run plus a short drain, whatever the network does.
    let hard_end = start + Duration::from_secs_f64(args.seconds) + Duration::from_secs(3);
    loop {
        let now = Instant::now();
        if now >= tick {
            let s = client.stats();
            println!(
                "{:>5.1}s  goodput {:>7.1} Mbit/s  frames {delivered} delivered / {lost} lost  \
                 fec recovered {}  send drops {}",
                (now - start).as_secs_f64(),
                (s.payload_bytes_delivered - last_bytes) as f64 * 8.0 / 1e6,
                s.fec_recovered_shards,
                run.send_drops.load(Ordering::Relaxed),
            );
            last_bytes = s.payload_bytes_delivered;
            tick += Duration::from_secs(1);
        }
        let sent = run.frames_sent.load(Ordering::Relaxed);
        let host_done = run.host_done.load(Ordering::Acquire);
        // Done once the host stopped and every frame is accounted for, or the link went quiet.
        let quiet = now - last_frame_at > Duration::from_millis(500);
        if now >= hard_end || (host_done && (delivered + lost + corrupt >= sent || quiet)) {
            break;
        }
        match client.recv_frame(Duration::from_millis(50)) {
            Ok(Some(FrameEvent::Frame(f))) => {
                if verify(&f.data, f.index, args.frame_bytes) {
                    delivered += 1;
                } else {
                    corrupt += 1;
                    eprintln!("client: frame {} is corrupt ({} bytes)", f.index, f.data.len());
                }
                last_frame_at = f.received_at;
                // Hand the buffer back: no allocation per frame.
                client.receiver().recycle(f.data);
            }
            // A real client would ask the host for a keyframe here.
            Ok(Some(FrameEvent::Lost { count, .. })) => lost += count,
            Ok(None) => {}
            Err(e) => {
                eprintln!("client: receive failed: {e}");
                break;
            }
        }
    }
    ClientResult {
        stats: client.stats(),
        delivered,
        corrupt,
        last_frame_at,
    }
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(ExitCode::from(2));
        }
    };
    // In a real deployment the secret comes from a key exchange; both ends derive the same keys.
    let keys = SessionKeys::derive(b"quick-start shared secret, 32 b!", b"stream example")?;
    let mut config = SessionConfig::default();
    config.fec.fec_percent = args.fec;
    config.max_frame_bytes = 3 * args.frame_bytes;

    let local: SocketAddr = "127.0.0.1:0".parse()?;
    let client_udp = UdpTransport::bind(local, &UdpConfig::default())?;
    let host_udp = UdpTransport::bind(local, &UdpConfig::default())?;
    // Connected sockets: each end only sends to, and accepts from, its peer.
    host_udp.connect(client_udp.local_addr()?)?;
    client_udp.connect(host_udp.local_addr()?)?;
    if let Some(w) = client_udp.buffer_report().warning() {
        eprintln!("warning: {w}");
    }

    // The impairment wraps the host's socket, so losses happen "on the wire".
    let (host_transport, impaired): (Arc<dyn Transport>, _) = if args.loss > 0.0 {
        let loss = ImpairmentConfig::random_loss(1, args.loss);
        let i = Arc::new(Impaired::new(host_udp, loss));
        (i.clone(), Some(i))
    } else {
        (Arc::new(host_udp), None)
    };
    let host = Session::new(Role::Host, config.clone(), &keys, host_transport)?;
    let client = Session::new(Role::Client, config, &keys, client_udp)?;

    println!(
        "streaming {} s of {} KiB frames (every 10th a 3x keyframe) at {} Mbit/s, FEC {} %, loss {} %",
        args.seconds,
        args.frame_bytes / 1024,
        args.rate_mbps,
        args.fec,
        args.loss
    );
    let run = Run {
        args,
        start: Instant::now(),
        frames_sent: AtomicU64::new(0),
        send_drops: AtomicU64::new(0),
        host_done: AtomicBool::new(false),
    };
    let (host_stats, cr) = thread::scope(|s| {
        let host = s.spawn(|| run_host(host, &run));
        let client = s.spawn(|| run_client(client, &run));
        (host.join(), client.join())
    });
    let (hs, host_end) = host_stats.map_err(|_| "host thread panicked")?;
    let cr = cr.map_err(|_| "client thread panicked")?;

    let sent = run.frames_sent.load(Ordering::Relaxed);
    // Over the whole run: until the host stopped or the last frame arrived, whichever is later.
    let secs = (cr.last_frame_at.max(host_end) - run.start).as_secs_f64();
    let mbps = |bytes: u64| bytes as f64 * 8.0 / secs / 1e6;
    let per = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let s = &cr.stats;
    let lost = sent.saturating_sub(cr.delivered + cr.corrupt);
    println!("\n--- summary ---");
    println!(
        "frames     {sent} sent, {} delivered, {lost} lost, {} corrupt",
        cr.delivered, cr.corrupt
    );
    let (goodput, wire) = (mbps(s.payload_bytes_delivered), mbps(hs.bytes_sent));
    println!("goodput    {goodput:.1} Mbit/s (wire {wire:.1} Mbit/s) over {secs:.2} s");
    let dropped = impaired.map_or(0, |i| i.counters().dropped);
    println!(
        "fec        {} data shards recovered ({dropped} datagrams dropped by --loss)",
        s.fec_recovered_shards
    );
    println!(
        "send       {} packets, {} send drops",
        hs.packets_sent, hs.packets_send_dropped
    );
    let (tx_batch, rx_batch) = (
        per(hs.packets_sent, hs.send_syscalls),
        per(s.packets_received, s.recv_syscalls),
    );
    println!("syscalls   {tx_batch:.1} packets per send syscall, {rx_batch:.1} packets per recv syscall");
    // Every receive-drop counter, by reason (auth, replay, malformed, out_of_bounds, stale).
    let fields = s.fields();
    let reasons = fields
        .iter()
        .filter_map(|(n, v)| Some(format!("{} {v}", n.strip_prefix("recv_dropped_")?)));
    let reasons: Vec<String> = reasons.collect();
    println!(
        "rx drops   {} (redundant shards {})",
        reasons.join(", "),
        s.packets_redundant
    );
    Ok(if cr.corrupt > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
