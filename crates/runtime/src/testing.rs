//! Reference gates for testing the executor, the dealer and the key streams without the
//! compiler (which depends on this crate): an exact truncation ([`Truncate`]) and a DPF
//! comparison ([`LessThan`]). **No model uses them**: the models' truncations and comparisons
//! are `suf-compiler`'s compiled gates, whose one evaluator is `suf_backend::gate`. They stay
//! as small, independent [`GateImpl`]s with their own key layouts, so the runtime's tests
//! (and the CUDA dealer's whole-program test) exercise batching, key streams and the DPF
//! dealer path on gates of their own.

use suf_backend::Backend;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::dcf::{self, DcfKeys};
use suf_fss::KeyRef;

use crate::error::{Result, RtError};
use crate::gate::{join_parts, joined_len, split_parts, GateImpl};
use crate::ir::Dtype;

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
        let (a0, a1) = suf_fss::dealer::dcf_gen(f, n, 1, &r_l, &ones, rng.seed())?;
        let (b0, b1) = suf_fss::dealer::dcf_gen(n, n, 1, r, &wrap, rng.seed())?;
        let h1: Vec<u64> = r_h.iter().map(|_| rng.ring(w)).collect();
        let h0: Vec<u64> = r_h.iter().zip(&h1).map(|(&v, &s)| w.sub(v, s)).collect();
        let pk = |h: &[u64]| suf_core::pack::pack(h, n);
        Ok([
            join_parts(&[&pk(&h0), &a0.to_bytes(), &b0.to_bytes()]),
            join_parts(&[&pk(&h1), &a1.to_bytes(), &b1.to_bytes()]),
        ])
    }

    fn key_bytes(&self, w: BitWidth, count: usize) -> Option<[u64; 2]> {
        self.check(w).ok()?;
        let (n, f) = (w.bits(), self.f);
        // Both parties: packed shares of r_H, the f-bit and the n-bit DCF batch.
        let len = joined_len(&[
            suf_core::pack::packed_len(count, n),
            DcfKeys::bytes_for(f, n, 1, count)?,
            DcfKeys::bytes_for(n, n, 1, count)?,
        ])? as u64;
        Some([len, len])
    }

    fn aes_calls(&self, w: BitWidth, count: usize) -> Option<u64> {
        self.check(w).ok()?;
        let (n, f) = (w.bits(), self.f);
        let per = dcf::aes_per_eval(f, n, 1) + dcf::aes_per_eval(n, n, 1);
        (per as u64).checked_mul(count as u64)
    }

    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: KeyRef<'_>,
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>> {
        self.check(w)?;
        let (n, f) = (w.bits(), self.f);
        let parts = split_parts(key, 3)?;
        let rh = suf_core::pack::unpack(parts[0].bytes, n, xhat.len())
            .map_err(|e| RtError::KeyStream(format!("truncation key: {e}")))?;
        let ka = DcfKeys::view(parts[1])?;
        let kb = DcfKeys::view(parts[2])?;
        let shape = |k: &DcfKeys<'_>| (k.count(), k.party(), k.n(), k.m(), k.p());
        if shape(&ka) != (xhat.len(), party, f, n, 1) || shape(&kb) != (xhat.len(), party, n, n, 1)
        {
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
        let (k0, k1) = suf_fss::dealer::dpf_cmp_gen(w.bits(), r, rng.seed())?;
        Ok([k0.to_bytes(), k1.to_bytes()])
    }

    fn key_bytes(&self, w: BitWidth, count: usize) -> Option<[u64; 2]> {
        use suf_fss::dpf::DpfKeys;
        let body = DpfKeys::key_bytes_per_key(w.bits()).checked_mul(count)?;
        let len = body.checked_add(suf_fss::keyfmt::HEADER_LEN)? as u64;
        Some([len, len])
    }

    fn aes_calls(&self, w: BitWidth, count: usize) -> Option<u64> {
        // Two single-point comparisons per element, d + 1 AES calls each (suf_fss::dpf).
        let per = 2 * (suf_fss::dpf::depth(w.bits()) as u64 + 1);
        per.checked_mul(count as u64)
    }

    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: KeyRef<'_>,
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>> {
        // A view (the stream checked the section's checksum), then host keys: a body that
        // only a device holds is refused here (`BodyOnDevice`), never read as zeros.
        let keys = suf_fss::dpf::DpfView::view(key)?.to_keys()?;
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
