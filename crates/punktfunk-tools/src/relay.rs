//! Carrying other programs' UDP datagrams as frames: the datagram bundles of
//! the command line (docs/PROTOCOL.md §11), and the two ends of a UDP relay.
//!
//! A bundle is a frame `0x02 ‖ (u16 big-endian length ‖ datagram)*`: datagram
//! boundaries survive the trip. [`UdpSource`] reads datagrams from a socket
//! and bundles them; [`UdpSink`] unbundles frames and sends the datagrams on.
//! Both use the batched (and, where the kernel has them, GSO/GRO) system calls
//! of [`UdpTransport`], so a relay costs a handful of system calls per bundle,
//! not one per datagram.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_core::error::{Error, ErrorKind, Result};
use punktfunk_core::transport::{
    RecvMeta, Transport, UdpConfig, UdpTransport, RECV_BATCH, SEGMENTED_RECV_BUFFER,
};

/// First byte of a frame holding a piece of a byte stream.
pub const TAG_BYTES: u8 = 0x01;
/// First byte of a frame holding a datagram bundle.
pub const TAG_DATAGRAMS: u8 = 0x02;
/// First byte of a synthetic test frame.
pub const TAG_SYNTHETIC: u8 = 0x03;
/// Largest datagram a bundle can hold (its length is 16 bits).
pub const MAX_BUNDLED_DATAGRAM: usize = u16::MAX as usize;

/// Collects datagrams into bundles of at most `limit` bytes (a single larger
/// datagram makes a bundle of its own).
#[derive(Debug)]
pub struct Bundler {
    buf: Vec<u8>,
    count: usize,
    limit: usize,
}

impl Bundler {
    /// An empty bundler for bundles of at most `limit` bytes.
    pub fn new(limit: usize) -> Bundler {
        Bundler {
            buf: vec![TAG_DATAGRAMS],
            count: 0,
            limit,
        }
    }

    /// Datagrams in the bundle being built.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds a datagram (at most [`MAX_BUNDLED_DATAGRAM`] bytes; longer ones
    /// are refused with `false`). If it does not fit, the bundle so far is
    /// finished first and handed to `out`.
    pub fn push(&mut self, d: &[u8], out: &mut impl FnMut(Vec<u8>, usize)) -> bool {
        if d.len() > MAX_BUNDLED_DATAGRAM {
            return false;
        }
        if self.count > 0 && self.buf.len() + 2 + d.len() > self.limit {
            self.flush(out);
        }
        self.buf.extend_from_slice(&(d.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(d);
        self.count += 1;
        true
    }

    /// Hands the bundle being built (if any) to `out` with its datagram count.
    pub fn flush(&mut self, out: &mut impl FnMut(Vec<u8>, usize)) {
        if self.count == 0 {
            return;
        }
        let mut next = Vec::with_capacity(self.limit.min(1 << 20));
        next.push(TAG_DATAGRAMS);
        let done = std::mem::replace(&mut self.buf, next);
        out(done, std::mem::take(&mut self.count));
    }
}

/// The datagrams of a bundle frame, in order; `None` if the frame is not a
/// well-formed bundle (a wrong tag, or a length running past the end).
pub fn unbundle(frame: &[u8]) -> Option<Vec<&[u8]>> {
    datagrams(frame).map(Iterator::collect)
}

/// An iterator over the datagrams of a bundle frame, checked whole first:
/// `None` if it is malformed. Allocates nothing.
pub fn datagrams(frame: &[u8]) -> Option<Datagrams<'_>> {
    let (&tag, rest) = frame.split_first()?;
    if tag != TAG_DATAGRAMS {
        return None;
    }
    let mut check = rest;
    while !check.is_empty() {
        let len = usize::from(u16::from_be_bytes([*check.first()?, *check.get(1)?]));
        check = check.get(2 + len..)?;
    }
    Some(Datagrams(rest))
}

/// The datagrams of a checked bundle (see [`datagrams`]).
#[derive(Clone, Debug)]
pub struct Datagrams<'a>(&'a [u8]);

