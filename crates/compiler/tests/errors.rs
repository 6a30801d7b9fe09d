//! Bad input gives typed errors, never a panic: invalid specs, malformed or mismatched key
//! blobs, out-of-range gate parameters, fits that cannot tile a view.

use suf_backend::CpuBackend;
use suf_compiler::fit::{Fit, Piece};
use suf_compiler::gates;
use suf_compiler::spec::View;
use suf_compiler::{CompilerError, Component, FloorSpec, GateSpec, Part, PolySpec, SpecGate, Wrap};
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::KeyRef;
use suf_runtime::gate::GateImpl;
use suf_runtime::ir::Builder;

fn poly(cuts: Vec<u64>, coeffs: usize) -> GateSpec {
    let m = cuts.len() + 1;
    GateSpec {
        label: "p".into(),
        outputs: 1,
        parts: vec![Part {
            comp: Component::Poly(PolySpec {
                view: View { offset: 0, bits: 8 },
                ring: 16,
                cuts,
                degree: 1,
                outputs: 1,
                centers: vec![0; m],
                coeffs: vec![1; coeffs],
            }),
            targets: vec![0],
        }],
    }
}

#[test]
fn invalid_specs_are_refused() {
    for bad in [
        poly(vec![5, 3], 6), // cuts not increasing
        poly(vec![0], 4),    // cut at 0
        poly(vec![256], 4),  // cut outside the 8-bit view
        poly(vec![5], 3),    // coefficient count
    ] {
        assert!(matches!(
            SpecGate::new(bad, 16),
            Err(CompilerError::Spec(_))
        ));
    }
    // view wider than the ring
    assert!(SpecGate::new(poly(vec![5], 4), 7).is_err());
    let floor = |shift, wrap, bits| GateSpec {
        label: "f".into(),
        outputs: 1,
        parts: vec![Part {
            comp: Component::Floor(FloorSpec {
                view: View { offset: 0, bits },
                shift,
                select: false,
                wrap,
                gamma: vec![1],
                kappa: vec![0],
            }),
            targets: vec![0],
        }],
    };
    assert!(SpecGate::new(floor(0, Wrap::Dcf, 16), 16).is_err());
    assert!(SpecGate::new(floor(16, Wrap::Dcf, 16), 16).is_err());
    assert!(SpecGate::new(floor(3, Wrap::Free, 12), 16).is_err());
    assert!(SpecGate::new(floor(3, Wrap::Free, 16), 16).is_ok());
    // targets out of range
    let mut g = poly(vec![5], 4);
    g.parts[0].targets = vec![3];
    assert!(SpecGate::new(g, 16).is_err());
}

#[test]
fn malformed_and_mismatched_keys_are_errors() {
    let n = 16;
    let w = BitWidth::new(n).unwrap();
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(1);
    let gate = SpecGate::new(poly(vec![5, 100], 6), n).unwrap();
    let r: Vec<u64> = (0..8).map(|_| rng.ring(w)).collect();
    let [k0, k1] = gate.deal(w, &r, &mut rng).unwrap();
    let xh = vec![3u64; 8];
    assert!(gate.eval(w, 0, KeyRef::detached(&k0), &xh, &be).is_ok());
    // wrong party, wrong count, truncated, garbage, empty
    assert!(gate.eval(w, 1, KeyRef::detached(&k0), &xh, &be).is_err());
    assert!(gate
        .eval(w, 0, KeyRef::detached(&k0), &xh[..7], &be)
        .is_err());
    assert!(gate
        .eval(w, 1, KeyRef::detached(&k1[..k1.len() - 3]), &xh, &be)
        .is_err());
    assert!(gate
        .eval(w, 0, KeyRef::detached(&[7u8; 100]), &xh, &be)
        .is_err());
    assert!(gate.eval(w, 0, KeyRef::detached(&[]), &xh, &be).is_err());
    // a key of another gate
    let other = SpecGate::new(floor_gate(n), n).unwrap();
    let [o0, _] = other.deal(w, &r, &mut rng).unwrap();
    assert!(gate.eval(w, 0, KeyRef::detached(&o0), &xh, &be).is_err());
    // a floor key of another ring width (its DCFs carry ring-n payloads)
    let w2 = BitWidth::new(20).unwrap();
    let f20 = SpecGate::new(floor_gate(20), 20).unwrap();
    let [g0, _] = f20.deal(w2, &r, &mut rng).unwrap();
    assert!(other.eval(w, 0, KeyRef::detached(&g0), &xh, &be).is_err());
}

fn floor_gate(n: u32) -> GateSpec {
    gates::floor_spec(n, 0, 3, 0, Wrap::Dcf, "tr")
}

#[test]
fn gate_parameters_out_of_range_are_errors() {
    let fp = FixedPoint::new(50, 12).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4]).unwrap();
    assert!(gates::tr(&mut g, x, 0).is_err());
    assert!(gates::ars(&mut g, x, 49).is_err());
    assert!(gates::reciprocal(&mut g, x, 1).is_err());
    assert!(gates::rsqrt(&mut g, x, 24, 0, 10).is_err());
    assert!(gates::rsqrt(&mut g, x, 24, 100, 10).is_err());
    assert!(gates::rsqrt(&mut g, x, 24, 1, u64::MAX).is_err());
    // a ring too small for the smooth gates
    let mut small = Builder::new(FixedPoint::new(16, 8).unwrap());
    let y = small.input("y", &[4]).unwrap();
    assert!(gates::gelu(&mut small, y).is_err());
    assert!(gates::silu(&mut small, y).is_err());
    // an empty last axis for max_last
    let z = g.input("z", &[3, 0]).unwrap();
    assert!(gates::max_last(&mut g, z).is_err());
}

#[test]
fn fits_that_do_not_tile_the_view_are_errors() {
    let fit = Fit {
        pieces: vec![Piece {
            lo: 0,
            hi: 100,
            center: 0,
            coeffs: vec![1],
            max_err: 0.0,
        }],
        out_scale: 0,
        f_in: 0,
        max_err: 0.0,
        max_abs: 1,
        range: (1, 1),
    };
    assert!(fit.to_poly(View { offset: 0, bits: 8 }, 16).is_err());
    let empty = Fit {
        pieces: vec![],
        ..fit
    };
    assert!(empty.to_poly(View { offset: 0, bits: 8 }, 16).is_err());
    assert_eq!(empty.value(3), 0);
}
