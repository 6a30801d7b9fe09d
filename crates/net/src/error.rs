//! Errors of `suf-net`. Every variant says whose fault it is: the caller's (a bad
//! configuration), the environment's (the operating system, the network), or the peer's
//! (it went away, stalled, or sent something that breaks the protocol).

use std::net::SocketAddr;
use std::time::Duration;

/// Errors raised by a link.
///
/// After any error other than [`NetError::Config`] and [`NetError::PlaintextRefused`] a link is
/// unusable: lockstep rounds cannot be resumed once one side has lost track, so every later call
/// on the same link returns [`NetError::Broken`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Environment error: the operating system refused an I/O operation.
    #[error("I/O error while {what}: {source}")]
    Io {
        /// What the link was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Peer (or network) fault: a wait ran past the configured timeout.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Peer fault: the peer closed the connection or went away.
    #[error("peer closed the connection: {detail}")]
    PeerClosed {
        /// Where in the protocol it happened.
        detail: String,
    },
    /// Peer fault: the peer announced a frame longer than this side accepts (the link's
    /// `LinkConfig::max_frame`, or the size the protocol expects for this message). Nothing
    /// was allocated for a large one.
    #[error("peer sent a frame of {len} bytes; at most {max} were expected")]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// The limit in force: `LinkConfig::max_frame` or the caller's bound.
        max: usize,
    },
    /// Configuration mismatch between the two parties (or a peer that does not speak this
    /// protocol): the handshake refused the link. Both sides see this error, each from its own
    /// point of view.
    #[error("handshake refused: {field} differs: ours is {ours}, the peer's is {theirs}")]
    Handshake {
        /// Which field differs: `magic`, `protocol version`, `party id`, `session id`,
        /// `model fingerprint` or `keys fingerprint`.
        field: &'static str,
        /// Our value (hex for byte strings).
        ours: String,
        /// The peer's value (hex for byte strings).
        theirs: String,
    },
    /// TLS failure: a handshake error, a certificate that is not the pinned one (on either
    /// side), or a corrupted record.
    #[error("TLS: {0}")]
    Tls(String),
    /// Caller error (policy): a plaintext link to a non-loopback address was asked for without
    /// `allow_plaintext`.
    #[error("refusing a plaintext link with {addr}: it is not on loopback, so it must use TLS")]
    PlaintextRefused {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// Peer fault: a payload does not have the length its receiver expects (or has non-zero
    /// padding bits).
    #[error(
        "bad payload from peer: {got} bytes, expected {expected} for {count} values of {bits} bits"
    )]
    BadPayload {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
        /// Number of values expected.
        count: usize,
        /// Bits per value.
        bits: u32,
    },
    /// Caller error: an invalid configuration or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The link failed earlier (the cause is repeated here) and cannot be used any more.
    #[error("link is broken after an earlier error: {cause}")]
    Broken {
        /// The first error, rendered.
        cause: String,
    },
}

impl NetError {
    /// Map an I/O error met while doing `what` to the variant that says whose fault it is.
    /// `timeout` is the configured timeout, reported when the error is an expired socket
    /// timeout.
    pub(crate) fn from_io(e: std::io::Error, what: &str, timeout: Duration) -> NetError {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::WouldBlock | K::TimedOut => NetError::Timeout {
                what: what.to_string(),
                after: timeout,
            },
            K::UnexpectedEof
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::NotConnected => NetError::PeerClosed {
                detail: format!("{e} (while {what})"),
            },
            K::InvalidData if tls_error(&e).is_some() => {
                let msg = tls_error(&e).map(describe_tls).unwrap_or_default();
                NetError::Tls(format!("{msg} (while {what})"))
            }
            _ => NetError::Io {
                what: what.to_string(),
                source: e,
            },
        }
    }
}

fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// A readable account of a rustls error, saying whose certificate was refused.
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::Other(o)) => {
            format!("we refused the peer: {}", o.0)
        }
        Error::AlertReceived(
            a @ (A::BadCertificate
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::AccessDenied),
        ) => format!("the peer refused our certificate (it sent the alert {a:?})"),
        other => other.to_string(),
    }
}
