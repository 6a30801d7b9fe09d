//! Length buckets: the padded program at L_b with public valid length L equals the unpadded
//! program for L tokens (with the bucket's numerics) bit for bit, for every L in 1..=L_b;
//! Party equals Plain on the padded program; mean pooling and the decoders' last position
//! ignore the padding; bad lengths are typed errors.

mod common;
use common::tiny;
use std::collections::BTreeMap;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::{float, ModelConfig, Weights};
use suf_nn::bucket::{build_bucket, build_unpadded, PAD_BIAS, ROW_MASK};
use suf_nn::layers::Mode;
use suf_nn::model::{build, client_input};
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::plain::run_plain;

fn ids(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 7 + 3 + salt * 11) % 40)
        .collect()
}

/// For every L in 1..=L_b: padded (Plain) == unpadded with the bucket's numerics (Plain), and
/// the result tracks the float model on the L real tokens. Party == Plain for `party_at`.
fn check(cfg: &ModelConfig, name: &str, mode: Mode, n: u32, lb: usize, party_at: &[usize]) {
    let w = Weights::synthetic(5);
    let fp = FixedPoint::new(n, 12).unwrap();
    let be = CpuBackend::new();
    let padded = build_bucket(cfg, &w, fp, mode, lb, None).unwrap();
    let bucket = padded.bucket.clone().unwrap();
    assert_eq!(bucket.len, lb);
    let fp0 = padded.prog.fingerprint();
    for l in 1..=lb {
        let t = ids(l, l as u32);
        let x = client_input(cfg, &w, fp, &t).unwrap();
        let mut inp = bucket.public_inputs(l).unwrap();
        inp.insert("x".into(), bucket.pad_input(&x, cfg.hidden).unwrap());
        let got = run_plain(&padded.prog, &be, &inp, &padded.private).unwrap();
        let reference = build_unpadded(cfg, &w, fp, mode, l, lb, None).unwrap();
        let mut rin = BTreeMap::new();
        rin.insert("x".to_string(), x.clone());
        let want = run_plain(&reference.prog, &be, &rin, &reference.private).unwrap();
        assert_eq!(got, want, "{name}: padded at {lb} != unpadded at {l}");
        // Independently: the float model on the L real tokens.
        let fl = float::forward(cfg, &w, std::slice::from_ref(&t)).unwrap();
        let refv = if cfg.family.is_encoder() {
            fl.pooled.unwrap().remove(0)
        } else {
            fl.logits.unwrap().remove(0)
        };
        let out: Vec<f64> = got[0].iter().map(|&v| fp.decode(v)).collect();
        let cos = float::cosine(&out, &refv);
        assert!(cos > 0.99, "{name} L = {l}: cosine to float {cos}");
        if party_at.contains(&l) {
            let mut rng = Csprng::for_tests(l as u64);
            let r = run_two_party(
                &padded.prog,
                &be,
                &inp,
                &padded.private,
                Link::Mem,
                &mut rng,
            )
            .unwrap();
            assert!(r.matches_plain(), "{name} L = {l}: Party != Plain");
            assert_eq!(r.outputs, want);
        }
    }
    // One program for every length.
    assert_eq!(padded.prog.fingerprint(), fp0);
}

#[test]
fn bert_every_length_up_to_8() {
    check(&tiny("bert-tiny"), "bert", Mode::Public, 50, 8, &[1, 5, 8]);
}

#[test]
fn bert_private_weights_narrow_ring_two_round_division() {
    // 37 bits: the mean's division by a non-power of two takes two rounds (pre-shift by
    // ⌊log2 L⌋, selected by public inputs).
    check(&tiny("bert-tiny"), "bert37", Mode::Private, 37, 7, &[3, 7]);
}

#[test]
fn bert_late_normalisation_bucket() {
    // d_head = 4 < L_b = 12: the bucket's attention normalises after e·V, for every L
    // (also those below the head dimension, which alone would not).
    let mut cfg = tiny("bert-tiny");
    cfg.head_dim = 4;
    cfg.heads = 4;
    cfg.kv_heads = 4;
    check(&cfg, "bert d4", Mode::Public, 50, 12, &[2]);
}

#[test]
fn mpnet_relative_bias() {
    check(&tiny("mpnet"), "mpnet", Mode::Public, 50, 6, &[4]);
}

#[test]
fn gpt2_last_real_position() {
    check(&tiny("gpt2"), "gpt2", Mode::Public, 50, 8, &[1, 6]);
}

#[test]
fn llama_last_real_position() {
    check(&tiny("llama2-7b"), "llama", Mode::Public, 48, 6, &[2, 6]);
}

