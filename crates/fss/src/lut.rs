//! Table lookup on a small masked domain by DPF full-domain evaluation dotted with a public
//! table (the Pika/SIGMA construction, with the 1-bit-leaf sign correction done right:
//! `reference/fss-identities.md` §2 last bullet and §4(d); DESIGN.md §4 "Small domains").
//!
//! # The protocol
//!
//! Domain Z_N, N = 2^k, k ≤ [`LUT_MAX_K`]; outputs in Z_{2^ℓ}. The input wire carries x with
//! mask r; both parties know the opened x̂ = x + r mod N. For each element the dealer makes
//!
//! * a DPF key pair for the point r ([`crate::dpf`], Boyle–Gilboa–Ishai CCS 2016, 1-bit
//!   leaves): party b's full-domain evaluation is a bit vector t_b with t_0 ⊕ t_1 = e_r;
//! * σ = t_1[r] (known to the dealer), and additive shares over Z_{2^ℓ} of the sign
//!   s = 1 − 2σ ∈ {±1};
//! * per table τ: a fresh uniform mask a_τ ∈ Z_{2^ℓ} and additive shares of a_τ and of s·a_τ.
//!
//! Online, for a public table T (T[v] ∈ Z_{2^ℓ}):
//!
//! 1. **Step 1 (local, then one message).** Party b computes
//!    u_b = Σ_j t_b[j] · T[x̂ − j mod N]. Off the point the two vectors agree, at j = r they
//!    differ, so u_0 − u_1 = (t_0[r] − t_1[r]) · T[x̂ − r] = (1 − 2σ) · T[x] = s · T[x].
//!    σ is secret (it is a pseudorandom function of r), so u_0 − u_1 is *not* yet a sharing of
//!    T[x]. Party 0 sends m_0 = u_0 + [a]_0, party 1 sends m_1 = −u_1 + [a]_1.
//! 2. **Open.** Both learn W = m_0 + m_1 = s·T[x] + a, uniform because a is fresh and uniform.
//! 3. **Step 2 (local).** y_b = W·[s]_b − [s·a]_b. Then y_0 + y_1 = s·(s·T[x] + a) − s·a
//!    = s²·T[x] = T[x] (s = ±1).
//!
//! # Cost
//!
//! * **Rounds: one extra round** after the opening of x̂ (the "masked sign correction"
//!   opening), in which each party sends `count · tables · ℓ` bits. The outputs are additive
//!   shares, ready to be masked and opened as the next wire. One DPF serves several tables
//!   (one opened value each, all in the same round).
//! * Local work per element: a full-domain evaluation (for k ≥ 7: 2^{k−6} − 2 tree AES plus
//!   2^{k−7} leaf AES; one leaf AES for k < 7) and `2^k · tables` masked additions.
//! * Key per element: the DPF key ([`crate::dpf::DpfKeys::key_bytes_per_key`]) plus
//!   `8 + 16 · tables` bytes (shares of s, a_τ and s·a_τ as u64 words).
//!
//! A DPF with Z_{2^ℓ} leaves would need no extra round but resolves only ⌊log2(128/ℓ)⌋ bits
//! per leaf; it is not implemented here.
//!
//! # Security notes
//!
//! The opened W is uniform; the DPF key hides r; [s], [a], [s·a] are uniform shares. Every
//! key, mask and sign share belongs to one element of one gate instance: reusing a key for a
//! second x̂, or a mask a_τ for a second opening, leaks differences. The dot product never
//! branches on the party's share bits (masks select table entries), because the other party
//! knows all of t_b except at r, and a timing leak of popcount(t_b) would reveal a bit of r.
//!
//! # Key layout
//!
//! [`crate::keyfmt`] kind [`KeyKind::IntervalLut`], n = k, params `[ℓ, tables, 1, 0]`; body:
//! the DPF body sections (see [`crate::dpf`]), then `count` u64 shares of s, then
//! `count · tables` u64 shares of a (element-major: element i's tables are consecutive), then
//! `count · tables` u64 shares of s·a, all values reduced mod 2^ℓ.

