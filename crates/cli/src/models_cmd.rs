//! Model commands: `suf models fetch`, `suf run`, `suf bench model`, `suf eval sentiment`,
//! and the building blocks of `suf demo`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use suf_backend::{Backend, CpuBackend};
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::{fetch, float, LoadedModel};
use suf_nn::layers::Mode;
use suf_nn::model::{build, client_input, Built};
use suf_runtime::harness::{run_two_party_on, Link, LocalRun};
use suf_runtime::plain::run_plain;

/// The cache directory: `--cache`, else `$SUF_CACHE`, else the default.
pub fn cache_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(fetch::default_cache_dir)
}

/// `suf models fetch NAME`.
pub fn models_fetch(name: &str, cache: &Option<PathBuf>) -> Result<Value> {
    let dir = cache_dir(cache);
    let pb = crate::logging::progress_bytes(&format!("fetching {name}"));
    let mut cb = |p: &fetch::Progress<'_>| {
        if p.total > 0 {
            pb.set_length(p.total);
            pb.set_position(p.done);
        }
        pb.set_message(format!("{} {}", p.stage, p.item));
    };
    let path = fetch::fetch(name, &dir, &mut cb)
        .with_context(|| format!("fetching {name} into {}", dir.display()))?;
    pb.finish_and_clear();
    tracing::info!(name, path = %path.display(), "fetched and verified");
    Ok(json!({"model": name, "path": path}))
}

/// Parse a mode flag.
pub fn mode(s: &str) -> Result<Mode> {
    Ok(match s {
        "public" => Mode::Public,
        "private" => Mode::Private,
        _ => bail!("--mode must be public or private, not `{s}`"),
    })
}

/// `--backend`: which backend runs the parties' work.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// CUDA when a GPU is usable (`suf_cuda::cuda_available()` and the device opens), else
    /// the CPU; the choice is logged and reported.
    Auto,
    /// The CPU backend (the reference).
    Cpu,
    /// The CUDA backend; an error when no GPU is usable.
    Cuda,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" => Ok(BackendChoice::Cuda),
            _ => Err(format!("unknown backend `{s}` (auto, cpu or cuda)")),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

/// `--gpu N[,M]`: the CUDA device of each party, as an ordinal among the devices the driver
/// shows (CUDA_VISIBLE_DEVICES applies: with `CUDA_VISIBLE_DEVICES=3`, device 3 is `--gpu 0`).
/// One ordinal puts every party on that device; two put party 0 on the first and party 1
/// on the second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuList(Vec<usize>);

impl GpuList {
    /// The ordinal of `party`'s device.
    pub fn for_party(&self, party: u8) -> usize {
        self.0[(party as usize).min(self.0.len() - 1)]
    }
}

impl std::str::FromStr for GpuList {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let v: Vec<usize> = s
            .split(',')
            .map(|x| {
                x.trim().parse::<usize>().map_err(|_| {
                    format!("`{x}` is not a device ordinal (--gpu N, or N,M: one per party)")
                })
            })
            .collect::<std::result::Result<_, _>>()?;
        if v.is_empty() || v.len() > 2 {
            return Err(format!(
                "--gpu takes one device ordinal or two (party 0's, party 1's), not {}",
                v.len()
            ));
        }
        Ok(GpuList(v))
    }
}

impl std::fmt::Display for GpuList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.0.iter().map(|x| x.to_string()).collect();
        f.write_str(&s.join(","))
    }
}

/// Device selection shared by the commands that run parties (`bench model`, `serve`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GpuArg {
    /// CUDA device(s): N puts every party on device N, N,M puts party 0 on device N and
    /// party 1 on device M. Ordinals count the devices CUDA_VISIBLE_DEVICES leaves visible.
    /// Needs --backend cuda or auto; default device 0.
    #[arg(long, value_name = "N[,M]")]
    pub gpu: Option<GpuList>,
}

