//! CUDA backend benchmark: checks bit-exactness against the CPU backend on 2^20 elements, then
//! prints JSON with DPF comparison throughput (n = 50; batches 2^20 and 2^24; kernel time by
//! CUDA events and end-to-end with the H2D key upload, from pageable and from pinned host
//! memory), DCF throughput (n = 64, u64 payload), ring GEMM Gops (512³ and 4096×768×3072) and
//! the T-table AES rate, medians of ≥ 5 runs after warm-up, with the GPU's name.
//!
//! ```text
//! cargo build --release -p suf-cuda --example cuda_bench
//! LD_LIBRARY_PATH=/usr/local/cuda/lib64 target/release/examples/cuda_bench > bench.json
//! ```
//! Env: `SUF_BENCH_RUNS` (timed runs per figure, default 7, at least 5),
//! `SUF_BENCH_SMALL=1` (small sizes, for a quick check).
//!
//! The 2^24 batches are 16 (DPF) or 4 (DCF) copies of the 2^20 key batch concatenated on the
//! device (the key generation of 2^24 distinct keys would dominate the run): the kernel's work
//! and memory traffic are the same as for distinct keys, since the copies are 761 MB apart
//! (far beyond the 50 MB L2); the output is checked against the tiled CPU result.

use std::error::Error;
use std::time::Instant;

use serde_json::{json, Value};
use suf_backend::{BLayout, Backend, BitWidth, CpuBackend};
use suf_core::prg::{Csprng, FixedKeyAes};
use suf_cuda::cudarc::driver::CudaSlice;
use suf_cuda::{cuda_available, AesTable, CudaBackend};
use suf_fss::{dcf, dpf};

type Res<T> = std::result::Result<T, Box<dyn Error>>;

const WARMUP: usize = 2;
const TABLES: [AesTable; 2] = [AesTable::Shared4, AesTable::Replicated32];

