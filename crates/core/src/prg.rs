//! Fixed-key AES-128 in Matyas–Meyer–Oseas form, and the dealer's CSPRNG.
//!
//! # The tree PRG, exactly (the CUDA backend must reproduce this bit for bit)
//!
//! * A 128-bit block is a `u128`; its byte string is `u128::to_le_bytes` (byte 0 = bits 0..8).
//! * π is AES-128 (FIPS-197) under the public key [`FIXED_KEY`], applied to that byte string.
//! * For a domain constant c, `G_c(s) = π(s ⊕ c) ⊕ s ⊕ c` (MMO). The bare permutation π(s)
//!   is never used as a PRG output: the key is public, so π is invertible by anyone.
//! * Domain constants ([`C_LEFT`], [`C_RIGHT`], [`C_LEAF`], [`c_value`]) are distinct for left
//!   child, right child, leaf conversion and the DCF value blocks.
//! * One AES key schedule for the whole process (unlike "seed as AES key", which needs a key
//!   schedule per tree node).
//!
//! Security is in the ideal-permutation model (see `reference/fss-identities.md` §2).
//!
//! # The dealer CSPRNG
//!
//! [`Csprng`] is AES-128 in counter mode under a secret 128-bit key taken from the operating
//! system (`getrandom`), or from an explicit seed where a stream must be reproducible (tests, or
//! party 1's PRG-derived masks, where the seed itself is the secret).

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use std::sync::OnceLock;

use crate::error::{CoreError, Result};
use crate::ring::BitWidth;

/// The public fixed AES key of the tree PRG ("SUF fixed key v1" in ASCII).
pub const FIXED_KEY: [u8; 16] = *b"SUF fixed key v1";

/// Domain constant for the left child of a tree node.
pub const C_LEFT: u128 = 0x5ac1_0f7e_27d3_94b1_0000_0000_0000_0001;
/// Domain constant for the right child of a tree node.
pub const C_RIGHT: u128 = 0xa53e_f081_d82c_6b4e_0000_0000_0000_0002;
/// Domain constant for leaf conversion (early-terminated 128-bit leaves).
pub const C_LEAF: u128 = 0x3c96_e1d4_7b0a_58f2_0000_0000_0000_0003;

/// Domain constant for the j-th value block of a DCF level (j < 2^16).
#[inline]
pub const fn c_value(j: u32) -> u128 {
    0xc369_1e5b_84f7_a20d_0000_0000_0001_0000 | j as u128
}

/// The number of blocks AES-NI works on at once (the `aes` crate pipelines 8).
pub const PAR_BLOCKS: usize = 8;
/// Blocks per call into the `aes` crate (a multiple of [`PAR_BLOCKS`]; 1 KiB of stack).
const AES_CALL_BLOCKS: usize = 64;

/// Fixed-key AES-128 (the tree PRG's permutation π). Wrapped so the implementation (the
/// `aes` crate at 0.8, AES-NI detected at run time) can be swapped without touching FSS code.
#[derive(Clone)]
pub struct FixedKeyAes {
    cipher: Aes128,
}

impl std::fmt::Debug for FixedKeyAes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedKeyAes")
    }
}

impl Default for FixedKeyAes {
    fn default() -> Self {
        Self::with_key(FIXED_KEY)
    }
}

