//! `suf serve --pool DIR`: a long-lived party server. It serves the HTTPS API of [`crate::api`]
//! (axum on hyper over rustls), many inferences one after another and at once, each with its
//! own key stream from the pool ([`crate::pool`]), until Ctrl-C or SIGTERM (then it stops
//! accepting, lets in-flight requests finish, and exits).
//!
//! **Pairing.** Party 1 leads: for each request it reserves a free stream, opens a link to
//! party 0 (`--connect`; mutually authenticated TLS with pinned certificates when `--tls` is
//! given, required off loopback; on loopback without TLS, a challenge–response MAC under the
//! pool's `peer.secret` from the dealer, so a local process cannot join), and sends
//! `{request id, session, key-stream and program fingerprints, input commitment}`. Party 0
//! answers yes only if it holds the same request (same commitment) from the client and an
//! unused stream with that session and fingerprints. Only then do both consume the stream
//! (registry record first) and run the online phase over that link. A stranger, a refused
//! handshake, a missing certificate, a peer that never comes or a refusal consume nothing.
//!
//! **Length buckets.** A bucket pool (`suf dealer --bucket`/`--buckets`) serves every input of
//! 1..=L_b tokens: the client sends its share of the unpadded input (`[L, hidden]`); each
//! server pads its share with zero rows to L_b (a share of the zero-padded input) and supplies
//! the public inputs of the valid length L (`suf_nn::bucket`). L is public (the share's
//! length shows it, as a per-length program would); the two servers check they agree on it
//! when they pair the request. A folder of bucket pools (`suf dealer --buckets 16,32,…`:
//! `b16/`, `b32/`, …) is served by one server: a request of L tokens takes the smallest
//! bucket ≥ L that has keys left (party 1 chooses; the pairing names the bucket's program).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use suf_cli::files;
use suf_net::{LinkConfig, TcpTransport, Transport};
use suf_runtime::ir::Program;
use suf_runtime::party::Party;
use suf_runtime::report::Tracer;

use crate::api::{self, Checked, RequestMeta, ResponseMeta};
use crate::models_cmd::OneBackend;
use crate::pool::{hex, unhex, Pool, Registry};

/// The pool-mode arguments of `suf serve` (the others: --party, --listen, --connect, --tls,
/// --timeout, --backend are shared with the one-shot demo).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Long-lived mode: the key pool made by `suf dealer` (this party's half).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Server state (the registry of used sessions), required with --pool: one per host,
    /// never copied or restored.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Where the HTTPS API listens (host:port).
    #[arg(long)]
    pub api: Option<SocketAddr>,
}

/// Counters for `/v1/metrics`.
#[derive(Default)]
struct Metrics {
    served: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    in_flight: AtomicU64,
}

/// A request waiting at party 0 for party 1's pairing.
struct Pending {
    checked: Checked,
    /// Valid length of a bucket request (0 otherwise).
    len: usize,
    inputs: files::Named,
    tx: tokio::sync::oneshot::Sender<Result<Vec<u8>, ApiError>>,
}

/// What a request's failure is, for its HTTP status.
#[derive(Debug)]
pub enum ApiError {
    /// 400.
    Bad(String),
    /// 409.
    Conflict(String),
    /// 503, nothing consumed.
    PoolEmpty,
    /// 504/502, nothing consumed.
    Unpaired(String),
    /// 500 after the keys were consumed.
    Failed(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, msg) = match &self {
            ApiError::Bad(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            ApiError::PoolEmpty => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the key pool is empty: no one-time keys left (nothing was consumed); retry \
                 after the dealer has delivered more (`suf dealer`)"
                    .to_string(),
            ),
            ApiError::Unpaired(m) => (StatusCode::GATEWAY_TIMEOUT, m.clone()),
            ApiError::Failed(m) => (StatusCode::INTERNAL_SERVER_ERROR, m.clone()),
        };
        let mut r = (code, axum::Json(json!({"error": msg}))).into_response();
        if matches!(self, ApiError::PoolEmpty) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        r
    }
}

/// One program a server serves from one pool (a folder of bucket pools: one per bucket).
struct Lane {
    prog: Program,
    /// `prog.fingerprint()`, computed once (it hashes every public weight).
    fp: [u8; 32],
    pool: Arc<Pool>,
    /// A bucket pool's bucket and the model's hidden width.
    bucket: Option<(suf_nn::bucket::Bucket, usize)>,
}

impl Lane {
    /// Whether a request of valid length `len` fits (any request fits a non-bucket pool: its
    /// share was checked against the program on arrival).
    fn fits(&self, len: usize) -> bool {
        self.bucket.as_ref().is_none_or(|(b, _)| len <= b.len)
    }

