//! The alternatives weighed for GeLU (and the truncations), measured with the same machinery
//! as `gates_report`: error over the whole domain, key bytes, communication, rounds, AES.
//! The LUT and packed-comparison routes are given in closed form from the `suf-fss` key
//! shapes. `cargo run -p suf-compiler --release --example alternatives`

use std::sync::Arc;

use suf_compiler::fit::{fit, Center, FitRequest};
use suf_compiler::gates::{self, reference, smooth_specs, Smooth};
use suf_compiler::report::{cases, costs, errors, inputs_for, GateCase};
use suf_compiler::spec::{mask, View};
use suf_compiler::{Component, FloorSpec, GateSpec, HalvesSpec, Part, PolySpec, SpecGate, Wrap};
use suf_core::prg::Csprng;
use suf_fss::dcf::{aes_per_eval, DcfKeys};
use suf_fss::lut::LutKeys;
use suf_fss::packed::{Output, PackedCmpSpec, Query, View as PView};
use suf_runtime::gate::GateImpl;
use suf_runtime::ir::{Builder, T};

fn gate(g: &mut Builder, x: T, spec: GateSpec) -> suf_compiler::Result<Vec<T>> {
    let n = g.fp().width.bits();
    let q = spec.outputs;
    let s: Arc<dyn GateImpl> = Arc::new(SpecGate::new(spec, n)?);
    Ok(if q == 1 {
        vec![g.gate(x, s)?]
    } else {
        g.gate_multi(x, s)?
    })
}

fn one(comp: Component, label: &str) -> GateSpec {
    let q = comp.outputs();
    GateSpec {
        label: label.into(),
        outputs: q,
        parts: vec![Part {
            comp,
            targets: (0..q).collect(),
        }],
    }
}

fn row(name: &str, case: &GateCase, n: u32, f: u32, rng: &mut Csprng) {
    let xs = inputs_for(case, n, 1 << 17, 1 << 15, rng);
    let st = errors(case, n, f, &xs).expect("errors");
    let c = costs(case, n, f, rng).expect("costs");
    assert_eq!(c["bit_exact"], true, "{name}");
    println!(
        "| {name} | {:.2} | {:.0} | {:.1} | {} | {:.0} |",
        st.max_ulp,
        c["key_bytes_per_elem"].as_f64().unwrap_or(0.0),
        c["comm_bytes_per_elem"].as_f64().unwrap_or(0.0),
        c["rounds"],
        c["aes_per_elem"].as_f64().unwrap_or(0.0)
    );
}

