//! Elementwise ring kernels and bit packing of the CPU backend against scalar definitions.

use proptest::prelude::*;
use suf_backend::{Backend, BackendError, BitWidth, CpuBackend};

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random(len: usize, seed: &mut u64) -> Vec<u64> {
    (0..len).map(|_| splitmix(seed)).collect()
}

/// Sizes on both sides of the serial/parallel threshold.
const LENS: [usize; 5] = [0, 1, 1000, 1 << 15, (1 << 16) + 3];

#[test]
fn binary_ops() {
    let be = CpuBackend::with_threads(2).unwrap();
    let mut seed = 5;
    for len in LENS {
        let a = random(len, &mut seed);
        let b = random(len, &mut seed);
        for bits in [1, 37, 64] {
            let w = BitWidth::new(bits).unwrap();
            let each = |f: fn(BitWidth, u64, u64) -> u64| -> Vec<u64> {
                a.iter().zip(&b).map(|(&x, &y)| f(w, x, y)).collect()
            };
            let add = each(BitWidth::add);
            let sub = each(BitWidth::sub);
            let mul = each(BitWidth::mul);
            assert_eq!(be.add(w, &a, &b).unwrap(), add);
            assert_eq!(be.sub(w, &a, &b).unwrap(), sub);
            assert_eq!(be.mul(w, &a, &b).unwrap(), mul);
            let mut x = a.clone();
            be.add_assign(w, &mut x, &b).unwrap();
            assert_eq!(x, add);
            let mut x = a.clone();
            be.sub_assign(w, &mut x, &b).unwrap();
            assert_eq!(x, sub);
            let mut x = a.clone();
            be.mul_assign(w, &mut x, &b).unwrap();
            assert_eq!(x, mul);
            let c = 0xDEAD_BEEF_1234_5678;
            let map = |f: &dyn Fn(u64) -> u64| a.iter().map(|&x| f(x)).collect::<Vec<_>>();
            assert_eq!(be.neg(w, &a).unwrap(), map(&|x| w.neg(x)));
            assert_eq!(be.scale(w, &a, c).unwrap(), map(&|x| w.mul(x, c)));
            assert_eq!(be.add_const(w, &a, c).unwrap(), map(&|x| w.add(x, c)));
            assert_eq!(be.reduce(w, &a).unwrap(), map(&|x| w.reduce(x)));
        }
    }
}

#[test]
fn binary_length_mismatch() {
    let be = CpuBackend::new();
    let w = BitWidth::W64;
    let a = vec![1u64; 4];
    let b = vec![1u64; 3];
    for r in [be.add(w, &a, &b), be.sub(w, &a, &b), be.mul(w, &a, &b)] {
        assert!(matches!(
            r.unwrap_err(),
            BackendError::LengthMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ));
    }
    let mut x = a.clone();
    assert!(be.add_assign(w, &mut x, &b).is_err());
    assert!(be.sub_assign(w, &mut x, &b).is_err());
    assert!(be.mul_assign(w, &mut x, &b).is_err());
    assert_eq!(x, a, "a failed assign leaves the target unchanged");
}

#[test]
fn pack_matches_core_and_round_trips() {
    let be = CpuBackend::with_threads(2).unwrap();
    let mut seed = 11;
    for len in [0, 1, 7, 9, 1 << 14, (1 << 15) + 5, 100_003] {
        let vals = random(len, &mut seed);
        for bits in [1, 3, 8, 13, 37, 63, 64] {
            let packed = be.pack(&vals, bits).unwrap();
            assert_eq!(
                packed,
                suf_core::pack::pack(&vals, bits),
                "len {len} bits {bits}"
            );
            let back = be.unpack(&packed, bits, len).unwrap();
            let mask = BitWidth::new(bits).unwrap().mask();
            assert!(back.iter().zip(&vals).all(|(&u, &v)| u == v & mask));
            if len > 0 {
                // Wrong length and non-zero padding are reported like suf-core does.
                let short = &packed[..packed.len() - 1];
                assert!(matches!(
                    be.unpack(short, bits, len).unwrap_err(),
                    BackendError::Core(suf_core::CoreError::PackedLength { .. })
                ));
                if !(len * bits as usize).is_multiple_of(8) {
                    let mut bad = packed.clone();
                    *bad.last_mut().unwrap() |= 0x80;
                    assert!(be.unpack(&bad, bits, len).is_err());
                }
            }
        }
    }
}

