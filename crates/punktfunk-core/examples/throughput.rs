//! Side-by-side throughput on 127.0.0.1: raw UDP versus the full `Session`
//! (FEC + AES-GCM + batching + reassembly), with the system-call counts of each.
//!
//! ```text
//! cargo run --release -p punktfunk-core --example throughput -- [--seconds N] [--rate-mbps R] [--only CASES] [--json]
//! ```
//!
//! `--only` takes a comma-separated list of `raw-scalar`, `raw-batch`,
//! `unpaced`, `window` and `paced` (default: all of them, in that order).
//!
//! Every case moves the same wire workload: 1 MiB frames, each 860 datagrams of
//! 1401 bytes (781 data shards of 1344 bytes + 79 recovery shards at 10 % FEC).
//! The raw cases send 860 plain datagrams per "frame" and count each delivered
//! datagram as 1/860 of a frame, so their goodput compares directly with the
//! session's. Each case sends for `--seconds` (default 3), then drains.
//!
//! Cases: raw UDP with one `send`/`recv` per datagram; raw UDP through
//! `UdpTransport::send_batch`/`recv_batch`; the session unpaced (each frame
//! submitted as soon as the previous one is out: open loop, so it shows what the
//! receiver absorbs); the session unpaced but at most 2 frames ahead of the
//! client (an in-process credit window: the most it sustains without loss); and
//! the session paced to `--rate-mbps` of goodput (default 1000).
//!
//! Columns: goodput (frame bytes delivered per second) and wire rate; received
//! packets per second; send and receive system calls per second (`recv sc`
//! includes empty `recvmmsg` calls) and `ppoll` waits per second (counted by a
//! wrapping transport, as the core does not count them); packets per send and
//! per receive call; send drops; packets sent but never read; frames lost; and
//! the CPU time of the sending and receiving threads in percent of one core.
//!
//! Note on loopback: the kernel runs the receive path of a datagram inside the
//! sender's system call, so the sending thread pays for both stacks.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use punktfunk_core::fec::{recovery_count, FrameLayout};
use punktfunk_core::transport::{IoCounters, DESIRED_SOCKET_BUFFER};
use punktfunk_core::{
    FrameEvent, FrameMeta, Role, Session, SessionConfig, SessionKeys, Transport, UdpConfig, UdpTransport,
    RECV_BATCH,
};

const FRAME_BYTES: usize = 1 << 20;
const USAGE: &str = "usage: throughput [--seconds N] [--rate-mbps R] [--only raw-scalar,raw-batch,unpaced,window,paced] [--json]";

/// Everything measured for one case.
struct Row {
    name: String,
    secs: f64,
    frames_sent: u64,
    frames_lost: u64,
    payload_bytes: u64,
    wire_bytes: u64,
    packets_sent: u64,
    packets_received: u64,
    send_syscalls: u64,
    recv_syscalls: u64,
    /// Readiness waits (ppoll) on the receive side: system calls too, but not
    /// counted in the transport's `recv_syscalls`.
    polls: u64,
    send_drops: u64,
    /// CPU seconds used by the sending and the receiving thread.
    tx_cpu: f64,
    rx_cpu: f64,
}

/// The wire workload shared by all cases.
#[derive(Clone, Copy)]
struct Workload {
    seconds: f64,
    datagram: usize,
    per_frame: usize,
}

/// What the sending thread counted.
#[derive(Default)]
struct SendSide {
    frames: u64,
    packets: u64,
    syscalls: u64,
    drops: u64,
    cpu: f64,
}

/// What the receiving thread counted.
#[derive(Default)]
struct RecvSide {
    packets: u64,
    syscalls: u64,
    polls: u64,
    secs: f64,
    cpu: f64,
}

/// CPU seconds (user + system) this thread has used so far, from
/// /proc/thread-self/stat in USER_HZ ticks (100 per second on Linux); 0 elsewhere.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// Sends frame `n` at `start + n * interval`; no interval means back to back.
struct Pacer {
    start: Instant,
    end: Instant,
    interval: Option<Duration>,
    n: u32,
}

impl Pacer {
    fn new(start: Instant, w: Workload, rate_bps: Option<f64>) -> Pacer {
        Pacer {
            start,
            end: start + Duration::from_secs_f64(w.seconds),
            interval: rate_bps.map(|r| Duration::from_secs_f64(FRAME_BYTES as f64 * 8.0 / r)),
            n: 0,
        }
    }