use rayon::prelude::*;
use suf_core::prg::Csprng;

use crate::dpf::{gen_cmp_batch, DpfKeys};
use crate::error::{FssError, Result};
use crate::keyfmt::{self, KeyKind, KeyReader, KeyWriter};

/// Largest table domain bits k.
pub const LUT_MAX_K: u32 = 16;
/// Most tables one key may serve (a sanity bound for parsing untrusted headers).
pub const LUT_MAX_TABLES: usize = 1 << 16;

#[inline]
fn ring_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn check_params(k: u32, out_bits: u32, tables: usize) -> Result<()> {
    if !(1..=LUT_MAX_K).contains(&k) {
        return Err(FssError::BadParams(format!(
            "LUT domain bits {k} outside 1..={LUT_MAX_K}"
        )));
    }
    if !(1..=64).contains(&out_bits) {
        return Err(FssError::BadParams(format!(
            "LUT output bits {out_bits} outside 1..=64"
        )));
    }
    if !(1..=LUT_MAX_TABLES).contains(&tables) {
        return Err(FssError::BadParams(format!(
            "LUT table count {tables} outside 1..={LUT_MAX_TABLES}"
        )));
    }
    Ok(())
}

/// One party's keys for a batch of `count` table lookups on a k-bit domain.
#[derive(Clone, PartialEq, Eq)]
pub struct LutKeys {
    k: u32,
    out_bits: u32,
    tables: usize,
    dpf: DpfKeys,
    /// Shares of s = 1 − 2σ, `count`.
    sign: Vec<u64>,
    /// Shares of the opening masks a, `count · tables`, element-major.
    mask: Vec<u64>,
    /// Shares of s·a, `count · tables`, element-major.
    sign_mask: Vec<u64>,
}

impl std::fmt::Debug for LutKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LutKeys")
            .field("k", &self.k)
            .field("out_bits", &self.out_bits)
            .field("tables", &self.tables)
            .field("party", &self.dpf.party())
            .field("count", &self.dpf.count())
            .finish_non_exhaustive()
    }
}

/// What a party keeps between [`lut_eval_step1`] and [`lut_eval_step2`].
#[derive(Clone, PartialEq, Eq)]
pub struct LutState {
    party: u8,
    out_bits: u32,
    tables: usize,
    count: usize,
    sign: Vec<u64>,
    sign_mask: Vec<u64>,
}

impl std::fmt::Debug for LutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LutState")
            .field("party", &self.party)
            .field("count", &self.count)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl LutState {
    /// Number of values [`lut_eval_step2`] expects (`count · tables`).
    pub fn opened_len(&self) -> usize {
        self.count * self.tables
    }
}

/// Dealer: keys for `count` single-table lookups on a k-bit domain with ℓ = `out_bits`
/// output bits, with fresh uniform input masks r. Returns both parties' keys and additive
/// shares `[r_0, r_1]` of the masks over Z_{2^k}.
///
/// # Errors
/// [`FssError::BadParams`] for k outside 1..=16 or ℓ outside 1..=64.
pub fn lut_gen(
    k: u32,
    out_bits: u32,
    count: usize,
    rng: &mut Csprng,
) -> Result<(LutKeys, LutKeys, [Vec<u64>; 2])> {
    lut_gen_tables(k, out_bits, count, 1, rng)
}

/// Dealer: as [`lut_gen`], for `tables` public tables read through the same DPF (one opened
/// value per table and element, all in the same round).
///
/// # Errors
/// [`FssError::BadParams`] for out-of-range parameters.
pub fn lut_gen_tables(
    k: u32,
    out_bits: u32,
    count: usize,
    tables: usize,
    rng: &mut Csprng,
) -> Result<(LutKeys, LutKeys, [Vec<u64>; 2])> {
    check_params(k, out_bits, tables)?;
    let km = ring_mask(k);
    let rs: Vec<u64> = (0..count).map(|_| rng.next_u64() & km).collect();
    let (k0, k1) = lut_gen_with_masks(k, out_bits, tables, &rs, rng)?;
    let r0: Vec<u64> = (0..count).map(|_| rng.next_u64() & km).collect();
    let r1: Vec<u64> = rs
        .iter()
        .zip(&r0)
        .map(|(&r, &a)| r.wrapping_sub(a) & km)
        .collect();
    Ok((k0, k1, [r0, r1]))
}