/// The CUDA backend for `choice` on device `gpu` (0 when not given), or `None` for the CPU.
fn open_cuda(choice: BackendChoice, gpu: Option<usize>) -> Result<Option<suf_cuda::CudaBackend>> {
    let open = || {
        suf_cuda::CudaBackend::with_options(suf_cuda::CudaOptions {
            ordinal: gpu.unwrap_or(0),
            ..Default::default()
        })
    };
    match choice {
        BackendChoice::Cpu => {
            if let Some(g) = gpu {
                bail!("--gpu {g} selects a CUDA device, but --backend is cpu (use --backend cuda or auto)");
            }
            Ok(None)
        }
        BackendChoice::Cuda => open().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "--backend cuda: {e} (no usable NVIDIA GPU here: use --backend cpu, or --backend auto to pick the GPU only when one is present)"
            )
        }),
        BackendChoice::Auto => {
            if !suf_cuda::cuda_available() {
                tracing::info!("--backend auto: no usable CUDA driver/NVRTC/device; using the CPU backend");
                return Ok(None);
            }
            if let Some(g) = gpu {
                // A device asked for by number must open.
                return open()
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("--gpu {g}: {e}"));
            }
            match open() {
                Ok(b) => {
                    tracing::info!("--backend auto: using CUDA on {}", b.device_name());
                    Ok(Some(b))
                }
                Err(e) => {
                    tracing::warn!("--backend auto: a GPU is present but did not open ({e}); using the CPU backend");
                    Ok(None)
                }
            }
        }
    }
}

/// One backend instance (a party process, or a command that needs one).
pub struct OneBackend {
    /// The backend.
    pub be: Box<dyn Backend>,
    /// What it is: `"cpu"` or `"cuda"`.
    pub name: &'static str,
    /// The GPU's name, for CUDA.
    pub device: Option<String>,
}

/// One backend for `choice`, on CUDA device `gpu` when given (an error with `--backend cpu`).
pub fn backend_on(choice: BackendChoice, gpu: Option<usize>) -> Result<OneBackend> {
    Ok(match open_cuda(choice, gpu)? {
        Some(c) => OneBackend {
            name: "cuda",
            device: Some(c.device_name().to_string()),
            be: Box::new(c),
        },
        None => OneBackend {
            be: Box::new(CpuBackend::new()),
            name: "cpu",
            device: None,
        },
    })
}

/// The backends of a two-party run in one process: one for the dealer and the Plain
/// reference, and one instance per party (on a GPU: one stream each, so the parties never
/// wait on each other's host calls).
pub struct Backends {
    /// Dealer and Plain reference.
    pub main: Box<dyn Backend>,
    /// Party 0's and party 1's.
    pub parties: [Box<dyn Backend>; 2],
    /// What they are: `"cpu"` or `"cuda"`.
    pub name: &'static str,
    /// The GPU's name, for CUDA.
    pub device: Option<String>,
}

impl Backends {
    /// The party backends as the harness takes them.
    pub fn party_refs(&self) -> [&dyn Backend; 2] {
        [self.parties[0].as_ref(), self.parties[1].as_ref()]
    }
}

/// Backends for a two-party run in one process.
pub fn backends(choice: BackendChoice) -> Result<Backends> {
    backends_on(choice, None)
}

/// Backends for a two-party run in one process, each party on its `--gpu` device.
pub fn backends_on(choice: BackendChoice, gpus: Option<&GpuList>) -> Result<Backends> {
    Ok(match open_cuda(choice, gpus.map(|g| g.for_party(0)))? {
        Some(main) => {
            let other = match gpus.map(|g| g.for_party(1)) {
                Some(o) if o != main.ordinal() => {
                    suf_cuda::CudaBackend::with_options(suf_cuda::CudaOptions {
                        ordinal: o,
                        ..Default::default()
                    })
                    .map_err(|e| anyhow::anyhow!("--gpu (party 1 on device {o}): {e}"))?
                }
                _ => main.sibling()?,
            };
            let parties: [Box<dyn Backend>; 2] = [Box::new(main.sibling()?), Box::new(other)];
            Backends {
                name: "cuda",
                device: Some(main.device_name().to_string()),
                main: Box::new(main),
                parties,
            }
        }
        None => Backends {
            main: Box::new(CpuBackend::new()),
            parties: [Box::new(CpuBackend::new()), Box::new(CpuBackend::new())],
            name: "cpu",
            device: None,
        },
    })
}

/// Load a model by name with friendly errors.
pub fn load(name: &str, cache: &Option<PathBuf>, seed: u64) -> Result<LoadedModel> {
    let dir = cache_dir(cache);
    // The models crate's errors already say what to do (which names exist; how to fetch).
    Ok(suf_models::load(name, &dir, seed)?)
}

