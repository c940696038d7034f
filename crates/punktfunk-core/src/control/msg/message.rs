//! [`ControlMsg`], the messages of the control stream, and their `PKF1`
//! codec: [`ControlMsg::encode`], then [`decode_header`] (bounds checked
//! before any payload is buffered) and [`decode_payload`].

use super::close::{clip_reason, CloseReason};
use super::input::{decode_input_datagram, InputEvent, INPUT_DATAGRAM_LEN};
use super::{protocol, ty, HEADER_LEN, MAGIC, MAX_REASON_LEN, MAX_UNKNOWN_PAYLOAD};
use crate::error::Result;

/// One control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Client → host, first message.
    ClientHello {
        /// [`CONTROL_VERSION`](super::CONTROL_VERSION).
        version: u16,
        /// Bitrate the client asks for, kbit/s.
        requested_bitrate_kbps: u32,
        /// Largest shard payload the client accepts (bounds its datagram size).
        max_shard_payload: u16,
        /// `CAP_*` bits.
        capabilities: u32,
        /// UDP port of the client's data-plane socket (same IP as the QUIC connection).
        data_port: u16,
    },
    /// Host → client, answer to the hello.
    ServerHello {
        /// Random id of this session; binds the key derivation.
        session_id: [u8; 16],
        /// Initial FEC percentage.
        fec_percent: u8,
        /// Data shards per FEC block.
        max_data_shards: u16,
        /// Shard payload bytes per datagram.
        shard_payload: u16,
        /// Largest frame the host will send.
        max_frame_bytes: u32,
        /// Bitrate granted, kbit/s (at most `MAX_BITRATE_KBPS`).
        granted_bitrate_kbps: u32,
        /// UDP port of the host's data-plane socket for this client.
        data_port: u16,
    },
    /// Client → host: data socket ready, keys derived; the host may stream.
    Ready,
    /// Client → host: please send a keyframe (frames from `first_lost` on were lost).
    KeyframeRequest {
        /// First lost frame index.
        first_lost: u64,
    },
    /// Host → client: the FEC percentage changed (informational).
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// Client → host: cumulative receive counters.
    LossReport {
        /// Frames delivered so far.
        frames_completed: u64,
        /// Frames lost so far.
        frames_dropped: u64,
        /// Shards rebuilt by FEC so far.
        fec_recovered_shards: u64,
        /// Datagrams received so far.
        packets_received: u64,
    },
    /// Client → host: send probe filler at this rate for this long.
    ProbeRequest {
        /// Target rate, kbit/s (at most `MAX_PROBE_KBPS`).
        target_kbps: u32,
        /// Duration, ms (at most 5000).
        duration_ms: u32,
    },
    /// Host → client: the probe is over; what the host sent.
    ProbeDone {
        /// Probe datagrams sent.
        packets_sent: u64,
        /// Probe wire bytes sent.
        bytes_sent: u64,
        /// Probe datagrams dropped locally (socket buffer full).
        send_drops: u64,
        /// How long sending took, µs.
        duration_us: u64,
        /// The rate the host sent at, kbit/s: below the rate asked for when
        /// the host clamped it to its probe ceiling, 0 when it refused.
        rate_kbps: u32,
    },
    /// Host → client: the client's data address answered the path challenge;
    /// frames flow to it from now on (the end of the handshake).
    PathValidated,
    /// Client → host: an input event that must arrive (key and button edges),
    /// with its sequence number (the same event may also come as a datagram;
    /// the host delivers whichever copy arrives first).
    Input {
        /// Client-assigned sequence number of the event.
        seq: u32,
        /// The event.
        event: InputEvent,
    },
    /// Either way: the sender is closing the session.
    Close(CloseReason),
}

