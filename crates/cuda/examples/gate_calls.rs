//! The fixed per-call cost of the device calls with host operands: `floor_eval`,
//! `techc_eval`, `sign_eval` (compiled-gate components) and `dcf_eval`, on one
//! `CudaBackend`, at batch sizes 128, 16,384, 262,144 and 1,048,576, keys resident in an
//! attached key stream (as the runtime holds them), both parties (party 0's dealer shares are
//! unpacked in place, party 1's expanded from their seed).
//!
//! Descriptors are the library's: `floor_eval` the GapARS truncation (`arsgap`: floor with a
//! free wrap), `techc_eval` the first technique-(c) component of GeLU's first gate, `sign_eval`
//! ReLU (halves), `dcf_eval` a scalar DCF at n = m = 50, one point per key; ring Z_2^50.
//!
//! For each (operation, batch, party): the median of `--reps` calls (default 30, at least
//! 20) after 3 warm-up calls of the whole device call (the backend's own per-call wall time,
//! `Backend::stats`), then with `CudaBackend::set_io_timing` on the median split of it:
//! packing the operands into pinned memory (host), the one host-to-device copy, the kernels,
//! the one device-to-host copy (CUDA events) and the copy out of pinned memory (host); the
//! bytes each way and their rate; and, for scale, a pageable round trip of x̂ up and the
//! outputs down (`htod` + `dtoh`, the two main copies of the earlier path). Every GPU result
//! is compared with the CPU backend's bit for bit; the mismatches are counted and any makes
//! the exit status 1.
//!
//! ```text
//! cargo build --release -p suf-cuda --examples
//! LD_LIBRARY_PATH=/usr/local/cuda/lib64 target/release/examples/gate_calls [--reps 30] \
//!     [--sizes 128,16384,262144,1048576] [--json out.json]
//! ```
//!
//! Without a GPU it prints that it is skipped and exits 0. `--cpu` runs the same harness with
//! the CPU backend in place of the GPU (no split; checks the harness itself).

use std::time::Instant;

use serde_json::{json, Value};
use suf_backend::{Backend, CpuBackend};
use suf_compiler::gates::{floor_spec, relu_spec, smooth_specs_with, Prefer, Smooth};
use suf_compiler::{GateSpec, Wrap};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_cuda::{cuda_available, CudaBackend, IoTiming};
use suf_fss::{dcf, KeyOrigin, KeyRef};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Ring bits and fixed-point scale of the models.
const N: u32 = 50;
const F: u32 = 12;

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A key-stream-like buffer holding `blob` at a 16-aligned offset (zeros around it), and the
/// offset.
fn stream_with(blob: &[u8]) -> (Vec<u8>, usize) {
    let off = 48;
    let mut buf = vec![0u8; off + blob.len() + 32];
    buf[off..off + blob.len()].copy_from_slice(blob);
    (buf, off)
}

/// What one (operation, batch, party) measured.
#[derive(Default)]
struct Row {
    call_us: f64,
    pack_us: f64,
    h2d_us: f64,
    kernels_us: f64,
    d2h_us: f64,
    unpack_us: f64,
    h2d_bytes: u64,
    d2h_bytes: u64,
    pageable_us: f64,
    mismatches: usize,
}

