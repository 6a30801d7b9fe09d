//! The closed-form key sizes capacity planning uses (`GateSpec::key_bytes`, and through it
//! `GateImpl::key_bytes` of a `SpecGate`) equal the lengths of the blobs the dealer makes, for
//! every gate of the library, every component kind (floors with and without the selector in
//! each wrap mode) and batch sizes around the 16-byte alignment boundaries.

use suf_compiler::gates::{
    floor_spec, recip_specs, relu_spec, relu_spec_in, rsqrt_specs, rsqrt_specs_max,
    smooth_specs_in, smooth_specs_in_folded, smooth_specs_with, Prefer, Smooth,
};
use suf_compiler::{Component, FloorSpec, GateSpec, Part, SpecGate, View, Wrap};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_runtime::gate::GateImpl;

const COUNTS: [usize; 7] = [0, 1, 2, 3, 15, 16, 33];

fn check(spec: &GateSpec, n: u32, rng: &mut Csprng) {
    let w = BitWidth::new(n).unwrap();
    let gate = SpecGate::new(spec.clone(), n).unwrap();
    for cnt in COUNTS {
        let r: Vec<u64> = (0..cnt).map(|_| rng.ring(w)).collect();
        let [a, b] = spec.deal(n, &r, rng).unwrap();
        let want = [a.len() as u64, b.len() as u64];
        assert_eq!(spec.key_bytes(n, cnt), Some(want), "{} × {cnt}", spec.label);
        assert_eq!(gate.key_bytes(w, cnt), Some(want), "{} × {cnt}", spec.label);
        assert_eq!(
            gate.aes_calls(w, cnt),
            Some((spec.aes_per_elem(n) * cnt) as u64)
        );
    }
}

fn floor(bits: u32, select: bool, wrap: Wrap) -> GateSpec {
    GateSpec {
        label: format!("floor_{bits}_{select}_{wrap:?}"),
        outputs: 2,
        parts: vec![Part {
            comp: Component::Floor(FloorSpec {
                view: View { offset: 5, bits },
                shift: 4,
                select,
                wrap,
                gamma: vec![1, 3],
                kappa: vec![0, 7],
            }),
            targets: vec![1, 0],
        }],
    }
}

#[test]
fn every_library_gate_plans_its_exact_key_size() {
    let mut rng = Csprng::for_tests(3);
    for (n, f) in [(37u32, 12u32), (50, 12)] {
        let mut specs = vec![
            relu_spec(n),
            floor_spec(n, 0, 12, 0, Wrap::Dcf, "tr"),
            floor_spec(n, 1 << (n - 2), 7, 1 << (n - 2 - 7), Wrap::Free, "arsgap"),
        ];
        for sel in [false, true] {
            for wrap in [Wrap::Dcf, Wrap::Free, Wrap::Drop] {
                let bits = if wrap == Wrap::Free { n } else { 20 };
                specs.push(floor(bits, sel, wrap));
            }
        }
        for kind in Smooth::ALL {
            for prefer in [Prefer::Aes, Prefer::Keys] {
                let s = smooth_specs_with(kind, n, f, false, prefer).unwrap();
                specs.push(s.gate1.clone());
                specs.push(s.select.clone());
                specs.extend(s.fine.iter().cloned());
                specs.extend(s.tail.iter().cloned());
            }
        }
        // Declared-range variants (reduced-width views: High, Sign and Bit components).
        specs.push(relu_spec_in(n, 20));
        for kind in Smooth::ALL {
            for s in [
                smooth_specs_in(kind, n, f, f + 8, Prefer::Keys).unwrap(),
                smooth_specs_in(kind, n, f, f + 6, Prefer::Aes).unwrap(),
            ] {
                specs.push(s.gate1.clone());
                specs.push(s.select.clone());
                specs.extend(s.fine.iter().cloned());
                specs.extend(s.tail.iter().cloned());
            }
        }
        for kind in [Smooth::Gelu, Smooth::GeluTanh, Smooth::Silu] {
            if let Ok(s) = smooth_specs_in_folded(kind, n, f, f + 8, 6, Prefer::Keys) {
                specs.push(s.gate1.clone());
                specs.push(s.select.clone());
            }
        }
        let q = rsqrt_specs_max(n, 2 * f, 1, 1 << (n - 4), 20).unwrap();
        specs.extend([q.norm.clone(), q.floor.clone(), q.poly.clone()]);
        let kinds = |c: &Component| match c {
            Component::High(_) => 0,
            Component::Sign(_) => 1,
            Component::Bit(_) => 2,
            _ => 3,
        };
        let mut seen = [false; 4];
        for s in &specs {
            for p in &s.parts {
                seen[kinds(&p.comp)] = true;
            }
        }
        assert_eq!(seen, [true; 4], "every component kind is covered");
        let r = recip_specs(n, f, 128).unwrap();
        specs.extend([r.gate1.clone(), r.floor.clone()]);
        let q = rsqrt_specs(n, 2 * f, 1, 1 << (n - 4)).unwrap();
        specs.extend([q.norm.clone(), q.floor.clone(), q.poly.clone()]);
        for s in &specs {
            check(s, n, &mut rng);
        }
    }
}

#[test]
fn invalid_specs_report_no_size() {
    let mut s = floor(20, false, Wrap::Free); // the free wrap needs the full width
    assert_eq!(s.key_bytes(37, 4), None);
    s.parts.clear();
    assert_eq!(s.key_bytes(37, 4), None);
}
