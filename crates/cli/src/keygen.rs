//! `suf keygen`, the dealer: everything is checked before the first byte is written, and a
//! session appears whole or not at all.
//!
//! 1. The sequence length must fit the model's position table.
//! 2. The bytes the session will take are computed from the key format's closed forms
//!    (`suf_runtime::plan::Plan`: exact per party, printed before dealing; when a gate cannot
//!    say, [`estimate_bytes`], a floor measured by dealing 2 and 4 tokens) and compared with
//!    the space free on the target filesystem.
//! 4. While dealing, a progress bar shows the bytes written; at the end the rate (key bytes
//!    and gate key sets per second) is printed on stderr. The dealer is parallel and
//!    deterministic per master seed (`suf_runtime::dealer`).
//! 3. Everything is written into a fresh temporary folder beside `--out`, which is renamed to
//!    `--out` only once complete; a failure (a full disk included) removes it. `--out` must
//!    not hold a session already: a session is never overwritten.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use suf_backend::CpuBackend;
use suf_cli::session::{Session, MAX_SEQ};
use suf_core::prg::Csprng;
use suf_runtime::dealer::{run_dealer, run_dealer_with, DealReport};
use suf_runtime::keystream::DealerStreams;

use crate::models_cmd::BackendChoice;
use crate::{files, hex, logging, models_cmd, session_program, Format};

/// Safety margin on the estimate: 2 % plus 1 MiB.
pub(crate) fn with_margin(bytes: u64) -> u64 {
    bytes.saturating_add(bytes / 50).saturating_add(1 << 20)
}

/// Environment variable that skips the free-space check. For tests of the clean-up after a
/// failed write (a full disk) only.
pub(crate) const SKIP_SPACE_CHECK: &str = "SUF_KEYGEN_SKIP_SPACE_CHECK";

