//! Length buckets: one program (one key stream) for every input of up to L_b tokens.
//!
//! [`build_bucket`] builds a model for the bucket length L_b whose valid length L ≤ L_b is a
//! **public run-time input** ([`suf_runtime::ir::Builder::public_input`]): the client pads its
//! embedded input to L_b rows (zeros) and both servers get L in the clear. The servers learn
//! L today anyway (a program per length); the bucket hides nothing more, it only lets one key
//! stream serve any shorter input. The program's shapes, gate batches and key stream do not
//! depend on L; [`Bucket::public_inputs`] makes L's values.
//!
//! Padded positions contribute exactly nothing to the real ones:
//! * **Attention** (encoders): the public bias −2^{a+2} is added to the scores of the padded
//!   key columns (a: the scores' signed bits, which the ring bounds). The row maximum comes
//!   from a real column (every real score is above −2^{a−1}), the padded entries sit more than
//!   2^{a+1} ≥ 16 (real units) below it and nExp maps them to exactly 0 (it is exactly 0
//!   from 9.125 on). The scores plus bias stay in [−2^{a+3}, 2^{a+3}): the softmax's max
//!   tree and nExp are declared `a + 4` bits (room for the bias). Causal models need no
//!   bias: a real row i < L never sees a column j ≥ L.
//! * **Pooling**: mean pooling multiplies the padded rows by a public 0 before the sum and
//!   divides by the public L exactly as the unpadded program divides by its length
//!   ([`crate::layers::div_by`]: the same constants and shifts, selected by public 0/1
//!   inputs); decoders take the next-token logits from row L − 1 (a public one-hot row).
//! * Every other layer works row by row (linears, norms, activations, residuals).
//!
//! The numerics that depend on the length are the bucket's: the softmax denominator's
//! declared range [1, L_b], whether attention normalises after e·V, and the scores' declared
//! bits. So the padded run at L_b with valid length L equals, **bit for bit**, the unpadded
//! program for L tokens built with the bucket's numerics ([`build_unpadded`]); against the
//! default program for L tokens ([`crate::model::build`]) it differs only by those gates'
//! rounding (the reciprocal's range; tested to stay within its error).
//!
//! The padded rows themselves compute ordinary values (zero embeddings attend over the real
//! keys), so no gate's declared range (GapARS's |x| < 2^{n−2}, nExp's and the reciprocal's
//! inputs) is left.

use std::collections::BTreeMap;

use suf_core::fixed::FixedPoint;
use suf_models::{ModelConfig, Weights};
use suf_runtime::ir::{Builder, T};

use crate::layers::{Ctx, Mode};
use crate::model::{build_inner, Built, Design};
use crate::{gates, NnError, Result};

/// Public input: the padding bias of the key columns (`[L_b]`: 0, or −2^{a+2} at j ≥ L).
pub const PAD_BIAS: &str = "pad_bias";
/// Public input: 1 on the real rows, 0 on the padded ones (`[L_b]`; mean pooling).
pub const ROW_MASK: &str = "row_mask";
/// Public input: 1 at row L − 1, else 0 (`[L_b]`; a decoder's last real position).
pub const LAST_ROW: &str = "last_row";
/// Public input: the one-round divisor constant of the mean (`[1]`, 0 when unused).
pub const DIV_C1: &str = "pool_div_c1";
/// Public input: the two-round divisor constant of the mean (`[1]`, 0 when unused).
pub const DIV_C2: &str = "pool_div_c2";
/// Public inputs `pool_div_k{k}`: 1 when the two-round division pre-shifts by k (`[1]`).
pub const DIV_K: &str = "pool_div_k";

/// Declared bits of a bucket encoder's scores plus padding bias: a + 4,
/// checked to fit the ring and to send the padding to nExp's exact 0.
pub(crate) fn padded_bits(fp: FixedPoint, a: u32) -> Result<u32> {
    let n = fp.width.bits();
    // Padded entries sit at least 2^{a+1} below the row's maximum: ≥ 16 real units
    // (nExp is exactly 0 from 9.125 on) needs a + 1 ≥ f + 4.
    if a + 4 > n || a + 1 < fp.frac + 4 {
        return Err(NnError::Config(format!(
            "a {n}-bit ring with {} fractional bits leaves no room for a padding mask \
             (scores of {a} bits)",
            fp.frac
        )));
    }
    Ok(a + 4)
}

