//! Model families built from the layers over the canonical weights of `suf-models`: BERT
//! (post-LN), MPNet (BERT + public relative position bias), GPT-2 (pre-LN, causal, tied head),
//! Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention, causal). Any sequence length, any
//! number of blocks.
//!
//! The client embeds tokens (public table lookup, positions, and the embedding LayerNorm where
//! the family has one: all public) and secret-shares the result as input `x` of shape
//! `[seq, hidden]` at scale f; it alone reconstructs the output: the mean-pooled embedding
//! `[1, hidden]` for encoders, the last position's logits `[1, vocab]` for decoders.

use std::sync::Arc;

use suf_core::fixed::FixedPoint;
use suf_models::arch::{self, Block, Globals, Linear, Norm};
use suf_models::{Family, ModelConfig, NormKind, RopeStyle, Weights};
use suf_runtime::ir::{Builder, Program, P, T};
use suf_runtime::plain::PlainWeights;

use crate::gates;
use crate::layers::{
    layernorm, linear, linear_from, rmsnorm, softmax_masked, softmax_parts_causal,
    softmax_parts_masked, Causal, Ctx, Mode,
};
use crate::{NnError, Result};

/// A built model: the program and the model owner's private weights (empty in public mode).
#[derive(Debug)]
pub struct Built {
    /// The program (input `x` = embedded tokens `[seq, hidden]` at scale f).
    pub prog: Program,
    /// W of every private matmul (for the Plain interpreter and the owner's masking).
    pub private: PlainWeights,
    /// For a length-bucket program ([`build_bucket`]): how to make its public inputs for a
    /// valid length.
    pub bucket: Option<crate::bucket::Bucket>,
}

/// Build the secure part of `cfg` for `seq` tokens, with its first `layers` blocks
/// (`None` = all).
pub fn build(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    mode: Mode,
    seq: usize,
    layers: Option<usize>,
) -> Result<Built> {
    build_batch(cfg, w, fp, mode, seq, 1, layers)
}

/// Build for a batch of `batch` sequences of `seq` tokens each: input `x` is
/// `[batch·seq, hidden]` (sequence-major), the output `[batch, hidden]` (encoders) or
/// `[batch, vocab]` (decoders). Attention never mixes sequences.
pub fn build_batch(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    mode: Mode,
    seq: usize,
    batch: usize,
    layers: Option<usize>,
) -> Result<Built> {
    build_inner(cfg, w, fp, mode, seq, batch, layers, None)
}

