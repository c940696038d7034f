//! AES-128-GCM packet protection with implicit key rotation and a replay window.
//!
//! * Nonce = 4-byte salt ‖ 8-byte big-endian packet sequence. Each direction has
//!   its own base key and salt, and a sequence that only counts up, so a
//!   (key, nonce) pair is never used twice.
//! * Key rotation: packet `seq` is sealed with the key of epoch `seq >> 22`, derived
//!   from the direction's base key by HKDF-SHA256 (`"pkf1 epoch key"`). Each key thus
//!   seals at most 2^22 packets, half of the 2^23 confidentiality limit RFC 9001
//!   §6.6 sets for AEAD_AES_128_GCM. The epoch is implied by the sequence, so no
//!   key-phase bit is needed and reordering across a boundary is harmless.
//! * AAD = the clear header (version + sequence): the sequence is authenticated.
//! * Keys are zeroized on drop and never printed by `Debug`.
//!
//! The cipher sits behind [`Sealer`] and [`Opener`] only; `aead` picks the
//! implementation ([`Backend`]: `ring` by default, or the `aes-gcm` crate).

mod aead;
mod replay;

use aead::Aead;
pub use aead::Backend;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use replay::{ReplayError, ReplayWindow, REPLAY_WINDOW};

use crate::wire::{ClearHeader, CLEAR_HEADER_LEN, TAG_LEN};

/// AES-128 key bytes.
pub const KEY_LEN: usize = 16;
/// Nonce salt bytes.
pub const SALT_LEN: usize = 4;
/// log2 of the packets sealed under one key.
pub const EPOCH_SHIFT: u32 = 22;
/// Packets sealed under one key before rotating (2^22).
pub const PACKETS_PER_KEY: u64 = 1 << EPOCH_SHIFT;

/// Key and nonce salt of one direction. Zeroized on drop; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DirectionKey {
    key: [u8; KEY_LEN],
    salt: [u8; SALT_LEN],
}

impl DirectionKey {
    /// The key and salt bytes, for tests that check where key material goes.
    #[cfg(all(test, feature = "quic"))]
    pub(crate) fn material(&self) -> Vec<u8> {
        [&self.key[..], &self.salt[..]].concat()
    }
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKey { <redacted> }")
    }
}

impl DirectionKey {
    /// A key from raw bytes.
    pub fn new(key: [u8; KEY_LEN], salt: [u8; SALT_LEN]) -> Self {
        DirectionKey { key, salt }
    }

    /// The key of rotation epoch `epoch`.
    fn epoch_cipher(&self, epoch: u64, backend: Backend) -> Aead {
        let hk = Hkdf::<Sha256>::new(Some(&self.salt), &self.key);
        let mut okm = [0u8; KEY_LEN];
        let mut info = [0u8; 22];
        info[..14].copy_from_slice(b"pkf1 epoch key");
        info[14..].copy_from_slice(&epoch.to_be_bytes());
        hk.expand(&info, &mut okm)
            .expect("16 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aead::new(backend, &okm);
        okm.zeroize();
        cipher
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(&seq.to_be_bytes());
        n
    }
}

/// Keys for both directions of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    /// Protects host → client packets (video).
    pub host_to_client: DirectionKey,
    /// Protects client → host packets.
    pub client_to_host: DirectionKey,
}

impl SessionKeys {
    /// Expands a shared secret (at least 16 bytes, e.g. from a key exchange or a
    /// TLS exporter) into both directions' keys with HKDF-SHA256 and `pkf1`
    /// labels. `context` binds the keys to a session (e.g. its id).
    pub fn derive(secret: &[u8], context: &[u8]) -> crate::Result<SessionKeys> {
        if secret.len() < KEY_LEN {
            return Err(crate::Error::invalid(format!(
                "session secret must be at least {KEY_LEN} bytes, got {}",
                secret.len()
            )));
        }
        let hk = Hkdf::<Sha256>::new(Some(context), secret);
        let dir = |label: &[u8]| {
            let mut okm = [0u8; KEY_LEN + SALT_LEN];
            hk.expand(label, &mut okm)
                .expect("20 bytes is a valid HKDF-SHA256 output length");
            let mut key = [0u8; KEY_LEN];
            let mut salt = [0u8; SALT_LEN];
            key.copy_from_slice(&okm[..KEY_LEN]);
            salt.copy_from_slice(&okm[KEY_LEN..]);
            okm.zeroize();
            DirectionKey { key, salt }
        };
        Ok(SessionKeys {
            host_to_client: dir(b"pkf1 h2c"),
            client_to_host: dir(b"pkf1 c2h"),
        })
    }

