//! Nonlinear gates: the interface the runtime drives, and the layout of their key blobs.
//! The gates the models use are compiled by `suf-compiler`; [`crate::testing`] holds two
//! small reference gates for the executor's own tests.
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
use suf_fss::KeyRef;

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
    /// Party: additive shares of the outputs from the opened x̂ and this party's blob. `key`
    /// borrows the blob from the loaded key stream (with its origin there); DCF batches in it
    /// are read in place with `DcfKeys::view`.
    fn eval(
        &self,
        w: BitWidth,
        party: u8,
        key: KeyRef<'_>,
        xhat: &[u64],
        be: &dyn Backend,
    ) -> Result<Vec<u64>>;
    /// Bytes of the key blob [`GateImpl::deal`] returns to party 0 and to party 1 for a batch
    /// of `count` elements, from the closed forms of the key format (no key generation): what
    /// capacity planning ([`crate::plan`]) sums. `None` when the gate cannot say, or when a
    /// size overflows; planning then fails with a typed error.
    fn key_bytes(&self, w: BitWidth, count: usize) -> Option<[u64; 2]> {
        let _ = (w, count);
        None
    }
    /// AES calls one party makes to evaluate a batch of `count` elements (both parties make
    /// the same number); `None` when the gate cannot say.
    fn aes_calls(&self, w: BitWidth, count: usize) -> Option<u64> {
        let _ = (w, count);
        None
    }
    /// Low bits of the opened input x̂ that [`GateImpl::eval`] reads (1..=n): the runtime
    /// opens x + r mod 2^bits and hands `eval` x̂ mod 2^bits. The default, n, opens all.
    fn input_bits(&self, w: BitWidth) -> u32 {
        w.bits()
    }
}

/// Bits per element of the opening of `dep` (of type `dtype`) for the interactive step
/// `op`: 1 for bits, a gate's [`GateImpl::input_bits`] (clamped to 1..=n) for its input,
/// else n. The executor packs and the planner counts exactly this.
pub fn opening_bits(op: &crate::ir::Op, dtype: Dtype, w: BitWidth) -> u32 {
    match (dtype, op) {
        (Dtype::Bool, _) => 1,
        (Dtype::Arith, crate::ir::Op::Gate(_, g)) => g.input_bits(w).clamp(1, w.bits()),
        (Dtype::Arith, _) => w.bits(),
    }
}

impl fmt::Debug for dyn GateImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gate({})", self.name())
    }
}

/// Alignment of every part of a gate key blob (relative to the blob's start; the key stream
/// puts the blob itself 16-aligned, and a DCF batch's 64-byte header then leaves its body
/// 16-aligned in the stream, as the device kernels need).
pub const PART_ALIGN: usize = 16;

/// Concatenation of byte parts (the layout of a gate's key blob):
/// ```text
/// 0       8    number of parts c (u64 LE)
/// 8       8·c  part lengths (u64 LE)
///         .    zero padding to a multiple of 16
/// parts   part i at a 16-aligned offset, each followed by zero padding to a multiple of 16
/// ```
pub fn join_parts(parts: &[&[u8]]) -> Vec<u8> {
    use rayon::prelude::*;
    let al = |x: usize| x.next_multiple_of(PART_ALIGN);
    let head = al(8 + 8 * parts.len());
    let total: usize = head + parts.iter().map(|p| al(p.len())).sum::<usize>();
    if total < suf_fss::dealer::POOL_MIN_BYTES {
        // Heap-sized: one sequential pass.
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(parts.len() as u64).to_le_bytes());
        for p in parts {
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        }
        out.resize(head, 0);
        for p in parts {
            out.extend_from_slice(p);
            out.resize(al(out.len()), 0);
        }
        return out;
    }
    // Large: the zeroed blob with its head (a pooled buffer when one is free), then each
    // part copied into place in parallel chunks, so that the pages are touched by every core.
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    let mut blob = PartsBlob::new(&lens).unwrap_or_else(|| panic!("a blob of {total} bytes"));
    for (i, p) in parts.iter().enumerate() {
        let dst = blob.part_mut(i);
        if p.len() < COPY_CHUNK {
            dst.copy_from_slice(p);
        } else {
            dst.par_chunks_mut(COPY_CHUNK)
                .zip(p.par_chunks(COPY_CHUNK))
                .for_each(|(d, s)| d.copy_from_slice(s));
        }
    }
    blob.into_bytes()
}

