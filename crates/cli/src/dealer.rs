//! `suf dealer`: N one-time key streams for a program into the two servers' pools (half
//! each). Each stream gets a fresh session id, fresh masks and its own masked weights
//! `<session>.weights` (a fresh R_W per stream). Everything is written into a private
//! temporary folder inside each pool and renamed into place only when complete (masked weights
//! before keys, so a server never sees a stream without its weights). Files are 0600, pool
//! folders 0700. The first run writes `pool.json` and `peer.secret` into both pools; a later run
//! must be for the same program and finds the same secret in both.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use suf_backend::CpuBackend;
use suf_cli::session::Session;
use suf_core::prg::Csprng;
use suf_runtime::dealer::run_dealer;
use suf_runtime::keystream::DealerStreams;

use crate::pool::{self, hex, private_dir, write_private, PEER_SECRET, POOL_MANIFEST};
use crate::{files, Format};

/// Arguments of `suf dealer`.
#[derive(clap::Args, Clone)]
pub struct DealerArgs {
    /// Program: `toy`, or a model name with --seq (public weights).
    #[arg(long, default_value = "toy")]
    pub program: String,
    /// Sequence length (models).
    #[arg(long, default_value_t = 0)]
    pub seq: usize,
    /// Keys for the length bucket --seq: they serve every input of 1..=seq tokens (padded;
    /// the valid length is public). `--buckets` makes one such pool per length.
    #[arg(long)]
    pub bucket: bool,
    /// Length buckets, e.g. `16,32,64,128`: one bucket pool per length, in `b<L>` inside
    /// --pool0/--pool1 (`suf serve --pool` on the folder serves them all).
    #[arg(long, value_delimiter = ',')]
    pub buckets: Vec<usize>,
    /// Key streams to make.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Party 0's pool folder (created).
    #[arg(long)]
    pub pool0: PathBuf,
    /// Party 1's pool folder (created).
    #[arg(long)]
    pub pool1: PathBuf,
    #[command(flatten)]
    pub fmt: Format,
    /// Dealer: cpu, cuda (DCF keys made on the GPU, byte-identical to the CPU's) or auto.
    #[arg(long, default_value = "cpu")]
    pub backend: crate::models_cmd::BackendChoice,
}

fn random32(rng: &mut Csprng) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..16].copy_from_slice(&rng.seed());
    s[16..].copy_from_slice(&rng.seed());
    s
}

/// The pools' common secret: written to both if neither has one; must be equal otherwise.
fn ensure_secret(pools: &[&Path; 2], rng: &mut Csprng) -> Result<()> {
    let read = |p: &Path| -> Result<Option<Vec<u8>>> {
        let f = p.join(PEER_SECRET);
        if !f.exists() {
            return Ok(None);
        }
        Ok(Some(files::read_at_most(&f, 32)?))
    };
    match (read(pools[0])?, read(pools[1])?) {
        (None, None) => {
            let s = random32(rng);
            for p in pools {
                write_private(&p.join(PEER_SECRET), &s)?;
            }
            Ok(())
        }
        (Some(a), Some(b)) if a == b && a.len() == 32 => Ok(()),
        _ => bail!(
            "the two pools' {PEER_SECRET} differ or one is missing: they are not halves of the \
             same pool (use two new folders)"
        ),
    }
}

