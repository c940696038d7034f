//! Side-by-side throughput measurement on 127.0.0.1: raw UDP versus the full
//! [`Session`] (FEC + AES-GCM + batching + reassembly), with the system-call
//! counts of each. Compiled only with the `bench` feature; the `throughput`
//! example is its command-line front end.
//!
//! # Workload
//!
//! Every [`Case`] moves the same wire workload ([`Workload`]): frames of
//! [`FRAME_BYTES`] (1 MiB), each 860 datagrams of 1401 bytes (781 data shards of
//! 1344 bytes + 79 recovery shards at the default 10 % FEC). The raw cases send
//! 860 plain datagrams per "frame" and count each delivered datagram as 1/860 of
//! a frame, so their goodput compares directly with the session's. Each case
//! sends for [`BenchConfig::seconds`], then drains: the receiver stops once the
//! sender is done and either everything arrived or nothing did for 300 ms, and
//! at the latest three seconds after the sending time is up.
//!
//! The cases:
//!
//! * [`Case::RawScalar`]: raw UDP with one `send` / `recv` system call per
//!   datagram (through [`UdpTransport`]'s scalar calls, so the socket buffers
//!   are sized like the session's; the receiver waits with `ppoll` when empty);
//! * [`Case::RawBatch`]: raw UDP through [`UdpTransport::send_batch`] and
//!   [`UdpTransport::recv_batch`] (`sendmmsg` / `recvmmsg`), no crypto or FEC;
//! * [`Case::Unpaced`]: the session, each frame submitted as soon as the
//!   previous one is out (open loop, so it shows what the receiver absorbs);
//! * [`Case::Window`]: the session unpaced but at most 2 frames ahead of the
//!   client (an in-process credit window: the most it sustains without loss);
//! * [`Case::Paced`]: the session paced to [`BenchConfig::rate_mbps`] of goodput.
//!
//! Each case yields a [`Row`]: goodput and wire bytes, packets, send and receive
//! system calls (receive calls include empty `recvmmsg` calls), `ppoll` waits,
//! send drops, frames lost and the CPU time of the sending and receiving threads.
//!
//! # Loopback caveat
//!
//! On loopback the kernel runs the receive path of a datagram inside the
//! sender's system call, so the sending thread pays for both network stacks:
//! its CPU time is not what a sender on a real network would use, and the
//! figures are an upper bound on what the code can do, not a network forecast.
//!
//! ```no_run
//! use punktfunk_core::bench::{self, BenchConfig, Case};
//!
//! let config = BenchConfig { seconds: 1.0, ..BenchConfig::default() };
//! let row = bench::run(Case::Unpaced, &config).unwrap();
//! println!("{}: {:.3} Gbit/s goodput", row.name, row.goodput_gbps());
//! ```

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::fec::{recovery_count, FrameLayout};
use crate::{
    Error, ErrorKind, FrameEvent, FrameMeta, Result, Role, Session, SessionConfig, SessionKeys, Transport,
    UdpConfig, UdpTransport, RECV_BATCH,
};

/// Bytes per frame in every case: 1 MiB.
pub const FRAME_BYTES: usize = 1 << 20;

/// How many frames [`Case::Window`] lets the host run ahead of the client.
const WINDOW_FRAMES: u64 = 2;

/// Longest [`BenchConfig::seconds`] accepted.
const MAX_SECONDS: f64 = 60.0;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    /// Raw UDP, one `send` / `recv` system call per datagram.
    RawScalar,
    /// Raw UDP through the transport's batched calls (`sendmmsg` / `recvmmsg`).
    RawBatch,
    /// The session, frames submitted back to back (open loop).
    Unpaced,
    /// The session, back to back but at most 2 frames ahead of the client.
    Window,
    /// The session, paced to [`BenchConfig::rate_mbps`] of goodput.
    Paced,
}

impl Case {
    /// Every case, in the order the example runs them.
    pub const ALL: [Case; 5] = [
        Case::RawScalar,
        Case::RawBatch,
        Case::Unpaced,
        Case::Window,
        Case::Paced,
    ];

