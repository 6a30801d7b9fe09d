//! Vector interval lookup and piecewise polynomials from **one DCF per element** (DESIGN §4
//! "Vector interval lookup", §5 technique (c); `reference/fss-identities.md` §4(b), §4(c)).
//!
//! # Setting
//!
//! The wire carries x ∈ Z_{2^n} with mask r; both parties know x̂ = x + r mod 2^n. A public
//! partition of Z_{2^n} into m intervals is given by its **interior cut points**
//! 0 < a_1 < … < a_{m−1} < 2^n (a_0 = 0 and a_m = 2^n are implicit; m = 1 is one interval),
//! the same for every element of a batch. Interval i is [a_i, a_{i+1}).
//!
//! # Keys
//!
//! Per element the dealer makes one DCF ([`crate::dcf`]) with point r on the n-bit domain and
//! payload vector v = (1, r, r², …, r^d) in Z_{2^n}^{d+1}, and additive shares of r, …, r^d.
//! The key's shape depends on (n, d) only: never on r, the cut points or m.
//!
//! # Evaluation (m DCF evaluations per element, no communication)
//!
//! With D_k(y) the party's share of r^k·1[y < r] (the DCF at y), and [r^0] = party:
//!
//! ```text
//! [1[x<a]·r^k] = D_k(x̂ ⊖ a) − D_k(x̂) + 1[x̂<a]·[r^k]     (a interior; a = 0 → 0, a = 2^n → [r^k])
//! [1_i·r^k]   = [1[x<a_{i+1}]·r^k] − [1[x<a_i]·r^k]
//! ```
//!
//! The key is evaluated at the m points x̂, x̂ ⊖ a_1, …, x̂ ⊖ a_{m−1}. AES calls per element:
//! m · n · (1 + ⌈(d+1)·n/128⌉).
//!
//! * **Public table lookup** ([`IntervalKeys::lookup`]): [T(x)] = Σ_i [1_i]·T_i with a public
//!   table of m vectors of p elements — only the k = 0 component is needed (so keys with d = 0,
//!   payload 1, suffice: [`lookup_gen`]).
//! * **Piecewise polynomials** ([`IntervalKeys::piecewise_poly`], [`eval_piecewise_poly`]):
//!   F(x) = Σ_j c_ij x^j on interval i, degree ≤ d, coefficients public in Z_{2^n}. Since
//!   x = x̂ − r, `[F(x)] = Σ_i Σ_k A_ik(x̂)·[1_i·r^k]` with the public
//!   `A_ik(x̂) = (−1)^k Σ_{j≥k} C(j,k)·c_ij·x̂^{j−k}` (all mod 2^n) — local, no multiplication
//!   round.
//!
//! # Serialized layout ([`KeyKind::IntervalDcf`])
//!
//! Header params `[d, 0, 0, 0]`, n the ring bits. Body: the shares of r^1..r^d as
//! `count × d` u64 (element-major), then the DCF batch as a u64 byte length and the nested
//! [`DcfKeys`] file (n, m = n, p = d + 1) zero-padded to 8 bytes.

use rayon::prelude::*;
use suf_core::prg::Csprng;

use crate::dcf::{self, mask_bits, DcfKeys};
use crate::error::{FssError, Result};
use crate::keyfmt::{expect_body_len, parse_header, KeyKind, KeyReader, KeyWriter};
use crate::packed::{add_nested, read_nested, write_nested};

/// Largest polynomial degree d (the DCF payload has d + 1 elements).
pub const MAX_DEGREE: usize = 64;

/// One party's interval-lookup keys for a batch of elements.
#[derive(Clone, PartialEq, Eq)]
pub struct IntervalKeys {
    n: u32,
    d: usize,
    party: u8,
    count: usize,
    /// Shares of r^1..r^d, element-major.
    rpow: Vec<u64>,
    dcf: DcfKeys<'static>,
}

impl std::fmt::Debug for IntervalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalKeys")
            .field("n", &self.n)
            .field("d", &self.d)
            .field("party", &self.party)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Generate keys for technique (c) of degree d: one DCF per element with point r and payload
