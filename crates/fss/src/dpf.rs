//! Distributed point functions (Boyle–Gilboa–Ishai, "Function Secret Sharing: Improvements and
//! Extensions", CCS 2016) with early termination at 128-bit leaves, and the comparison
//! 1[x < α] read off one DPF key (`reference/fss-identities.md` §2).
//!
//! A key pair for the point α ∈ [0, 2^n) shares the point function e_α with 1-bit outputs:
//! `eval_eq_0(x) ⊕ eval_eq_1(x) = 1[x = α]`. The same keys also share the comparison
//! `eval_lt_0(x) ⊕ eval_lt_1(x) = 1[x < α]` at the cost of one single-point evaluation
//! (n − ν AES calls down the tree plus one leaf conversion).
//!
//! # Parameters
//!
//! * n ∈ 1..=64 input bits; ν = min(7, n) bits are resolved inside the 128-bit leaf;
//!   d = n − ν tree levels (d = 0 for n ≤ 7: the key is the leaf alone).
//! * Level l ∈ 0..d consumes input bit `n − 1 − l` (MSB first). The leaf index of x is
//!   `x_low = x mod 2^ν`; leaf bit j is bit j of the `u128` (`(L >> j) & 1`).
//!
//! # The PRG, exactly (a CUDA kernel must reproduce this bit for bit)
//!
//! G_c(s) = π(s ⊕ c) ⊕ s ⊕ c is [`FixedKeyAes::mmo`] with the constants of [`suf_core::prg`]
//! (blocks are `u128`, byte string `to_le_bytes`). A tree node is a pair (s, t) where the seed s
//! always has bit 0 cleared (λ = 127) and t ∈ {0, 1} is the control bit.
//!
//! * Root: `s = root_seed` (bit 0 clear), `t = party` (party 0 starts with t = 0, party 1 with
//!   t = 1, so T_0 = t_0 ⊕ t_1 = 1).
//! * Child in direction b ∈ {0 = left, 1 = right} at level l — **one AES call**:
//!   ```text
//!   g      = G_{b ? C_RIGHT : C_LEFT}(s)
//!   cw     = scw[l]                       // 128 bits; bit 0 holds tcw_L[l]
//!   tcw_b  = b ? tcw_R[l] : (cw & 1)
//!   e      = (cw & !1) | tcw_b            // the effective correction word
//!   c      = g ⊕ (t ? e : 0)
//!   child  = (s' = c & !1, t' = c & 1)
//!   ```
//!   i.e. the child's control bit is the LSB of the corrected MMO output, its seed the rest.
//! * Leaf: `L = G_{C_LEAF}(s) ⊕ (t ? leaf_cw : 0)`, all 128 bits; the party's share of
//!   1[x = α] is bit `x_low` of L.
//!
//! Key generation (both parties' seeds s_0, s_1 and control bits t_0, t_1 walk the path of α;
//! a = α's bit at level l; "keep" is the child in direction a, "lose" the other):
//! `scw = (s_lose,0 ⊕ s_lose,1)` (bit 0 clear), `tcw_L = t_L,0 ⊕ t_L,1 ⊕ a ⊕ 1`,
//! `tcw_R = t_R,0 ⊕ t_R,1 ⊕ a`, stored as `scw | tcw_L` and one bit of `tcw_R`; after the
//! last level `leaf_cw = G_{C_LEAF}(s_0) ⊕ G_{C_LEAF}(s_1) ⊕ 2^{α_low}`.
//!
//! # Comparison (XOR shares)
//!
//! With t^(i) the party's control bit after i levels on the path of x (t^(0) = party), party b
//! outputs
//! `⊕_{i ∈ 1..=d, bit n−i of x is 0} (t^(i−1) ⊕ t^(i))  ⊕  ⊕_{j > x_low} L_j`.
//! The XOR of both parties' outputs is 1[x < α]: the XOR of the two parties' t^(i) is
//! T_i = [x and α agree on their first i bits], so the first sum picks the level where x
//! leaves α's path going left (x < α there), and the leaf term settles the case where x and α
//! share all d top bits. Cost: d + 1 AES calls.
//!
//! # Key layout
//!
//! Per key: root seed (16 B), d level correction words (16 B each, tcw_L in bit 0), the leaf
//! correction word (16 B), and the d bits tcw_R packed into ⌈d/8⌉ bytes:
//! `16·d + 32 + ⌈d/8⌉` bytes, the same as SIGMA's 1-bit-leaf DPF
//! ([`DpfKeys::key_bytes_per_key`]). The shape depends on (n, count) only, never on α.
//!
//! Serialized body ([`crate::keyfmt`], kind [`KeyKind::Dpf`], params `[1, ν, 0, 0]`), little
//! endian, sections in this order:
//! 1. root seeds: `count` × u128;
//! 2. level correction words: `d · count` × u128, **level-major** (all keys' level 0, then all
//!    keys' level 1, …: the key index varies fastest, so GPU threads that each own one key load
//!    consecutive blocks);
//! 3. leaf correction words: `count` × u128;
//! 4. tcw_R bits: `count` × ⌈d/8⌉ bytes, key by key; bit l of a key's field is bit l % 8 of its
//!    byte l / 8; padding bits must be zero.
//!
//! Evaluation never branches on a secret (control bits select correction words through masks);
//! the public input x steers the walk.

use rayon::prelude::*;
use suf_core::prg::{Csprng, FixedKeyAes, C_LEAF, C_LEFT, C_RIGHT};

use crate::error::{FssError, Result};
use crate::keyfmt::{self, KeyKind, KeyReader, KeyWriter};

/// Leaf bits resolved inside the 128-bit leaf: ν = min(7, n).
#[inline]
pub fn leaf_bits(n: u32) -> u32 {
    n.min(7)
}

/// Tree depth d = n − ν.
#[inline]
pub fn depth(n: u32) -> u32 {
    n - leaf_bits(n)
}

/// Largest n for which [`DpfKeys::eval_all`] is allowed.
pub const EVAL_ALL_MAX_N: u32 = 24;

/// Elements per rayon task; they are walked down the tree together, level by level.
const CHUNK: usize = 1024;
/// Keys per rayon task in key generation.
const GEN_CHUNK: usize = 64;

#[inline]
fn domain_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

#[inline]
fn mask128(bit: u64) -> u128 {
    (bit as u128).wrapping_neg()
}

fn check_n(n: u32) -> Result<()> {
    if (1..=64).contains(&n) {
        Ok(())
    } else {
        Err(FssError::BadParams(format!(
            "DPF domain bits {n} outside 1..=64"
        )))
    }
}