#[test]
fn pack_rejects_bad_widths() {
    let be = CpuBackend::new();
    for bits in [0, 65] {
        assert!(matches!(
            be.pack(&[1, 2], bits).unwrap_err(),
            BackendError::Core(suf_core::CoreError::BadBitWidth(_))
        ));
        assert!(be.unpack(&[0], bits, 1).is_err());
    }
}

proptest! {
    #[test]
    fn pack_round_trip(vals in proptest::collection::vec(any::<u64>(), 0..200), bits in 1u32..=64) {
        let be = CpuBackend::new();
        let p = be.pack(&vals, bits).unwrap();
        let back = be.unpack(&p, bits, vals.len()).unwrap();
        let mask = BitWidth::new(bits).unwrap().mask();
        prop_assert!(back.iter().zip(&vals).all(|(&u, &v)| u == v & mask));
    }
}

#[test]
fn broadcast_and_row_ops() {
    let be = CpuBackend::with_threads(2).unwrap();
    let mut seed = 17;
    for (rows, cols) in [
        (0, 3),
        (1, 1),
        (3, 5),
        (7, 1),
        (1, 9),
        (300, 257),
        (70_000, 1),
    ] {
        let a = random(rows * cols, &mut seed);
        let row = random(cols, &mut seed);
        let per_row = random(rows, &mut seed);
        for bits in [1, 37, 64] {
            let w = BitWidth::new(bits).unwrap();
            let at = |i: usize, j: usize| a[i * cols + j];
            let want_add: Vec<u64> = (0..rows * cols)
                .map(|e| w.add(at(e / cols, e % cols), row[e % cols]))
                .collect();
            let want_mul: Vec<u64> = (0..rows * cols)
                .map(|e| w.mul(at(e / cols, e % cols), row[e % cols]))
                .collect();
            let want_rows: Vec<u64> = (0..rows * cols)
                .map(|e| w.mul(at(e / cols, e % cols), per_row[e / cols]))
                .collect();
            let want_sum: Vec<u64> = (0..rows)
                .map(|i| (0..cols).fold(0, |s, j| w.add(s, at(i, j))))
                .collect();
            assert_eq!(be.add_bcast(w, &a, &row).unwrap(), want_add);
            assert_eq!(be.mul_bcast(w, &a, &row).unwrap(), want_mul);
            assert_eq!(be.mul_rows(w, &a, &per_row, cols).unwrap(), want_rows);
            assert_eq!(be.row_sum(w, &a, cols).unwrap(), want_sum);
            // A full-size operand is the plain elementwise op.
            let b = random(a.len(), &mut seed);
            assert_eq!(be.add_bcast(w, &a, &b).unwrap(), be.add(w, &a, &b).unwrap());
            assert_eq!(be.mul_bcast(w, &a, &b).unwrap(), be.mul(w, &a, &b).unwrap());
        }
    }
    let w = BitWidth::W64;
    assert!(be.add_bcast(w, &[1, 2, 3], &[1, 2]).is_err());
    assert!(be.mul_bcast(w, &[1, 2, 3], &[]).is_err());
    assert!(be.add_bcast(w, &[], &[]).unwrap().is_empty());
    assert!(be.mul_rows(w, &[1, 2, 3], &[1, 2], 2).is_err());
    assert!(be.row_sum(w, &[1, 2, 3], 2).is_err());
    assert!(be.row_sum(w, &[1, 2, 3], 0).is_err());
    assert!(be.row_sum(w, &[], 0).unwrap().is_empty());
}