pub(crate) fn run(
    name: String,
    seq: usize,
    out: &Path,
    mut fmt: Format,
    backend: BackendChoice,
) -> Result<()> {
    // 1. Arguments.
    if name != "toy" {
        let m = models_cmd::load(&name, &None, fmt.model_seed)
            .with_context(|| format!("unknown program `{name}`: use toy or a model name"))?;
        if seq == 0 {
            bail!("--seq L is required for a model (the key stream is made for L tokens)");
        }
        let positions = m.cfg.max_pos.saturating_sub(m.cfg.pos_offset).min(MAX_SEQ);
        if seq > positions {
            bail!(
                "--seq {seq} is more than {name} can take: its position table has {positions} \
                 positions (use --seq {positions} or less)"
            );
        }
        fmt.bits = m.cfg.ring_bits;
        fmt.frac = m.cfg.frac_bits;
    }
    check_out(out)?;
    let probe = |seq| Session {
        program: name.clone(),
        seq,
        bits: fmt.bits,
        frac: fmt.frac,
        model_seed: fmt.model_seed,
        program_fp: String::new(),
        key_bytes: [0, 0],
        keygen_ms: 0.0,
        rounds: 0,
        bucket: false,
    };
    let (prog, weights) = session_program(&probe(seq), fmt)?;

    // 2. Space (the probes are dealt inside the temporary folder and deleted at once).
    let parent = existing_parent(out)?;
    let tmp = TempDir::new(&parent, out)?;
    let planned = suf_runtime::plan::Plan::of(&prog).map(|p| p.key_bytes);
    let masked = files::encoded_len(weights.iter().map(|(k, v)| (k.as_str(), v.len())));
    let estimate = match &planned {
        Ok([k0, k1]) => {
            eprintln!(
                "keygen: will write {} for party 0 and {} for party 1 (exact, from the key \
                 format's closed forms)",
                human(*k0),
                human(*k1)
            );
            k0.saturating_add(*k1).saturating_add(masked)
        }
        Err(e) => {
            tracing::info!(%e, "keygen: no closed form, measuring a floor");
            estimate_bytes(&name, seq, |l| deal_size(&probe(l), fmt, &tmp.path))?
        }
    };
    let need = with_margin(estimate);
    let free = fs4::available_space(&parent)
        .with_context(|| format!("reading the free space of {}", parent.display()))?;
    tracing::info!(estimate, need, free, "keygen: estimated session size");
    if need > free && std::env::var_os(SKIP_SPACE_CHECK).is_none() {
        bail!(
            "keygen would write about {} but only {} are free on the filesystem of {}: free \
             space or choose another --out (nothing was written)",
            human(need),
            human(free),
            parent.display()
        );
    }

    // 3. Write into the temporary folder, then rename it into place (the GPU dealer, when
    // chosen, makes the DCF batches; the same bytes, streamed to disk batch by batch).
    let _dealer = gpu_dealer(backend, None)?;
    let mut rng = Csprng::from_os()?;
    // The model owner masks the private weights once; the dealer keeps R_W.
    let (what, rw) = suf_runtime::mask_weights(prog.width(), &weights, &mut rng);
    files::write(&tmp.path.join("weights.masked"), &what)?;
    let mut session = [0u8; 16];
    session.copy_from_slice(&rng.seed());
    let ds = DealerStreams::to_files(
        prog.width(),
        Csprng::from_os()?,
        session,
        prog.fingerprint(),
        [&tmp.path.join("p0.keys"), &tmp.path.join("p1.keys")],
    )?;
    let total = planned.as_ref().map_or(0, |k| k[0].saturating_add(k[1]));
    let pb = logging::progress(total, "dealer: key bytes");
    pb.enable_steady_tick(Duration::from_millis(120));
    let rep = run_dealer_with(&prog, &CpuBackend::new(), ds, &rw, &|b| pb.set_position(b))?;
    pb.finish_and_clear();
    eprintln!("{}", rate_line(&rep));
    eprint!("{}", split_lines(&rep, 12));
    let s = Session {
        program_fp: hex(&prog.fingerprint()),
        key_bytes: rep.key_bytes,
        keygen_ms: rep.keygen_ms,
        rounds: rep.rounds,
        ..probe(seq)
    };
    tracing::debug!(
        estimate,
        actual = rep.key_bytes[0] + rep.key_bytes[1],
        "keygen: key bytes"
    );
    let json = serde_json::to_string_pretty(&s)?;
    std::fs::write(tmp.path.join("session.json"), &json)
        .with_context(|| format!("writing {}", tmp.path.display()))?;
    tmp.persist(out)?;
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

/// Files of a session (and of its runs): `out` must hold none of them.
const SESSION_FILES: &[&str] = &[
    "session.json",
    "p0.keys",
    "p1.keys",
    "p0.keys.used",
    "p1.keys.used",
    "weights.masked",
    "input.share0",
    "input.share1",
    "output.share0",
    "output.share1",
];

/// `out` must not exist, or be a folder without session files (other files, such as a
/// `certs/` folder, may be there).
fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("{} exists and is not a folder", out.display());
    }
    if let Some(f) = SESSION_FILES.iter().find(|f| out.join(f).exists()) {
        bail!(
            "{} already holds a session ({f}): keygen never overwrites a session (choose a \
             new folder, or delete that one)",
            out.display()
        );
    }
    Ok(())
}

/// The folder `out` will live in (created if missing), where the temporary folder goes, so
/// that the final rename stays on one filesystem.
fn existing_parent(out: &Path) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent)
}

/// Bytes of both key files plus the masked weights of a session, measured by dealing it for
/// real into files in `dir` that are deleted at once.
fn deal_size(s: &Session, fmt: Format, dir: &Path) -> Result<u64> {
    let (prog, weights) = session_program(s, fmt)?;
    let mut rng = Csprng::from_os()?;
    let (what, rw) = suf_runtime::mask_weights(prog.width(), &weights, &mut rng);
    let paths = [dir.join("probe0.keys"), dir.join("probe1.keys")];
    let ds = DealerStreams::to_files(
        prog.width(),
        rng,
        [0; 16],
        prog.fingerprint(),
        [&paths[0], &paths[1]],
    )?;
    let rep = run_dealer(&prog, &CpuBackend::new(), ds, &rw);
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    let rep = rep?;
    let masked = files::encoded_len(what.iter().map(|(k, v)| (k.as_str(), v.len())));
    Ok(rep.key_bytes[0]
        .saturating_add(rep.key_bytes[1])
        .saturating_add(masked))
}

