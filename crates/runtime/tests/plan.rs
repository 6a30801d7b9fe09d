//! Capacity planning against real runs: the plan of a program (closed forms, nothing run)
//! equals what a dealer and two parties actually do, byte for byte and round for round —
//! rounds, bytes sent and received per party (per operator and per layer too), the key stream
//! files' sizes and section counts, and the AES calls counted in each party's backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use suf_backend::{Backend, CpuBackend};
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_runtime::dealer::run_dealer;
use suf_runtime::gate::GateImpl;
use suf_runtime::harness::{run_two_party_on, Link};
use suf_runtime::ir::{Builder, Program, T};
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::plain::PlainWeights;
use suf_runtime::plan::{AesCounter, Plan};
use suf_runtime::testing::{LessThan, Truncate};
use suf_runtime::RtError;

fn values(w: BitWidth, count: usize, rng: &mut Csprng) -> Vec<u64> {
    (0..count).map(|_| rng.ring(w)).collect()
}

fn tr(f: u32, signed: bool) -> Arc<dyn GateImpl> {
    Arc::new(Truncate { f, signed })
}

/// Every interactive step kind, gate batches shared by two layers, a chain of rounds, a private
/// weight used twice and one never used.
fn program(n: u32, rng: &mut Csprng) -> (Program, BTreeMap<String, Vec<u64>>, PlainWeights) {
    let fp = FixedPoint::new(n, 5).unwrap();
    let w = fp.width;
    let (r, c, k) = (5, 7, 3);
    let mut g = Builder::new(fp);
    g.layer("input");
    let x = g.input("x", &[r, c]).unwrap();
    let y = g.input("y", &[r, c]).unwrap();
    let z = g.input("z", &[c, k]).unwrap();
    let col = g.input("col", &[r, 1]).unwrap();
    g.layer("beaver");
    let m = g.mul(x, y).unwrap();
    let sq = g.square(x).unwrap();
    let mm = g.matmul(x, z).unwrap();
    g.private_weight("W", c, k).unwrap();
    g.private_weight("U", 2, 3).unwrap();
    let pw = g.matmul_privw(x, "W").unwrap();
    let pw2 = g.matmul_privw(y, "W").unwrap();
    let rm = g.row_mul(x, col).unwrap();
    let m2 = g.mul(m, sq).unwrap();
    for t in [mm, pw, pw2, rm, m2] {
        g.output(t).unwrap();
    }
    // Two layers whose truncations open in the same round: one shared key batch.
    g.layer("gates.a");
    let ta = g.gate(x, tr(fp.frac, true)).unwrap();
    let ua = g.gate(m, tr(3, false)).unwrap();
    g.layer("gates.b");
    let tb = g.gate(y, tr(fp.frac, true)).unwrap();
    let tb2 = g.gate(tb, tr(fp.frac, true)).unwrap();
    for t in [ta, ua, tb2] {
        g.output(t).unwrap();
    }
    g.layer("bits");
    let d = g.gate(x, Arc::new(LessThan { beta: w.half() })).unwrap();
    let l = g.gate(y, Arc::new(LessThan { beta: 999 })).unwrap();
    let a = g.and(d, l).unwrap();
    let nx = g.not(a).unwrap();
    let b = g.b2a(nx).unwrap();
    let relu = g.mul(b, x).unwrap();
    g.output(relu).unwrap();
    let prog = g.finish();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), values(w, r * c, rng));
    inputs.insert("y".to_string(), values(w, r * c, rng));
    inputs.insert("z".to_string(), values(w, c * k, rng));
    inputs.insert("col".to_string(), values(w, r, rng));
    let mut weights = PlainWeights::new();
    weights.insert("W".to_string(), values(w, c * k, rng));
    weights.insert("U".to_string(), values(w, 6, rng));
    (prog, inputs, weights)
}

