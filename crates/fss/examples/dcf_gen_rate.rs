//! Rate of seeded DCF batch generation on the CPU (the dealer's largest task), for the
//! parameter shapes of the transformer gates: `cargo run --release -p suf-fss --example
//! dcf_gen_rate [COUNT]`. Prints, per shape, the median of 5 timed batches and a checksum of
//! both key files (which must not change when the generator is made faster).

use std::time::Instant;

use suf_fss::dealer::dcf_gen_cpu;
use suf_fss::keyfmt::checksum;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(65536);
    // (n, m, p): ARS/GapARS (37-bit ring, 1 word), a 24-bit spline input with a degree-3
    // payload, a 50-bit ring comparison, a 12-bit carry.
    for (n, m, p) in [
        (37, 37, 1),
        (24, 37, 4),
        (50, 50, 2),
        (12, 37, 1),
        (34, 50, 3),
    ] {
        let mask = (1u64 << n) - 1;
        let alphas: Vec<u64> = (0..count as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask)
            .collect();
        let betas: Vec<u64> = (0..(count * p) as u64)
            .map(|i| i.wrapping_mul(0xD1B5_4A32_D192_ED03))
            .collect();
        let mut ts = Vec::new();
        let mut sum = [0u64; 2];
        for _ in 0..5 {
            let t = Instant::now();
            let (k0, k1) = dcf_gen_cpu(n, m, p, &alphas, &betas, [5; 16]).expect("valid shape");
            let (b0, b1) = (k0.to_bytes(), k1.to_bytes());
            ts.push(t.elapsed().as_secs_f64() * 1e3);
            sum = [checksum(&b0), checksum(&b1)];
        }
        ts.sort_by(f64::total_cmp);
        let ms = ts[ts.len() / 2];
        println!(
            "n={n:2} m={m:2} p={p}: {count} keys in {ms:7.1} ms ({:5.0} ns/key/level) sums {:016x} {:016x}",
            ms * 1e6 / (count as f64 * f64::from(n)),
            sum[0],
            sum[1]
        );
    }
}
