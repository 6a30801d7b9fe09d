//! Time the CPU dealer on a zoo model without running the parties (issue 11's profiling aid).
//!
//! ```text
//! cargo run --release -p suf-cli --example deal_model -- MODEL SEQ [LAYERS] [private|public] [DIR]
//! ```
//!
//! Builds the model's program (first LAYERS blocks; 0 = all), masks the private weights, and
//! deals both parties' key streams into `DIR/p0.keys`, `DIR/p1.keys` (deleted afterwards; use
//! a tmpfs such as /dev/shm), or into a sink that drops the bytes when no DIR is given. Prints
//! the dealer's report (phases and the per-kind split) as JSON on stdout.
//!
//! With `DEAL_MODEL_SEED=N` (and no DIR) the generators are seeded deterministically
//! (`Csprng::for_tests`) and the SHA-256 of both streams is printed: the same seed must give
//! the same hashes before and after a change to a generation routine (bert-tiny seq 16 takes
//! seconds).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use anyhow::{Context, Result};
use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_nn::layers::Mode;
use suf_runtime::dealer::run_dealer;
use suf_runtime::keystream::DealerStreams;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("bert-tiny", String::as_str);
    let seq: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    let layers: usize = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let mode = match args.get(3).map(String::as_str) {
        None | Some("private") => Mode::Private,
        Some("public") => Mode::Public,
        Some(o) => anyhow::bail!("mode {o}: use private or public"),
    };
    let dir = args.get(4).map(PathBuf::from);
    let cache = std::env::temp_dir().join("suf-deal-model-cache");
    let m = suf_models::load(name, &cache, 7).context("loading the model")?;
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits)?;
    let t = std::time::Instant::now();
    let built = suf_nn::model::build(
        &m.cfg,
        &m.weights,
        fp,
        mode,
        seq,
        (layers > 0).then_some(layers),
    )?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let prog = &built.prog;
    let seed: Option<u64> = match std::env::var("DEAL_MODEL_SEED") {
        Ok(v) => Some(v.parse().context("DEAL_MODEL_SEED")?),
        Err(_) => None,
    };
    let fresh = |k: u64| match seed {
        Some(s) => Ok(Csprng::for_tests(s.wrapping_mul(2).wrapping_add(k))),
        None => Csprng::from_os(),
    };
    let mut rng = fresh(0)?;
    let (_what, rw) = suf_runtime::mask_weights(prog.width(), &built.private, &mut rng);
    let rng = fresh(1)?;
    let hashes = [0, 1].map(|_| Arc::new(Mutex::new(Sha256::new())));
    let paths = dir.as_ref().map(|d| [d.join("p0.keys"), d.join("p1.keys")]);
    let ds = match &paths {
        Some(p) => DealerStreams::to_files(
            prog.width(),
            rng,
            [0; 16],
            prog.fingerprint(),
            [&p[0], &p[1]],
        )?,
        None => DealerStreams::to_writers(
            prog.width(),
            rng,
            [0; 16],
            prog.fingerprint(),
            hashes
                .clone()
                .map(|h| Box::new(HashSink(h)) as Box<dyn std::io::Write + Send>),
            ["<sink 0>", "<sink 1>"],
        )?,
    };
    let rep = run_dealer(prog, &CpuBackend::new(), ds, &rw);
    for p in paths.iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    let rep = rep?;
    let mut v = serde_json::to_value(&rep)?;
    v["build_ms"] = serde_json::json!(build_ms);
    v["model"] = serde_json::json!(name);
    v["seq"] = serde_json::json!(seq);
    v["layers"] = serde_json::json!(layers);
    if seed.is_some() && dir.is_none() {
        let hex = |h: &Arc<Mutex<Sha256>>| -> String {
            let d = h.lock().map(|g| g.clone().finalize()).unwrap_or_default();
            d.iter().map(|b| format!("{b:02x}")).collect()
        };
        v["sha256"] = serde_json::json!([hex(&hashes[0]), hex(&hashes[1])]);
    }
    println!("{v}");
    Ok(())
}

/// A sink that hashes what it is given.
struct HashSink(Arc<Mutex<Sha256>>);

impl std::io::Write for HashSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("hash lock poisoned"))?
            .update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
