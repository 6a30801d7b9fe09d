//! The compiler: every [`Component`] of a [`GateSpec`] becomes a dealer procedure (keys for a
//! batch of fresh input masks) and a party procedure (shares of the outputs from the public
//! x̂ = x + r and the key), and [`SpecGate`] wraps a spec as a runtime [`GateImpl`].
//!
//! All comparisons come from DCFs with arithmetic payloads (Boyle, Chandran, Gilboa, Gupta,
//! Ishai, Kumar, Rathee, "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure
//! Computation", Eurocrypt 2021 — BCG+21: DCF, multiple interval containment, splines) moved
//! onto the public masked value as in `reference/fss-identities.md` §4(a); no output needs a
//! conversion round. Key and message shapes depend on the spec and the batch size only.
//!
//! # Notation (per element)
//! x̂ = x + r mod 2^n is public; the view is x_u = (x + c) mod 2^K, so ŷ := (x̂ + c) mod 2^K
//! and ρ := r mod 2^K satisfy, **over the integers**,
//! `x_u = ŷ − ρ + 2^K·w` with `w = C(ŷ)`, `C(y) := 1{y < ρ}` (1{·} is an indicator, [·] a
//! party's additive share).
//!
//! # Technique (c) on a reduced-width view ([`PolySpec`])
//! One DCF on K bits with point ρ and payload (1, ρ, …, ρ^d) ∈ Z_{2^M}^{d+1}; D_k(y) = the
//! party's share of ρ^k·C(y). For a cut a ∈ (0, 2^K), `L(a) := 1{x_u < a}`:
//! ```text
//! [L(a)·ρ^k]   = D_k(ŷ ⊖ a) − D_k(ŷ) + 1{ŷ < a}·[ρ^k]        (fss-identities §4(c))
//! [w·L(a)·ρ^k] = 1{ŷ < a}·D_k(ŷ ⊖ a)                            (w = 1 forces ŷ ⊖ a = ŷ + 2^K − a)
//! L(0) = 0, L(2^K) = 1, w·L(2^K) = w = C(ŷ)
//! ```
//! Interval indicators are differences: `T_ik = [1_i ρ^k]`, `U_ik = [1_i w ρ^k]`. With
//! z_i = ŷ − e_i and w a bit, (z_i + 2^K w)^e = z_i^e + w·((z_i + 2^K)^e − z_i^e), hence
//! ```text
//! [F_o] = Σ_i Σ_k (−1)^k Σ_{j≥k} C(j,k)·c_{i,o,j}·( z_i^{j−k}·T_ik + ((z_i+2^K)^{j−k} − z_i^{j−k})·U_ik )
//! ```
//! all mod 2^M. Evaluations: ŷ and ŷ ⊖ a for each interior cut (m per element); for K ≥ M the
//! U terms vanish. The dealer ships the DCF key and shares of ρ, …, ρ^d — nothing per interval.
//!
//! # Halves ([`HalvesSpec`], the "MSB trick")
//! ```text
//! K = n, h = n − 1, ŷ = 2^h·ŷ_T + ŷ_L, ρ = 2^h·ρ_T + ρ_L, w_h = 1{ŷ_L < ρ_L}  (h-bit DCF,
//!     payload σ·(1, ρ), σ = 1 − 2ρ_T)
//! b = 1{x_u ≥ 2^h} = ŷ_T ⊕ ρ_T ⊕ w_h;   u = ρ_T ⊕ w_h = ρ_T + σ·w_h
//! [b] = ŷ_T + (1 − 2ŷ_T)·[u],   [bρ] = ŷ_T·[ρ] + (1 − 2ŷ_T)·([ρ_T ρ] + [σρ·w_h])
//! [b·x_u] = ŷ·[b] − [bρ]        (x_u ≡ ŷ − ρ mod 2^n)
//! ```
//! One evaluation on n − 1 bits.
//!
//! # Floor ([`FloorSpec`], fss-identities §5 generalised)
//! ```text
//! ŷ = 2^t·ŷ_H + ŷ_L, ρ = 2^t·ρ_H + ρ_L:   ⌊x_u/2^t⌋ = ŷ_H − ρ_H − c_L + 2^{K−t}·w
//! c_L = 1{ŷ_L < ρ_L} (t-bit DCF);  w from a K-bit DCF, or w = ρ_T·(1 − ŷ_T) (Wrap::Free)
//! ```
//! [`Wrap::Free`] needs K = n and the guarantee x_u < 2^{n−1}. The selector ℓ = x_u mod 2 =
//! ŷ_0 ⊕ ρ_0 is affine in the dealer's bit ρ_0: (1 − ℓ) = (1 − ŷ_0) + (2ŷ_0 − 1)·ρ_0, so every
//! product (1 − ℓ)·c_L, (1 − ℓ)·w, (1 − ℓ)·ρ_H is linear in DCF outputs once the payloads
//! carry ρ_0 (payload (1, ρ_0)) and the dealer shares ρ_0·ρ_H (and ρ_0·ρ_T).
//!
//! Shares of dealer values: party 1's come from a 16-byte seed in its key, party 0's are
//! stored (bit-packed); DCF keys are `suf_fss::dcf` batches.
//!
//! The party side here only parses and checks the key parts and builds a descriptor of
//! `suf_backend::gate`; the DCF evaluation and the recombination above run behind the backend
//! (`Backend::techc_eval`, `floor_eval`, `sign_eval`, `bit_eval`; CPU code in
//! `suf_backend::gate`, device kernels in `suf-cuda`).

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use suf_backend::{Backend, BitDesc, FloorDesc, FloorWrap, Shares, SignDesc, TechC, TechVar};
use suf_core::pack::{pack_to, packed_len};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::dcf::DcfKeys;
use suf_fss::KeyRef;
use suf_runtime::gate::{joined_len, split_parts, GateImpl, PartsBlob};
use suf_runtime::ir::Dtype;

