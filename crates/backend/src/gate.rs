//! Compiled-gate components evaluated behind the backend: the FSS evaluation **and** the
//! recombination of each component of a compiled gate (`suf-compiler`'s `compile.rs`), so a
//! device backend can run both without sending the per-point DCF outputs to the host.
//!
//! The descriptors are plain data (no compiler types): the compiler parses and checks the key
//! blob, expands the dealer's shares and builds a descriptor; the backend evaluates. The
//! functions of this module (`*_host`) are the one CPU implementation of every recombination;
//! the [`crate::Backend`] default methods call them, and device backends call them for shapes
//! their kernels do not cover (a documented size/shape rule, never after a device error).
//!
//! The identities are those of `suf_compiler::compile` (module docs there; fss-identities §4(a),
//! §4(c), §5; Boyle et al., Eurocrypt 2021, for DCF and interval containment). Notation per
//! element: x̂ the public masked input, j the party (0/1), `[v]` a party's additive share.
//!
//! Every output is **output-major** (all elements of output 0 first), reduced to the
//! component's output ring.

use rayon::prelude::*;
use suf_fss::dcf::DcfKeys;
use suf_fss::dpf::DpfView;
use suf_fss::KeyRef;

use crate::error::{BackendError, Result};
use crate::Backend;

/// Dealer shares a compiled gate reads (powers of the mask, ρ terms, free-wrap shares): where
/// they lie, so that a backend can produce them in its own memory (the GPU unpacks party 0's
/// in place in the resident key stream and expands party 1's on the device).
#[derive(Clone, Copy, Debug)]
pub enum Shares<'a> {
    /// Values on the host.
    Host(&'a [u64]),
    /// Party 0: `count` values of `bits` bits packed LSB first (`suf_core::pack`), exactly
    /// `packed_len(count, bits)` bytes of a key part.
    Packed {
        /// The packed bytes (with their origin in a loaded key stream, if any).
        bytes: KeyRef<'a>,
        /// Bits per value (1..=64).
        bits: u32,
        /// Values.
        count: usize,
    },
    /// Party 1: the first `count` outputs of `Csprng::from_seed(seed)` reduced to `bits` bits
    /// (AES-128-CTR under the seed, counters 0, 1, …, the low 64 bits of each block).
    Seed {
        /// The 16-byte seed of the key part.
        seed: [u8; 16],
        /// Bits per value (1..=64).
        bits: u32,
        /// Values.
        count: usize,
    },
}