/// Token ids for `text` (real tokenizer) or a deterministic synthetic sequence of `seq` ids.
pub fn token_ids(m: &LoadedModel, text: &str, seq: Option<usize>) -> Result<Vec<u32>> {
    match &m.tokenizer {
        Some(t) => {
            let ids = t.ids(text, true)?;
            if ids.is_empty() {
                bail!("the text tokenizes to no tokens");
            }
            if let Some(max) = seq {
                if ids.len() > max {
                    bail!(
                        "the text tokenizes to {} tokens, more than --seq {max}",
                        ids.len()
                    );
                }
            }
            let limit = m.cfg.max_pos.saturating_sub(m.cfg.pos_offset);
            if ids.len() > limit {
                bail!(
                    "the text tokenizes to {} tokens; the model takes at most {limit}",
                    ids.len()
                );
            }
            Ok(ids)
        }
        None => {
            let n = seq.unwrap_or(16);
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
            Ok((0..n)
                .map(|i| {
                    ((h.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33)
                        % m.cfg.vocab as u64) as u32
                })
                .collect())
        }
    }
}

/// The format for a model (its defaults unless overridden).
pub fn format(m: &LoadedModel, bits: Option<u32>, frac: Option<u32>) -> Result<FixedPoint> {
    Ok(FixedPoint::new(
        bits.unwrap_or(m.cfg.ring_bits),
        frac.unwrap_or(m.cfg.frac_bits),
    )?)
}

/// Build the program for `ids`.
pub fn program(
    m: &LoadedModel,
    fp: FixedPoint,
    mode: Mode,
    seq: usize,
    layers: Option<usize>,
) -> Result<Built> {
    Ok(build(&m.cfg, &m.weights, fp, mode, seq, layers)?)
}

fn inputs(m: &LoadedModel, fp: FixedPoint, ids: &[u32]) -> Result<BTreeMap<String, Vec<u64>>> {
    let mut x = BTreeMap::new();
    x.insert("x".to_string(), client_input(&m.cfg, &m.weights, fp, ids)?);
    Ok(x)
}

fn decode(fp: FixedPoint, v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| fp.decode(x)).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    float::cosine(a, b)
}

fn max_ulp(fp: FixedPoint, a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| fp.width.to_signed(fp.width.sub(x, y)).unsigned_abs())
        .max()
        .unwrap_or(0)
}

/// `suf run`: one secure inference end to end (dealer, two parties over loopback TCP, client).
pub fn run(
    model: &str,
    text: &str,
    seq: Option<usize>,
    choice: BackendChoice,
    mode_s: &str,
    layers: Option<usize>,
    cache: &Option<PathBuf>,
) -> Result<Value> {
    let be = backends(choice)?;
    let pb = crate::logging::progress(4, "suf run");
    pb.set_message("loading the model");
    tracing::info!(model, "loading the model");
    let m = load(model, cache, 1)?;
    pb.inc(1);
    let fp = format(&m, None, None)?;
    let ids = token_ids(&m, text, seq)?;
    pb.set_message("building the program");
    tracing::info!(
        tokens = ids.len(),
        family = m.cfg.family.as_str(),
        layers = m.cfg.layers,
        "building the fixed-point program"
    );
    let built = program(&m, fp, mode(mode_s)?, ids.len(), layers)?;
    pb.inc(1);
    let x = inputs(&m, fp, &ids)?;
    let mut rng = Csprng::from_os()?;
    pb.set_message("dealer, then the two parties over loopback TCP");
    tracing::info!(
        backend = be.name,
        "dealer and two parties over loopback TCP"
    );
    let blocks = layers.unwrap_or(m.cfg.layers).min(m.cfg.layers);
    let r = crate::output::run_with_progress(&built, &be, &x, blocks, &mut rng)?;
    crate::output::log_run(&r);
    pb.inc(1);
    pb.set_message("float reference");
    tracing::info!("float reference forward");
    let fl = float::FloatModel::load(&m.cfg, &m.weights)?
        .forward_layers(std::slice::from_ref(&ids), layers.unwrap_or(m.cfg.layers))?;
    pb.finish_and_clear();
    let secure = decode(fp, &r.outputs[0]);
    let plain = decode(fp, &r.plain[0]);
    let mut v = json!({
        "model": model,
        "seq": ids.len(),
        "tokens": ids,
        "backend": be.name,
        "device": be.device,
        "mode": mode_s,
        "ring_bits": fp.width.bits(),
        "frac_bits": fp.frac,
        "max_abs_diff_secure_plain": max_ulp(fp, &r.outputs[0], &r.plain[0]),
        "matches_plain": r.matches_plain(),
        "online_ms": r.reports[0].online_ms.max(r.reports[1].online_ms),
        "rounds": r.reports[0].rounds,
        "comm_bytes": r.reports[0].bytes_sent + r.reports[0].bytes_recv,
        "key_bytes": r.deal.key_bytes[0].max(r.deal.key_bytes[1]),
        "keygen_ms": r.deal.keygen_ms,
        "layers": r.reports[0].layers,
    });
    if m.cfg.family.is_encoder() {
        let f = fl
            .pooled
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default();
        v["secure"] = json!({"pooled": secure});
        v["plain"] = json!({"pooled": plain});
        v["float"] = json!({"pooled": f});
        v["cosine_secure_float"] = json!(cosine(&secure, &f));
        v["cosine_plain_float"] = json!(cosine(&plain, &f));
        if model == "minilm-l6" && layers.is_none() {
            v["prediction"] = json!({"secure": sentiment(&secure)?, "float": sentiment(&f)?});
        }
    } else {
        let f = fl
            .logits
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default();
        let top = |l: &[f64]| -> Vec<Value> {
            float::top_k(l, 5)
                .into_iter()
                .map(|i| {
                    let tok = m
                        .tokenizer
                        .as_ref()
                        .and_then(|t| t.decode(&[i as u32], false).ok())
                        .unwrap_or_default();
                    json!({"id": i, "token": tok, "logit": l[i]})
                })
                .collect()
        };
        let ts = float::top_k(&secure, 1);
        let tf = float::top_k(&f, 1);
        v["secure"] = json!({"top5": top(&secure)});
        v["plain"] = json!({"top5": top(&plain)});
        v["float"] = json!({"top5": top(&f)});
        v["top1_agree"] = json!(ts == tf);
        v["cosine_secure_float"] = json!(cosine(&secure, &f));
    }
    Ok(v)
}

