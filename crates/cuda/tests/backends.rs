//! One test body per backend (candle's `test_device!`, tfhe's `assert_gpu_determinism`):
//! every body below runs once on the CPU backend and once on the CUDA backend. Without a
//! usable GPU the CUDA instances are reported as **ignored** ("no CUDA GPU"), never passed.
//!
//! Each body checks a backend three ways: against an independent oracle (scalar ring
//! arithmetic, a naive GEMM, the reconstructed FSS function), bit for bit against the CPU
//! reference, and twice in a row (determinism). A mismatch reports how many elements differ
//! and the first one.
//!
//! `harness = false` (libtest-mimic): `cargo test -p suf-cuda --test backends [-- FILTER]`.

use std::borrow::Cow;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use suf_backend::{BLayout, Backend, BackendError, BitWidth, CpuBackend};
use suf_backend::{BitDesc, DpfView, FloorDesc, FloorWrap, Shares, SignDesc, TechC, TechVar};
use suf_compiler::gates::{
    floor_spec, recip_specs, relu_spec, relu_spec_in, rsqrt_specs, smooth_specs_in,
    smooth_specs_with, Prefer, Smooth,
};
use suf_compiler::{Component, FloorSpec, GateSpec, Part, View, Wrap};
use suf_core::prg::{Csprng, FixedKeyAes};
use suf_cuda::{compile, cuda_available, AesTable, CudaBackend, CudaError, CudaOptions};
use suf_fss::{dcf, dpf, KeyOrigin, KeyRef};

type R = Result<(), Failed>;

/// The ring widths every kernel is checked at.
const WIDTHS: [u32; 6] = [1, 13, 37, 50, 63, 64];
/// Batch sizes around a warp (and the empty batch).
const BATCHES: [usize; 5] = [0, 1, 31, 32, 33];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dev {
    Cpu,
    Cuda,
}

/// The process's GPU backend; `None` without a usable GPU. A GPU that is present but does
/// not open fails every CUDA trial.
fn gpu() -> Option<&'static CudaBackend> {
    static G: OnceLock<Option<CudaBackend>> = OnceLock::new();
    G.get_or_init(|| {
        cuda_available().then(|| {
            let b = CudaBackend::new().unwrap_or_else(|e| panic!("CUDA present but unusable: {e}"));
            eprintln!(
                "suf-cuda tests on {} ({}, NVRTC {:?}, driver {})",
                b.device_name(),
                b.info().arch,
                b.info().nvrtc_version,
                b.info().driver_version
            );
            b
        })
    })
    .as_ref()
}

/// Which configurations of a backend a body runs on.
#[derive(Clone, Copy)]
enum Var {
    /// The default one.
    One,
    /// Both AES table layouts (FSS kernels).
    Aes,
    /// Both GEMM register budgets.
    Gemm,
}

/// Fresh backend instances of `dev` (each CUDA instance has its own stream, so trials running
/// in parallel never change each other's settings). CUDA instances send every non-empty
/// elementwise call to the device (so the kernels are covered whatever the size rule says;
/// `size_rule` tests the rule itself).
/// Named backend instances.
type Instances = Vec<(String, Box<dyn Backend>)>;

fn instances(dev: Dev, var: Var) -> Result<Instances, Failed> {
    if dev == Dev::Cpu {
        return Ok(vec![("cpu".into(), Box::new(CpuBackend::new()))]);
    }
    let g = gpu().ok_or("no GPU for a CUDA trial")?;
    let mut v: Instances = Vec::new();
    let sib = || -> Result<CudaBackend, Failed> {
        let b = g.sibling()?;
        b.set_elementwise_device_min(1);
        Ok(b)
    };
    match var {
        Var::One => v.push(("cuda".into(), Box::new(sib()?))),
        Var::Aes => {
            // The launch shape by batch size, and both table layouts at fixed block sizes
            // (the automatic shape takes the four tables below 256 threads).
            v.push(("cuda/auto".into(), Box::new(sib()?)));
            for (t, block) in [
                (AesTable::Shared4, 32),
                (AesTable::Replicated32, 256),
                (AesTable::Replicated32, 64),
            ] {
                let b = sib()?;
                b.set_aes_table(t);
                b.set_fss_block(block);
                v.push((format!("cuda/{}/{block}", t.name()), Box::new(b)));
            }
        }
        Var::Gemm => {
            for two in [true, false] {
                let b = sib()?;
                b.set_gemm_two_blocks_per_sm(two);
                v.push((format!("cuda/b2={two}"), Box::new(b)));
            }
        }
    }
    Ok(v)
}

/// `Ok` if `got == want`; else how many elements differ and the first one.
fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) -> R {
    if got.len() != want.len() {
        return Err(format!("{what}: {} elements, expected {}", got.len(), want.len()).into());
    }
    let mut diff = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g != w);
    if let Some((i, (g, w))) = diff.next() {
        let n = 1 + diff.count();
        return Err(format!(
            "{what}: {n} of {} elements differ; first at index {i}: got {g:?}, want {w:?}",
            want.len()
        )
        .into());
    }
    Ok(())
}

/// Run `f` twice on `be`; both results must equal `want` (bit-exact and deterministic).
fn twice<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &[T],
    f: impl Fn() -> Result<Vec<T>, BackendError>,
) -> R {
    same(&format!("{what} (first run)"), &f()?, want)?;
    same(&format!("{what} (second run)"), &f()?, want)
}

fn eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> R {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}").into())
    }
}

/// Deterministic pseudo-random words (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn vec(&mut self, len: usize) -> Vec<u64> {
        (0..len).map(|_| self.next()).collect()
    }
}

fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

fn width(bits: u32) -> Result<BitWidth, Failed> {
    Ok(BitWidth::new(bits)?)
}

// ---- bodies: one per concept, each run on every backend ------------------------------------

