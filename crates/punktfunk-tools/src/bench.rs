//! Side-by-side throughput measurement on 127.0.0.1: raw UDP versus the full
//! [`Session`] (FEC + AES-GCM + batching + reassembly), with the system-call
//! counts of each, over the plain batched calls (`sendmmsg` / `recvmmsg`) and
//! over the kernel's UDP offloads (GSO on send, GRO on receive). The
//! `throughput` example is its command-line front end, `punktfunk bench` its
//! Node one; [`scale`] measures one host streaming to many clients over the
//! real control plane.
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
//!   [`Transport::recv_segments`] with both offloads off (`sendmmsg` /
//!   `recvmmsg`), no crypto or FEC;
//! * [`Case::RawGso`]: the same with UDP GSO on send and GRO on receive where
//!   the kernel offers them (each receive buffer then holds several datagrams);
//! * [`Case::Unpaced`]: the session, each frame submitted as soon as the
//!   previous one is out (open loop, so it shows what the receiver absorbs);
//! * [`Case::Window`]: the session unpaced but at most 2 frames ahead of the
//!   client (an in-process credit window: the most it sustains without loss);
//! * [`Case::Paced`]: the session paced to [`BenchConfig::rate_mbps`] of
//!   goodput, with sender pacing on ([`Pacing::default`]), and the latency of
//!   every frame measured.
//!
//! The session cases take the path [`BenchConfig::offload`] chooses: GSO/GRO
//! where the kernel offers them, or the batched calls.
//!
//! Each case yields a [`Row`]: goodput and wire bytes, packets, send and receive
//! system calls (receive calls include empty ones), `ppoll` waits, send drops,
//! frames lost, the CPU time of the sending and receiving threads, the latency
//! figures of the paced case and, given [`BenchConfig::alloc_counter`], the
//! allocations made during the case.
//!
//! # Loopback caveat
//!
//! On loopback the kernel runs the receive path of a datagram inside the
//! sender's system call, so the sending thread pays for both network stacks:
//! its CPU time is not what a sender on a real network would use, and the
//! figures are an upper bound on what the code can do, not a network forecast.
//!
//! ```no_run
//! use punktfunk_tools::bench::{self, BenchConfig, Case};
//!
//! let config = BenchConfig { seconds: 1.0, ..BenchConfig::default() };
//! let row = bench::run(Case::Unpaced, &config).unwrap();
//! println!("{}: {:.3} Gbit/s goodput", row.name, row.goodput_gbps());
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use punktfunk_core::fec::{recovery_count, FrameLayout};
use punktfunk_core::session::Pacing;
use punktfunk_core::transport::{Offload, RecvMeta, SEGMENTED_RECV_BUFFER};
use punktfunk_core::{
    Error, ErrorKind, FrameEvent, FrameMeta, Result, Role, Session, SessionConfig, SessionKeys, Transport,
    UdpConfig, UdpTransport, RECV_BATCH,
};

/// Bytes per frame in every case: 1 MiB.
pub const FRAME_BYTES: usize = 1 << 20;

/// How many frames [`Case::Window`] lets the host run ahead of the client.
const WINDOW_FRAMES: u64 = 2;

/// Longest [`BenchConfig::seconds`] accepted.
const MAX_SECONDS: f64 = 60.0;

/// Most frames whose latency [`Case::Paced`] records without growing its
/// buffers mid-run (more are recorded too, at the cost of an allocation).
const MAX_PREALLOCATED_FRAMES: usize = 1 << 16;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    /// Raw UDP, one `send` / `recv` system call per datagram.
    RawScalar,
    /// Raw UDP through the transport's batched calls with the offloads off
    /// (`sendmmsg` / `recvmmsg`).
    RawBatch,
    /// Raw UDP through the transport's batched calls with UDP GSO on send and
    /// GRO on receive, where the kernel offers them.
    RawGso,
    /// The session, frames submitted back to back (open loop).
    Unpaced,
    /// The session, back to back but at most 2 frames ahead of the client.
    Window,
    /// The session, paced to [`BenchConfig::rate_mbps`] of goodput with sender
    /// pacing on; measures the latency of every frame.
    Paced,
}

impl Case {
    /// Every case, in the order the example runs them.
    pub const ALL: [Case; 6] = [
        Case::RawScalar,
        Case::RawBatch,
        Case::RawGso,
        Case::Unpaced,
        Case::Window,
        Case::Paced,
    ];

