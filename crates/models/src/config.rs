//! Model configurations: the four families, parsing from Hugging Face `config.json` and GGUF
//! metadata, and SIGMA's benchmark zoo with its default ring widths.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::gguf::Gguf;

/// Default number of fractional bits of the fixed-point encoding (SIGMA's choice for all models).
pub const DEFAULT_FRAC_BITS: u32 = 12;

/// Architecture family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT: post-LN encoder, learned absolute positions, token types, erf GeLU.
    Bert,
    /// MPNet: BERT plus a public relative-position bias, positions from 2, no token types.
    MpNet,
    /// GPT-2: pre-LN causal decoder, learned positions, tanh GeLU, tied LM head.
    Gpt2,
    /// Llama: RMSNorm, rotary positions, SwiGLU, grouped-query attention, causal.
    Llama,
}

impl Family {
    /// Encoders are bidirectional and pooled; decoders are causal and produce logits.
    pub fn is_encoder(self) -> bool {
        matches!(self, Family::Bert | Family::MpNet)
    }
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::MpNet => "mpnet",
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
        }
    }
}

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// x·Φ(x) with the exact (erf) normal CDF (BERT, MPNet).
    Gelu,
    /// The tanh approximation of GeLU (GPT-2's `gelu_new`).
    GeluTanh,
    /// x·σ(x), used gated in SwiGLU (Llama).
    Silu,
    /// max(x, 0).
    Relu,
}

impl Activation {
    /// Parse a Hugging Face `hidden_act` / `activation_function` string.
    pub fn from_hf(s: &str) -> Result<Self> {
        Ok(match s {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            other => return Err(ModelError::Config(format!("unknown activation `{other}`"))),
        })
    }
    /// Evaluate in f64.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Relu => x.max(0.0),
        }
    }
}

/// Normalisation kind, implied by the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// (x − mean)/sqrt(var + eps)·γ + β.
    LayerNorm,
    /// x/sqrt(mean(x²) + eps)·γ.
    RmsNorm,
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1), as llama.cpp does on GGUF weights (whose Q/K rows are
    /// permuted for it).
    Interleaved,
    /// Halves (i, i + d/2), the Hugging Face `rotate_half` convention on HF Llama weights.
    Halves,
}

/// Everything the forward pass and the secure graph need to know about a model's shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Short name (zoo name or fetched model name).
    pub name: String,
    /// Architecture family.
    pub family: Family,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Model width d.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (= `heads` unless grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Feed-forward inner width.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Maximum number of positions.
    pub max_pos: usize,
    /// BERT token-type vocabulary (0 when the family has none).
    pub type_vocab: usize,
    /// Epsilon of LayerNorm / RMSNorm.
    pub norm_eps: f64,
    /// Feed-forward activation (gated for Llama).
    pub activation: Activation,
    /// RoPE base θ (Llama only).
    pub rope_theta: f64,
    /// RoPE pairing (Llama only).
    pub rope_style: RopeStyle,
    /// Output head shares the token embedding matrix.
    pub tied_head: bool,
    /// MPNet relative-attention buckets (0 for other families).
    pub rel_buckets: usize,
    /// MPNet relative-attention maximum distance.
    pub rel_max_distance: usize,
    /// First position id (MPNet/RoBERTa: pad + 1 = 2; others 0).
    pub pos_offset: usize,
    /// Padding token, if the tokenizer has one.
    pub pad_id: Option<u32>,
    /// Beginning-of-sequence token, if any.
    pub bos_id: Option<u32>,
    /// End-of-sequence token, if any.
    pub eos_id: Option<u32>,
    /// Default ring width n for secure inference (SIGMA's per model).
    pub ring_bits: u32,
    /// Default fractional bits f.
    pub frac_bits: u32,
}

impl ModelConfig {
    /// Causal (decoder) attention?
    pub fn causal(&self) -> bool {
        !self.family.is_encoder()
    }
    /// Normalisation used by the family.
    pub fn norm_kind(&self) -> NormKind {
        match self.family {
            Family::Llama => NormKind::RmsNorm,
            _ => NormKind::LayerNorm,
        }
    }
    /// Post-LN (BERT, MPNet) or pre-LN (GPT-2, Llama)?
    pub fn post_norm(&self) -> bool {
        self.family.is_encoder()
    }
    /// Width of the K and V projections.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// Width of the Q projection and the attention output.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Does the family use biases in its linear layers?
    pub fn has_bias(&self) -> bool {
        self.family != Family::Llama
    }