/// The session's size at sequence length `seq`, extrapolated linearly from `size_at`
/// measured at lengths 2 and 4 (a softmax needs two positions; short sequences and the toy
/// program are measured directly). Most of a transformer's key material grows linearly with
/// the length; attention scores grow quadratically and the softmax's gates grow a little with
/// log(length), so the extrapolation errs low (bert-tiny: 1 % low at 8 tokens, 10 % at 32).
/// It is a floor: a session it says does not fit does not fit; one that fits by this
/// estimate may still fill the disk, and then the temporary folder is removed.
pub(crate) fn estimate_bytes(
    name: &str,
    seq: usize,
    size_at: impl Fn(usize) -> Result<u64>,
) -> Result<u64> {
    if name == "toy" || seq <= 4 {
        return size_at(seq);
    }
    let (s2, s4) = (size_at(2)?, size_at(4)?);
    let per_token = s4.saturating_sub(s2) / 2;
    Ok(s4.saturating_add(per_token.saturating_mul(seq as u64 - 4)))
}

/// Install the GPU dealer (`suf_cuda::CudaDealer`) for `choice` on device `ordinal` (0 when
/// not given) until the guard is dropped; `None` (the CPU dealer) for `cpu`, and for `auto`
/// without a usable GPU. The keys are the same bytes either way.
pub(crate) fn gpu_dealer(
    choice: BackendChoice,
    ordinal: Option<usize>,
) -> Result<Option<suf_fss::dealer::DealerGuard>> {
    if choice == BackendChoice::Cpu
        || (choice == BackendChoice::Auto && !suf_cuda::cuda_available())
    {
        return Ok(None);
    }
    let open = || -> std::result::Result<suf_cuda::CudaDealer, suf_cuda::CudaError> {
        let be = suf_cuda::CudaBackend::with_options(suf_cuda::CudaOptions {
            ordinal: ordinal.unwrap_or(0),
            ..Default::default()
        })?;
        suf_cuda::CudaDealer::new(&be)
    };
    match open() {
        Ok(d) => {
            tracing::info!(?d, "dealer: DCF keys on the GPU");
            Ok(Some(suf_fss::dealer::install(std::sync::Arc::new(d))))
        }
        Err(e) if choice == BackendChoice::Auto => {
            tracing::warn!("--backend auto: the GPU dealer did not open ({e}); using the CPU");
            Ok(None)
        }
        Err(e) => bail!("--backend cuda: {e} (use --backend cpu or auto)"),
    }
}

/// The dealer's rate, for stderr.
pub(crate) fn rate_line(rep: &DealReport) -> String {
    format!(
        "keygen: {} in {:.2} s ({} dealer, {} gate batches): {:.1} MB/s, {:.0} key sets/s \
         (masks {:.2} s, dealing {:.2} s, writing {:.2} s)",
        human(rep.key_bytes[0].saturating_add(rep.key_bytes[1])),
        rep.keygen_ms / 1e3,
        rep.dcf_dealer,
        rep.gate_batches,
        rep.bytes_per_s() / 1e6,
        rep.keys_per_s(),
        rep.masks_ms / 1e3,
        rep.deal_ms / 1e3,
        rep.write_ms / 1e3
    )
}

/// Where the dealing went (task times summed over threads: see `DealReport::kinds`), and the
/// `top` most expensive kinds, for stderr.
pub(crate) fn split_lines(rep: &DealReport, top: usize) -> String {
    let s = &rep.split_ms;
    let mut out = format!(
        "keygen: dealing split ({}): DCF {:.2} s, DPF {:.2} s, other gate work {:.2} s, mask \
         products {:.2} s\n",
        if rep.serial {
            "gate batches one at a time: wall-clock"
        } else {
            "task time summed over threads; SUF_DEALER_SERIAL=1 for wall-clock"
        },
        s.dcf / 1e3,
        s.dpf / 1e3,
        s.gate_other / 1e3,
        s.products / 1e3
    );
    for k in rep.kinds.iter().take(top) {
        out.push_str(&format!(
            "keygen:   {:<40} {:>8.1} ms (DCF {:>7.1}, DPF {:>6.1}) {:>4} tasks {:>9} elements {}\n",
            k.kind.chars().take(40).collect::<String>(),
            k.ms,
            k.dcf_ms,
            k.dpf_ms,
            k.tasks,
            k.elements,
            human(k.bytes)
        ));
    }
    out
}