    /// The short name used on the command line: `"raw-scalar"`, `"raw-batch"`,
    /// `"unpaced"`, `"window"` or `"paced"`.
    pub fn name(&self) -> &'static str {
        match self {
            Case::RawScalar => "raw-scalar",
            Case::RawBatch => "raw-batch",
            Case::Unpaced => "unpaced",
            Case::Window => "window",
            Case::Paced => "paced",
        }
    }

    /// The case with this short name ([`Case::name`]), if any.
    pub fn parse(s: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchConfig {
    /// How long each case sends, in seconds: above 0, at most 60. Draining the
    /// receiver afterwards takes up to three seconds more.
    pub seconds: f64,
    /// Goodput of [`Case::Paced`], in Mbit/s (above 0); the other cases ignore it.
    pub rate_mbps: f64,
}

impl Default for BenchConfig {
    /// Three seconds per case, paced at 1000 Mbit/s.
    fn default() -> Self {
        BenchConfig {
            seconds: 3.0,
            rate_mbps: 1000.0,
        }
    }
}

impl BenchConfig {
    /// Checks the ranges documented on the fields ([`ErrorKind::InvalidArgument`]).
    pub fn validate(&self) -> Result<()> {
        if !(self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return Err(Error::invalid(format!(
                "bench seconds must be in (0, {MAX_SECONDS}], got {}",
                self.seconds
            )));
        }
        if !(self.rate_mbps > 0.0 && self.rate_mbps.is_finite()) {
            return Err(Error::invalid(format!(
                "bench rate_mbps must be above 0, got {}",
                self.rate_mbps
            )));
        }
        Ok(())
    }
}

/// The wire workload shared by all cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Bytes per frame ([`FRAME_BYTES`]).
    pub frame_bytes: usize,
    /// Bytes per datagram on the wire (1401 with the default configuration).
    pub datagram: usize,
    /// Datagrams per frame, data and recovery shards together (860 by default).
    pub per_frame: usize,
}

impl Workload {
    /// The workload of a [`FRAME_BYTES`] frame under the default
    /// [`SessionConfig`], which is what every case uses.
    pub fn new() -> Workload {
        let cfg = SessionConfig::default().fec;
        let layout = FrameLayout::new(FRAME_BYTES, &cfg);
        let per_frame = (0..layout.blocks)
            .map(|b| {
                let k = layout.block(b).data_shards;
                k + recovery_count(k, cfg.fec_percent)
            })
            .sum();
        Workload {
            frame_bytes: FRAME_BYTES,
            datagram: cfg.datagram_len(),
            per_frame,
        }
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload::new()
    }
}

/// Everything measured for one case.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Which case this is.
    pub case: Case,
    /// Human-readable description, e.g. `"session 10% FEC + AES, unpaced"`.
    pub name: String,
    /// Seconds from the start until the last delivery: the divisor of every rate.
    pub secs: f64,
    /// Frames submitted (raw cases: batches of [`Workload::per_frame`] datagrams).
    pub frames_sent: u64,
    /// Frames that never arrived whole (always 0 in the raw cases, which do not
    /// reassemble).
    pub frames_lost: u64,
    /// Frame bytes delivered; in the raw cases the frame-equivalent of the
    /// datagrams received ([`FRAME_BYTES`] per [`Workload::per_frame`] datagrams).
    pub payload_bytes: u64,
    /// Datagram bytes received.
    pub wire_bytes: u64,
    /// Datagrams handed to the kernel by the sender.
    pub packets_sent: u64,
    /// Datagrams read by the receiver.
    pub packets_received: u64,
    /// Send system calls.
    pub send_syscalls: u64,
    /// Receive system calls, including ones that found nothing.
    pub recv_syscalls: u64,
    /// Readiness waits (`ppoll`) on the receive side: system calls too, but not
    /// counted in `recv_syscalls`.
    pub polls: u64,
    /// Datagrams dropped on send (full socket buffer).
    pub send_drops: u64,
    /// CPU seconds used by the sending thread.
    pub tx_cpu: f64,
    /// CPU seconds used by the receiving thread.
    pub rx_cpu: f64,
}

