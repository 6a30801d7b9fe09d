//! The `suf._suf` extension: one local two-party run (dealer, both parties over an in-memory
//! link, client) on the CPU backend, with the fixed-point reference and the float model
//! beside it. Results cross to Python as one JSON text (`suf/__init__.py` turns it into
//! dicts and numpy arrays), so this layer stays small.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use serde_json::{json, Value};
use suf_backend::CpuBackend;
use suf_core::prg::Csprng;
use suf_models::{fetch, float};
use suf_nn::layers::Mode;
use suf_runtime::harness::{run_two_party_on, Link};

fn err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

fn run_json(
    model: &str,
    text: &str,
    cache: Option<PathBuf>,
    mode: &str,
    layers: Option<usize>,
) -> PyResult<Value> {
    let mode = match mode {
        "public" => Mode::Public,
        "private" => Mode::Private,
        m => {
            return Err(PyValueError::new_err(format!(
                "mode must be \"public\" or \"private\", not {m:?}"
            )))
        }
    };
    let dir = cache.unwrap_or_else(fetch::default_cache_dir);
    let m = suf_models::load(model, &dir, 1).map_err(err)?;
    let fp = suf_core::fixed::FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits).map_err(err)?;
    let ids: Vec<u32> = match &m.tokenizer {
        Some(t) => t.ids(text, true).map_err(err)?,
        None => {
            return Err(PyValueError::new_err(format!(
                "{model} has no tokenizer (synthetic benchmark weights): use a real model or a checkpoint folder"
            )))
        }
    };
    if ids.is_empty() {
        return Err(PyValueError::new_err("the text tokenizes to no tokens"));
    }
    let built =
        suf_nn::model::build(&m.cfg, &m.weights, fp, mode, ids.len(), layers).map_err(err)?;
    let mut x = BTreeMap::new();
    x.insert(
        "x".to_string(),
        suf_nn::model::client_input(&m.cfg, &m.weights, fp, &ids).map_err(err)?,
    );
    let (be, p0, p1) = (CpuBackend::new(), CpuBackend::new(), CpuBackend::new());
    let mut rng = Csprng::from_os().map_err(err)?;
    let r = run_two_party_on(
        &built.prog,
        &be,
        [&p0, &p1],
        &x,
        &built.private,
        Link::Mem,
        &mut rng,
    )
    .map_err(err)?;
    let fl = float::FloatModel::load(&m.cfg, &m.weights)
        .map_err(err)?
        .forward_layers(std::slice::from_ref(&ids), layers.unwrap_or(m.cfg.layers))
        .map_err(err)?;
    let dec = |v: &[u64]| -> Vec<f64> { v.iter().map(|&z| fp.decode(z)).collect() };
    let (secure, plain) = (dec(&r.outputs[0]), dec(&r.plain[0]));
    let flo = if m.cfg.family.is_encoder() {
        fl.pooled.and_then(|p| p.into_iter().next())
    } else {
        fl.logits.and_then(|p| p.into_iter().next())
    }
    .unwrap_or_default();
    let mut v = json!({
        "model": model,
        "kind": if m.cfg.family.is_encoder() { "embedding" } else { "logits" },
        "tokens": ids,
        "secure": secure, "plain": plain, "float": flo,
        "report": {
            "matches_plain": r.matches_plain(),
            "online_ms": r.reports[0].online_ms.max(r.reports[1].online_ms),
            "rounds": r.reports[0].rounds,
            "comm_bytes": r.reports[0].bytes_sent + r.reports[0].bytes_recv,
            "key_bytes": r.deal.key_bytes[0].max(r.deal.key_bytes[1]),
            "keygen_ms": r.deal.keygen_ms,
            "ring_bits": fp.width.bits(), "frac_bits": fp.frac,
            "backend": "cpu", "link": "in-memory",
            "layers": r.reports[0].layers,
        },
    });
    if !m.cfg.family.is_encoder() {
        if let Some(t) = &m.tokenizer {
            let names: Vec<String> = (0..m.cfg.vocab as u32)
                .map(|i| t.decode(&[i], false).unwrap_or_default())
                .collect();
            v["vocab"] = json!(names);
        }
    }
    if model == "minilm-l6" && layers.is_none() {
        let head = suf_models::data::SentimentHead::minilm_l6().map_err(err)?;
        let p = |e: &[f64]| {
            let z = head.logits(e);
            1.0 / (1.0 + (z[0] - z[1]).exp())
        };
        v["p_positive"] = json!({"secure": p(&secure), "float": p(&v_f64(&v["float"]))});
    }
    Ok(v)
}

fn v_f64(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// run(model, text, cache=None, mode="public", layers=None) -> str (JSON): one local
/// two-party run; see suf/__init__.py for the Python-side API.
#[pyfunction]
#[pyo3(signature = (model, text, cache=None, mode="public", layers=None))]
fn run(
    py: Python<'_>,
    model: &str,
    text: &str,
    cache: Option<PathBuf>,
    mode: &str,
    layers: Option<usize>,
) -> PyResult<String> {
    let (model, text, mode) = (model.to_string(), text.to_string(), mode.to_string());
    let v = py.allow_threads(move || run_json(&model, &text, cache, &mode, layers))?;
    Ok(v.to_string())
}

/// write_tiny_checkpoint(folder, arch, seed=1): a tiny Hugging Face checkpoint (config.json,
/// safetensors, tokenizer.json) of `arch` (bert, roberta, mpnet, gpt2, llama, mistral) with
/// deterministic weights, to try the API without a download.
#[pyfunction]
#[pyo3(signature = (folder, arch, seed=1))]
fn write_tiny_checkpoint(folder: PathBuf, arch: &str, seed: u64) -> PyResult<()> {
    suf_models::local::tiny::write(&folder, arch, seed).map_err(err)
}

/// The cache directory models are read from ($SUF_CACHE, else ~/.cache/suf).
#[pyfunction]
fn default_cache_dir() -> PathBuf {
    fetch::default_cache_dir()
}

#[pymodule]
fn _suf(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(write_tiny_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(default_cache_dir, m)?)?;
    Ok(())
}