    /// Waits for the next frame's slot (sleeping, never spinning); false once
    /// the case's time is up.
    fn next(&mut self) -> bool {
        if let Some(iv) = self.interval {
            let due = self.start + iv * self.n;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        self.n += 1;
        Instant::now() < self.end
    }
}

/// When a receiver may stop: the sender is done and either everything arrived
/// or nothing did for a while. Hard bound: the case time plus three seconds.
struct Drain<'a> {
    done: &'a AtomicBool,
    hard_end: Instant,
    last: Instant,
}

impl<'a> Drain<'a> {
    fn new(done: &'a AtomicBool, start: Instant, w: Workload) -> Self {
        Drain {
            done,
            hard_end: start + Duration::from_secs_f64(w.seconds + 3.0),
            last: start,
        }
    }

    fn over(&self, complete: bool) -> bool {
        let now = Instant::now();
        now >= self.hard_end
            || (self.done.load(Ordering::Acquire)
                && (complete || now - self.last > Duration::from_millis(300)))
    }
}

fn pair(cfg: &UdpConfig) -> io::Result<(UdpTransport, UdpTransport)> {
    let local: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let a = UdpTransport::bind(local, cfg)?;
    let b = UdpTransport::bind(local, cfg)?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    Ok((a, b))
}

/// Gives a plain std socket the buffers the transport asks for, so the raw
/// baseline is not handicapped by the small default.
fn size_buffers(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let bytes = DESIRED_SOCKET_BUFFER as libc::c_int;
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        // FORCE needs CAP_NET_ADMIN; the plain option is capped by net.core.*mem_max.
        for opt in [force, plain] {
            // SAFETY: passes a pointer to a live c_int with its exact size, on a
            // socket borrowed for the duration of the call.
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &bytes as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
    }
}

/// Machine-wide CPU seconds: (busy, stolen by the hypervisor), from /proc/stat,
/// plus this process's own CPU seconds. Used to flag runs disturbed by other load.
fn machine_cpu() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let field = |i: usize| cpu.get(i).copied().unwrap_or(0.0) / 100.0;
    // user nice system idle iowait irq softirq steal
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let own = own.rsplit_once(')').map_or("", |(_, r)| r);
    let own: f64 = own
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    (busy, field(7), own / 100.0)
}

fn raw_row(name: &str, w: Workload, tx: SendSide, rx: RecvSide) -> Row {
    Row {
        name: name.into(),
        secs: rx.secs,
        frames_sent: tx.frames,
        frames_lost: 0,
        // Frame-equivalent payload: 860 datagrams carry one 1 MiB frame in the session.
        payload_bytes: rx.packets * FRAME_BYTES as u64 / w.per_frame as u64,
        wire_bytes: rx.packets * w.datagram as u64,
        packets_sent: tx.packets,
        packets_received: rx.packets,
        send_syscalls: tx.syscalls,
        recv_syscalls: rx.syscalls,
        polls: rx.polls,
        send_drops: tx.drops,
        tx_cpu: tx.cpu,
        rx_cpu: rx.cpu,
    }
}

/// Raw UDP, one system call per datagram on both sides.
fn raw_scalar(w: Workload) -> io::Result<Row> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.connect(tx.local_addr()?)?;
    size_buffers(&rx);
    size_buffers(&tx);
    // Non-blocking send: a full buffer is a drop, as in the transport's contract.
    tx.set_nonblocking(true)?;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (sent, got) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let d = vec![0x5Au8; w.datagram];
            let cpu0 = thread_cpu();
            let mut out = SendSide::default();
            let mut p = Pacer::new(start, w, None);
            while p.next() {
                for _ in 0..w.per_frame {
                    out.syscalls += 1;
                    match tx.send(&d) {
                        Ok(_) => out.packets += 1,
                        Err(_) => out.drops += 1,
                    }
                }
                out.frames += 1;
            }
            out.cpu = thread_cpu() - cpu0;
            done.store(true, Ordering::Release);
            out
        });
        let mut drain = Drain::new(&done, start, w);
        let cpu0 = thread_cpu();
        let mut got = RecvSide::default();
        let mut buf = vec![0u8; w.datagram + 1];
        while !drain.over(false) {
            got.syscalls += 1;
            if rx.recv(&mut buf).is_ok() {
                got.packets += 1;
                drain.last = Instant::now();
            }
        }
        (got.secs, got.cpu) = ((drain.last - start).as_secs_f64(), thread_cpu() - cpu0);
        (sender.join().expect("sender thread"), got)
    });
    Ok(raw_row("raw UDP, send/recv per datagram", w, sent, got))
}

