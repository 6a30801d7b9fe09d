//! Transformer layers on the protocol interface ([`suf_runtime::ir::Builder`]). Every layer is
//! written once; the Plain, Dealer and Party interpreters all run what it builds.
//!
//! Scales: activations are at scale f (the program's fractional bits). A product of two
//! scale-f values is at 2f and is brought back with an exact arithmetic shift (ARS, one round),
//! unless a consumer takes the 2f value directly (rescale folding).

use std::sync::Arc;

use suf_core::fixed::FixedPoint;
use suf_runtime::ir::{Builder, P, T};

use crate::gates;
use crate::{NnError, Result};

/// Public-model (weights known to both servers) or private-model (Ŵ public, R_W with the dealer).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Weights public.
    Public,
    /// Weights secret-shared by the model owner.
    Private,
}

/// Everything a layer needs besides the builder: the format, the mode, and the model owner's
/// plaintext weights collected for private matmuls (W for the Plain interpreter).
#[derive(Debug)]
pub struct Ctx {
    /// Fixed-point format.
    pub fp: FixedPoint,
    /// Weight mode.
    pub mode: Mode,
    /// Private weights declared so far: name → W (k×n row-major, ring elements).
    pub private: suf_runtime::plain::PlainWeights,
    /// log2 of the largest activation magnitude the norms must survive (decoder residual
    /// streams carry "massive activations" in the thousands).
    pub act_bits: u32,
    /// Public weights already encoded, by linear name and shape: programs built one after
    /// another from the same cache (decoding steps of one model) share one copy of each
    /// weight. A name must stand for one weight (every linear of a model has its own name);
    /// [`Ctx::new`] starts empty, so a single build never reuses anything.
    pub encoded: std::collections::HashMap<String, suf_runtime::ir::Public>,
}

impl Ctx {
    /// A context.
    pub fn new(fp: FixedPoint, mode: Mode) -> Self {
        Ctx {
            fp,
            mode,
            private: Default::default(),
            act_bits: 8,
            encoded: Default::default(),
        }
    }

    /// Encode reals at scale f (saturating values that do not fit is an error).
    pub fn enc(&self, v: &[f32]) -> Result<Vec<u64>> {
        v.iter()
            .map(|&x| self.fp.encode(x as f64).map_err(NnError::from))
            .collect()
    }

    /// Encode one real at scale `s`.
    pub fn enc_scaled(&self, v: f64, s: u32) -> Result<u64> {
        let x = (v * (s as f64).exp2()).round();
        if !x.is_finite() || x.abs() >= (self.fp.width.bits() as f64 - 1.0).exp2() {
            return Err(NnError::Config(format!(
                "constant {v} does not fit at scale {s}"
            )));
        }
        Ok(self.fp.width.from_signed(x as i64))
    }
}

/// Rows and columns of a 2-D tensor.
pub fn dims(g: &Builder, x: T) -> (usize, usize) {
    let s = g.shape(x);
    let c = *s.last().unwrap_or(&1);
    let n: usize = s.iter().product();
    (n.checked_div(c).unwrap_or(0), c)
}

/// y = x·W (+ b), W given as `[out, in]` (`transposed = true`, Hugging Face Linear) or
/// `[in, out]`; result at scale f (one ARS round; in private mode one more round for the
/// masked-weight product).
pub fn linear(
    g: &mut Builder,
    ctx: &mut Ctx,
    name: &str,
    x: T,
    w: &[f32],
    b: Option<&[f32]>,
    out: usize,
    transposed: bool,
) -> Result<T> {
    linear_from(g, ctx, name, x, 0, w, b, out, transposed)
}