use crate::error::{CompilerError, Result};
use crate::spec::{
    mask, BitSpec, Component, FloorSpec, GateSpec, HalvesSpec, HighSpec, PolySpec, SignSpec, Wrap,
};

fn key_err<T>(s: impl Into<String>) -> Result<T> {
    Err(CompilerError::Key(s.into()))
}

/// Values per task of [`deal_shares`] (a multiple of 8, so that every chunk's packing
/// starts on a byte boundary of the packed part).
const SHARE_CHUNK: usize = 1 << 13;
/// Values from which [`deal_shares`] splits its work over rayon.
const SHARE_PAR_MIN: usize = 1 << 15;

/// Shares of dealer values: party 0 gets the packed corrected shares
/// `vals[i] − low64(AES_σ(i)) mod 2^bits` (i-th draw of `Csprng::from_seed(σ)`), party 1 the
/// seed σ, drawn from `rng`. Written straight into the two parts' slots; the chunks of values
/// are independent (element i of the seed's stream is counter block i,
/// `Csprng::fill_masked_at`), so a large part is corrected and packed in parallel with the
/// bytes of the serial loop.
fn deal_shares(vals: &[u64], bits: u32, rng: &mut Csprng, out: [&mut [u8]; 2]) -> Result<()> {
    let [o0, o1] = out;
    if o0.len() != packed_len(vals.len(), bits) || o1.len() != 16 {
        return key_err(format!(
            "share parts of {} and {} bytes for {} values of {bits} bits (a key size bug)",
            o0.len(),
            o1.len(),
            vals.len()
        ));
    }
    let seed = rng.seed();
    o1.copy_from_slice(&seed);
    let g = Csprng::from_seed(seed);
    let m = mask(bits);
    let chunk_bytes = SHARE_CHUNK * bits as usize / 8;
    let work = |(ci, (v, o)): (usize, (&[u64], &mut [u8]))| {
        let mut s = vec![0u64; v.len()];
        g.fill_masked_at((ci * SHARE_CHUNK) as u128, u64::MAX, &mut s);
        for (x, &y) in s.iter_mut().zip(v) {
            *x = y.wrapping_sub(*x) & m;
        }
        pack_to(&s, bits, o);
    };
    if vals.len() >= SHARE_PAR_MIN {
        vals.par_chunks(SHARE_CHUNK)
            .zip(o0.par_chunks_mut(chunk_bytes))
            .enumerate()
            .for_each(work);
    } else {
        vals.chunks(SHARE_CHUNK)
            .zip(o0.chunks_mut(chunk_bytes))
            .enumerate()
            .for_each(work);
    }
    Ok(())
}

/// Both parties' key blobs of one gate batch, written in place. The lengths of all parts are
/// known before any key is made (the closed forms of [`comp_key_parts`]), so each blob is
/// allocated once ([`PartsBlob`]: zeroed, a pooled buffer when one is free) and every part is
/// generated or packed straight into its slot — no key in a buffer of its own, no
/// serialization copy, no join copy (which, with the page faults of those fresh buffers, was
/// most of a large batch's host time besides DCF generation). The `deal_*` procedures emit
/// their parts in order; a part of another length than the closed form is an error.
struct KeyOut {
    blobs: [PartsBlob; 2],
    next: usize,
}

impl KeyOut {
    fn new(lens: &[Vec<usize>; 2]) -> Result<KeyOut> {
        let blob = |l: &[usize]| {
            PartsBlob::new(l).ok_or_else(|| CompilerError::Key("key blob too large".into()))
        };
        Ok(KeyOut {
            blobs: [blob(&lens[0])?, blob(&lens[1])?],
            next: 0,
        })
    }

    /// Both parties' slots of the next part.
    fn next(&mut self) -> Result<[&mut [u8]; 2]> {
        let i = self.next;
        if i >= self.blobs[0].parts() {
            return key_err("more key parts than the key sizes give (a bug)");
        }
        self.next += 1;
        let [a, b] = &mut self.blobs;
        Ok([a.part_mut(i), b.part_mut(i)])
    }

    /// A seeded DCF batch, generated into the next part (`suf_fss::dealer::dcf_gen_into`).
    fn dcf(
        &mut self,
        n: u32,
        m: u32,
        p: usize,
        alphas: &[u64],
        betas: &[u64],
        seed: [u8; 16],
    ) -> Result<()> {
        let out = self.next()?;
        Ok(suf_fss::dealer::dcf_gen_into(
            n, m, p, alphas, betas, seed, out,
        )?)
    }

