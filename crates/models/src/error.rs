//! One error type for the crate. Every message says what went wrong and, where it can,
//! what to do about it.

use std::path::PathBuf;

/// Errors of `suf-models`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor the model needs is not in the weight file.
    #[error("tensor `{name}` (expected shape {expected:?}) is missing from {source_desc}")]
    MissingTensor {
        /// Tensor name as looked up.
        name: String,
        /// Shape the model expects (row-major).
        expected: Vec<usize>,
        /// Which weight source was searched.
        source_desc: String,
    },
    /// A tensor has a different shape than the model expects.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape the model expects (row-major).
        expected: Vec<usize>,
        /// Shape in the file (row-major).
        found: Vec<usize>,
    },
    /// A tensor uses an element type this crate does not decode.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The dtype as the file names it.
        dtype: String,
    },
    /// A file is malformed (GGUF, safetensors, JSON, archive...).
    #[error("malformed {what}: {msg}")]
    Format {
        /// Kind of file.
        what: &'static str,
        /// Details.
        msg: String,
    },
    /// A configuration is missing a field or is inconsistent.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A checkpoint setting this implementation does not compute (named, with its value).
    #[error("unsupported `{field}` = {value} in config.json: {hint}")]
    Unsupported {
        /// The config field.
        field: String,
        /// Its value, as JSON.
        value: String,
        /// What is supported instead.
        hint: String,
    },
    /// Unknown model or data set name.
    #[error("unknown name `{name}`; known: {known}")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// Comma-separated list of known names.
        known: String,
    },
    /// A downloaded or extracted file does not have the pinned hash.
    #[error("sha256 mismatch for {what}: expected {expected}, got {found}; delete {} and fetch again", path.display())]
    HashMismatch {
        /// What was checked.
        what: String,
        /// Pinned hash.
        expected: String,
        /// Hash of the bytes received.
        found: String,
        /// Where the bad file is (or was).
        path: PathBuf,
    },
    /// The network request failed.
    #[error("download of {url} failed: {msg}. Check network access to the package registry, or copy a cache directory from a machine that has fetched it (set SUF_CACHE)")]
    Network {
        /// URL requested.
        url: String,
        /// Underlying error.
        msg: String,
    },
    /// Files needed locally are not in the cache.
    #[error("`{name}` is not in the cache at {}; run `suf models fetch {name}` (or `cargo run -p suf-models --release --example fetch -- {name}`) first", dir.display())]
    NotCached {
        /// Model or data set name.
        name: String,
        /// Directory that was searched.
        dir: PathBuf,
    },
    /// Tokenizer construction or use failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Bad input to a forward pass.
    #[error("invalid input: {0}")]
    Input(String),
    /// I/O error with the path involved.
    #[error("{}: {source}", path.display())]
    Io {
        /// Path being read or written.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn format(what: &'static str, msg: impl Into<String>) -> Self {
        ModelError::Format {
            what,
            msg: msg.into(),
        }
    }
}
