//! Checks on the real weights against independent published values. Each test skips (with a
//! note) when its model is not in the cache; fetch with
//! `cargo run -p suf-models --release --example fetch -- minilm-l6 smollm2-135m sentiment`.

use suf_models::float::{cosine, top_k, FloatModel};
use suf_models::{fetch, load, LoadedModel};

fn cached(name: &str) -> Option<LoadedModel> {
    let cache = fetch::default_cache_dir();
    if fetch::cached(name, &cache).is_none() {
        eprintln!(
            "SKIP: `{name}` not in cache {} (fetch it: cargo run -p suf-models --release --example fetch -- {name})",
            cache.display()
        );
        return None;
    }
    Some(load(name, &cache, 0).expect("load cached model"))
}

fn embed(m: &LoadedModel, fm: &FloatModel, texts: &[&str]) -> Vec<Vec<f64>> {
    let tok = m.tokenizer.as_ref().unwrap();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.ids(t, true).unwrap()).collect();
    fm.forward(&ids).unwrap().pooled.unwrap()
}

#[test]
fn minilm_l6_similarities() {
    let Some(m) = cached("minilm-l6") else { return };
    let tok = m.tokenizer.as_ref().unwrap();
    let ids = tok.ids("A man is eating food.", true).unwrap();
    // [CLS] a man is eating food . [SEP]
    assert_eq!(ids, vec![101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
    let fm = FloatModel::load(&m.cfg, &m.weights).unwrap();
    let e = embed(
        &m,
        &fm,
        &[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply on Monday.",
        ],
    );
    let para = cosine(&e[0], &e[1]);
    let unrel = cosine(&e[0], &e[2]);
    eprintln!("MiniLM-L6 cosine: paraphrase {para:.4}, unrelated {unrel:.4}");
    assert!((para - 0.755).abs() < 0.005, "paraphrase cosine {para}");
    assert!(unrel < 0.1, "unrelated cosine {unrel}");
}

#[test]
fn smollm2_next_tokens() {
    let Some(m) = cached("smollm2-135m") else {
        return;
    };
    let tok = m.tokenizer.as_ref().unwrap();
    assert_eq!(
        (m.cfg.layers, m.cfg.hidden, m.cfg.heads, m.cfg.kv_heads),
        (30, 576, 9, 3)
    );
    let fm = FloatModel::load(&m.cfg, &m.weights).unwrap();
    for (prompt, want) in [
        ("The capital of France is", " Paris"),
        ("One, two, three, four,", " five"),
    ] {
        let ids = tok.ids(prompt, true).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), prompt);
        let out = fm.forward(std::slice::from_ref(&ids)).unwrap();
        let logits = &out.logits.unwrap()[0];
        let top = top_k(logits, 5);
        let words: Vec<String> = top
            .iter()
            .map(|&i| tok.decode(&[i as u32], false).unwrap())
            .collect();
        eprintln!("SmolLM2 {prompt:?} {ids:?} → top5 {words:?}");
        assert_eq!(words[0], want, "{prompt}");
    }
}

#[test]
fn mpnet_similarities() {
    let Some(m) = cached("mpnet-base") else {
        return;
    };
    let fm = FloatModel::load(&m.cfg, &m.weights).unwrap();
    let e = embed(
        &m,
        &fm,
        &[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply on Monday.",
        ],
    );
    let para = cosine(&e[0], &e[1]);
    let unrel = cosine(&e[0], &e[2]);
    eprintln!("MPNet cosine: paraphrase {para:.4}, unrelated {unrel:.4}");
    assert!((para - 0.66).abs() < 0.05, "paraphrase cosine {para}");
    assert!(unrel < 0.15, "unrelated cosine {unrel}");
}

#[test]
fn sentiment_data() {
    let cache = fetch::default_cache_dir();
    let Some(dir) = fetch::cached("sentiment", &cache) else {
        eprintln!("SKIP: `sentiment` not in cache {}", cache.display());
        return;
    };
    for d in suf_models::data::DOMAINS {
        let s = suf_models::data::load_sentiment(&dir, d).unwrap();
        assert_eq!(s.len(), 1000, "{d}");
        assert_eq!(s.iter().filter(|x| x.label == 1).count(), 500, "{d}");
    }
}

#[test]
fn committed_head_on_imdb_subset() {
    let Some(m) = cached("minilm-l6") else { return };
    let cache = fetch::default_cache_dir();
    let Some(dir) = fetch::cached("sentiment", &cache) else {
        eprintln!("SKIP: `sentiment` not in cache {}", cache.display());
        return;
    };
    let head = suf_models::data::SentimentHead::minilm_l6().unwrap();
    assert_eq!(head.weight.len() + head.bias.len(), 770);
    let imdb = suf_models::data::load_sentiment(&dir, "imdb").unwrap();
    // Every 5th sentence: 200, both classes (they are mixed through the file).
    let sub: Vec<_> = imdb.iter().step_by(5).collect();
    let fm = FloatModel::load(&m.cfg, &m.weights).unwrap();
    let tok = m.tokenizer.as_ref().unwrap();
    let ids: Vec<Vec<u32>> = sub
        .iter()
        .map(|s| tok.ids(&s.text, true).unwrap())
        .collect();
    let pooled = fm.forward(&ids).unwrap().pooled.unwrap();
    let correct = pooled
        .iter()
        .zip(&sub)
        .filter(|(x, s)| head.predict(x) == s.label)
        .count();
    let acc = correct as f64 / sub.len() as f64;
    eprintln!("committed head, float MiniLM-L6, IMDB every 5th sentence: accuracy {acc:.3}");
    assert!(acc > 0.75, "{acc}");
}