    /// Dealer shares of `vals` ([`deal_shares`]) into the next part.
    fn shares(&mut self, vals: &[u64], bits: u32, rng: &mut Csprng) -> Result<()> {
        let out = self.next()?;
        deal_shares(vals, bits, rng, out)
    }

    /// Both parties' bytes of the next part, copied in (small parts: DPF batches).
    fn bytes(&mut self, parts: [&[u8]; 2]) -> Result<()> {
        for (o, b) in self.next()?.into_iter().zip(parts) {
            if o.len() != b.len() {
                return key_err(format!(
                    "a key part of {} bytes where the key sizes give {} (a bug)",
                    b.len(),
                    o.len()
                ));
            }
            o.copy_from_slice(b);
        }
        Ok(())
    }

    /// An empty part.
    fn empty(&mut self) -> Result<()> {
        self.bytes([&[], &[]])
    }

    /// The finished blobs (every part written).
    fn finish(self) -> Result<[Vec<u8>; 2]> {
        if self.next != self.blobs[0].parts() {
            return key_err(format!(
                "{} key parts written of {} (a bug)",
                self.next,
                self.blobs[0].parts()
            ));
        }
        let [a, b] = self.blobs;
        Ok([a.into_bytes(), b.into_bytes()])
    }
}

/// The dealer shares of a key part, where they lie (no copy): party 0's packed values (length
/// checked here; the padding bits when they are unpacked), party 1's 16-byte seed. The backend
/// produces the values in its own memory (`suf_backend::Shares`).
fn shares_of<'a>(part: KeyRef<'a>, party: u8, bits: u32, count: usize) -> Result<Shares<'a>> {
    if party == 1 {
        let seed: [u8; 16] = part
            .bytes
            .try_into()
            .map_err(|_| CompilerError::Key(format!("share seed of {} bytes", part.len())))?;
        return Ok(Shares::Seed { seed, bits, count });
    }
    let want = suf_core::pack::packed_len(count, bits);
    if part.len() != want {
        return key_err(format!(
            "shares: {} bytes for {count} values of {bits} bits (expected {want})",
            part.len()
        ));
    }
    Ok(Shares::Packed {
        bytes: part,
        bits,
        count,
    })
}

/// A zero-copy view of a DCF part (header and length checked, no scan; see
/// `suf_fss::dcf::DcfKeys::view`), checked against the shape the component expects.
fn read_dcf<'a>(
    b: KeyRef<'a>,
    party: u8,
    n: u32,
    m: u32,
    p: usize,
    count: usize,
) -> Result<DcfKeys<'a>> {
    let k = DcfKeys::view(b)?;
    if k.party() != party || k.n() != n || k.m() != m || k.p() != p || k.count() != count {
        return key_err(format!(
            "DCF batch (party {}, {} bits, ring {}, p {}, {} keys) does not match (party {party}, {n}, {m}, {p}, {count})",
            k.party(),
            k.n(),
            k.m(),
            k.p(),
            k.count()
        ));
    }
    Ok(k)
}

// ---------------------------------------------------------------------------------------------
// Poly (technique (c), reduced width)

fn poly_parts(s: &PolySpec) -> usize {
    if s.degree > 0 {
        2
    } else {
        1
    }
}

fn deal_poly(s: &PolySpec, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    let (k, mm, d) = (s.view.bits, s.ring, s.degree);
    let km = mask(k);
    let rm = mask(mm);
    let rhos: Vec<u64> = r.iter().map(|&v| v & km).collect();
    let mut betas = Vec::with_capacity(r.len() * (d + 1));
    let mut pows = Vec::with_capacity(r.len() * d);
    for &rho in &rhos {
        let mut pw = 1u64;
        betas.push(1);
        for _ in 0..d {
            pw = pw.wrapping_mul(rho) & rm;
            betas.push(pw);
            pows.push(pw);
        }
    }
    out.dcf(k, mm, d + 1, &rhos, &betas, rng.seed())?;
    if d > 0 {
        out.shares(&pows, mm, rng)?;
    }
    Ok(())
}

fn eval_poly(
    s: &PolySpec,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    let (k, mm, d) = (s.view.bits, s.ring, s.degree);
    let cnt = xhat.len();
    let keys = read_dcf(parts[0], party, k, mm, d + 1, cnt)?;
    let rpow = if d > 0 {
        shares_of(parts[1], party, mm, cnt * d)?
    } else {
        Shares::Host(&[])
    };
    let desc = TechC {
        offset: s.view.offset,
        bits: k,
        shift: 0,
        ring: mm,
        degree: d,
        outputs: s.outputs,
        cuts: &s.cuts,
        centers: &s.centers,
        coeffs: &s.coeffs,
        var: TechVar::View,
    };
    Ok(be.techc_eval(&desc, party, &keys, rpow, xhat)?)
}

// ---------------------------------------------------------------------------------------------
// Halves (MSB trick)

fn halves_parts(_s: &HalvesSpec) -> usize {
    2
}