/// A key blob in the layout of [`join_parts`] whose part lengths are known before the parts
/// exist: the whole blob is allocated once, zeroed (head written, every part and padding
/// zero; a pooled buffer when one is free, `suf_fss::dealer::zeroed_buffer`), and each part
/// is then written in place ([`PartsBlob::part_mut`]). This is how a gate's dealer assembles
/// a batch of hundreds of MB without making each part in a buffer of its own and copying it
/// (the key generators write their keys straight into their slots).
#[derive(Debug)]
pub struct PartsBlob {
    bytes: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl PartsBlob {
    /// The zeroed blob for parts of these lengths; `None` when its length overflows
    /// ([`joined_len`]).
    pub fn new(lens: &[usize]) -> Option<PartsBlob> {
        let total = joined_len(lens)?;
        let mut bytes = suf_fss::dealer::zeroed_buffer(total);
        let mut pos = (8 + 8 * lens.len()).next_multiple_of(PART_ALIGN);
        bytes[..8].copy_from_slice(&(lens.len() as u64).to_le_bytes());
        let mut ranges = Vec::with_capacity(lens.len());
        for (i, &l) in lens.iter().enumerate() {
            bytes[8 + 8 * i..16 + 8 * i].copy_from_slice(&(l as u64).to_le_bytes());
            ranges.push(pos..pos + l);
            pos = (pos + l).next_multiple_of(PART_ALIGN);
        }
        debug_assert_eq!(pos, total);
        Some(PartsBlob { bytes, ranges })
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.ranges.len()
    }

    /// Part `i`'s bytes (zero until written; exactly its length).
    ///
    /// # Panics
    /// If `i` is not a part index (a caller bug).
    pub fn part_mut(&mut self, i: usize) -> &mut [u8] {
        let r = self.ranges[i].clone();
        &mut self.bytes[r]
    }

    /// The finished blob.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Bytes per parallel task when [`join_parts`] copies a large part.
const COPY_CHUNK: usize = 1 << 20;

/// Length of the blob [`join_parts`] makes from parts of these lengths (closed form, checked
/// arithmetic): 16-aligned head of 8 + 8·c bytes, then each part padded to a multiple of 16.
pub fn joined_len(parts: &[usize]) -> Option<usize> {
    let al = |x: usize| x.checked_next_multiple_of(PART_ALIGN);
    let mut total = al(parts.len().checked_mul(8)?.checked_add(8)?)?;
    for &p in parts {
        total = total.checked_add(al(p)?)?;
    }
    Some(total)
}

/// Split a blob made by [`join_parts`] into exactly `n` parts (zero-copy; each part keeps its
/// origin in the stream). O(n): lengths are checked with checked arithmetic against the blob,
/// which must be exactly as long as they imply, with zero padding.
pub fn split_parts(b: KeyRef<'_>, n: usize) -> Result<Vec<KeyRef<'_>>> {
    let bad = |m: &str| RtError::KeyStream(format!("gate key blob: {m}"));
    let bytes = b.bytes;
    let word = |o: usize| -> Option<u64> {
        let s = bytes.get(o..o.checked_add(8)?)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(u64::from_le_bytes(a))
    };
    let cnt = word(0).ok_or_else(|| bad("truncated"))?;
    if cnt != n as u64 {
        return Err(bad(&format!("{cnt} parts, expected {n}")));
    }
    let head = n
        .checked_mul(8)
        .and_then(|x| x.checked_add(8))
        .and_then(|x| x.checked_next_multiple_of(PART_ALIGN))
        .filter(|&h| h <= bytes.len())
        .ok_or_else(|| bad("truncated"))?;
    let zero = |r: std::ops::Range<usize>| bytes[r].iter().all(|&x| x == 0);
    if !zero(8 + 8 * n..head) {
        return Err(bad("padding is not zero"));
    }
    let mut pos = head;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let len = word(8 + 8 * i)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| bad("truncated"))?;
        let end = pos.checked_add(len).ok_or_else(|| bad("truncated part"))?;
        let next = end
            .checked_next_multiple_of(PART_ALIGN)
            .filter(|&x| x <= bytes.len())
            .ok_or_else(|| bad("truncated part"))?;
        if !zero(end..next) {
            return Err(bad("padding is not zero"));
        }
        out.push(b.sub(pos..end).ok_or_else(|| bad("truncated part"))?);
        pos = next;
    }
    if pos != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_fss::KeyOrigin;

    fn at(bytes: &[u8], offset: u64) -> KeyRef<'_> {
        KeyRef {
            bytes,
            origin: Some(KeyOrigin {
                stream: 5,
                offset,
                on_host: true,
            }),
        }
    }

