//! The portable socket shim: one system call per datagram, written against
//! `std` alone. The transport on every OS without a batched shim; no offloads,
//! no buffer sizing (std has no API for it), no receive timestamps.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Buffer;
use crate::transport::{is_transient, RecvMeta, RECV_BATCH};

/// Same contract as the batched shims: returns how many datagrams from the
/// front of `datagrams` were sent, stopping at the first error; the error
/// itself is returned only when the very first datagram failed. There is no
/// segmentation offload, so `max_segments` is ignored.
pub(crate) fn send(
    sock: &UdpSocket,
    datagrams: &[&[u8]],
    dest: Option<&SocketAddr>,
    _max_segments: usize,
    calls: &AtomicU64,
) -> io::Result<usize> {
    let mut sent = 0;
    for d in datagrams {
        calls.fetch_add(1, Ordering::Relaxed);
        let r = match dest {
            Some(p) => sock.send_to(d, p),
            None => sock.send(d),
        };
        match r {
            Ok(_) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}

/// Reads datagrams one `recv_from` at a time until none is pending or the
/// buffers are full. There is no coalescing and no kernel timestamp, so
/// `gro` and `stamps` are ignored.
pub(crate) fn recv(
    sock: &UdpSocket,
    bufs: &mut [Vec<u8>],
    meta: &mut [RecvMeta],
    mut from: Option<&mut [Option<SocketAddr>; RECV_BATCH]>,
    _gro: bool,
    _stamps: bool,
    calls: &AtomicU64,
) -> io::Result<usize> {
    let n = bufs.len().min(meta.len()).min(RECV_BATCH);
    let mut got = 0;
    while got < n {
        calls.fetch_add(1, Ordering::Relaxed);
        match sock.recv_from(&mut bufs[got]) {
            Ok((len, addr)) => {
                meta[got] = RecvMeta::single(len);
                if let Some(f) = from.as_deref_mut() {
                    f[got] = Some(addr);
                }
                got += 1;
            }
            Err(e) if is_transient(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// std offers no readiness wait on a non-blocking socket, so this peeks in
/// 1 ms steps. Only the Linux shim is tuned for latency.
pub(crate) fn wait_readable(sock: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut probe = [0u8; 1];
    loop {
        match sock.peek(&mut probe) {
            Ok(_) => return Ok(true),
            Err(e) if is_transient(&e) => {}
            // Windows reports a datagram larger than the peek buffer as an error.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(true),
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Keeps the OS defaults: reports nothing granted and nothing forced.
pub(crate) fn set_buffer(_sock: &UdpSocket, _which: Buffer, _bytes: usize) -> io::Result<(usize, bool)> {
    Ok((0, false))
}

/// No segmentation offload here.
pub(crate) fn gso_supported(_sock: &UdpSocket) -> bool {
    false
}

/// No receive coalescing here.
pub(crate) fn set_gro(_sock: &UdpSocket, _on: bool) -> io::Result<()> {
    Err(unsupported("UDP GRO"))
}

/// Never called: GSO is never on here.
pub(crate) fn gso_refused(_e: &io::Error) -> bool {
    false
}

/// No kernel receive timestamps here.
pub(crate) fn enable_rx_timestamps(_sock: &UdpSocket) -> io::Result<()> {
    Err(unsupported("receive timestamps"))
}

/// One datagram without a timestamp.
pub(crate) fn recv_timestamped(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Option<Duration>)>> {
    match sock.recv(buf) {
        Ok(n) => Ok(Some((n, None))),
        Err(e) if is_transient(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not available on this platform"),
    )
}

/// The most datagrams one call takes (no GSO: one message per datagram).
pub(crate) const SEND_MAX_DATAGRAMS: usize = crate::transport::SEND_BATCH;
/// Segments per message: no GSO here.
pub(crate) const GSO_MAX_SEGMENTS: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn the_portable_shim_round_trips_with_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.set_nonblocking(true).unwrap();
        let calls = AtomicU64::new(0);
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + i as usize]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        assert_eq!(send(&a, &refs, None, 64, &calls).unwrap(), 10);
        assert_eq!(calls.load(Ordering::Relaxed), 10, "one call per datagram");
        assert!(wait_readable(&b, Duration::from_secs(2)).unwrap());
        let mut bufs = vec![vec![0u8; 512]; 16];
        let mut meta = [RecvMeta::default(); 16];
        let mut from = [None; RECV_BATCH];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while got < 10 && Instant::now() < deadline {
            got += recv(&b, &mut bufs[got..], &mut meta[got..], None, false, false, &calls).unwrap();
        }
        assert_eq!(got, 10);
        for i in 0..got {
            assert_eq!(&bufs[i][..meta[i].len], &msgs[i][..]);
            assert_eq!(meta[i].segment, meta[i].len);
        }
        a.send(&[7u8; 3]).unwrap();
        assert!(wait_readable(&b, Duration::from_secs(2)).unwrap());
        assert_eq!(
            recv(&b, &mut bufs, &mut meta, Some(&mut from), false, false, &calls).unwrap(),
            1
        );
        assert_eq!(from[0], Some(a.local_addr().unwrap()), "the source is reported");
        assert!(!wait_readable(&b, Duration::from_millis(5)).unwrap());
        assert!(set_gro(&b, true).is_err() && !gso_supported(&b));
    }
}
