//! Every component's protocol equals its plain semantics, exhaustively over inputs and masks
//! at small widths (reduced-width views, centred polynomials, the MSB halves, floors with the
//! LSB selector and both wrap modes). Each check also evaluates both parties with x̂ reduced
//! mod 2^{input_bits} (what the runtime opens) and asserts the very same shares.

use suf_backend::CpuBackend;
use suf_compiler::spec::mask;
use suf_compiler::{
    run_with_masks, BitSpec, Component, FloorSpec, GateSpec, HalvesSpec, HighSpec, Part, PolySpec,
    SignSpec, View, Wrap,
};
use suf_core::prg::Csprng;
use suf_fss::KeyRef;

fn gate(c: Component) -> GateSpec {
    let q = c.outputs();
    GateSpec {
        label: "t".into(),
        outputs: q,
        parts: vec![Part {
            comp: c,
            targets: (0..q).collect(),
        }],
    }
}

/// Check all (x, r) pairs for n ≤ 7, or all x with random masks otherwise.
fn check(spec: &GateSpec, n: u32, rng: &mut Csprng) {
    let be = CpuBackend::new();
    let nn = 1u64 << n;
    let (xs, rs): (Vec<u64>, Vec<u64>) = if n <= 7 {
        (0..nn * nn).map(|i| (i % nn, i / nn)).unzip()
    } else {
        (0..nn).map(|x| (x, rng.next_u64() & mask(n))).unzip()
    };
    let (out, _) = run_with_masks(spec, n, &xs, &rs, &be, rng).unwrap();
    same_shares_on_input_bits(spec, n, &xs, &rs, rng);
    let plain = spec.eval_batch(n, &xs);
    let cnt = xs.len();
    for o in 0..spec.outputs {
        let vb = mask(spec.valid_bits(n, o));
        for e in 0..cnt {
            assert_eq!(
                out[o * cnt + e] & vb,
                plain[o * cnt + e] & vb,
                "output {o}, x = {}, r = {}, spec {spec:?}",
                xs[e],
                rs[e]
            );
        }
    }
}

/// The gate reads only the low `input_bits` of x̂: both parties' shares from x̂ mod
/// 2^{input_bits} equal those from the full x̂.
fn same_shares_on_input_bits(spec: &GateSpec, n: u32, xs: &[u64], rs: &[u64], rng: &mut Csprng) {
    let be = CpuBackend::new();
    let b = spec.input_bits(n);
    assert!((1..=n).contains(&b), "input_bits {b} at n = {n}");
    let keys = spec.deal(n, rs, rng).unwrap();
    let xhat: Vec<u64> = xs
        .iter()
        .zip(rs)
        .map(|(&x, &r)| x.wrapping_add(r) & mask(n))
        .collect();
    let low: Vec<u64> = xhat.iter().map(|&v| v & mask(b)).collect();
    for (party, key) in keys.iter().enumerate() {
        let full = spec
            .eval_shares(n, party as u8, KeyRef::detached(key), &xhat, &be)
            .unwrap();
        let part = spec
            .eval_shares(n, party as u8, KeyRef::detached(key), &low, &be)
            .unwrap();
        assert!(
            full == part,
            "party {party}: shares differ on x̂ mod 2^{b}, spec {spec:?}"
        );
    }
}

fn random_poly(n: u32, rng: &mut Csprng) -> PolySpec {
    let k = 2 + (rng.next_u64() % (n as u64 - 1)) as u32; // 2..=n
                                                          // ring M anywhere in 2..=n: below K (2^K ≡ 0 mod 2^M: no wrap terms), equal, or above.
    let ring = 2 + (rng.next_u64() % (n as u64 - 1)) as u32;
    let d = (rng.next_u64() % 4) as usize;
    let q = 1 + (rng.next_u64() % 2) as usize;
    let mut cuts: Vec<u64> = (0..(rng.next_u64() % 5))
        .map(|_| 1 + rng.next_u64() % (mask(k)))
        .collect();
    cuts.sort();
    cuts.dedup();
    let m = cuts.len() + 1;
    let rm = mask(ring);
    PolySpec {
        view: View {
            offset: rng.next_u64() & mask(n),
            bits: k,
        },
        ring,
        cuts,
        degree: d,
        outputs: q,
        centers: (0..m).map(|_| rng.next_u64() & rm).collect(),
        coeffs: (0..m * q * (d + 1)).map(|_| rng.next_u64() & rm).collect(),
    }
}

#[test]
fn poly_exhaustive_small() {
    let mut rng = Csprng::for_tests(1);
    for n in [5u32, 6, 7] {
        for _ in 0..12 {
            let p = random_poly(n, &mut rng);
            check(&gate(Component::Poly(p)), n, &mut rng);
        }
    }
}

