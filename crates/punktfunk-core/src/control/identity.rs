//! Host identity and pinning.
//!
//! A host has one self-signed certificate, created on first use and kept in a
//! config directory (`~/.config/punktfunk` by default). Its SHA-256 fingerprint
//! is what clients pin: either given explicitly, or trusted on first use and
//! then remembered in a known-hosts file that later connects must match.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

const CERT_FILE: &str = "host-cert.der";
const KEY_FILE: &str = "host-key.der";
/// File, in the config directory, where trust-on-first-use pins are kept.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert_der).into())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 64 hex digits (case-insensitive; `:` separators allowed).
    pub fn from_hex(s: &str) -> Result<Fingerprint> {
        let digits: Vec<u8> = s.bytes().filter(|&c| c != b':').collect();
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            // Checked here: `from_str_radix` would also take a sign ("+a").
            return Err(Error::invalid(format!("fingerprint {s:?} is not hexadecimal")));
        }
        if digits.len() != 64 {
            return Err(Error::invalid(format!(
                "a fingerprint is 64 hex digits (SHA-256), got {} characters",
                digits.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok();
            out[i] = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid(format!("fingerprint {s:?} is not hexadecimal")))?;
        }
        Ok(Fingerprint(out))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The default known-hosts file: `known_hosts` in [`default_config_dir`].
pub fn default_known_hosts() -> PathBuf {
    default_config_dir().join(KNOWN_HOSTS_FILE)
}

/// The default config directory: `$PUNKTFUNK_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/punktfunk`, else `~/.config/punktfunk`.
pub fn default_config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PUNKTFUNK_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("punktfunk");
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    home.map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".config")
        .join("punktfunk")
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

/// A host's certificate and private key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity from `dir`, creating (and saving) a new one if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if cert_path.exists() && key_path.exists() {
            let cert = fs::read(&cert_path).map_err(|e| io_error("cannot read", &cert_path, e))?;
            let key = fs::read(&key_path).map_err(|e| io_error("cannot read", &key_path, e))?;
            return Ok(Identity::from_der(cert, key));
        }
        let id = Identity::generate()?;
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        write_private(&key_path, id.key.secret_pkcs8_der())?;
        fs::write(&cert_path, id.cert.as_ref()).map_err(|e| io_error("cannot write", &cert_path, e))?;
        Ok(id)
    }

    /// Whether `dir` holds a saved identity (what [`Identity::load_or_create`] would load).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(CERT_FILE).exists() && dir.join(KEY_FILE).exists()
    }

    /// A fresh identity held only in memory.
    pub fn generate() -> Result<Identity> {
        let ck = rcgen::generate_simple_self_signed(vec!["punktfunk.invalid".to_string()])
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot create a certificate: {e}")))?;
        Ok(Identity::from_der(
            ck.cert.der().to_vec(),
            ck.signing_key.serialize_der(),
        ))
    }

    fn from_der(cert: Vec<u8>, key: Vec<u8>) -> Identity {
        Identity {
            fingerprint: Fingerprint::of(&cert),
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
        }
    }

    /// The certificate's SHA-256 fingerprint, what clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Writes a file readable by its owner only (on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| io_error("cannot write", path, e))?;
    f.write_all(bytes).map_err(|e| io_error("cannot write", path, e))
}

/// How a client decides to trust a host.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Only this fingerprint.
    Pin(Fingerprint),
    /// Trust on first use: the fingerprint recorded for this address in this
    /// known-hosts file, or, for a new address, whatever the host presents
    /// (then recorded). [`default_known_hosts`] is the usual file.
    Tofu(PathBuf),
}

