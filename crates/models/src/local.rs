//! Models from a local folder holding a Hugging Face checkpoint: `config.json`, the weights as
//! safetensors (`model.safetensors`, or shards listed in `model.safetensors.index.json`) and
//! `tokenizer.json` (the "fast" tokenizer format).
//!
//! | `model_type` | family | weight names |
//! |---|---|---|
//! | `bert` | BERT | as stored (`bert.` prefix accepted) |
//! | `roberta` | BERT with positions from `pad_token_id + 1` | as stored (`roberta.` prefix accepted) |
//! | `mpnet` | MPNet | as stored (`mpnet.` prefix accepted) |
//! | `gpt2` | GPT-2 | as stored (`transformer.` prefix accepted) |
//! | `llama`, `mistral` | Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention) | `model.layers.{i}.self_attn.q_proj` … renamed to the canonical names of [`crate::arch`] |
//!
//! Encoders stored with TensorFlow-era `LayerNorm.gamma`/`LayerNorm.beta` names are mapped too
//! ([`legacy_norm_names`]).
//!
//! Settings the implementation does not compute are refused with
//! [`ModelError::Unsupported`], which names the field: `rope_scaling`, `attention_bias`,
//! `mlp_bias`, a non-absolute `position_embedding_type`, GPT-2's
//! `scale_attn_by_inverse_layer_idx`, and any other `model_type`. Mistral's
//! `sliding_window` equals full attention for sequences that fit in the window, so the
//! maximum sequence length is capped at the window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::arch;
use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result};
use crate::tokenize::Tokenizer;
use crate::weights::Weights;
use crate::LoadedModel;

/// The `model_type` values [`load_dir`] reads.
pub const SUPPORTED_TYPES: &[&str] = &["bert", "roberta", "mpnet", "gpt2", "llama", "mistral"];

/// Does `name` look like a path to a checkpoint folder rather than a model name? True for
/// an existing directory, or a name holding a path separator or starting with `.` or `~`.
pub fn is_path(name: &str) -> bool {
    Path::new(name).is_dir()
        || name.contains('/')
        || name.contains(std::path::MAIN_SEPARATOR)
        || name.starts_with('.')
        || name.starts_with('~')
}

fn unsupported(field: &str, value: impl std::fmt::Display, hint: &str) -> ModelError {
    ModelError::Unsupported {
        field: field.into(),
        value: value.to_string(),
        hint: hint.into(),
    }
}