/// Dealer: keys for lookups whose input masks `rs` (each < 2^k) are chosen by the caller (the
/// output mask of the gate feeding this one).
///
/// # Errors
/// [`FssError::BadParams`] for out-of-range parameters or a mask ≥ 2^k.
pub fn lut_gen_with_masks(
    k: u32,
    out_bits: u32,
    tables: usize,
    rs: &[u64],
    rng: &mut Csprng,
) -> Result<(LutKeys, LutKeys)> {
    check_params(k, out_bits, tables)?;
    let (d0, d1) = gen_cmp_batch(k, rs, rng)?;
    // σ = t_1[r]: party 1's share of e_r at r.
    let sigma = d1.eval_eq_batch(rs)?;
    let m = ring_mask(out_bits);
    let count = rs.len();
    let mut sign = [Vec::with_capacity(count), Vec::with_capacity(count)];
    let mut mask = [
        Vec::with_capacity(count * tables),
        Vec::with_capacity(count * tables),
    ];
    let mut sign_mask = [
        Vec::with_capacity(count * tables),
        Vec::with_capacity(count * tables),
    ];
    for &sg in &sigma {
        // s = 1 − 2σ mod 2^ℓ.
        let s = 1u64.wrapping_sub(2 * sg as u64) & m;
        let s0 = rng.next_u64() & m;
        sign[0].push(s0);
        sign[1].push(s.wrapping_sub(s0) & m);
        for _ in 0..tables {
            let a = rng.next_u64() & m;
            let a0 = rng.next_u64() & m;
            mask[0].push(a0);
            mask[1].push(a.wrapping_sub(a0) & m);
            let sa = s.wrapping_mul(a) & m;
            let sa0 = rng.next_u64() & m;
            sign_mask[0].push(sa0);
            sign_mask[1].push(sa.wrapping_sub(sa0) & m);
        }
    }
    let [s0, s1] = sign;
    let [a0, a1] = mask;
    let [sa0, sa1] = sign_mask;
    Ok((
        LutKeys {
            k,
            out_bits,
            tables,
            dpf: d0,
            sign: s0,
            mask: a0,
            sign_mask: sa0,
        },
        LutKeys {
            k,
            out_bits,
            tables,
            dpf: d1,
            sign: s1,
            mask: a1,
            sign_mask: sa1,
        },
    ))
}

/// The table as `D[m] = T[(−m) mod N]` for m ∈ [0, 2N), reduced mod 2^ℓ: then
/// `T[(x̂ − j) mod N] = D[(N − x̂) + j]` for j ∈ [0, N), a contiguous window.
fn doubled_reversed(t: &[u64], n_dom: usize, m: u64) -> Vec<u64> {
    (0..2 * n_dom)
        .map(|i| t[(n_dom - (i % n_dom)) % n_dom] & m)
        .collect()
}

