//! Fused single-pass host kernels of the online phase: masking + packing of the outgoing
//! message, unpacking + adding of the peer's, and the Beaver steps (Beaver, CRYPTO 1991) of
//! products, squares, row products, matrix products and bit-to-arithmetic conversion.
//!
//! Each function computes, element by element, exactly what the chain of separate backend
//! calls it replaces computes (every intermediate there is reduced mod 2^n, and reduction mod
//! 2^n commutes with wrapping arithmetic mod 2^64), in one pass and one output allocation;
//! from [`PAR_MIN`] elements on the pass is split over rayon in fixed chunks, so the result
//! never depends on the thread count. They are the defaults of the corresponding
//! [`crate::Backend`] methods (run in whichever rayon pool the caller is in); the CPU backend
//! runs them in its own pool, and a device backend may override them with one kernel each.
//!
//! Notation: j is the party (0/1); â = a + r_a the opened value, `[r_a]` the party's share of
//! the mask, `[c]` its share of the dealer's product correlation.

use rayon::prelude::*;
use suf_core::pack::{pack_to, packed_len, unpack_to};
use suf_core::BitWidth;

use crate::error::{check_len, shape_mul, BackendError, Result};

/// Elements from which the passes are split over rayon (chunks of this many elements).
pub const PAR_MIN: usize = 1 << 15;
/// Values per independently packed chunk: a multiple of 8, so every chunk starts on a byte
/// boundary whatever the bit width and the chunked stream is byte for byte the serial one.
pub const PACK_CHUNK: usize = 1 << 14;

/// `out[i] = f(i)` over `len` elements, in rayon chunks of [`PAR_MIN`] from that size on.
fn fill(len: usize, f: impl Fn(usize) -> u64 + Sync + Send) -> Vec<u64> {
    let mut out = vec![0u64; len];
    let run = |(ci, o): (usize, &mut [u64])| {
        let base = ci * PAR_MIN;
        for (i, x) in o.iter_mut().enumerate() {
            *x = f(base + i);
        }
    };
    if len < PAR_MIN {
        run((0, &mut out));
    } else {
        out.par_chunks_mut(PAR_MIN).enumerate().for_each(run);
    }
    out
}

fn same_len(what: &'static str, n: usize, others: &[usize]) -> Result<()> {
    others.iter().try_for_each(|&m| check_len(what, n, m))
}

fn party_word(party: u8) -> Result<u64> {
    if party > 1 {
        return Err(BackendError::Gate(format!("party {party}")));
    }
    Ok(party as u64)
}

/// The masked opening m = x + r mod 2^n, and its packing (n bits per element, the wire
/// format of `suf_core::pack`) appended to `out`. Returns m.
///
/// # Errors
/// `LengthMismatch` if `x` and `r` differ in length.
pub fn mask_pack(w: BitWidth, x: &[u64], r: &[u64], out: &mut Vec<u8>) -> Result<Vec<u64>> {
    let mut v = mask_pack_many(&[(w, x, r)], out)?;
    Ok(v.pop().unwrap_or_default())
}

/// One opening of a round: its width, this party's value x and its mask share r.
pub type MaskPart<'a> = (BitWidth, &'a [u64], &'a [u64]);