/// Every elementwise op, transposes and bit packing, at every width and batch size.
fn elementwise(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let mut rng = Rng(11);
    for (name, be) in instances(dev, Var::One)? {
        for bits in WIDTHS {
            let w = width(bits)?;
            for len in BATCHES.into_iter().chain([1000, 100_003]) {
                let at = |op: &str| format!("{name} {op} n={bits} len={len}");
                // Unreduced operands: results are still mod 2^n.
                let (a, b, c) = (rng.vec(len), rng.vec(len), rng.next());
                let map2 = |f: &dyn Fn(u64, u64) -> u64| -> Vec<u64> {
                    a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect()
                };
                let map1 =
                    |f: &dyn Fn(u64) -> u64| -> Vec<u64> { a.iter().map(|&x| f(x)).collect() };
                let cases: [(&str, Vec<u64>); 7] = [
                    ("add", map2(&|x, y| w.add(x, y))),
                    ("sub", map2(&|x, y| w.sub(x, y))),
                    ("mul", map2(&|x, y| w.mul(x, y))),
                    ("neg", map1(&|x| w.neg(x))),
                    ("scale", map1(&|x| w.mul(x, c))),
                    ("add_const", map1(&|x| w.add(x, c))),
                    ("reduce", map1(&|x| w.reduce(x))),
                ];
                for (op, oracle) in &cases {
                    let run = |e: &dyn Backend| -> Result<Vec<u64>, BackendError> {
                        match *op {
                            "add" => e.add(w, &a, &b),
                            "sub" => e.sub(w, &a, &b),
                            "mul" => e.mul(w, &a, &b),
                            "neg" => e.neg(w, &a),
                            "scale" => e.scale(w, &a, c),
                            "add_const" => e.add_const(w, &a, c),
                            _ => e.reduce(w, &a),
                        }
                    };
                    same(&format!("{} vs oracle", at(op)), &run(&cpu)?, oracle)?;
                    twice(&at(op), oracle, || run(be.as_ref()))?;
                }
                for (op, oracle) in cases.iter().take(3) {
                    let run = |x: &mut [u64]| match *op {
                        "add" => be.add_assign(w, x, &b),
                        "sub" => be.sub_assign(w, x, &b),
                        _ => be.mul_assign(w, x, &b),
                    };
                    twice(&at(&format!("{op}_assign")), oracle, || {
                        let mut x = a.clone();
                        run(&mut x)?;
                        Ok(x)
                    })?;
                }
                // Broadcast, per-row and per-row-sum forms over a [rows, cols] view.
                for cols in [1usize, 7, 32, 33, 1000] {
                    if len % cols != 0 {
                        continue;
                    }
                    let rows = len / cols;
                    let (row, per_row) = (rng.vec(cols), rng.vec(rows));
                    let bc = |f: &dyn Fn(u64, u64) -> u64| -> Vec<u64> {
                        (0..len).map(|i| f(a[i], row[i % cols])).collect()
                    };
                    let oracle = bc(&|x, y| w.add(x, y));
                    same(
                        &at("add_bcast oracle"),
                        &cpu.add_bcast(w, &a, &row)?,
                        &oracle,
                    )?;
                    twice(&at(&format!("add_bcast cols={cols}")), &oracle, || {
                        be.add_bcast(w, &a, &row)
                    })?;
                    let oracle = bc(&|x, y| w.mul(x, y));
                    same(
                        &at("mul_bcast oracle"),
                        &cpu.mul_bcast(w, &a, &row)?,
                        &oracle,
                    )?;
                    twice(&at(&format!("mul_bcast cols={cols}")), &oracle, || {
                        be.mul_bcast(w, &a, &row)
                    })?;
                    let oracle: Vec<u64> =
                        (0..len).map(|i| w.mul(a[i], per_row[i / cols])).collect();
                    same(
                        &at("mul_rows oracle"),
                        &cpu.mul_rows(w, &a, &per_row, cols)?,
                        &oracle,
                    )?;
                    twice(&at(&format!("mul_rows cols={cols}")), &oracle, || {
                        be.mul_rows(w, &a, &per_row, cols)
                    })?;
                    let oracle: Vec<u64> = a
                        .chunks(cols)
                        .map(|r| w.reduce(r.iter().fold(0u64, |s, &x| s.wrapping_add(x))))
                        .collect();
                    same(&at("row_sum oracle"), &cpu.row_sum(w, &a, cols)?, &oracle)?;
                    twice(&at(&format!("row_sum cols={cols}")), &oracle, || {
                        be.row_sum(w, &a, cols)
                    })?;
                    let oracle: Vec<u64> =
                        (0..len).map(|i| a[(i % rows) * cols + i / rows]).collect();
                    twice(&at(&format!("transpose cols={cols}")), &oracle, || {
                        be.transpose(&a, rows, cols)
                    })?;
                }
                // Bit packing round-trips and is the wire format of suf_core::pack.
                let red: Vec<u64> = a.iter().map(|&x| x & mask(bits)).collect();
                let packed = suf_core::pack::pack(&red, bits);
                twice(&at("pack"), &packed, || be.pack(&a, bits))?;
                twice(&at("unpack"), &red, || be.unpack(&packed, bits, len))?;
            }
        }
        // Caller errors are the CPU backend's, whatever the backend.
        let w = width(37)?;
        let (a, b) = (rng.vec(10), rng.vec(9));
        eq(
            &format!("{name} add error"),
            be.add(w, &a, &b).err(),
            cpu.add(w, &a, &b).err(),
        )?;
        let mut x = a.clone();
        eq(
            &format!("{name} add_assign error"),
            be.add_assign(w, &mut x, &b).err(),
            cpu.add_assign(w, &mut a.clone(), &b).err(),
        )?;
        eq(&format!("{name} failed assign leaves a"), &x, &a)?;
        eq(
            &format!("{name} add_bcast error"),
            be.add_bcast(w, &a, &b[..3]).err(),
            cpu.add_bcast(w, &a, &b[..3]).err(),
        )?;
        eq(
            &format!("{name} row_sum error"),
            be.row_sum(w, &a, 3).err(),
            cpu.row_sum(w, &a, 3).err(),
        )?;
        eq(
            &format!("{name} mul_rows error"),
            be.mul_rows(w, &a, &b, 3).err(),
            cpu.mul_rows(w, &a, &b, 3).err(),
        )?;
        eq(
            &format!("{name} unpack error"),
            be.unpack(&[0u8; 3], 13, 5).err(),
            cpu.unpack(&[0u8; 3], 13, 5).err(),
        )?;
    }
    Ok(())
}

/// C = A·B mod 2^64 by the definition.
fn naive_gemm(a: &[u64], b: &[u64], m: usize, k: usize, n: usize, layout: BLayout) -> Vec<u64> {
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0u64;
            for l in 0..k {
                let bv = match layout {
                    BLayout::RowMajor => b[l * n + j],
                    BLayout::Transposed => b[j * k + l],
                };
                s = s.wrapping_add(a[i * k + l].wrapping_mul(bv));
            }
            c[i * n + j] = s;
        }
    }
    c
}

const GEMM_SHAPES: [(usize, usize, usize, usize); 16] = [
    (1, 1, 1, 1),
    (1, 0, 5, 3),
    (1, 3, 0, 2),
    (1, 4, 5, 0),
    (0, 4, 5, 6),
    (1, 3, 5, 7),
    (3, 17, 33, 9),
    (1, 64, 64, 64),
    (2, 65, 17, 129),
    (1, 130, 3, 1),
    (1, 1, 1000, 1),
    (1, 31, 32, 33),
    (1, 200, 257, 131),
    (5, 31, 16, 63),
    (3, 40, 600, 70),
    (1, 100, 4096, 3),
];

/// Ring GEMM (batched, both layouts) and GEMM against a resident B.
fn gemm(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let mut rng = Rng(10);
    for (name, be) in instances(dev, Var::Gemm)? {
        for bits in WIDTHS {
            let w = width(bits)?;
            for &(batch, m, k, n) in &GEMM_SHAPES {
                let a = rng.vec(batch * m * k);
                let b = rng.vec(batch * k * n);
                for layout in [BLayout::RowMajor, BLayout::Transposed] {
                    let at = format!("{name} gemm n={bits} {batch}×{m}×{k}×{n} {layout:?}");
                    let mut oracle = Vec::with_capacity(batch * m * n);
                    for t in 0..batch {
                        let c = naive_gemm(
                            &a[t * m * k..(t + 1) * m * k],
                            &b[t * k * n..(t + 1) * k * n],
                            m,
                            k,
                            n,
                            layout,
                        );
                        oracle.extend(c.into_iter().map(|x| w.reduce(x)));
                    }
                    let run = |e: &dyn Backend| e.gemm_batch(w, &a, &b, batch, m, k, n, layout);
                    same(&format!("{at} CPU vs oracle"), &run(&cpu)?, &oracle)?;
                    twice(&at, &oracle, || run(be.as_ref()))?;
                    if batch == 1 {
                        // The same product with B resident (uploaded once, used twice).
                        let rb = be.resident("B", Cow::Borrowed(&b))?;
                        eq(&format!("{at} resident len"), rb.len(), b.len())?;
                        twice(&format!("{at} resident"), &oracle, || {
                            be.gemm_resident(w, &a, &rb, m, k, n, layout)
                        })?;
                    }
                }
            }
        }
        // Caller errors are the CPU backend's.
        let w = width(50)?;
        let (a, b) = (rng.vec(12), rng.vec(11));
        eq(
            &format!("{name} gemm error"),
            be.gemm(w, &a, &b, 3, 4, 3).err(),
            cpu.gemm(w, &a, &b, 3, 4, 3).err(),
        )?;
        let rb = be.resident("B", Cow::Borrowed(&b))?;
        eq(
            &format!("{name} gemm_resident error"),
            be.gemm_resident(w, &a, &rb, 3, 4, 3, BLayout::RowMajor)
                .err(),
            cpu.gemm(w, &a, &b, 3, 4, 3).err(),
        )?;
    }
    Ok(())
}

/// Resident matrices are the instance's own: a device-held one is refused elsewhere.
fn resident_handles(dev: Dev) -> R {
    let mut rng = Rng(12);
    let w = width(50)?;
    let (a, b) = (rng.vec(6 * 4), rng.vec(4 * 5));
    let want = CpuBackend::new().gemm(w, &a, &b, 6, 4, 5)?;
    let mut inst = instances(dev, Var::One)?;
    inst.extend(instances(dev, Var::One)?);
    let (one, other) = (&inst[0].1, &inst[1].1);
    let rb = one.resident("W", Cow::Borrowed(&b))?;
    eq("resident name", rb.name(), "W")?;
    same(
        "own resident",
        &one.gemm_resident(w, &a, &rb, 6, 4, 5, BLayout::RowMajor)?,
        &want,
    )?;
    let cpu_view = CpuBackend::new().gemm_resident(w, &a, &rb, 6, 4, 5, BLayout::RowMajor);
    let sibling = other.gemm_resident(w, &a, &rb, 6, 4, 5, BLayout::RowMajor);
    match dev {
        // The CPU keeps host data: any instance may read it.
        Dev::Cpu => {
            same("CPU resident on another CPU instance", &cpu_view?, &want)?;
            same("CPU resident on a sibling", &sibling?, &want)?;
        }
        Dev::Cuda => {
            eq("host resident", rb.as_host().is_none(), true)?;
            let foreign =
                |r: Result<Vec<u64>, BackendError>| matches!(r, Err(BackendError::Foreign { .. }));
            eq(
                "device resident on the CPU is Foreign",
                foreign(cpu_view),
                true,
            )?;
            eq(
                "device resident on a sibling is Foreign",
                foreign(sibling),
                true,
            )?;
            // A host resident (the CPU's) is accepted by the GPU.
            let host = CpuBackend::new().resident("W", Cow::Borrowed(&b))?;
            same(
                "host resident on the GPU",
                &one.gemm_resident(w, &a, &host, 6, 4, 5, BLayout::RowMajor)?,
                &want,
            )?;
        }
    }
    Ok(())
}