    /// The bucket length (0: not a bucket).
    fn bucket_len(&self) -> usize {
        self.bucket.as_ref().map_or(0, |(b, _)| b.len)
    }

    /// This lane's program inputs from a request's share: a bucket pads `x` and adds the
    /// public inputs of the valid length.
    fn inputs(&self, share: &files::Named, len: usize) -> Result<files::Named> {
        let Some((b, hidden)) = &self.bucket else {
            return Ok(share.clone());
        };
        let x = share.get("x").context("the share holds no x")?;
        let mut m = b.public_inputs(len)?;
        m.insert("x".into(), b.pad_input(x, *hidden)?);
        Ok(m)
    }
}

/// One party server.
pub struct Server {
    party: u8,
    /// What it serves, by increasing bucket length.
    lanes: Vec<Lane>,
    /// The lanes' fingerprint (the one lane's program fingerprint, or a hash of all of
    /// them): both servers must serve the same, checked when their link is authenticated.
    fp: [u8; 32],
    be: OneBackend,
    reg: Registry,
    cfg: LinkConfig,
    secret: Option<[u8; 32]>,
    connect: Option<SocketAddr>,
    /// Party 1: authenticated links to party 0 between requests.
    idle: Mutex<Vec<TcpTransport>>,
    pending: Mutex<HashMap<[u8; 16], Pending>>,
    arrived: Condvar,
    metrics: Metrics,
    started: Instant,
    stop: AtomicBool,
}

/// Largest pairing message.
const MAX_PAIR: usize = 4096;
/// Authenticated links party 1 keeps open for later requests.
const MAX_IDLE_LINKS: usize = 8;
/// The byte each server sends its peer when its keys are attached (`Server::run_online`).
const READY: u8 = 0x52;
const AUTH_LABEL: &[u8] = b"suf-peer-auth-v1";

fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    // HMAC-SHA-256 (RFC 2104) from RustCrypto's `hmac`.
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tag `party` sends: HMAC(secret, label | party | program fp | n0 | n1).
fn auth_tag(secret: &[u8; 32], party: u8, fp: &[u8; 32], n: &[[u8; 32]; 2]) -> [u8; 32] {
    let mut m = AUTH_LABEL.to_vec();
    m.push(party);
    m.extend_from_slice(fp);
    m.extend_from_slice(&n[0]);
    m.extend_from_slice(&n[1]);
    hmac(secret, &m)
}

/// Mutual challenge–response under the pools' shared secret (loopback links without TLS).
/// Party 1 (the connecting side) proves itself first; party 0 answers only after checking.
pub fn authenticate(net: &mut dyn Transport, secret: &[u8; 32], fp: &[u8; 32]) -> Result<()> {
    let party = net.party();
    let mut mine = [0u8; 32];
    mine[..16].copy_from_slice(&suf_core::prg::Csprng::from_os()?.seed());
    mine[16..].copy_from_slice(&suf_core::prg::Csprng::from_os()?.seed());
    let theirs = net.exchange_max(mine.to_vec(), 32)?;
    let theirs: [u8; 32] = theirs
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("peer nonce of {} bytes", theirs.len()))?;
    let n = if party == 0 {
        [mine, theirs]
    } else {
        [theirs, mine]
    };
    let check = |tag: Vec<u8>| -> Result<()> {
        if !ct_eq(&tag, &auth_tag(secret, 1 - party, fp, &n)) {
            bail!("the peer failed authentication (not the other server of this pool)");
        }
        Ok(())
    };
    if party == 1 {
        net.send(auth_tag(secret, 1, fp, &n).to_vec())?;
        check(net.recv_max(32)?)
    } else {
        check(net.recv_max(32)?)?;
        net.send(auth_tag(secret, 0, fp, &n).to_vec())?;
        Ok(())
    }
}

impl Server {
    fn remaining(&self) -> usize {
        self.lanes.iter().map(|l| l.pool.remaining(&self.reg)).sum()
    }

    /// Streams left for a request of valid length `len`.
    fn remaining_for(&self, len: usize) -> usize {
        self.lanes
            .iter()
            .filter(|l| l.fits(len))
            .map(|l| l.pool.remaining(&self.reg))
            .sum()
    }

    fn link_cfg(&self) -> LinkConfig {
        self.cfg.clone()
    }

    /// Party 1: open and authenticate the link to party 0.
    fn connect_peer(&self) -> Result<TcpTransport> {
        let addr = self.connect.context("party 1 needs --connect")?;
        let mut net = TcpTransport::connect(addr, &self.link_cfg())
            .with_context(|| format!("cannot reach party 0 at {addr}"))?;
        if self.cfg.tls.is_none() {
            let s = self
                .secret
                .context("no peer.secret in the pool and no --tls")?;
            authenticate(&mut net, &s, &self.fp)?;
        }
        Ok(net)
    }