    /// Keys for a raw data-plane session (no control plane) from a secret the
    /// application shares with its peer: [`SessionKeys::derive`], refusing an
    /// empty `context`. A raw session's sequence numbers, hence its AES-GCM
    /// nonces, start at 0 every time, so two sessions with the same secret and
    /// context would seal different packets under the same (key, nonce); the
    /// context, unique per session (a random session id both ends learned,
    /// say), keeps them apart. The bindings' raw sessions go through this.
    pub fn derive_raw(secret: &[u8], context: &[u8]) -> crate::Result<SessionKeys> {
        if context.is_empty() {
            return Err(crate::Error::invalid(
                "the key context is empty: a raw session's nonces restart at 0, so give each session its \
                 own context (e.g. 16 random bytes both ends agree on) to keep a reused secret from \
                 repeating them",
            ));
        }
        SessionKeys::derive(secret, context)
    }
}

/// Why a packet did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a header and a tag, or an unknown version.
    Malformed,
    /// Older than the replay window.
    Stale,
    /// Sequence already seen.
    Replay,
    /// Authentication failed (tampered, truncated, forged, or another key).
    Auth,
}

/// Every packet sequence of a direction has been used; its keys must not seal again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceExhausted;

impl std::fmt::Display for SequenceExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("packet sequence space exhausted; start a new session")
    }
}

impl std::error::Error for SequenceExhausted {}

/// Seals outgoing packets of one direction. Owns the packet sequence.
pub struct Sealer {
    key: DirectionKey,
    next_seq: u64,
    epoch: u64,
    backend: Backend,
    cipher: Aead,
    rotations: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("next_seq", &self.next_seq)
            .field("epoch", &self.epoch)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer whose first packet gets sequence 0.
    pub fn new(key: DirectionKey) -> Self {
        Sealer::starting_at(key, 0)
    }

    /// A sealer whose first packet gets sequence `seq` (tests of rotation).
    pub fn starting_at(key: DirectionKey, seq: u64) -> Self {
        Sealer::with_backend(key, seq, Backend::default())
    }

    /// A sealer on a chosen AES-GCM implementation, first sequence `seq`.
    pub fn with_backend(key: DirectionKey, seq: u64, backend: Backend) -> Self {
        let epoch = seq >> EPOCH_SHIFT;
        let cipher = key.epoch_cipher(epoch, backend);
        Sealer {
            key,
            next_seq: seq,
            epoch,
            backend,
            cipher,
            rotations: 0,
        }
    }

    /// Key epochs started after the first.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// The sequence the next packet will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Seals `packet` in place. Layout: `[clear header][plaintext][TAG_LEN spare]`;
    /// the clear header and the tag are written here. Returns the sequence used,
    /// or [`SequenceExhausted`] once every sequence has been used: a nonce is
    /// never reused, so the session must end (unreachable when counting from 0).
    ///
    /// # Panics
    /// If `packet` is shorter than a header plus a tag: a caller bug, not input.
    pub fn seal(&mut self, packet: &mut [u8]) -> Result<u64, SequenceExhausted> {
        assert!(
            packet.len() >= CLEAR_HEADER_LEN + TAG_LEN,
            "packet too short to seal"
        );
        let seq = self.next_seq;
        if seq == u64::MAX {
            return Err(SequenceExhausted);
        }
        self.next_seq = seq + 1;
        let epoch = seq >> EPOCH_SHIFT;
        if epoch != self.epoch {
            self.cipher = self.key.epoch_cipher(epoch, self.backend);
            self.epoch = epoch;
            self.rotations += 1;
        }
        let (header, rest) = packet.split_at_mut(CLEAR_HEADER_LEN);
        let header: &mut [u8; CLEAR_HEADER_LEN] = header.try_into().expect("split at header length");
        ClearHeader { seq }.encode(header);
        let body_len = rest.len() - TAG_LEN;
        let (body, tag_out) = rest.split_at_mut(body_len);
        let tag = self.cipher.seal(self.key.nonce(seq), header, body);
        tag_out.copy_from_slice(&tag);
        Ok(seq)
    }
}

struct EpochCipher {
    epoch: u64,
    cipher: Aead,
}

/// Which of an [`Opener`]'s keys a packet's epoch selects.
#[derive(Clone, Copy)]
enum Slot {
    Current,
    Previous,
    Next,
    Trial,
}

