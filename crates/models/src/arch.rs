//! Per-family tensor names and a canonical, family-independent view of the weights.
//!
//! Every linear layer is returned as [`Linear`] with `w` row-major `[d_out, d_in]`
//! (y = x·wᵀ + b), whatever the file stores: Hugging Face BERT/MPNet/Llama linears and GGUF
//! tensors are already `[out, in]`; GPT-2's Conv1D weights are stored `[in, out]` and are
//! transposed here, and its fused `c_attn` is split into Q, K and V.
//!
//! Name schemes:
//! * BERT: `embeddings.{word,position,token_type}_embeddings.weight`, `embeddings.LayerNorm`,
//!   `encoder.layer.{i}.attention.self.{query,key,value}`, `...attention.output.dense`,
//!   `...attention.output.LayerNorm`, `...intermediate.dense`, `...output.dense`,
//!   `...output.LayerNorm`.
//! * MPNet: `encoder.layer.{i}.attention.attn.{q,k,v,o}`, `...attention.LayerNorm`, the rest
//!   as BERT without token types; `encoder.relative_attention_bias.weight` `[buckets, heads]`.
//! * GPT-2: `wte`, `wpe`, `h.{i}.ln_1`, `h.{i}.attn.c_attn` `[d, 3d]`, `h.{i}.attn.c_proj`,
//!   `h.{i}.ln_2`, `h.{i}.mlp.c_fc`, `h.{i}.mlp.c_proj`, `ln_f` (head tied to `wte`).
//! * Llama (GGUF names): `token_embd`, `blk.{i}.attn_norm`, `blk.{i}.attn_{q,k,v,output}`,
//!   `blk.{i}.ffn_norm`, `blk.{i}.ffn_{gate,up,down}`, `output_norm`, `output` (absent when
//!   tied). Q/K rows are in llama.cpp's order, for interleaved-pair RoPE.
//!
//! Prefixes such as `bert.` or `transformer.` are accepted by [`crate::Weights`].

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// A linear layer: `w` is row-major `[d_out, d_in]`; y = x·wᵀ + b.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Weight, `[d_out, d_in]`.
    pub w: Vec<f32>,
    /// Bias, `[d_out]`.
    pub b: Option<Vec<f32>>,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

/// A LayerNorm (`beta` present) or RMSNorm (`beta` absent) gain and shift.
#[derive(Clone, Debug, PartialEq)]
pub struct Norm {
    /// γ.
    pub gamma: Vec<f32>,
    /// β (LayerNorm only).
    pub beta: Option<Vec<f32>>,
}

/// Client-side (public) embedding tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Token embeddings `[vocab, hidden]`.
    pub token: Vec<f32>,
    /// Learned absolute positions `[max_pos, hidden]` (BERT, MPNet, GPT-2).
    pub position: Option<Vec<f32>>,
    /// Token type 0 row `[hidden]` (BERT).
    pub token_type0: Option<Vec<f32>>,
    /// Embedding LayerNorm (BERT, MPNet).
    pub norm: Option<Norm>,
}

/// Model-level tensors: embeddings, MPNet's relative bias, final norm and LM head.
#[derive(Clone, Debug, PartialEq)]
pub struct Globals {
    /// Embedding tables.
    pub emb: Embeddings,
    /// MPNet relative attention bias table `[buckets, heads]`.
    pub rel_bias: Option<Vec<f32>>,
    /// Final norm before the head (GPT-2 `ln_f`, Llama `output_norm`).
    pub final_norm: Option<Norm>,
    /// Untied LM head `[vocab, hidden]`; `None` for encoders and for tied heads (use
    /// `emb.token`).
    pub lm_head: Option<Linear>,
}

