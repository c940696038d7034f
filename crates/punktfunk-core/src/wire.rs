//! Data-packet wire format (version 1). Byte-by-byte layout in `docs/PROTOCOL.md`.
//!
//! ```text
//! | clear header (9) | sealed: inner header (32) | shard payload (S) | GCM tag (16) |
//! ```
//!
//! Only the version and the packet sequence travel in clear; the frame index,
//! sizes, shard position and flags are inside the AES-GCM envelope, so an
//! on-path observer learns neither frame sizes nor which frames are keyframes.
//! Decoding never panics: every function checks lengths and returns a typed error.

use std::fmt;

/// Current data-packet version, the first byte of every datagram.
pub const VERSION: u8 = 1;
/// Bytes in clear before the sealed part: version (1) + sequence (8).
pub const CLEAR_HEADER_LEN: usize = 9;
/// Bytes of the inner (sealed) header.
pub const INNER_HEADER_LEN: usize = 32;
/// AES-GCM tag bytes at the end of every datagram.
pub const TAG_LEN: usize = 16;
/// Everything in a datagram that is not shard payload.
pub const PACKET_OVERHEAD: usize = CLEAR_HEADER_LEN + INNER_HEADER_LEN + TAG_LEN;

/// Inner-header flag: the frame is a keyframe.
pub const FLAG_KEYFRAME: u8 = 0x01;
/// Inner-header flag: speed-test filler, not part of any video frame.
pub const FLAG_PROBE: u8 = 0x02;
/// Inner-header flag: data-path validation ([`PathMessage`] in the payload),
/// not part of any video frame.
pub const FLAG_PATH: u8 = 0x04;
/// Inner-header flag: filler a rate controller sends to probe the path
/// (with [`FLAG_PROBE`] set too); the receiver counts it as redundant.
pub const FLAG_PADDING: u8 = 0x08;
const KNOWN_FLAGS: u8 = FLAG_KEYFRAME | FLAG_PROBE | FLAG_PATH | FLAG_PADDING;

/// Why a header could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header needs.
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A version this build does not speak.
    UnknownVersion(u8),
    /// Flag bits this version does not define.
    UnknownFlags(u8),
    /// The reserved byte was not zero.
    ReservedNotZero(u8),
    /// Counts or indexes that contradict each other (e.g. shard index ≥ k + m).
    Inconsistent(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooShort { need, have } => write!(f, "need {need} bytes, have {have}"),
            WireError::UnknownVersion(v) => write!(f, "unknown packet version {v}"),
            WireError::UnknownFlags(x) => write!(f, "unknown flag bits {x:#04x}"),
            WireError::ReservedNotZero(x) => write!(f, "reserved byte is {x:#04x}, not zero"),
            WireError::Inconsistent(what) => write!(f, "inconsistent header: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The part of a data packet sent in clear (and authenticated as AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearHeader {
    /// Packet sequence number in this direction; also the AES-GCM nonce counter.
    pub seq: u64,
}

impl ClearHeader {
    /// Writes the header into the first [`CLEAR_HEADER_LEN`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8; CLEAR_HEADER_LEN]) {
        out[0] = VERSION;
        out[1..9].copy_from_slice(&self.seq.to_be_bytes());
    }

    /// Reads the header from the start of a datagram.
    pub fn decode(buf: &[u8]) -> Result<ClearHeader, WireError> {
        let h: &[u8; CLEAR_HEADER_LEN] = buf
            .get(..CLEAR_HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::TooShort {
                need: CLEAR_HEADER_LEN,
                have: buf.len(),
            })?;
        if h[0] != VERSION {
            return Err(WireError::UnknownVersion(h[0]));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&h[1..9]);
        Ok(ClearHeader {
            seq: u64::from_be_bytes(seq),
        })
    }
}

/// Where a shard belongs: sealed inside every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InnerHeader {
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Index of this shard's FEC block within the frame.
    pub block_index: u16,
    /// Number of FEC blocks in the frame (at least 1).
    pub block_count: u16,
    /// Shard position in its block: `0..k` data, `k..k+m` recovery.
    pub shard_index: u16,
    /// Data shards in this block (at least 1).
    pub data_shards: u16,
    /// Recovery shards in this block (0 when FEC is off).
    pub recovery_shards: u16,
    /// Frame index, counting up from 0 per session and direction.
    pub frame_index: u64,
    /// Total frame length in bytes (before padding to whole shards).
    pub frame_len: u32,
    /// Presentation timestamp chosen by the sender (opaque, typically µs).
    pub pts: u64,
}

impl InnerHeader {
    /// True when the keyframe flag is set.
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// True when this is speed-test filler.
    pub fn is_probe(&self) -> bool {
        self.flags & FLAG_PROBE != 0
    }

    /// Whether the packet is rate-control filler ([`FLAG_PADDING`]).
    pub fn is_padding(&self) -> bool {
        self.flags & FLAG_PADDING != 0
    }

    /// Whether the packet validates the data path ([`FLAG_PATH`]).
    pub fn is_path(&self) -> bool {
        self.flags & FLAG_PATH != 0
    }

    /// Writes the header into `out`.
    pub fn encode(&self, out: &mut [u8; INNER_HEADER_LEN]) {
        out[0] = self.flags;
        out[1] = 0;
        out[2..4].copy_from_slice(&self.block_index.to_be_bytes());
        out[4..6].copy_from_slice(&self.block_count.to_be_bytes());
        out[6..8].copy_from_slice(&self.shard_index.to_be_bytes());
        out[8..10].copy_from_slice(&self.data_shards.to_be_bytes());
        out[10..12].copy_from_slice(&self.recovery_shards.to_be_bytes());
        out[12..20].copy_from_slice(&self.frame_index.to_be_bytes());
        out[20..24].copy_from_slice(&self.frame_len.to_be_bytes());
        out[24..32].copy_from_slice(&self.pts.to_be_bytes());
    }