/// Points around each α (equal, ±1, random, unreduced) for key i at `t` points.
fn points(n: u32, alphas: &[u64], t: usize, rng: &mut Rng) -> Vec<u64> {
    let dm = mask(n);
    let mut xs = Vec::with_capacity(alphas.len() * t);
    for &a in alphas {
        for j in 0..t {
            xs.push(match (j + a as usize) % 5 {
                0 => a,
                1 => a.wrapping_sub(1) & dm,
                2 => a.wrapping_add(1) & dm,
                3 => rng.next(), // unreduced: must be taken mod 2^n like the CPU does
                _ => rng.next() & dm,
            });
        }
    }
    xs
}

fn alphas_for(n: u32, count: usize, rng: &mut Rng) -> Vec<u64> {
    let dm = mask(n);
    let mut a: Vec<u64> = (0..count).map(|_| rng.next() & dm).collect();
    if count > 2 {
        a[0] = 0;
        a[1] = dm;
        a[2] = dm >> 1;
    }
    a
}

/// DCF with payload p at (n, m): both parties on `be`, twice, equal to the CPU, and the
/// shares reconstruct β·1[x < α].
#[allow(clippy::too_many_arguments)]
fn dcf_case(
    name: &str,
    be: &dyn Backend,
    cpu: &CpuBackend,
    (n, m, p): (u32, u32, usize),
    count: usize,
    t: usize,
    rng: &mut Rng,
    crng: &mut Csprng,
) -> R {
    let alphas = alphas_for(n, count, rng);
    let betas = rng.vec(count * p);
    let (k0, k1) = dcf::gen_batch(n, m, p, &alphas, &betas, crng)?;
    let xs = points(n, &alphas, t, rng);
    let at = format!("{name} dcf n={n} m={m} p={p} count={count} t={t}");
    let mut shares = Vec::new();
    for (j, k) in [&k0, &k1].into_iter().enumerate() {
        let want = cpu.dcf_eval(k, &xs, t)?;
        twice(&format!("{at} party {j}"), &want, || be.dcf_eval(k, &xs, t))?;
        shares.push(want);
    }
    let oracle: Vec<u64> = (0..xs.len() * p)
        .map(|e| {
            let (pt, q) = (e / p, e % p);
            if xs[pt] & mask(n) < alphas[pt / t] {
                betas[(pt / t) * p + q] & mask(m)
            } else {
                0
            }
        })
        .collect();
    let rec: Vec<u64> = shares[0]
        .iter()
        .zip(&shares[1])
        .map(|(&a, &b)| a.wrapping_add(b) & mask(m))
        .collect();
    same(&format!("{at} reconstructs β·1[x < α]"), &rec, &oracle)
}

/// DCF at every width pair and batch size, one payload element.
fn dcf_scalar(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(4), Csprng::for_tests(4));
    for (name, be) in instances(dev, Var::Aes)? {
        for n in WIDTHS {
            for m in WIDTHS {
                for count in BATCHES {
                    dcf_case(
                        &name,
                        be.as_ref(),
                        &cpu,
                        (n, m, 1),
                        count,
                        1,
                        &mut rng,
                        &mut crng,
                    )?;
                }
                dcf_case(
                    &name,
                    be.as_ref(),
                    &cpu,
                    (n, m, 1),
                    33,
                    3,
                    &mut rng,
                    &mut crng,
                )?;
            }
        }
    }
    Ok(())
}

/// DCF with vector payloads (technique (c)), including payloads beyond the GPU kernels
/// (which run on the host by design and must agree too): one or two value blocks per level,
/// both sides of the boundary (3 × 42 = 126 and 3 × 43 = 129 bits).
fn dcf_vector(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(5), Csprng::for_tests(5));
    for (name, be) in instances(dev, Var::Aes)? {
        for n in WIDTHS {
            for (m, p) in [
                (1u32, 2usize),
                (13, 3),
                (37, 3),
                (50, 3),
                (42, 3),
                (43, 3),
                (64, 3),
                (37, 2),
                (50, 2),
                (13, 4),
                (33, 4),
                (64, 4),
                (50, 5),
                (64, 2),
                (64, 16),
                (37, 17),
            ] {
                for count in BATCHES {
                    dcf_case(
                        &name,
                        be.as_ref(),
                        &cpu,
                        (n, m, p),
                        count,
                        1,
                        &mut rng,
                        &mut crng,
                    )?;
                }
                dcf_case(
                    &name,
                    be.as_ref(),
                    &cpu,
                    (n, m, p),
                    3,
                    2,
                    &mut rng,
                    &mut crng,
                )?;
            }
        }
        // Points of the wrong length: the CPU backend's error.
        let (k0, _) = dcf::gen_batch(37, 37, 1, &[0, 1, 2, 3], &rng.vec(4), &mut crng)?;
        let xs = rng.vec(3);
        eq(
            &format!("{name} dcf length error"),
            be.dcf_eval(&k0, &xs, 1).err(),
            cpu.dcf_eval(&k0, &xs, 1).err(),
        )?;
    }
    Ok(())
}

/// A million DCF evaluations at the project's ring width, twice.
fn dcf_million(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(6), Csprng::for_tests(6));
    for (name, be) in instances(dev, Var::One)? {
        dcf_case(
            &name,
            be.as_ref(),
            &cpu,
            (50, 50, 1),
            1_000_000,
            1,
            &mut rng,
            &mut crng,
        )?;
    }
    Ok(())
}

/// DPF comparison and point function at every width and batch size.
fn dpf(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(2), Csprng::for_tests(2));
    for (name, be) in instances(dev, Var::Aes)? {
        for n in [1u32, 2, 7, 8, 9, 13, 37, 50, 63, 64] {
            for (count, t) in BATCHES
                .iter()
                .map(|&c| (c, 1))
                .chain([(1, 3), (33, 2), (4099, 1)])
            {
                let alphas = alphas_for(n, count, &mut rng);
                let (k0, k1) = dpf::gen_cmp_batch(n, &alphas, &mut crng)?;
                let xs = points(n, &alphas, t, &mut rng);
                let at = format!("{name} dpf n={n} count={count} t={t}");
                let mut lt = Vec::new();
                for (j, k) in [&k0, &k1].into_iter().enumerate() {
                    let want = cpu.dpf_lt_eval(k, &xs, t)?;
                    twice(&format!("{at} lt party {j}"), &want, || {
                        be.dpf_lt_eval(k, &xs, t)
                    })?;
                    lt.push(want);
                    if t == 1 {
                        let want = cpu.dpf_eq_eval(k, &xs)?;
                        twice(&format!("{at} eq party {j}"), &want, || {
                            be.dpf_eq_eval(k, &xs)
                        })?;
                    }
                }
                let oracle: Vec<u8> = (0..xs.len())
                    .map(|e| ((xs[e] & mask(n)) < alphas[e / t]) as u8)
                    .collect();
                let rec: Vec<u8> = lt[0].iter().zip(&lt[1]).map(|(a, b)| a ^ b).collect();
                same(&format!("{at} reconstructs 1[x < α]"), &rec, &oracle)?;
            }
        }
    }
    Ok(())
}

/// A stream-like buffer: `batches` serialized DCF batches, each starting 16-aligned after
/// `lead` bytes of filler (so every body is 16-aligned), the last one flush with the end of
/// the buffer. Returns the buffer and each batch's (offset, length).
fn stream_like(batches: &[Vec<u8>], lead: usize, rng: &mut Rng) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut buf: Vec<u8> = (0..lead).map(|_| rng.next() as u8).collect();
    let mut at = Vec::new();
    for b in batches {
        while !buf.len().is_multiple_of(16) {
            buf.push(rng.next() as u8);
        }
        at.push((buf.len(), b.len()));
        buf.extend_from_slice(b);
    }
    (buf, at)
}

