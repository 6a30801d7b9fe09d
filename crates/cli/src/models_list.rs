//! `suf models list`: the pinned models and data (and whether they are cached), the benchmark
//! zoo's shapes, and how to use a local checkpoint folder.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value};
use suf_models::{config, fetch, local};

use crate::output::table;

/// The listing as one JSON object.
pub fn list(cache: &Option<PathBuf>) -> Result<Value> {
    let dir = crate::models_cmd::cache_dir(cache);
    let pinned: Vec<Value> = fetch::SPECS
        .iter()
        .map(|s| {
            let src: Vec<String> = s
                .downloads
                .iter()
                .map(|d| match d.registry {
                    fetch::Registry::PyPi {
                        package, version, ..
                    } => format!("PyPI {package}=={version}"),
                    fetch::Registry::Npm { package, version } => format!("npm {package}@{version}"),
                })
                .collect();
            let at = fetch::cached(s.name, &dir);
            json!({"name": s.name, "about": s.about, "source": src.first().cloned().unwrap_or_default(),
                   "downloads": src.len(), "cached": at.is_some(), "path": at})
        })
        .collect();
    let mut zoo = Vec::new();
    for name in config::ZOO {
        let c = config::zoo(name)?;
        zoo.push(
            json!({"name": name, "family": c.family.as_str(), "layers": c.layers,
            "hidden": c.hidden, "heads": c.heads, "kv_heads": c.kv_heads, "ffn": c.ffn,
            "vocab": c.vocab, "ring_bits": c.ring_bits, "frac_bits": c.frac_bits}),
        );
    }
    Ok(json!({
        "cache": dir,
        "pinned": pinned,
        "zoo": zoo,
        "zoo_weights": "synthetic (deterministic from a seed): for costs, not predictions",
        "local_folder_types": local::SUPPORTED_TYPES,
    }))
}

/// The listing for people.
pub fn human(v: &Value) -> String {
    let g = |x: &Value, k: &str| match x.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(o) => o.to_string(),
    };
    let mut rows = vec![vec![
        "name".to_string(),
        "cached".into(),
        "source (pinned, sha256-checked)".into(),
        "what".into(),
    ]];
    for p in v["pinned"].as_array().into_iter().flatten() {
        rows.push(vec![
            g(p, "name"),
            if p["cached"] == json!(true) {
                "yes".into()
            } else {
                "no".into()
            },
            g(p, "source"),
            g(p, "about"),
        ]);
    }
    let mut out = format!(
        "Pinned models and data (`suf models fetch NAME`; cache {}):\n",
        g(v, "cache")
    );
    out.push_str(&table(&rows));
    let mut rows = vec![[
        "name",
        "family",
        "layers",
        "hidden",
        "heads",
        "ffn",
        "vocab",
        "ring bits",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for z in v["zoo"].as_array().into_iter().flatten() {
        rows.push(
            [
                "name",
                "family",
                "layers",
                "hidden",
                "heads",
                "ffn",
                "vocab",
                "ring_bits",
            ]
            .iter()
            .map(|k| g(z, k))
            .collect(),
        );
    }
    out.push_str("\nBenchmark zoo (SIGMA's shapes, synthetic weights: costs, not predictions):\n");
    out.push_str(&table(&rows));
    out.push_str(&format!(
        "\nLocal Hugging Face checkpoints: --model PATH/TO/FOLDER (config.json, model.safetensors or a sharded index, tokenizer.json); model_type {}.\n",
        local::SUPPORTED_TYPES.join(", ")
    ));
    out
}
