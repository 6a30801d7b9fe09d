//! Accuracy of the fixed-point program against the float model: the cosine and the largest
//! absolute difference of the outputs (pooled embedding or logits) over four inputs, run on
//! the Plain interpreter (which every two-party run equals bit for bit).
//!
//! `cargo run --release -p suf-nn --example plain_vs_float -- MODEL SEQ [LAYERS]`: MODEL is a
//! zoo name (synthetic weights, SEQ token ids) or a cached real model (four fixed sentences;
//! SEQ is ignored). Used for the before/after figures in BENCHMARKS.md.

use std::collections::BTreeMap;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_models::{fetch, float};
use suf_nn::layers::Mode;
use suf_nn::model::{build, client_input};
use suf_runtime::plain::run_plain;

const SENTENCES: [&str; 4] = [
    "A man is eating food.",
    "The movie was a complete waste of time.",
    "I loved every minute of it, the acting was superb!",
    "Service was slow but the food made up for it.",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: plain_vs_float MODEL SEQ [LAYERS]".into());
    }
    let name = args[1].as_str();
    let seq: usize = args[2].parse()?;
    let layers: Option<usize> = args.get(3).map(|s| s.parse()).transpose()?;
    let m = suf_models::load(name, &fetch::default_cache_dir(), 7)?;
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits)?;
    let be = CpuBackend::new();
    let mut cfg = m.cfg.clone();
    if let Some(l) = layers {
        cfg.layers = l.min(cfg.layers);
    }
    let fm = float::FloatModel::load(&cfg, &m.weights)?;
    let (mut min_cos, mut sum_cos, mut max_diff) = (1f64, 0f64, 0f64);
    for (s, text) in SENTENCES.iter().enumerate() {
        let ids: Vec<u32> = match &m.tokenizer {
            Some(t) => t.ids(text, true)?,
            None => (0..seq)
                .map(|i| ((i * 7919 + s * 104_729) % cfg.vocab) as u32)
                .collect(),
        };
        let built = build(&cfg, &m.weights, fp, Mode::Public, ids.len(), None)?;
        let mut x = BTreeMap::new();
        x.insert("x".to_string(), client_input(&cfg, &m.weights, fp, &ids)?);
        let out = run_plain(&built.prog, &be, &x, &built.private)?;
        let got: Vec<f64> = out[0].iter().map(|&v| fp.decode(v)).collect();
        let o = fm.forward(&[ids])?;
        let want = o
            .pooled
            .or(o.logits)
            .and_then(|mut v| v.pop())
            .ok_or("float model gave no output")?;
        let cos = float::cosine(&got, &want);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        min_cos = min_cos.min(cos);
        sum_cos += cos;
        max_diff = max_diff.max(diff);
    }
    println!(
        "{name} seq {seq} layers {layers:?}: min cosine {min_cos:.7}, mean {:.7}, max |diff| {max_diff:.5}",
        sum_cos / SENTENCES.len() as f64
    );
    Ok(())
}
