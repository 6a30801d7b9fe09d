//! Distributed comparison functions (Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee:
//! "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure Computation", Eurocrypt 2021)
//! with payloads in Z_{2^m} (1 ≤ m ≤ 64) and vector payloads of `p` elements.
//!
//! A key pair shares f_{α,β}(x) = β if x < α (unsigned, n-bit) else 0, with β ∈ (Z_{2^m})^p:
//! `eval(k_0, x) + eval(k_1, x) = f(x)` element-wise mod 2^m.
//!
//! # The construction, exactly (the CUDA backend must reproduce this bit for bit)
//!
//! Notation: blocks are `u128` (see [`suf_core::prg`] for the byte order of π); `G_c` is the MMO
//! PRG of [`FixedKeyAes::mmo`]; `B = ⌈p·m/128⌉` is the number of *value blocks* per level;
//! levels i = 0..n−1 consume the bits of x MSB first: `x_i = (x >> (n−1−i)) & 1`; direction
//! d = 0 is left, d = 1 is right.
//!
//! **Expansion of a seed s in direction d** (1 + B AES calls, all on the *parent* seed):
//! * child block `y = G_{C_d}(s)` with `C_0 = C_LEFT`, `C_1 = C_RIGHT`; the child's control bit
//!   is `y & 1` and its seed is `y & !1` (λ = 127);
//! * value blocks `w_j = G_{c_value(2j + d)}(s)` for j = 0..B−1;
//! * `Convert`: element q (0 ≤ q < p) of the level value is the integer formed by bits
//!   `[q·m, q·m + m)` of the little-endian concatenation `w_0 ‖ w_1 ‖ …` (bit k of the string
//!   is bit `k mod 128` of `w_{k div 128}`), read as an element of Z_{2^m}.
//!
//! The value blocks come from the parent seed, not from the child seed: on the off-path side
//! both parties end with the *same* child seed (that is what the seed correction word does),
//! so a value derived from it would be known to both and would expose β.
//!
//! **Key of party b** (one per element of the batch; all shapes depend on (n, m, p) only):
//! * `seed` — root seed s_b (128 bits); the root control bit is t_b = b (not stored);
//! * `scw[i]` — seed correction word of level i, a block with bit 0 clear;
//! * `tcw_l`, `tcw_r` — the left/right control-bit corrections, bit i for level i (u64 words);
//! * `vcw[i][q]` — value correction word of level i, element q, in Z_{2^m};
//! * `fcw[q]` — the final correction word, in Z_{2^m}.
//!
//! **Evaluation at x** (all arithmetic mod 2^m; t is 0 or 1, used as a multiplier/mask so that
//! no branch depends on it):
//! ```text
//! s ← seed; t ← b; V ← 0
//! for i in 0..n:
//!     d ← x_i;  y ← G_{C_d}(s);  v ← Convert(w_0.. w_{B−1} of s in direction d)
//!     V ← V + v + t·vcw[i]
//!     y ← y ⊕ t·(scw[i] | tcw_d bit i)       (the tcw bit lands in bit 0)
//!     t ← y & 1;  s ← y & !1
//! V ← V + t·fcw
//! output (−1)^b · V
//! ```
//! Cost: n·(1 + B) AES calls (e.g. 128 at n = m = 64, p = 1). Unlike BCG+21 the leaf seed is
//! never converted (B calls saved per evaluation): the final correction word is masked by the
//! last level's keep-side value of the other party, which nothing else in the key uses, so it
//! is pseudorandom to each party without a leaf conversion. Off the α path both parties hold
//! the same control bit, so the `t·fcw` terms cancel; on it they differ and fcw cancels Vα.
//!
//! **Key generation** (dealer; α MSB first as a_i, both parties' seeds expanded both ways):
//! ```text
//! s_0, s_1 random; t_0 = 0, t_1 = 1; Vα ← 0
//! for i in 0..n:
//!     for b, d: (s_b^d, t_b^d, v_b^d) ← expansion of s_b in direction d
//!     keep ← a_i, lose ← 1 − a_i;  σ ← (−1)^{t_1}
//!     scw[i]   ← s_0^lose ⊕ s_1^lose
//!     vcw[i]   ← σ·(v_1^lose − v_0^lose − Vα) + [a_i = 1]·σ·β
//!     Vα       ← Vα − v_1^keep + v_0^keep + σ·vcw[i]
//!     tcw_l[i] ← t_0^L ⊕ t_1^L ⊕ a_i ⊕ 1;  tcw_r[i] ← t_0^R ⊕ t_1^R ⊕ a_i
//!     s_b ← s_b^keep ⊕ t_b·scw[i];  t_b ← t_b^keep ⊕ t_b·tcw_keep[i]
//! fcw ← (−1)^{t_1}·(−Vα)
//! ```
//!
//! # Serialized layout ([`KeyKind::Dcf`])
//!
//! Header params `[m, p, 0, 0]`. Body sections in this order:
//! `seed: count × u128`, `scw: n × count × u128`, `tcw_l: count × u64`, `tcw_r: count × u64`,
//! `vcw: n × count × p × u64`, `fcw: count × p × u64`. Per-level fields are **level-major**
//! (all keys' level 0, then all keys' level 1, …; the key index varies fastest, as in the DPF
//! layout), so GPU threads that each own one key load consecutive words. Body bytes per key:
//! [`DcfKeys::key_bytes_per_key`] = 16 + 16n + 16 + 8p(n + 1). Parsing refuses non-canonical
//! keys (scw bit 0 set, tcw bits at or above n, payload words ≥ 2^m).