/// (1, r, …, r^d), plus shares of r, …, r^d.
///
/// # Errors
/// [`FssError::BadParams`] for n outside 1..=64, d > [`MAX_DEGREE`], or a mask ≥ 2^n.
pub fn poly_gen(
    n: u32,
    d: usize,
    masks: &[u64],
    rng: &mut Csprng,
) -> Result<(IntervalKeys, IntervalKeys)> {
    if !(1..=64).contains(&n) {
        return Err(FssError::BadParams(format!("ring bits {n} outside 1..=64")));
    }
    if d > MAX_DEGREE {
        return Err(FssError::BadParams(format!(
            "degree {d} above {MAX_DEGREE}"
        )));
    }
    let nm = mask_bits(n);
    if masks.iter().any(|&r| r & !nm != 0) {
        return Err(FssError::BadParams(format!("a mask is not below 2^{n}")));
    }
    let p = d + 1;
    let mut betas = Vec::with_capacity(masks.len() * p);
    let mut r0 = Vec::with_capacity(masks.len() * d);
    let mut r1 = Vec::with_capacity(masks.len() * d);
    for &r in masks {
        let mut pw = 1u64;
        betas.push(1);
        for _ in 0..d {
            pw = pw.wrapping_mul(r) & nm;
            betas.push(pw);
            let s0 = rng.next_u64() & nm;
            r0.push(s0);
            r1.push(pw.wrapping_sub(s0) & nm);
        }
    }
    let (k0, k1) = dcf::gen_batch(n, n, p, masks, &betas, rng)?;
    let mk = |party, rpow, dcf| IntervalKeys {
        n,
        d,
        party,
        count: masks.len(),
        rpow,
        dcf,
    };
    Ok((mk(0, r0, k0), mk(1, r1, k1)))
}

/// Keys for public-table interval lookup ([`poly_gen`] with d = 0: a DCF with payload 1).
///
/// # Errors
/// As [`poly_gen`].
pub fn lookup_gen(n: u32, masks: &[u64], rng: &mut Csprng) -> Result<(IntervalKeys, IntervalKeys)> {
    poly_gen(n, 0, masks, rng)
}

/// Shares of [1_i·r^k] for every element, interval and k ≤ d (see [`IntervalKeys::indicators`]).
///
/// # Errors
/// As [`IntervalKeys::indicators`].
pub fn poly_eval(keys: &IntervalKeys, xhats: &[u64], cuts: &[u64]) -> Result<Vec<u64>> {
    keys.indicators(xhats, cuts)
}

/// Check interior cut points: strictly increasing, each in (0, 2^n).
fn check_cuts(n: u32, cuts: &[u64]) -> Result<()> {
    let nm = mask_bits(n);
    let mut prev = 0u64;
    for (i, &a) in cuts.iter().enumerate() {
        if a <= prev || a > nm {
            return Err(FssError::BadParams(format!(
                "cut point {i} = {a}: cuts must increase strictly inside (0, 2^{n})"
            )));
        }
        prev = a;
    }
    Ok(())
}

impl IntervalKeys {
    /// Ring bits n.
    pub fn n(&self) -> u32 {
        self.n
    }
    /// Polynomial degree d (DCF payload length d + 1).
    pub fn degree(&self) -> usize {
        self.d
    }
    /// Party 0 or 1.
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Elements in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// AES calls per element for a partition into m intervals.
    pub fn aes_per_element(&self, m: usize) -> usize {
        m * dcf::aes_per_eval(self.n, self.n, self.d + 1)
    }
    /// Serialized body bytes per element (closed form; plus 64 + 8 header/length bytes per batch
    /// and up to 7 padding bytes): 8d + DCF bytes per key at (n, n, d + 1).
    pub fn key_bytes_per_key(n: u32, d: usize) -> usize {
        8 * d + DcfKeys::key_bytes_per_key(n, n, d + 1)
    }