fn main() {
    let (n, f) = (50u32, 12u32);
    let nm = mask(n);
    let mut rng = Csprng::for_tests(3);
    let base = cases(n, f)
        .unwrap()
        .into_iter()
        .find(|c| c.name == "gelu")
        .unwrap();
    let sp = smooth_specs(Smooth::Gelu, n, f, false).unwrap();
    let (t, k2) = (sp.t, sp.k2);
    let a: u64 = 1 << (2 + f);
    println!(
        "| GeLU construction | max err (ULP) | key B/elem | comm B/elem | rounds | AES/elem |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    row(
        "chosen: coarse n-bit + fine 15-bit view, LSB-select floor (K2-bit wrap key)",
        &base,
        n,
        f,
        &mut rng,
    );

    // B: the same with the fine part in Z_{2^n} and a free-wrap selector floor.
    {
        let coarse = sp.gate1.parts[0].comp.clone();
        let mut v = sp.fit.clone();
        v.scale(2);
        let fine = v
            .to_poly(
                View {
                    offset: a,
                    bits: 2 + f + 1,
                },
                n,
            )
            .unwrap();
        let g1 = GateSpec {
            label: "altB1".into(),
            outputs: 2,
            parts: vec![
                Part {
                    comp: coarse,
                    targets: vec![0, 1],
                },
                Part {
                    comp: Component::Poly(fine),
                    targets: vec![1],
                },
            ],
        };
        let sel = one(
            Component::Floor(FloorSpec {
                view: View {
                    offset: 1 << (k2 - 1),
                    bits: n,
                },
                shift: t + 1,
                select: true,
                wrap: Wrap::Free,
                gamma: vec![1],
                kappa: vec![(1u64 << (k2 - 2 - t)).wrapping_neg() & nm],
            }),
            "altB2",
        );
        let case = GateCase {
            name: "altB".into(),
            build: Arc::new(move |g, x| {
                let o = gate(g, x, g1.clone())?;
                let y = gate(g, o[1], sel.clone())?[0];
                Ok(g.add(o[0], y)?)
            }),
            ..base.clone()
        };
        row(
            "fine in Z_2^n, free-wrap selector (no K2-bit key)",
            &case,
            n,
            f,
            &mut rng,
        );
    }

    // C: no reduced width: one n-bit technique-(c) spec holding the tails and the fine pieces.
    {
        let fine = sp
            .fit
            .to_poly(
                View {
                    offset: a,
                    bits: 2 + f + 1,
                },
                n,
            )
            .unwrap();
        let mut cuts = fine.cuts.clone();
        cuts.extend([2 * a, (1u64 << (n - 1)) + a]);
        let mut centers = fine.centers.clone();
        centers.extend([a, 0]);
        let mut coeffs = Vec::new();
        for i in 0..fine.intervals() {
            coeffs.extend([0, 0, 0]);
            coeffs.extend_from_slice(&fine.coeffs[i * 3..i * 3 + 3]);
        }
        let half_t = 1u64 << (t - 1);
        coeffs.extend([0, 1, 0, half_t, 0, 0]); // positive tail: o = x, Q' = 2^{t−1}
        coeffs.extend([0, 0, 0, half_t, 0, 0]); // negative tail
        let g1 = one(
            Component::Poly(PolySpec {
                view: View { offset: a, bits: n },
                ring: n,
                cuts,
                degree: 2,
                outputs: 2,
                centers,
                coeffs,
            }),
            "altC1",
        );
        let tr = gates::floor_spec(n, 1 << (n - 2), t, 1 << (n - 2 - t), Wrap::Free, "altC2");
        let case = GateCase {
            name: "altC".into(),
            build: Arc::new(move |g, x| {
                let o = gate(g, x, g1.clone())?;
                let y = gate(g, o[1], tr.clone())?[0];
                Ok(g.add(o[0], y)?)
            }),
            ..base.clone()
        };
        row(
            "full-width technique (c): 11 intervals on n bits, then GapARS",
            &case,
            n,
            f,
            &mut rng,
        );
    }

    // D: three rounds through |x|: ReLU and |x| (MSB halves), then the even residual on |x|.
    {
        let h = 1u64 << (n - 1);
        let r1 = one(
            Component::Halves(HalvesSpec {
                offset: h,
                ring: n,
                lo: vec![(0, 0), (nm, h)],
                hi: vec![(1, h.wrapping_neg() & nm), (1, h.wrapping_neg() & nm)],
            }),
            "altD1",
        );
        let kf = 2 + f; // |x| < 4 on 14 bits
        let func = |x: f64| reference::gelu(x) - x.max(0.0);
        let bud = (t as f64).exp2() * 2.5;
        let bf = move |_: f64| bud;
        let mut ft = fit(&FitRequest {
            f: &func,
            budget: &bf,
            lo: 0,
            hi: 1 << kf,
            f_in: f,
            out_scale: f + t,
            degree: 2,
            center: Center::Mid,
            breaks: vec![],
            max_pieces: 32,
        })
        .unwrap();
        ft.add_constant(1i128 << (t - 1));
        let pieces = ft.pieces.len();
        ft.scale(2);
        let need = (-ft.range.0).max(ft.range.1 + 2) as u128;
        let k2d = (128 - (need - 1).leading_zeros() + 1).max(t + 3);
        let fine = ft
            .to_poly(
                View {
                    offset: 0,
                    bits: kf,
                },
                k2d,
            )
            .unwrap();
        let win = PolySpec {
            view: View {
                offset: 0,
                bits: n - 1,
            },
            ring: n,
            cuts: vec![a],
            degree: 0,
            outputs: 1,
            centers: vec![0, 0],
            coeffs: vec![0, 1],
        };
        let r2 = GateSpec {
            label: "altD2".into(),
            outputs: 1,
            parts: vec![
                Part {
                    comp: Component::Poly(win),
                    targets: vec![0],
                },
                Part {
                    comp: Component::Poly(fine),
                    targets: vec![0],
                },
            ],
        };
        let r3 = one(
            Component::Floor(FloorSpec {
                view: View {
                    offset: 1 << (k2d - 1),
                    bits: k2d,
                },
                shift: t + 1,
                select: true,
                wrap: Wrap::Dcf,
                gamma: vec![1],
                kappa: vec![(1u64 << (k2d - 2 - t)).wrapping_neg() & nm],
            }),
            "altD3",
        );
        let case = GateCase {
            name: "altD".into(),
            build: Arc::new(move |g, x| {
                let o = gate(g, x, r1.clone())?;
                let v = gate(g, o[1], r2.clone())?[0];
                let y = gate(g, v, r3.clone())?[0];
                Ok(g.add(o[0], y)?)
            }),
            pieces,
            ..base.clone()
        };
        row(
            &format!("3 rounds via |x| (ReLU/|x| halves, residual on [0,4): {pieces} pieces)"),
            &case,
            n,
            f,
            &mut rng,
        );
    }

    // Closed forms.
    println!();
    let coarse_aes = 3 * aes_per_eval(n, n, 2);
    let k = 15u32;
    let lut_aes = (1usize << (k - 6)) - 2 + (1usize << (k - 7));
    let lut_key = LutKeys::key_bytes_per_key(k, 1);
    let coarse4 = DcfKeys::key_bytes_per_key(n, n, 4);
    println!("LUT route (technique (d)), 4 ULP: full-resolution table on the low 15 bits of x (window ±4 at f = 12),");
    println!("selected by a coarse n-bit DCF whose payload carries the LUT's sign/mask (p = 4):");
    println!("  AES/elem = {lut_aes} (EvalAll) + {} (coarse, 3 evals × {} AES) = {}; key ≈ {} + {} B; 2 rounds (the W opening + a Beaver select);",
        3 * aes_per_eval(n, n, 4), aes_per_eval(n, n, 4), lut_aes + 3 * aes_per_eval(n, n, 4), lut_key, coarse4);
    println!("  plus 2^15 = 32768 table multiply-adds per element (CPU/GPU bound).");
    let k8 = 8u32;
    println!("SIGMA-style LUT on 8 bits at input scale 6 (≈31 ULP): EvalAll {} AES, key {} B (+ its TR/DReLU parts).",
        (1usize << (k8 - 6)) - 2 + (1usize << (k8 - 7)), LutKeys::key_bytes_per_key(k8, 1));
    let spec = |out: Output| PackedCmpSpec {
        n,
        views: vec![PView { bits: n, shift: a }],
        queries: vec![
            Query {
                view: 0,
                beta: 2 * a,
                output: out,
            },
            Query {
                view: 0,
                beta: (1 << (n - 1)) + a,
                output: out,
            },
        ],
    };
    println!("Packed comparison for the coarse thresholds {{2A, 2^(n-1)+A}}: arithmetic outputs {} AES (= a degree-0 technique-(c) spec, {} AES with the x-tail payload);",
        spec(Output::Arith { bits: n }).aes_per_element().unwrap(), coarse_aes);
    println!("  XOR outputs {} AES but each bit then needs a B2A and the tail x·1[x ≥ A] a Beaver product: +1 round.",
        spec(Output::Xor).aes_per_element().unwrap());
}
