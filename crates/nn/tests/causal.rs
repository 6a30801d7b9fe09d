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
use suf_nn::layers::{softmax_parts_causal, softmax_parts_masked, Causal, Ctx, Mode};
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

/// Scores `[rows, keys]` within `a` signed bits (some rows constant, some at the range's
/// ends).
fn scores(fp: FixedPoint, rows: usize, keys: usize, a: u32, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let lo = fp.width.from_signed(-(1i64 << (a - 1)));
    let hi = fp.width.from_signed((1i64 << (a - 1)) - 1);
    (0..rows * keys)
        .map(|i| match i / keys {
            1 => 77,
            2 if i % 2 == 0 => lo,
            2 => hi,
            _ => rng.signed(fp, a),
        })
        .collect()
}

/// The masked matrix (the form the causal models used before): a bias of −2^{a+2} on the
/// scores a row cannot see, declared range a + 4; e as `[group·rows, keys]` and 1/Σe.
fn masked_form(fp: FixedPoint, lay: &Causal, a: u32) -> suf_runtime::ir::Program {
    let ctx = Ctx::new(fp, Mode::Public);
    let mut g = Builder::new(fp);
    let rows = lay.group * lay.rows;
    let s = g.input("s", &[rows, lay.keys]).unwrap();
    let big = fp.width.from_signed(-(1i64 << (a + 2)));
    let lens = lay.lens();
    let bias: Vec<u64> = (0..rows * lay.keys)
        .map(|i| {
            if i % lay.keys >= lens[i / lay.keys] {
                big
            } else {
                0
            }
        })
        .collect();
    let (e, inv, _) =
        softmax_parts_masked(&mut g, &ctx, s, Some(bias), None, a + 4, lay.keys).unwrap();
    g.output(e).unwrap();
    g.output(inv).unwrap();
    g.finish()
}

/// The triangle form: gather, softmax on the visible scores, e gathered back to the matrix.
fn triangle_form(fp: FixedPoint, lay: &Causal, a: u32) -> suf_runtime::ir::Program {
    let mut g = Builder::new(fp);
    let rows = lay.group * lay.rows;
    let s = g.input("s", &[rows, lay.keys]).unwrap();
    let lower = lay.from_matrix().unwrap();
    let len = lower.len();
    let t = g.gather(s, lower, &[len]).unwrap();
    let (e, inv, _) = softmax_parts_causal(&mut g, t, lay, a, lay.keys).unwrap();
    let e = g
        .gather(e, lay.to_matrix().unwrap(), &[rows, lay.keys])
        .unwrap();
    g.output(e).unwrap();
    g.output(inv).unwrap();
    g.finish()
}

/// e = nExp(max − x) on the visible scores within 4 ULP of e^{−(max − x)} (the gate's
/// contract), 0 elsewhere; and, where the masked matrix's nExp has the same spec (n ≥ 48 here:
/// the declared ranges a and a + 4 fit the same pieces), equal to the masked form bit for
/// bit. Squares of self-attention, and a decoder's stacked query heads at an offset.
#[test]
fn triangle_equals_masked_matrix_in_plain() {
    let be = CpuBackend::new();
    let sq = Causal::square;
    let stacked = |rows, pos0, group| Causal {
        rows,
        keys: pos0 + rows,
        pos0,
        group,
    };
    for (n, a, lay, same_spec) in [
        (50u32, 21u32, sq(1), true),
        (50, 21, sq(2), true),
        (50, 21, sq(17), true),
        (50, 25, sq(64), true),
        (50, 21, stacked(4, 3, 2), true),
        (48, 20, stacked(5, 0, 3), true),
        (37, 14, sq(33), false),
    ] {
        let fp = FixedPoint::new(n, 12).unwrap();
        let (rows, keys) = (lay.group * lay.rows, lay.keys);
        let s = scores(fp, rows, keys, a, 5 + rows as u64);
        let mut inputs = BTreeMap::new();
        inputs.insert("s".to_string(), s.clone());
        let w = BTreeMap::new();
        let tri = run_plain(&triangle_form(fp, &lay, a), &be, &inputs, &w).unwrap();
        let lens = lay.lens();
        for r in 0..rows {
            let row: Vec<i64> = (0..lens[r])
                .map(|c| fp.width.to_signed(s[r * keys + c]))
                .collect();
            let max = *row.iter().max().unwrap();
            for c in 0..keys {
                let got = tri[0][r * keys + c];
                if c >= lens[r] {
                    assert_eq!(got, 0, "{lay:?}: e of a masked score at ({r}, {c})");
                    continue;
                }
                let want = (-((max - row[c]) as f64) / 4096.0).exp() * 4096.0;
                let err = (fp.width.to_signed(got) as f64 - want).abs();
                assert!(err <= 4.0, "n {n} {lay:?}: e({r}, {c}) off by {err} ULP");
            }
        }
        if same_spec {
            let mk = run_plain(&masked_form(fp, &lay, a), &be, &inputs, &w).unwrap();
            for (o, what) in [(0, "e"), (1, "1/Σe")] {
                let diff = mk[o].iter().zip(&tri[o]).filter(|(x, y)| x != y).count();
                assert_eq!(diff, 0, "n {n} {lay:?}: {what} differs in {diff} elements");
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
        inputs.insert("s".to_string(), scores(fp, seq, seq, a, 99));
        let mut rng = Csprng::for_tests(3);
        let prog = triangle_form(fp, &Causal::square(seq), a);
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
    let huge = Causal {
        rows: usize::MAX / 2,
        keys: 3,
        pos0: 0,
        group: 2,
    };
    assert!(
        huge.to_matrix().is_err(),
        "a score matrix beyond the address space"
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