/// How a program is built for a length bucket (see [`crate::bucket`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Design {
    /// The bucket length L_b: the numerics (the softmax denominator's range, where the
    /// normalisation happens, the scores' declared range) are those of L_b.
    pub len: usize,
    /// Whether the program takes the valid length as public inputs (the padded program, with
    /// `seq` = L_b); otherwise it is the unpadded program for `seq` ≤ L_b tokens.
    pub padded: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_inner(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    mode: Mode,
    seq: usize,
    batch: usize,
    layers: Option<usize>,
    design: Option<Design>,
) -> Result<Built> {
    if batch == 0 {
        return Err(NnError::Config("batch must be at least 1".into()));
    }
    if seq == 0 || cfg.heads == 0 || cfg.kv_heads == 0 || !cfg.heads.is_multiple_of(cfg.kv_heads) {
        return Err(NnError::Config(format!(
            "bad shape: seq {seq}, heads {}, kv heads {}",
            cfg.heads, cfg.kv_heads
        )));
    }
    let nl = layers.unwrap_or(cfg.layers).min(cfg.layers);
    let glob = arch::load_globals(cfg, w)?;
    let mut g = Builder::new(fp);
    let mut ctx = Ctx::new(fp, mode);
    ctx.act_bits = match cfg.family {
        Family::Llama => 13,
        Family::Gpt2 => 11,
        _ => 8,
    };
    g.layer("input");
    let x = g.input("x", &[batch * seq, cfg.hidden])?;
    let mut h = x;
    let rel = match (&glob.rel_bias, cfg.family) {
        (Some(t), Family::MpNet) => {
            let b = arch::mpnet_position_bias(cfg, t, seq);
            let mut per = Vec::with_capacity(cfg.heads);
            for hh in 0..cfg.heads {
                per.push(
                    b[hh * seq * seq..(hh + 1) * seq * seq]
                        .iter()
                        .map(|&v| ctx.enc_scaled(v, fp.frac))
                        .collect::<Result<Vec<u64>>>()?,
                );
            }
            Some(per)
        }
        _ => None,
    };
    let dlen = design.map_or(seq, |d| d.len);
    let a_bits = match (design, &glob.rel_bias, cfg.family) {
        (Some(d), Some(t), Family::MpNet) if d.len != seq => {
            // The scores' declared range is the bucket's (its relative biases reach further).
            let b = arch::mpnet_position_bias(cfg, t, d.len);
            let per = vec![b
                .iter()
                .map(|&v| ctx.enc_scaled(v, fp.frac))
                .collect::<Result<Vec<u64>>>()?];
            attention_bits(cfg, fp, &Some(per))
        }
        _ => attention_bits(cfg, fp, &rel),
    };
    // A bucket's encoder leaves room for the padding bias −2^{a+2}.
    let sm_bits = match design {
        Some(_) if !cfg.causal() => crate::bucket::padded_bits(fp, a_bits.0)?,
        _ => a_bits.1,
    };
    let pad = match design {
        Some(d) if d.padded && !cfg.causal() => {
            g.layer("input");
            Some(g.public_input(crate::bucket::PAD_BIAS, &[seq])?)
        }
        _ => None,
    };
    for l in 0..nl {
        let b = arch::load_block(cfg, w, l)?;
        h = block(
            &mut g,
            &mut ctx,
            cfg,
            &b,
            l,
            h,
            seq,
            batch,
            &rel,
            cfg.causal(),
            sm_bits,
            dlen,
            pad,
        )?;
    }
    let padded = design.is_some_and(|d| d.padded);
    let out = if cfg.family.is_encoder() {
        g.layer("pool");
        if padded {
            crate::bucket::mean_pool_padded(&mut g, &ctx, h, seq)?
        } else {
            mean_pool(&mut g, &ctx, h, seq, batch)?
        }
    } else {
        g.layer("head");
        let h = if padded {
            crate::bucket::last_real_row(&mut g, h)?
        } else {
            h
        };
        let rows = if padded { 1 } else { seq };
        head(&mut g, &mut ctx, cfg, &glob, h, rows, batch)?
    };
    g.output(out)?;
    let bucket = match design {
        Some(d) if d.padded => Some(crate::bucket::Bucket::new(cfg, fp, seq, a_bits.0)?),
        _ => None,
    };
    Ok(Built {
        prog: g.finish(),
        private: ctx.private,
        bucket,
    })
}

pub fn lin(g: &mut Builder, ctx: &mut Ctx, name: &str, x: T, l: &Linear) -> Result<T> {
    linear(g, ctx, name, x, &l.w, l.b.as_deref(), l.d_out, true)
}

pub fn norm(g: &mut Builder, ctx: &Ctx, cfg: &ModelConfig, x: T, n: &Norm) -> Result<T> {
    match (cfg.norm_kind(), &n.beta) {
        (NormKind::LayerNorm, Some(beta)) => layernorm(g, ctx, x, &n.gamma, beta, cfg.norm_eps),
        (NormKind::LayerNorm, None) => {
            let zero = vec![0f32; n.gamma.len()];
            layernorm(g, ctx, x, &n.gamma, &zero, cfg.norm_eps)
        }
        (NormKind::RmsNorm, _) => rmsnorm(g, ctx, x, &n.gamma, cfg.norm_eps),
    }
}

