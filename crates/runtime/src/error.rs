//! Errors of the runtime. Variants say whose fault it is: the program (caller), the key
//! stream (file), the peer or the network.

use std::path::PathBuf;

/// Errors raised by the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtError {
    /// Caller error: shapes of operands do not fit the operation.
    #[error("shape error in {op}: {detail}")]
    Shape {
        /// Operation.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Caller error: an input was not supplied, or has the wrong length.
    #[error("input `{name}`: {detail}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Caller error: a private weight is missing from the interpreter's weight store.
    #[error("private weight `{0}` is missing or mis-shaped")]
    Weight(String),
    /// Key-stream error: the key file was already used by an earlier run.
    #[error("key stream {path} was already used (marker {marker} exists); keys are one-time — run the dealer again")]
    KeyReused {
        /// Key file.
        path: PathBuf,
        /// Sidecar marker.
        marker: PathBuf,
    },
    /// Key-stream error: malformed, truncated or corrupted key stream.
    #[error("key stream invalid: {0}")]
    KeyStream(String),
    /// Key-stream error: the key stream was made for another party/program/session.
    #[error("key stream mismatch: {0}")]
    KeyMismatch(String),
    /// Peer error: the peer sent a message of the wrong size or content.
    #[error("peer misbehaved: {0}")]
    Peer(String),
    /// Network error.
    #[error(transparent)]
    Net(#[from] suf_net::NetError),
    /// FSS error (key parsing or evaluation).
    #[error(transparent)]
    Fss(#[from] suf_fss::FssError),
    /// Backend error.
    #[error(transparent)]
    Backend(#[from] suf_backend::BackendError),
    /// Core error.
    #[error(transparent)]
    Core(#[from] suf_core::CoreError),
    /// I/O error on a key or trace file.
    #[error("I/O on {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, RtError>;

pub(crate) fn shape_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(RtError::Shape {
        op,
        detail: detail.into(),
    })
}
