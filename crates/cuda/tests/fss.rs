//! GPU FSS kernels against the CPU reference, bit for bit: AES, DPF comparison / point
//! function, DCF. Skips (passes with a note) without a GPU.

mod common;

use common::{gpu, mask, Rng, WIDTHS};
use suf_backend::{Backend, CpuBackend};
use suf_core::prg::{Csprng, FixedKeyAes};
use suf_cuda::{compile, AesTable, CudaError};
use suf_fss::{dcf, dpf};

const TABLES: [AesTable; 2] = [AesTable::Shared4, AesTable::Replicated32];

/// Every kernel compiles with NVRTC wherever NVRTC is installed (no GPU needed).
#[test]
fn kernels_compile_with_nvrtc() {
    if !compile::nvrtc_available() {
        eprintln!("SKIP: NVRTC not installed; kernel compilation not checked");
        return;
    }
    let c = compile::compile("sm_90").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&c.cubin[..4], b"\x7fELF");
    if !c.log.is_empty() {
        eprintln!("{}", c.log);
    }
    eprintln!(
        "NVRTC {:?} compiled {} bytes of sm_90 CUBIN",
        c.nvrtc_version,
        c.cubin.len()
    );
}

#[test]
fn aes_permutation_matches_aes_crate() {
    let Some(be) = gpu() else { return };
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
        for t in TABLES {
            assert_eq!(be.aes_permute(t, &blocks).unwrap(), want, "{t:?} len {len}");
        }
    }
}

fn dpf_points(n: u32, alphas: &[u64], t: usize, rng: &mut Rng) -> Vec<u64> {
    let dm = mask(n);
    let mut xs = Vec::with_capacity(alphas.len() * t);
    for &a in alphas {
        for j in 0..t {
            xs.push(match (j + a as usize) % 5 {
                0 => a,
                1 => a.wrapping_sub(1) & dm,
                2 => a.wrapping_add(1) & dm,
                3 => rng.next(), // unreduced: the kernel must reduce mod 2^n like the CPU
                _ => rng.next() & dm,
            });
        }
    }
    xs
}

#[test]
fn dpf_comparison_and_point_bit_exact() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng(2);
    let mut crng = Csprng::for_tests(2);
    for n in [1u32, 2, 7, 8, 9, 13, 37, 50, 63, 64] {
        for (count, t) in [
            (0usize, 1usize),
            (1, 1),
            (1, 3),
            (37, 1),
            (129, 2),
            (4099, 1),
        ] {
            let dm = mask(n);
            let mut alphas: Vec<u64> = (0..count).map(|_| rng.next() & dm).collect();
            if count > 3 {
                alphas[0] = 0;
                alphas[1] = dm;
                alphas[2] = dm >> 1;
            }
            let (k0, k1) = dpf::gen_cmp_batch(n, &alphas, &mut crng).unwrap();
            let xs = dpf_points(n, &alphas, t, &mut rng);
            for k in [&k0, &k1] {
                let want = cpu.dpf_lt_eval(k, &xs, t).unwrap();
                for tab in TABLES {
                    be.set_aes_table(tab);
                    let got = be.dpf_lt_eval(k, &xs, t).unwrap();
                    assert_eq!(got, want, "lt n={n} count={count} t={t} {tab:?}");
                    // Determinism: a second run gives the same bytes.
                    assert_eq!(be.dpf_lt_eval(k, &xs, t).unwrap(), want);
                }
                if t == 1 {
                    let want = cpu.dpf_eq_eval(k, &xs).unwrap();
                    assert_eq!(be.dpf_eq_eval(k, &xs).unwrap(), want, "eq n={n}");
                }
            }
            // The shares reconstruct the comparison.
            if count > 0 {
                let a = be.dpf_lt_eval(&k0, &xs, t).unwrap();
                let b = be.dpf_lt_eval(&k1, &xs, t).unwrap();
                for (e, (&x, (&u, &v))) in xs.iter().zip(a.iter().zip(&b)).enumerate() {
                    assert_eq!(u ^ v, ((x & dm) < alphas[e / t]) as u8);
                }
            }
        }
    }
    be.set_aes_table(AesTable::Replicated32);
}

#[test]
fn dpf_resident_concatenated_batches() {
    let Some(be) = gpu() else { return };
    let mut rng = Rng(3);
    let mut crng = Csprng::for_tests(3);
    let n = 50;
    let alphas: Vec<u64> = (0..1000).map(|_| rng.next() & mask(n)).collect();
    let (a, _) = dpf::gen_cmp_batch(n, &alphas[..313], &mut crng).unwrap();
    let (b, _) = dpf::gen_cmp_batch(n, &alphas[313..], &mut crng).unwrap();
    let xs = dpf_points(n, &alphas, 1, &mut rng);
    let mut want = a.eval_lt_batch(&xs[..313]).unwrap();
    want.extend(b.eval_lt_batch(&xs[313..]).unwrap());
    let (ab, bb) = (a.to_bytes(), b.to_bytes());
    let dk = be.upload_dpf_bytes(&[&ab, &bb]).unwrap();
    assert_eq!(dk.count(), 1000);
    assert_eq!(be.dpf_eval_resident(&dk, &xs, 1, false).unwrap(), want);
    // Mismatched batches and malformed bytes are typed errors.
    let (c, _) = dpf::gen_cmp_batch(37, &[1, 2], &mut crng).unwrap();
    let cb = c.to_bytes();
    assert!(matches!(
        be.upload_dpf_bytes(&[&ab, &cb]),
        Err(CudaError::BadKey(_))
    ));
    assert!(matches!(
        be.upload_dpf_bytes(&[&ab[..ab.len() - 1]]),
        Err(CudaError::BadKey(_))
    ));
    assert!(matches!(
        be.dpf_eval_resident(&dk, &xs[1..], 1, false),
        Err(CudaError::Backend(_))
    ));
}

