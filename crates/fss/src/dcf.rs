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
//! # Serialized layout ([`KeyKind::Dcf`], key format version 2)
//!
//! Header params `[m, p, 0, 0]` (64-byte header, [`crate::keyfmt`]). The body is laid out by
//! [`DcfLayout`] — the **one** description of it; the CUDA backend passes these offsets to its
//! kernels instead of re-deriving them. Every region starts 16-byte aligned (zero padding
//! between regions), and since the header is 64 bytes and key-stream sections and gate-key
//! parts are 16-aligned, every body sits 16-aligned in a loaded stream:
//! ```text
//! seed   count × 16 B (u128 LE)                                  key k at seed + 16k
//! scw    n levels × count × 16 B, level-major                    (i, k) at scw + 16(i·count + k)
//! tcw_l  count × u64 LE (bit i: control correction of level i)   key k at tcw_l + 8k
//! tcw_r  count × u64 LE                                          key k at tcw_r + 8k
//! vcw    per level i at vcw + i·vcw_level_stride: count·p values bit-packed at m bits
//!        (LSB first, `suf_core::pack`), value (k, j) at bit (k·p + j)·m;
//!        vcw_level_stride = round_up_16(⌈count·p·m/8⌉)
//! fcw    count·p values bit-packed at m bits, value (k, j) at bit (k·p + j)·m
//! ```
//! Per-level fields are **level-major** (all keys' level 0, then all keys' level 1, …; the key
//! index varies fastest), so GPU threads that each own one key load consecutive words. The
//! exact size of a serialized batch is [`DcfKeys::bytes_for`]; per key it is about
//! [`DcfKeys::key_bytes_per_key`] = 32 + 16n + ⌈(n + 1)·p·m/8⌉.
//!
//! **No canonical-form checks.** Reading a batch ([`DcfKeys::view`]) checks the header and the
//! exact length and nothing else — no scan over the body. Evaluation masks what it reads: bit 0
//! of a seed correction word is cleared, only bits 0..n of the control corrections are
//! consulted, and value correction words are read at m bits; padding is never read. So any body
//! of the right length evaluates to *some* output without a panic, and the honest key's output
//! is unchanged; a corrupted key is caught by the key stream's checksum, not here.
//!
//! **CPU evaluation** walks up to a few hundred evaluations of a batch together, level by
//! level, so that one pipelined AES call covers all their blocks of a level. Three paths, one
//! arithmetic: p = 1; p = 2..=4 elements in one value block (p·m ≤ 128, the smooth gates'
//! coefficient pairs and triples: a lane's accumulators in a fixed-size array); and any other
//! payload (B value blocks per level). Tests compare each with the function's definition.

use std::borrow::Cow;

use rayon::prelude::*;
use suf_core::pack::pack_to;
use suf_core::prg::{c_value, Csprng, FixedKeyAes, C_LEFT, C_RIGHT};

use crate::error::{FssError, Result};
use crate::keyfmt::{
    expect_body_len, parse_header, parse_header_view, seal_key, write_key, write_key_to, Header,
    KeyKind, KeyOrigin, KeyRef, HEADER_LEN,
};

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

/// Byte offsets of the regions of a DCF batch body (key format version 2; see the module
/// docs). Every region offset is a multiple of 16.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DcfLayout {
    /// Input domain bits.
    pub n: u32,
    /// Payload ring bits.
    pub m: u32,
    /// Payload elements per key.
    pub p: usize,
    /// Keys in the batch.
    pub count: usize,
    /// Root seeds: `count` × 16 bytes.
    pub seed: usize,
    /// Seed correction words: n levels × `count` × 16 bytes, level-major.
    pub scw: usize,
    /// Left control corrections: `count` u64.
    pub tcw_l: usize,
    /// Right control corrections: `count` u64.
    pub tcw_r: usize,
    /// Value correction words of level 0; level i at `vcw + i·vcw_level_stride`.
    pub vcw: usize,
    /// Bytes from one level's value correction words to the next (a multiple of 16).
    pub vcw_level_stride: usize,
    /// Final correction words: `count·p` values of m bits.
    pub fcw: usize,
    /// Body length in bytes (the fcw region is not padded at the end).
    pub total: usize,
}

impl DcfLayout {
    /// The layout of a batch of `count` keys with parameters (n, m, p); `None` if the
    /// parameters are out of range or a size overflows (all arithmetic is checked).
    pub fn new(n: u32, m: u32, p: usize, count: usize) -> Option<DcfLayout> {
        check_params(n, m, p).ok()?;
        let al = |x: usize| x.checked_next_multiple_of(16);
        let nn = n as usize;
        let seed = 0usize;
        let scw = count.checked_mul(16)?;
        let tcw_l = scw.checked_add(scw.checked_mul(nn)?)?;
        let words = count.checked_mul(8)?;
        let tcw_r = al(tcw_l.checked_add(words)?)?;
        let vcw = al(tcw_r.checked_add(words)?)?;
        let level = count.checked_mul(p)?.checked_mul(m as usize)?.div_ceil(8);
        let vcw_level_stride = al(level)?;
        let fcw = vcw.checked_add(vcw_level_stride.checked_mul(nn)?)?;
        let total = fcw.checked_add(level)?;
        Some(DcfLayout {
            n,
            m,
            p,
            count,
            seed,
            scw,
            tcw_l,
            tcw_r,
            vcw,
            vcw_level_stride,
            fcw,
            total,
        })
    }

    /// Bytes of one level's packed value correction words (also of the fcw region):
    /// ⌈count·p·m/8⌉.
    pub fn level_bytes(&self) -> usize {
        (self.count * self.p * self.m as usize).div_ceil(8)
    }

    /// The region offsets in the order the CUDA kernels take them as arguments (the kernels
    /// never derive them): seed, scw, tcw_l, tcw_r, vcw, vcw_level_stride, fcw.
    pub fn kernel_offsets(&self) -> [u64; 7] {
        [
            self.seed,
            self.scw,
            self.tcw_l,
            self.tcw_r,
            self.vcw,
            self.vcw_level_stride,
            self.fcw,
        ]
        .map(|x| x as u64)
    }

    /// Byte offset of key k's root seed.
    #[inline(always)]
    pub fn seed_at(&self, k: usize) -> usize {
        self.seed + 16 * k
    }

    /// Byte offset of the seed correction word of level i, key k.
    #[inline(always)]
    pub fn scw_at(&self, i: usize, k: usize) -> usize {
        self.scw + 16 * (i * self.count + k)
    }

    /// Bit offset (from the body start) of value correction word (level i, key k, element j).
    #[inline(always)]
    pub fn vcw_bit(&self, i: usize, k: usize, j: usize) -> usize {
        8 * (self.vcw + i * self.vcw_level_stride) + (k * self.p + j) * self.m as usize
    }

    /// Bit offset (from the body start) of final correction word (key k, element j).
    #[inline(always)]
    pub fn fcw_bit(&self, k: usize, j: usize) -> usize {
        8 * self.fcw + (k * self.p + j) * self.m as usize
    }
}

/// 16 bytes at `off` as a little-endian u128 (the caller guarantees the range).
#[inline(always)]
fn rd_u128(b: &[u8], off: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    u128::from_le_bytes(a)
}