impl FixedKeyAes {
    /// The process-wide instance keyed with [`FIXED_KEY`].
    pub fn global() -> &'static FixedKeyAes {
        static G: OnceLock<FixedKeyAes> = OnceLock::new();
        G.get_or_init(FixedKeyAes::default)
    }

    /// AES-128 under an arbitrary key (used by [`Csprng`]).
    pub fn with_key(key: [u8; 16]) -> Self {
        FixedKeyAes {
            cipher: Aes128::new(&GenericArray::from(key)),
        }
    }

    /// π(x).
    #[inline]
    pub fn permute(&self, x: u128) -> u128 {
        let mut b = GenericArray::from(x.to_le_bytes());
        self.cipher.encrypt_block(&mut b);
        u128::from_le_bytes(b.into())
    }

    /// π applied to every block in place (pipelined).
    #[inline]
    pub fn permute_many(&self, blocks: &mut [u128]) {
        self.encrypt_in_place::<false>(blocks);
    }

    /// y ↦ π(y) ⊕ y for every block in place (pipelined): the MMO output G_c(s) of blocks
    /// that already hold y = s ⊕ c.
    #[inline]
    pub fn mmo_in_place(&self, blocks: &mut [u128]) {
        self.encrypt_in_place::<true>(blocks);
    }

    /// π(y) (or π(y) ⊕ y with `FEED`) for every block y, through the `aes` crate's pipelined
    /// multi-block encryption, [`AES_CALL_BLOCKS`] blocks per call (one call per 8 blocks
    /// paid the crate's backend dispatch every time: 324–357 M blocks/s against 557–577 M for
    /// one call on 512 blocks, single thread, development VM).
    #[inline(always)]
    fn encrypt_in_place<const FEED: bool>(&self, blocks: &mut [u128]) {
        let mut buf = [GenericArray::from([0u8; 16]); AES_CALL_BLOCKS];
        for chunk in blocks.chunks_mut(AES_CALL_BLOCKS) {
            let m = chunk.len();
            for (b, x) in buf.iter_mut().zip(chunk.iter()) {
                *b = GenericArray::from(x.to_le_bytes());
            }
            self.cipher.encrypt_blocks(&mut buf[..m]);
            for (x, b) in chunk.iter_mut().zip(buf.iter()) {
                let e = u128::from_le_bytes((*b).into());
                *x = if FEED { *x ^ e } else { e };
            }
        }
    }

    /// G_c(s) = π(s ⊕ c) ⊕ s ⊕ c.
    #[inline]
    pub fn mmo(&self, c: u128, s: u128) -> u128 {
        let y = s ^ c;
        self.permute(y) ^ y
    }

    /// `out[i] = G_{c[i]}(s[i])` for independent inputs (pipelined through AES-NI).
    ///
    /// # Panics
    /// If the three slices differ in length (a caller bug).
    #[inline]
    pub fn mmo_many(&self, c: &[u128], s: &[u128], out: &mut [u128]) {
        assert!(c.len() == s.len() && s.len() == out.len());
        for ((o, &ci), &si) in out.iter_mut().zip(c).zip(s) {
            *o = si ^ ci;
        }
        self.mmo_in_place(out);
    }

    /// `out[i] = G_c(s[i])` with one constant for all.
    #[inline]
    pub fn mmo_same(&self, c: u128, s: &[u128], out: &mut [u128]) {
        assert!(s.len() == out.len());
        for (o, &si) in out.iter_mut().zip(s) {
            *o = si ^ c;
        }
        self.mmo_in_place(out);
    }
}

/// Elements from which [`Csprng::fill_masked`] splits its work over rayon.
pub const FILL_PAR_MIN: usize = 1 << 15;
/// Elements per rayon task of [`Csprng::fill_masked`] (a multiple of 16).
const FILL_CHUNK: usize = 1 << 13;

/// `out[i] = low64(π_k(ctr0 + i)) & mask`: the CTR blocks of one run of counters.
fn counter_blocks(aes: &FixedKeyAes, ctr0: u128, mask: u64, out: &mut [u64]) {
    const B: usize = 64;
    let mut blk = [0u128; B];
    for (ci, o) in out.chunks_mut(B).enumerate() {
        let base = ctr0.wrapping_add((ci * B) as u128);
        let b = &mut blk[..o.len()];
        for (i, x) in b.iter_mut().enumerate() {
            *x = base.wrapping_add(i as u128);
        }
        aes.permute_many(b);
        for (x, &y) in o.iter_mut().zip(b.iter()) {
            *x = (y as u64) & mask;
        }
    }
}

/// AES-128-CTR CSPRNG. Keyed from the OS for the dealer; from an explicit secret seed where a
/// stream must be reproduced by its holder.
#[derive(Clone)]
pub struct Csprng {
    aes: FixedKeyAes,
    ctr: u128,
    buf: [u128; 16],
    pos: usize,
}

impl std::fmt::Debug for Csprng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csprng(..)")
    }
}

