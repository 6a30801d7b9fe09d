//! Programs run one after another by the same servers, with outputs kept in shares as the
//! next programs' inputs (`suf_runtime::generate`).

use std::collections::BTreeMap;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::generate::{deal, Kept, Servers};
use suf_runtime::harness::Link;
use suf_runtime::ir::{Builder, Program};
use suf_runtime::{reconstruct, share_inputs};

fn fp() -> FixedPoint {
    FixedPoint::new(32, 8).unwrap()
}

/// out0 = x ⊙ c (opened), out1 = x + 1 (kept, appended to `c`); `rows` cached rows of c.
fn prog(rows: usize) -> Program {
    let mut g = Builder::new(fp());
    let x = g.input("x", &[1, 2]).unwrap();
    let c = if rows == 0 {
        x
    } else {
        let c = g.input("c", &[rows, 2]).unwrap();
        // Sum of the cached rows: [2, rows] · [rows, 1] → [2, 1] → [1, 2].
        let t = g.transpose(c).unwrap();
        let s = g.sum_last(t).unwrap();
        g.transpose(s).unwrap()
    };
    let p = g.mul(x, c).unwrap();
    g.output(p).unwrap();
    let k = g.add_const(x, 1).unwrap();
    g.output(k).unwrap();
    g.finish()
}

#[test]
fn kept_outputs_feed_the_next_programs_and_never_reach_the_client() {
    let be = CpuBackend::new();
    let w = fp().width;
    let mut rng = Csprng::for_tests(2);
    let what = Default::default();
    for link in [Link::Mem, Link::Tcp] {
        let mut s = Servers::new([&be, &be], &what, link, [7; 16]).unwrap();
        let kept = [Kept {
            output: 1,
            input: "c".into(),
        }];
        let xs: [[u64; 2]; 3] = [[3, 5], [2, 7], [4, 1]];
        let mut sum = [0u64; 2];
        for (t, x) in xs.iter().enumerate() {
            let p = prog(t);
            let (keys, rep) = deal(&p, &be, &Default::default(), [7; 16], &mut rng).unwrap();
            assert!(rep.key_bytes[0] > 0);
            let mut inp = BTreeMap::new();
            inp.insert("x".to_string(), x.to_vec());
            let out = s
                .run(&p, keys, share_inputs(w, &inp, &mut rng), &kept)
                .unwrap();
            assert_eq!(out.client_outputs, vec![0]);
            assert_eq!(out.to_client[0].len(), 1, "the kept output is not returned");
            let got = reconstruct(w, &out.to_client[0][0], &out.to_client[1][0]);
            let want: Vec<u64> = if t == 0 {
                x.iter().map(|v| v * v).collect()
            } else {
                x.iter().zip(&sum).map(|(a, b)| a * b).collect()
            };
            assert_eq!(got, want, "{link:?} step {t}");
            for (acc, v) in sum.iter_mut().zip(x) {
                *acc += v + 1;
            }
            assert_eq!(s.kept_len(0, "c"), 2 * (t + 1));
            assert_eq!(s.kept_len(1, "c"), 2 * (t + 1));
        }
    }
}

#[test]
fn bad_kept_outputs_and_clashing_inputs_are_errors() {
    let be = CpuBackend::new();
    let w = fp().width;
    let mut rng = Csprng::for_tests(3);
    let what = Default::default();
    let mut s = Servers::new([&be, &be], &what, Link::Mem, [1; 16]).unwrap();
    let p = prog(0);
    let mut inp = BTreeMap::new();
    inp.insert("x".to_string(), vec![1, 2]);
    let (keys, _) = deal(&p, &be, &Default::default(), [1; 16], &mut rng).unwrap();
    let bad = [Kept {
        output: 2,
        input: "c".into(),
    }];
    let e = s
        .run(&p, keys, share_inputs(w, &inp, &mut rng), &bad)
        .unwrap_err();
    assert!(e.to_string().contains("kept output 2"), "{e}");
    let ok = [Kept {
        output: 1,
        input: "c".into(),
    }];
    let (keys, _) = deal(&p, &be, &Default::default(), [1; 16], &mut rng).unwrap();
    s.run(&p, keys, share_inputs(w, &inp, &mut rng), &ok)
        .unwrap();
    // The client may not supply what the servers hold.
    let p1 = prog(1);
    inp.insert("c".to_string(), vec![0, 0]);
    let (keys, _) = deal(&p1, &be, &Default::default(), [1; 16], &mut rng).unwrap();
    let e = s
        .run(&p1, keys, share_inputs(w, &inp, &mut rng), &ok)
        .unwrap_err();
    assert!(e.to_string().contains("held by the servers"), "{e}");
}
