//! Nonlinear gates: the interface the runtime drives, and the exact truncations.
//!
//! A gate instance turns the public masked input x̂ = x + r (opened by the runtime in the
//! gate's round) and its one-time key into additive shares of its output. The dealer sees the
//! masks r (one fresh mask per element) and makes the keys; the Plain interpreter evaluates
//! [`GateImpl::plain`], which the protocol must match bit for bit.
//!
//! Gates with equal [`GateImpl::name`] that are ready in the same round are evaluated as one
//! batch with one key batch made by the dealer for all of them.

use std::fmt;

use suf_backend::Backend;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::dcf::{self, DcfKeys};

use crate::error::{Result, RtError};
use crate::ir::Dtype;

/// A nonlinear gate evaluated on a masked opening.
pub trait GateImpl: Send + Sync {
    /// Batch signature and report name: gates with equal names share key batches.
    fn name(&self) -> String;
    /// Bytes identifying the gate and its parameters (program fingerprint).
    fn fingerprint(&self) -> Vec<u8> {
        self.name().into_bytes()
    }
    /// Output type.
    fn out_dtype(&self) -> Dtype {
        Dtype::Arith
    }
    /// Number of outputs q per input element (default 1). `plain` and `eval` return
    /// q·len values laid out output-major: all elements of output 0, then output 1, …
    fn outputs(&self) -> usize {
        1
    }
    /// The fixed-point reference: exactly what the protocol computes.
    fn plain(&self, w: BitWidth, x: &[u64]) -> Vec<u64>;
    /// Dealer: key blobs for party 0 and 1 for a batch with input masks `r`.
    fn deal(&self, w: BitWidth, r: &[u64], rng: &mut Csprng) -> Result<[Vec<u8>; 2]>;
    /// Party: additive shares of the outputs from the opened x̂ and this party's blob.
    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: &[u8],
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>>;
}

impl fmt::Debug for dyn GateImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gate({})", self.name())
    }
}

/// Length-prefixed concatenation of byte parts (the layout of a gate's key blob).
pub fn join_parts(parts: &[&[u8]]) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| p.len() + 8).sum();
    let mut out = Vec::with_capacity(total + 4);
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Split a blob made by [`join_parts`] into exactly `n` parts.
pub fn split_parts(b: &[u8], n: usize) -> Result<Vec<&[u8]>> {
    let bad = |m: &str| RtError::KeyStream(format!("gate key blob: {m}"));
    if b.len() < 4 {
        return Err(bad("truncated"));
    }
    let cnt = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    if cnt != n {
        return Err(bad(&format!("{cnt} parts, expected {n}")));
    }
    let mut pos = 4;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if b.len() - pos < 8 {
            return Err(bad("truncated"));
        }
        let len = u64::from_le_bytes(b[pos..pos + 8].try_into().expect("8 bytes"));
        pos += 8;
        if (b.len() - pos) as u64 > u64::MAX || len > (b.len() - pos) as u64 {
            return Err(bad("truncated part"));
        }
        out.push(&b[pos..pos + len as usize]);
        pos += len as usize;
    }
    if pos != b.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// Exact truncation by f bits in one opening (fss-identities.md §5):
/// with x̂ = 2^f·x̂_H + x̂_L and r = 2^f·r_H + r_L,
/// ⌊x/2^f⌋ = x̂_H − r_H − 1[x̂_L < r_L] + 2^{n−f}·1[x̂ < r] (mod 2^n).
/// `signed = false` is the logical shift TR of the unsigned view; `signed = true` is the
/// faithful arithmetic shift ARS (the formula applied to x̂ + 2^{n−1}, then 2^{n−1−f}
/// subtracted). Both comparisons come from DCFs with arithmetic payloads (Boyle et al.,
/// Eurocrypt 2021), so no conversion round is needed: one round in all.
#[derive(Clone, Debug)]
pub struct Truncate {
    /// Bits shifted out (1 ≤ f < n).
    pub f: u32,
    /// ARS (signed floor) instead of TR (unsigned floor).
    pub signed: bool,
}

impl Truncate {
    fn check(&self, w: BitWidth) -> Result<()> {
        if self.f == 0 || self.f >= w.bits() {
            return Err(RtError::Shape {
                op: "truncate",
                detail: format!("shift {} outside 1..{}", self.f, w.bits()),
            });
        }
        Ok(())
    }
}

impl GateImpl for Truncate {
    fn name(&self) -> String {
        format!("{}_f{}", if self.signed { "ars" } else { "tr" }, self.f)
    }

    fn plain(&self, w: BitWidth, x: &[u64]) -> Vec<u64> {
        if self.signed {
            x.iter()
                .map(|&v| w.from_signed(w.to_signed(v) >> self.f))
                .collect()
        } else {
            x.iter().map(|&v| w.reduce(v) >> self.f).collect()
        }
    }