/// [`linear`] of an input x at scale f + `x_extra` (a producer that left its output finer
/// for this truncation): the result is still at scale f, one truncation by f + x_extra.
pub fn linear_from(
    g: &mut Builder,
    ctx: &mut Ctx,
    name: &str,
    x: T,
    x_extra: u32,
    w: &[f32],
    b: Option<&[f32]>,
    out: usize,
    transposed: bool,
) -> Result<T> {
    let (rows, k) = dims(g, x);
    if w.len() != k * out || b.is_some_and(|b| b.len() != out) {
        return Err(NnError::Config(format!(
            "linear {name}: weight of {} values for {k}×{out}, bias {:?}",
            w.len(),
            b.map(|b| b.len())
        )));
    }
    let wk = || {
        let mut wk = vec![0f32; k * out];
        for i in 0..k {
            for j in 0..out {
                wk[i * out + j] = if transposed {
                    w[j * k + i]
                } else {
                    w[i * out + j]
                };
            }
        }
        wk
    };
    let f = ctx.fp.frac;
    let y = match ctx.mode {
        Mode::Public => {
            let key = format!("{name}:{k}x{out}");
            let wq = match ctx.encoded.get(&key) {
                Some(wq) => wq.clone(),
                None => {
                    let wq = Arc::new(ctx.enc(&wk())?);
                    ctx.encoded.insert(key, wq.clone());
                    wq
                }
            };
            let y = g.matmul_pub(x, wq, k, out)?;
            let y = gates::ars(g, y, f + x_extra)?;
            match b {
                Some(b) => g.add_pub(y, Arc::new(ctx.enc(b)?))?,
                None => y,
            }
        }
        Mode::Private => {
            // The bias joins the weight as one more row, against a constant column 2^f of x.
            let (xin, kk, mut wq) = match b {
                Some(b) => {
                    let one = g.slice_cols(x, 0, 1)?;
                    let zero = g.mul_const(one, 0)?;
                    let ones = g.add_const(zero, 1u64 << (f + x_extra))?;
                    let xa = g.concat_cols(&[x, ones])?;
                    let mut wq = ctx.enc(&wk())?;
                    wq.extend(ctx.enc(b)?);
                    (xa, k + 1, wq)
                }
                None => (x, k, ctx.enc(&wk())?),
            };
            let wname = format!("{name}.weight");
            g.private_weight(&wname, kk, out)?;
            ctx.private.insert(wname.clone(), std::mem::take(&mut wq));
            let y = g.matmul_privw(xin, &wname)?;
            gates::ars(g, y, f + x_extra)?
        }
    };
    let _ = rows;
    Ok(y)
}

/// Broadcast a column `[rows, 1]` over `c` columns (local: a public gather).
pub fn broadcast_col(g: &mut Builder, col: T, c: usize) -> Result<T> {
    let (r, one) = dims(g, col);
    if one != 1 {
        return Err(NnError::Config(format!(
            "broadcast of a column: shape {:?}",
            g.shape(col)
        )));
    }
    // A public gather (a host copy), not a product with a row of ones: no device call.
    let idx: Arc<[u32]> = (0..r)
        .flat_map(|i| std::iter::repeat_n(i, c))
        .map(idx32)
        .collect::<Result<_>>()?;
    Ok(g.gather(col, idx, &[r, c])?)
}

/// x / d for a public positive integer d. A power of two is one exact shift (one round);
/// otherwise ⌊x · c / 2^s⌋ with c = round(2^s/d) when the ring leaves c at least 16 bits
/// (one round), else ⌊⌊x / 2^k⌋ · c / 2^s⌋ with 2^k ≤ d < 2^{k+1} and c = round(2^{s+k}/d)
/// (two rounds; relative error ≤ 2^{−s}). `mag_bits` bounds
/// log2 |x / d| in ring units.
pub fn div_by(g: &mut Builder, ctx: &Ctx, x: T, d: usize, mag_bits: u32) -> Result<T> {
    if d == 0 {
        return Err(NnError::Config("division by zero".into()));
    }
    if d == 1 {
        return Ok(x);
    }
    let k = usize::BITS - 1 - d.leading_zeros();
    let n = ctx.fp.width.bits();
    if d.is_power_of_two() {
        return gates::ars(g, x, k);
    }
    // One round when the ring has room for a multiplier with ≥ 16 bits of precision:
    // |x·c| ≈ |x/d|·2^s < 2^{n−2}.
    let s1 = n.saturating_sub(3 + mag_bits).min(40);
    if s1 >= k + 16 {
        let c = ((s1 as f64).exp2() / d as f64).round() as u64;
        let y = g.mul_const(x, c)?;
        return gates::ars(g, y, s1);
    }
    let y = gates::ars(g, x, k)?;
    let s = n.saturating_sub(3 + mag_bits).min(30);
    if s < 8 {
        return Err(NnError::Config(format!(
            "ring of {n} bits has no headroom to divide a {mag_bits}-bit value by {d}"
        )));
    }
    let c = (((s + k) as f64).exp2() / d as f64).round() as u64;
    let y = g.mul_const(y, c)?;
    gates::ars(g, y, s)
}