/// One transformer block in canonical form.
///
/// `norm1`/`norm2`: in post-LN families (BERT, MPNet) they follow the attention and the FFN
/// residual additions; in pre-LN families (GPT-2, Llama) they precede attention and FFN.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Query projection `[heads·head_dim, hidden]`.
    pub q: Linear,
    /// Key projection `[kv_heads·head_dim, hidden]`.
    pub k: Linear,
    /// Value projection `[kv_heads·head_dim, hidden]`.
    pub v: Linear,
    /// Output projection `[hidden, heads·head_dim]`.
    pub o: Linear,
    /// Attention norm.
    pub norm1: Norm,
    /// FFN norm.
    pub norm2: Norm,
    /// FFN up projection `[ffn, hidden]`.
    pub up: Linear,
    /// SwiGLU gate projection `[ffn, hidden]` (Llama).
    pub gate: Option<Linear>,
    /// FFN down projection `[hidden, ffn]`.
    pub down: Linear,
}

/// Names and row-major shapes of the tensors of block `i`, as stored.
pub fn block_tensors(cfg: &ModelConfig, i: usize) -> Vec<(String, Vec<usize>)> {
    let (d, f, q, kv) = (cfg.hidden, cfg.ffn, cfg.q_dim(), cfg.kv_dim());
    let mut v = Vec::new();
    let lin = |name: String, o: usize, inp: usize, bias: bool, v: &mut Vec<_>| {
        v.push((format!("{name}.weight"), vec![o, inp]));
        if bias {
            v.push((format!("{name}.bias"), vec![o]));
        }
    };
    let ln = |name: String, beta: bool, v: &mut Vec<(String, Vec<usize>)>| {
        v.push((format!("{name}.weight"), vec![d]));
        if beta {
            v.push((format!("{name}.bias"), vec![d]));
        }
    };
    match cfg.family {
        Family::Bert => {
            let p = format!("encoder.layer.{i}");
            for n in ["query", "key", "value"] {
                lin(format!("{p}.attention.self.{n}"), d, d, true, &mut v);
            }
            lin(format!("{p}.attention.output.dense"), d, d, true, &mut v);
            ln(format!("{p}.attention.output.LayerNorm"), true, &mut v);
            lin(format!("{p}.intermediate.dense"), f, d, true, &mut v);
            lin(format!("{p}.output.dense"), d, f, true, &mut v);
            ln(format!("{p}.output.LayerNorm"), true, &mut v);
        }
        Family::MpNet => {
            let p = format!("encoder.layer.{i}");
            for n in ["q", "k", "v", "o"] {
                lin(format!("{p}.attention.attn.{n}"), d, d, true, &mut v);
            }
            ln(format!("{p}.attention.LayerNorm"), true, &mut v);
            lin(format!("{p}.intermediate.dense"), f, d, true, &mut v);
            lin(format!("{p}.output.dense"), d, f, true, &mut v);
            ln(format!("{p}.output.LayerNorm"), true, &mut v);
        }
        Family::Gpt2 => {
            let p = format!("h.{i}");
            ln(format!("{p}.ln_1"), true, &mut v);
            // Conv1D: stored [in, out].
            // Conv1D biases have the output width (the last pushed entry is the bias).
            let bias_of = |v: &mut Vec<(String, Vec<usize>)>, n: usize| {
                if let Some(last) = v.last_mut() {
                    last.1 = vec![n];
                }
            };
            lin(format!("{p}.attn.c_attn"), d, 3 * d, true, &mut v);
            bias_of(&mut v, 3 * d);
            lin(format!("{p}.attn.c_proj"), d, d, true, &mut v);
            ln(format!("{p}.ln_2"), true, &mut v);
            lin(format!("{p}.mlp.c_fc"), d, f, true, &mut v);
            bias_of(&mut v, f);
            lin(format!("{p}.mlp.c_proj"), f, d, true, &mut v);
            bias_of(&mut v, d);
        }
        Family::Llama => {
            let p = format!("blk.{i}");
            ln(format!("{p}.attn_norm"), false, &mut v);
            lin(format!("{p}.attn_q"), q, d, false, &mut v);
            lin(format!("{p}.attn_k"), kv, d, false, &mut v);
            lin(format!("{p}.attn_v"), kv, d, false, &mut v);
            lin(format!("{p}.attn_output"), d, q, false, &mut v);
            ln(format!("{p}.ffn_norm"), false, &mut v);
            lin(format!("{p}.ffn_gate"), f, d, false, &mut v);
            lin(format!("{p}.ffn_up"), f, d, false, &mut v);
            lin(format!("{p}.ffn_down"), d, f, false, &mut v);
        }
    }
    v
}

