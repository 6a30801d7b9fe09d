//! Where elementwise work on host operands is cheaper, and what a resident key stream saves:
//! the measurements behind `CudaOptions::elementwise_device_min` (crate README, "Host or
//! device").
//!
//! For each elementwise trait operation and size, the median wall time of the CPU backend
//! (rayon's global pool: set `RAYON_NUM_THREADS`) against the CUDA backend with every call on
//! the device (operands and results in host memory, as the runtime holds them). Then DCF
//! batches at n = m = 50: CPU, CUDA with the body uploaded per call, CUDA in place from an
//! attached stream. Prints one JSON object.
//!
//! `cargo run --release -p suf-cuda --example host_or_device` (on a GPU host).

use std::time::Instant;

use serde_json::{json, Value};
use suf_backend::{Backend, BitWidth, CpuBackend};
use suf_core::prg::Csprng;
use suf_cuda::CudaBackend;
use suf_fss::{dcf, KeyOrigin, KeyRef};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median_ms(runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    f()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn main() -> Res<()> {
    let gpu = CudaBackend::new()?;
    gpu.set_elementwise_device_min(1);
    let cpu = CpuBackend::new();
    let w = BitWidth::new(50)?;
    let mut rng = Csprng::for_tests(1);
    let sizes: Vec<usize> = (10..=24).step_by(2).map(|e| 1usize << e).collect();
    let ops = ["add", "mul", "scale", "mul_rows", "row_sum"];
    let mut table = Vec::new();
    let mut crossover = serde_json::Map::new();
    for op in ops {
        let mut rows = Vec::new();
        let mut device_wins_from: Option<usize> = None;
        for &len in &sizes {
            let a = rng.ring_vec(w, len);
            let b = rng.ring_vec(w, len);
            let r = rng.ring_vec(w, len / 128);
            let run = |be: &dyn Backend| -> Res<()> {
                let out = match op {
                    "add" => be.add(w, &a, &b)?,
                    "mul" => be.mul(w, &a, &b)?,
                    "scale" => be.scale(w, &a, 3)?,
                    "mul_rows" => be.mul_rows(w, &a, &r, 128)?,
                    _ => be.row_sum(w, &a, 128)?,
                };
                std::hint::black_box(out);
                Ok(())
            };
            let reps = if len >= 1 << 22 { 5 } else { 9 };
            let c = median_ms(reps, || run(&cpu))?;
            let g = median_ms(reps, || run(&gpu))?;
            if g < c {
                device_wins_from.get_or_insert(len);
            } else {
                device_wins_from = None;
            }
            rows.push(json!({"len": len, "cpu_ms": c, "cuda_ms": g}));
            eprintln!(
                "{op:9} len 2^{:2}: cpu {c:8.3} ms  cuda {g:8.3} ms",
                len.trailing_zeros()
            );
        }
        crossover.insert(op.into(), json!(device_wins_from));
        table.push(json!({"op": op, "sizes": rows}));
    }

    // DCF at the ring width: host, uploaded body, in place from an attached stream.
    let mut dcfs = Vec::new();
    for count in [128usize, 4096, 1 << 16, 1 << 20] {
        let alphas = rng.ring_vec(w, count);
        let betas = rng.ring_vec(w, count);
        let (k0, _) = dcf::gen_batch(50, 50, 1, &alphas, &betas, &mut rng)?;
        let bytes = k0.to_bytes();
        let xs = rng.ring_vec(w, count);
        let token = 0x0d0d_0000 + count as u64;
        let t = Instant::now();
        gpu.attach_keys(token, &bytes)?;
        let attach_ms = t.elapsed().as_secs_f64() * 1e3;
        let view = dcf::DcfKeys::view(KeyRef {
            bytes: &bytes,
            origin: Some(KeyOrigin {
                stream: token,
                offset: 0,
                on_host: true,
            }),
        })?;
        let want = cpu.dcf_eval(&k0, &xs, 1)?;
        if gpu.dcf_eval(&view, &xs, 1)? != want || gpu.dcf_eval(&k0, &xs, 1)? != want {
            return Err("DCF results differ from the CPU".into());
        }
        let reps = if count >= 1 << 20 { 5 } else { 9 };
        let time = |be: &dyn Backend, k: &dcf::DcfKeys<'_>| {
            median_ms(reps, || {
                std::hint::black_box(be.dcf_eval(k, &xs, 1)?);
                Ok(())
            })
        };
        let c = time(&cpu, &k0)?;
        let up = time(&gpu, &k0)?;
        let inplace = time(&gpu, &view)?;
        gpu.detach_keys(token);
        eprintln!(
            "dcf n=m=50 count {count:8}: cpu {c:8.3} ms  uploaded {up:8.3} ms  in place {inplace:8.3} ms"
        );
        dcfs.push(
            json!({"count": count, "key_bytes": bytes.len(), "cpu_ms": c,
                         "cuda_uploaded_ms": up, "cuda_in_place_ms": inplace,
                         "attach_ms": attach_ms}),
        );
    }
    let v: Value = json!({
        "device": gpu.device_name(),
        "cpu_threads": rayon::current_num_threads(),
        "ring_bits": 50,
        "elementwise": table,
        "device_wins_from_len": crossover,
        "dcf_n50_m50": dcfs,
        "note": "medians of wall time per call; operands and results in host memory; device_wins_from_len: the smallest size from which the device was faster at every larger size measured (null: never)",
    });
    println!("{v}");
    Ok(())
}