/// Key batches read in place from an attached key stream (key format v2, the kernels at the
/// DcfLayout offsets), against the CPU bit for bit: scalar and vector payloads, widths whose
/// packed values straddle words, several points per key, a batch flush with the end of the
/// stream. The same views after the stream is detached (their bodies uploaded per call), and
/// views without an origin. On CUDA the stats count which path ran, and corrupt origins are
/// errors.
fn dcf_attached_stream(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(8), Csprng::for_tests(8));
    let shapes: [(u32, u32, usize, usize, usize); 7] = [
        (50, 50, 1, 1000, 1),
        (37, 13, 1, 33, 3),
        (64, 63, 1, 31, 1),
        (50, 50, 3, 257, 1),
        (13, 64, 2, 32, 2),
        (1, 1, 1, 1, 1),
        (50, 37, 5, 129, 1),
    ];
    let mut owned = Vec::new();
    for &(n, m, p, count, t) in &shapes {
        let alphas = alphas_for(n, count, &mut rng);
        let (k0, k1) = dcf::gen_batch(n, m, p, &alphas, &rng.vec(count * p), &mut crng)?;
        let xs = points(n, &alphas, t, &mut rng);
        owned.push((k0, k1, xs, t));
    }
    for party in 0..2usize {
        let bytes: Vec<Vec<u8>> = owned
            .iter()
            .map(|o| {
                if party == 0 {
                    o.0.to_bytes()
                } else {
                    o.1.to_bytes()
                }
            })
            .collect();
        let (buf, at) = stream_like(&bytes, 48 + 16 * party, &mut rng);
        let token = 0x5eed_0000 + party as u64;
        let view = |i: usize, token: u64, shift: u64| -> Result<dcf::DcfKeys<'_>, Failed> {
            let (off, len) = at[i];
            Ok(dcf::DcfKeys::view(KeyRef {
                bytes: &buf[off..off + len],
                origin: Some(KeyOrigin {
                    stream: token,
                    offset: off as u64 + shift,
                    on_host: true,
                }),
            })?)
        };
        for (name, be) in instances(dev, Var::Aes)? {
            let at_ = |i: usize, how: &str| {
                let (n, m, p, count, t) = shapes[i];
                format!("{name} party {party} {how} n={n} m={m} p={p} count={count} t={t}")
            };
            let s0 = be.stats();
            be.attach_keys(token, &buf)?;
            for (i, o) in owned.iter().enumerate() {
                let k = if party == 0 { &o.0 } else { &o.1 };
                let want = cpu.dcf_eval(k, &o.2, o.3)?;
                let v = view(i, token, 0)?;
                eq(
                    &format!("{} origin", at_(i, "view")),
                    v.origin().map(|o| o.offset % 16),
                    Some(0),
                )?;
                twice(&at_(i, "in place"), &want, || be.dcf_eval(&v, &o.2, o.3))?;
                // A view naming a stream that is not attached: its body is uploaded.
                let other = view(i, token ^ 1, 0)?;
                same(
                    &at_(i, "unattached origin"),
                    &be.dcf_eval(&other, &o.2, o.3)?,
                    &want,
                )?;
                // No origin at all (standalone keys).
                same(&at_(i, "owned"), &be.dcf_eval(k, &o.2, o.3)?, &want)?;
            }
            let d = be.stats().since(&s0);
            let nb = shapes.len() as u64;
            if dev == Dev::Cuda {
                eq(
                    &format!("{name} key streams attached"),
                    d.key_streams_attached,
                    1,
                )?;
                eq(
                    &format!("{name} key bytes attached"),
                    d.key_bytes_attached,
                    buf.len() as u64,
                )?;
                eq(
                    &format!("{name} batches read in place"),
                    d.dcf_resident_batches,
                    2 * nb,
                )?;
                eq(
                    &format!("{name} batches uploaded"),
                    d.dcf_uploaded_batches,
                    2 * nb,
                )?;
                // Corrupt origins inside the attached stream are refused, not read.
                for (shift, what) in [(8u64, "misaligned"), (1 << 40, "beyond the stream")] {
                    let bad = view(0, token, shift)?;
                    match be.dcf_eval(&bad, &owned[0].2, owned[0].3) {
                        Err(BackendError::Device {
                            operation: "dcf_eval",
                            ..
                        }) => {}
                        other => return Err(format!("{name} {what} origin: {other:?}").into()),
                    }
                }
            } else {
                eq(&format!("{name} stats of the CPU"), d, Default::default())?;
            }
            // Detached: the same views are uploaded per call and still agree.
            be.detach_keys(token);
            let s1 = be.stats();
            for (i, o) in owned.iter().enumerate() {
                let k = if party == 0 { &o.0 } else { &o.1 };
                let want = cpu.dcf_eval(k, &o.2, o.3)?;
                same(
                    &at_(i, "after detach"),
                    &be.dcf_eval(&view(i, token, 0)?, &o.2, o.3)?,
                    &want,
                )?;
            }
            if dev == Dev::Cuda {
                let d = be.stats().since(&s1);
                eq(
                    &format!("{name} after detach: in place"),
                    d.dcf_resident_batches,
                    0,
                )?;
                eq(
                    &format!("{name} after detach: uploaded"),
                    d.dcf_uploaded_batches,
                    nb,
                )?;
            }
        }
    }
    Ok(())
}

/// A key stream received chunk by chunk into the device (`receive_keys_*`, the path of
/// `PartyStream::receive`): views whose bodies only the device holds (`on_host: false`) are
/// evaluated in place and equal the CPU on the same keys; such a view is refused (never read
/// as zeros) by the CPU and by an instance that does not hold its stream; chunks out of order,
/// too long or missing are errors, and an aborted receive leaves nothing attached.
fn received_stream(g: &CudaBackend) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(18), Csprng::for_tests(18));
    let shapes: [(u32, u32, usize, usize, usize); 3] = [
        (50, 50, 1, 1000, 1),
        (37, 13, 1, 33, 3),
        (50, 50, 3, 257, 1),
    ];
    let mut owned = Vec::new();
    for &(n, m, p, count, t) in &shapes {
        let alphas = alphas_for(n, count, &mut rng);
        let (k0, _) = dcf::gen_batch(n, m, p, &alphas, &rng.vec(count * p), &mut crng)?;
        let xs = points(n, &alphas, t, &mut rng);
        owned.push((k0, xs, t));
    }
    let bytes: Vec<Vec<u8>> = owned.iter().map(|o| o.0.to_bytes()).collect();
    // Long enough for several chunks of the backend's size.
    let (mut buf, at) = stream_like(&bytes, 48, &mut rng);
    let pad = (40 << 20) - buf.len() % (16 << 20);
    buf.extend((0..pad).map(|_| rng.next() as u8));
    let be = g.sibling()?;
    let token = 0x4ecf_0001;
    let chunk = be
        .receive_keys_begin(buf.len())?
        .ok_or("the CUDA backend does not receive streams")?;
    let pieces: Vec<&[u8]> = buf.chunks(chunk).collect();
    if pieces.len() < 3 {
        return Err(format!("{} chunks only", pieces.len()).into());
    }
    if be.receive_keys_chunk(1, pieces[1]).is_ok() {
        return Err("a chunk out of order was accepted".into());
    }
    for (i, c) in pieces.iter().enumerate() {
        be.receive_keys_chunk(i, c)?;
    }
    be.receive_keys_finish(token)?;
    let view = |i: usize, token: u64| -> Result<dcf::DcfKeys<'_>, Failed> {
        let (off, len) = at[i];
        Ok(dcf::DcfKeys::view(KeyRef {
            bytes: &buf[off..off + len],
            origin: Some(KeyOrigin {
                stream: token,
                offset: off as u64,
                on_host: false,
            }),
        })?)
    };
    for (i, o) in owned.iter().enumerate() {
        let want = cpu.dcf_eval(&o.0, &o.1, o.2)?;
        let v = view(i, token)?;
        twice(&format!("received batch {i}"), &want, || {
            be.dcf_eval(&v, &o.1, o.2)
        })?;
        for (who, r) in [
            ("the CPU", cpu.dcf_eval(&v, &o.1, o.2)),
            (
                "an instance without the stream",
                be.dcf_eval(&view(i, token ^ 1)?, &o.1, o.2),
            ),
        ] {
            match r {
                Err(BackendError::Fss(suf_fss::FssError::BodyOnDevice { .. })) => {}
                other => return Err(format!("{who} on a device-held body: {other:?}").into()),
            }
        }
    }
    be.detach_keys(token);
    // Errors: no receive begun, missing bytes, an oversize chunk; an abort drops the copy.
    if be.receive_keys_finish(token).is_ok() || be.receive_keys_chunk(0, pieces[0]).is_ok() {
        return Err("finish/chunk without a receive begun was accepted".into());
    }
    be.receive_keys_begin(buf.len())?;
    be.receive_keys_chunk(0, pieces[0])?;
    if be.receive_keys_finish(token).is_ok() {
        return Err("a receive with bytes missing was finished".into());
    }
    be.receive_keys_begin(buf.len())?;
    if be.receive_keys_chunk(0, &buf[..chunk + 16]).is_ok() {
        return Err("an oversize chunk was accepted".into());
    }
    be.receive_keys_abort();
    if be.attached_streams() != 0 {
        return Err(format!("{} streams still attached", be.attached_streams()).into());
    }
    Ok(())
}

/// The elementwise size rule: below `elementwise_device_min` elements a call runs on the
/// host, from it on on the device (counted in the stats); the results agree either way.
fn size_rule(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let w = width(50)?;
    let mut rng = Rng(9);
    for (name, be) in instances(dev, Var::One)? {
        if dev == Dev::Cuda {
            let g = gpu().ok_or("no GPU")?.sibling()?;
            g.set_elementwise_device_min(100);
            for len in [99usize, 100] {
                let (a, b) = (rng.vec(len), rng.vec(len));
                let s0 = g.stats();
                same(
                    &format!("{name} add len {len}"),
                    &g.add(w, &a, &b)?,
                    &cpu.add(w, &a, &b)?,
                )?;
                let d = g.stats().since(&s0);
                let op = d
                    .ops
                    .iter()
                    .find(|o| o.op == "add")
                    .ok_or("add not counted")?;
                let device = len >= 100;
                eq(
                    &format!("{name} add len {len}: (device, host) calls"),
                    (op.device_calls, op.host_calls),
                    (device as u64, !device as u64),
                )?;
                eq(
                    &format!("{name} device ms counted"),
                    d.device_ms > 0.0,
                    device,
                )?;
            }
            eq(
                "default rule",
                CudaOptions::default().elementwise_device_min,
                suf_cuda::ELEMENTWISE_DEVICE_MIN,
            )?;
        } else {
            let (a, b) = (rng.vec(100), rng.vec(100));
            same(
                &format!("{name} add"),
                &be.add(w, &a, &b)?,
                &cpu.add(w, &a, &b)?,
            )?;
        }
    }
    Ok(())
}

