//! Browsers as clients: the WebTransport carrier `punktfunk-web/1`
//! (docs/WEB.md). A browser connects to the host's own UDP port with ALPN
//! `h3`; the host runs the WebTransport handshake on that connection, checks
//! the device's proof of key, and serves it as a [`super::HostSession`] whose
//! frames travel one reliable unidirectional stream each.
//!
//! This module is the protocol without I/O (messages, frame headers, the
//! device proof); `session` drives it on quinn, `cert` keeps the short-lived
//! certificate browsers pin.

mod cert;
pub(in crate::control) mod session;

use std::time::Duration;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use sha2::{Digest, Sha256};

use super::identity::Fingerprint;
use super::msg::{clip_reason, InputEvent, MAX_REASON_LEN};
use crate::error::{Error, Result};

pub(crate) use cert::{hex, HostCerts};
pub use cert::{load_or_renew, WebCert, WEB_CERT_RENEW_BEFORE, WEB_CERT_VALIDITY, WEB_IDENTITY_FILE};

/// ALPN of a browser's HTTP/3 connection.
pub const WEB_ALPN: &[u8] = b"h3";
/// The path a browser opens its WebTransport session on.
pub const WEB_PATH: &str = "/punktfunk";
/// What a device signs before the nonce and the certificate hash.
pub const PROOF_CONTEXT: &[u8] = b"punktfunk-web/1 device proof";
/// Largest control message body.
pub const MAX_BODY: usize = 1024;
/// Bytes before a frame's payload on its stream.
pub const FRAME_HEADER_LEN: usize = 24;
/// Frame header version.
pub const FRAME_VERSION: u8 = 1;
/// Stream reset code of a frame the host gave up.
pub const RESET_GIVEN_UP: u32 = 1;
/// A raw uncompressed P-256 public key.
pub const DEVICE_KEY_LEN: usize = 65;
/// An ECDSA P-256 signature, r ‖ s.
pub const SIGNATURE_LEN: usize = 64;

/// How browser sessions are served ([`super::HostConfig::web`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// Frames in flight at most (sent, not yet acknowledged); `1..=256`, default 16.
    pub window: u16,
    /// A frame still in flight this long after it was sent is given up
    /// (its stream reset, the frame counted dropped); default 1 s.
    pub max_frame_age: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            window: 16,
            max_frame_age: Duration::from_secs(1),
        }
    }
}

impl WebConfig {
    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.window) {
            return Err(Error::invalid(format!(
                "web.window {} is outside 1..=256",
                self.window
            )));
        }
        if self.max_frame_age < Duration::from_millis(10) || self.max_frame_age > Duration::from_secs(60) {
            return Err(Error::invalid(format!(
                "web.max_frame_age {:?} is outside 10 ms..=60 s",
                self.max_frame_age
            )));
        }
        Ok(())
    }
}

/// Control message types.
pub mod msg_type {
    /// h→b: the nonce the device signs.
    pub const CHALLENGE: u8 = 1;
    /// h→b: the device is admitted; session parameters.
    pub const WELCOME: u8 = 2;
    /// h→b: the target media bitrate moved.
    pub const TARGET: u8 = 3;
    /// h→b: the host is done; the browser closes once every earlier frame is settled.
    pub const CLOSE: u8 = 4;
    /// b→h: the device's key and proof.
    pub const HELLO: u8 = 16;
    /// b→h: one input event.
    pub const INPUT: u8 = 17;
    /// b→h: frames were lost; a keyframe is wanted.
    pub const KEYFRAME_REQUEST: u8 = 18;
}

/// A control message on a browser session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebMsg {
    /// The nonce the device signs.
    Challenge([u8; 32]),
    /// The device is admitted.
    Welcome {
        /// The session id.
        session_id: [u8; 16],
        /// Largest frame.
        max_frame_bytes: u32,
        /// Granted bitrate, kbit/s.
        granted_kbps: u32,
        /// Frames in flight at most.
        window: u16,
    },
    /// The target media bitrate, kbit/s.
    Target(u32),
    /// The host ends the session after the frames before `next_index`: the
    /// browser delivers (or reports lost) each of them, then closes the
    /// session with this code and reason.
    Close {
        /// The index the next frame would have had.
        next_index: u64,
        /// Close code.
        code: u32,
        /// Close reason (at most 256 bytes).
        reason: String,
    },
    /// The device's public key and its signature over the proof.
    Hello {
        /// Uncompressed P-256 point.
        key: [u8; DEVICE_KEY_LEN],
        /// r ‖ s.
        signature: [u8; SIGNATURE_LEN],
    },
    /// One input event.
    Input(InputEvent),
    /// The first lost frame.
    KeyframeRequest(u64),
}

