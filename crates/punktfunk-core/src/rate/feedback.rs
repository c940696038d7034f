//! Rate feedback: what the client reports to the host's rate controller and
//! its wire form (a QUIC datagram payload, docs/PROTOCOL.md §9.8). The client
//! collects it with a [`FeedbackBuilder`](super::FeedbackBuilder).

use std::fmt;

/// First four bytes of every feedback datagram: `PKFB`.
pub const FEEDBACK_MAGIC: [u8; 4] = *b"PKFB";
/// Feedback format version this build writes and reads.
pub const FEEDBACK_VERSION: u8 = 1;
/// Most arrival samples one feedback carries.
pub const MAX_SAMPLES: usize = 64;
/// Bytes before the samples.
pub const FEEDBACK_HEADER_LEN: usize = 52;
/// Bytes per arrival sample.
pub const SAMPLE_LEN: usize = 8;
/// Largest encoded feedback (564 bytes: one QUIC datagram on any path).
pub const MAX_FEEDBACK_LEN: usize = FEEDBACK_HEADER_LEN + MAX_SAMPLES * SAMPLE_LEN;
/// Flag: sent ahead of its cadence because the client lost a frame.
pub const FLAG_URGENT: u8 = 0x01;

/// Whether a QUIC datagram is rate feedback (the magic, and at least a
/// header: input datagrams are 16 bytes), as opposed to an input event: how
/// the host tells them apart before decoding either.
pub fn is_feedback(datagram: &[u8]) -> bool {
    datagram.len() >= FEEDBACK_HEADER_LEN && datagram.starts_with(&FEEDBACK_MAGIC)
}
const KNOWN_FLAGS: u8 = FLAG_URGENT;
/// Largest datagram a byte count may claim per packet (UDP's limit).
const MAX_DATAGRAM_BYTES: u64 = 65_535;

/// One received data datagram: its packet sequence and when it arrived, in
/// microseconds of the client's clock (an arbitrary origin, constant within a
/// session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrivalSample {
    /// Packet sequence of the datagram (the clear header's `seq`).
    pub seq: u64,
    /// Arrival time, µs on the client's clock.
    pub arrival_us: u64,
}

/// One rate feedback report, client → host.
///
/// Counters are cumulative over the session; samples are in arrival order and
/// the last one is the newest datagram received before the report was built.
/// Holds at most [`MAX_SAMPLES`] samples inline: building or decoding one
/// allocates nothing.
#[derive(Clone)]
pub struct Feedback {
    /// Report number, +1 per report (starts at 0).
    pub seq: u32,
    /// Sent early because the client lost a frame.
    pub urgent: bool,
    /// Data datagrams received (authenticated).
    pub packets_received: u64,
    /// Wire bytes of those datagrams.
    pub bytes_received: u64,
    /// Highest packet sequence received.
    pub highest_seq: u64,
    /// Datagrams counted lost: gaps older than the reorder allowance.
    pub packets_lost: u64,
    samples: [ArrivalSample; MAX_SAMPLES],
    len: usize,
}

impl PartialEq for Feedback {
    /// Equal when every field and the samples in use are (slots past the
    /// sample count are not part of the report).
    fn eq(&self, other: &Feedback) -> bool {
        self.seq == other.seq
            && self.urgent == other.urgent
            && self.packets_received == other.packets_received
            && self.bytes_received == other.bytes_received
            && self.highest_seq == other.highest_seq
            && self.packets_lost == other.packets_lost
            && self.samples() == other.samples()
    }
}

impl Eq for Feedback {}

impl fmt::Debug for Feedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feedback")
            .field("seq", &self.seq)
            .field("urgent", &self.urgent)
            .field("packets_received", &self.packets_received)
            .field("bytes_received", &self.bytes_received)
            .field("highest_seq", &self.highest_seq)
            .field("packets_lost", &self.packets_lost)
            .field("samples", &self.samples())
            .finish()
    }
}