/// Names and shapes of the model-level tensors, as stored.
pub fn global_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.hidden;
    let mut v = Vec::new();
    match cfg.family {
        Family::Bert | Family::MpNet => {
            v.push((
                "embeddings.word_embeddings.weight".into(),
                vec![cfg.vocab, d],
            ));
            v.push((
                "embeddings.position_embeddings.weight".into(),
                vec![cfg.max_pos, d],
            ));
            if cfg.family == Family::Bert {
                v.push((
                    "embeddings.token_type_embeddings.weight".into(),
                    vec![cfg.type_vocab, d],
                ));
            }
            v.push(("embeddings.LayerNorm.weight".into(), vec![d]));
            v.push(("embeddings.LayerNorm.bias".into(), vec![d]));
            if cfg.family == Family::MpNet {
                v.push((
                    "encoder.relative_attention_bias.weight".into(),
                    vec![cfg.rel_buckets, cfg.heads],
                ));
            }
        }
        Family::Gpt2 => {
            v.push(("wte.weight".into(), vec![cfg.vocab, d]));
            v.push(("wpe.weight".into(), vec![cfg.max_pos, d]));
            v.push(("ln_f.weight".into(), vec![d]));
            v.push(("ln_f.bias".into(), vec![d]));
        }
        Family::Llama => {
            v.push(("token_embd.weight".into(), vec![cfg.vocab, d]));
            v.push(("output_norm.weight".into(), vec![d]));
            if !cfg.tied_head {
                v.push(("output.weight".into(), vec![cfg.vocab, d]));
            }
        }
    }
    v
}

/// Every tensor the model needs, as stored.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut v = global_tensors(cfg);
    for i in 0..cfg.layers {
        v.extend(block_tensors(cfg, i));
    }
    v
}

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

fn linear(w: &Weights, name: &str, d_out: usize, d_in: usize, bias: bool) -> Result<Linear> {
    Ok(Linear {
        w: w.get(&format!("{name}.weight"), &[d_out, d_in])?,
        b: if bias {
            Some(w.get(&format!("{name}.bias"), &[d_out])?)
        } else {
            None
        },
        d_in,
        d_out,
    })
}

/// GPT-2 Conv1D: stored `[in, out]`, returned `[out, in]`.
fn conv1d(w: &Weights, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
    let wt = w.get(&format!("{name}.weight"), &[d_in, d_out])?;
    Ok(Linear {
        w: transpose(&wt, d_in, d_out),
        b: Some(w.get(&format!("{name}.bias"), &[d_out])?),
        d_in,
        d_out,
    })
}

fn norm(w: &Weights, name: &str, d: usize, beta: bool) -> Result<Norm> {
    Ok(Norm {
        gamma: w.get(&format!("{name}.weight"), &[d])?,
        beta: if beta {
            Some(w.get(&format!("{name}.bias"), &[d])?)
        } else {
            None
        },
    })
}