#[allow(clippy::too_many_arguments)]
fn block(
    g: &mut Builder,
    ctx: &mut Ctx,
    cfg: &ModelConfig,
    b: &Block,
    l: usize,
    h: T,
    seq: usize,
    batch: usize,
    rel: &Option<Vec<Vec<u64>>>,
    causal: bool,
    sm_bits: u32,
    dlen: usize,
    pad: Option<P>,
) -> Result<T> {
    let post = cfg.post_norm();
    g.layer(&format!("block{l}.attention"));
    let a_in = if post {
        h
    } else {
        norm(g, ctx, cfg, h, &b.norm1)?
    };
    // Q, K and V as one linear: one opening of the input (one masked-weight product in
    // private mode) instead of three; the same truncations, in one batch.
    let (dq, dk, dv) = (b.q.d_out, b.k.d_out, b.v.d_out);
    let fused = fuse_linears(&[&b.q, &b.k, &b.v]);
    let qkv = lin(g, ctx, &format!("b{l}.qkv"), a_in, &fused)?;
    let q = g.slice_cols(qkv, 0, dq)?;
    let k = g.slice_cols(qkv, dq, dq + dk)?;
    let v = g.slice_cols(qkv, dq + dk, dq + dk + dv)?;
    let att = if batch == 1 {
        attention(g, ctx, cfg, q, k, v, seq, rel, causal, sm_bits, dlen, pad)?
    } else {
        let mut parts = Vec::with_capacity(batch);
        for bi in 0..batch {
            let (s0, s1) = (bi * seq, (bi + 1) * seq);
            let (qb, kb, vb) = (
                rows(g, q, s0, s1)?,
                rows(g, k, s0, s1)?,
                rows(g, v, s0, s1)?,
            );
            parts.push(attention(
                g, ctx, cfg, qb, kb, vb, seq, rel, causal, sm_bits, seq, None,
            )?);
        }
        stack_rows(g, &parts)?
    };
    let o = lin(g, ctx, &format!("b{l}.o"), att, &b.o)?;
    let r = g.add(h, o)?;
    let h = if post {
        norm(g, ctx, cfg, r, &b.norm1)?
    } else {
        r
    };
    g.layer(&format!("block{l}.ffn"));
    let f_in = if post {
        h
    } else {
        norm(g, ctx, cfg, h, &b.norm2)?
    };
    let d = ffn(g, ctx, cfg, b, l, f_in)?;
    let r = g.add(h, d)?;
    Ok(if post {
        norm(g, ctx, cfg, r, &b.norm2)?
    } else {
        r
    })
}

/// The feed-forward part of block `l` on its (normalised) input: up (and gate), activation,
/// down; the residual add is the caller's.
pub(crate) fn ffn(
    g: &mut Builder,
    ctx: &mut Ctx,
    cfg: &ModelConfig,
    b: &Block,
    l: usize,
    f_in: T,
) -> Result<T> {
    let u = lin(g, ctx, &format!("b{l}.up"), f_in, &b.up)?;
    // Linear outputs are GapARS outputs by f: a declared range the activations rely on.
    let lb = gates::ars_bits(ctx.fp.width.bits(), ctx.fp.frac);
    // GeLU may leave its output at scale f + t for the down projection's truncation when
    // the ring has room for a 2f + t product of magnitude 2^act_bits (GapARS's precondition).
    let max_t = (ctx.fp.width.bits() - 2)
        .saturating_sub(2 * ctx.fp.frac + ctx.act_bits)
        .min(16);
    let mut x_extra = 0;
    let act = match &b.gate {
        Some(gate) => {
            let gt = lin(g, ctx, &format!("b{l}.gate"), f_in, gate)?;
            let s = gates::silu(g, gt, lb)?;
            let m = g.mul(s, u)?;
            gates::ars(g, m, ctx.fp.frac)?
        }
        None => match cfg.activation {
            suf_models::Activation::Silu => gates::silu(g, u, lb)?,
            a => {
                let tanh = a == suf_models::Activation::GeluTanh;
                let (y, t) = gates::gelu_folded(g, u, lb, max_t, tanh)?;
                x_extra = t;
                y
            }
        },
    };
    let dn = &b.down;
    let d = linear_from(
        g,
        ctx,
        &format!("b{l}.down"),
        act,
        x_extra,
        &dn.w,
        dn.b.as_deref(),
        dn.d_out,
        true,
    )?;
    Ok(d)
}