/// What `suf bench model` runs: the model, the sequence and the program options.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    /// Model name.
    pub model: String,
    /// Sequence length asked for (a real tokenizer may give fewer tokens).
    pub seq: usize,
    /// Sequences per inference.
    pub batch: usize,
    /// `public` or `private`.
    pub mode: String,
    /// Only the first N blocks.
    pub layers: Option<usize>,
    /// Model cache directory.
    pub cache: Option<PathBuf>,
}

/// A benchmark's program and client input, built the same way by every process of it.
pub struct BenchProgram {
    /// The model.
    pub m: LoadedModel,
    /// Its ring format.
    pub fp: FixedPoint,
    /// The program and the private weights.
    pub built: Built,
    /// The client's input.
    pub x: BTreeMap<String, Vec<u64>>,
    /// Tokens per sequence.
    pub seq: usize,
    /// Milliseconds the build took.
    pub build_ms: f64,
}

/// Build a benchmark's program (deterministic: the party processes of `--processes 2` call
/// it with the same spec and get the same program, which their key streams check).
pub fn bench_program(spec: &BenchSpec) -> Result<BenchProgram> {
    let m = load(&spec.model, &spec.cache, 1)?;
    let fp = format(&m, None, None)?;
    let ids = token_ids(
        &m,
        "the quick brown fox jumps over the lazy dog",
        Some(spec.seq),
    )?;
    let seq = ids.len();
    let t = Instant::now();
    let built = suf_nn::model::build_batch(
        &m.cfg,
        &m.weights,
        fp,
        mode(&spec.mode)?,
        seq,
        spec.batch,
        spec.layers,
    )?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let seqs: Vec<Vec<u32>> = (0..spec.batch)
        .map(|b| {
            ids.iter()
                .map(|&i| (i + b as u32) % m.cfg.vocab as u32)
                .collect()
        })
        .collect();
    let mut x = BTreeMap::new();
    x.insert(
        "x".to_string(),
        suf_nn::model::client_input_batch(&m.cfg, &m.weights, fp, &seqs)?,
    );
    Ok(BenchProgram {
        m,
        fp,
        built,
        x,
        seq,
        build_ms,
    })
}

/// The median of `v` (the upper one for an even count); 0 for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Options of `suf bench model` beyond the program: device selection and the trace.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BenchExtra {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub gpu: GpuArg,
    /// Write a per-round trace (JSON lines): per run, party and round the wall, host, device
    /// and wait-for-peer milliseconds and the bytes; with --processes 2 also every FSS batch.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// Where a party's online time went, from its report: host compute, device time and waiting
