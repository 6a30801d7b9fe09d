//! The LayerNorm tail's truncation plan: one truncation where the ring has room for γ√d,
//! the ring bound read off γ, typed errors for a non-finite gain.

use std::collections::BTreeMap;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_nn::layers::{layernorm, merged_gamma_scale, Ctx, Mode};
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::Builder;

#[test]
fn merged_scale_follows_ring_and_gain() {
    let sd = 768f32.sqrt();
    // bert-base: n = 50, s_rs = 23, γ ≈ 1: 47 − 35 − 5 = 7 fractional bits for γ√d.
    assert_eq!(merged_gamma_scale(50, 12, 23, &[sd, -0.5 * sd]), Some(7));
    // A gain twice as large takes one bit more of the ring.
    assert_eq!(merged_gamma_scale(50, 12, 23, &[2.0 * sd]), Some(6));
    // Below the least scale (6) or no room at all: the two-truncation tail.
    assert_eq!(merged_gamma_scale(50, 12, 23, &[4.0 * sd]), None);
    assert_eq!(merged_gamma_scale(37, 12, 22, &[128f32.sqrt()]), None);
    // Capped at f; a gain of magnitude ≤ 1 needs no bits.
    assert_eq!(merged_gamma_scale(64, 12, 20, &[0.9]), Some(12));
    assert_eq!(merged_gamma_scale(50, 12, 23, &[f32::NAN]), None);
}

fn run_ln(n: u32, d: usize, gamma: f32) -> (Vec<f64>, Vec<f64>) {
    let fp = FixedPoint::new(n, 12).unwrap();
    let rows = 4usize;
    let xs: Vec<f32> = (0..rows * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0 + (i / d) as f32)
        .collect();
    let gam: Vec<f32> = (0..d).map(|j| gamma * (1.0 + j as f32 / 200.0)).collect();
    let beta: Vec<f32> = (0..d).map(|j| j as f32 / 100.0 - 0.3).collect();
    let mut g = Builder::new(fp);
    let ctx = Ctx::new(fp, Mode::Public);
    let x = g.input("x", &[rows, d]).unwrap();
    let y = layernorm(&mut g, &ctx, x, &gam, &beta, 1e-12).unwrap();
    g.output(y).unwrap();
    let prog = g.finish();
    let mut inp = BTreeMap::new();
    inp.insert("x".to_string(), ctx.enc(&xs).unwrap());
    let r = run_two_party(
        &prog,
        &CpuBackend::new(),
        &inp,
        &Default::default(),
        Link::Mem,
        &mut Csprng::for_tests(3),
    )
    .unwrap();
    assert!(
        r.matches_plain(),
        "n = {n}, d = {d}: Party differs from Plain"
    );
    let got: Vec<f64> = r.outputs[0].iter().map(|&v| fp.decode(v)).collect();
    let mut want = Vec::new();
    for row in xs.chunks(d) {
        let mu = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / d as f64;
        for (j, &v) in row.iter().enumerate() {
            want.push((v as f64 - mu) / var.sqrt() * gam[j] as f64 + beta[j] as f64);
        }
    }
    (got, want)
}

#[test]
fn both_tails_track_float() {
    // n = 50: one truncation after rsqrt; n = 37: two (no room for γ√d); d = 48 at n = 37:
    // the variance's input through a non-power-of-two divisor d·2^p.
    for (n, d) in [(50, 64), (37, 64), (37, 48)] {
        let (got, want) = run_ln(n, d, 1.3);
        let maxd = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        assert!(
            maxd < 0.02,
            "n = {n}, d = {d}: max |LayerNorm − float| = {maxd}"
        );
    }
}

#[test]
fn non_finite_gain_is_an_error() {
    let fp = FixedPoint::new(50, 12).unwrap();
    let mut g = Builder::new(fp);
    let ctx = Ctx::new(fp, Mode::Public);
    let x = g.input("x", &[2, 8]).unwrap();
    let gam = [f32::INFINITY; 8];
    assert!(layernorm(&mut g, &ctx, x, &gam, &[0.0; 8], 1e-5).is_err());
}

/// The tail's xc·(1/√v) as (xc·g)·y (`rsqrt_factors`): the same ring values as xc·(y·g),
/// bit for bit, Party = Plain, and one round fewer (the product with g runs beside the
/// rsqrt's floor).
#[test]
fn factored_rsqrt_product_is_the_same_value_one_round_sooner() {
    use suf_nn::gates::rsqrt_factors;
    use suf_runtime::plain::run_plain;
    use suf_runtime::sched::Schedule;
    let fp = FixedPoint::new(50, 12).unwrap();
    let (rows, d) = (5usize, 24usize);
    let mut rng = Csprng::for_tests(11);
    // Σxc² at scale 24 in the rsqrt's declared range [1, 2^46], xc at scale 12.
    let xc: Vec<u64> = (0..rows * d)
        .map(|_| {
            fp.width
                .reduce((rng.next_u64() % (1 << 22)).wrapping_sub(1 << 21))
        })
        .collect();
    let v: Vec<u64> = (0..rows)
        .map(|i| 1 + (rng.next_u64() >> (20 + 4 * i as u32)))
        .collect();
    let build = |factored: bool| {
        let mut g = Builder::new(fp);
        let x = g.input("xc", &[rows, d]).unwrap();
        let s = g.input("v", &[rows, 1]).unwrap();
        let (y, gf, _) = rsqrt_factors(&mut g, s, 24, 1, 1 << 46, 23).unwrap();
        let out = if factored {
            let xg = g.row_mul(x, gf).unwrap();
            g.row_mul(xg, y).unwrap()
        } else {
            let rs = g.mul(y, gf).unwrap();
            g.row_mul(x, rs).unwrap()
        };
        g.output(out).unwrap();
        g.finish()
    };
    let mut inp = BTreeMap::new();
    inp.insert("xc".to_string(), xc);
    inp.insert("v".to_string(), v);
    let (a, b) = (build(true), build(false));
    let pa = run_plain(&a, &CpuBackend::new(), &inp, &Default::default()).unwrap();
    let pb = run_plain(&b, &CpuBackend::new(), &inp, &Default::default()).unwrap();
    assert_eq!(pa, pb, "(xc·g)·y must equal xc·(y·g) in the ring");
    assert!(pa[0].iter().any(|&x| x != 0), "a non-trivial product");
    assert_eq!(
        Schedule::of(&a).rounds() + 1,
        Schedule::of(&b).rounds(),
        "one round fewer"
    );
    let r = run_two_party(
        &a,
        &CpuBackend::new(),
        &inp,
        &Default::default(),
        Link::Mem,
        &mut Csprng::for_tests(5),
    )
    .unwrap();
    assert!(r.matches_plain(), "Party differs from Plain");
    assert_eq!(r.outputs, pa);
}
