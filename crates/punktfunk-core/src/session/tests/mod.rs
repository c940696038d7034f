//! Scenario tests of the session: the in-process pair in virtual time (no
//! sleeps: the tests hand the halves `now`), hand-crafted hostile packets, and
//! real UDP on loopback where the kernel is what is being tested.

use std::time::{Duration, Instant};

use super::*;
use crate::transport::{LoopbackTransport, UdpTransport};

mod delivery;
mod hostile;
mod timing;

fn keys() -> SessionKeys {
    SessionKeys::derive(&[0x42; 32], b"session tests").unwrap()
}

/// Deterministic frame contents that differ per frame and per byte.
fn pattern(index: u64, len: usize) -> Vec<u8> {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn udp_pair() -> (UdpTransport, UdpTransport) {
    crate::transport::testing::udp_pair()
}

/// Virtual time: an origin and offsets from it.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn ms(self, n: u64) -> Instant {
        self.0 + Duration::from_millis(n)
    }
    fn us(self, n: u64) -> Instant {
        self.0 + Duration::from_micros(n)
    }
}

/// Every event the receiver has at `now` from what is already in the
/// (in-process) transport: polls until the transport is drained.
fn poll_all<T: Transport>(rx: &mut FrameReceiver<T>, now: Instant) -> Vec<FrameEvent> {
    let mut out = Vec::new();
    loop {
        match rx.poll_frame(now).unwrap() {
            Some(ev) => out.push(ev),
            None if rx.is_drained() => return out,
            None => {}
        }
    }
}

/// Receives events on a real socket until `frames` frames or losses have been
/// accounted for, or 20 s pass (the driver waits in the kernel).
fn collect<T: Transport + 'static>(rx: &mut FrameReceiver<T>, frames: u64) -> Vec<FrameEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    let mut accounted = 0;
    while accounted < frames && Instant::now() < deadline {
        if let Some(ev) = FrameSource::recv_frame(rx, Duration::from_millis(100)).unwrap() {
            accounted += match &ev {
                FrameEvent::Frame(_) => 1,
                FrameEvent::Lost { count, .. } => *count,
            };
            out.push(ev);
        }
    }
    out
}

fn frames_of(events: &[FrameEvent]) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            FrameEvent::Frame(f) => Some(f),
            FrameEvent::Lost { .. } => None,
        })
        .collect()
}

/// A host on the in-process pair behind `T`'s wrapper and a plain client.
fn loopback_pair(cfg: &SessionConfig) -> (Session<LoopbackTransport>, Session<LoopbackTransport>) {
    let (a, b) = LoopbackTransport::pair(1 << 20);
    let host = Session::new(Role::Host, cfg.clone(), &keys(), a).unwrap();
    let client = Session::new(Role::Client, cfg.clone(), &keys(), b).unwrap();
    (host, client)
}
