//! DCF evaluation throughput: `cargo run -p suf-fss --release --example dcf_bench`.
//!
//! Prints one JSON line. The headline `dcf_u64_evals_per_s` is `DcfKeys::eval_batch` of one
//! party at n = 64, m = 64, p = 1 on a rayon pool of `threads` threads (default 1; override
//! with `RAYON_NUM_THREADS`), median of 5 timed runs after a warm-up. Also reported: AES calls
//! per evaluation and the implied AES blocks/s, key pairs generated per second, and the same
//! evaluation rate for a vector payload (n = m = 50, p = 3, the degree-2 interval payload).
//! Optional argument: the batch size (default 131072).

use std::time::Instant;

use suf_core::prg::Csprng;
use suf_fss::dcf::{aes_per_eval, gen_batch, DcfKeys};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (evaluations/s, key pairs/s) for one parameter set.
fn measure(n: u32, m: u32, p: usize, count: usize) -> (f64, f64, DcfKeys<'static>) {
    let mut rng = Csprng::for_tests(7);
    let dom = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let alphas: Vec<u64> = (0..count).map(|_| rng.next_u64() & dom).collect();
    let betas: Vec<u64> = (0..count * p).map(|_| rng.next_u64()).collect();
    let xs: Vec<u64> = (0..count).map(|_| rng.next_u64() & dom).collect();
    let mut gen_times = Vec::new();
    let mut keys = None;
    for _ in 0..3 {
        let t = Instant::now();
        let k = gen_batch(n, m, p, &alphas, &betas, &mut rng).expect("gen");
        gen_times.push(t.elapsed().as_secs_f64());
        keys = Some(k.0);
    }
    let k0 = keys.expect("keys");
    let mut out = vec![0u64; count * p];
    k0.eval_multi_into(&xs, 1, &mut out).expect("warm-up");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        k0.eval_multi_into(&xs, 1, &mut out).expect("eval");
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&out);
    }
    (
        count as f64 / median(times),
        count as f64 / median(gen_times),
        k0,
    )
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 17);
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    let (evals, gens, _) = pool.install(|| measure(64, 64, 1, count));
    let (evals_v, _, _) = pool.install(|| measure(50, 50, 3, count / 2));
    let aes = aes_per_eval(64, 64, 1);
    let aes_v = aes_per_eval(50, 50, 3);
    println!(
        "{{\"dcf_u64_evals_per_s\":{evals:.0},\"n\":64,\"m\":64,\"p\":1,\"threads\":{threads},\
         \"count\":{count},\"aes_per_eval\":{aes},\"aes_blocks_per_s\":{:.0},\
         \"gen_pairs_per_s\":{gens:.0},\"key_bytes_per_key\":{},\
         \"vec_n50_m50_p3_evals_per_s\":{evals_v:.0},\"vec_aes_per_eval\":{aes_v},\
         \"runs\":5,\"stat\":\"median\"}}",
        evals * aes as f64,
        DcfKeys::key_bytes_per_key(64, 64, 1),
    );
}
