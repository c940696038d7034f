//! The one place an AES-128-GCM implementation is chosen.
//!
//! Two interchangeable backends compute the same function (the tests seal with
//! one and open with the other, and check the RFC test vectors with both):
//!
//! * [`Backend::Ring`] (default): `ring`'s assembly AES-GCM (AES-NI and
//!   carry-less multiply, or VAES/AVX2 where the CPU has them). About 3.5×
//!   faster than the portable one on the benchmark machine (docs/BENCHMARKS.md).
//! * [`Backend::RustCrypto`]: the `aes-gcm` crate, portable Rust with
//!   AES-NI/CLMUL intrinsics. Kept as the reference and for side-by-side runs.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};

use super::KEY_LEN;
use crate::wire::TAG_LEN;

/// Which AES-128-GCM implementation seals and opens packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `ring` (assembly); the default.
    #[default]
    Ring,
    /// The RustCrypto `aes-gcm` crate.
    RustCrypto,
}

impl Backend {
    /// Both backends, default first.
    pub const ALL: [Backend; 2] = [Backend::Ring, Backend::RustCrypto];

    /// A short name: `ring` or `rustcrypto`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
        }
    }
}

/// One AES-128-GCM key, ready to seal and open.
pub(crate) enum Aead {
    Ring(ring::aead::LessSafeKey),
    RustCrypto(Aes128Gcm),
}

impl Aead {
    /// Expands `key` for `backend`.
    pub(crate) fn new(backend: Backend, key: &[u8; KEY_LEN]) -> Aead {
        match backend {
            Backend::Ring => Aead::Ring(ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, key)
                    .expect("a 16-byte key is valid for AES-128-GCM"),
            )),
            Backend::RustCrypto => Aead::RustCrypto(Aes128Gcm::new(key.into())),
        }
    }

    /// Encrypts `body` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: [u8; 12], aad: &[u8], body: &mut [u8]) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        match self {
            Aead::Ring(k) => {
                let tag = k
                    .seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(aad),
                        body,
                    )
                    .expect("AES-GCM seals any packet-sized input");
                out.copy_from_slice(tag.as_ref());
            }
            Aead::RustCrypto(c) => {
                let tag = c
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body)
                    .expect("AES-GCM seals any length below 64 GiB");
                out.copy_from_slice(&tag);
            }
        }
        out
    }

    /// Checks `body_and_tag` (ciphertext followed by the tag) and decrypts the
    /// ciphertext in place. On failure the contents are unspecified.
    pub(crate) fn open(&self, nonce: [u8; 12], aad: &[u8], body_and_tag: &mut [u8]) -> Result<(), ()> {
        if body_and_tag.len() < TAG_LEN {
            return Err(());
        }
        match self {
            Aead::Ring(k) => k
                .open_in_place(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::from(aad),
                    body_and_tag,
                )
                .map(|_| ())
                .map_err(|_| ()),
            Aead::RustCrypto(c) => {
                let (body, tag) = body_and_tag.split_at_mut(body_and_tag.len() - TAG_LEN);
                c.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body, Tag::from_slice(tag))
                    .map_err(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The AES-128-GCM test case 4 of the GCM specification (McGrew & Viega), with AAD.
    #[test]
    fn both_backends_match_the_gcm_specification_vector() {
        let key: [u8; 16] = hex("feffe9928665731c6d6a8f9467308308").try_into().unwrap();
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plain = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let cipher = hex(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        );
        let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
        for b in Backend::ALL {
            let a = Aead::new(b, &key);
            let mut buf = plain.clone();
            let t = a.seal(nonce, &aad, &mut buf);
            assert_eq!(buf, cipher, "{b:?} ciphertext");
            assert_eq!(t.to_vec(), tag, "{b:?} tag");
            buf.extend_from_slice(&t);
            a.open(nonce, &aad, &mut buf).unwrap();
            assert_eq!(&buf[..plain.len()], &plain[..], "{b:?} opens its own");
        }
    }

    #[test]
    fn each_backend_opens_what_the_other_sealed_and_refuses_tampering() {
        let key = [9u8; 16];
        for (s, o) in [
            (Backend::Ring, Backend::RustCrypto),
            (Backend::RustCrypto, Backend::Ring),
        ] {
            for len in [0usize, 1, 15, 16, 17, 1344, 9000] {
                let (sealer, opener) = (Aead::new(s, &key), Aead::new(o, &key));
                let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut buf = plain.clone();
                let tag = sealer.seal([1; 12], b"hdr", &mut buf);
                buf.extend_from_slice(&tag);
                let mut bad = buf.clone();
                let last = bad.len() - 1;
                bad[last] ^= 0x80;
                assert!(
                    opener.open([1; 12], b"hdr", &mut bad).is_err(),
                    "{s:?}->{o:?} {len}: tag"
                );
                let mut wrong_aad = buf.clone();
                assert!(
                    opener.open([1; 12], b"hdR", &mut wrong_aad).is_err(),
                    "{s:?}->{o:?} {len}: aad"
                );
                opener.open([1; 12], b"hdr", &mut buf).unwrap();
                assert_eq!(&buf[..len], &plain[..], "{s:?}->{o:?} {len}");
            }
            assert!(
                Aead::new(o, &key).open([1; 12], b"", &mut [0u8; 15]).is_err(),
                "shorter than a tag"
            );
        }
    }
}