impl ControlMsg {
    fn type_id(&self) -> u16 {
        match self {
            ControlMsg::ClientHello { .. } => ty::CLIENT_HELLO,
            ControlMsg::ServerHello { .. } => ty::SERVER_HELLO,
            ControlMsg::Ready => ty::READY,
            ControlMsg::KeyframeRequest { .. } => ty::KEYFRAME_REQUEST,
            ControlMsg::FecChanged { .. } => ty::FEC_CHANGED,
            ControlMsg::LossReport { .. } => ty::LOSS_REPORT,
            ControlMsg::ProbeRequest { .. } => ty::PROBE_REQUEST,
            ControlMsg::ProbeDone { .. } => ty::PROBE_DONE,
            ControlMsg::PathValidated => ty::PATH_VALIDATED,
            ControlMsg::Input { .. } => ty::INPUT,
            ControlMsg::Close(_) => ty::CLOSE,
        }
    }

    /// Encodes the message with its `PKF1` header.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        match self {
            ControlMsg::ClientHello {
                version,
                requested_bitrate_kbps,
                max_shard_payload,
                capabilities,
                data_port,
            } => {
                p.extend_from_slice(&version.to_be_bytes());
                p.extend_from_slice(&requested_bitrate_kbps.to_be_bytes());
                p.extend_from_slice(&max_shard_payload.to_be_bytes());
                p.extend_from_slice(&capabilities.to_be_bytes());
                p.extend_from_slice(&data_port.to_be_bytes());
            }
            ControlMsg::ServerHello {
                session_id,
                fec_percent,
                max_data_shards,
                shard_payload,
                max_frame_bytes,
                granted_bitrate_kbps,
                data_port,
            } => {
                p.extend_from_slice(session_id);
                p.push(*fec_percent);
                p.extend_from_slice(&max_data_shards.to_be_bytes());
                p.extend_from_slice(&shard_payload.to_be_bytes());
                p.extend_from_slice(&max_frame_bytes.to_be_bytes());
                p.extend_from_slice(&granted_bitrate_kbps.to_be_bytes());
                p.extend_from_slice(&data_port.to_be_bytes());
            }
            ControlMsg::Ready => {}
            ControlMsg::KeyframeRequest { first_lost } => p.extend_from_slice(&first_lost.to_be_bytes()),
            ControlMsg::FecChanged { percent } => p.push(*percent),
            ControlMsg::LossReport {
                frames_completed,
                frames_dropped,
                fec_recovered_shards,
                packets_received,
            } => {
                for v in [
                    frames_completed,
                    frames_dropped,
                    fec_recovered_shards,
                    packets_received,
                ] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
            }
            ControlMsg::ProbeRequest {
                target_kbps,
                duration_ms,
            } => {
                p.extend_from_slice(&target_kbps.to_be_bytes());
                p.extend_from_slice(&duration_ms.to_be_bytes());
            }
            ControlMsg::ProbeDone {
                packets_sent,
                bytes_sent,
                send_drops,
                duration_us,
                rate_kbps,
            } => {
                for v in [packets_sent, bytes_sent, send_drops, duration_us] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                p.extend_from_slice(&rate_kbps.to_be_bytes());
            }
            ControlMsg::PathValidated => {}
            ControlMsg::Input { seq, event } => {
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&event.encode());
            }
            ControlMsg::Close(r) => {
                p.extend_from_slice(&r.code.to_be_bytes());
                p.extend_from_slice(clip_reason(&r.reason).as_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + p.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.type_id().to_be_bytes());
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(&p);
        out
    }
}

/// The payload length bound of a message type: `Some((min, max))` for known
/// types, `None` for unknown ones (skipped up to [`MAX_UNKNOWN_PAYLOAD`]).
pub fn payload_bounds(type_id: u16) -> Option<(usize, usize)> {
    let exact = |n| Some((n, n));
    match type_id {
        ty::CLIENT_HELLO => exact(14),
        ty::SERVER_HELLO => exact(31),
        ty::READY => exact(0),
        ty::KEYFRAME_REQUEST => exact(8),
        ty::FEC_CHANGED => exact(1),
        ty::LOSS_REPORT => exact(32),
        ty::PROBE_REQUEST => exact(8),
        ty::PROBE_DONE => exact(36),
        ty::PATH_VALIDATED => exact(0),
        ty::INPUT => exact(INPUT_DATAGRAM_LEN),
        ty::CLOSE => Some((4, 4 + MAX_REASON_LEN)),
        _ => None,
    }
}