/// How the mean's division by d ∈ [1, L_b] is done, as [`crate::layers::div_by`] does it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum DivWay {
    /// ⌊x·c1 / 2^{s1}⌋ (covers d = 1 and powers of two exactly: c1 = 2^{s1−k}).
    One(u64),
    /// ⌊⌊x / 2^k⌋·c2 / 2^s⌋ (c2 = 2^s for d = 1 and powers of two).
    Two(u32, u64),
}

/// The mean's division layout for a bucket: shifts and the divisor's way for each d.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DivLayout {
    s1: u32,
    s: u32,
    max_d: usize,
}

impl DivLayout {
    fn new(n: u32, mag_bits: u32, max_d: usize) -> Self {
        DivLayout {
            s1: n.saturating_sub(3 + mag_bits).min(40),
            s: n.saturating_sub(3 + mag_bits).min(30),
            max_d,
        }
    }

    /// The way of d, the same numbers `div_by` uses (d = 1 and powers of two: exact shifts,
    /// which both ways reproduce).
    fn way(&self, d: usize) -> Result<DivWay> {
        if d == 0 || d > self.max_d {
            return Err(NnError::Config(format!(
                "divisor {d} outside 1..={}",
                self.max_d
            )));
        }
        let k = usize::BITS - 1 - d.leading_zeros();
        if d.is_power_of_two() {
            return Ok(if self.s1 >= k.max(1) {
                DivWay::One(1u64 << (self.s1 - k))
            } else {
                DivWay::Two(k, 1u64 << self.s)
            });
        }
        if self.s1 >= k + 16 {
            return Ok(DivWay::One(
                ((self.s1 as f64).exp2() / d as f64).round() as u64
            ));
        }
        if self.s < 8 {
            return Err(NnError::Config(format!(
                "ring has no headroom to divide by {d} (shift {})",
                self.s
            )));
        }
        Ok(DivWay::Two(
            k,
            (((self.s + k) as f64).exp2() / d as f64).round() as u64,
        ))
    }

    /// Which branches some d ∈ [1, max_d] takes: (one-round used, pre-shifts of two-round).
    fn branches(&self) -> Result<(bool, Vec<u32>)> {
        let mut one = false;
        let mut ks = Vec::new();
        for d in 1..=self.max_d {
            match self.way(d)? {
                DivWay::One(_) => one = true,
                DivWay::Two(k, _) => {
                    if !ks.contains(&k) {
                        ks.push(k);
                    }
                }
            }
        }
        Ok((one, ks))
    }
}

/// A bucket program's description: what its public inputs are for a valid length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket length L_b (the program's rows).
    pub len: usize,
    /// Whether the program is causal (no padding bias; logits of the last real row).
    causal: bool,
    /// Whether it mean-pools (encoders).
    pool: bool,
    /// The padding bias (a ring element).
    big: u64,
    div: DivLayout,
}

impl Bucket {
    pub(crate) fn new(cfg: &ModelConfig, fp: FixedPoint, len: usize, a: u32) -> Result<Self> {
        Ok(Bucket {
            len,
            causal: cfg.causal(),
            pool: cfg.family.is_encoder(),
            big: fp.width.from_signed(-(1i64 << (a + 2))),
            div: DivLayout::new(fp.width.bits(), fp.frac + 9, len),
        })
    }