    fn body_len(n: u32, d: usize, count: u64) -> Option<u64> {
        let dcf_len = DcfKeys::bytes_for(n, n, d + 1, usize::try_from(count).ok()?)? as u64;
        add_nested(count.checked_mul(8 * d as u64), Some(dcf_len))
    }

    /// Shares of P_{a,k} = [1[x < a]·r^k] at the points, returned as `P[e][c][k]` for the
    /// boundaries c = 0..=m (a_0 = 0, a_m = 2^n).
    fn prefix_shares(&self, xhats: &[u64], cuts: &[u64]) -> Result<(Vec<u64>, usize)> {
        if xhats.len() != self.count {
            return Err(FssError::LengthMismatch {
                what: "xhats",
                expected: self.count,
                got: xhats.len(),
            });
        }
        check_cuts(self.n, cuts)?;
        let nm = mask_bits(self.n);
        let m = cuts.len() + 1;
        let p = self.d + 1;
        let mut pts = Vec::with_capacity(self.count * m);
        for &xh in xhats {
            let xh = xh & nm;
            pts.push(xh);
            for &a in cuts {
                pts.push(xh.wrapping_sub(a) & nm);
            }
        }
        let dv = self.dcf.eval_multi(&pts, m)?; // [e][point][k]
        let b = self.party as u64;
        let mut pre = vec![0u64; self.count * (m + 1) * p];
        pre.par_chunks_mut((m + 1) * p)
            .zip(dv.par_chunks(m * p))
            .enumerate()
            .for_each(|(e, (pe, de))| {
                let xh = xhats[e] & nm;
                let rp = |k: usize| -> u64 {
                    if k == 0 {
                        b
                    } else {
                        self.rpow[e * self.d + k - 1]
                    }
                };
                // c = 0: zero (already). Interior c = 1..m−1: point index c.
                for (c, &a) in cuts.iter().enumerate() {
                    let c = c + 1;
                    let public = (xh < a) as u64;
                    for k in 0..p {
                        pe[c * p + k] = de[c * p + k]
                            .wrapping_sub(de[k])
                            .wrapping_add(public.wrapping_neg() & rp(k))
                            & nm;
                    }
                }
                for k in 0..p {
                    pe[m * p + k] = rp(k) & nm;
                }
            });
        Ok((pre, m))
    }

    /// Shares of [1_i·r^k] for element e, interval i < m, k ≤ d, laid out `[e][i][k]`
    /// (`count·m·(d+1)` words), where m = `cuts.len() + 1`.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xhats.len() != count`; [`FssError::BadParams`] if the
    /// cuts are not strictly increasing inside (0, 2^n).
    pub fn indicators(&self, xhats: &[u64], cuts: &[u64]) -> Result<Vec<u64>> {
        let (pre, m) = self.prefix_shares(xhats, cuts)?;
        let p = self.d + 1;
        let nm = mask_bits(self.n);
        let mut out = vec![0u64; self.count * m * p];
        for (oe, pe) in out.chunks_mut(m * p).zip(pre.chunks(((m + 1) * p).max(1))) {
            for i in 0..m {
                for k in 0..p {
                    oe[i * p + k] = pe[(i + 1) * p + k].wrapping_sub(pe[i * p + k]) & nm;
                }
            }
        }
        Ok(out)
    }

    /// Public-table vector lookup: shares of `table[i]` (p ring elements, Z_{2^n}) for the
    /// interval i holding each element's x. `table` is `m × p`, m = `cuts.len() + 1`.
    /// Returns `count·p` shares.
    ///
    /// # Errors
    /// As [`IntervalKeys::indicators`]; [`FssError::LengthMismatch`] if `table.len() != m·p`.
    pub fn lookup(&self, xhats: &[u64], cuts: &[u64], table: &[u64], p: usize) -> Result<Vec<u64>> {
        let m = cuts.len() + 1;
        if Some(table.len()) != m.checked_mul(p) {
            return Err(FssError::LengthMismatch {
                what: "table",
                expected: m.saturating_mul(p),
                got: table.len(),
            });
        }
        let ind = self.indicators(xhats, cuts)?;
        let q = self.d + 1;
        let nm = mask_bits(self.n);
        let mut out = vec![0u64; self.count * p];
        for (oe, ie) in out.chunks_mut(p.max(1)).zip(ind.chunks(m * q)) {
            for i in 0..m {
                let s = ie[i * q];
                for (o, &t) in oe.iter_mut().zip(&table[i * p..(i + 1) * p]) {
                    *o = o.wrapping_add(s.wrapping_mul(t));
                }
            }
            for o in oe.iter_mut() {
                *o &= nm;
            }
        }
        Ok(out)
    }

