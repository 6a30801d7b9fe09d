//! Errors of `suf-core`. Every variant says whose fault it is.

/// Errors raised by the core crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Caller error: a ring width outside 1..=64.
    #[error("bit width {0} is outside 1..=64")]
    BadBitWidth(u32),
    /// Caller error: a fixed-point format with at least as many fractional bits as ring bits.
    #[error("{frac} fractional bits do not fit a {bits}-bit ring (need frac < bits)")]
    BadFracBits {
        /// Fractional bits asked for.
        frac: u32,
        /// Ring width.
        bits: u32,
    },
    /// Caller error: a fixed-point value does not fit the ring.
    #[error("value {value} does not fit {bits}-bit fixed point with {frac} fractional bits")]
    Saturated {
        /// The real value that was asked for.
        value: f64,
        /// Ring width.
        bits: u32,
        /// Fractional bits.
        frac: u32,
    },
    /// Caller error: a non-finite real value (NaN or infinity) was given to the codec.
    #[error("cannot encode a non-finite value ({0}) in fixed point")]
    NotFinite(f64),
    /// Input error (usually from the peer or a file): a packed buffer has the wrong length.
    #[error(
        "packed buffer holds {got} bytes, expected {expected} for {count} values of {bits} bits"
    )]
    PackedLength {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
        /// Number of values.
        count: usize,
        /// Bits per value.
        bits: u32,
    },
    /// Environment error: the operating system random source failed.
    #[error("OS randomness unavailable: {0}")]
    OsRng(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CoreError>;