#[test]
fn poly_all_inputs_n10_n12() {
    let mut rng = Csprng::for_tests(2);
    for n in [10u32, 12] {
        for _ in 0..10 {
            let p = random_poly(n, &mut rng);
            check(&gate(Component::Poly(p)), n, &mut rng);
        }
    }
}

#[test]
fn halves_exhaustive_small() {
    let mut rng = Csprng::for_tests(3);
    for n in [3u32, 5, 7] {
        for ring in [n, n - 1] {
            for slope in [false, true] {
                let rm = mask(ring);
                let mut r = |s: bool| if s { rng.next_u64() & rm } else { 0 };
                let h = HalvesSpec {
                    offset: r(true) & mask(n),
                    ring,
                    lo: vec![(r(slope), r(true)), (r(slope), r(true))],
                    hi: vec![(r(slope), r(true)), (r(slope), r(true))],
                };
                check(&gate(Component::Halves(h)), n, &mut rng);
            }
        }
    }
}

#[test]
fn floor_exhaustive_small() {
    let mut rng = Csprng::for_tests(4);
    for n in [5u32, 6, 7] {
        for k in [3, n - 1, n] {
            for t in [1, 2, k - 1] {
                for select in [false, true] {
                    let nm = mask(n);
                    let f = FloorSpec {
                        view: View {
                            offset: rng.next_u64() & nm,
                            bits: k,
                        },
                        shift: t,
                        select,
                        wrap: Wrap::Dcf,
                        gamma: vec![1, rng.next_u64() & nm],
                        kappa: vec![rng.next_u64() & nm, 0],
                    };
                    check(&gate(Component::Floor(f)), n, &mut rng);
                }
            }
        }
    }
}

#[test]
fn floor_free_wrap_under_its_guarantee() {
    let mut rng = Csprng::for_tests(5);
    let be = CpuBackend::new();
    for n in [6u32, 9] {
        for select in [false, true] {
            for t in [1, 3] {
                let f = FloorSpec {
                    view: View { offset: 5, bits: n },
                    shift: t,
                    select,
                    wrap: Wrap::Free,
                    gamma: vec![1],
                    kappa: vec![3],
                };
                let spec = gate(Component::Floor(f));
                // x_u = x + 5 < 2^{n-1}: all such x, every mask.
                let half = 1u64 << (n - 1);
                let mut xs = Vec::new();
                let mut rs = Vec::new();
                for xu in 0..half {
                    for _ in 0..8 {
                        xs.push(xu.wrapping_sub(5) & mask(n));
                        rs.push(rng.next_u64() & mask(n));
                    }
                }
                let (out, _) = run_with_masks(&spec, n, &xs, &rs, &be, &mut rng).unwrap();
                assert_eq!(out, spec.eval_batch(n, &xs));
            }
        }
    }
}

#[test]
fn sign_reduced_view_exhaustive_small() {
    // Every (x, r) at n ≤ 7, views K ≤ n, slopes on the full-ring variable.
    let mut rng = Csprng::for_tests(6);
    for n in [4u32, 6, 7] {
        for k in [2, 3, n - 1, n] {
            for ring in [n, n - 1] {
                for slope in [false, true] {
                    let rm = mask(ring);
                    let mut r = |s: bool| if s { rng.next_u64() & rm } else { 0 };
                    let h = SignSpec {
                        offset: r(true) & mask(n),
                        bits: k,
                        ring,
                        lo: vec![(r(slope), r(true)), (r(slope), r(true))],
                        hi: vec![(r(slope), r(true)), (r(slope), r(true))],
                    };
                    check(&gate(Component::Sign(h)), n, &mut rng);
                }
            }
        }
    }
}

