//! The FSS entry points of the CPU backend: they reconstruct the functions they share and
//! agree with the suf-fss evaluators they wrap, whatever the thread count.

use suf_backend::{Backend, BackendError, CpuBackend};
use suf_core::prg::Csprng;
use suf_fss::{dcf, dpf};

#[test]
fn dcf_shares_reconstruct() {
    let (n, m, p, t) = (16u32, 37u32, 2usize, 3usize);
    let mut rng = Csprng::for_tests(21);
    let count = 50;
    let mask_n = (1u64 << n) - 1;
    let mask_m = (1u64 << m) - 1;
    let alphas: Vec<u64> = (0..count).map(|_| rng.next_u64() & mask_n).collect();
    let betas: Vec<u64> = (0..count * p).map(|_| rng.next_u64() & mask_m).collect();
    let (k0, k1) = dcf::gen_batch(n, m, p, &alphas, &betas, &mut rng).unwrap();
    let mut xs: Vec<u64> = (0..count * t).map(|_| rng.next_u64() & mask_n).collect();
    // Hit the boundary exactly for some keys.
    for i in 0..count {
        xs[i * t] = alphas[i];
        xs[i * t + 1] = alphas[i].wrapping_sub(1) & mask_n;
    }
    for threads in [1, 2] {
        let be = CpuBackend::with_threads(threads).unwrap();
        let y0 = be.dcf_eval(&k0, &xs, t).unwrap();
        let y1 = be.dcf_eval(&k1, &xs, t).unwrap();
        assert_eq!(y0, k0.eval_multi(&xs, t).unwrap());
        assert_eq!(y0.len(), count * t * p);
        for i in 0..count {
            for j in 0..t {
                let x = xs[i * t + j];
                for q in 0..p {
                    let idx = (i * t + j) * p + q;
                    let want = if x < alphas[i] { betas[i * p + q] } else { 0 };
                    assert_eq!(y0[idx].wrapping_add(y1[idx]) & mask_m, want);
                }
            }
        }
    }
    // A zero-copy view of the serialized batch evaluates identically; attaching a stream is a
    // no-op on the CPU.
    let be = CpuBackend::new();
    let bytes = k1.to_bytes();
    let origin = Some(suf_fss::KeyOrigin {
        stream: 3,
        offset: 128,
        on_host: true,
    });
    let view = dcf::DcfKeys::view(suf_fss::KeyRef {
        bytes: &bytes,
        origin,
    })
    .unwrap();
    be.attach_keys(3, &bytes).unwrap();
    assert_eq!(
        be.dcf_eval(&view, &xs, t).unwrap(),
        be.dcf_eval(&k1, &xs, t).unwrap()
    );
    assert_eq!(view.origin().unwrap().offset, 128 + 64);
    assert!(matches!(
        be.dcf_eval(&k0, &xs[1..], t).unwrap_err(),
        BackendError::Fss(suf_fss::FssError::LengthMismatch { .. })
    ));
}

#[test]
fn dpf_comparison_and_point_reconstruct() {
    let (n, t) = (20u32, 2usize);
    let mut rng = Csprng::for_tests(22);
    let count = 40;
    let mask_n = (1u64 << n) - 1;
    let alphas: Vec<u64> = (0..count).map(|_| rng.next_u64() & mask_n).collect();
    let (k0, k1) = dpf::gen_cmp_batch(n, &alphas, &mut rng).unwrap();
    let mut xs: Vec<u64> = (0..count * t).map(|_| rng.next_u64() & mask_n).collect();
    for i in 0..count / 2 {
        xs[i * t] = alphas[i];
    }
    let be = CpuBackend::with_threads(2).unwrap();
    let l0 = be.dpf_lt_eval(&k0, &xs, t).unwrap();
    let l1 = be.dpf_lt_eval(&k1, &xs, t).unwrap();
    assert_eq!(l0, k0.eval_lt_multi(&xs, t).unwrap());
    for (e, x) in xs.iter().enumerate() {
        assert_eq!(l0[e] ^ l1[e], u8::from(*x < alphas[e / t]), "element {e}");
    }
    let pts: Vec<u64> = (0..count)
        .map(|i| if i % 2 == 0 { alphas[i] } else { xs[i] })
        .collect();
    let e0 = be.dpf_eq_eval(&k0, &pts).unwrap();
    let e1 = be.dpf_eq_eval(&k1, &pts).unwrap();
    for i in 0..count {
        assert_eq!(e0[i] ^ e1[i], u8::from(pts[i] == alphas[i]));
    }
    assert!(be.dpf_lt_eval(&k0, &xs[1..], t).is_err());
    assert!(be.dpf_eq_eval(&k0, &xs).is_err());
}
