//! `suf plan`: capacity planning. The exact rounds, bytes each party sends and receives, key
//! stream bytes and AES calls of one secure inference — for the whole model, per layer and per
//! operator — from the program's structure alone (`suf_runtime::plan`): no dealer, no keys, no
//! protocol.
//!
//! Large models are not built whole: the program is built with its first block only and the
//! block's plan repeated (`Plan::repeat_block`), which is exact because every block has the
//! same structure (tested against whole builds and real runs); `--all-blocks` builds every
//! block instead. The weights a build needs are synthetic for zoo models (their values never
//! change a cost) and the real ones for fetched models.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use suf_core::fixed::FixedPoint;
use suf_models::{ModelConfig, Weights};
use suf_nn::layers::Mode;
use suf_runtime::ir::Program;
use suf_runtime::plan::{OpPlan, Plan};
use suf_runtime::report::RunReport;

/// Arguments of `suf plan`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// Model: a zoo name (bert-tiny … llama2-13b) or a fetched real model.
    #[arg(long)]
    pub model: String,
    /// Tokens per sequence.
    #[arg(long)]
    pub seq: usize,
    /// public or private weights.
    #[arg(long, default_value = "public")]
    pub mode: String,
    /// Sequences per inference.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Only the first N blocks.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Build every block instead of building the first and repeating its plan (slower; needs
    /// the memory of the whole program).
    #[arg(long)]
    pub all_blocks: bool,
    /// Model cache directory (real models).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// `suf plan`.
pub fn run(a: &PlanArgs) -> Result<()> {
    let v = plan_json(a)?;
    if a.json {
        println!("{v}");
    } else {
        print!("{}", table(&v));
    }
    Ok(())
}

