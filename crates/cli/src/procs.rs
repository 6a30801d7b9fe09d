//! `suf bench model --processes 2`: the parties as two processes on one machine over loopback
//! TCP, each with its own backend (on a GPU host: one process per party on the one GPU, the
//! way reference/sigma-on-h200.md measured SIGMA).
//!
//! The parent is the dealer and the client. It starts this binary twice with the hidden
//! subcommand `bench party`; each party builds the same program (the key streams check its
//! fingerprint), makes its weights resident once, and then answers one line per run on its
//! standard input:
//!
//! ```text
//! parent                                   party j (j = 0, 1)
//!   spawn ──────────────────────────────▶  build program, backend, resident weights
//!         ◀──────────────────────────────  {"ready": true, "addr": ..}      (stdout, JSON)
//!   per run i (one warm-up, then --runs):
//!   share input → DIR/run<i>.input<j>
//!   "run i" ────────────────────────────▶  connect to DIR/keys<j>.sock
//!   deal keys ══ DIR/keys<j>.sock ═══════▶  key load: reserve device memory (a GPU),
//!                                          receive the stream (into the device as it
//!                                          arrives; the host keeps all but the key
//!                                          bodies), check it, prepare the run
//!                                          connect (party 0 accepts, party 1 connects)
//!                                          online phase (the clock runs here only)
//!         ◀──────────────────────────────  {"run": i, "online_ms": .., ..} + DIR/run<i>.output<j>
//!                                          (+ DIR/run<i>.trace<j> with --trace)
//!   reconstruct, compare with plain, delete the run's files
//! ```
//!
//! Keys are one-time: every run has fresh keys, dealt by the parent while the parties
//! receive them, each party's half over its own Unix socket in DIR (no key file: a bert-base
//! run deals ≈ 2 × 22 GB, which files made the bottleneck). A party's stream lives only in
//! its memory and is consumed by value; on a GPU its key bodies live only in device memory
//! (`PartyStream::receive`), which is how both parties' bert-large streams (60 + 55 GB) fit
//! on one H200 beside a host of 128 GiB. DIR is a private temporary directory (0700) removed at
//! the end, so no other user can connect to the sockets; a party that does not connect within
//! `--timeout` fails the run. With `--backend cuda` (or auto on a GPU host) the dealer makes
//! its DCF keys on the GPU (`suf_cuda::CudaDealer`, byte-identical to the CPU's); the JSON's
//! `dealer` says which path was timed.
//!
//! `--gpu N[,M]` gives each party process its CUDA device (party 0 on N, party 1 on M); the
//! parent resolves the list and passes each party its one ordinal.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use suf_backend::CpuBackend;
use suf_core::prg::Csprng;
use suf_net::{LinkConfig, TcpTransport};
use suf_runtime::dealer::run_dealer;
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::party::Party;
use suf_runtime::plain::run_plain;
use suf_runtime::report::Tracer;

use crate::files;
use crate::models_cmd::{self, median, BackendChoice, BenchProgram, BenchSpec};
use crate::peerlink::{PeerLink, PeerLinkArgs};

/// Arguments of the hidden `suf bench party` (one party of `--processes 2`).
#[derive(clap::Args, Debug)]
pub struct PartyArgs {
    /// 0 or 1.
    #[arg(long)]
    party: u8,
    /// The run directory (keys, shares, outputs).
    #[arg(long)]
    dir: PathBuf,
    /// Model.
    #[arg(long)]
    model: String,
    /// Tokens per sequence.
    #[arg(long)]
    seq: usize,
    /// Sequences per inference.
    #[arg(long)]
    batch: usize,
    /// public or private.
    #[arg(long)]
    mode: String,
    /// Only the first N blocks.
    #[arg(long)]
    layers: Option<usize>,
    /// Model cache directory.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Backend.
    #[arg(long)]
    backend: BackendChoice,
    /// Party 0 listens here.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Party 1 connects here.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Seconds any network wait may take.
    #[arg(long)]
    timeout: u64,
    /// CUDA device ordinal of this party.
    #[arg(long)]
    gpu: Option<usize>,
    /// Write each run's trace to DIR/run<i>.trace<party>.
    #[arg(long)]
    trace: bool,
    /// TLS on the parties' link: this party's folder in the layout of `suf certs`.
    #[arg(long)]
    tls: Option<PathBuf>,
}