    #[test]
    fn parts_are_16_aligned_and_keep_their_origin() {
        let parts: Vec<Vec<u8>> = [0usize, 1, 15, 16, 17, 64]
            .iter()
            .enumerate()
            .map(|(i, &l)| vec![i as u8 + 1; l])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let b = join_parts(&refs);
        assert_eq!(b.len() % PART_ALIGN, 0);
        let got = split_parts(at(&b, 4096), refs.len()).unwrap();
        assert_eq!(got.len(), refs.len());
        for (g, p) in got.iter().zip(&refs) {
            assert_eq!(g.bytes, *p);
            let o = g.origin.unwrap();
            assert_eq!((o.stream, o.offset % PART_ALIGN as u64), (5, 0));
            let rel = o.offset as usize - 4096;
            assert_eq!(&b[rel..rel + p.len()], *p);
        }
        assert!(split_parts(KeyRef::detached(&join_parts(&[])), 0)
            .unwrap()
            .is_empty());
    }

    /// The parallel copy of large parts gives exactly the sequential layout: head, then each
    /// part at a 16-aligned offset with zero padding.
    #[test]
    fn large_parts_join_like_the_sequential_layout() {
        let big: Vec<u8> = (0..(3 << 20) + 5)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let parts: [&[u8]; 3] = [&[9u8; 3], &big, &[8u8; 17]];
        let mut want = Vec::new();
        want.extend_from_slice(&3u64.to_le_bytes());
        for p in parts {
            want.extend_from_slice(&(p.len() as u64).to_le_bytes());
        }
        want.resize(32, 0);
        for p in parts {
            want.extend_from_slice(p);
            want.resize(want.len().next_multiple_of(PART_ALIGN), 0);
        }
        assert!(join_parts(&parts) == want);
        assert_eq!(joined_len(&parts.map(<[u8]>::len)), Some(want.len()));
    }

    /// A blob whose parts are written in place is exactly `join_parts` of those parts, small
    /// or large, with empty parts too.
    #[test]
    fn parts_written_in_place_join_like_join_parts() {
        let big: Vec<u8> = (0..suf_fss::dealer::POOL_MIN_BYTES + 7)
            .map(|i| (i * 13 + i / 999) as u8)
            .collect();
        let cases: [Vec<&[u8]>; 4] = [
            vec![],
            vec![&[1u8; 3]],
            vec![&[], &[2u8; 16], &[3u8; 17], &[]],
            vec![&[4u8; 5], &big, &[5u8; 40]],
        ];
        for parts in cases {
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            let mut b = PartsBlob::new(&lens).unwrap();
            assert_eq!(b.parts(), parts.len());
            for (i, p) in parts.iter().enumerate() {
                b.part_mut(i).copy_from_slice(p);
            }
            let got = b.into_bytes();
            assert_eq!(Some(got.len()), joined_len(&lens));
            assert!(got == join_parts(&parts), "lens {:?}", lens.len());
        }
    }

    #[test]
    fn malformed_blobs_are_typed_errors() {
        let b = join_parts(&[&[1u8; 5], &[2u8; 20]]);
        let split = |x: &[u8], n| split_parts(KeyRef::detached(x), n).map(|v| v.len());
        assert_eq!(split(&b, 2).unwrap(), 2);
        assert!(split(&b, 3).is_err());
        for cut in 0..b.len() {
            assert!(split(&b[..cut], 2).is_err(), "cut {cut}");
        }
        let mut long = b.clone();
        long.extend_from_slice(&[0; 16]);
        assert!(split(&long, 2).is_err());
        // Lengths and counts far out of range: no overflow, no panic.
        for (o, v) in [
            (0usize, u64::MAX),
            (8, u64::MAX),
            (8, 17),
            (16, u64::MAX - 3),
            (16, 33),
        ] {
            let mut x = b.clone();
            x[o..o + 8].copy_from_slice(&v.to_le_bytes());
            assert!(split(&x, 2).is_err(), "offset {o} value {v}");
        }
        // Non-zero padding (after the lengths; after part 0).
        for o in [24usize, 32 + 5] {
            let mut x = b.clone();
            x[o] = 9;
            assert!(split(&x, 2).is_err(), "padding at {o}");
        }
        assert!(split(&[], 0).is_err());
    }
}