/// Two instances (two parties' backends) used at once from two threads: each gets exactly
/// what it would get alone.
fn two_instances_at_once(dev: Dev) -> R {
    let mut rng = Rng(7);
    let mut crng = Csprng::for_tests(7);
    let w = width(50)?;
    let (a, b) = (rng.vec(128 * 256), rng.vec(256 * 128));
    let want_gemm = CpuBackend::new().gemm(w, &a, &b, 128, 256, 128)?;
    let alphas = alphas_for(50, 5000, &mut rng);
    let betas = rng.vec(5000);
    let (k0, k1) = dcf::gen_batch(50, 50, 1, &alphas, &betas, &mut crng)?;
    let xs = points(50, &alphas, 1, &mut rng);
    let keys = [k0, k1];
    let want_dcf: Vec<Vec<u64>> = keys
        .iter()
        .map(|k| CpuBackend::new().dcf_eval(k, &xs, 1))
        .collect::<Result<_, _>>()?;
    let mut inst = instances(dev, Var::One)?;
    inst.extend(instances(dev, Var::One)?);
    std::thread::scope(|s| -> R {
        let hs: Vec<_> = inst
            .iter()
            .zip(&keys)
            .zip(&want_dcf)
            .enumerate()
            .map(|(j, (((_, be), k), wd))| {
                let (a, b, xs, wg) = (&a, &b, &xs, &want_gemm);
                s.spawn(move || -> Result<(), String> {
                    for r in 0..5 {
                        let g = be.gemm(w, a, b, 128, 256, 128).map_err(|e| e.to_string())?;
                        let d = be.dcf_eval(k, xs, 1).map_err(|e| e.to_string())?;
                        same(&format!("party {j} gemm round {r}"), &g, wg)
                            .map_err(|e| format!("{e:?}"))?;
                        same(&format!("party {j} dcf round {r}"), &d, wd)
                            .map_err(|e| format!("{e:?}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "a party thread panicked")??;
        }
        Ok(())
    })
}

// ---- CUDA-only bodies (the device API beneath the trait) -----------------------------------

fn aes_permutation(g: &CudaBackend) -> R {
    let aes = FixedKeyAes::global();
    let mut rng = Rng(1);
    for len in [0usize, 1, 33, 100_003] {
        let mut blocks: Vec<u128> = (0..len)
            .map(|_| rng.next() as u128 | (rng.next() as u128) << 64)
            .collect();
        if len > 2 {
            blocks[0] = 0;
            blocks[1] = u128::MAX;
        }
        let want: Vec<u128> = blocks.iter().map(|&b| aes.permute(b)).collect();
        for t in [AesTable::Shared4, AesTable::Replicated32] {
            same(
                &format!("AES {t:?} len {len}"),
                &g.aes_permute(t, &blocks)?,
                &want,
            )?;
        }
    }
    Ok(())
}

fn device_api(g: &CudaBackend) -> R {
    let mut rng = Rng(3);
    let mut crng = Csprng::for_tests(3);
    let n = 50;
    let alphas = alphas_for(n, 1000, &mut rng);
    let (a, _) = dpf::gen_cmp_batch(n, &alphas[..313], &mut crng)?;
    let (b, _) = dpf::gen_cmp_batch(n, &alphas[313..], &mut crng)?;
    let xs = points(n, &alphas, 1, &mut rng);
    let mut want = a.eval_lt_batch(&xs[..313])?;
    want.extend(b.eval_lt_batch(&xs[313..])?);
    let (ab, bb) = (a.to_bytes(), b.to_bytes());
    let dk = g.upload_dpf_bytes(&[&ab, &bb])?;
    eq("concatenated count", dk.count(), 1000)?;
    same(
        "concatenated batches",
        &g.dpf_eval_resident(&dk, &xs, 1, false)?,
        &want,
    )?;
    // Mismatched batches and malformed bytes are typed errors.
    let (c, _) = dpf::gen_cmp_batch(37, &[1, 2], &mut crng)?;
    let cb = c.to_bytes();
    eq(
        "mismatched batches",
        matches!(g.upload_dpf_bytes(&[&ab, &cb]), Err(CudaError::BadKey(_))),
        true,
    )?;
    eq(
        "truncated batch",
        matches!(
            g.upload_dpf_bytes(&[&ab[..ab.len() - 1]]),
            Err(CudaError::BadKey(_))
        ),
        true,
    )?;
    eq(
        "points of the wrong length",
        matches!(
            g.dpf_eval_resident(&dk, &xs[1..], 1, false),
            Err(CudaError::Backend(_))
        ),
        true,
    )?;
    // Keys of another instance (another stream) are refused, never raced on.
    let other = g.sibling()?;
    let dx = other.htod(&xs)?;
    let mut dout = other.alloc_zeros::<u8>(xs.len())?;
    eq(
        "keys of another instance",
        matches!(
            other.dpf_eval_device(&dk, &dx, xs.len(), 1, false, &mut dout),
            Err(CudaError::ForeignBuffer { .. })
        ),
        true,
    )?;
    // DCF payloads beyond the kernels: the device API says so (the trait runs them on the
    // host by design).
    let al = alphas_for(37, 50, &mut rng);
    let (k0, _) = dcf::gen_batch(37, 37, 17, &al, &rng.vec(50 * 17), &mut crng)?;
    let dk = g.upload_dcf(&k0)?;
    let xs = points(37, &al, 2, &mut rng);
    eq(
        "uploaded body",
        (dk.in_stream(), dk.bytes()),
        (false, k0.layout().total),
    )?;
    // Serialized bytes go through the same header check.
    let kb = k0.to_bytes();
    eq(
        "truncated DCF batch",
        matches!(
            g.upload_dcf_bytes(&kb[..kb.len() - 1]),
            Err(CudaError::BadKey(_))
        ),
        true,
    )?;
    eq("DCF batch from bytes", g.upload_dcf_bytes(&kb)?.count(), 50)?;
    eq(
        "unsupported payload",
        CudaBackend::dcf_supported(37, 17),
        false,
    )?;
    eq(
        "resident unsupported payload",
        matches!(
            g.dcf_eval_resident(&dk, &xs, 2),
            Err(CudaError::Unsupported(_))
        ),
        true,
    )?;
    // try_gemm_batch reports what the trait method computes.
    let w = width(50)?;
    let (a, b) = (rng.vec(40 * 600), rng.vec(600 * 70));
    same(
        "try_gemm_batch",
        &g.try_gemm_batch(w, &a, &b, 1, 40, 600, 70, BLayout::RowMajor)?,
        &CpuBackend::new().gemm(w, &a, &b, 40, 600, 70)?,
    )?;
    Ok(())
}

/// A key stream larger than the device's free memory is a typed error (streaming keys through
/// the device is not implemented); a small one fits.
fn keys_too_large(g: &CudaBackend) -> R {
    let total = g.info().total_mem;
    match g.key_stream_fits(total) {
        Err(CudaError::KeysTooLarge { bytes, free }) => {
            eq("bytes reported", bytes, total as u64)?;
            eq("free below total", free < total as u64, true)?;
        }
        other => return Err(format!("a stream of the whole device memory: {other:?}").into()),
    }
    g.key_stream_fits(1 << 20)?;
    // Through the trait: the backend error keeps the figures.
    let e = suf_cuda::CudaError::KeysTooLarge { bytes: 5, free: 1 }.into_backend("attach_keys");
    eq(
        "trait error",
        e,
        BackendError::KeysTooLarge { bytes: 5, free: 1 },
    )
}

/// Device selection: an ordinal beyond the devices is a typed error naming the count.
fn device_ordinals(g: &CudaBackend) -> R {
    eq("ordinal of the default device", g.ordinal(), 0)?;
    let opts = CudaOptions {
        ordinal: 1 << 20,
        ..Default::default()
    };
    match CudaBackend::with_options(opts) {
        Err(CudaError::NoDevice { ordinal, count }) => {
            eq("ordinal reported", ordinal, 1 << 20)?;
            eq("devices reported", count >= 1, true)
        }
        other => Err(format!("ordinal 2^20: {other:?}").into()),
    }
}

fn kernels_compile_with_nvrtc() -> Result<Completion, Failed> {
    if !compile::nvrtc_available() {
        return Ok(Completion::ignored_with("NVRTC not installed"));
    }
    let c = compile::compile("sm_90")?;
    eq("CUBIN magic", &c.cubin[..4], b"\x7fELF".as_slice())?;
    Ok(Completion::Completed)
}

/// Without a GPU, opening the backend is a typed error naming what is missing; with one, an
/// ordinal beyond the devices is (never ignored: one of the two always runs).
fn open_errors_are_typed() -> Result<Completion, Failed> {
    if cuda_available() {
        let opts = CudaOptions {
            ordinal: 1 << 20,
            ..Default::default()
        };
        return match CudaBackend::with_options(opts) {
            Err(CudaError::NoDevice { .. }) => Ok(Completion::Completed),
            other => Err(format!("ordinal 2^20 with a GPU: {other:?}").into()),
        };
    }
    match CudaBackend::new() {
        Ok(_) => Err("CudaBackend::new() succeeded without a usable GPU".into()),
        Err(e @ (CudaError::NoDriver | CudaError::NoNvrtc | CudaError::NoDevice { .. })) => {
            eq(
                "message names the library or device",
                e.to_string().is_empty(),
                false,
            )?;
            Ok(Completion::Completed)
        }
        Err(e) => Err(format!("unexpected error without a GPU: {e}").into()),
    }
}

/// The mismatch report says how many elements differ and which is first.
fn mismatch_report() -> R {
    let e = same("x", &[1u64, 2, 3, 4, 5], &[1, 9, 3, 8, 5]).err();
    let msg = e.and_then(|f| f.message().map(str::to_string));
    eq(
        "report",
        msg.as_deref(),
        Some("x: 2 of 5 elements differ; first at index 1: got 2, want 9"),
    )?;
    let e = same("y", &[1u8], &[1, 2]).err();
    eq(
        "length report",
        e.and_then(|f| f.message().map(str::to_string)).as_deref(),
        Some("y: 1 elements, expected 2"),
    )?;
    same("z", &[7u8, 8], &[7, 8])
}

// ---- compiled-gate components (Backend::techc_eval / floor_eval / sign_eval / bit_eval) ----

/// A floor component with the selector and wrap mode given (two outputs, swapped targets).
fn floor_gate(bits: u32, select: bool, wrap: Wrap) -> GateSpec {
    GateSpec {
        label: format!("floor_{bits}_{select}_{wrap:?}"),
        outputs: 2,
        parts: vec![Part {
            comp: Component::Floor(FloorSpec {
                view: View { offset: 5, bits },
                shift: 4,
                select,
                wrap,
                gamma: vec![1, 3],
                kappa: vec![0, 7],
            }),
            targets: vec![1, 0],
        }],
    }
}

/// The library's gates at ring n, scale f: GeLU, SiLU, nExp (full and declared-range views:
/// Poly, High, Sign, Bit components), ReLU (halves and reduced-width sign), the truncations
/// (GapARS free wrap, DCF wrap), floors in every selector × wrap mode, reciprocal and rsqrt.
fn library_gates(n: u32, f: u32) -> Vec<GateSpec> {
    let mut v = vec![
        relu_spec(n),
        relu_spec_in(n, 20.min(n - 1)),
        floor_spec(n, 0, f, 0, Wrap::Dcf, "tr"),
        floor_spec(n, 1 << (n - 2), 7, 1 << (n - 2 - 7), Wrap::Free, "arsgap"),
    ];
    for sel in [false, true] {
        for wrap in [Wrap::Dcf, Wrap::Free, Wrap::Drop] {
            v.push(floor_gate(
                if wrap == Wrap::Free { n } else { 20 },
                sel,
                wrap,
            ));
        }
    }
    for kind in [Smooth::Gelu, Smooth::Silu, Smooth::NExp] {
        if let Ok(s) = smooth_specs_with(kind, n, f, false, Prefer::Aes) {
            v.push(s.gate1.clone());
            v.push(s.select.clone());
            v.extend(s.fine.iter().cloned());
            v.extend(s.tail.iter().cloned());
        }
        if let Ok(s) = smooth_specs_in(kind, n, f, f + 8, Prefer::Keys) {
            v.push(s.gate1.clone());
            v.push(s.select.clone());
        }
    }
    if let Ok(r) = recip_specs(n, f, 128) {
        v.extend([r.gate1.clone(), r.floor.clone()]);
    }
    if let Ok(q) = rsqrt_specs(n, 2 * f, 1, 1 << (n - 4)) {
        v.extend([q.norm.clone(), q.floor.clone(), q.poly.clone()]);
    }
    v
}

/// A key-stream-like buffer holding `blob` at a 16-aligned offset (zeros around it).
fn stream_with(blob: &[u8]) -> (Vec<u8>, usize) {
    let off = 48;
    let mut buf = vec![0u8; off + blob.len() + 32];
    buf[off..off + blob.len()].copy_from_slice(blob);
    (buf, off)
}

/// One gate at one batch size: both parties, keys detached and (when `resident`) read in
/// place from an attached stream, each twice, bit for bit against the CPU backend.
#[allow(clippy::too_many_arguments)]
fn gate_case(
    name: &str,
    be: &dyn Backend,
    cpu: &CpuBackend,
    spec: &GateSpec,
    n: u32,
    cnt: usize,
    resident: bool,
    token: u64,
    rng: &mut Rng,
    crng: &mut Csprng,
) -> R {
    let w = width(n)?;
    let r: Vec<u64> = rng.vec(cnt).iter().map(|&x| x & w.mask()).collect();
    let xhat: Vec<u64> = rng.vec(cnt).iter().map(|&x| x & w.mask()).collect();
    let keys = spec.deal(n, &r, crng)?;
    for party in 0..2u8 {
        let blob = &keys[party as usize];
        let at = format!("{name} {} n={n} cnt={cnt} party {party}", spec.label);
        let want = spec.eval_shares(n, party, KeyRef::detached(blob), &xhat, cpu)?;
        eq(
            &format!("{at} output count"),
            want.len(),
            spec.outputs * cnt,
        )?;
        for run in ["first", "second"] {
            let got = spec.eval_shares(n, party, KeyRef::detached(blob), &xhat, be)?;
            same(&format!("{at} detached ({run} run)"), &got, &want)?;
        }
        if resident {
            let (buf, off) = stream_with(blob);
            be.attach_keys(token, &buf)?;
            let key = KeyRef {
                bytes: &buf[off..off + blob.len()],
                origin: Some(KeyOrigin {
                    stream: token,
                    offset: off as u64,
                    on_host: true,
                }),
            };
            for run in ["first", "second"] {
                let got = spec.eval_shares(n, party, key, &xhat, be);
                let got = got.map_err(|e| format!("{at} resident: {e}"))?;
                same(&format!("{at} resident ({run} run)"), &got, &want)?;
            }
            be.detach_keys(token);
        }
    }
    Ok(())
}

fn op_calls(st: &suf_backend::BackendStats, op: &str) -> (u64, u64) {
    st.ops
        .iter()
        .find(|o| o.op == op)
        .map_or((0, 0), |o| (o.device_calls, o.host_calls))
}

/// Every component kind of the library's compiled gates at the models' ring (50) and others,
/// batches 0, 1, 31, 32, 33, keys detached and resident, twice: equal to the CPU bit for bit.
/// On CUDA the stats must show the fused gate path on the device (and DCF batches in place).
fn gate_components(dev: Dev) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(21), Csprng::for_tests(21));
    for (name, be) in instances(dev, Var::One)? {
        let s0 = be.stats();
        for (n, f) in [(50u32, 12u32), (37, 12), (64, 16), (24, 8)] {
            let specs = library_gates(n, f);
            if specs.len() < 10 {
                return Err(format!("only {} gates built at n = {n}", specs.len()).into());
            }
            for (i, spec) in specs.iter().enumerate() {
                for cnt in BATCHES {
                    let resident = cnt == 33;
                    let token = 0x6a7e_0000 + i as u64;
                    gate_case(
                        &name,
                        be.as_ref(),
                        &cpu,
                        spec,
                        n,
                        cnt,
                        resident,
                        token,
                        &mut rng,
                        &mut crng,
                    )?;
                }
            }
        }
        if dev == Dev::Cuda {
            let st = be.stats().since(&s0);
            for op in ["techc_eval", "floor_eval", "sign_eval", "bit_eval"] {
                let (d, _) = op_calls(&st, op);
                if d == 0 {
                    return Err(format!("{name}: no {op} ran on the device").into());
                }
            }
            if st.dcf_resident_batches == 0 {
                return Err(format!("{name}: no DCF batch was read in place").into());
            }
        }
    }
    Ok(())
}

/// 100,000 elements of GeLU's first gate (technique (c)), its selector floor, the GapARS
/// truncation and nExp on a 34-bit declared range (its Bit component), keys resident: equal to the CPU (CUDA only; on the CPU it would compare the
/// CPU with itself).
fn gate_large(dev: Dev) -> R {
    if dev == Dev::Cpu {
        return Ok(());
    }
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(22), Csprng::for_tests(22));
    let (n, f) = (50, 12);
    let s = smooth_specs_with(Smooth::Gelu, n, f, false, Prefer::Aes)?;
    // bert-base's softmax exponent: a 34-bit declared range (a Bit component's DPF clamp).
    let e = smooth_specs_in(Smooth::NExp, n, f, 34, Prefer::Keys)?;
    let specs = [
        s.gate1.clone(),
        s.select.clone(),
        floor_spec(n, 1 << (n - 2), 7, 1 << (n - 2 - 7), Wrap::Free, "arsgap"),
        e.gate1.clone(),
        e.select.clone(),
    ];
    for (name, be) in instances(dev, Var::One)? {
        for (i, spec) in specs.iter().enumerate() {
            gate_case(
                &name,
                be.as_ref(),
                &cpu,
                spec,
                n,
                100_000,
                true,
                0x6a7f_0000 + i as u64,
                &mut rng,
                &mut crng,
            )?;
        }
    }
    Ok(())
}

/// Descriptors that do not match their keys or shares are typed errors, the same on every
/// backend (checked before any device work).
fn gate_errors(dev: Dev) -> R {
    let mut crng = Csprng::for_tests(23);
    let (k0, _k1) = dcf::gen_batch(8, 16, 2, &[1, 2, 3, 4], &[7; 8], &mut crng)?;
    let (d0, d1) = dpf::gen_cmp_batch(8, &[1, 2, 3, 4], &mut crng)?;
    let (d0, d1) = (d0.to_bytes(), d1.to_bytes());
    let cuts = [100u64];
    let centers = [0u64, 100];
    let coeffs = [1u64; 4];
    let good = TechC {
        offset: 0,
        bits: 8,
        shift: 0,
        ring: 16,
        degree: 1,
        outputs: 1,
        cuts: &cuts,
        centers: &centers,
        coeffs: &coeffs,
        var: TechVar::View,
    };
    let xhat = [1u64, 2, 3, 4];
    let rpow = [0u64; 4];
    for (name, be) in instances(dev, Var::One)? {
        let ok = be.techc_eval(&good, 0, &k0, Shares::Host(&rpow), &xhat)?;
        eq(&format!("{name} output count"), ok.len(), 4)?;
        let bad_ring = TechC { ring: 17, ..good };
        match be.techc_eval(&bad_ring, 0, &k0, Shares::Host(&rpow), &xhat) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} ring mismatch: {other:?}").into()),
        }
        match be.techc_eval(&good, 1, &k0, Shares::Host(&rpow), &xhat) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} party mismatch: {other:?}").into()),
        }
        match be.techc_eval(&good, 0, &k0, Shares::Host(&rpow[..3]), &xhat) {
            Err(BackendError::LengthMismatch { .. }) => {}
            other => return Err(format!("{name} share length: {other:?}").into()),
        }
        match be.techc_eval(&good, 0, &k0, Shares::Host(&rpow[..3]), &xhat[..3]) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} key count: {other:?}").into()),
        }
        let short = [1u64];
        let bad_coeffs = TechC {
            coeffs: &short,
            ..good
        };
        match be.techc_eval(&bad_coeffs, 0, &k0, Shares::Host(&rpow), &xhat) {
            Err(BackendError::LengthMismatch { .. }) => {}
            other => return Err(format!("{name} coefficient count: {other:?}").into()),
        }
        let sign = SignDesc {
            offset: 0,
            bits: 9,
            ring: 16,
            lo: &[(0, 1)],
            hi: &[(0, 2)],
        };
        match be.sign_eval(&sign, 0, &k0, Shares::Host(&[0; 4]), &xhat) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} sign payload mismatch: {other:?}").into()),
        }
        let floor = FloorDesc {
            offset: 0,
            bits: 20,
            shift: 8,
            ring: 16,
            select: true,
            gamma: &[1],
            kappa: &[0],
        };
        match be.floor_eval(
            &floor,
            0,
            &k0,
            FloorWrap::Drop,
            Shares::Host(&[0; 12]),
            &xhat,
        ) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} floor view wider than ring: {other:?}").into()),
        }
        let bit = BitDesc {
            offset: 3,
            bits: 12,
            shift: 4,
            cuts: &[3],
            values: &[false, true],
        };
        let got = be.bit_eval(&bit, 0, &DpfView::view(KeyRef::detached(&d0))?, &xhat)?;
        eq(&format!("{name} bit output count"), got.len(), 4)?;
        let v1 = DpfView::view(KeyRef::detached(&d1))?;
        match be.bit_eval(&bit, 0, &v1, &xhat) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} bit party mismatch: {other:?}").into()),
        }
        match be.bit_eval(&bit, 1, &v1, &xhat[..3]) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} bit key count: {other:?}").into()),
        }
        let wide = BitDesc { shift: 3, ..bit };
        match be.bit_eval(&wide, 1, &v1, &xhat) {
            Err(BackendError::Gate(_)) => {}
            other => return Err(format!("{name} bit key width: {other:?}").into()),
        }
        let short = BitDesc {
            values: &[true],
            ..bit
        };
        match be.bit_eval(&short, 1, &v1, &xhat) {
            Err(BackendError::LengthMismatch { .. }) => {}
            other => return Err(format!("{name} bit values: {other:?}").into()),
        }
    }
    Ok(())
}

