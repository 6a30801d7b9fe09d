//! The causal softmax on the lower triangle (`softmax_parts_causal`, `segment_max`, the
//! runtime's `gather`): equal to the masked square it replaces, bit for bit in the Plain
//! interpreter, and Party = Plain in two-party runs; the segment maxima exact on random
//! segmentations; gather's builder errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_nn::gates;
use suf_nn::layers::{
    softmax_parts_causal, softmax_parts_masked, square_of_tri, tri_of_square, Ctx, Mode,
};
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::{Builder, GATHER_ZERO};
use suf_runtime::plain::run_plain;

/// A deterministic stream of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [−2^{bits−1}, 2^{bits−1}) as a ring element of `fp`.
    fn signed(&mut self, fp: FixedPoint, bits: u32) -> u64 {
        let v = (self.next() >> (64 - bits)) as i64 - (1i64 << (bits - 1));
        fp.width.from_signed(v)
    }
}

/// Scores `[seq, seq]` within `a` signed bits (some rows constant, some at the range's ends).
fn scores(fp: FixedPoint, seq: usize, a: u32, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let lo = fp.width.from_signed(-(1i64 << (a - 1)));
    let hi = fp.width.from_signed((1i64 << (a - 1)) - 1);
    (0..seq * seq)
        .map(|i| match i / seq {
            1 => 77,
            2 if i % 2 == 0 => lo,
            2 => hi,
            _ => rng.signed(fp, a),
        })
        .collect()
}

/// The masked square (the form the causal models used before): a bias of −2^{a+2} above the
/// diagonal, declared range a + 4; e as `[seq, seq]` and 1/Σe.
fn square_form(fp: FixedPoint, seq: usize, a: u32) -> suf_runtime::ir::Program {
    let ctx = Ctx::new(fp, Mode::Public);
    let mut g = Builder::new(fp);
    let s = g.input("s", &[seq, seq]).unwrap();
    let big = fp.width.from_signed(-(1i64 << (a + 2)));
    let bias: Vec<u64> = (0..seq * seq)
        .map(|i| if i % seq > i / seq { big } else { 0 })
        .collect();
    let (e, inv, _) = softmax_parts_masked(&mut g, &ctx, s, Some(bias), None, a + 4, seq).unwrap();
    g.output(e).unwrap();
    g.output(inv).unwrap();
    g.finish()
}

/// The triangle form: gather, softmax on the triangle, e gathered back to the square.
fn triangle_form(fp: FixedPoint, seq: usize, a: u32) -> suf_runtime::ir::Program {
    let mut g = Builder::new(fp);
    let s = g.input("s", &[seq, seq]).unwrap();
    let lower = tri_of_square(seq).unwrap();
    let len = lower.len();
    let t = g.gather(s, lower, &[len]).unwrap();
    let (e, inv, _) = softmax_parts_causal(&mut g, t, seq, a, seq).unwrap();
    let e = g
        .gather(e, square_of_tri(seq).unwrap(), &[seq, seq])
        .unwrap();
    g.output(e).unwrap();
    g.output(inv).unwrap();
    g.finish()
}

/// e = nExp(max − x) on the triangle within 4 ULP of e^{−(max − x)} (the gate's contract), 0
/// above the diagonal; and, where the masked square's nExp has the same spec (n = 50: the
/// declared ranges a and a + 4 fit the same pieces), equal to the square form bit for bit.
#[test]
fn triangle_equals_masked_square_in_plain() {
    let be = CpuBackend::new();
    for (n, a, seq, same_spec) in [
        (50u32, 21u32, 1usize, true),
        (50, 21, 2, true),
        (50, 21, 17, true),
        (50, 25, 64, true),
        (37, 14, 33, false),
    ] {
        let fp = FixedPoint::new(n, 12).unwrap();
        let s = scores(fp, seq, a, 5 + seq as u64);
        let mut inputs = BTreeMap::new();
        inputs.insert("s".to_string(), s.clone());
        let w = BTreeMap::new();
        let tri = run_plain(&triangle_form(fp, seq, a), &be, &inputs, &w).unwrap();
        for r in 0..seq {
            let row: Vec<i64> = (0..=r)
                .map(|c| fp.width.to_signed(s[r * seq + c]))
                .collect();
            let max = *row.iter().max().unwrap();
            for c in 0..seq {
                let got = tri[0][r * seq + c];
                if c > r {
                    assert_eq!(
                        got, 0,
                        "n {n} seq {seq}: e above the diagonal at ({r}, {c})"
                    );
                    continue;
                }
                let want = (-((max - row[c]) as f64) / 4096.0).exp() * 4096.0;
                let err = (fp.width.to_signed(got) as f64 - want).abs();
                assert!(err <= 4.0, "n {n} seq {seq}: e({r}, {c}) off by {err} ULP");
            }
        }
        if same_spec {
            let sq = run_plain(&square_form(fp, seq, a), &be, &inputs, &w).unwrap();
            for (o, what) in [(0, "e"), (1, "1/Σe")] {
                let diff = sq[o].iter().zip(&tri[o]).filter(|(x, y)| x != y).count();
                assert_eq!(
                    diff, 0,
                    "n {n} seq {seq}: {what} differs in {diff} elements"
                );
            }
        }
    }
}