/// LayerNorm over the last axis (eps folded in at scale 2f), then γ, β.
pub fn layernorm(
    g: &mut Builder,
    ctx: &Ctx,
    x: T,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> Result<T> {
    let (_, d) = dims(g, x);
    let f = ctx.fp.frac;
    let s = g.sum_last(x)?;
    // |mean| < 2^8 at scale f: the sum's magnitude after division.
    let mu = div_by(g, ctx, s, d, f + 9)?;
    let mub = broadcast_col(g, mu, d)?;
    let xc = g.sub(x, mub)?;
    // The variance's input xc/2^p is taken as ⌊x/2^p⌋ − ⌊Σx/(d·2^p)⌋, which needs no mean
    // first: both truncations run in the mean's round (one round fewer per LayerNorm than
    // ⌊(x − mean)/2^p⌋). It differs from xc/2^p by less than 2 units of scale f − p (one per
    // floor; a non-power-of-two divisor's multiplier adds below 2^{−16} of |mean|), so its
    // squares keep the bound `square_shift` gives them (p leaves two bits of slack over
    // Σxc² ≤ Σx² ≤ d·2^{2·act_bits}).
    let p = square_shift(ctx, d, f);
    let xs = if p > 0 {
        let xr = gates::ars(g, x, p)?;
        let ms = div_by(g, ctx, s, d << p, f + 9 - p)?;
        let msb = broadcast_col(g, ms, d)?;
        Some(g.sub(xr, msb)?)
    } else {
        None
    };
    normalize(g, ctx, xc, xs, gamma, Some(beta), eps, f)
}

/// Fractional bits p dropped from the normalised values before they are squared: Σxc² must
/// fit the ring for activations up to 2^act_bits (|xc| < 2^{act_bits+1}), at most f − 2.
fn square_shift(ctx: &Ctx, d: usize, f: u32) -> u32 {
    let n = ctx.fp.width.bits();
    let log_d = usize::BITS - d.leading_zeros();
    let need = (2 * (f + ctx.act_bits) + log_d + 2) as i64 - n as i64;
    let p = ((need.max(0) + 1) / 2) as u32;
    p.min(f - 2)
}

/// RMSNorm over the last axis, then γ.
pub fn rmsnorm(g: &mut Builder, ctx: &Ctx, x: T, gamma: &[f32], eps: f64) -> Result<T> {
    normalize(g, ctx, x, None, gamma, None, eps, ctx.fp.frac)
}

/// Normalise xc (centred for LayerNorm) by its root mean square, then γ (and β). `xs`: the
/// square's input xc/2^p at scale f − p (p = [`square_shift`]) when the caller has it; else
/// it is ⌊xc/2^p⌋ (one more round when p > 0).
#[allow(clippy::too_many_arguments)]
fn normalize(
    g: &mut Builder,
    ctx: &Ctx,
    xc: T,
    xs: Option<T>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f64,
    f: u32,
) -> Result<T> {
    let (_, d) = dims(g, xc);
    let n = ctx.fp.width.bits();
    let log_d = usize::BITS - d.leading_zeros();
    // Σ xc² must fit the ring for activations up to 2^act_bits: square a copy of xc with p
    // fractional bits dropped when the ring is too narrow.
    let p = square_shift(ctx, d, f);
    let xs = match xs {
        Some(xs) => xs,
        None if p > 0 => gates::ars(g, xc, p)?,
        None => xc,
    };
    let fs = f - p;
    let sq = g.square(xs)?;
    let ss = g.sum_last(sq)?; // Σ xc² at scale 2·fs
    let ss = g.add_const(ss, ctx.enc_scaled(eps * d as f64, 2 * fs)?)?;
    // 1/√(Σ xc² + d·eps) with relative precision; √d joins γ below.
    let lo = ctx.enc_scaled(eps * d as f64, 2 * fs)?.max(1);
    let hi = 1u64 << (n - 4);
    // |xc·rs| ≤ 1 at scale f + s_rs: s_rs ≤ n − 3 − f. rs ≥ 2^{−act_bits}/√d keeps 10
    // significant bits at scale act_bits + log2 √d + 10 (its own error is 0.3 %): every bit
    // of scale above costs the two truncations below a DCF level per element.
    let s_need = 10 + ctx.act_bits + log_d.div_ceil(2);
    let s_max = n.saturating_sub(3 + f).min(s_need);
    let (ry, rg, s_rs) = gates::rsqrt_factors(g, ss, 2 * fs, lo, hi, s_max)?;
    // xc·rs: where rs = y·g needs no truncation first, as (xc·g)·y — the product with g runs
    // beside the rsqrt's floor, so the tail is one round shorter than xc·(y·g) (the same ring
    // value, bit for bit; one more [rows, d] opening).
    let scaled = |g: &mut Builder, keep: u32| -> Result<T> {
        if s_rs > keep {
            let rs = g.mul(ry, rg)?;
            let rs = gates::ars(g, rs, s_rs - keep)?;
            Ok(g.row_mul(xc, rs)?)
        } else {
            let xg = g.row_mul(xc, rg)?;
            Ok(g.row_mul(xg, ry)?)
        }
    };
    let sd = (d as f32).sqrt();
    let gs: Vec<f32> = gamma.iter().map(|&v| v * sd).collect();
    if let Some(fg) = merged_gamma_scale(n, f, s_rs.min(s_max), &gs) {
        // One truncation instead of two: y = xc·rs (|y| ≤ 1 + the rsqrt's error at scale
        // f + s_rs) times γ√d encoded at scale fg, then ⌊·/2^{s_rs + fg}⌋. The ring bound of
        // that product is read off the public γ (see `merged_gamma_scale`).
        let y = scaled(g, s_max)?; // scale f + min(s_rs, s_max)
        let s_rs = s_rs.min(s_max);
        let gq = gs
            .iter()
            .map(|&v| ctx.enc_scaled(v as f64, fg))
            .collect::<Result<Vec<u64>>>()?;
        let y = g.mul_pub(y, Arc::new(gq))?; // scale f + s_rs + fg
        let y = gates::ars(g, y, s_rs + fg)?;
        return Ok(match beta {
            Some(b) => g.add_pub(y, Arc::new(ctx.enc(b)?))?,
            None => y,
        });
    }
    // Keep e extra bits after the first shift (at most 8), as many as GapARS allows on
    // y·γ√d at scale 2f + e with the margin of `merged_gamma_scale`.
    let l = gamma_bits(&gs)?;
    let e = 8u32.min(n.saturating_sub(3 + 2 * f + l));
    let y = scaled(g, s_max)?;
    let s_rs = s_rs.min(s_max); // y at scale f + s_rs
    let y = if s_rs > e {
        gates::ars(g, y, s_rs - e)?
    } else {
        y
    }; // scale f + min(e, s_rs)
    let e = e.min(s_rs);
    let y = g.mul_pub(y, Arc::new(ctx.enc(&gs)?))?; // scale 2f + e
    let y = gates::ars(g, y, f + e)?;
    Ok(match beta {
        Some(b) => g.add_pub(y, Arc::new(ctx.enc(b)?))?,
        None => y,
    })
}

/// Least fractional bits of γ√d for the one-truncation LayerNorm tail.
pub const MERGED_GAMMA_MIN_FRAC: u32 = 6;

/// The scale fg at which the LayerNorm tail can multiply y = xc·rs (scale f + s_rs) by γ√d
/// before its only truncation, or `None` when the ring has no room for fg ≥
/// [`MERGED_GAMMA_MIN_FRAC`] (then y is truncated first, γ√d multiplied at scale f, and
/// truncated again). GapARS needs |y·γ√d| < 2^{n−2} at scale f + s_rs + fg. |xc·rs| ≤ 1 up to
/// the rsqrt's relative error (≤ 0.3 %, below 2^{−8}); like the two-truncation path, which
/// keeps y one bit below 2^{n−2}, one bit of margin is kept for the floors that feed rs:
/// f + s_rs + fg + ⌈log2(1.004·max|γ√d|)⌉ ≤ n − 3. fg is capped at f (the two-truncation
/// path's scale for γ√d). Each output then carries γ√d with a relative rounding error of
/// 2^{−fg−1}/|γ√d|, against the rsqrt's 0.3 %.
pub fn merged_gamma_scale(n: u32, f: u32, s_rs: u32, gs: &[f32]) -> Option<u32> {
    let l = gamma_bits(gs).ok()?;
    let fg = n.checked_sub(3 + f + s_rs + l)?.min(f);
    (fg >= MERGED_GAMMA_MIN_FRAC).then_some(fg)
}

/// Which scores of a causal attention are visible: `group` stacked copies (query heads that
/// share one KV head) of `rows` query rows at positions `pos0..pos0 + rows` against `keys`
/// keys; row i of each copy sees keys 0..=pos0 + i. The scores form a `[group·rows, keys]`
/// matrix; the visible ones, row after row, are its "triangle".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Causal {
    /// Query rows per copy.
    pub rows: usize,
    /// Keys (columns).
    pub keys: usize,
    /// Position of the first query row.
    pub pos0: usize,
    /// Stacked copies.
    pub group: usize,
}