/// The plan against a real run of `prog` (in memory) and against key files written by a dealer.
fn check(prog: &Program, inputs: &BTreeMap<String, Vec<u64>>, wts: &PlainWeights, seed: u64) {
    let plan = Plan::of(prog).unwrap();
    let mut rng = Csprng::for_tests(seed);
    let cpu = CpuBackend::new();
    let (c0, c1) = (AesCounter::new(&cpu), AesCounter::new(&cpu));
    let run = run_two_party_on(prog, &cpu, [&c0, &c1], inputs, wts, Link::Mem, &mut rng).unwrap();
    assert!(run.matches_plain());
    assert_eq!(plan.key_bytes, run.deal.key_bytes, "key stream bytes");
    assert_eq!(plan.rounds as usize, run.deal.rounds);
    assert_eq!(plan.aes, [c0.calls(), c1.calls()], "AES calls");
    assert!(plan.aes[0] > 0);
    for (p, rep) in run.reports.iter().enumerate() {
        assert_eq!(plan.rounds, rep.rounds, "party {p} rounds");
        assert_eq!(plan.bytes_sent[p], rep.bytes_sent, "party {p} sent");
        assert_eq!(plan.bytes_recv[p], rep.bytes_recv, "party {p} received");
        // Per operator: every measured (layer, op) that opened values is planned exactly.
        let opened: Vec<_> = rep.ops.iter().filter(|o| o.bytes_sent > 0).collect();
        let planned = plan.ops.iter().filter(|o| o.bytes_sent > 0).count();
        assert_eq!(opened.len(), planned);
        for o in opened {
            let q = plan
                .ops
                .iter()
                .find(|q| q.layer == o.layer && q.op == o.op)
                .unwrap_or_else(|| panic!("{}/{} not planned", o.layer, o.op));
            assert_eq!(
                (q.rounds, q.bytes_sent, q.bytes_recv),
                (o.rounds, o.bytes_sent, o.bytes_recv),
                "{}/{}",
                o.layer,
                o.op
            );
        }
        for l in rep.layers.iter().filter(|l| l.bytes_sent > 0) {
            let q = plan.layers.iter().find(|q| q.layer == l.layer).unwrap();
            assert_eq!(
                (q.rounds, q.bytes_sent, q.bytes_recv),
                (l.rounds, l.bytes_sent, l.bytes_recv),
                "layer {}",
                l.layer
            );
        }
    }
    // Parts add up to the whole.
    for p in 0..2 {
        let ops: u64 = plan.ops.iter().map(|o| o.key_bytes[p]).sum();
        let layers: u64 = plan.layers.iter().map(|o| o.key_bytes[p]).sum();
        assert_eq!(ops + suf_runtime::keystream::FIXED_BYTES, plan.key_bytes[p]);
        assert_eq!(layers, ops);
        assert_eq!(plan.ops.iter().map(|o| o.aes).sum::<u64>(), plan.aes[p]);
        assert_eq!(
            plan.ops.iter().map(|o| o.sections[p]).sum::<u64>(),
            plan.sections[p]
        );
    }
    // The files a dealer writes, and their sections.
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("p0.keys"), dir.path().join("p1.keys")];
    let ds = DealerStreams::to_files(
        prog.width(),
        Csprng::for_tests(seed + 1),
        [1; 16],
        prog.fingerprint(),
        [&paths[0], &paths[1]],
    )
    .unwrap();
    let (_, rw) = suf_runtime::mask_weights(prog.width(), wts, &mut rng);
    let rep = run_dealer(prog, &cpu, ds, &rw).unwrap();
    for p in 0..2 {
        let len = std::fs::metadata(&paths[p]).unwrap().len();
        assert_eq!(len, plan.key_bytes[p], "file of party {p}");
        assert_eq!(rep.key_bytes[p], len);
        let s = PartyStream::open_file(&paths[p]).unwrap();
        assert_eq!(
            s.sections() as u64,
            plan.sections[p],
            "sections of party {p}"
        );
    }
}

#[test]
fn plan_equals_a_real_run() {
    for (i, n) in [16u32, 37, 50, 64].into_iter().enumerate() {
        let mut rng = Csprng::for_tests(70 + i as u64);
        let (prog, inputs, wts) = program(n, &mut rng);
        let plan = Plan::of(&prog).unwrap();
        // The two layers' truncations share one batch (split by elements); the unused weight
        // still costs its R_W section.
        assert_eq!(plan.shared_batches, 1);
        assert!(plan.ops.iter().any(|o| o.layer == "(unused)"));
        check(&prog, &inputs, &wts, 100 + i as u64);
    }
}

