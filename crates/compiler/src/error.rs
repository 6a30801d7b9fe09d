//! Errors of the compiler. Variants say whose fault it is: an invalid spec or parameter
//! (caller), a fit that cannot meet its budget (caller: loosen the budget or raise the degree),
//! a malformed key blob (input), or an error from a crate below.

use suf_runtime::RtError;

/// Errors raised by `suf-compiler`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompilerError {
    /// Caller error: a spec or component violates its invariants.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// Caller error: a gate-library parameter is out of range.
    #[error("invalid parameter for {gate}: {detail}")]
    Param {
        /// Gate.
        gate: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Caller error: the fitter cannot meet the error budget with the given degree/precision.
    #[error("fit failed: {0}")]
    Fit(String),
    /// Input error: a key blob is malformed or belongs to another gate/party/batch.
    #[error("gate key: {0}")]
    Key(String),
    /// Error from the runtime (program building, gate interface).
    #[error(transparent)]
    Runtime(#[from] RtError),
    /// Error from the FSS crate.
    #[error(transparent)]
    Fss(#[from] suf_fss::FssError),
    /// Error from the backend.
    #[error(transparent)]
    Backend(#[from] suf_backend::BackendError),
    /// Error from the core crate.
    #[error(transparent)]
    Core(#[from] suf_core::CoreError),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CompilerError>;

impl From<CompilerError> for RtError {
    fn from(e: CompilerError) -> Self {
        match e {
            CompilerError::Runtime(r) => r,
            CompilerError::Fss(f) => RtError::Fss(f),
            CompilerError::Backend(b) => RtError::Backend(b),
            CompilerError::Core(c) => RtError::Core(c),
            CompilerError::Key(k) => RtError::KeyStream(format!("compiled gate: {k}")),
            other => RtError::Shape {
                op: "compiled gate",
                detail: other.to_string(),
            },
        }
    }
}

pub(crate) fn spec_err<T>(s: impl Into<String>) -> Result<T> {
    Err(CompilerError::Spec(s.into()))
}

pub(crate) fn param_err<T>(gate: &'static str, s: impl Into<String>) -> Result<T> {
    Err(CompilerError::Param {
        gate,
        detail: s.into(),
    })
}
