//! Labelled data and the committed sentiment head.
//!
//! The UCI "Sentiment Labelled Sentences" (Kotzias et al., KDD 2015, CC BY 4.0), as shipped in
//! npm `sentiment@5.0.2` (`test/fixtures/{imdb,amazon,yelp}.json`, 500 negative + 500
//! positive each, plus one trailing empty entry that is dropped here). Fetch with
//! `fetch("sentiment", ..)`.
//!
//! [`SentimentHead`] is the logistic-regression head trained by
//! `examples/train_head.rs` on float MiniLM-L6 mean-pooled embeddings of Amazon + Yelp,
//! committed as `data/sentiment_head.json` (384 × 2 weights + 2 biases = 770 numbers).

use std::path::Path;

use crate::error::{ModelError, Result};

/// One labelled sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    /// The text.
    pub text: String,
    /// 0 = negative, 1 = positive.
    pub label: u8,
}

/// The three domains.
pub const DOMAINS: &[&str] = &["imdb", "amazon", "yelp"];

/// Load one domain from a fetched `sentiment` directory (`<cache>/sentiment`).
pub fn load_sentiment(dir: &Path, domain: &str) -> Result<Vec<Sentence>> {
    if !DOMAINS.contains(&domain) {
        return Err(ModelError::UnknownName {
            name: domain.into(),
            known: DOMAINS.join(", "),
        });
    }
    let p = dir.join(format!("{domain}.json"));
    let s = std::fs::read_to_string(&p).map_err(|e| ModelError::io(&p, e))?;
    parse_sentiment(&s)
}

/// Parse the `[{"text": .., "class": 0|1}, ...]` format, dropping entries without a class.
pub fn parse_sentiment(json: &str) -> Result<Vec<Sentence>> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ModelError::format("sentiment JSON", e.to_string()))?;
    let arr = v
        .as_array()
        .ok_or_else(|| ModelError::format("sentiment JSON", "not an array"))?;
    let mut out = Vec::with_capacity(arr.len());
    for e in arr {
        let text = e.get("text").and_then(|t| t.as_str()).unwrap_or("");
        match e.get("class").and_then(|c| c.as_u64()) {
            Some(c @ (0 | 1)) if !text.is_empty() => out.push(Sentence {
                text: text.to_string(),
                label: c as u8,
            }),
            _ => {}
        }
    }
    Ok(out)
}

/// A 2-class linear head: logits = W·x + b, W `[2, dim]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SentimentHead {
    /// Which encoder and pooling it expects.
    pub encoder: String,
    /// Input width.
    pub dim: usize,
    /// Whether inputs are L2-normalised before the head (false: raw mean-pooled embedding).
    pub normalize: bool,
    /// Row-major `[2, dim]`: row 0 = negative, row 1 = positive.
    pub weight: Vec<f64>,
    /// `[2]`.
    pub bias: Vec<f64>,
    /// How it was trained, and its float accuracy.
    pub notes: serde_json::Value,
}

impl SentimentHead {
    /// The committed head for MiniLM-L6.
    pub fn minilm_l6() -> Result<Self> {
        Self::from_json(include_str!("../data/sentiment_head.json"))
    }
    /// Parse and check.
    pub fn from_json(s: &str) -> Result<Self> {
        let h: SentimentHead = serde_json::from_str(s)
            .map_err(|e| ModelError::format("sentiment head", e.to_string()))?;
        if h.weight.len() != 2 * h.dim || h.bias.len() != 2 {
            return Err(ModelError::format("sentiment head", "weight/bias sizes"));
        }
        Ok(h)
    }
    /// The two logits for a pooled embedding.
    pub fn logits(&self, x: &[f64]) -> [f64; 2] {
        let mut z = [self.bias[0], self.bias[1]];
        let nrm = if self.normalize {
            x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12)
        } else {
            1.0
        };
        for (c, zc) in z.iter_mut().enumerate() {
            let w = &self.weight[c * self.dim..(c + 1) * self.dim];
            *zc += w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() / nrm;
        }
        z
    }
    /// Predicted class (1 = positive).
    pub fn predict(&self, x: &[f64]) -> u8 {
        let z = self.logits(x);
        u8::from(z[1] > z[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_trailing_empty_entry() {
        let s = r#"[{"text":"good","class":1},{"text":"bad","class":0},{"text":"","class":null}]"#;
        let v = parse_sentiment(s).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].label, 0);
    }
}