/// for the peer (summed), per round `[round, ms, host_ms, device_ms, wait_ms]`, what the
/// backend did (calls, time and bytes per operation; DCF batches read in place or uploaded)
/// and the time per protocol operator summed over the layers.
pub fn breakdown_json(rep: &suf_runtime::report::RunReport) -> Value {
    let rounds: Vec<Value> = rep
        .round_times
        .iter()
        .map(|r| json!([r.round, r.ms, r.host_ms, r.device_ms, r.wait_ms]))
        .collect();
    let mut by_op: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for o in &rep.ops {
        let e = by_op.entry(o.op.clone()).or_default();
        e.0 += o.ms;
        e.1 += o.elements;
    }
    let mut ops: Vec<(String, (f64, u64))> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    json!({
        "host_ms": rep.host_ms, "device_ms": rep.device_ms, "wait_ms": rep.wait_ms,
        "rounds_columns": ["round", "ms", "host_ms", "device_ms", "wait_ms"],
        "rounds": rounds,
        "backend": serde_json::to_value(&rep.backend).unwrap_or(Value::Null),
        "phases_ms": rep.phases_ms,
        "operators": ops.into_iter().map(|(op, (ms, el))| json!({"op": op, "ms": ms, "elements": el})).collect::<Vec<_>>(),
    })
}

/// Trace lines of a party's rounds (`--trace` with both parties in one process).
pub fn round_trace_lines(run: usize, rep: &suf_runtime::report::RunReport) -> Vec<Value> {
    rep.round_times
        .iter()
        .map(|r| {
            json!({"run": run, "party": rep.party, "round": r.round, "ms": r.ms,
                   "host_ms": r.host_ms, "device_ms": r.device_ms, "wait_ms": r.wait_ms,
                   "sent": r.bytes_sent, "recv": r.bytes_recv})
        })
        .collect()
}