use rayon::prelude::*;
use suf_core::prg::{c_value, Csprng, FixedKeyAes, C_LEFT, C_RIGHT};

use crate::error::{FssError, Result};
use crate::keyfmt::{expect_body_len, parse_header, KeyKind, KeyReader, KeyWriter};

/// Most value blocks per level (the `c_value` index 2j + 1 must stay below 2^16).
pub const MAX_VALUE_BLOCKS: usize = 1 << 15;
/// Most payload elements per key.
pub const MAX_PAYLOAD_LEN: usize = 1 << 16;

/// Fewest lanes of the general path (AES-NI pipelines 8 independent blocks).
const LANES: usize = 8;
/// Lanes of the p = 1 fast path (the general path uses about this many blocks per level).
const LANES_P1: usize = 512;
/// Evaluations per rayon task.
const CHUNK: usize = 1024;

/// C_LEFT for d = 0, C_RIGHT for d = 1 (d is a public input bit).
#[inline(always)]
fn child_const(d: u64) -> u128 {
    C_LEFT ^ ((d as u128).wrapping_neg() & (C_LEFT ^ C_RIGHT))
}

/// 2^m − 1.
#[inline]
pub(crate) fn mask_bits(m: u32) -> u64 {
    if m >= 64 {
        u64::MAX
    } else {
        (1u64 << m) - 1
    }
}

/// Value blocks per level: ⌈p·m/128⌉.
#[inline]
pub fn value_blocks(m: u32, p: usize) -> usize {
    (p * m as usize).div_ceil(128)
}

/// AES calls per evaluation: n·(1 + ⌈p·m/128⌉).
pub fn aes_per_eval(n: u32, m: u32, p: usize) -> usize {
    n as usize * (1 + value_blocks(m, p))
}

fn check_params(n: u32, m: u32, p: usize) -> std::result::Result<(), String> {
    if !(1..=64).contains(&n) {
        return Err(format!("domain bits n = {n} outside 1..=64"));
    }
    if !(1..=64).contains(&m) {
        return Err(format!("payload bits m = {m} outside 1..=64"));
    }
    if p == 0 || p > MAX_PAYLOAD_LEN {
        return Err(format!(
            "payload length p = {p} outside 1..={MAX_PAYLOAD_LEN}"
        ));
    }
    if value_blocks(m, p) > MAX_VALUE_BLOCKS {
        return Err(format!("payload of {p} × {m} bits is too large"));
    }
    Ok(())
}

/// Bits `[off, off + 64)` of the little-endian concatenation of `blocks` (zero past the end),
/// as a u64; only the low m bits of an element read this way are meaningful.
#[inline]
fn bits_at(blocks: &[u128], off: usize, m: u32) -> u64 {
    let j = off / 128;
    let sh = off % 128;
    let lo = blocks[j] >> sh;
    if sh + m as usize > 128 {
        (lo | (blocks[j + 1] << (128 - sh))) as u64
    } else {
        lo as u64
    }
}

/// A batch of `count` DCF keys of one party (structure of arrays).
#[derive(Clone, PartialEq, Eq)]
pub struct DcfKeys {
    n: u32,
    m: u32,
    p: usize,
    party: u8,
    count: usize,
    seed: Vec<u128>,
    scw: Vec<u128>,
    tcw_l: Vec<u64>,
    tcw_r: Vec<u64>,
    vcw: Vec<u64>,
    fcw: Vec<u64>,
}

