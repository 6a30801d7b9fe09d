//! Every gate through the Party interpreter (dealer + two parties, in-memory and TCP) equals
//! the Plain interpreter bit for bit, on random inputs plus 0, ±1, ±2^{n−1}, −1 and every
//! interval boundary ±3, at n = 50 and n = 37 (f = 12) and n = 64 (f = 16); and every gate
//! meets its round count.

mod common;

use suf_compiler::report::{cases, inputs_for, run_case};
use suf_core::prg::Csprng;
use suf_runtime::harness::Link;

fn check(n: u32, f: u32, link: Link, seed: u64, only: Option<&[&str]>) {
    let mut rng = Csprng::for_tests(seed);
    for case in cases(n, f).unwrap() {
        if only.is_some_and(|o| !o.contains(&case.name.as_str())) {
            continue;
        }
        let xs = inputs_for(&case, n, 48, 48, &mut rng);
        let run = run_case(&case, n, f, &xs, link, &mut rng).unwrap();
        assert!(
            run.matches_plain(),
            "{} (n = {n}, f = {f}, {link:?}): secure output differs from plain",
            case.name
        );
        assert_eq!(
            run.reports[0].rounds,
            common::round_target(&case),
            "{}: rounds",
            case.name
        );
        assert_eq!(run.reports[0].rounds, run.reports[1].rounds);
    }
}

#[test]
fn all_gates_mem_n50() {
    check(50, 12, Link::Mem, 1, None);
}

#[test]
fn all_gates_tcp_n50() {
    check(50, 12, Link::Tcp, 2, None);
}

#[test]
fn all_gates_mem_n37() {
    check(37, 12, Link::Mem, 3, None);
}

#[test]
fn all_gates_tcp_n37() {
    check(37, 12, Link::Tcp, 4, None);
}

#[test]
fn all_gates_mem_n64_f16() {
    check(64, 16, Link::Mem, 5, None);
}

#[test]
fn gates_in_one_program_batch_and_chain() {
    // Two GeLUs in the same round share one key batch; a GeLU feeding a max tree feeding
    // nExp runs as one program.
    use std::collections::BTreeMap;
    use suf_backend::CpuBackend;
    use suf_compiler::gates;
    use suf_core::fixed::FixedPoint;
    use suf_runtime::harness::run_two_party;
    use suf_runtime::ir::Builder;
    use suf_runtime::plain::PlainWeights;
    let fp = FixedPoint::new(50, 12).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4, 8]).unwrap();
    let y = g.input("y", &[4, 8]).unwrap();
    let a = gates::gelu(&mut g, x).unwrap();
    let b = gates::gelu(&mut g, y).unwrap();
    let m = gates::max_last(&mut g, a).unwrap();
    g.output(m).unwrap();
    g.output(b).unwrap();
    let z = g.input("z", &[4, 8]).unwrap();
    let z = g.add_const(z, 5 << 12).unwrap(); // keep z ≥ 0 for nExp's domain
    let e = gates::nexp(&mut g, z).unwrap();
    g.output(e).unwrap();
    let prog = g.finish();
    let mut rng = Csprng::for_tests(9);
    let mut inputs = BTreeMap::new();
    for k in ["x", "y"] {
        inputs.insert(
            k.to_string(),
            (0..32)
                .map(|_| (rng.next_u64() % (1 << 16)).wrapping_sub(1 << 15) & ((1 << 50) - 1))
                .collect(),
        );
    }
    inputs.insert(
        "z".to_string(),
        (0..32).map(|_| rng.next_u64() % (12 << 12)).collect(),
    );
    let run = run_two_party(
        &prog,
        &CpuBackend::new(),
        &inputs,
        &PlainWeights::new(),
        Link::Mem,
        &mut rng,
    )
    .unwrap();
    assert!(run.matches_plain());
    // 2 (GeLU) + 3 (max tree over 8) rounds; nExp and the second GeLU run alongside.
    assert_eq!(run.reports[0].rounds, 5);
}

#[test]
fn key_minimising_smooth_variants_are_exact_and_accurate() {
    use std::sync::Arc;
    use suf_compiler::gates::{smooth_with, Prefer, Smooth};
    use suf_compiler::report::{approx_cases, errors};
    let (n, f) = (50, 12);
    let mut rng = Csprng::for_tests(8);
    for base in approx_cases(n, f).unwrap() {
        let Some(kind) = Smooth::ALL.into_iter().find(|k| k.name() == base.name) else {
            continue;
        };
        let case = suf_compiler::report::GateCase {
            build: Arc::new(move |g, x| smooth_with(g, x, kind, Prefer::Keys)),
            ..base.clone()
        };
        let xs = inputs_for(&case, n, 48, 48, &mut rng);
        let run = run_case(&case, n, f, &xs, Link::Mem, &mut rng).unwrap();
        assert!(run.matches_plain(), "{}", case.name);
        assert_eq!(run.reports[0].rounds, 2);
        let xs = inputs_for(&case, n, 1 << 18, 100_000, &mut rng);
        let st = errors(&case, n, f, &xs).unwrap();
        assert!(st.max_ulp <= 4.0, "{}: {}", case.name, st.max_ulp);
    }
}

#[test]
fn ranged_smooth_gates_equal_plain_across_their_mask_dependent_zones() {
    // The coarse part of the `_in` gates classifies inputs within 2^s below each cut by a
    // mask-dependent borrow; the final output must not depend on it. Every 3rd input of every
    // zone (and of the window edges), fresh masks.
    use suf_compiler::report::{approx_cases, Domain};
    let (n, f) = (37, 12);
    let mut rng = Csprng::for_tests(11);
    for case in approx_cases(n, f).unwrap() {
        if !case.name.ends_with("_in") {
            continue;
        }
        let nm = (1u64 << n) - 1;
        let (start, len) = case.window.unwrap();
        let mut xs: Vec<u64> = (0..len)
            .step_by(3)
            .map(|i| start.wrapping_add(i) & nm)
            .collect();
        if let Domain::Unsigned(_) = case.domain {
            // nExp: the zone [3A/4, A) and just above A
            xs.extend((len..len + 4096).map(|i| start.wrapping_add(i) & nm));
        }
        xs.retain(|&x| case.domain.contains(n, x));
        if xs.len() % 2 == 1 {
            xs.pop();
        }
        let run = run_case(&case, n, f, &xs, Link::Mem, &mut rng).unwrap();
        assert!(run.matches_plain(), "{}", case.name);
    }
}
