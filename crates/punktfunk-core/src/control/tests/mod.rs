//! The control plane over real QUIC and UDP on 127.0.0.1, as an application
//! uses it (the protocol logic itself is tested without I/O in `proto`).
//! No test sleeps: each waits for what it expects, with a deadline.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;
use crate::session::{FrameEvent, FrameMeta, SessionConfig};

mod abuse;
mod handshake;
mod session;
mod web;

pub(super) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("punktfunk-ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(super) fn host(adaptive: Option<FecBand>) -> Host {
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        adaptive_fec: adaptive,
        ..HostConfig::default()
    };
    Host::with_identity(cfg, Identity::generate().unwrap()).unwrap()
}

pub(super) fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect()
}

/// Reads frames until `n` arrived (panics on loss or timeout).
pub(super) fn read_frames(c: &mut Client, n: usize) -> Vec<crate::session::Frame> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} frames arrived: {:?}",
            out.len(),
            c.stats()
        );
        match c.recv_frame(Duration::from_millis(100)).unwrap() {
            Some(FrameEvent::Frame(f)) => out.push(f),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    out
}

pub(super) fn next_host_event(s: &HostSession) -> HostEvent {
    loop {
        match s.next_event(Duration::from_secs(10)).unwrap() {
            Some(HostEvent::FecChanged { .. } | HostEvent::TargetBitrate { .. }) => continue,
            Some(e) => return e,
            None => panic!("no host event within 10 s"),
        }
    }
}

#[test]
fn host_settings_out_of_range_are_refused_naming_the_field() {
    let refused = |cfg: HostConfig, field: &str| {
        let e = cfg.validate().expect_err(field);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{field}");
        assert!(e.to_string().contains(field), "{e} names {field}");
    };
    refused(
        HostConfig {
            max_bitrate_kbps: 0,
            ..HostConfig::default()
        },
        "max_bitrate_kbps",
    );
    refused(
        HostConfig {
            max_total_kbps: Some(0),
            ..HostConfig::default()
        },
        "max_total_kbps",
    );
    let rate = RateSettings {
        min_kbps: 20_000,
        ..RateSettings::default()
    };
    refused(
        HostConfig {
            rate,
            ..HostConfig::default()
        },
        "min_kbps",
    );
    assert!(HostConfig::default().validate().is_ok());
}
