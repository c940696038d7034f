//! The short-lived certificate browsers pin, and the TLS certificate choice by
//! ALPN: `h3` (a browser) gets the web certificate, anything else the host's
//! long-term identity (docs/WEB.md, Certificates).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

use super::super::identity::{io_error, read_private, write_temp, Identity};

/// The file beside the identity holding the web certificate, its key and its
/// expiry (mode 0600: it holds a private key).
pub const WEB_IDENTITY_FILE: &str = "web-identity.bin";
/// How long a web certificate is valid (browsers pin at most 14 days).
pub const WEB_CERT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// A certificate with less than this left is replaced.
pub const WEB_CERT_RENEW_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);
/// How far before its creation a certificate's validity starts (clock skew).
const BACKDATE: Duration = Duration::from_secs(3600);
/// `version u8 | not_after u64 | cert_len u32` before the certificate and key.
const HEADER: usize = 13;
const FORMAT: u8 = 1;

/// A web certificate: DER, PKCS#8 key, expiry and the SHA-256 browsers pin.
#[derive(Clone)]
pub struct WebCert {
    cert: Vec<u8>,
    key: Vec<u8>,
    not_after: SystemTime,
    hash: [u8; 32],
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCert")
            .field("hash", &hex(&self.hash))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WebCert {
    /// A new ECDSA P-256 certificate valid from an hour before `now` for
    /// [`WEB_CERT_VALIDITY`].
    pub fn generate(now: SystemTime) -> Result<WebCert> {
        let fail = |e: rcgen::Error| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot create a web certificate: {e}"),
            )
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(fail)?;
        let from = unix_secs(now).saturating_sub(BACKDATE.as_secs());
        let until = from + WEB_CERT_VALIDITY.as_secs();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(from);
        params.not_after = epoch + Duration::from_secs(until);
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(WebCert::from_parts(
            cert.der().to_vec(),
            key.serialize_der(),
            UNIX_EPOCH + Duration::from_secs(until),
        ))
    }

    fn from_parts(cert: Vec<u8>, key: Vec<u8>, not_after: SystemTime) -> WebCert {
        let hash = Sha256::digest(&cert).into();
        WebCert {
            cert,
            key,
            not_after,
            hash,
        }
    }

    /// SHA-256 of the certificate: what a browser passes in
    /// `serverCertificateHashes`.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// When the certificate stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whether it should be replaced at `now`.
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        self.not_after
            .duration_since(now)
            .map_or(true, |left| left < WEB_CERT_RENEW_BEFORE)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.cert.len() + self.key.len());
        out.push(FORMAT);
        out.extend_from_slice(&unix_secs(self.not_after).to_be_bytes());
        out.extend_from_slice(&(self.cert.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.cert);
        out.extend_from_slice(&self.key);
        out
    }

    fn decode(b: &[u8]) -> Option<WebCert> {
        if b.len() < HEADER || b[0] != FORMAT {
            return None;
        }
        let not_after = u64::from_be_bytes(b[1..9].try_into().ok()?);
        let len = u32::from_be_bytes(b[9..13].try_into().ok()?) as usize;
        let cert = b.get(HEADER..HEADER.checked_add(len)?)?.to_vec();
        let key = b.get(HEADER + len..)?.to_vec();
        (!key.is_empty()).then(|| WebCert::from_parts(cert, key, UNIX_EPOCH + Duration::from_secs(not_after)))
    }

    fn certified_key(&self, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::new(ErrorKind::Io, format!("bad web certificate key: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(self.cert.clone())],
            signer,
        )))
    }
}

/// Loads the web certificate kept in `dir`, or makes (and keeps) a new one
/// when there is none, it cannot be read, or it is due for renewal at `now`.
/// A key file others may read is refused ([`ErrorKind::InsecureKey`]).
pub fn load_or_renew(dir: &Path, now: SystemTime) -> Result<WebCert> {
    let path = dir.join(WEB_IDENTITY_FILE);
    match read_private(&path) {
        Ok(b) => {
            if let Some(c) = WebCert::decode(&b).filter(|c| !c.needs_renewal(now)) {
                return Ok(c);
            }
        }
        Err(e) if e.kind() == ErrorKind::InsecureKey => return Err(e),
        Err(_) => {}
    }
    let cert = WebCert::generate(now)?;
    fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    let tmp = write_temp(dir, WEB_IDENTITY_FILE, &cert.encode())?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("cannot write", &path, e)
    })?;
    Ok(cert)
}