/// 8 bytes at `off` as a little-endian u64 (the caller guarantees the range).
#[inline(always)]
fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// The value of up to 64 bits at bit `bit` of `b` (LSB-first bit stream), masked with `mask`;
/// bits past the end of `b` read as zero. One unaligned 8-byte load when the value cannot
/// straddle 8 bytes (`WIDE = false`: m ≤ 57, or m a multiple of 8 with byte-aligned offsets,
/// see [`wide_reads`]), one 16-byte load otherwise; a byte-wise copy only at the very end of `b`.
#[inline(always)]
fn rd_bits<const WIDE: bool>(b: &[u8], bit: usize, mask: u64) -> u64 {
    let byte = bit >> 3;
    let sh = bit & 7;
    if WIDE {
        if let Some(s) = b.get(byte..byte + 16) {
            let mut a = [0u8; 16];
            a.copy_from_slice(s);
            return ((u128::from_le_bytes(a) >> sh) as u64) & mask;
        }
    } else if let Some(s) = b.get(byte..byte + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        return (u64::from_le_bytes(a) >> sh) & mask;
    }
    rd_bits_tail(b, bit, mask)
}

/// [`rd_bits`] near the end of the buffer.
#[cold]
fn rd_bits_tail(b: &[u8], bit: usize, mask: u64) -> u64 {
    let byte = bit >> 3;
    let mut a = [0u8; 16];
    let s = b.get(byte..).unwrap_or(&[]);
    let l = s.len().min(16);
    a[..l].copy_from_slice(&s[..l]);
    ((u128::from_le_bytes(a) >> (bit & 7)) as u64) & mask
}

/// Whether m-bit values at offsets (multiple of 128) + j·m need 16-byte reads: a value
/// starting at bit offset sh ∈ 0..8 of a byte fits one u64 load iff sh + m ≤ 64, which holds
/// for m ≤ 57, and for m a multiple of 8 (then sh = 0).
#[inline]
fn wide_reads(m: u32) -> bool {
    m > 57 && !m.is_multiple_of(8)
}

/// The walk state of one evaluation (one lane of the batched evaluators).
#[derive(Copy, Clone, Default)]
struct Lane {
    /// The point, reduced to n bits.
    x: u64,
    /// Control corrections selected by x's bits (bit i for level i).
    tsel: u64,
    /// Key index.
    key: usize,
    /// Current seed.
    s: u128,
    /// Current control bit.
    t: u64,
    /// Value accumulator (the p = 1 path; the general path keeps p per lane elsewhere).
    acc: u64,
}

impl Lane {
    /// One level down: the seed and control bit of the child on x's side, from `g` = G_c(s)
    /// (the level's MMO output) and the key's seed correction word at byte `scw_off` of `b`.
    #[inline(always)]
    fn descend(&mut self, b: &[u8], scw_off: usize, i: usize, g: u128) {
        let tm = self.t.wrapping_neg();
        let scw = rd_u128(b, scw_off) & !1;
        let corr = scw | ((self.tsel >> i) & 1) as u128;
        let y = g ^ (corr & (tm as i64 as i128 as u128));
        self.t = (y & 1) as u64;
        self.s = y & !1;
    }
}

/// A batch of `count` DCF keys of one party: the version-2 body bytes (see [`DcfLayout`]),
/// owned (from [`gen_batch`] or [`DcfKeys::from_bytes`]) or borrowed from a loaded key stream
/// ([`DcfKeys::view`], zero-copy). Evaluation reads the body bytes directly.
#[derive(Clone)]
pub struct DcfKeys<'a> {
    layout: DcfLayout,
    party: u8,
    body: Cow<'a, [u8]>,
    origin: Option<KeyOrigin>,
}

impl PartialEq for DcfKeys<'_> {
    /// Equal parameters, party and body bytes (the origin is not compared).
    fn eq(&self, o: &Self) -> bool {
        self.layout == o.layout && self.party == o.party && self.body == o.body
    }
}

impl Eq for DcfKeys<'_> {}

impl std::fmt::Debug for DcfKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcfKeys")
            .field("n", &self.layout.n)
            .field("m", &self.layout.m)
            .field("p", &self.layout.p)
            .field("party", &self.party)
            .field("count", &self.layout.count)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// (m, p) from a DCF header's params, checked.
fn dcf_params(h: &Header) -> Result<(u32, usize, usize, DcfLayout)> {
    let [m, p32, z0, z1] = h.params;
    if z0 != 0 || z1 != 0 {
        return Err(FssError::BadHeader("unused DCF params are not zero".into()));
    }
    let p = p32 as usize;
    check_params(h.n, m, p).map_err(FssError::BadHeader)?;
    let count = usize::try_from(h.count)
        .map_err(|_| FssError::BadHeader("count does not fit in memory".into()))?;
    let layout = DcfLayout::new(h.n, m, p, count);
    expect_body_len(h, layout.map(|l| l.total as u64))?;
    let layout = layout.ok_or_else(|| FssError::BadHeader("impossible size".into()))?;
    Ok((m, p, count, layout))
}

impl<'a> DcfKeys<'a> {
    /// A zero-copy view of a serialized batch (header + body). O(1): checks the header and
    /// that the length is exactly what (n, m, p, count) imply; no checksum, no scan, no copy
    /// (inside a key stream the section checksum was verified when the stream was opened; any
    /// bytes of the right length evaluate without a panic, see the module docs). The view's
    /// origin is the body's position: `k.origin` moved past the 64-byte header.
    ///
    /// # Errors
    /// Header and size failures as [`FssError`] input errors.
    pub fn view(k: KeyRef<'a>) -> Result<DcfKeys<'a>> {
        let (h, _, _) = parse_header_view(k.bytes, KeyKind::Dcf)?;
        let (_, _, _, layout) = dcf_params(&h)?;
        let body = k
            .sub(HEADER_LEN..k.bytes.len())
            .ok_or(FssError::Truncated {
                needed: HEADER_LEN,
                available: k.bytes.len(),
            })?;
        Ok(DcfKeys {
            layout,
            party: h.party,
            body: Cow::Borrowed(body.bytes),
            origin: body.origin,
        })
    }

    /// An owned copy (no borrow of a stream); keeps the origin.
    pub fn into_owned(self) -> DcfKeys<'static> {
        DcfKeys {
            layout: self.layout,
            party: self.party,
            body: Cow::Owned(self.body.into_owned()),
            origin: self.origin,
        }
    }