#[test]
fn triangle_two_parties_match_plain() {
    let be = CpuBackend::new();
    for (n, a, seq) in [(50u32, 21u32, 19usize), (37, 14, 8)] {
        let fp = FixedPoint::new(n, 12).unwrap();
        let mut inputs = BTreeMap::new();
        inputs.insert("s".to_string(), scores(fp, seq, a, 99));
        let mut rng = Csprng::for_tests(3);
        let prog = triangle_form(fp, seq, a);
        let r = run_two_party(&prog, &be, &inputs, &BTreeMap::new(), Link::Mem, &mut rng).unwrap();
        assert!(
            r.matches_plain(),
            "n {n} seq {seq}: Party differs from Plain"
        );
    }
}

#[test]
fn segment_maxima_are_exact() {
    let be = CpuBackend::new();
    let fp = FixedPoint::new(40, 12).unwrap();
    let bits = 20;
    let mut rng = Rng(0x5eed);
    for case in 0..6 {
        // Random segmentations with lengths 1..=40, singletons and powers of two included.
        let mut lens: Vec<usize> = (0..7).map(|_| 1 + (rng.next() % 40) as usize).collect();
        lens.extend([1, 1, 2, 32, 33][..(case % 5) + 1].iter());
        let total: usize = lens.iter().sum();
        let xs: Vec<u64> = (0..total).map(|_| rng.signed(fp, bits)).collect();
        let mut g = Builder::new(fp);
        let x = g.input("x", &[total]).unwrap();
        let m = gates::segment_max(&mut g, x, &lens, bits).unwrap();
        g.output(m).unwrap();
        let prog = g.finish();
        let mut inputs = BTreeMap::new();
        inputs.insert("x".to_string(), xs.clone());
        let mut crng = Csprng::for_tests(case as u64);
        let r = run_two_party(&prog, &be, &inputs, &BTreeMap::new(), Link::Mem, &mut crng).unwrap();
        assert!(r.matches_plain(), "case {case}: Party differs from Plain");
        let mut off = 0;
        let want: Vec<u64> = lens
            .iter()
            .map(|&l| {
                let seg = &xs[off..off + l];
                off += l;
                let best = seg.iter().map(|&v| fp.width.to_signed(v)).max().unwrap();
                fp.width.from_signed(best)
            })
            .collect();
        assert_eq!(r.outputs[0], want, "case {case}: lengths {lens:?}");
        // Rounds: ⌈log2 max length⌉ comparisons in sequence (one opening each).
        let depth = usize::BITS - (lens.iter().max().unwrap() - 1).leading_zeros();
        assert_eq!(r.reports[0].rounds as u32, depth, "case {case}");
    }
}

#[test]
fn gather_refuses_bad_indices_and_shapes() {
    let fp = FixedPoint::new(40, 12).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[2, 3]).unwrap();
    let ok = g
        .gather(x, Arc::from(vec![5u32, GATHER_ZERO, 0]), &[3])
        .unwrap();
    assert_eq!(g.shape(ok), &[3]);
    assert!(
        g.gather(x, Arc::from(vec![6u32]), &[1]).is_err(),
        "index past the end"
    );
    assert!(
        g.gather(x, Arc::from(vec![0u32, 1]), &[3]).is_err(),
        "length ≠ shape"
    );
    assert!(
        g.gather(x, Arc::from(Vec::<u32>::new()), &[]).is_err(),
        "no shape"
    );
    assert!(
        gates::segment_max(&mut g, x, &[3, 2], 20).is_err(),
        "lengths short of the input"
    );
    assert!(
        gates::segment_max(&mut g, x, &[6, 0], 20).is_err(),
        "an empty segment"
    );
    // Plain: picked values and public zeros.
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4]).unwrap();
    let y = g
        .gather(x, Arc::from(vec![3u32, GATHER_ZERO, 3, 0]), &[2, 2])
        .unwrap();
    g.output(y).unwrap();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), vec![10, 11, 12, 13]);
    let out = run_plain(&g.finish(), &CpuBackend::new(), &inputs, &BTreeMap::new()).unwrap();
    assert_eq!(out[0], vec![13, 0, 13, 10]);
}