    fn run_online(
        &self,
        lane: &Lane,
        keys: &mut suf_runtime::keystream::PartyStream,
        weights: &files::Named,
        net: &mut TcpTransport,
        inputs: &files::Named,
    ) -> Result<(suf_runtime::party::PartyOutput, f64, f64)> {
        let p = Party {
            prog: &lane.prog,
            party: self.party,
            be: self.be.be.as_ref(),
            weights,
        };
        // Preparation (weights made resident, the keys attached and checked) apart from the
        // online phase, as `bench model --processes 2` reports them.
        let t = Instant::now();
        // Whatever the backend holds for these one-time keys (a stream received into device
        // memory) goes if the run fails before its online phase (which releases it itself).
        let release = |e: suf_runtime::error::RtError,
                       keys: &suf_runtime::keystream::PartyStream| {
            self.be.be.detach_keys(keys.token());
            e
        };
        let res = p.resident_weights().map_err(|e| release(e, keys))?;
        let prep = match p.prepare(&res, keys) {
            Ok(x) => x,
            Err(e) => return Err(release(e, keys).into()),
        };
        let prepare_ms = ms(t);
        // Both servers enter the online phase together: each says it is ready once its keys
        // are attached and waits for the peer's word, so that a server whose key load ended
        // first does not count the peer's load as online time (it is `peer_wait_ms`).
        let t = Instant::now();
        let ready = net
            .send(vec![READY])
            .and_then(|_| net.recv_max(1))
            .map_err(suf_runtime::error::RtError::from)
            .and_then(|b| match b.as_slice() {
                [READY] => Ok(()),
                _ => Err(suf_runtime::error::RtError::Peer(format!(
                    "expected the peer's ready byte before the online phase, got {} bytes",
                    b.len()
                ))),
            });
        if let Err(e) = ready {
            return Err(release(e, keys).into());
        }
        let peer_wait_ms = ms(t);
        net.reset_stats();
        let out = p.run_prepared(prep, keys, net, inputs, &mut Tracer::new(None))?;
        Ok((out, prepare_ms, peer_wait_ms))
    }

    fn respond(
        &self,
        lane: &Lane,
        checked: &Checked,
        session: &[u8; 16],
        out: &suf_runtime::party::PartyOutput,
        t: [f64; 4],
    ) -> Result<Vec<u8>> {
        let mut m = files::Named::new();
        for (i, o) in out.outputs.iter().enumerate() {
            m.insert(format!("out{i}"), o.clone());
        }
        api::frame(
            &ResponseMeta {
                request_id: hex(&checked.rid),
                commitment: hex(&checked.commitment),
                session: hex(session),
                party: self.party,
                online_ms: out.report.online_ms,
                rounds: out.report.rounds,
                pair_ms: t[0],
                key_load_ms: t[1],
                prepare_ms: t[2],
                peer_wait_ms: t[3],
                bucket: lane.bucket_len(),
            },
            &files::encode(&m),
        )
    }

