//! `suf bench fss` and `suf bench runtime`: medians of several runs after a warm-up.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::Builder;
use suf_runtime::plain::PlainWeights;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_ms<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?)
}

/// FSS primitive throughput on one thread.
pub fn fss(json: bool) -> Result<()> {
    let p1 = pool(1)?;
    let mut rng = Csprng::for_tests(1);
    let count = 1 << 16;
    let n = 50;
    let w = suf_core::BitWidth::new(n)?;
    let alphas = rng.ring_vec(w, count);
    let xs = rng.ring_vec(w, count);
    let (k0, _) = suf_fss::dpf::gen_cmp_batch(n, &alphas, &mut rng)?;
    let dpf_ms = p1.install(|| {
        time_ms(5, || {
            let _ = k0.eval_lt_batch(&xs);
        })
    });
    let w64 = suf_core::BitWidth::W64;
    let a64 = rng.ring_vec(w64, count);
    let x64 = rng.ring_vec(w64, count);
    let b64 = rng.ring_vec(w64, count);
    let (d0, _) = suf_fss::dcf::gen_batch(64, 64, 1, &a64, &b64, &mut rng)?;
    let dcf_ms = p1.install(|| {
        time_ms(5, || {
            let _ = d0.eval_batch(&x64);
        })
    });
    let gen_ms = p1.install(|| {
        time_ms(3, || {
            let mut r = Csprng::for_tests(2);
            let _ = suf_fss::dpf::gen_cmp_batch(n, &alphas, &mut r);
        })
    });
    let v = serde_json::json!({
        "threads": 1,
        "batch": count,
        "dpf_cmp_n": n,
        "dpf_cmp_evals_per_s": count as f64 / dpf_ms * 1e3,
        "dpf_cmp_keygen_per_s": count as f64 / gen_ms * 1e3,
        "dpf_cmp_key_bytes": suf_fss::dpf::DpfKeys::key_bytes_per_key(n),
        "dcf_n": 64, "dcf_payload_bits": 64,
        "dcf_u64_evals_per_s": count as f64 / dcf_ms * 1e3,
        "dcf_u64_key_bytes": suf_fss::dcf::DcfKeys::key_bytes_per_key(64, 64, 1),
    });
    if json {
        println!("{v}");
    } else {
        print!("{}", crate::output::human(&v));
    }
    Ok(())
}

/// Runtime figures: GEMM, loopback round trip, 1M-element opening, 1M Beaver products.
pub fn runtime(json: bool) -> Result<()> {
    let p2 = pool(2)?;
    let gemm_ms = p2.install(|| suf_backend::bench::bench_gemm(512, 512, 512, 5));
    let rt = suf_net::bench::round_trip_us(2000)?;
    let open = suf_net::bench::open_1m_ms(5)?;
    // 1M-element Beaver product: two parties over loopback TCP, online time of the slower.
    let fp = FixedPoint::new(50, 12)?;
    let mut g = Builder::new(fp);
    let count = 1 << 20;
    let x = g.input("x", &[count])?;
    let y = g.input("y", &[count])?;
    let z = g.mul(x, y)?;
    g.output(z)?;
    let prog = g.finish();
    let mut rng = Csprng::for_tests(3);
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), rng.ring_vec(fp.width, count));
    inputs.insert("y".to_string(), rng.ring_vec(fp.width, count));
    let be = CpuBackend::new();
    let mut samples = Vec::new();
    let mut ok = true;
    for i in 0..4 {
        let r = run_two_party(
            &prog,
            &be,
            &inputs,
            &PlainWeights::new(),
            Link::Tcp,
            &mut rng,
        )?;
        ok &= r.matches_plain();
        if i > 0 {
            samples.push(r.reports[0].online_ms.max(r.reports[1].online_ms));
        }
    }
    let v = serde_json::json!({
        "gemm_u64_gops": suf_backend::bench::gemm_gops(512, 512, 512, gemm_ms),
        "gemm_512_ms": gemm_ms,
        "gemm_threads": 2,
        "round_trip_us": rt,
        "open_1m_ms": open,
        "beaver_mul_1m_ms": median(samples),
        "beaver_matches_plain": ok,
    });
    if json {
        println!("{v}");
    } else {
        print!("{}", crate::output::human(&v));
    }
    Ok(())
}