    /// Check internal consistency, and that every dimension is within [`LIMITS`] (so that
    /// products of dimensions, such as a weight matrix's element count, cannot overflow).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(format!("{}: {m}", self.name)));
        if self.layers == 0 || self.hidden == 0 || self.heads == 0 || self.vocab == 0 {
            return bad("layers, hidden, heads and vocab must be positive".into());
        }
        for (what, v, max) in [
            ("layers", self.layers, LIMITS.layers),
            ("hidden", self.hidden, LIMITS.width),
            ("heads", self.heads, LIMITS.heads),
            ("kv_heads", self.kv_heads, LIMITS.heads),
            ("head_dim", self.head_dim, LIMITS.width),
            ("ffn", self.ffn, LIMITS.ffn),
            ("vocab", self.vocab, LIMITS.vocab),
            ("max_pos", self.max_pos, LIMITS.positions),
            ("type_vocab", self.type_vocab, LIMITS.vocab),
            ("rel_buckets", self.rel_buckets, LIMITS.positions),
            ("rel_max_distance", self.rel_max_distance, LIMITS.positions),
            ("pos_offset", self.pos_offset, LIMITS.positions),
        ] {
            if v > max {
                return bad(format!("{what} = {v} is above the supported maximum {max}"));
            }
        }
        if self.q_dim() > LIMITS.width || self.kv_dim() > LIMITS.width {
            return bad(format!(
                "heads × head_dim = {} is above the supported maximum {}",
                self.q_dim().max(self.kv_dim()),
                LIMITS.width
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return bad(format!(
                "norm epsilon {} is not a finite non-negative number",
                self.norm_eps
            ));
        }
        if self.family == Family::Llama && !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "RoPE base {} is not a finite positive number",
                self.rope_theta
            ));
        }
        if !(2..=64).contains(&self.ring_bits) || self.frac_bits >= self.ring_bits {
            return bad(format!(
                "ring of {} bits with {} fractional bits",
                self.ring_bits, self.frac_bits
            ));
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "heads {} not a multiple of kv_heads {}",
                self.heads, self.kv_heads
            ));
        }
        if self.family != Family::Llama && self.heads * self.head_dim != self.hidden {
            return bad(format!(
                "heads {} × head_dim {} != hidden {}",
                self.heads, self.head_dim, self.hidden
            ));
        }
        if self.family == Family::Llama && !self.head_dim.is_multiple_of(2) {
            return bad("RoPE needs an even head_dim".into());
        }
        if self.family == Family::MpNet && self.rel_buckets < 4 {
            return bad("MPNet needs relative-attention buckets".into());
        }
        // The logarithmic buckets of `arch::mpnet_bucket` need max_distance above the exact range.
        if self.family == Family::MpNet && self.rel_max_distance <= self.rel_buckets / 4 {
            return bad(format!(
                "relative-attention max distance {} must exceed buckets/4 = {}",
                self.rel_max_distance,
                self.rel_buckets / 4
            ));
        }
        if self.pos_offset > self.max_pos {
            return bad(format!(
                "first position id {} is beyond the {} positions",
                self.pos_offset, self.max_pos
            ));
        }
        Ok(())
    }

    /// Parse a Hugging Face `config.json` (model types bert, mpnet, gpt2, llama).
    pub fn from_hf_json(name: &str, json: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| ModelError::format("config.json", e.to_string()))?;
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::Config("config.json has no `model_type`".into()))?;
        let req = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("config.json: missing integer `{k}`")))
        };
        let opt_u = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
        let opt_f = |k: &str| v.get(k).and_then(Value::as_f64);
        let opt_s = |k: &str| v.get(k).and_then(Value::as_str);
        let opt_id = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
        };
        let cfg = match model_type {
            "bert" | "mpnet" => {
                let family = if model_type == "bert" {
                    Family::Bert
                } else {
                    Family::MpNet
                };
                let hidden = req("hidden_size")?;
                let heads = req("num_attention_heads")?;
                let pad = opt_id("pad_token_id");
                ModelConfig {
                    name: name.into(),
                    family,
                    layers: req("num_hidden_layers")?,
                    hidden,
                    heads,
                    kv_heads: heads,
                    head_dim: hidden.checked_div(heads).unwrap_or(0),
                    ffn: req("intermediate_size")?,
                    vocab: req("vocab_size")?,
                    max_pos: req("max_position_embeddings")?,
                    type_vocab: if family == Family::Bert {
                        opt_u("type_vocab_size").unwrap_or(2)
                    } else {
                        0
                    },
                    norm_eps: opt_f("layer_norm_eps").unwrap_or(1e-12),
                    activation: Activation::from_hf(opt_s("hidden_act").unwrap_or("gelu"))?,
                    rope_theta: 0.0,
                    rope_style: RopeStyle::Interleaved,
                    tied_head: false,
                    rel_buckets: if family == Family::MpNet {
                        opt_u("relative_attention_num_buckets").unwrap_or(32)
                    } else {
                        0
                    },
                    rel_max_distance: 128,
                    pos_offset: if family == Family::MpNet {
                        (pad.unwrap_or(1) as usize).saturating_add(1)
                    } else {
                        0
                    },
                    pad_id: pad,
                    bos_id: opt_id("bos_token_id"),
                    eos_id: opt_id("eos_token_id"),
                    ring_bits: 50,
                    frac_bits: DEFAULT_FRAC_BITS,
                }
            }
            "gpt2" => {
                let hidden = req("n_embd")?;
                let heads = req("n_head")?;
                ModelConfig {
                    name: name.into(),
                    family: Family::Gpt2,
                    layers: req("n_layer")?,
                    hidden,
                    heads,
                    kv_heads: heads,
                    head_dim: hidden.checked_div(heads).unwrap_or(0),
                    ffn: opt_u("n_inner").unwrap_or(hidden.saturating_mul(4)),
                    vocab: req("vocab_size")?,
                    max_pos: req("n_positions")?,
                    type_vocab: 0,
                    norm_eps: opt_f("layer_norm_epsilon").unwrap_or(1e-5),
                    activation: Activation::from_hf(
                        opt_s("activation_function").unwrap_or("gelu_new"),
                    )?,
                    rope_theta: 0.0,
                    rope_style: RopeStyle::Interleaved,
                    tied_head: true,
                    rel_buckets: 0,
                    rel_max_distance: 0,
                    pos_offset: 0,
                    pad_id: None,
                    bos_id: opt_id("bos_token_id"),
                    eos_id: opt_id("eos_token_id"),
                    ring_bits: 50,
                    frac_bits: DEFAULT_FRAC_BITS,
                }
            }
            "llama" => {
                let hidden = req("hidden_size")?;
                let heads = req("num_attention_heads")?;
                ModelConfig {
                    name: name.into(),
                    family: Family::Llama,
                    layers: req("num_hidden_layers")?,
                    hidden,
                    heads,
                    kv_heads: opt_u("num_key_value_heads").unwrap_or(heads),
                    head_dim: opt_u("head_dim").unwrap_or(hidden.checked_div(heads).unwrap_or(0)),
                    ffn: req("intermediate_size")?,
                    vocab: req("vocab_size")?,
                    max_pos: req("max_position_embeddings")?,
                    type_vocab: 0,
                    norm_eps: opt_f("rms_norm_eps").unwrap_or(1e-6),
                    activation: Activation::from_hf(opt_s("hidden_act").unwrap_or("silu"))?,
                    rope_theta: opt_f("rope_theta").unwrap_or(10000.0),
                    // HF Llama checkpoints use the rotate-half convention.
                    rope_style: RopeStyle::Halves,
                    tied_head: v
                        .get("tie_word_embeddings")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    rel_buckets: 0,
                    rel_max_distance: 0,
                    pos_offset: 0,
                    pad_id: opt_id("pad_token_id"),
                    bos_id: opt_id("bos_token_id"),
                    eos_id: opt_id("eos_token_id"),
                    ring_bits: 48,
                    frac_bits: DEFAULT_FRAC_BITS,
                }
            }
            other => {
                return Err(ModelError::Config(format!(
                    "model_type `{other}` not supported (bert, mpnet, gpt2, llama)"
                )))
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and parse a `config.json` file.
    pub fn from_hf_file(name: &str, path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_hf_json(name, &s)
    }

    /// Build a config from GGUF metadata (architecture `llama`).
    pub fn from_gguf(name: &str, g: &Gguf) -> Result<Self> {
        let arch = g
            .meta_str("general.architecture")
            .ok_or_else(|| ModelError::Config("GGUF has no general.architecture".into()))?;
        if arch != "llama" {
            return Err(ModelError::Config(format!(
                "GGUF architecture `{arch}` not supported (llama)"
            )));
        }
        let req = |k: &str| -> Result<usize> {
            g.meta_u64(&format!("{arch}.{k}"))
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("GGUF: missing `{arch}.{k}`")))
        };
        let hidden = req("embedding_length")?;
        let heads = req("attention.head_count")?;
        let kv_heads = g
            .meta_u64(&format!("{arch}.attention.head_count_kv"))
            .map(|x| x as usize)
            .unwrap_or(heads);
        let vocab = match g.meta_u64(&format!("{arch}.vocab_size")) {
            Some(v) => v as usize,
            None => g
                .tensor_info("token_embd.weight")
                .and_then(|t| t.shape.first().copied())
                .ok_or_else(|| ModelError::Config("GGUF: no vocab size".into()))?,
        };
        let head_dim = g
            .meta_u64(&format!("{arch}.attention.key_length"))
            .map(|x| x as usize)
            .unwrap_or(hidden.checked_div(heads).unwrap_or(0));
        let id = |k: &str| g.meta_u64(k).and_then(|x| u32::try_from(x).ok());
        let cfg = ModelConfig {
            name: name.into(),
            family: Family::Llama,
            layers: req("block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn: req("feed_forward_length")?,
            vocab,
            max_pos: req("context_length")?,
            type_vocab: 0,
            norm_eps: g
                .meta_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            activation: Activation::Silu,
            rope_theta: g
                .meta_f64(&format!("{arch}.rope.freq_base"))
                .unwrap_or(10000.0),
            rope_style: RopeStyle::Interleaved,
            tied_head: g.tensor_info("output.weight").is_none(),
            rel_buckets: 0,
            rel_max_distance: 0,
            pos_offset: 0,
            pad_id: id("tokenizer.ggml.padding_token_id"),
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            ring_bits: 48,
            frac_bits: DEFAULT_FRAC_BITS,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Upper bounds on a configuration's dimensions, checked by [`ModelConfig::validate`]. They
/// are far above every supported model (Llama-2-13B: width 5120, FFN 13824, vocabulary
/// 32000) and keep every product of two of them well inside `usize` on 64-bit hosts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Blocks.
    pub layers: usize,
    /// Model, head and projection widths.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Vocabulary and token-type vocabulary sizes.
    pub vocab: usize,
    /// Positions, relative-attention buckets and distances.
    pub positions: usize,
}

/// The limits in force.
pub const LIMITS: Limits = Limits {
    layers: 1 << 10,
    width: 1 << 16,
    heads: 1 << 10,
    ffn: 1 << 18,
    vocab: 1 << 22,
    positions: 1 << 20,
};

/// Names of SIGMA's benchmark models, in the order SIGMA lists them.
pub const ZOO: &[&str] = &[
    "bert-tiny",
    "bert-base",
    "bert-large",
    "gpt2",
    "gpt-neo-1.3b",
    "llama2-7b",
    "llama2-13b",
];

/// A benchmark-zoo config with SIGMA's default ring width and f = 12.
///
/// GPT-Neo is modelled with the GPT-2 block (SIGMA does the same): its alternating local
/// attention (window 256) equals global attention for sequences ≤ 256, and its unscaled
/// attention scores are not reproduced; for benchmark shapes with synthetic weights this does
/// not change the cost.
pub fn zoo(name: &str) -> Result<ModelConfig> {
    let enc = |layers, hidden, heads, ffn, bits| ModelConfig {
        name: name.into(),
        family: Family::Bert,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        ffn,
        vocab: 30522,
        max_pos: 512,
        type_vocab: 2,
        norm_eps: 1e-12,
        activation: Activation::Gelu,
        rope_theta: 0.0,
        rope_style: RopeStyle::Interleaved,
        tied_head: false,
        rel_buckets: 0,
        rel_max_distance: 0,
        pos_offset: 0,
        pad_id: Some(0),
        bos_id: None,
        eos_id: None,
        ring_bits: bits,
        frac_bits: DEFAULT_FRAC_BITS,
    };
    let gpt = |layers, hidden, heads, max_pos, bits| ModelConfig {
        name: name.into(),
        family: Family::Gpt2,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        ffn: 4 * hidden,
        vocab: 50257,
        max_pos,
        type_vocab: 0,
        norm_eps: 1e-5,
        activation: Activation::GeluTanh,
        rope_theta: 0.0,
        rope_style: RopeStyle::Interleaved,
        tied_head: true,
        rel_buckets: 0,
        rel_max_distance: 0,
        pos_offset: 0,
        pad_id: None,
        bos_id: Some(50256),
        eos_id: Some(50256),
        ring_bits: bits,
        frac_bits: DEFAULT_FRAC_BITS,
    };
    let llama = |layers, hidden, heads, ffn| ModelConfig {
        name: name.into(),
        family: Family::Llama,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        ffn,
        vocab: 32000,
        max_pos: 4096,
        type_vocab: 0,
        norm_eps: 1e-5,
        activation: Activation::Silu,
        rope_theta: 10000.0,
        rope_style: RopeStyle::Interleaved,
        tied_head: false,
        rel_buckets: 0,
        rel_max_distance: 0,
        pos_offset: 0,
        pad_id: None,
        bos_id: Some(1),
        eos_id: Some(2),
        ring_bits: 48,
        frac_bits: DEFAULT_FRAC_BITS,
    };
    let cfg = match name {
        "bert-tiny" => enc(2, 128, 2, 512, 37),
        "bert-base" => enc(12, 768, 12, 3072, 50),
        "bert-large" => enc(24, 1024, 16, 4096, 50),
        "gpt2" => gpt(12, 768, 12, 1024, 50),
        "gpt-neo-1.3b" => gpt(24, 2048, 16, 2048, 51),
        "llama2-7b" => llama(32, 4096, 32, 11008),
        "llama2-13b" => llama(40, 5120, 40, 13824),
        _ => {
            return Err(ModelError::UnknownName {
                name: name.into(),
                known: ZOO.join(", "),
            })
        }
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Abramowitz–Stegun-free erf: a Chebyshev-fitted complementary error function accurate to
/// about 1.2e-7 relative would be too coarse for an f64 reference, so this uses the series /
/// continued fraction split, accurate to ~1e-15.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)).
        let x2 = ax * ax;
        let mut term = ax;
        let mut sum = ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if ax < 27.0 {
        // Continued fraction for erfc (Lentz), converges fast for x ≥ 2.5.
        1.0 - erfc_cf(ax)
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

fn erfc_cf(x: f64) -> f64 {
    // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + 2/(x + ...)))))
    let tiny = 1e-300;
    let mut f = x;
    if f == 0.0 {
        f = tiny;
    }
    let mut c = f;
    let mut d = 0.0;
    for i in 1..300 {
        let a = i as f64 / 2.0;
        d = x + a * d;
        if d == 0.0 {
            d = tiny;
        }
        c = x + a / c;
        if c == 0.0 {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_values() {
        // Reference values of erf from standard tables.
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.4, 0.999_311_486_103_354_9),
            (2.6, 0.999_763_965_583_470_1),
            (3.0, 0.999_977_909_503_001_4),
            (-1.5, -0.966_105_146_475_310_7),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 1e-14,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn zoo_shapes_and_bits() {
        let want = [
            ("bert-tiny", 2, 128, 2, 37),
            ("bert-base", 12, 768, 12, 50),
            ("bert-large", 24, 1024, 16, 50),
            ("gpt2", 12, 768, 12, 50),
            ("gpt-neo-1.3b", 24, 2048, 16, 51),
            ("llama2-7b", 32, 4096, 32, 48),
            ("llama2-13b", 40, 5120, 40, 48),
        ];
        for (n, l, h, a, bits) in want {
            let c = zoo(n).unwrap();
            assert_eq!(
                (c.layers, c.hidden, c.heads, c.ring_bits),
                (l, h, a, bits),
                "{n}"
            );
            assert_eq!(c.frac_bits, 12);
        }
        assert!(zoo("nope").is_err());
    }

    #[test]
    fn parse_hf_bert_and_gpt2() {
        let bert = r#"{"model_type":"bert","hidden_size":384,"num_attention_heads":12,
            "num_hidden_layers":6,"intermediate_size":1536,"vocab_size":30522,
            "max_position_embeddings":512,"type_vocab_size":2,"layer_norm_eps":1e-12,
            "hidden_act":"gelu","pad_token_id":0}"#;
        let c = ModelConfig::from_hf_json("m", bert).unwrap();
        assert_eq!((c.family, c.head_dim, c.ffn), (Family::Bert, 32, 1536));
        let mp = r#"{"model_type":"mpnet","hidden_size":768,"num_attention_heads":12,
            "num_hidden_layers":12,"intermediate_size":3072,"vocab_size":30527,
            "max_position_embeddings":514,"layer_norm_eps":1e-5,"hidden_act":"gelu",
            "pad_token_id":1,"relative_attention_num_buckets":32}"#;
        let c = ModelConfig::from_hf_json("m", mp).unwrap();
        assert_eq!(
            (c.family, c.pos_offset, c.rel_buckets, c.type_vocab),
            (Family::MpNet, 2, 32, 0)
        );
        let g = r#"{"model_type":"gpt2","n_embd":768,"n_head":12,"n_layer":12,
            "n_positions":1024,"vocab_size":50257,"activation_function":"gelu_new"}"#;
        let c = ModelConfig::from_hf_json("g", g).unwrap();
        assert_eq!(
            (c.ffn, c.activation, c.tied_head),
            (3072, Activation::GeluTanh, true)
        );
        assert!(ModelConfig::from_hf_json("x", r#"{"model_type":"t5"}"#).is_err());
    }

    #[test]
    fn hostile_configs_are_errors_not_panics() {
        let bert = |extra: &str| {
            format!(
                r#"{{"model_type":"bert","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8{extra}}}"#
            )
        };
        let ok = ModelConfig::from_hf_json("m", &bert("")).unwrap();
        assert_eq!(ok.head_dim, 4);
        // Zero heads used to divide by zero before validation.
        let e = ModelConfig::from_hf_json(
            "m",
            &bert("").replace(r#""num_attention_heads":2"#, r#""num_attention_heads":0"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("positive"), "{e}");
        // GPT-2 without n_inner: 4·n_embd used to overflow.
        let g = format!(
            r#"{{"model_type":"gpt2","n_embd":{},"n_head":1,"n_layer":1,"vocab_size":10,"n_positions":8}}"#,
            u64::MAX / 2
        );
        let e = ModelConfig::from_hf_json("m", &g).unwrap_err();
        assert!(e.to_string().contains("supported maximum"), "{e}");
        // Dimensions far above any model.
        let e = ModelConfig::from_hf_json(
            "m",
            &bert("").replace(r#""vocab_size":10"#, r#""vocab_size":99999999999"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("vocab"), "{e}");
        // MPNet: a first position beyond the table, and buckets the max distance cannot cover.
        let mp = |extra: &str| {
            format!(
                r#"{{"model_type":"mpnet","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8{extra}}}"#
            )
        };
        assert!(ModelConfig::from_hf_json("m", &mp("")).is_ok());
        let e = ModelConfig::from_hf_json("m", &mp(r#","pad_token_id":100"#)).unwrap_err();
        assert!(e.to_string().contains("first position"), "{e}");
        let e = ModelConfig::from_hf_json("m", &mp(r#","relative_attention_num_buckets":4096"#))
            .unwrap_err();
        assert!(e.to_string().contains("max distance"), "{e}");
        // A token id above u32 is dropped, not truncated.
        let c = ModelConfig::from_hf_json("m", &bert(r#","bos_token_id":4294967297"#)).unwrap();
        assert_eq!(c.bos_id, None);
        // Non-finite or negative epsilon.
        let e = ModelConfig::from_hf_json("m", &bert(r#","layer_norm_eps":-1.0"#)).unwrap_err();
        assert!(e.to_string().contains("epsilon"), "{e}");
    }
}