fn key_socket(dir: &Path, party: u8) -> PathBuf {
    dir.join(format!("keys{party}.sock"))
}

/// Socket buffer asked for on both ends of a key socket. With the default (≈ 208 KB) a
/// bert-base stream moves in ≈ 100 K wake-ups per party; measured on CPU-2 (16 MiB reads,
/// 4 GiB): 2.8 GB/s with the default, 4.9 GB/s with 4 MiB. The kernel caps it at its
/// `wmem_max`/`rmem_max`; a refusal leaves the default (only speed depends on it).
const KEY_SOCKET_BUFFER: usize = 4 << 20;

/// Accept one connection on `l` within `timeout` (a party that died before connecting must
/// not hang the dealer).
fn accept_within(l: &UnixListener, timeout: Duration, party: u8) -> Result<UnixStream> {
    l.set_nonblocking(true)?;
    let t = Instant::now();
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                // A party that stops reading fails the run instead of stalling the dealer.
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if t.elapsed() > timeout {
                    bail!("party {party} did not connect for its keys within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e).context("accepting a party's key connection"),
        }
    }
}

fn input_path(dir: &Path, run: usize, party: u8) -> PathBuf {
    dir.join(format!("run{run}.input{party}"))
}

fn output_path(dir: &Path, run: usize, party: u8) -> PathBuf {
    dir.join(format!("run{run}.output{party}"))
}

fn trace_path(dir: &Path, run: usize, party: u8) -> PathBuf {
    dir.join(format!("run{run}.trace{party}"))
}