/// Raw UDP through the transport's batched calls (sendmmsg / recvmmsg), no crypto or FEC.
fn raw_batch(w: Workload) -> io::Result<Row> {
    let (tx, rx) = pair(&UdpConfig::default())?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (mut sent, mut got) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let d = vec![0x5Au8; w.datagram];
            let refs = vec![d.as_slice(); w.per_frame];
            let cpu0 = thread_cpu();
            let mut out = SendSide::default();
            let mut p = Pacer::new(start, w, None);
            while p.next() {
                match tx.send_batch(&refs) {
                    Ok(n) => {
                        out.packets += n as u64;
                        out.drops += (refs.len() - n) as u64;
                    }
                    Err(e) => {
                        eprintln!("raw batch: send failed: {e}");
                        break;
                    }
                }
                out.frames += 1;
            }
            out.cpu = thread_cpu() - cpu0;
            done.store(true, Ordering::Release);
            out
        });
        let mut drain = Drain::new(&done, start, w);
        let mut bufs = vec![vec![0u8; w.datagram + 1]; RECV_BATCH];
        let mut lens = [0usize; RECV_BATCH];
        let cpu0 = thread_cpu();
        let mut got = RecvSide::default();
        // The session's receive pattern: drain with recvmmsg, wait only when empty.
        while !drain.over(false) {
            match rx.recv_batch(&mut bufs, &mut lens) {
                Ok(0) => {
                    got.polls += 1;
                    let _ = rx.wait_readable(Duration::from_millis(20));
                }
                Ok(n) => {
                    got.packets += n as u64;
                    drain.last = Instant::now();
                }
                Err(e) => {
                    eprintln!("raw batch: receive failed: {e}");
                    break;
                }
            }
        }
        (got.secs, got.cpu) = ((drain.last - start).as_secs_f64(), thread_cpu() - cpu0);
        (sender.join().expect("sender thread"), got)
    });
    sent.syscalls = tx.io_counters().send_syscalls;
    got.syscalls = rx.io_counters().recv_syscalls;
    Ok(raw_row("raw UDP, UdpTransport batches", w, sent, got))
}

/// Counts the receive side's readiness waits, which the transport does not.
struct Counted<T> {
    inner: T,
    polls: AtomicU64,
}

impl<T: Transport> Transport for Counted<T> {
    fn send(&self, d: &[u8]) -> io::Result<bool> {
        self.inner.send(d)
    }
    fn send_batch(&self, d: &[&[u8]]) -> io::Result<usize> {
        self.inner.send_batch(d)
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.inner.recv(buf)
    }
    fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        self.inner.recv_batch(bufs, lens)
    }
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.wait_readable(timeout)
    }
    fn io_counters(&self) -> IoCounters {
        self.inner.io_counters()
    }
}

/// How the host decides when to submit the next frame.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back, open loop.
    Unpaced,
    /// Back to back, but at most this many frames ahead of the client (an
    /// in-process stand-in for receiver feedback).
    Window(u64),
    /// Frames at this goodput, in bit/s.
    Rate(f64),
}