fn deal_halves(
    s: &HalvesSpec,
    n: u32,
    r: &[u64],
    rng: &mut Csprng,
    out: &mut KeyOut,
) -> Result<()> {
    let h = n - 1;
    let nm = mask(n);
    let rm = mask(s.ring);
    let slope = s.has_slope();
    let p = 1 + slope as usize;
    let mut alphas = Vec::with_capacity(r.len());
    let mut betas = Vec::with_capacity(r.len() * p);
    let mut sh = Vec::with_capacity(r.len() * 3);
    for &rv in r {
        let rho = rv & nm;
        let rt = rho >> h;
        let sigma = 1u64.wrapping_sub(2 * rt) & rm;
        alphas.push(rho & mask(h));
        betas.push(sigma);
        if slope {
            betas.push(sigma.wrapping_mul(rho) & rm);
            sh.push(rho & rm);
            sh.push(rt);
            sh.push(rt.wrapping_mul(rho) & rm);
        } else {
            sh.push(rt);
        }
    }
    out.dcf(h, s.ring, p, &alphas, &betas, rng.seed())?;
    out.shares(&sh, s.ring, rng)
}

fn eval_halves(
    s: &HalvesSpec,
    n: u32,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    // The halves of the full-width view are the sign component with K = n (the outputs agree
    // mod 2^M ≤ 2^n whether the variable is reduced mod 2^n or not).
    let desc = SignDesc {
        offset: s.offset,
        bits: n,
        ring: s.ring,
        lo: &s.lo,
        hi: &s.hi,
    };
    eval_sign_desc(&desc, party, parts, xhat, be)
}

fn eval_sign_desc(
    desc: &SignDesc<'_>,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    let cnt = xhat.len();
    let p = 1 + desc.has_slope() as usize;
    let keys = read_dcf(parts[0], party, desc.bits - 1, desc.ring, p, cnt)?;
    let sh = shares_of(parts[1], party, desc.ring, cnt * desc.shares_per_elem())?;
    Ok(be.sign_eval(desc, party, &keys, sh, xhat)?)
}

// ---------------------------------------------------------------------------------------------
// Floor (with optional LSB selector)

fn floor_parts(_s: &FloorSpec) -> usize {
    // c-DCF, wrap (DCF key or free-wrap shares), dealer shares
    3
}

fn deal_floor(s: &FloorSpec, n: u32, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    let (k, t) = (s.view.bits, s.shift);
    let km = mask(k);
    let sel = s.select;
    let p = 1 + sel as usize;
    let mut lows = Vec::with_capacity(r.len());
    let mut rhos = Vec::with_capacity(r.len());
    let mut betas = Vec::with_capacity(r.len() * p);
    let mut sh = Vec::with_capacity(r.len() * 3);
    let mut free = Vec::with_capacity(r.len() * 2);
    for &rv in r {
        let rho = rv & km;
        let rh = rho >> t;
        let r0 = rho & 1;
        lows.push(rho & mask(t));
        rhos.push(rho);
        betas.push(1);
        if sel {
            betas.push(r0);
            sh.extend_from_slice(&[rh, r0, r0 * rh]);
        } else {
            sh.push(rh);
        }
        if s.wrap == Wrap::Free {
            let rt = (rho >> (n - 1)) & 1;
            free.push(rt);
            if sel {
                free.push(r0 * rt);
            }
        }
    }
    out.dcf(t, n, p, &lows, &betas, rng.seed())?;
    match s.wrap {
        Wrap::Dcf => out.dcf(k, n, p, &rhos, &betas, rng.seed())?,
        Wrap::Free => out.shares(&free, n, rng)?,
        Wrap::Drop => out.empty()?,
    }
    out.shares(&sh, n, rng)
}