/// The high-part component equals its plain semantics with the mask's borrow bit
/// c = 1{(x_u mod 2^s) + (r mod 2^s) ≥ 2^s}, for every (x, r) at n ≤ 7; and away from the
/// zones below each cut, with c = 0 as well.
#[test]
fn high_part_exhaustive_small() {
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(7);
    for n in [5u32, 6, 7] {
        for k in [3, n - 1, n] {
            for sh in [1, 2, k - 2] {
                if sh == 0 || sh >= k - 1 {
                    continue;
                }
                for (d, ring) in [(0usize, n), (1, n), (2, n - 1)] {
                    let hb = k - sh;
                    let mut cuts: Vec<u64> =
                        (0..3).map(|_| 1 + rng.next_u64() % mask(hb)).collect();
                    cuts.sort();
                    cuts.dedup();
                    let m = cuts.len() + 1;
                    let rm = mask(ring);
                    let hs = HighSpec {
                        view: View {
                            offset: rng.next_u64() & mask(n),
                            bits: k,
                        },
                        shift: sh,
                        ring,
                        cuts,
                        degree: d,
                        outputs: 2,
                        centers: (0..m).map(|_| rng.next_u64() & rm).collect(),
                        coeffs: (0..m * 2 * (d + 1)).map(|_| rng.next_u64() & rm).collect(),
                    };
                    let spec = gate(Component::High(hs.clone()));
                    let nn = 1u64 << n;
                    let (xs, rs): (Vec<u64>, Vec<u64>) =
                        (0..nn * nn).map(|i| (i % nn, i / nn)).unzip();
                    let (out, _) = run_with_masks(&spec, n, &xs, &rs, &be, &mut rng).unwrap();
                    let cnt = xs.len();
                    let mut ambiguous = 0;
                    for e in 0..cnt {
                        let (x, r) = (xs[e], rs[e]);
                        let lo = (x.wrapping_add(hs.view.offset) & mask(sh)) + (r & mask(sh));
                        let c = (lo >> sh) & 1;
                        let mut want = [0u64; 2];
                        hs.eval_with_carry(x, c, &mut want);
                        let mut plain = [0u64; 2];
                        hs.eval_into(x, &mut plain);
                        ambiguous += (want != plain) as usize;
                        for o in 0..2 {
                            assert_eq!(
                                out[o * cnt + e] & rm,
                                want[o],
                                "x = {x}, r = {r}, c = {c}, spec {hs:?}"
                            );
                        }
                    }
                    assert!(ambiguous < cnt / 2);
                }
            }
        }
    }
}

/// The XOR-shared high-part Boolean: the two shares add up to the bit (with the mask's
/// borrow) modulo 2, for every (x, r) at n ≤ 7 and for DPF depths above 0 at n = 12.
#[test]
fn bit_exhaustive_small_and_deep() {
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(8);
    for (n, full) in [(5u32, true), (7, true), (12, false), (14, false)] {
        for k in [3, n - 1, n] {
            for sh in [1, 2] {
                if sh >= k {
                    continue;
                }
                let hb = k - sh;
                let mut cuts: Vec<u64> = (0..3).map(|_| 1 + rng.next_u64() % mask(hb)).collect();
                cuts.sort();
                cuts.dedup();
                let bits: Vec<bool> = (0..=cuts.len()).map(|_| rng.bit()).collect();
                let bs = BitSpec {
                    view: View {
                        offset: rng.next_u64() & mask(n),
                        bits: k,
                    },
                    shift: sh,
                    cuts,
                    bits,
                };
                let spec = gate(Component::Bit(bs.clone()));
                let nn = 1u64 << n;
                let (xs, rs): (Vec<u64>, Vec<u64>) = if full {
                    (0..nn * nn).map(|i| (i % nn, i / nn)).unzip()
                } else {
                    (0..nn).map(|x| (x, rng.next_u64() & mask(n))).unzip()
                };
                let (out, _) = run_with_masks(&spec, n, &xs, &rs, &be, &mut rng).unwrap();
                for e in 0..xs.len() {
                    let (x, r) = (xs[e], rs[e]);
                    let lo = (x.wrapping_add(bs.view.offset) & mask(sh)) + (r & mask(sh));
                    let c = (lo >> sh) & 1;
                    assert_eq!(
                        out[e] & 1,
                        bs.eval_with_carry(x, c),
                        "x = {x}, r = {r}, {bs:?}"
                    );
                }
            }
        }
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use suf_backend::CpuBackend;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Random floors (any view, shift, selector, wrap) on random inputs and masks.
        #[test]
        fn floor_protocol_equals_plain(n in 8u32..=40, kd in 0u32..4, t0 in 1u32..6, select: bool,
                                       drop: bool, seed: u64) {
            let k = n - kd.min(n - 4);
            let t = t0.min(k - 1);
            let mut rng = Csprng::for_tests(seed);
            let nm = mask(n);
            let spec = gate(Component::Floor(FloorSpec {
                view: View { offset: rng.next_u64() & nm, bits: k },
                shift: t,
                select,
                wrap: if drop { Wrap::Drop } else { Wrap::Dcf },
                gamma: vec![rng.next_u64() & nm],
                kappa: vec![rng.next_u64() & nm],
            }));
            let xs: Vec<u64> = (0..64).map(|_| rng.next_u64() & nm).collect();
            let (out, _, _) = suf_compiler::run_direct(&spec, n, &xs, &CpuBackend::new(), &mut rng).unwrap();
            let vb = mask(spec.valid_bits(n, 0));
            let plain = spec.eval_batch(n, &xs);
            for (a, b) in out.iter().zip(&plain) {
                prop_assert_eq!(a & vb, b & vb);
            }
        }
    }
}