/// [`mask_pack`] of every opening of a round: the packings one after the other in `out` (each
/// from a byte boundary: exactly the bytes of the single calls in order), the openings in
/// parallel (a round holds many small ones: one per attention head) and each large one in
/// chunks. Returns each opening's m.
///
/// # Errors
/// `LengthMismatch` if an opening's `x` and `r` differ in length (nothing is appended).
pub fn mask_pack_many(parts: &[MaskPart<'_>], out: &mut Vec<u8>) -> Result<Vec<Vec<u64>>> {
    for (_, x, r) in parts {
        check_len("mask_pack r", x.len(), r.len())?;
    }
    let start = out.len();
    let total: usize = parts
        .iter()
        .map(|(w, x, _)| packed_len(x.len(), w.bits()))
        .sum();
    out.resize(start + total, 0);
    let mut regions = Vec::with_capacity(parts.len());
    let mut rest = &mut out[start..];
    for (w, x, _) in parts {
        let (a, b) = std::mem::take(&mut rest).split_at_mut(packed_len(x.len(), w.bits()));
        regions.push(a);
        rest = b;
    }
    let one = |(&(w, x, r), dst): (&MaskPart<'_>, &mut [u8])| -> Vec<u64> {
        let mut m = vec![0u64; x.len()];
        mask_pack_into(w, x, r, &mut m, dst);
        m
    };
    Ok(if total < 2 * PACK_CHUNK {
        parts.iter().zip(regions).map(one).collect()
    } else {
        parts.par_iter().zip(regions).map(one).collect()
    })
}

/// m = x + r and its packing into `dst` (exactly `packed_len(m.len(), n)` bytes); lengths
/// checked by the caller.
fn mask_pack_into(w: BitWidth, x: &[u64], r: &[u64], m: &mut [u64], dst: &mut [u8]) {
    let bits = w.bits();
    type Chunk<'a> = (((&'a mut [u64], &'a [u64]), &'a [u64]), &'a mut [u8]);
    let chunk = |(((mc, xc), rc), oc): Chunk<'_>| {
        for ((o, &a), &b) in mc.iter_mut().zip(xc).zip(rc) {
            *o = w.add(a, b);
        }
        pack_to(mc, bits, oc);
    };
    if x.len() < 2 * PACK_CHUNK {
        chunk((((m, x), r), dst));
        return;
    }
    // Every full chunk packs into exactly PACK_CHUNK·n/8 bytes; the last one holds the rest.
    let chunk_bytes = PACK_CHUNK * bits as usize / 8;
    m.par_chunks_mut(PACK_CHUNK)
        .zip(x.par_chunks(PACK_CHUNK))
        .zip(r.par_chunks(PACK_CHUNK))
        .zip(dst.par_chunks_mut(chunk_bytes))
        .for_each(chunk);
}

/// The opened value: the peer's packed masked share (exactly `packed_len(mine.len(), n)`
/// bytes, zero padding) unpacked and added to this party's, mod 2^n.
///
/// # Errors
/// `Core(PackedLength)` if `bytes` has the wrong length or non-zero padding (the peer's
/// fault).
pub fn unpack_add(w: BitWidth, bytes: &[u8], mine: &[u64]) -> Result<Vec<u64>> {
    let bits = w.bits();
    let count = mine.len();
    let chunk = |((o, b), m): ((&mut [u64], &[u8]), &[u64])| -> Result<()> {
        unpack_to(b, bits, o)?;
        for (x, &y) in o.iter_mut().zip(m) {
            *x = w.add(*x, y);
        }
        Ok(())
    };
    let mut out = vec![0u64; count];
    if count < 2 * PACK_CHUNK || bytes.len() != packed_len(count, bits) {
        // Small, or the wrong length: one piece (and the serial error).
        chunk(((&mut out, bytes), mine))?;
        return Ok(out);
    }
    // Every full chunk is exactly PACK_CHUNK·n/8 bytes; only the last one has padding.
    let chunk_bytes = PACK_CHUNK * bits as usize / 8;
    out.par_chunks_mut(PACK_CHUNK)
        .zip(bytes.par_chunks(chunk_bytes))
        .zip(mine.par_chunks(PACK_CHUNK))
        .try_for_each(chunk)?;
    Ok(out)
}

/// One received opening: its width, the peer's packed share and this party's masked value.
pub type UnpackPart<'a> = (BitWidth, &'a [u8], &'a [u64]);

