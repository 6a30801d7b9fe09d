//! The f64 float reference forward of every family, used to measure the approximation error
//! of the fixed-point and secure paths.
//!
//! * BERT: post-LN, erf GeLU, token type 0, absolute positions.
//! * MPNet: BERT plus the public relative-position bias ([`crate::arch::mpnet_position_bias`]),
//!   positions from `pos_offset` (2), no token types.
//! * GPT-2: pre-LN, causal, tanh GeLU, learned positions, final `ln_f`, tied head → logits.
//! * Llama: RMSNorm, RoPE (interleaved pairs on GGUF weights, halves on HF weights), SwiGLU,
//!   grouped-query attention, causal, final norm, logits.
//!
//! Sequences of a batch may have different lengths: their rows are stacked for the linear
//! layers and attention runs per sequence, which is exactly attention with a padding mask.
//! Linear layers use `ndarray`'s GEMM (runtime SIMD detection) split over rows with rayon.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::arch::{self, Block, Globals, Linear, Norm};
use crate::config::{Family, ModelConfig, RopeStyle};
use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// Output of a forward pass over a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Final hidden states per sequence, `[len, hidden]` (after the final norm for decoders).
    pub hidden: Vec<Vec<f64>>,
    /// Encoders: mean-pooled hidden state per sequence `[hidden]` (not L2-normalised).
    pub pooled: Option<Vec<Vec<f64>>>,
    /// Decoders: next-token logits at the last position of each sequence `[vocab]`.
    pub logits: Option<Vec<Vec<f64>>>,
}

/// A linear layer in f64, weight kept transposed `[d_in, d_out]` for x·W.
#[derive(Clone, Debug)]
pub struct LinearF64 {
    wt: Array2<f64>,
    b: Option<Vec<f64>>,
}

impl LinearF64 {
    /// Convert a canonical [`Linear`].
    pub fn new(l: &Linear) -> Self {
        let mut wt = Array2::<f64>::zeros((l.d_in, l.d_out));
        for o in 0..l.d_out {
            for i in 0..l.d_in {
                wt[[i, o]] = l.w[o * l.d_in + i] as f64;
            }
        }
        LinearF64 {
            wt,
            b: l.b.as_ref().map(|b| b.iter().map(|&x| x as f64).collect()),
        }
    }
    /// Output width.
    pub fn d_out(&self) -> usize {
        self.wt.ncols()
    }
    /// y = x·wᵀ + b for `x` of shape `[rows, d_in]` (row-major).
    pub fn apply(&self, x: &[f64], rows: usize) -> Vec<f64> {
        let (din, dout) = self.wt.dim();
        assert_eq!(x.len(), rows * din, "linear input shape");
        let mut y = vec![0f64; rows * dout];
        const BLK: usize = 64;
        y.par_chunks_mut(BLK * dout)
            .zip(x.par_chunks(BLK * din))
            .for_each(|(yc, xc)| {
                let r = xc.len() / din;
                // `xc` holds exactly `r` rows of `din` (asserted above): cannot fail.
                #[allow(clippy::expect_used)]
                let xa = ArrayView2::from_shape((r, din), xc).expect("shape");
                let prod = xa.dot(&self.wt);
                for (dst, src) in yc.iter_mut().zip(prod.iter()) {
                    *dst = *src;
                }
                if let Some(b) = &self.b {
                    for row in yc.chunks_mut(dout) {
                        for (v, bb) in row.iter_mut().zip(b) {
                            *v += bb;
                        }
                    }
                }
            });
        y
    }
}

#[derive(Clone, Debug)]
struct NormF64 {
    g: Vec<f64>,
    b: Option<Vec<f64>>,
}

impl NormF64 {
    fn new(n: &Norm) -> Self {
        NormF64 {
            g: n.gamma.iter().map(|&x| x as f64).collect(),
            b: n.beta
                .as_ref()
                .map(|b| b.iter().map(|&x| x as f64).collect()),
        }
    }
    fn apply(&self, x: &mut [f64], eps: f64) {
        let d = self.g.len();
        x.par_chunks_mut(d).for_each(|row| {
            if self.b.is_some() {
                let mean = row.iter().sum::<f64>() / d as f64;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
                let inv = 1.0 / (var + eps).sqrt();
                for (i, v) in row.iter_mut().enumerate() {
                    *v = (*v - mean) * inv * self.g[i] + self.b.as_ref().map_or(0.0, |b| b[i]);
                }
            } else {
                let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
                let inv = 1.0 / (ms + eps).sqrt();
                for (i, v) in row.iter_mut().enumerate() {
                    *v = *v * inv * self.g[i];
                }
            }
        });
    }
}