/// Parse a checkpoint's `config.json` text into a [`ModelConfig`] named `name`, refusing
/// settings that the implementation would silently compute differently.
pub fn config_from_json(name: &str, text: &str) -> Result<ModelConfig> {
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| ModelError::format("config.json", e.to_string()))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ModelError::format("config.json", "not a JSON object"));
    };
    let model_type = match obj.get("model_type") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(unsupported("model_type", other, "expected a string")),
        None => {
            return Err(ModelError::Config(
                "config.json has no `model_type` (is this a Hugging Face checkpoint?)".into(),
            ))
        }
    };
    let is_set = |k: &str| match obj.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(x) => Some(x.to_string()),
    };
    let mut window = None;
    match model_type.as_str() {
        "bert" | "roberta" | "mpnet" => {
            if let Some(Value::String(p)) = obj.get("position_embedding_type") {
                if p != "absolute" {
                    return Err(unsupported(
                        "position_embedding_type",
                        p,
                        "only learned absolute positions are implemented",
                    ));
                }
            }
            if let Some(x) = is_set("is_decoder") {
                return Err(unsupported("is_decoder", x, "encoders only"));
            }
        }
        "gpt2" => {
            for k in ["scale_attn_by_inverse_layer_idx", "add_cross_attention"] {
                if let Some(x) = is_set(k) {
                    return Err(unsupported(k, x, "not implemented for GPT-2"));
                }
            }
        }
        "llama" | "mistral" => {
            for k in ["rope_scaling", "attention_bias", "mlp_bias"] {
                if let Some(x) = is_set(k) {
                    return Err(unsupported(
                        k,
                        x,
                        "plain RoPE and bias-free projections only",
                    ));
                }
            }
            window = match obj.get("sliding_window") {
                None | Some(Value::Null) => None,
                Some(x) => Some(x.as_u64().ok_or_else(|| {
                    unsupported("sliding_window", x, "expected an integer or null")
                })?),
            };
        }
        other => {
            return Err(unsupported(
                "model_type",
                other,
                &format!("supported: {}", SUPPORTED_TYPES.join(", ")),
            ))
        }
    }
    // The shared parser knows bert, mpnet, gpt2 and llama; RoBERTa is BERT with shifted
    // positions and Mistral is Llama with a window.
    let base = match model_type.as_str() {
        "roberta" => "bert",
        "mistral" => "llama",
        t => t,
    };
    obj.insert("model_type".into(), Value::String(base.into()));
    let pad = obj.get("pad_token_id").and_then(Value::as_u64);
    let mut cfg = ModelConfig::from_hf_json(name, &v.to_string())?;
    if model_type == "roberta" {
        let off = pad.unwrap_or(1).saturating_add(1);
        cfg.pos_offset =
            usize::try_from(off).map_err(|_| unsupported("pad_token_id", off, "too large"))?;
    }
    if let Some(w) = window {
        let w = usize::try_from(w).unwrap_or(usize::MAX);
        if w == 0 {
            return Err(unsupported(
                "sliding_window",
                0,
                "a window must be positive",
            ));
        }
        cfg.max_pos = cfg.max_pos.min(w);
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Canonical → Hugging Face names of a Llama-style checkpoint (`model.layers.{i}...`).
pub fn llama_hf_names(cfg: &ModelConfig) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |a: String, b: String| {
        m.insert(a, b);
    };
    put(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
    );
    put("output_norm.weight".into(), "model.norm.weight".into());
    put("output.weight".into(), "lm_head.weight".into());
    for i in 0..cfg.layers {
        let (c, h) = (format!("blk.{i}"), format!("model.layers.{i}"));
        for (a, b) in [
            ("attn_norm", "input_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ] {
            put(format!("{c}.{a}.weight"), format!("{h}.{b}.weight"));
        }
    }
    m
}

/// Canonical → stored names for checkpoints that keep TensorFlow-era LayerNorm names
/// (`…LayerNorm.gamma` / `…LayerNorm.beta`, as some BERT conversions do), with any
/// `bert.`/`roberta.`/`mpnet.` prefix left for the lookup to handle.
pub fn legacy_norm_names(stored: impl Iterator<Item = String>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for n in stored {
        let bare = ["bert.", "roberta.", "mpnet."]
            .iter()
            .find_map(|p| n.strip_prefix(p))
            .unwrap_or(&n)
            .to_string();
        for (old, new) in [
            ("LayerNorm.gamma", "LayerNorm.weight"),
            ("LayerNorm.beta", "LayerNorm.bias"),
        ] {
            if let Some(stem) = bare.strip_suffix(old) {
                m.insert(format!("{stem}{new}"), bare.clone());
            }
        }
    }
    m
}

/// The safetensors files of a checkpoint folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json` (each once, in the index's order of first use).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::format("model.safetensors.index.json", e.to_string()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ModelError::format("model.safetensors.index.json", "no `weight_map` object")
            })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, f) in map {
            let f = f.as_str().ok_or_else(|| {
                ModelError::format(
                    "model.safetensors.index.json",
                    format!("`{tensor}` maps to a non-string"),
                )
            })?;
            // Shards must be plain file names in the folder.
            if f.is_empty() || f.contains('/') || f.contains('\\') || f == "." || f == ".." {
                return Err(ModelError::format(
                    "model.safetensors.index.json",
                    format!("shard `{f}` is not a file name in the folder"),
                ));
            }
            let p = dir.join(f);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(ModelError::format(
                "model.safetensors.index.json",
                "the weight map is empty",
            ));
        }
        return Ok(files);
    }
    let hint = if dir.join("pytorch_model.bin").exists() {
        " (only pytorch_model.bin is there: convert it to safetensors, e.g. `model.save_pretrained(dir, safe_serialization=True)`)"
    } else {
        ""
    };
    Err(ModelError::Config(format!(
        "{}: no model.safetensors or model.safetensors.index.json{hint}",
        dir.display()
    )))
}