/// The plan of `a` as one JSON object.
pub fn plan_json(a: &PlanArgs) -> Result<Value> {
    let mode = match a.mode.as_str() {
        "public" => Mode::Public,
        "private" => Mode::Private,
        m => bail!("--mode must be public or private, not `{m}`"),
    };
    if a.seq == 0 {
        bail!("--seq must be at least 1");
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.layers == Some(0) {
        bail!("--layers must be at least 1");
    }
    let dir = a
        .cache
        .clone()
        .unwrap_or_else(suf_models::fetch::default_cache_dir);
    let m = suf_models::load(&a.model, &dir, 1)?;
    let limit = m.cfg.max_pos.saturating_sub(m.cfg.pos_offset);
    if a.seq > limit {
        bail!("--seq {}: {} takes at most {limit} tokens", a.seq, a.model);
    }
    let blocks = a.layers.unwrap_or(m.cfg.layers).min(m.cfg.layers);
    let mp = plan_model(
        &m.cfg,
        &m.weights,
        mode,
        a.seq,
        a.batch,
        blocks,
        a.all_blocks,
    )
    .with_context(|| format!("planning {}", a.model))?;
    let plan = &mp.plan;
    let mut v = plan_value(plan);
    let method = if mp.built_blocks == blocks {
        "every block built".to_string()
    } else {
        format!("block 0 built, its plan repeated for {blocks} blocks")
    };
    for (k, x) in [
        ("model", json!(a.model)),
        ("seq", json!(a.seq)),
        ("batch", json!(a.batch)),
        ("mode", json!(a.mode)),
        ("blocks", json!(blocks)),
        ("method", json!(method)),
        ("ring_bits", json!(m.cfg.ring_bits)),
        ("frac_bits", json!(m.cfg.frac_bits)),
        ("build_ms", json!(mp.build_ms)),
        ("plan_ms", json!(mp.plan_ms)),
    ] {
        v[k] = x;
    }
    Ok(v)
}

/// A model's plan and how it was made.
#[derive(Debug)]
pub struct ModelPlan {
    /// The plan of the model with all its `blocks`.
    pub plan: Plan,
    /// Blocks actually built (1 when the first block's plan was repeated).
    pub built_blocks: usize,
    /// Milliseconds building the program took.
    pub build_ms: f64,
    /// Milliseconds planning took.
    pub plan_ms: f64,
}

/// The plan of `cfg` with its first `blocks` blocks for `batch` sequences of `seq` tokens:
/// built with its first block only and the block's plan repeated, unless `all_blocks` (or a
/// single block) asks for every block to be built.
///
/// # Errors
/// A build error of the model, or a planning error.
pub fn plan_model(
    cfg: &ModelConfig,
    w: &Weights,
    mode: Mode,
    seq: usize,
    batch: usize,
    blocks: usize,
    all_blocks: bool,
) -> Result<ModelPlan> {
    let fp = FixedPoint::new(cfg.ring_bits, cfg.frac_bits)?;
    let built_blocks = if all_blocks || blocks <= 1 { blocks } else { 1 };
    let t = Instant::now();
    let built = suf_nn::model::build_batch(cfg, w, fp, mode, seq, batch, Some(built_blocks))?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut plan = Plan::of(&built.prog)?;
    drop(built);
    if built_blocks < blocks {
        plan = plan.repeat_block(blocks)?;
    }
    Ok(ModelPlan {
        plan,
        built_blocks,
        build_ms,
        plan_ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// An operator's kind: its name without the spec hash a compiled gate's batch name ends with.
fn kind(op: &str) -> &str {
    match op.rsplit_once('_') {
        Some((k, h)) if h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()) => k,
        _ => op,
    }
}

/// Per operator kind over all layers, in order of first appearance (rounds are summed over
/// layers).
fn operators(ops: &[OpPlan]) -> Vec<Value> {
    let mut out: Vec<(String, OpPlan)> = Vec::new();
    for o in ops {
        let k = kind(&o.op);
        let e = match out.iter().position(|(n, _)| n == k) {
            Some(i) => &mut out[i].1,
            None => {
                out.push((
                    k.to_string(),
                    OpPlan {
                        op: k.to_string(),
                        gate: o.gate,
                        ..Default::default()
                    },
                ));
                &mut out.last_mut().expect("pushed").1
            }
        };
        e.rounds += o.rounds;
        e.bytes_sent += o.bytes_sent;
        e.bytes_recv += o.bytes_recv;
        e.aes += o.aes;
        e.elements += o.elements;
        for p in 0..2 {
            e.key_bytes[p] += o.key_bytes[p];
            e.sections[p] += o.sections[p];
        }
    }
    out.into_iter()
        .map(|(_, o)| {
            json!({
                "op": o.op, "gate": o.gate, "rounds": o.rounds, "bytes_sent": o.bytes_sent,
                "bytes_recv": o.bytes_recv, "key_bytes": o.key_bytes, "aes": o.aes,
                "elements": o.elements,
                "aes_per_element": if o.gate && o.elements > 0 { json!(o.aes as f64 / o.elements as f64) } else { Value::Null },
                "key_bytes_per_element": if o.elements > 0 { json!(o.key_bytes[0].max(o.key_bytes[1]) as f64 / o.elements as f64) } else { Value::Null },
            })
        })
        .collect()
}

/// A plan as JSON: totals, per operator kind, per layer and per (layer, operator).
pub fn plan_value(p: &Plan) -> Value {
    let gate_elems: u64 = p.ops.iter().filter(|o| o.gate).map(|o| o.elements).sum();
    json!({
        "rounds": p.rounds,
        "bytes_sent": p.bytes_sent,
        "bytes_recv": p.bytes_recv,
        "comm_bytes": [p.bytes_sent[0] + p.bytes_recv[0], p.bytes_sent[1] + p.bytes_recv[1]],
        "key_bytes": p.key_bytes,
        "sections": p.sections,
        "aes": p.aes,
        "gate_elements": gate_elems,
        "aes_per_gate_element": if gate_elems > 0 { json!(p.aes[0] as f64 / gate_elems as f64) } else { Value::Null },
        "gate_batches": p.gate_batches,
        "shared_batches": p.shared_batches,
        "operators": operators(&p.ops),
        "layers": p.layers,
        "ops": p.ops,
    })
}

/// The per-operator breakdown `suf bench model --json` carries: the plan of the program it ran
/// (key bytes, AES calls, rounds and bytes per (layer, operator)) with the measured time of
/// each operator (the slower party's) and the plan's totals.
pub fn bench_breakdown(prog: &Program, reports: &[RunReport; 2]) -> Result<Value> {
    let p = Plan::of(prog)?;
    let ms = |o: &OpPlan| -> f64 {
        reports
            .iter()
            .flat_map(|r| r.ops.iter())
            .filter(|r| r.layer == o.layer && r.op == o.op)
            .map(|r| r.ms)
            .fold(0.0, f64::max)
    };
    let ops: Vec<Value> = p
        .ops
        .iter()
        .map(|o| {
            json!({"layer": o.layer, "op": o.op, "rounds": o.rounds, "bytes_sent": o.bytes_sent,
                   "bytes_recv": o.bytes_recv, "key_bytes": o.key_bytes, "aes": o.aes,
                   "elements": o.elements, "ms": ms(o)})
        })
        .collect();
    Ok(json!({
        "planned": {"rounds": p.rounds, "bytes_sent": p.bytes_sent, "key_bytes": p.key_bytes,
                    "aes": p.aes, "operators": operators(&p.ops)},
        "ops": ops,
    }))
}

fn si(x: f64, unit: &str) -> String {
    let (d, s) = if x >= 1e12 {
        (1e12, "T")
    } else if x >= 1e9 {
        (1e9, "G")
    } else if x >= 1e6 {
        (1e6, "M")
    } else if x >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    if d == 1.0 {
        format!("{x:.0} {unit}")
    } else {
        format!("{:.2} {s}{unit}", x / d)
    }
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The human-readable tables.
fn table(v: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let pair = |k: &str, unit: &str| -> String {
        format!(
            "{:>14} {:>14}",
            si(num(&v[k][0]), unit),
            si(num(&v[k][1]), unit)
        )
    };
    let _ = writeln!(
        s,
        "{}: seq {}, batch {}, {} weights, ring {} bits, f = {} ({})",
        v["model"].as_str().unwrap_or(""),
        v["seq"],
        v["batch"],
        v["mode"].as_str().unwrap_or(""),
        v["ring_bits"],
        v["frac_bits"],
        v["method"].as_str().unwrap_or("")
    );
    let _ = writeln!(s, "{:<18}{:>14} {:>14}", "", "party 0", "party 1");
    let _ = writeln!(s, "{:<18}{}", "key stream", pair("key_bytes", "B"));
    let _ = writeln!(s, "{:<18}{}", "sent", pair("bytes_sent", "B"));
    let _ = writeln!(s, "{:<18}{}", "received", pair("bytes_recv", "B"));
    let _ = writeln!(s, "{:<18}{}", "AES calls", pair("aes", ""));
    let _ = writeln!(s, "{:<18}{:>14}", "rounds", int(&v["rounds"]));
    let _ = writeln!(
        s,
        "{:<18}{:>14.1}",
        "AES / gate elem",
        num(&v["aes_per_gate_element"])
    );
    let _ = writeln!(
        s,
        "\nper operator (all layers)\n{:<28}{:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "operator", "rounds", "sent", "keys p0", "keys p1", "AES/party", "elements", "AES/elem"
    );
    for o in v["operators"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<28}{:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9}",
            o["op"].as_str().unwrap_or(""),
            int(&o["rounds"]),
            si(num(&o["bytes_sent"]), "B"),
            si(num(&o["key_bytes"][0]), "B"),
            si(num(&o["key_bytes"][1]), "B"),
            si(num(&o["aes"]), ""),
            si(num(&o["elements"]), ""),
            if o["aes_per_element"].is_null() {
                "-".to_string()
            } else {
                format!("{:.1}", num(&o["aes_per_element"]))
            }
        );
    }
    let _ = writeln!(
        s,
        "\nper layer\n{:<28}{:>7} {:>12} {:>12} {:>12} {:>12}",
        "layer", "rounds", "sent", "keys p0", "keys p1", "AES/party"
    );
    for l in v["layers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<28}{:>7} {:>12} {:>12} {:>12} {:>12}",
            l["layer"].as_str().unwrap_or(""),
            int(&l["rounds"]),
            si(num(&l["bytes_sent"]), "B"),
            si(num(&l["key_bytes"][0]), "B"),
            si(num(&l["key_bytes"][1]), "B"),
            si(num(&l["aes"]), ""),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_drop_the_spec_hash_only() {
        assert_eq!(kind("gelu_g1_0123456789ab"), "gelu_g1");
        assert_eq!(kind("ars_f12"), "ars_f12");
        assert_eq!(kind("mul"), "mul");
        assert_eq!(kind("x_0123456789aZ"), "x_0123456789aZ");
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0, "B"), "999 B");
        assert_eq!(si(35_500_000_000.0, "B"), "35.50 GB");
        assert_eq!(si(1_500.0, ""), "1.50 k");
    }
}