/// The per-call measurements of `call` (which returns the result of one backend call) on
/// `be` (`gpu`: the same instance, for the split and the pageable comparison), compared with
/// `want`.
fn measure(
    op: &str,
    be: &dyn Backend,
    gpu: Option<&CudaBackend>,
    reps: usize,
    want: &[u64],
    in_words: usize,
    call: &dyn Fn() -> Res<Vec<u64>>,
) -> Res<Row> {
    let mut row = Row::default();
    let mut mismatches = 0usize;
    let mut check = |got: &[u64]| {
        if got != want {
            mismatches += 1;
        }
    };
    for _ in 0..3 {
        check(&call()?);
    }
    // The backend's own wall time of the call and its device calls (the CPU backend keeps no
    // stats: there the host time of the whole evaluation).
    let op_stats = |be: &dyn Backend| {
        be.stats()
            .ops
            .iter()
            .find(|o| o.op == op)
            .map_or((0.0, 0), |o| (o.device_ms, o.device_calls))
    };
    let mut calls = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (ms0, n0) = op_stats(be);
        let t = Instant::now();
        let v = call()?;
        let host_us = t.elapsed().as_secs_f64() * 1e6;
        let (ms1, n1) = op_stats(be);
        if gpu.is_some() && n1 - n0 != 1 {
            return Err(format!("{op}: {} device calls in one evaluation", n1 - n0).into());
        }
        calls.push(if gpu.is_some() {
            (ms1 - ms0) * 1e3
        } else {
            host_us
        });
        check(&v);
    }
    row.call_us = median(&mut calls);
    if let Some(g) = gpu {
        g.set_io_timing(true);
        let mut parts: [Vec<f64>; 5] = Default::default();
        for _ in 0..reps {
            let t0 = g.io_timing();
            let v = call()?;
            let d: IoTiming = g.io_timing().since(&t0);
            check(&v);
            if d.calls != 1 {
                return Err(format!("{op}: {} timed transfers in one call", d.calls).into());
            }
            for (p, x) in
                parts
                    .iter_mut()
                    .zip([d.pack_ms, d.h2d_ms, d.kernels_ms, d.d2h_ms, d.unpack_ms])
            {
                p.push(x * 1e3);
            }
            row.h2d_bytes = d.h2d_bytes;
            row.d2h_bytes = d.d2h_bytes;
        }
        g.set_io_timing(false);
        let [a, b, c, d, e] = &mut parts;
        (
            row.pack_us,
            row.h2d_us,
            row.kernels_us,
            row.d2h_us,
            row.unpack_us,
        ) = (median(a), median(b), median(c), median(d), median(e));
        // The earlier path's two main copies, pageable: x̂ up, the outputs down.
        let host = vec![7u64; in_words];
        let dout = g.htod(want)?;
        let mut pg = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let up = g.htod(&host)?;
            let back = g.dtoh(&dout, want.len())?;
            pg.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box((up, back));
        }
        row.pageable_us = median(&mut pg);
    }
    row.mismatches = mismatches;
    Ok(row)
}