/// `suf dealer`.
pub fn run(a: &DealerArgs) -> Result<()> {
    if !a.buckets.is_empty() {
        if a.seq != 0 || a.bucket {
            bail!("--buckets replaces --seq/--bucket");
        }
        if a.buckets.contains(&0) {
            bail!("--buckets: a bucket length must be at least 1");
        }
        let mut ls = a.buckets.clone();
        ls.sort_unstable();
        ls.dedup();
        for l in ls {
            let one = DealerArgs {
                seq: l,
                bucket: true,
                buckets: Vec::new(),
                pool0: a.pool0.join(format!("b{l}")),
                pool1: a.pool1.join(format!("b{l}")),
                ..a.clone()
            };
            run(&one)?;
        }
        return Ok(());
    }
    // The servers take a pool's program by name (a zoo model or a fetched package such as
    // minilm-l6, rebuilt from their own cache): refuse anything else before dealing.
    if !suf_cli::session::is_plain_name(&a.program) {
        bail!(
            "`{}`: a pool serves a model by name (`suf models list`), not a checkpoint folder",
            a.program
        );
    }
    let mut fmt = a.fmt;
    if a.bucket && a.program == "toy" {
        bail!("--bucket is for models (the toy program has no sequence)");
    }
    if a.program != "toy" {
        let m = crate::models_cmd::load(&a.program, &None, fmt.model_seed)
            .with_context(|| format!("unknown program `{}`", a.program))?;
        if a.seq == 0 {
            bail!("--seq L is required for a model");
        }
        let positions = m.cfg.max_pos.saturating_sub(m.cfg.pos_offset);
        if a.seq > positions {
            bail!("--seq {} is more than {} positions", a.seq, positions);
        }
        fmt.bits = m.cfg.ring_bits;
        fmt.frac = m.cfg.frac_bits;
    }
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    let mut s = Session {
        program: a.program.clone(),
        seq: a.seq,
        bits: fmt.bits,
        frac: fmt.frac,
        model_seed: fmt.model_seed,
        program_fp: String::new(),
        key_bytes: [0, 0],
        keygen_ms: 0.0,
        rounds: 0,
        bucket: a.bucket,
    };
    let (prog, weights) = crate::session_program(&s, fmt)?;
    s.program_fp = hex(&prog.fingerprint());
    let pools = [a.pool0.as_path(), a.pool1.as_path()];
    if pools[0] == pools[1] {
        bail!("--pool0 and --pool1 must be two folders (one per server)");
    }
    for p in pools {
        private_dir(p)?;
        let mp = p.join(POOL_MANIFEST);
        if mp.exists() {
            let old = suf_cli::session::parse(&files::read_at_most(
                &mp,
                suf_cli::session::MAX_MANIFEST_BYTES,
            )?)?;
            if (
                &old.program,
                old.seq,
                old.bits,
                old.frac,
                old.model_seed,
                &old.program_fp,
                old.bucket,
            ) != (
                &s.program,
                s.seq,
                s.bits,
                s.frac,
                s.model_seed,
                &s.program_fp,
                s.bucket,
            ) {
                bail!(
                    "{} holds keys for {} (seq {}): a pool serves one program; use another folder",
                    p.display(),
                    old.program,
                    old.seq
                );
            }
        }
    }
    check_space(&prog, &weights, a.count, &pools)?;
    let _gpu = crate::keygen::gpu_dealer(a.backend, None)?;
    let mut rng = Csprng::from_os()?;
    ensure_secret(&pools, &mut rng)?;
    let tmp: Vec<PathBuf> = pools
        .iter()
        .map(|p| p.join(format!(".incoming-{}", hex(&rng.seed()[..8]))))
        .collect();
    for t in &tmp {
        private_dir(t)?;
    }
    let r = deal(&prog, &weights, &mut s, a.count, &pools, &tmp, &mut rng);
    for t in &tmp {
        let _ = std::fs::remove_dir_all(t);
    }
    let ms = r?;
    for p in pools {
        let mp = p.join(POOL_MANIFEST);
        if !mp.exists() {
            let tmpm = p.join(".pool.json.tmp");
            let _ = std::fs::remove_file(&tmpm);
            write_private(&tmpm, serde_json::to_string_pretty(&s)?.as_bytes())?;
            std::fs::rename(&tmpm, &mp)?;
        }
    }
    println!(
        "{}",
        json!({"program": s.program, "seq": s.seq, "bucket": s.bucket, "streams": a.count,
               "key_bytes_per_stream": s.key_bytes, "keygen_ms_per_stream": ms / a.count as f64,
               "pools": [pools[0].display().to_string(), pools[1].display().to_string()]})
    );
    Ok(())
}

/// Refuse before writing anything when a pool's filesystem cannot hold its half of `count`
/// streams (the plan's exact key bytes plus the masked weights, with keygen's margin).
fn check_space(
    prog: &suf_runtime::ir::Program,
    weights: &suf_runtime::plain::PlainWeights,
    count: usize,
    pools: &[&Path; 2],
) -> Result<()> {
    let Ok(plan) = suf_runtime::plan::Plan::of(prog) else {
        return Ok(());
    };
    let masked = files::encoded_len(weights.iter().map(|(k, v)| (k.as_str(), v.len())));
    for (j, p) in pools.iter().enumerate() {
        let need = crate::keygen::with_margin(
            plan.key_bytes[j]
                .saturating_add(masked)
                .saturating_mul(count as u64),
        );
        let free = fs4::available_space(p)
            .with_context(|| format!("reading the free space of {}", p.display()))?;
        if need > free && std::env::var_os(crate::keygen::SKIP_SPACE_CHECK).is_none() {
            bail!(
                "{count} stream(s) would take about {} in {} but only {} are free there: free \
                 space, lower --count or choose another pool folder (no key was written)",
                crate::keygen::human(need),
                p.display(),
                crate::keygen::human(free)
            );
        }
    }
    Ok(())
}

fn deal(
    prog: &suf_runtime::ir::Program,
    weights: &suf_runtime::plain::PlainWeights,
    s: &mut Session,
    count: usize,
    pools: &[&Path; 2],
    tmp: &[PathBuf],
    rng: &mut Csprng,
) -> Result<f64> {
    let pb = crate::logging::progress(count as u64, "dealer: one-time key streams");
    let mut total_ms = 0.0;
    for _ in 0..count {
        let mut sid = [0u8; 16];
        sid.copy_from_slice(&rng.seed());
        let h = hex(&sid);
        let (what, rw) = suf_runtime::mask_weights(prog.width(), weights, rng);
        let kp: Vec<PathBuf> = (0..2)
            .map(|j| tmp[j].join(format!("{h}.p{j}.keys")))
            .collect();
        let ds = DealerStreams::to_files(
            prog.width(),
            Csprng::from_os()?,
            sid,
            prog.fingerprint(),
            [&kp[0], &kp[1]],
        )?;
        let rep = run_dealer(prog, &CpuBackend::new(), ds, &rw)?;
        total_ms += rep.keygen_ms;
        s.key_bytes = rep.key_bytes;
        s.keygen_ms = rep.keygen_ms;
        s.rounds = rep.rounds;
        let wb = files::encode(&what);
        for j in 0..2 {
            pool::restrict_file(&kp[j])?;
            write_private(&tmp[j].join(format!("{h}.weights")), &wb)?;
        }
        for j in 0..2 {
            std::fs::rename(
                tmp[j].join(format!("{h}.weights")),
                pools[j].join(format!("{h}.weights")),
            )?;
            std::fs::rename(&kp[j], pools[j].join(format!("{h}.p{j}.keys")))?;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(total_ms)
}
