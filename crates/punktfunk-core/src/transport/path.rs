//! A session's data path: a UDP socket, or the socket behind simulated
//! impairment (for demos and tests of FEC over real sockets).

use std::io;
use std::time::Duration;

use super::{delegate_transport, Impaired, ImpairmentConfig, IoCounters, RecvMeta, Transport, UdpTransport};

/// The data path of one control-plane session. An enum rather than a trait
/// object, so the common case (plain UDP) costs no dynamic dispatch.
#[derive(Debug)]
pub enum DataPath {
    /// The socket itself.
    Plain(UdpTransport),
    /// The socket, with what is sent through it impaired.
    Impaired(Box<Impaired<UdpTransport>>),
}

impl DataPath {
    /// `udp`, impaired with `impairment` when one is given.
    pub fn new(udp: UdpTransport, impairment: Option<ImpairmentConfig>) -> DataPath {
        match impairment {
            Some(config) => DataPath::Impaired(Box::new(Impaired::new(udp, config))),
            None => DataPath::Plain(udp),
        }
    }

    /// The socket underneath.
    pub fn udp(&self) -> &UdpTransport {
        match self {
            DataPath::Plain(t) => t,
            DataPath::Impaired(t) => t.inner(),
        }
    }

    fn transport(&self) -> &dyn Transport {
        match self {
            DataPath::Plain(t) => t,
            DataPath::Impaired(t) => &**t,
        }
    }
}

delegate_transport!(impl[] DataPath, |p| p.transport());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::UdpConfig;

    #[test]
    fn an_impaired_path_forwards_every_method_to_its_socket() {
        let cfg = UdpConfig::default();
        let local = "127.0.0.1:0".parse().unwrap();
        let peer = UdpTransport::bind(local, &cfg).unwrap();
        let udp = UdpTransport::bind_filtered(local, peer.local_addr().unwrap(), &cfg).unwrap();
        peer.connect(udp.local_addr().unwrap()).unwrap();
        let path = DataPath::new(udp, Some(ImpairmentConfig::drop_every(2)));
        // Every second datagram is lost on the way out, and counted as sent.
        assert_eq!(path.send_batch(&[&[1u8; 10][..], &[2u8; 10][..]]).unwrap(), 2);
        assert!(peer.wait_readable(Duration::from_secs(2)).unwrap());
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut meta = [RecvMeta::default(); 4];
        assert_eq!(peer.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
        // Receiving, readiness, counters and segmented receive reach the socket.
        peer.send(&[9u8; 12]).unwrap();
        assert!(path.wait_readable(Duration::from_secs(2)).unwrap());
        assert_eq!(path.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
        assert_eq!(meta[0], RecvMeta::single(12));
        assert_eq!(path.io_counters(), path.udp().io_counters());
        assert!(path.io_counters().send_syscalls >= 1);
        assert_eq!(path.enable_segmented_receive(), path.udp().gro_active());
    }
}