    /// Party 1: lead one request.
    fn lead(
        &self,
        checked: &Checked,
        len: usize,
        share: &files::Named,
    ) -> Result<Vec<u8>, ApiError> {
        let t0 = Instant::now();
        // The smallest bucket that fits and has keys left.
        let mut chosen = None;
        for lane in self.lanes.iter().filter(|l| l.fits(len)) {
            if let Some(r) = lane
                .pool
                .reserve(None, &self.reg)
                .map_err(|e| ApiError::Failed(format!("{e:#}")))?
            {
                chosen = Some((lane, r));
                break;
            }
        }
        let (lane, res) = chosen.ok_or(ApiError::PoolEmpty)?;
        let inputs = &lane
            .inputs(share, len)
            .map_err(|e| ApiError::Bad(format!("{e:#}")))?;
        let unpaired = |e: anyhow::Error| ApiError::Unpaired(format!("{e:#} (nothing consumed)"));
        let h = res.header;
        let pair = serde_json::to_vec(&json!({
            "request_id": hex(&checked.rid), "session": hex(&h.session),
            "keys_fp": hex(&h.keys_fp), "program_fp": hex(&h.program_fp),
            "commitment": hex(&checked.commitment), "len": len,
        }))
        .map_err(|e| unpaired(e.into()))?;
        let ask = |net: &mut TcpTransport| -> Result<Value> {
            net.send(pair.clone())?;
            Ok(serde_json::from_slice(&net.recv_max(MAX_PAIR)?)?)
        };
        // An idle link from an earlier request if there is one (party 0 may have closed it:
        // then the next; nothing is consumed before party 0's yes), else a new link.
        let (mut net, reply) = loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut n) => match ask(&mut n) {
                    Ok(r) => break (n, r),
                    Err(e) => tracing::debug!("idle peer link gone: {e:#}"),
                },
                None => {
                    let mut n = self.connect_peer().map_err(unpaired)?;
                    let r = ask(&mut n).map_err(unpaired)?;
                    break (n, r);
                }
            }
        };
        if reply["ok"] != json!(true) {
            return Err(ApiError::Unpaired(format!(
                "party 0 refused the pairing: {} (nothing consumed)",
                reply["error"].as_str().unwrap_or("no reason given")
            )));
        }
        let pair_ms = ms(t0);
        let failed = |e: anyhow::Error| ApiError::Failed(format!("{e:#} (keys consumed)"));
        let t1 = Instant::now();
        let (mut keys, w) = lane
            .pool
            .consume(
                &res,
                &self.reg,
                &files::weight_records(&lane.prog),
                self.be.be.as_ref(),
            )
            .map_err(failed)?;
        let load_ms = ms(t1);
        let (out, prep_ms, wait_ms) = self
            .run_online(lane, &mut keys, &w, &mut net, inputs)
            .map_err(failed)?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_LINKS {
            idle.push(net);
        }
        drop(idle);
        self.respond(
            lane,
            checked,
            &h.session,
            &out,
            [pair_ms, load_ms, prep_ms, wait_ms],
        )
        .map_err(failed)
    }

    /// Party 0: one incoming link from party 1 (in its own thread): authenticate, then pair
    /// and run one request after another until party 1 closes the link, the link stays idle
    /// for the timeout, or a request fails.
    fn follow(&self, sock: std::net::TcpStream) -> Result<()> {
        let mut net = TcpTransport::from_accepted(sock, &self.link_cfg())?;
        if self.cfg.tls.is_none() {
            let s = self
                .secret
                .context("no peer.secret in the pool and no --tls")?;
            authenticate(&mut net, &s, &self.fp)?;
        }
        loop {
            let msg = match net.recv_max(MAX_PAIR) {
                Ok(m) => m,
                Err(suf_net::NetError::Timeout { .. } | suf_net::NetError::PeerClosed { .. }) => {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            };
            self.pair_one(&mut net, &msg, Instant::now())?;
        }
    }

    /// Party 0: one pairing message, and the inference if it is accepted.
    fn pair_one(&self, net: &mut TcpTransport, msg: &[u8], t0: Instant) -> Result<()> {
        let msg: Value = serde_json::from_slice(msg)?;
        let field = |k: &str| msg[k].as_str().unwrap_or("").to_string();
        let refuse = |net: &mut TcpTransport, why: String| -> Result<()> {
            let _ = net.send(serde_json::to_vec(&json!({"ok": false, "error": why}))?);
            bail!("pairing refused: {why}")
        };
        let (Some(rid), Some(session), Some(keys_fp), Some(fp), Some(c)) = (
            unhex::<16>(&field("request_id")),
            unhex::<16>(&field("session")),
            unhex::<32>(&field("keys_fp")),
            unhex::<32>(&field("program_fp")),
            unhex::<32>(&field("commitment")),
        ) else {
            return refuse(net, "malformed pairing message".into());
        };
        let Some(lane) = self.lanes.iter().find(|l| l.fp == fp) else {
            return refuse(net, "another program".into());
        };
        // Wait for the client's request to reach us too.
        let deadline = Instant::now() + self.cfg.timeout.min(Duration::from_secs(30));
        let pending = {
            let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(p) = g.remove(&rid) {
                    break Some(p);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || self.stop.load(Ordering::Relaxed) {
                    break None;
                }
                g = self
                    .arrived
                    .wait_timeout(g, left.min(Duration::from_millis(200)))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let Some(pending) = pending else {
            return refuse(net, format!("no request {} here", hex(&rid)));
        };
        let fail = |pending: Pending, e: ApiError| {
            let e = match e {
                ApiError::Unpaired(m) => ApiError::Unpaired(format!("{m} (nothing consumed)")),
                other => other,
            };
            let _ = pending.tx.send(Err(e));
        };
        if msg["len"].as_u64() != Some(pending.len as u64) {
            let why = "the two servers see different valid lengths for this request".to_string();
            fail(pending, ApiError::Bad(why.clone()));
            return refuse(net, why);
        }
        let inputs = match lane.inputs(&pending.inputs, pending.len) {
            Ok(i) if lane.fits(pending.len) => i,
            Ok(_) => {
                let why = format!("{} tokens do not fit this bucket", pending.len);
                fail(pending, ApiError::Bad(why.clone()));
                return refuse(net, why);
            }
            Err(e) => {
                let why = format!("{e:#}");
                fail(pending, ApiError::Bad(why.clone()));
                return refuse(net, why);
            }
        };
        if pending.checked.commitment != c {
            let why = "the two servers received different inputs for this request".to_string();
            fail(pending, ApiError::Bad(why.clone()));
            return refuse(net, why);
        }
        let res = match lane.pool.reserve(Some(session), &self.reg) {
            Ok(Some(r)) if r.header.keys_fp == keys_fp && r.header.program_fp == fp => r,
            Ok(_) => {
                let why = format!("key stream {} does not match", hex(&session));
                fail(pending, ApiError::Unpaired(why.clone()));
                return refuse(net, why);
            }
            Err(e) => {
                let why = format!("{e:#}");
                fail(pending, ApiError::Unpaired(why.clone()));
                return refuse(net, why);
            }
        };
        net.send(serde_json::to_vec(&json!({"ok": true}))?)?;
        let pair_ms = ms(t0);
        let r = (|| -> Result<Vec<u8>> {
            let t1 = Instant::now();
            let (mut keys, w) = lane.pool.consume(
                &res,
                &self.reg,
                &files::weight_records(&lane.prog),
                self.be.be.as_ref(),
            )?;
            let load_ms = ms(t1);
            let (out, prep_ms, wait_ms) = self.run_online(lane, &mut keys, &w, net, &inputs)?;
            self.respond(
                lane,
                &pending.checked,
                &session,
                &out,
                [pair_ms, load_ms, prep_ms, wait_ms],
            )
        })();
        let ok = r.is_ok();
        let _ = pending
            .tx
            .send(r.map_err(|e| ApiError::Failed(format!("{e:#} (keys consumed)"))));
        if !ok {
            bail!("the inference failed; the link is closed");
        }
        Ok(())
    }
}

type Srv = Arc<Server>;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Removes a request from the pending map when its handler ends (or is dropped).
struct PendingGuard(Srv, [u8; 16]);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut g = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&self.1);
    }
}

