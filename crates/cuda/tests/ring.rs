//! GPU ring kernels (GEMM, elementwise, row sums) against the CPU reference, bit for bit.
//! Skips (passes with a note) without a GPU.

mod common;

use common::{gpu, Rng, WIDTHS};
use suf_backend::{BLayout, Backend, BitWidth, CpuBackend};

#[test]
fn gemm_bit_exact() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng(10);
    let shapes = [
        (1usize, 1usize, 1usize, 1usize),
        (1, 0, 5, 3),
        (1, 3, 0, 2),
        (1, 4, 5, 0),
        (1, 3, 5, 7),
        (3, 17, 33, 9),
        (1, 64, 64, 64),
        (2, 65, 17, 129),
        (1, 130, 3, 1),
        (1, 1, 1000, 1),
        (1, 200, 257, 131),
        (5, 31, 16, 63),
        (3, 40, 600, 70),
        (1, 100, 4096, 3),
    ];
    for bits in WIDTHS {
        let w = BitWidth::new(bits).unwrap();
        for &(batch, m, k, n) in &shapes {
            // Unreduced inputs: the result must still be the CPU's (both compute mod 2^64).
            let a = rng.vec(batch * m * k);
            let b = rng.vec(batch * k * n);
            for (layout, b2) in [
                (BLayout::RowMajor, false),
                (BLayout::Transposed, false),
                (BLayout::RowMajor, true),
                (BLayout::Transposed, true),
            ] {
                be.set_gemm_two_blocks_per_sm(b2);
                let want = cpu.gemm_batch(w, &a, &b, batch, m, k, n, layout).unwrap();
                let got = be.gemm_batch(w, &a, &b, batch, m, k, n, layout).unwrap();
                assert_eq!(got, want, "n={bits} {batch}×{m}×{k}×{n} {layout:?} b2={b2}");
                let again = be
                    .try_gemm_batch(w, &a, &b, batch, m, k, n, layout)
                    .unwrap_or_else(|e| {
                        if m * n * batch == 0 || k == 0 {
                            want.clone()
                        } else {
                            panic!("{e}")
                        }
                    });
                assert_eq!(again, want);
            }
        }
    }
    be.set_gemm_two_blocks_per_sm(false);
    // Length errors are the CPU backend's.
    let w = BitWidth::new(50).unwrap();
    let a = rng.vec(12);
    let b = rng.vec(11);
    assert_eq!(
        be.gemm(w, &a, &b, 3, 4, 3).unwrap_err(),
        cpu.gemm(w, &a, &b, 3, 4, 3).unwrap_err()
    );
}

#[test]
fn elementwise_bit_exact() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng(11);
    for bits in WIDTHS {
        let w = BitWidth::new(bits).unwrap();
        for len in [0usize, 1, 7, 1000, 100_003] {
            let a = rng.vec(len);
            let b = rng.vec(len);
            let c = rng.next();
            assert_eq!(be.add(w, &a, &b).unwrap(), cpu.add(w, &a, &b).unwrap());
            assert_eq!(be.sub(w, &a, &b).unwrap(), cpu.sub(w, &a, &b).unwrap());
            assert_eq!(be.mul(w, &a, &b).unwrap(), cpu.mul(w, &a, &b).unwrap());
            assert_eq!(be.neg(w, &a).unwrap(), cpu.neg(w, &a).unwrap());
            assert_eq!(be.scale(w, &a, c).unwrap(), cpu.scale(w, &a, c).unwrap());
            assert_eq!(
                be.add_const(w, &a, c).unwrap(),
                cpu.add_const(w, &a, c).unwrap()
            );
            assert_eq!(be.reduce(w, &a).unwrap(), cpu.reduce(w, &a).unwrap());
            for op in 0..3 {
                let (mut x, mut y) = (a.clone(), a.clone());
                match op {
                    0 => {
                        be.add_assign(w, &mut x, &b).unwrap();
                        cpu.add_assign(w, &mut y, &b).unwrap();
                    }
                    1 => {
                        be.sub_assign(w, &mut x, &b).unwrap();
                        cpu.sub_assign(w, &mut y, &b).unwrap();
                    }
                    _ => {
                        be.mul_assign(w, &mut x, &b).unwrap();
                        cpu.mul_assign(w, &mut y, &b).unwrap();
                    }
                }
                assert_eq!(x, y, "assign op {op} n={bits} len={len}");
            }
            // Broadcast / per-row forms over a [rows, cols] view.
            for cols in [1usize, 7, 64, 1000] {
                if cols == 0 || len % cols != 0 {
                    continue;
                }
                let row = rng.vec(cols);
                let per_row = rng.vec(len / cols);
                assert_eq!(
                    be.add_bcast(w, &a, &row).unwrap(),
                    cpu.add_bcast(w, &a, &row).unwrap()
                );
                assert_eq!(
                    be.mul_bcast(w, &a, &row).unwrap(),
                    cpu.mul_bcast(w, &a, &row).unwrap()
                );
                assert_eq!(
                    be.mul_rows(w, &a, &per_row, cols).unwrap(),
                    cpu.mul_rows(w, &a, &per_row, cols).unwrap()
                );
                assert_eq!(
                    be.row_sum(w, &a, cols).unwrap(),
                    cpu.row_sum(w, &a, cols).unwrap(),
                    "row_sum n={bits} len={len} cols={cols}"
                );
            }
        }
    }
    // Errors are the CPU backend's.
    let w = BitWidth::new(37).unwrap();
    let a = rng.vec(10);
    let b = rng.vec(9);
    assert_eq!(
        be.add(w, &a, &b).unwrap_err(),
        cpu.add(w, &a, &b).unwrap_err()
    );
    let mut x = a.clone();
    assert_eq!(
        be.add_assign(w, &mut x, &b).unwrap_err(),
        cpu.add_assign(w, &mut a.clone(), &b).unwrap_err()
    );
    assert_eq!(x, a, "a failed assign leaves a unchanged");
    assert_eq!(
        be.add_bcast(w, &a, &b[..3]).unwrap_err(),
        cpu.add_bcast(w, &a, &b[..3]).unwrap_err()
    );
    assert_eq!(
        be.row_sum(w, &a, 3).unwrap_err(),
        cpu.row_sum(w, &a, 3).unwrap_err()
    );
    assert_eq!(
        be.mul_rows(w, &a, &b, 3).unwrap_err(),
        cpu.mul_rows(w, &a, &b, 3).unwrap_err()
    );
    // Packing is the CPU's.
    let v = rng.vec(1001);
    assert_eq!(be.pack(&v, 37).unwrap(), cpu.pack(&v, 37).unwrap());
}

/// A machine without a GPU: `CudaBackend::new` is an error, never a panic.
#[test]
fn new_is_an_error_without_gpu() {
    if suf_cuda::cuda_available() {
        eprintln!("GPU present: the no-GPU path is not exercised here");
        return;
    }
    let e = suf_cuda::CudaBackend::new().unwrap_err();
    eprintln!("CudaBackend::new() without a GPU: {e}");
}
