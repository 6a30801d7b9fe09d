//! Every protocol through the Party interpreter (two threads, in-memory and TCP) equals the
//! Plain interpreter bit for bit, on random inputs with the extremes ±2^{n−1}, 0 and −1.

use std::collections::BTreeMap;
use std::sync::Arc;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::{Builder, Program};
use suf_runtime::plain::PlainWeights;
use suf_runtime::testing::Truncate;

/// Random ring values with the extremes mixed in.
fn values(w: BitWidth, count: usize, rng: &mut Csprng) -> Vec<u64> {
    let ext = [0, 1, w.mask(), w.half(), w.half() - 1, w.half() + 1];
    (0..count)
        .map(|i| if i < ext.len() { ext[i] } else { rng.ring(w) })
        .collect()
}

/// A program exercising every linear protocol, with its inputs and private weights.
fn all_ops(n: u32, rng: &mut Csprng) -> (Program, BTreeMap<String, Vec<u64>>, PlainWeights) {
    let fp = FixedPoint::new(n, (n / 4).max(1)).unwrap();
    let w = fp.width;
    let (r, c, k) = (5, 7, 3);
    let mut g = Builder::new(fp);
    g.layer("lin");
    let x = g.input("x", &[r, c]).unwrap();
    let y = g.input("y", &[r, c]).unwrap();
    let z = g.input("z", &[c, k]).unwrap();
    let col = g.input("col", &[r, 1]).unwrap();
    let a = g.add(x, y).unwrap();
    let s = g.sub(a, y).unwrap();
    let s = g.neg(s).unwrap();
    let s = g.add_const(s, w.mask()).unwrap();
    let s = g.mul_const(s, 3).unwrap();
    let bias: Vec<u64> = values(w, c, rng);
    let s = g.add_pub(s, Arc::new(bias)).unwrap();
    let scale: Vec<u64> = values(w, r * c, rng);
    let s = g.mul_pub(s, Arc::new(scale)).unwrap();
    let wp: Vec<u64> = values(w, c * k, rng);
    let mp = g.matmul_pub(s, Arc::new(wp), c, k).unwrap();
    g.output(mp).unwrap();
    g.layer("beaver");
    let m = g.mul(x, y).unwrap();
    g.output(m).unwrap();
    let sq = g.square(x).unwrap();
    g.output(sq).unwrap();
    let mm = g.matmul(x, z).unwrap();
    g.output(mm).unwrap();
    g.private_weight("W", c, k).unwrap();
    let pw = g.matmul_privw(x, "W").unwrap();
    g.output(pw).unwrap();
    let rm = g.row_mul(x, col).unwrap();
    g.output(rm).unwrap();
    let sum = g.sum_last(rm).unwrap();
    g.output(sum).unwrap();
    let t = g.transpose(x).unwrap();
    let t = g.reshape(t, &[c * r]).unwrap();
    g.output(t).unwrap();
    let sl = g.slice_cols(x, 2, 5).unwrap();
    let cc = g.concat_cols(&[sl, x]).unwrap();
    g.output(cc).unwrap();
    // A chain of products: depth > 1 rounds.
    let m2 = g.mul(m, sq).unwrap();
    let m3 = g.mul(m2, x).unwrap();
    g.output(m3).unwrap();
    g.layer("gates");
    let tr = g
        .gate(
            x,
            Arc::new(Truncate {
                f: fp.frac,
                signed: false,
            }),
        )
        .unwrap();
    g.output(tr).unwrap();
    let ars = g
        .gate(
            m,
            Arc::new(Truncate {
                f: fp.frac,
                signed: true,
            }),
        )
        .unwrap();
    g.output(ars).unwrap();
    let ars2 = g
        .gate(
            y,
            Arc::new(Truncate {
                f: fp.frac,
                signed: true,
            }),
        )
        .unwrap();
    g.output(ars2).unwrap();
    let prog = g.finish();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), values(w, r * c, rng));
    inputs.insert("y".to_string(), values(w, r * c, rng));
    inputs.insert("z".to_string(), values(w, c * k, rng));
    inputs.insert("col".to_string(), values(w, r, rng));
    let mut weights = PlainWeights::new();
    weights.insert("W".to_string(), values(w, c * k, rng));
    (prog, inputs, weights)
}