    fn deal(&self, w: BitWidth, r: &[u64], rng: &mut Csprng) -> Result<[Vec<u8>; 2]> {
        self.check(w)?;
        let (n, f) = (w.bits(), self.f);
        let lo = (1u64 << f) - 1;
        let r_l: Vec<u64> = r.iter().map(|&v| v & lo).collect();
        let r_h: Vec<u64> = r.iter().map(|&v| w.reduce(v) >> f).collect();
        let ones = vec![1u64; r.len()];
        let wrap = vec![1u64 << (n - f); r.len()];
        let (a0, a1) = dcf::gen_batch(f, n, 1, &r_l, &ones, rng)?;
        let (b0, b1) = dcf::gen_batch(n, n, 1, r, &wrap, rng)?;
        let h1: Vec<u64> = r_h.iter().map(|_| rng.ring(w)).collect();
        let h0: Vec<u64> = r_h.iter().zip(&h1).map(|(&v, &s)| w.sub(v, s)).collect();
        let pk = |h: &[u64]| suf_core::pack::pack(h, n);
        Ok([
            join_parts(&[&pk(&h0), &a0.to_bytes(), &b0.to_bytes()]),
            join_parts(&[&pk(&h1), &a1.to_bytes(), &b1.to_bytes()]),
        ])
    }

    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: &[u8],
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>> {
        self.check(w)?;
        let (n, f) = (w.bits(), self.f);
        let parts = split_parts(key, 3)?;
        let rh = suf_core::pack::unpack(parts[0], n, xhat.len())
            .map_err(|e| RtError::KeyStream(format!("truncation key: {e}")))?;
        let ka = DcfKeys::from_bytes(parts[1])?;
        let kb = DcfKeys::from_bytes(parts[2])?;
        if ka.count() != xhat.len() || kb.count() != xhat.len() || ka.party() != party {
            return Err(RtError::KeyMismatch(format!(
                "truncation key holds {} elements of party {}, expected {} of party {party}",
                ka.count(),
                ka.party(),
                xhat.len()
            )));
        }
        let shift = if self.signed { w.half() } else { 0 };
        let xs: Vec<u64> = xhat.iter().map(|&v| w.add(v, shift)).collect();
        let lo = (1u64 << f) - 1;
        let xl: Vec<u64> = xs.iter().map(|&v| v & lo).collect();
        let c1 = be.dcf_eval(&ka, &xl, 1)?;
        let c2 = be.dcf_eval(&kb, &xs, 1)?;
        let j = party as u64;
        let corr = if self.signed && party == 0 {
            1u64 << (n - 1 - f)
        } else {
            0
        };
        Ok((0..xs.len())
            .map(|i| {
                let base = w.mul(j, xs[i] >> f);
                w.sub(w.add(w.sub(w.sub(base, rh[i]), c1[i]), c2[i]), corr)
            })
            .collect())
    }
}

/// Comparison 1[x < β] (unsigned view of x) as XOR-shared bits, from one DPF comparison key
/// with secret point r evaluated at x̂ ⊖ β and x̂ (fss-identities.md §4(a)):
/// 1[x < β] = C(x̂ ⊖ β) ⊕ C(x̂) ⊕ 1[x̂ < β] with C(y) = 1[y < r]. One round.
/// With β = 2^{n−1} this is DReLU (1 when x ≥ 0 in the signed view).
#[derive(Clone, Debug)]
pub struct LessThan {
    /// Public threshold in [0, 2^n].
    pub beta: u64,
}

impl GateImpl for LessThan {
    fn name(&self) -> String {
        format!("lt_{}", self.beta)
    }

    fn out_dtype(&self) -> Dtype {
        Dtype::Bool
    }

    fn plain(&self, w: BitWidth, x: &[u64]) -> Vec<u64> {
        x.iter()
            .map(|&v| ((w.reduce(v) as u128) < self.beta as u128) as u64)
            .collect()
    }

    fn deal(&self, w: BitWidth, r: &[u64], rng: &mut Csprng) -> Result<[Vec<u8>; 2]> {
        let (k0, k1) = suf_fss::dpf::gen_cmp_batch(w.bits(), r, rng)?;
        Ok([k0.to_bytes(), k1.to_bytes()])
    }

    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: &[u8],
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>> {
        let keys = suf_fss::dpf::DpfKeys::from_bytes(key)?;
        if keys.count() != xhat.len() || keys.party() != party || keys.n() != w.bits() {
            return Err(RtError::KeyMismatch(format!(
                "comparison key holds {} elements of party {}, expected {} of party {party}",
                keys.count(),
                keys.party(),
                xhat.len()
            )));
        }
        if w.bits() < 64 && self.beta > 1u64 << w.bits() {
            return Err(RtError::Shape {
                op: "lt",
                detail: format!("threshold {} exceeds 2^{}", self.beta, w.bits()),
            });
        }
        let beta = self.beta;
        let pts: Vec<u64> = xhat.iter().flat_map(|&x| [w.sub(x, beta), x]).collect();
        let c = be.dpf_lt_eval(&keys, &pts, 2)?;
        Ok(xhat
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let public = (party == 0 && (x as u128) < self.beta as u128) as u8;
                (c[2 * i] ^ c[2 * i + 1] ^ public) as u64
            })
            .collect())
    }
}