/// LayerNorm (β present) or RMSNorm (β absent) of one row in place, in f64.
pub fn layer_norm_row(row: &mut [f64], n: &Norm, eps: f64) {
    let d = row.len();
    if let Some(beta) = &n.beta {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * n.gamma[i] as f64 + beta[i] as f64;
        }
    } else {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = *v * inv * n.gamma[i] as f64;
        }
    }
}

/// One block converted to f64.
#[derive(Clone, Debug)]
pub struct BlockF64 {
    q: LinearF64,
    k: LinearF64,
    v: LinearF64,
    o: LinearF64,
    n1: NormF64,
    n2: NormF64,
    up: LinearF64,
    gate: Option<LinearF64>,
    down: LinearF64,
}

impl BlockF64 {
    /// Convert a canonical block.
    pub fn new(b: &Block) -> Self {
        BlockF64 {
            q: LinearF64::new(&b.q),
            k: LinearF64::new(&b.k),
            v: LinearF64::new(&b.v),
            o: LinearF64::new(&b.o),
            n1: NormF64::new(&b.norm1),
            n2: NormF64::new(&b.norm2),
            up: LinearF64::new(&b.up),
            gate: b.gate.as_ref().map(LinearF64::new),
            down: LinearF64::new(&b.down),
        }
    }
}

/// Apply rotary embedding in place to `x` = `[len, n_heads·head_dim]` (positions 0..len).
pub fn apply_rope(cfg: &ModelConfig, x: &mut [f64], len: usize, n_heads: usize) {
    let hd = cfg.head_dim;
    let half = hd / 2;
    let (c, s) = arch::rope_tables(cfg, len);
    for p in 0..len {
        for h in 0..n_heads {
            let base = p * n_heads * hd + h * hd;
            for i in 0..half {
                let (a, b) = match cfg.rope_style {
                    RopeStyle::Interleaved => (base + 2 * i, base + 2 * i + 1),
                    RopeStyle::Halves => (base + i, base + i + half),
                };
                let (x0, x1) = (x[a], x[b]);
                let (cc, ss) = (c[p * half + i], s[p * half + i]);
                x[a] = x0 * cc - x1 * ss;
                x[b] = x0 * ss + x1 * cc;
            }
        }
    }
}

/// Multi-head attention core for one sequence: q `[len, heads·hd]`, k/v `[len, kv·hd]`,
/// optional additive bias `[heads, len, len]`. Returns `[len, heads·hd]`.
pub fn attention(
    cfg: &ModelConfig,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    len: usize,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let (h, kvh, hd) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
    let group = h / kvh;
    let scale = 1.0 / (hd as f64).sqrt();
    let causal = cfg.causal();
    let per_head: Vec<Vec<f64>> = (0..h)
        .into_par_iter()
        .map(|hh| {
            let kh = hh / group;
            let mut out = vec![0f64; len * hd];
            let mut sc = vec![0f64; len];
            for i in 0..len {
                let qi = &q[i * h * hd + hh * hd..i * h * hd + (hh + 1) * hd];
                let jmax = if causal { i + 1 } else { len };
                let mut m = f64::NEG_INFINITY;
                for j in 0..jmax {
                    let kj = &k[j * kvh * hd + kh * hd..j * kvh * hd + (kh + 1) * hd];
                    let mut dot = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale;
                    if let Some(b) = bias {
                        dot += b[(hh * len + i) * len + j];
                    }
                    sc[j] = dot;
                    m = m.max(dot);
                }
                let mut z = 0.0;
                for s in sc[..jmax].iter_mut() {
                    *s = (*s - m).exp();
                    z += *s;
                }
                let o = &mut out[i * hd..(i + 1) * hd];
                for j in 0..jmax {
                    let p = sc[j] / z;
                    let vj = &v[j * kvh * hd + kh * hd..j * kvh * hd + (kh + 1) * hd];
                    for (oo, vv) in o.iter_mut().zip(vj) {
                        *oo += p * vv;
                    }
                }
            }
            out
        })
        .collect();
    let mut out = vec![0f64; len * h * hd];
    for (hh, ph) in per_head.iter().enumerate() {
        for i in 0..len {
            out[i * h * hd + hh * hd..i * h * hd + (hh + 1) * hd]
                .copy_from_slice(&ph[i * hd..(i + 1) * hd]);
        }
    }
    out
}