    /// Input domain bits n.
    pub fn n(&self) -> u32 {
        self.layout.n
    }
    /// Payload ring bits m.
    pub fn m(&self) -> u32 {
        self.layout.m
    }
    /// Payload elements per key.
    pub fn p(&self) -> usize {
        self.layout.p
    }
    /// The party (0 or 1) this batch belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.layout.count
    }
    /// AES calls per evaluation of one key at one point.
    pub fn aes_per_eval(&self) -> usize {
        aes_per_eval(self.layout.n, self.layout.m, self.layout.p)
    }
    /// The body layout (byte offsets of every region).
    pub fn layout(&self) -> DcfLayout {
        self.layout
    }
    /// The body bytes (without the 64-byte header).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// Where the body sits in a loaded key stream (`None` for keys made or copied here).
    pub fn origin(&self) -> Option<KeyOrigin> {
        self.origin
    }

    /// Root seed of key k. (Field readers: for conversions and tests, not the hot path.)
    ///
    /// # Panics
    /// If `k >= count` (a caller bug).
    pub fn seed(&self, k: usize) -> u128 {
        assert!(k < self.count(), "key index out of range");
        rd_u128(&self.body, self.layout.seed_at(k))
    }
    /// Seed correction word of level i, key k, as evaluation reads it (bit 0 cleared).
    ///
    /// # Panics
    /// If an index is out of range (a caller bug).
    pub fn scw(&self, i: usize, k: usize) -> u128 {
        assert!(
            i < self.n() as usize && k < self.count(),
            "index out of range"
        );
        rd_u128(&self.body, self.layout.scw_at(i, k)) & !1
    }
    /// Left and right control corrections of key k, reduced to n bits.
    ///
    /// # Panics
    /// If `k >= count` (a caller bug).
    pub fn tcw(&self, k: usize) -> (u64, u64) {
        assert!(k < self.count(), "key index out of range");
        let xm = mask_bits(self.n());
        (
            rd_u64(&self.body, self.layout.tcw_l + 8 * k) & xm,
            rd_u64(&self.body, self.layout.tcw_r + 8 * k) & xm,
        )
    }
    /// Value correction word of level i, key k, element j (in Z_{2^m}).
    ///
    /// # Panics
    /// If an index is out of range (a caller bug).
    pub fn vcw(&self, i: usize, k: usize, j: usize) -> u64 {
        assert!(
            i < self.n() as usize && k < self.count() && j < self.p(),
            "index out of range"
        );
        rd_bits::<true>(
            &self.body,
            self.layout.vcw_bit(i, k, j),
            mask_bits(self.m()),
        )
    }
    /// Final correction word of key k, element j (in Z_{2^m}).
    ///
    /// # Panics
    /// If an index is out of range (a caller bug).
    pub fn fcw(&self, k: usize, j: usize) -> u64 {
        assert!(k < self.count() && j < self.p(), "index out of range");
        rd_bits::<true>(&self.body, self.layout.fcw_bit(k, j), mask_bits(self.m()))
    }

    /// Serialized bytes of a whole batch of `count` keys (64-byte header + body): the exact
    /// closed form that capacity planning uses. `None` for invalid parameters or overflow.
    pub fn bytes_for(n: u32, m: u32, p: usize, count: usize) -> Option<usize> {
        DcfLayout::new(n, m, p, count)?
            .total
            .checked_add(HEADER_LEN)
    }

    /// Body bytes per key, amortized over a large batch (the exact size of a batch, with its
    /// alignment padding and header, is [`DcfKeys::bytes_for`]): 32 + 16n + ⌈(n + 1)·p·m/8⌉.
    pub fn key_bytes_per_key(n: u32, m: u32, p: usize) -> usize {
        let n = n as usize;
        32 + 16 * n + ((n + 1) * p * m as usize).div_ceil(8)
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
        let jobs = self
            .count()
            .checked_mul(t)
            .ok_or(FssError::LengthMismatch {
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
        let mut out = vec![0u64; jobs * self.p()];
        self.eval_multi_into(xs, t, &mut out)?;
        Ok(out)
    }

    /// [`DcfKeys::eval_multi`] into a caller buffer of `count·t·p` words.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if a length disagrees; [`FssError::BodyOnDevice`] if the
    /// body was received straight into a device and is not on the host.
    pub fn eval_multi_into(&self, xs: &[u64], t: usize, out: &mut [u64]) -> Result<()> {
        let jobs = self.count().checked_mul(t);
        if jobs != Some(xs.len()) {
            return Err(FssError::LengthMismatch {
                what: "xs",
                expected: jobs.unwrap_or(usize::MAX),
                got: xs.len(),
            });
        }
        let p = self.p();
        if Some(out.len()) != xs.len().checked_mul(p) {
            return Err(FssError::LengthMismatch {
                what: "out",
                expected: xs.len().saturating_mul(p),
                got: out.len(),
            });
        }
        if xs.is_empty() {
            return Ok(());
        }
        KeyOrigin::check_on_host(self.origin)?;
        out.par_chunks_mut(CHUNK * p)
            .zip(xs.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(ci, (o, x))| {
                let j = ci * CHUNK;
                let one = value_blocks(self.m(), p) == 1;
                match (p, one, wide_reads(self.m())) {
                    (1, _, false) => self.eval_range_p1::<false>(x, t, j, o),
                    (1, _, true) => self.eval_range_p1::<true>(x, t, j, o),
                    (2, true, false) => self.eval_range_one::<2, false>(x, t, j, o),
                    (2, true, true) => self.eval_range_one::<2, true>(x, t, j, o),
                    (3, true, false) => self.eval_range_one::<3, false>(x, t, j, o),
                    (3, true, true) => self.eval_range_one::<3, true>(x, t, j, o),
                    (4, true, false) => self.eval_range_one::<4, false>(x, t, j, o),
                    (4, true, true) => self.eval_range_one::<4, true>(x, t, j, o),
                    (_, _, false) => self.eval_range::<false>(x, t, j, o),
                    (_, _, true) => self.eval_range::<true>(x, t, j, o),
                }
            });
        Ok(())
    }

    /// The walk's start for point `xe` of key `k`: x reduced to n bits, the control
    /// corrections its bits select, the key's root seed, t = party.
    #[inline(always)]
    fn lane_start(&self, xe: u64, k: usize) -> Lane {
        let l = &self.layout;
        let b: &[u8] = &self.body;
        let xmask = mask_bits(l.n);
        let x = xe & xmask;
        // Bit i of xr is x's bit at level i (MSB first).
        let xr = x.reverse_bits() >> (64 - l.n);
        let tl = rd_u64(b, l.tcw_l + 8 * k);
        let tr = rd_u64(b, l.tcw_r + 8 * k);
        Lane {
            x,
            tsel: ((tl & !xr) | (tr & xr)) & xmask,
            key: k,
            s: rd_u128(b, l.seed_at(k)),
            t: self.party as u64,
            acc: 0,
        }
    }

    /// Fast path p = 1 (one value block per level). Up to [`LANES_P1`] evaluations walk their
    /// paths together, level by level: one pipelined AES call per level covers them all, and
    /// the level's correction words of consecutive keys are read as one contiguous run.
    fn eval_range_p1<const WIDE: bool>(&self, xs: &[u64], t: usize, job0: usize, out: &mut [u64]) {
        let aes = FixedKeyAes::global();
        let l = &self.layout;
        let b: &[u8] = &self.body;
        let n = l.n as usize;
        let m = l.m as usize;
        let mm = mask_bits(l.m);
        let neg = (self.party as u64).wrapping_neg();
        let width = xs.len().min(LANES_P1);
        let mut blk = vec![[0u128; 2]; width];
        let mut st = vec![Lane::default(); width];
        for (g, (xg, og)) in xs.chunks(width).zip(out.chunks_mut(width)).enumerate() {
            let lanes = xg.len();
            let st = &mut st[..lanes];
            let blk = &mut blk[..lanes];
            for (e, (ln, &xe)) in st.iter_mut().zip(xg).enumerate() {
                *ln = self.lane_start(xe, (job0 + g * width + e) / t);
            }
            for i in 0..n {
                let sh = n - 1 - i;
                // blk = s ⊕ c, for the MMO below.
                for (ln, bl) in st.iter().zip(blk.iter_mut()) {
                    let d = (ln.x >> sh) & 1;
                    bl[0] = ln.s ^ child_const(d);
                    bl[1] = ln.s ^ c_value(d as u32);
                }
                // MMO: blk = π(s ⊕ c) ⊕ s ⊕ c = G_c(s).
                aes.mmo_in_place(blk.as_flattened_mut());
                let scw0 = l.scw_at(i, 0);
                let vbit0 = l.vcw_bit(i, 0, 0);
                for (ln, bl) in st.iter_mut().zip(blk.iter()) {
                    let k = ln.key;
                    let tm = ln.t.wrapping_neg();
                    let v = bl[1] as u64;
                    let vc = rd_bits::<WIDE>(b, vbit0 + k * m, mm);
                    ln.acc = ln.acc.wrapping_add(v).wrapping_add(tm & vc);
                    ln.descend(b, scw0 + 16 * k, i, bl[0]);
                }
            }
            let fbit0 = l.fcw_bit(0, 0);
            for (ln, o) in st.iter().zip(og.iter_mut()) {
                let fc = rd_bits::<WIDE>(b, fbit0 + ln.key * m, mm);
                let v = ln.acc.wrapping_add(ln.t.wrapping_neg() & fc);
                // (−1)^party · v without a branch: (v ⊕ neg) − neg.
                *o = (v ^ neg).wrapping_sub(neg) & mm;
            }
        }
    }

    /// Payloads of P = 2..=4 elements that fit one value block (P·m ≤ 128: the smooth gates'
    /// coefficient pairs and triples at m = 37): the general path's walk with a lane's P
    /// accumulators in a fixed-size array and element q of the level's value block read at
    /// the constant offset q·m (no straddling: (q + 1)·m ≤ 128).
    fn eval_range_one<const P: usize, const WIDE: bool>(
        &self,
        xs: &[u64],
        t: usize,
        job0: usize,
        out: &mut [u64],
    ) {
        let aes = FixedKeyAes::global();
        let l = &self.layout;
        let b: &[u8] = &self.body;
        let n = l.n as usize;
        let mu = l.m as usize;
        let mm = mask_bits(l.m);
        let neg = (self.party as u64).wrapping_neg();
        let width = xs.len().min(LANES_P1 / 2);
        let mut blk = vec![[0u128; 2]; width];
        let mut st = vec![Lane::default(); width];
        let mut acc = vec![[0u64; P]; width];
        for (g, (xg, og)) in xs.chunks(width).zip(out.chunks_mut(width * P)).enumerate() {
            let lanes = xg.len();
            let st = &mut st[..lanes];
            let blk = &mut blk[..lanes];
            let acc = &mut acc[..lanes];
            for (e, (ln, &xe)) in st.iter_mut().zip(xg).enumerate() {
                *ln = self.lane_start(xe, (job0 + g * width + e) / t);
            }
            acc.fill([0; P]);
            for i in 0..n {
                let sh = n - 1 - i;
                // blk = s ⊕ c, for the MMO below (one value block: c_value(d)).
                for (ln, bl) in st.iter().zip(blk.iter_mut()) {
                    let d = (ln.x >> sh) & 1;
                    bl[0] = ln.s ^ child_const(d);
                    bl[1] = ln.s ^ c_value(d as u32);
                }
                // MMO: blk = π(s ⊕ c) ⊕ s ⊕ c = G_c(s).
                aes.mmo_in_place(blk.as_flattened_mut());
                let scw0 = l.scw_at(i, 0);
                let vbit0 = l.vcw_bit(i, 0, 0);
                for ((ln, bl), ac) in st.iter_mut().zip(blk.iter()).zip(acc.iter_mut()) {
                    let k = ln.key;
                    let tm = ln.t.wrapping_neg();
                    let kb = vbit0 + k * P * mu;
                    for (q, a) in ac.iter_mut().enumerate() {
                        let c = rd_bits::<WIDE>(b, kb + q * mu, mm);
                        *a = a
                            .wrapping_add((bl[1] >> (q * mu)) as u64)
                            .wrapping_add(tm & c);
                    }
                    ln.descend(b, scw0 + 16 * k, i, bl[0]);
                }
            }
            for ((ln, ac), o) in st.iter().zip(acc.iter()).zip(og.chunks_exact_mut(P)) {
                let tm = ln.t.wrapping_neg();
                let fb = l.fcw_bit(ln.key, 0);
                for (q, (a, oq)) in ac.iter().zip(o.iter_mut()).enumerate() {
                    let fc = rd_bits::<WIDE>(b, fb + q * mu, mm);
                    let v = a.wrapping_add(tm & fc);
                    *oq = (v ^ neg).wrapping_sub(neg) & mm;
                }
            }
        }
    }

    /// General path (any p, B value blocks per level), same walk as the fast path.
    fn eval_range<const WIDE: bool>(&self, xs: &[u64], t: usize, job0: usize, out: &mut [u64]) {
        let aes = FixedKeyAes::global();
        let l = &self.layout;
        let b: &[u8] = &self.body;
        let n = l.n as usize;
        let m = l.m;
        let mu = m as usize;
        let p = l.p;
        let nb = value_blocks(m, p);
        let w = 1 + nb;
        let mm = mask_bits(m);
        let neg = (self.party as u64).wrapping_neg();
        let width = xs.len().min((LANES_P1 / w).max(LANES));
        let mut blk = vec![0u128; w * width];
        let mut st = vec![Lane::default(); width];
        let mut acc = vec![0u64; width * p];
        for (g, (xg, og)) in xs.chunks(width).zip(out.chunks_mut(width * p)).enumerate() {
            let lanes = xg.len();
            let st = &mut st[..lanes];
            let blk = &mut blk[..w * lanes];
            for (e, (ln, &xe)) in st.iter_mut().zip(xg).enumerate() {
                *ln = self.lane_start(xe, (job0 + g * width + e) / t);
            }
            acc.fill(0);
            for i in 0..n {
                let sh = n - 1 - i;
                // blk = s ⊕ c, for the MMO below.
                for (ln, bl) in st.iter().zip(blk.chunks_exact_mut(w)) {
                    let d = (ln.x >> sh) & 1;
                    bl[0] = ln.s ^ child_const(d);
                    for (j, x) in bl[1..].iter_mut().enumerate() {
                        *x = ln.s ^ c_value((2 * j) as u32 + d as u32);
                    }
                }
                // MMO: blk = π(s ⊕ c) ⊕ s ⊕ c = G_c(s).
                aes.mmo_in_place(blk);
                let scw0 = l.scw_at(i, 0);
                let vbit0 = l.vcw_bit(i, 0, 0);
                for ((ln, bl), ac) in st
                    .iter_mut()
                    .zip(blk.chunks_exact(w))
                    .zip(acc.chunks_exact_mut(p))
                {
                    let k = ln.key;
                    let tm = ln.t.wrapping_neg();
                    let vals = &bl[1..];
                    let kb = vbit0 + k * p * mu;
                    for (q, a) in ac.iter_mut().enumerate() {
                        let c = rd_bits::<WIDE>(b, kb + q * mu, mm);
                        *a = a
                            .wrapping_add(bits_at(vals, q * mu, m))
                            .wrapping_add(tm & c);
                    }
                    ln.descend(b, scw0 + 16 * k, i, bl[0]);
                }
            }
            for ((ln, ac), o) in st
                .iter()
                .zip(acc.chunks_exact(p))
                .zip(og.chunks_exact_mut(p))
            {
                let tm = ln.t.wrapping_neg();
                let fb = l.fcw_bit(ln.key, 0);
                for (q, (a, oq)) in ac.iter().zip(o.iter_mut()).enumerate() {
                    let fc = rd_bits::<WIDE>(b, fb + q * mu, mm);
                    let v = a.wrapping_add(tm & fc);
                    *oq = (v ^ neg).wrapping_sub(neg) & mm;
                }
            }
        }
    }

    /// The serialized batch ([`KeyKind::Dcf`], layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        write_key(
            KeyKind::Dcf,
            self.party,
            self.n(),
            [self.m(), self.p() as u32, 0, 0],
            self.count() as u64,
            &self.body,
        )
    }

    /// [`DcfKeys::to_bytes`] into `out`, which must be exactly that long
    /// (`HEADER_LEN + body length`): a slot of a larger buffer, written with one parallel
    /// copy + checksum pass and no intermediate key buffer.
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] for a slot of another length.
    pub fn write_to(&self, out: &mut [u8]) -> Result<()> {
        let want = HEADER_LEN + self.body.len();
        if out.len() != want {
            return Err(FssError::LengthMismatch {
                what: "DCF key destination",
                expected: want,
                got: out.len(),
            });
        }
        write_key_to(
            KeyKind::Dcf,
            self.party,
            self.n(),
            [self.m(), self.p() as u32, 0, 0],
            self.count() as u64,
            &self.body,
            out,
        );
        Ok(())
    }

    /// Drop the batch, handing an owned body to the dealer's buffer pool
    /// (`crate::dealer::recycle_buffer`): once a batch is serialized its body is dead, and a
    /// large one mapped again later would cost page faults.
    pub fn recycle(self) {
        if let Cow::Owned(b) = self.body {
            crate::dealer::recycle_buffer(b);
        }
    }
}

