//! Connected, non-blocking UDP with batched system calls on Linux.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::sys::{os as sys, Buffer};
use super::{is_transient, IoCounters, RecvMeta, Transport, RECV_BATCH, SEND_BATCH};

/// Socket buffer size we ask for on both sides: 32 MiB holds several multi-MB
/// keyframes in flight, where the Linux default (~208 KB) overflows on one.
pub const DESIRED_SOCKET_BUFFER: usize = 32 * 1024 * 1024;

/// Whether to use a kernel offload: UDP GSO (`UDP_SEGMENT`) on send, UDP GRO
/// (`UDP_GRO`) on receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Offload {
    /// Use it where the kernel offers it, else the batched calls
    /// (`sendmmsg`/`recvmmsg`). A GSO send the kernel refuses later (a device
    /// without checksum offload) turns GSO off for the socket and is retried
    /// without it.
    #[default]
    Auto,
    /// Require it: binding fails with `Unsupported` where the kernel lacks it.
    On,
    /// Never: always the batched calls.
    Off,
}

/// Options for [`UdpTransport`].
#[derive(Clone, Debug)]
pub struct UdpConfig {
    /// Socket buffer size to request for send and receive, in bytes.
    pub socket_buffer: usize,
    /// UDP GSO for sending (default [`Offload::Auto`]).
    pub gso: Offload,
    /// UDP GRO for receiving, once a receiver asks for segmented receive
    /// (default [`Offload::Auto`]).
    pub gro: Offload,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            socket_buffer: DESIRED_SOCKET_BUFFER,
            gso: Offload::Auto,
            gro: Offload::Auto,
        }
    }
}

/// What the kernel granted for the socket buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferReport {
    /// Bytes requested for each buffer.
    pub requested: usize,
    /// Usable send-buffer bytes granted (0 where the OS does not say).
    pub send_granted: usize,
    /// Usable receive-buffer bytes granted (0 where the OS does not say).
    pub recv_granted: usize,
    /// Whether the privileged `SO_*BUFFORCE` options worked (root / CAP_NET_ADMIN).
    pub forced: bool,
}

impl BufferReport {
    /// A warning with the fix, when either buffer is less than half the request.
    pub fn warning(&self) -> Option<String> {
        let low = self.send_granted.min(self.recv_granted);
        if !cfg!(target_os = "linux") || low * 2 >= self.requested {
            return None;
        }
        Some(format!(
            "socket buffers are {} KiB send / {} KiB receive, far below the {} KiB wanted; \
             bursts of large frames may be dropped. Raise the limits (as root):\n  \
             sysctl -w net.core.rmem_max={req} net.core.wmem_max={req}\n\
             or install scripts/99-punktfunk-net.conf into /etc/sysctl.d/",
            self.send_granted / 1024,
            self.recv_granted / 1024,
            self.requested / 1024,
            req = self.requested,
        ))
    }
}

/// A UDP socket connected to one peer, non-blocking, with large buffers.
///
/// On Linux `send_batch` uses `sendmmsg` ([`SEND_BATCH`] per call, or with UDP
/// GSO up to 64 datagrams per message and 1024 per call) and `recv_batch` uses
/// `recvmmsg` with `MSG_DONTWAIT` (with UDP GRO once
/// [`Transport::enable_segmented_receive`] turned it on); elsewhere both fall back to one system call
/// per datagram.
#[derive(Debug)]
pub struct UdpTransport {
    sock: UdpSocket,
    buffers: BufferReport,
    /// GSO is in use for sends (may be turned off by a refused send in `Auto`).
    gso: std::sync::atomic::AtomicBool,
    gso_mode: Offload,
    gro_mode: Offload,
    /// GRO is on: reads return coalesced runs.
    gro: std::sync::atomic::AtomicBool,
    /// Whether receives ask for the kernel's arrival time.
    stamps: std::sync::atomic::AtomicBool,
    send_calls: AtomicU64,
    recv_calls: AtomicU64,
    wait_calls: AtomicU64,
    /// Filtering mode ([`UdpTransport::bind_filtered`]): the only peer, checked in
    /// user space so that datagrams from anyone else are counted, not just lost.
    filter: std::sync::RwLock<Option<SocketAddr>>,
    foreign: AtomicU64,
    /// [`UdpTransport::connect`] succeeded (the kernel knows the peer).
    connected: std::sync::atomic::AtomicBool,
}