    /// The short name used on the command line: `"raw-scalar"`, `"raw-batch"`,
    /// `"raw-gso"`, `"unpaced"`, `"window"` or `"paced"`.
    pub fn name(&self) -> &'static str {
        match self {
            Case::RawScalar => "raw-scalar",
            Case::RawBatch => "raw-batch",
            Case::RawGso => "raw-gso",
            Case::Unpaced => "unpaced",
            Case::Window => "window",
            Case::Paced => "paced",
        }
    }

    /// The case with this short name ([`Case::name`]), if any.
    pub fn parse(s: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether this case runs the session (and so follows
    /// [`BenchConfig::offload`]); the raw cases fix their own path.
    pub fn is_session(&self) -> bool {
        matches!(self, Case::Unpaced | Case::Window | Case::Paced)
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of a run.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// How long each case sends, in seconds: above 0, at most 60. Draining the
    /// receiver afterwards takes up to three seconds more.
    pub seconds: f64,
    /// Goodput of [`Case::Paced`], in Mbit/s (above 0); the other cases ignore it.
    pub rate_mbps: f64,
    /// Session cases: `true` (the default) uses UDP GSO and GRO where the kernel
    /// offers them ([`Offload::Auto`]), `false` the plain batched calls
    /// ([`Offload::Off`]). The raw cases ignore it: each fixes its own path.
    pub offload: bool,
    /// Returns how many allocations the process has made so far (say, from a
    /// counting global allocator). [`run`] calls it right before and right
    /// after the case, and reports the difference in [`Row::allocations`];
    /// `None` (the default) leaves that `None`.
    pub alloc_counter: Option<fn() -> u64>,
}

impl Default for BenchConfig {
    /// Three seconds per case, paced at 1000 Mbit/s, offloads on, no allocation counter.
    fn default() -> Self {
        BenchConfig {
            seconds: 3.0,
            rate_mbps: 1000.0,
            offload: true,
            alloc_counter: None,
        }
    }
}

impl PartialEq for BenchConfig {
    /// Field by field; the allocation counters compare by address
    /// ([`std::ptr::fn_addr_eq`]), so one function may compare unequal to
    /// itself across codegen units, and two identical functions merged by the
    /// compiler equal.
    fn eq(&self, other: &Self) -> bool {
        let counters_equal = match (self.alloc_counter, other.alloc_counter) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::fn_addr_eq(a, b),
            _ => false,
        };
        self.seconds == other.seconds
            && self.rate_mbps == other.rate_mbps
            && self.offload == other.offload
            && counters_equal
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
    /// Human-readable description ending in the I/O path actually used, e.g.
    /// `"session 10% FEC + AES, unpaced, GSO/GRO"` or
    /// `"session 10% FEC + AES, unpaced, sendmmsg/recvmmsg"`.
    pub name: String,
    /// Whether the sender's socket used UDP GSO (read from
    /// [`UdpTransport::gso_active`] after the run, so a kernel that refused it
    /// reads as `false`).
    pub offload: bool,
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
    /// Datagrams read by the receiver (a GRO buffer counts as the datagrams in it).
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
    /// [`Case::Paced`] only: median latency of the delivered frames, in ms,
    /// from just before `submit_frame` to [`punktfunk_core::Frame::received_at`] (when
    /// the last needed shard arrived). `None` for the other cases, or when no
    /// frame arrived.
    pub latency_p50_ms: Option<f64>,
    /// [`Case::Paced`] only: 99th percentile of that latency, in ms.
    pub latency_p99_ms: Option<f64>,
    /// [`Case::Paced`] only: 99th percentile over the delivered frames of the
    /// latency minus the frame's send span (submit until `submit_frame`
    /// returned, which with pacing includes the deliberate spreading), in ms:
    /// what the pipeline adds beyond the time the sender takes to put the frame
    /// on the wire. Each frame's figure is clamped at 0 (on loopback the last
    /// datagram may be read before the send call returns).
    pub added_latency_p99_ms: Option<f64>,
    /// Allocations (and reallocations, as the counter counts them) the whole
    /// process made from the start to the end of the case, including setting up
    /// its sockets and sessions; `None` without [`BenchConfig::alloc_counter`].
    pub allocations: Option<u64>,
    /// Session cases with a counter: allocations after warm-up (from the
    /// [`WARMUP_FRAMES`]th frame to the last) and the datagrams sent in that
    /// time, both sides of the session together.
    pub steady_allocations: Option<(u64, u64)>,
}

/// Frames a session case sends before its steady state is measured.
pub const WARMUP_FRAMES: u64 = 8;

impl Row {
    /// Allocations per datagram after warm-up ([`Row::steady_allocations`]).
    pub fn steady_allocations_per_packet(&self) -> Option<f64> {
        self.steady_allocations
            .map(|(a, p)| if p == 0 { 0.0 } else { a as f64 / p as f64 })
    }

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

    /// CPU seconds of the sending thread per 10^9 bytes of payload delivered
    /// ([`Row::payload_bytes`]); `None` if nothing was delivered.
    pub fn tx_cpu_seconds_per_gb(&self) -> Option<f64> {
        per_gb(self.tx_cpu, self.payload_bytes)
    }

    /// CPU seconds of the receiving thread per 10^9 bytes of payload delivered;
    /// `None` if nothing was delivered.
    pub fn rx_cpu_seconds_per_gb(&self) -> Option<f64> {
        per_gb(self.rx_cpu, self.payload_bytes)
    }

    /// [`Row::allocations`] per datagram received; `None` without a counter or
    /// without received datagrams.
    pub fn allocations_per_packet(&self) -> Option<f64> {
        match (self.allocations, self.packets_received) {
            (Some(a), n) if n > 0 => Some(a as f64 / n as f64),
            _ => None,
        }
    }
}

fn per(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `cpu` seconds per 10^9 of `bytes`; `None` for no bytes.
fn per_gb(cpu: f64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| cpu / (bytes as f64 / 1e9))
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
    let allocations_before = config.alloc_counter.map(|count| count());
    let mut row = match case {
        Case::RawScalar => raw(w, Raw::Scalar),
        Case::RawBatch => raw(w, Raw::Batch),
        Case::RawGso => raw(w, Raw::Gso),
        Case::Unpaced => session(w, Pace::Unpaced, config.offload, config.alloc_counter),
        Case::Window => session(
            w,
            Pace::Window(WINDOW_FRAMES),
            config.offload,
            config.alloc_counter,
        ),
        Case::Paced => session(
            w,
            Pace::Rate(config.rate_mbps * 1e6),
            config.offload,
            config.alloc_counter,
        ),
    }?;
    row.allocations = config
        .alloc_counter
        .zip(allocations_before)
        .map(|(count, before)| count().saturating_sub(before));
    Ok(row)
}

/// A warning with the fix when the kernel grants the UDP sockets much smaller
/// buffers than the transport asks for (see [`punktfunk_core::transport::BufferReport::warning`]).
pub fn socket_buffer_warning() -> Result<Option<String>> {
    let t = UdpTransport::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &UdpConfig::default())?;
    Ok(t.buffer_report().warning())
}

/// CPU seconds (user + system) the calling thread has used so far: from
/// `/proc/thread-self/schedstat` in nanoseconds where the kernel offers it,
/// else from `/proc/thread-self/stat` in USER_HZ ticks (100 per second on
/// Linux, so each reading is up to 10 ms short); 0 where neither can be read.
pub fn thread_cpu() -> f64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    if let Some(ns) = schedstat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<u64>().ok())
    {
        return ns as f64 / 1e9;
    }
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

