//! Mutually authenticated TLS 1.3 with pinned certificates (rustls, *ring* provider).
//!
//! Each party has an [`Identity`]: a self-signed certificate and its private key, both DER.
//! Each is configured with the peer's certificate; the handshake succeeds only if the peer
//! presents exactly that certificate (byte for byte) and proves possession of its key (the
//! handshake signature is verified with the provider's algorithms). No certificate
//! authority, host name or validity period is consulted: the pin is the whole trust decision.
//!
//! The accepting side is the TLS server and the connecting side the TLS client, whatever
//! their party ids.

use crate::{fingerprint, hex, NetError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

/// A party's TLS identity: a certificate and its private key, both DER (the key PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER. Keep it secret.
    pub key_der: Vec<u8>,
}

impl Identity {
    /// SHA-256 of the certificate (what an operator compares when pinning).
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_sha256", &hex(&self.cert_fingerprint()))
            .field("key_der", &"<secret>")
            .finish()
    }
}

/// TLS settings of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Our certificate and key.
    pub identity: Identity,
    /// The certificate the peer must present, DER.
    pub peer_cert_der: Vec<u8>,
}

/// Generate a fresh self-signed identity (ECDSA P-256) whose certificate names `name` (a DNS
/// name such as `suf-p0`; it is informational only, since peers pin the certificate itself).
///
/// # Errors
/// [`NetError::Config`] if `name` is not a valid DNS-style name or key generation fails.
pub fn generate_identity(name: &str) -> Result<Identity, NetError> {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).map_err(|e| {
        NetError::Config(format!("cannot generate a certificate for {name:?}: {e}"))
    })?;
    Ok(Identity {
        cert_der: ck.cert.der().to_vec(),
        key_der: ck.key_pair.serialize_der(),
    })
}

/// [`generate_identity`] for tests and tools, with `name` reduced to the characters a DNS name
/// allows (ASCII letters, digits, `-` and `.`; anything else becomes `-`).
///
/// # Panics
/// Only if key generation itself fails (the system random source is broken).
pub fn generate_test_identity(name: &str) -> Identity {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        clean.push_str("suf-party");
    }
    match generate_identity(&clean) {
        Ok(id) => id,
        Err(e) => panic!("test identity generation failed: {e}"),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly one certificate; verifies handshake signatures with the provider.
struct PinnedVerifier {
    pinned: Vec<u8>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pinned_sha256", &hex(&fingerprint(&self.pinned)))
            .finish()
    }
}

#[derive(Debug)]
struct PinMismatch(String);

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinMismatch {}

impl PinnedVerifier {
    fn new(pinned: &[u8], provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(PinnedVerifier {
            pinned: pinned.to_vec(),
            algs: provider.signature_verification_algorithms,
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_slice() {
            Ok(())
        } else {
            let msg = format!(
                "peer certificate (sha256 {}) is not the pinned one (sha256 {})",
                hex(&fingerprint(end_entity.as_ref())),
                hex(&fingerprint(&self.pinned))
            );
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch(msg))),
            )))
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn tls_err(what: &str, e: impl fmt::Display) -> NetError {
    NetError::Tls(format!("{what}: {e}"))
}

fn key_of(id: &Identity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone()))
}

/// A rustls client connection for the connecting side.
pub(crate) fn client_connection(cfg: &TlsConfig) -> Result<rustls::Connection, NetError> {
    let p = provider();
    let verifier = PinnedVerifier::new(&cfg.peer_cert_der, &p);
    let mut c = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("client configuration", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![CertificateDer::from(cfg.identity.cert_der.clone())],
            key_of(&cfg.identity),
        )
        .map_err(|e| tls_err("our certificate or key", e))?;
    c.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from("suf-peer").map_err(|e| tls_err("server name", e))?;
    let conn = rustls::ClientConnection::new(Arc::new(c), name)
        .map_err(|e| tls_err("client connection", e))?;
    Ok(rustls::Connection::Client(conn))
}

/// A rustls server connection for the accepting side.
pub(crate) fn server_connection(cfg: &TlsConfig) -> Result<rustls::Connection, NetError> {
    let p = provider();
    let verifier = PinnedVerifier::new(&cfg.peer_cert_der, &p);
    let mut s = rustls::ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("server configuration", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cfg.identity.cert_der.clone())],
            key_of(&cfg.identity),
        )
        .map_err(|e| tls_err("our certificate or key", e))?;
    s.send_tls13_tickets = 0;
    let conn =
        rustls::ServerConnection::new(Arc::new(s)).map_err(|e| tls_err("server connection", e))?;
    Ok(rustls::Connection::Server(conn))
}

/// The TLS state shared by a link's reader and writer threads.
pub(crate) type SharedConn = Arc<Mutex<rustls::Connection>>;