    /// The public inputs for valid length `len` (1 ≤ len ≤ L_b), to be supplied in the clear
    /// to both parties (and to Plain) beside the input shares.
    ///
    /// # Errors
    /// A length of 0 or above the bucket.
    pub fn public_inputs(&self, len: usize) -> Result<BTreeMap<String, Vec<u64>>> {
        if len == 0 || len > self.len {
            return Err(NnError::Config(format!(
                "valid length {len} outside 1..={} of this bucket",
                self.len
            )));
        }
        let lb = self.len;
        let mut m = BTreeMap::new();
        if !self.causal {
            m.insert(
                PAD_BIAS.to_string(),
                (0..lb)
                    .map(|j| if j < len { 0 } else { self.big })
                    .collect(),
            );
        }
        if self.pool {
            m.insert(
                ROW_MASK.to_string(),
                (0..lb).map(|j| u64::from(j < len)).collect(),
            );
            let (one, ks) = self.div.branches()?;
            let way = self.div.way(len)?;
            if one {
                let c = match way {
                    DivWay::One(c) => c,
                    DivWay::Two(..) => 0,
                };
                m.insert(DIV_C1.to_string(), vec![c]);
            }
            if !ks.is_empty() {
                let (kk, c) = match way {
                    DivWay::Two(k, c) => (Some(k), c),
                    DivWay::One(_) => (None, 0),
                };
                m.insert(DIV_C2.to_string(), vec![c]);
                for k in ks {
                    m.insert(format!("{DIV_K}{k}"), vec![u64::from(kk == Some(k))]);
                }
            }
        } else {
            m.insert(
                LAST_ROW.to_string(),
                (0..lb).map(|j| u64::from(j + 1 == len)).collect(),
            );
        }
        Ok(m)
    }

    /// The client's padded input: `x` (`[len, hidden]`) followed by zero rows up to L_b.
    ///
    /// # Errors
    /// More rows than the bucket, or a length that is not whole rows.
    pub fn pad_input(&self, x: &[u64], hidden: usize) -> Result<Vec<u64>> {
        if hidden == 0 || !x.len().is_multiple_of(hidden) || x.len() / hidden > self.len {
            return Err(NnError::Config(format!(
                "{} values are not at most {} rows of {hidden}",
                x.len(),
                self.len
            )));
        }
        let mut v = x.to_vec();
        v.resize(self.len * hidden, 0);
        Ok(v)
    }
}

/// Build `cfg` for the length bucket `bucket` (L_b): the padded program, serving every valid
/// length 1..=L_b with one key stream (see the module documentation). Batches are not
/// supported (one sequence).
///
/// # Errors
/// As [`crate::model::build`]; a ring without room for the padding mask.
pub fn build_bucket(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    mode: Mode,
    bucket: usize,
    layers: Option<usize>,
) -> Result<Built> {
    let d = Design {
        len: bucket,
        padded: true,
    };
    build_inner(cfg, w, fp, mode, bucket, 1, layers, Some(d))
}

/// The unpadded program for `seq` tokens with the numerics of the bucket `bucket`
/// (`seq` ≤ `bucket`): what [`build_bucket`]'s program computes for valid length `seq`, bit
/// for bit, without padding.
///
/// # Errors
/// `seq` of 0 or above the bucket; as [`build_bucket`].
pub fn build_unpadded(
    cfg: &ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    mode: Mode,
    seq: usize,
    bucket: usize,
    layers: Option<usize>,
) -> Result<Built> {
    if seq == 0 || seq > bucket {
        return Err(NnError::Config(format!(
            "length {seq} outside 1..={bucket} of the bucket"
        )));
    }
    let d = Design {
        len: bucket,
        padded: false,
    };
    build_inner(cfg, w, fp, mode, seq, 1, layers, Some(d))
}

/// Mean over the real rows of `x` (`[L_b, d]` → `[1, d]`): padded rows times a public 0,
/// the sum divided by the public L as `div_by` divides by the length.
pub(crate) fn mean_pool_padded(g: &mut Builder, ctx: &Ctx, x: T, lb: usize) -> Result<T> {
    let mask = g.public_input(ROW_MASK, &[lb])?;
    let xt = g.transpose(x)?; // [d, L_b]
    let xm = g.mul_pub_in(xt, mask)?;
    let s = g.sum_last(xm)?; // [d, 1]
    let s = div_by_len(g, ctx, s, lb, ctx.fp.frac + 9)?;
    Ok(g.transpose(s)?)
}