/// Append JSON lines to the trace file.
pub fn append_trace(path: &std::path::Path, lines: &[Value]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for l in lines {
        writeln!(f, "{l}").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Start a trace file empty (`--trace`), so a run's lines are its own.
pub fn start_trace(path: &Option<PathBuf>) -> Result<()> {
    if let Some(p) = path {
        std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
    }
    Ok(())
}

/// `suf bench model`: median online time of `runs` inferences after a warm-up (fresh keys each
/// time; the dealer is excluded from the online time). Both parties in this process, each
/// with its own backend instance.
pub fn bench_model(
    spec: &BenchSpec,
    choice: BackendChoice,
    runs: usize,
    extra: &BenchExtra,
) -> Result<Value> {
    let be = backends_on(choice, extra.gpu.gpu.as_ref())?;
    // On CUDA the dealer's DCF batches are made on the GPU too (same bytes as the CPU's).
    let _dealer = if be.name == "cuda" {
        crate::keygen::gpu_dealer(
            BackendChoice::Cuda,
            extra.gpu.gpu.as_ref().map(|g| g.for_party(0)),
        )?
    } else {
        None
    };
    start_trace(&extra.trace)?;
    let BenchProgram {
        m,
        fp,
        built,
        x,
        seq,
        build_ms,
    } = bench_program(spec)?;
    let (model, batch, mode_s, layers) = (&spec.model, spec.batch, &spec.mode, spec.layers);
    let mut rng = Csprng::from_os()?;
    let mut samples = Vec::new();
    let mut last: Option<LocalRun> = None;
    let mut all_match = true;
    let pb = crate::logging::progress(runs.max(1) as u64 + 1, "secure inferences");
    for i in 0..runs.max(1) + 1 {
        pb.inc(1);
        let r = run_two_party_on(
            &built.prog,
            be.main.as_ref(),
            be.party_refs(),
            &x,
            &built.private,
            Link::Tcp,
            &mut rng,
        )?;
        all_match &= r.matches_plain();
        if i > 0 {
            samples.push(r.reports[0].online_ms.max(r.reports[1].online_ms));
            if let Some(t) = &extra.trace {
                for rep in &r.reports {
                    append_trace(t, &round_trace_lines(i, rep))?;
                }
            }
        }
        last = Some(r);
    }
    pb.finish_and_clear();
    let r = last.context("no run")?;
    let layers_json: Vec<Value> = r.reports[0]
        .layers
        .iter()
        .map(|l| {
            json!({"layer": l.layer, "ms": l.ms, "online_ms": l.ms, "bytes_sent": l.bytes_sent,
                   "bytes_recv": l.bytes_recv, "comm_bytes": l.bytes_sent + l.bytes_recv, "rounds": l.rounds})
        })
        .collect();
    let breakdown = crate::plan_cmd::bench_breakdown(&built.prog, &r.reports)?;
    Ok(json!({
        "model": model, "seq": seq, "batch": batch, "backend": be.name, "device": be.device, "mode": mode_s,
        "layers_run": layers.unwrap_or(m.cfg.layers).min(m.cfg.layers),
        "ring_bits": fp.width.bits(), "frac_bits": fp.frac,
        "online_ms": median(samples.clone()), "online_ms_runs": samples,
        "comm_bytes": r.reports[0].bytes_sent + r.reports[0].bytes_recv,
        "bytes_sent": r.reports[0].bytes_sent,
        "rounds": r.reports[0].rounds,
        "key_bytes": r.deal.key_bytes[0].max(r.deal.key_bytes[1]),
        "key_bytes_per_party": r.deal.key_bytes,
        "keygen_ms": r.deal.keygen_ms,
        "keygen_dealer": r.deal.dcf_dealer,
        "keygen_path": "whole dealer into in-memory key streams (host); DCF batches made by keygen_dealer",
        "build_ms": build_ms,
        "matches_plain": all_match,
        "threads": rayon::current_num_threads(),
        "gpu": extra.gpu.gpu.as_ref().map(|g| g.to_string()),
        "breakdown_per_party": [breakdown_json(&r.reports[0]), breakdown_json(&r.reports[1])],
        "breakdown_note": "last run; host_ms = online less device and wait; with both parties in one process the online time includes registering the weights and attaching the keys",
        "layers": layers_json,
        "plan": breakdown["planned"], "ops": breakdown["ops"],
    }))
}

/// `suf eval sentiment`: the committed logistic-regression head on MiniLM-L6 embeddings of the
/// labelled sentences. The secure embeddings are computed by the fixed-point (Plain)
/// interpreter, which the two-party protocol equals bit for bit; `verify` sentences also run
/// through the real protocol and must match.
pub fn eval_sentiment(
    model: &str,
    data: &str,
    limit: Option<usize>,
    verify: usize,
    choice: BackendChoice,
    cache: &Option<PathBuf>,
) -> Result<Value> {
    if model != "minilm-l6" {
        bail!("the committed sentiment head is for minilm-l6 (got `{model}`)");
    }
    let be = backends(choice)?;
    let dir = cache_dir(cache);
    let ddir = fetch::require("sentiment", &dir).map_err(|e| {
        anyhow::anyhow!("{e}\n(fetch the data first: `suf models fetch sentiment`)")
    })?;
    let sents = suf_models::data::load_sentiment(&ddir, data)?;
    let n = limit.unwrap_or(sents.len()).min(sents.len());
    let m = load(model, cache, 1)?;
    let fp = format(&m, None, None)?;
    let head = suf_models::data::SentimentHead::minilm_l6()?;
    let fmodel = float::FloatModel::load(&m.cfg, &m.weights)?;
    let mut progs: BTreeMap<usize, Built> = BTreeMap::new();
    let (mut ok_s, mut ok_f, mut agree, mut verified) = (0usize, 0usize, 0usize, 0usize);
    let mut min_cos = f64::INFINITY;
    let pb = crate::logging::progress(n as u64, "sentences");
    let mut rng = Csprng::from_os()?;
    for (i, s) in sents.iter().take(n).enumerate() {
        let ids = token_ids(&m, &s.text, None)?;
        let seq = ids.len();
        let built = match progs.entry(seq) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(program(&m, fp, Mode::Public, seq, None)?)
            }
        };
        let x = inputs(&m, fp, &ids)?;
        let out = run_plain(&built.prog, be.main.as_ref(), &x, &built.private)?;
        if i < verify {
            let r = run_two_party_on(
                &built.prog,
                be.main.as_ref(),
                be.party_refs(),
                &x,
                &built.private,
                Link::Mem,
                &mut rng,
            )?;
            if r.outputs != out {
                bail!("sentence {i}: the two-party protocol differs from the plain interpreter");
            }
            verified += 1;
        }
        let emb = decode(fp, &out[0]);
        let femb = fmodel
            .forward(&[ids])?
            .pooled
            .and_then(|p| p.into_iter().next())
            .unwrap_or_default();
        min_cos = min_cos.min(cosine(&emb, &femb));
        let (ps, pf) = (head.predict(&emb), head.predict(&femb));
        ok_s += usize::from(ps == s.label);
        ok_f += usize::from(pf == s.label);
        agree += usize::from(ps == pf);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let d = n.max(1) as f64;
    Ok(json!({
        "model": model, "data": data, "sentences": n,
        "secure_accuracy": ok_s as f64 / d,
        "float_accuracy": ok_f as f64 / d,
        "agreement": agree as f64 / d,
        "min_cosine_secure_float": min_cos,
        "verified_two_party": verified,
        "backend": be.name,
        "secure_means": "fixed-point interpreter, equal bit for bit to the two-party protocol (checked on verified_two_party sentences)",
    }))
}

/// The committed sentiment head on a MiniLM-L6 embedding.
pub fn sentiment(emb: &[f64]) -> Result<Value> {
    let head = suf_models::data::SentimentHead::minilm_l6()?;
    let z = head.logits(emb);
    let p = 1.0 / (1.0 + (z[0] - z[1]).exp());
    Ok(json!({"sentiment": if p > 0.5 {"positive"} else {"negative"}, "p_positive": p}))
}

/// What a client shows for a reconstructed output: sentiment for MiniLM-L6 embeddings,
/// top-5 tokens for decoders, else the vector.
pub fn describe(model: &str, out: &[f64]) -> Result<Value> {
    if model == "toy" {
        return Ok(json!({"output": out}));
    }
    let m = load(model, &None, 1)?;
    if model == "minilm-l6" {
        let head = suf_models::data::SentimentHead::minilm_l6()?;
        let z = head.logits(out);
        let p = 1.0 / (1.0 + (z[0] - z[1]).exp());
        return Ok(
            json!({"sentiment": if p > 0.5 {"positive"} else {"negative"}, "p_positive": p}),
        );
    }
    if !m.cfg.family.is_encoder() {
        let top: Vec<Value> = float::top_k(out, 5)
            .into_iter()
            .map(|i| {
                let tok = m
                    .tokenizer
                    .as_ref()
                    .and_then(|t| t.decode(&[i as u32], false).ok())
                    .unwrap_or_default();
                json!({"id": i, "token": tok, "logit": out[i]})
            })
            .collect();
        return Ok(json!({"top5": top}));
    }
    Ok(json!({"pooled": out}))
}

/// `suf demo`: the sentence through MiniLM-L6 and the committed sentiment head, secure beside
/// float, with the costs. MiniLM-L6 is fetched (pinned, hash-checked) when it is not cached;
/// offline (or with `SUF_OFFLINE=1`) the demo runs the synthetic bert-tiny and says so.
pub fn demo(text: &str, choice: BackendChoice, cache: &Option<PathBuf>) -> Result<Value> {
    let be = backends(choice)?;
    let dir = cache_dir(cache);
    let offline = std::env::var("SUF_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut why_synthetic = None;
    if fetch::cached("minilm-l6", &dir).is_none() {
        if offline {
            why_synthetic = Some("SUF_OFFLINE is set".to_string());
        } else {
            tracing::info!(cache = %dir.display(), "fetching minilm-l6 (pinned, sha256-checked)");
            let pb = crate::logging::progress_bytes("fetching minilm-l6");
            let mut cb = |p: &fetch::Progress<'_>| {
                if p.total > 0 {
                    pb.set_length(p.total);
                    pb.set_position(p.done);
                }
                pb.set_message(format!("fetching minilm-l6: {} {}", p.stage, p.item));
            };
            if let Err(e) = fetch::fetch("minilm-l6", &dir, &mut cb) {
                tracing::warn!("could not fetch minilm-l6 ({e}); running the synthetic model");
                why_synthetic = Some(format!("could not fetch minilm-l6: {e}"));
            }
            pb.finish_and_clear();
        }
    }
    let real = why_synthetic.is_none() && fetch::cached("minilm-l6", &dir).is_some();
    let name = if real { "minilm-l6" } else { "bert-tiny" };
    let pb = crate::logging::progress(3, "suf demo");
    pb.set_message(format!("loading {name}"));
    let m = load(name, cache, 1)?;
    let fp = format(&m, None, None)?;
    let ids = token_ids(&m, text, if real { None } else { Some(12) })?;
    let built = program(&m, fp, Mode::Public, ids.len(), None)?;
    pb.inc(1);
    let x = inputs(&m, fp, &ids)?;
    let mut rng = Csprng::from_os()?;
    pb.set_message("dealer, then the two servers over loopback TCP");
    tracing::info!(
        model = name,
        backend = be.name,
        "dealer and two parties over loopback TCP"
    );
    let t = Instant::now();
    let r = crate::output::run_with_progress(&built, &be, &x, m.cfg.layers, &mut rng)?;
    let total_ms = t.elapsed().as_secs_f64() * 1e3;
    crate::output::log_run(&r);
    pb.inc(1);
    pb.set_message("float reference");
    let secure = decode(fp, &r.outputs[0]);
    let fl = float::FloatModel::load(&m.cfg, &m.weights)?.forward(std::slice::from_ref(&ids))?;
    let fe = fl
        .pooled
        .and_then(|p| p.into_iter().next())
        .unwrap_or_default();
    pb.finish_and_clear();
    let mut v = json!({
        "model": name,
        "backend": be.name,
        "device": be.device,
        "input": text,
        "tokens": ids.len(),
        "seq": ids.len(),
        "mode": "public",
        "matches_plain": r.matches_plain(),
        "cosine_secure_float": cosine(&secure, &fe),
        "online_ms": r.reports[0].online_ms.max(r.reports[1].online_ms),
        "total_ms_including_dealer": total_ms,
        "comm_bytes": r.reports[0].bytes_sent + r.reports[0].bytes_recv,
        "comm_bytes_per_party": r.reports[0].bytes_sent + r.reports[0].bytes_recv,
        "rounds": r.reports[0].rounds,
        "key_bytes": r.deal.key_bytes[0].max(r.deal.key_bytes[1]),
        "key_bytes_per_party": r.deal.key_bytes[0].max(r.deal.key_bytes[1]),
        "keygen_ms": r.deal.keygen_ms,
        "layers": r.reports[0].layers,
    });
    if real {
        v["secure"] = sentiment(&secure)?;
        v["float"] = sentiment(&fe)?;
    } else {
        v["note"] = json!(format!(
            "synthetic bert-tiny with random weights, so there is no sentiment to show ({}); `suf models fetch minilm-l6` with network access gives the real demo",
            why_synthetic.unwrap_or_else(|| "minilm-l6 is not cached".into())
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lists_parse_and_pick_per_party() {
        let one: GpuList = "1".parse().unwrap();
        assert_eq!((one.for_party(0), one.for_party(1)), (1, 1));
        let two: GpuList = "0, 1".parse().unwrap();
        assert_eq!((two.for_party(0), two.for_party(1)), (0, 1));
        assert_eq!(two.to_string(), "0,1");
        for bad in ["", "x", "-1", "0,1,2", "0,", "1.5"] {
            let e = bad.parse::<GpuList>().unwrap_err();
            assert!(e.contains("--gpu") || e.contains("ordinal"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn gpu_with_the_cpu_backend_is_an_error() {
        let e = backend_on(BackendChoice::Cpu, Some(0)).err().unwrap();
        assert!(e.to_string().contains("--backend is cpu"), "{e}");
        assert!(backend_on(BackendChoice::Cpu, None).is_ok());
    }

    #[test]
    fn gpu_without_a_device_is_an_error() {
        if suf_cuda::cuda_available() {
            // With a GPU: an ordinal beyond the devices must not open.
            let e = backend_on(BackendChoice::Cuda, Some(1 << 20))
                .err()
                .unwrap();
            assert!(e.to_string().contains("no CUDA device with ordinal"), "{e}");
            return;
        }
        let e = backend_on(BackendChoice::Cuda, Some(1)).err().unwrap();
        assert!(e.to_string().contains("--backend cuda"), "{e}");
        // auto without a GPU falls back to the CPU, as without --gpu.
        assert_eq!(
            backend_on(BackendChoice::Auto, Some(1)).unwrap().name,
            "cpu"
        );
    }

    #[test]
    fn breakdown_sums_operators_over_layers() {
        use suf_runtime::report::{OpReport, RoundTime, RunReport};
        let rep = RunReport {
            host_ms: 3.0,
            device_ms: 2.0,
            wait_ms: 1.0,
            round_times: vec![RoundTime {
                round: 1,
                ms: 6.0,
                host_ms: 3.0,
                device_ms: 2.0,
                wait_ms: 1.0,
                bytes_sent: 8,
                bytes_recv: 8,
            }],
            ops: vec![
                OpReport {
                    layer: "l0".into(),
                    op: "gelu".into(),
                    ms: 1.5,
                    elements: 10,
                    ..Default::default()
                },
                OpReport {
                    layer: "l1".into(),
                    op: "gelu".into(),
                    ms: 2.5,
                    elements: 10,
                    ..Default::default()
                },
                OpReport {
                    layer: "l0".into(),
                    op: "mul".into(),
                    ms: 0.5,
                    elements: 4,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let b = breakdown_json(&rep);
        assert_eq!(b["rounds"][0], json!([1, 6.0, 3.0, 2.0, 1.0]));
        assert_eq!(
            b["operators"][0],
            json!({"op": "gelu", "ms": 4.0, "elements": 20})
        );
        assert_eq!(b["operators"][1]["op"], "mul");
        assert_eq!(b["host_ms"], 3.0);
        let lines = round_trace_lines(2, &rep);
        assert_eq!(lines[0]["run"], 2);
        assert_eq!(lines[0]["device_ms"], 2.0);
    }
}
