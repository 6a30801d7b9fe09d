//! DPF comparison throughput: `cargo run -p suf-fss --release --example dpf_bench`.
//!
//! Prints one JSON line: evaluations per second of `DpfKeys::eval_lt_batch` (one party) and key
//! pairs generated per second, median of 5 timed runs after a warm-up, on a local rayon pool of
//! `RAYON_NUM_THREADS` threads (default 1). Optional arguments: `n` (default 50) and the batch
//! size (default 65536).

use std::time::Instant;

use suf_core::prg::Csprng;
use suf_fss::dpf::{gen_cmp_batch, DpfKeys};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1 << 16);
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut rng = Csprng::for_tests(2024);
    let alphas: Vec<u64> = (0..count).map(|_| rng.next_u64() & mask).collect();
    let xs: Vec<u64> = (0..count).map(|_| rng.next_u64() & mask).collect();

    pool.install(|| {
        let (k0, k1) = gen_cmp_batch(n, &alphas, &mut rng).expect("keygen");
        // Correctness check before timing.
        let a = k0.eval_lt_batch(&xs).expect("eval");
        let b = k1.eval_lt_batch(&xs).expect("eval");
        for i in 0..count {
            assert_eq!(a[i] ^ b[i], (xs[i] < alphas[i]) as u8);
        }
        // One key at 4 points each (a packed comparison's shape).
        let t4 = 4;
        let xs4: Vec<u64> = (0..count / t4 * t4).map(|i| xs[i]).collect();
        let k4 = gen_cmp_batch(n, &alphas[..count / t4], &mut rng).expect("keygen").0;
        let _ = k4.eval_lt_multi(&xs4, t4).expect("eval");
        let mut eval_rates = Vec::new();
        let mut multi_rates = Vec::new();
        let mut gen_rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = k0.eval_lt_batch(&xs).expect("eval");
            let dt = t.elapsed().as_secs_f64();
            std::hint::black_box(out);
            eval_rates.push(count as f64 / dt);

            let t = Instant::now();
            let out = k4.eval_lt_multi(&xs4, t4).expect("eval");
            let dt = t.elapsed().as_secs_f64();
            std::hint::black_box(out);
            multi_rates.push(xs4.len() as f64 / dt);

            let t = Instant::now();
            let keys = gen_cmp_batch(n, &alphas, &mut rng).expect("keygen");
            let dt = t.elapsed().as_secs_f64();
            std::hint::black_box(keys);
            gen_rates.push(count as f64 / dt);
        }
        let eval = median(eval_rates);
        let gen = median(gen_rates);
        let multi = median(multi_rates);
        let aes_per_eval = (n - n.min(7) + 1) as f64;
        println!(
            "{{\"dpf_cmp_evals_per_s\": {:.0}, \"n\": {}, \"threads\": {}, \"keygen_per_s\": {:.0}, \"batch\": {}, \"aes_per_eval\": {}, \"aes_per_s\": {:.0}, \"key_bytes_per_key\": {}, \"dpf_cmp_multi4_evals_per_s\": {:.0}}}",
            eval,
            n,
            threads,
            gen,
            count,
            aes_per_eval,
            eval * aes_per_eval,
            DpfKeys::key_bytes_per_key(n),
            multi
        );
    });
}