/// The masks matter: without them the padded run differs (so the equality above can fail).
#[test]
fn without_the_masks_padding_leaks_in() {
    let cfg = tiny("bert-tiny");
    let w = Weights::synthetic(5);
    let fp = FixedPoint::new(50, 12).unwrap();
    let be = CpuBackend::new();
    let lb = 8;
    let padded = build_bucket(&cfg, &w, fp, Mode::Public, lb, None).unwrap();
    let bucket = padded.bucket.clone().unwrap();
    let l = 5;
    let x = client_input(&cfg, &w, fp, &ids(l, 1)).unwrap();
    let good = bucket.public_inputs(l).unwrap();
    let run = |inp: &BTreeMap<String, Vec<u64>>| {
        let mut inp = inp.clone();
        inp.insert("x".into(), bucket.pad_input(&x, cfg.hidden).unwrap());
        run_plain(&padded.prog, &be, &inp, &padded.private).unwrap()
    };
    let base = run(&good);
    let mut no_bias = good.clone();
    no_bias.insert(PAD_BIAS.into(), vec![0; lb]);
    assert_ne!(run(&no_bias), base, "the padding bias changed nothing");
    let mut all_rows = good.clone();
    all_rows.insert(ROW_MASK.into(), vec![1; lb]);
    assert_ne!(run(&all_rows), base, "the row mask changed nothing");
}

/// At L = L_b the padded program equals the default program for L_b tokens, and at shorter
/// L it stays within the gates' rounding of the default program for L tokens.
#[test]
fn against_the_default_programs() {
    let be = CpuBackend::new();
    let w = Weights::synthetic(5);
    let fp = FixedPoint::new(50, 12).unwrap();
    for name in ["bert-tiny", "gpt2"] {
        let cfg = tiny(name);
        let lb = 8;
        let padded = build_bucket(&cfg, &w, fp, Mode::Public, lb, None).unwrap();
        let bucket = padded.bucket.clone().unwrap();
        for l in [3, lb] {
            let x = client_input(&cfg, &w, fp, &ids(l, 2)).unwrap();
            let mut inp = bucket.public_inputs(l).unwrap();
            inp.insert("x".into(), bucket.pad_input(&x, cfg.hidden).unwrap());
            let got = run_plain(&padded.prog, &be, &inp, &padded.private).unwrap();
            let def = build(&cfg, &w, fp, Mode::Public, l, None).unwrap();
            let mut rin = BTreeMap::new();
            rin.insert("x".to_string(), x);
            let want = run_plain(&def.prog, &be, &rin, &def.private).unwrap();
            if l == lb {
                assert_eq!(got, want, "{name}: padded at full length != default");
            } else {
                let a: Vec<f64> = got[0].iter().map(|&v| fp.decode(v)).collect();
                let b: Vec<f64> = want[0].iter().map(|&v| fp.decode(v)).collect();
                let cos = float::cosine(&a, &b);
                assert!(cos > 0.999, "{name} L = {l}: cosine to default {cos}");
            }
        }
    }
}

#[test]
fn bad_lengths_are_errors() {
    let cfg = tiny("bert-tiny");
    let w = Weights::synthetic(5);
    let fp = FixedPoint::new(50, 12).unwrap();
    let padded = build_bucket(&cfg, &w, fp, Mode::Public, 4, None).unwrap();
    let b = padded.bucket.clone().unwrap();
    assert!(b.public_inputs(0).is_err());
    assert!(b.public_inputs(5).is_err());
    assert!(b.pad_input(&[0; 5 * 16], 16).is_err());
    assert!(b.pad_input(&[0; 17], 16).is_err());
    assert!(build_unpadded(&cfg, &w, fp, Mode::Public, 5, 4, None).is_err());
    assert!(build_unpadded(&cfg, &w, fp, Mode::Public, 0, 4, None).is_err());
    assert!(build_bucket(&cfg, &w, fp, Mode::Public, 0, None).is_err());
    // A missing public input is the interpreter's typed error.
    let mut inp = b.public_inputs(2).unwrap();
    inp.remove(ROW_MASK);
    inp.insert("x".into(), vec![0; 4 * 16]);
    let e = run_plain(&padded.prog, &CpuBackend::new(), &inp, &padded.private).unwrap_err();
    assert!(e.to_string().contains(ROW_MASK), "{e}");
    // A ring too narrow for the model's bucket is refused, not built wrong.
    let narrow = FixedPoint::new(30, 12).unwrap();
    assert!(build_bucket(&cfg, &w, narrow, Mode::Public, 4, None).is_err());
}