impl<'a> Iterator for Datagrams<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(u16::from_be_bytes([*self.0.first()?, *self.0.get(1)?]));
        let d = self.0.get(2..2 + len)?;
        self.0 = &self.0[2 + len..];
        Some(d)
    }
}

/// What a [`UdpSource`] has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Datagrams read and bundled.
    pub datagrams: u64,
    /// Bundles handed on.
    pub bundles: u64,
    /// Datagrams too long for a bundle, dropped.
    pub oversize: u64,
    /// Datagrams from senders the [`SourceFilter`] refused, dropped unread.
    pub refused: u64,
}

/// Whose datagrams a [`UdpSource`] takes. Anything else is dropped and
/// counted ([`SourceCounters::refused`]) before it is bundled, so it can
/// neither reach the clients nor end the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFilter {
    /// Anyone who can reach the port.
    Any,
    /// Loopback addresses only (127.0.0.0/8, ::1, and IPv4-mapped loopback).
    Loopback,
    /// One address, from any port (`None`) or one port.
    From(IpAddr, Option<u16>),
}

impl SourceFilter {
    /// Parses `any`, `loopback`, an IP address (any port), or `IP:PORT`
    /// (IPv6 in brackets: `[::1]:5000`).
    pub fn parse(text: &str) -> Result<SourceFilter> {
        match text {
            "any" => return Ok(SourceFilter::Any),
            "loopback" => return Ok(SourceFilter::Loopback),
            _ => {}
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(SourceFilter::From(ip, None));
        }
        match text.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(SourceFilter::From(a.ip(), Some(a.port()))),
            _ => Err(Error::invalid(format!(
                "source filter {text:?} is not any, loopback, IP or IP:PORT"
            ))),
        }
    }

    /// Whether a datagram from `src` is taken.
    pub fn accepts(&self, src: SocketAddr) -> bool {
        let ip = src.ip().to_canonical();
        match *self {
            SourceFilter::Any => true,
            SourceFilter::Loopback => ip.is_loopback(),
            SourceFilter::From(want, port) => {
                ip == want.to_canonical() && port.is_none_or(|p| p == src.port())
            }
        }
    }
}

