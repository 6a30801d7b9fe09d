//! Mask-independent shapes: for every gate, key sizes and message sizes are identical for
//! every choice of masks and inputs (constant, random and extreme inputs; zero, all-ones and
//! random masks; several dealer seeds).

use suf_compiler::report::{cases, program_of, run_case, Domain, GateCase};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_runtime::harness::Link;
use suf_runtime::ir::Op;

fn input_sets(case: &GateCase, n: u32, len: usize, rng: &mut Csprng) -> Vec<Vec<u64>> {
    let w = BitWidth::new(n).unwrap();
    let (lo, hi) = match case.domain {
        Domain::Whole => (w.half(), w.half() - 1),
        Domain::NonNeg => (0, w.half() - 1),
        Domain::Gap => (w.from_signed(-(1i64 << (n - 2)) + 1), (1 << (n - 2)) - 1),
        Domain::Range(lo, hi) => (lo, hi),
        Domain::Signed(b) => (w.from_signed(-(1i64 << (b - 1))), (1 << (b - 1)) - 1),
        Domain::Unsigned(b) => (0, (1 << b) - 1),
    };
    let rand: Vec<u64> = (0..len)
        .map(|_| loop {
            let x = rng.ring(w);
            if case.domain.contains(n, x) {
                break x;
            }
            match case.domain {
                Domain::Range(a, b) => break a + rng.below(b - a + 1),
                Domain::Signed(b) => {
                    break w.from_signed(rng.below(1 << b) as i64 - (1i64 << (b - 1)))
                }
                Domain::Unsigned(b) => break rng.below(1 << b),
                _ => {}
            }
        })
        .collect();
    vec![
        vec![lo; len],
        vec![hi; len],
        (0..len).map(|i| if i % 2 == 0 { lo } else { hi }).collect(),
        rand,
    ]
}

#[test]
fn key_and_message_sizes_do_not_depend_on_masks_or_inputs() {
    let (n, f) = (50, 12);
    let mut rng = Csprng::for_tests(11);
    for case in cases(n, f).unwrap() {
        let len = 40;
        let mut seen: Option<(Vec<u64>, u64)> = None;
        for (i, xs) in input_sets(&case, n, len, &mut rng).into_iter().enumerate() {
            let mut r2 = Csprng::for_tests(100 + i as u64);
            let run = run_case(&case, n, f, &xs, Link::Mem, &mut r2).unwrap();
            assert!(run.matches_plain(), "{}", case.name);
            let shape = vec![
                run.deal.key_bytes[0],
                run.deal.key_bytes[1],
                run.reports[0].bytes_sent,
                run.reports[0].bytes_recv,
                run.reports[1].bytes_sent,
                run.reports[1].bytes_recv,
            ];
            match &seen {
                None => seen = Some((shape, run.reports[0].rounds)),
                Some((s, r)) => {
                    assert_eq!(&shape, s, "{}: sizes differ for input set {i}", case.name);
                    assert_eq!(run.reports[0].rounds, *r, "{}", case.name);
                }
            }
        }
    }
}

#[test]
fn gate_key_blobs_have_the_same_size_for_any_masks() {
    let (n, f) = (50, 12);
    let w = BitWidth::new(n).unwrap();
    let mut rng = Csprng::for_tests(12);
    for case in cases(n, f).unwrap() {
        let prog = program_of(&case, n, f, 24).unwrap();
        for node in &prog.nodes {
            if let Op::Gate(a, g) = &node.op {
                let cnt = prog.numel(*a);
                let mask_sets: Vec<Vec<u64>> = vec![
                    vec![0; cnt],
                    vec![w.mask(); cnt],
                    vec![w.half(); cnt],
                    (0..cnt).map(|_| rng.ring(w)).collect(),
                    (0..cnt).map(|_| rng.ring(w)).collect(),
                ];
                let mut lens: Option<[usize; 2]> = None;
                for ms in &mask_sets {
                    let [b0, b1] = g.deal(w, ms, &mut rng).unwrap();
                    let l = [b0.len(), b1.len()];
                    if let Some(p) = lens {
                        assert_eq!(
                            p,
                            l,
                            "{} / {}: blob size depends on the masks",
                            case.name,
                            g.name()
                        );
                    }
                    lens = Some(l);
                }
            }
        }
    }
}