impl WebMsg {
    /// Encodes `type u8 | length u16 | body`.
    pub fn encode(&self) -> Vec<u8> {
        let (ty, body): (u8, Vec<u8>) = match self {
            WebMsg::Challenge(n) => (msg_type::CHALLENGE, n.to_vec()),
            WebMsg::Welcome {
                session_id,
                max_frame_bytes,
                granted_kbps,
                window,
            } => {
                let mut b = session_id.to_vec();
                b.extend_from_slice(&max_frame_bytes.to_be_bytes());
                b.extend_from_slice(&granted_kbps.to_be_bytes());
                b.extend_from_slice(&window.to_be_bytes());
                (msg_type::WELCOME, b)
            }
            WebMsg::Target(k) => (msg_type::TARGET, k.to_be_bytes().to_vec()),
            WebMsg::Close {
                next_index,
                code,
                reason,
            } => {
                let mut b = next_index.to_be_bytes().to_vec();
                b.extend_from_slice(&code.to_be_bytes());
                b.extend_from_slice(clip_reason(reason).as_bytes());
                (msg_type::CLOSE, b)
            }
            WebMsg::Hello { key, signature } => (msg_type::HELLO, [&key[..], &signature[..]].concat()),
            WebMsg::Input(e) => (msg_type::INPUT, e.encode().to_vec()),
            WebMsg::KeyframeRequest(i) => (msg_type::KEYFRAME_REQUEST, i.to_be_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(3 + body.len());
        out.push(ty);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one message from its type and body. An unknown type, a body of
    /// the wrong size or a bad input event is a protocol error.
    pub fn decode(ty: u8, body: &[u8]) -> Result<WebMsg> {
        let fixed = |n: usize| -> Result<&[u8]> {
            if body.len() == n {
                Ok(body)
            } else {
                Err(super::proto::protocol(format!(
                    "web message {ty}: body of {} bytes, expected {n}",
                    body.len()
                )))
            }
        };
        Ok(match ty {
            msg_type::CHALLENGE => WebMsg::Challenge(array(fixed(32)?)),
            msg_type::WELCOME => {
                let b = fixed(26)?;
                WebMsg::Welcome {
                    session_id: array(&b[..16]),
                    max_frame_bytes: u32::from_be_bytes(array(&b[16..20])),
                    granted_kbps: u32::from_be_bytes(array(&b[20..24])),
                    window: u16::from_be_bytes(array(&b[24..26])),
                }
            }
            msg_type::TARGET => WebMsg::Target(u32::from_be_bytes(array(fixed(4)?))),
            msg_type::CLOSE => {
                if body.len() < 12 || body.len() > 12 + MAX_REASON_LEN {
                    return Err(super::proto::protocol(format!(
                        "web message {ty}: body of {} bytes",
                        body.len()
                    )));
                }
                WebMsg::Close {
                    next_index: u64::from_be_bytes(array(&body[..8])),
                    code: u32::from_be_bytes(array(&body[8..12])),
                    reason: String::from_utf8_lossy(&body[12..]).into_owned(),
                }
            }
            msg_type::HELLO => {
                let b = fixed(DEVICE_KEY_LEN + SIGNATURE_LEN)?;
                WebMsg::Hello {
                    key: array(&b[..DEVICE_KEY_LEN]),
                    signature: array(&b[DEVICE_KEY_LEN..]),
                }
            }
            msg_type::INPUT => WebMsg::Input(InputEvent::decode(fixed(super::msg::INPUT_EVENT_LEN)?)?),
            msg_type::KEYFRAME_REQUEST => WebMsg::KeyframeRequest(u64::from_be_bytes(array(fixed(8)?))),
            _ => return Err(super::proto::protocol(format!("unknown web message type {ty}"))),
        })
    }
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// The bytes a device signs: context ‖ nonce ‖ SHA-256 of the host's web certificate.
pub fn proof_message(nonce: &[u8; 32], cert_hash: &[u8; 32]) -> Vec<u8> {
    [PROOF_CONTEXT, &nonce[..], &cert_hash[..]].concat()
}

/// A device's fingerprint: SHA-256 of its raw public key.
pub fn device_fingerprint(key: &[u8; DEVICE_KEY_LEN]) -> Fingerprint {
    Fingerprint(Sha256::digest(key).into())
}

/// Checks a device's proof against each certificate hash the browser may
/// have pinned; the device's fingerprint if one verifies.
pub fn verify_proof(
    key: &[u8; DEVICE_KEY_LEN],
    signature: &[u8; SIGNATURE_LEN],
    nonce: &[u8; 32],
    cert_hashes: &[[u8; 32]],
) -> Result<Fingerprint> {
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key[..]);
    if cert_hashes
        .iter()
        .any(|h| public.verify(&proof_message(nonce, h), signature).is_ok())
    {
        Ok(device_fingerprint(key))
    } else {
        Err(super::proto::protocol(
            "the device's proof of key does not verify",
        ))
    }
}

/// The header before a frame's payload on its stream.
pub fn frame_header(index: u64, pts: u64, keyframe: bool, len: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = FRAME_VERSION;
    h[1] = u8::from(keyframe);
    h[4..8].copy_from_slice(&len.to_be_bytes());
    h[8..16].copy_from_slice(&index.to_be_bytes());
    h[16..24].copy_from_slice(&pts.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let all = [
            WebMsg::Challenge([7; 32]),
            WebMsg::Welcome {
                session_id: [1; 16],
                max_frame_bytes: 16 << 20,
                granted_kbps: 50_000,
                window: 16,
            },
            WebMsg::Target(12_345),
            WebMsg::Close {
                next_index: 300,
                code: 0,
                reason: "end of stream (300 frames)".into(),
            },
            WebMsg::Hello {
                key: [4; 65],
                signature: [9; 64],
            },
            WebMsg::Input(InputEvent::KeyDown { code: 42 }),
            WebMsg::KeyframeRequest(7),
        ];
        for m in all {
            let b = m.encode();
            let len = u16::from_be_bytes([b[1], b[2]]) as usize;
            assert_eq!(len, b.len() - 3);
            assert_eq!(WebMsg::decode(b[0], &b[3..]).unwrap(), m);
            // One byte short or long: refused (a close's reason may be any length).
            if b[0] != msg_type::CLOSE {
                assert!(WebMsg::decode(b[0], &b[3..b.len() - 1]).is_err());
                assert!(WebMsg::decode(b[0], &[&b[3..], &[0]].concat()).is_err());
            }
        }
        assert!(WebMsg::decode(99, &[]).is_err());
        assert!(WebMsg::decode(msg_type::CLOSE, &[0; 11]).is_err());
        assert!(WebMsg::decode(msg_type::CLOSE, &[0; 12 + 257]).is_err());
        // A key-down with a non-zero pad byte is malformed input.
        let mut bad = InputEvent::KeyDown { code: 1 }.encode();
        bad[11] = 1;
        assert!(WebMsg::decode(msg_type::INPUT, &bad).is_err());
    }

    /// docs/WEB.md's test vector.
    #[test]
    fn the_frame_header_matches_the_document() {
        let h = frame_header(0x0102_0304_0506_0708, 1_700_000_000_000_000, true, 1500);
        assert_eq!(hex(&h), "01010000000005dc010203040506070800060a24181e4000",);
    }

    #[test]
    fn a_proof_verifies_only_for_its_nonce_and_certificate() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let key: [u8; 65] = pair.public_key().as_ref().try_into().unwrap();
        let (nonce, cert) = ([3u8; 32], [5u8; 32]);
        let sig: [u8; 64] = pair
            .sign(&rng, &proof_message(&nonce, &cert))
            .unwrap()
            .as_ref()
            .try_into()
            .unwrap();
        let fp = verify_proof(&key, &sig, &nonce, &[[0; 32], cert]).unwrap();
        assert_eq!(fp, device_fingerprint(&key));
        assert!(
            verify_proof(&key, &sig, &[4; 32], &[cert]).is_err(),
            "another session's nonce"
        );
        assert!(
            verify_proof(&key, &sig, &nonce, &[[6; 32]]).is_err(),
            "another host"
        );
        let mut other = key;
        other[64] ^= 1;
        assert!(
            verify_proof(&other, &sig, &nonce, &[cert]).is_err(),
            "another key"
        );
    }

    #[test]
    fn config_bounds() {
        assert!(WebConfig::default().validate().is_ok());
        let w = |window| WebConfig {
            window,
            ..WebConfig::default()
        };
        assert!(w(0).validate().is_err());
        assert!(w(257).validate().is_err());
        let age = |ms| WebConfig {
            max_frame_age: Duration::from_millis(ms),
            ..WebConfig::default()
        };
        assert!(age(5).validate().is_err());
        assert!(age(61_000).validate().is_err());
    }
}
