//! Writes the seed corpus of every target into `fuzz/corpus/TARGET/` (run from `fuzz/`:
//! `cargo +nightly run --release --bin make_corpus`). The seeds are valid inputs made by
//! the crates themselves, so the fuzzer starts past each parser's front door.

use std::path::Path;
use std::sync::Arc;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::gate::Truncate;
use suf_runtime::ir::Builder;
use suf_runtime::keystream::DealerStreams;

fn keystream_seeds() -> Vec<Vec<u8>> {
    let fp = FixedPoint::new(50, 12).expect("format");
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4]).expect("input");
    let y = g.mul(x, x).expect("mul");
    let z = g
        .gate(y, Arc::new(Truncate { f: 12, signed: true }))
        .expect("gate");
    g.output(z).expect("output");
    let prog = g.finish();
    let (ds, sinks) = DealerStreams::to_memory(
        prog.width(),
        Csprng::from_seed([3; 16]),
        [9; 16],
        prog.fingerprint(),
    )
    .expect("streams");
    run_dealer(&prog, &CpuBackend::new(), ds, &DealerWeights::new()).expect("dealer");
    // Party 0 reads: masks of both Mul operands, the Beaver correlation, the gate's mask,
    // the gate's key, the end. Party 1 derives its shares from its seed: blob, end.
    let s0: &[(u8, u16)] = &[(0, 4), (0, 4), (0, 4), (0, 4), (2, 0), (3, 0)];
    let s1: &[(u8, u16)] = &[(0, 4), (0, 4), (0, 4), (0, 4), (2, 0), (3, 0)];
    [s0, s1]
        .iter()
        .zip(&sinks)
        .map(|(script, sink)| {
            let mut v = vec![script.len() as u8];
            for (op, c) in script.iter() {
                v.push(*op);
                v.extend(c.to_le_bytes());
            }
            v.extend(sink.take());
            v
        })
        .collect()
}

fn spec_seeds() -> Vec<Vec<u8>> {
    use suf_compiler::gates;
    let mut v = Vec::new();
    let mut push = |n: u32, s: &suf_compiler::GateSpec| {
        let mut b = vec![(n - 8) as u8];
        b.extend(serde_json::to_vec(s).expect("json"));
        v.push(b);
    };
    push(50, &gates::relu_spec(50));
    push(
        50,
        &gates::floor_spec(50, 0, 12, 0, suf_compiler::Wrap::Dcf, "ars"),
    );
    push(
        37,
        &gates::floor_spec(37, 5, 3, 1, suf_compiler::Wrap::Drop, "tr"),
    );
    if let Ok(s) = gates::smooth_specs(gates::Smooth::Gelu, 50, 12, false) {
        push(50, &s.gate1);
        push(50, &s.select);
    }
    if let Ok(r) = gates::recip_specs(50, 12, 128) {
        push(50, &r.gate1);
    }
    if let Ok(r) = gates::rsqrt_specs(50, 12, 1, 1 << 20) {
        push(50, &r.poly);
    }
    v
}

fn main() {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    seeds.extend(suf_net::fuzz::samples());
    seeds.extend(suf_models::fuzz::samples());
    seeds.extend(suf_cli::fuzz::samples());
    seeds.extend(keystream_seeds().into_iter().map(|s| ("keystream", s)));
    seeds.extend(spec_seeds().into_iter().map(|s| ("gate_spec", s)));
    for (i, (target, bytes)) in seeds.iter().enumerate() {
        let dir = Path::new("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        std::fs::write(dir.join(format!("seed-{i:02}")), bytes).expect("seed");
    }
    println!("{} seeds", seeds.len());
}
