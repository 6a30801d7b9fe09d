//! The compiler's spec format (suf-compiler): a `GateSpec` as JSON, validated against a ring
//! width from the first byte; a valid spec is evaluated in the clear, and a small one is also
//! run as the two-party protocol (dealer, both parties, reconstruction), which must equal the
//! clear evaluation on every output bit the spec promises.
//!
//! `n` = 8 + (byte 0 mod 57) | JSON of the spec
#![no_main]

use suf_backend::CpuBackend;
use suf_compiler::{run_direct, Component, GateSpec, Wrap};
use suf_core::prg::Csprng;

/// Largest total number of intervals run through the protocol (key generation cost).
const MAX_PIECES: usize = 48;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&b, json)) = data.split_first() else {
        return;
    };
    let n = 8 + u32::from(b % 57);
    let Ok(spec) = serde_json::from_slice::<GateSpec>(json) else {
        return;
    };
    if spec.validate(n).is_err() {
        return;
    }
    let mask = |bits: u32| if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let xs: Vec<u64> = [0u64, 1, mask(n), mask(n) / 2, 0x9e37_79b9_7f4a_7c15]
        .iter()
        .map(|x| x & mask(n))
        .collect();
    let plain = spec.eval_batch(n, &xs);
    assert_eq!(plain.len(), spec.outputs * xs.len());
    let pieces: usize = spec
        .parts
        .iter()
        .map(|p| match &p.comp {
            Component::Poly(q) => q.intervals(),
            _ => 2,
        })
        .sum();
    // A Free-wrap floor is exact only under its input guarantee; skip the protocol check.
    let guaranteed = spec
        .parts
        .iter()
        .any(|p| matches!(&p.comp, Component::Floor(f) if f.wrap == Wrap::Free));
    if pieces > MAX_PIECES || guaranteed {
        return;
    }
    let mut rng = Csprng::from_seed([7; 16]);
    let Ok((out, _, _)) = run_direct(&spec, n, &xs, &CpuBackend::new(), &mut rng) else {
        panic!("a valid spec failed in the protocol");
    };
    for o in 0..spec.outputs {
        let m = mask(spec.valid_bits(n, o));
        for e in 0..xs.len() {
            let i = o * xs.len() + e;
            assert_eq!(out[i] & m, plain[i] & m, "output {o}, x = {}", xs[e]);
        }
    }
});