fn add_into(x: &mut [f64], y: &[f64]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Apply one block to the stacked rows `x` (`[Σ len, hidden]`) of sequences of `lens`.
pub fn apply_block(
    cfg: &ModelConfig,
    b: &BlockF64,
    x: &mut [f64],
    lens: &[usize],
    rel_bias: Option<&[f32]>,
) {
    let d = cfg.hidden;
    let rows: usize = lens.iter().sum();
    let pre = !cfg.post_norm();
    // Attention.
    let h_in: Vec<f64> = if pre {
        let mut h = x.to_vec();
        b.n1.apply(&mut h, cfg.norm_eps);
        h
    } else {
        x.to_vec()
    };
    let q = b.q.apply(&h_in, rows);
    let k = b.k.apply(&h_in, rows);
    let v = b.v.apply(&h_in, rows);
    let (qd, kd) = (cfg.q_dim(), cfg.kv_dim());
    let mut ctx = vec![0f64; rows * qd];
    let mut off = 0;
    for &len in lens {
        let mut qs = q[off * qd..(off + len) * qd].to_vec();
        let mut ks = k[off * kd..(off + len) * kd].to_vec();
        let vs = &v[off * kd..(off + len) * kd];
        if cfg.family == Family::Llama {
            apply_rope(cfg, &mut qs, len, cfg.heads);
            apply_rope(cfg, &mut ks, len, cfg.kv_heads);
        }
        let bias = rel_bias.map(|t| arch::mpnet_position_bias(cfg, t, len));
        let c = attention(cfg, &qs, &ks, vs, len, bias.as_deref());
        ctx[off * qd..(off + len) * qd].copy_from_slice(&c);
        off += len;
    }
    let a = b.o.apply(&ctx, rows);
    add_into(x, &a);
    if !pre {
        b.n1.apply(x, cfg.norm_eps);
    }
    // Feed-forward.
    let h_in: Vec<f64> = if pre {
        let mut h = x.to_vec();
        b.n2.apply(&mut h, cfg.norm_eps);
        h
    } else {
        x.to_vec()
    };
    let mut u = b.up.apply(&h_in, rows);
    match &b.gate {
        Some(g) => {
            let gv = g.apply(&h_in, rows);
            u.par_iter_mut()
                .zip(gv.par_iter())
                .for_each(|(uu, gg)| *uu *= cfg.activation.eval(*gg));
        }
        None => u
            .par_iter_mut()
            .for_each(|uu| *uu = cfg.activation.eval(*uu)),
    }
    let f = b.down.apply(&u, rows);
    add_into(x, &f);
    if !pre {
        b.n2.apply(x, cfg.norm_eps);
    }
    debug_assert_eq!(x.len(), rows * d);
}

/// Mean of the rows of `hidden` (`[len, d]`) whose `mask` entry is non-zero.
pub fn mean_pool(hidden: &[f64], d: usize, mask: &[u32]) -> Vec<f64> {
    let mut out = vec![0f64; d];
    let mut n = 0usize;
    for (row, &m) in hidden.chunks(d).zip(mask) {
        if m != 0 {
            add_into(&mut out, row);
            n += 1;
        }
    }
    if n > 0 {
        for v in &mut out {
            *v /= n as f64;
        }
    }
    out
}

/// Cosine similarity.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// A model held in f64, ready for repeated forwards.
#[derive(Debug)]
pub struct FloatModel {
    cfg: ModelConfig,
    globals: Globals,
    blocks: Vec<BlockF64>,
    head: Option<LinearF64>,
}

fn check_input(batch: &[Vec<u32>]) -> Result<()> {
    if batch.is_empty() || batch.iter().any(|s| s.is_empty()) {
        return Err(ModelError::Input("empty batch or empty sequence".into()));
    }
    Ok(())
}

fn lm_head(cfg: &ModelConfig, g: &Globals) -> LinearF64 {
    match &g.lm_head {
        Some(l) => LinearF64::new(l),
        None => LinearF64::new(&Linear {
            w: g.emb.token.clone(),
            b: None,
            d_in: cfg.hidden,
            d_out: cfg.vocab,
        }),
    }
}

fn embed_batch(cfg: &ModelConfig, g: &Globals, batch: &[Vec<u32>]) -> Result<Vec<f64>> {
    let mut x = Vec::with_capacity(batch.iter().map(Vec::len).sum::<usize>() * cfg.hidden);
    for s in batch {
        x.extend(arch::embed(cfg, g, s)?);
    }
    Ok(x)
}

fn finish(
    cfg: &ModelConfig,
    g: &Globals,
    head: Option<&LinearF64>,
    mut x: Vec<f64>,
    lens: &[usize],
) -> Output {
    let d = cfg.hidden;
    if let Some(n) = &g.final_norm {
        NormF64::new(n).apply(&mut x, cfg.norm_eps);
    }
    let mut hidden = Vec::with_capacity(lens.len());
    let mut off = 0;
    for &len in lens {
        hidden.push(x[off * d..(off + len) * d].to_vec());
        off += len;
    }
    if cfg.family.is_encoder() {
        let pooled = hidden
            .iter()
            .zip(lens)
            .map(|(h, &len)| mean_pool(h, d, &vec![1; len]))
            .collect();
        Output {
            hidden,
            pooled: Some(pooled),
            logits: None,
        }
    } else {
        let owned;
        let head = match head {
            Some(h) => h,
            None => {
                owned = lm_head(cfg, g);
                &owned
            }
        };
        let last: Vec<f64> = hidden
            .iter()
            .zip(lens)
            .flat_map(|(h, &len)| h[(len - 1) * d..len * d].to_vec())
            .collect();
        let l = head.apply(&last, lens.len());
        let v = head.d_out();
        Output {
            hidden,
            pooled: None,
            logits: Some(l.chunks(v).map(<[f64]>::to_vec).collect()),
        }
    }
}

impl FloatModel {
    /// Load and convert all weights.
    pub fn load(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        cfg.validate()?;
        let globals = arch::load_globals(cfg, w)?;
        let blocks = (0..cfg.layers)
            .map(|i| arch::load_block(cfg, w, i).map(|b| BlockF64::new(&b)))
            .collect::<Result<Vec<_>>>()?;
        let head = (!cfg.family.is_encoder()).then(|| lm_head(cfg, &globals));
        Ok(FloatModel {
            cfg: cfg.clone(),
            globals,
            blocks,
            head,
        })
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Model-level tensors (embedding tables etc.).
    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    /// Forward a batch of token sequences.
    pub fn forward(&self, batch: &[Vec<u32>]) -> Result<Output> {
        self.forward_layers(batch, self.cfg.layers)
    }

    /// Forward through only the first `n` blocks (then the family's output step).
    pub fn forward_layers(&self, batch: &[Vec<u32>], n: usize) -> Result<Output> {
        check_input(batch)?;
        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let mut x = embed_batch(&self.cfg, &self.globals, batch)?;
        for b in self.blocks.iter().take(n) {
            apply_block(
                &self.cfg,
                b,
                &mut x,
                &lens,
                self.globals.rel_bias.as_deref(),
            );
        }
        Ok(finish(
            &self.cfg,
            &self.globals,
            self.head.as_ref(),
            x,
            &lens,
        ))
    }
}

/// One-shot forward that loads one block at a time (peak memory: the model-level tensors
/// plus one block), for models too big to hold in f64.
pub fn forward(cfg: &ModelConfig, w: &Weights, batch: &[Vec<u32>]) -> Result<Output> {
    cfg.validate()?;
    check_input(batch)?;
    let g = arch::load_globals(cfg, w)?;
    let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
    let mut x = embed_batch(cfg, &g, batch)?;
    for i in 0..cfg.layers {
        let b = BlockF64::new(&arch::load_block(cfg, w, i)?);
        apply_block(cfg, &b, &mut x, &lens, g.rel_bias.as_deref());
    }
    Ok(finish(cfg, &g, None, x, &lens))
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(v: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::zoo;

    fn tiny(name: &str) -> ModelConfig {
        let mut c = zoo(name).unwrap();
        c.layers = 2;
        c.hidden = 32;
        c.heads = 4;
        c.kv_heads = if c.family == Family::Llama { 2 } else { 4 };
        c.head_dim = 8;
        c.ffn = 64;
        c.vocab = 100;
        c.max_pos = 64;
        c
    }

    #[test]
    fn batch_equals_single_and_streaming_equals_loaded() {
        for name in ["bert-tiny", "gpt2", "llama2-7b"] {
            let cfg = tiny(name);
            let w = Weights::synthetic(3);
            let m = FloatModel::load(&cfg, &w).unwrap();
            let a = vec![5u32, 17, 3, 99, 42];
            let b = vec![7u32, 8, 9];
            let both = m.forward(&[a.clone(), b.clone()]).unwrap();
            let one = m.forward(std::slice::from_ref(&b)).unwrap();
            assert_eq!(both.hidden[1], one.hidden[0], "{name}");
            let st = forward(&cfg, &w, &[a.clone(), b]).unwrap();
            assert_eq!(st, both, "{name}");
            if cfg.family.is_encoder() {
                assert_eq!(both.pooled.as_ref().unwrap()[0].len(), 32);
            } else {
                assert_eq!(both.logits.as_ref().unwrap()[0].len(), 100);
            }
        }
    }

    #[test]
    fn causal_prefix_invariance() {
        // A decoder's hidden states at positions < t do not depend on tokens ≥ t.
        for name in ["gpt2", "llama2-7b"] {
            let cfg = tiny(name);
            let m = FloatModel::load(&cfg, &Weights::synthetic(9)).unwrap();
            let full = m.forward(&[vec![1, 2, 3, 4, 5, 6, 7]]).unwrap();
            let pre = m.forward(&[vec![1, 2, 3, 4]]).unwrap();
            let d = cfg.hidden;
            for (x, y) in full.hidden[0][..4 * d].iter().zip(&pre.hidden[0]) {
                assert!((x - y).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rope_styles_agree_after_row_permutation() {
        // Permuting Q/K rows from halves order to interleaved order (as llama.cpp's converter
        // does) and switching the RoPE style leaves the logits unchanged.
        let mut cfg = tiny("llama2-7b");
        cfg.rope_style = RopeStyle::Halves;
        let w = Weights::synthetic(5);
        let mut map = std::collections::BTreeMap::new();
        for (n, s) in arch::expected_tensors(&cfg) {
            let mut v = w.get(&n, &s).unwrap();
            if n.ends_with("attn_q.weight") || n.ends_with("attn_k.weight") {
                let heads = s[0] / cfg.head_dim;
                let (hd, din) = (cfg.head_dim, s[1]);
                let src = v.clone();
                for h in 0..heads {
                    for i in 0..hd / 2 {
                        for (dst_r, src_r) in [(2 * i, i), (2 * i + 1, i + hd / 2)] {
                            let (a, b) = ((h * hd + dst_r) * din, (h * hd + src_r) * din);
                            v[a..a + din].copy_from_slice(&src[b..b + din]);
                        }
                    }
                }
            }
            map.insert(n, (s, v));
        }
        let ids = vec![vec![3u32, 1, 4, 1, 5, 9, 2, 6]];
        let a = forward(&cfg, &w, &ids).unwrap();
        let mut cfg2 = cfg.clone();
        cfg2.rope_style = RopeStyle::Interleaved;
        let b = forward(&cfg2, &Weights::from_map(map).unwrap(), &ids).unwrap();
        for (x, y) in a.logits.unwrap()[0].iter().zip(&b.logits.unwrap()[0]) {
            assert!((x - y).abs() < 1e-9, "{x} {y}");
        }
    }

    #[test]
    fn mpnet_runs_and_bias_matters() {
        let mut cfg = tiny("bert-tiny");
        cfg.family = Family::MpNet;
        cfg.type_vocab = 0;
        cfg.rel_buckets = 32;
        cfg.rel_max_distance = 128;
        cfg.pos_offset = 2;
        let w = Weights::synthetic(11);
        let out = forward(&cfg, &w, &[vec![0, 5, 6, 7, 2]]).unwrap();
        assert!(out.pooled.unwrap()[0].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn linear_matches_naive() {
        let l = Linear {
            w: (0..200).map(|i| (i as f32 * 0.37).sin()).collect(),
            b: Some((0..20).map(|i| i as f32).collect()),
            d_in: 10,
            d_out: 20,
        };
        let x: Vec<f64> = (0..10 * 130).map(|i| (i as f64 * 0.11).cos()).collect();
        let y = LinearF64::new(&l).apply(&x, 130);
        for r in 0..130 {
            for o in 0..20 {
                let mut s = l.b.as_ref().unwrap()[o] as f64;
                for i in 0..10 {
                    s += x[r * 10 + i] * l.w[o * 10 + i] as f64;
                }
                assert!((y[r * 20 + o] - s).abs() < 1e-12);
            }
        }
    }
}