impl DcfKeys<'static> {
    /// A batch from its bare body (what a device dealer copies back): party `party` of
    /// `count` keys with parameters (n, m, p), laid out by [`DcfLayout`]. Checks the
    /// parameters, the party and that the body is exactly [`DcfLayout::total`] bytes.
    ///
    /// # Errors
    /// [`FssError::BadParams`] for parameters out of range, a party other than 0 or 1, or a
    /// body of the wrong length.
    pub fn from_body(
        n: u32,
        m: u32,
        p: usize,
        party: u8,
        count: usize,
        body: Vec<u8>,
    ) -> Result<DcfKeys<'static>> {
        check_params(n, m, p).map_err(FssError::BadParams)?;
        let layout = DcfLayout::new(n, m, p, count)
            .ok_or_else(|| FssError::BadParams(format!("a batch of {count} keys is too large")))?;
        if party > 1 || body.len() != layout.total {
            return Err(FssError::BadParams(format!(
                "a DCF body of {} bytes for party {party}; (n, m, p, count) = ({n}, {m}, {p}, \
                 {count}) needs {} bytes",
                body.len(),
                layout.total
            )));
        }
        Ok(DcfKeys {
            layout,
            party,
            body: Cow::Owned(body),
            origin: None,
        })
    }

    /// Parse a serialized batch into an owned copy, verifying its checksum (for keys outside
    /// a key stream; inside one use [`DcfKeys::view`]). Never panics: every malformed input is
    /// a typed error. No canonical-form scan (see the module docs).
    ///
    /// # Errors
    /// Header, size and checksum failures as [`FssError`] input errors.
    pub fn from_bytes(b: &[u8]) -> Result<DcfKeys<'static>> {
        let (h, body) = parse_header(b, KeyKind::Dcf)?;
        let (_, _, _, layout) = dcf_params(&h)?;
        Ok(DcfKeys {
            layout,
            party: h.party,
            body: Cow::Owned(body.to_vec()),
            origin: None,
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
) -> Result<(DcfKeys<'static>, DcfKeys<'static>)> {
    let layout = gen_layout(n, m, p, alphas, betas)?;
    // Both bodies are allocated zeroed (untouched pages, or a pooled buffer) and filled in
    // place by `gen_bodies`.
    let mut body0 = crate::dealer::zeroed_buffer(layout.total);
    let mut body1 = crate::dealer::zeroed_buffer(layout.total);
    gen_bodies(&layout, alphas, betas, rng, [&mut body0, &mut body1]);
    let mk = |party: u8, body: Vec<u8>| DcfKeys {
        layout,
        party,
        body: Cow::Owned(body),
        origin: None,
    };
    Ok((mk(0, body0), mk(1, body1)))
}

/// [`gen_batch`] straight into both parties' serialized batches: `keys[b]` must be exactly
/// [`DcfKeys::bytes_for`] bytes and **zeroed** (the generator writes every field but not the
/// alignment padding between them); the body is generated in place behind the header and
/// the header (with the body's checksum) written in front, giving the bytes of
/// `gen_batch(..).b.to_bytes()` with no intermediate body and no copy. The dealer uses this
/// to write a gate's DCF part directly into the gate's key blob.
///
/// # Errors
/// As [`gen_batch`]; [`FssError::LengthMismatch`] for a destination of another length.
pub fn gen_batch_into(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    rng: &mut Csprng,
    keys: [&mut [u8]; 2],
) -> Result<()> {
    let layout = gen_layout(n, m, p, alphas, betas)?;
    let want = HEADER_LEN + layout.total;
    if let Some(k) = keys.iter().find(|k| k.len() != want) {
        return Err(FssError::LengthMismatch {
            what: "DCF key destination",
            expected: want,
            got: k.len(),
        });
    }
    let [k0, k1] = keys;
    gen_bodies(
        &layout,
        alphas,
        betas,
        rng,
        [&mut k0[HEADER_LEN..], &mut k1[HEADER_LEN..]],
    );
    for (party, k) in [(0u8, k0), (1, k1)] {
        seal_key(
            KeyKind::Dcf,
            party,
            n,
            [m, p as u32, 0, 0],
            alphas.len() as u64,
            k,
        );
    }
    Ok(())
}

/// The checked parameters and layout of a batch for [`gen_batch`].
fn gen_layout(n: u32, m: u32, p: usize, alphas: &[u64], betas: &[u64]) -> Result<DcfLayout> {
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
    DcfLayout::new(n, m, p, count)
        .ok_or_else(|| FssError::BadParams(format!("a batch of {count} keys is too large")))
}

/// Both bodies of a checked batch, generated into `bodies` (zeroed, `layout.total` bytes
/// each): every chunk of keys writes its correction words straight into its own ranges of
/// both, in parallel — no intermediate copy, and the pages are first touched by the thread
/// that fills them.
fn gen_bodies(
    layout: &DcfLayout,
    alphas: &[u64],
    betas: &[u64],
    rng: &mut Csprng,
    bodies: [&mut [u8]; 2],
) {
    let (n, m, p, count) = (layout.n, layout.m, layout.p, layout.count);
    let roots: Vec<(u128, u128)> = (0..count)
        .map(|_| (rng.next_u128(), rng.next_u128()))
        .collect();
    let [body0, body1] = bodies;
    let dst: Vec<(ChunkDst<'_>, ChunkDst<'_>)> = ChunkDst::split(layout, body0)
        .into_iter()
        .zip(ChunkDst::split(layout, body1))
        .collect();
    dst.into_par_iter()
        .enumerate()
        .for_each(|(ci, (mut d0, mut d1))| {
            let base = ci * GEN_CHUNK;
            let rc = &roots[base..(base + GEN_CHUNK).min(count)];
            let len = rc.len();
            // The level loop specialised for the common value-block counts (constant loop
            // bounds let the compiler unroll the block loops); 0 = any count.
            let gen = match value_blocks(m, p) {
                1 => gen_chunk::<1>,
                2 => gen_chunk::<2>,
                3 => gen_chunk::<3>,
                _ => gen_chunk::<0>,
            };
            let part = gen(
                n,
                m,
                p,
                &alphas[base..base + len],
                &betas[base * p..(base + len) * p],
                rc,
            );
            d0.fill(&part, rc, m, p);
            d1.copy_as_party1(&d0, rc);
        });
}

/// The ranges of one body that chunk `c` of [`gen_batch`] writes: its keys' root seeds, seed
/// correction words of every level, control corrections, and packed value correction words
/// of every level and the final ones (chunks of [`GEN_CHUNK`] keys start on byte boundaries
/// of the packed regions: `GEN_CHUNK·p·m` bits is a whole number of bytes).
struct ChunkDst<'a> {
    seeds: &'a mut [u8],
    scw: Vec<&'a mut [u8]>,
    tcw_l: &'a mut [u8],
    tcw_r: &'a mut [u8],
    vcw: Vec<&'a mut [u8]>,
    fcw: &'a mut [u8],
}