/// Party step 1: evaluate the DPF on the whole domain and dot it with each table rotated by
/// x̂. Returns the state for [`lut_eval_step2`] and this party's message (`count · tables`
/// values in Z_{2^ℓ}, element-major), to be added to the other party's message
/// ([`lut_open`]) — the one extra round of this gate.
///
/// `xhat[i]` is reduced mod 2^k; every table must have exactly 2^k entries (reduced mod 2^ℓ).
///
/// # Errors
/// [`FssError::LengthMismatch`] if `xhat.len() != count`, the number of tables differs from
/// the keys' or a table is not 2^k long.
pub fn lut_eval_step1(
    keys: &LutKeys,
    xhat: &[u64],
    tables: &[&[u64]],
) -> Result<(LutState, Vec<u64>)> {
    let count = keys.count();
    if xhat.len() != count {
        return Err(FssError::LengthMismatch {
            what: "LUT masked inputs",
            expected: count,
            got: xhat.len(),
        });
    }
    if tables.len() != keys.tables {
        return Err(FssError::LengthMismatch {
            what: "LUT tables",
            expected: keys.tables,
            got: tables.len(),
        });
    }
    let n_dom = 1usize << keys.k;
    for t in tables {
        if t.len() != n_dom {
            return Err(FssError::LengthMismatch {
                what: "LUT table entries",
                expected: n_dom,
                got: t.len(),
            });
        }
    }
    let m = ring_mask(keys.out_bits);
    let km = ring_mask(keys.k);
    let dr: Vec<Vec<u64>> = tables
        .iter()
        .map(|t| doubled_reversed(t, n_dom, m))
        .collect();
    let party = keys.party();
    let nt = keys.tables;
    let mut msg = vec![0u64; count * nt];
    if count > 0 {
        msg.par_chunks_mut(nt)
            .enumerate()
            .try_for_each(|(i, out)| -> Result<()> {
                let words = keys.dpf.eval_all(i)?;
                let off = n_dom - (xhat[i] & km) as usize;
                for (tau, o) in out.iter_mut().enumerate() {
                    let window = &dr[tau][off..off + n_dom];
                    let mut acc = 0u64;
                    for (w, ch) in words.iter().zip(window.chunks(64)) {
                        for (q, &v) in ch.iter().enumerate() {
                            acc = acc.wrapping_add(v & ((w >> q) & 1).wrapping_neg());
                        }
                    }
                    // Party 0 sends u_0 + a_0, party 1 sends −u_1 + a_1.
                    let w = if party == 0 { acc } else { acc.wrapping_neg() };
                    *o = w.wrapping_add(keys.mask[i * nt + tau]) & m;
                }
                Ok(())
            })?;
    }
    let state = LutState {
        party,
        out_bits: keys.out_bits,
        tables: nt,
        count,
        sign: keys.sign.clone(),
        sign_mask: keys.sign_mask.clone(),
    };
    Ok((state, msg))
}

/// Combine both parties' step-1 messages: W = m_0 + m_1 mod 2^ℓ.
///
/// # Errors
/// [`FssError::LengthMismatch`] if the messages differ in length; [`FssError::BadParams`] for
/// ℓ outside 1..=64.
pub fn lut_open(m0: &[u64], m1: &[u64], out_bits: u32) -> Result<Vec<u64>> {
    if !(1..=64).contains(&out_bits) {
        return Err(FssError::BadParams(format!(
            "LUT output bits {out_bits} outside 1..=64"
        )));
    }
    if m0.len() != m1.len() {
        return Err(FssError::LengthMismatch {
            what: "LUT messages",
            expected: m0.len(),
            got: m1.len(),
        });
    }
    let m = ring_mask(out_bits);
    Ok(m0
        .iter()
        .zip(m1)
        .map(|(&a, &b)| a.wrapping_add(b) & m)
        .collect())
}

/// Party step 2, after the opening: additive shares over Z_{2^ℓ} of T_τ[x_i] with
/// x_i = x̂_i − r_i, element-major (`out[i · tables + τ]`).
///
/// # Errors
/// [`FssError::LengthMismatch`] if `opened.len() != count · tables`.
pub fn lut_eval_step2(state: LutState, opened: &[u64]) -> Result<Vec<u64>> {
    if opened.len() != state.opened_len() {
        return Err(FssError::LengthMismatch {
            what: "LUT opened values",
            expected: state.opened_len(),
            got: opened.len(),
        });
    }
    let m = ring_mask(state.out_bits);
    let nt = state.tables;
    Ok(opened
        .iter()
        .enumerate()
        .map(|(e, &w)| {
            w.wrapping_mul(state.sign[e / nt])
                .wrapping_sub(state.sign_mask[e])
                & m
        })
        .collect())
}

impl LutKeys {
    /// Domain bits k.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// Output bits ℓ.
    pub fn out_bits(&self) -> u32 {
        self.out_bits
    }