/// A parsed `PKF1` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub type_id: u16,
    /// Payload length, already checked against the type's bound.
    pub len: usize,
    /// False for a type this version does not know (skip the payload).
    pub known: bool,
}

/// Parses and checks a header: magic, then the length against the type's bound.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header> {
    if b[..4] != MAGIC {
        return Err(protocol("control message without the PKF1 magic"));
    }
    let type_id = u16::from_be_bytes([b[4], b[5]]);
    let len = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
    match payload_bounds(type_id) {
        Some((min, max)) if (min..=max).contains(&len) => Ok(Header {
            type_id,
            len,
            known: true,
        }),
        Some((min, max)) => Err(protocol(format!(
            "control message type {type_id} with {len} payload bytes (allowed {min}..={max})"
        ))),
        None if len <= MAX_UNKNOWN_PAYLOAD => Ok(Header {
            type_id,
            len,
            known: false,
        }),
        None => Err(protocol(format!(
            "unknown control message type {type_id} with {len} payload bytes (skippable up to {MAX_UNKNOWN_PAYLOAD})"
        ))),
    }
}

/// Decodes the payload of a known message type (lengths already checked).
pub fn decode_payload(type_id: u16, p: &[u8]) -> Result<ControlMsg> {
    let bounds = payload_bounds(type_id).ok_or_else(|| protocol(format!("unknown type {type_id}")))?;
    if !(bounds.0..=bounds.1).contains(&p.len()) {
        return Err(protocol(format!("type {type_id}: {} payload bytes", p.len())));
    }
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&p[i..i + 8]);
        u64::from_be_bytes(a)
    };
    Ok(match type_id {
        ty::CLIENT_HELLO => ControlMsg::ClientHello {
            version: u16_at(0),
            requested_bitrate_kbps: u32_at(2),
            max_shard_payload: u16_at(6),
            capabilities: u32_at(8),
            data_port: u16_at(12),
        },
        ty::SERVER_HELLO => {
            let mut session_id = [0u8; 16];
            session_id.copy_from_slice(&p[..16]);
            ControlMsg::ServerHello {
                session_id,
                fec_percent: p[16],
                max_data_shards: u16_at(17),
                shard_payload: u16_at(19),
                max_frame_bytes: u32_at(21),
                granted_bitrate_kbps: u32_at(25),
                data_port: u16_at(29),
            }
        }
        ty::READY => ControlMsg::Ready,
        ty::KEYFRAME_REQUEST => ControlMsg::KeyframeRequest {
            first_lost: u64_at(0),
        },
        ty::FEC_CHANGED => ControlMsg::FecChanged { percent: p[0] },
        ty::LOSS_REPORT => ControlMsg::LossReport {
            frames_completed: u64_at(0),
            frames_dropped: u64_at(8),
            fec_recovered_shards: u64_at(16),
            packets_received: u64_at(24),
        },
        ty::PROBE_REQUEST => ControlMsg::ProbeRequest {
            target_kbps: u32_at(0),
            duration_ms: u32_at(4),
        },
        ty::PROBE_DONE => ControlMsg::ProbeDone {
            packets_sent: u64_at(0),
            bytes_sent: u64_at(8),
            send_drops: u64_at(16),
            duration_us: u64_at(24),
            rate_kbps: u32_at(32),
        },
        ty::PATH_VALIDATED => ControlMsg::PathValidated,
        ty::INPUT => {
            let (seq, event) = decode_input_datagram(p)?;
            ControlMsg::Input { seq, event }
        }
        ty::CLOSE => ControlMsg::Close(CloseReason {
            code: u32_at(0),
            reason: std::str::from_utf8(&p[4..])
                .map_err(|_| protocol("close reason is not UTF-8"))?
                .to_string(),
        }),
        _ => unreachable!("bounds checked above"),
    })
}