#[test]
fn dcf_bit_exact() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng(4);
    let mut crng = Csprng::for_tests(4);
    for n in WIDTHS {
        for m in WIDTHS {
            for (count, t) in [(0usize, 1usize), (1, 1), (1, 2), (77, 3), (2051, 1)] {
                let dm = mask(n);
                let mut alphas: Vec<u64> = (0..count).map(|_| rng.next() & dm).collect();
                if count > 2 {
                    alphas[0] = 0;
                    alphas[1] = dm;
                }
                let betas = rng.vec(count);
                let (k0, k1) = dcf::gen_batch(n, m, 1, &alphas, &betas, &mut crng).unwrap();
                let xs = dpf_points(n, &alphas, t, &mut rng);
                let mut got = Vec::new();
                for k in [&k0, &k1] {
                    let want = cpu.dcf_eval(k, &xs, t).unwrap();
                    for tab in TABLES {
                        be.set_aes_table(tab);
                        let g = be.dcf_eval(k, &xs, t).unwrap();
                        assert_eq!(g, want, "n={n} m={m} count={count} t={t} {tab:?}");
                        assert_eq!(be.dcf_eval(k, &xs, t).unwrap(), want);
                    }
                    got.push(want);
                }
                for e in 0..xs.len() {
                    let y = got[0][e].wrapping_add(got[1][e]) & mask(m);
                    let want = if xs[e] & dm < alphas[e / t] {
                        betas[e / t] & mask(m)
                    } else {
                        0
                    };
                    assert_eq!(y, want);
                }
            }
        }
    }
    be.set_aes_table(AesTable::Replicated32);
    // Payloads beyond the GPU kernels go to the CPU (documented) and still agree.
    let alphas: Vec<u64> = (0..50).map(|_| rng.next() & mask(37)).collect();
    let betas = rng.vec(50 * 17);
    let (k0, _) = dcf::gen_batch(37, 37, 17, &alphas, &betas, &mut crng).unwrap();
    let xs = dpf_points(37, &alphas, 2, &mut rng);
    assert!(!suf_cuda::CudaBackend::dcf_supported(37, 17));
    assert_eq!(
        be.dcf_eval(&k0, &xs, 2).unwrap(),
        cpu.dcf_eval(&k0, &xs, 2).unwrap()
    );
    let dk = be.upload_dcf(&k0).unwrap();
    assert!(matches!(
        be.dcf_eval_resident(&dk, &xs, 2),
        Err(CudaError::Unsupported(_))
    ));
    // Length errors are the CPU backend's.
    assert_eq!(
        be.dcf_eval(&k0, &xs[1..], 2).unwrap_err(),
        cpu.dcf_eval(&k0, &xs[1..], 2).unwrap_err()
    );
}

/// Vector payloads (technique (c): payload (1, r, …, r^d)) on the GPU, bit for bit.
#[test]
fn dcf_vector_payload_bit_exact() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng(5);
    let mut crng = Csprng::for_tests(5);
    for n in WIDTHS {
        for (m, p) in [
            (1u32, 2usize),
            (7, 3),
            (37, 3),
            (50, 3),
            (64, 2),
            (64, 16),
            (13, 16),
            (50, 5),
        ] {
            assert!(suf_cuda::CudaBackend::dcf_supported(m, p));
            for (count, t) in [(0usize, 1usize), (1, 1), (3, 2), (515, 1)] {
                let dm = mask(n);
                let mut alphas: Vec<u64> = (0..count).map(|_| rng.next() & dm).collect();
                if count > 2 {
                    alphas[0] = 0;
                    alphas[1] = dm;
                }
                let betas = rng.vec(count * p);
                let (k0, k1) = dcf::gen_batch(n, m, p, &alphas, &betas, &mut crng).unwrap();
                let xs = dpf_points(n, &alphas, t, &mut rng);
                let mut shares = Vec::new();
                for k in [&k0, &k1] {
                    let want = cpu.dcf_eval(k, &xs, t).unwrap();
                    for tab in TABLES {
                        be.set_aes_table(tab);
                        let got = be.dcf_eval(k, &xs, t).unwrap();
                        assert_eq!(got, want, "n={n} m={m} p={p} count={count} t={t} {tab:?}");
                    }
                    shares.push(want);
                }
                for e in 0..xs.len() {
                    for q in 0..p {
                        let y = shares[0][e * p + q].wrapping_add(shares[1][e * p + q]) & mask(m);
                        let want = if xs[e] & dm < alphas[e / t] {
                            betas[(e / t) * p + q] & mask(m)
                        } else {
                            0
                        };
                        assert_eq!(y, want);
                    }
                }
            }
        }
    }
    be.set_aes_table(AesTable::Replicated32);
}