async fn health(State(s): State<Srv>) -> axum::Json<Value> {
    let buckets: Vec<usize> = s.lanes.iter().map(Lane::bucket_len).collect();
    let mut v = json!({"status": "ok", "party": s.party, "session": s.lanes[0].pool.manifest});
    if buckets.iter().any(|&b| b > 0) {
        v["buckets"] = json!(buckets);
    }
    axum::Json(v)
}

async fn metrics(State(s): State<Srv>) -> axum::Json<Value> {
    let m = &s.metrics;
    let s2 = s.clone();
    let (remaining, per_bucket) = tokio::task::spawn_blocking(move || {
        let per: serde_json::Map<String, Value> = s2
            .lanes
            .iter()
            .filter(|l| l.bucket.is_some())
            .map(|l| (l.bucket_len().to_string(), json!(l.pool.remaining(&s2.reg))))
            .collect();
        (s2.remaining(), per)
    })
    .await
    .unwrap_or_default();
    axum::Json(json!({
        "party": s.party,
        "served": m.served.load(Ordering::Relaxed),
        "failed": m.failed.load(Ordering::Relaxed),
        "refused": m.refused.load(Ordering::Relaxed),
        "in_flight": m.in_flight.load(Ordering::Relaxed),
        "remaining_streams": remaining,
        "remaining_by_bucket": per_bucket,
        "used_sessions": s.reg.len(),
        "uptime_s": s.started.elapsed().as_secs_f64(),
    }))
}

async fn infer(State(s): State<Srv>, body: Bytes) -> Response {
    let t = Instant::now();
    // Counted down on drop too: a client that hangs up (e.g. after the other server's
    // refusal) drops this future mid-request.
    struct InFlight(Srv);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
    s.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(s.clone());
    let r = infer_inner(s.clone(), body).await;
    drop(guard);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(b) => {
            s.metrics.served.fetch_add(1, Ordering::Relaxed);
            tracing::info!(party = s.party, ms, "request served");
            ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response()
        }
        Err(e) => {
            let c = match e {
                ApiError::Failed(_) => &s.metrics.failed,
                _ => &s.metrics.refused,
            };
            c.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(party = s.party, ms, error = ?e, "request not served");
            e.into_response()
        }
    }
}