impl std::fmt::Debug for DcfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcfKeys")
            .field("n", &self.n)
            .field("m", &self.m)
            .field("p", &self.p)
            .field("party", &self.party)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl DcfKeys {
    /// Input domain bits n.
    pub fn n(&self) -> u32 {
        self.n
    }
    /// Payload ring bits m.
    pub fn m(&self) -> u32 {
        self.m
    }
    /// Payload elements per key.
    pub fn p(&self) -> usize {
        self.p
    }
    /// The party (0 or 1) this batch belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// AES calls per evaluation of one key at one point.
    pub fn aes_per_eval(&self) -> usize {
        aes_per_eval(self.n, self.m, self.p)
    }

    /// Serialized body bytes per key (closed form; the header adds 64 bytes per batch):
    /// 16 + 16n + 16 + 8p(n + 1).
    pub fn key_bytes_per_key(n: u32, m: u32, p: usize) -> usize {
        let _ = m;
        let n = n as usize;
        16 + 16 * n + 16 + 8 * p * (n + 1)
    }

    fn body_len(n: u32, p: usize, count: u64) -> Option<u64> {
        let n = n as u64;
        let per = 32u64
            .checked_add(16u64.checked_mul(n)?)?
            .checked_add(8u64.checked_mul(p as u64)?.checked_mul(n + 1)?)?;
        per.checked_mul(count)
    }

    /// Evaluate key i at `xs[i]` (taken mod 2^n). Returns `count·p` shares, key-major.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xs.len() != count`.
    pub fn eval_batch(&self, xs: &[u64]) -> Result<Vec<u64>> {
        self.eval_multi(xs, 1)
    }

    /// Evaluate key i at the t points `xs[i·t .. (i+1)·t]` (taken mod 2^n). Returns
    /// `count·t·p` shares, laid out `[key][point][payload]`.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xs.len() != count·t`.
    pub fn eval_multi(&self, xs: &[u64], t: usize) -> Result<Vec<u64>> {
        let jobs = self.count.checked_mul(t).ok_or(FssError::LengthMismatch {
            what: "xs",
            expected: usize::MAX,
            got: xs.len(),
        })?;
        if xs.len() != jobs {
            return Err(FssError::LengthMismatch {
                what: "xs",
                expected: jobs,
                got: xs.len(),
            });
        }
        let mut out = vec![0u64; jobs * self.p];
        self.eval_multi_into(xs, t, &mut out)?;
        Ok(out)
    }

    /// [`DcfKeys::eval_multi`] into a caller buffer of `count·t·p` words.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if a length disagrees.
    pub fn eval_multi_into(&self, xs: &[u64], t: usize, out: &mut [u64]) -> Result<()> {
        let jobs = self.count.checked_mul(t);
        if jobs != Some(xs.len()) {
            return Err(FssError::LengthMismatch {
                what: "xs",
                expected: jobs.unwrap_or(usize::MAX),
                got: xs.len(),
            });
        }
        if out.len() != xs.len() * self.p {
            return Err(FssError::LengthMismatch {
                what: "out",
                expected: xs.len() * self.p,
                got: out.len(),
            });
        }
        if xs.is_empty() {
            return Ok(());
        }
        let p = self.p;
        out.par_chunks_mut(CHUNK * p)
            .zip(xs.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(ci, (o, x))| {
                if p == 1 {
                    self.eval_range_p1(x, t, ci * CHUNK, o);
                } else {
                    self.eval_range(x, t, ci * CHUNK, o);
                }
            });
        Ok(())
    }

    /// Fast path p = 1 (one value block per level). Up to [`LANES_P1`] evaluations walk their
    /// paths together, level by level: one pipelined AES call per level covers them all, and
    /// the level's correction words of consecutive keys are read as one contiguous run.
    fn eval_range_p1(&self, xs: &[u64], t: usize, job0: usize, out: &mut [u64]) {
        let aes = FixedKeyAes::global();
        let n = self.n as usize;
        let cnt = self.count;
        let xmask = mask_bits(self.n);
        let mm = mask_bits(self.m);
        let neg = (self.party as u64).wrapping_neg();
        let width = xs.len().min(LANES_P1);
        let mut blk = vec![0u128; 2 * width];
        let mut key = vec![0usize; width];
        let mut x = vec![0u64; width];
        let mut tsel = vec![0u64; width];
        let mut s = vec![0u128; width];
        let mut tb = vec![0u64; width];
        let mut acc = vec![0u64; width];
        for (g, (xg, og)) in xs.chunks(width).zip(out.chunks_mut(width)).enumerate() {
            let lanes = xg.len();
            for e in 0..lanes {
                let k = (job0 + g * width + e) / t;
                x[e] = xg[e] & xmask;
                // Bit i of xr is x's bit at level i (MSB first).
                let xr = x[e].reverse_bits() >> (64 - n);
                tsel[e] = (self.tcw_l[k] & !xr) | (self.tcw_r[k] & xr);
                key[e] = k;
                s[e] = self.seed[k];
                tb[e] = self.party as u64;
                acc[e] = 0;
            }
            for i in 0..n {
                let sh = n - 1 - i;
                // MMO by hand: blk = π(s ⊕ c), then G_c(s) = blk ⊕ s ⊕ c below.
                for e in 0..lanes {
                    let d = (x[e] >> sh) & 1;
                    blk[2 * e] = s[e] ^ child_const(d);
                    blk[2 * e + 1] = s[e] ^ c_value(d as u32);
                }
                aes.permute_many(&mut blk[..2 * lanes]);
                let scw = &self.scw[i * cnt..(i + 1) * cnt];
                let vcw = &self.vcw[i * cnt..(i + 1) * cnt];
                for e in 0..lanes {
                    let k = key[e];
                    let d = (x[e] >> sh) & 1;
                    let tm = tb[e].wrapping_neg();
                    let v = (blk[2 * e + 1] ^ s[e] ^ c_value(d as u32)) as u64;
                    acc[e] = acc[e].wrapping_add(v).wrapping_add(tm & vcw[k]);
                    let corr = scw[k] | ((tsel[e] >> i) & 1) as u128;
                    let g = blk[2 * e] ^ s[e] ^ child_const(d);
                    let y = g ^ (corr & (tm as i64 as i128 as u128));
                    tb[e] = (y & 1) as u64;
                    s[e] = y & !1;
                }
            }
            for e in 0..lanes {
                let v = acc[e].wrapping_add(tb[e].wrapping_neg() & self.fcw[key[e]]);
                // (−1)^party · v without a branch: (v ⊕ neg) − neg.
                og[e] = (v ^ neg).wrapping_sub(neg) & mm;
            }
        }
    }

    /// General path (any p, B value blocks per level), same walk as the fast path.
    fn eval_range(&self, xs: &[u64], t: usize, job0: usize, out: &mut [u64]) {
        let aes = FixedKeyAes::global();
        let n = self.n as usize;
        let cnt = self.count;
        let m = self.m;
        let p = self.p;
        let nb = value_blocks(m, p);
        let w = 1 + nb;
        let xmask = mask_bits(self.n);
        let mm = mask_bits(m);
        let neg = (self.party as u64).wrapping_neg();
        let width = xs.len().min((LANES_P1 / w).max(LANES));
        let mut blk = vec![0u128; w * width];
        let mut key = vec![0usize; width];
        let mut x = vec![0u64; width];
        let mut tsel = vec![0u64; width];
        let mut s = vec![0u128; width];
        let mut tb = vec![0u64; width];
        let mut acc = vec![0u64; width * p];
        for (g, (xg, og)) in xs.chunks(width).zip(out.chunks_mut(width * p)).enumerate() {
            let lanes = xg.len();
            for e in 0..lanes {
                let k = (job0 + g * width + e) / t;
                x[e] = xg[e] & xmask;
                let xr = x[e].reverse_bits() >> (64 - n);
                tsel[e] = (self.tcw_l[k] & !xr) | (self.tcw_r[k] & xr);
                key[e] = k;
                s[e] = self.seed[k];
                tb[e] = self.party as u64;
            }
            acc.fill(0);
            for i in 0..n {
                let sh = n - 1 - i;
                // MMO by hand: blk = π(s ⊕ c), then G_c(s) = blk ⊕ s ⊕ c below.
                for e in 0..lanes {
                    let d = (x[e] >> sh) & 1;
                    blk[w * e] = s[e] ^ child_const(d);
                    for j in 0..nb {
                        blk[w * e + 1 + j] = s[e] ^ c_value((2 * j) as u32 + d as u32);
                    }
                }
                aes.permute_many(&mut blk[..w * lanes]);
                let scw = &self.scw[i * cnt..(i + 1) * cnt];
                let vcw = &self.vcw[i * cnt * p..(i + 1) * cnt * p];
                for e in 0..lanes {
                    let k = key[e];
                    let d = (x[e] >> sh) & 1;
                    let tm = tb[e].wrapping_neg();
                    blk[w * e] ^= s[e] ^ child_const(d);
                    for j in 0..nb {
                        blk[w * e + 1 + j] ^= s[e] ^ c_value((2 * j) as u32 + d as u32);
                    }
                    let vals = &blk[w * e + 1..w * (e + 1)];
                    let vc = &vcw[k * p..(k + 1) * p];
                    for (q, (a, &c)) in acc[e * p..(e + 1) * p].iter_mut().zip(vc).enumerate() {
                        *a = a
                            .wrapping_add(bits_at(vals, q * m as usize, m))
                            .wrapping_add(tm & c);
                    }
                    let corr = scw[k] | ((tsel[e] >> i) & 1) as u128;
                    let y = blk[w * e] ^ (corr & (tm as i64 as i128 as u128));
                    tb[e] = (y & 1) as u64;
                    s[e] = y & !1;
                }
            }
            for e in 0..lanes {
                let tm = tb[e].wrapping_neg();
                let k = key[e];
                let fc = &self.fcw[k * p..(k + 1) * p];
                for q in 0..p {
                    let v = acc[e * p + q].wrapping_add(tm & fc[q]);
                    og[e * p + q] = (v ^ neg).wrapping_sub(neg) & mm;
                }
            }
        }
    }

    /// The serialized batch ([`KeyKind::Dcf`], layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = KeyWriter::new(
            KeyKind::Dcf,
            self.party,
            self.n,
            [self.m, self.p as u32, 0, 0],
            self.count as u64,
        );
        w.reserve(self.count * Self::key_bytes_per_key(self.n, self.m, self.p));
        w.u128s(&self.seed);
        w.u128s(&self.scw);
        w.u64s(&self.tcw_l);
        w.u64s(&self.tcw_r);
        w.u64s(&self.vcw);
        w.u64s(&self.fcw);
        w.finish()
    }

    /// Parse a serialized batch. Never panics: every malformed input is a typed error.
    ///
    /// # Errors
    /// Header, size, checksum and canonical-form failures as [`FssError`] input errors.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (h, body) = parse_header(b, KeyKind::Dcf)?;
        let [m, p32, z0, z1] = h.params;
        if z0 != 0 || z1 != 0 {
            return Err(FssError::BadHeader("unused DCF params are not zero".into()));
        }
        let p = p32 as usize;
        check_params(h.n, m, p).map_err(FssError::BadHeader)?;
        expect_body_len(&h, Self::body_len(h.n, p, h.count))?;
        let count = usize::try_from(h.count)
            .map_err(|_| FssError::BadHeader("count does not fit in memory".into()))?;
        let n = h.n as usize;
        let mut r = KeyReader::new(body);
        let seed = r.u128s(count)?;
        let scw = r.u128s(count * n)?;
        let tcw_l = r.u64s(count)?;
        let tcw_r = r.u64s(count)?;
        let vcw = r.u64s(count * n * p)?;
        let fcw = r.u64s(count * p)?;
        r.finish()?;
        if scw.iter().any(|&s| s & 1 != 0) {
            return Err(FssError::BadHeader(
                "seed correction word with bit 0 set".into(),
            ));
        }
        let tmask = mask_bits(h.n);
        if tcw_l.iter().chain(&tcw_r).any(|&w| w & !tmask != 0) {
            return Err(FssError::BadHeader(
                "control-bit correction beyond the domain bits".into(),
            ));
        }
        let vm = mask_bits(m);
        if vcw.iter().chain(&fcw).any(|&v| v & !vm != 0) {
            return Err(FssError::BadHeader(
                "payload correction word not reduced mod 2^m".into(),
            ));
        }
        Ok(DcfKeys {
            n: h.n,
            m,
            p,
            party: h.party,
            count,
            seed,
            scw,
            tcw_l,
            tcw_r,
            vcw,
            fcw,
        })
    }
}

