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

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
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
    ///
    /// The key and the certificate are written to fresh files of mode 0600 and
    /// then moved into place, so an existing file keeps nothing of its own (mode,
    /// symlink target) and a crash leaves no half-written key. The key file is
    /// published first, with a link that fails when a key already exists: of two
    /// processes creating an identity at once, one wins and the other loads the
    /// winner's pair. A key file that users other than its owner may access is
    /// refused with [`ErrorKind::InsecureKey`]; a certificate that does not
    /// belong to the key, with [`ErrorKind::Io`].
    pub fn load_or_create(dir: &Path) -> Result<Identity> {
        let key_path = dir.join(KEY_FILE);
        if fs::symlink_metadata(&key_path).is_err() {
            let id = Identity::generate()?;
            fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
            if publish(dir, &id)? {
                return Ok(id);
            }
        }
        Identity::load(dir)
    }

    /// Reads the pair in `dir`, waiting up to [`PUBLISH_WAIT`] for the
    /// certificate of a key another process is publishing right now.
    fn load(dir: &Path) -> Result<Identity> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let deadline = std::time::Instant::now() + PUBLISH_WAIT;
        loop {
            let key = read_private(&key_path)?;
            let waited = std::time::Instant::now() >= deadline;
            match fs::read(&cert_path) {
                Ok(cert) => {
                    let id = Identity::from_der(cert, key);
                    if id.keys_match() {
                        return Ok(id);
                    }
                    if waited {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!(
                                "the certificate {} does not belong to the key {}; remove both to create a new identity",
                                cert_path.display(),
                                key_path.display()
                            ),
                        ));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !waited => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A creator stopped between the two files.
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!(
                            "the key {} has no certificate {}; remove the key to create a new identity",
                            key_path.display(),
                            cert_path.display()
                        ),
                    ));
                }
                Err(e) => return Err(io_error("cannot read", &cert_path, e)),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Whether the certificate carries the public half of the key.
    fn keys_match(&self) -> bool {
        let Ok(signer) = rustls::crypto::ring::sign::any_supported_type(&self.private_key()) else {
            return false;
        };
        rustls::sign::CertifiedKey::new(self.cert_chain(), signer)
            .keys_match()
            .is_ok()
    }

    /// Whether `dir` holds a saved identity (what [`Identity::load_or_create`] would load).
    pub fn exists_in(dir: &Path) -> bool {
        fs::symlink_metadata(dir.join(KEY_FILE)).is_ok()
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

/// How long a loader waits for the certificate of a key that another process
/// has just published (the two files appear one after the other).
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes `id` into `dir`: both files first as fresh temporaries of mode
/// 0600, then the key linked into place (which fails, without following or
/// replacing anything, if a key exists) and the certificate renamed over
/// whatever was there. `Ok(false)`: another process published a key first.
fn publish(dir: &Path, id: &Identity) -> Result<bool> {
    let tmp_key = write_temp(dir, KEY_FILE, id.key.secret_pkcs8_der())?;
    let tmp_cert = match write_temp(dir, CERT_FILE, id.cert.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&tmp_key);
            return Err(e);
        }
    };
    let key_path = dir.join(KEY_FILE);
    let linked = fs::hard_link(&tmp_key, &key_path);
    let _ = fs::remove_file(&tmp_key);
    match linked {
        Ok(()) => {}
        Err(e) => {
            let _ = fs::remove_file(&tmp_cert);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Ok(false);
            }
            return Err(io_error("cannot write", &key_path, e));
        }
    }
    let cert_path = dir.join(CERT_FILE);
    fs::rename(&tmp_cert, &cert_path).map_err(|e| {
        let _ = fs::remove_file(&tmp_cert);
        io_error("cannot write", &cert_path, e)
    })?;
    Ok(true)
}

/// Writes `bytes` to a new file beside `name` in `dir`, of mode 0600 on Unix,
/// created exclusively (never an existing file or a symlink's target), synced.
pub(super) fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let mut tag = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tag)
        .map_err(|_| Error::new(ErrorKind::Internal, "the system random generator failed"))?;
    let path = dir.join(format!(".{name}.{}.tmp", u64::from_le_bytes(tag)));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| io_error("cannot write", &path, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = fs::remove_file(&path);
        return Err(io_error("cannot write", &path, e));
    }
    Ok(path)
}