fn session(w: Workload, pace: Pace) -> Result<Row, Box<dyn std::error::Error>> {
    let keys = SessionKeys::derive(&[0x11; 32], b"throughput")?;
    let (a, b) = pair(&UdpConfig::default())?;
    let mut host = Session::new(Role::Host, SessionConfig::default(), &keys, a)?;
    let counted = Counted {
        inner: b,
        polls: AtomicU64::new(0),
    };
    let mut client = Session::new(Role::Client, SessionConfig::default(), &keys, counted)?;
    let done = AtomicBool::new(false);
    let frames_sent = AtomicU64::new(0);
    // One credit per frame the client has finished with (delivered or lost).
    let (credit_tx, credit_rx) = mpsc::channel::<u64>();
    let frame = vec![0xC3u8; FRAME_BYTES];
    let start = Instant::now();
    let (sent, secs, rx_cpu) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let credit_rx = credit_rx; // moved in: a Receiver is not Sync
            let rate = match pace {
                Pace::Rate(r) => Some(r),
                _ => None,
            };
            let cpu0 = thread_cpu();
            let mut out = SendSide::default();
            let mut p = Pacer::new(start, w, rate);
            let mut finished = 0u64;
            while p.next() {
                if let Pace::Window(win) = pace {
                    // A frame lost without a trace never returns its credit: time out.
                    while out.frames >= finished + win {
                        finished += credit_rx.recv_timeout(Duration::from_millis(50)).unwrap_or(1);
                    }
                }
                let meta = FrameMeta {
                    pts: out.frames,
                    keyframe: false,
                };
                match host.submit_frame(&frame, meta) {
                    Ok(r) => out.drops += r.packets_dropped as u64,
                    Err(e) => {
                        eprintln!("session: submit failed: {e}");
                        break;
                    }
                }
                out.frames += 1;
                frames_sent.store(out.frames, Ordering::Release);
            }
            let st = host.stats();
            (out.packets, out.syscalls) = (st.packets_sent, st.send_syscalls);
            out.cpu = thread_cpu() - cpu0;
            done.store(true, Ordering::Release);
            out
        });
        let cpu0 = thread_cpu();
        let mut drain = Drain::new(&done, start, w);
        let mut finished = 0u64;
        while !drain.over(finished >= frames_sent.load(Ordering::Acquire)) {
            match client.recv_frame(Duration::from_millis(20)) {
                Ok(Some(FrameEvent::Frame(f))) => {
                    finished += 1;
                    drain.last = f.received_at;
                    client.receiver().recycle(f.data);
                    let _ = credit_tx.send(1);
                }
                Ok(Some(FrameEvent::Lost { count, .. })) => {
                    finished += count;
                    let _ = credit_tx.send(count);
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("session: receive failed: {e}");
                    break;
                }
            }
        }
        // Read what is still queued (the last frame's surplus recovery shards), so
        // the lost-packet count is not inflated by packets nobody read.
        while let Ok(Some(_)) = client.recv_frame(Duration::from_millis(20)) {}
        let rx_cpu = thread_cpu() - cpu0;
        (
            sender.join().expect("sender thread"),
            (drain.last - start).as_secs_f64(),
            rx_cpu,
        )
    });
    let st = client.stats();
    Ok(Row {
        name: match pace {
            Pace::Unpaced => "session 10% FEC + AES, unpaced".into(),
            Pace::Window(n) => format!("session 10% FEC + AES, window {n}"),
            Pace::Rate(r) => format!("session 10% FEC + AES, paced {:.0} Mbit/s", r / 1e6),
        },
        secs,
        frames_sent: sent.frames,
        frames_lost: sent.frames - st.frames_completed.min(sent.frames),
        payload_bytes: st.payload_bytes_delivered,
        wire_bytes: st.bytes_received,
        packets_sent: sent.packets,
        packets_received: st.packets_received,
        send_syscalls: sent.syscalls,
        recv_syscalls: st.recv_syscalls,
        polls: client.transport().polls.load(Ordering::Relaxed),
        send_drops: sent.drops,
        tx_cpu: sent.cpu,
        rx_cpu,
    })
}

fn per(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Row {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs.max(1e-9)
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<40} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
        "case",
        "secs",
        "goodput",
        "wire",
        "kpkt/s",
        "send sc",
        "recv sc",
        "polls",
        "pkt per",
        "pkt per",
        "send",
        "pkts",
        "frames",
        "tx",
        "rx"
    );
    println!(
        "{:<40} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
        "",
        "",
        "Gbit/s",
        "Gbit/s",
        "",
        "/s",
        "/s",
        "/s",
        "send sc",
        "recv sc",
        "drops",
        "lost",
        "lost",
        "cpu%",
        "cpu%"
    );
    for r in rows {
        println!(
            "{:<40} {:>5.2} {:>7.3} {:>6.3} {:>7.1} {:>8.0} {:>8.0} {:>7.0} {:>7.1} {:>7.1} {:>5} {:>6} {:>6} {:>5.0} {:>5.0}",
            r.name,
            r.secs,
            r.rate(r.payload_bytes) * 8.0 / 1e9,
            r.rate(r.wire_bytes) * 8.0 / 1e9,
            r.rate(r.packets_received) / 1e3,
            r.rate(r.send_syscalls),
            r.rate(r.recv_syscalls),
            r.rate(r.polls),
            per(r.packets_sent, r.send_syscalls),
            per(r.packets_received, r.recv_syscalls),
            r.send_drops,
            r.packets_sent.saturating_sub(r.packets_received),
            r.frames_lost,
            r.tx_cpu / r.secs.max(1e-9) * 100.0,
            r.rx_cpu / r.secs.max(1e-9) * 100.0,
        );
    }
}