    /// Shares of a piecewise polynomial F: on interval i, F(x) = Σ_{j ≤ d} c_ij x^j with
    /// `coeffs[i·(d+1) + j] = c_ij` (public, Z_{2^n}). Returns one share per element.
    ///
    /// # Errors
    /// As [`IntervalKeys::indicators`]; [`FssError::LengthMismatch`] if
    /// `coeffs.len() != m·(d+1)`.
    pub fn piecewise_poly(&self, xhats: &[u64], cuts: &[u64], coeffs: &[u64]) -> Result<Vec<u64>> {
        let m = cuts.len() + 1;
        let p = self.d + 1;
        if coeffs.len() != m * p {
            return Err(FssError::LengthMismatch {
                what: "coeffs",
                expected: m * p,
                got: coeffs.len(),
            });
        }
        let ind = self.indicators(xhats, cuts)?;
        let mut out = vec![0u64; self.count];
        out.par_iter_mut()
            .zip(ind.par_chunks(m * p))
            .zip(xhats.par_iter())
            .try_for_each(|((o, ie), &xh)| -> Result<()> {
                *o = eval_piecewise_poly(self.n, self.d, xh, coeffs, ie)?;
                Ok(())
            })?;
        Ok(out)
    }

    /// The serialized batch ([`KeyKind::IntervalDcf`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = KeyWriter::new(
            KeyKind::IntervalDcf,
            self.party,
            self.n,
            [self.d as u32, 0, 0, 0],
            self.count as u64,
        );
        w.u64s(&self.rpow);
        write_nested(&mut w, &self.dcf.to_bytes());
        w.finish()
    }

    /// Parse a serialized batch. Never panics.
    ///
    /// # Errors
    /// Typed [`FssError`] input errors.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (h, body) = parse_header(b, KeyKind::IntervalDcf)?;
        let [d, z0, z1, z2] = h.params;
        if z0 != 0 || z1 != 0 || z2 != 0 {
            return Err(FssError::BadHeader("unused params are not zero".into()));
        }
        let d = d as usize;
        if d > MAX_DEGREE {
            return Err(FssError::BadHeader(format!(
                "degree {d} above {MAX_DEGREE}"
            )));
        }
        expect_body_len(&h, Self::body_len(h.n, d, h.count))?;
        let count = usize::try_from(h.count)
            .map_err(|_| FssError::BadHeader("count does not fit in memory".into()))?;
        let mut r = KeyReader::new(body);
        let rpow = r.u64s(count * d)?;
        let nm = mask_bits(h.n);
        if rpow.iter().any(|&v| v & !nm != 0) {
            return Err(FssError::BadHeader("share not reduced mod 2^n".into()));
        }
        let dcf = DcfKeys::from_bytes(&read_nested(&mut r)?)?;
        r.finish()?;
        if dcf.n() != h.n
            || dcf.m() != h.n
            || dcf.p() != d + 1
            || dcf.count() != count
            || dcf.party() != h.party
        {
            return Err(FssError::BadHeader(
                "nested DCF disagrees with the outer header".into(),
            ));
        }
        Ok(IntervalKeys {
            n: h.n,
            d,
            party: h.party,
            count,
            rpow,
            dcf,
        })
    }
}