/// Generate `alphas.len()` DCF key pairs over n-bit inputs: key i shares
/// f(x) = `betas[i·p .. (i+1)·p]` if x < `alphas[i]` else 0, payload in (Z_{2^m})^p
/// (payload words are taken mod 2^m).
///
/// # Errors
/// [`FssError::BadParams`] for n, m, p out of range or α ≥ 2^n;
/// [`FssError::LengthMismatch`] if `betas.len() != alphas.len()·p`.
pub fn gen_batch(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    rng: &mut Csprng,
) -> Result<(DcfKeys, DcfKeys)> {
    check_params(n, m, p).map_err(FssError::BadParams)?;
    let count = alphas.len();
    let want = count.checked_mul(p).ok_or(FssError::LengthMismatch {
        what: "betas",
        expected: usize::MAX,
        got: betas.len(),
    })?;
    if betas.len() != want {
        return Err(FssError::LengthMismatch {
            what: "betas",
            expected: want,
            got: betas.len(),
        });
    }
    let xmask = mask_bits(n);
    if let Some(a) = alphas.iter().find(|&&a| a & !xmask != 0) {
        return Err(FssError::BadParams(format!(
            "alpha {a} outside the {n}-bit domain"
        )));
    }
    let roots: Vec<(u128, u128)> = (0..count)
        .map(|_| (rng.next_u128(), rng.next_u128()))
        .collect();
    // Chunks of keys in parallel; each chunk builds its own level-major part.
    let parts: Vec<GenPart> = roots
        .par_chunks(GEN_CHUNK)
        .enumerate()
        .map(|(ci, rc)| {
            let base = ci * GEN_CHUNK;
            let len = rc.len();
            gen_chunk(
                n,
                m,
                p,
                &alphas[base..base + len],
                &betas[base * p..(base + len) * p],
                rc,
            )
        })
        .collect();
    let nn = n as usize;
    let mut scw = vec![0u128; nn * count];
    let mut vcw = vec![0u64; nn * count * p];
    let mut tcw_l = Vec::with_capacity(count);
    let mut tcw_r = Vec::with_capacity(count);
    let mut fcw = Vec::with_capacity(count * p);
    for (ci, part) in parts.into_iter().enumerate() {
        let base = ci * GEN_CHUNK;
        let len = part.tcw_l.len();
        for i in 0..nn {
            scw[i * count + base..i * count + base + len]
                .copy_from_slice(&part.scw[i * len..(i + 1) * len]);
            vcw[(i * count + base) * p..(i * count + base + len) * p]
                .copy_from_slice(&part.vcw[i * len * p..(i + 1) * len * p]);
        }
        tcw_l.extend(part.tcw_l);
        tcw_r.extend(part.tcw_r);
        fcw.extend(part.fcw);
    }
    let k0 = DcfKeys {
        n,
        m,
        p,
        party: 0,
        count,
        seed: roots.iter().map(|r| r.0).collect(),
        scw,
        tcw_l,
        tcw_r,
        vcw,
        fcw,
    };
    let k1 = DcfKeys {
        party: 1,
        seed: roots.iter().map(|r| r.1).collect(),
        ..k0.clone()
    };
    Ok((k0, k1))
}

