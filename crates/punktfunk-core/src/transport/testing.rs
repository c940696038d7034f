//! Helpers for the crate's tests (compiled for tests only).

use super::{RecvMeta, Transport, UdpConfig, UdpTransport, RECV_BATCH};

/// Every datagram pending on `t` right now, each up to `max_len` bytes.
pub(crate) fn drain<T: Transport + ?Sized>(t: &T, max_len: usize) -> Vec<Vec<u8>> {
    let mut bufs = vec![vec![0u8; max_len]; RECV_BATCH];
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    let mut out = Vec::new();
    loop {
        let n = t.recv_batch(&mut bufs, &mut meta).unwrap();
        if n == 0 {
            return out;
        }
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            if m.len == 0 {
                out.push(Vec::new());
            }
            out.extend(b[..m.len].chunks(m.segment.max(1)).map(<[u8]>::to_vec));
        }
    }
}

/// Two transports on 127.0.0.1 connected to each other.
pub(crate) fn udp_pair() -> (UdpTransport, UdpTransport) {
    let cfg = UdpConfig::default();
    let a = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let b = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}