async fn infer_inner(s: Srv, body: Bytes) -> Result<Vec<u8>, ApiError> {
    let bad = |e: anyhow::Error| ApiError::Bad(format!("{e:#}"));
    let (meta, share): (RequestMeta, &[u8]) = api::unframe(&body).map_err(bad)?;
    // The request names one of the lanes' programs (a bucket client names the smallest
    // bucket that fits; a larger one may serve it).
    let lane = unhex::<32>(&meta.program_fp)
        .and_then(|f| s.lanes.iter().find(|l| l.fp == f))
        .unwrap_or(&s.lanes[0]);
    let checked = api::check_request(&meta, share, s.party, &lane.fp).map_err(bad)?;
    let inputs = files::parse(share).map_err(bad)?;
    let got: Vec<(String, usize)> = inputs.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    let mut want = files::input_records(&lane.prog);
    want.sort();
    let mut len = 0;
    if let Some((_, hidden)) = &lane.bucket {
        // A share of the unpadded input (padded once the bucket is chosen): L whole rows,
        // 1 ≤ L ≤ the largest bucket.
        let max = s.lanes.iter().map(Lane::bucket_len).max().unwrap_or(0);
        let rows = match inputs.get("x") {
            Some(x) if inputs.len() == 1 && *hidden > 0 && x.len().is_multiple_of(*hidden) => {
                x.len() / hidden
            }
            _ => 0,
        };
        if rows == 0 || rows > max {
            return Err(ApiError::Bad(format!(
                "the share holds {got:?}; the buckets take x of 1..={max} rows of {hidden}"
            )));
        }
        len = rows;
    } else if got != want {
        return Err(ApiError::Bad(format!(
            "the share holds {got:?}, the program takes {want:?}"
        )));
    }
    tracing::info!(party = s.party, request = %hex(&checked.rid), "request");
    if s.party == 1 {
        let s2 = s.clone();
        return tokio::task::spawn_blocking(move || s2.lead(&checked, len, &inputs))
            .await
            .map_err(|e| ApiError::Failed(e.to_string()))?;
    }
    if s.remaining_for(len) == 0 {
        return Err(ApiError::PoolEmpty);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rid = checked.rid;
    {
        let mut g = s.pending.lock().unwrap_or_else(|p| p.into_inner());
        if g.contains_key(&rid) {
            return Err(ApiError::Conflict(format!(
                "request {} is already pending",
                hex(&rid)
            )));
        }
        g.insert(
            rid,
            Pending {
                checked,
                len,
                inputs,
                tx,
            },
        );
    }
    s.arrived.notify_all();
    // A client that goes away drops this future: its request must not stay pairable.
    let _guard = PendingGuard(s.clone(), rid);
    let ended = || ApiError::Failed("the pairing thread ended".into());
    let wait = s.cfg.timeout.min(Duration::from_secs(30));
    let mut rx = rx;
    match tokio::time::timeout(wait, &mut rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ended()),
        Err(_) => {
            let unpaired = s
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&rid)
                .is_some();
            if unpaired {
                Err(ApiError::Unpaired(format!(
                    "party 1 did not pair request {} within {wait:?} (nothing consumed)",
                    hex(&rid)
                )))
            } else {
                // Paired meanwhile: the run is under way and its key consumed. It ends by
                // itself (loading the key stream, then an online phase whose every wait on
                // the peer is bounded by --timeout), so its answer is awaited: a large
                // model's key load alone can outlast the pairing window (bert-base on a GPU:
                // ≈ 20 s), and giving up here would throw away a finished inference.
                rx.await.unwrap_or_else(|_| Err(ended()))
            }
        }
    }
}

/// Everything `suf serve --pool` needs besides the pool arguments.
pub struct Common {
    /// 0 or 1.
    pub party: u8,
    /// Party 0's link listener.
    pub listen: Option<SocketAddr>,
    /// Party 1's link target.
    pub connect: Option<SocketAddr>,
    /// TLS identity folder.
    pub tls: Option<PathBuf>,
    /// Wait bound.
    pub timeout: Duration,
    /// Backend.
    pub be: OneBackend,
}

/// Read this party's identity and the peer's certificate from `dir`.
pub fn read_identity(dir: &std::path::Path, party: u8) -> Result<suf_net::TlsConfig> {
    let rd = |f: String| {
        let p = dir.join(&f);
        std::fs::read(&p)
            .with_context(|| format!("reading {} (make it with `suf certs`)", p.display()))
    };
    Ok(suf_net::TlsConfig {
        identity: suf_net::Identity {
            cert_der: rd(format!("p{party}.crt"))?,
            key_der: rd(format!("p{party}.key"))?,
        },
        peer_cert_der: rd(format!("p{}.crt", 1 - party))?,
    })
}