/// Keys per parallel generation task.
const GEN_CHUNK: usize = 256;
/// Keys expanded together, level by level (4(1 + B) independent blocks each per level).
const GEN_LANES: usize = 8;

/// The correction words of a chunk of keys (shared by both parties), level-major in the chunk.
struct GenPart {
    scw: Vec<u128>,
    tcw_l: Vec<u64>,
    tcw_r: Vec<u64>,
    vcw: Vec<u64>,
    fcw: Vec<u64>,
}

/// Generate the correction words of `roots.len()` keys. Per level, the seeds of both parties
/// of [`GEN_LANES`] keys are expanded in both directions by one pipelined AES call.
fn gen_chunk(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    roots: &[(u128, u128)],
) -> GenPart {
    let aes = FixedKeyAes::global();
    let nn = n as usize;
    let len = roots.len();
    let nb = value_blocks(m, p);
    let mm = mask_bits(m);
    // Blocks per party: child L, child R, then value block j in direction d at 2 + 2j + d.
    let per = 2 + 2 * nb;
    let per2 = 2 * per;
    let mut consts = vec![C_LEFT, C_RIGHT];
    for j in 0..nb {
        for d in 0..2 {
            consts.push(c_value((2 * j + d) as u32));
        }
    }
    let mut part = GenPart {
        scw: vec![0; nn * len],
        tcw_l: vec![0; len],
        tcw_r: vec![0; len],
        vcw: vec![0; nn * len * p],
        fcw: vec![0; len * p],
    };
    let mut buf = vec![0u128; GEN_LANES * per2];
    let mut vb = vec![0u128; nb];
    // v[(party·2 + dir)·p + q] of one lane.
    let mut v = vec![0u64; 4 * p];
    let mut valpha = vec![0u64; GEN_LANES * p];
    for g0 in (0..len).step_by(GEN_LANES) {
        let lanes = (len - g0).min(GEN_LANES);
        let mut s = [[0u128; GEN_LANES]; 2];
        let mut t = [[0u64; GEN_LANES]; 2];
        for e in 0..lanes {
            s[0][e] = roots[g0 + e].0;
            s[1][e] = roots[g0 + e].1;
            t[1][e] = 1;
        }
        valpha.fill(0);
        for i in 0..nn {
            // MMO by hand: buf = π(s ⊕ c), then G_c(s) = buf ⊕ s ⊕ c.
            for e in 0..lanes {
                for b in 0..2 {
                    let o = e * per2 + b * per;
                    for (x, &c) in buf[o..o + per].iter_mut().zip(&consts) {
                        *x = s[b][e] ^ c;
                    }
                }
            }
            aes.permute_many(&mut buf[..lanes * per2]);
            for e in 0..lanes {
                let k = g0 + e;
                let a = ((alphas[k] >> (nn - 1 - i)) & 1) as usize;
                let blk = &mut buf[e * per2..(e + 1) * per2];
                for b in 0..2 {
                    for (x, &c) in blk[b * per..(b + 1) * per].iter_mut().zip(&consts) {
                        *x ^= s[b][e] ^ c;
                    }
                }
                // Convert values: party b, direction d, element q.
                for b in 0..2 {
                    for d in 0..2 {
                        for j in 0..nb {
                            vb[j] = blk[b * per + 2 + 2 * j + d];
                        }
                        for q in 0..p {
                            v[(b * 2 + d) * p + q] = bits_at(&vb, q * m as usize, m);
                        }
                    }
                }
                let child = |b: usize, d: usize| blk[b * per + d];
                let tbit = |b: usize, d: usize| (child(b, d) & 1) as u64;
                let keep = a;
                let lose = 1 - a;
                let scw = (child(0, lose) ^ child(1, lose)) & !1;
                let tcl = tbit(0, 0) ^ tbit(1, 0) ^ a as u64 ^ 1;
                let tcr = tbit(0, 1) ^ tbit(1, 1) ^ a as u64;
                let neg = t[1][e].wrapping_neg();
                let sig = |x: u64| (x ^ neg).wrapping_sub(neg);
                let beta = &betas[k * p..(k + 1) * p];
                let va = &mut valpha[e * p..(e + 1) * p];
                let vc = &mut part.vcw[(i * len + k) * p..(i * len + k + 1) * p];
                let am = (a as u64).wrapping_neg();
                for q in 0..p {
                    let v0l = v[lose * p + q];
                    let v1l = v[(2 + lose) * p + q];
                    let v0k = v[keep * p + q];
                    let v1k = v[(2 + keep) * p + q];
                    let cw = sig(v1l.wrapping_sub(v0l).wrapping_sub(va[q]))
                        .wrapping_add(am & sig(beta[q]))
                        & mm;
                    va[q] = va[q]
                        .wrapping_sub(v1k)
                        .wrapping_add(v0k)
                        .wrapping_add(sig(cw));
                    vc[q] = cw;
                }
                part.scw[i * len + k] = scw;
                part.tcw_l[k] |= tcl << i;
                part.tcw_r[k] |= tcr << i;
                let tck = if keep == 0 { tcl } else { tcr };
                for b in 0..2 {
                    let y = child(b, keep);
                    let tm = (t[b][e] as u128).wrapping_neg();
                    s[b][e] = (y & !1) ^ (tm & scw);
                    t[b][e] = ((y & 1) as u64) ^ (t[b][e] & tck);
                }
            }
        }
        for e in 0..lanes {
            let k = g0 + e;
            let neg = t[1][e].wrapping_neg();
            for q in 0..p {
                let f = valpha[e * p + q].wrapping_neg();
                part.fcw[k * p + q] = (f ^ neg).wrapping_sub(neg) & mm;
            }
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyfmt::{checksum, HEADER_LEN};
    use proptest::prelude::*;

    fn recon(a: &[u64], b: &[u64], m: u32) -> Vec<u64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.wrapping_add(*y) & mask_bits(m))
            .collect()
    }

    #[test]
    fn exhaustive_small_domains() {
        let mut rng = Csprng::for_tests(1);
        for n in 1..=10u32 {
            let dom = 1u64 << n;
            for &m in &[1u32, 7, n, 64] {
                for &p in &[1usize, 3] {
                    let mm = mask_bits(m);
                    let mut alphas = vec![0, 1 % dom, dom - 1];
                    for _ in 0..12 {
                        alphas.push(rng.next_u64() % dom);
                    }
                    let mut all_a = Vec::new();
                    let mut all_b = Vec::new();
                    for &a in &alphas {
                        for kind in 0..3 {
                            all_a.push(a);
                            for _ in 0..p {
                                all_b.push(match kind {
                                    0 => 0,
                                    1 => u64::MAX,
                                    _ => rng.next_u64(),
                                });
                            }
                        }
                    }
                    let (k0, k1) = gen_batch(n, m, p, &all_a, &all_b, &mut rng).unwrap();
                    let cnt = all_a.len();
                    let xs: Vec<u64> = (0..cnt).flat_map(|_| 0..dom).collect();
                    let y0 = k0.eval_multi(&xs, dom as usize).unwrap();
                    let y1 = k1.eval_multi(&xs, dom as usize).unwrap();
                    let y = recon(&y0, &y1, m);
                    for k in 0..cnt {
                        for x in 0..dom {
                            for q in 0..p {
                                let got = y[(k * dom as usize + x as usize) * p + q];
                                let want = if x < all_a[k] {
                                    all_b[k * p + q] & mm
                                } else {
                                    0
                                };
                                assert_eq!(got, want, "n={n} m={m} p={p} a={} x={x}", all_a[k]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_wide_domains() {
        let mut rng = Csprng::for_tests(2);
        for &n in &[11u32, 16, 31, 37, 50, 63, 64] {
            for &(m, p) in &[(64u32, 1usize), (n, 1), (1, 1), (n, 3), (50, 5), (13, 20)] {
                let dom = mask_bits(n);
                let cnt = 40;
                let mut alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & dom).collect();
                alphas[0] = 0;
                alphas[1] = dom;
                alphas[2] = 1;
                let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
                let (k0, k1) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
                let t = 8;
                let mut xs = Vec::new();
                for &a in &alphas {
                    xs.extend([
                        a,
                        a.wrapping_sub(1) & dom,
                        a.wrapping_add(1) & dom,
                        0,
                        dom,
                        rng.next_u64() & dom,
                        a ^ 1 << (rng.next_u64() % n as u64),
                        a ^ (rng.next_u64() & dom) >> 3,
                    ]);
                }
                let y = recon(
                    &k0.eval_multi(&xs, t).unwrap(),
                    &k1.eval_multi(&xs, t).unwrap(),
                    m,
                );
                for k in 0..cnt {
                    for j in 0..t {
                        let x = xs[k * t + j];
                        for q in 0..p {
                            let want = if x < alphas[k] {
                                betas[k * p + q] & mask_bits(m)
                            } else {
                                0
                            };
                            assert_eq!(y[(k * t + j) * p + q], want);
                        }
                    }
                }
                // eval_batch agrees with eval_multi at t = 1.
                let xb: Vec<u64> = (0..cnt).map(|k| xs[k * t + 5]).collect();
                let yb = k0.eval_batch(&xb).unwrap();
                let ym = k0.eval_multi(&xs, t).unwrap();
                for k in 0..cnt {
                    assert_eq!(
                        &yb[k * p..(k + 1) * p],
                        &ym[(k * t + 5) * p..(k * t + 6) * p]
                    );
                }
            }
        }
    }

    #[test]
    fn large_batch_crosses_chunks() {
        let mut rng = Csprng::for_tests(3);
        let n = 20;
        let cnt = 3 * CHUNK + 5;
        let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
        let betas: Vec<u64> = (0..cnt).map(|_| rng.next_u64()).collect();
        let xs: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
        let (k0, k1) = gen_batch(n, 64, 1, &alphas, &betas, &mut rng).unwrap();
        let y = recon(
            &k0.eval_batch(&xs).unwrap(),
            &k1.eval_batch(&xs).unwrap(),
            64,
        );
        for i in 0..cnt {
            assert_eq!(y[i], if xs[i] < alphas[i] { betas[i] } else { 0 });
        }
    }

    #[test]
    fn key_shape_and_serialization() {
        let mut rng = Csprng::for_tests(4);
        for &(n, m, p) in &[
            (1u32, 1u32, 1usize),
            (8, 8, 3),
            (37, 37, 3),
            (64, 64, 1),
            (50, 9, 17),
        ] {
            let mut len = None;
            for trial in 0..20 {
                let cnt = 3;
                let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
                let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
                let (k0, k1) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
                for k in [&k0, &k1] {
                    let b = k.to_bytes();
                    assert_eq!(
                        b.len(),
                        HEADER_LEN + cnt * DcfKeys::key_bytes_per_key(n, m, p)
                    );
                    if let Some(l) = len {
                        assert_eq!(l, b.len());
                    }
                    len = Some(b.len());
                    let back = DcfKeys::from_bytes(&b).unwrap();
                    assert_eq!(&back, k);
                    if trial == 0 {
                        let xs: Vec<u64> =
                            (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
                        assert_eq!(back.eval_batch(&xs).unwrap(), k.eval_batch(&xs).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn parameter_errors() {
        let mut rng = Csprng::for_tests(5);
        assert!(gen_batch(0, 8, 1, &[], &[], &mut rng).is_err());
        assert!(gen_batch(65, 8, 1, &[], &[], &mut rng).is_err());
        assert!(gen_batch(8, 0, 1, &[], &[], &mut rng).is_err());
        assert!(gen_batch(8, 65, 1, &[], &[], &mut rng).is_err());
        assert!(gen_batch(8, 8, 0, &[], &[], &mut rng).is_err());
        assert!(gen_batch(8, 8, 1, &[256], &[1], &mut rng).is_err());
        assert!(matches!(
            gen_batch(8, 8, 2, &[1], &[1], &mut rng),
            Err(FssError::LengthMismatch { .. })
        ));
        let (k0, _) = gen_batch(8, 8, 2, &[1, 2], &[1, 2, 3, 4], &mut rng).unwrap();
        assert!(k0.eval_batch(&[1]).is_err());
        assert!(k0.eval_multi(&[1, 2, 3], 2).is_err());
        assert!(k0.eval_multi(&[], usize::MAX).is_err());
        let (e0, e1) = gen_batch(8, 8, 2, &[], &[], &mut rng).unwrap();
        assert_eq!(e0.eval_batch(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(DcfKeys::from_bytes(&e1.to_bytes()).unwrap(), e1);
        assert_eq!(aes_per_eval(64, 64, 1), 128);
        assert_eq!(aes_per_eval(50, 50, 3), 150);
        assert_eq!(aes_per_eval(37, 37, 3), 74);
    }

    /// Re-seal a mutated key (fix its checksum) so parsing reaches the field checks.
    fn reseal(b: &mut [u8]) {
        if b.len() >= HEADER_LEN {
            let c = checksum(&b[HEADER_LEN..]);
            b[56..64].copy_from_slice(&c.to_le_bytes());
        }
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
            let mut rng = Csprng::for_tests(6);
            let (k0, _) = gen_batch(9, 7, 2, &[3, 300], &[1, 2, 3, 4], &mut rng).unwrap();
            let mut b = k0.to_bytes();
            for (pos, x) in flips {
                let i = pos % b.len();
                b[i] ^= x;
            }
            if trunc {
                b.truncate(cut % (b.len() + 1));
            }
            if fix {
                reseal(&mut b);
            }
            if let Ok(k) = DcfKeys::from_bytes(&b) {
                let xs: Vec<u64> = (0..k.count() as u64).collect();
                let _ = k.eval_batch(&xs);
            }
        }
    }
}
