//! The one seam between the session and the network.
//!
//! A [`Transport`] moves opaque datagrams. It is lossy by contract: a full send
//! buffer or a transient network error is a *drop* (reported as a count), never
//! a block and never a teardown. Everything above this trait is pure code that
//! can be tested on [`LoopbackTransport`] and [`Impaired`] deterministically.

use std::io;
use std::time::{Duration, Instant};

mod impair;
mod loopback;
mod path;
// The socket shim is the only place in this crate allowed to use `unsafe`.
#[allow(unsafe_code)]
mod sys;
mod udp;

pub use impair::{GilbertElliott, Impaired, ImpairmentConfig, ImpairmentCounters, MAX_REORDER_DEPTH};
pub use loopback::LoopbackTransport;
#[cfg(test)]
pub(crate) mod testing;
pub use path::DataPath;
pub use udp::{BufferReport, Offload, UdpConfig, UdpTransport, DESIRED_SOCKET_BUFFER};

/// Largest number of datagrams one `sendmmsg` call carries.
pub const SEND_BATCH: usize = 64;
/// Largest number of datagrams one `recvmmsg` call fills (the session's receive ring).
pub const RECV_BATCH: usize = 32;

/// System-call counters a transport keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Send system calls made so far.
    pub send_syscalls: u64,
    /// Receive system calls made so far (including ones that found nothing).
    pub recv_syscalls: u64,
    /// Readiness waits (`ppoll`) made so far.
    pub wait_syscalls: u64,
    /// Datagrams dropped because they came from someone other than the peer
    /// (filtering UDP transports only).
    pub foreign_dropped: u64,
}

/// Where the datagrams of one receive buffer are: `len` bytes, as consecutive
/// datagrams of `segment` bytes each (the last possibly shorter). Without
/// segmented receive (UDP GRO) every buffer holds one datagram and
/// `segment == len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received into the buffer.
    pub len: usize,
    /// Size of each datagram in it (`len` for a single datagram).
    pub segment: usize,
    /// When the kernel received it (the first datagram, for a coalesced
    /// buffer), after [`Transport::enable_arrival_times`]; `None` otherwise.
    /// A reader that lost the CPU between the datagram's arrival and the
    /// read would stamp it late by as long.
    pub arrival: Option<Instant>,
}

impl RecvMeta {
    /// One datagram of `len` bytes.
    pub fn single(len: usize) -> RecvMeta {
        RecvMeta {
            len,
            segment: len,
            arrival: None,
        }
    }
}

/// A non-blocking, lossy datagram pipe to one peer.
///
/// One way out ([`Transport::send_batch`]) and one way in
/// ([`Transport::recv_batch`]); the rest are readiness and bookkeeping.
pub trait Transport: Send + Sync {
    /// Sends datagrams in order; returns how many were handed on. The caller
    /// counts the rest as send drops (a full buffer, a transient error). Never
    /// blocks.
    fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize>;

    /// Sends one datagram: `Ok(false)` means it was dropped locally.
    fn send(&self, datagram: &[u8]) -> io::Result<bool> {
        self.send_batch(&[datagram]).map(|n| n == 1)
    }

    /// Fills caller-owned buffers with pending datagrams (each buffer's full
    /// length is usable space; a longer datagram is truncated) and describes
    /// each in `meta`. Returns the number of buffers filled, at most
    /// `bufs.len().min(meta.len())`; 0 means nothing is pending. Never blocks.
    /// After [`Transport::enable_segmented_receive`] a buffer may hold several
    /// datagrams ([`RecvMeta::segment`]).
    fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize>;

    /// Waits until a datagram is pending or `timeout` passes; `Ok(true)` when
    /// readable. Implementations wait in the kernel or on a condition variable,
    /// never in a sleep loop. Only drivers call it (threads of their own).
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool>;

    /// System-call counts so far (zero for in-process transports).
    fn io_counters(&self) -> IoCounters {
        IoCounters::default()
    }

    /// Asks for segmented receive (UDP GRO): from then on a buffer may hold
    /// several datagrams, and buffers must be [`SEGMENTED_RECV_BUFFER`] bytes
    /// long. Returns whether it is on; the default (every transport without
    /// such an offload) says no.
    fn enable_segmented_receive(&self) -> bool {
        false
    }

    /// Asks for the time each datagram reached the host's network stack
    /// ([`RecvMeta::arrival`]), for rate feedback that measures the path
    /// rather than the reader's scheduling. Returns whether it is on; the
    /// default (transports without kernel timestamps) says no, and callers
    /// stamp arrivals with the time they read them.
    fn enable_arrival_times(&self) -> bool {
        false
    }
}

/// Receive buffer length that holds any coalesced (UDP GRO) datagram.
pub const SEGMENTED_RECV_BUFFER: usize = 65_536;

/// Implements [`Transport`] for a type by forwarding every method to the
/// transport `$inner` yields (one list, so no method can be left out).
macro_rules! delegate_transport {
    (impl[$($gen:tt)*] $ty:ty, |$this:ident| $inner:expr) => {
        impl<$($gen)*> Transport for $ty {
            fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
                let $this = self;
                $inner.send_batch(datagrams)
            }
            fn send(&self, datagram: &[u8]) -> io::Result<bool> {
                let $this = self;
                $inner.send(datagram)
            }
            fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
                let $this = self;
                $inner.recv_batch(bufs, meta)
            }
            fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
                let $this = self;
                $inner.wait_readable(timeout)
            }
            fn io_counters(&self) -> IoCounters {
                let $this = self;
                $inner.io_counters()
            }
            fn enable_segmented_receive(&self) -> bool {
                let $this = self;
                $inner.enable_segmented_receive()
            }
            fn enable_arrival_times(&self) -> bool {
                let $this = self;
                $inner.enable_arrival_times()
            }
        }
    };
}
pub(crate) use delegate_transport;

// Smart pointers to a transport are transports (for sharing one socket).
delegate_transport!(impl[T: Transport + ?Sized] std::sync::Arc<T>, |t| (**t));
delegate_transport!(impl[T: Transport + ?Sized] Box<T>, |t| (**t));

/// True for errors that mean "this datagram is lost" rather than "the socket is broken":
/// a full buffer, a stale ICMP refusal from an earlier send, or a route that is
/// briefly gone. These are drops by contract.
pub fn is_transient(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOBUFS | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPERM)
        )
    }
    #[cfg(not(unix))]
    {
        false
    }
}
