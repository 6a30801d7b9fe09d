//! Where the key bytes and AES calls of a model go, per operator: builds a zoo model's program
//! and deals every gate (exactly what the dealer writes, batch headers aside), without running
//! the online phase. Party 0's bytes (its stream stores the mask shares; party 1's come from
//! a seed).
//!
//! `cargo run --release -p suf-nn --example keymap -- bert-tiny 128 private [layers]`

use std::collections::BTreeMap;

use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_nn::layers::Mode;
use suf_runtime::ir::{NodeId, Op, Program};

#[derive(Default, Clone, Copy)]
struct Acc {
    elems: u64,
    key: u64,
    aes: u64,
    count: u64,
    /// Key bytes (kept for the table's column; v2 already stores DCF value words at ring width).
    packed: u64,
}

fn label(prog: &Program, id: NodeId) -> String {
    let nd = prog.node(id);
    match &nd.op {
        Op::Gate(a, g) => {
            let name = g.name();
            let base = name.rsplit_once('_').map_or(name.as_str(), |x| x.0);
            format!("{base} <- {}", producer(prog, *a))
        }
        op => op.name(),
    }
}

fn producer(prog: &Program, mut id: NodeId) -> String {
    // Skip layout steps to the op that computed the value.
    loop {
        let nd = prog.node(id);
        match &nd.op {
            Op::Transpose(a)
            | Op::Reshape(a)
            | Op::SliceCols(a, ..)
            | Op::Gather(a, _)
            | Op::Take(a, _) => id = *a,
            Op::Gate(_, g) => {
                let name = g.name();
                return name
                    .rsplit_once('_')
                    .map_or(name.clone(), |x| x.0.to_string());
            }
            op => return op.name(),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map_or("bert-tiny", |s| s.as_str());
    let seq: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let mode = match args.get(3).map_or("private", |s| s.as_str()) {
        "public" => Mode::Public,
        _ => Mode::Private,
    };
    let layers: Option<usize> = args.get(4).and_then(|s| s.parse().ok());
    let m = suf_models::load(model, std::path::Path::new("/nonexistent"), 1).expect("zoo model");
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits).expect("format");
    let built = suf_nn::model::build(&m.cfg, &m.weights, fp, mode, seq, layers).expect("build");
    let prog = &built.prog;
    let w = prog.width();
    let nb = w.bits() as u64;
    let share = |cnt: usize| (cnt as u64 * nb).div_ceil(8);
    let mut rng = Csprng::from_seed([7u8; 16]);
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    let mut add = |k: String, a: Acc, total: &mut Acc| {
        let e = by.entry(k).or_default();
        e.elems += a.elems;
        e.key += a.key;
        e.aes += a.aes;
        e.count += a.count;
        e.packed += a.packed;
        total.key += a.key;
        total.aes += a.aes;
        total.packed += a.packed;
    };
    let rw: u64 = prog
        .private_weights
        .values()
        .map(|&(k, n)| share(k * n))
        .sum();
    add(
        "R_W (weight masks)".into(),
        Acc {
            key: rw,
            packed: rw,
            count: 1,
            ..Default::default()
        },
        &mut total,
    );
    for (i, nd) in prog.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        let numel = |d: &NodeId| prog.numel(*d);
        let a = match &nd.op {
            Op::Gate(x, g) => {
                let r = rng.ring_vec(w, numel(x));
                let blobs = g.deal(w, &r, &mut rng).expect("deal");
                let aes = suf_compiler::compile::gate_aes(&g.name()).unwrap_or(0) as u64;
                let key = share(numel(x)) + blobs[0].len() as u64;
                Acc {
                    elems: numel(x) as u64,
                    key,
                    aes: aes * numel(x) as u64,
                    count: 1,
                    packed: key,
                }
            }
            Op::Mul(a, b) | Op::MatMul(a, b) | Op::RowMul(a, b) => {
                let key = share(numel(a)) + share(numel(b)) + share(nd.numel());
                Acc {
                    elems: nd.numel() as u64,
                    key,
                    aes: 0,
                    count: 1,
                    packed: key,
                }
            }
            Op::Square(a) | Op::MatMulPrivW { x: a, .. } => {
                let key = share(numel(a)) + share(nd.numel());
                Acc {
                    elems: nd.numel() as u64,
                    key,
                    aes: 0,
                    count: 1,
                    packed: key,
                }
            }
            _ => continue,
        };
        let layer = nd.layer.split('.').next_back().unwrap_or("").to_string();
        let _ = id;
        add(format!("{layer:9} {}", label(prog, id)), a, &mut total);
    }
    let rounds = suf_runtime::sched::Schedule::of(prog).rounds();
    // Opened bytes per party (sent + received): every interactive step opens its operands.
    let opened: u64 = prog
        .nodes
        .iter()
        .map(|nd| match &nd.op {
            Op::Mul(a, b) | Op::MatMul(a, b) | Op::RowMul(a, b) => {
                share(prog.numel(*a)) + share(prog.numel(*b))
            }
            Op::Square(a) | Op::MatMulPrivW { x: a, .. } | Op::Gate(a, _) => share(prog.numel(*a)),
            _ => 0,
        })
        .sum();
    println!(
        "{model} seq {seq} {:?}: key bytes (party 0) {:.1} MB, AES {:.1} M, rounds {rounds}, opened ≈ {:.2} MB sent+recv",
        mode,
        total.key as f64 / 1e6,
        total.aes as f64 / 1e6,
        2.0 * opened as f64 / 1e6
    );
    println!(
        "{:44} {:>10} {:>9} {:>7} {:>9} {:>9} {:>8} {:>7}",
        "operator", "elements", "key MB", "key %", "B/elem", "packed B", "AES M", "AES/el"
    );
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.key));
    for (k, a) in rows {
        println!(
            "{:44} {:>10} {:>9.2} {:>6.1}% {:>9.1} {:>9.1} {:>8.2} {:>7.0}",
            k,
            a.elems,
            a.key as f64 / 1e6,
            100.0 * a.key as f64 / total.key as f64,
            a.key as f64 / a.elems.max(1) as f64,
            a.packed as f64 / a.elems.max(1) as f64,
            a.aes as f64 / 1e6,
            a.aes as f64 / a.elems.max(1) as f64
        );
    }
}