/// What a sending thread counted.
#[derive(Default)]
struct SendSide {
    frames: u64,
    packets: u64,
    syscalls: u64,
    drops: u64,
    cpu: f64,
    /// [`Case::Paced`]: per frame (index = pts), the instant before
    /// `submit_frame` and the instant it returned.
    spans: Vec<(Instant, Instant)>,
    /// Allocations and datagrams sent after warm-up.
    steady: Option<(u64, u64)>,
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
    /// Frames of `frame_bytes` for `seconds` from `start`, at `rate_bps` of
    /// goodput or back to back.
    fn new(start: Instant, seconds: f64, frame_bytes: usize, rate_bps: Option<f64>) -> Pacer {
        let frame_bits = frame_bytes as f64 * 8.0;
        Pacer {
            start,
            end: start + Duration::from_secs_f64(seconds),
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
/// or nothing did for a while. Hard bound: the sending time plus three seconds.
struct Drain<'a> {
    done: &'a AtomicBool,
    hard_end: Instant,
    last: Instant,
}

impl<'a> Drain<'a> {
    fn new(done: &'a AtomicBool, start: Instant, seconds: f64) -> Self {
        Drain {
            done,
            hard_end: start + Duration::from_secs_f64(seconds + 3.0),
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

/// The offload setting for `offload`: where the kernel offers it, or never.
fn offload_mode(offload: bool) -> Offload {
    if offload {
        Offload::Auto
    } else {
        Offload::Off
    }
}

/// Two UDP transports on 127.0.0.1 connected to each other, with GSO and GRO
/// allowed ([`Offload::Auto`]) or off.
fn pair(offload: bool) -> Result<(UdpTransport, UdpTransport)> {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let cfg = UdpConfig {
        gso: offload_mode(offload),
        gro: offload_mode(offload),
        ..UdpConfig::default()
    };
    let a = UdpTransport::bind(local, &cfg)?;
    let b = UdpTransport::bind(local, &cfg)?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    Ok((a, b))
}

/// The I/O path in a row name: which offloads were actually in use.
fn path_name(gso: bool, gro: bool) -> &'static str {
    match (gso, gro) {
        (true, true) => "GSO/GRO",
        (true, false) => "GSO/recvmmsg",
        (false, true) => "sendmmsg/GRO",
        (false, false) => "sendmmsg/recvmmsg",
    }
}

fn panicked(which: &str) -> Error {
    Error::new(ErrorKind::Internal, format!("bench: the {which} thread panicked"))
}

/// The system calls of a raw case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// One `send` / `recv` per datagram.
    Scalar,
    /// `sendmmsg` / `recvmmsg`, offloads off.
    Batch,
    /// The batched calls with GSO and GRO where available.
    Gso,
}

/// Raw UDP, no crypto or FEC: `per_frame` datagrams per frame, back to back.
fn raw(w: Plan, mode: Raw) -> Result<Row> {
    let (tx, rx) = pair(mode == Raw::Gso)?;
    let gro = mode == Raw::Gso && rx.enable_segmented_receive();
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (mut sent, mut got, rx_err) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let d = vec![0x5Au8; w.work.datagram];
            let refs = vec![d.as_slice(); w.work.per_frame];
            let cpu0 = thread_cpu();
            let mut out = SendSide::default();
            let mut p = Pacer::new(start, w.seconds, w.work.frame_bytes, None);
            while p.next() {
                match send_raw_frame(&tx, mode, &refs) {
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
        let (got, err) = receive_raw(&rx, mode, gro, &done, start, w);
        sender
            .join()
            .map(|sent| (sent, got, err))
            .map_err(|_| panicked("sending"))
    })?;
    if let Some(e) = sent.error.take().or(rx_err) {
        return Err(e);
    }
    sent.syscalls = tx.io_counters().send_syscalls;
    let rc = rx.io_counters();
    (got.syscalls, got.polls) = (rc.recv_syscalls, rc.wait_syscalls);
    let (case, name) = match mode {
        Raw::Scalar => (Case::RawScalar, "raw UDP, send/recv per datagram"),
        Raw::Batch => (Case::RawBatch, "raw UDP, sendmmsg/recvmmsg"),
        Raw::Gso => (Case::RawGso, "raw UDP"),
    };
    let name = match mode {
        Raw::Gso => format!("{name}, {}", path_name(tx.gso_active(), rx.gro_active())),
        _ => name.into(),
    };
    Ok(Row {
        case,
        name,
        offload: tx.gso_active(),
        secs: got.secs,
        frames_sent: sent.frames,
        frames_lost: 0,
        // Frame-equivalent payload: `per_frame` datagrams carry one frame in the session.
        payload_bytes: got.packets * w.work.frame_bytes as u64 / w.work.per_frame.max(1) as u64,
        wire_bytes: got.packets * w.work.datagram as u64,
        packets_sent: sent.packets,
        packets_received: got.packets,
        send_syscalls: sent.syscalls,
        recv_syscalls: got.syscalls,
        polls: got.polls,
        send_drops: sent.drops,
        tx_cpu: sent.cpu,
        rx_cpu: got.cpu,
        latency_p50_ms: None,
        latency_p99_ms: None,
        added_latency_p99_ms: None,
        allocations: None,
        steady_allocations: None,
    })
}

/// Sends one raw frame's datagrams; returns how many the kernel took (the rest
/// are drops: a full buffer is a drop, as in the transport's contract).
fn send_raw_frame(tx: &UdpTransport, mode: Raw, datagrams: &[&[u8]]) -> io::Result<usize> {
    if mode != Raw::Scalar {
        return tx.send_batch(datagrams);
    }
    let mut sent = 0;
    for d in datagrams {
        if tx.send(d)? {
            sent += 1;
        }
    }
    Ok(sent)
}

/// The receiving side of the raw cases, until the drain is over: reads what is
/// queued (one datagram per call, or a batch of buffers that each hold one
/// datagram, or several with GRO) and waits with `ppoll` only when empty.
fn receive_raw(
    rx: &UdpTransport,
    mode: Raw,
    gro: bool,
    done: &AtomicBool,
    start: Instant,
    w: Plan,
) -> (RecvSide, Option<Error>) {
    let (count, len) = match mode {
        Raw::Scalar => (1, w.work.datagram + 1),
        _ if gro => (RECV_BATCH, SEGMENTED_RECV_BUFFER),
        _ => (RECV_BATCH, w.work.datagram + 1),
    };
    let mut bufs = vec![vec![0u8; len]; count];
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    let mut drain = Drain::new(done, start, w.seconds);
    let cpu0 = thread_cpu();
    let mut got = RecvSide::default();
    let mut err = None;
    while !drain.over(false) {
        let read = match mode {
            Raw::Scalar => rx.recv_one(&mut bufs[0]).map(|n| u64::from(n.is_some())),
            _ => rx
                .recv_batch(&mut bufs, &mut meta)
                .map(|n| datagrams_in(&meta[..n])),
        };
        match read {
            // Nothing queued: wait for more, as a blocking receive would.
            Ok(0) => {
                let _ = rx.wait_readable(Duration::from_millis(20));
            }
            Ok(n) => {
                got.packets += n;
                drain.last = Instant::now();
            }
            Err(e) => {
                err = Some(Error::from(e));
                break;
            }
        }
    }
    (got.secs, got.cpu) = ((drain.last - start).as_secs_f64(), thread_cpu() - cpu0);
    (got, err)
}

/// Datagrams in received buffers cut into their segments (the last one of
/// each buffer possibly shorter); an empty datagram counts as one.
fn datagrams_in(meta: &[RecvMeta]) -> u64 {
    meta.iter()
        .map(|m| m.len.div_ceil(m.segment.max(1)).max(1) as u64)
        .sum()
}

/// How the host decides when to submit the next frame.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back, open loop.
    Unpaced,
    /// Back to back, but at most this many frames ahead of the client (an
    /// in-process stand-in for receiver feedback).
    Window(u64),
    /// Frames at this goodput, in bit/s, with sender pacing on.
    Rate(f64),
}

fn session(w: Plan, pace: Pace, offload: bool, alloc_counter: Option<fn() -> u64>) -> Result<Row> {
    let keys = SessionKeys::derive(&[0x11; 32], b"throughput")?;
    let (a, b) = pair(offload)?;
    let rate = match pace {
        Pace::Rate(r) => Some(r),
        _ => None,
    };
    let host_config = SessionConfig {
        pacing: rate.map(|_| Pacing::default()),
        ..SessionConfig::default()
    };
    let mut host = Session::new(Role::Host, host_config, &keys, a)?;
    let mut client = Session::new(Role::Client, SessionConfig::default(), &keys, b)?;
    // The paced case records every frame's timing, in buffers sized up front
    // so the recording does not allocate while streaming.
    let timed_frames = rate.map_or(0, |r| {
        let frames = w.seconds * r / (w.work.frame_bytes as f64 * 8.0) + 2.0;
        (frames.min(MAX_PREALLOCATED_FRAMES as f64)) as usize
    });
    let done = AtomicBool::new(false);
    let frames_sent = AtomicU64::new(0);
    // Frames the client has finished with (delivered or lost): the window's
    // credits. A counter under a condition variable, which (unlike a channel)
    // allocates nothing per frame.
    let credits = (std::sync::Mutex::new(0u64), std::sync::Condvar::new());
    let add_credits = |n: u64| {
        *credits.0.lock().unwrap_or_else(|p| p.into_inner()) += n;
        credits.1.notify_one();
    };
    let frame = vec![0xC3u8; w.work.frame_bytes];
    let start = Instant::now();
    let (mut sent, secs, rx_cpu, arrivals, rx_err) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let cpu0 = thread_cpu();
            let mut out = SendSide {
                spans: Vec::with_capacity(timed_frames),
                ..SendSide::default()
            };
            let mut p = Pacer::new(start, w.seconds, w.work.frame_bytes, rate);
            let mut finished = 0u64;
            let mut warm: Option<(u64, u64)> = None;
            while p.next() {
                if out.frames == WARMUP_FRAMES {
                    warm = alloc_counter.map(|count| (count(), host.stats().packets_sent));
                }
                if let Pace::Window(win) = pace {
                    // A frame lost without a trace never returns its credit: time out.
                    let mut got = credits.0.lock().unwrap_or_else(|p| p.into_inner());
                    while out.frames >= (*got).max(finished) + win {
                        let (g, t) = credits
                            .1
                            .wait_timeout(got, Duration::from_millis(50))
                            .unwrap_or_else(|p| p.into_inner());
                        got = g;
                        if t.timed_out() {
                            finished = (*got).max(finished) + 1;
                        }
                    }
                    finished = finished.max(*got);
                }
                let meta = FrameMeta {
                    pts: out.frames,
                    keyframe: false,
                };
                let submitted = Instant::now();
                match host.submit_frame(&frame, meta) {
                    Ok(r) => out.drops += r.packets_dropped as u64,
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
                if rate.is_some() {
                    // Index = pts: frames are recorded in order and none is skipped.
                    out.spans.push((submitted, Instant::now()));
                }
                out.frames += 1;
                frames_sent.store(out.frames, Ordering::Release);
            }
            let st = host.stats();
            (out.packets, out.syscalls) = (st.packets_sent, st.send_syscalls);
            out.steady = alloc_counter
                .zip(warm)
                .map(|(count, (a0, p0))| (count().saturating_sub(a0), st.packets_sent.saturating_sub(p0)));
            out.cpu = thread_cpu() - cpu0;
            done.store(true, Ordering::Release);
            out
        });
        let cpu0 = thread_cpu();
        let mut drain = Drain::new(&done, start, w.seconds);
        let mut finished = 0u64;
        let mut arrivals: Vec<(u64, Instant)> = Vec::with_capacity(timed_frames);
        let mut err = None;
        while !drain.over(finished >= frames_sent.load(Ordering::Acquire)) {
            match client.recv_frame(Duration::from_millis(20)) {
                Ok(Some(FrameEvent::Frame(f))) => {
                    finished += 1;
                    drain.last = f.received_at;
                    if rate.is_some() {
                        arrivals.push((f.pts, f.received_at));
                    }
                    client.receiver().recycle(f.data);
                    add_credits(1);
                }
                Ok(Some(FrameEvent::Lost { count, .. })) => {
                    finished += count;
                    add_credits(count);
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
            .map(|sent| (sent, secs, rx_cpu, arrivals, err))
            .map_err(|_| panicked("sending"))
    })?;
    if let Some(e) = sent.error.take().or(rx_err) {
        return Err(e);
    }
    let latency = Latency::of(&sent.spans, &arrivals);
    let st = client.stats();
    let path = path_name(host.transport().gso_active(), client.transport().gro_active());
    Ok(Row {
        case: match pace {
            Pace::Unpaced => Case::Unpaced,
            Pace::Window(_) => Case::Window,
            Pace::Rate(_) => Case::Paced,
        },
        name: match pace {
            Pace::Unpaced => format!("session 10% FEC + AES, unpaced, {path}"),
            Pace::Window(n) => format!("session 10% FEC + AES, window {n}, {path}"),
            Pace::Rate(r) => format!("session 10% FEC + AES, paced {:.0} Mbit/s, {path}", r / 1e6),
        },
        offload: host.transport().gso_active(),
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
        latency_p50_ms: latency.p50,
        latency_p99_ms: latency.p99,
        added_latency_p99_ms: latency.added_p99,
        allocations: None,
        steady_allocations: sent.steady,
    })
}

/// The latency figures of [`Case::Paced`], in ms (all `None` without frames).
#[derive(Default)]
struct Latency {
    p50: Option<f64>,
    p99: Option<f64>,
    added_p99: Option<f64>,
}

impl Latency {
    /// From the sender's (submit, returned) instants per frame index and the
    /// client's (pts, received_at) per delivered frame.
    fn of(spans: &[(Instant, Instant)], arrivals: &[(u64, Instant)]) -> Latency {
        let mut total = Vec::with_capacity(arrivals.len());
        let mut added = Vec::with_capacity(arrivals.len());
        for &(pts, received) in arrivals {
            let Some(&(submitted, returned)) = usize::try_from(pts).ok().and_then(|i| spans.get(i)) else {
                continue;
            };
            let latency = received.saturating_duration_since(submitted);
            let span = returned.saturating_duration_since(submitted);
            total.push(latency.as_secs_f64() * 1e3);
            added.push(latency.saturating_sub(span).as_secs_f64() * 1e3);
        }
        total.sort_by(f64::total_cmp);
        added.sort_by(f64::total_cmp);
        Latency {
            p50: percentile(&total, 0.50),
            p99: percentile(&total, 0.99),
            added_p99: percentile(&added, 0.99),
        }
    }
}

/// The nearest-rank `p` quantile of sorted values; `None` when empty.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// Bytes per frame in [`scale`]: 256 KiB.
pub const SCALE_FRAME_BYTES: usize = 256 * 1024;

/// Most clients [`scale`] accepts.
pub const MAX_SCALE_CLIENTS: usize = 64;

/// How long [`scale`] waits for the host to hand over each client's session.
const SCALE_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`scale`] measured: one host streaming to many clients at once.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRow {
    /// Clients connected to the host, each with its own data-plane session.
    pub clients: usize,
    /// Seconds from the start of sending until the last frame reached any
    /// client: the divisor of [`ScaleRow::aggregate_goodput_gbps`].
    pub seconds: f64,
    /// Frame bytes delivered to all clients together, per second, in Gbit/s.
    pub aggregate_goodput_gbps: f64,
    /// Each client's delivered frame bytes per second (from the start until its
    /// own last frame), in Gbit/s, in the order the clients connected.
    pub per_client_gbps: Vec<f64>,
    /// The smallest of [`ScaleRow::per_client_gbps`].
    pub min_client_gbps: f64,
    /// The largest of [`ScaleRow::per_client_gbps`].
    pub max_client_gbps: f64,
    /// CPU seconds of the host's sending threads together (one per client;
    /// they seal, protect and send). The host's QUIC runtime thread is not
    /// counted: it only runs the control plane, idle while frames stream.
    pub host_cpu_seconds: f64,
    /// Frames submitted to all clients together.
    pub frames_sent: u64,
    /// Frames submitted but not delivered whole (lost, or still missing when
    /// the drain ended), over all clients.
    pub frames_lost: u64,
    /// Datagrams the host dropped on send (full socket buffer), over all clients.
    pub send_drops: u64,
}

impl ScaleRow {
    /// Host CPU seconds ([`ScaleRow::host_cpu_seconds`]) per 10^9 bytes of
    /// payload delivered to the clients; `None` if nothing was delivered.
    pub fn host_cpu_seconds_per_gb(&self) -> Option<f64> {
        let bytes = self.aggregate_goodput_gbps * 1e9 / 8.0 * self.seconds;
        (bytes > 0.0).then(|| self.host_cpu_seconds / (bytes / 1e9))
    }
}

/// One host-session / client pair's progress, shared by its two threads.
#[derive(Default)]
struct ScaleLink {
    sent: AtomicU64,
    done: AtomicBool,
}

/// What one client's receiving thread saw.
struct ScaleRecv {
    bytes: u64,
    frames: u64,
    last: Instant,
}

/// One [`punktfunk_core::control::Host`] on 127.0.0.1 streaming to `clients` clients
/// ([`punktfunk_core::control::Client`], each with its own receiving thread) for
/// `seconds`: per client a sending thread submits [`SCALE_FRAME_BYTES`] frames
/// paced to `total_rate_mbps / clients` Mbit/s of goodput, unpaced within the
/// frame. Adaptive FEC is off, so every client keeps the default 10 %.
///
/// Everything is bounded in time: connecting (5 s per client), the host
/// handing over each session (10 s), and the drain (at most three seconds
/// after the sending time).
///
/// Errors: [`ErrorKind::InvalidArgument`] for `clients` outside
/// `1..=`[`MAX_SCALE_CLIENTS`], `seconds` outside (0, 60] or a rate that is not
/// above 0; [`ErrorKind::Timeout`] when a client or its session does not come
/// up in time; the control plane's and the session's errors; and
/// [`ErrorKind::Internal`] if a thread panicked.
pub fn scale(clients: usize, total_rate_mbps: f64, seconds: f64) -> Result<ScaleRow> {
    use punktfunk_core::control::{Client, ClientConfig, Host, HostConfig, Identity, Trust};

    if !(1..=MAX_SCALE_CLIENTS).contains(&clients) {
        return Err(Error::invalid(format!(
            "scale clients must be in 1..={MAX_SCALE_CLIENTS}, got {clients}"
        )));
    }
    BenchConfig {
        seconds,
        rate_mbps: total_rate_mbps,
        ..BenchConfig::default()
    }
    .validate()?;
    let host = Host::with_identity(
        HostConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            adaptive_fec: None,
            ..HostConfig::default()
        },
        Identity::generate()?,
    )?;
    let addr = host.local_addr()?;
    let trust = Trust::Pin(host.fingerprint());
    let mut peers = Vec::with_capacity(clients);
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        peers.push(Client::connect(addr, ClientConfig::new(trust.clone()))?);
        let session = host.accept(Some(SCALE_ACCEPT_TIMEOUT))?.ok_or_else(|| {
            Error::new(
                ErrorKind::Timeout,
                format!("scale: the host handed over no session within {SCALE_ACCEPT_TIMEOUT:?}"),
            )
        })?;
        sessions.push(session);
    }
    // Pair every client with its own host session.
    let mut paired = Vec::with_capacity(clients);
    for c in &peers {
        let i = sessions
            .iter()
            .position(|s| s.session_id() == c.session_id())
            .ok_or_else(|| Error::new(ErrorKind::Internal, "scale: a client has no host session"))?;
        paired.push(sessions.swap_remove(i));
    }
    let links: Vec<ScaleLink> = (0..clients).map(|_| ScaleLink::default()).collect();
    let rate_bps = total_rate_mbps * 1e6 / clients as f64;
    let frame = vec![0xA5u8; SCALE_FRAME_BYTES];
    let start = Instant::now();
    let (sent, got) = thread::scope(|s| {
        let senders: Vec<_> = paired
            .iter()
            .zip(&links)
            .map(|(session, link)| {
                let frame = frame.as_slice();
                s.spawn(move || {
                    let cpu0 = thread_cpu();
                    let mut out = SendSide::default();
                    let mut p = Pacer::new(start, seconds, frame.len(), Some(rate_bps));
                    while p.next() {
                        let meta = FrameMeta {
                            pts: out.frames,
                            keyframe: out.frames == 0,
                        };
                        if let Err(e) = session.submit_frame(frame, meta) {
                            out.error = Some(e);
                            break;
                        }
                        out.frames += 1;
                        link.sent.store(out.frames, Ordering::Release);
                    }
                    // The queued frames go out before the drops are counted.
                    if let Err(e) = session.sender().finish(Duration::from_secs(5)) {
                        out.error.get_or_insert(e);
                    }
                    out.drops = session.stats().packets_send_dropped;
                    out.cpu = thread_cpu() - cpu0;
                    link.done.store(true, Ordering::Release);
                    out
                })
            })
            .collect();
        // Each client moves into its thread and is closed there when done, so
        // the clients close in parallel.
        let receivers: Vec<_> = peers
            .into_iter()
            .zip(&links)
            .map(|(mut client, link)| {
                s.spawn(move || {
                    let mut drain = Drain::new(&link.done, start, seconds);
                    let mut got = ScaleRecv {
                        bytes: 0,
                        frames: 0,
                        last: start,
                    };
                    let mut finished = 0u64;
                    while !drain.over(finished >= link.sent.load(Ordering::Acquire)) {
                        match client.recv_frame(Duration::from_millis(20)) {
                            Ok(Some(FrameEvent::Frame(f))) => {
                                finished += 1;
                                got.frames += 1;
                                got.bytes += f.data.len() as u64;
                                (drain.last, got.last) = (f.received_at, f.received_at);
                                client.recycle(f.data);
                            }
                            Ok(Some(FrameEvent::Lost { count, .. })) => finished += count,
                            Ok(None) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(got)
                })
            })
            .collect();
        let sent = senders
            .into_iter()
            .map(|h| h.join().map_err(|_| panicked("sending")))
            .collect::<Result<Vec<SendSide>>>();
        let got = receivers
            .into_iter()
            .map(|h| h.join().map_err(|_| panicked("receiving")).and_then(|r| r))
            .collect::<Result<Vec<ScaleRecv>>>();
        (sent, got)
    });
    let mut sent = sent?;
    if let Some(e) = sent.iter_mut().find_map(|s| s.error.take()) {
        return Err(e);
    }
    let got = got?;
    let secs_of = |last: Instant| (last - start).as_secs_f64().max(1e-9);
    let per_client_gbps: Vec<f64> = got
        .iter()
        .map(|g| g.bytes as f64 * 8.0 / secs_of(g.last) / 1e9)
        .collect();
    let secs = got.iter().map(|g| secs_of(g.last)).fold(1e-9, f64::max);
    let bytes: u64 = got.iter().map(|g| g.bytes).sum();
    let frames_sent: u64 = sent.iter().map(|s| s.frames).sum();
    let delivered: u64 = got.iter().map(|g| g.frames).sum();
    Ok(ScaleRow {
        clients,
        seconds: secs,
        aggregate_goodput_gbps: bytes as f64 * 8.0 / secs / 1e9,
        min_client_gbps: per_client_gbps.iter().copied().fold(f64::INFINITY, f64::min),
        max_client_gbps: per_client_gbps.iter().copied().fold(0.0, f64::max),
        per_client_gbps,
        host_cpu_seconds: sent.iter().map(|s| s.cpu).sum(),
        frames_sent,
        frames_lost: frames_sent.saturating_sub(delivered),
        send_drops: sent.iter().map(|s| s.drops).sum(),
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
        assert_eq!(Case::parse("raw-gso"), Some(Case::RawGso));
        assert_eq!(Case::ALL.len(), 6);
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
            let config = BenchConfig {
                seconds,
                rate_mbps,
                ..BenchConfig::default()
            };
            let e = run(Case::Paced, &config).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn workload_matches_the_documented_figures() {
        let w = Workload::new();
        assert_eq!((w.frame_bytes, w.datagram, w.per_frame), (1 << 20, 1401, 860));
    }

    #[test]
    fn segmented_buffers_count_every_datagram() {
        assert_eq!(
            datagrams_in(&[
                RecvMeta::single(1401),
                RecvMeta {
                    len: 2802,
                    segment: 1401,
                    arrival: None
                },
                RecvMeta {
                    len: 2000,
                    segment: 1401,
                    arrival: None
                },
                RecvMeta::single(0),
            ]),
            1 + 2 + 2 + 1
        );
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), Some(4.0));
    }

    fn check_short_run(case: Case, config: BenchConfig) -> Row {
        let row = run(case, &config).unwrap();
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
        assert!(row.tx_cpu_seconds_per_gb().is_some(), "{row:?}");
        row
    }

    fn short(seconds: f64) -> BenchConfig {
        BenchConfig {
            seconds,
            ..BenchConfig::default()
        }
    }

    #[test]
    fn short_raw_batch_run_delivers() {
        let row = check_short_run(Case::RawBatch, short(0.2));
        assert!(!row.offload, "{row:?}");
        assert_eq!(row.latency_p50_ms, None);
        assert_eq!(row.allocations, None);
    }

    #[test]
    fn short_raw_gso_run_delivers_and_counts_every_datagram() {
        let row = check_short_run(Case::RawGso, short(0.3));
        // Each received datagram is counted once, whether GRO merged it or not.
        assert!(row.packets_received <= row.packets_sent, "{row:?}");
        assert_eq!(row.wire_bytes, row.packets_received * 1401, "{row:?}");
    }

    #[test]
    fn short_unpaced_session_run_delivers_and_counts_allocations() {
        fn fake_counter() -> u64 {
            7
        }
        let config = BenchConfig {
            seconds: 0.2,
            offload: false,
            alloc_counter: Some(fake_counter),
            ..BenchConfig::default()
        };
        let row = check_short_run(Case::Unpaced, config);
        assert!(row.name.ends_with("sendmmsg/recvmmsg"), "{row:?}");
        assert!(!row.offload, "{row:?}");
        assert_eq!(row.allocations, Some(0));
        assert_eq!(row.allocations_per_packet(), Some(0.0));
    }

    #[test]
    fn short_paced_run_measures_latency() {
        let config = BenchConfig {
            seconds: 0.3,
            rate_mbps: 200.0,
            ..BenchConfig::default()
        };
        let row = check_short_run(Case::Paced, config);
        let (p50, p99) = (row.latency_p50_ms.unwrap(), row.latency_p99_ms.unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{row:?}");
        let added = row.added_latency_p99_ms.unwrap();
        assert!((0.0..=p99).contains(&added), "{row:?}");
    }

    #[test]
    fn scale_streams_to_every_client() {
        let row = scale(2, 100.0, 0.5).unwrap();
        assert_eq!(row.clients, 2);
        assert_eq!(row.per_client_gbps.len(), 2);
        assert!(row.per_client_gbps.iter().all(|&g| g > 0.0), "{row:?}");
        assert!(row.min_client_gbps > 0.0 && row.max_client_gbps >= row.min_client_gbps);
        assert!(row.aggregate_goodput_gbps > 0.0 && row.frames_sent > 0, "{row:?}");
        for clients in [0, MAX_SCALE_CLIENTS + 1] {
            assert_eq!(
                scale(clients, 100.0, 0.5).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
    }
}