impl Causal {
    /// The square `[seq, seq]` of one sequence's self-attention.
    pub fn square(seq: usize) -> Self {
        Causal {
            rows: seq,
            keys: seq,
            pos0: 0,
            group: 1,
        }
    }

    /// Visible keys of each stacked row.
    pub fn lens(&self) -> Vec<usize> {
        (0..self.group)
            .flat_map(|_| (0..self.rows).map(|i| (self.pos0 + i + 1).min(self.keys)))
            .collect()
    }

    /// Visible scores in all.
    pub fn len(&self) -> usize {
        self.lens().iter().sum()
    }

    /// Whether no score is visible (no rows or no keys).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gather indices from the score matrix to the triangle.
    pub fn from_matrix(&self) -> Result<Arc<[u32]>> {
        let keys = self.keys;
        self.lens()
            .into_iter()
            .enumerate()
            .flat_map(|(r, l)| (0..l).map(move |c| r * keys + c))
            .map(idx32)
            .collect()
    }

    /// Gather indices from the triangle back to the matrix, public zeros where a score is
    /// not visible.
    pub fn to_matrix(&self) -> Result<Arc<[u32]>> {
        let total = self
            .group
            .checked_mul(self.rows)
            .and_then(|r| r.checked_mul(self.keys))
            .ok_or_else(|| NnError::Config(format!("causal scores of {self:?} overflow")))?;
        let mut out = Vec::with_capacity(total);
        let mut at = 0;
        for l in self.lens() {
            for c in 0..self.keys {
                out.push(if c < l {
                    idx32(at + c)?
                } else {
                    suf_runtime::ir::GATHER_ZERO
                });
            }
            at += l;
        }
        Ok(out.into())
    }