/// One party's share of F(x) from its shares `shares[i·(d+1) + k]` = [1_i·r^k]
/// ([`IntervalKeys::indicators`] of one element) and the public x̂:
/// `[F(x)] = Σ_i Σ_k A_ik(x̂)·[1_i·r^k]`, `A_ik(x̂) = (−1)^k Σ_{j≥k} C(j,k)·c_ij·x̂^{j−k}`, all mod
/// 2^n, with `coeffs[i·(d+1) + j] = c_ij`. The combination is linear in the shares, so it is
/// the same for both parties (no party argument is needed).
///
/// # Errors
/// [`FssError::BadParams`] for n outside 1..=64; [`FssError::LengthMismatch`] if `coeffs` and
/// `shares` differ in length or are not a multiple of d + 1.
pub fn eval_piecewise_poly(
    n: u32,
    d: usize,
    xhat: u64,
    coeffs: &[u64],
    shares: &[u64],
) -> Result<u64> {
    if !(1..=64).contains(&n) {
        return Err(FssError::BadParams(format!("ring bits {n} outside 1..=64")));
    }
    let p = d + 1;
    if coeffs.len() != shares.len() || !coeffs.len().is_multiple_of(p) {
        return Err(FssError::LengthMismatch {
            what: "coeffs/shares",
            expected: shares.len(),
            got: coeffs.len(),
        });
    }
    let nm = mask_bits(n);
    let xh = xhat & nm;
    // Powers of x̂ and the binomials C(j, k), exact mod 2^64 (Pascal's rule).
    let mut xp = vec![1u64; p];
    for j in 1..p {
        xp[j] = xp[j - 1].wrapping_mul(xh);
    }
    let mut binom = vec![0u64; p * p];
    for j in 0..p {
        binom[j * p] = 1;
        for k in 1..=j {
            binom[j * p + k] = binom[(j - 1) * p + k - 1].wrapping_add(binom[(j - 1) * p + k]);
        }
    }
    let mut acc = 0u64;
    for (c, s) in coeffs.chunks_exact(p).zip(shares.chunks_exact(p)) {
        for k in 0..p {
            let mut a = 0u64;
            for j in k..p {
                a = a.wrapping_add(binom[j * p + k].wrapping_mul(c[j]).wrapping_mul(xp[j - k]));
            }
            if k % 2 == 1 {
                a = a.wrapping_neg();
            }
            acc = acc.wrapping_add(a.wrapping_mul(s[k]));
        }
    }
    Ok(acc & nm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyfmt::{checksum, HEADER_LEN};
    use proptest::prelude::*;

    fn interval_of(cuts: &[u64], x: u64) -> usize {
        cuts.iter().filter(|&&a| a <= x).count()
    }

    fn poly_at(n: u32, c: &[u64], x: u64) -> u64 {
        let mut acc = 0u64;
        for &cj in c.iter().rev() {
            acc = acc.wrapping_mul(x).wrapping_add(cj);
        }
        acc & mask_bits(n)
    }

    fn random_cuts(n: u32, m: usize, rng: &mut Csprng) -> Vec<u64> {
        let nm = mask_bits(n);
        let mut v: Vec<u64> = (0..m.saturating_sub(1))
            .map(|_| (rng.next_u64() & nm).max(1))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Check indicators, lookup and piecewise polynomial for the given elements.
    fn check(n: u32, d: usize, cuts: &[u64], masks: &[u64], xs: &[u64], rng: &mut Csprng) {
        let nm = mask_bits(n);
        let m = cuts.len() + 1;
        let p = d + 1;
        let (k0, k1) = poly_gen(n, d, masks, rng).unwrap();
        let xh: Vec<u64> = xs
            .iter()
            .zip(masks)
            .map(|(&x, &r)| x.wrapping_add(r) & nm)
            .collect();
        let i0 = poly_eval(&k0, &xh, cuts).unwrap();
        let i1 = poly_eval(&k1, &xh, cuts).unwrap();
        for (e, &x) in xs.iter().enumerate() {
            let iv = interval_of(cuts, x);
            let r = masks[e];
            for i in 0..m {
                let mut rk = 1u64;
                for k in 0..p {
                    let got = i0[(e * m + i) * p + k].wrapping_add(i1[(e * m + i) * p + k]) & nm;
                    let want = if i == iv { rk & nm } else { 0 };
                    assert_eq!(
                        got, want,
                        "n={n} d={d} x={x} r={r} i={i} k={k} cuts={cuts:?}"
                    );
                    rk = rk.wrapping_mul(r);
                }
            }
        }
        // Public table of 2-vectors.
        let table: Vec<u64> = (0..m * 2).map(|_| rng.next_u64() & nm).collect();
        let t0 = k0.lookup(&xh, cuts, &table, 2).unwrap();
        let t1 = k1.lookup(&xh, cuts, &table, 2).unwrap();
        // Piecewise polynomial.
        let coeffs: Vec<u64> = (0..m * p).map(|_| rng.next_u64() & nm).collect();
        let f0 = k0.piecewise_poly(&xh, cuts, &coeffs).unwrap();
        let f1 = k1.piecewise_poly(&xh, cuts, &coeffs).unwrap();
        for (e, &x) in xs.iter().enumerate() {
            let iv = interval_of(cuts, x);
            for q in 0..2 {
                assert_eq!(
                    t0[e * 2 + q].wrapping_add(t1[e * 2 + q]) & nm,
                    table[iv * 2 + q]
                );
            }
            assert_eq!(
                f0[e].wrapping_add(f1[e]) & nm,
                poly_at(n, &coeffs[iv * p..(iv + 1) * p], x),
                "n={n} d={d} x={x}"
            );
        }
    }

    #[test]
    fn exhaustive_small_rings() {
        let mut rng = Csprng::for_tests(21);
        for n in 1..=8u32 {
            let dom = 1u64 << n;
            let all_cuts: Vec<u64> = (1..dom).collect();
            let partitions = [
                vec![],
                all_cuts.clone(),
                vec![dom / 2].into_iter().filter(|&a| a > 0).collect(),
                random_cuts(n, 3, &mut rng),
                random_cuts(n, 6, &mut rng),
            ];
            for (pi, cuts) in partitions.iter().enumerate() {
                for d in 0..=3usize {
                    // Tiny intervals (m = 2^n) are the costliest: fewer masks there.
                    let nr = if pi == 1 && n >= 6 { 2 } else { 5 };
                    let mut masks = Vec::new();
                    let mut xs = Vec::new();
                    for j in 0..nr {
                        let r = match j {
                            0 => 0,
                            1 => dom - 1,
                            _ => rng.next_u64() % dom,
                        };
                        for x in 0..dom {
                            masks.push(r);
                            xs.push(x);
                        }
                    }
                    check(n, d, cuts, &masks, &xs, &mut rng);
                }
            }
        }
    }

    #[test]
    fn randomized_wide_rings() {
        let mut rng = Csprng::for_tests(22);
        for &n in &[37u32, 50, 64] {
            let nm = mask_bits(n);
            for &(m, d) in &[(1usize, 2usize), (2, 1), (8, 2), (5, 3), (4, 0)] {
                let cuts = random_cuts(n, m, &mut rng);
                let cnt = 200;
                let masks: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & nm).collect();
                let mut xs: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & nm).collect();
                for (i, x) in xs.iter_mut().enumerate().take(3 * cuts.len()) {
                    *x = cuts[i / 3].wrapping_add(i as u64 % 3).wrapping_sub(1) & nm;
                }
                xs[cnt - 1] = 0;
                xs[cnt - 2] = nm;
                check(n, d, &cuts, &masks, &xs, &mut rng);
            }
        }
    }

    #[test]
    fn relu_is_degree_one() {
        // ReLU(x) = x on [0, 2^{n−1}), 0 on the negative half.
        let mut rng = Csprng::for_tests(23);
        let n = 50;
        let nm = mask_bits(n);
        let cuts = [1u64 << (n - 1)];
        let coeffs = [0u64, 1, 0, 0];
        let masks: Vec<u64> = (0..100).map(|_| rng.next_u64() & nm).collect();
        let xs: Vec<u64> = (0..100).map(|_| rng.next_u64() & nm).collect();
        let (k0, k1) = poly_gen(n, 1, &masks, &mut rng).unwrap();
        let xh: Vec<u64> = xs
            .iter()
            .zip(&masks)
            .map(|(x, r)| x.wrapping_add(*r) & nm)
            .collect();
        let f0 = k0.piecewise_poly(&xh, &cuts, &coeffs).unwrap();
        let f1 = k1.piecewise_poly(&xh, &cuts, &coeffs).unwrap();
        for (e, &x) in xs.iter().enumerate() {
            let want = if x < 1 << (n - 1) { x } else { 0 };
            assert_eq!(f0[e].wrapping_add(f1[e]) & nm, want);
        }
    }

    #[test]
    fn shapes_serialization_and_errors() {
        let mut rng = Csprng::for_tests(24);
        for &(n, d) in &[(8u32, 0usize), (37, 2), (64, 3)] {
            let nm = mask_bits(n);
            let mut len = None;
            for _ in 0..10 {
                let masks: Vec<u64> = (0..4).map(|_| rng.next_u64() & nm).collect();
                let (k0, k1) = poly_gen(n, d, &masks, &mut rng).unwrap();
                for k in [&k0, &k1] {
                    let b = k.to_bytes();
                    let dcf = DcfKeys::bytes_for(n, n, d + 1, 4).unwrap();
                    let want = HEADER_LEN + 8 * 4 * d + 8 + dcf.next_multiple_of(8);
                    assert_eq!(b.len(), want);
                    if let Some(l) = len {
                        assert_eq!(l, b.len());
                    }
                    len = Some(b.len());
                    let back = IntervalKeys::from_bytes(&b).unwrap();
                    assert_eq!(&back, k);
                }
            }
        }
        let (k0, _) = poly_gen(8, 1, &[1, 2], &mut rng).unwrap();
        assert!(k0.indicators(&[1], &[]).is_err());
        assert!(k0.indicators(&[1, 2], &[0]).is_err());
        assert!(k0.indicators(&[1, 2], &[5, 5]).is_err());
        assert!(k0.indicators(&[1, 2], &[256]).is_err());
        assert!(k0.lookup(&[1, 2], &[5], &[1, 2, 3], 2).is_err());
        assert!(k0.piecewise_poly(&[1, 2], &[5], &[1, 2, 3]).is_err());
        assert!(poly_gen(8, 1, &[256], &mut rng).is_err());
        assert!(poly_gen(0, 1, &[], &mut rng).is_err());
        assert!(poly_gen(8, MAX_DEGREE + 1, &[], &mut rng).is_err());
        assert!(eval_piecewise_poly(8, 1, 0, &[1, 2], &[1]).is_err());
        assert!(eval_piecewise_poly(8, 2, 0, &[1, 2], &[1, 2]).is_err());
        assert_eq!(k0.aes_per_element(3), 3 * 16);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn fuzz_parse_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            fix in any::<bool>(),
            trunc in any::<bool>(),
        ) {
            let mut rng = Csprng::for_tests(25);
            let (k0, _) = poly_gen(9, 2, &[3, 300], &mut rng).unwrap();
            let mut b = k0.to_bytes();
            for (pos, x) in flips {
                let i = pos % b.len();
                b[i] ^= x;
            }
            if trunc {
                b.truncate(cut % (b.len() + 1));
            }
            if fix && b.len() >= HEADER_LEN {
                let c = checksum(&b[HEADER_LEN..]);
                b[56..64].copy_from_slice(&c.to_le_bytes());
            }
            if let Ok(k) = IntervalKeys::from_bytes(&b) {
                let xs: Vec<u64> = (0..k.count() as u64).collect();
                let _ = k.piecewise_poly(&xs, &[7, 100], &vec![1; 3 * (k.degree() + 1)]);
            }
        }
    }
}