/// Datagrams opened between two derivations of a key for an epoch more than
/// one ahead (see [`Opener`]).
pub const FAR_EPOCH_INTERVAL: u64 = 256;

/// Opens incoming packets of one direction: replay filter, key epochs, AES-GCM.
///
/// A datagram claiming an epoch must not cost a key derivation each, or a
/// forger could make the receiver run HKDF per packet. The opener holds the
/// keys of the newest epoch that authenticated a packet (`current`), the one
/// before it, and the next one, derived ahead of time: the sender's rotation
/// finds its key ready, and forged datagrams of any of these three epochs cost
/// one AES-GCM check, like any forgery. Only an epoch further ahead (a
/// receiver that missed a whole epoch of 2^22 datagrams) needs a derivation on
/// trial, at most one per [`FAR_EPOCH_INTERVAL`] datagrams; older epochs are
/// already outside the replay window.
pub struct Opener {
    key: DirectionKey,
    current: EpochCipher,
    previous: Option<EpochCipher>,
    next: EpochCipher,
    /// A key for an epoch more than one ahead, kept only once a packet
    /// authenticates with it, so forged sequences cannot evict working keys.
    trial: Option<EpochCipher>,
    /// Datagrams that reached the key choice, and the count from which the
    /// next trial derivation is allowed.
    attempts: u64,
    trial_allowed_at: u64,
    derivations: u64,
    replay: ReplayWindow,
    backend: Backend,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("epoch", &self.current.epoch)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener expecting sequences from 0 upwards.
    pub fn new(key: DirectionKey) -> Self {
        Opener::with_backend(key, Backend::default())
    }

    /// An opener on a chosen AES-GCM implementation.
    pub fn with_backend(key: DirectionKey, backend: Backend) -> Self {
        let current = EpochCipher {
            epoch: 0,
            cipher: key.epoch_cipher(0, backend),
        };
        let next = EpochCipher {
            epoch: 1,
            cipher: key.epoch_cipher(1, backend),
        };
        Opener {
            key,
            current,
            previous: None,
            next,
            trial: None,
            attempts: 0,
            trial_allowed_at: 0,
            derivations: 2,
            replay: ReplayWindow::new(),
            backend,
        }
    }

    /// Epoch keys derived so far (two at creation, one per rotation, and the
    /// rate-limited trials for epochs further ahead).
    pub fn key_derivations(&self) -> u64 {
        self.derivations
    }

    fn derive(&mut self, epoch: u64) -> EpochCipher {
        self.derivations += 1;
        EpochCipher {
            epoch,
            cipher: self.key.epoch_cipher(epoch, self.backend),
        }
    }

    /// Opens `packet` in place. On success returns the sequence; the plaintext is
    /// `packet[CLEAR_HEADER_LEN..packet.len() - TAG_LEN]`.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<u64, OpenError> {
        if packet.len() < CLEAR_HEADER_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let seq = ClearHeader::decode(packet).map_err(|_| OpenError::Malformed)?.seq;
        self.replay.check(seq).map_err(|e| match e {
            ReplayError::Stale => OpenError::Stale,
            ReplayError::Replay => OpenError::Replay,
        })?;
        let epoch = seq >> EPOCH_SHIFT;
        let nonce = self.key.nonce(seq);
        self.attempts += 1;
        if epoch > self.next.epoch && self.trial.as_ref().is_none_or(|t| t.epoch != epoch) {
            if self.attempts < self.trial_allowed_at {
                return Err(OpenError::Auth);
            }
            self.trial_allowed_at = self.attempts + FAR_EPOCH_INTERVAL;
            self.trial = Some(self.derive(epoch));
        }
        let (header, rest) = packet.split_at_mut(CLEAR_HEADER_LEN);
        let (slot, cipher) = if epoch == self.current.epoch {
            (Slot::Current, &self.current.cipher)
        } else if epoch == self.next.epoch {
            (Slot::Next, &self.next.cipher)
        } else if let Some(p) = self.previous.as_ref().filter(|p| p.epoch == epoch) {
            (Slot::Previous, &p.cipher)
        } else if let Some(t) = self.trial.as_ref().filter(|t| t.epoch == epoch) {
            (Slot::Trial, &t.cipher)
        } else {
            // Behind the previous epoch: older than the replay window allows.
            return Err(OpenError::Stale);
        };
        cipher.open(nonce, header, rest).map_err(|_| OpenError::Auth)?;
        self.replay.commit(seq);
        // The derivations below follow an authenticated packet: a sender's
        // rotation, once per 2^22 datagrams, never a forger's choice.
        match slot {
            Slot::Current | Slot::Previous => {}
            Slot::Next => {
                let after = self.derive(epoch + 1);
                let newest = std::mem::replace(&mut self.next, after);
                self.previous = Some(std::mem::replace(&mut self.current, newest));
            }
            Slot::Trial => {
                if let Some(t) = self.trial.take() {
                    self.current = t;
                    self.next = self.derive(epoch + 1);
                    self.previous = Some(self.derive(epoch - 1));
                }
            }
        }
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn test_key(b: u8) -> DirectionKey {
        DirectionKey::new([b; KEY_LEN], [b ^ 0x5a; SALT_LEN])
    }