    /// Gather indices from one value per stacked row to each of its visible scores.
    pub fn row_of_each(&self) -> Result<Arc<[u32]>> {
        self.lens()
            .into_iter()
            .enumerate()
            .flat_map(|(r, l)| std::iter::repeat_n(r, l))
            .map(idx32)
            .collect()
    }
}

fn idx32(i: usize) -> Result<u32> {
    u32::try_from(i)
        .ok()
        .filter(|&v| v != suf_runtime::ir::GATHER_ZERO)
        .ok_or_else(|| NnError::Config(format!("sequence too long for a gather index ({i})")))
}

/// The unnormalised causal softmax on the visible scores only (what [`softmax_parts`]
/// computes on a masked matrix, without the masked part): `t` holds the scores of `lay`'s
/// triangle ([`Causal::from_matrix`] order) at scale f in [−2^{bits−1}, 2^{bits−1}). Returns
/// e = nExp(max − x) on the triangle, 1/Σe per stacked row (`[group·rows, 1]`) and its scale.
/// The masked scores, exactly 0 after nExp in the masked form, are never compared,
/// exponentiated or opened: half the max tree's comparisons and half the nExp elements of a
/// square at seq ≫ 1.
pub fn softmax_parts_causal(
    g: &mut Builder,
    t: T,
    lay: &Causal,
    bits: u32,
    max_len: usize,
) -> Result<(T, T, u32)> {
    let len = lay.len();
    let rows = lay.group * lay.rows;
    if len == 0 || g.shape(t).iter().product::<usize>() != len || max_len < lay.keys {
        return Err(NnError::Config(format!(
            "causal softmax of {lay:?} on {:?} with a denominator range up to {max_len}",
            g.shape(t)
        )));
    }
    let m = gates::segment_max(g, t, &lay.lens(), bits)?;
    let mb = g.gather(m, lay.row_of_each()?, &[len])?;
    let t = g.reshape(t, &[len])?;
    let d = g.sub(mb, t)?; // ∈ [0, 2^bits)
    let e = gates::nexp(g, d, bits)?;
    let sq = g.gather(e, lay.to_matrix()?, &[rows, lay.keys])?;
    let s = g.sum_last(sq)?;
    // A row sums its visible values, one of them nExp(0) = 1: the sum lies in [1, keys].
    let (inv, s_inv) = gates::reciprocal(g, s, max_len.max(2))?;
    Ok((e, inv, s_inv))
}