/// A batch of `count` DPF keys of one party over n-bit inputs (1-bit outputs, 128-bit leaves),
/// structure of arrays. See the module documentation for the exact construction and layout.
#[derive(Clone, PartialEq, Eq)]
pub struct DpfKeys {
    n: u32,
    party: u8,
    count: usize,
    /// Root seeds, `count`.
    root: Vec<u128>,
    /// Level correction words, level-major (`scw[l * count + i]`, as serialized); bit 0 holds
    /// tcw_L. A chunk of consecutive keys walked level by level reads one contiguous run per
    /// level, which the hardware prefetcher streams.
    scw: Vec<u128>,
    /// tcw_R bits, one word per key (bit l = level l; d ≤ 57).
    tcw_r: Vec<u64>,
    /// Leaf correction words, `count`.
    leaf_cw: Vec<u128>,
}

impl std::fmt::Debug for DpfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpfKeys")
            .field("n", &self.n)
            .field("party", &self.party)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Generate `alphas.len()` DPF key pairs with 1-bit outputs (early termination: ν = min(7, n)
/// levels fewer, 128-bit leaves) for the points α_i, for use as comparisons 1[x < α_i] (and
/// point functions 1[x = α_i]).
///
/// # Errors
/// [`FssError::BadParams`] if n is outside 1..=64 or some α_i ≥ 2^n.
pub fn gen_cmp_batch(n: u32, alphas: &[u64], rng: &mut Csprng) -> Result<(DpfKeys, DpfKeys)> {
    check_n(n)?;
    let dm = domain_mask(n);
    if let Some((i, a)) = alphas.iter().enumerate().find(|(_, &a)| a & !dm != 0) {
        return Err(FssError::BadParams(format!(
            "DPF point alphas[{i}] = {a} is not below 2^{n}"
        )));
    }
    let count = alphas.len();
    let d = depth(n) as usize;
    let nu = leaf_bits(n);
    // Root seeds come from the dealer's CSPRNG, sequentially; everything else is deterministic.
    let mut roots = Vec::with_capacity(count * 2);
    for _ in 0..count {
        roots.push(rng.next_u128() & !1);
        roots.push(rng.next_u128() & !1);
    }
    let aes = FixedKeyAes::global();

    // Per chunk of keys: (scw level-major within the chunk, tcw_r, leaf_cw).
    let parts: Vec<(Vec<u128>, Vec<u64>, Vec<u128>)> = alphas
        .par_chunks(GEN_CHUNK)
        .zip(roots.par_chunks(2 * GEN_CHUNK))
        .map(|(al, rt)| {
            let m = al.len();
            let mut s0: Vec<u128> = (0..m).map(|j| rt[2 * j]).collect();
            let mut s1: Vec<u128> = (0..m).map(|j| rt[2 * j + 1]).collect();
            let mut t0 = vec![0u64; m];
            let mut t1 = vec![1u64; m];
            let mut scw = vec![0u128; m * d];
            let mut tr = vec![0u64; m];
            let mut cs = vec![0u128; 4 * m];
            let mut ins = vec![0u128; 4 * m];
            let mut out = vec![0u128; 4 * m];
            for j in 0..m {
                cs[4 * j] = C_LEFT;
                cs[4 * j + 1] = C_RIGHT;
                cs[4 * j + 2] = C_LEFT;
                cs[4 * j + 3] = C_RIGHT;
            }
            for l in 0..d {
                let shift = n - 1 - l as u32;
                for j in 0..m {
                    ins[4 * j] = s0[j];
                    ins[4 * j + 1] = s0[j];
                    ins[4 * j + 2] = s1[j];
                    ins[4 * j + 3] = s1[j];
                }
                aes.mmo_many(&cs, &ins, &mut out);
                for j in 0..m {
                    let a = (al[j] >> shift) & 1;
                    let (gl0, gr0, gl1, gr1) =
                        (out[4 * j], out[4 * j + 1], out[4 * j + 2], out[4 * j + 3]);
                    let am = mask128(a);
                    // lose = !a: right child if a = 0, left child if a = 1.
                    let lose0 = (gr0 & !am) | (gl0 & am);
                    let lose1 = (gr1 & !am) | (gl1 & am);
                    let keep0 = (gl0 & !am) | (gr0 & am);
                    let keep1 = (gl1 & !am) | (gr1 & am);
                    let sc = (lose0 ^ lose1) & !1;
                    let tl = ((gl0 ^ gl1) as u64 & 1) ^ a ^ 1;
                    let trb = ((gr0 ^ gr1) as u64 & 1) ^ a;
                    let tkeep = (tl & (a ^ 1)) | (trb & a);
                    let e = sc | tkeep as u128;
                    let c0 = keep0 ^ (e & mask128(t0[j]));
                    let c1 = keep1 ^ (e & mask128(t1[j]));
                    s0[j] = c0 & !1;
                    t0[j] = c0 as u64 & 1;
                    s1[j] = c1 & !1;
                    t1[j] = c1 as u64 & 1;
                    scw[l * m + j] = sc | tl as u128;
                    tr[j] |= trb << l;
                }
            }
            let mut l0 = vec![0u128; m];
            let mut l1 = vec![0u128; m];
            aes.mmo_same(C_LEAF, &s0, &mut l0);
            aes.mmo_same(C_LEAF, &s1, &mut l1);
            let lcw: Vec<u128> = (0..m)
                .map(|j| {
                    let low = (al[j] & ((1u64 << nu) - 1)) as u32;
                    l0[j] ^ l1[j] ^ (1u128 << low)
                })
                .collect();
            (scw, tr, lcw)
        })
        .collect();

    let mut scw = vec![0u128; count * d];
    let mut tcw_r = Vec::with_capacity(count);
    let mut leaf_cw = Vec::with_capacity(count);
    let mut first = 0;
    for (s, t, lc) in parts {
        let m = t.len();
        for l in 0..d {
            scw[l * count + first..l * count + first + m].copy_from_slice(&s[l * m..(l + 1) * m]);
        }
        tcw_r.extend_from_slice(&t);
        leaf_cw.extend_from_slice(&lc);
        first += m;
    }
    let root0: Vec<u128> = roots.iter().step_by(2).copied().collect();
    let root1: Vec<u128> = roots.iter().skip(1).step_by(2).copied().collect();
    let k0 = DpfKeys {
        n,
        party: 0,
        count,
        root: root0,
        scw: scw.clone(),
        tcw_r: tcw_r.clone(),
        leaf_cw: leaf_cw.clone(),
    };
    let k1 = DpfKeys {
        n,
        party: 1,
        count,
        root: root1,
        scw,
        tcw_r,
        leaf_cw,
    };
    Ok((k0, k1))
}

/// What one path walk returns.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Mode {
    Lt,
    Eq,
}

impl DpfKeys {
    /// Input bits n.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// The party (0 or 1) holding these keys.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Closed-form serialized size of one key in bytes (body only): `16·d + 32 + ⌈d/8⌉` with
    /// d = n − min(7, n). Equals SIGMA's `(n−7)·16 + 32 + ⌈(n−7)/8⌉` for n ≥ 7.
    pub fn key_bytes_per_key(n: u32) -> usize {
        let d = depth(n.clamp(1, 64)) as usize;
        16 * d + 32 + d.div_ceil(8)
    }