/// Attention of one sequence. `dlen` (≥ `seq`; `seq` outside buckets) is the length whose
/// numerics are used: the softmax denominator's range [1, dlen] and the choice of normalising
/// after e·V. `pad`: a bucket's public padding bias on the key columns (one row, broadcast).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    g: &mut Builder,
    ctx: &Ctx,
    cfg: &ModelConfig,
    q: T,
    k: T,
    v: T,
    seq: usize,
    rel: &Option<Vec<Vec<u64>>>,
    causal: bool,
    sm_bits: u32,
    dlen: usize,
    pad: Option<P>,
) -> Result<T> {
    let dh = cfg.head_dim;
    let rope = cfg.family == Family::Llama;
    let mut kt = Vec::new();
    let mut vh = Vec::new();
    for j in 0..cfg.kv_heads {
        let kj = g.slice_cols(k, j * dh, (j + 1) * dh)?;
        let kj = if rope {
            rope_apply(g, ctx, cfg, kj, seq)?
        } else {
            kj
        };
        kt.push(g.transpose(kj)?);
        vh.push(g.slice_cols(v, j * dh, (j + 1) * dh)?);
    }
    let causal = causal.then_some(Causal {
        rows: seq,
        keys: seq,
        pos0: 0,
        group: cfg.heads / cfg.kv_heads,
    });
    let heads = Heads {
        pos0: 0,
        rows: seq,
        causal,
        rel,
        pad,
        bits: sm_bits,
        max_len: dlen,
    };
    attend_heads(g, ctx, cfg, q, &kt, &vh, &heads)
}

/// What the query heads of [`attend_heads`] see besides Q, K and V.
pub(crate) struct Heads<'a> {
    /// Position of the first query row (RoPE).
    pub pos0: usize,
    /// Query rows.
    pub rows: usize,
    /// Which scores are visible, for causal attention (`None`: all of them).
    pub causal: Option<Causal>,
    /// Public relative biases per query head (`[rows, keys]` each).
    pub rel: &'a Option<Vec<Vec<u64>>>,
    /// A bucket's public padding bias on the key columns (not with `causal`).
    pub pad: Option<P>,
    /// Declared bits of the scores the softmax sees.
    pub bits: u32,
    /// The length whose numerics are used: the softmax denominator's range [1, max_len] and
    /// the choice of normalising after e·V.
    pub max_len: usize,
}