/// Owner-only permissions (`mode` 0o600 for files, 0o700 for directories).
fn restrict(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One spawned party: its process, the pipe it reads commands from and the one it answers on.
struct PartyProc {
    party: u8,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl PartyProc {
    fn spawn(party: u8, spec: &BenchSpec, seq: usize, a: &SpawnArgs<'_>) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the suf binary")?;
        // In a network namespace of its own: `ip netns exec NS suf …` (it execs, so the child
        // is the party itself).
        let mut cmd = match &a.link.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns[party as usize]]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["bench", "party", "--party", &party.to_string()])
            .arg("--dir")
            .arg(a.dir)
            .args(["--model", &spec.model, "--seq", &seq.to_string()])
            .args(["--batch", &spec.batch.to_string(), "--mode", &spec.mode])
            .args(["--backend", &a.backend.to_string()])
            .args(["--timeout", &a.timeout.to_string()]);
        if let Some(l) = spec.layers {
            cmd.args(["--layers", &l.to_string()]);
        }
        if let Some(c) = &spec.cache {
            cmd.arg("--cache").arg(c);
        }
        if let Some(g) = a.gpu {
            cmd.args(["--gpu", &g.to_string()]);
        }
        if a.trace {
            cmd.arg("--trace");
        }
        if let Some(t) = &a.tls[party as usize] {
            cmd.arg("--tls").arg(t);
        }
        cmd.env("RAYON_NUM_THREADS", a.link.threads.to_string());
        match a.peer {
            None => cmd.args(["--listen", &a.link.listen_addr().to_string()]),
            Some(addr) => cmd.args(["--connect", addr]),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting party {party}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("party {party}: no pipes to the process");
        };
        Ok(PartyProc {
            party,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let p = self.party;
        let w = self
            .stdin
            .as_mut()
            .with_context(|| format!("party {p}: input closed"))?;
        writeln!(w, "{line}")
            .and_then(|_| w.flush())
            .with_context(|| format!("party {p} is gone"))
    }

    /// The next JSON line; a party that reports an error or exits is an error here.
    fn recv(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from party {}", self.party))?;
        if n == 0 {
            let st = self.child.wait().ok();
            bail!(
                "party {} exited ({}) — its error is printed above",
                self.party,
                st.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("party {} answered {line:?}", self.party))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("party {}: {e}", self.party);
        }
        Ok(v)
    }

    /// Close its input (it exits after the current run) and wait for it.
    fn finish(&mut self) -> Result<()> {
        self.stdin = None;
        let st = self
            .child
            .wait()
            .with_context(|| format!("waiting for party {}", self.party))?;
        if !st.success() {
            bail!("party {} exited with {st}", self.party);
        }
        Ok(())
    }
}

impl Drop for PartyProc {
    fn drop(&mut self) {
        // On an error path: do not leave the process behind (it is ours, by its handle).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct SpawnArgs<'a> {
    dir: &'a Path,
    backend: BackendChoice,
    timeout: u64,
    peer: Option<&'a str>,
    gpu: Option<usize>,
    trace: bool,
    link: &'a PeerLink,
    tls: &'a [Option<PathBuf>; 2],
}

fn f64_of(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// `suf bench model --processes 2`.
pub fn bench_processes(
    spec: &BenchSpec,
    choice: BackendChoice,
    runs: usize,
    timeout: u64,
    extra: &models_cmd::BenchExtra,
    link: &PeerLinkArgs,
) -> Result<Value> {
    let link = link.resolve()?;
    if choice == BackendChoice::Cpu {
        if let Some(g) = &extra.gpu.gpu {
            bail!("--gpu {g} selects a CUDA device, but --backend is cpu (use --backend cuda or auto)");
        }
    }
    models_cmd::start_trace(&extra.trace)?;
    let BenchProgram {
        m,
        fp,
        built,
        x,
        seq,
        build_ms,
    } = models_cmd::bench_program(spec)?;
    let prog = &built.prog;
    let w = prog.width();
    let tmp = tempfile::Builder::new()
        .prefix("suf-bench-")
        .tempdir()
        .context("creating a private temporary directory")?;
    let dir = tmp.path();
    restrict(dir, 0o700)?;
    let mut rng = Csprng::from_os()?;
    // The model owner masks the private weights once; the dealer keeps R_W.
    let (what, rw) = suf_runtime::mask_weights(w, &built.private, &mut rng);
    let wpath = dir.join("weights.masked");
    files::write(&wpath, &what)?;
    restrict(&wpath, 0o600)?;
    let cpu = CpuBackend::new();
    let plain = run_plain(prog, &cpu, &x, &built.private)?;
    let listeners = [
        UnixListener::bind(key_socket(dir, 0)).context("binding party 0's key socket")?,
        UnixListener::bind(key_socket(dir, 1)).context("binding party 1's key socket")?,
    ];
    // DCF keys on the GPU when the parties run there (same bytes as the CPU dealer's).
    let gpu_dealer =
        crate::keygen::gpu_dealer(choice, extra.gpu.gpu.as_ref().map(|g| g.for_party(0)))?;
    let dealer_name = if gpu_dealer.is_some() {
        "parent process, DCF keys on the GPU (CudaDealer), streamed to each party over a Unix socket"
    } else {
        "parent process, CPU, streamed to each party over a Unix socket"
    };
    let sock_timeout = Duration::from_secs(timeout.max(1));
    let tls: [Option<PathBuf>; 2] = match link.tls {
        true => crate::peerlink::write_identities(dir)?.map(Some),
        false => [None, None],
    };

    let gpus = extra.gpu.gpu.as_ref();
    let sa = |peer, party: u8| SpawnArgs {
        dir,
        backend: choice,
        timeout,
        peer,
        gpu: gpus.map(|g| g.for_party(party)),
        trace: extra.trace.is_some(),
        link: &link,
        tls: &tls,
    };
    let mut p0 = PartyProc::spawn(0, spec, seq, &sa(None, 0))?;
    let ready0 = p0.recv()?;
    let addr = ready0["addr"]
        .as_str()
        .context("party 0 did not say where it listens")?
        .to_string();
    let mut p1 = PartyProc::spawn(1, spec, seq, &sa(Some(&addr), 1))?;
    let ready1 = p1.recv()?;

    let total = runs.max(1) + 1;
    let pb = crate::logging::progress(total as u64, "secure inferences (2 processes)");
    let mut per_run: Vec<[Value; 2]> = Vec::new();
    let mut keygen = Vec::new();
    let mut phases: Vec<[f64; 3]> = Vec::new();
    let mut splits: Vec<suf_runtime::dealer::DealReport> = Vec::new();
    let mut key_bytes = [0u64; 2];
    let mut all_match = true;
    for i in 0..total {
        pb.inc(1);
        let mut session = [0u8; 16];
        session.copy_from_slice(&rng.seed());
        let shares = suf_runtime::share_inputs(w, &x, &mut rng);
        for j in 0..2u8 {
            let ip = input_path(dir, i, j);
            files::write(&ip, &shares[j as usize])?;
            restrict(&ip, 0o600)?;
        }
        p0.send(&format!("run {i}"))?;
        p1.send(&format!("run {i}"))?;
        // The dealer writes both streams while the parties receive them.
        let socks = [
            accept_within(&listeners[0], sock_timeout, 0)?,
            accept_within(&listeners[1], sock_timeout, 1)?,
        ];
        for s in &socks {
            let _ = socket2::SockRef::from(s).set_send_buffer_size(KEY_SOCKET_BUFFER);
        }
        let sinks: [Box<dyn Write + Send>; 2] =
            socks.map(|s| Box::new(std::io::BufWriter::with_capacity(1 << 22, s)) as _);
        let ds = DealerStreams::to_writers(
            w,
            Csprng::from_os()?,
            session,
            prog.fingerprint(),
            sinks,
            ["<party 0's key socket>", "<party 1's key socket>"],
        )?;
        let deal = run_dealer(prog, &cpu, ds, &rw)?;
        keygen.push(deal.keygen_ms);
        phases.push([deal.masks_ms, deal.deal_ms, deal.write_ms]);
        splits.push(deal.clone());
        key_bytes = deal.key_bytes;
        let r0 = p0.recv()?;
        let r1 = p1.recv()?;
        let (o0, o1) = (
            files::read_expecting(&output_path(dir, i, 0), &files::output_records(prog))?,
            files::read_expecting(&output_path(dir, i, 1), &files::output_records(prog))?,
        );
        let mut outs = Vec::new();
        for k in 0..prog.outputs.len() {
            let name = format!("out{k}");
            let (Some(a), Some(b)) = (o0.get(&name), o1.get(&name)) else {
                bail!("run {i}: output share {name} missing");
            };
            if a.len() != b.len() {
                bail!("run {i}: output shares of {name} differ in length");
            }
            outs.push(suf_runtime::reconstruct_output(prog, k, a, b));
        }
        all_match &= outs == plain;
        if let (Some(t), true) = (&extra.trace, i > 0) {
            // The parties' trace lines of this timed run, tagged with the run.
            let mut lines = Vec::new();
            for j in 0..2u8 {
                let text = std::fs::read_to_string(trace_path(dir, i, j))
                    .with_context(|| format!("reading party {j}'s trace of run {i}"))?;
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    let mut v: Value = serde_json::from_str(l)
                        .with_context(|| format!("party {j}'s trace line {l:?}"))?;
                    v["run"] = json!(i);
                    lines.push(v);
                }
            }
            models_cmd::append_trace(t, &lines)?;
        }
        // Done with this run's files (the key files' one-time markers go with them).
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let is_run = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("run{i}.")));
            if is_run {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        if i > 0 {
            per_run.push([r0, r1]);
        }
    }
    pb.finish_and_clear();
    p0.finish()?;
    p1.finish()?;
    drop(gpu_dealer);

    let slower = |k: &str| -> Vec<f64> {
        per_run
            .iter()
            .map(|r| f64_of(&r[0], k).max(f64_of(&r[1], k)))
            .collect()
    };
    let online = slower("online_ms");
    let load = slower("key_load_ms");
    let incl = slower("online_incl_key_load_ms");
    let upload = slower("key_upload_ms");
    let per_party: Vec<Value> = (0..2)
        .map(|j| {
            let col = |k: &str| -> Vec<f64> { per_run.iter().map(|r| f64_of(&r[j], k)).collect() };
            let ready = if j == 0 { &ready0 } else { &ready1 };
            let last = per_run.last().map(|r| &r[j]["report"]);
            let rep_col = |k: &str| -> Vec<f64> {
                per_run
                    .iter()
                    .map(|r| r[j]["report"][k].as_f64().unwrap_or(0.0))
                    .collect()
            };
            json!({
                "party": j,
                "online_ms": median(col("online_ms")), "online_ms_runs": col("online_ms"),
                "key_load_ms": median(col("key_load_ms")), "key_load_ms_runs": col("key_load_ms"),
                "key_read_ms": median(col("key_read_ms")),
                "prepare_ms": median(col("prepare_ms")),
                "connect_ms": median(col("connect_ms")),
                "online_incl_key_load_ms": median(col("online_incl_key_load_ms")),
                "key_upload_ms": median(col("key_upload_ms")),
                "key_bytes_uploaded": per_run.last().map(|r| r[j]["key_bytes_uploaded"].clone()),
                "key_file_bytes": per_run.last().map(|r| r[j]["key_file_bytes"].clone()),
                "key_receive_ms": median(col("key_receive_ms")),
                "key_receive_split_ms_last": per_run.last().map(|r| r[j]["key_receive_split_ms"].clone()),
                "key_host_bytes": per_run.last().map(|r| r[j]["key_host_bytes"].clone()),
                "keys_received_into_device": per_run.last().map(|r| r[j]["keys_received_into_device"].clone()),
                "host_ms": median(rep_col("host_ms")), "device_ms": median(rep_col("device_ms")),
                "wait_ms": median(rep_col("wait_ms")),
                "online_minor_faults": per_run
                    .iter()
                    .map(|r| r[j]["online_minor_faults"].as_f64())
                    .collect::<Option<Vec<f64>>>()
                    .map(median),
                "breakdown": per_run.last().map(|r| r[j]["breakdown"].clone()),
                "weights_resident_ms": ready["weights_ms"],
                "backend": ready["backend"], "device": ready["device"], "gpu": ready["gpu"],
                "threads": ready["threads"],
                "rounds": last.map(|r| r["rounds"].clone()),
                "bytes_sent": last.map(|r| r["bytes_sent"].clone()),
                "bytes_recv": last.map(|r| r["bytes_recv"].clone()),
            })
        })
        .collect();
    let last0 = per_run
        .last()
        .map(|r| r[0]["report"].clone())
        .unwrap_or(Value::Null);
    let sent = last0["bytes_sent"].as_u64().unwrap_or(0);
    let recv = last0["bytes_recv"].as_u64().unwrap_or(0);
    let layers_json: Vec<Value> = last0["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    let (s, r) = (
                        l["bytes_sent"].as_u64().unwrap_or(0),
                        l["bytes_recv"].as_u64().unwrap_or(0),
                    );
                    json!({"layer": l["layer"], "ms": l["ms"], "online_ms": l["ms"],
                           "bytes_sent": s, "bytes_recv": r, "comm_bytes": s + r,
                           "rounds": l["rounds"]})
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "model": spec.model, "seq": seq, "batch": spec.batch,
        "backend": ready0["backend"], "device": ready0["device"], "mode": spec.mode,
        "processes": 2,
        "peer_link": link.json(),
        "layers_run": spec.layers.unwrap_or(m.cfg.layers).min(m.cfg.layers),
        "ring_bits": fp.width.bits(), "frac_bits": fp.frac,
        "online_ms": median(online.clone()), "online_ms_runs": online,
        "key_load_ms": median(load.clone()), "key_load_ms_runs": load,
        "online_incl_key_load_ms": median(incl.clone()), "online_incl_key_load_ms_runs": incl,
        "key_upload_ms": median(upload.clone()), "key_upload_ms_runs": upload,
        "comm_bytes": sent + recv,
        "bytes_sent": sent,
        "rounds": last0["rounds"],
        "key_bytes": key_bytes[0].max(key_bytes[1]),
        "key_bytes_per_party": key_bytes,
        "keygen_ms": median(keygen),
        "dealer": dealer_name,
        "keygen_phases_ms": {
            "masks": median(phases.iter().map(|p| p[0]).collect()),
            "deal": median(phases.iter().map(|p| p[1]).collect()),
            "write": median(phases.iter().map(|p| p[2]).collect()),
            "sink_write_last": splits.last().map(|d| d.sink_write_ms),
        },
        "keygen_split_ms": {
            "dcf": median(splits.iter().map(|d| d.split_ms.dcf).collect()),
            "dpf": median(splits.iter().map(|d| d.split_ms.dpf).collect()),
            "gate_other": median(splits.iter().map(|d| d.split_ms.gate_other).collect()),
            "products": median(splits.iter().map(|d| d.split_ms.products).collect()),
            "serial": splits.last().is_some_and(|d| d.serial),
        },
        "keygen_kinds_last": splits.last().map(|d| d.kinds.clone()).unwrap_or_default(),
        "build_ms": build_ms,
        "matches_plain": all_match,
        "per_party": per_party,
        "timing": "online_ms: the slower party's online phase (after the TCP handshake), median of --runs after one warm-up, fresh keys each run; key_load_ms: reading the party's key file into memory and preparing the run (the key stream made resident on the backend: key_upload_ms, key_bytes_uploaded; [R_W], jŴ−[R_W] to the backend), before the online clock; online_incl_key_load_ms: the slower party's sum of both; per_party host_ms / device_ms / wait_ms: the online time split into host compute, device calls and waiting for the peer (medians), breakdown: the last run's per round and per operator",
        "layers": layers_json,
    }))
}

