//! Bit packing: `count` values of `k` bits (1 ≤ k ≤ 64) laid out LSB first, value after value,
//! in a little-endian bit stream; the last byte is zero-padded. This is the wire format of every
//! opened value: n-bit elements travel in ⌈count·k/8⌉ bytes.
//!
//! Bits of a value above `k` are ignored when packing (the value is reduced mod 2^k).
//! Unpacking rejects buffers of the wrong length and non-zero padding bits.

use crate::error::{CoreError, Result};

/// Bytes needed for `count` values of `k` bits.
#[inline]
pub fn packed_len(count: usize, k: u32) -> usize {
    (count as u128 * k as u128).div_ceil(8) as usize
}

fn check_k(k: u32) {
    assert!((1..=64).contains(&k), "bit width {k} outside 1..=64");
}

/// Append the packing of `vals` (each reduced mod 2^k) to `out`.
///
/// # Panics
/// If `k` is outside 1..=64 (a caller bug).
pub fn pack_into(vals: &[u64], k: u32, out: &mut Vec<u8>) {
    check_k(k);
    let start = out.len();
    out.resize(start + packed_len(vals.len(), k), 0);
    pack_to(vals, k, &mut out[start..]);
}

/// Write the packing of `vals` (each reduced mod 2^k) into `out`, which must be exactly
/// [`packed_len`] bytes long (a chunk of a larger buffer: chunks of a multiple of 8 values
/// start on byte boundaries, so packing them one by one gives the stream of the whole).
///
/// # Panics
/// If `k` is outside 1..=64 or `out` has another length (caller bugs).
pub fn pack_to(vals: &[u64], k: u32, out: &mut [u8]) {
    check_k(k);
    assert_eq!(
        out.len(),
        packed_len(vals.len(), k),
        "pack_to buffer length"
    );
    if k.is_multiple_of(8) {
        let b = (k / 8) as usize;
        for (&v, o) in vals.iter().zip(out.chunks_exact_mut(b)) {
            o.copy_from_slice(&v.to_le_bytes()[..b]);
        }
        return;
    }
    let mask = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
    let mut acc: u128 = 0;
    let mut nbits: u32 = 0;
    let mut pos = 0;
    for &v in vals {
        acc |= ((v & mask) as u128) << nbits;
        nbits += k;
        while nbits >= 64 {
            out[pos..pos + 8].copy_from_slice(&(acc as u64).to_le_bytes());
            pos += 8;
            acc >>= 64;
            nbits -= 64;
        }
    }
    let tail = nbits.div_ceil(8) as usize;
    out[pos..pos + tail].copy_from_slice(&(acc as u64).to_le_bytes()[..tail]);
    debug_assert_eq!(pos + tail, out.len());
}

/// The packing of `vals` as a fresh buffer.
pub fn pack(vals: &[u64], k: u32) -> Vec<u8> {
    let mut out = Vec::new();
    pack_into(vals, k, &mut out);
    out
}

/// Unpack exactly `count` values of `k` bits from `bytes`, which must have exactly
/// [`packed_len`] bytes with zero padding.
///
/// # Errors
/// [`CoreError::PackedLength`] if the length or padding is wrong.
pub fn unpack(bytes: &[u8], k: u32, count: usize) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(count.min(bytes.len() * 8));
    unpack_into(bytes, k, count, &mut out)?;
    Ok(out)
}

/// Like [`unpack`], appending to `out` (unchanged on error).
///
/// # Errors
/// As [`unpack`].
pub fn unpack_into(bytes: &[u8], k: u32, count: usize, out: &mut Vec<u64>) -> Result<()> {
    check_k(k);
    check_packed(bytes, k, count)?;
    let start = out.len();
    out.resize(start + count, 0);
    decode(bytes, k, &mut out[start..]);
    Ok(())
}

/// Like [`unpack`], into `out` (`out.len()` values; unchanged on error).
///
/// # Errors
/// As [`unpack`].
pub fn unpack_to(bytes: &[u8], k: u32, out: &mut [u64]) -> Result<()> {
    check_k(k);
    check_packed(bytes, k, out.len())?;
    decode(bytes, k, out);
    Ok(())
}

/// Exactly [`packed_len`] bytes with zero padding bits.
fn check_packed(bytes: &[u8], k: u32, count: usize) -> Result<()> {
    let expected = packed_len(count, k);
    let err = || CoreError::PackedLength {
        expected,
        got: bytes.len(),
        count,
        bits: k,
    };
    if bytes.len() != expected {
        return Err(err());
    }
    let total_bits = count as u128 * k as u128;
    let pad = (expected as u128 * 8 - total_bits) as u32;
    if pad > 0 && (bytes[expected - 1] >> (8 - pad)) != 0 {
        return Err(err());
    }
    Ok(())
}

/// Values from which [`decode`] splits the work over rayon's threads.
const DECODE_PAR_MIN: usize = 1 << 16;
/// Values per parallel chunk: a multiple of 8, so every chunk starts on a byte boundary.
const DECODE_CHUNK: usize = 1 << 13;

/// Decode `out.len()` values from `bytes` (length already checked). Large inputs are decoded
/// in independent chunks of [`DECODE_CHUNK`] values in parallel (chunk c starts at byte
/// c·DECODE_CHUNK·k/8), which gives the serial result.
fn decode(bytes: &[u8], k: u32, out: &mut [u64]) {
    if out.len() < DECODE_PAR_MIN {
        return decode_serial(bytes, k, out);
    }
    use rayon::prelude::*;
    out.par_chunks_mut(DECODE_CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            let start = c * DECODE_CHUNK / 8 * k as usize;
            let end = start + packed_len(o.len(), k);
            decode_serial(&bytes[start..end], k, o);
        });
}

