//! Train the sentiment head committed as `crates/models/data/sentiment_head.json`.
//!
//! Logistic regression (L2, scikit-learn's convention: minimise C·Σ log-loss + ½‖w‖², bias
//! unregularised; C = 10 on normalised features, C = 10/E‖x‖² on raw ones; Newton's method) on float MiniLM-L6 mean-pooled
//! embeddings (not L2-normalised, so the secure side can apply the head straight to its pooled
//! output) of the Amazon and Yelp sentences (2000), evaluated on IMDB (1000). The binary
//! model (w, b) is written as a 2-class head: row 1 = (w/2, b/2), row 0 = (−w/2, −b/2), so
//! softmax over the two logits equals the logistic probability. 384 × 2 + 2 = 770 numbers.
//!
//! `cargo run -p suf-models --release --example train_head [-- --normalize] [--out PATH]`
//! Fetches `minilm-l6` and `sentiment` into the cache if needed.

use std::time::Instant;

use suf_models::data::{load_sentiment, Sentence, SentimentHead};
use suf_models::float::FloatModel;
use suf_models::{fetch, load};

const C: f64 = 10.0;

fn embed_all(fm: &FloatModel, tok: &suf_models::Tokenizer, s: &[Sentence]) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(s.len());
    for chunk in s.chunks(100) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|x| tok.ids(&x.text, true).unwrap())
            .collect();
        out.extend(fm.forward(&ids).unwrap().pooled.unwrap());
    }
    out
}

fn normalize(v: &mut [Vec<f64>]) {
    for x in v {
        let n = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        x.iter_mut().for_each(|a| *a /= n);
    }
}

/// Solve the SPD system `a·x = b` (Cholesky).
fn solve(a: &mut [f64], b: &[f64], n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut s = a[j * n + j];
        for k in 0..j {
            s -= a[j * n + k] * a[j * n + k];
        }
        let d = s.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    y
}

/// Binary logistic regression by Newton's method; returns (w, b).
fn train(x: &[Vec<f64>], y: &[u8], c: f64) -> (Vec<f64>, f64) {
    let d = x[0].len();
    let n = d + 1;
    let mut th = vec![0f64; n];
    for it in 0..50 {
        let mut g = vec![0f64; n];
        let mut h = vec![0f64; n * n];
        for (xi, &yi) in x.iter().zip(y) {
            let z: f64 = th[d] + xi.iter().zip(&th).map(|(a, b)| a * b).sum::<f64>();
            let p = 1.0 / (1.0 + (-z).exp());
            let r = c * (p - yi as f64);
            let wgt = c * p * (1.0 - p);
            let xe: Vec<f64> = xi.iter().copied().chain([1.0]).collect();
            for i in 0..n {
                g[i] += r * xe[i];
                let wi = wgt * xe[i];
                for j in 0..=i {
                    h[i * n + j] += wi * xe[j];
                }
            }
        }
        for i in 0..d {
            g[i] += th[i];
            h[i * n + i] += 1.0;
        }
        for i in 0..n {
            for j in i + 1..n {
                h[i * n + j] = h[j * n + i];
            }
        }
        let step = solve(&mut h, &g, n);
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (t, s) in th.iter_mut().zip(&step) {
            *t -= s;
        }
        eprintln!("newton {it}: |grad| = {gn:.3e}");
        if gn < 1e-8 {
            break;
        }
    }
    (th[..d].to_vec(), th[d])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let norm = args.iter().any(|a| a == "--normalize");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| args[i + 1].clone())
        .unwrap_or_else(|| format!("{}/data/sentiment_head.json", env!("CARGO_MANIFEST_DIR")));
    let cache = fetch::default_cache_dir();
    let mut cb = fetch::stderr_progress();
    fetch::fetch("minilm-l6", &cache, &mut cb).expect("fetch minilm-l6");
    let sdir = fetch::fetch("sentiment", &cache, &mut cb).expect("fetch sentiment");
    let m = load("minilm-l6", &cache, 0).expect("load minilm-l6");
    let tok = m.tokenizer.as_ref().unwrap();
    let fm = FloatModel::load(&m.cfg, &m.weights).unwrap();

    let mut train_s = load_sentiment(&sdir, "amazon").unwrap();
    train_s.extend(load_sentiment(&sdir, "yelp").unwrap());
    let test_s = load_sentiment(&sdir, "imdb").unwrap();
    let t0 = Instant::now();
    let mut xtr = embed_all(&fm, tok, &train_s);
    let mut xte = embed_all(&fm, tok, &test_s);
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} sentences in {secs:.1} s (f64)",
        xtr.len() + xte.len()
    );
    if norm {
        normalize(&mut xtr);
        normalize(&mut xte);
    }
    let ytr: Vec<u8> = train_s.iter().map(|s| s.label).collect();
    // Without normalisation, scale C by 1/E‖x‖² so that the penalty matches the one on
    // normalised features (w_raw ≈ w_norm/‖x‖).
    let ms = xtr
        .iter()
        .map(|x| x.iter().map(|a| a * a).sum::<f64>())
        .sum::<f64>()
        / xtr.len() as f64;
    let c = if norm { C } else { C / ms };
    eprintln!("mean squared norm {ms:.3}; C = {c:.4}");
    let (w, b) = train(&xtr, &ytr, c);
    let d = w.len();
    let mut weight: Vec<f64> = w.iter().map(|v| -v / 2.0).collect();
    weight.extend(w.iter().map(|v| v / 2.0));
    let mut head = SentimentHead {
        encoder: "minilm-l6".into(),
        dim: d,
        normalize: norm,
        weight,
        bias: vec![-b / 2.0, b / 2.0],
        notes: serde_json::Value::Null,
    };
    let acc = |x: &[Vec<f64>], s: &[Sentence]| {
        // `x` may already be normalised; the head must see the raw embedding then.
        let h = SentimentHead {
            normalize: false,
            ..head.clone()
        };
        x.iter()
            .zip(s)
            .filter(|(v, s)| h.predict(v) == s.label)
            .count() as f64
            / s.len() as f64
    };
    let train_acc = acc(&xtr, &train_s);
    let test_acc = acc(&xte, &test_s);
    println!("train (amazon+yelp) accuracy {train_acc:.4}; IMDB float accuracy {test_acc:.4}");
    head.notes = serde_json::json!({
        "trained_by": "crates/models/examples/train_head.rs",
        "train": "amazon + yelp (2000 sentences), npm sentiment@5.0.2 (UCI Sentiment Labelled Sentences, CC BY 4.0)",
        "features": if norm { "L2-normalised mean-pooled float MiniLM-L6 embedding" } else { "mean-pooled float MiniLM-L6 embedding (not normalised)" },
        "model": "binary logistic regression, L2 (C = 10 on normalised features; C = 10/E||x||^2 on raw ones), Newton; written as 2 rows (+-w/2, +-b/2)",
        "c": c,
        "train_accuracy": (train_acc * 1e4).round() / 1e4,
        "imdb_float_accuracy": (test_acc * 1e4).round() / 1e4,
        "embed_seconds_f64_2_cores": (secs * 10.0).round() / 10.0,
    });
    let s = serde_json::to_string_pretty(&head).unwrap();
    fetch::write_atomic(std::path::Path::new(&out), s.as_bytes()).unwrap();
    println!("wrote {out}");
}
