//! `suf run --model M --text T --max-new-tokens N`: secure greedy text generation for
//! decoders, the key-value cache kept in secret shares by the two servers (each new token
//! costs one token's work) and only the chosen token ids opened to the client. Tokens are
//! printed as they are produced, with each one's online time, rounds, bytes and key bytes;
//! generation stops at the model's end-of-sequence token or after N tokens. The fixed-point
//! reference (the same programs on the Plain interpreter) runs afterwards and must agree.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use suf_core::prg::Csprng;
use suf_nn::decode::{generate, generate_plain, Decoder, GenToken, StopAt};
use suf_runtime::harness::Link;

use crate::models_cmd::{self, BackendChoice};

/// What `suf run --max-new-tokens` was asked for.
pub struct GenArgs<'a> {
    /// Model name.
    pub model: &'a str,
    /// Prompt text.
    pub text: &'a str,
    /// Largest prompt length (zoo models: exactly this many synthetic tokens).
    pub seq: Option<usize>,
    /// Backend.
    pub backend: BackendChoice,
    /// `public` or `private`.
    pub mode: &'a str,
    /// Only the first N blocks.
    pub layers: Option<usize>,
    /// Model cache.
    pub cache: &'a Option<PathBuf>,
    /// New tokens at most.
    pub max_new: usize,
    /// Temperature sampling with the client's seed (`None`: greedy).
    pub sample: Option<(f64, u64)>,
    /// Print the per-token lines on stderr (stdout carries the JSON).
    pub quiet_stdout: bool,
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// Run a generation; returns the JSON summary.
pub fn run(a: &GenArgs<'_>) -> Result<Value> {
    if a.max_new == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    let be = models_cmd::backends(a.backend)?;
    let m = models_cmd::load(a.model, a.cache, 1)?;
    if m.cfg.family.is_encoder() {
        bail!(
            "--max-new-tokens needs a decoder (GPT-2 or Llama family); {} is an encoder",
            a.model
        );
    }
    let fp = models_cmd::format(&m, None, None)?;
    let ids = models_cmd::token_ids(&m, a.text, a.seq)?;
    let limit = m.cfg.max_pos.saturating_sub(m.cfg.pos_offset);
    let cap = ids.len() + a.max_new - 1;
    if cap > limit {
        bail!(
            "{} prompt tokens + {} new ones exceed the model's {limit} positions",
            ids.len(),
            a.max_new
        );
    }
    let cap = cap.max(2);
    let mode = models_cmd::mode(a.mode)?;
    let mut dec = Decoder::new(&m.cfg, &m.weights, fp, mode, cap, a.layers)?;
    let text_of = |t: u32| -> String {
        m.tokenizer
            .as_ref()
            .and_then(|tk| tk.decode(&[t], false).ok())
            .unwrap_or_else(|| format!("<{t}>"))
    };
    let stop = StopAt {
        max_new: a.max_new,
        eos: m.cfg.eos_id,
        sample: a.sample,
    };
    let line = |s: String| {
        if a.quiet_stdout {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    };
    line(format!(
        "{}: {} prompt tokens, up to {} new (context capacity {cap}), backend {}, {} weights",
        a.model,
        ids.len(),
        a.max_new,
        be.name,
        a.mode
    ));
    let t0 = Instant::now();
    let mut n = 0usize;
    let toks = generate(
        &mut dec,
        be.main.as_ref(),
        be.party_refs(),
        &ids,
        &stop,
        Link::Tcp,
        &mut Csprng::from_os()?,
        &mut |g: &GenToken| {
            n += 1;
            line(format!(
                "token {n:>3} {:>8} {:<16} ctx {:>4}  online {:>9.1} ms  {:>5} rounds  {:>9.3} MB  keys {:>9.3} MB (dealt in {:.0} ms)",
                g.token,
                format!("{:?}", text_of(g.token)),
                g.ctx_len,
                g.online_ms,
                g.rounds,
                mb(g.bytes),
                mb(g.key_bytes),
                g.keygen_ms
            ))
        },
    )?;
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let out_ids: Vec<u32> = toks.iter().map(|t| t.token).collect();
    let plain = generate_plain(&mut dec, be.main.as_ref(), &ids, &stop)?;
    let text = m
        .tokenizer
        .as_ref()
        .and_then(|tk| tk.decode(&out_ids, true).ok());
    let stopped = if stop.eos.is_some() && out_ids.last() == stop.eos.as_ref() {
        "eos"
    } else {
        "max_new_tokens"
    };
    let steps = &toks[1.min(toks.len())..];
    let mean = |f: &dyn Fn(&GenToken) -> f64| {
        (!steps.is_empty()).then(|| steps.iter().map(f).sum::<f64>() / steps.len() as f64)
    };
    let v = json!({
        "model": a.model,
        "mode": a.mode,
        "backend": be.name,
        "device": be.device,
        "prompt_tokens": ids,
        "context_capacity": cap,
        "generated": out_ids,
        "text": text,
        "stopped": stopped,
        "matches_plain": plain == out_ids,
        "plain_generated": plain,
        "wall_ms": wall_ms,
        "prompt_pass": toks.first().map(|t| json!({
            "online_ms": t.online_ms, "rounds": t.rounds, "comm_bytes": t.bytes,
            "key_bytes": t.key_bytes, "keygen_ms": t.keygen_ms,
        })),
        "per_token_mean": {
            "online_ms": mean(&|t| t.online_ms),
            "rounds": mean(&|t| t.rounds as f64),
            "comm_bytes": mean(&|t| t.bytes as f64),
            "key_bytes": mean(&|t| t.key_bytes as f64),
            "keygen_ms": mean(&|t| t.keygen_ms),
        },
        "tokens": toks.iter().map(|t| json!({
            "id": t.token, "text": text_of(t.token), "ctx_len": t.ctx_len,
            "online_ms": t.online_ms, "rounds": t.rounds, "comm_bytes": t.bytes,
            "key_bytes": t.key_bytes, "keygen_ms": t.keygen_ms, "build_ms": t.build_ms,
        })).collect::<Vec<_>>(),
    });
    Ok(v)
}