/// One lane: a pool and its program, checked against the pool's manifest.
fn open_lane(dir: &std::path::Path, party: u8) -> Result<Lane> {
    let pool = Arc::new(Pool::open(dir, party)?);
    let fmt = crate::Format {
        bits: pool.manifest.bits,
        frac: pool.manifest.frac,
        model_seed: pool.manifest.model_seed,
    };
    let (prog, bucket) = if pool.manifest.bucket {
        let b = crate::session_built(&pool.manifest, fmt)?;
        let hidden = b
            .prog
            .inputs
            .get("x")
            .map(|&x| b.prog.node(x).shape.last().copied().unwrap_or(0))
            .context("a bucket program without input x")?;
        let bk = b
            .bucket
            .context("a bucket session built without its bucket")?;
        (b.prog, Some((bk, hidden)))
    } else {
        (crate::session_program(&pool.manifest, fmt)?.0, None)
    };
    let fp = prog.fingerprint();
    if hex(&fp) != pool.manifest.program_fp {
        bail!(
            "{}: the pool's keys were made for another program build (fingerprint differs)",
            dir.display()
        );
    }
    Ok(Lane {
        prog,
        fp,
        pool,
        bucket,
    })
}

/// The lanes of `--pool DIR`: DIR itself when it is a pool, else its bucket pools `b<L>`
/// (`suf dealer --buckets`), by increasing length, all of one model and ring.
fn open_lanes(dir: &std::path::Path, party: u8) -> Result<Vec<Lane>> {
    if dir.join(crate::pool::POOL_MANIFEST).exists() {
        return Ok(vec![open_lane(dir, party)?]);
    }
    let mut subs: Vec<(usize, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name();
        let Some(l) = name
            .to_str()
            .and_then(|n| n.strip_prefix('b'))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if e.path().join(crate::pool::POOL_MANIFEST).exists() {
            subs.push((l, e.path()));
        }
    }
    subs.sort();
    if subs.is_empty() {
        bail!(
            "{} is not a key pool nor a folder of bucket pools (run `suf dealer`)",
            dir.display()
        );
    }
    let lanes = subs
        .iter()
        .map(|(_, p)| open_lane(p, party))
        .collect::<Result<Vec<_>>>()?;
    let m0 = &lanes[0].pool.manifest;
    for (l, (len, p)) in lanes.iter().zip(&subs) {
        let m = &l.pool.manifest;
        if !m.bucket
            || m.seq != *len
            || (&m.program, m.bits, m.frac, m.model_seed)
                != (&m0.program, m0.bits, m0.frac, m0.model_seed)
        {
            bail!(
                "{}: not a bucket pool of length {len} for {} like the others",
                p.display(),
                m0.program
            );
        }
    }
    Ok(lanes)
}