/// x / L for the public L ∈ [1, max_d] (`[r, 1]`): the branches [`DivLayout::branches`]
/// names, each fed 0 by its public inputs unless L takes it (⌊0⌋ = 0 exactly).
fn div_by_len(g: &mut Builder, ctx: &Ctx, x: T, max_d: usize, mag_bits: u32) -> Result<T> {
    let lay = DivLayout::new(ctx.fp.width.bits(), mag_bits, max_d);
    let (one, ks) = lay.branches()?;
    let mut parts = Vec::new();
    if one {
        let c1 = g.public_input(DIV_C1, &[1])?;
        let y = g.mul_pub_in(x, c1)?;
        parts.push(gates::ars(g, y, lay.s1)?);
    }
    if !ks.is_empty() {
        let mut acc: Option<T> = None;
        for &k in &ks {
            let xk = if k == 0 { x } else { gates::ars(g, x, k)? };
            let sel = g.public_input(&format!("{DIV_K}{k}"), &[1])?;
            let y = g.mul_pub_in(xk, sel)?;
            acc = Some(match acc {
                Some(a) => g.add(a, y)?,
                None => y,
            });
        }
        let c2 = g.public_input(DIV_C2, &[1])?;
        let y = acc.ok_or_else(|| NnError::Config("no division branch".into()))?;
        let y = g.mul_pub_in(y, c2)?;
        parts.push(gates::ars(g, y, lay.s)?);
    }
    let mut it = parts.into_iter();
    let mut r = it
        .next()
        .ok_or_else(|| NnError::Config("no division branch".into()))?;
    for p in it {
        r = g.add(r, p)?;
    }
    Ok(r)
}

/// Row L − 1 of `h` (`[L_b, d]` → `[1, d]`) by a public one-hot row.
pub(crate) fn last_real_row(g: &mut Builder, h: T) -> Result<T> {
    let (lb, _) = crate::layers::dims(g, h);
    let sel = g.public_input(LAST_ROW, &[lb])?;
    let t = g.transpose(h)?; // [d, L_b]
    let m = g.mul_pub_in(t, sel)?;
    let s = g.sum_last(m)?; // [d, 1]
    Ok(g.transpose(s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_bits_need_room() {
        let fp = FixedPoint::new(50, 12).unwrap();
        // Scores of a bits: the mask needs a + 4 ≤ n and a + 1 ≥ f + 4.
        assert_eq!(padded_bits(fp, 37).unwrap(), 41);
        assert!(padded_bits(fp, 47).is_err());
        assert!(padded_bits(fp, 14).is_err());
        assert_eq!(padded_bits(fp, 15).unwrap(), 19);
    }

    /// The layout's constants are `div_by`'s: checked against its formula for both ways.
    #[test]
    fn division_ways_match_div_by() {
        // A wide ring: one round for everything up to 128.
        let lay = DivLayout::new(50, 21, 128);
        assert_eq!(lay.branches().unwrap(), (true, vec![]));
        assert_eq!(lay.way(1).unwrap(), DivWay::One(1 << 26));
        assert_eq!(lay.way(8).unwrap(), DivWay::One(1 << 23));
        assert_eq!(
            lay.way(3).unwrap(),
            DivWay::One(((26f64).exp2() / 3.0).round() as u64)
        );
        // A narrow ring: powers of two by one shift, the rest in two rounds.
        let lay = DivLayout::new(37, 21, 12);
        assert_eq!(lay.s1, 13);
        let (one, ks) = lay.branches().unwrap();
        assert!(one);
        assert_eq!(ks, vec![1, 2, 3]);
        assert_eq!(lay.way(4).unwrap(), DivWay::One(1 << 11));
        assert_eq!(
            lay.way(5).unwrap(),
            DivWay::Two(2, ((15f64).exp2() / 5.0).round() as u64)
        );
        assert!(lay.way(0).is_err());
        assert!(lay.way(13).is_err());
    }
}