fn lock(conn: &SharedConn) -> MutexGuard<'_, rustls::Connection> {
    // A poisoned lock means the other thread panicked inside rustls; the state is still the
    // best we have, and the link will fail on its own if it is inconsistent.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// Plaintext reads from a TLS connection whose socket is read by this thread alone. When
/// processing incoming records makes rustls want to write (an alert, a key update), `notify`
/// is called so that the writer thread, the only one that writes the socket, flushes it.
pub(crate) struct TlsReader<N: Fn()> {
    pub(crate) sock: TcpStream,
    pub(crate) conn: SharedConn,
    pub(crate) raw: Vec<u8>,
    pub(crate) pos: usize,
    pub(crate) len: usize,
    pub(crate) notify: N,
}

impl<N: Fn()> TlsReader<N> {
    pub(crate) fn new(sock: TcpStream, conn: SharedConn, notify: N) -> Self {
        TlsReader {
            sock,
            conn,
            raw: vec![0u8; 256 * 1024],
            pos: 0,
            len: 0,
            notify,
        }
    }
}

impl<N: Fn()> Read for TlsReader<N> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut c = lock(&self.conn);
                match c.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.pos < self.len {
                    let mut slice = &self.raw[self.pos..self.len];
                    let n = c.read_tls(&mut slice)?;
                    self.pos += n;
                    let res = c.process_new_packets();
                    let wants_write = c.wants_write();
                    drop(c);
                    if wants_write {
                        (self.notify)();
                    }
                    if let Err(e) = res {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    continue;
                }
            }
            let n = self.sock.read(&mut self.raw)?;
            if n == 0 {
                // End of stream: let rustls decide between a clean close_notify (Ok(0)) and
                // a truncation (UnexpectedEof), reported by the reader above.
                let mut c = lock(&self.conn);
                let _ = c.read_tls(&mut &[][..])?;
                if let Err(e) = c.process_new_packets() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                return match c.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) => Err(e),
                };
            }
            self.pos = 0;
            self.len = n;
        }
    }
}

/// The writing half of a TLS link: encrypts under the shared lock, in chunks so that the
/// reader thread is never kept waiting long, and writes the records to the socket outside it.
pub(crate) struct TlsWriter {
    pub(crate) sock: TcpStream,
    pub(crate) conn: SharedConn,
    out: Vec<u8>,
}

const TLS_CHUNK: usize = 256 * 1024;

impl TlsWriter {
    pub(crate) fn new(sock: TcpStream, conn: SharedConn) -> Self {
        TlsWriter {
            sock,
            conn,
            out: Vec::with_capacity(TLS_CHUNK + 4096),
        }
    }

    /// Encrypt one frame (header and payload) and write it.
    pub(crate) fn write_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let hdr = (payload.len() as u64).to_le_bytes();
        let mut rest = payload;
        let mut first = true;
        loop {
            let take = rest.len().min(TLS_CHUNK);
            {
                let mut c = lock(&self.conn);
                if first {
                    c.writer().write_all(&hdr)?;
                }
                c.writer().write_all(&rest[..take])?;
                while c.wants_write() {
                    c.write_tls(&mut self.out)?;
                }
            }
            self.sock.write_all(&self.out)?;
            self.out.clear();
            rest = &rest[take..];
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Encrypt `data` (no framing) and write it.
    pub(crate) fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        {
            let mut c = lock(&self.conn);
            c.writer().write_all(data)?;
            while c.wants_write() {
                c.write_tls(&mut self.out)?;
            }
        }
        self.sock.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// Write whatever rustls has queued (alerts, key updates).
    pub(crate) fn flush_pending(&mut self) -> io::Result<()> {
        {
            let mut c = lock(&self.conn);
            while c.wants_write() {
                c.write_tls(&mut self.out)?;
            }
        }
        if !self.out.is_empty() {
            self.sock.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Send close_notify.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        lock(&self.conn).send_close_notify();
        self.flush_pending()
    }
}

/// A TLS 1.3 client configuration (no client certificate) that accepts exactly the server
/// certificate `server_cert_der` (pinned, as on the peer link): for the client of the servers'
/// HTTPS API.
///
/// # Errors
/// [`NetError::Tls`] if rustls refuses the configuration.
pub fn pinned_client_config(server_cert_der: &[u8]) -> Result<rustls::ClientConfig, NetError> {
    let p = provider();
    let verifier = PinnedVerifier::new(server_cert_der, &p);
    let mut c = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("client configuration", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Ok(c)
}

/// A TLS 1.3 server configuration presenting `identity` and asking no client certificate:
/// for the servers' HTTPS API (clients pin the server's certificate).
///
/// # Errors
/// [`NetError::Tls`] if the certificate or key is refused.
pub fn api_server_config(identity: &Identity) -> Result<rustls::ServerConfig, NetError> {
    let mut s = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("server configuration", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            key_of(identity),
        )
        .map_err(|e| tls_err("our certificate or key", e))?;
    s.send_tls13_tickets = 0;
    Ok(s)
}