impl<'a> Shares<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Shares::Host(v) => v.len(),
            Shares::Packed { count, .. } | Shares::Seed { count, .. } => *count,
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values on the host (borrowed when they already are).
    ///
    /// # Errors
    /// [`BackendError::Gate`] for a bit width outside 1..=64; `Core` for packed bytes of the
    /// wrong length or with nonzero padding bits.
    pub fn to_host(&self) -> Result<std::borrow::Cow<'a, [u64]>> {
        use std::borrow::Cow;
        match *self {
            Shares::Host(v) => Ok(Cow::Borrowed(v)),
            Shares::Packed { bytes, bits, count } => {
                if !(1..=64).contains(&bits) {
                    return bad(format!("packed shares of {bits} bits"));
                }
                Ok(Cow::Owned(suf_core::pack::unpack(
                    bytes.bytes,
                    bits,
                    count,
                )?))
            }
            Shares::Seed { seed, bits, count } => {
                if !(1..=64).contains(&bits) {
                    return bad(format!("seeded shares of {bits} bits"));
                }
                let mut out = vec![0u64; count];
                suf_core::prg::Csprng::from_seed(seed).fill_masked(mask(bits), &mut out);
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// 2^bits − 1 (all ones for 64 and above).
#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// 2^bits mod 2^64 (0 for 64 and above).
#[inline]
pub fn pow2(bits: u32) -> u64 {
    if bits >= 64 {
        0
    } else {
        1u64 << bits
    }
}

/// Binomial C(j, k) for j, k ≤ 8 (exact in u64); 0 for k > j (a fuzz finding: the loop
/// below would compute j − i < 0).
#[inline]
pub fn binom(j: usize, k: usize) -> u64 {
    if k > j {
        return 0;
    }
    let mut r: u64 = 1;
    for i in 0..k {
        r = r * (j - i) as u64 / (i + 1) as u64;
    }
    r
}

fn bad<T>(s: impl Into<String>) -> Result<T> {
    Err(BackendError::Gate(s.into()))
}

fn check_len(what: &'static str, expected: Option<usize>, got: usize) -> Result<()> {
    let expected = expected.ok_or(BackendError::ShapeOverflow { what })?;
    if expected != got {
        return Err(BackendError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

fn check_dcf(keys: &DcfKeys<'_>, party: u8, n: u32, m: u32, p: usize, count: usize) -> Result<()> {
    if keys.party() != party
        || keys.n() != n
        || keys.m() != m
        || keys.p() != p
        || keys.count() != count
    {
        return bad(format!(
            "DCF batch (party {}, {} bits, ring {}, p {}, {} keys) does not match (party {party}, \
             {n}, {m}, {p}, {count})",
            keys.party(),
            keys.n(),
            keys.m(),
            keys.p(),
            keys.count()
        ));
    }
    Ok(())
}

fn check_party(party: u8) -> Result<()> {
    if party > 1 {
        return bad(format!("party {party}"));
    }
    Ok(())
}

/// Element-major `flat` (`q` per element) to output-major.
fn transpose_out(flat: &[u64], q: usize, cnt: usize) -> Vec<u64> {
    let mut out = vec![0u64; q * cnt];
    for (e, v) in flat.chunks(q).enumerate() {
        for (o, &x) in v.iter().enumerate() {
            out[o * cnt + e] = x;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Technique (c): Poly and High

/// The polynomial variable of a [`TechC`] component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TechVar {
    /// `suf_compiler`'s `PolySpec`: the cuts and the variable are the K-bit view
    /// y = (x̂ + c) mod 2^K (`shift` must be 0); the wrap terms U (fss-identities §4(c)) are
    /// added when 2^K mod 2^M ≠ 0.
    View,
    /// `suf_compiler`'s `HighSpec`: the cuts compare h = ⌊y / 2^s⌋ and the variable is the
    /// full-ring x̂ + c (no wrap terms).
    Full,
}

/// A technique-(c) component (piecewise polynomials; DESIGN §5): one DCF on K − s bits with
/// payload (1, r, …, r^d) in Z_{2^M}, evaluated at h and h ⊖ a for every interior cut a.
#[derive(Clone, Copy, Debug)]
pub struct TechC<'a> {
    /// View offset c.
    pub offset: u64,
    /// View width K (1..=64).
    pub bits: u32,
    /// Low bits s dropped before the comparisons (0 for [`TechVar::View`]).
    pub shift: u32,
    /// Output ring M (1..=64).
    pub ring: u32,
    /// Degree d (≤ 8).
    pub degree: usize,
    /// Outputs q (≥ 1).
    pub outputs: usize,
    /// Interior cuts on the compared value (m − 1 of them).
    pub cuts: &'a [u64],
    /// Per interval, the centre of the polynomial variable (m).
    pub centers: &'a [u64],
    /// `coeffs[(i·q + o)·(d+1) + j]`: coefficient of u^j of output o on interval i.
    pub coeffs: &'a [u64],
    /// The polynomial variable.
    pub var: TechVar,
}

impl TechC<'_> {
    /// Intervals m = cuts + 1 (DCF points per element).
    pub fn intervals(&self) -> usize {
        self.cuts.len() + 1
    }

    /// Bits of the comparisons (the DCF's input width): K − s.
    pub fn cmp_bits(&self) -> u32 {
        self.bits - self.shift
    }

    /// Whether the wrap terms U are needed (View variable with K < M).
    pub fn wrap_terms(&self) -> bool {
        self.var == TechVar::View && pow2(self.bits) & mask(self.ring) != 0
    }

    /// Check the descriptor against its inputs (no panic on any of them later).
    ///
    /// # Errors
    /// [`BackendError::Gate`] for an invalid descriptor or keys of another shape;
    /// `LengthMismatch` for share or table lengths.
    pub fn check(
        &self,
        party: u8,
        keys: &DcfKeys<'_>,
        rpow: &Shares<'_>,
        cnt: usize,
    ) -> Result<()> {
        check_party(party)?;
        if self.bits == 0 || self.bits > 64 || self.shift >= self.bits {
            return bad(format!(
                "technique (c): view {} bits, shift {}",
                self.bits, self.shift
            ));
        }
        if self.var == TechVar::View && self.shift != 0 {
            return bad("technique (c) on the view variable with a shift");
        }
        if self.ring == 0 || self.ring > 64 || self.degree > 8 || self.outputs == 0 {
            return bad(format!(
                "technique (c): ring {}, degree {}, {} outputs",
                self.ring, self.degree, self.outputs
            ));
        }
        let m = self.intervals();
        let p = self.degree + 1;
        check_len("technique (c) centres", Some(m), self.centers.len())?;
        check_len(
            "technique (c) coefficients",
            m.checked_mul(self.outputs).and_then(|x| x.checked_mul(p)),
            self.coeffs.len(),
        )?;
        check_len(
            "technique (c) shares of r^k",
            cnt.checked_mul(self.degree),
            rpow.len(),
        )?;
        check_dcf(keys, party, self.cmp_bits(), self.ring, p, cnt)
    }
}

/// The DCF points of a technique-(c) component: per element, h then h ⊖ a per cut.
pub fn techc_points(d: &TechC<'_>, xhat: &[u64]) -> Vec<u64> {
    let hm = mask(d.cmp_bits());
    let vm = mask(d.bits);
    let mut pts = Vec::with_capacity(xhat.len() * d.intervals());
    for &x in xhat {
        let h = (x.wrapping_add(d.offset) & vm) >> d.shift;
        pts.push(h);
        for &a in d.cuts {
            pts.push(h.wrapping_sub(a) & hm);
        }
    }
    pts
}

/// [`crate::Backend::techc_eval`] on the host: the DCF through `be.dcf_eval`, the
/// recombination with rayon.
///
/// ```text
/// [L(a)·r^k] = D_k(h ⊖ a) − D_k(h) + 1{h < a}·[r^k],   [w·L(a)·r^k] = 1{h < a}·D_k(h ⊖ a)
/// [F_o] = Σ_i Σ_k (−1)^k Σ_{j≥k} C(j,k)·c_{i,o,j}·( z_i^{j−k}·T_ik + ((z_i+2^K)^{j−k} − z_i^{j−k})·U_ik )
/// ```
///
/// # Errors
/// As [`TechC::check`]; the backend's DCF errors.
pub fn techc_host<B: Backend + ?Sized>(
    be: &B,
    d: &TechC<'_>,
    party: u8,
    keys: &DcfKeys<'_>,
    rpow: Shares<'_>,
    xhat: &[u64],
) -> Result<Vec<u64>> {
    let cnt = xhat.len();
    d.check(party, keys, &rpow, cnt)?;
    let rpow = rpow.to_host()?;
    let rpow: &[u64] = &rpow;
    let (dg, q) = (d.degree, d.outputs);
    let p = dg + 1;
    let m = d.intervals();
    let pts = techc_points(d, xhat);
    let dv = be.dcf_eval(keys, &pts, m)?; // [e][pt][k]
    let vm = mask(d.bits);
    let rm = mask(d.ring);
    let two_k = pow2(d.bits) & rm;
    let need_u = d.wrap_terms();
    let j = party as u64;
    let bin: Vec<u64> = (0..p * p).map(|x| binom(x / p, x % p)).collect();
    let mut flat = vec![0u64; cnt * q];
    flat.par_chunks_mut(q)
        .enumerate()
        .with_min_len(256)
        .for_each_init(
            || {
                (
                    vec![0u64; (m + 1) * p],
                    vec![0u64; (m + 1) * p],
                    vec![0u64; p],
                    vec![0u64; p],
                )
            },
            |(lp, wl, zp, dp), (e, acc)| {
                let de = &dv[e * m * p..(e + 1) * m * p];
                let y = xhat[e].wrapping_add(d.offset);
                let h = (y & vm) >> d.shift;
                let zb = match d.var {
                    TechVar::View => y & vm,
                    TechVar::Full => y,
                };
                let rp = |kk: usize| -> u64 {
                    if kk == 0 {
                        j
                    } else {
                        rpow[e * dg + kk - 1]
                    }
                };
                // Prefix shares over boundaries c = 0..=m: L[c][k], WL[c][k] (c = 0: zero).
                for kk in 0..p {
                    lp[kk] = 0;
                    wl[kk] = 0;
                }
                for (ci, &a) in d.cuts.iter().enumerate() {
                    let c = ci + 1;
                    let lt = ((h < a) as u64).wrapping_neg();
                    for kk in 0..p {
                        let dc = de[c * p + kk];
                        lp[c * p + kk] = dc.wrapping_sub(de[kk]).wrapping_add(lt & rp(kk));
                        wl[c * p + kk] = lt & dc;
                    }
                }
                for kk in 0..p {
                    lp[m * p + kk] = rp(kk);
                    wl[m * p + kk] = de[kk];
                }
                for a in acc.iter_mut() {
                    *a = 0;
                }
                for i in 0..m {
                    let z = zb.wrapping_sub(d.centers[i]);
                    let z1 = z.wrapping_add(two_k);
                    let (mut a, mut b) = (1u64, 1u64);
                    for jj in 0..p {
                        zp[jj] = a;
                        dp[jj] = b.wrapping_sub(a);
                        a = a.wrapping_mul(z);
                        b = b.wrapping_mul(z1);
                    }
                    for kk in 0..p {
                        let t = lp[(i + 1) * p + kk].wrapping_sub(lp[i * p + kk]);
                        let u = wl[(i + 1) * p + kk].wrapping_sub(wl[i * p + kk]);
                        let neg = kk % 2 == 1;
                        for (o, ao) in acc.iter_mut().enumerate() {
                            let c = &d.coeffs[(i * q + o) * p..(i * q + o + 1) * p];
                            let (mut ca, mut cb) = (0u64, 0u64);
                            for jj in kk..p {
                                let cc = bin[jj * p + kk].wrapping_mul(c[jj]);
                                ca = ca.wrapping_add(cc.wrapping_mul(zp[jj - kk]));
                                if need_u {
                                    cb = cb.wrapping_add(cc.wrapping_mul(dp[jj - kk]));
                                }
                            }
                            let term = ca.wrapping_mul(t).wrapping_add(cb.wrapping_mul(u));
                            *ao = if neg {
                                ao.wrapping_sub(term)
                            } else {
                                ao.wrapping_add(term)
                            };
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a &= rm;
                }
            },
        );
    Ok(transpose_out(&flat, q, cnt))
}

// ---------------------------------------------------------------------------------------------
// Floor

/// How a floor's wrap bit is obtained (`suf_compiler::spec::Wrap`), with its key material.
#[derive(Clone, Copy, Debug)]
pub enum FloorWrap<'k, 'a> {
    /// A K-bit DCF (payload as the c-DCF's), evaluated at the view value.
    Dcf(&'k DcfKeys<'a>),
    /// Free wrap (full-width view, x_u < 2^{n−1} guaranteed): shares of ρ_T (and ρ_0·ρ_T with
    /// the selector), `p` per element; the wrap share is (1 − ŷ_T)·share.
    Free(Shares<'k>),
    /// No wrap term.
    Drop,
}

/// A floor with an optional LSB selector (fss-identities §5): `out_o = γ_o·Z + κ_o·sel` with
/// `Z = sel·⌊x_u/2^t⌋`, mod 2^n.
#[derive(Clone, Copy, Debug)]
pub struct FloorDesc<'a> {
    /// View offset c.
    pub offset: u64,
    /// View width K.
    pub bits: u32,
    /// Shift t (1 ≤ t < K).
    pub shift: u32,
    /// Ring width n (outputs and DCF payloads are mod 2^n).
    pub ring: u32,
    /// Whether the LSB selector multiplies the result.
    pub select: bool,
    /// γ per output.
    pub gamma: &'a [u64],
    /// κ per output.
    pub kappa: &'a [u64],
}

impl FloorDesc<'_> {
    /// Payload elements p of both DCFs: 1, or 2 with the selector.
    pub fn payload(&self) -> usize {
        1 + self.select as usize
    }

    /// Dealer shares per element: 3 with the selector (ρ_H, ρ_0, ρ_0·ρ_H), else 1 (ρ_H).
    pub fn shares_per_elem(&self) -> usize {
        if self.select {
            3
        } else {
            1
        }
    }

    /// Check the descriptor against its inputs.
    ///
    /// # Errors
    /// As [`TechC::check`].
    pub fn check(
        &self,
        party: u8,
        ckeys: &DcfKeys<'_>,
        wrap: &FloorWrap<'_, '_>,
        sh: &Shares<'_>,
        cnt: usize,
    ) -> Result<()> {
        check_party(party)?;
        if self.ring < 2
            || self.ring > 64
            || self.bits == 0
            || self.bits > self.ring
            || self.shift == 0
            || self.shift >= self.bits
        {
            return bad(format!(
                "floor: view {} bits, shift {}, ring {}",
                self.bits, self.shift, self.ring
            ));
        }
        if self.gamma.is_empty() {
            return bad("floor without outputs");
        }
        check_len("floor kappa", Some(self.gamma.len()), self.kappa.len())?;
        let p = self.payload();
        check_dcf(ckeys, party, self.shift, self.ring, p, cnt)?;
        match wrap {
            FloorWrap::Dcf(w) => check_dcf(w, party, self.bits, self.ring, p, cnt)?,
            FloorWrap::Free(fr) => {
                if self.bits != self.ring {
                    return bad("floor: the free wrap needs the full-width view");
                }
                check_len("floor free-wrap shares", cnt.checked_mul(p), fr.len())?;
            }
            FloorWrap::Drop => {}
        }
        check_len(
            "floor dealer shares",
            cnt.checked_mul(self.shares_per_elem()),
            sh.len(),
        )
    }
}

/// [`crate::Backend::floor_eval`] on the host.
///
/// ```text
/// ⌊x_u/2^t⌋ = ŷ_H − ρ_H − c_L + 2^{K−t}·w,  c_L = 1{ŷ_L < ρ_L};  (1 − ℓ) = (1 − ŷ_0) + (2ŷ_0 − 1)·ρ_0
/// ```
///
/// # Errors
/// As [`FloorDesc::check`]; the backend's DCF errors.
pub fn floor_host<B: Backend + ?Sized>(
    be: &B,
    d: &FloorDesc<'_>,
    party: u8,
    ckeys: &DcfKeys<'_>,
    wrap: FloorWrap<'_, '_>,
    sh: Shares<'_>,
    xhat: &[u64],
) -> Result<Vec<u64>> {
    let cnt = xhat.len();
    d.check(party, ckeys, &wrap, &sh, cnt)?;
    let sh = sh.to_host()?;
    let sh: &[u64] = &sh;
    let (k, t, n) = (d.bits, d.shift, d.ring);
    let sel = d.select;
    let p = d.payload();
    let vm = mask(k);
    let yh: Vec<u64> = xhat
        .iter()
        .map(|&x| x.wrapping_add(d.offset) & vm)
        .collect();
    let lows: Vec<u64> = yh.iter().map(|&y| y & mask(t)).collect();
    let cv = be.dcf_eval(ckeys, &lows, 1)?;
    let wv: Vec<u64> = match wrap {
        FloorWrap::Dcf(w) => be.dcf_eval(w, &yh, 1)?,
        FloorWrap::Free(fr) => {
            let fr = fr.to_host()?;
            (0..cnt * p)
                .map(|i| {
                    let yt = (yh[i / p] >> (n - 1)) & 1;
                    (1 - yt).wrapping_mul(fr[i])
                })
                .collect()
        }
        FloorWrap::Drop => vec![0u64; cnt * p],
    };
    let nm = mask(n);
    let fk = pow2(k - t);
    let j = party as u64;
    let q = d.gamma.len();
    let mut out = vec![0u64; q * cnt];
    for e in 0..cnt {
        let y = yh[e];
        let yhi = y >> t;
        let (selv, z) = if sel {
            let g = 1 - (y & 1);
            let hh = (2 * (y & 1)).wrapping_sub(1);
            let (rh, r0, r0rh) = (sh[e * 3], sh[e * 3 + 1], sh[e * 3 + 2]);
            let selv = g.wrapping_mul(j).wrapping_add(hh.wrapping_mul(r0));
            let sel_rh = g.wrapping_mul(rh).wrapping_add(hh.wrapping_mul(r0rh));
            let sel_c = g
                .wrapping_mul(cv[e * 2])
                .wrapping_add(hh.wrapping_mul(cv[e * 2 + 1]));
            let sel_w = g
                .wrapping_mul(wv[e * 2])
                .wrapping_add(hh.wrapping_mul(wv[e * 2 + 1]));
            let z = yhi
                .wrapping_mul(selv)
                .wrapping_sub(sel_rh)
                .wrapping_sub(sel_c)
                .wrapping_add(fk.wrapping_mul(sel_w));
            (selv, z)
        } else {
            let z = yhi
                .wrapping_mul(j)
                .wrapping_sub(sh[e])
                .wrapping_sub(cv[e])
                .wrapping_add(fk.wrapping_mul(wv[e]));
            (j, z)
        };
        for o in 0..q {
            out[o * cnt + e] = d.gamma[o]
                .wrapping_mul(z)
                .wrapping_add(d.kappa[o].wrapping_mul(selv))
                & nm;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Sign / Halves (the MSB trick)

/// Two affine halves of a K-bit view split at 2^{K−1} (`SignSpec`; `HalvesSpec` is K = n):
/// one (K − 1)-bit DCF with payload σ·(1, r_M), σ = 1 − 2ρ_T, and shares (r_M, ρ_T, ρ_T·r_M)
/// (slope) or ρ_T (no slope).
#[derive(Clone, Copy, Debug)]
pub struct SignDesc<'a> {
    /// View offset c.
    pub offset: u64,
    /// View width K (2..=64).
    pub bits: u32,
    /// Output ring M (1..=64).
    pub ring: u32,
    /// Per output: (slope, intercept) on the lower half.
    pub lo: &'a [(u64, u64)],
    /// Per output: (slope, intercept) on the upper half.
    pub hi: &'a [(u64, u64)],
}

impl SignDesc<'_> {
    /// Whether any slope is non-zero (payload (σ, σ·r_M) and three shares per element).
    pub fn has_slope(&self) -> bool {
        self.lo.iter().chain(self.hi).any(|&(a, _)| a != 0)
    }

    /// Dealer shares per element.
    pub fn shares_per_elem(&self) -> usize {
        if self.has_slope() {
            3
        } else {
            1
        }
    }

    /// Check the descriptor against its inputs.
    ///
    /// # Errors
    /// As [`TechC::check`].
    pub fn check(&self, party: u8, keys: &DcfKeys<'_>, sh: &Shares<'_>, cnt: usize) -> Result<()> {
        check_party(party)?;
        if self.bits < 2 || self.bits > 64 || self.ring == 0 || self.ring > 64 {
            return bad(format!("sign: view {} bits, ring {}", self.bits, self.ring));
        }
        if self.lo.is_empty() {
            return bad("sign without outputs");
        }
        check_len(
            "sign upper-half coefficients",
            Some(self.lo.len()),
            self.hi.len(),
        )?;
        let p = 1 + self.has_slope() as usize;
        check_dcf(keys, party, self.bits - 1, self.ring, p, cnt)?;
        check_len(
            "sign dealer shares",
            cnt.checked_mul(self.shares_per_elem()),
            sh.len(),
        )
    }
}

/// [`crate::Backend::sign_eval`] on the host.
///
/// ```text
/// [b] = ŷ_T + (1 − 2ŷ_T)·[u],  u = ρ_T + σ·w_h;   [b·x_f] = ŷ_f·[b] − [b·r_M]
/// ```
///
/// # Errors
/// As [`SignDesc::check`]; the backend's DCF errors.
pub fn sign_host<B: Backend + ?Sized>(
    be: &B,
    d: &SignDesc<'_>,
    party: u8,
    keys: &DcfKeys<'_>,
    sh: Shares<'_>,
    xhat: &[u64],
) -> Result<Vec<u64>> {
    let cnt = xhat.len();
    d.check(party, keys, &sh, cnt)?;
    let sh = sh.to_host()?;
    let sh: &[u64] = &sh;
    let h = d.bits - 1;
    let slope = d.has_slope();
    let p = 1 + slope as usize;
    let ns = d.shares_per_elem();
    let pts: Vec<u64> = xhat
        .iter()
        .map(|&x| x.wrapping_add(d.offset) & mask(h))
        .collect();
    let ev = be.dcf_eval(keys, &pts, 1)?;
    let rm = mask(d.ring);
    let j = party as u64;
    let q = d.lo.len();
    let mut out = vec![0u64; q * cnt];
    for e in 0..cnt {
        let yf = xhat[e].wrapping_add(d.offset);
        let yt = ((yf & mask(d.bits)) >> h) & 1;
        let f = 1u64.wrapping_sub(2 * yt); // 1 − 2ŷ_T
        let u = sh[e * ns + if slope { 1 } else { 0 }].wrapping_add(ev[e * p]);
        let b = (yt & j).wrapping_add(f.wrapping_mul(u));
        let (xf, bxf) = if slope {
            let rf = sh[e * ns];
            let urf = sh[e * ns + 2].wrapping_add(ev[e * p + 1]);
            let brf = yt.wrapping_mul(rf).wrapping_add(f.wrapping_mul(urf));
            (
                yf.wrapping_mul(j).wrapping_sub(rf),
                yf.wrapping_mul(b).wrapping_sub(brf),
            )
        } else {
            (0, 0)
        };
        for o in 0..q {
            let (a0, b0) = d.lo[o];
            let (a1, b1) = d.hi[o];
            let v = a0
                .wrapping_mul(xf)
                .wrapping_add(b0.wrapping_mul(j))
                .wrapping_add(a1.wrapping_sub(a0).wrapping_mul(bxf))
                .wrapping_add(b1.wrapping_sub(b0).wrapping_mul(b));
            out[o * cnt + e] = v & rm;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Bit (XOR shares of a Boolean of the high part)

/// A Boolean of h = ⌊x_u/2^s⌋, piecewise constant over the cuts, as XOR shares (`BitSpec`):
/// one DPF comparison key on K − s bits.
#[derive(Clone, Copy, Debug)]
pub struct BitDesc<'a> {
    /// View offset c.
    pub offset: u64,
    /// View width K.
    pub bits: u32,
    /// Low bits s dropped.
    pub shift: u32,
    /// Interior cuts on h.
    pub cuts: &'a [u64],
    /// The bit on each interval (cuts + 1).
    pub values: &'a [bool],
}

impl BitDesc<'_> {
    /// High-part bits K − s (the DPF's domain).
    pub fn high_bits(&self) -> u32 {
        self.bits - self.shift
    }

    /// Check the descriptor against `keys` (one DPF key per element of `cnt`, the party's,
    /// over K − s bits): what every backend checks before any work.
    ///
    /// # Errors
    /// [`BackendError::Gate`] for a malformed descriptor or keys of another shape,
    /// [`BackendError::LengthMismatch`] for interval values that do not match the cuts.
    pub fn check(&self, party: u8, keys: &DpfView<'_>, cnt: usize) -> Result<()> {
        check_party(party)?;
        if self.bits == 0 || self.bits > 64 || self.shift == 0 || self.shift >= self.bits {
            return bad(format!(
                "bit: view {} bits, shift {}",
                self.bits, self.shift
            ));
        }
        check_len(
            "bit interval values",
            Some(self.cuts.len() + 1),
            self.values.len(),
        )?;
        let hb = self.high_bits();
        if keys.count() != cnt || keys.party() != party || keys.n() != hb {
            return bad(format!(
                "DPF batch (party {}, {} bits, {} keys) does not match (party {party}, {hb}, {cnt})",
                keys.party(),
                keys.n(),
                keys.count()
            ));
        }
        Ok(())
    }
}

/// [`crate::Backend::bit_eval`] on the host (the comparisons through `be.dpf_lt_eval`):
/// bit = values[0] ⊕ ⊕_j (values[j−1] ⊕ values[j])·(1 ⊕ L(a_j)),
/// 1 ⊕ L(a) = 1 ⊕ C(ĥ ⊖ a) ⊕ C(ĥ) ⊕ 1{ĥ < a}; party 0 adds the public terms.
///
/// # Errors
/// [`BackendError::Gate`] for a descriptor or keys of another shape; the backend's DPF errors.
pub fn bit_host<B: Backend + ?Sized>(
    be: &B,
    d: &BitDesc<'_>,
    party: u8,
    keys: &DpfView<'_>,
    xhat: &[u64],
) -> Result<Vec<u64>> {
    let cnt = xhat.len();
    d.check(party, keys, cnt)?;
    let keys = keys.to_keys()?;
    let hb = d.high_bits();
    let hm = mask(hb);
    let vm = mask(d.bits);
    let m = d.cuts.len() + 1;
    let hh: Vec<u64> = xhat
        .iter()
        .map(|&x| (x.wrapping_add(d.offset) & vm) >> d.shift)
        .collect();
    let mut pts = Vec::with_capacity(cnt * m);
    for &h in &hh {
        pts.push(h);
        for &a in d.cuts {
            pts.push(h.wrapping_sub(a) & hm);
        }
    }
    let c = be.dpf_lt_eval(&keys, &pts, m)?;
    let p0 = (party == 0) as u8;
    Ok((0..cnt)
        .map(|e| {
            let ce = &c[e * m..(e + 1) * m];
            let mut out = p0 & d.values[0] as u8;
            for (j, &a) in d.cuts.iter().enumerate() {
                if d.values[j] != d.values[j + 1] {
                    let public = p0 & (1 ^ (hh[e] < a) as u8);
                    out ^= ce[j + 1] ^ ce[0] ^ public;
                }
            }
            out as u64
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::binom;

    #[test]
    fn shares_materialize_as_the_dealer_wrote_them() {
        use super::Shares;
        use suf_core::prg::Csprng;
        use suf_fss::KeyRef;
        let vals: Vec<u64> = (0..37u64)
            .map(|i| (i * 0x9e37_79b9) & ((1 << 37) - 1))
            .collect();
        let packed = suf_core::pack::pack(&vals, 37);
        let p = Shares::Packed {
            bytes: KeyRef::detached(&packed),
            bits: 37,
            count: 37,
        };
        assert_eq!((p.len(), p.to_host().unwrap().to_vec()), (37, vals.clone()));
        let mut g = Csprng::from_seed([4; 16]);
        let want: Vec<u64> = (0..40).map(|_| g.next_u64() & ((1 << 50) - 1)).collect();
        let s = Shares::Seed {
            seed: [4; 16],
            bits: 50,
            count: 40,
        };
        assert_eq!(s.to_host().unwrap().to_vec(), want);
        assert_eq!(Shares::Host(&vals).to_host().unwrap().to_vec(), vals);
        // Wrong lengths, padding bits and widths are errors, never panics.
        let short = Shares::Packed {
            bytes: KeyRef::detached(&packed[1..]),
            bits: 37,
            count: 37,
        };
        assert!(short.to_host().is_err());
        let mut pad = packed.clone();
        *pad.last_mut().unwrap() |= 0x80;
        let padded = Shares::Packed {
            bytes: KeyRef::detached(&pad),
            bits: 37,
            count: 37,
        };
        assert!(padded.to_host().is_err());
        for bits in [0u32, 65] {
            assert!(Shares::Seed {
                seed: [0; 16],
                bits,
                count: 1
            }
            .to_host()
            .is_err());
            let b = Shares::Packed {
                bytes: KeyRef::detached(&packed),
                bits,
                count: 1,
            };
            assert!(b.to_host().is_err());
        }
    }

    #[test]
    fn binomials_are_exact_and_zero_above_the_top() {
        let pascal = [[1u64, 0, 0, 0], [1, 1, 0, 0], [1, 2, 1, 0], [1, 3, 3, 1]];
        for (j, row) in pascal.iter().enumerate() {
            for (k, &v) in row.iter().enumerate() {
                assert_eq!(binom(j, k), v, "C({j}, {k})");
            }
        }
        assert_eq!(binom(8, 4), 70);
        // The fuzz finding: k > j used to underflow (a panic with overflow checks).
        assert_eq!(binom(1, 5), 0);
        assert_eq!(binom(0, 1), 0);
    }
}