fn print_json(rows: &[Row]) {
    println!("[");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "  {{\"case\": \"{}\", \"secs\": {:.3}, \"goodput_gbps\": {:.4}, \"wire_gbps\": {:.4}, \
             \"packets_per_sec\": {:.0}, \"send_syscalls_per_sec\": {:.0}, \"recv_syscalls_per_sec\": {:.0}, \
             \"polls_per_sec\": {:.0}, \"packets_per_send_syscall\": {:.2}, \"packets_per_recv_syscall\": {:.2}, \
             \"frames_sent\": {}, \"frames_lost\": {}, \"packets_sent\": {}, \"packets_received\": {}, \
             \"send_drops\": {}, \"tx_cpu_percent\": {:.0}, \"rx_cpu_percent\": {:.0}}}{}",
            r.name,
            r.secs,
            r.rate(r.payload_bytes) * 8.0 / 1e9,
            r.rate(r.wire_bytes) * 8.0 / 1e9,
            r.rate(r.packets_received),
            r.rate(r.send_syscalls),
            r.rate(r.recv_syscalls),
            r.rate(r.polls),
            per(r.packets_sent, r.send_syscalls),
            per(r.packets_received, r.recv_syscalls),
            r.frames_sent,
            r.frames_lost,
            r.packets_sent,
            r.packets_received,
            r.send_drops,
            r.tx_cpu / r.secs.max(1e-9) * 100.0,
            r.rx_cpu / r.secs.max(1e-9) * 100.0,
            if i + 1 < rows.len() { "," } else { "" },
        );
    }
    println!("]");
}

fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("bad value {value:?} for {flag}\n{USAGE}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut seconds, mut rate_mbps, mut json) = (3.0f64, 1000.0f64, false);
    let mut only = String::from("raw-scalar,raw-batch,unpaced,window,paced");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = num(&a, args.next())?,
            "--rate-mbps" => rate_mbps = num(&a, args.next())?,
            "--json" => json = true,
            "--only" => only = args.next().ok_or(format!("--only needs a value\n{USAGE}"))?,
            _ => return Err(format!("unknown option {a}\n{USAGE}").into()),
        }
    }
    if !(seconds > 0.0 && seconds <= 60.0) || rate_mbps <= 0.0 {
        return Err("--seconds must be in (0, 60] and --rate-mbps above 0".into());
    }
    let cfg = SessionConfig::default().fec;
    let layout = FrameLayout::new(FRAME_BYTES, &cfg);
    let per_frame = (0..layout.blocks)
        .map(|b| {
            let k = layout.block(b).data_shards;
            k + recovery_count(k, cfg.fec_percent)
        })
        .sum();
    let w = Workload {
        seconds,
        datagram: cfg.datagram_len(),
        per_frame,
    };
    if let Some(warn) = pair(&UdpConfig::default())?.0.buffer_report().warning() {
        eprintln!("warning: {warn}");
    }
    eprintln!(
        "{seconds} s per case; a 1 MiB frame is {} datagrams of {} bytes",
        w.per_frame, w.datagram
    );
    let (busy0, steal0, own0) = machine_cpu();
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for case in only.split(',') {
        rows.push(match case {
            "raw-scalar" => raw_scalar(w)?,
            "raw-batch" => raw_batch(w)?,
            "unpaced" => session(w, Pace::Unpaced)?,
            "window" => session(w, Pace::Window(2))?,
            "paced" => session(w, Pace::Rate(rate_mbps * 1e6))?,
            other => return Err(format!("unknown case {other:?}\n{USAGE}").into()),
        });
    }
    let (busy1, steal1, own1) = machine_cpu();
    let wall = t0.elapsed().as_secs_f64();
    // Loopback softirq work may be accounted outside the process, so "other" is an upper bound.
    eprintln!(
        "machine during the run: {:.0} % of a core busy outside this process (incl. softirq), {:.0} % stolen",
        ((busy1 - busy0) - (own1 - own0)).max(0.0) / wall * 100.0,
        (steal1 - steal0) / wall * 100.0
    );
    if json {
        print_json(&rows);
    } else {
        print_table(&rows);
    }
    Ok(())
}