/// Load a checkpoint folder (see the module docs). The model is named after the folder.
pub fn load_dir(dir: &Path) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(ModelError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "local".into());
    let cpath = dir.join("config.json");
    let text = std::fs::read_to_string(&cpath).map_err(|e| ModelError::io(&cpath, e))?;
    let cfg = config_from_json(&name, &text)?;
    let files = weight_files(dir)?;
    let mut parts = Vec::with_capacity(files.len());
    for f in &files {
        parts.push(Weights::from_safetensors(f)?);
    }
    let rename = if cfg.family == Family::Llama {
        llama_hf_names(&cfg)
    } else {
        legacy_norm_names(parts.iter().flat_map(|p| p.names()))
    };
    let weights = Weights::composite(parts, rename, format!("safetensors in {}", dir.display()));
    weights.check(&arch::expected_tensors(&cfg))?;
    let tpath = dir.join("tokenizer.json");
    if !tpath.is_file() {
        return Err(ModelError::Tokenizer(format!(
            "{}: missing (the fast-tokenizer file; `AutoTokenizer.from_pretrained(..).save_pretrained(dir)` writes it)",
            tpath.display()
        )));
    }
    let tokenizer = Tokenizer::from_file(&tpath)?;
    Ok(LoadedModel {
        cfg,
        weights,
        tokenizer: Some(tokenizer),
    })
}

/// Tiny checkpoints for tests and for trying `--model PATH` without a download.
#[doc(hidden)]
pub mod tiny {
    use super::*;

    /// The words of the tiny tokenizer (ids follow the specials).
    pub const WORDS: &[&str] = &[
        "the", "a", "movie", "film", "was", "is", "good", "bad", "great", "awful", "i", "loved",
        "hated", "it", "every", "minute", "of", "acting", "superb", "boring", "and", "not", "very",
        "fun", "plot", "story", "!", ",", ".",
    ];

    /// The architectures [`write`] makes.
    pub const ARCHS: &[&str] = &["bert", "roberta", "mpnet", "gpt2", "llama", "mistral"];

