//! # suf-nn
//!
//! Transformer layers ([`layers`]) and model families ([`model`]) written once against the
//! protocol interface of `suf-runtime`; the Plain, Dealer and Party interpreters run the same
//! program. Nonlinear gates come from `suf-compiler` ([`gates`] is the one place that names
//! them). Depends on suf-core, suf-runtime and suf-compiler; knows nothing of backends,
//! sockets or files.
//!
//! [`bucket`] builds a model for a length bucket: one program and key stream for every input
//! of up to L_b tokens, the valid length a public run-time input.
#![forbid(unsafe_code)]

pub mod bucket;
pub mod decode;
pub mod gates;
pub mod layers;
pub mod model;

/// Errors of model construction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// Caller or weight-file error: a shape or value that does not fit.
    #[error("model configuration: {0}")]
    Config(String),
    /// Weight error: a tensor is missing or mis-shaped.
    #[error("tensor {name}: {detail}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// Expected shape or cause.
        detail: String,
    },
    /// Program construction error.
    #[error(transparent)]
    Runtime(#[from] suf_runtime::RtError),
    /// Fixed-point encoding error (a weight that does not fit the ring).
    #[error(transparent)]
    Core(#[from] suf_core::CoreError),
    /// Model files error.
    #[error(transparent)]
    Model(#[from] suf_models::ModelError),
    /// Gate library error.
    #[error(transparent)]
    Gate(#[from] suf_compiler::CompilerError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, NnError>;