    /// Reads and checks a header: lengths, flags, and the internal consistency
    /// of the counts. Bounds against the session's configuration are the
    /// reassembler's job.
    pub fn decode(buf: &[u8]) -> Result<InnerHeader, WireError> {
        let b: &[u8; INNER_HEADER_LEN] = buf
            .get(..INNER_HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::TooShort {
                need: INNER_HEADER_LEN,
                have: buf.len(),
            })?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(x)
        };
        let h = InnerHeader {
            flags: b[0],
            block_index: u16_at(2),
            block_count: u16_at(4),
            shard_index: u16_at(6),
            data_shards: u16_at(8),
            recovery_shards: u16_at(10),
            frame_index: u64_at(12),
            frame_len: u32_at(20),
            pts: u64_at(24),
        };
        if h.flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::UnknownFlags(h.flags & !KNOWN_FLAGS));
        }
        if b[1] != 0 {
            return Err(WireError::ReservedNotZero(b[1]));
        }
        if h.block_count == 0 || h.block_index >= h.block_count {
            return Err(WireError::Inconsistent("block index outside block count"));
        }
        if h.data_shards == 0 {
            return Err(WireError::Inconsistent("zero data shards"));
        }
        if u32::from(h.shard_index) >= u32::from(h.data_shards) + u32::from(h.recovery_shards) {
            return Err(WireError::Inconsistent("shard index outside k + m"));
        }
        Ok(h)
    }
}

/// Bytes of a [`PathMessage`] at the start of a path packet's payload.
pub const PATH_MESSAGE_LEN: usize = 1 + PATH_TOKEN_LEN;
/// Bytes of a path-validation token.
pub const PATH_TOKEN_LEN: usize = 16;

/// What a path packet ([`FLAG_PATH`]) says: the host challenges the client's
/// data address with a fresh token, and the client's data socket echoes it
/// (docs/PROTOCOL.md §9.3). The rest of the payload is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathMessage {
    /// Which way it goes.
    pub kind: PathKind,
    /// The host's random token.
    pub token: [u8; PATH_TOKEN_LEN],
}

/// The two path messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Host → client data address: prove you receive here.
    Challenge = 1,
    /// Client data socket → host: the token, from the address challenged.
    Response = 2,
}

impl PathMessage {
    /// Writes the message at the start of `payload` (at least [`PATH_MESSAGE_LEN`] bytes).
    pub fn encode(&self, payload: &mut [u8]) {
        payload[0] = self.kind as u8;
        payload[1..PATH_MESSAGE_LEN].copy_from_slice(&self.token);
    }

    /// Reads a message from the start of a path packet's payload.
    pub fn decode(payload: &[u8]) -> Result<PathMessage, WireError> {
        let b = payload.get(..PATH_MESSAGE_LEN).ok_or(WireError::TooShort {
            need: PATH_MESSAGE_LEN,
            have: payload.len(),
        })?;
        let kind = match b[0] {
            1 => PathKind::Challenge,
            2 => PathKind::Response,
            _ => return Err(WireError::Inconsistent("unknown path message kind")),
        };
        let mut token = [0u8; PATH_TOKEN_LEN];
        token.copy_from_slice(&b[1..]);
        Ok(PathMessage { kind, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> InnerHeader {
        InnerHeader {
            flags: FLAG_KEYFRAME,
            block_index: 1,
            block_count: 2,
            shard_index: 7,
            data_shards: 10,
            recovery_shards: 3,
            frame_index: 42,
            frame_len: 123_456,
            pts: 99,
        }
    }

    #[test]
    fn inner_header_round_trips() {
        let mut buf = [0u8; INNER_HEADER_LEN];
        sample().encode(&mut buf);
        assert_eq!(InnerHeader::decode(&buf).unwrap(), sample());
    }

    #[test]
    fn clear_header_round_trips_and_rejects_bad_version() {
        let mut buf = [0u8; CLEAR_HEADER_LEN];
        ClearHeader {
            seq: 0x0102_0304_0506_0708,
        }
        .encode(&mut buf);
        assert_eq!(ClearHeader::decode(&buf).unwrap().seq, 0x0102_0304_0506_0708);
        buf[0] = 2;
        assert_eq!(ClearHeader::decode(&buf), Err(WireError::UnknownVersion(2)));
        assert!(matches!(
            ClearHeader::decode(&buf[..5]),
            Err(WireError::TooShort { need: 9, have: 5 })
        ));
    }

    #[test]
    fn inconsistent_headers_are_rejected() {
        let mut buf = [0u8; INNER_HEADER_LEN];
        let cases = [
            InnerHeader {
                flags: 0x80,
                ..sample()
            },
            InnerHeader {
                block_count: 0,
                block_index: 0,
                ..sample()
            },
            InnerHeader {
                block_index: 2,
                ..sample()
            },
            InnerHeader {
                data_shards: 0,
                ..sample()
            },
            InnerHeader {
                shard_index: 13,
                ..sample()
            },
        ];
        for h in cases {
            h.encode(&mut buf);
            assert!(InnerHeader::decode(&buf).is_err(), "{h:?} accepted");
        }
        sample().encode(&mut buf);
        buf[1] = 1;
        assert_eq!(InnerHeader::decode(&buf), Err(WireError::ReservedNotZero(1)));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ClearHeader::decode(&bytes);
            if let Ok(h) = InnerHeader::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes.
                let mut out = [0u8; INNER_HEADER_LEN];
                h.encode(&mut out);
                prop_assert_eq!(&out[..], &bytes[..INNER_HEADER_LEN]);
            }
        }
    }
}