    fn tokenizer_json(arch: &str) -> String {
        let (specials, post): (Vec<&str>, Value) = match arch {
            "bert" => (
                vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                serde_json::json!({"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}),
            ),
            "roberta" | "mpnet" => (
                vec!["<s>", "<pad>", "</s>", "<unk>"],
                serde_json::json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                    "trim_offsets": true, "add_prefix_space": false}),
            ),
            _ => (vec!["<unk>", "<s>", "</s>", "<pad>"], Value::Null),
        };
        let unk = specials
            .iter()
            .find(|s| s.contains("unk") || s.contains("UNK"))
            .copied()
            .unwrap_or("<unk>");
        let mut vocab = serde_json::Map::new();
        for (i, w) in specials.iter().chain(WORDS).enumerate() {
            vocab.insert((*w).to_string(), Value::from(i as u64));
        }
        let added: Vec<Value> = specials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": post,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk},
        })
        .to_string()
    }

    /// Vocabulary size of the tiny checkpoints (4 specials and [`WORDS`], rounded up).
    pub const VOCAB: usize = 40;

    fn config_json(arch: &str) -> Value {
        use serde_json::json;
        match arch {
            "bert" => json!({"model_type": "bert", "hidden_size": 16, "num_attention_heads": 2,
                "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": VOCAB,
                "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                "hidden_act": "gelu", "pad_token_id": 0, "position_embedding_type": "absolute"}),
            "roberta" => {
                json!({"model_type": "roberta", "hidden_size": 16, "num_attention_heads": 2,
                "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": VOCAB,
                "max_position_embeddings": 34, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                "hidden_act": "gelu", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2})
            }
            "mpnet" => json!({"model_type": "mpnet", "hidden_size": 16, "num_attention_heads": 2,
                "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": VOCAB,
                "max_position_embeddings": 34, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
                "pad_token_id": 1, "relative_attention_num_buckets": 32}),
            "gpt2" => json!({"model_type": "gpt2", "n_embd": 16, "n_head": 2, "n_layer": 2,
                "n_inner": null, "vocab_size": VOCAB, "n_positions": 32,
                "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
                "bos_token_id": 1, "eos_token_id": 2}),
            "mistral" => json!({"model_type": "mistral", "hidden_size": 16,
                "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
                "intermediate_size": 32, "vocab_size": VOCAB, "max_position_embeddings": 64,
                "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_theta": 10000.0,
                "sliding_window": 32, "tie_word_embeddings": false,
                "bos_token_id": 1, "eos_token_id": 2}),
            _ => json!({"model_type": "llama", "hidden_size": 16, "num_attention_heads": 4,
                "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32,
                "vocab_size": VOCAB, "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
                "hidden_act": "silu", "rope_theta": 10000.0, "rope_scaling": null,
                "attention_bias": false, "tie_word_embeddings": true,
                "bos_token_id": 1, "eos_token_id": 2}),
        }
    }

    fn st_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
        let bufs: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let mut views = views;
        for ((n, s, _), b) in tensors.iter().zip(&bufs) {
            let tv = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map_err(|e| ModelError::format("safetensors", e.to_string()))?;
            views.push((n.clone(), tv));
        }
        safetensors::tensor::serialize(views, None)
            .map_err(|e| ModelError::format("safetensors", e.to_string()))
    }

    /// Write a tiny checkpoint of `arch` (one of [`ARCHS`]) into `dir`: config.json,
    /// tokenizer.json and deterministic weights from `seed` under the names the Hugging
    /// Face checkpoints use (GPT-2's Conv1D stored `[in, out]`). Llama and Mistral are
    /// written as two shards with an index, the others as one `model.safetensors`.
    pub fn write(dir: &Path, arch: &str, seed: u64) -> Result<()> {
        if !ARCHS.contains(&arch) {
            return Err(unsupported(
                "arch",
                arch,
                &format!("tiny checkpoints: {}", ARCHS.join(", ")),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let cfgv = config_json(arch);
        let cfg = config_from_json(arch, &cfgv.to_string())?;
        let rename = if cfg.family == Family::Llama {
            llama_hf_names(&cfg)
        } else {
            BTreeMap::new()
        };
        let prefix = match arch {
            "bert" => "bert.",
            "roberta" => "roberta.",
            _ => "",
        };
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = arch::expected_tensors(&cfg)
            .into_iter()
            .map(|(n, s)| {
                let v = crate::weights::synthetic_tensor(seed, &n, &s);
                let stored = rename
                    .get(&n)
                    .cloned()
                    .unwrap_or_else(|| format!("{prefix}{n}"));
                (stored, s, v)
            })
            .collect();
        let put = |name: &str, bytes: &[u8]| -> Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| ModelError::io(&p, e))
        };
        put("config.json", cfgv.to_string().as_bytes())?;
        put("tokenizer.json", tokenizer_json(arch).as_bytes())?;
        if cfg.family == Family::Llama {
            let half = tensors.len() / 2;
            let mut map = serde_json::Map::new();
            for (i, chunk) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
                let f = format!("model-{:05}-of-00002.safetensors", i + 1);
                put(&f, &st_bytes(chunk)?)?;
                for (n, _, _) in chunk {
                    map.insert(n.clone(), Value::String(f.clone()));
                }
            }
            let idx = serde_json::json!({"metadata": {}, "weight_map": map});
            put("model.safetensors.index.json", idx.to_string().as_bytes())?;
        } else {
            put("model.safetensors", &st_bytes(&tensors)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tiny_architecture_loads() {
        for arch in tiny::ARCHS {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path().join(arch);
            tiny::write(&dir, arch, 3).unwrap();
            let m = load_dir(&dir).unwrap();
            assert_eq!(m.cfg.name, *arch);
            let ids = m
                .tokenizer
                .as_ref()
                .unwrap()
                .ids("I loved it !", true)
                .unwrap();
            assert!(ids.len() >= 4, "{arch}: {ids:?}");
            // Known words are not unknown.
            assert!(ids.iter().all(|&i| (i as usize) < tiny::VOCAB), "{arch}");
            let g = arch::load_globals(&m.cfg, &m.weights).unwrap();
            assert_eq!(g.emb.token.len(), tiny::VOCAB * 16);
            let b = arch::load_block(&m.cfg, &m.weights, 1).unwrap();
            assert_eq!(b.k.d_out, m.cfg.kv_dim());
        }
    }

    #[test]
    fn families_and_fields() {
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), "roberta", 1).unwrap();
        let m = load_dir(d.path()).unwrap();
        assert_eq!((m.cfg.family, m.cfg.pos_offset), (Family::Bert, 2));
        // Special tokens from the post-processor.
        let ids = m.tokenizer.unwrap().ids("good", true).unwrap();
        assert_eq!(ids, vec![0, 4 + 6, 2]);
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), "mistral", 1).unwrap();
        let m = load_dir(d.path()).unwrap();
        assert_eq!(
            (m.cfg.family, m.cfg.kv_heads, m.cfg.max_pos),
            (Family::Llama, 2, 32)
        );
        assert!(!m.cfg.tied_head);
    }

    #[test]
    fn legacy_layernorm_names_are_mapped() {
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), "bert", 9).unwrap();
        let reference = load_dir(d.path()).unwrap();
        let st = d.path().join("model.safetensors");
        let w = Weights::from_safetensors(&st).unwrap();
        let mut kept = Vec::new();
        for n in w.names() {
            let s = w.shape(&n).unwrap();
            let v = w.get(&n, &s).unwrap();
            let renamed = n
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            kept.push((
                renamed,
                s,
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
            ));
        }
        assert!(kept
            .iter()
            .any(|k| k.0 == "bert.embeddings.LayerNorm.gamma"));
        let views: Vec<_> = kept
            .iter()
            .map(|(n, s, b)| {
                let tv =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
                (n.clone(), tv.unwrap())
            })
            .collect();
        std::fs::write(&st, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
        let m = load_dir(d.path()).unwrap();
        for i in 0..2 {
            assert_eq!(
                arch::load_block(&m.cfg, &m.weights, i).unwrap(),
                arch::load_block(&reference.cfg, &reference.weights, i).unwrap()
            );
        }
        assert_eq!(
            arch::load_globals(&m.cfg, &m.weights).unwrap(),
            arch::load_globals(&reference.cfg, &reference.weights).unwrap()
        );
    }

    #[test]
    fn unsupported_fields_are_named() {
        let base = r#"{"model_type":"llama","hidden_size":16,"num_attention_heads":4,
            "num_hidden_layers":1,"intermediate_size":32,"vocab_size":40,
            "max_position_embeddings":32"#;
        let e = config_from_json(
            "x",
            &format!(r#"{base},"rope_scaling":{{"type":"linear","factor":2.0}}}}"#),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::Unsupported { field, .. } if field == "rope_scaling"),
            "{e}"
        );
        let e = config_from_json("x", &format!(r#"{base},"attention_bias":true}}"#)).unwrap_err();
        assert!(e.to_string().contains("attention_bias"), "{e}");
        // Null and false are the defaults, accepted.
        config_from_json(
            "x",
            &format!(r#"{base},"rope_scaling":null,"mlp_bias":false}}"#),
        )
        .unwrap();
        let e = config_from_json("x", r#"{"model_type":"qwen2"}"#).unwrap_err();
        assert!(
            e.to_string().contains("qwen2") && e.to_string().contains("llama"),
            "{e}"
        );
        let e = config_from_json(
            "x",
            r#"{"model_type":"bert","position_embedding_type":"relative_key"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("position_embedding_type"), "{e}");
        let e = config_from_json(
            "x",
            r#"{"model_type":"gpt2","scale_attn_by_inverse_layer_idx":true}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("scale_attn_by_inverse_layer_idx"),
            "{e}"
        );
        assert!(matches!(
            config_from_json("x", "[1]"),
            Err(ModelError::Format { .. })
        ));
    }

    #[test]
    fn broken_folders_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_dir(&d.path().join("absent")).is_err());
        tiny::write(d.path(), "llama", 2).unwrap();
        // A shard named outside the folder.
        let idx = d.path().join("model.safetensors.index.json");
        std::fs::write(&idx, r#"{"weight_map":{"a":"../x.safetensors"}}"#).unwrap();
        assert!(load_dir(d.path())
            .unwrap_err()
            .to_string()
            .contains("not a file name"));
        std::fs::remove_file(&idx).unwrap();
        let e = load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors.index.json"), "{e}");
        // A missing tensor is named.
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), "gpt2", 2).unwrap();
        let w = Weights::from_safetensors(&d.path().join("model.safetensors")).unwrap();
        let keep: Vec<(String, Vec<usize>, Vec<f32>)> = w
            .names()
            .into_iter()
            .filter(|n| n != "h.1.mlp.c_fc.weight")
            .map(|n| {
                let s = w.shape(&n).unwrap();
                let v = w.get(&n, &s).unwrap();
                (n, s, v)
            })
            .collect();
        let views: Vec<_> = keep
            .iter()
            .map(|(n, s, v)| {
                (
                    n.clone(),
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                )
            })
            .collect();
        let tv: Vec<_> = views
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        std::fs::write(
            d.path().join("model.safetensors"),
            safetensors::tensor::serialize(tv, None).unwrap(),
        )
        .unwrap();
        let e = load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("h.1.mlp.c_fc.weight"), "{e}");
        // No tokenizer.json.
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), "bert", 2).unwrap();
        std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
        let e = load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
        assert!(tiny::write(d.path(), "t5", 1).is_err());
    }
}