/// Reads datagrams from a UDP socket on a thread of its own and hands them on
/// in bundles: a bundle goes out `window` after its first datagram, or as soon
/// as the next datagram would take it past `max_bundle` bytes. An empty
/// datagram ends the input (the last bundle goes out, then `on_end`). Only
/// datagrams the [`SourceFilter`] accepts count, the empty one included.
pub struct UdpSource {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<[AtomicU64; 4]>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UdpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSource")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl UdpSource {
    /// Binds `bind` and starts reading what `allow` accepts. `on_bundle` gets
    /// each bundle and its datagram count; `on_end` runs once when the input
    /// ends (an empty datagram) or the socket fails (with the error).
    pub fn start(
        bind: SocketAddr,
        allow: SourceFilter,
        max_bundle: usize,
        window: Duration,
        on_bundle: impl FnMut(Vec<u8>, usize) + Send + 'static,
        on_end: impl FnOnce(Option<Error>) + Send + 'static,
    ) -> Result<UdpSource> {
        let sock = UdpTransport::bind(bind, &UdpConfig::default())
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read datagrams on {bind}: {e}")))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let (s, c) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("punktfunk-udp-in".into())
            .spawn(move || {
                let r = read_loop(&sock, allow, max_bundle, window, &s, &c, on_bundle);
                on_end(r.err());
            })
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the UDP reader: {e}")))?;
        Ok(UdpSource {
            addr,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The address it reads on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has counted so far.
    pub fn counters(&self) -> SourceCounters {
        let c = &self.counters;
        SourceCounters {
            datagrams: c[0].load(Ordering::Relaxed),
            bundles: c[1].load(Ordering::Relaxed),
            oversize: c[2].load(Ordering::Relaxed),
            refused: c[3].load(Ordering::Relaxed),
        }
    }

    /// Stops reading (the bundle being built is dropped) and waits for the thread.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpSource {
    fn drop(&mut self) {
        self.close();
    }
}

/// Longest the reader sleeps before checking whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(20);

fn read_loop(
    sock: &UdpTransport,
    allow: SourceFilter,
    max_bundle: usize,
    window: Duration,
    stop: &AtomicBool,
    counters: &[AtomicU64; 4],
    mut on_bundle: impl FnMut(Vec<u8>, usize),
) -> Result<()> {
    let segmented = sock.enable_segmented_receive();
    let len = if segmented {
        SEGMENTED_RECV_BUFFER
    } else {
        MAX_BUNDLED_DATAGRAM + 1
    };
    let mut bufs = vec![vec![0u8; len]; RECV_BATCH];
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    let mut from = [None; RECV_BATCH];
    let mut bundler = Bundler::new(max_bundle);
    let mut first_at: Option<Instant> = None;
    let mut out = |b: Vec<u8>, n: usize| {
        counters[1].fetch_add(1, Ordering::Relaxed);
        on_bundle(b, n);
    };
    while !stop.load(Ordering::Relaxed) {
        let n = sock.recv_batch_from(&mut bufs, &mut meta, &mut from)?;
        let mut ended = false;
        for i in 0..n {
            let RecvMeta {
                len: total, segment, ..
            } = meta[i];
            if !from[i].is_some_and(|a| allow.accepts(a)) {
                // A coalesced buffer holds several datagrams of one sender.
                let count = total.div_ceil(segment.max(1)).max(1);
                counters[3].fetch_add(count as u64, Ordering::Relaxed);
                continue;
            }
            if total == 0 {
                ended = true;
                break;
            }
            let seg = if segment == 0 || segment > total {
                total
            } else {
                segment
            };
            for d in bufs[i][..total].chunks(seg) {
                if bundler.push(d, &mut out) {
                    counters[0].fetch_add(1, Ordering::Relaxed);
                    first_at.get_or_insert_with(Instant::now);
                } else {
                    counters[2].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if ended {
            bundler.flush(&mut out);
            return Ok(());
        }
        // A bundle leaves once it is `window` old, whatever else arrives.
        let now = Instant::now();
        match first_at {
            Some(t) if now.duration_since(t) >= window || bundler.count() == 0 => {
                bundler.flush(&mut out);
                first_at = None;
            }
            _ => {}
        }
        if n == 0 {
            let wait = first_at.map_or(STOP_CHECK, |t| {
                (t + window).saturating_duration_since(now).min(STOP_CHECK)
            });
            sock.wait_readable(wait.max(Duration::from_micros(50)))?;
        }
    }
    Ok(())
}

/// What a [`UdpSink`] has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// Datagrams the socket refused (its buffer was full).
    pub dropped: u64,
    /// Frames that were not well-formed bundles.
    pub malformed: u64,
}

/// Sends datagrams to one address from an unconnected socket, so a receiver
/// that is not listening yet (or restarts) costs only the datagrams sent
/// meanwhile, never an error.
#[derive(Debug)]
pub struct UdpSink {
    sock: UdpTransport,
    counters: SinkCounters,
}

/// Datagrams handed to the socket per call at most (slices on the stack).
const SINK_CHUNK: usize = 1024;

impl UdpSink {
    /// A socket on an ephemeral port sending to `target`.
    pub fn open(target: SocketAddr) -> Result<UdpSink> {
        let local: SocketAddr = if target.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let sock = UdpTransport::bind_filtered(local, target, &UdpConfig::default()).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot open a UDP socket for {target}: {e}"),
            )
        })?;
        Ok(UdpSink {
            sock,
            counters: SinkCounters::default(),
        })
    }

    /// What it has counted so far.
    pub fn counters(&self) -> SinkCounters {
        self.counters
    }

    /// Sends each datagram of a bundle frame, in order. Returns how many went
    /// out; a malformed frame is counted and sends nothing.
    pub fn send_bundle(&mut self, frame: &[u8]) -> Result<usize> {
        match datagrams(frame) {
            Some(ds) => self.send_all(ds),
            None => {
                self.counters.malformed += 1;
                Ok(0)
            }
        }
    }

    /// Sends a byte-stream piece cut into datagrams of `datagram_bytes`.
    pub fn send_bytes(&mut self, bytes: &[u8], datagram_bytes: usize) -> Result<usize> {
        if datagram_bytes == 0 {
            return Err(Error::invalid("datagram size must be above zero"));
        }
        self.send_all(bytes.chunks(datagram_bytes))
    }

    fn send_all<'a>(&mut self, mut ds: impl Iterator<Item = &'a [u8]>) -> Result<usize> {
        let mut refs: [&[u8]; SINK_CHUNK] = [&[]; SINK_CHUNK];
        let mut sent_total = 0;
        loop {
            let mut n = 0;
            for d in ds.by_ref().take(SINK_CHUNK) {
                refs[n] = d;
                n += 1;
            }
            if n == 0 {
                return Ok(sent_total);
            }
            let sent = self.sock.send_batch(&refs[..n])?.min(n);
            self.counters.datagrams += sent as u64;
            self.counters.dropped += (n - sent) as u64;
            sent_total += sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_keep_every_boundary_and_refuse_what_does_not_parse() {
        let mut got = Vec::new();
        let mut out = |b: Vec<u8>, n: usize| got.push((b, n));
        let mut b = Bundler::new(4000);
        let ds: Vec<Vec<u8>> = [0usize, 1, 1316, 1316, 1316, 5000, 7]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        for d in &ds {
            assert!(b.push(d, &mut out));
        }
        assert!(
            !b.push(&vec![0u8; MAX_BUNDLED_DATAGRAM + 1], &mut out),
            "too long for 16 bits"
        );
        b.flush(&mut out);
        // 4000-byte bundles: [0, 1, 1316, 1316, 1316] (3960 bytes) | [5000 alone] | [7]
        let counts: Vec<usize> = got.iter().map(|g| g.1).collect();
        assert_eq!(counts, vec![5, 1, 1]);
        assert!(
            got.iter().all(|(f, n)| f.len() <= 4000 || *n == 1),
            "only a lone datagram may exceed the limit"
        );
        let all: Vec<Vec<u8>> = got
            .iter()
            .flat_map(|(f, _)| unbundle(f).unwrap().into_iter().map(|d| d.to_vec()))
            .collect();
        assert_eq!(all, ds);
        let f = &got[0].0;
        assert_eq!(unbundle(&f[..f.len() - 1]), None, "a cut bundle");
        assert_eq!(unbundle(&[TAG_BYTES, 0, 0]), None, "another tag");
        assert_eq!(unbundle(&[]), None);
        assert_eq!(unbundle(&[TAG_DATAGRAMS]).unwrap().len(), 0, "an empty bundle");
    }

    #[test]
    fn a_relay_carries_datagrams_from_one_socket_to_another_in_bundles() {
        let plain = UdpConfig {
            gso: punktfunk_core::transport::Offload::Off,
            gro: punktfunk_core::transport::Offload::Off,
            ..UdpConfig::default()
        };
        let receiver = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &plain).unwrap();
        let mut sink = UdpSink::open(receiver.local_addr().unwrap()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel();
        let mut source = UdpSource::start(
            "127.0.0.1:0".parse().unwrap(),
            SourceFilter::Loopback,
            64 * 1024,
            Duration::from_millis(2),
            move |b, n| {
                let _ = tx.send((b, n));
            },
            move |e| {
                let _ = end_tx.send(e.map(|e| e.to_string()));
            },
        )
        .unwrap();
        let sender = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &plain).unwrap();
        sender.connect(source.local_addr()).unwrap();
        let msgs: Vec<Vec<u8>> = (0..500u32)
            .map(|i| {
                (0..(1 + (i as usize * 37) % 1400))
                    .map(|j| (i as usize + j) as u8)
                    .collect()
            })
            .collect();
        for chunk in msgs.chunks(50) {
            let refs: Vec<&[u8]> = chunk.iter().map(|m| m.as_slice()).collect();
            assert_eq!(sender.send_batch(&refs).unwrap(), refs.len());
        }
        sender.send(&[]).unwrap();
        assert_eq!(
            end_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            None,
            "the empty datagram ends the input"
        );
        let mut bundles = 0;
        while let Ok((b, n)) = rx.try_recv() {
            bundles += 1;
            assert_eq!(sink.send_bundle(&b).unwrap(), n);
        }
        assert!(
            bundles < msgs.len() / 4,
            "{bundles} bundles for {} datagrams",
            msgs.len()
        );
        assert_eq!(source.counters().datagrams, msgs.len() as u64);
        source.close();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < msgs.len() && Instant::now() < deadline {
            match receiver.recv_one(&mut buf).unwrap() {
                Some(n) => got.push(buf[..n].to_vec()),
                None => {
                    receiver.wait_readable(Duration::from_millis(50)).unwrap();
                }
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(sink.counters().datagrams, msgs.len() as u64);
        assert_eq!(sink.send_bundle(&[9, 9]).unwrap(), 0);
        assert_eq!(sink.counters().malformed, 1);
    }

    #[test]
    fn source_filters_match_addresses_and_ports() {
        let a: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(SourceFilter::Any.accepts(a));
        assert!(!SourceFilter::Loopback.accepts(a));
        assert!(SourceFilter::Loopback.accepts("127.3.2.1:9".parse().unwrap()));
        assert!(SourceFilter::Loopback.accepts("[::1]:9".parse().unwrap()));
        assert!(SourceFilter::Loopback.accepts("[::ffff:127.0.0.1]:9".parse().unwrap()));
        assert!(SourceFilter::From(ip, None).accepts(a));
        assert!(SourceFilter::From(ip, None).accepts(mapped));
        assert!(SourceFilter::From(ip, Some(5000)).accepts(a));
        assert!(!SourceFilter::From(ip, Some(5001)).accepts(a));
        assert!(!SourceFilter::From("192.0.2.8".parse().unwrap(), None).accepts(a));
        assert_eq!(SourceFilter::parse("any").unwrap(), SourceFilter::Any);
        assert_eq!(SourceFilter::parse("loopback").unwrap(), SourceFilter::Loopback);
        assert_eq!(
            SourceFilter::parse("192.0.2.7").unwrap(),
            SourceFilter::From(ip, None)
        );
        assert_eq!(
            SourceFilter::parse("192.0.2.7:5000").unwrap(),
            SourceFilter::From(ip, Some(5000))
        );
        assert_eq!(
            SourceFilter::parse("[::1]:7").unwrap(),
            SourceFilter::From("::1".parse().unwrap(), Some(7))
        );
        for bad in ["", "host:1", "192.0.2.7:0", "192.0.2.7:x", "[::1]"] {
            assert!(SourceFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_sender_neither_reaches_the_bundles_nor_ends_the_input() {
        let plain = UdpConfig {
            gso: punktfunk_core::transport::Offload::Off,
            gro: punktfunk_core::transport::Offload::Off,
            ..UdpConfig::default()
        };
        let friend = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &plain).unwrap();
        let stranger = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &plain).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel();
        let allow = SourceFilter::From(
            "127.0.0.1".parse().unwrap(),
            Some(friend.local_addr().unwrap().port()),
        );
        let mut source = UdpSource::start(
            "127.0.0.1:0".parse().unwrap(),
            allow,
            64 * 1024,
            Duration::from_millis(1),
            move |b, n| {
                let _ = tx.send((b, n));
            },
            move |e| {
                let _ = end_tx.send(e.map(|e| e.to_string()));
            },
        )
        .unwrap();
        stranger.connect(source.local_addr()).unwrap();
        friend.connect(source.local_addr()).unwrap();
        for _ in 0..10 {
            stranger.send(b"injected").unwrap();
        }
        stranger.send(&[]).unwrap();
        friend.send(b"wanted").unwrap();
        let (b, n) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((unbundle(&b).unwrap(), n), (vec![&b"wanted"[..]], 1));
        assert!(
            end_rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "the stranger's empty datagram did not end the input"
        );
        assert_eq!(source.counters().refused, 11);
        assert_eq!(source.counters().datagrams, 1);
        friend.send(&[]).unwrap();
        assert_eq!(end_rx.recv_timeout(Duration::from_secs(5)).unwrap(), None);
        source.close();
    }
}