/// Multi-head attention of `q` (`[rows, heads·d_head]`) against the KV heads `kt[j]` (Kᵀ,
/// `[d_head, keys]`, RoPE applied) and `vh[j]` (`[keys, d_head]`): the heads side by side,
/// `[rows, heads·d_head]` at scale f. The model's and the decoder's attention.
///
/// The query heads of one KV group share its K and V: stacked as rows, they take one product
/// with Kᵀ and one with V, so K and V are opened once per KV head instead of once per query
/// head (the same dot products: bit-identical values). Causal heads keep the visible scores
/// only ([`Causal`], the group's copies stacked).
pub(crate) fn attend_heads(
    g: &mut Builder,
    ctx: &Ctx,
    cfg: &ModelConfig,
    q: T,
    kt: &[T],
    vh: &[T],
    h: &Heads<'_>,
) -> Result<T> {
    let fp = ctx.fp;
    let f = fp.frac;
    let dh = cfg.head_dim;
    let group = cfg.heads / cfg.kv_heads;
    let rope = cfg.family == Family::Llama;
    let (rows, max_len, bits) = (h.rows, h.max_len, h.bits);
    if h.causal.is_some() && h.pad.is_some() {
        return Err(NnError::Config(
            "a padding bias on a causal model (buckets pad encoders only)".into(),
        ));
    }
    let inv_sqrt = ctx.enc_scaled(1.0 / (dh as f64).sqrt(), f)?;
    // Fold 1/√d into one truncation when the ring has room for a 3f-scaled score, or when
    // 1/√d is a power of two (d = 4^k).
    let fold = fp.width.bits() >= 3 * f + 16;
    let pow4 = head_dim_pow4(dh).filter(|&k| k <= f);
    // e·V (e ≤ 1 at scale f, a row of `max_len`) at scale 2f must stay below 2^{n−2} for
    // values up to 2^act_bits, and there must be fewer head columns than keys.
    let lb = usize::BITS - max_len.saturating_sub(1).leading_zeros();
    let late_norm = dh < max_len && fp.width.bits() > 2 + 2 * f + lb + ctx.act_bits;
    let lower = match &h.causal {
        Some(lay) => Some(lay.from_matrix()?),
        None => None,
    };
    // Relative biases of a group's stacked heads, one `[group·rows, keys]` block each.
    let group_bias = |j: usize| -> Option<Vec<u64>> {
        h.rel.as_ref().map(|r| {
            (j * group..(j + 1) * group)
                .flat_map(|hh| r[hh].iter().copied())
                .collect()
        })
    };
    let mut heads = Vec::with_capacity(cfg.heads);
    for j in 0..cfg.kv_heads {
        let mut qs = Vec::with_capacity(group);
        for hh in j * group..(j + 1) * group {
            let qh = g.slice_cols(q, hh * dh, (hh + 1) * dh)?;
            qs.push(if rope {
                rope_apply_at(g, ctx, cfg, qh, h.pos0, rows)?
            } else {
                qh
            });
        }
        // [group·rows, dh]
        let qg = if group == 1 {
            qs[0]
        } else {
            stack_rows(g, &qs)?
        };
        // Scores at scale 2f; a causal group keeps its visible ones from the truncation on.
        let s = g.matmul(qg, kt[j])?;
        let s = match &lower {
            Some(lw) => g.gather(s, lw.clone(), &[lw.len()])?,
            None => s,
        };
        let s = if let Some(k) = pow4 {
            // 1/√d = 2^{−k}: ⌊⌊s/2^f⌋·2^{f−k}/2^f⌋ = ⌊s/2^{f+k}⌋ (floors compose), one truncation.
            gates::ars(g, s, f + k)?
        } else if fold {
            let s = g.mul_const(s, inv_sqrt)?; // 3f
            gates::ars(g, s, 2 * f)?
        } else {
            let s = gates::ars(g, s, f)?;
            let s = g.mul_const(s, inv_sqrt)?;
            gates::ars(g, s, f)?
        };
        let o = if let (Some(lay), Some(lw)) = (&h.causal, &lower) {
            let s = match group_bias(j) {
                Some(b) => {
                    let b: Vec<u64> = lw.iter().map(|&i| b[i as usize]).collect();
                    g.add_pub(s, Arc::new(b))?
                }
                None => s,
            };
            causal_attend(g, s, vh[j], lay, bits, max_len, late_norm, f)?
        } else if late_norm {
            // Normalise after e·V: the truncation of the [rows, keys] probabilities becomes
            // one of the [rows, d_head] output (floor of e·V, then of its product with 1/Σe).
            let (e, inv, s_inv) =
                softmax_parts_masked(g, ctx, s, group_bias(j), h.pad, bits, max_len)?;
            let o = g.matmul(e, vh[j])?;
            let o = gates::ars(g, o, f)?;
            let o = g.row_mul(o, inv)?;
            gates::ars(g, o, s_inv)?
        } else {
            let p = softmax_masked(g, ctx, s, group_bias(j), h.pad, bits, max_len)?;
            let o = g.matmul(p, vh[j])?;
            gates::ars(g, o, f)?
        };
        for i in 0..group {
            heads.push(if group == 1 {
                o
            } else {
                self::rows(g, o, i * rows, (i + 1) * rows)?
            });
        }
    }
    Ok(g.concat_cols(&heads)?)
}

/// The rest of a causal head from its truncated visible scores `t` (scale f, `lay`'s
/// triangle): the softmax on the triangle, then e·V with `v` (`[keys, d_head]`), normalised
/// after the product (`late_norm`) or before it; `[group·rows, d_head]` at scale f.
#[allow(clippy::too_many_arguments)]
fn causal_attend(
    g: &mut Builder,
    t: T,
    v: T,
    lay: &Causal,
    bits: u32,
    max_len: usize,
    late_norm: bool,
    f: u32,
) -> Result<T> {
    let (e, inv, s_inv) = softmax_parts_causal(g, t, lay, bits, max_len)?;
    let shape = [lay.group * lay.rows, lay.keys];
    if late_norm {
        let e = g.gather(e, lay.to_matrix()?, &shape)?;
        let o = g.matmul(e, v)?;
        let o = gates::ars(g, o, f)?;
        let o = g.row_mul(o, inv)?;
        gates::ars(g, o, s_inv)
    } else {
        // e ⊙ 1/Σe on the triangle (the same openings as a row product on the matrix of a
        // square: 2·len = seq² + seq elements), truncated there.
        let inv = g.gather(inv, lay.row_of_each()?, &[lay.len()])?;
        let p = g.mul(e, inv)?;
        let p = gates::ars(g, p, s_inv)?;
        let p = g.gather(p, lay.to_matrix()?, &shape)?;
        let o = g.matmul(p, v)?;
        gates::ars(g, o, f)
    }
}