impl Row {
    /// `n` per second of [`Row::secs`].
    pub fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs.max(1e-9)
    }

    /// Frame bytes delivered per second, in Gbit/s.
    pub fn goodput_gbps(&self) -> f64 {
        self.rate(self.payload_bytes) * 8.0 / 1e9
    }

    /// Datagram bytes received per second, in Gbit/s.
    pub fn wire_gbps(&self) -> f64 {
        self.rate(self.wire_bytes) * 8.0 / 1e9
    }

    /// Datagrams received per second.
    pub fn packets_per_sec(&self) -> f64 {
        self.rate(self.packets_received)
    }

    /// Send system calls per second.
    pub fn send_syscalls_per_sec(&self) -> f64 {
        self.rate(self.send_syscalls)
    }

    /// Receive system calls per second.
    pub fn recv_syscalls_per_sec(&self) -> f64 {
        self.rate(self.recv_syscalls)
    }

    /// Readiness waits per second.
    pub fn polls_per_sec(&self) -> f64 {
        self.rate(self.polls)
    }

    /// Datagrams sent per send system call (0 without calls).
    pub fn packets_per_send_syscall(&self) -> f64 {
        per(self.packets_sent, self.send_syscalls)
    }

    /// Datagrams received per receive system call (0 without calls).
    pub fn packets_per_recv_syscall(&self) -> f64 {
        per(self.packets_received, self.recv_syscalls)
    }

    /// Datagrams sent but never read.
    pub fn packets_lost(&self) -> u64 {
        self.packets_sent.saturating_sub(self.packets_received)
    }

    /// CPU time of the sending thread, in percent of one core.
    pub fn tx_cpu_percent(&self) -> f64 {
        self.tx_cpu / self.secs.max(1e-9) * 100.0
    }

    /// CPU time of the receiving thread, in percent of one core.
    pub fn rx_cpu_percent(&self) -> f64 {
        self.rx_cpu / self.secs.max(1e-9) * 100.0
    }
}

fn per(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Runs one case for `config.seconds` (plus draining) and returns what it measured.
///
/// Errors: [`ErrorKind::InvalidArgument`] for a config outside its ranges,
/// [`ErrorKind::Io`] (or another kind mapped from the I/O error) when a socket
/// cannot be set up or a send or receive fails outright, the session's own
/// errors, and [`ErrorKind::Internal`] if a measuring thread panicked.
pub fn run(case: Case, config: &BenchConfig) -> Result<Row> {
    config.validate()?;
    let w = Plan {
        seconds: config.seconds,
        work: Workload::new(),
    };
    match case {
        Case::RawScalar => raw_scalar(w),
        Case::RawBatch => raw_batch(w),
        Case::Unpaced => session(w, Pace::Unpaced),
        Case::Window => session(w, Pace::Window(WINDOW_FRAMES)),
        Case::Paced => session(w, Pace::Rate(config.rate_mbps * 1e6)),
    }
}

/// A warning with the fix when the kernel grants the UDP sockets much smaller
/// buffers than the transport asks for (see [`crate::transport::BufferReport::warning`]).
pub fn socket_buffer_warning() -> Result<Option<String>> {
    let t = UdpTransport::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &UdpConfig::default())?;
    Ok(t.buffer_report().warning())
}

/// CPU seconds (user + system) the calling thread has used so far, from
/// `/proc/thread-self/stat` in USER_HZ ticks (100 per second on Linux); 0 where
/// that file cannot be read.
pub fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    proc_cpu_seconds(&stat)
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn proc_cpu_seconds(stat: &str) -> f64 {
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

/// Machine-wide CPU counters, in seconds since boot (all 0 where `/proc` is
/// missing). Two samples around a run flag runs disturbed by other load.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    /// Busy time of all cores (user, nice, system, irq, softirq).
    pub busy: f64,
    /// Time stolen by the hypervisor.
    pub stolen: f64,
    /// CPU time of this process (user + system).
    pub own: f64,
}

/// Samples [`MachineCpu`] from `/proc/stat` and `/proc/self/stat`.
pub fn machine_cpu() -> MachineCpu {
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
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    MachineCpu {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        stolen: field(7),
        own: proc_cpu_seconds(&own),
    }
}

/// The workload and the sending time of one case.
#[derive(Clone, Copy)]
struct Plan {
    seconds: f64,
    work: Workload,
}

/// What the sending thread counted.
#[derive(Default)]
struct SendSide {
    frames: u64,
    packets: u64,
    syscalls: u64,
    drops: u64,
    cpu: f64,
    /// The failure that ended the sending early, if any.
    error: Option<Error>,
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

/// Sends frame `n` at `start + n * interval`; no interval means back to back.
struct Pacer {
    start: Instant,
    end: Instant,
    interval: Option<Duration>,
    n: u32,
}

impl Pacer {
    fn new(start: Instant, w: Plan, rate_bps: Option<f64>) -> Pacer {
        let frame_bits = w.work.frame_bytes as f64 * 8.0;
        Pacer {
            start,
            end: start + Duration::from_secs_f64(w.seconds),
            // A rate too low to express leaves room for the first frame only.
            interval: rate_bps.map(|r| Duration::try_from_secs_f64(frame_bits / r).unwrap_or(Duration::MAX)),
            n: 0,
        }
    }