/// A model-like program: `blocks` blocks labelled `block{l}.…` between an input and a tail.
fn blocks_prog(blocks: usize) -> Program {
    let fp = FixedPoint::new(37, 8).unwrap();
    let mut g = Builder::new(fp);
    g.layer("input");
    let mut h: T = g.input("x", &[4, 6]).unwrap();
    for l in 0..blocks {
        g.layer(&format!("block{l}.a"));
        g.private_weight(&format!("w{l}"), 6, 6).unwrap();
        let p = g.matmul_privw(h, &format!("w{l}")).unwrap();
        let p = g.gate(p, tr(8, true)).unwrap();
        g.layer(&format!("block{l}.b"));
        let s = g.square(p).unwrap();
        let s = g.gate(s, tr(8, true)).unwrap();
        h = g.add(h, s).unwrap();
    }
    g.layer("tail");
    let o = g.gate(h, tr(2, false)).unwrap();
    g.output(o).unwrap();
    g.finish()
}

#[test]
fn repeating_the_first_block_equals_building_all_blocks() {
    let one = Plan::of(&blocks_prog(1)).unwrap();
    for blocks in [1usize, 2, 5] {
        let full = Plan::of(&blocks_prog(blocks)).unwrap();
        let rep = one.repeat_block(blocks).unwrap();
        assert_eq!(
            serde_json::to_value(&rep).unwrap(),
            serde_json::to_value(&full).unwrap(),
            "{blocks} blocks"
        );
    }
    // And against a real run of the full program.
    let prog = blocks_prog(3);
    let mut wts = PlainWeights::new();
    let mut rng = Csprng::for_tests(5);
    for l in 0..3 {
        wts.insert(format!("w{l}"), values(prog.width(), 36, &mut rng));
    }
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), values(prog.width(), 24, &mut rng));
    check(&prog, &inputs, &wts, 9);
}

#[test]
fn repeat_block_refuses_what_it_cannot_repeat() {
    let one = Plan::of(&blocks_prog(1)).unwrap();
    assert!(one.repeat_block(0).is_err());
    let two = Plan::of(&blocks_prog(2)).unwrap();
    let e = two.repeat_block(3).unwrap_err().to_string();
    assert!(e.contains("more than one block"), "{e}");
    let none = Plan::of(&program(37, &mut Csprng::for_tests(1)).0).unwrap();
    assert!(none.repeat_block(2).is_err());
    // A round that mixes block 0 with the tail.
    let fp = FixedPoint::new(37, 8).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[2, 2]).unwrap();
    g.layer("block0.a");
    let a = g.gate(x, tr(3, true)).unwrap();
    g.layer("tail");
    let b = g.gate(x, tr(3, true)).unwrap();
    g.output(a).unwrap();
    g.output(b).unwrap();
    let e = Plan::of(&g.finish())
        .unwrap()
        .repeat_block(2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixes block 0"), "{e}");
}

/// A gate that cannot say what its keys cost.
struct Opaque;

impl GateImpl for Opaque {
    fn name(&self) -> String {
        "opaque".into()
    }
    fn plain(&self, _: BitWidth, x: &[u64]) -> Vec<u64> {
        x.to_vec()
    }
    fn deal(&self, _: BitWidth, _: &[u64], _: &mut Csprng) -> suf_runtime::Result<[Vec<u8>; 2]> {
        Ok([Vec::new(), Vec::new()])
    }
    fn eval(
        &self,
        _: BitWidth,
        _: u8,
        _: suf_fss::KeyRef<'_>,
        x: &[u64],
        _: &dyn Backend,
    ) -> suf_runtime::Result<Vec<u64>> {
        Ok(x.to_vec())
    }
}

#[test]
fn a_gate_without_closed_forms_is_a_typed_error() {
    let mut g = Builder::new(FixedPoint::new(16, 4).unwrap());
    let x = g.input("x", &[3]).unwrap();
    let y = g.gate(x, Arc::new(Opaque)).unwrap();
    g.output(y).unwrap();
    match Plan::of(&g.finish()) {
        Err(RtError::Shape { op: "plan", detail }) => {
            assert!(
                detail.contains("opaque") && detail.contains("key bytes"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A truncation the ring cannot hold reports nothing either.
    assert_eq!(tr(16, true).key_bytes(BitWidth::new(16).unwrap(), 4), None);
    assert_eq!(tr(16, true).aes_calls(BitWidth::new(16).unwrap(), 4), None);
}