/// Load block `i` in canonical form.
pub fn load_block(cfg: &ModelConfig, w: &Weights, i: usize) -> Result<Block> {
    if i >= cfg.layers {
        return Err(ModelError::Input(format!("block {i} of {}", cfg.layers)));
    }
    let (d, f, qd, kv) = (cfg.hidden, cfg.ffn, cfg.q_dim(), cfg.kv_dim());
    Ok(match cfg.family {
        Family::Bert => {
            let p = format!("encoder.layer.{i}");
            Block {
                q: linear(w, &format!("{p}.attention.self.query"), d, d, true)?,
                k: linear(w, &format!("{p}.attention.self.key"), d, d, true)?,
                v: linear(w, &format!("{p}.attention.self.value"), d, d, true)?,
                o: linear(w, &format!("{p}.attention.output.dense"), d, d, true)?,
                norm1: norm(w, &format!("{p}.attention.output.LayerNorm"), d, true)?,
                up: linear(w, &format!("{p}.intermediate.dense"), f, d, true)?,
                gate: None,
                down: linear(w, &format!("{p}.output.dense"), d, f, true)?,
                norm2: norm(w, &format!("{p}.output.LayerNorm"), d, true)?,
            }
        }
        Family::MpNet => {
            let p = format!("encoder.layer.{i}");
            Block {
                q: linear(w, &format!("{p}.attention.attn.q"), d, d, true)?,
                k: linear(w, &format!("{p}.attention.attn.k"), d, d, true)?,
                v: linear(w, &format!("{p}.attention.attn.v"), d, d, true)?,
                o: linear(w, &format!("{p}.attention.attn.o"), d, d, true)?,
                norm1: norm(w, &format!("{p}.attention.LayerNorm"), d, true)?,
                up: linear(w, &format!("{p}.intermediate.dense"), f, d, true)?,
                gate: None,
                down: linear(w, &format!("{p}.output.dense"), d, f, true)?,
                norm2: norm(w, &format!("{p}.output.LayerNorm"), d, true)?,
            }
        }
        Family::Gpt2 => {
            let p = format!("h.{i}");
            let qkv = conv1d(w, &format!("{p}.attn.c_attn"), d, 3 * d)?;
            let b = qkv.b.as_ref().ok_or_else(|| {
                ModelError::Input(format!("{p}.attn.c_attn has no bias (GPT-2 needs one)"))
            })?;
            let part = |j: usize| Linear {
                w: qkv.w[j * d * d..(j + 1) * d * d].to_vec(),
                b: Some(b[j * d..(j + 1) * d].to_vec()),
                d_in: d,
                d_out: d,
            };
            Block {
                q: part(0),
                k: part(1),
                v: part(2),
                o: conv1d(w, &format!("{p}.attn.c_proj"), d, d)?,
                norm1: norm(w, &format!("{p}.ln_1"), d, true)?,
                norm2: norm(w, &format!("{p}.ln_2"), d, true)?,
                up: conv1d(w, &format!("{p}.mlp.c_fc"), d, f)?,
                gate: None,
                down: conv1d(w, &format!("{p}.mlp.c_proj"), f, d)?,
            }
        }
        Family::Llama => {
            let p = format!("blk.{i}");
            Block {
                q: linear(w, &format!("{p}.attn_q"), qd, d, false)?,
                k: linear(w, &format!("{p}.attn_k"), kv, d, false)?,
                v: linear(w, &format!("{p}.attn_v"), kv, d, false)?,
                o: linear(w, &format!("{p}.attn_output"), d, qd, false)?,
                norm1: norm(w, &format!("{p}.attn_norm"), d, false)?,
                norm2: norm(w, &format!("{p}.ffn_norm"), d, false)?,
                up: linear(w, &format!("{p}.ffn_up"), f, d, false)?,
                gate: Some(linear(w, &format!("{p}.ffn_gate"), f, d, false)?),
                down: linear(w, &format!("{p}.ffn_down"), d, f, false)?,
            }
        }
    })
}