pub(crate) fn human(b: u64) -> String {
    let gb = b as f64 / 1e9;
    if gb >= 1.0 {
        format!("{gb:.2} GB")
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

/// A temporary folder beside the final one, removed on drop unless persisted.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn new(parent: &Path, out: &Path) -> Result<Self> {
        let base = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into());
        let nonce = hex(&Csprng::from_os()?.seed()[..6]);
        let path = parent.join(format!(".{base}.keygen-{nonce}"));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }

    /// Move the finished session to `out`: the folder itself when `out` does not exist (one
    /// atomic rename), else file by file with `session.json` last (a session without its
    /// manifest is not usable, so readers never see a partial one).
    fn persist(mut self, out: &Path) -> Result<()> {
        let ctx = || format!("moving the session into {}", out.display());
        if !out.exists() {
            std::fs::rename(&self.path, out).with_context(ctx)?;
            self.keep = true;
            return Ok(());
        }
        check_out(out)?;
        for f in ["weights.masked", "p0.keys", "p1.keys", "session.json"] {
            std::fs::rename(self.path.join(f), out.join(f)).with_context(ctx)?;
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_estimate_is_exact_on_affine_sizes_and_low_on_convex_ones() {
        let f = |l: usize| Ok(1000 + 37 * l as u64);
        for l in [1usize, 2, 3, 4, 5, 17, 128, 512] {
            assert_eq!(estimate_bytes("m", l, f).unwrap(), f(l).unwrap());
        }
        let g = |l: usize| Ok(1000 + 37 * l as u64 + 5 * (l * l) as u64);
        for l in [5usize, 17, 128] {
            assert!(estimate_bytes("m", l, g).unwrap() < g(l).unwrap());
        }
        assert_eq!(estimate_bytes("toy", 0, |_| Ok(77)).unwrap(), 77);
    }

    #[test]
    fn split_lines_show_the_totals_and_the_top_kinds() {
        use suf_runtime::dealer::{DealSplit, KindTime};
        let kind = |k: &str, ms: f64| KindTime {
            kind: k.into(),
            tasks: 2,
            elements: 300,
            bytes: 2_500_000,
            ms,
            dcf_ms: ms / 2.0,
            dpf_ms: 0.0,
        };
        let rep = DealReport {
            kinds: vec![
                kind("gelu_in", 1500.0),
                kind("arsgap", 700.0),
                kind("mul", 3.0),
            ],
            split_ms: DealSplit {
                dcf: 1100.0,
                dpf: 20.0,
                gate_other: 1000.0,
                products: 3.0,
            },
            ..Default::default()
        };
        let s = split_lines(&rep, 2);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(
            lines[0].contains("DCF 1.10 s, DPF 0.02 s, other gate work 1.00 s"),
            "{s}"
        );
        assert!(lines[0].contains("SUF_DEALER_SERIAL=1"), "{s}");
        assert!(
            lines[1].contains("gelu_in") && lines[1].contains("1500.0 ms"),
            "{s}"
        );
        assert!(
            lines[1].contains("DCF   750.0") && lines[1].contains("2.5 MB"),
            "{s}"
        );
        assert!(lines[2].contains("arsgap") && !s.contains("mul "), "{s}");
        let serial = DealReport {
            serial: true,
            ..rep
        };
        assert!(split_lines(&serial, 0).contains("wall-clock"));
    }

    #[test]
    fn margins_and_out_checks() {
        assert_eq!(with_margin(0), 1 << 20);
        assert_eq!(with_margin(u64::MAX), u64::MAX);
        let d = tempfile::tempdir().unwrap();
        assert!(check_out(d.path()).is_ok());
        assert!(check_out(&d.path().join("new")).is_ok());
        std::fs::write(d.path().join("x"), b"1").unwrap();
        assert!(check_out(d.path()).is_ok());
        assert!(check_out(&d.path().join("x")).is_err());
        std::fs::write(d.path().join("p1.keys.used"), b"1").unwrap();
        let e = check_out(d.path()).unwrap_err();
        assert!(e.to_string().contains("never overwrites"), "{e}");
        std::fs::remove_file(d.path().join("p1.keys.used")).unwrap();
        // A temporary folder that is dropped leaves nothing behind.
        let t = TempDir::new(d.path(), &d.path().join("s")).unwrap();
        std::fs::write(t.path.join("p0.keys"), b"partial").unwrap();
        drop(t);
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
