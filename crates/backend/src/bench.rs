//! GEMM timing, shared by `examples/gemm_bench.rs` and `suf bench runtime`.
//!
//! Throughput convention: a product of an m×k by a k×n matrix is counted as `2·m·k·n`
//! operations (each multiply-add counts as two), so
//! `gops = 2·m·k·n / seconds / 1e9` — the usual GEMM convention, with 64-bit ring operations
//! in place of flops.

use std::time::Instant;

use crate::cpu::CpuBackend;
use crate::gemm::{gemm_naive, BLayout};
use crate::Backend;

/// Median wall time in milliseconds of `runs` (at least 1) products of random m×k and k×n
/// matrices over Z_{2^64} on the CPU backend, after one untimed warm-up run. Runs in the
/// caller's rayon pool: wrap the call in `ThreadPool::install` to choose the thread count.
///
/// # Panics
/// If the shapes overflow memory (a caller bug).
pub fn bench_gemm(m: usize, k: usize, n: usize, runs: usize) -> f64 {
    let (a, b) = inputs(m, k, n);
    let be = CpuBackend::new();
    median_ms(runs, || be.gemm(suf_core::BitWidth::W64, &a, &b, m, k, n))
}

/// Like [`bench_gemm`] but timing the naive i-k-j triple loop ([`gemm_naive`], always one
/// thread): the baseline the blocked kernel is compared against.
///
/// # Panics
/// If the shapes overflow memory (a caller bug).
pub fn bench_gemm_naive(m: usize, k: usize, n: usize, runs: usize) -> f64 {
    let (a, b) = inputs(m, k, n);
    median_ms(runs, || {
        gemm_naive(suf_core::BitWidth::W64, &a, &b, m, k, n, BLayout::RowMajor)
    })
}

/// GEMM throughput in 10^9 operations per second for a time of `ms` milliseconds, counting a
/// multiply-add as two operations.
pub fn gemm_gops(m: usize, k: usize, n: usize, ms: f64) -> f64 {
    2.0 * m as f64 * k as f64 * n as f64 / (ms * 1e-3) / 1e9
}

fn inputs(m: usize, k: usize, n: usize) -> (Vec<u64>, Vec<u64>) {
    let mut seed = 0x5EED_u64;
    let a = (0..m * k).map(|_| splitmix(&mut seed)).collect();
    let b = (0..k * n).map(|_| splitmix(&mut seed)).collect();
    (a, b)
}

/// One warm-up call, then the median of `runs` timed calls.
fn median_ms(runs: usize, f: impl Fn() -> crate::Result<Vec<u64>>) -> f64 {
    let once = || {
        let t = Instant::now();
        let c = f().expect("shapes are consistent");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(c);
        ms
    };
    once();
    let mut ts: Vec<f64> = (0..runs.max(1)).map(|_| once()).collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// SplitMix64 step (benchmark data only; not a CSPRNG).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
