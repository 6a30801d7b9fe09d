//! The dealer's host-side work per gate batch, and a byte-identity check of its output.
//!
//! `gates`: every distinct gate of a zoo model's program (public weights), dealt once at its
//! largest batch of one round (what the runtime dealer hands one task) through
//! `GateImpl::deal` with fixed seeds; prints per gate the wall time, the time inside the DCF
//! and DPF generators (`suf_fss::dealer::GenTimes`), the rest ("other": masks, payloads,
//! share packing, key serialization, blob assembly) and a checksum of both blobs
//! (`suf_fss::keyfmt::body_checksum`), so that a change of the host path can be timed and
//! checked against the previous build's output.
//!
//! `stream`: the whole program dealt by the runtime dealer into memory with fixed seeds; prints
//! the dealer's report and the checksums of both parties' streams, and writes the streams to
//! `DIR/p0.keys`, `DIR/p1.keys` when a folder is given (to compare with `cmp`).
//!
//! `cargo run -p suf-nn --release --example deal_bench -- gates bert-base 128 [REPS [NAME]]`
//! (NAME: only the gates whose name contains it)
//! `cargo run -p suf-nn --release --example deal_bench -- stream bert-tiny 128 [DIR]`

use std::collections::BTreeMap;
use std::time::Instant;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_fss::dealer::{swap_gen_times, GenTimes};
use suf_models::{config::zoo, Weights};
use suf_nn::layers::Mode;
use suf_nn::model::build;
use suf_runtime::ir::Op;

fn sum(d: &[u8]) -> String {
    format!("{:016x}", suf_fss::keyfmt::body_checksum(d))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("gates", String::as_str);
    let model = args.get(1).map_or("bert-base", String::as_str);
    let seq: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(128);
    let extra = args.get(3);
    let cfg = zoo(model).expect("zoo model");
    let fp = FixedPoint::new(cfg.ring_bits, cfg.frac_bits).expect("fixed point");
    let built = build(&cfg, &Weights::synthetic(7), fp, Mode::Public, seq, None).expect("build");
    let prog = built.prog;
    match what {
        "stream" => stream(&prog, extra),
        _ => gates(
            &prog,
            extra.and_then(|a| a.parse().ok()).unwrap_or(1),
            args.get(4).map_or("", String::as_str),
        ),
    }
}

fn stream(prog: &suf_runtime::ir::Program, dir: Option<&String>) {
    let (ds, sinks) = suf_runtime::keystream::DealerStreams::to_memory(
        prog.width(),
        Csprng::for_tests(6),
        [7; 16],
        prog.fingerprint(),
    )
    .expect("streams");
    let t = Instant::now();
    let rep = suf_runtime::dealer::run_dealer(prog, &CpuBackend::default(), ds, &BTreeMap::new())
        .expect("dealer");
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let [a, b] = sinks;
    let (a, b) = (a.take(), b.take());
    println!(
        "stream: {wall:.0} ms wall, dealing {:.0} ms, writing {:.0} ms; split: DCF {:.0} ms, DPF {:.0} ms, other gate work {:.0} ms, mask products {:.0} ms",
        rep.deal_ms,
        rep.write_ms,
        rep.split_ms.dcf,
        rep.split_ms.dpf,
        rep.split_ms.gate_other,
        rep.split_ms.products
    );
    for (p, s) in [(0, &a), (1, &b)] {
        println!("p{p} {} bytes, checksum {}", s.len(), sum(s));
        if let Some(d) = dir {
            std::fs::write(std::path::Path::new(d).join(format!("p{p}.keys")), s).expect("write");
        }
    }
}

fn gates(prog: &suf_runtime::ir::Program, reps: usize, only: &str) {
    // Each gate name at the element count of its largest node (a round's batch of a name
    // can join several nodes; one node is the unit that matters here).
    let mut by_name: BTreeMap<String, (usize, std::sync::Arc<dyn suf_runtime::gate::GateImpl>)> =
        BTreeMap::new();
    for nd in &prog.nodes {
        if let Op::Gate(a, g) = &nd.op {
            if !g.name().contains(only) {
                continue;
            }
            let e = prog.numel(*a);
            let ent = by_name.entry(g.name()).or_insert((0, g.clone()));
            ent.0 = ent.0.max(e);
        }
    }
    let w = prog.width();
    let mut total = [0f64; 3];
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9} {:>9}  checksums p0 p1",
        "gate", "elements", "wall ms", "dcf ms", "dpf ms", "other ms"
    );
    for (name, (count, g)) in &by_name {
        let mut mrng = Csprng::for_tests(*count as u64);
        let masks = mrng.ring_vec(w, *count);
        let mut best: Option<(f64, GenTimes)> = None;
        let mut digest = String::new();
        for _ in 0..reps.max(1) {
            let mut rng = Csprng::for_tests(11);
            let saved = swap_gen_times(GenTimes::default());
            let t = Instant::now();
            let [b0, b1] = g.deal(w, &masks, &mut rng).expect("deal");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let gt = swap_gen_times(saved);
            digest = format!("{} {}", sum(&b0), sum(&b1));
            suf_fss::dealer::recycle_buffer(b0);
            suf_fss::dealer::recycle_buffer(b1);
            if best.is_none_or(|(m, _)| ms < m) {
                best = Some((ms, gt));
            }
        }
        let (ms, gt) = best.expect("one run");
        let (dcf, dpf) = (gt.dcf_ns as f64 / 1e6, gt.dpf_ns as f64 / 1e6);
        let other = ms - dcf - dpf;
        total[0] += ms;
        total[1] += dcf + dpf;
        total[2] += other;
        println!("{name:<36} {count:>9} {ms:>9.1} {dcf:>9.1} {dpf:>9.1} {other:>9.1}  {digest}");
    }
    println!(
        "total: wall {:.0} ms, generators {:.0} ms, other {:.0} ms",
        total[0], total[1], total[2]
    );
}