    /// Walk the elements of one chunk down their paths together, level by level; element e
    /// uses key `key_of(e)` at point `xs[e]` (already reduced). Writes the party's share bit of
    /// each element into `out[e]`.
    ///
    /// Per level, one pipelined AES call covers the whole chunk (the blocks are independent, and
    /// were written a level earlier, so AES-NI never waits on a just-stored block), then one
    /// pass applies the corrections; the level's correction words of consecutive keys are one
    /// contiguous run of memory.
    #[inline(always)]
    fn walk_chunk<K: Fn(usize) -> usize>(
        &self,
        aes: &FixedKeyAes,
        mode: Mode,
        key_of: K,
        xs: &[u64],
        out: &mut [u8],
    ) {
        let n = self.n;
        let d = depth(n) as usize;
        let nu = leaf_bits(n);
        let low_mask = (1u64 << nu) - 1;
        let m = xs.len();
        let dc = C_LEFT ^ C_RIGHT;
        // Domain constant of level l for input x: C_LEFT or C_RIGHT by bit n-1-l; C_LEAF at d.
        let konst = |l: usize, x: u64| -> u128 {
            if l < d {
                C_LEFT ^ (dc & mask128((x >> (n - 1 - l as u32)) & 1))
            } else {
                C_LEAF
            }
        };
        let mut t = vec![self.party as u64; m];
        let mut tr = vec![0u64; m];
        let mut acc = vec![0u64; m];
        // inp = s ^ c: the next MMO input of every element.
        let mut inp = vec![0u128; m];
        let mut g = vec![0u128; m];
        for e in 0..m {
            inp[e] = self.root[key_of(e)] ^ konst(0, xs[e]);
            tr[e] = self.tcw_r[key_of(e)];
        }
        for l in 0..d {
            let shift = n - 1 - l as u32;
            let row = &self.scw[l * self.count..(l + 1) * self.count];
            g.copy_from_slice(&inp);
            aes.permute_many(&mut g);
            for e in 0..m {
                let x = xs[e];
                let b = (x >> shift) & 1;
                let cw = row[key_of(e)];
                let tl = cw as u64 & 1;
                let trb = (tr[e] >> l) & 1;
                let tcw = tl ^ (b & (tl ^ trb));
                let ew = (cw & !1) | tcw as u128;
                let c = g[e] ^ inp[e] ^ (ew & mask128(t[e]));
                let nt = c as u64 & 1;
                acc[e] ^= (b ^ 1) & (t[e] ^ nt);
                t[e] = nt;
                inp[e] = (c & !1) ^ konst(l + 1, x);
            }
        }
        g.copy_from_slice(&inp);
        aes.permute_many(&mut g);
        for e in 0..m {
            let leaf = g[e] ^ inp[e] ^ (self.leaf_cw[key_of(e)] & mask128(t[e]));
            let low = (xs[e] & low_mask) as u32;
            let above = leaf >> low;
            out[e] = match mode {
                Mode::Eq => (above & 1) as u8,
                Mode::Lt => ((acc[e] ^ ((above >> 1).count_ones() as u64)) & 1) as u8,
            };
        }
    }

