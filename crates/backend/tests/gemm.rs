//! The CPU ring GEMM against the naive triple loop.

use proptest::prelude::*;
use suf_backend::gemm::gemm_naive;
use suf_backend::{BLayout, Backend, BackendError, BitWidth, CpuBackend};

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

fn transpose(b: &[u64], k: usize, n: usize) -> Vec<u64> {
    let mut t = vec![0u64; k * n];
    for p in 0..k {
        for j in 0..n {
            t[j * k + p] = b[p * n + j];
        }
    }
    t
}

const WIDTHS: [u32; 4] = [1, 37, 50, 64];

fn check(be: &CpuBackend, m: usize, k: usize, n: usize, seed: &mut u64) {
    let a = random(m * k, seed);
    let b = random(k * n, seed);
    let bt = transpose(&b, k, n);
    for bits in WIDTHS {
        let w = BitWidth::new(bits).unwrap();
        let want = gemm_naive(w, &a, &b, m, k, n, BLayout::RowMajor).unwrap();
        assert!(want.iter().all(|&v| v <= w.mask()));
        let got = be.gemm(w, &a, &b, m, k, n).unwrap();
        assert_eq!(got, want, "gemm {m}×{k}×{n} n={bits}");
        let got_t = be.gemm_bt(w, &a, &bt, m, k, n).unwrap();
        assert_eq!(got_t, want, "gemm_bt {m}×{k}×{n} n={bits}");
        // Reduced inputs give the same answer as unreduced ones.
        let ar = be.reduce(w, &a).unwrap();
        let br = be.reduce(w, &b).unwrap();
        assert_eq!(be.gemm(w, &ar, &br, m, k, n).unwrap(), want);
    }
}

#[test]
fn fixed_shapes() {
    let be = CpuBackend::new();
    let mut seed = 1;
    for &(m, k, n) in &[
        (1, 1, 1),
        (0, 0, 0),
        (0, 5, 3),
        (4, 0, 3),
        (4, 5, 0),
        (1, 2, 1),
        (2, 1, 2),
        (3, 17, 5),
        (5, 3, 17),
        (17, 5, 3),
        (65, 33, 129),
        (1, 768, 300),
        (130, 257, 66),
        (64, 256, 64),
        (200, 513, 9),
    ] {
        check(&be, m, k, n, &mut seed);
    }
}

#[test]
fn k_zero_gives_zeros() {
    let be = CpuBackend::new();
    let c = be.gemm(BitWidth::W64, &[], &[], 3, 0, 4).unwrap();
    assert_eq!(c, vec![0; 12]);
    assert!(be
        .gemm(BitWidth::W64, &[], &[], 0, 0, 0)
        .unwrap()
        .is_empty());
}

#[test]
fn threads_do_not_change_the_result() {
    let mut seed = 9;
    let (m, k, n) = (97, 301, 203);
    let a = random(m * k, &mut seed);
    let b = random(k * n, &mut seed);
    let w = BitWidth::new(50).unwrap();
    let want = gemm_naive(w, &a, &b, m, k, n, BLayout::RowMajor).unwrap();
    for t in [1, 2, 3, 8] {
        let be = CpuBackend::with_threads(t).unwrap();
        assert_eq!(be.threads(), t);
        assert_eq!(be.gemm(w, &a, &b, m, k, n).unwrap(), want, "threads={t}");
    }
}

#[test]
fn batched_matches_single() {
    let be = CpuBackend::new();
    let mut seed = 3;
    let (batch, m, k, n) = (5, 7, 33, 9);
    let a = random(batch * m * k, &mut seed);
    let b = random(batch * k * n, &mut seed);
    let w = BitWidth::new(37).unwrap();
    for layout in [BLayout::RowMajor, BLayout::Transposed] {
        let c = be.gemm_batch(w, &a, &b, batch, m, k, n, layout).unwrap();
        assert_eq!(c.len(), batch * m * n);
        for t in 0..batch {
            let want = gemm_naive(
                w,
                &a[t * m * k..(t + 1) * m * k],
                &b[t * k * n..(t + 1) * k * n],
                m,
                k,
                n,
                layout,
            )
            .unwrap();
            assert_eq!(&c[t * m * n..(t + 1) * m * n], &want[..]);
        }
    }
    assert!(be
        .gemm_batch(w, &[], &[], 0, m, k, n, BLayout::RowMajor)
        .unwrap()
        .is_empty());
}

#[test]
fn length_mismatch_is_an_error() {
    let be = CpuBackend::new();
    let w = BitWidth::W64;
    let e = be.gemm(w, &[0; 5], &[0; 6], 2, 3, 2).unwrap_err();
    assert!(matches!(
        e,
        BackendError::LengthMismatch {
            expected: 6,
            got: 5,
            ..
        }
    ));
    assert!(matches!(
        be.gemm_bt(w, &[0; 6], &[0; 7], 2, 3, 2).unwrap_err(),
        BackendError::LengthMismatch {
            expected: 6,
            got: 7,
            ..
        }
    ));
    assert!(matches!(
        be.gemm_batch(w, &[0; 6], &[0; 6], 2, 1, 3, 2, BLayout::RowMajor)
            .unwrap_err(),
        BackendError::LengthMismatch { .. }
    ));
    assert!(matches!(
        be.gemm(w, &[], &[], usize::MAX, 2, 1).unwrap_err(),
        BackendError::ShapeOverflow { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_shapes(m in 0usize..40, k in 0usize..300, n in 0usize..80, seed: u64) {
        let be = CpuBackend::new();
        let mut s = seed;
        check(&be, m, k, n, &mut s);
    }
}

#[test]
fn usable_as_trait_object() {
    let be: std::sync::Arc<dyn Backend> = std::sync::Arc::new(CpuBackend::new());
    assert_eq!(be.name(), "cpu");
    let w = BitWidth::new(8).unwrap();
    // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; mod 2^8 unchanged.
    let c = be.gemm(w, &[1, 2, 3, 4], &[5, 6, 7, 8], 2, 2, 2).unwrap();
    assert_eq!(c, vec![19, 22, 43, 50]);
    let c = be
        .gemm_bt(w, &[1, 2, 3, 4], &[5, 7, 6, 8], 2, 2, 2)
        .unwrap();
    assert_eq!(c, vec![19, 22, 43, 50]);
    let c = be.gemm(w, &[16], &[16], 1, 1, 1).unwrap();
    assert_eq!(c, vec![0], "256 mod 2^8");
}
