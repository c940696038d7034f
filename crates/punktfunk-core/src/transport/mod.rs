//! The one seam between the session and the network.
//!
//! A [`Transport`] moves opaque datagrams. It is lossy by contract: a full send
//! buffer or a transient network error is a *drop* (reported as a count), never
//! a block and never a teardown. Everything above this trait is pure code that
//! can be tested on [`LoopbackTransport`] and [`Impaired`] deterministically.

use std::io;
use std::time::Duration;

mod impair;
mod loopback;
// The socket shim is the only place in this crate allowed to use `unsafe`.
#[allow(unsafe_code)]
mod sys;
mod udp;

pub use impair::{GilbertElliott, Impaired, ImpairmentConfig, ImpairmentCounters, MAX_REORDER_DEPTH};
pub use loopback::LoopbackTransport;
#[cfg(test)]
pub(crate) use udp::test_pair as udp_test_pair;
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

/// A non-blocking, lossy datagram pipe to one peer.
pub trait Transport: Send + Sync {
    /// Sends one datagram. `Ok(false)` means it was dropped locally because the
    /// send buffer was full (or a transient error occurred); it never blocks.
    fn send(&self, datagram: &[u8]) -> io::Result<bool>;

    /// Sends many datagrams; returns how many were handed on. The caller counts
    /// the rest as send drops. The default is a scalar loop over [`Transport::send`].
    fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for d in datagrams {
            if self.send(d)? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Receives one datagram into `buf` if one is pending; `Ok(None)` if not.
    /// A datagram longer than `buf` is truncated to `buf.len()`.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Fills caller-owned buffers with pending datagrams (each buffer's full
    /// length is usable space) and writes each datagram's length to `lens`.
    /// Returns the number filled; 0 means nothing is pending. The default makes
    /// one scalar [`Transport::recv`] into `bufs[0]`.
    fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        let (Some(buf), Some(len)) = (bufs.first_mut(), lens.first_mut()) else {
            return Ok(0);
        };
        match self.recv(buf)? {
            Some(n) => {
                *len = n;
                Ok(1)
            }
            None => Ok(0),
        }
    }

    /// Waits until a datagram is pending or `timeout` passes; `Ok(true)` when
    /// readable. Implementations wait in the kernel or on a condition variable,
    /// never in a sleep loop.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool>;

    /// System-call counts so far (zero for in-process transports).
    fn io_counters(&self) -> IoCounters {
        IoCounters::default()
    }

    /// Asks for segmented receive (UDP GRO): from then on
    /// [`Transport::recv_segments`] may put several datagrams into one buffer,
    /// and its buffers must be [`SEGMENTED_RECV_BUFFER`] bytes long. Returns
    /// whether it is on; the default (and every transport without such an
    /// offload) says no, and `recv_segments` stays one datagram per buffer.
    fn enable_segmented_receive(&self) -> bool {
        false
    }

    /// [`Transport::recv_batch`], plus the segment size of each buffer in
    /// `segs`: buffer `i` holds `lens[i]` bytes as consecutive datagrams of
    /// `segs[i]` bytes each, the last possibly shorter. Without segmented
    /// receive, `segs[i] == lens[i]`.
    fn recv_segments(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        segs: &mut [usize],
    ) -> io::Result<usize> {
        let n = self.recv_batch(bufs, lens)?;
        for (s, l) in segs.iter_mut().zip(lens.iter()).take(n) {
            *s = *l;
        }
        Ok(n)
    }
}

/// Receive buffer length that holds any coalesced (UDP GRO) datagram.
pub const SEGMENTED_RECV_BUFFER: usize = 65_536;

/// Smart pointers to a transport are transports (for sharing one socket).
macro_rules! forward_transport {
    ($($ptr:ident)::+) => {
        impl<T: Transport + ?Sized> Transport for $($ptr)::+<T> {
            fn send(&self, datagram: &[u8]) -> io::Result<bool> {
                (**self).send(datagram)
            }
            fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
                (**self).send_batch(datagrams)
            }
            fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
                (**self).recv(buf)
            }
            fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
                (**self).recv_batch(bufs, lens)
            }
            fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
                (**self).wait_readable(timeout)
            }
            fn io_counters(&self) -> IoCounters {
                (**self).io_counters()
            }
            fn enable_segmented_receive(&self) -> bool {
                (**self).enable_segmented_receive()
            }
            fn recv_segments(
                &self,
                bufs: &mut [Vec<u8>],
                lens: &mut [usize],
                segs: &mut [usize],
            ) -> io::Result<usize> {
                (**self).recv_segments(bufs, lens, segs)
            }
        }
    };
}

forward_transport!(std::sync::Arc);
forward_transport!(Box);

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