impl Csprng {
    /// A generator keyed with 16 bytes from the operating system.
    ///
    /// # Errors
    /// [`CoreError::OsRng`] if the OS source fails.
    pub fn from_os() -> Result<Self> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| CoreError::OsRng(e.to_string()))?;
        Ok(Self::from_seed(key))
    }

    /// A generator with an explicit secret seed (deterministic stream).
    pub fn from_seed(seed: [u8; 16]) -> Self {
        Csprng {
            aes: FixedKeyAes::with_key(seed),
            ctr: 0,
            buf: [0; 16],
            pos: 16,
        }
    }

    /// A deterministic generator for tests and benchmarks (never for real keys).
    pub fn for_tests(seed: u64) -> Self {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..].copy_from_slice(b"testonly");
        Self::from_seed(s)
    }

    fn refill(&mut self) {
        for (i, b) in self.buf.iter_mut().enumerate() {
            *b = self.ctr.wrapping_add(i as u128);
        }
        self.ctr = self.ctr.wrapping_add(16);
        self.aes.permute_many(&mut self.buf);
        self.pos = 0;
    }

    /// A uniform 128-bit block.
    #[inline]
    pub fn next_u128(&mut self) -> u128 {
        if self.pos == 16 {
            self.refill();
        }
        let v = self.buf[self.pos];
        self.pos += 1;
        v
    }

    /// A uniform 64-bit word (the low half of a block; the high half is discarded).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.next_u128() as u64
    }

    /// A uniform element of Z_{2^n}.
    #[inline]
    pub fn ring(&mut self, w: BitWidth) -> u64 {
        self.next_u64() & w.mask()
    }

    /// A uniform bit.
    #[inline]
    pub fn bit(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Fill `out` with uniform elements of Z_{2^n}.
    pub fn fill_ring(&mut self, w: BitWidth, out: &mut [u64]) {
        self.fill_masked(w.mask(), out);
    }

    /// Fill `out` with `next_u64() & mask`, element after element: exactly the values (and
    /// the generator state afterwards) of that serial loop, computed in bulk. Whole refills
    /// of the middle run encrypt their counters directly into `out` (no per-element buffer
    /// check), in rayon chunks from [`FILL_PAR_MIN`] elements on; the counter of element i
    /// of that run is `ctr + i`, so the chunks are independent and the result is the serial
    /// one whatever the thread count.
    pub fn fill_masked(&mut self, mask: u64, out: &mut [u64]) {
        let mut rest = out;
        // 1. What the current buffer still holds.
        while self.pos < 16 {
            let Some((o, r)) = rest.split_first_mut() else {
                return;
            };
            *o = self.next_u64() & mask;
            rest = r;
        }
        // 2. Whole refills: counters ctr, ctr + 1, … straight into `rest`.
        let whole = rest.len() / 16 * 16;
        let (mid, tail) = rest.split_at_mut(whole);
        if !mid.is_empty() {
            let ctr0 = self.ctr;
            let aes = &self.aes;
            if mid.len() >= FILL_PAR_MIN {
                use rayon::prelude::*;
                mid.par_chunks_mut(FILL_CHUNK)
                    .enumerate()
                    .for_each(|(ci, o)| {
                        counter_blocks(aes, ctr0.wrapping_add((ci * FILL_CHUNK) as u128), mask, o)
                    });
            } else {
                counter_blocks(aes, ctr0, mask, mid);
            }
            self.ctr = self.ctr.wrapping_add(whole as u128);
        }
        // 3. The tail (< 16) through one ordinary refill, leaving the buffer as the serial
        // loop would.
        for o in tail {
            *o = self.next_u64() & mask;
        }
    }

    /// [`Csprng::fill_masked`] for several outputs one after the other (`(mask, out)` each):
    /// exactly the values and the state afterwards of those calls in order, the parts and
    /// their chunks filled in parallel. Element e of the stream is low64(π_k(e)) whatever
    /// was drawn before, so each part starts at a known counter.
    pub fn fill_parts(&mut self, parts: &mut [(u64, &mut [u64])]) {
        use rayon::prelude::*;
        let total: usize = parts.iter().map(|p| p.1.len()).sum();
        if total < FILL_PAR_MIN {
            for (mask, out) in parts.iter_mut() {
                self.fill_masked(*mask, out);
            }
            return;
        }
        // The next element's counter: ctr is always a multiple of 16 and the buffer holds
        // the 16 blocks below it.
        let e0 = if self.pos == 16 {
            self.ctr
        } else {
            self.ctr.wrapping_sub(16).wrapping_add(self.pos as u128)
        };
        let mut starts = Vec::with_capacity(parts.len());
        let mut e = e0;
        for p in parts.iter() {
            starts.push(e);
            e = e.wrapping_add(p.1.len() as u128);
        }
        let aes = &self.aes;
        parts
            .par_iter_mut()
            .zip(starts)
            .for_each(|((mask, out), s)| {
                out.par_chunks_mut(FILL_CHUNK)
                    .enumerate()
                    .for_each(|(ci, o)| {
                        counter_blocks(aes, s.wrapping_add((ci * FILL_CHUNK) as u128), *mask, o)
                    });
            });
        // The state the serial draws leave: the buffer of the block run holding element e
        // (refilled), positioned at e.
        let within = (e % 16) as usize;
        self.ctr = e.wrapping_sub(within as u128);
        if within == 0 {
            self.pos = 16;
        } else {
            self.refill();
            self.pos = within;
        }
    }

    /// Fill `out` with elements `start, start + 1, …` of this generator's stream masked with
    /// `mask`: `out[i]` is what the `(start + i)`-th `next_u64() & mask` of a fresh
    /// generator with the same seed returns (counting from 0), whatever this one has drawn.
    /// Random access (element e is low64(π_k(e))) without the generator's state, so that
    /// disjoint ranges of one stream can be filled on different threads; the generator is
    /// not advanced.
    pub fn fill_masked_at(&self, start: u128, mask: u64, out: &mut [u64]) {
        counter_blocks(&self.aes, start, mask, out);
    }

    /// `count` uniform elements of Z_{2^n}.
    pub fn ring_vec(&mut self, w: BitWidth, count: usize) -> Vec<u64> {
        let mut v = vec![0; count];
        self.fill_ring(w, &mut v);
        v
    }

    /// A fresh 16-byte seed for a derived generator.
    pub fn seed(&mut self) -> [u8; 16] {
        self.next_u128().to_le_bytes()
    }

    /// A uniform value below `bound` (> 0), by rejection (unbiased).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        let zone = u64::MAX - (u64::MAX % bound) - 1;
        loop {
            let v = self.next_u64();
            if v <= zone || zone == u64::MAX - 1 && bound.is_power_of_two() {
                return v % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `fill_masked` after `pre` serial draws, against the serial loop: the values and the
    /// next draws afterwards (the state) agree.
    fn fill_matches_serial(seed: u64, pre: usize, len: usize, mask: u64) {
        let mut a = Csprng::for_tests(seed);
        let mut b = Csprng::for_tests(seed);
        for _ in 0..pre {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut fast = vec![0u64; len];
        a.fill_masked(mask, &mut fast);
        let slow: Vec<u64> = (0..len).map(|_| b.next_u64() & mask).collect();
        if let Some(i) = (0..len).find(|&i| fast[i] != slow[i]) {
            panic!("pre {pre} len {len}: first difference at {i}");
        }
        for _ in 0..20 {
            assert_eq!(
                a.next_u64(),
                b.next_u64(),
                "state after pre {pre} len {len}"
            );
        }
    }

    #[test]
    fn fill_masked_is_the_serial_stream() {
        for pre in [0usize, 1, 15, 16, 17] {
            for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 1000] {
                fill_matches_serial(7, pre, len, u64::MAX);
                fill_matches_serial(8, pre, len, (1 << 37) - 1);
                fill_matches_serial(9, pre, len, 1);
            }
        }
        // Large: the rayon path, with a ragged last chunk and a tail.
        fill_matches_serial(10, 3, FILL_PAR_MIN + 3 * FILL_CHUNK + 21, (1 << 50) - 1);
        fill_matches_serial(11, 0, FILL_PAR_MIN, u64::MAX);
        let w = BitWidth::new(13).unwrap();
        let mut a = Csprng::for_tests(12);
        let mut b = Csprng::for_tests(12);
        let v = a.ring_vec(w, 70_001);
        assert!(v.iter().all(|&x| x < 1 << 13));
        assert_eq!(v, (0..70_001).map(|_| b.ring(w)).collect::<Vec<_>>());
    }

    /// `fill_masked_at` is the fresh generator's serial stream from any position, and leaves
    /// the generator where it was.
    #[test]
    fn fill_masked_at_is_the_serial_stream_from_a_position() {
        let mut fresh = Csprng::for_tests(40);
        let mask = (1 << 41) - 1;
        let all: Vec<u64> = (0..300).map(|_| fresh.next_u64() & mask).collect();
        let mut g = Csprng::for_tests(40);
        let before = g.next_u64();
        for (start, len) in [
            (0usize, 0usize),
            (0, 300),
            (1, 17),
            (16, 16),
            (15, 100),
            (250, 50),
        ] {
            let mut out = vec![0u64; len];
            g.fill_masked_at(start as u128, mask, &mut out);
            assert_eq!(out, all[start..start + len], "start {start} len {len}");
        }
        assert_eq!((before & mask, g.next_u64() & mask), (all[0], all[1]));
    }

    /// `fill_parts` against `fill_masked` part after part: values and the draws afterwards.
    fn parts_match_serial(seed: u64, pre: usize, lens: &[usize]) {
        let masks = [u64::MAX, (1 << 37) - 1, 1, (1 << 50) - 1];
        let mut a = Csprng::for_tests(seed);
        let mut b = Csprng::for_tests(seed);
        for _ in 0..pre {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut got: Vec<Vec<u64>> = lens.iter().map(|&l| vec![0; l]).collect();
        let mut parts: Vec<(u64, &mut [u64])> = got
            .iter_mut()
            .enumerate()
            .map(|(i, v)| (masks[i % 4], v.as_mut_slice()))
            .collect();
        a.fill_parts(&mut parts);
        for (i, &l) in lens.iter().enumerate() {
            let mut w = vec![0; l];
            b.fill_masked(masks[i % 4], &mut w);
            assert_eq!(got[i], w, "seed {seed} pre {pre} part {i} of {lens:?}");
        }
        for _ in 0..40 {
            assert_eq!(a.next_u64(), b.next_u64(), "state after {lens:?}");
        }
    }

    #[test]
    fn mmo_in_place_is_mmo() {
        let aes = FixedKeyAes::global();
        let mut g = Csprng::for_tests(30);
        for len in [0usize, 1, 7, 8, 9, 33] {
            let s: Vec<u128> = (0..len).map(|_| g.next_u128()).collect();
            let c: Vec<u128> = (0..len).map(|i| c_value(i as u32)).collect();
            let mut y: Vec<u128> = s.iter().zip(&c).map(|(a, b)| a ^ b).collect();
            aes.mmo_in_place(&mut y);
            let want: Vec<u128> = s.iter().zip(&c).map(|(a, b)| aes.mmo(*b, *a)).collect();
            assert_eq!(y, want, "len {len}");
        }
    }

    #[test]
    fn fill_parts_is_the_serial_stream() {
        let big = FILL_PAR_MIN + 3 * FILL_CHUNK + 21;
        for pre in [0usize, 1, 15, 16, 17] {
            parts_match_serial(20, pre, &[]);
            parts_match_serial(21, pre, &[3, 0, 17, 1]);
            parts_match_serial(22, pre, &[big]);
            parts_match_serial(23, pre, &[5, big, 0, 16, FILL_CHUNK + 1, 7]);
            parts_match_serial(24, pre, &[FILL_PAR_MIN / 2, FILL_PAR_MIN / 2]);
            parts_match_serial(25, pre, &vec![1000; 40]);
        }
    }

    proptest! {
        #[test]
        fn fill_masked_prop(seed in any::<u64>(), pre in 0usize..40, len in 0usize..600, bits in 1u32..=64) {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            fill_matches_serial(seed, pre, len, mask);
        }
    }

    #[test]
    fn aes_known_answer_fips197() {
        // FIPS-197 Appendix C.1: key 000102..0f, plaintext 00112233..ff.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let a = FixedKeyAes::with_key(key);
        let ct = a.permute(u128::from_le_bytes(pt)).to_le_bytes();
        let want = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        assert_eq!(ct, want);
    }

    #[test]
    fn batch_equals_single() {
        let a = FixedKeyAes::global();
        let s: Vec<u128> = (0..37u128)
            .map(|i| i.wrapping_mul(0x1234_5678_9abc_def1))
            .collect();
        let c: Vec<u128> = (0..37)
            .map(|i| if i % 2 == 0 { C_LEFT } else { C_RIGHT })
            .collect();
        let mut out = vec![0; 37];
        a.mmo_many(&c, &s, &mut out);
        let mut out2 = vec![0; 37];
        a.mmo_same(C_LEAF, &s, &mut out2);
        for i in 0..37 {
            assert_eq!(out[i], a.mmo(c[i], s[i]));
            assert_eq!(out2[i], a.mmo(C_LEAF, s[i]));
            assert_ne!(out[i], a.permute(s[i]));
        }
        let mut p = s.clone();
        a.permute_many(&mut p);
        for i in 0..37 {
            assert_eq!(p[i], a.permute(s[i]));
        }
    }

    #[test]
    fn constants_distinct() {
        let cs = [C_LEFT, C_RIGHT, C_LEAF, c_value(0), c_value(1), c_value(2)];
        for i in 0..cs.len() {
            for j in 0..i {
                assert_ne!(cs[i], cs[j]);
            }
        }
    }

    #[test]
    fn csprng_deterministic_and_distinct() {
        let mut a = Csprng::for_tests(1);
        let mut b = Csprng::for_tests(1);
        let mut c = Csprng::for_tests(2);
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let mut os1 = Csprng::from_os().unwrap();
        let mut os2 = Csprng::from_os().unwrap();
        assert_ne!(os1.next_u128(), os2.next_u128());
        let w = BitWidth::new(13).unwrap();
        assert!(a.ring_vec(w, 1000).iter().all(|&x| x < 1 << 13));
        for _ in 0..1000 {
            assert!(a.below(7) < 7);
        }
        // Roughly balanced bits.
        let ones: u32 = (0..1000).map(|_| a.next_u64().count_ones()).sum();
        assert!((30_000..34_000).contains(&ones));
    }
}