/// Linears with the same input stacked along their outputs (`[out, in]` rows); a missing bias
/// is zero when another has one.
pub(crate) fn fuse_linears(ls: &[&Linear]) -> Linear {
    let d_in = ls[0].d_in;
    let mut w = Vec::new();
    let mut b = Vec::new();
    let any_bias = ls.iter().any(|l| l.b.is_some());
    for l in ls {
        w.extend_from_slice(&l.w);
        match &l.b {
            Some(v) => b.extend_from_slice(v),
            None => b.extend(std::iter::repeat_n(0.0, l.d_out)),
        }
    }
    Linear {
        w,
        b: any_bias.then_some(b),
        d_in,
        d_out: ls.iter().map(|l| l.d_out).sum(),
    }
}

/// k with d = 4^k (1/√d = 2^{−k}), if any.
pub(crate) fn head_dim_pow4(d: usize) -> Option<u32> {
    (d.is_power_of_two() && d.trailing_zeros().is_multiple_of(2)).then_some(d.trailing_zeros() / 2)
}

/// Signed bits of the attention scores (a GapARS output) and of the scores plus public
/// biases that softmax sees: (a, bits) with a = max(score bits, relative-bias bits) (causal
/// heads drop the masked scores instead of biasing them: [`Causal`]).
pub(crate) fn attention_bits(
    cfg: &ModelConfig,
    fp: FixedPoint,
    rel: &Option<Vec<Vec<u64>>>,
) -> (u32, u32) {
    let n = fp.width.bits();
    let f = fp.frac;
    let shift = match head_dim_pow4(cfg.head_dim).filter(|&k| k <= f) {
        Some(k) => f + k,
        None if n >= 3 * f + 16 => 2 * f,
        None => f,
    };
    let sb = gates::ars_bits(n, shift);
    let rb = rel.as_ref().map_or(0, |r| {
        let m = r
            .iter()
            .flatten()
            .map(|&v| fp.width.to_signed(v).unsigned_abs())
            .max()
            .unwrap_or(0);
        65 - m.leading_zeros()
    });
    let a = sb.max(rb);
    // Causal heads keep only the visible scores (no mask bias enters).
    let bits = if rel.is_some() { a + 1 } else { a };
    (a, bits.min(n))
}

/// Rotary embedding on one head `[seq, dh]`: x·cos + rot(x)·sin with public tables, one ARS.
fn rope_apply(g: &mut Builder, ctx: &Ctx, cfg: &ModelConfig, x: T, seq: usize) -> Result<T> {
    rope_apply_at(g, ctx, cfg, x, 0, seq)
}