/// Load the model-level tensors.
pub fn load_globals(cfg: &ModelConfig, w: &Weights) -> Result<Globals> {
    let d = cfg.hidden;
    Ok(match cfg.family {
        Family::Bert | Family::MpNet => {
            let token_type0 = if cfg.family == Family::Bert {
                let tt = w.get(
                    "embeddings.token_type_embeddings.weight",
                    &[cfg.type_vocab, d],
                )?;
                Some(tt[..d].to_vec())
            } else {
                None
            };
            Globals {
                emb: Embeddings {
                    token: w.get("embeddings.word_embeddings.weight", &[cfg.vocab, d])?,
                    position: Some(
                        w.get("embeddings.position_embeddings.weight", &[cfg.max_pos, d])?,
                    ),
                    token_type0,
                    norm: Some(norm(w, "embeddings.LayerNorm", d, true)?),
                },
                rel_bias: if cfg.family == Family::MpNet {
                    Some(w.get(
                        "encoder.relative_attention_bias.weight",
                        &[cfg.rel_buckets, cfg.heads],
                    )?)
                } else {
                    None
                },
                final_norm: None,
                lm_head: None,
            }
        }
        Family::Gpt2 => Globals {
            emb: Embeddings {
                token: w.get("wte.weight", &[cfg.vocab, d])?,
                position: Some(w.get("wpe.weight", &[cfg.max_pos, d])?),
                token_type0: None,
                norm: None,
            },
            rel_bias: None,
            final_norm: Some(norm(w, "ln_f", d, true)?),
            lm_head: None,
        },
        Family::Llama => Globals {
            emb: Embeddings {
                token: w.get("token_embd.weight", &[cfg.vocab, d])?,
                position: None,
                token_type0: None,
                norm: None,
            },
            rel_bias: None,
            final_norm: Some(norm(w, "output_norm", d, false)?),
            lm_head: if cfg.tied_head {
                None
            } else {
                Some(linear(w, "output", cfg.vocab, d, false)?)
            },
        },
    })
}

/// MPNet's relative-position bucket of `rel = key_pos − query_pos` (bidirectional, half the
/// buckets per direction, exact below `num_buckets/4`, logarithmic up to `max_distance`).
/// The logarithm is evaluated in f32 like the public implementation, so bucket edges agree.
pub fn mpnet_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -rel;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let a = (n as f32 / max_exact as f32).ln();
        let b = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
        let v = max_exact + ((a / b) * (half - max_exact) as f32) as i64;
        ret += v.min(half - 1);
    }
    ret as usize
}

/// The public additive attention bias of MPNet for a sequence of length `len`:
/// `[heads, len, len]`, entry (h, i, j) = `table[bucket(j − i)][h]`.
pub fn mpnet_position_bias(cfg: &ModelConfig, table: &[f32], len: usize) -> Vec<f64> {
    let h = cfg.heads;
    let mut out = vec![0f64; h * len * len];
    for i in 0..len {
        for j in 0..len {
            let b = mpnet_bucket(j as i64 - i as i64, cfg.rel_buckets, cfg.rel_max_distance);
            for hh in 0..h {
                out[(hh * len + i) * len + j] = table[b * h + hh] as f64;
            }
        }
    }
    out
}

/// RoPE tables for positions `0..len`: `(cos, sin)`, each `[len, head_dim/2]`; pair `i` has
/// frequency θ^(−2i/head_dim).
pub fn rope_tables(cfg: &ModelConfig, len: usize) -> (Vec<f64>, Vec<f64>) {
    let half = cfg.head_dim / 2;
    let mut c = vec![0f64; len * half];
    let mut s = vec![0f64; len * half];
    for p in 0..len {
        for i in 0..half {
            let freq = cfg.rope_theta.powf(-2.0 * i as f64 / cfg.head_dim as f64);
            let a = p as f64 * freq;
            c[p * half + i] = a.cos();
            s[p * half + i] = a.sin();
        }
    }
    (c, s)
}