    /// Tables served per element.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// The party (0 or 1).
    pub fn party(&self) -> u8 {
        self.dpf.party()
    }

    /// Elements in the batch.
    pub fn count(&self) -> usize {
        self.dpf.count()
    }

    /// Closed-form serialized size of one element's key (body only).
    pub fn key_bytes_per_key(k: u32, tables: usize) -> usize {
        DpfKeys::key_bytes_per_key(k) + 8 + 16 * tables
    }

    /// Serialize (kind [`KeyKind::IntervalLut`], params `[ℓ, tables, 1, 0]`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = KeyWriter::new(
            KeyKind::IntervalLut,
            self.party(),
            self.k,
            [self.out_bits, self.tables as u32, 1, 0],
            self.count() as u64,
        );
        w.reserve(self.count() * Self::key_bytes_per_key(self.k, self.tables));
        self.dpf.write_body(&mut w);
        w.u64s(&self.sign);
        w.u64s(&self.mask);
        w.u64s(&self.sign_mask);
        w.finish()
    }

    /// Parse untrusted bytes; never panics.
    ///
    /// # Errors
    /// Header errors of [`keyfmt::parse_header`]; [`FssError::BadHeader`] for parameters out of
    /// range; [`FssError::SizeMismatch`] for a body of the wrong size.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (h, body) = keyfmt::parse_header(b, KeyKind::IntervalLut)?;
        let [out_bits, tables, leaf, zero] = h.params;
        let tables = tables as usize;
        if !(1..=LUT_MAX_K).contains(&h.n)
            || !(1..=64).contains(&out_bits)
            || !(1..=LUT_MAX_TABLES).contains(&tables)
            || leaf != 1
            || zero != 0
        {
            return Err(FssError::BadHeader(format!(
                "LUT parameters k = {}, {:?} out of range",
                h.n, h.params
            )));
        }
        let expected = h
            .count
            .checked_mul(Self::key_bytes_per_key(h.n, tables) as u64);
        keyfmt::expect_body_len(&h, expected)?;
        let count = usize::try_from(h.count)
            .map_err(|_| FssError::BadHeader("LUT key count does not fit in memory".into()))?;
        let mut r = KeyReader::new(body);
        let dpf = DpfKeys::read_body(&mut r, h.n, h.party, count)?;
        let m = ring_mask(out_bits);
        let nt = count * tables;
        let reduce = |v: Vec<u64>| -> Vec<u64> { v.into_iter().map(|x| x & m).collect() };
        let sign = reduce(r.u64s(count)?);
        let mask = reduce(r.u64s(nt)?);
        let sign_mask = reduce(r.u64s(nt)?);
        r.finish()?;
        Ok(LutKeys {
            k: h.n,
            out_bits,
            tables,
            dpf,
            sign,
            mask,
            sign_mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_table(rng: &mut Csprng, k: u32, out_bits: u32) -> Vec<u64> {
        (0..1u64 << k)
            .map(|_| rng.next_u64() & ring_mask(out_bits))
            .collect()
    }

    /// Run the whole protocol in-process; returns the reconstructed outputs.
    fn simulate(
        k0: &LutKeys,
        k1: &LutKeys,
        xhat: &[u64],
        tables: &[&[u64]],
        out_bits: u32,
    ) -> Vec<u64> {
        let (st0, m0) = lut_eval_step1(k0, xhat, tables).unwrap();
        let (st1, m1) = lut_eval_step1(k1, xhat, tables).unwrap();
        let w = lut_open(&m0, &m1, out_bits).unwrap();
        assert_eq!(w, lut_open(&m1, &m0, out_bits).unwrap());
        let y0 = lut_eval_step2(st0, &w).unwrap();
        let y1 = lut_eval_step2(st1, &w).unwrap();
        let m = ring_mask(out_bits);
        y0.iter()
            .zip(&y1)
            .map(|(&a, &b)| a.wrapping_add(b) & m)
            .collect()
    }

    /// Every k ≤ 8, every x, several random tables (including ℓ = 1 and 64), random masks.
    #[test]
    fn exhaustive_small_k() {
        let mut rng = Csprng::for_tests(11);
        for k in 1..=8u32 {
            for &out_bits in &[1u32, 8, 37, 64] {
                let n_dom = 1usize << k;
                let ntab = 3;
                let tabs: Vec<Vec<u64>> = (0..ntab)
                    .map(|_| random_table(&mut rng, k, out_bits))
                    .collect();
                let tref: Vec<&[u64]> = tabs.iter().map(|t| t.as_slice()).collect();
                // Two rounds of masks per x: element i has x = i % N.
                let count = 2 * n_dom;
                let (k0, k1, [r0, r1]) =
                    lut_gen_tables(k, out_bits, count, ntab, &mut rng).unwrap();
                assert_eq!((k0.k(), k0.out_bits(), k0.tables()), (k, out_bits, ntab));
                assert_eq!((k0.party(), k1.party(), k0.count()), (0, 1, count));
                let km = ring_mask(k);
                let xs: Vec<u64> = (0..count as u64).map(|i| i & km).collect();
                let xhat: Vec<u64> = (0..count)
                    .map(|i| xs[i].wrapping_add(r0[i]).wrapping_add(r1[i]) & km)
                    .collect();
                let y = simulate(&k0, &k1, &xhat, &tref, out_bits);
                for i in 0..count {
                    for t in 0..ntab {
                        assert_eq!(
                            y[i * ntab + t],
                            tabs[t][xs[i] as usize],
                            "k={k} l={out_bits} x={} table {t}",
                            xs[i]
                        );
                    }
                }
            }
        }
    }

    /// Single-table API, caller-chosen masks including 0 and N − 1, larger k.
    #[test]
    fn chosen_masks_and_larger_k() {
        let mut rng = Csprng::for_tests(12);
        for &k in &[10u32, 12, 16] {
            let km = ring_mask(k);
            let out_bits = 20;
            let tab = random_table(&mut rng, k, out_bits);
            let rs: Vec<u64> = vec![0, km, 1, rng.next_u64() & km, rng.next_u64() & km];
            let xs: Vec<u64> = vec![km, 0, rng.next_u64() & km, 5 & km, km - 1];
            let (k0, k1) = lut_gen_with_masks(k, out_bits, 1, &rs, &mut rng).unwrap();
            let xhat: Vec<u64> = xs
                .iter()
                .zip(&rs)
                .map(|(&x, &r)| x.wrapping_add(r) & km)
                .collect();
            let y = simulate(&k0, &k1, &xhat, &[&tab], out_bits);
            for i in 0..xs.len() {
                assert_eq!(y[i], tab[xs[i] as usize], "k={k} x={} r={}", xs[i], rs[i]);
            }
        }
        let (k0, k1, [r0, r1]) = lut_gen(9, 12, 40, &mut rng).unwrap();
        let tab = random_table(&mut rng, 9, 12);
        let xs: Vec<u64> = (0..40).map(|_| rng.next_u64() & 511).collect();
        let xhat: Vec<u64> = (0..40).map(|i| (xs[i] + r0[i] + r1[i]) & 511).collect();
        let y = simulate(&k0, &k1, &xhat, &[&tab], 12);
        for i in 0..40 {
            assert_eq!(y[i], tab[xs[i] as usize]);
        }
    }

    #[test]
    fn errors_and_serialization() {
        let mut rng = Csprng::for_tests(13);
        assert!(lut_gen(0, 8, 1, &mut rng).is_err());
        assert!(lut_gen(17, 8, 1, &mut rng).is_err());
        assert!(lut_gen(8, 0, 1, &mut rng).is_err());
        assert!(lut_gen(8, 65, 1, &mut rng).is_err());
        assert!(lut_gen_tables(8, 8, 1, 0, &mut rng).is_err());
        assert!(lut_gen_with_masks(4, 8, 1, &[16], &mut rng).is_err());
        let (k0, k1, _) = lut_gen_tables(10, 13, 5, 2, &mut rng).unwrap();
        let tab = random_table(&mut rng, 10, 13);
        let short = vec![0u64; 1023];
        assert!(matches!(
            lut_eval_step1(&k0, &[0; 4], &[&tab, &tab]),
            Err(FssError::LengthMismatch { .. })
        ));
        assert!(matches!(
            lut_eval_step1(&k0, &[0; 5], &[&tab]),
            Err(FssError::LengthMismatch { .. })
        ));
        assert!(matches!(
            lut_eval_step1(&k0, &[0; 5], &[&tab, &short]),
            Err(FssError::LengthMismatch { .. })
        ));
        let (st, m) = lut_eval_step1(&k0, &[0; 5], &[&tab, &tab]).unwrap();
        assert_eq!(m.len(), 10);
        assert_eq!(st.opened_len(), 10);
        assert!(lut_eval_step2(st, &m[..9]).is_err());
        assert!(lut_open(&m, &m[..9], 13).is_err());
        assert!(lut_open(&m, &m, 0).is_err());

        for k in [&k0, &k1] {
            let b = k.to_bytes();
            assert_eq!(
                b.len(),
                keyfmt::HEADER_LEN + 5 * LutKeys::key_bytes_per_key(10, 2)
            );
            let back = LutKeys::from_bytes(&b).unwrap();
            assert_eq!(&back, k);
            assert_eq!(back.to_bytes(), b);
            assert!(matches!(
                DpfKeys::from_bytes(&b),
                Err(FssError::WrongKind { .. })
            ));
            for cut in [0, 10, 64, b.len() / 2, b.len() - 1] {
                assert!(LutKeys::from_bytes(&b[..cut]).is_err());
            }
            let mut bad = b.clone();
            bad[100] ^= 4;
            assert_eq!(LutKeys::from_bytes(&bad), Err(FssError::Checksum));
            // Tampered parameters with a fixed checksum.
            for (off, val) in [
                (20usize, 0u32),
                (20, 65),
                (24, 0),
                (24, 3),
                (28, 0),
                (16, 17),
            ] {
                let mut t = b.clone();
                t[off..off + 4].copy_from_slice(&val.to_le_bytes());
                let sum = keyfmt::checksum(&t[keyfmt::HEADER_LEN..]);
                t[56..64].copy_from_slice(&sum.to_le_bytes());
                assert!(LutKeys::from_bytes(&t).is_err(), "offset {off} value {val}");
            }
        }
        let d = DpfKeys::from_bytes(&gen_cmp_batch(5, &[1], &mut rng).unwrap().0.to_bytes());
        assert!(d.is_ok());
        let (d0, _) = gen_cmp_batch(5, &[1], &mut rng).unwrap();
        assert!(matches!(
            LutKeys::from_bytes(&d0.to_bytes()),
            Err(FssError::WrongKind { .. })
        ));
    }

    /// Round-tripped keys still compute the right lookups; shape independent of the masks.
    #[test]
    fn roundtrip_keys_evaluate_and_shape_is_fixed() {
        let mut rng = Csprng::for_tests(14);
        let k = 7;
        let tab = random_table(&mut rng, k, 16);
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let (k0, k1, [r0, r1]) = lut_gen(k, 16, 9, &mut rng).unwrap();
            let b0 = k0.to_bytes();
            let b1 = k1.to_bytes();
            sizes.push(b0.len());
            sizes.push(b1.len());
            let k0 = LutKeys::from_bytes(&b0).unwrap();
            let k1 = LutKeys::from_bytes(&b1).unwrap();
            let xs: Vec<u64> = (0..9).map(|_| rng.next_u64() & 127).collect();
            let xhat: Vec<u64> = (0..9).map(|i| (xs[i] + r0[i] + r1[i]) & 127).collect();
            let y = simulate(&k0, &k1, &xhat, &[&tab], 16);
            for i in 0..9 {
                assert_eq!(y[i], tab[xs[i] as usize]);
            }
        }
        assert!(sizes.iter().all(|&s| s == sizes[0]));
    }
}