/// Decodes one whole message from a buffer (header and payload), for tests
/// and fuzzing; `Ok(None)` for a well-formed message of an unknown type.
pub fn decode(b: &[u8]) -> Result<Option<ControlMsg>> {
    let h: &[u8; HEADER_LEN] = b
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| protocol("control message shorter than its header"))?;
    let h = decode_header(h)?;
    let p = &b[HEADER_LEN..];
    if p.len() != h.len {
        return Err(protocol(format!(
            "payload is {} bytes, header says {}",
            p.len(),
            h.len
        )));
    }
    if !h.known {
        return Ok(None);
    }
    decode_payload(h.type_id, p).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::msg::{close_code, CAP_INPUT, CAP_PROBE};
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    fn samples() -> Vec<ControlMsg> {
        vec![
            ControlMsg::ClientHello {
                version: 1,
                requested_bitrate_kbps: 50_000,
                max_shard_payload: 1344,
                capabilities: CAP_PROBE | CAP_INPUT,
                data_port: 40000,
            },
            ControlMsg::ServerHello {
                session_id: [7; 16],
                fec_percent: 10,
                max_data_shards: 4096,
                shard_payload: 1344,
                max_frame_bytes: 16 << 20,
                granted_bitrate_kbps: 2_000_000,
                data_port: 50000,
            },
            ControlMsg::Ready,
            ControlMsg::KeyframeRequest { first_lost: 99 },
            ControlMsg::FecChanged { percent: 25 },
            ControlMsg::LossReport {
                frames_completed: 1,
                frames_dropped: 2,
                fec_recovered_shards: 3,
                packets_received: 4,
            },
            ControlMsg::ProbeRequest {
                target_kbps: 3_000_000,
                duration_ms: 5000,
            },
            ControlMsg::ProbeDone {
                packets_sent: 1,
                bytes_sent: 2,
                send_drops: 3,
                duration_us: 4,
                rate_kbps: 5,
            },
            ControlMsg::PathValidated,
            ControlMsg::Input {
                seq: 7,
                event: InputEvent::KeyDown { code: 4 },
            },
            ControlMsg::Close(CloseReason {
                code: close_code::NORMAL,
                reason: "end of stream".into(),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(decode(&b).unwrap(), Some(m.clone()), "{m:?}");
            let (min, max) = payload_bounds(u16::from_be_bytes([b[4], b[5]])).unwrap();
            assert!(
                (min..=max).contains(&(b.len() - HEADER_LEN)),
                "{m:?} within its bound"
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_buffering() {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&ty::SERVER_HELLO.to_be_bytes());
        h[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_header(&h).unwrap_err().kind(), ErrorKind::Protocol);
        h[4..6].copy_from_slice(&999u16.to_be_bytes());
        h[6..10].copy_from_slice(&100u32.to_be_bytes());
        assert!(
            !decode_header(&h).unwrap().known,
            "unknown small types are skippable"
        );
        h[6..10].copy_from_slice(&((MAX_UNKNOWN_PAYLOAD + 1) as u32).to_be_bytes());
        assert!(decode_header(&h).is_err(), "unknown huge types are not");
        h[..4].copy_from_slice(b"PKF2");
        assert!(decode_header(&h).is_err());
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let long = "ä".repeat(200); // 400 bytes
        let b = ControlMsg::Close(CloseReason {
            code: 4,
            reason: long,
        })
        .encode();
        match decode(&b).unwrap() {
            Some(ControlMsg::Close(r)) => {
                assert!(r.reason.len() <= MAX_REASON_LEN && r.reason.chars().all(|c| c == 'ä'));
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&b);
            let _ = InputEvent::decode(&b);
        }

        #[test]
        fn random_payloads_of_valid_length_never_panic(t in 1u16..=10, seed in proptest::collection::vec(any::<u8>(), 300)) {
            let (min, max) = payload_bounds(t).unwrap();
            let len = min + (seed[0] as usize) % (max - min + 1);
            let _ = decode_payload(t, &seed[..len.min(seed.len())]);
        }
    }
}