    /// Waits for the next frame's slot (sleeping, never spinning); false once
    /// the case's time is up.
    fn next(&mut self) -> bool {
        if let Some(iv) = self.interval {
            let due = iv.checked_mul(self.n).and_then(|d| self.start.checked_add(d));
            let Some(due) = due.filter(|d| *d < self.end) else {
                return false;
            };
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        self.n = self.n.saturating_add(1);
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
    fn new(done: &'a AtomicBool, start: Instant, w: Plan) -> Self {
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

/// Two UDP transports on 127.0.0.1 connected to each other.
fn pair() -> Result<(UdpTransport, UdpTransport)> {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let cfg = UdpConfig::default();
    let a = UdpTransport::bind(local, &cfg)?;
    let b = UdpTransport::bind(local, &cfg)?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    Ok((a, b))
}

fn panicked(which: &str) -> Error {
    Error::new(ErrorKind::Internal, format!("bench: the {which} thread panicked"))
}

fn raw_row(case: Case, name: &str, w: Plan, tx: SendSide, rx: RecvSide) -> Row {
    Row {
        case,
        name: name.into(),
        secs: rx.secs,
        frames_sent: tx.frames,
        frames_lost: 0,
        // Frame-equivalent payload: `per_frame` datagrams carry one frame in the session.
        payload_bytes: rx.packets * w.work.frame_bytes as u64 / w.work.per_frame.max(1) as u64,
        wire_bytes: rx.packets * w.work.datagram as u64,
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
fn raw_scalar(w: Plan) -> Result<Row> {
    let (tx, rx) = pair()?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (mut sent, mut got, rx_err) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let d = vec![0x5Au8; w.work.datagram];
            let cpu0 = thread_cpu();
            let mut out = SendSide::default();
            let mut p = Pacer::new(start, w, None);
            'frames: while p.next() {
                for _ in 0..w.work.per_frame {
                    // Non-blocking: a full buffer is a drop, as in the transport's contract.
                    match tx.send(&d) {
                        Ok(true) => out.packets += 1,
                        Ok(false) => out.drops += 1,
                        Err(e) => {
                            out.error = Some(Error::from(e));
                            break 'frames;
                        }
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
        let mut err = None;
        let mut buf = vec![0u8; w.work.datagram + 1];
        while !drain.over(false) {
            match rx.recv(&mut buf) {
                Ok(Some(_)) => {
                    got.packets += 1;
                    drain.last = Instant::now();
                }
                // Nothing queued: wait for more, as a blocking recv would.
                Ok(None) => {
                    let _ = rx.wait_readable(Duration::from_millis(20));
                }
                Err(e) => {
                    err = Some(Error::from(e));
                    break;
                }
            }
        }
        (got.secs, got.cpu) = ((drain.last - start).as_secs_f64(), thread_cpu() - cpu0);
        sender
            .join()
            .map(|sent| (sent, got, err))
            .map_err(|_| panicked("sending"))
    })?;
    finish_raw(&tx, &rx, &mut sent, &mut got, rx_err)?;
    Ok(raw_row(
        Case::RawScalar,
        "raw UDP, send/recv per datagram",
        w,
        sent,
        got,
    ))
}

/// Raw UDP through the transport's batched calls (sendmmsg / recvmmsg), no crypto or FEC.
fn raw_batch(w: Plan) -> Result<Row> {
    let (tx, rx) = pair()?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (mut sent, mut got, rx_err) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let d = vec![0x5Au8; w.work.datagram];
            let refs = vec![d.as_slice(); w.work.per_frame];
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
                        out.error = Some(Error::from(e));
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
        let mut bufs = vec![vec![0u8; w.work.datagram + 1]; RECV_BATCH];
        let mut lens = [0usize; RECV_BATCH];
        let cpu0 = thread_cpu();
        let mut got = RecvSide::default();
        let mut err = None;
        // The session's receive pattern: drain with recvmmsg, wait only when empty.
        while !drain.over(false) {
            match rx.recv_batch(&mut bufs, &mut lens) {
                Ok(0) => {
                    let _ = rx.wait_readable(Duration::from_millis(20));
                }
                Ok(n) => {
                    got.packets += n as u64;
                    drain.last = Instant::now();
                }
                Err(e) => {
                    err = Some(Error::from(e));
                    break;
                }
            }
        }
        (got.secs, got.cpu) = ((drain.last - start).as_secs_f64(), thread_cpu() - cpu0);
        sender
            .join()
            .map(|sent| (sent, got, err))
            .map_err(|_| panicked("sending"))
    })?;
    finish_raw(&tx, &rx, &mut sent, &mut got, rx_err)?;
    Ok(raw_row(
        Case::RawBatch,
        "raw UDP, UdpTransport batches",
        w,
        sent,
        got,
    ))
}

/// Fills in the system-call counts the transports kept, or reports the first
/// failure of either side.
fn finish_raw(
    tx: &UdpTransport,
    rx: &UdpTransport,
    sent: &mut SendSide,
    got: &mut RecvSide,
    rx_err: Option<Error>,
) -> Result<()> {
    if let Some(e) = sent.error.take().or(rx_err) {
        return Err(e);
    }
    sent.syscalls = tx.io_counters().send_syscalls;
    let rc = rx.io_counters();
    (got.syscalls, got.polls) = (rc.recv_syscalls, rc.wait_syscalls);
    Ok(())
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

fn session(w: Plan, pace: Pace) -> Result<Row> {
    let keys = SessionKeys::derive(&[0x11; 32], b"throughput")?;
    let (a, b) = pair()?;
    let mut host = Session::new(Role::Host, SessionConfig::default(), &keys, a)?;
    let mut client = Session::new(Role::Client, SessionConfig::default(), &keys, b)?;
    let done = AtomicBool::new(false);
    let frames_sent = AtomicU64::new(0);
    // One credit per frame the client has finished with (delivered or lost).
    let (credit_tx, credit_rx) = mpsc::channel::<u64>();
    let frame = vec![0xC3u8; w.work.frame_bytes];
    let start = Instant::now();
    let (mut sent, secs, rx_cpu, rx_err) = thread::scope(|s| {
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
                        out.error = Some(e);
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
        let mut err = None;
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
                    err = Some(e);
                    break;
                }
            }
        }
        // Read what is still queued (the last frame's surplus recovery shards), so
        // the lost-packet count is not inflated by packets nobody read.
        if err.is_none() {
            while let Ok(Some(_)) = client.recv_frame(Duration::from_millis(20)) {}
        }
        let rx_cpu = thread_cpu() - cpu0;
        let secs = (drain.last - start).as_secs_f64();
        sender
            .join()
            .map(|sent| (sent, secs, rx_cpu, err))
            .map_err(|_| panicked("sending"))
    })?;
    if let Some(e) = sent.error.take().or(rx_err) {
        return Err(e);
    }
    let st = client.stats();
    Ok(Row {
        case: match pace {
            Pace::Unpaced => Case::Unpaced,
            Pace::Window(_) => Case::Window,
            Pace::Rate(_) => Case::Paced,
        },
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
        polls: client.transport().io_counters().wait_syscalls,
        send_drops: sent.drops,
        tx_cpu: sent.cpu,
        rx_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip() {
        for case in Case::ALL {
            assert_eq!(Case::parse(case.name()), Some(case));
            assert_eq!(case.to_string(), case.name());
        }
        assert_eq!(Case::parse("nope"), None);
        assert_eq!(Case::parse(""), None);
    }

    #[test]
    fn config_ranges_are_checked() {
        assert!(BenchConfig::default().validate().is_ok());
        for (seconds, rate_mbps) in [
            (0.0, 1000.0),
            (61.0, 1000.0),
            (f64::NAN, 1000.0),
            (1.0, 0.0),
            (1.0, f64::INFINITY),
        ] {
            let e = run(Case::Paced, &BenchConfig { seconds, rate_mbps }).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn workload_matches_the_documented_figures() {
        let w = Workload::new();
        assert_eq!((w.frame_bytes, w.datagram, w.per_frame), (1 << 20, 1401, 860));
    }

    fn check_short_run(case: Case) {
        let row = run(
            case,
            &BenchConfig {
                seconds: 0.2,
                ..BenchConfig::default()
            },
        )
        .unwrap();
        assert_eq!(row.case, case);
        assert!(row.frames_sent > 0, "{row:?}");
        assert!(row.frames_lost < row.frames_sent, "{row:?}");
        assert!(row.packets_sent > 0 && row.packets_received > 0, "{row:?}");
        assert!(
            row.payload_bytes > 0 && row.wire_bytes > row.payload_bytes / 2,
            "{row:?}"
        );
        assert!(row.send_syscalls > 0 && row.recv_syscalls > 0, "{row:?}");
        assert!(
            row.secs > 0.0 && row.goodput_gbps() > 0.0 && row.packets_per_sec() > 0.0,
            "{row:?}"
        );
    }

    #[test]
    fn short_raw_batch_run_delivers() {
        check_short_run(Case::RawBatch);
    }

    #[test]
    fn short_unpaced_session_run_delivers() {
        check_short_run(Case::Unpaced);
    }
}