/// [`rope_apply`] on rows at positions `pos0..pos0 + len`.
pub(crate) fn rope_apply_at(
    g: &mut Builder,
    ctx: &Ctx,
    cfg: &ModelConfig,
    x: T,
    pos0: usize,
    len: usize,
) -> Result<T> {
    let dh = cfg.head_dim;
    let half = dh / 2;
    let w = ctx.fp.width;
    let (c, s) = arch::rope_tables(cfg, pos0 + len);
    // Pair (a, b) of each rotation: interleaved (2i, 2i+1) or halves (i, i + d/2).
    let pair = |i: usize| match cfg.rope_style {
        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
        RopeStyle::Halves => (i, i + half),
    };
    // rot(x)[a] = −x[b], rot(x)[b] = x[a]; as x·R, R[src][dst].
    let mut rot = vec![0u64; dh * dh];
    let mut which = vec![0usize; dh];
    for i in 0..half {
        let (a, b) = pair(i);
        rot[b * dh + a] = w.from_signed(-1);
        rot[a * dh + b] = 1;
        which[a] = i;
        which[b] = i;
    }
    let mut cos = Vec::with_capacity(len * dh);
    let mut sin = Vec::with_capacity(len * dh);
    for p in pos0..pos0 + len {
        for col in 0..dh {
            cos.push(ctx.enc_scaled(c[p * half + which[col]], ctx.fp.frac)?);
            sin.push(ctx.enc_scaled(s[p * half + which[col]], ctx.fp.frac)?);
        }
    }
    let r = g.matmul_pub(x, Arc::new(rot), dh, dh)?;
    let a = g.mul_pub(x, Arc::new(cos))?;
    let b = g.mul_pub(r, Arc::new(sin))?;
    let y = g.add(a, b)?;
    gates::ars(g, y, ctx.fp.frac)
}

/// Rows `start..end` of a matrix (local).
pub fn rows(g: &mut Builder, x: T, start: usize, end: usize) -> Result<T> {
    let t = g.transpose(x)?;
    let c = g.slice_cols(t, start, end)?;
    Ok(g.transpose(c)?)
}

/// Matrices with equal columns stacked vertically (local).
pub fn stack_rows(g: &mut Builder, parts: &[T]) -> Result<T> {
    let ts = parts
        .iter()
        .map(|&p| g.transpose(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let c = g.concat_cols(&ts)?;
    Ok(g.transpose(c)?)
}

pub(crate) fn mean_pool(g: &mut Builder, ctx: &Ctx, x: T, seq: usize, batch: usize) -> Result<T> {
    let xt = g.transpose(x)?; // [d, batch·seq]
    let mut sums = Vec::with_capacity(batch);
    for bi in 0..batch {
        let cols = g.slice_cols(xt, bi * seq, (bi + 1) * seq)?;
        sums.push(g.sum_last(cols)?); // [d, 1]
    }
    let s = if batch == 1 {
        sums[0]
    } else {
        g.concat_cols(&sums)?
    }; // [d, batch]
    let s = crate::layers::div_by(g, ctx, s, seq, ctx.fp.frac + 9)?;
    Ok(g.transpose(s)?) // [batch, d]
}

pub(crate) fn head(
    g: &mut Builder,
    ctx: &mut Ctx,
    cfg: &ModelConfig,
    glob: &Globals,
    h: T,
    seq: usize,
    batch: usize,
) -> Result<T> {
    let t = g.transpose(h)?;
    let mut lasts = Vec::with_capacity(batch);
    for bi in 0..batch {
        let p = bi * seq + seq - 1;
        lasts.push(g.slice_cols(t, p, p + 1)?);
    }
    let c = if batch == 1 {
        lasts[0]
    } else {
        g.concat_cols(&lasts)?
    };
    let last = g.transpose(c)?; // [batch, d]
    let hn = match &glob.final_norm {
        Some(n) => norm(g, ctx, cfg, last, n)?,
        None => last,
    };
    match &glob.lm_head {
        Some(l) => lin(g, ctx, "lm_head", hn, l),
        None => linear(
            g,
            ctx,
            "lm_head",
            hn,
            &glob.emb.token,
            None,
            cfg.vocab,
            true,
        ),
    }
}

/// The client's side: embed token ids (public tables) and encode at scale f.
pub fn client_input(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    ids: &[u32],
) -> Result<Vec<u64>> {
    let glob = arch::load_globals(cfg, w)?;
    let x = arch::embed(cfg, &glob, ids)?;
    x.iter()
        .map(|&v| fp.encode(v).map_err(NnError::from))
        .collect()
}

/// The client's side for a batch of equal-length sequences: `[batch·seq, hidden]`.
pub fn client_input_batch(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    batch: &[Vec<u32>],
) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for ids in batch {
        if ids.len() != batch[0].len() {
            return Err(NnError::Config(
                "sequences of one batch must have equal length".into(),
            ));
        }
        out.extend(client_input(cfg, w, fp, ids)?);
    }
    Ok(out)
}
