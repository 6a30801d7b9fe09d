//! Real weights (skipped with a note when the model is not in the cache; CI fetches
//! minilm-l6 first with `suf models fetch minilm-l6`).

use std::collections::BTreeMap;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::{fetch, float, LoadedModel};
use suf_nn::layers::Mode;
use suf_nn::model::{build, client_input};
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::plain::run_plain;

fn model(name: &str) -> Option<LoadedModel> {
    let dir = fetch::default_cache_dir();
    if fetch::cached(name, &dir).is_none() {
        eprintln!(
            "skipping: {name} is not cached in {} (suf models fetch {name})",
            dir.display()
        );
        return None;
    }
    Some(suf_models::load(name, &dir, 0).expect("cached model loads"))
}

const SENTENCES: &[&str] = &[
    "A man is eating food.",
    "The movie was a complete waste of time.",
    "I loved every minute of it, the acting was superb!",
    "Service was slow but the food made up for it.",
];

#[test]
fn minilm_first_two_layers_party_equals_plain() {
    let Some(m) = model("minilm-l6") else { return };
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits).unwrap();
    let ids = m
        .tokenizer
        .as_ref()
        .unwrap()
        .ids(SENTENCES[1], true)
        .unwrap();
    let built = build(&m.cfg, &m.weights, fp, Mode::Public, ids.len(), Some(2)).unwrap();
    let mut x = BTreeMap::new();
    x.insert(
        "x".to_string(),
        client_input(&m.cfg, &m.weights, fp, &ids).unwrap(),
    );
    let be = CpuBackend::new();
    let r = run_two_party(
        &built.prog,
        &be,
        &x,
        &built.private,
        Link::Tcp,
        &mut Csprng::for_tests(1),
    )
    .unwrap();
    assert!(
        r.matches_plain(),
        "MiniLM-L6 (2 layers): secure output differs from plain"
    );
}

#[test]
fn minilm_plain_tracks_float() {
    let Some(m) = model("minilm-l6") else { return };
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits).unwrap();
    let fm = float::FloatModel::load(&m.cfg, &m.weights).unwrap();
    let be = CpuBackend::new();
    for s in SENTENCES {
        let ids = m.tokenizer.as_ref().unwrap().ids(s, true).unwrap();
        let built = build(&m.cfg, &m.weights, fp, Mode::Public, ids.len(), None).unwrap();
        let mut x = BTreeMap::new();
        x.insert(
            "x".to_string(),
            client_input(&m.cfg, &m.weights, fp, &ids).unwrap(),
        );
        let out = run_plain(&built.prog, &be, &x, &built.private).unwrap();
        let got: Vec<f64> = out[0].iter().map(|&v| fp.decode(v)).collect();
        let want = fm.forward(&[ids]).unwrap().pooled.unwrap().remove(0);
        let cos = float::cosine(&got, &want);
        assert!(cos >= 0.999, "{s:?}: cosine plain vs float {cos}");
    }
}