    /// Evaluate `xs.len()` elements; element e uses key e (`per_key == 0`) or key
    /// e / per_key (each key at `per_key` consecutive points).
    fn eval_elements(&self, mode: Mode, xs: &[u64], per_key: usize) -> Vec<u8> {
        let total = xs.len();
        let mut out = vec![0u8; total];
        if total == 0 {
            return out;
        }
        let dm = domain_mask(self.n);
        let aes = FixedKeyAes::global();
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(ci, (oc, xc))| {
                let base = ci * CHUNK;
                let xv: Vec<u64> = xc.iter().map(|&x| x & dm).collect();
                if per_key == 0 {
                    self.walk_chunk(aes, mode, |e| base + e, &xv, oc);
                } else {
                    let keys: Vec<usize> = (0..xv.len()).map(|e| (base + e) / per_key).collect();
                    self.walk_chunk(aes, mode, |e| keys[e], &xv, oc);
                }
            });
        out
    }

    /// XOR share (0/1 in a `u8`) of 1[xs[i] < α_i] for key i at point xs[i] (reduced mod 2^n
    /// here). One call, rayon-parallel over chunks of 1024 elements; a chunk walks the tree
    /// level by level with one pipelined AES call per level over all its elements (AES-NI
    /// keeps 8 blocks in flight). Cost per element: d + 1 AES.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xs.len() != count`.
    pub fn eval_lt_batch(&self, xs: &[u64]) -> Result<Vec<u8>> {
        if xs.len() != self.count {
            return Err(FssError::LengthMismatch {
                what: "DPF comparison points",
                expected: self.count,
                got: xs.len(),
            });
        }
        Ok(self.eval_elements(Mode::Lt, xs, 0))
    }

    /// Key i evaluated at the `t` points `xs[i*t..(i+1)*t]` (one key answering several
    /// thresholds of its own gate). Output length `count * t`, in the same order.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xs.len() != count * t`.
    pub fn eval_lt_multi(&self, xs: &[u64], t: usize) -> Result<Vec<u8>> {
        let expected = self.count.checked_mul(t).ok_or_else(|| {
            FssError::BadParams("DPF multi-point evaluation count overflows".into())
        })?;
        if xs.len() != expected {
            return Err(FssError::LengthMismatch {
                what: "DPF multi-point comparison points",
                expected,
                got: xs.len(),
            });
        }
        if t == 0 {
            return Ok(Vec::new());
        }
        Ok(self.eval_elements(Mode::Lt, xs, t))
    }

    /// XOR share of the point function 1[xs[i] = α_i] (ordinary DPF evaluation).
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xs.len() != count`.
    pub fn eval_eq_batch(&self, xs: &[u64]) -> Result<Vec<u8>> {
        if xs.len() != self.count {
            return Err(FssError::LengthMismatch {
                what: "DPF evaluation points",
                expected: self.count,
                got: xs.len(),
            });
        }
        Ok(self.eval_elements(Mode::Eq, xs, 0))
    }

    /// Full-domain evaluation of key i (n ≤ [`EVAL_ALL_MAX_N`]): the party's XOR share of the
    /// unit vector e_α as bits packed in u64 words (bit x of the domain is bit x % 64 of word
    /// x / 64); `max(1, 2^n / 64)` words, bits ≥ 2^n of a short last word are zero.
    /// Cost: 2^(d+1) − 2 tree AES plus 2^d leaf AES.
    ///
    /// # Errors
    /// [`FssError::BadParams`] if n > 24 or i ≥ count.
    pub fn eval_all(&self, i: usize) -> Result<Vec<u64>> {
        if self.n > EVAL_ALL_MAX_N {
            return Err(FssError::BadParams(format!(
                "full-domain evaluation needs n <= {EVAL_ALL_MAX_N}, key has n = {}",
                self.n
            )));
        }
        if i >= self.count {
            return Err(FssError::BadParams(format!(
                "key index {i} outside a batch of {}",
                self.count
            )));
        }
        let n = self.n;
        let d = depth(n) as usize;
        let aes = FixedKeyAes::global();
        let mut seeds = vec![self.root[i]];
        let mut ts = vec![self.party as u64];
        let tr = self.tcw_r[i];
        for l in 0..d {
            let cw = self.scw[l * self.count + i];
            let el = cw;
            let er = (cw & !1) | ((tr >> l) & 1) as u128;
            let w = seeds.len();
            let mut gl = vec![0u128; w];
            let mut gr = vec![0u128; w];
            aes.mmo_same(C_LEFT, &seeds, &mut gl);
            aes.mmo_same(C_RIGHT, &seeds, &mut gr);
            let mut ns = vec![0u128; 2 * w];
            let mut nt = vec![0u64; 2 * w];
            for p in 0..w {
                let tm = mask128(ts[p]);
                let cl = gl[p] ^ (el & tm);
                let cr = gr[p] ^ (er & tm);
                ns[2 * p] = cl & !1;
                nt[2 * p] = cl as u64 & 1;
                ns[2 * p + 1] = cr & !1;
                nt[2 * p + 1] = cr as u64 & 1;
            }
            seeds = ns;
            ts = nt;
        }
        let mut leaves = vec![0u128; seeds.len()];
        aes.mmo_same(C_LEAF, &seeds, &mut leaves);
        let lcw = self.leaf_cw[i];
        if d == 0 {
            let leaf = leaves[0] ^ (lcw & mask128(ts[0]));
            if n == 7 {
                return Ok(vec![leaf as u64, (leaf >> 64) as u64]);
            }
            return Ok(vec![leaf as u64 & domain_mask(1 << n)]);
        }
        let mut out = Vec::with_capacity(2 * leaves.len());
        for (p, lf) in leaves.iter().enumerate() {
            let leaf = lf ^ (lcw & mask128(ts[p]));
            out.push(leaf as u64);
            out.push((leaf >> 64) as u64);
        }
        Ok(out)
    }

    /// Append the body sections (see the module documentation) to `w`.
    pub(crate) fn write_body(&self, w: &mut KeyWriter) {
        let d = depth(self.n) as usize;
        w.u128s(&self.root);
        w.u128s(&self.scw);
        w.u128s(&self.leaf_cw);
        let nb = d.div_ceil(8);
        let mut bits = Vec::with_capacity(nb * self.count);
        for &tr in &self.tcw_r {
            bits.extend_from_slice(&tr.to_le_bytes()[..nb]);
        }
        w.bytes(&bits);
    }

    /// Read the body sections of `count` keys (the caller has checked the body length).
    pub(crate) fn read_body(
        r: &mut KeyReader<'_>,
        n: u32,
        party: u8,
        count: usize,
    ) -> Result<Self> {
        check_n(n)?;
        let d = depth(n) as usize;
        let root = r.u128s(count)?;
        let total = d.checked_mul(count).ok_or_else(|| {
            FssError::BadHeader("DPF key count implies an impossible size".into())
        })?;
        let scw = r.u128s(total)?;
        let leaf_cw = r.u128s(count)?;
        let nb = d.div_ceil(8);
        let bits = r.bytes(nb * count)?;
        let dmask = if d == 0 { 0 } else { domain_mask(d as u32) };
        let mut tcw_r = Vec::with_capacity(count);
        for i in 0..count {
            let mut b = [0u8; 8];
            b[..nb].copy_from_slice(&bits[i * nb..(i + 1) * nb]);
            let v = u64::from_le_bytes(b);
            if v & !dmask != 0 {
                return Err(FssError::BadHeader(
                    "DPF key has nonzero padding in its control-bit corrections".into(),
                ));
            }
            tcw_r.push(v);
        }
        Ok(DpfKeys {
            n,
            party,
            count,
            root,
            scw,
            tcw_r,
            leaf_cw,
        })
    }

    /// Serialize with [`KeyWriter`] (kind [`KeyKind::Dpf`], params `[1, ν, 0, 0]`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = KeyWriter::new(
            KeyKind::Dpf,
            self.party,
            self.n,
            [1, leaf_bits(self.n), 0, 0],
            self.count as u64,
        );
        w.reserve(self.count * Self::key_bytes_per_key(self.n));
        self.write_body(&mut w);
        w.finish()
    }

    /// A batch from its bare body (what a device dealer copies back; layout in the module
    /// docs): party `party` of `count` keys over n bits. The body must be exactly
    /// `count · key_bytes_per_key(n)` bytes with zero padding bits.
    ///
    /// # Errors
    /// [`FssError::BadParams`] for n out of range, a party other than 0 or 1, or a body of the
    /// wrong length; [`FssError::BadHeader`] for nonzero padding bits.
    pub fn from_body(n: u32, party: u8, count: usize, body: &[u8]) -> Result<Self> {
        check_n(n)?;
        let want = count.checked_mul(Self::key_bytes_per_key(n));
        if party > 1 || want != Some(body.len()) {
            return Err(FssError::BadParams(format!(
                "a DPF body of {} bytes for party {party}, {count} keys over {n} bits",
                body.len()
            )));
        }
        let mut r = KeyReader::new(body);
        let k = Self::read_body(&mut r, n, party, count)?;
        r.finish()?;
        Ok(k)
    }

    /// Parse untrusted bytes. Never panics; every failure is a typed [`FssError`].
    ///
    /// # Errors
    /// Any header error of [`keyfmt::parse_header`] (bad magic, version, kind, truncation,
    /// trailing bytes, checksum), [`FssError::BadHeader`] for parameters other than
    /// `[1, ν, 0, 0]` or nonzero padding bits, [`FssError::SizeMismatch`] if the body length
    /// is not `count · key_bytes_per_key(n)`.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (h, body) = keyfmt::parse_header(b, KeyKind::Dpf)?;
        let count = check_dpf_header(&h)?;
        let mut r = KeyReader::new(body);
        let k = Self::read_body(&mut r, h.n, h.party, count)?;
        r.finish()?;
        Ok(k)
    }
}

/// The checks of a DPF header shared by [`DpfKeys::from_bytes`] and [`DpfView::view`]:
/// parameters `[1, ν, 0, 0]` and a body of exactly `count · key_bytes_per_key(n)` bytes.
/// Returns the key count.
fn check_dpf_header(h: &keyfmt::Header) -> Result<usize> {
    let want = [1, leaf_bits(h.n), 0, 0];
    if h.params != want {
        return Err(FssError::BadHeader(format!(
            "DPF parameters {:?}, expected {want:?}",
            h.params
        )));
    }
    let expected = h.count.checked_mul(DpfKeys::key_bytes_per_key(h.n) as u64);
    keyfmt::expect_body_len(h, expected)?;
    usize::try_from(h.count)
        .map_err(|_| FssError::BadHeader("DPF key count does not fit in memory".into()))
}

/// A zero-copy view of a serialized DPF batch (header + body), as [`crate::dcf::DcfKeys::view`]
/// is for DCF keys: the header and the exact body length are checked in O(1); no checksum (a key
/// stream's section checksum was verified when it was opened), no scan, no copy. The origin is
/// the body's position in a loaded stream, so that a backend holding the stream in its own
/// memory reads the body where it lies.
#[derive(Clone, Copy, Debug)]
pub struct DpfView<'a> {
    n: u32,
    party: u8,
    count: usize,
    body: &'a [u8],
    origin: Option<keyfmt::KeyOrigin>,
}

impl<'a> DpfView<'a> {
    /// View `k` (a whole serialized batch).
    ///
    /// # Errors
    /// Any header error of [`keyfmt::parse_header_view`], [`FssError::BadHeader`] for
    /// parameters other than `[1, ν, 0, 0]` or a count that does not fit in memory,
    /// [`FssError::SizeMismatch`] if the body is not `count · key_bytes_per_key(n)` bytes.
    pub fn view(k: keyfmt::KeyRef<'a>) -> Result<Self> {
        let (h, _, _) = keyfmt::parse_header_view(k.bytes, KeyKind::Dpf)?;
        let count = check_dpf_header(&h)?;
        let body = k
            .sub(keyfmt::HEADER_LEN..k.bytes.len())
            .ok_or(FssError::Truncated {
                needed: keyfmt::HEADER_LEN,
                available: k.bytes.len(),
            })?;
        Ok(DpfView {
            n: h.n,
            party: h.party,
            count,
            body: body.bytes,
            origin: body.origin,
        })
    }

    /// Input bits n.
    pub fn n(&self) -> u32 {
        self.n
    }
    /// The party (0 or 1).
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// The body bytes (layout in the module docs), `count · key_bytes_per_key(n)` of them.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
    /// Where the body sits in a loaded key stream (`None` for detached bytes).
    pub fn origin(&self) -> Option<keyfmt::KeyOrigin> {
        self.origin
    }
    /// The batch as host key structures (the CPU evaluator's form); checks the padding bits.
    ///
    /// # Errors
    /// [`FssError::BadHeader`] for nonzero padding bits; [`FssError::BodyOnDevice`] for a body
    /// that is held by a device only.
    pub fn to_keys(&self) -> Result<DpfKeys> {
        if self.count > 0 {
            keyfmt::KeyOrigin::check_on_host(self.origin)?;
        }
        DpfKeys::from_body(self.n, self.party, self.count, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_view_equals_the_parsed_batch_and_rejects_what_parsing_rejects() {
        let mut rng = Csprng::from_seed([9; 16]);
        for n in [1u32, 7, 8, 13, 34] {
            let alphas: Vec<u64> = (0..5).map(|_| rand_below(&mut rng, n)).collect();
            let (k0, _) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            let b = k0.to_bytes();
            let v = DpfView::view(keyfmt::KeyRef {
                bytes: &b,
                origin: Some(keyfmt::KeyOrigin {
                    stream: 3,
                    offset: 128,
                    on_host: true,
                }),
            })
            .unwrap();
            assert_eq!((v.n(), v.party(), v.count()), (n, 0, 5));
            assert_eq!(v.body(), &b[keyfmt::HEADER_LEN..]);
            assert_eq!(v.origin().unwrap().offset, 128 + keyfmt::HEADER_LEN as u64);
            let xs: Vec<u64> = (0..5).map(|_| rand_below(&mut rng, n)).collect();
            assert_eq!(
                v.to_keys().unwrap().eval_lt_batch(&xs).unwrap(),
                k0.eval_lt_batch(&xs).unwrap()
            );
            for cut in 0..b.len() {
                assert!(
                    DpfView::view(keyfmt::KeyRef::detached(&b[..cut])).is_err(),
                    "cut {cut}"
                );
            }
            let mut long = b.clone();
            long.push(0);
            assert!(DpfView::view(keyfmt::KeyRef::detached(&long)).is_err());
        }
    }

    fn rand_below(rng: &mut Csprng, n: u32) -> u64 {
        rng.next_u64() & domain_mask(n)
    }

    /// Alphas for domain n: the edge cases plus random ones.
    fn alphas_for(n: u32, rng: &mut Csprng, extra: usize) -> Vec<u64> {
        let dm = domain_mask(n);
        let mut a = vec![0, 1 & dm, dm, dm >> 1, (dm >> 1).wrapping_add(1) & dm];
        for _ in 0..extra {
            a.push(rand_below(rng, n));
        }
        a
    }

    #[test]
    fn key_bytes_match_sigma_formula() {
        for n in 8..=64u32 {
            let d = (n - 7) as usize;
            assert_eq!(DpfKeys::key_bytes_per_key(n), d * 16 + 32 + d.div_ceil(8));
        }
        for n in 1..=7 {
            assert_eq!(DpfKeys::key_bytes_per_key(n), 32);
        }
        assert_eq!(DpfKeys::key_bytes_per_key(50), 43 * 16 + 32 + 6);
    }

    #[test]
    fn bad_params() {
        let mut rng = Csprng::for_tests(1);
        assert!(matches!(
            gen_cmp_batch(0, &[0], &mut rng),
            Err(FssError::BadParams(_))
        ));
        assert!(matches!(
            gen_cmp_batch(65, &[0], &mut rng),
            Err(FssError::BadParams(_))
        ));
        assert!(matches!(
            gen_cmp_batch(5, &[3, 32], &mut rng),
            Err(FssError::BadParams(_))
        ));
        let (k0, _) = gen_cmp_batch(5, &[3, 31], &mut rng).unwrap();
        assert!(matches!(
            k0.eval_lt_batch(&[1]),
            Err(FssError::LengthMismatch { .. })
        ));
        assert!(matches!(
            k0.eval_eq_batch(&[1, 2, 3]),
            Err(FssError::LengthMismatch { .. })
        ));
        assert!(matches!(
            k0.eval_lt_multi(&[1, 2, 3], 2),
            Err(FssError::LengthMismatch { .. })
        ));
        assert!(k0.eval_all(2).is_err());
        let (k0, _) = gen_cmp_batch(25, &[3], &mut rng).unwrap();
        assert!(matches!(k0.eval_all(0), Err(FssError::BadParams(_))));
        let (e0, e1) = gen_cmp_batch(12, &[], &mut rng).unwrap();
        assert_eq!(e0.eval_lt_batch(&[]).unwrap(), Vec::<u8>::new());
        assert_eq!(e1.eval_lt_multi(&[], 3).unwrap(), Vec::<u8>::new());
        let back = DpfKeys::from_bytes(&e0.to_bytes()).unwrap();
        assert_eq!(back, e0);
    }

    /// Every n ≤ 10, every x, edge and random α: eval_lt, eval_eq, eval_all and eval_lt_multi.
    #[test]
    fn exhaustive_small_domains() {
        let mut rng = Csprng::for_tests(2);
        for n in 1..=10u32 {
            let size = 1u64 << n;
            let alphas = alphas_for(n, &mut rng, if n <= 4 { 12 } else { 40 });
            // Also every alpha for tiny domains.
            let alphas: Vec<u64> = if n <= 4 {
                alphas.into_iter().chain(0..size).collect()
            } else {
                alphas
            };
            let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            assert_eq!((k0.n(), k0.party(), k0.count()), (n, 0, alphas.len()));
            assert_eq!(k1.party(), 1);
            // Each key at every x in one multi call; also the batch calls per x.
            let t = size as usize;
            let xs: Vec<u64> = (0..alphas.len()).flat_map(|_| 0..size).collect();
            let m0 = k0.eval_lt_multi(&xs, t).unwrap();
            let m1 = k1.eval_lt_multi(&xs, t).unwrap();
            for (i, &a) in alphas.iter().enumerate() {
                for x in 0..size {
                    let e = i * t + x as usize;
                    assert_eq!(m0[e] ^ m1[e], (x < a) as u8, "n={n} a={a} x={x}");
                }
            }
            for x in 0..size {
                // Inputs are reduced mod 2^n: add junk high bits.
                let xv: Vec<u64> = vec![x | (size * 5); alphas.len()];
                let l0 = k0.eval_lt_batch(&xv).unwrap();
                let l1 = k1.eval_lt_batch(&xv).unwrap();
                let e0 = k0.eval_eq_batch(&xv).unwrap();
                let e1 = k1.eval_eq_batch(&xv).unwrap();
                for (i, &a) in alphas.iter().enumerate() {
                    assert_eq!(l0[i] ^ l1[i], (x < a) as u8, "n={n} a={a} x={x}");
                    assert_eq!(e0[i] ^ e1[i], (x == a) as u8, "n={n} a={a} x={x}");
                }
            }
            for (i, &a) in alphas.iter().enumerate() {
                let f0 = k0.eval_all(i).unwrap();
                let f1 = k1.eval_all(i).unwrap();
                assert_eq!(f0.len(), (size as usize / 64).max(1));
                for x in 0..size as usize {
                    let b0 = (f0[x / 64] >> (x % 64)) & 1;
                    let b1 = (f1[x / 64] >> (x % 64)) & 1;
                    assert_eq!(b0 ^ b1, (x as u64 == a) as u64);
                }
                // Pointwise agreement with eval_eq (per party).
                let mut pts = vec![0u64; alphas.len()];
                for x in 0..size {
                    pts[i] = x;
                    let p0 = k0.eval_eq_batch(&pts).unwrap()[i] as u64;
                    assert_eq!(p0, (f0[x as usize / 64] >> (x % 64)) & 1);
                }
                if size < 64 {
                    assert_eq!(f0[0] >> size, 0);
                    assert_eq!(f1[0] >> size, 0);
                }
            }
        }
    }

    /// eval_all equals pointwise evaluation on a larger domain (n = 16), both parties.
    #[test]
    fn eval_all_matches_pointwise() {
        let mut rng = Csprng::for_tests(3);
        let n = 16;
        let alphas = vec![0, 65535, 12345, 1 << 15];
        let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
        for (i, &a) in alphas.iter().enumerate() {
            let f0 = k0.eval_all(i).unwrap();
            let f1 = k1.eval_all(i).unwrap();
            assert_eq!(f0.len(), 1024);
            let xs: Vec<u64> = (0..1u64 << n).collect();
            // Key i at every x through the multi API needs a batch of one key: build it.
            let one0 = DpfKeys::from_bytes(&single(&k0, i).to_bytes()).unwrap();
            let one1 = single(&k1, i);
            let p0 = one0.eval_lt_multi(&xs, xs.len()).unwrap();
            let p1 = one1.eval_lt_multi(&xs, xs.len()).unwrap();
            let mut ones = 0;
            for x in 0..(1usize << n) {
                let b0 = (f0[x / 64] >> (x % 64)) & 1;
                let b1 = (f1[x / 64] >> (x % 64)) & 1;
                ones += b0 ^ b1;
                assert_eq!(b0 ^ b1, (x as u64 == a) as u64);
                assert_eq!(p0[x] ^ p1[x], ((x as u64) < a) as u8);
            }
            assert_eq!(ones, 1);
        }
    }

    /// The module documentation's construction, transcribed literally with scalar
    /// `FixedKeyAes::mmo` calls (what a CUDA kernel implements): key generation from given
    /// root seeds, and one party's evaluation.
    struct RefKey {
        scw: Vec<u128>,
        tcw_r: Vec<u64>,
        leaf_cw: u128,
    }

    fn ref_gen(n: u32, alpha: u64, root: [u128; 2]) -> RefKey {
        let aes = FixedKeyAes::global();
        let d = depth(n) as usize;
        let (mut s, mut t) = (root, [0u64, 1u64]);
        let mut key = RefKey {
            scw: vec![],
            tcw_r: vec![],
            leaf_cw: 0,
        };
        for l in 0..d {
            let a = (alpha >> (n - 1 - l as u32)) & 1;
            let g: Vec<[u128; 2]> = (0..2)
                .map(|b| [aes.mmo(C_LEFT, s[b]), aes.mmo(C_RIGHT, s[b])])
                .collect();
            let lose = 1 - a as usize;
            let keep = a as usize;
            let scw = (g[0][lose] ^ g[1][lose]) & !1;
            let tcw_l = ((g[0][0] ^ g[1][0]) as u64 & 1) ^ a ^ 1;
            let tcw_r = ((g[0][1] ^ g[1][1]) as u64 & 1) ^ a;
            let tcw_keep = if keep == 0 { tcw_l } else { tcw_r };
            for b in 0..2 {
                let mut c = g[b][keep];
                if t[b] == 1 {
                    c ^= scw | tcw_keep as u128;
                }
                s[b] = c & !1;
                t[b] = c as u64 & 1;
            }
            key.scw.push(scw | tcw_l as u128);
            key.tcw_r.push(tcw_r);
        }
        let low = alpha & ((1 << leaf_bits(n)) - 1);
        key.leaf_cw = aes.mmo(C_LEAF, s[0]) ^ aes.mmo(C_LEAF, s[1]) ^ (1u128 << low);
        key
    }

    /// (eq share, lt share) of one party at x.
    fn ref_eval(n: u32, key: &RefKey, root: u128, party: u8, x: u64) -> (u8, u8) {
        let aes = FixedKeyAes::global();
        let d = depth(n) as usize;
        let (mut s, mut t) = (root, party as u64);
        let mut lt = 0u64;
        for l in 0..d {
            let b = (x >> (n - 1 - l as u32)) & 1;
            let g = aes.mmo(if b == 1 { C_RIGHT } else { C_LEFT }, s);
            let cw = key.scw[l];
            let tcw = if b == 1 { key.tcw_r[l] } else { cw as u64 & 1 };
            let e = (cw & !1) | tcw as u128;
            let c = if t == 1 { g ^ e } else { g };
            let (ns, nt) = (c & !1, c as u64 & 1);
            if b == 0 {
                lt ^= t ^ nt;
            }
            s = ns;
            t = nt;
        }
        let mut leaf = aes.mmo(C_LEAF, s);
        if t == 1 {
            leaf ^= key.leaf_cw;
        }
        let low = (x & ((1 << leaf_bits(n)) - 1)) as u32;
        let eq = ((leaf >> low) & 1) as u8;
        for j in (low + 1)..128 {
            lt ^= ((leaf >> j) & 1) as u64;
        }
        (eq, lt as u8)
    }

    /// The batched, branch-free code equals the literal transcription, share by share.
    #[test]
    fn matches_reference_transcription() {
        let mut rng = Csprng::for_tests(9);
        for n in [1u32, 2, 6, 7, 8, 9, 13, 24, 37, 50, 63, 64] {
            let alphas = alphas_for(n, &mut rng, 6);
            let mut shadow = rng.clone();
            let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            let d = depth(n) as usize;
            for (i, &a) in alphas.iter().enumerate() {
                // Root seeds are drawn in the order (party 0, party 1) per key.
                let r0 = shadow.next_u128() & !1;
                let r1 = shadow.next_u128() & !1;
                assert_eq!((k0.root[i], k1.root[i]), (r0, r1));
                let rk = ref_gen(n, a, [r0, r1]);
                for l in 0..d {
                    assert_eq!(k0.scw[l * k0.count + i], rk.scw[l]);
                    assert_eq!((k0.tcw_r[i] >> l) & 1, rk.tcw_r[l]);
                }
                assert_eq!(k0.leaf_cw[i], rk.leaf_cw);
                let dm = domain_mask(n);
                let pts = [0, dm, a, a ^ 1, rand_below(&mut rng, n)];
                for &x in &pts {
                    let x = x & dm;
                    for (k, root) in [(&k0, r0), (&k1, r1)] {
                        let mut xs = vec![0; alphas.len()];
                        xs[i] = x;
                        let want = ref_eval(n, &rk, root, k.party(), x);
                        assert_eq!(k.eval_eq_batch(&xs).unwrap()[i], want.0);
                        assert_eq!(k.eval_lt_batch(&xs).unwrap()[i], want.1);
                    }
                }
            }
        }
    }

    /// Known answer: pins the PRG usage and the key layout (a CUDA port and any change of the
    /// construction must reproduce these bytes).
    #[test]
    fn known_answer() {
        let mut rng = Csprng::for_tests(2024);
        let (k0, k1) = gen_cmp_batch(20, &[0, 12345, (1 << 20) - 1], &mut rng).unwrap();
        let b0 = k0.to_bytes();
        let b1 = k1.to_bytes();
        // The bodies (the header carries the format version, which is not the DPF's layout).
        let got = (
            keyfmt::checksum(&b0[keyfmt::HEADER_LEN..]),
            keyfmt::checksum(&b1[keyfmt::HEADER_LEN..]),
            k0.eval_lt_batch(&[7, 12344, 99]).unwrap(),
        );
        assert_eq!(
            got,
            (0x9306_6882_f9a5_cda4, 0x7037_779d_52b7_fa2d, vec![1, 1, 0])
        );
    }

    /// Key i of a batch as a batch of one (test helper).
    fn single(k: &DpfKeys, i: usize) -> DpfKeys {
        let d = depth(k.n) as usize;
        DpfKeys {
            n: k.n,
            party: k.party,
            count: 1,
            root: vec![k.root[i]],
            scw: (0..d).map(|l| k.scw[l * k.count + i]).collect(),
            tcw_r: vec![k.tcw_r[i]],
            leaf_cw: vec![k.leaf_cw[i]],
        }
    }

    /// Randomized for every n up to 64, with edge α and edge x.
    #[test]
    fn randomized_all_widths() {
        let mut rng = Csprng::for_tests(4);
        for n in 1..=64u32 {
            let dm = domain_mask(n);
            let alphas = alphas_for(n, &mut rng, 20);
            let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            let mut xs_list: Vec<u64> = vec![0, 1, dm, dm - 1, dm >> 1, (dm >> 1) + 1];
            for _ in 0..10 {
                xs_list.push(rand_below(&mut rng, n));
            }
            let t = xs_list.len() + 3;
            let mut multi = Vec::new();
            for &a in &alphas {
                let mut pts = xs_list.clone();
                // Points adjacent to alpha.
                pts.push(a);
                pts.push(a.wrapping_sub(1) & dm);
                pts.push(a.wrapping_add(1) & dm);
                multi.extend_from_slice(&pts);
            }
            let m0 = k0.eval_lt_multi(&multi, t).unwrap();
            let m1 = k1.eval_lt_multi(&multi, t).unwrap();
            for (i, &a) in alphas.iter().enumerate() {
                for j in 0..t {
                    let x = multi[i * t + j];
                    assert_eq!(
                        m0[i * t + j] ^ m1[i * t + j],
                        (x < a) as u8,
                        "n={n} a={a} x={x}"
                    );
                }
            }
            let pts: Vec<u64> = alphas
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    if i % 2 == 0 {
                        a
                    } else {
                        rand_below(&mut rng, n)
                    }
                })
                .collect();
            let e0 = k0.eval_eq_batch(&pts).unwrap();
            let e1 = k1.eval_eq_batch(&pts).unwrap();
            let l0 = k0.eval_lt_batch(&pts).unwrap();
            let l1 = k1.eval_lt_batch(&pts).unwrap();
            for i in 0..alphas.len() {
                assert_eq!(e0[i] ^ e1[i], (pts[i] == alphas[i]) as u8);
                assert_eq!(l0[i] ^ l1[i], (pts[i] < alphas[i]) as u8);
            }
        }
    }

    /// A larger batch crossing several rayon chunks and a short last lane group.
    #[test]
    fn large_batch_chunks() {
        let mut rng = Csprng::for_tests(5);
        let n = 37;
        let count = 3 * CHUNK + 5;
        let alphas: Vec<u64> = (0..count).map(|_| rand_below(&mut rng, n)).collect();
        let xs: Vec<u64> = (0..count)
            .map(|i| match i % 3 {
                0 => alphas[i],
                1 => rand_below(&mut rng, n),
                _ => alphas[i] ^ (1 << (rng.next_u64() % 37)),
            })
            .collect();
        let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
        let l0 = k0.eval_lt_batch(&xs).unwrap();
        let l1 = k1.eval_lt_batch(&xs).unwrap();
        for i in 0..count {
            assert_eq!(l0[i] ^ l1[i], (xs[i] < alphas[i]) as u8);
        }
        // Shares alone look balanced (not a proof, a smoke test for "not the plain bit").
        let ones: usize = l0.iter().map(|&b| b as usize).sum();
        assert!(ones > count / 3 && ones < 2 * count / 3);
    }

    /// Key shape depends on (n, count) only.
    #[test]
    fn key_size_independent_of_alpha() {
        let mut rng = Csprng::for_tests(6);
        for n in [1u32, 5, 7, 8, 9, 15, 16, 17, 37, 50, 64] {
            for count in [1usize, 3, 17] {
                let mut sizes = Vec::new();
                for _ in 0..8 {
                    let alphas: Vec<u64> = (0..count).map(|_| rand_below(&mut rng, n)).collect();
                    let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
                    sizes.push(k0.to_bytes().len());
                    sizes.push(k1.to_bytes().len());
                }
                let want = keyfmt::HEADER_LEN + count * DpfKeys::key_bytes_per_key(n);
                assert!(sizes.iter().all(|&s| s == want), "n={n} count={count}");
            }
        }
    }

    #[test]
    fn serialization_roundtrip_and_wrong_kind() {
        let mut rng = Csprng::for_tests(7);
        for n in [3u32, 7, 8, 20, 50, 64] {
            let alphas: Vec<u64> = (0..11).map(|_| rand_below(&mut rng, n)).collect();
            let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            for k in [&k0, &k1] {
                let b = k.to_bytes();
                let back = DpfKeys::from_bytes(&b).unwrap();
                assert_eq!(&back, k);
                assert_eq!(back.to_bytes(), b);
            }
            let xs: Vec<u64> = (0..11).map(|_| rand_below(&mut rng, n)).collect();
            let b0 = DpfKeys::from_bytes(&k0.to_bytes()).unwrap();
            let b1 = DpfKeys::from_bytes(&k1.to_bytes()).unwrap();
            let l0 = b0.eval_lt_batch(&xs).unwrap();
            let l1 = b1.eval_lt_batch(&xs).unwrap();
            for i in 0..11 {
                assert_eq!(l0[i] ^ l1[i], (xs[i] < alphas[i]) as u8);
            }
            // Wrong kind.
            let mut b = k0.to_bytes();
            b[6..8].copy_from_slice(&(KeyKind::Dcf as u16).to_le_bytes());
            assert_eq!(
                DpfKeys::from_bytes(&b),
                Err(FssError::WrongKind {
                    expected: KeyKind::Dpf,
                    got: 2
                })
            );
            // A well-formed key file of another kind.
            let mut w = KeyWriter::new(KeyKind::Dcf, 0, n, [1, 7, 0, 0], 0);
            w.u64s(&[]);
            assert!(matches!(
                DpfKeys::from_bytes(&w.finish()),
                Err(FssError::WrongKind { .. })
            ));
        }
        assert!(DpfKeys::from_bytes(&[]).is_err());
        assert_eq!(DpfKeys::from_bytes(b"XXXXXXXX"), Err(FssError::BadMagic));
    }

    /// Rewrite header fields of a serialized key and fix its checksum.
    fn patch(b: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = b.to_vec();
        f(&mut v);
        let sum = keyfmt::checksum(&v[keyfmt::HEADER_LEN..]);
        v[56..64].copy_from_slice(&sum.to_le_bytes());
        v
    }

    #[test]
    fn tampered_headers_are_typed_errors() {
        let mut rng = Csprng::for_tests(8);
        let (k0, _) = gen_cmp_batch(20, &[5, 6, 7], &mut rng).unwrap();
        let b = k0.to_bytes();
        // n changed: size mismatch (params fixed up to stay valid where needed).
        let x = patch(&b, |v| v[16..20].copy_from_slice(&21u32.to_le_bytes()));
        assert!(matches!(
            DpfKeys::from_bytes(&x),
            Err(FssError::SizeMismatch { .. })
        ));
        // Bad params.
        let x = patch(&b, |v| v[20..24].copy_from_slice(&2u32.to_le_bytes()));
        assert!(matches!(
            DpfKeys::from_bytes(&x),
            Err(FssError::BadHeader(_))
        ));
        // Huge count.
        let x = patch(&b, |v| v[40..48].copy_from_slice(&u64::MAX.to_le_bytes()));
        assert!(DpfKeys::from_bytes(&x).is_err());
        // Count and body length consistent but huge: truncated, nothing allocated.
        let x = patch(&b, |v| {
            v[40..48].copy_from_slice(&(1u64 << 40).to_le_bytes());
            let len = (1u64 << 40) * DpfKeys::key_bytes_per_key(20) as u64;
            v[48..56].copy_from_slice(&len.to_le_bytes());
        });
        assert!(matches!(
            DpfKeys::from_bytes(&x),
            Err(FssError::Truncated { .. })
        ));
        // Nonzero padding in the tcw_R bytes (d = 13: 3 padding bits in the second byte).
        let x = patch(&b, |v| {
            let last = v.len() - 1;
            v[last] |= 0x80;
        });
        assert!(matches!(
            DpfKeys::from_bytes(&x),
            Err(FssError::BadHeader(_))
        ));
        // Party 1 flag on party 0's key parses (it is just another key) and evaluates.
        let x = patch(&b, |v| v[8] = 1);
        let k = DpfKeys::from_bytes(&x).unwrap();
        assert_eq!(k.eval_lt_batch(&[1, 2, 3]).unwrap().len(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Byte flips and truncations never panic: a typed error or a key that evaluates.
        #[test]
        fn fuzz_parse_never_panics(
            n in 1u32..=64,
            count in 0usize..4,
            seed in any::<u64>(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            fix_sum in any::<bool>(),
            truncate in any::<bool>(),
        ) {
            let mut rng = Csprng::for_tests(seed);
            let alphas: Vec<u64> = (0..count).map(|_| rand_below(&mut rng, n)).collect();
            let (k0, _) = gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            let mut b = k0.to_bytes();
            for (pos, val) in flips {
                let p = pos % b.len();
                b[p] ^= val;
            }
            if truncate {
                b.truncate(cut % (b.len() + 1));
            }
            if fix_sum && b.len() >= keyfmt::HEADER_LEN {
                let sum = keyfmt::checksum(&b[keyfmt::HEADER_LEN..]);
                b[56..64].copy_from_slice(&sum.to_le_bytes());
            }
            // Either a typed error (any variant) or a key that evaluates.
            if let Ok(k) = DpfKeys::from_bytes(&b) {
                let c = k.count();
                prop_assert!(c <= 4);
                let xs: Vec<u64> = (0..c as u64).collect();
                prop_assert_eq!(k.eval_lt_batch(&xs).unwrap().len(), c);
                prop_assert_eq!(k.eval_eq_batch(&xs).unwrap().len(), c);
                if k.n() <= 12 && c > 0 {
                    k.eval_all(0).unwrap();
                }
            }
        }
    }
}