fn eval_floor(
    s: &FloorSpec,
    n: u32,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    let (k, t) = (s.view.bits, s.shift);
    let cnt = xhat.len();
    let p = 1 + s.select as usize;
    let ckeys = read_dcf(parts[0], party, t, n, p, cnt)?;
    let desc = FloorDesc {
        offset: s.view.offset,
        bits: k,
        shift: t,
        ring: n,
        select: s.select,
        gamma: &s.gamma,
        kappa: &s.kappa,
    };
    let sh = shares_of(parts[2], party, n, cnt * desc.shares_per_elem())?;
    match s.wrap {
        Wrap::Dcf => {
            let wkeys = read_dcf(parts[1], party, k, n, p, cnt)?;
            Ok(be.floor_eval(&desc, party, &ckeys, FloorWrap::Dcf(&wkeys), sh, xhat)?)
        }
        Wrap::Free => {
            let fr = shares_of(parts[1], party, n, cnt * p)?;
            Ok(be.floor_eval(&desc, party, &ckeys, FloorWrap::Free(fr), sh, xhat)?)
        }
        Wrap::Drop => {
            if !parts[1].is_empty() {
                return key_err("floor without wrap: unexpected wrap part");
            }
            Ok(be.floor_eval(&desc, party, &ckeys, FloorWrap::Drop, sh, xhat)?)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// High (technique (c) on the high part of a view)
//
// ŷ = (x̂ + c) mod 2^K, ρ = r mod 2^K, ĥ = ⌊ŷ/2^s⌋, ρ_H = ⌊ρ/2^s⌋. Over Z_{2^{K−s}},
// ĥ − ρ_H = ⌊x_u/2^s⌋ + 1{ŷ_L < ρ_L} =: h' (the borrow of the low s bits). One DCF on K − s
// bits with point ρ_H and payload (1, r_M, …, r_M^d), r_M = r mod 2^M (the full mask, not ρ):
// D_k(y) = [r_M^k·1{y < ρ_H}] and, identity (a) on the (K − s)-bit ring,
//     [1{h' < a}·r_M^k] = D_k(ĥ ⊖ a) − D_k(ĥ) + 1{ĥ < a}·[r_M^k].
// The polynomial variable x_f = x + c ≡ (x̂ + c) − r_M (mod 2^M) carries no view wrap, so
// [F_o] = Σ_i Σ_k (−1)^k Σ_{j≥k} C(j,k)·c_{i,o,j}·z_i^{j−k}·[1_i·r_M^k], z_i = x̂ + c − e_i.

fn high_parts(s: &HighSpec) -> usize {
    if s.degree > 0 {
        2
    } else {
        1
    }
}

fn deal_high(s: &HighSpec, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    let (k, sh, mm, d) = (s.view.bits, s.shift, s.ring, s.degree);
    let rm = mask(mm);
    let alphas: Vec<u64> = r.iter().map(|&v| (v & mask(k)) >> sh).collect();
    let mut betas = Vec::with_capacity(r.len() * (d + 1));
    let mut pows = Vec::with_capacity(r.len() * d);
    for &rv in r {
        let rf = rv & rm;
        let mut pw = 1u64;
        betas.push(1);
        for _ in 0..d {
            pw = pw.wrapping_mul(rf) & rm;
            betas.push(pw);
            pows.push(pw);
        }
    }
    out.dcf(k - sh, mm, d + 1, &alphas, &betas, rng.seed())?;
    if d > 0 {
        out.shares(&pows, mm, rng)?;
    }
    Ok(())
}

fn eval_high(
    s: &HighSpec,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    let (hb, mm, d) = (s.high_bits(), s.ring, s.degree);
    let cnt = xhat.len();
    let keys = read_dcf(parts[0], party, hb, mm, d + 1, cnt)?;
    let rpow = if d > 0 {
        shares_of(parts[1], party, mm, cnt * d)?
    } else {
        Shares::Host(&[])
    };
    let desc = TechC {
        offset: s.view.offset,
        bits: s.view.bits,
        shift: s.shift,
        ring: mm,
        degree: d,
        outputs: s.outputs,
        cuts: &s.cuts,
        centers: &s.centers,
        coeffs: &s.coeffs,
        var: TechVar::Full,
    };
    Ok(be.techc_eval(&desc, party, &keys, rpow, xhat)?)
}

// ---------------------------------------------------------------------------------------------
// Sign (the MSB trick on a K-bit view, slopes on the full-ring variable)
//
// As for [`HalvesSpec`] with h = K − 1, ρ = r mod 2^K, and the slope payload carrying the
// full mask r_M = r mod 2^M: x_f = x + c ≡ ŷ_f − r_M with ŷ_f = x̂ + c (mod 2^M), so
// [b·x_f] = ŷ_f·[b] − [b·r_M], [b·r_M] = ŷ_T·[r_M] + (1 − 2ŷ_T)·([ρ_T·r_M] + [σ·r_M·w_h]).

fn sign_parts(_s: &SignSpec) -> usize {
    2
}

fn deal_sign(s: &SignSpec, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    let h = s.bits - 1;
    let rm = mask(s.ring);
    let slope = s.has_slope();
    let p = 1 + slope as usize;
    let mut alphas = Vec::with_capacity(r.len());
    let mut betas = Vec::with_capacity(r.len() * p);
    let mut sh = Vec::with_capacity(r.len() * 3);
    for &rv in r {
        let rho = rv & mask(s.bits);
        let rt = rho >> h;
        let rf = rv & rm;
        let sigma = 1u64.wrapping_sub(2 * rt) & rm;
        alphas.push(rho & mask(h));
        betas.push(sigma);
        if slope {
            betas.push(sigma.wrapping_mul(rf) & rm);
            sh.push(rf);
            sh.push(rt);
            sh.push(rt.wrapping_mul(rf) & rm);
        } else {
            sh.push(rt);
        }
    }
    out.dcf(h, s.ring, p, &alphas, &betas, rng.seed())?;
    out.shares(&sh, s.ring, rng)
}

fn eval_sign(
    s: &SignSpec,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    let desc = SignDesc {
        offset: s.offset,
        bits: s.bits,
        ring: s.ring,
        lo: &s.lo,
        hi: &s.hi,
    };
    eval_sign_desc(&desc, party, parts, xhat, be)
}

// ---------------------------------------------------------------------------------------------
// Bit (XOR shares of a Boolean of the high part; fss-identities §4(a), XOR form)
//
// With C(y) = 1{y < ρ_H} from one DPF comparison key (point ρ_H on K − s bits) and h' as for
// [`HighSpec`]: L(a) := 1{h' < a} = C(ĥ ⊖ a) ⊕ C(ĥ) ⊕ 1{ĥ < a}; the bit is
// bits[0] ⊕ ⊕_j (bits[j−1] ⊕ bits[j])·(1 ⊕ L(a_j)). Party 0 adds the public terms.

fn deal_bit(s: &BitSpec, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    let alphas: Vec<u64> = r
        .iter()
        .map(|&v| (v & mask(s.view.bits)) >> s.shift)
        .collect();
    let (k0, k1) = suf_fss::dealer::dpf_cmp_gen(s.high_bits(), &alphas, rng.seed())?;
    out.bytes([&k0.to_bytes(), &k1.to_bytes()])
}

fn eval_bit(
    s: &BitSpec,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    // A zero-copy view: the backend reads the body where it lies (on the GPU, inside the
    // resident key stream); the descriptor and key shape are checked by `BitDesc::check`.
    let keys = suf_fss::dpf::DpfView::view(parts[0])?;
    let desc = BitDesc {
        offset: s.view.offset,
        bits: s.view.bits,
        shift: s.shift,
        cuts: &s.cuts,
        values: &s.bits,
    };
    Ok(be.bit_eval(&desc, party, &keys, xhat)?)
}

// ---------------------------------------------------------------------------------------------
// Components and the gate

fn comp_parts(c: &Component) -> usize {
    match c {
        Component::Poly(p) => poly_parts(p),
        Component::Halves(h) => halves_parts(h),
        Component::Floor(f) => floor_parts(f),
        Component::High(h) => high_parts(h),
        Component::Sign(h) => sign_parts(h),
        Component::Bit(_) => 1,
    }
}

fn deal_comp(c: &Component, n: u32, r: &[u64], rng: &mut Csprng, out: &mut KeyOut) -> Result<()> {
    match c {
        Component::Poly(p) => deal_poly(p, r, rng, out),
        Component::Halves(h) => deal_halves(h, n, r, rng, out),
        Component::Floor(f) => deal_floor(f, n, r, rng, out),
        Component::High(h) => deal_high(h, r, rng, out),
        Component::Sign(h) => deal_sign(h, r, rng, out),
        Component::Bit(b) => deal_bit(b, r, rng, out),
    }
}

fn eval_comp(
    c: &Component,
    n: u32,
    party: u8,
    parts: &[KeyRef<'_>],
    xhat: &[u64],
    be: &dyn Backend,
) -> Result<Vec<u64>> {
    match c {
        Component::Poly(p) => eval_poly(p, party, parts, xhat, be),
        Component::Halves(h) => eval_halves(h, n, party, parts, xhat, be),
        Component::Floor(f) => eval_floor(f, n, party, parts, xhat, be),
        Component::High(h) => eval_high(h, party, parts, xhat, be),
        Component::Sign(h) => eval_sign(h, party, parts, xhat, be),
        Component::Bit(b) => eval_bit(b, party, parts, xhat, be),
    }
}

// ---------------------------------------------------------------------------------------------
// Key sizes: closed forms of what the deal_* procedures above write (capacity planning, and
// the layout `GateSpec::deal` allocates before dealing into it)

/// Part lengths of [`deal_shares`] for `vals` values of `bits` bits: party 0's packed shares,
/// party 1's 16-byte seed.
fn shares_len(vals: usize, bits: u32) -> Option<[usize; 2]> {
    let bits = u64::from(bits);
    let len = (vals as u128 * bits as u128).div_ceil(8);
    Some([usize::try_from(len).ok()?, 16])
}

/// Key part lengths per party of one component for a batch of `cnt` elements (the exact
/// lengths of the parts `deal_comp` returns). `None` on overflow or invalid parameters.
fn comp_key_parts(c: &Component, n: u32, cnt: usize) -> Option<[Vec<usize>; 2]> {
    let dcf = |k: u32, m: u32, p: usize| DcfKeys::bytes_for(k, m, p, cnt).map(|b| [b, b]);
    let mut out: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut push = |v: [usize; 2]| {
        out[0].push(v[0]);
        out[1].push(v[1]);
    };
    match c {
        Component::Poly(s) => {
            push(dcf(s.view.bits, s.ring, s.degree + 1)?);
            if s.degree > 0 {
                push(shares_len(cnt.checked_mul(s.degree)?, s.ring)?);
            }
        }
        Component::Halves(s) => {
            let slope = s.has_slope();
            push(dcf(n - 1, s.ring, 1 + slope as usize)?);
            let ns = if slope { 3 } else { 1 };
            push(shares_len(cnt.checked_mul(ns)?, s.ring)?);
        }
        Component::Floor(s) => {
            let p = 1 + s.select as usize;
            push(dcf(s.shift, n, p)?);
            match s.wrap {
                Wrap::Dcf => push(dcf(s.view.bits, n, p)?),
                Wrap::Free => push(shares_len(cnt.checked_mul(p)?, n)?),
                Wrap::Drop => push([0, 0]),
            }
            let ns = if s.select { 3 } else { 1 };
            push(shares_len(cnt.checked_mul(ns)?, n)?);
        }
        Component::High(s) => {
            push(dcf(s.high_bits(), s.ring, s.degree + 1)?);
            if s.degree > 0 {
                push(shares_len(cnt.checked_mul(s.degree)?, s.ring)?);
            }
        }
        Component::Sign(s) => {
            let slope = s.has_slope();
            push(dcf(s.bits - 1, s.ring, 1 + slope as usize)?);
            let ns = if slope { 3 } else { 1 };
            push(shares_len(cnt.checked_mul(ns)?, s.ring)?);
        }
        Component::Bit(s) => {
            let per = suf_fss::dpf::DpfKeys::key_bytes_per_key(s.high_bits());
            let b = per
                .checked_mul(cnt)?
                .checked_add(suf_fss::keyfmt::HEADER_LEN)?;
            push([b, b]);
        }
    }
    debug_assert_eq!(out[0].len(), comp_parts(c));
    Some(out)
}

impl GateSpec {
    /// Bytes of each party's key blob for a batch of `cnt` elements: exactly the length of
    /// what [`GateSpec::deal`] returns, from closed forms (no key generation). `None` for an
    /// invalid spec or on overflow.
    pub fn key_bytes(&self, n: u32, cnt: usize) -> Option<[u64; 2]> {
        self.validate(n).ok()?;
        let mut all: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for p in &self.parts {
            let [a, b] = comp_key_parts(&p.comp, n, cnt)?;
            all[0].extend(a);
            all[1].extend(b);
        }
        Some([joined_len(&all[0])? as u64, joined_len(&all[1])? as u64])
    }

    /// Dealer: key blobs of both parties for a batch with input masks `r` (n-bit).
    ///
    /// # Errors
    /// An invalid spec, or a failure of the key generator.
    pub fn deal(&self, n: u32, r: &[u64], rng: &mut Csprng) -> Result<[Vec<u8>; 2]> {
        self.validate(n)?;
        // The blobs' layout first (the closed forms), then every part dealt into place.
        let mut lens: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for p in &self.parts {
            let [a, b] = comp_key_parts(&p.comp, n, r.len()).ok_or_else(|| {
                CompilerError::Key(format!("a key batch of {} elements is too large", r.len()))
            })?;
            lens[0].extend(a);
            lens[1].extend(b);
        }
        let mut out = KeyOut::new(&lens)?;
        for p in &self.parts {
            deal_comp(&p.comp, n, r, rng, &mut out)?;
        }
        out.finish()
    }

    /// Party: shares of the q outputs (output-major: all elements of output 0 first). `key`
    /// is the gate's blob, borrowed from the key stream (`KeyRef::detached` outside one).
    ///
    /// # Errors
    /// An invalid spec, a malformed key blob, or a backend failure.
    pub fn eval_shares(
        &self,
        n: u32,
        party: u8,
        key: KeyRef<'_>,
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>> {
        self.validate(n)?;
        if party > 1 {
            return key_err(format!("party {party}"));
        }
        let total: usize = self.parts.iter().map(|p| comp_parts(&p.comp)).sum();
        let parts = split_parts(key, total)?;
        let cnt = xhat.len();
        let nm = mask(n);
        let mut out = vec![0u64; self.outputs * cnt];
        let mut pos = 0;
        for p in &self.parts {
            let k = comp_parts(&p.comp);
            let v = eval_comp(&p.comp, n, party, &parts[pos..pos + k], xhat, be)?;
            pos += k;
            for (ci, &t) in p.targets.iter().enumerate() {
                let src = &v[ci * cnt..(ci + 1) * cnt];
                let dst = &mut out[t * cnt..(t + 1) * cnt];
                let add = |(d, s): (&mut [u64], &[u64])| {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = d.wrapping_add(*s) & nm;
                    }
                };
                // Large batches (bert-base's GeLU: 4.7 M elements) in parallel chunks.
                if cnt >= 1 << 15 {
                    dst.par_chunks_mut(1 << 14)
                        .zip(src.par_chunks(1 << 14))
                        .for_each(add);
                } else {
                    add((dst, src));
                }
            }
        }
        Ok(out)
    }

    /// Plain outputs of a batch, output-major.
    pub fn eval_batch(&self, n: u32, xs: &[u64]) -> Vec<u64> {
        let q = self.outputs;
        let cnt = xs.len();
        let per: Vec<Vec<u64>> = xs.par_iter().map(|&x| self.eval(n, x)).collect();
        let mut out = vec![0u64; q * cnt];
        for (e, v) in per.into_iter().enumerate() {
            for (o, x) in v.into_iter().enumerate() {
                out[o * cnt + e] = x;
            }
        }
        out
    }
}

type Registry = std::sync::Mutex<std::collections::HashMap<String, usize>>;

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(|| std::sync::Mutex::new(std::collections::HashMap::new()))
}

/// AES calls per element of a compiled gate, by its batch name (every [`SpecGate`] made in
/// this process registers itself).
pub fn gate_aes(name: &str) -> Option<usize> {
    registry().lock().ok()?.get(name).copied()
}

/// AES calls of one run of `prog`: Σ over compiled-gate nodes of elements × AES per element
/// (Beaver products and linear steps use none).
pub fn program_aes(prog: &suf_runtime::ir::Program) -> u64 {
    prog.nodes
        .iter()
        .map(|nd| match &nd.op {
            suf_runtime::ir::Op::Gate(a, g) => {
                let per = gate_aes(&g.name()).unwrap_or(0) as u64;
                per * prog.numel(*a) as u64
            }
            _ => 0,
        })
        .sum()
}

/// A [`GateSpec`] as a runtime gate. Its batch name is the label plus a hash of the spec, so
/// gates batch together exactly when they compute the same function.
#[derive(Clone, Debug)]
pub struct SpecGate {
    spec: GateSpec,
    name: String,
    fp: Vec<u8>,
}

impl SpecGate {
    /// Wrap a spec (validated against ring width n).
    ///
    /// # Errors
    /// [`CompilerError::Spec`] if the spec is invalid.
    pub fn new(spec: GateSpec, n: u32) -> Result<Self> {
        spec.validate(n)?;
        let json = serde_json::to_vec(&spec)
            .map_err(|e| CompilerError::Spec(format!("serialising the spec: {e}")))?;
        let mut fp = b"suf-spec-v1".to_vec();
        fp.extend_from_slice(&n.to_le_bytes());
        fp.extend_from_slice(&json);
        let h = Sha256::digest(&fp);
        let hex: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{}_{hex}", spec.label);
        if let Ok(mut r) = registry().lock() {
            r.insert(name.clone(), spec.aes_per_elem(n));
        }
        Ok(SpecGate { name, spec, fp })
    }

    /// The spec.
    pub fn spec(&self) -> &GateSpec {
        &self.spec
    }
}

impl GateImpl for SpecGate {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fingerprint(&self) -> Vec<u8> {
        self.fp.clone()
    }

    fn out_dtype(&self) -> Dtype {
        Dtype::Arith
    }

    fn outputs(&self) -> usize {
        self.spec.outputs
    }

    fn plain(&self, w: BitWidth, x: &[u64]) -> Vec<u64> {
        self.spec.eval_batch(w.bits(), x)
    }

    fn deal(&self, w: BitWidth, r: &[u64], rng: &mut Csprng) -> suf_runtime::Result<[Vec<u8>; 2]> {
        Ok(self.spec.deal(w.bits(), r, rng)?)
    }

    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: KeyRef<'_>,
        xhat: &[u64],
        be: &dyn Backend,
    ) -> suf_runtime::Result<Vec<u64>> {
        Ok(self.spec.eval_shares(w.bits(), party, key, xhat, be)?)
    }

    fn key_bytes(&self, w: BitWidth, count: usize) -> Option<[u64; 2]> {
        self.spec.key_bytes(w.bits(), count)
    }

    fn aes_calls(&self, w: BitWidth, count: usize) -> Option<u64> {
        (self.spec.aes_per_elem(w.bits()) as u64).checked_mul(count as u64)
    }

    fn input_bits(&self, w: BitWidth) -> u32 {
        self.spec.input_bits(w.bits())
    }
}

/// Reconstructed outputs, the masks used, and both parties' key blobs.
pub type DirectRun = (Vec<u64>, Vec<u64>, [Vec<u8>; 2]);

/// Dealer and both parties of one gate in one process, without the runtime (tests, benches,
/// the uniformity checks): fresh uniform masks, keys, shares, reconstruction. Returns the
/// reconstructed outputs (output-major), the masks used, and both key blobs.
///
/// # Errors
/// As [`GateSpec::deal`] and [`GateSpec::eval_shares`].
pub fn run_direct(
    spec: &GateSpec,
    n: u32,
    xs: &[u64],
    be: &dyn Backend,
    rng: &mut Csprng,
) -> Result<DirectRun> {
    let w = BitWidth::new(n)?;
    let r: Vec<u64> = (0..xs.len()).map(|_| rng.ring(w)).collect();
    let (out, keys) = run_with_masks(spec, n, xs, &r, be, rng)?;
    Ok((out, r, keys))
}

/// [`run_direct`] with given masks `r` (one per element).
///
/// # Errors
/// As [`GateSpec::deal`] and [`GateSpec::eval_shares`]; a length mismatch of `r`.
pub fn run_with_masks(
    spec: &GateSpec,
    n: u32,
    xs: &[u64],
    r: &[u64],
    be: &dyn Backend,
    rng: &mut Csprng,
) -> Result<(Vec<u64>, [Vec<u8>; 2])> {
    let w = BitWidth::new(n)?;
    if r.len() != xs.len() {
        return Err(CompilerError::Spec(format!(
            "{} masks for {} inputs",
            r.len(),
            xs.len()
        )));
    }
    let keys = spec.deal(n, r, rng)?;
    let xhat: Vec<u64> = xs.iter().zip(r).map(|(&x, &m)| w.add(x, m)).collect();
    let a = spec.eval_shares(n, 0, KeyRef::detached(&keys[0]), &xhat, be)?;
    let b = spec.eval_shares(n, 1, KeyRef::detached(&keys[1]), &xhat, be)?;
    let out = a.iter().zip(&b).map(|(&u, &v)| w.add(u, v)).collect();
    Ok((out, keys))
}
