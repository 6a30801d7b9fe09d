//! The fitter's reported error is checked independently: recomputed from its pieces over
//! every integer, recomputed from the compiled `PolySpec` (the modular arithmetic the
//! protocol evaluates), and through the two-party protocol on samples; plus the fitter on
//! plain polynomials (exact), on clipped functions and on impossible budgets (typed error).

use suf_backend::CpuBackend;
use suf_compiler::fit::{fit, max_error, Center, FitRequest};
use suf_compiler::gates::{smooth_specs, Smooth};
use suf_compiler::spec::{mask, View};
use suf_compiler::{run_direct, CompilerError, Component, GateSpec, Part};
use suf_core::prg::Csprng;
use suf_core::BitWidth;

#[test]
fn smooth_fits_reported_error_is_exact() {
    let (n, f) = (50u32, 12u32);
    let w = BitWidth::new(n).unwrap();
    for kind in Smooth::ALL {
        let sp = smooth_specs(kind, n, f, false).unwrap();
        let fit = &sp.fit;
        let (lo, hi) = (fit.pieces[0].lo, fit.pieces.last().unwrap().hi);
        let func = kind.func();
        let cutoff = |x: f64| {
            if kind == Smooth::NExp && x >= 9.125 {
                0.0
            } else {
                func(x)
            }
        };
        // The fit holds Q + 2^{t−1} (rounding offset): remove it for the comparison.
        let off = (1i128 << (sp.t - 1)) as f64;
        let inv = (-(f as f64)).exp2();
        let sc = ((f + sp.t) as f64).exp2();
        let mut worst = 0f64;
        let mut worst_spec = 0f64;
        // The spec's fine component: v = 2Q' on view (offset, kf) in ring k2.
        let fine = match &sp.gate1.parts[1].comp {
            Component::Poly(q) => q.clone(),
            other => panic!("fine part is {other:?}"),
        };
        let k2 = fine.ring;
        for x in lo..hi {
            let want = cutoff(x as f64 * inv) * sc;
            let e = (fit.value(x) as f64 - off - want).abs();
            worst = worst.max(e);
            let mut o = [0u64];
            fine.eval_into(x as u64 & w.mask(), &mut o);
            // sign-extend from k2 bits, halve
            let v = ((o[0] << (64 - k2)) as i64 >> (64 - k2)) as f64 / 2.0;
            worst_spec = worst_spec.max((v - off - want).abs());
        }
        assert!(
            (worst - fit.max_err).abs() < 1e-3,
            "{}: reported {} recomputed {}",
            kind.name(),
            fit.max_err,
            worst
        );
        assert!(
            (worst_spec - fit.max_err).abs() < 1e-3,
            "{}: spec {}",
            kind.name(),
            worst_spec
        );
        let indep = max_error(fit, &|x| cutoff(x) + off / sc, lo, hi);
        assert!((indep - fit.max_err).abs() < 1e-3);
    }
}

#[test]
fn fine_component_through_the_protocol_matches_the_fit() {
    let (n, f) = (50u32, 12u32);
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(31);
    for kind in [Smooth::Gelu, Smooth::NExp, Smooth::Tanh] {
        let sp = smooth_specs(kind, n, f, false).unwrap();
        let fine = sp.gate1.parts[1].comp.clone();
        let k2 = fine.ring(n);
        let spec = GateSpec {
            label: "fine".into(),
            outputs: 1,
            parts: vec![Part {
                comp: fine,
                targets: vec![0],
            }],
        };
        let (lo, hi) = (sp.fit.pieces[0].lo, sp.fit.pieces.last().unwrap().hi);
        let xs: Vec<u64> = (0..4000)
            .map(|_| (lo + (rng.next_u64() % (hi - lo) as u64) as i64) as u64 & mask(n))
            .collect();
        let (out, _, _) = run_direct(&spec, n, &xs, &be, &mut rng).unwrap();
        for (&x, &y) in xs.iter().zip(&out) {
            let q = (2 * sp
                .fit
                .value(x as i64 | if x >> 49 == 1 { !mask(n) as i64 } else { 0 }))
                as u64;
            assert_eq!(y & mask(k2), q & mask(k2), "{}: x = {x}", kind.name());
        }
    }
}

#[test]
fn exact_polynomials_are_fitted_exactly_and_clipping_is_respected() {
    // 3x² − 5x + 7 at scale 0 on [−300, 300): one piece, zero error.
    let f = |x: f64| 3.0 * x * x - 5.0 * x + 7.0;
    let b = |_: f64| 0.5;
    let ft = fit(&FitRequest {
        f: &f,
        budget: &b,
        lo: -300,
        hi: 300,
        f_in: 0,
        out_scale: 0,
        degree: 2,
        center: Center::Start,
        breaks: vec![],
        max_pieces: 4,
    })
    .unwrap();
    assert_eq!(ft.pieces.len(), 1);
    assert_eq!(ft.max_err, 0.0);
    // A clipped ramp with a forced break: pieces never cross it.
    let g = |x: f64| x.clamp(-1.0, 1.0);
    let b = |_: f64| 0.25;
    let ft = fit(&FitRequest {
        f: &g,
        budget: &b,
        lo: -1024,
        hi: 1024,
        f_in: 8,
        out_scale: 8,
        degree: 1,
        center: Center::Mid,
        breaks: vec![-256, 256],
        max_pieces: 8,
    })
    .unwrap();
    assert!(ft
        .pieces
        .iter()
        .all(|p| !(p.lo < 256 && p.hi > 256 || p.lo < -256 && p.hi > -256)));
    assert!(ft.max_err <= 0.25);
    let tiled = ft
        .to_poly(
            View {
                offset: 1024,
                bits: 11,
            },
            20,
        )
        .unwrap();
    tiled.validate(20).unwrap();
    for x in -1024i64..1024 {
        let mut o = [0u64];
        tiled.eval_into(x as u64 & mask(20), &mut o);
        let v = ((o[0] << 44) as i64 >> 44) as f64;
        assert!((v - g(x as f64 / 256.0) * 256.0).abs() <= 0.25);
    }
}

#[test]
fn impossible_budgets_are_typed_errors() {
    let f = |x: f64| (x * 50.0).sin();
    let b = |_: f64| 1e-9;
    let r = fit(&FitRequest {
        f: &f,
        budget: &b,
        lo: 0,
        hi: 4096,
        f_in: 4,
        out_scale: 2,
        degree: 1,
        center: Center::Mid,
        breaks: vec![],
        max_pieces: 8,
    });
    assert!(matches!(r, Err(CompilerError::Fit(_))));
    let r = fit(&FitRequest {
        f: &f,
        budget: &b,
        lo: 5,
        hi: 5,
        f_in: 4,
        out_scale: 2,
        degree: 1,
        center: Center::Mid,
        breaks: vec![],
        max_pieces: 8,
    });
    assert!(matches!(r, Err(CompilerError::Fit(_))));
}
