//! Errors of `suf-fss`. Variants say whose fault it is: a malformed key file or buffer
//! (input), or a caller passing inconsistent parameters (caller).

use crate::keyfmt::KeyKind;

/// Errors raised by the FSS crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FssError {
    /// Input error: the buffer does not start with the key-file magic.
    #[error("not a SUF key: bad magic")]
    BadMagic,
    /// Input error: a key format version this build does not read.
    #[error("key format version {got} is not supported (this build reads {supported})")]
    VersionMismatch {
        /// Version found.
        got: u16,
        /// Version supported.
        supported: u16,
    },
    /// Input error: the key is of another kind than the one asked for.
    #[error("key kind mismatch: expected {expected:?}, found {got:?}")]
    WrongKind {
        /// Kind expected by the caller.
        expected: KeyKind,
        /// Kind code found in the header.
        got: u16,
    },
    /// Input error: the buffer ended early.
    #[error("key truncated: needed {needed} more bytes, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Input error: bytes left over after the last section.
    #[error("{0} trailing bytes after the key")]
    TrailingBytes(usize),
    /// Input error: the body does not match its checksum.
    #[error("key checksum mismatch (file corrupted)")]
    Checksum,
    /// Input error: a header field is out of range or inconsistent.
    #[error("invalid key header: {0}")]
    BadHeader(String),
    /// Input error: the declared body length disagrees with the closed-form size of the
    /// header's parameters.
    #[error("key body is {got} bytes but its parameters imply {expected}")]
    SizeMismatch {
        /// Size implied by the parameters.
        expected: u64,
        /// Size declared or found.
        got: u64,
    },
    /// Caller error: parameters out of range (bit widths, payload lengths, ...).
    #[error("invalid parameters: {0}")]
    BadParams(String),
    /// Caller error: batch lengths disagree.
    #[error("length mismatch in {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Caller error: a key of one party was given where the other's was expected.
    #[error("key belongs to party {got}, expected party {expected}")]
    WrongParty {
        /// Expected party.
        expected: u8,
        /// Party in the key.
        got: u8,
    },
    /// Caller error: the batch's body is held only by the device that received its key stream
    /// (`KeyOrigin::on_host` is false: its host bytes were never kept), so it cannot be
    /// evaluated or copied on the host.
    #[error("key body at offset {offset} of stream {stream:#x} is held by a device only, not on the host")]
    BodyOnDevice {
        /// The stream's token.
        stream: u64,
        /// The body's offset in the stream.
        offset: u64,
    },
    /// Environment: a device dealer (`crate::dealer::DcfDealer`) failed.
    #[error("device dealer failed: {0}")]
    Dealer(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, FssError>;