impl UdpTransport {
    /// Binds a non-blocking socket on `local` (port 0 picks a free port) and sizes
    /// its buffers. Call [`UdpTransport::connect`] before sending.
    /// Fails with `Unsupported` if `config` requires GSO ([`Offload::On`]) and
    /// the kernel lacks it.
    pub fn bind(local: SocketAddr, config: &UdpConfig) -> io::Result<Self> {
        let sock = UdpSocket::bind(local)?;
        sock.set_nonblocking(true)?;
        let buffers = size_buffers(&sock, config.socket_buffer)?;
        let gso = match config.gso {
            Offload::Off => false,
            mode => {
                let ok = sys::gso_supported(&sock);
                if !ok && mode == Offload::On {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "UDP GSO (UDP_SEGMENT) is not supported by this kernel",
                    ));
                }
                ok
            }
        };
        if config.gro == Offload::On && !gro_supported(&sock) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "UDP GRO (UDP_GRO) is not supported by this kernel",
            ));
        }
        Ok(UdpTransport {
            connected: std::sync::atomic::AtomicBool::new(false),
            sock,
            buffers,
            gso: std::sync::atomic::AtomicBool::new(gso),
            gso_mode: config.gso,
            gro_mode: config.gro,
            gro: std::sync::atomic::AtomicBool::new(false),
            stamps: std::sync::atomic::AtomicBool::new(false),
            send_calls: AtomicU64::new(0),
            recv_calls: AtomicU64::new(0),
            wait_calls: AtomicU64::new(0),
            filter: std::sync::RwLock::new(None),
            foreign: AtomicU64::new(0),
        })
    }

    /// Binds on `local` for one peer without connecting the socket: sends go to
    /// `peer`, and datagrams from any other source are dropped and counted
    /// ([`IoCounters::foreign_dropped`], the session's `recv_dropped_foreign`).
    /// A connected socket ([`UdpTransport::connect_to`]) filters in the kernel
    /// instead, where nothing can count the drops.
    pub fn bind_filtered(local: SocketAddr, peer: SocketAddr, config: &UdpConfig) -> io::Result<Self> {
        let t = UdpTransport::bind(local, config)?;
        t.set_filter_peer(peer);
        Ok(t)
    }

    /// Switches to (or re-aims) filtering mode: `peer` becomes the only source
    /// accepted and the destination of sends.
    pub fn set_filter_peer(&self, peer: SocketAddr) {
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) = Some(peer);
    }

    fn filter_peer(&self) -> Option<SocketAddr> {
        *self.filter.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds on `local` and connects to `remote` in one step.
    pub fn connect_to(local: SocketAddr, remote: SocketAddr, config: &UdpConfig) -> io::Result<Self> {
        let t = UdpTransport::bind(local, config)?;
        t.connect(remote)?;
        Ok(t)
    }

    /// Connects the socket to `remote`: only datagrams from it are received
    /// afterwards, and sends go to it.
    pub fn connect(&self, remote: SocketAddr) -> io::Result<()> {
        self.sock.connect(remote)?;
        self.connected.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether sends have somewhere to go: the socket is connected, or a
    /// filtering peer is set. Without one, a send fails in the kernel.
    pub fn has_peer(&self) -> bool {
        self.connected.load(Ordering::Acquire) || self.filter_peer().is_some()
    }

    /// The locally bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The peer: the filtering peer, else the connected one.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.filter_peer() {
            Some(p) => Ok(p),
            None => self.sock.peer_addr(),
        }
    }

    /// The socket buffer sizes the kernel granted.
    pub fn buffer_report(&self) -> BufferReport {
        self.buffers
    }

    /// Turns on kernel receive timestamps for [`UdpTransport::recv_timestamped`]
    /// (measurement tools). `Unsupported` where the platform has none. For
    /// [`RecvMeta::arrival`] use [`Transport::enable_arrival_times`].
    pub fn enable_rx_timestamps(&self) -> io::Result<()> {
        sys::enable_rx_timestamps(&self.sock)
    }

    /// Receives one datagram without blocking, with the time the kernel
    /// received it (since the Unix epoch) once timestamps are on.
    /// `Ok(None)` when nothing is pending. For measuring burst shapes.
    pub fn recv_timestamped(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Option<Duration>)>> {
        self.recv_calls.fetch_add(1, Ordering::Relaxed);
        sys::recv_timestamped(&self.sock, buf)
    }

    /// Resizes the receive buffer (after binding), e.g. to keep a socket that
    /// expects no input from holding megabytes of unsolicited datagrams.
    /// Returns the usable bytes granted (0 where the platform does not say).
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<usize> {
        sys::set_buffer(&self.sock, Buffer::Recv, bytes).map(|(granted, _)| granted)
    }

    /// Whether sends use UDP GSO right now.
    pub fn gso_active(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Whether receives use UDP GRO (after [`Transport::enable_segmented_receive`]).
    pub fn gro_active(&self) -> bool {
        self.gro.load(Ordering::Relaxed)
    }

    /// Receives one datagram into `buf` without blocking (`Ok(None)` when
    /// nothing is pending), whatever the offloads: for tools that measure one
    /// system call per datagram. Sessions use [`Transport::recv_batch`].
    pub fn recv_one(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            self.recv_calls.fetch_add(1, Ordering::Relaxed);
            let r = match self.filter_peer() {
                Some(peer) => match self.sock.recv_from(buf) {
                    Ok((_, src)) if !same_endpoint(src, peer) => {
                        self.foreign.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    other => other.map(|(n, _)| n),
                },
                None => self.sock.recv(buf),
            };
            return match r {
                Ok(n) => Ok(Some(n)),
                Err(e) if is_transient(&e) => Ok(None),
                Err(e) => Err(e),
            };
        }
    }

    /// Like [`Transport::recv_batch`], but ignoring any filtering peer and
    /// naming each buffer's sender in `from`: for relays that judge senders
    /// by a policy of their own.
    pub fn recv_batch_from(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        from: &mut [Option<SocketAddr>; RECV_BATCH],
    ) -> io::Result<usize> {
        match sys::recv(
            &self.sock,
            bufs,
            meta,
            Some(from),
            self.gro_active(),
            self.stamps.load(Ordering::Relaxed),
            &self.recv_calls,
        ) {
            Ok(n) => Ok(n),
            Err(e) if is_transient(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Datagrams one `send_chunk` call takes at most.
    fn chunk_len(&self) -> usize {
        if self.gso_active() {
            sys::SEND_MAX_DATAGRAMS
        } else {
            SEND_BATCH
        }
    }

    fn send_chunk(&self, chunk: &[&[u8]]) -> io::Result<usize> {
        let dest = self.filter_peer();
        let calls = &self.send_calls;
        if !self.gso_active() {
            return sys::send(&self.sock, chunk, dest.as_ref(), 1, calls);
        }
        match sys::send(&self.sock, chunk, dest.as_ref(), sys::GSO_MAX_SEGMENTS, calls) {
            // A device that cannot segment refuses the send (EIO), and some
            // kernels refuse odd segmentations (EINVAL): in Auto mode, stop
            // using GSO on this socket and send the same datagrams plainly.
            Err(e) if self.gso_mode == Offload::Auto && sys::gso_refused(&e) => {
                self.gso.store(false, Ordering::Relaxed);
                let plain = &chunk[..chunk.len().min(SEND_BATCH)];
                sys::send(&self.sock, plain, dest.as_ref(), 1, calls)
            }
            r => r,
        }
    }

    /// Filtering mode: keeps the datagrams from `peer` at the front of the
    /// batch (in order) and counts the rest as foreign. Returns how many remain.
    fn keep_from(
        &self,
        peer: SocketAddr,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        from: &[Option<SocketAddr>],
        n: usize,
    ) -> usize {
        let mut kept = 0;
        for i in 0..n {
            if from[i].is_some_and(|a| same_endpoint(a, peer)) {
                if kept != i {
                    bufs.swap(kept, i);
                    meta[kept] = meta[i];
                }
                kept += 1;
            } else {
                // A coalesced buffer holds several foreign datagrams.
                let m = meta[i];
                let count = m.len.div_ceil(m.segment.max(1)).max(1);
                self.foreign.fetch_add(count as u64, Ordering::Relaxed);
            }
        }
        kept
    }
}

/// Whether the kernel offers UDP GRO (turned on and straight off again).
fn gro_supported(sock: &UdpSocket) -> bool {
    sys::set_gro(sock, true).is_ok() && sys::set_gro(sock, false).is_ok()
}

/// Whether a datagram's source is the peer: the same IP (IPv4-mapped IPv6
/// counts as IPv4) and port; an IPv6 scope is compared only when both name one.
fn same_endpoint(src: SocketAddr, peer: SocketAddr) -> bool {
    if src.port() != peer.port() || src.ip().to_canonical() != peer.ip().to_canonical() {
        return false;
    }
    match (src, peer) {
        (SocketAddr::V6(a), SocketAddr::V6(b)) => {
            a.scope_id() == 0 || b.scope_id() == 0 || a.scope_id() == b.scope_id()
        }
        _ => true,
    }
}

fn size_buffers(sock: &UdpSocket, bytes: usize) -> io::Result<BufferReport> {
    let (send_granted, send_forced) = sys::set_buffer(sock, Buffer::Send, bytes)?;
    let (recv_granted, recv_forced) = sys::set_buffer(sock, Buffer::Recv, bytes)?;
    Ok(BufferReport {
        requested: bytes,
        send_granted,
        recv_granted,
        forced: send_forced && recv_forced,
    })
}

impl Transport for UdpTransport {
    /// Sends in chunks of [`SEND_BATCH`] (or GSO runs). A full send buffer
    /// ends the batch (the rest are drops); any other transient error (say a
    /// stale ICMP refusal) costs the one datagram it hit and the batch goes on.
    fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        let mut at = 0;
        while at < datagrams.len() {
            let end = (at + self.chunk_len()).min(datagrams.len());
            match self.send_chunk(&datagrams[at..end]) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n;
                    at += n;
                }
                Err(e) if is_buffer_full(&e) => break,
                Err(e) if is_transient(&e) => at += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Plain datagrams one per buffer; once GRO is on (see
    /// [`Transport::enable_segmented_receive`]) coalesced runs. In filtering
    /// mode only the peer's datagrams go on; a batch that held nothing but
    /// foreign ones reads as empty (the caller then waits for more).
    fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let filter = self.filter_peer();
        let mut from = [None; RECV_BATCH];
        let names = filter.is_some().then_some(&mut from);
        let n = match sys::recv(
            &self.sock,
            bufs,
            meta,
            names,
            self.gro_active(),
            self.stamps.load(Ordering::Relaxed),
            &self.recv_calls,
        ) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => 0,
            Err(e) => return Err(e),
        };
        Ok(match filter {
            Some(peer) => self.keep_from(peer, bufs, meta, &from, n),
            None => n,
        })
    }

    fn enable_segmented_receive(&self) -> bool {
        if self.gro_active() {
            return true;
        }
        if self.gro_mode != Offload::Off && sys::set_gro(&self.sock, true).is_ok() {
            self.gro.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn enable_arrival_times(&self) -> bool {
        if !self.stamps.load(Ordering::Relaxed) && sys::enable_rx_timestamps(&self.sock).is_ok() {
            self.stamps.store(true, Ordering::Relaxed);
        }
        self.stamps.load(Ordering::Relaxed)
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        self.wait_calls.fetch_add(1, Ordering::Relaxed);
        sys::wait_readable(&self.sock, timeout)
    }

    fn io_counters(&self) -> IoCounters {
        IoCounters {
            send_syscalls: self.send_calls.load(Ordering::Relaxed),
            recv_syscalls: self.recv_calls.load(Ordering::Relaxed),
            wait_syscalls: self.wait_calls.load(Ordering::Relaxed),
            foreign_dropped: self.foreign.load(Ordering::Relaxed),
        }
    }
}

/// The send buffer is full: everything after this point in a batch is dropped.
fn is_buffer_full(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENOBUFS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn pair() -> (UdpTransport, UdpTransport) {
        crate::transport::testing::udp_pair()
    }

    /// A pair with chosen offloads; `None` where the kernel lacks one asked for.
    fn offload_pair(gso: Offload, gro: Offload) -> Option<(UdpTransport, UdpTransport)> {
        let cfg = UdpConfig {
            gso,
            gro,
            ..UdpConfig::default()
        };
        let a = match UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("skipped: {e}");
                return None;
            }
            r => r.unwrap(),
        };
        let b = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        Some((a, b))
    }

    /// Datagrams of the shape the session sends (equal lengths) with a shorter
    /// one at the end of each run and a lone odd one in between.
    fn gso_shaped() -> Vec<Vec<u8>> {
        let mut lens = vec![1401usize; 150];
        lens[70] = 700; // ends a run: the next datagram starts a new message
        lens.push(333); // the last, shorter segment of the final run
        lens.push(1401);
        lens.iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect()
    }

    #[test]
    fn arrival_times_are_the_kernels_not_the_readers() {
        let (a, b) = pair();
        let on = b.enable_arrival_times();
        let mut bufs = vec![vec![0u8; 2048]; 4];
        let mut meta = [RecvMeta::default(); 4];
        // The kernel turns receive stamping on for the whole stack a moment
        // later (until then it stamps at the read): one datagram through first.
        let warm = Instant::now() + Duration::from_secs(2);
        while on && Instant::now() < warm {
            assert!(a.send(&[1u8; 100]).unwrap());
            std::thread::sleep(Duration::from_millis(10));
            let read_at = Instant::now();
            assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
            if meta[0]
                .arrival
                .is_some_and(|t| t + Duration::from_millis(5) < read_at)
            {
                break;
            }
        }
        let before_send = Instant::now();
        assert!(a.send(&[7u8; 100]).unwrap());
        // The reader is late: the datagram waits in the socket meanwhile.
        std::thread::sleep(Duration::from_millis(30));
        let read_at = Instant::now();
        assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
        assert_eq!(meta[0].len, 100);
        if !on {
            // Where the kernel offers no timestamps (qemu-user refuses
            // SO_TIMESTAMPNS) the reader's clock is the fallback.
            eprintln!("no kernel receive timestamps here");
            assert_eq!(meta[0].arrival, None);
            return;
        }
        let arrival = meta[0].arrival.expect("the kernel stamped it");
        assert!(arrival <= read_at);
        assert!(
            read_at - arrival >= Duration::from_millis(25),
            "stamped on arrival, {:?} before the read",
            read_at - arrival
        );
        assert!(
            arrival + Duration::from_millis(5) >= before_send,
            "not before it was sent"
        );
        // Off by default: a socket that did not ask gets no stamps.
        assert!(a.send(&[8u8; 100]).unwrap() && b.send(&[9u8; 100]).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(a.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
        assert_eq!(meta[0].arrival, None);
    }

    #[test]
    fn has_peer_follows_connect_and_the_filter() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = UdpConfig::default();
        let t = UdpTransport::bind(local, &cfg).unwrap();
        assert!(!t.has_peer(), "a fresh socket has nowhere to send");
        let other = UdpTransport::bind(local, &cfg).unwrap();
        t.connect(other.local_addr().unwrap()).unwrap();
        assert!(t.has_peer());
        let filtered = UdpTransport::bind_filtered(local, other.local_addr().unwrap(), &cfg).unwrap();
        assert!(filtered.has_peer());
    }

    #[test]
    fn gso_sends_runs_in_one_call_and_the_receiver_sees_every_boundary() {
        let Some((a, b)) = offload_pair(Offload::On, Offload::Off) else {
            return;
        };
        assert!(a.gso_active());
        let msgs = gso_shaped();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let before = a.io_counters().send_syscalls;
        assert_eq!(a.send_batch(&refs).unwrap(), msgs.len());
        assert_eq!(
            a.io_counters().send_syscalls - before,
            1,
            "{} datagrams in one sendmmsg of GSO messages",
            msgs.len()
        );
        let mut bufs = vec![vec![0u8; 2048]; 32];
        let (got, _) = drain(&b, msgs.len(), &mut bufs);
        assert_eq!(got, msgs, "same datagrams, same order, same boundaries");
    }

    #[test]
    fn gro_coalesces_and_the_segments_split_back_into_the_datagrams() {
        let Some((a, b)) = offload_pair(Offload::On, Offload::On) else {
            return;
        };
        assert!(b.enable_segmented_receive());
        assert!(b.gro_active());
        let msgs = gso_shaped();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        assert_eq!(a.send_batch(&refs).unwrap(), msgs.len());
        let mut bufs = vec![vec![0u8; crate::transport::SEGMENTED_RECV_BUFFER]; RECV_BATCH];
        let mut meta = [RecvMeta::default(); RECV_BATCH];
        let (mut got, mut coalesced, mut calls) = (Vec::new(), 0, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < msgs.len() && Instant::now() < deadline {
            if !b.wait_readable(Duration::from_millis(100)).unwrap() {
                continue;
            }
            let n = b.recv_batch(&mut bufs, &mut meta).unwrap();
            calls += 1;
            for (buf, m) in bufs.iter().zip(&meta).take(n) {
                if m.segment < m.len {
                    coalesced += 1;
                }
                for d in buf[..m.len].chunks(m.segment) {
                    got.push(d.to_vec());
                }
            }
        }
        assert_eq!(got, msgs);
        assert!(coalesced > 0, "the kernel coalesced datagrams ({calls} reads)");
        assert!(calls < 10, "{} datagrams in {calls} reads", msgs.len());
    }

    #[test]
    fn offload_off_keeps_to_sendmmsg_batches() {
        let Some((a, b)) = offload_pair(Offload::Off, Offload::Off) else {
            return;
        };
        assert!(!a.gso_active());
        assert!(!b.enable_segmented_receive(), "GRO stays off when switched off");
        let msgs = gso_shaped();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let before = a.io_counters().send_syscalls;
        assert_eq!(a.send_batch(&refs).unwrap(), msgs.len());
        if cfg!(target_os = "linux") {
            assert_eq!(
                a.io_counters().send_syscalls - before,
                msgs.len().div_ceil(SEND_BATCH) as u64
            );
        }
        let mut bufs = vec![vec![0u8; 2048]; 32];
        assert_eq!(drain(&b, msgs.len(), &mut bufs).0, msgs);
    }

    fn drain(t: &UdpTransport, want: usize, bufs: &mut [Vec<u8>]) -> (Vec<Vec<u8>>, usize) {
        let mut meta = vec![RecvMeta::default(); bufs.len()];
        let mut out = Vec::new();
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < want && Instant::now() < deadline {
            if !t.wait_readable(Duration::from_millis(100)).unwrap() {
                continue;
            }
            let n = t.recv_batch(bufs, &mut meta).unwrap();
            calls += 1;
            for i in 0..n {
                out.push(bufs[i][..meta[i].len].to_vec());
            }
        }
        (out, calls)
    }

    #[test]
    fn send_batch_delivers_100_datagrams_intact_with_boundaries() {
        let (a, b) = pair();
        let msgs: Vec<Vec<u8>> = (0..100u32)
            .map(|i| {
                (0..(1 + i as usize * 13))
                    .map(|j| (i as usize * 7 + j) as u8)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let before = a.io_counters().send_syscalls;
        assert_eq!(a.send_batch(&refs).unwrap(), 100);
        // 100 datagrams in chunks of 64: exactly two sendmmsg calls on Linux.
        if cfg!(target_os = "linux") {
            assert_eq!(a.io_counters().send_syscalls - before, 2);
        }
        let mut bufs = vec![vec![0u8; 2048]; 32];
        let (got, _) = drain(&b, 100, &mut bufs);
        assert_eq!(got, msgs);
    }

    #[test]
    fn recv_batch_drains_50_datagrams_in_at_most_two_calls() {
        let (a, b) = pair();
        let msgs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1200]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        assert_eq!(a.send_batch(&refs).unwrap(), 50);
        // Loopback delivery completes inside sendmmsg; give the softirq a moment anyway.
        assert!(b.wait_readable(Duration::from_secs(2)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        let mut bufs = vec![vec![0u8; 2048]; 32];
        let (got, calls) = drain(&b, 50, &mut bufs);
        assert_eq!(got, msgs);
        if cfg!(target_os = "linux") {
            assert!(calls <= 2, "took {calls} recv_batch calls");
            assert_eq!(b.io_counters().recv_syscalls, calls as u64);
        }
    }

    #[test]
    fn empty_socket_reports_nothing_pending_without_blocking() {
        let (_a, b) = pair();
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut meta = vec![RecvMeta::default(); 4];
        let t0 = Instant::now();
        assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 0);
        assert!(!b.wait_readable(Duration::from_millis(20)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn sending_to_a_closed_port_is_a_drop_not_an_error() {
        let cfg = UdpConfig::default();
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let a = UdpTransport::connect_to("127.0.0.1:0".parse().unwrap(), addr, &cfg).unwrap();
        let payload = [1u8; 100];
        let refs = [&payload[..]; 10];
        for _ in 0..5 {
            // ICMP port-unreachable turns into ECONNREFUSED on later calls: never an Err.
            a.send_batch(&refs).unwrap();
            a.send(&payload).unwrap();
            let mut bufs = vec![vec![0u8; 128]; 2];
            let mut meta = vec![RecvMeta::default(); 2];
            assert_eq!(a.recv_batch(&mut bufs, &mut meta).unwrap(), 0);
        }
    }

    #[test]
    fn filtering_mode_counts_foreign_datagrams_and_keeps_the_peers() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = UdpConfig::default();
        let peer = UdpTransport::bind(local, &cfg).unwrap();
        let me = UdpTransport::bind_filtered(local, peer.local_addr().unwrap(), &cfg).unwrap();
        peer.connect(me.local_addr().unwrap()).unwrap();
        let stranger = std::net::UdpSocket::bind(local).unwrap();
        for i in 0..6u8 {
            stranger.send_to(&[0xEE; 40], me.local_addr().unwrap()).unwrap();
            peer.send(&[i; 50]).unwrap();
        }
        // Sends from the filtering side go to the peer without a connect.
        assert_eq!(me.send_batch(&[&[7u8; 30][..], &[8u8; 30][..]]).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(30));
        let mut bufs = vec![vec![0u8; 128]; RECV_BATCH];
        let mut meta = vec![RecvMeta::default(); RECV_BATCH];
        let n = me.recv_batch(&mut bufs, &mut meta).unwrap();
        assert_eq!(n, 6, "only the peer's datagrams are delivered");
        for (i, b) in bufs.iter().take(n).enumerate() {
            assert_eq!(&b[..meta[i].len], &[i as u8; 50][..], "in order");
        }
        assert_eq!(me.io_counters().foreign_dropped, 6, "the stranger's are counted");
        assert_eq!(peer.recv_batch(&mut bufs, &mut meta).unwrap(), 2);
        stranger.send_to(&[1; 10], me.local_addr().unwrap()).unwrap();
        peer.send(&[9; 10]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut one = [0u8; 64];
        assert_eq!(me.recv_one(&mut one).unwrap(), Some(10));
        assert_eq!(one[0], 9, "scalar receive skips the stranger too");
        assert_eq!(me.io_counters().foreign_dropped, 7);
        assert_eq!(me.peer_addr().unwrap(), peer.local_addr().unwrap());
    }

    #[test]
    fn the_peer_is_recognised_in_any_spelling() {
        let v4: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert!(same_endpoint(mapped, v4) && same_endpoint(v4, mapped));
        assert!(!same_endpoint("127.0.0.1:5001".parse().unwrap(), v4));
        assert!(!same_endpoint("127.0.0.2:5000".parse().unwrap(), v4));
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 3));
        let unscoped: SocketAddr = "[fe80::1]:9".parse().unwrap();
        assert!(
            same_endpoint(scoped, unscoped),
            "a scope is compared only when both name one"
        );
        let other = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 4));
        assert!(!same_endpoint(scoped, other));
    }

    #[test]
    fn buffer_report_is_sane() {
        let (a, _b) = pair();
        let r = a.buffer_report();
        assert_eq!(r.requested, DESIRED_SOCKET_BUFFER);
        if cfg!(target_os = "linux") {
            assert!(r.send_granted > 0 && r.recv_granted > 0);
            // Either the kernel granted what we asked, or we say how to fix it.
            assert!(r.recv_granted * 2 >= r.requested || r.warning().is_some());
        }
    }
}