fn runs() -> usize {
    std::env::var("SUF_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7usize)
        .max(5)
}

fn small() -> bool {
    std::env::var("SUF_BENCH_SMALL").is_ok_and(|v| v == "1")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn log(msg: &str) {
    eprintln!("[cuda_bench] {msg}");
}

/// Median kernel time (ms, CUDA events) of `f` after warm-up.
fn kernel_ms(
    be: &CudaBackend,
    mut f: impl FnMut() -> suf_cuda::Result<()>,
) -> Res<(f64, Vec<f64>)> {
    let r = runs();
    let mut v = Vec::with_capacity(r);
    for i in 0..WARMUP + r {
        let s = be.event()?;
        let e = be.event()?;
        s.record(be.stream())?;
        f()?;
        e.record(be.stream())?;
        let ms = s.elapsed_ms(&e)? as f64;
        if i >= WARMUP {
            v.push(ms);
        }
    }
    Ok((median(v.clone()), v))
}

/// Median wall time (ms) of `f`, which must end synchronized.
fn wall_ms(be: &CudaBackend, runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<(f64, Vec<f64>)> {
    let mut v = Vec::with_capacity(runs);
    for i in 0..1 + runs {
        be.stream().synchronize()?;
        let t = Instant::now();
        f()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= 1 {
            v.push(ms);
        }
    }
    Ok((median(v.clone()), v))
}

fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Points for keys with thresholds `alphas`: α, α ± 1 or random.
fn points(n: u32, alphas: &[u64], rng: &mut Csprng) -> Vec<u64> {
    let dm = mask(n);
    alphas
        .iter()
        .enumerate()
        .map(|(i, &a)| match i % 4 {
            0 => a,
            1 => a.wrapping_sub(1) & dm,
            2 => a.wrapping_add(1) & dm,
            _ => rng.next_u64() & dm,
        })
        .collect()
}

/// A page-locked copy of `src` (for full-speed H2D copies).
fn pinned_copy<
    T: suf_cuda::cudarc::driver::DeviceRepr + suf_cuda::cudarc::driver::ValidAsZeroBits + Copy,
>(
    be: &CudaBackend,
    src: &[T],
) -> Res<suf_cuda::cudarc::driver::PinnedHostSlice<T>> {
    // SAFETY: the allocation is fully initialized by the copy below before anything reads it.
    let mut p = unsafe {
        be.context()
            .alloc_pinned_with_flags::<T>(src.len().max(1), 0)
    }?;
    p.as_mut_slice()?[..src.len()].copy_from_slice(src);
    Ok(p)
}

fn main() {
    match run() {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).expect("JSON")),
        Err(e) => {
            println!("{}", json!({ "error": e.to_string() }));
            std::process::exit(1);
        }
    }
}

fn run() -> Res<Value> {
    if !cuda_available() {
        let why = suf_cuda::CudaBackend::new()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Ok(json!({ "skipped": format!("no usable CUDA GPU: {why}") }));
    }
    let t_init = Instant::now();
    let be = CudaBackend::new()?;
    let init_ms = t_init.elapsed().as_secs_f64() * 1e3;
    let info = be.info().clone();
    log(&format!(
        "{} {} driver {} NVRTC {:?}, init {init_ms:.0} ms",
        info.name, info.arch, info.driver_version, info.nvrtc_version
    ));
    let cpu = CpuBackend::new();
    let base: usize = if small() { 1 << 14 } else { 1 << 20 };
    let mut exact = serde_json::Map::new();
    let mut rng = Csprng::for_tests(0xbe7c);

    // ---- AES -------------------------------------------------------------------------------
    let blocks: Vec<u128> = (0..base).map(|_| rng.next_u128()).collect();
    let aes = FixedKeyAes::global();
    let want: Vec<u128> = blocks.iter().map(|&b| aes.permute(b)).collect();
    for t in TABLES {
        let ok = be.aes_permute(t, &blocks)? == want;
        exact.insert(format!("aes_permute_{}_2^20", t.name()), json!(ok));
    }
    let mut aes_json = serde_json::Map::new();
    for t in TABLES {
        let grid = info.sm_count * 16;
        let iters = if small() { 4 } else { 32 };
        let mut v = Vec::new();
        let mut nblocks = 0;
        for i in 0..WARMUP + runs() {
            let (ms, b) = be.aes_bench(t, grid, iters)?;
            nblocks = b;
            if i >= WARMUP {
                v.push(ms);
            }
        }
        let ms = median(v.clone());
        aes_json.insert(
            t.name().into(),
            json!({ "blocks_per_launch": nblocks, "kernel_ms": ms, "runs_ms": v,
                    "blocks_per_s": nblocks as f64 / (ms / 1e3) }),
        );
        log(&format!(
            "AES {}: {:.2} G blocks/s",
            t.name(),
            nblocks as f64 / ms / 1e6
        ));
    }

    // ---- DPF comparison, n = 50 -------------------------------------------------------------
    let n = 50u32;
    let alphas: Vec<u64> = (0..base).map(|_| rng.next_u64() & mask(n)).collect();
    let t = Instant::now();
    let (k0, k1) = dpf::gen_cmp_batch(n, &alphas, &mut rng)?;
    log(&format!(
        "DPF keygen {base}: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));
    let xs = points(n, &alphas, &mut rng);
    let t = Instant::now();
    let want0 = cpu.dpf_lt_eval(&k0, &xs, 1)?;
    let cpu_dpf_s = t.elapsed().as_secs_f64();
    let want1 = cpu.dpf_lt_eval(&k1, &xs, 1)?;
    let mut ok = true;
    for tab in TABLES {
        be.set_aes_table(tab);
        let g0 = be.dpf_lt_eval(&k0, &xs, 1)?;
        let g1 = be.dpf_lt_eval(&k1, &xs, 1)?;
        ok &= g0 == want0 && g1 == want1 && be.dpf_lt_eval(&k0, &xs, 1)? == g0;
    }
    exact.insert(
        "dpf_lt_n50_2^20_both_parties_both_tables_twice".into(),
        json!(ok),
    );
    let recon_ok = (0..base).all(|i| (want0[i] ^ want1[i]) == (xs[i] < alphas[i]) as u8);
    exact.insert("dpf_lt_n50_shares_reconstruct".into(), json!(recon_ok));
    drop(k1);
    let key_bytes = k0.to_bytes();
    drop(k0);
    let pinned_keys = pinned_copy(&be, &key_bytes)?;
    let mut dpf_json = Vec::new();
    let batches: Vec<usize> = if small() {
        vec![base, base * 4]
    } else {
        vec![base, base * 16]
    };
    for &batch in &batches {
        let reps = batch / base;
        let parts: Vec<&[u8]> = vec![&key_bytes; reps];
        let xs_big: Vec<u64> = xs.iter().copied().cycle().take(batch).collect();
        let pinned_xs = pinned_copy(&be, &xs_big)?;
        let dk = be.upload_dpf_bytes(&parts)?;
        let dx = be.htod(&xs_big)?;
        let mut dout: CudaSlice<u8> = be.alloc_zeros(batch)?;
        let mut kernel = serde_json::Map::new();
        let mut best = (f64::MAX, AesTable::Shared4);
        for tab in TABLES {
            be.set_aes_table(tab);
            let (ms, v) = kernel_ms(&be, || {
                be.dpf_eval_device(&dk, &dx, batch, 1, false, &mut dout)
            })?;
            let out = be.dtoh(&dout, batch)?;
            let good = out.iter().enumerate().all(|(i, &b)| b == want0[i % base]);
            exact.insert(
                format!("dpf_lt_n50_{batch}_device_{}", tab.name()),
                json!(good),
            );
            kernel.insert(
                tab.name().into(),
                json!({ "kernel_ms": ms, "runs_ms": v, "evals_per_s": batch as f64 / (ms / 1e3),
                        "ns_per_eval": ms * 1e6 / batch as f64,
                        "aes_blocks_per_s": batch as f64 * 44.0 / (ms / 1e3) }),
            );
            log(&format!(
                "DPF n=50 batch {batch} {}: {ms:.3} ms = {:.1} M evals/s",
                tab.name(),
                batch as f64 / ms / 1e3
            ));
            if ms < best.0 {
                best = (ms, tab);
            }
        }
        drop(dk);
        drop(dx);
        drop(dout);
        be.set_aes_table(best.1);
        let e2e_runs = 5;
        let mut e2e = serde_json::Map::new();
        for (label, pinned) in [("pageable", false), ("pinned", true)] {
            let (ms, v) = wall_ms(&be, e2e_runs, || {
                let pk;
                let kparts: Vec<&[u8]> = if pinned {
                    pk = pinned_keys.as_slice()?;
                    vec![&pk[..key_bytes.len()]; reps]
                } else {
                    parts.clone()
                };
                let xsrc: &[u64] = if pinned {
                    &pinned_xs.as_slice()?[..batch]
                } else {
                    &xs_big
                };
                let dk = be.upload_dpf_bytes(&kparts)?;
                let dx = be.htod(xsrc)?;
                let mut dout: CudaSlice<u8> = be.alloc_zeros(batch)?;
                be.dpf_eval_device(&dk, &dx, batch, 1, false, &mut dout)?;
                let out = be.dtoh(&dout, batch)?;
                if out[batch - 1] != want0[(batch - 1) % base] {
                    return Err("end-to-end result differs".into());
                }
                Ok(())
            })?;
            let kb = (key_bytes.len() - 64) * reps;
            e2e.insert(
                label.into(),
                json!({ "ms": ms, "runs_ms": v, "evals_per_s": batch as f64 / (ms / 1e3),
                        "key_bytes_uploaded": kb,
                        "effective_h2d_gb_per_s": (kb + 8 * batch) as f64 / (ms / 1e3) / 1e9 }),
            );
            log(&format!("DPF e2e {label} batch {batch}: {ms:.1} ms"));
        }
        dpf_json.push(json!({
            "n": n, "batch": batch, "distinct_keys": base, "aes_per_eval": 44,
            "key_bytes_per_key": dpf::DpfKeys::key_bytes_per_key(n),
            "kernel": kernel, "best_table": best.1.name(),
            "end_to_end_with_key_upload": e2e,
        }));
    }
    drop(pinned_keys);
    drop(key_bytes);

    // ---- DCF, n = 64, u64 payload -----------------------------------------------------------
    let (n, m) = (64u32, 64u32);
    let alphas: Vec<u64> = (0..base).map(|_| rng.next_u64()).collect();
    let betas: Vec<u64> = (0..base).map(|_| rng.next_u64()).collect();
    let t = Instant::now();
    let (d0, d1) = dcf::gen_batch(n, m, 1, &alphas, &betas, &mut rng)?;
    log(&format!(
        "DCF keygen {base}: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));
    let xs = points(n, &alphas, &mut rng);
    let t = Instant::now();
    let dwant0 = cpu.dcf_eval(&d0, &xs, 1)?;
    let cpu_dcf_s = t.elapsed().as_secs_f64();
    let dwant1 = cpu.dcf_eval(&d1, &xs, 1)?;
    let mut ok = true;
    for tab in TABLES {
        be.set_aes_table(tab);
        ok &= be.dcf_eval(&d0, &xs, 1)? == dwant0 && be.dcf_eval(&d1, &xs, 1)? == dwant1;
        ok &= be.dcf_eval(&d0, &xs, 1)? == dwant0;
    }
    exact.insert(
        "dcf_n64_u64_2^20_both_parties_both_tables_twice".into(),
        json!(ok),
    );
    let recon = (0..base)
        .all(|i| dwant0[i].wrapping_add(dwant1[i]) == if xs[i] < alphas[i] { betas[i] } else { 0 });
    exact.insert("dcf_n64_shares_reconstruct".into(), json!(recon));
    drop(d1);
    let dkey_bytes = d0.to_bytes();
    drop(d0);
    let pinned_dkeys = pinned_copy(&be, &dkey_bytes)?;
    let mut dcf_json = Vec::new();
    let batches: Vec<usize> = if small() {
        vec![base]
    } else {
        vec![base, base * 4]
    };
    for &batch in &batches {
        // Larger batches evaluate every key at `reps` points (key i at xs[i], repeated): the
        // version-2 body is read in place, so batches are not concatenated on the device.
        let reps = batch / base;
        let xs_big: Vec<u64> = xs
            .iter()
            .flat_map(|&x| std::iter::repeat_n(x, reps))
            .collect();
        let pinned_xs = pinned_copy(&be, &xs_big)?;
        let dk = be.upload_dcf_bytes(&dkey_bytes)?;
        let dx = be.htod(&xs_big)?;
        let mut dout: CudaSlice<u64> = be.alloc_zeros(batch)?;
        let mut kernel = serde_json::Map::new();
        let mut best = (f64::MAX, AesTable::Shared4);
        for tab in TABLES {
            be.set_aes_table(tab);
            let (ms, v) = kernel_ms(&be, || be.dcf_eval_device(&dk, &dx, batch, reps, &mut dout))?;
            let out = be.dtoh(&dout, batch)?;
            let good = out.iter().enumerate().all(|(i, &b)| b == dwant0[i / reps]);
            exact.insert(
                format!("dcf_n64_{batch}_device_{}", tab.name()),
                json!(good),
            );
            kernel.insert(
                tab.name().into(),
                json!({ "kernel_ms": ms, "runs_ms": v, "evals_per_s": batch as f64 / (ms / 1e3),
                        "ns_per_eval": ms * 1e6 / batch as f64,
                        "aes_blocks_per_s": batch as f64 * 128.0 / (ms / 1e3) }),
            );
            log(&format!(
                "DCF n=64 batch {batch} {}: {ms:.3} ms = {:.1} M evals/s",
                tab.name(),
                batch as f64 / ms / 1e3
            ));
            if ms < best.0 {
                best = (ms, tab);
            }
        }
        drop(dk);
        drop(dx);
        drop(dout);
        be.set_aes_table(best.1);
        let mut e2e = serde_json::Map::new();
        for (label, pinned) in [("pageable", false), ("pinned", true)] {
            let (ms, v) = wall_ms(&be, 5, || {
                let pk;
                let kbytes: &[u8] = if pinned {
                    pk = pinned_dkeys.as_slice()?;
                    &pk[..dkey_bytes.len()]
                } else {
                    &dkey_bytes
                };
                let xsrc: &[u64] = if pinned {
                    &pinned_xs.as_slice()?[..batch]
                } else {
                    &xs_big
                };
                let dk = be.upload_dcf_bytes(kbytes)?;
                let dx = be.htod(xsrc)?;
                let mut dout: CudaSlice<u64> = be.alloc_zeros(batch)?;
                be.dcf_eval_device(&dk, &dx, batch, reps, &mut dout)?;
                let out = be.dtoh(&dout, batch)?;
                if out[batch - 1] != dwant0[(batch - 1) / reps] {
                    return Err("end-to-end result differs".into());
                }
                Ok(())
            })?;
            let kb = dkey_bytes.len() - 64;
            e2e.insert(
                label.into(),
                json!({ "ms": ms, "runs_ms": v, "evals_per_s": batch as f64 / (ms / 1e3),
                        "key_bytes_uploaded": kb,
                        "effective_h2d_gb_per_s": (kb + 8 * batch) as f64 / (ms / 1e3) / 1e9 }),
            );
            log(&format!("DCF e2e {label} batch {batch}: {ms:.1} ms"));
        }
        dcf_json.push(json!({
            "n": n, "m": m, "p": 1, "batch": batch, "distinct_keys": base, "aes_per_eval": 128,
            "key_bytes_per_key": dcf::DcfKeys::key_bytes_per_key(n, m, 1),
            "kernel": kernel, "best_table": best.1.name(),
            "end_to_end_with_key_upload": e2e,
        }));
    }
    drop(pinned_dkeys);
    drop(dkey_bytes);

    // ---- DCF with a vector payload (technique (c), degree 2: (1, r, r²)) ----------------------
    // n = m = 50, p = 3, one point per key; and bert-base's GeLU input gate's shape, n = 16,
    // m = 50, p = 3 at 11 points per key; each checked against the CPU.
    let mut dcf_vec_json = Vec::new();
    for (n, m, p, t) in [(50u32, 50u32, 3usize, 1usize), (16, 50, 3, 11)] {
        let keys = (base / t).max(1);
        let total = keys * t;
        let alphas: Vec<u64> = (0..keys).map(|_| rng.next_u64() & mask(n)).collect();
        let betas: Vec<u64> = (0..keys * p).map(|_| rng.next_u64()).collect();
        let (v0, _) = dcf::gen_batch(n, m, p, &alphas, &betas, &mut rng)?;
        let xs: Vec<u64> = (0..total).map(|_| rng.next_u64() & mask(n)).collect();
        let vwant = cpu.dcf_eval(&v0, &xs, t)?;
        let dk = be.upload_dcf(&v0)?;
        drop(v0);
        let dx = be.htod(&xs)?;
        let mut dout: CudaSlice<u64> = be.alloc_zeros(total * p)?;
        let mut kernel = serde_json::Map::new();
        let mut ok = true;
        {
            for tab in TABLES {
                be.set_aes_table(tab);
                let (ms, v) = kernel_ms(&be, || be.dcf_eval_device(&dk, &dx, total, t, &mut dout))?;
                ok &= be.dtoh(&dout, total * p)? == vwant;
                let aes = dcf::aes_per_eval(n, m, p) as f64;
                kernel.insert(
                    tab.name().to_string(),
                    json!({ "kernel_ms": ms, "runs_ms": v, "evals_per_s": total as f64 / (ms / 1e3),
                            "ns_per_eval": ms * 1e6 / total as f64,
                            "aes_blocks_per_s": total as f64 * aes / (ms / 1e3) }),
                );
                log(&format!(
                    "DCF n={n} p={p}×{m} bits t={t} {}: {ms:.3} ms = {:.1} M evals/s",
                    tab.name(),
                    total as f64 / ms / 1e3
                ));
            }
        }
        exact.insert(format!("dcf_n{n}_p{p}_m{m}_t{t}_{total}_device"), json!(ok));
        dcf_vec_json.push(json!({
            "n": n, "m": m, "p": p, "points_per_key": t, "evaluations": total,
            "aes_per_eval": dcf::aes_per_eval(n, m, p),
            "key_bytes_per_key": dcf::DcfKeys::key_bytes_per_key(n, m, p), "kernel": kernel,
        }));
    }
    be.set_aes_table(AesTable::Replicated32);

    // ---- elementwise exactness ------------------------------------------------------------------
    let w = BitWidth::new(50)?;
    let a: Vec<u64> = (0..base).map(|_| rng.next_u64()).collect();
    let b: Vec<u64> = (0..base).map(|_| rng.next_u64()).collect();
    exact.insert(
        "add_n50_2^20".into(),
        json!(be.add(w, &a, &b)? == cpu.add(w, &a, &b)?),
    );
    exact.insert(
        "mul_n50_2^20".into(),
        json!(be.mul(w, &a, &b)? == cpu.mul(w, &a, &b)?),
    );
    exact.insert(
        "row_sum_n50_2^20".into(),
        json!(be.row_sum(w, &a, 1024)? == cpu.row_sum(w, &a, 1024)?),
    );

    // ---- GEMM ---------------------------------------------------------------------------------
    let mut gemm_json = Vec::new();
    let shapes: Vec<(usize, usize, usize)> = if small() {
        vec![(128, 128, 128), (256, 96, 384)]
    } else {
        vec![(1024, 128, 1024), (512, 512, 512), (4096, 768, 3072)]
    };
    for (si, &(m, k, n)) in shapes.iter().enumerate() {
        let a: Vec<u64> = (0..m * k).map(|_| rng.next_u64()).collect();
        let b: Vec<u64> = (0..k * n).map(|_| rng.next_u64()).collect();
        let da = be.htod(&a)?;
        let db = be.htod(&b)?;
        let mut dc: CudaSlice<u64> = be.alloc_zeros(m * n)?;
        for bits in [50u32, 32] {
            let w = BitWidth::new(bits)?;
            let t = Instant::now();
            let want = cpu.gemm(w, &a, &b, m, k, n)?;
            let cpu_ms = t.elapsed().as_secs_f64() * 1e3;
            for b2 in [false, true] {
                be.set_gemm_two_blocks_per_sm(b2);
                let got = be.try_gemm_batch(w, &a, &b, 1, m, k, n, BLayout::RowMajor)?;
                exact.insert(
                    format!("gemm_{m}x{k}x{n}_n{bits}_b2{b2}"),
                    json!(got == want),
                );
                if si == 0 {
                    // The first shape (2^20 outputs) is the exactness check only.
                    continue;
                }
                let (ms, v) = kernel_ms(&be, || {
                    be.gemm_device(w, &da, &db, &mut dc, 1, m, k, n, BLayout::RowMajor)
                })?;
                let gops = 2.0 * (m * k * n) as f64 / (ms / 1e3) / 1e9;
                log(&format!(
                    "GEMM {m}x{k}x{n} n={bits} b2={b2}: {ms:.3} ms = {gops:.0} Gops"
                ));
                gemm_json.push(json!({
                    "m": m, "k": k, "n": n, "ring_bits": bits,
                    "kernel": format!("gemm_{}{}", if bits <= 32 { "u32" } else { "u64" },
                                      if b2 { "_b2" } else { "" }),
                    "kernel_ms": ms, "runs_ms": v, "gops": gops,
                    "cpu_backend_ms": cpu_ms,
                }));
            }
        }
        be.set_gemm_two_blocks_per_sm(true);
    }

    let all_exact = exact.values().all(|v| v.as_bool() == Some(true));
    Ok(json!({
        "gpu": info.name,
        "arch": info.arch,
        "sm_count": info.sm_count,
        "driver_version": info.driver_version,
        "nvrtc_version": format!("{}.{}", info.nvrtc_version.0, info.nvrtc_version.1),
        "init_ms_incl_nvrtc_compile": init_ms,
        "cubin_bytes": info.cubin_bytes,
        "runs_per_figure": runs(),
        "warmup_runs": WARMUP,
        "statistic": "median",
        "bit_exact_all": all_exact,
        "bit_exact": exact,
        "aes_ttable": aes_json,
        "dpf_cmp_n50": dpf_json,
        "dcf_n64_u64": dcf_json,
        "dcf_vector_p3": dcf_vec_json,
        "gemm_u64_ring": gemm_json,
        "cpu_backend_reference": {
            "threads": rayon_threads(),
            "dpf_n50_evals_per_s": base as f64 / cpu_dpf_s,
            "dcf_n64_evals_per_s": base as f64 / cpu_dcf_s,
        },
    }))
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