/// ⌈log2(1.004·max|γ√d|)⌉ (0 when that is at most 1): the bits |y·γ√d| can reach above
/// |y|, with the rsqrt's relative error (≤ 0.3 %) folded in.
fn gamma_bits(gs: &[f32]) -> Result<u32> {
    let gmax = gs.iter().fold(0f64, |m, &v| m.max((v as f64).abs())) * 1.004;
    if !gmax.is_finite() || gs.iter().any(|v| !v.is_finite()) {
        return Err(NnError::Config("LayerNorm gain is not finite".into()));
    }
    Ok(if gmax <= 1.0 {
        0
    } else {
        gmax.log2().ceil() as u32
    })
}

/// Softmax over the last axis of `[r, c]` scores at scale f. `bias` (public, scale f, `[r, c]`)
/// is added first (causal masks put a large negative value there, so masked entries get
/// exactly 0 after nExp). `bits`: the scores plus bias lie in [−2^{bits−1}, 2^{bits−1})
/// (declared; the max tree and nExp compare only those bits).
pub fn softmax(g: &mut Builder, ctx: &Ctx, x: T, bias: Option<Vec<u64>>, bits: u32) -> Result<T> {
    let (_, c) = dims(g, x);
    softmax_masked(g, ctx, x, bias, None, bits, c)
}

/// [`softmax`] with a public run-time bias `pad` (one row over the columns, added after
/// `bias`: a length bucket's padding mask) and the denominator's range [1, `max_len`]
/// (≥ the columns; a bucket's programs share the bucket's).
pub fn softmax_masked(
    g: &mut Builder,
    ctx: &Ctx,
    x: T,
    bias: Option<Vec<u64>>,
    pad: Option<P>,
    bits: u32,
    max_len: usize,
) -> Result<T> {
    let (e, inv, s_inv) = softmax_parts_masked(g, ctx, x, bias, pad, bits, max_len)?;
    let p = g.row_mul(e, inv)?;
    gates::ars(g, p, s_inv)
}

/// The unnormalised softmax: e = nExp(max − x) at scale f (`[r, c]`) and 1/Σe (`[r, 1]`) at
/// the returned scale, for a consumer that normalises later (after e·V, which has fewer
/// columns than e when the head dimension is below the row length).
pub fn softmax_parts(
    g: &mut Builder,
    ctx: &Ctx,
    x: T,
    bias: Option<Vec<u64>>,
    bits: u32,
) -> Result<(T, T, u32)> {
    let (_, c) = dims(g, x);
    softmax_parts_masked(g, ctx, x, bias, None, bits, c)
}

/// [`softmax_parts`] with a public run-time bias and a denominator range, as
/// [`softmax_masked`].
pub fn softmax_parts_masked(
    g: &mut Builder,
    ctx: &Ctx,
    x: T,
    bias: Option<Vec<u64>>,
    pad: Option<P>,
    bits: u32,
    max_len: usize,
) -> Result<(T, T, u32)> {
    let (_, c) = dims(g, x);
    if max_len < c {
        return Err(NnError::Config(format!(
            "softmax over {c} columns with a denominator range up to {max_len}"
        )));
    }
    let x = match bias {
        Some(b) => g.add_pub(x, Arc::new(b))?,
        None => x,
    };
    let x = match pad {
        Some(p) => g.add_pub_in(x, p)?,
        None => x,
    };
    let m = gates::row_max(g, x, bits)?;
    let mb = broadcast_col(g, m, c)?;
    let d = g.sub(mb, x)?; // ∈ [0, 2^bits)
    let e = gates::nexp(g, d, bits)?;
    let s = g.sum_last(e)?;
    // The row's maximum contributes nExp(0) = 1, so the sum lies in [1, c]; the reciprocal's
    // range starts at 2 (a one-column row, e.g. a one-token decoder input, sums to exactly 1).
    let (inv, s_inv) = gates::reciprocal(g, s, max_len.max(2))?;
    let _ = ctx;
    Ok((e, inv, s_inv))
}