    fn packet(body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; CLEAR_HEADER_LEN];
        p.extend_from_slice(body);
        p.extend_from_slice(&[0u8; TAG_LEN]);
        p
    }

    fn plaintext(p: &[u8]) -> &[u8] {
        &p[CLEAR_HEADER_LEN..p.len() - TAG_LEN]
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_body() {
        let mut s = Sealer::new(test_key(1));
        let mut o = Opener::new(test_key(1));
        let body = b"frame metadata and shard bytes".to_vec();
        let mut p = packet(&body);
        assert_eq!(s.seal(&mut p), Ok(0));
        assert_ne!(plaintext(&p), &body[..]);
        assert_eq!(o.open(&mut p), Ok(0));
        assert_eq!(plaintext(&p), &body[..]);
    }

    #[test]
    fn tampering_anywhere_fails_authentication() {
        let mut s = Sealer::new(test_key(1));
        let mut sealed = packet(&[7u8; 100]);
        s.seal(&mut sealed).unwrap();
        for at in 1..sealed.len() {
            let mut p = sealed.clone();
            p[at] ^= 0x40;
            let mut o = Opener::new(test_key(1));
            assert!(o.open(&mut p).is_err(), "flip at byte {at} was accepted");
        }
        let mut o = Opener::new(test_key(2));
        assert_eq!(o.open(&mut sealed.clone()), Err(OpenError::Auth), "wrong key");
        let mut short = sealed[..sealed.len() - 1].to_vec();
        assert_eq!(Opener::new(test_key(1)).open(&mut short), Err(OpenError::Auth));
        assert_eq!(
            Opener::new(test_key(1)).open(&mut sealed[..20].to_vec()),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn replays_are_rejected_after_a_successful_open_only() {
        let mut s = Sealer::new(test_key(3));
        let mut o = Opener::new(test_key(3));
        let mut p = packet(&[1, 2, 3]);
        s.seal(&mut p).unwrap();
        let copy = p.clone();
        // A forged copy with a bad tag must not burn the sequence.
        let mut forged = copy.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(o.open(&mut forged), Err(OpenError::Auth));
        assert_eq!(o.open(&mut p), Ok(0));
        assert_eq!(o.open(&mut copy.clone()), Err(OpenError::Replay));
    }

    #[test]
    fn keys_rotate_and_reordered_packets_across_the_boundary_still_open() {
        let start = PACKETS_PER_KEY - 3;
        let mut s = Sealer::starting_at(test_key(4), start);
        let mut packets: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                let mut p = packet(&[i; 40]);
                s.seal(&mut p).unwrap();
                p
            })
            .collect();
        assert_eq!(s.rotations(), 1);
        let mut o = Opener::new(test_key(4));
        // Receive the new epoch first, then the old one's stragglers, mixed.
        for i in [3usize, 0, 4, 1, 5, 2] {
            let seq = o
                .open(&mut packets[i])
                .unwrap_or_else(|e| panic!("packet {i}: {e:?}"));
            assert_eq!(seq, start + i as u64);
            assert_eq!(plaintext(&packets[i]), &[i as u8; 40][..]);
        }
    }

    /// A datagram with a valid header for `seq` and a tag nobody sealed.
    fn forged(seq: u64) -> Vec<u8> {
        let mut p = packet(&[0xee; 64]);
        let header: &mut [u8; CLEAR_HEADER_LEN] = (&mut p[..CLEAR_HEADER_LEN]).try_into().unwrap();
        ClearHeader { seq }.encode(header);
        p
    }

    #[test]
    fn forged_datagrams_of_the_next_epoch_cost_no_key_derivation() {
        let mut s = Sealer::new(test_key(7));
        let mut o = Opener::new(test_key(7));
        let base = o.key_derivations();
        for i in 0..10_000u64 {
            let mut p = forged(PACKETS_PER_KEY + i);
            assert_eq!(o.open(&mut p), Err(OpenError::Auth));
        }
        assert_eq!(o.key_derivations(), base, "the next epoch's key was ready");
        let mut p = packet(&[1; 16]);
        assert_eq!(s.seal(&mut p), Ok(0));
        assert_eq!(o.open(&mut p), Ok(0), "the working key survived the flood");
    }

    #[test]
    fn forged_datagrams_of_far_epochs_cost_a_bounded_number_of_derivations() {
        let mut o = Opener::new(test_key(8));
        let base = o.key_derivations();
        let n = 100_000u64;
        for i in 0..n {
            // A different epoch every datagram, each more than one ahead.
            let mut p = forged((2 + i) << EPOCH_SHIFT);
            assert_eq!(o.open(&mut p), Err(OpenError::Auth));
        }
        let spent = o.key_derivations() - base;
        assert!(
            spent <= n / FAR_EPOCH_INTERVAL + 1,
            "{spent} derivations for {n} forgeries"
        );
    }

    #[test]
    fn a_receiver_that_missed_whole_epochs_catches_up_despite_forgeries() {
        let start = 7 * PACKETS_PER_KEY + 10;
        let mut s = Sealer::starting_at(test_key(9), start);
        let mut o = Opener::new(test_key(9));
        // A forger spends the trial budget just before the real traffic comes.
        assert_eq!(o.open(&mut forged(3 << EPOCH_SHIFT)), Err(OpenError::Auth));
        let mut opened = 0;
        for i in 0..2 * FAR_EPOCH_INTERVAL {
            let mut p = packet(&[2; 16]);
            let seq = s.seal(&mut p).unwrap();
            if o.open(&mut p) == Ok(seq) {
                opened += 1;
            } else {
                assert_eq!(opened, 0, "once caught up, every packet opens (packet {i})");
            }
        }
        assert!(
            opened >= FAR_EPOCH_INTERVAL,
            "caught up after at most an interval: {opened}"
        );
        // The new epoch's neighbours were derived once, after it authenticated:
        // a straggler of epoch 6 and the next rotation both open.
        let mut straggler = packet(&[3; 16]);
        Sealer::starting_at(test_key(9), start - 20)
            .seal(&mut straggler)
            .unwrap();
        assert_eq!(o.open(&mut straggler), Ok(start - 20));
        let mut rotated = packet(&[4; 16]);
        Sealer::starting_at(test_key(9), 8 * PACKETS_PER_KEY)
            .seal(&mut rotated)
            .unwrap();
        assert_eq!(o.open(&mut rotated), Ok(8 * PACKETS_PER_KEY));
    }

    #[test]
    fn different_epochs_use_different_keys() {
        let k = test_key(5);
        let mut a = packet(&[0u8; 32]);
        let mut b = packet(&[0u8; 32]);
        Sealer::starting_at(k.clone(), 5).seal(&mut a).unwrap();
        Sealer::starting_at(k, PACKETS_PER_KEY + 5).seal(&mut b).unwrap();
        assert_ne!(plaintext(&a), plaintext(&b));
    }

    #[test]
    fn the_last_sequence_is_never_reused() {
        let mut s = Sealer::starting_at(test_key(6), u64::MAX - 1);
        assert_eq!(s.seal(&mut packet(&[1; 8])), Ok(u64::MAX - 1));
        assert_eq!(s.next_seq(), u64::MAX);
        assert_eq!(s.seal(&mut packet(&[1; 8])), Err(SequenceExhausted));
        assert_eq!(s.seal(&mut packet(&[1; 8])), Err(SequenceExhausted));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let keys = SessionKeys::derive(&[9u8; 32], b"session-1").unwrap();
        let text = format!("{keys:?}");
        assert!(text.contains("redacted"));
        assert!(!text.contains("9, 9"));
        let other = SessionKeys::derive(&[9u8; 32], b"session-2").unwrap();
        assert_ne!(keys, other, "context binds the keys");
        assert_ne!(keys.host_to_client, keys.client_to_host);
        assert!(SessionKeys::derive(&[1u8; 8], b"").is_err());
    }

    #[test]
    fn raw_session_keys_need_a_context() {
        let e = SessionKeys::derive_raw(&[9u8; 32], b"").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.message().contains("context"), "{e}");
        assert_eq!(
            SessionKeys::derive_raw(&[9u8; 32], b"run 1").unwrap(),
            SessionKeys::derive(&[9u8; 32], b"run 1").unwrap()
        );
        assert!(SessionKeys::derive_raw(&[1u8; 8], b"run 1").is_err());
    }
}