/// A gate made of the first component of `g` (one backend call per evaluation).
fn first_component(g: &GateSpec, label: &str) -> GateSpec {
    GateSpec {
        label: label.into(),
        outputs: g.outputs,
        parts: vec![g.parts[0].clone()],
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let on_cpu = args.iter().any(|a| a == "--cpu");
    let reps: usize = flag("--reps").map_or(Ok(30), |v| v.parse())?.max(20);
    let sizes: Vec<usize> = match flag("--sizes") {
        Some(v) => v
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?,
        None => vec![128, 16_384, 262_144, 1_048_576],
    };
    let json_out = flag("--json").cloned();

    let gpu = if on_cpu {
        None
    } else {
        if !cuda_available() {
            println!("gate_calls: skipped (no CUDA GPU: driver, NVRTC or device missing)");
            return Ok(());
        }
        Some(CudaBackend::new()?)
    };
    let cpu = CpuBackend::new();
    let cpu_as_device = CpuBackend::new();
    let be: &dyn Backend = match &gpu {
        Some(g) => g,
        None => &cpu_as_device,
    };
    let device = gpu
        .as_ref()
        .map_or("the CPU backend (--cpu)".to_string(), |g| {
            format!("{} ({})", g.device_name(), g.info().arch)
        });
    println!(
        "gate_calls on {device}: median of {reps} calls after 3 warm-up calls, keys resident, \
         Z_2^{N}; times in µs per call"
    );
    println!(
        "{:<10} {:>5} {:>9} {:>9} | {:>7} {:>7} {:>8} {:>7} {:>7} | {:>9} {:>9} {:>8} {:>8} | {:>9} {:>5}",
        "op", "party", "batch", "call", "pack", "h2d", "kernels", "d2h", "unpack", "h2d B",
        "d2h B", "h2d GB/s", "d2h GB/s", "pageable", "diff"
    );

    let gelu = smooth_specs_with(Smooth::Gelu, N, F, false, Prefer::Aes)?;
    let gates: [(&str, GateSpec); 3] = [
        (
            "floor_eval",
            floor_spec(N, 1 << (N - 2), 7, 1 << (N - 2 - 7), Wrap::Free, "arsgap"),
        ),
        ("techc_eval", first_component(&gelu.gate1, "gelu_g1_c0")),
        ("sign_eval", relu_spec(N)),
    ];
    // Deterministic inputs (ring elements of Z_2^N) and key randomness.
    let (mut rng, mut crng) = (Csprng::for_tests(32), Csprng::for_tests(31));
    let w = BitWidth::new(N)?;
    let mut rows_json: Vec<Value> = Vec::new();
    let mut total_mismatches = 0usize;
    let mut token = 0x6a7e_c0de_0000u64;
    let mut report = |op: &str, party: u8, cnt: usize, r: &Row| {
        let gbs = |b: u64, us: f64| if us > 0.0 { b as f64 / us / 1e3 } else { 0.0 };
        println!(
            "{:<10} {:>5} {:>9} {:>9.1} | {:>7.1} {:>7.1} {:>8.1} {:>7.1} {:>7.1} | {:>9} {:>9} {:>8.2} {:>8.2} | {:>9.1} {:>5}",
            op,
            party,
            cnt,
            r.call_us,
            r.pack_us,
            r.h2d_us,
            r.kernels_us,
            r.d2h_us,
            r.unpack_us,
            r.h2d_bytes,
            r.d2h_bytes,
            gbs(r.h2d_bytes, r.h2d_us),
            gbs(r.d2h_bytes, r.d2h_us),
            r.pageable_us,
            r.mismatches
        );
        rows_json.push(json!({
            "op": op, "party": party, "batch": cnt, "call_us": r.call_us,
            "pack_us": r.pack_us, "h2d_us": r.h2d_us, "kernels_us": r.kernels_us,
            "d2h_us": r.d2h_us, "unpack_us": r.unpack_us, "h2d_bytes": r.h2d_bytes,
            "d2h_bytes": r.d2h_bytes, "pageable_roundtrip_us": r.pageable_us,
            "mismatches": r.mismatches,
        }));
    };

    for &cnt in &sizes {
        for (op, spec) in &gates {
            let r = rng.ring_vec(w, cnt);
            let xhat = rng.ring_vec(w, cnt);
            let keys = spec.deal(N, &r, &mut crng)?;
            for party in 0..2u8 {
                let blob = &keys[party as usize];
                let (buf, off) = stream_with(blob);
                token += 1;
                be.attach_keys(token, &buf)?;
                let key = KeyRef {
                    bytes: &buf[off..off + blob.len()],
                    origin: Some(KeyOrigin {
                        stream: token,
                        offset: off as u64,
                        on_host: true,
                    }),
                };
                let want = spec.eval_shares(N, party, KeyRef::detached(blob), &xhat, &cpu)?;
                let call = || -> Res<Vec<u64>> { Ok(spec.eval_shares(N, party, key, &xhat, be)?) };
                let row = measure(op, be, gpu.as_ref(), reps, &want, cnt, &call)?;
                be.detach_keys(token);
                total_mismatches += row.mismatches;
                report(op, party, cnt, &row);
            }
        }
        // dcf_eval: a scalar DCF at n = m = 50, keys in place in an attached stream.
        let alphas = rng.ring_vec(w, cnt);
        let betas = rng.ring_vec(w, cnt);
        let (k0, k1) = dcf::gen_batch(N, N, 1, &alphas, &betas, &mut crng)?;
        let xs = rng.ring_vec(w, cnt);
        for (party, k) in [(0u8, &k0), (1, &k1)] {
            let bytes = k.to_bytes();
            let (buf, off) = stream_with(&bytes);
            token += 1;
            be.attach_keys(token, &buf)?;
            let view = dcf::DcfKeys::view(KeyRef {
                bytes: &buf[off..off + bytes.len()],
                origin: Some(KeyOrigin {
                    stream: token,
                    offset: off as u64,
                    on_host: true,
                }),
            })?;
            let want = cpu.dcf_eval(k, &xs, 1)?;
            let call = || -> Res<Vec<u64>> { Ok(be.dcf_eval(&view, &xs, 1)?) };
            let row = measure("dcf_eval", be, gpu.as_ref(), reps, &want, cnt, &call)?;
            be.detach_keys(token);
            total_mismatches += row.mismatches;
            report("dcf_eval", party, cnt, &row);
        }
    }
    println!(
        "mismatches against the CPU backend: {total_mismatches} ({})",
        if total_mismatches == 0 {
            "every GPU result equal bit for bit"
        } else {
            "FAILED"
        }
    );
    if let Some(path) = json_out {
        let doc = json!({
            "device": device, "reps": reps, "ring_bits": N, "rows": rows_json,
            "mismatches": total_mismatches,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    }
    if total_mismatches > 0 {
        std::process::exit(1);
    }
    Ok(())
}