impl<'a> ChunkDst<'a> {
    /// Split `body` (zeroed, `l.total` bytes) into the disjoint ranges of every chunk.
    fn split(l: &DcfLayout, body: &'a mut [u8]) -> Vec<ChunkDst<'a>> {
        let (nn, count) = (l.n as usize, l.count);
        let chunks = count.div_ceil(GEN_CHUNK);
        let packed = GEN_CHUNK * l.p * l.m as usize / 8;
        let lb = l.level_bytes();
        let (head, rest) = body.split_at_mut(l.tcw_l);
        let (seeds, scw) = head.split_at_mut(l.scw);
        let (tl, rest) = rest.split_at_mut(l.tcw_r - l.tcw_l);
        let (tr, rest) = rest.split_at_mut(l.vcw - l.tcw_r);
        let (vcw, fcw) = rest.split_at_mut(l.fcw - l.vcw);
        let mut seeds = seeds.chunks_mut(16 * GEN_CHUNK);
        let mut tl = tl[..8 * count].chunks_mut(8 * GEN_CHUNK);
        let mut tr = tr[..8 * count].chunks_mut(8 * GEN_CHUNK);
        let mut fcw = fcw[..lb].chunks_mut(packed.max(1));
        let mut out: Vec<ChunkDst<'a>> = Vec::with_capacity(chunks);
        for _ in 0..chunks {
            out.push(ChunkDst {
                seeds: seeds.next().unwrap_or_default(),
                scw: Vec::with_capacity(nn),
                tcw_l: tl.next().unwrap_or_default(),
                tcw_r: tr.next().unwrap_or_default(),
                vcw: Vec::with_capacity(nn),
                fcw: fcw.next().unwrap_or_default(),
            });
        }
        for level in scw.chunks_mut((16 * count).max(1)).take(nn) {
            for (d, c) in out.iter_mut().zip(level.chunks_mut(16 * GEN_CHUNK)) {
                d.scw.push(c);
            }
        }
        if l.vcw_level_stride > 0 {
            for level in vcw.chunks_mut(l.vcw_level_stride).take(nn) {
                for (d, c) in out.iter_mut().zip(level[..lb].chunks_mut(packed.max(1))) {
                    d.vcw.push(c);
                }
            }
        }
        out
    }

    /// Write chunk `part` (keys with roots `roots`) as party 0's body ranges.
    fn fill(&mut self, part: &GenPart, roots: &[(u128, u128)], m: u32, p: usize) {
        let len = roots.len();
        for (d, r) in self.seeds.chunks_exact_mut(16).zip(roots) {
            d.copy_from_slice(&r.0.to_le_bytes());
        }
        for (i, lv) in self.scw.iter_mut().enumerate() {
            for (d, w) in lv
                .chunks_exact_mut(16)
                .zip(&part.scw[i * len..(i + 1) * len])
            {
                d.copy_from_slice(&w.to_le_bytes());
            }
        }
        for (d, w) in self.tcw_l.chunks_exact_mut(8).zip(&part.tcw_l) {
            d.copy_from_slice(&w.to_le_bytes());
        }
        for (d, w) in self.tcw_r.chunks_exact_mut(8).zip(&part.tcw_r) {
            d.copy_from_slice(&w.to_le_bytes());
        }
        for (i, dst) in self.vcw.iter_mut().enumerate() {
            pack_to(&part.vcw[i * len * p..(i + 1) * len * p], m, dst);
        }
        pack_to(&part.fcw, m, self.fcw);
    }

    /// Party 1's ranges: party 0's bytes (`d0`, filled) with party 1's root seeds.
    fn copy_as_party1(&mut self, d0: &ChunkDst<'_>, roots: &[(u128, u128)]) {
        for (d, r) in self.seeds.chunks_exact_mut(16).zip(roots) {
            d.copy_from_slice(&r.1.to_le_bytes());
        }
        for (a, b) in self.scw.iter_mut().zip(&d0.scw) {
            a.copy_from_slice(b);
        }
        self.tcw_l.copy_from_slice(d0.tcw_l);
        self.tcw_r.copy_from_slice(d0.tcw_r);
        for (a, b) in self.vcw.iter_mut().zip(&d0.vcw) {
            a.copy_from_slice(b);
        }
        self.fcw.copy_from_slice(d0.fcw);
    }
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
fn gen_chunk<const NB: usize>(
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
    let nb = if NB > 0 { NB } else { value_blocks(m, p) };
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
    // The value stream as u64 words (one zero word past the end) and each element's word
    // and shift in it.
    let mut words = vec![0u64; 2 * nb + 1];
    let offs: Vec<(usize, u32)> = (0..p)
        .map(|q| (q * m as usize / 64, (q * m as usize % 64) as u32))
        .collect();
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
                // Convert values: party b, direction d, element q (the low 64 bits of the
                // value stream from bit q·m: only the low m bits are used below, as every
                // step is a ring operation mod 2^64 followed by a mask).
                for b in 0..2 {
                    for d in 0..2 {
                        for j in 0..nb {
                            let x = blk[b * per + 2 + 2 * j + d];
                            words[2 * j] = x as u64;
                            words[2 * j + 1] = (x >> 64) as u64;
                        }
                        let out = &mut v[(b * 2 + d) * p..(b * 2 + d + 1) * p];
                        for (o, &(w, sh)) in out.iter_mut().zip(&offs) {
                            let hi = if sh == 0 {
                                0
                            } else {
                                words[w + 1] << (64 - sh)
                            };
                            *o = (words[w] >> sh) | hi;
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
    use crate::keyfmt::{checksum, KeyOrigin, KeyRef, HEADER_LEN};
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

    /// The one-value-block paths (P = 2..=4, P·m ≤ 128), the wide reads (m > 57, not a
    /// multiple of 8) included, against the function's definition, over batches that cross
    /// the lane groups (256) and the rayon chunks (1,024) with several points per key.
    #[test]
    fn one_block_payloads() {
        let mut rng = Csprng::for_tests(3);
        for &(n, m, p) in &[
            (16u32, 37u32, 3usize),
            (11, 37, 2),
            (20, 32, 4),
            (12, 42, 3),
            (9, 59, 2),
            (64, 63, 2),
            (7, 1, 4),
            (33, 64, 2),
        ] {
            assert_eq!(value_blocks(m, p), 1, "({m}, {p}) is one block");
            let dom = mask_bits(n);
            let cnt = 300;
            let t = 5;
            let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & dom).collect();
            let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
            let (k0, k1) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
            let mut xs = Vec::new();
            for &a in &alphas {
                xs.extend([
                    a,
                    a.wrapping_sub(1) & dom,
                    a.wrapping_add(1) & dom,
                    rng.next_u64() & dom,
                    dom,
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
                        assert_eq!(
                            y[(k * t + j) * p + q],
                            want,
                            "n={n} m={m} p={p} key {k} x={x} q={q}"
                        );
                    }
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

    /// Scalar transcription of the evaluation equations in the module docs, reading the
    /// correction words through the field readers (independent of the batched fast paths).
    fn ref_eval(k: &DcfKeys<'_>, key: usize, x: u64) -> Vec<u64> {
        let aes = FixedKeyAes::global();
        let (n, m, p) = (k.n() as usize, k.m(), k.p());
        let nb = value_blocks(m, p);
        let x = x & mask_bits(k.n());
        let (tl, tr) = k.tcw(key);
        let mut s = k.seed(key);
        let mut t = k.party() as u64;
        let mut v = vec![0u64; p];
        for i in 0..n {
            let d = (x >> (n - 1 - i)) & 1;
            let y = aes.mmo(if d == 0 { C_LEFT } else { C_RIGHT }, s);
            let blocks: Vec<u128> = (0..nb)
                .map(|j| aes.mmo(c_value((2 * j) as u32 + d as u32), s))
                .collect();
            for (q, vq) in v.iter_mut().enumerate() {
                let c = if t == 1 { k.vcw(i, key, q) } else { 0 };
                *vq = vq
                    .wrapping_add(bits_at(&blocks, q * m as usize, m))
                    .wrapping_add(c);
            }
            let tbit = if d == 0 { tl >> i & 1 } else { tr >> i & 1 };
            let y = if t == 1 {
                y ^ k.scw(i, key) ^ tbit as u128
            } else {
                y
            };
            t = (y & 1) as u64;
            s = y & !1;
        }
        v.iter()
            .enumerate()
            .map(|(q, &vq)| {
                let vq = if t == 1 {
                    vq.wrapping_add(k.fcw(key, q))
                } else {
                    vq
                };
                let o = if k.party() == 1 {
                    vq.wrapping_neg()
                } else {
                    vq
                };
                o & mask_bits(m)
            })
            .collect()
    }

    /// Parameters of the golden and reference tests: odd counts cross every padding case.
    const CASES: &[(u32, u32, usize, usize)] = &[
        (1, 1, 1, 37),
        (5, 3, 1, 37),
        (12, 40, 2, 37),
        (37, 37, 1, 300),
        (50, 50, 3, 37),
        (64, 64, 1, 37),
        (20, 13, 7, 37),
        (63, 1, 1, 37),
        (31, 64, 2, 37),
        (16, 37, 4, 1100),
    ];

    /// Key format v2 changed only where the bytes live: for the same fixed-seed keys every
    /// output equals what the format-1 evaluator (u64 correction words) produced. The constants
    /// were printed by that evaluator before the change (commit a77896e).
    #[test]
    fn same_outputs_as_format_1() {
        let golden: [u64; 10] = [
            0x0f7c_ce99_57e1_e120,
            0x2155_8c6a_f620_6685,
            0xb433_2301_8c88_ae39,
            0xe415_8211_ab16_131c,
            0xbe8d_f6ed_fb8d_0d4f,
            0x6194_63ff_e0f6_3750,
            0xe37a_e259_00f4_c7ce,
            0x5fda_c929_977f_5fe4,
            0xa0c9_a320_d0a6_06f3,
            0x2278_11b6_a0e0_9c1c,
        ];
        let mut rng = Csprng::for_tests(0x601d);
        for (ci, &(n, m, p, cnt)) in CASES.iter().enumerate() {
            let dm = mask_bits(n);
            let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & dm).collect();
            let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
            let (k0, k1) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
            let t = 3;
            let xs: Vec<u64> = (0..cnt * t).map(|_| rng.next_u64()).collect();
            let mut bytes = Vec::new();
            for k in [&k0, &k1] {
                let y = k.eval_multi(&xs, t).unwrap();
                // The scalar reference agrees on every output.
                for (e, &x) in xs.iter().enumerate() {
                    assert_eq!(&y[e * p..(e + 1) * p], &ref_eval(k, e / t, x)[..]);
                }
                for v in y {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            assert_eq!(checksum(&bytes), golden[ci], "case {ci}: n={n} m={m} p={p}");
        }
    }

    #[test]
    fn layout_is_aligned_and_exact() {
        for &(n, m, p) in &[
            (1u32, 1u32, 1usize),
            (8, 8, 3),
            (37, 37, 1),
            (64, 64, 1),
            (50, 9, 17),
        ] {
            for count in [0usize, 1, 2, 3, 15, 16, 17, 127, 128, 129, 1000] {
                let l = DcfLayout::new(n, m, p, count).unwrap();
                let (nn, lb) = (n as usize, (count * p * m as usize).div_ceil(8));
                for off in l.kernel_offsets() {
                    assert_eq!(off % 16, 0, "{l:?}");
                }
                assert_eq!(l.level_bytes(), lb);
                assert_eq!(l.scw, 16 * count);
                assert_eq!(l.tcw_l, 16 * count * (nn + 1));
                assert_eq!(l.tcw_r, (l.tcw_l + 8 * count).next_multiple_of(16));
                assert_eq!(l.vcw, (l.tcw_r + 8 * count).next_multiple_of(16));
                assert_eq!(l.vcw_level_stride, lb.next_multiple_of(16));
                assert_eq!(l.fcw, l.vcw + nn * l.vcw_level_stride);
                assert_eq!(l.total, l.fcw + lb);
                assert_eq!(
                    DcfKeys::bytes_for(n, m, p, count),
                    Some(HEADER_LEN + l.total)
                );
                // The amortized per-key size is within the padding (and the per-key rounding
                // up to whole bytes) of the exact one.
                let per = DcfKeys::key_bytes_per_key(n, m, p) * count;
                assert!(l.total + count >= per && per + 16 * (nn + 3) >= l.total);
            }
        }
        // Worked example: n = 37, m = 37, p = 1, 128 keys: 2048 + 75776 + 1024 + 1024 +
        // 37·592 + 592 = 102368 body bytes (the format-1 body was 128·(32 + 592 + 304) = 118784).
        assert_eq!(DcfLayout::new(37, 37, 1, 128).unwrap().total, 102_368);
        assert_eq!(
            DcfKeys::key_bytes_per_key(37, 37, 1),
            32 + 16 * 37 + (38 * 37usize).div_ceil(8)
        );
        // Invalid parameters and overflow are None, never a panic.
        assert!(DcfLayout::new(0, 8, 1, 1).is_none());
        assert!(DcfLayout::new(65, 8, 1, 1).is_none());
        assert!(DcfLayout::new(8, 0, 1, 1).is_none());
        assert!(DcfLayout::new(8, 8, 0, 1).is_none());
        assert!(DcfLayout::new(64, 64, 1, usize::MAX / 16).is_none());
        assert!(DcfLayout::new(64, 64, MAX_PAYLOAD_LEN, usize::MAX / 64).is_none());
        assert!(DcfKeys::bytes_for(64, 64, 1, usize::MAX).is_none());
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
            for cnt in [1usize, 3, 16] {
                let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
                let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
                let (k0, k1) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
                for k in [&k0, &k1] {
                    let b = k.to_bytes();
                    assert_eq!(Some(b.len()), DcfKeys::bytes_for(n, m, p, cnt));
                    assert_eq!(k.body().len(), k.layout().total);
                    // Padding is zero.
                    let l = k.layout();
                    let body = k.body();
                    assert!(body[l.tcw_l + 8 * cnt..l.tcw_r].iter().all(|&x| x == 0));
                    assert!(body[l.tcw_r + 8 * cnt..l.vcw].iter().all(|&x| x == 0));
                    for i in 0..n as usize {
                        let lv = l.vcw + i * l.vcw_level_stride;
                        assert!(body[lv + l.level_bytes()..lv + l.vcw_level_stride]
                            .iter()
                            .all(|&x| x == 0));
                    }
                    let back = DcfKeys::from_bytes(&b).unwrap();
                    assert_eq!(&back, k);
                    assert_eq!(back.origin(), None);
                    // A view reads the same bytes in place, with its origin moved to the body.
                    let origin = Some(KeyOrigin {
                        stream: 9,
                        offset: 4096,
                        on_host: true,
                    });
                    let v = DcfKeys::view(KeyRef { bytes: &b, origin }).unwrap();
                    assert_eq!(&v, k);
                    assert_eq!(
                        v.origin(),
                        Some(KeyOrigin {
                            stream: 9,
                            offset: 4096 + 64,
                            on_host: true,
                        })
                    );
                    assert_eq!(v.body().as_ptr(), b[HEADER_LEN..].as_ptr());
                    assert_eq!(v.clone().into_owned(), v);
                    let xs: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
                    assert_eq!(v.eval_batch(&xs).unwrap(), k.eval_batch(&xs).unwrap());
                    // Field readers see the generated correction words reduced as documented.
                    for kk in 0..cnt {
                        let (tl, tr) = v.tcw(kk);
                        assert_eq!((tl | tr) & !mask_bits(n), 0);
                        for q in 0..p {
                            assert!(v.fcw(kk, q) <= mask_bits(m));
                        }
                    }
                }
                // Both parties share everything but the seeds.
                let (b0, b1) = (k0.body(), k1.body());
                let l = k0.layout();
                assert_eq!(&b0[l.scw..], &b1[l.scw..]);
            }
        }
    }

    /// A view checks header and exact length only (no checksum); from_bytes checks the
    /// checksum too. Every failure is typed.
    #[test]
    fn view_and_parse_errors() {
        let mut rng = Csprng::for_tests(11);
        let (k0, _) = gen_batch(20, 13, 2, &[5, 6, 7], &[1, 2, 3, 4, 5, 6], &mut rng).unwrap();
        let b = k0.to_bytes();
        fn view(x: &[u8]) -> Result<DcfKeys<'_>> {
            DcfKeys::view(KeyRef::detached(x))
        }
        let mut c = b.clone();
        *c.last_mut().unwrap() ^= 1;
        assert!(view(&c).is_ok());
        assert_eq!(DcfKeys::from_bytes(&c), Err(FssError::Checksum));
        for cut in [0, 3, 63, 64, 65, b.len() - 1] {
            assert!(matches!(
                view(&b[..cut]),
                Err(FssError::Truncated { .. } | FssError::BadMagic)
            ));
            assert!(DcfKeys::from_bytes(&b[..cut]).is_err());
        }
        let mut long = b.clone();
        long.extend_from_slice(&[0; 16]);
        assert_eq!(view(&long).unwrap_err(), FssError::TrailingBytes(16));
        // count, n, m, p changed: the declared body length no longer matches.
        for (off, val) in [(40usize, 4u8), (16, 21), (20, 14), (24, 3)] {
            let mut c = b.clone();
            c[off] = val;
            assert!(
                matches!(view(&c), Err(FssError::SizeMismatch { .. })),
                "offset {off}"
            );
        }
        // body_len consistent with a huge count: impossible size, typed.
        let mut c = b.clone();
        c[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(view(&c).is_err());
        let mut c = b.clone();
        c[28] = 1; // unused param
        assert!(matches!(view(&c), Err(FssError::BadHeader(_))));
        let mut c = b.clone();
        c[4] = 1; // format version 1
        assert_eq!(
            view(&c).unwrap_err(),
            FssError::VersionMismatch {
                got: 1,
                supported: 2
            }
        );
    }

    /// Non-canonical bits (scw bit 0, tcw bits ≥ n, padding, unused high bits of the last
    /// packed byte) are masked by evaluation: the output is unchanged.
    #[test]
    fn evaluation_masks_non_canonical_bits() {
        let mut rng = Csprng::for_tests(12);
        for &(n, m, p) in &[(10u32, 7u32, 1usize), (10, 13, 3)] {
            let cnt = 5;
            let alphas: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & mask_bits(n)).collect();
            let betas: Vec<u64> = (0..cnt * p).map(|_| rng.next_u64()).collect();
            let (k0, _) = gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
            let xs: Vec<u64> = (0..cnt * 64).map(|_| rng.next_u64()).collect();
            let want = k0.eval_multi(&xs, 64).unwrap();
            let mut b = k0.to_bytes();
            let l = k0.layout();
            let h = HEADER_LEN;
            for i in 0..n as usize {
                for k in 0..cnt {
                    b[h + l.scw_at(i, k)] |= 1;
                }
            }
            for k in 0..cnt {
                b[h + l.tcw_l + 8 * k + 7] |= 0xF0;
                b[h + l.tcw_r + 8 * k + 7] |= 0x0F;
            }
            for x in &mut b[h + l.tcw_r + 8 * cnt..h + l.vcw] {
                *x = 0xA5;
            }
            let lb = l.level_bytes();
            let used = cnt * p * m as usize;
            for i in 0..n as usize {
                let lv = h + l.vcw + i * l.vcw_level_stride;
                if !used.is_multiple_of(8) {
                    b[lv + lb - 1] |= 0xFF << (used % 8);
                }
                for x in &mut b[lv + lb..lv + l.vcw_level_stride] {
                    *x = 0x5A;
                }
            }
            let v = DcfKeys::view(KeyRef::detached(&b)).unwrap();
            assert_eq!(v.eval_multi(&xs, 64).unwrap(), want);
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
        let mut out = vec![0u64; 3];
        assert!(k0.eval_multi_into(&[1, 2], 1, &mut out).is_err());
        let (e0, e1) = gen_batch(8, 8, 2, &[], &[], &mut rng).unwrap();
        assert_eq!(e0.eval_batch(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(DcfKeys::from_bytes(&e1.to_bytes()).unwrap(), e1);
        assert_eq!(e1.to_bytes().len(), HEADER_LEN);
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
        /// Random mutations of a small real batch: parsing and viewing never panic, and
        /// whatever parses evaluates without a panic.
        #[test]
        fn fuzz_parse_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            fix in any::<bool>(),
            trunc in any::<bool>(),
            wide in any::<bool>(),
        ) {
            let mut rng = Csprng::for_tests(6);
            let (k0, _) = if wide {
                gen_batch(9, 7, 2, &[3, 300], &[1, 2, 3, 4], &mut rng).unwrap()
            } else {
                gen_batch(9, 7, 1, &[3, 300, 511], &[1, 2, 3], &mut rng).unwrap()
            };
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
            if let Ok(k) = DcfKeys::view(KeyRef::detached(&b)) {
                prop_assert_eq!(k.body().len(), k.layout().total);
                let xs: Vec<u64> = (0..2 * k.count() as u64).collect();
                let _ = k.eval_multi(&xs, 2);
            }
        }
    }
}
