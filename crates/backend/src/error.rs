//! Errors of `suf-backend`. Every variant says whose fault it is.

/// Errors raised by a backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Caller error: a buffer does not have the length its shape implies.
    #[error("length mismatch in {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Length implied by the shape (or by the other operand).
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// Caller error: a shape whose element count does not fit in `usize`.
    #[error("shape of {what} overflows usize")]
    ShapeOverflow {
        /// Which argument.
        what: &'static str,
    },
    /// Environment error: a worker thread pool could not be built.
    #[error("cannot build the thread pool: {0}")]
    ThreadPool(String),
    /// Caller error: a compiled-gate descriptor ([`crate::gate`]) is invalid or does not match
    /// its keys (party, widths, payload, count).
    #[error("gate component: {0}")]
    Gate(String),
    /// Device error: the accelerator failed to do what it was asked (a driver call, an
    /// allocation of device memory, a kernel launch, a lost device). The caller's arguments
    /// were valid; retrying on the same device is unlikely to help. Backends never answer a
    /// device failure with a silent fallback: it surfaces as this error.
    #[error("device error during {operation}: {message}")]
    Device {
        /// The backend operation that failed (`"gemm"`, `"add"`, `"dcf_eval"`, ...).
        operation: &'static str,
        /// The device's account of the failure (driver error and the step it came from).
        message: String,
    },
    /// Environment: a party's key stream does not fit in the device memory that is free, so
    /// it cannot be made resident ([`crate::Backend::attach_keys`]). Streaming the keys
    /// through the device layer by layer is not implemented yet: use a larger device, fewer
    /// layers, or the CPU backend.
    #[error("the key stream of {bytes} bytes does not fit in device memory ({free} bytes free); streaming keys through the device is not implemented yet")]
    KeysTooLarge {
        /// Bytes of the stream.
        bytes: u64,
        /// Device bytes free when it was attached.
        free: u64,
    },
    /// Caller error: a resident buffer (matrix, keys) given to another backend than the
    /// instance that holds it (each device backend instance has its own stream and storage).
    #[error("{what} belongs to another backend instance")]
    Foreign {
        /// Which argument.
        what: &'static str,
    },
    /// Caller error: an operation this backend does not offer (e.g. receiving a key stream
    /// into device memory on the CPU backend, which keeps every key byte on the host).
    #[error("the {backend} backend does not {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What it was asked to do.
        what: &'static str,
    },
    /// Error from the FSS evaluators (malformed key, wrong parameters, ...).
    #[error(transparent)]
    Fss(#[from] suf_fss::FssError),
    /// Error from the core crate (bit width out of range, bad packed buffer, ...).
    #[error(transparent)]
    Core(#[from] suf_core::CoreError),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, BackendError>;

/// `Err(LengthMismatch)` unless `got == expected`.
#[inline]
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(BackendError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// `a · b`, or `ShapeOverflow`.
#[inline]
pub(crate) fn shape_mul(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(BackendError::ShapeOverflow { what })
}
