//! Ring GEMM throughput of the CPU backend: C = A·B over Z_{2^64}, 512×512×512, on a
//! rayon pool of 2 threads (override with `SUF_THREADS`); median of 5 runs after one
//! warm-up. Prints one JSON object.
//!
//! `gemm_u64_gops` = 2·m·k·n / median seconds / 1e9: each multiply-add counts as two
//! operations (the usual GEMM convention, with 64-bit ring operations for flops).
//!
//! With `SUF_BENCH_BASELINE=1` it also times the naive single-thread i-k-j loop and adds
//! `"ikj_ms"` to the object.
//!
//! Run: `cargo run -p suf-backend --release --example gemm_bench`.

fn main() {
    let threads: usize = std::env::var("SUF_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let (m, k, n, runs) = (512, 512, 512, 5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let ms = pool.install(|| suf_backend::bench_gemm(m, k, n, runs));
    let gops = suf_backend::bench::gemm_gops(m, k, n, ms);
    let baseline = if std::env::var_os("SUF_BENCH_BASELINE").is_some_and(|v| v == "1") {
        let ikj = suf_backend::bench::bench_gemm_naive(m, k, n, runs);
        format!(",\"ikj_ms\":{ikj:.3}")
    } else {
        String::new()
    };
    println!(
        "{{\"gemm_u64_gops\":{gops:.3},\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{},\"ms\":{ms:.3}{baseline}}}",
        pool.current_num_threads()
    );
}
