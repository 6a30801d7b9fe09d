//! `suf client`: one secure inference through the two servers' HTTPS API. The client asks
//! each server (TLS, the server's certificate pinned) what its pool serves, builds the same
//! program, secret-shares the input, sends each server **only its own share** with the
//! request's commitment metadata ([`crate::api`]), checks that both results answer this
//! request and input, and reconstructs.
//!
//! With a length-bucket pool the text may have any length up to the bucket's: the client
//! shares the unpadded input and the servers pad their shares (see [`crate::server`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use suf_backend::CpuBackend;
use suf_cli::files;
use suf_cli::session::Session;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::plain::run_plain;

use crate::api::{self, RequestMeta, ResponseMeta};
use crate::pool::hex;

/// Arguments of `suf client`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Party 0's API (host:port).
    #[arg(long)]
    pub p0: String,
    /// Party 1's API (host:port).
    #[arg(long)]
    pub p1: String,
    /// Folder with the servers' certificates p0.crt and p1.crt (pinned).
    #[arg(long)]
    pub certs: PathBuf,
    /// Input text (model pools).
    #[arg(long)]
    pub text: Option<String>,
    /// Seed of the demonstration input (toy pools).
    #[arg(long, default_value_t = 1)]
    pub input_seed: u64,
    /// Seconds to wait for each server.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Keep only the first N tokens of the text (bucket pools; a synthetic model without a
    /// tokenizer always gives the bucket's full length).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// Print both servers' `/v1/metrics` (served, failed, refused, remaining streams) instead
    /// of running an inference.
    #[arg(long)]
    pub metrics: bool,
}

/// A pinned HTTPS connection's one request: `(status, body)`.
async fn request(
    addr: &str,
    cert: &[u8],
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>)> {
    let cfg = suf_net::tls::pinned_client_config(cert)?;
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("suf-server")?;
    let tls = conn
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {addr} (is its certificate the pinned one?)"))?;
    let (mut send, c) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = c.await;
    });
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(Bytes::from(body)))?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let b = resp.into_body().collect().await?.to_bytes();
    Ok((status, b.to_vec()))
}

/// Run `f` on a small runtime with a timeout.
fn block_on<T>(timeout: Duration, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tokio::time::timeout(timeout, f)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
    })
}

fn error_of(status: u16, body: &[u8]) -> String {
    let msg = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    if status == 503 {
        format!("{msg} (HTTP 503: retry later)")
    } else {
        format!("{msg} (HTTP {status})")
    }
}

type Inputs = std::collections::BTreeMap<String, Vec<u64>>;

/// A bucket session's tokens: the text's, at most `max` (the largest bucket).
fn bucket_ids(
    s: &Session,
    fmt: crate::Format,
    max: usize,
    text: Option<&str>,
    tokens: Option<usize>,
) -> Result<(suf_models::LoadedModel, Vec<u32>)> {
    let text = text.context("--text is required for a model pool")?;
    let m = crate::models_cmd::load(&s.program, &None, fmt.model_seed)?;
    let mut ids = crate::models_cmd::token_ids(&m, text, Some(max))?;
    if let Some(t) = tokens {
        if t == 0 || t > ids.len() {
            bail!("--tokens {t}: the text gives 1..={} tokens", ids.len());
        }
        ids.truncate(t);
    }
    Ok((m, ids))
}

/// A bucket session's input: the unpadded embedded text, the padded Plain inputs and L.
fn bucket_inputs(
    m: &suf_models::LoadedModel,
    fmt: crate::Format,
    b: &suf_nn::bucket::Bucket,
    ids: &[u32],
) -> Result<(Inputs, Inputs, usize)> {
    let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
    let x = suf_nn::model::client_input(&m.cfg, &m.weights, fp, ids)?;
    let mut plain = b.public_inputs(ids.len())?;
    plain.insert("x".into(), b.pad_input(&x, m.cfg.hidden)?);
    let mut xs = Inputs::new();
    xs.insert("x".into(), x);
    Ok((xs, plain, ids.len()))
}

