//! The GPU dealer (`suf_cuda::keygen`) against the CPU reference: DCF key bodies byte for
//! byte at the shapes the gates use and at several batch sizes, the device-resident keys
//! evaluated on the GPU, the dealer hook dealing a whole program byte-identical to the CPU
//! dealer, and its keys driving a two-party run equal to Plain. CUDA trials report "ignored"
//! (never "passed") without a GPU; `kernel_logic_on_host` checks the kernels' source on the
//! CPU (compiled as C++ over stubs of the CUDA built-ins) wherever a C++ compiler exists.
//!
//! Run on a GPU host: `cargo test --release -p suf-cuda --test dealer` (with the toolkit's
//! lib64 on LD_LIBRARY_PATH for NVRTC).

mod host_build;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_cuda::{cuda_available, CudaBackend, CudaDealer, CudaError};
use suf_fss::dealer::{dcf_gen_cpu, dpf_cmp_gen_cpu, install, DcfDealer};
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::{Builder, Program};
use suf_runtime::keystream::DealerStreams;
use suf_runtime::testing::{LessThan, Truncate};

type R = Result<(), Failed>;

const NO_GPU: &str = "no CUDA device (driver, NVRTC or GPU missing)";

/// (n, m, p) of the gates: truncations (p = 1 at n and f bits), spline and polynomial
/// payloads (p up to 4), one-bit and full-width payloads.
const SHAPES: [(u32, u32, usize); 12] = [
    (10, 1, 1),
    (12, 37, 1),
    (13, 64, 1),
    (37, 37, 1),
    (50, 50, 1),
    (64, 64, 1),
    (16, 8, 4),
    (20, 13, 3),
    (37, 50, 2),
    (50, 63, 2),
    (12, 64, 4),
    (64, 1, 4),
];
const COUNTS: [usize; 4] = [0, 1, 33, 10_000];

fn dealer() -> Option<&'static CudaDealer> {
    static D: OnceLock<Option<CudaDealer>> = OnceLock::new();
    D.get_or_init(|| {
        cuda_available().then(|| {
            let b = CudaBackend::new().unwrap_or_else(|e| panic!("CUDA present but unusable: {e}"));
            eprintln!(
                "GPU dealer tests on {} ({})",
                b.device_name(),
                b.info().arch
            );
            CudaDealer::new(&b).unwrap_or_else(|e| panic!("GPU dealer: {e}"))
        })
    })
    .as_ref()
}