/// `suf serve --pool`: run until Ctrl-C / SIGTERM.
pub fn serve(a: ServeArgs, c: Common) -> Result<()> {
    let party = c.party;
    let pool_dir = a.pool.clone().context("--pool DIR")?;
    let api_addr = a
        .api
        .context("--api HOST:PORT (where the HTTPS API listens)")?;
    let tls_dir = c
        .tls
        .clone()
        .context("--tls DIR: the HTTPS API needs this party's certificate (`suf certs`)")?;
    let tls = read_identity(&tls_dir, party)?;
    // Required, not derived from the pool's path: a pool copied elsewhere must not come with
    // a fresh registry.
    let state = a.state.clone().context(
        "--state DIR: where this server keeps its registry of used sessions (one per host, \
         never copied or restored)",
    )?;
    let reg = Registry::open(&state)?;
    let lanes = open_lanes(&pool_dir, party)?;
    let fp = if lanes.len() == 1 {
        lanes[0].fp
    } else {
        let mut b = b"suf-bucket-lanes-v1".to_vec();
        for l in &lanes {
            b.extend_from_slice(&l.fp);
        }
        suf_net::fingerprint(&b)
    };
    let pool = lanes[0].pool.clone();
    let mut cfg = LinkConfig::new(party);
    cfg.model_fp = fp;
    cfg.timeout = c.timeout;
    cfg.connect_timeout = c.timeout.min(Duration::from_secs(10));
    // The peer link: TLS between hosts (two identities), or the pool secret on loopback.
    let peer_tls = c
        .connect
        .or(c.listen)
        .is_some_and(|a| suf_net::tls_required(&a));
    let secret = pool.peer_secret()?;
    if peer_tls || secret.is_none() {
        cfg.tls = Some(tls.clone());
    }
    let listener = match (party, c.listen, c.connect) {
        (0, Some(l), None) => Some(
            TcpListener::bind(l).with_context(|| format!("cannot listen on {l} (port in use?)"))?,
        ),
        (1, None, Some(_)) => None,
        _ => bail!("party 0 needs --listen ADDR (its peer link) and party 1 --connect ADDR"),
    };
    let api_cfg = suf_net::tls::api_server_config(&tls.identity)?;
    let srv = Arc::new(Server {
        party,
        fp: cfg.model_fp,
        lanes,
        be: c.be,
        reg,
        cfg,
        secret,
        connect: c.connect,
        idle: Mutex::new(Vec::new()),
        pending: Mutex::new(HashMap::new()),
        arrived: Condvar::new(),
        metrics: Metrics::default(),
        started: Instant::now(),
        stop: AtomicBool::new(false),
    });
    let peer_thread = match listener {
        Some(l) => {
            l.set_nonblocking(true)?;
            let s = srv.clone();
            Some(std::thread::spawn(move || peer_loop(&s, &l)))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(http_main(srv.clone(), api_addr, api_cfg));
    srv.stop.store(true, Ordering::Relaxed);
    if let Some(t) = peer_thread {
        let _ = t.join();
    }
    r
}

fn peer_loop(s: &Srv, l: &TcpListener) {
    let mut workers = Vec::new();
    while !s.stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((sock, addr)) => {
                let s = s.clone();
                workers.push(std::thread::spawn(move || {
                    if let Err(e) = s.follow(sock) {
                        tracing::warn!(peer = %addr, "peer link: {e:#}");
                    }
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => tracing::warn!("peer listener: {e}"),
        }
        workers.retain(|w| !w.is_finished());
    }
    // Workers left are idle links waiting for a next request (the HTTP side has finished
    // every in-flight request by now): they end with the process.
    drop(workers);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn http_main(s: Srv, addr: SocketAddr, tls: rustls::ServerConfig) -> Result<()> {
    let limit = s
        .lanes
        .iter()
        .map(|l| {
            usize::try_from(files::encoded_len(
                files::input_records(&l.prog)
                    .iter()
                    .map(|(n, c)| (n.as_str(), *c)),
            ))
            .unwrap_or(usize::MAX)
        })
        .max()
        .unwrap_or(0)
        .saturating_add(api::MAX_META + 4);
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/metrics", get(metrics))
        .route("/v1/infer", post(infer))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (port in use?)"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let local = listener.local_addr()?;
    // One line on stdout for scripts and tests: where the API is.
    println!(
        "{}",
        json!({"ready": true, "party": s.party, "api": local.to_string(),
               "remaining_streams": s.remaining()})
    );
    tracing::info!(party = s.party, api = %local, "serving");
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (sock, _) = match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("accept: {e}"); continue; }
                };
                let acceptor = acceptor.clone();
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    else {
                        return;
                    };
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn).await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    tracing::info!(
        party = s.party,
        "shutting down: finishing in-flight requests"
    );
    eprintln!(
        "party {}: stopping; in-flight requests finish first",
        s.party
    );
    let _ = tokio::time::timeout(s.cfg.timeout, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_shape_and_tags_bind_roles() {
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"); padded with zeros to 32 bytes it is
        // the same HMAC key (keys shorter than the block are zero-padded).
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(b"Jefe");
        let t = hmac(&k, b"what do ya want for nothing?");
        assert_eq!(
            hex(&t),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let n = [[1u8; 32], [2u8; 32]];
        let s = [5u8; 32];
        assert_ne!(auth_tag(&s, 0, &[0; 32], &n), auth_tag(&s, 1, &[0; 32], &n));
        assert_ne!(
            auth_tag(&s, 0, &[0; 32], &n),
            auth_tag(&s, 0, &[0; 32], &[[1; 32], [3; 32]])
        );
        assert!(ct_eq(b"ab", b"ab") && !ct_eq(b"ab", b"ac") && !ct_eq(b"a", b"ab"));
    }

    #[test]
    fn loopback_auth_accepts_the_secret_and_refuses_others() {
        let fp = [4u8; 32];
        let run = |s0: [u8; 32], s1: [u8; 32]| {
            let (mut a, mut b) = suf_net::mem_pair(Duration::from_secs(5));
            let t = std::thread::spawn(move || authenticate(&mut b, &s1, &fp));
            let r0 = authenticate(&mut a, &s0, &fp);
            drop(a);
            (r0, t.join().unwrap())
        };
        let (r0, r1) = run([1; 32], [1; 32]);
        assert!(r0.is_ok() && r1.is_ok(), "{r0:?} {r1:?}");
        let (r0, r1) = run([1; 32], [2; 32]);
        assert!(r0.is_err() && r1.is_err());
    }
}