/// Reads a private key file, refusing one that users other than its owner may
/// read or write (on Unix: any group or other permission bit).
pub(super) fn read_private(path: &Path) -> Result<Vec<u8>> {
    let mut f = fs::File::open(path).map_err(|e| io_error("cannot read", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f
            .metadata()
            .map_err(|e| io_error("cannot read", path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::new(
                ErrorKind::InsecureKey,
                format!(
                    "the private key {} is accessible to other users (mode {:o}); run `chmod 600` on it, or remove it to create a new identity",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    let mut key = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut key).map_err(|e| io_error("cannot read", path, e))?;
    Ok(key)
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

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = temp_dir("insecure");
        let id = Identity::load_or_create(&dir).unwrap();
        set_mode(&dir.join(KEY_FILE), 0o644);
        let e = Identity::load_or_create(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InsecureKey, "{e}");
        assert!(e.message().contains("chmod 600"), "{e}");
        set_mode(&dir.join(KEY_FILE), 0o640);
        assert_eq!(
            Identity::load_or_create(&dir).unwrap_err().kind(),
            ErrorKind::InsecureKey
        );
        set_mode(&dir.join(KEY_FILE), 0o600);
        assert_eq!(
            Identity::load_or_create(&dir).unwrap().fingerprint(),
            id.fingerprint()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_key_path_is_not_written_through() {
        let dir = temp_dir("symlink");
        fs::create_dir_all(&dir).unwrap();
        // Another user's file the link points at, and a link to a file not yet there.
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        set_mode(&victim, 0o644);
        std::os::unix::fs::symlink(&victim, dir.join(KEY_FILE)).unwrap();
        assert!(Identity::load_or_create(&dir).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let absent = dir.join("absent");
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        std::os::unix::fs::symlink(&absent, dir.join(KEY_FILE)).unwrap();
        assert!(Identity::load_or_create(&dir).is_err());
        assert!(!absent.exists(), "nothing is created through a dangling link");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_new_identity_never_inherits_an_old_files_mode() {
        let dir = temp_dir("stale");
        fs::create_dir_all(&dir).unwrap();
        // A certificate left behind without its key, readable by everyone.
        fs::write(dir.join(CERT_FILE), b"stale").unwrap();
        set_mode(&dir.join(CERT_FILE), 0o666);
        let id = Identity::load_or_create(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [KEY_FILE, CERT_FILE] {
            let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{f} mode {mode:o}");
        }
        assert_eq!(
            Identity::load_or_create(&dir).unwrap().fingerprint(),
            id.fingerprint()
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_creators_agree_on_one_matching_pair() {
        for round in 0..4 {
            let dir = temp_dir(&format!("race{round}"));
            let start = Arc::new(std::sync::Barrier::new(6));
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, start) = (dir.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Identity::load_or_create(&dir).unwrap().fingerprint()
                    })
                })
                .collect();
            let fps: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(fps.iter().all(|f| *f == fps[0]), "round {round}: {fps:?}");
            let on_disk = Identity::load(&dir).unwrap();
            assert!(on_disk.keys_match());
            assert_eq!(on_disk.fingerprint(), fps[0]);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_key_left_without_its_certificate_says_what_to_do() {
        let dir = temp_dir("orphan");
        Identity::load_or_create(&dir).unwrap();
        fs::remove_file(dir.join(CERT_FILE)).unwrap();
        let e = Identity::load_or_create(&dir).unwrap_err();
        assert!(e.message().contains("has no certificate"), "{e}");
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        Identity::load_or_create(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let dir = temp_dir("mismatch");
        Identity::load_or_create(&dir).unwrap();
        fs::write(dir.join(CERT_FILE), Identity::generate().unwrap().cert.as_ref()).unwrap();
        let e = Identity::load(&dir).unwrap_err();
        assert!(e.message().contains("does not belong"), "{e}");
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