/// Opt-in timing (`SUF_GATE_TIMING=1`; prints, asserts equality only): bert-tiny-sized gate
/// batches (65,536 elements, n = 50, keys resident) through `GateSpec::eval_shares` on the
/// CUDA backend (fused gate path) and on the CPU backend, median of 5 after a warm-up.
fn gate_timing(g: &CudaBackend) -> R {
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(24), Csprng::for_tests(24));
    let (n, f) = (50u32, 12u32);
    // Batch sizes from SUF_GATE_TIMING_CNT (comma-separated), default 65,536.
    let counts: Vec<usize> = std::env::var("SUF_GATE_TIMING_CNT")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![65_536]);
    let gelu = smooth_specs_with(Smooth::Gelu, n, f, false, Prefer::Aes)?;
    let nexp = smooth_specs_with(Smooth::NExp, n, f, false, Prefer::Aes)?;
    let specs = [
        gelu.gate1.clone(),
        gelu.select.clone(),
        nexp.gate1.clone(),
        floor_spec(n, 1 << (n - 2), 7, 1 << (n - 2 - 7), Wrap::Free, "arsgap"),
        relu_spec(n),
    ];
    let be = g.sibling()?;
    let w = width(n)?;
    // Launch shapes from SUF_GATE_TIMING_SHAPES ("auto" or e.g. "64t4", "256r32"), default auto.
    let shapes: Vec<(u32, Option<AesTable>, String)> = std::env::var("SUF_GATE_TIMING_SHAPES")
        .unwrap_or_else(|_| "auto".into())
        .split(',')
        .map(|w| {
            let w = w.trim();
            let t = if w.ends_with("t4") {
                Some(AesTable::Shared4)
            } else if w.ends_with("r32") {
                Some(AesTable::Replicated32)
            } else {
                None
            };
            let b = w
                .trim_end_matches("t4")
                .trim_end_matches("r32")
                .parse()
                .unwrap_or(0);
            (b, t, w.to_string())
        })
        .collect();
    let runs = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| counts.iter().map(move |&c| (i, c, s)));
    for (i, cnt, spec) in runs {
        let r: Vec<u64> = rng.vec(cnt).iter().map(|&x| x & w.mask()).collect();
        let xhat: Vec<u64> = rng.vec(cnt).iter().map(|&x| x & w.mask()).collect();
        let keys = spec.deal(n, &r, &mut crng)?;
        for party in 0..2u8 {
            let blob = &keys[party as usize];
            let (buf, off) = stream_with(blob);
            let token = 0x7100_0000 + ((2 * i as u64 + party as u64) << 24) + cnt as u64;
            be.attach_keys(token, &buf)?;
            let key = KeyRef {
                bytes: &buf[off..off + blob.len()],
                origin: Some(KeyOrigin {
                    stream: token,
                    offset: off as u64,
                    on_host: true,
                }),
            };
            let time = |b: &dyn Backend| -> Result<(f64, Vec<u64>), Failed> {
                let mut v = spec.eval_shares(n, party, key, &xhat, b)?;
                let mut ts = Vec::new();
                for _ in 0..11 {
                    let t = std::time::Instant::now();
                    v = spec.eval_shares(n, party, key, &xhat, b)?;
                    ts.push(t.elapsed().as_secs_f64() * 1e3);
                }
                ts.sort_by(f64::total_cmp);
                Ok((ts[5], v))
            };
            let (tc, vc) = time(&cpu)?;
            for (block, table, shape) in &shapes {
                be.set_fss_block(*block);
                be.set_aes_table(table.unwrap_or(AesTable::Replicated32));
                let s0 = be.stats();
                let (tg, vg) = time(&be)?;
                let st = be.stats().since(&s0);
                same(&format!("{} party {party} {shape}", spec.label), &vg, &vc)?;
                let dev: Vec<String> = st
                    .ops
                    .iter()
                    .map(|o| {
                        let ms = (o.device_ms + o.host_ms) / 12.0;
                        format!("{} {}d/{}h {ms:.3} ms", o.op, o.device_calls, o.host_calls)
                    })
                    .collect();
                let label = &spec.label;
                eprintln!(
                    "gate_timing {label} party {party} cnt {cnt} {shape}: cuda {tg:.3} ms, \
                     cpu {tc:.2} ms [{}]",
                    dev.join(", ")
                );
            }
            be.detach_keys(token);
        }
    }
    Ok(())
}