/// [`unpack_add`] of every opening of a round, the openings in parallel.
///
/// # Errors
/// As [`unpack_add`], for the first opening (in order) that fails.
pub fn unpack_add_many(parts: &[UnpackPart<'_>]) -> Result<Vec<Vec<u64>>> {
    let one = |&(w, b, m): &UnpackPart<'_>| unpack_add(w, b, m);
    let total: usize = parts.iter().map(|p| p.2.len()).sum();
    let all: Vec<Result<Vec<u64>>> = if total < 2 * PACK_CHUNK {
        parts.iter().map(one).collect()
    } else {
        parts.par_iter().map(one).collect()
    };
    all.into_iter().collect()
}

/// Share of a·b from â, b̂, `[r_a]`, `[r_b]`, `[c]` (c = r_a·r_b):
/// `j·â·b̂ − â·[r_b] − b̂·[r_a] + [c]` mod 2^n. Over Z_2 this is the AND of XOR shares.
///
/// # Errors
/// `LengthMismatch` if the operands differ in length; `Gate` for a party other than 0/1.
pub fn beaver_mul(
    w: BitWidth,
    party: u8,
    a: &[u64],
    b: &[u64],
    ra: &[u64],
    rb: &[u64],
    c: &[u64],
) -> Result<Vec<u64>> {
    let j = party_word(party)?;
    same_len(
        "beaver_mul operand",
        a.len(),
        &[b.len(), ra.len(), rb.len(), c.len()],
    )?;
    Ok(fill(a.len(), |i| {
        let (x, y) = (a[i], b[i]);
        w.reduce(
            j.wrapping_mul(x.wrapping_mul(y))
                .wrapping_sub(x.wrapping_mul(rb[i]))
                .wrapping_sub(y.wrapping_mul(ra[i]))
                .wrapping_add(c[i]),
        )
    }))
}

/// Share of a² from â, `[r_a]`, `[c]` (c = r_a²): `j·â² − 2·â·[r_a] + [c]` mod 2^n.
///
/// # Errors
/// As [`beaver_mul`].
pub fn beaver_square(w: BitWidth, party: u8, a: &[u64], ra: &[u64], c: &[u64]) -> Result<Vec<u64>> {
    let j = party_word(party)?;
    same_len("beaver_square operand", a.len(), &[ra.len(), c.len()])?;
    Ok(fill(a.len(), |i| {
        let x = a[i];
        w.reduce(
            j.wrapping_mul(x.wrapping_mul(x))
                .wrapping_sub(x.wrapping_mul(ra[i]).wrapping_mul(2))
                .wrapping_add(c[i]),
        )
    }))
}

/// Row products: `a` and `[r_a]` are rows·cols (row-major), `b` and `[r_b]` one value per
/// row; element (r, k): `j·â·b̂_r − â·[r_b]_r − [r_a]·b̂_r + [c]` mod 2^n.
///
/// # Errors
/// `LengthMismatch` unless `a`, `ra`, `c` hold `b.len()·cols` and `rb` `b.len()` values.
#[allow(clippy::too_many_arguments)]
pub fn beaver_mul_rows(
    w: BitWidth,
    party: u8,
    a: &[u64],
    b: &[u64],
    ra: &[u64],
    rb: &[u64],
    c: &[u64],
    cols: usize,
) -> Result<Vec<u64>> {
    let j = party_word(party)?;
    let n = shape_mul("beaver_mul_rows a", b.len(), cols)?;
    same_len(
        "beaver_mul_rows a (rows·cols)",
        n,
        &[a.len(), ra.len(), c.len()],
    )?;
    check_len("beaver_mul_rows r_b (rows)", b.len(), rb.len())?;
    Ok(fill(n, |i| {
        let r = i / cols;
        let (x, y) = (a[i], b[r]);
        w.reduce(
            j.wrapping_mul(x.wrapping_mul(y))
                .wrapping_sub(x.wrapping_mul(rb[r]))
                .wrapping_sub(ra[i].wrapping_mul(y))
                .wrapping_add(c[i]),
        )
    }))
}

/// Bit to arithmetic share: `[b] = j·b̂ + [ρ] − 2·b̂·[ρ]` mod 2^n with b̂ = `bh` mod 2^n.
///
/// # Errors
/// As [`beaver_mul`].
pub fn b2a(w: BitWidth, party: u8, bh: &[u64], rho: &[u64]) -> Result<Vec<u64>> {
    let j = party_word(party)?;
    check_len("b2a rho", bh.len(), rho.len())?;
    Ok(fill(bh.len(), |i| {
        let b = w.reduce(bh[i]);
        w.reduce(
            j.wrapping_mul(b)
                .wrapping_add(rho[i])
                .wrapping_sub(b.wrapping_mul(rho[i]).wrapping_mul(2)),
        )
    }))
}

/// `c·a − b` mod 2^n (the left operand j·B̂ − [R_B] of a Beaver matrix product).
///
/// # Errors
/// `LengthMismatch` if `a` and `b` differ in length.
pub fn scale_sub(w: BitWidth, c: u64, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
    check_len("scale_sub b", a.len(), b.len())?;
    Ok(fill(a.len(), |i| {
        w.reduce(c.wrapping_mul(a[i]).wrapping_sub(b[i]))
    }))
}

/// `a − b + c` mod 2^n (the closing step of a Beaver matrix product).
///
/// # Errors
/// `LengthMismatch` if the operands differ in length.
pub fn sub_add(w: BitWidth, a: &[u64], b: &[u64], c: &[u64]) -> Result<Vec<u64>> {
    same_len("sub_add operand", a.len(), &[b.len(), c.len()])?;
    Ok(fill(a.len(), |i| {
        w.reduce(a[i].wrapping_sub(b[i]).wrapping_add(c[i]))
    }))
}

#[cfg(test)]
mod tests {
    //! Every fused pass equals the chain of separate backend calls it replaces (what the
    //! party interpreter did before), on random inputs of lengths 0, 1, 31, 32, 33 and large
    //! (the rayon path with a ragged last chunk), at several ring widths, and for both parties.
    use super::*;
    use crate::{Backend, CpuBackend};
    use proptest::prelude::*;

    const LENS: [usize; 7] = [0, 1, 31, 32, 33, 2 * PAR_MIN + 77, 2 * PACK_CHUNK];
    const WIDTHS: [u32; 5] = [1, 13, 37, 63, 64];

    fn rand_vec(seed: &mut u64, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *seed ^ (*seed >> 29)
            })
            .collect()
    }

    fn diff(what: &str, got: &[u64], want: &[u64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!("{what}: {bad} elements differ, first at {i}");
        }
    }

    /// All kernels at one (width, length, seed) against the unfused chains.
    fn check_all(bits: u32, n: usize, seed: u64) {
        let be = CpuBackend::new();
        let w = BitWidth::new(bits).unwrap();
        let mut s = seed;
        let [a, b, ra, rb, c] = std::array::from_fn(|_| rand_vec(&mut s, n));
        let what = |k: &str| format!("{k} n={n} bits={bits}");
        for party in [0u8, 1] {
            let j = party as u64;
            // Mul (and, over Z_2, AND).
            let ab = be.mul(w, &a, &b).unwrap();
            let t1 = be.mul(w, &a, &rb).unwrap();
            let t2 = be.mul(w, &b, &ra).unwrap();
            let x = be.scale(w, &ab, j).unwrap();
            let x = be.sub(w, &x, &t1).unwrap();
            let x = be.sub(w, &x, &t2).unwrap();
            let want = be.add(w, &x, &c).unwrap();
            diff(
                &what("beaver_mul"),
                &be.beaver_mul(w, party, &a, &b, &ra, &rb, &c).unwrap(),
                &want,
            );
            diff(
                &what("beaver_mul default"),
                &beaver_mul(w, party, &a, &b, &ra, &rb, &c).unwrap(),
                &want,
            );
            // Square.
            let aa = be.mul(w, &a, &a).unwrap();
            let t1 = be.mul(w, &a, &ra).unwrap();
            let x = be.scale(w, &aa, j).unwrap();
            let t1 = be.scale(w, &t1, 2).unwrap();
            let x = be.sub(w, &x, &t1).unwrap();
            let want = be.add(w, &x, &c).unwrap();
            diff(
                &what("beaver_square"),
                &be.beaver_square(w, party, &a, &ra, &c).unwrap(),
                &want,
            );
            // B2A.
            let bh = be.reduce(w, &a).unwrap();
            let prod = be.mul(w, &bh, &rb).unwrap();
            let x = be.scale(w, &bh, j).unwrap();
            let x = be.add(w, &x, &rb).unwrap();
            let p2 = be.scale(w, &prod, 2).unwrap();
            let want = be.sub(w, &x, &p2).unwrap();
            diff(&what("b2a"), &be.b2a(w, party, &a, &rb).unwrap(), &want);
            // Matrix-product steps.
            let jy = be.scale(w, &b, j).unwrap();
            let want = be.sub(w, &jy, &rb).unwrap();
            diff(
                &what("scale_sub"),
                &be.scale_sub(w, j, &b, &rb).unwrap(),
                &want,
            );
        }
        let x = be.sub(w, &a, &b).unwrap();
        let want = be.add(w, &x, &c).unwrap();
        diff(&what("sub_add"), &be.sub_add(w, &a, &b, &c).unwrap(), &want);
        // Row products: rows·cols with cols from 1 to 5 (n rounded down to whole rows).
        for cols in [1usize, 3, 5] {
            let rows = n / cols;
            let m = rows * cols;
            let (a, ra, c) = (&a[..m], &ra[..m], &c[..m]);
            let (b, rb) = (&b[..rows], &rb[..rows]);
            for party in [0u8, 1] {
                let ab = be.mul_rows(w, a, b, cols).unwrap();
                let t1 = be.mul_rows(w, a, rb, cols).unwrap();
                let t2 = be.mul_rows(w, ra, b, cols).unwrap();
                let x = be.scale(w, &ab, party as u64).unwrap();
                let x = be.sub(w, &x, &t1).unwrap();
                let x = be.sub(w, &x, &t2).unwrap();
                let want = be.add(w, &x, c).unwrap();
                let got = be.beaver_mul_rows(w, party, a, b, ra, rb, c, cols).unwrap();
                diff(&what("beaver_mul_rows"), &got, &want);
            }
        }
        // Mask + pack, unpack + add.
        let mut msg = vec![0xAB];
        let m = be
            .mask_pack_many(&[(w, &a, &ra)], &mut msg)
            .unwrap()
            .remove(0);
        diff(&what("mask_pack masked"), &m, &be.add(w, &a, &ra).unwrap());
        let mut want_msg = vec![0xAB];
        suf_core::pack::pack_into(&m, bits, &mut want_msg);
        assert!(
            msg == want_msg,
            "{}: packed bytes differ",
            what("mask_pack")
        );
        let peer = suf_core::pack::pack(&b, bits);
        let want = be.add(w, &m, &be.reduce(w, &b).unwrap()).unwrap();
        diff(
            &what("unpack_add"),
            &be.unpack_add_many(&[(w, &peer, &m)]).unwrap().remove(0),
            &want,
        );
        diff(
            &what("unpack_add default"),
            &unpack_add(w, &peer, &m).unwrap(),
            &want,
        );
    }

    #[test]
    fn fused_equal_unfused_at_edge_and_large_lengths() {
        for bits in WIDTHS {
            for (i, n) in LENS.into_iter().enumerate() {
                check_all(bits, n, 1000 * bits as u64 + i as u64);
            }
        }
    }

    #[test]
    fn fused_errors_are_typed() {
        let w = BitWidth::new(37).unwrap();
        let be = CpuBackend::new();
        let v = vec![1u64; 4];
        assert!(matches!(
            be.beaver_mul(w, 0, &v, &v[..3], &v, &v, &v),
            Err(BackendError::LengthMismatch { .. })
        ));
        assert!(matches!(
            be.beaver_mul(w, 2, &v, &v, &v, &v, &v),
            Err(BackendError::Gate(_))
        ));
        assert!(matches!(
            be.beaver_mul_rows(w, 0, &v, &v[..2], &v, &v[..1], &v, 2),
            Err(BackendError::LengthMismatch { .. })
        ));
        assert!(be
            .beaver_mul_rows(w, 0, &[], &v, &[], &v, &[], 0)
            .unwrap()
            .is_empty());
        let mut out = Vec::new();
        assert!(be
            .mask_pack_many(&[(w, &v, &v), (w, &v, &v[..1])], &mut out)
            .is_err());
        assert!(out.is_empty(), "nothing appended on a length error");
        // The peer's message: wrong length, and non-zero padding, small and large.
        let p = suf_core::pack::pack(&v, 37);
        assert!(matches!(
            be.unpack_add_many(&[(w, &p, &v), (w, &p[1..], &v)]),
            Err(BackendError::Core(_))
        ));
        let mut bad = p.clone();
        *bad.last_mut().unwrap() |= 0x80;
        assert!(matches!(
            be.unpack_add_many(&[(w, &bad, &v)]),
            Err(BackendError::Core(_))
        ));
        let big = vec![5u64; 2 * PACK_CHUNK + 3];
        let mut p = suf_core::pack::pack(&big, 37);
        *p.last_mut().unwrap() |= 0x80;
        assert!(matches!(
            be.unpack_add_many(&[(w, &p, &big)]),
            Err(BackendError::Core(_))
        ));
        assert!(be.unpack_add_many(&[(w, &p[..p.len() - 1], &big)]).is_err());
    }

    /// A round of many openings (widths 1 to 64, lengths around the chunk and parallel
    /// thresholds, small ones many times over) equals the single calls one after the other:
    /// the same bytes and the same values, and unpacking gives back each opening.
    #[test]
    fn many_openings_equal_single_calls() {
        let mut s = 77u64;
        let lens = [
            0usize,
            1,
            7,
            8,
            9,
            128,
            8192,
            16384,
            2 * PACK_CHUNK + 5,
            3 * PACK_CHUNK,
        ];
        for round in 0..4 {
            let widths: Vec<BitWidth> = (0..lens.len() + 12)
                .map(|i| BitWidth::new([1u32, 13, 37, 50, 63, 64][(i + round) % 6]).unwrap())
                .collect();
            let sizes: Vec<usize> = (0..widths.len())
                .map(|i| {
                    if round == 0 {
                        16
                    } else {
                        lens[(i * 7 + round) % lens.len()]
                    }
                })
                .collect();
            let xs: Vec<Vec<u64>> = sizes.iter().map(|&n| rand_vec(&mut s, n)).collect();
            let rs: Vec<Vec<u64>> = sizes.iter().map(|&n| rand_vec(&mut s, n)).collect();
            let parts: Vec<MaskPart<'_>> = (0..sizes.len())
                .map(|i| (widths[i], &xs[i][..], &rs[i][..]))
                .collect();
            let mut got = vec![1, 2, 3];
            let ms = mask_pack_many(&parts, &mut got).unwrap();
            let mut want = vec![1, 2, 3];
            for (i, p) in parts.iter().enumerate() {
                let m = mask_pack(p.0, p.1, p.2, &mut want).unwrap();
                assert_eq!(ms[i], m, "round {round} opening {i}");
                assert_eq!(
                    m,
                    xs[i]
                        .iter()
                        .zip(&rs[i])
                        .map(|(a, b)| p.0.add(*a, *b))
                        .collect::<Vec<_>>()
                );
            }
            assert!(got == want, "round {round}: packed bytes differ");
            // The peer's side: the same message back, split at the openings.
            let mut pos = 3;
            let zeros: Vec<Vec<u64>> = sizes.iter().map(|&n| vec![0u64; n]).collect();
            let mut up: Vec<UnpackPart<'_>> = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let l = packed_len(sizes[i], p.0.bits());
                up.push((p.0, &got[pos..pos + l], &zeros[i][..]));
                pos += l;
            }
            assert_eq!(pos, got.len());
            let back = unpack_add_many(&up).unwrap();
            assert_eq!(back, ms, "round {round}: unpacked values");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn fused_equal_unfused_prop(bits in 1u32..=64, n in 0usize..200, seed in any::<u64>()) {
            check_all(bits, n, seed);
        }
    }
}