/// [`decode`] on one thread.
fn decode_serial(bytes: &[u8], k: u32, out: &mut [u64]) {
    if k <= 56 && !k.is_multiple_of(8) {
        // Every value lies inside the 8 bytes from its first bit's byte (bit offset ≤ 7,
        // 7 + k ≤ 63): one unaligned little-endian load per value.
        let mask = (1u64 << k) - 1;
        let nb = bytes.len();
        let mut bit = 0usize;
        for o in out.iter_mut() {
            let at = bit >> 3;
            let w = match bytes.get(at..at + 8) {
                Some(c) => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
                None => {
                    let mut t = [0u8; 8];
                    let c = &bytes[at.min(nb)..];
                    t[..c.len()].copy_from_slice(c);
                    u64::from_le_bytes(t)
                }
            };
            *o = (w >> (bit & 7)) & mask;
            bit += k as usize;
        }
        return;
    }
    if k.is_multiple_of(8) {
        let b = (k / 8) as usize;
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(b)) {
            let mut w = [0u8; 8];
            w[..b].copy_from_slice(c);
            *o = u64::from_le_bytes(w);
        }
        return;
    }
    let mask = (1u64 << k) - 1;
    let mut acc: u128 = 0;
    let mut nbits: u32 = 0;
    let mut chunks = bytes.chunks(8);
    for o in out.iter_mut() {
        if nbits < k {
            // Load up to 8 more bytes.
            let c = chunks.next().unwrap_or(&[]);
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            acc |= (u64::from_le_bytes(w) as u128) << nbits;
            nbits += 8 * c.len() as u32;
        }
        *o = (acc as u64) & mask;
        acc >>= k;
        nbits -= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parallel_decode_equals_serial() {
        for k in [1u32, 7, 8, 13, 37, 50, 63, 64] {
            let mask = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
            for count in [DECODE_PAR_MIN, DECODE_PAR_MIN + 3 * DECODE_CHUNK + 5] {
                let vals: Vec<u64> = (0..count as u64)
                    .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask)
                    .collect();
                let b = pack(&vals, k);
                assert_eq!(unpack(&b, k, count).unwrap(), vals, "k {k} count {count}");
            }
        }
    }

    #[test]
    fn roundtrip_every_k() {
        let mut s = 0x1234_5678_9abc_def0u64;
        for k in 1..=64u32 {
            let mask = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
            for count in [0usize, 1, 2, 3, 7, 8, 9, 63, 64, 65, 1000] {
                let vals: Vec<u64> = (0..count)
                    .map(|i| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        match i % 4 {
                            0 => s,
                            1 => u64::MAX,
                            2 => 0,
                            _ => s >> 7,
                        }
                    })
                    .collect();
                let p = pack(&vals, k);
                assert_eq!(p.len(), packed_len(count, k));
                let back = unpack(&p, k, count).unwrap();
                let want: Vec<u64> = vals.iter().map(|v| v & mask).collect();
                assert_eq!(back, want, "k={k} count={count}");
            }
        }
    }

    #[test]
    fn rejects_bad_length_and_padding() {
        let p = pack(&[1, 2, 3], 5); // 15 bits -> 2 bytes, 1 pad bit
        assert!(unpack(&p[..1], 5, 3).is_err());
        let mut q = p.clone();
        q.push(0);
        assert!(unpack(&q, 5, 3).is_err());
        let mut r = p.clone();
        r[1] |= 0x80;
        assert!(matches!(
            unpack(&r, 5, 3),
            Err(CoreError::PackedLength { .. })
        ));
    }

    /// Packing and unpacking in chunks of a multiple of 8 values gives the whole stream.
    #[test]
    fn chunks_give_the_whole_stream() {
        for k in [1u32, 7, 8, 13, 37, 64] {
            for count in [0usize, 1, 31, 32, 33, 1000] {
                let vals: Vec<u64> = (0..count as u64)
                    .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    .collect();
                let whole = pack(&vals, k);
                let mut parts = vec![0u8; whole.len()];
                let mut pos = 0;
                for c in vals.chunks(16) {
                    let len = packed_len(c.len(), k);
                    pack_to(c, k, &mut parts[pos..pos + len]);
                    pos += len;
                }
                assert_eq!(parts, whole, "k={k} count={count}");
                let mut back = vec![0u64; count];
                let mut pos = 0;
                for o in back.chunks_mut(16) {
                    let len = packed_len(o.len(), k);
                    unpack_to(&whole[pos..pos + len], k, o).unwrap();
                    pos += len;
                }
                assert_eq!(back, unpack(&whole, k, count).unwrap());
            }
        }
        let mut o = [7u64; 3];
        assert!(unpack_to(&[0u8; 2], 5, &mut o).is_ok());
        assert!(unpack_to(&[0u8; 3], 5, &mut o).is_err());
        assert!(unpack_to(&[0x80, 0], 5, &mut o).is_ok());
        assert!(unpack_to(&[0, 0x80], 5, &mut o).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip_prop(k in 1u32..=64, vals in proptest::collection::vec(any::<u64>(), 0..300)) {
            let mask = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
            let back = unpack(&pack(&vals, k), k, vals.len()).unwrap();
            prop_assert_eq!(back, vals.iter().map(|v| v & mask).collect::<Vec<_>>());
        }
    }
}