impl Default for Feedback {
    fn default() -> Self {
        Feedback {
            seq: 0,
            urgent: false,
            packets_received: 0,
            bytes_received: 0,
            highest_seq: 0,
            packets_lost: 0,
            samples: [ArrivalSample::default(); MAX_SAMPLES],
            len: 0,
        }
    }
}

/// Why a feedback datagram was refused. Every field of the datagram is
/// checked; a refused datagram is a counted drop at the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackError {
    /// Shorter than the fixed header.
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Does not start with `PKFB`.
    BadMagic,
    /// A version this build does not read.
    UnknownVersion(u8),
    /// Flag bits this version does not define.
    UnknownFlags(u8),
    /// More samples than [`MAX_SAMPLES`].
    TooManySamples(usize),
    /// The length does not match the sample count.
    LengthMismatch {
        /// Bytes the sample count implies.
        expected: usize,
        /// Bytes present.
        have: usize,
    },
    /// Fields that contradict each other (e.g. more packets than sequences).
    Inconsistent(&'static str),
}

impl fmt::Display for FeedbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedbackError::TooShort { need, have } => write!(f, "feedback needs {need} bytes, has {have}"),
            FeedbackError::BadMagic => write!(f, "feedback does not start with PKFB"),
            FeedbackError::UnknownVersion(v) => write!(f, "unknown feedback version {v}"),
            FeedbackError::UnknownFlags(x) => write!(f, "unknown feedback flag bits {x:#04x}"),
            FeedbackError::TooManySamples(n) => write!(f, "{n} samples, at most {MAX_SAMPLES}"),
            FeedbackError::LengthMismatch { expected, have } => {
                write!(f, "feedback length {have}, its sample count implies {expected}")
            }
            FeedbackError::Inconsistent(what) => write!(f, "inconsistent feedback: {what}"),
        }
    }
}

impl std::error::Error for FeedbackError {}

impl Feedback {
    /// The arrival samples, oldest arrival first.
    pub fn samples(&self) -> &[ArrivalSample] {
        &self.samples[..self.len]
    }

    /// Appends a sample; returns false (and drops it) when the report is full.
    /// The encoder refuses reports whose samples break the rules of
    /// [`Feedback::check`].
    pub fn push_sample(&mut self, s: ArrivalSample) -> bool {
        if self.len == MAX_SAMPLES {
            return false;
        }
        self.samples[self.len] = s;
        self.len += 1;
        true
    }

    /// Removes every sample.
    pub fn clear_samples(&mut self) {
        self.len = 0;
    }

    /// Bytes of the encoded report.
    pub fn encoded_len(&self) -> usize {
        FEEDBACK_HEADER_LEN + self.len * SAMPLE_LEN
    }

    /// Checks the invariants every encoded report satisfies: at most as many
    /// packets as sequences, byte counts a datagram can have, samples at or
    /// below the highest sequence and within 2^32 of it, arrivals in order
    /// and within 2^32 µs of the newest.
    pub fn check(&self) -> Result<(), FeedbackError> {
        let span = self.highest_seq.saturating_add(1);
        if self.packets_received > span {
            return Err(FeedbackError::Inconsistent(
                "more packets received than sequences",
            ));
        }
        if self.packets_lost > span {
            return Err(FeedbackError::Inconsistent("more packets lost than sequences"));
        }
        if self.bytes_received > self.packets_received.saturating_mul(MAX_DATAGRAM_BYTES) {
            return Err(FeedbackError::Inconsistent(
                "more bytes than the packets can hold",
            ));
        }
        if self.packets_received == 0 && (self.bytes_received != 0 || self.highest_seq != 0) {
            return Err(FeedbackError::Inconsistent("bytes or a sequence without packets"));
        }
        if self.len as u64 > self.packets_received {
            return Err(FeedbackError::Inconsistent("more samples than packets"));
        }
        let newest = self.samples().last().map_or(0, |s| s.arrival_us);
        let mut prev = 0u64;
        for s in self.samples() {
            if s.seq > self.highest_seq || self.highest_seq - s.seq > u64::from(u32::MAX) {
                return Err(FeedbackError::Inconsistent("sample sequence outside the report"));
            }
            if s.arrival_us < prev || newest - s.arrival_us > u64::from(u32::MAX) {
                return Err(FeedbackError::Inconsistent("sample arrivals out of order"));
            }
            prev = s.arrival_us;
        }
        Ok(())
    }