fn check(n: u32, link: Link, seed: u64) {
    let mut rng = Csprng::for_tests(seed);
    let (prog, inputs, weights) = all_ops(n, &mut rng);
    let be = CpuBackend::new();
    let run = run_two_party(&prog, &be, &inputs, &weights, link, &mut rng).unwrap();
    assert_eq!(run.outputs.len(), run.plain.len());
    for (i, (s, p)) in run.outputs.iter().zip(&run.plain).enumerate() {
        assert_eq!(s, p, "n={n} output {i} differs");
    }
    // Rounds: 3 for the chain m → m2 → m3; gates and products in parallel otherwise.
    assert_eq!(run.reports[0].rounds, 3);
    assert_eq!(run.reports[0].bytes_sent, run.reports[1].bytes_recv);
    assert!(run.deal.key_bytes[1] < run.deal.key_bytes[0]);
}

#[test]
fn party_equals_plain_mem() {
    for (i, n) in [16u32, 37, 50, 64].into_iter().enumerate() {
        check(n, Link::Mem, 10 + i as u64);
    }
}

#[test]
fn party_equals_plain_tcp() {
    for (i, n) in [16u32, 37, 50, 64].into_iter().enumerate() {
        check(n, Link::Tcp, 20 + i as u64);
    }
}

fn bits_prog(n: u32, rng: &mut Csprng) -> (Program, BTreeMap<String, Vec<u64>>) {
    use suf_runtime::testing::LessThan;
    let fp = FixedPoint::new(n, 4).unwrap();
    let w = fp.width;
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4, 9]).unwrap();
    let y = g.input("y", &[4, 9]).unwrap();
    let drelu = g.gate(x, Arc::new(LessThan { beta: w.half() })).unwrap();
    let lt = g
        .gate(
            y,
            Arc::new(LessThan {
                beta: 12345 & w.mask(),
            }),
        )
        .unwrap();
    let lt0 = g.gate(y, Arc::new(LessThan { beta: 0 })).unwrap();
    g.output(drelu).unwrap();
    g.output(lt).unwrap();
    g.output(lt0).unwrap();
    let a = g.and(drelu, lt).unwrap();
    g.output(a).unwrap();
    let xo = g.add(drelu, lt).unwrap();
    let no = g.not(xo).unwrap();
    g.output(no).unwrap();
    let ar = g.b2a(a).unwrap();
    g.output(ar).unwrap();
    // ReLU-like: x · DReLU(x) with one product.
    let d = g.b2a(drelu).unwrap();
    let relu = g.mul(x, d).unwrap();
    g.output(relu).unwrap();
    let prog = g.finish();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), values(w, 36, rng));
    inputs.insert("y".to_string(), values(w, 36, rng));
    (prog, inputs)
}

#[test]
fn bits_and_comparisons() {
    for (i, n) in [16u32, 37, 50, 64].into_iter().enumerate() {
        let mut rng = Csprng::for_tests(40 + i as u64);
        let (prog, inputs) = bits_prog(n, &mut rng);
        let be = CpuBackend::new();
        for link in [Link::Mem, Link::Tcp] {
            let run =
                run_two_party(&prog, &be, &inputs, &PlainWeights::new(), link, &mut rng).unwrap();
            for (i, (s, p)) in run.outputs.iter().zip(&run.plain).enumerate() {
                assert_eq!(s, p, "n={n} {link:?} output {i}");
            }
            // lt, and, b2a: 3 rounds (drelu→b2a→mul is also 3).
            assert_eq!(run.reports[0].rounds, 3);
            let w = BitWidth::new(n).unwrap();
            let x = &inputs["x"];
            let relu: Vec<u64> = x
                .iter()
                .map(|&v| if w.to_signed(v) >= 0 { v } else { 0 })
                .collect();
            assert_eq!(run.outputs[6], relu);
        }
    }
}