/// `suf client`.
pub fn run(a: &ClientArgs) -> Result<()> {
    let timeout = Duration::from_secs(a.timeout.clamp(1, 7 * 24 * 3600));
    let certs = [0, 1].map(|j| {
        let p = a.certs.join(format!("p{j}.crt"));
        std::fs::read(&p).with_context(|| format!("reading {} (from `suf certs`)", p.display()))
    });
    let [c0, c1] = certs;
    let certs = [c0?, c1?];
    let addrs = [a.p0.clone(), a.p1.clone()];
    if a.metrics {
        let m = block_on(timeout, async {
            let (m0, m1) = tokio::join!(
                request(&addrs[0], &certs[0], "GET", "/v1/metrics", vec![]),
                request(&addrs[1], &certs[1], "GET", "/v1/metrics", vec![])
            );
            Ok([m0?, m1?])
        })?;
        let mut out = Vec::new();
        for (j, (st, b)) in m.iter().enumerate() {
            if *st != 200 {
                bail!("party {j}'s metrics: {}", error_of(*st, b));
            }
            out.push(serde_json::from_slice::<Value>(b)?);
        }
        println!("{}", json!({"p0": out[0], "p1": out[1]}));
        return Ok(());
    }
    // What the servers serve.
    let info = block_on(timeout, async {
        let (h0, h1) = tokio::join!(
            request(&addrs[0], &certs[0], "GET", "/v1/health", vec![]),
            request(&addrs[1], &certs[1], "GET", "/v1/health", vec![])
        );
        Ok([h0?, h1?])
    })?;
    let mut sessions = Vec::new();
    let mut buckets = Vec::new();
    for (j, (st, b)) in info.iter().enumerate() {
        if *st != 200 {
            bail!("party {j}'s health: {}", error_of(*st, b));
        }
        let v: Value = serde_json::from_slice(b)?;
        if v["party"] != json!(j) {
            bail!("{} is not party {j}", addrs[j]);
        }
        let s: Session = serde_json::from_value(v["session"].clone())?;
        s.validate()?;
        sessions.push(s);
        buckets.push(serde_json::from_value::<Option<Vec<usize>>>(
            v["buckets"].clone(),
        )?);
    }
    if sessions[0] != sessions[1] || buckets[0] != buckets[1] {
        bail!("the two servers serve different programs");
    }
    let s0 = &sessions[0];
    let fmt = crate::Format {
        bits: s0.bits,
        frac: s0.frac,
        model_seed: s0.model_seed,
    };
    // A bucket server: the text's tokens first, then the smallest bucket that fits (the
    // servers may serve it from a larger one with keys left).
    let lens = buckets[0].clone().unwrap_or_default();
    let ids = if s0.bucket {
        let max = lens.iter().copied().max().unwrap_or(s0.seq);
        Some(bucket_ids(s0, fmt, max, a.text.as_deref(), a.tokens)?)
    } else {
        None
    };
    let chosen = match &ids {
        Some((_, ids)) => {
            let l = lens
                .iter()
                .copied()
                .filter(|&b| b >= ids.len())
                .min()
                .unwrap_or(s0.seq);
            Session {
                seq: l,
                ..s0.clone()
            }
        }
        None => s0.clone(),
    };
    let s = &chosen;
    let (prog, weights, bucket) = if s.bucket {
        let b = crate::session_built(s, fmt)?;
        (b.prog, b.private, b.bucket)
    } else {
        let (p, w) = crate::session_program(s, fmt)?;
        (p, w, None)
    };
    let fpv = prog.fingerprint();
    if s.seq == s0.seq && hex(&fpv) != s0.program_fp {
        bail!("this client builds another program than the servers' (fingerprint differs)");
    }
    let fp = FixedPoint::new(fmt.bits, fmt.frac)?;
    // The input (unpadded for a bucket) and what Plain runs on (padded, with the public
    // inputs of the valid length).
    let (x, mut plain_in, len) = match (&bucket, &ids) {
        (Some(b), Some((m, ids))) => bucket_inputs(m, fmt, b, ids)?,
        _ => {
            if a.tokens.is_some() {
                bail!(
                    "--tokens is for length-bucket pools (these keys are for {} tokens)",
                    s.seq
                );
            }
            let x = crate::client_inputs(s, fmt, a.text.as_deref(), a.input_seed)?;
            (x.clone(), x, s.seq)
        }
    };
    let mut rng = Csprng::from_os()?;
    let sh = suf_runtime::share_inputs(fp.width, &x, &mut rng);
    let enc = [files::encode(&sh[0]), files::encode(&sh[1])];
    let mut rid = [0u8; 16];
    rid.copy_from_slice(&rng.seed());
    let salt = |rng: &mut Csprng| {
        let mut s = [0u8; 32];
        s[..16].copy_from_slice(&rng.seed());
        s[16..].copy_from_slice(&rng.seed());
        s
    };
    let salts = [salt(&mut rng), salt(&mut rng)];
    let d = [
        api::share_digest(&salts[0], &enc[0]),
        api::share_digest(&salts[1], &enc[1]),
    ];
    let c = api::commitment(&rid, &d);
    let body = |j: usize| {
        api::frame(
            &RequestMeta {
                v: 1,
                request_id: hex(&rid),
                program_fp: hex(&fpv),
                salt: hex(&salts[j]),
                digests: [hex(&d[0]), hex(&d[1])],
            },
            &enc[j],
        )
    };
    let (b0, b1) = (body(0)?, body(1)?);
    let t = Instant::now();
    // The first refusal ends the wait (the other server then drops the request unpaired).
    let post = |j: usize, b: Vec<u8>| {
        let (addr, cert) = (addrs[j].clone(), certs[j].clone());
        async move {
            let (st, body) = request(&addr, &cert, "POST", "/v1/infer", b).await?;
            if st != 200 {
                bail!("party {j}: {}", error_of(st, &body));
            }
            Ok((st, body))
        }
    };
    let res = block_on(timeout, async {
        let (r0, r1) = tokio::try_join!(post(0, b0), post(1, b1))?;
        Ok([r0, r1])
    })?;
    let latency_ms = t.elapsed().as_secs_f64() * 1e3;
    let want = files::output_records(&prog);
    let mut outs = Vec::new();
    let mut metas = Vec::new();
    for (j, (st, b)) in res.iter().enumerate() {
        if *st != 200 {
            bail!("party {j}: {}", error_of(*st, b));
        }
        let (m, payload): (ResponseMeta, &[u8]) = api::unframe(b)?;
        api::check_response(&m, j as u8, &rid, &c)?;
        let o = files::parse(payload)?;
        let got: Vec<(String, usize)> = o.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        let mut w = want.clone();
        w.sort();
        if got != w {
            bail!("party {j}'s output share holds {got:?}, expected {w:?}");
        }
        outs.push(o);
        metas.push(m);
    }
    if metas[0].session != metas[1].session || metas[0].bucket != metas[1].bucket {
        bail!("the two results come from different key streams: refused");
    }
    // Served from a larger bucket (the smaller one had no keys left): its program.
    let served = metas[0].bucket;
    let (prog, weights) = match &ids {
        Some((m, ids)) if served != s.seq => {
            if !lens.contains(&served) || served < len {
                bail!("the servers answered from bucket {served}, which cannot serve {len} tokens");
            }
            let sb = Session {
                seq: served,
                ..s.clone()
            };
            let b = crate::session_built(&sb, fmt)?;
            let bk = b
                .bucket
                .context("a bucket session built without its bucket")?;
            plain_in = bucket_inputs(m, fmt, &bk, ids)?.1;
            (b.prog, b.private)
        }
        _ => (prog, weights),
    };
    let mut rec = Vec::new();
    for k in 0..prog.outputs.len() {
        let name = format!("out{k}");
        let (Some(x0), Some(x1)) = (outs[0].get(&name), outs[1].get(&name)) else {
            bail!("output share {name} missing");
        };
        rec.push(suf_runtime::reconstruct_output(&prog, k, x0, x1));
    }
    let plain = run_plain(&prog, &CpuBackend::new(), &plain_in, &weights)?;
    let vals: Vec<f64> = rec
        .first()
        .map(|o| o.iter().map(|&v| fp.decode(v)).collect())
        .unwrap_or_default();
    let mut v = crate::models_cmd::describe(&s.program, &vals)?;
    v["matches_plain"] = json!(rec == plain);
    v["request_id"] = json!(hex(&rid));
    v["tokens"] = json!(len);
    if s.bucket {
        v["bucket"] = json!(served);
    }
    v["session"] = json!(metas[0].session);
    v["latency_ms"] = json!(latency_ms);
    v["online_ms"] = json!(metas[0].online_ms.max(metas[1].online_ms));
    v["rounds"] = json!(metas[0].rounds);
    v["per_party"] = json!(metas
        .iter()
        .map(|m| json!({"online_ms": m.online_ms, "pair_ms": m.pair_ms,
                        "key_load_ms": m.key_load_ms, "prepare_ms": m.prepare_ms,
                        "peer_wait_ms": m.peer_wait_ms}))
        .collect::<Vec<_>>());
    if a.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if rec != plain {
        bail!("the secure result differs from the plain interpreter");
    }
    Ok(())
}