/// `host:port SHA256HEX` lines.
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The known-hosts file in `dir`.
    pub fn in_dir(dir: &Path) -> KnownHosts {
        KnownHosts::at(dir.join(KNOWN_HOSTS_FILE))
    }

    /// The known-hosts file at `path`.
    pub fn at(path: PathBuf) -> KnownHosts {
        KnownHosts { path }
    }

    /// The fingerprint recorded for `host`, if any.
    pub fn lookup(&self, host: &str) -> Result<Option<Fingerprint>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot read", &self.path, e)),
        };
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(h), Some(fp)) = (parts.next(), parts.next()) {
                if h == host {
                    return Fingerprint::from_hex(fp).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Records `fp` for `host` (appends a line).
    pub fn record(&self, host: &str, fp: Fingerprint) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error("cannot write", &self.path, e))?;
        writeln!(f, "{host} {fp}").map_err(|e| io_error("cannot write", &self.path, e))
    }
}

/// The handshake-signature methods both verifiers share (the peer must have
/// signed the handshake with the key of the certificate it presented), for an
/// `impl` of a type with a `provider: Arc<CryptoProvider>` field.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// What the verifier saw, read after the handshake.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub fingerprint: Option<Fingerprint>,
    pub mismatch: bool,
}

/// Accepts exactly one certificate fingerprint (or, with `None`, any, for
/// trust on first use), and still checks the handshake signatures with the
/// presented key.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    expected: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    pub seen: Arc<Mutex<Seen>>,
}

impl PinVerifier {
    pub fn new(expected: Option<Fingerprint>, provider: Arc<CryptoProvider>) -> PinVerifier {
        PinVerifier {
            expected,
            provider,
            seen: Arc::default(),
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of(end_entity);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.fingerprint = Some(fp);
        match self.expected {
            Some(want) if want != fp => {
                seen.mismatch = true;
                Err(rustls::Error::General(format!(
                    "host fingerprint {fp} does not match the pinned {want}"
                )))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    handshake_signatures!();
}

/// Asks every client for a certificate and accepts any, or none: the
/// handshake signature still proves the client holds the presented key, and
/// the host then decides by the certificate's fingerprint whom it admits
/// (`HostConfig::authorized_clients`).
#[derive(Debug)]
pub(crate) struct ClientIdentityVerifier {
    provider: Arc<CryptoProvider>,
}

impl ClientIdentityVerifier {
    pub fn new(provider: Arc<CryptoProvider>) -> ClientIdentityVerifier {
        ClientIdentityVerifier { provider }
    }
}

impl ClientCertVerifier for ClientIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("punktfunk-id-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn identity_is_created_once_and_reloaded() {
        let dir = temp_dir("reload");
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the private key is private");
        }
        assert_ne!(Identity::generate().unwrap().fingerprint(), a.fingerprint());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_parse_and_print() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()).unwrap(), fp);
        assert_eq!(Fingerprint::from_hex(&fp.to_hex().to_uppercase()).unwrap(), fp);
        let colons =
            fp.0.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
        assert_eq!(Fingerprint::from_hex(&colons).unwrap(), fp);
        assert!(Fingerprint::from_hex("abc").is_err());
        assert!(Fingerprint::from_hex(&"zz".repeat(32)).is_err());
        // A sign is not a digit, though u8::from_str_radix would take "+a".
        assert!(Fingerprint::from_hex(&"+a".repeat(32)).is_err());
        assert!(Fingerprint::from_hex(&format!("{} ", &fp.to_hex()[1..])).is_err());
    }

    #[test]
    fn known_hosts_record_and_lookup() {
        let dir = temp_dir("known");
        let kh = KnownHosts::in_dir(&dir);
        assert_eq!(kh.lookup("127.0.0.1:1").unwrap(), None);
        kh.record("127.0.0.1:1", Fingerprint([1; 32])).unwrap();
        kh.record("127.0.0.1:2", Fingerprint([2; 32])).unwrap();
        assert_eq!(kh.lookup("127.0.0.1:2").unwrap(), Some(Fingerprint([2; 32])));
        assert_eq!(kh.lookup("127.0.0.1:1").unwrap(), Some(Fingerprint([1; 32])));
        fs::remove_dir_all(&dir).unwrap();
    }
}
