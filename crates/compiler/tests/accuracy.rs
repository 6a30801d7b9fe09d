//! Accuracy of every gate against its f64 (or exact integer) reference over its whole input
//! domain: the window of every smooth gate exhaustively, every interval boundary ±3, the
//! ring's extremes and 10^6 random inputs spread over the whole domain at n = 50 (10^7 in
//! the ignored `heavy` test); the exact gates exhaustively over all 2^16 inputs at n = 16.
//! Targets at f = 12: GeLU, SiLU, tanh, sigmoid (and GeLU-tanh, nExp, the fused variants)
//! ≤ 4 ULP; reciprocal and rsqrt ≤ 1% relative; TR/ARS/ReLU/max exact.

use suf_compiler::report::{
    approx_cases, cases, errors, exact_cases, inputs_for, GateCase, Reference,
};
use suf_core::prg::Csprng;

fn limit(case: &GateCase) -> (f64, f64) {
    match &case.reference {
        Reference::Real { relative: true, .. } => (f64::INFINITY, 0.01),
        Reference::Real { .. } => (4.0, f64::INFINITY),
        _ => (0.0, f64::INFINITY),
    }
}

fn check_all(n: u32, f: u32, random: usize, seed: u64) {
    let mut rng = Csprng::for_tests(seed);
    for case in cases(n, f).unwrap() {
        let xs = inputs_for(&case, n, 1 << 18, random, &mut rng);
        let st = errors(&case, n, f, &xs).unwrap();
        let (ulp, rel) = limit(&case);
        println!(
            "{:14} n={n} f={f}: max {:.3} ULP, rel {:.5}, {} inputs",
            case.name, st.max_ulp, st.max_rel, st.checked
        );
        assert!(
            st.max_ulp <= ulp,
            "{}: {} ULP at x = {}",
            case.name,
            st.max_ulp,
            st.worst_input
        );
        assert!(
            st.max_rel <= rel,
            "{}: relative error {}",
            case.name,
            st.max_rel
        );
    }
}

#[test]
fn whole_domain_n50_f12() {
    check_all(50, 12, 1_000_000, 21);
}

#[test]
fn whole_domain_n37_f12() {
    check_all(37, 12, 200_000, 22);
}

#[test]
fn exact_gates_exhaustive_n16() {
    let (n, f) = (16u32, 4u32);
    let all: Vec<u64> = (0..1u64 << n).collect();
    for case in exact_cases(n, f).unwrap() {
        let xs: Vec<u64> = all
            .iter()
            .copied()
            .filter(|&x| case.domain.contains(n, x))
            .collect();
        let xs = if case.name == "max" {
            // all pairs (a, b) with a in the domain and b = a + d for a spread of d
            let mut v = Vec::new();
            let mut rng = Csprng::for_tests(5);
            for &a in &xs {
                let b = xs[(rng.next_u64() % xs.len() as u64) as usize];
                v.push(a);
                v.push(b);
            }
            v
        } else {
            xs
        };
        let st = errors(&case, n, f, &xs).unwrap();
        assert_eq!(
            st.max_ulp, 0.0,
            "{} not exact at {}",
            case.name, st.worst_input
        );
    }
}

#[test]
fn fused_variants_match_their_unfused_composition_in_error() {
    // rescale_* at scale 2f: the window in X has 2^{w+f+1+f} inputs; sample it densely.
    let (n, f) = (50u32, 12u32);
    let mut rng = Csprng::for_tests(23);
    for case in approx_cases(n, f).unwrap() {
        if !case.name.starts_with("rescale_") {
            continue;
        }
        let w = if case.name.contains("gelu") { 2 } else { 4 };
        let a: i64 = 1 << (w + 2 * f);
        let mut xs: Vec<u64> = (0..400_000)
            .map(|_| ((rng.next_u64() % (2 * a as u64)) as i64 - a) as u64 & ((1 << n) - 1))
            .collect();
        xs.extend(inputs_for(&case, n, 0, 100_000, &mut rng));
        let st = errors(&case, n, f, &xs).unwrap();
        println!(
            "{}: {:.3} ULP over {} inputs (400k in the window)",
            case.name, st.max_ulp, st.checked
        );
        assert!(st.max_ulp <= 4.0, "{}: {} ULP", case.name, st.max_ulp);
    }
}

/// The 10^7-input version (run with `--ignored`; its figures are quoted in GATES.md).
#[test]
#[ignore]
fn heavy_whole_domain_n50_f12_1e7() {
    check_all(50, 12, 10_000_000, 24);
}

#[test]
fn nexp_is_exactly_one_at_zero_and_exactly_zero_past_its_cutoff() {
    use std::collections::BTreeMap;
    use suf_backend::CpuBackend;
    use suf_compiler::report::program_of;
    use suf_runtime::plain::{run_plain, PlainWeights};
    for (n, f) in [(50u32, 12u32), (37, 12)] {
        let case = approx_cases(n, f)
            .unwrap()
            .into_iter()
            .find(|c| c.name == "nexp")
            .unwrap();
        let cut = (9.125 * (1u64 << f) as f64) as u64;
        let mut xs: Vec<u64> = vec![0, 1, cut - 1];
        xs.extend(cut..cut + 4096);
        xs.extend((16u64 << f) - 2048..(16u64 << f) + 2048);
        xs.extend([1 << 30, (1 << (n - 1)) - 1]);
        let prog = program_of(&case, n, f, xs.len()).unwrap();
        let mut inputs = BTreeMap::new();
        inputs.insert("x".to_string(), xs.clone());
        let y = &run_plain(&prog, &CpuBackend::new(), &inputs, &PlainWeights::new()).unwrap()[0];
        assert_eq!(y[0], 1 << f, "nExp(0) must be exactly 2^f");
        for (&x, &v) in xs.iter().zip(y.iter()).skip(3) {
            assert_eq!(v, 0, "nExp({x}) must be exactly 0 past the cut-off");
        }
    }
}

#[test]
fn rsqrt_clamps_below_its_range_and_is_relative_at_both_ends() {
    use std::collections::BTreeMap;
    use suf_backend::CpuBackend;
    use suf_compiler::report::{program_of, rsqrt_range};
    use suf_runtime::plain::{run_plain, PlainWeights};
    let (n, f) = (50u32, 12u32);
    let case = approx_cases(n, f)
        .unwrap()
        .into_iter()
        .find(|c| c.name == "rsqrt")
        .unwrap();
    let (_, lo, hi) = rsqrt_range(n, f);
    // Below the range (0 included, e.g. a zero variance), the output is that of the octave
    // start, a finite maximum.
    let xs: Vec<u64> = vec![0, 1, lo / 2, lo - 1, lo, hi];
    let prog = program_of(&case, n, f, xs.len()).unwrap();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), xs.clone());
    let y = &run_plain(&prog, &CpuBackend::new(), &inputs, &PlainWeights::new()).unwrap()[0];
    assert!(y[..4].iter().all(|&v| v == y[4]), "{y:?}");
    let st = errors(&case, n, f, &[lo, hi]).unwrap();
    assert!(st.max_rel < 0.01);
}