/// `dtoh_staged` (the dealer's downloads through pinned staging) returns exactly the bytes
/// of the device buffer at lengths around its 16 MiB chunks, twice (the staging buffers are
/// reused), and refuses a length beyond the buffer.
fn staged_download(g: &CudaBackend) -> R {
    let be = g.sibling()?;
    const CHUNK: usize = 16 << 20;
    let mut rng = Rng(77);
    let words = (5 * CHUNK / 2) / 8 + 3;
    let host: Vec<u8> = rng
        .vec(words)
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let d = be.htod(&host)?;
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7, host.len()] {
        for _ in 0..2 {
            let got = be.dtoh_staged(&d, len)?;
            same(&format!("dtoh_staged of {len} bytes"), &got, &host[..len])?;
        }
    }
    if be.dtoh_staged(&d, host.len() + 1).is_ok() {
        return Err("dtoh_staged beyond the buffer was accepted".into());
    }
    Ok(())
}

/// The reusable pinned I/O buffers of the device calls (`src/io.rs`): on ONE instance, every
/// gate method (technique (c), floor with a free wrap, a DCF wrap and none, sign, bit),
/// `dcf_eval` (scalar and vector payloads) and the DPF evaluations at batch sizes that grow
/// and shrink the buffers (33, 2^20, 1, 0, 31), each call twice in a row, gate keys resident
/// (party 0's shares unpacked in place, party 1's from seeds) and detached, bit for bit
/// against the CPU; the I/O timing counters; then two threads calling the one instance at
/// once (a second set of buffers).
fn io_reuse(g: &CudaBackend) -> R {
    let be = g.sibling()?;
    be.set_io_timing(true);
    let cpu = CpuBackend::new();
    let (mut rng, mut crng) = (Rng(25), Csprng::for_tests(25));
    let (n, f) = (50u32, 12u32);
    let gelu = smooth_specs_with(Smooth::Gelu, n, f, false, Prefer::Aes)?;
    let nexp = smooth_specs_in(Smooth::NExp, n, f, 34, Prefer::Keys)?;
    let specs = [
        gelu.gate1.clone(),
        floor_spec(n, 1 << (n - 2), 7, 1 << (n - 2 - 7), Wrap::Free, "arsgap"),
        floor_spec(n, 0, f, 0, Wrap::Dcf, "tr"),
        floor_gate(20, true, Wrap::Drop),
        relu_spec(n),
        nexp.gate1.clone(),
    ];
    let s0 = be.stats();
    let t0 = be.io_timing();
    for (k, cnt) in [33usize, 1 << 20, 1, 0, 31].into_iter().enumerate() {
        for (i, spec) in specs.iter().enumerate() {
            let token = 0x10e0_0000 + ((k as u64) << 8) + i as u64;
            gate_case(
                "cuda", &be, &cpu, spec, n, cnt, true, token, &mut rng, &mut crng,
            )?;
        }
        for p in [1, 3] {
            dcf_case(
                "cuda io",
                &be,
                &cpu,
                (50, 50, p),
                cnt,
                1,
                &mut rng,
                &mut crng,
            )?;
        }
        let c = cnt.min(200_000);
        let alphas = alphas_for(50, c, &mut rng);
        let (k0, _) = dpf::gen_cmp_batch(50, &alphas, &mut crng)?;
        let xs = points(50, &alphas, 1, &mut rng);
        let at = format!("cuda io dpf count={c}");
        let want = cpu.dpf_lt_eval(&k0, &xs, 1)?;
        twice(&format!("{at} lt"), &want, || be.dpf_lt_eval(&k0, &xs, 1))?;
        let want = cpu.dpf_eq_eval(&k0, &xs)?;
        twice(&format!("{at} eq"), &want, || be.dpf_eq_eval(&k0, &xs))?;
    }
    let st = be.stats().since(&s0);
    let ops = [
        "techc_eval",
        "floor_eval",
        "sign_eval",
        "bit_eval",
        "dcf_eval",
        "dpf_lt_eval",
        "dpf_eq_eval",
    ];
    for op in ops {
        if op_calls(&st, op).0 == 0 {
            return Err(format!("no {op} ran on the device").into());
        }
    }
    let tm = be.io_timing().since(&t0);
    let device_calls: u64 = ops.iter().map(|op| op_calls(&st, op).0).sum();
    // Each device call of these ops makes one upload and one download (the DCFs inside the
    // gates are kernels of the gate call).
    eq("timed device calls", tm.calls, device_calls)?;
    if tm.h2d_bytes == 0 || tm.d2h_bytes == 0 || !(tm.h2d_ms > 0.0 && tm.kernels_ms > 0.0) {
        return Err(format!("timing counters: {tm:?}").into());
    }
    // Two threads on the one instance: the second takes a set of its own.
    let mut sets = Vec::new();
    for cnt in [5000usize, 150_000] {
        let alphas = alphas_for(50, cnt, &mut rng);
        let (k0, _) = dcf::gen_batch(50, 50, 1, &alphas, &rng.vec(cnt), &mut crng)?;
        let xs = points(50, &alphas, 1, &mut rng);
        let want = cpu.dcf_eval(&k0, &xs, 1)?;
        sets.push((k0, xs, want));
    }
    std::thread::scope(|s| -> R {
        let hs: Vec<_> = sets
            .iter()
            .enumerate()
            .map(|(j, (k, xs, want))| {
                let be = &be;
                s.spawn(move || -> Result<(), String> {
                    for r in 0..8 {
                        let d = be.dcf_eval(k, xs, 1).map_err(|e| e.to_string())?;
                        same(&format!("thread {j} round {r}"), &d, want)
                            .map_err(|e| format!("{e:?}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "a thread panicked")??;
        }
        Ok(())
    })
}

/// candle's `test_device!`: each body once per backend.
macro_rules! test_backends {
    ($($body:ident),* $(,)?) => {
        vec![$((stringify!($body), $body as fn(Dev) -> R)),*]
    };
}

const NO_GPU: &str = "no CUDA GPU (driver, NVRTC or device missing)";

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let generic = test_backends!(
        elementwise,
        gemm,
        resident_handles,
        dcf_scalar,
        dcf_vector,
        dcf_million,
        dpf,
        dcf_attached_stream,
        size_rule,
        two_instances_at_once,
        gate_components,
        gate_large,
        gate_errors,
    );
    for (name, body) in generic {
        trials.push(Trial::test(format!("{name}::cpu"), move || body(Dev::Cpu)));
        trials.push(Trial::ignorable_test(format!("{name}::cuda"), move || {
            if !cuda_available() {
                return Ok(Completion::ignored_with(NO_GPU));
            }
            body(Dev::Cuda).map(|()| Completion::Completed)
        }));
    }
    type CudaBody = fn(&CudaBackend) -> R;
    let cuda_only: [(&str, CudaBody); 7] = [
        ("aes_permutation", aes_permutation),
        ("io_reuse", io_reuse),
        ("received_stream", received_stream),
        ("staged_download", staged_download),
        ("device_api", device_api),
        ("keys_too_large", keys_too_large),
        ("device_ordinals", device_ordinals),
    ];
    for (name, body) in cuda_only {
        trials.push(Trial::ignorable_test(format!("{name}::cuda"), move || {
            let Some(g) = (if cuda_available() { gpu() } else { None }) else {
                return Ok(Completion::ignored_with(NO_GPU));
            };
            body(g).map(|()| Completion::Completed)
        }));
    }
    trials.push(Trial::ignorable_test("gate_timing::cuda", || {
        if std::env::var("SUF_GATE_TIMING").as_deref() != Ok("1") {
            return Ok(Completion::ignored_with("set SUF_GATE_TIMING=1"));
        }
        let Some(g) = (if cuda_available() { gpu() } else { None }) else {
            return Ok(Completion::ignored_with(NO_GPU));
        };
        gate_timing(g).map(|()| Completion::Completed)
    }));
    trials.push(Trial::test("mismatch_report", mismatch_report));
    trials.push(Trial::ignorable_test(
        "kernels_compile_with_nvrtc",
        kernels_compile_with_nvrtc,
    ));
    trials.push(Trial::test("open_errors_are_typed", || {
        open_errors_are_typed().map(|_| ())
    }));
    libtest_mimic::run(&args, trials).exit();
}