/// The host's certificates: its identity for native clients, the web
/// certificate for browsers (replaced in place as it ages).
#[derive(Debug)]
pub(crate) struct HostCerts {
    native: Arc<CertifiedKey>,
    web: RwLock<Option<WebState>>,
    dir: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

#[derive(Debug)]
struct WebState {
    current: WebCert,
    key: Arc<CertifiedKey>,
    /// The one before, for a browser that pinned it just before a renewal.
    previous: Option<[u8; 32]>,
}

impl HostCerts {
    /// The identity only (`web_dir: None`), or both.
    pub(crate) fn new(
        identity: &Identity,
        web_dir: Option<&Path>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<HostCerts> {
        let signer = provider
            .key_provider
            .load_private_key(identity.private_key())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("bad host certificate: {e}")))?;
        let certs = HostCerts {
            native: Arc::new(CertifiedKey::new(identity.cert_chain(), signer)),
            web: RwLock::new(None),
            dir: web_dir.map(Path::to_path_buf).unwrap_or_default(),
            provider,
        };
        if web_dir.is_some() {
            certs.renew(SystemTime::now())?;
        }
        Ok(certs)
    }

    /// Whether browsers are served.
    pub(crate) fn web_enabled(&self) -> bool {
        self.read().is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<WebState>> {
        self.web.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The web certificate's hash now, if browsers are served.
    pub(crate) fn web_hash(&self) -> Option<[u8; 32]> {
        self.read().as_ref().map(|w| w.current.hash)
    }

    /// Whether a browser may have pinned `hash` (the current certificate or
    /// the one it replaced).
    pub(crate) fn web_hashes(&self) -> Vec<[u8; 32]> {
        self.read()
            .as_ref()
            .map(|w| std::iter::once(w.current.hash).chain(w.previous).collect())
            .unwrap_or_default()
    }

    /// Replaces the web certificate if it is due at `now` (serving browsers only).
    pub(crate) fn renew(&self, now: SystemTime) -> Result<()> {
        if self.dir.as_os_str().is_empty() {
            return Ok(());
        }
        if self
            .read()
            .as_ref()
            .is_some_and(|w| !w.current.needs_renewal(now))
        {
            return Ok(());
        }
        let cert = load_or_renew(&self.dir, now)?;
        let key = cert.certified_key(&self.provider)?;
        let mut w = self.web.write().unwrap_or_else(|p| p.into_inner());
        let previous = w.as_ref().map(|old| old.current.hash).filter(|h| *h != cert.hash);
        *w = Some(WebState {
            current: cert,
            key,
            previous,
        });
        Ok(())
    }
}

impl ResolvesServerCert for HostCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let browser = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == super::WEB_ALPN));
        if browser {
            return self.read().as_ref().map(|w| w.key.clone());
        }
        Some(self.native.clone())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_certificate_is_kept_until_it_is_due_then_replaced() {
        let dir = std::env::temp_dir().join(format!("pf-webcert-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = load_or_renew(&dir, t0).unwrap();
        assert_eq!(
            a.not_after(),
            t0 - BACKDATE + WEB_CERT_VALIDITY,
            "valid 13 days from an hour before"
        );
        // Read back, not remade, while more than 3 days remain.
        let b = load_or_renew(&dir, t0 + Duration::from_secs(9 * 24 * 3600)).unwrap();
        assert_eq!(a.hash(), b.hash());
        // Within 3 days of expiry: a new one.
        let c = load_or_renew(&dir, t0 + Duration::from_secs(10 * 24 * 3600)).unwrap();
        assert_ne!(a.hash(), c.hash());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(WEB_IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key file is private");
        }
        // A damaged file is replaced, not trusted.
        fs::write(dir.join(WEB_IDENTITY_FILE), b"\x01garbage").unwrap();
        let d = load_or_renew(&dir, t0).unwrap();
        assert_ne!(d.hash(), c.hash());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncated_files_do_not_decode() {
        let c = WebCert::generate(SystemTime::now()).unwrap();
        let full = c.encode();
        assert!(WebCert::decode(&full).is_some());
        for n in [0, 1, HEADER, HEADER + 10, HEADER + c.cert.len()] {
            assert!(WebCert::decode(&full[..n]).is_none(), "cut at {n}");
        }
    }
}