    /// Appends the wire form to `out` (no allocation when `out` has
    /// [`MAX_FEEDBACK_LEN`] spare capacity). Fails only for a report that
    /// [`Feedback::check`] refuses.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FeedbackError> {
        self.check()?;
        let newest = self.samples().last().map_or(0, |s| s.arrival_us);
        out.extend_from_slice(&FEEDBACK_MAGIC);
        out.push(FEEDBACK_VERSION);
        out.push(if self.urgent { FLAG_URGENT } else { 0 });
        out.extend_from_slice(&(self.len as u16).to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        for v in [
            self.packets_received,
            self.bytes_received,
            self.highest_seq,
            self.packets_lost,
            newest,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for s in self.samples() {
            // Both differences fit: check() bounded them.
            out.extend_from_slice(&((self.highest_seq - s.seq) as u32).to_be_bytes());
            out.extend_from_slice(&((newest - s.arrival_us) as u32).to_be_bytes());
        }
        Ok(())
    }

    /// The wire form in a new vector.
    pub fn encode(&self) -> Result<Vec<u8>, FeedbackError> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v)?;
        Ok(v)
    }

    /// Parses and validates a feedback datagram. Never panics; every
    /// malformed or contradictory input is a typed error.
    pub fn decode(b: &[u8]) -> Result<Feedback, FeedbackError> {
        if b.len() < FEEDBACK_HEADER_LEN {
            return Err(FeedbackError::TooShort {
                need: FEEDBACK_HEADER_LEN,
                have: b.len(),
            });
        }
        if b[..4] != FEEDBACK_MAGIC {
            return Err(FeedbackError::BadMagic);
        }
        if b[4] != FEEDBACK_VERSION {
            return Err(FeedbackError::UnknownVersion(b[4]));
        }
        let flags = b[5];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FeedbackError::UnknownFlags(flags));
        }
        let n = usize::from(u16::from_be_bytes([b[6], b[7]]));
        if n > MAX_SAMPLES {
            return Err(FeedbackError::TooManySamples(n));
        }
        let expected = FEEDBACK_HEADER_LEN + n * SAMPLE_LEN;
        if b.len() != expected {
            return Err(FeedbackError::LengthMismatch {
                expected,
                have: b.len(),
            });
        }
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        let mut fb = Feedback {
            seq: u32_at(8),
            urgent: flags & FLAG_URGENT != 0,
            packets_received: u64_at(12),
            bytes_received: u64_at(20),
            highest_seq: u64_at(28),
            packets_lost: u64_at(36),
            ..Feedback::default()
        };
        let newest = u64_at(44);
        if n == 0 && newest != 0 {
            return Err(FeedbackError::Inconsistent("a reference time without samples"));
        }
        let mut last_age = u32::MAX;
        for i in 0..n {
            let at = FEEDBACK_HEADER_LEN + i * SAMPLE_LEN;
            let back = u64::from(u32_at(at));
            let age = u32_at(at + 4);
            if age > last_age {
                return Err(FeedbackError::Inconsistent("sample arrivals out of order"));
            }
            last_age = age;
            let seq = fb
                .highest_seq
                .checked_sub(back)
                .ok_or(FeedbackError::Inconsistent("sample sequence below zero"))?;
            let arrival_us = newest
                .checked_sub(u64::from(age))
                .ok_or(FeedbackError::Inconsistent("sample arrival before time zero"))?;
            fb.push_sample(ArrivalSample { seq, arrival_us });
        }
        if n > 0 && last_age != 0 {
            return Err(FeedbackError::Inconsistent(
                "the newest sample is not the reference",
            ));
        }
        fb.check()?;
        Ok(fb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Feedback {
        let mut fb = Feedback {
            seq: 7,
            urgent: true,
            packets_received: 1000,
            bytes_received: 1_401_000,
            highest_seq: 1003,
            packets_lost: 2,
            ..Feedback::default()
        };
        fb.push_sample(ArrivalSample {
            seq: 990,
            arrival_us: 5_000,
        });
        fb.push_sample(ArrivalSample {
            seq: 1003,
            arrival_us: 5_400,
        });
        fb
    }

    #[test]
    fn a_report_survives_the_wire() {
        let fb = sample_report();
        let b = fb.encode().unwrap();
        assert_eq!(b.len(), FEEDBACK_HEADER_LEN + 2 * SAMPLE_LEN);
        assert_eq!(Feedback::decode(&b).unwrap(), fb);
    }

    #[test]
    fn every_truncation_and_every_flipped_header_byte_is_refused_or_consistent() {
        let b = sample_report().encode().unwrap();
        for n in 0..b.len() {
            assert!(Feedback::decode(&b[..n]).is_err(), "truncated to {n}");
        }
        // An input datagram is exactly 16 bytes: never feedback.
        assert!(matches!(
            Feedback::decode(&[0u8; 16]),
            Err(FeedbackError::TooShort { .. })
        ));
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut x = b.clone();
                x[i] ^= 1 << bit;
                if let Ok(fb) = Feedback::decode(&x) {
                    fb.check().expect("decoded reports are consistent");
                    assert_eq!(fb.encode().unwrap(), x, "decoding is exact");
                }
            }
        }
    }

    #[test]
    fn equality_looks_only_at_the_samples_in_use() {
        let mut a = sample_report();
        let b = sample_report();
        a.push_sample(ArrivalSample {
            seq: 1003,
            arrival_us: 9_999,
        });
        a.clear_samples();
        for s in b.samples() {
            a.push_sample(*s);
        }
        assert_eq!(a, b);
        a.clear_samples();
        assert_ne!(a, b);
    }

    #[test]
    fn contradictions_are_named() {
        let mut fb = sample_report();
        fb.packets_received = 2000;
        assert_eq!(
            fb.encode(),
            Err(FeedbackError::Inconsistent(
                "more packets received than sequences"
            ))
        );
        let mut b = sample_report().encode().unwrap();
        b[6..8].copy_from_slice(&65u16.to_be_bytes());
        assert_eq!(Feedback::decode(&b), Err(FeedbackError::TooManySamples(65)));
        let mut b = sample_report().encode().unwrap();
        b[4] = 9;
        assert_eq!(Feedback::decode(&b), Err(FeedbackError::UnknownVersion(9)));
        // Arrivals out of order: swap the two ages.
        let mut b = sample_report().encode().unwrap();
        b[FEEDBACK_HEADER_LEN + 4..FEEDBACK_HEADER_LEN + 8].copy_from_slice(&0u32.to_be_bytes());
        b[FEEDBACK_HEADER_LEN + 12..FEEDBACK_HEADER_LEN + 16].copy_from_slice(&400u32.to_be_bytes());
        assert!(matches!(
            Feedback::decode(&b),
            Err(FeedbackError::Inconsistent(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = Vec::new();
        for i in 0..20_000 {
            buf.clear();
            let len = (next() % 700) as usize;
            if i % 2 == 0 && len >= FEEDBACK_HEADER_LEN {
                buf.extend_from_slice(b"PKFB\x01\x00");
                let n = ((len - FEEDBACK_HEADER_LEN) / SAMPLE_LEN) as u16;
                buf.extend_from_slice(&n.to_be_bytes());
            }
            while buf.len() < len {
                buf.push(next() as u8);
            }
            if let Ok(fb) = Feedback::decode(&buf) {
                fb.check().unwrap();
            }
        }
    }
}