/// The hidden `suf bench party`: one party of `--processes 2` (see the module docs).
pub fn party_main(a: PartyArgs) -> Result<()> {
    let out = std::io::stdout();
    let say = |v: Value| -> Result<()> {
        let mut o = out.lock();
        writeln!(o, "{v}")?;
        o.flush()?;
        Ok(())
    };
    match party_loop(&a, &say) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The parent reads this line; the exit status says the same.
            let _ = say(json!({"error": format!("{e:#}")}));
            Err(e)
        }
    }
}

fn party_loop(a: &PartyArgs, say: &dyn Fn(Value) -> Result<()>) -> Result<()> {
    if a.party > 1 {
        bail!("--party must be 0 or 1");
    }
    let party = a.party;
    let be = models_cmd::backend_on(a.backend, a.gpu)?;
    let spec = BenchSpec {
        model: a.model.clone(),
        seq: a.seq,
        batch: a.batch,
        mode: a.mode.clone(),
        layers: a.layers,
        cache: a.cache.clone(),
    };
    let bp = models_cmd::bench_program(&spec)?;
    let prog = &bp.built.prog;
    if bp.seq != a.seq {
        bail!("the program has {} tokens, the dealer's {}", bp.seq, a.seq);
    }
    let what = files::read_expecting(&a.dir.join("weights.masked"), &files::weight_records(prog))?;
    let p = Party {
        prog,
        party,
        be: be.be.as_ref(),
        weights: &what,
    };
    let t = Instant::now();
    let res = p.resident_weights()?;
    let weights_ms = ms(t);
    let listener = match (party, a.listen, a.connect) {
        (0, Some(addr), None) => {
            Some(TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?)
        }
        (1, None, Some(_)) => None,
        _ => bail!("party 0 needs --listen and party 1 --connect"),
    };
    let addr = match &listener {
        Some(l) => Some(l.local_addr()?.to_string()),
        None => None,
    };
    let tls = match &a.tls {
        Some(d) => Some(crate::peerlink::tls_config(d, party)?),
        None => None,
    };
    say(json!({
        "ready": true, "party": party, "addr": addr, "backend": be.name, "device": be.device,
        "weights_ms": weights_ms, "threads": rayon::current_num_threads(), "gpu": a.gpu,
    }))?;
    let timeout = Duration::from_secs(a.timeout.max(1));
    // Every run's stream has the plan's exact length (shapes never depend on the masks), so
    // the first stream is received into one buffer of its final size too (no doubling copies,
    // no 1.5× peak: 60 GB per party for bert-large). A wrong plan only costs a reallocation:
    // the stream itself is checked when it is opened.
    let mut last_len = suf_runtime::plan::Plan::of(prog)
        .map(|pl| pl.key_bytes[party as usize] as usize)
        .unwrap_or(0);
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading the parent's command")?;
        let Some(run) = line
            .strip_prefix("run ")
            .and_then(|r| r.trim().parse::<usize>().ok())
        else {
            bail!("unknown command {line:?} from the parent");
        };
        // Key load: receive this run's stream from the dealer (the dealer deals while it
        // arrives), check it (header, TOC, every checksum), then the run's preparation. None
        // of it is online time.
        let t_load = Instant::now();
        // A device backend reserves the stream's device memory before the dealer may start
        // (it starts once both parties have connected), so that the dealer's own device
        // buffers cannot take it first. A failure to reserve is reported after connecting:
        // the dealer, which waits for both parties, then sees this party's socket close at
        // once instead of waiting out its timeout.
        let begun = match last_len {
            0 => Ok(None),
            n => be.be.receive_keys_begin(n),
        };
        let ks = key_socket(&a.dir, party);
        let mut sock = UnixStream::connect(&ks)
            .with_context(|| format!("connecting to the dealer at {}", ks.display()))?;
        let begun = begun.context("reserving device memory for the key stream")?;
        sock.set_read_timeout(Some(timeout))?;
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(KEY_SOCKET_BUFFER);
        // With the plan's exact length the stream is received straight into a device
        // backend (the host keeps all but the key bodies: bert-large's 60 GB per party need
        // not sit in host memory twice over), its copies overlapping the receive; a host
        // backend (or no plan) reads it whole.
        let (keys, rx) =
            PartyStream::receive_after_begin(&mut sock, last_len, be.be.as_ref(), begun)
                .context("receiving the key stream from the dealer")?;
        drop(sock);
        last_len = keys.bytes().len();
        let key_file_bytes = keys.bytes().len();
        keys.check(party, &prog.fingerprint(), prog.width().bits())?;
        let mut keys = keys;
        let key_read_ms = ms(t_load);
        let t_prep = Instant::now();
        let prep = p.prepare(&res, &mut keys)?;
        let prepare_ms = ms(t_prep);
        let key_load_ms = ms(t_load);
        let inputs =
            files::read_expecting(&input_path(&a.dir, run, party), &files::input_records(prog))?;
        let t_conn = Instant::now();
        let mut cfg = LinkConfig::new(party);
        cfg.session_id = keys.id().session;
        cfg.model_fp = keys.id().program_fp;
        cfg.keys_fp = keys.id().keys_fp;
        cfg.timeout = timeout;
        cfg.connect_timeout = timeout;
        cfg.tls = tls.clone();
        let mut net = match (&listener, a.connect) {
            (Some(l), _) => TcpTransport::accept(l, &cfg)?,
            (None, Some(addr)) => TcpTransport::connect(addr, &cfg)
                .with_context(|| format!("cannot reach party 0 at {addr}"))?,
            _ => bail!("party 1 needs --connect"),
        };
        let connect_ms = ms(t_conn);
        // A stream received into the device was uploaded while it arrived: its upload is
        // the copies' tail after the last byte (the rest overlapped the receive).
        let (key_upload_ms, key_bytes_uploaded) = match rx.into_device {
            true => (rx.device_tail_ms, rx.bytes),
            false => (prep.key_upload_ms, prep.key_bytes_uploaded),
        };
        let mut tf = match a.trace {
            true => {
                let tp = trace_path(&a.dir, run, party);
                let f = std::fs::File::create(&tp)
                    .with_context(|| format!("creating {}", tp.display()))?;
                restrict(&tp, 0o600)?;
                Some(f)
            }
            false => None,
        };
        let mut tracer = Tracer::new(tf.as_mut().map(|f| f as &mut (dyn Write + Send)));
        let faults0 = minor_faults();
        let out = p.run_prepared(prep, &mut keys, &mut net, &inputs, &mut tracer)?;
        let online_minor_faults = faults0
            .zip(minor_faults())
            .map(|(a, b)| b.saturating_sub(a));
        // The trace file is complete (and closed) before the parent reads it.
        drop(tf);
        drop(net);
        let mut o = files::Named::new();
        for (i, v) in out.outputs.iter().enumerate() {
            o.insert(format!("out{i}"), v.clone());
        }
        let op = output_path(&a.dir, run, party);
        files::write(&op, &o)?;
        restrict(&op, 0o600)?;
        say(json!({
            "run": run, "party": party,
            "key_file_bytes": key_file_bytes,
            "key_read_ms": key_read_ms, "prepare_ms": prepare_ms, "key_load_ms": key_load_ms,
            "connect_ms": connect_ms,
            "key_upload_ms": key_upload_ms, "key_bytes_uploaded": key_bytes_uploaded,
            "keys_received_into_device": rx.into_device, "key_host_bytes": rx.host_bytes,
            "key_receive_ms": rx.ms,
            "key_receive_split_ms": rx.split,
            "online_ms": out.report.online_ms,
            "online_minor_faults": online_minor_faults,
            "breakdown": models_cmd::breakdown_json(&out.report),
            "online_incl_key_load_ms": key_load_ms + out.report.online_ms,
            "report": serde_json::to_value(&out.report)?,
        }))?;
    }
    Ok(())
}

/// This process's minor page faults so far (`/proc/self/stat`, field 10); `None` where
/// procfs is absent. The bench reports those of each party's online phase: fresh buffers
/// fault in page by page, a host cost the per-phase times alone do not name.
fn minor_faults() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses): state is
    // field 3, minflt field 10.
    s.get(s.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(7)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_party_that_never_connects_for_its_keys_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(key_socket(dir.path(), 1)).unwrap();
        let t = Instant::now();
        let e = accept_within(&l, Duration::from_millis(150), 1).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert!(
            format!("{e:#}").contains("party 1 did not connect"),
            "{e:#}"
        );
        // One that connects is accepted, with blocking reads and a write timeout.
        let _c = UnixStream::connect(key_socket(dir.path(), 1)).unwrap();
        let s = accept_within(&l, Duration::from_secs(5), 1).unwrap();
        assert_eq!(s.write_timeout().unwrap(), Some(Duration::from_secs(5)));
    }
}