fn inputs(n: u32, p: usize, count: usize, rng: &mut Csprng) -> (Vec<u64>, Vec<u64>) {
    let xm = if n == 64 { u64::MAX } else { (1 << n) - 1 };
    let alphas = (0..count)
        .map(|i| match i {
            0 => 0,
            1 => xm,
            _ => rng.next_u64() & xm,
        })
        .collect();
    // Full 64-bit payload words: only their low m bits may matter, on both sides.
    let betas = (0..count * p).map(|_| rng.next_u64()).collect();
    (alphas, betas)
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Byte-identical bodies, both parties, every shape and batch size.
fn dcf_bodies_identical(d: &CudaDealer) -> R {
    let mut rng = Csprng::for_tests(77);
    for &(n, m, p) in &SHAPES {
        for &count in &COUNTS {
            let (alphas, betas) = inputs(n, p, count, &mut rng);
            let seed = rng.seed();
            let (c0, c1) = dcf_gen_cpu(n, m, p, &alphas, &betas, seed)?;
            let (g0, g1) = d.dcf_gen_host(n, m, p, &alphas, &betas, seed)?;
            for (party, (c, g)) in [(&c0, &g0), (&c1, &g1)].into_iter().enumerate() {
                if c.body() != g.body() {
                    return Err(format!(
                        "(n, m, p) = ({n}, {m}, {p}), {count} keys, party {party}: bodies of {} \
                         / {} bytes differ first at byte {:?} (layout {:?})",
                        c.body().len(),
                        g.body().len(),
                        first_diff(c.body(), g.body()),
                        c.layout()
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// Keys dealt straight into their slots (`DcfDealer::dcf_gen_into`: downloaded into the
/// gate blob's place, header sealed there) are the CPU's serialized keys byte for byte, at
/// the gates' shapes and at bodies below, at and above the 16 MiB staging chunk (a partial
/// last chunk); a slot of another length is an error.
fn dcf_slots_identical(d: &CudaDealer) -> R {
    let mut rng = Csprng::for_tests(78);
    let mut cases: Vec<(u32, u32, usize, usize)> = SHAPES
        .iter()
        .flat_map(|&(n, m, p)| [(n, m, p, 0), (n, m, p, 33), (n, m, p, 5_000)])
        .collect();
    // Bodies of ≈ 8, 20 and 45 MB (GeLU-like and truncation-like shapes).
    cases.extend([
        (15, 36, 3, 30_000),
        (12, 50, 1, 70_000),
        (37, 50, 2, 100_000),
    ]);
    for (n, m, p, count) in cases {
        let (alphas, betas) = inputs(n, p, count, &mut rng);
        let seed = rng.seed();
        let (c0, c1) = dcf_gen_cpu(n, m, p, &alphas, &betas, seed)?;
        let want = [c0.to_bytes(), c1.to_bytes()];
        let len = want[0].len();
        let mut got = [vec![0xA5u8; len], vec![0x5Au8; len]];
        let [a, b] = &mut got;
        d.dcf_gen_into(n, m, p, &alphas, &betas, seed, [a, b])?;
        for party in 0..2 {
            if got[party] != want[party] {
                return Err(format!(
                    "(n, m, p) = ({n}, {m}, {p}), {count} keys, party {party}: {len}-byte key \
                     files differ first at byte {:?}",
                    first_diff(&got[party], &want[party])
                )
                .into());
            }
        }
        if count > 0 {
            let mut short = vec![0u8; len - 1];
            let mut ok = vec![0u8; len];
            if d.dcf_gen_into(n, m, p, &alphas, &betas, seed, [&mut ok, &mut short])
                .is_ok()
            {
                return Err(format!("({n}, {m}, {p}), {count}: a short slot was accepted").into());
            }
        }
    }
    Ok(())
}

/// DPF comparison keys: byte-identical serialized batches.
fn dpf_identical(d: &CudaDealer) -> R {
    let mut rng = Csprng::for_tests(80);
    for n in [1u32, 5, 7, 8, 13, 37, 50, 64] {
        for &count in &COUNTS {
            let (alphas, _) = inputs(n, 1, count, &mut rng);
            let seed = rng.seed();
            let (c0, c1) = dpf_cmp_gen_cpu(n, &alphas, seed)?;
            let (g0, g1) = d.dpf_gen_host(n, &alphas, seed)?;
            if (c0.to_bytes(), c1.to_bytes()) != (g0.to_bytes(), g1.to_bytes()) {
                return Err(format!("DPF n = {n}, {count} keys: batches differ").into());
            }
        }
    }
    match d.dpf_gen_host(10, &[1 << 10], [1; 16]) {
        Err(CudaError::BadKey(_)) => Ok(()),
        other => Err(format!("DPF alpha 2^10 at n = 10: {other:?}").into()),
    }
}

/// The keys stay in device memory and evaluate there: shares reconstruct f(x).
fn device_keys_evaluate(d: &CudaDealer) -> R {
    let be = d.backend();
    let mut rng = Csprng::for_tests(78);
    for &(n, m, p) in &[(37u32, 37u32, 1usize), (16, 8, 4), (64, 64, 1)] {
        let count = 1000;
        let (alphas, betas) = inputs(n, p, count, &mut rng);
        let pair = d.dcf_gen_device(n, m, p, &alphas, &betas, rng.seed())?;
        let xm = if n == 64 { u64::MAX } else { (1 << n) - 1 };
        let mm = if m == 64 { u64::MAX } else { (1 << m) - 1 };
        // Points at α − 1, α, α + 1 and random ones.
        let xs: Vec<u64> = (0..count)
            .map(|k| match k % 4 {
                0 => alphas[k].wrapping_sub(1) & xm,
                1 => alphas[k],
                2 => alphas[k].wrapping_add(1) & xm,
                _ => rng.next_u64() & xm,
            })
            .collect();
        let dx = be.htod(&xs)?;
        let mut shares = Vec::new();
        for k in &pair.keys {
            let mut out = be.alloc_zeros::<u64>(count * p)?;
            be.dcf_eval_device(k, &dx, count, 1, &mut out)?;
            shares.push(be.dtoh(&out, count * p)?);
        }
        for k in 0..count {
            for q in 0..p {
                let got = shares[0][k * p + q].wrapping_add(shares[1][k * p + q]) & mm;
                let want = if xs[k] < alphas[k] {
                    betas[k * p + q] & mm
                } else {
                    0
                };
                if got != want {
                    return Err(
                        format!("({n}, {m}, {p}) key {k} element {q}: {got} != {want}").into(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Typed errors; unsupported shapes are refused by the device API and made by the CPU
/// through the hook (same bytes).
fn errors_and_fallback(d: &CudaDealer) -> R {
    match d.dcf_gen_device(10, 8, 1, &[1 << 10], &[1], [1; 16]) {
        Err(CudaError::BadKey(_)) => {}
        other => return Err(format!("alpha 2^10 at n = 10: {other:?}").into()),
    }
    match d.dcf_gen_device(10, 8, 2, &[1], &[1], [1; 16]) {
        Err(CudaError::BadKey(_)) => {}
        other => return Err(format!("one payload word for p = 2: {other:?}").into()),
    }
    match d.dcf_gen_device(10, 64, 9, &[1], &[1; 9], [1; 16]) {
        Err(CudaError::Unsupported(_)) => {}
        other => return Err(format!("p = 9: {other:?}").into()),
    }
    if d.dcf_gen(10, 8, 1, &[1 << 10], &[1], [1; 16]).is_ok() {
        return Err("the hook accepted alpha 2^10 at n = 10".into());
    }
    let (a, b) = (vec![3u64, 700, 1023], vec![5u64; 27]);
    let (c0, c1) = dcf_gen_cpu(10, 64, 9, &a, &b, [2; 16])?;
    let (g0, g1) = d.dcf_gen(10, 64, 9, &a, &b, [2; 16])?;
    if (c0.body(), c1.body()) != (g0.body(), g1.body()) {
        return Err("p = 9 through the hook differs from the CPU".into());
    }
    Ok(())
}

fn program(n: u32) -> Program {
    let fp = FixedPoint::new(n, 12).unwrap();
    let mut g = Builder::new(fp);
    g.layer("gates");
    let x = g.input("x", &[40, 25]).unwrap();
    let y = g.input("y", &[40, 25]).unwrap();
    for (v, f, s) in [(x, 12, false), (y, 12, true), (x, 7, true)] {
        let t = g.gate(v, Arc::new(Truncate { f, signed: s })).unwrap();
        g.output(t).unwrap();
    }
    let lt = g
        .gate(y, Arc::new(LessThan { beta: 1 << (n - 1) }))
        .unwrap();
    g.output(lt).unwrap();
    let m = g.mul(x, y).unwrap();
    let t = g
        .gate(
            m,
            Arc::new(Truncate {
                f: 12,
                signed: true,
            }),
        )
        .unwrap();
    g.output(t).unwrap();
    g.finish()
}

fn deal(prog: &Program, seed: u64) -> Result<[Vec<u8>; 2], Failed> {
    let (ds, sinks) = DealerStreams::to_memory(
        prog.width(),
        Csprng::for_tests(seed),
        [4; 16],
        prog.fingerprint(),
    )?;
    run_dealer(prog, &CpuBackend::new(), ds, &DealerWeights::new())?;
    Ok([sinks[0].take(), sinks[1].take()])
}

/// Whole key streams: the hook on the GPU gives the CPU dealer's bytes; those keys run equal
/// to Plain.
fn whole_program(d: &'static CudaDealer) -> R {
    for n in [37u32, 64] {
        let prog = program(n);
        let cpu = deal(&prog, 9)?;
        let gpu = {
            let _g = install(Arc::new(CudaDealer::new(d.backend())?));
            if suf_fss::dealer::installed_name() != "cuda" {
                return Err("the GPU dealer is not installed".into());
            }
            deal(&prog, 9)?
        };
        if cpu != gpu {
            return Err(format!("n = {n}: GPU-dealt streams differ from the CPU dealer's").into());
        }
        let _g = install(Arc::new(CudaDealer::new(d.backend())?));
        let mut rng = Csprng::for_tests(10 + n as u64);
        let w = prog.width();
        let mut ins = BTreeMap::new();
        ins.insert("x".to_string(), rng.ring_vec(w, 1000));
        ins.insert("y".to_string(), rng.ring_vec(w, 1000));
        let run = run_two_party(
            &prog,
            &CpuBackend::new(),
            &ins,
            &BTreeMap::new(),
            Link::Mem,
            &mut rng,
        )?;
        if !run.matches_plain() || run.deal.dcf_dealer != "cuda" {
            return Err(format!(
                "n = {n}: GPU-dealt run differs from Plain ({})",
                run.deal.dcf_dealer
            )
            .into());
        }
    }
    Ok(())
}

/// Timing (printed, not asserted): a bert-tiny-sized DCF batch.
fn timing(d: &CudaDealer) -> R {
    let mut rng = Csprng::for_tests(79);
    for &(n, m, p, count) in &[(37u32, 37u32, 1usize, 1 << 20), (12, 37, 4, 1 << 20)] {
        let (alphas, betas) = inputs(n, p, count, &mut rng);
        let seed = rng.seed();
        d.time_dcf_gen(n, m, p, &alphas, &betas, seed)?;
        let (wall, kernel) = d.time_dcf_gen(n, m, p, &alphas, &betas, seed)?;
        let t0 = std::time::Instant::now();
        dcf_gen_cpu(n, m, p, &alphas, &betas, seed)?;
        let cpu = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "dcf keygen ({n}, {m}, {p}) x {count}: GPU kernel {kernel:.2} ms, to device memory \
             {wall:.2} ms; CPU ({} threads) {cpu:.1} ms",
            rayon::current_num_threads()
        );
    }
    Ok(())
}

/// One case of the host build of the keygen kernels (`host_build`'s `one_case`): both bodies of
/// each case read from `f` written to `o`.
const HOST_CASE: &str = r#"
static int one_case(FILE* f, FILE* o) {
    u64 h[14];
    if (fread(h, 8, 14, f) != 14) return 0;
    {
        u32 rk[44];
        if (fread(rk, 4, 44, f) != 44) return 3;
        const u64 kind = h[0], n = h[1], m = h[2], p = h[3], count = h[4], total = h[13];
        std::vector<u64> al(count + 1), be(count * p + 1);
        if (fread(al.data(), 8, count, f) != count) return 3;
        if (kind == 0 && fread(be.data(), 8, count * p, f) != count * p) return 3;
        std::vector<u64> g0(total / 8 + 4, 0), g1(total / 8 + 4, 0);
        if (kind == 0) {
            dcf_gen_t4(rk, al.data(), be.data(), count, n, m, p, h[5], h[6], h[7], h[8], h[9],
                       h[10], h[11], (u8*)g0.data(), (u8*)g1.data());
        } else {
            dpf_gen_t4(rk, al.data(), count, n, (u8*)g0.data(), (u8*)g1.data());
        }
        fwrite(g0.data(), 1, total, o);
        fwrite(g1.data(), 1, total, o);
    }
    return 1;
}
"#;

/// The keygen kernels' logic without a GPU: `kernels/keygen.cu` (with the generated prelude and
/// `common.cuh`) compiled as C++ with the host C++ compiler (`CXX`, default `g++`) over stubs of
/// the CUDA built-ins, run on DCF and DPF cases, byte-identical to the CPU dealer. Ignored
/// where no C++ compiler exists. This checks the kernel source in CI, where no GPU is.
fn kernel_logic_on_host() -> Result<Completion, Failed> {
    let Some(cxx) = host_build::cxx() else {
        return Ok(Completion::ignored_with("no C++ compiler (CXX / g++)"));
    };
    let dir = std::env::temp_dir().join(format!("suf-keygen-host-{}", std::process::id()));
    let keygen = host_build::host_text(include_str!("../kernels/keygen.cu"));
    let exe = host_build::build(&cxx, &dir, "keygen_host", &[&keygen], HOST_CASE)?;
    // Cases: (kind, n, m, p, count); kind 0 = DCF, 1 = DPF.
    let mut rng = Csprng::for_tests(81);
    let mut cases = Vec::new();
    let mut want: Vec<u8> = Vec::new();
    let mut shapes: Vec<(u64, u32, u32, usize, usize)> =
        SHAPES.iter().map(|&(n, m, p)| (0, n, m, p, 33)).collect();
    shapes.extend([1u32, 5, 7, 8, 13, 37, 50, 64].map(|n| (1, n, 1, 1, 33)));
    shapes.push((0, 37, 37, 1, 0));
    for (kind, n, m, p, count) in shapes {
        let (alphas, betas) = inputs(n, p, count, &mut rng);
        let seed = rng.seed();
        let (b0, b1, l) = if kind == 0 {
            let (k0, k1) = dcf_gen_cpu(n, m, p, &alphas, &betas, seed)?;
            (k0.body().to_vec(), k1.body().to_vec(), Some(k0.layout()))
        } else {
            let (k0, k1) = dpf_cmp_gen_cpu(n, &alphas, seed)?;
            let h = suf_fss::keyfmt::HEADER_LEN;
            (
                k0.to_bytes()[h..].to_vec(),
                k1.to_bytes()[h..].to_vec(),
                None,
            )
        };
        let offs = l.map_or([0; 7], |l| l.kernel_offsets());
        let head = [kind, n as u64, m as u64, p as u64, count as u64]
            .into_iter()
            .chain(offs)
            .chain([0, b0.len() as u64]);
        for v in head {
            cases.extend_from_slice(&v.to_le_bytes());
        }
        for w in suf_cuda::aes_tables::round_keys(seed) {
            cases.extend_from_slice(&w.to_le_bytes());
        }
        for a in &alphas {
            cases.extend_from_slice(&a.to_le_bytes());
        }
        if kind == 0 {
            for b in &betas {
                cases.extend_from_slice(&b.to_le_bytes());
            }
        }
        want.extend_from_slice(&b0);
        want.extend_from_slice(&b1);
    }
    let (st, got) = host_build::run(&exe, &dir, &cases)?;
    if !st.success() || got != want {
        return Err(format!(
            "host build of keygen.cu: status {st}, {} bytes, first difference at {:?} of {}",
            got.len(),
            first_diff(&got, &want),
            want.len()
        )
        .into());
    }
    Ok(Completion::Completed)
}

fn main() {
    let args = Arguments::from_args();
    type Body = fn(&'static CudaDealer) -> R;
    let bodies: [(&str, Body); 7] = [
        ("dcf_bodies_identical", |d| dcf_bodies_identical(d)),
        ("dcf_slots_identical", |d| dcf_slots_identical(d)),
        ("dpf_identical", |d| dpf_identical(d)),
        ("device_keys_evaluate", |d| device_keys_evaluate(d)),
        ("errors_and_fallback", |d| errors_and_fallback(d)),
        ("whole_program", whole_program),
        ("timing", |d| timing(d)),
    ];
    let mut trials = Vec::new();
    for (name, body) in bodies {
        trials.push(Trial::ignorable_test(format!("{name}::cuda"), move || {
            let Some(d) = dealer() else {
                return Ok(Completion::ignored_with(NO_GPU));
            };
            body(d).map(|()| Completion::Completed)
        }));
    }
    trials.push(Trial::ignorable_test(
        "kernel_logic_on_host",
        kernel_logic_on_host,
    ));
    libtest_mimic::run(&args, trials).exit();
}