/// Client-side embedding of one sequence in f64: token + position (+ token type 0), then the
/// embedding LayerNorm where the family has one. Returns `[len, hidden]`.
pub fn embed(cfg: &ModelConfig, g: &Globals, ids: &[u32]) -> Result<Vec<f64>> {
    let d = cfg.hidden;
    if ids.len() + cfg.pos_offset > cfg.max_pos && g.emb.position.is_some() {
        return Err(ModelError::Input(format!(
            "sequence of {} tokens exceeds {} positions",
            ids.len(),
            cfg.max_pos - cfg.pos_offset
        )));
    }
    let mut x = vec![0f64; ids.len() * d];
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        if id >= cfg.vocab {
            return Err(ModelError::Input(format!(
                "token id {id} ≥ vocab {}",
                cfg.vocab
            )));
        }
        let row = &mut x[t * d..(t + 1) * d];
        for (r, &e) in row.iter_mut().zip(&g.emb.token[id * d..(id + 1) * d]) {
            *r = e as f64;
        }
        if let Some(pos) = &g.emb.position {
            let p = t + cfg.pos_offset;
            for (r, &e) in row.iter_mut().zip(&pos[p * d..(p + 1) * d]) {
                *r += e as f64;
            }
        }
        if let Some(tt) = &g.emb.token_type0 {
            for (r, &e) in row.iter_mut().zip(tt) {
                *r += e as f64;
            }
        }
        if let Some(n) = &g.emb.norm {
            crate::float::layer_norm_row(row, n, cfg.norm_eps);
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::zoo;

    #[test]
    fn mpnet_buckets() {
        // Exact region, direction split, log region, clamp.
        assert_eq!(mpnet_bucket(0, 32, 128), 0);
        assert_eq!(mpnet_bucket(-1, 32, 128), 1); // key before query: n = 1
        assert_eq!(mpnet_bucket(1, 32, 128), 17);
        assert_eq!(mpnet_bucket(-7, 32, 128), 7);
        assert_eq!(mpnet_bucket(-8, 32, 128), 8);
        assert_eq!(mpnet_bucket(-16, 32, 128), 10);
        assert_eq!(mpnet_bucket(-127, 32, 128), 15);
        assert_eq!(mpnet_bucket(-1000, 32, 128), 15);
        assert_eq!(mpnet_bucket(1000, 32, 128), 31);
    }

    #[test]
    fn names_cover_synthetic_load() {
        for name in ["bert-tiny", "gpt2"] {
            let mut cfg = zoo(name).unwrap();
            cfg.layers = 1;
            let w = Weights::synthetic(1);
            let b = load_block(&cfg, &w, 0).unwrap();
            assert_eq!((b.q.d_out, b.q.d_in), (cfg.hidden, cfg.hidden));
            assert_eq!((b.up.d_out, b.down.d_out), (cfg.ffn, cfg.hidden));
            assert!(load_block(&cfg, &w, 1).is_err());
            let n = expected_tensors(&cfg).len();
            assert!(n > 10);
        }
    }

    #[test]
    fn gpt2_conv1d_is_transposed_and_split() {
        let mut cfg = zoo("gpt2").unwrap();
        cfg.hidden = 4;
        cfg.heads = 2;
        cfg.head_dim = 2;
        cfg.ffn = 8;
        cfg.layers = 1;
        let mut m = std::collections::BTreeMap::new();
        for (n, s) in block_tensors(&cfg, 0) {
            let len: usize = s.iter().product();
            let v: Vec<f32> = (0..len).map(|x| x as f32).collect();
            m.insert(n, (s, v));
        }
        let w = Weights::from_map(m).unwrap();
        let b = load_block(&cfg, &w, 0).unwrap();
        // c_attn stored [4, 12]: element (in=r, out=c) = r*12 + c. K's output 0 is column 4.
        assert_eq!(b.k.w[0], 4.0); // (out 0 of K, in 0)
        assert_eq!(b.k.w[1], 16.0); // (out 0 of K, in 1) = 1*12 + 4
        assert_eq!(b.k.b.as_ref().unwrap()[0], 4.0);
        // Missing tensor names the tensor and shape.
        let e = load_globals(&cfg, &w).unwrap_err().to_string();
        assert!(e.contains("wte.weight") && e.contains("50257"), "{e}");
    }
}
