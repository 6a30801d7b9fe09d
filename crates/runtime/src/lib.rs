//! # suf-runtime
//!
//! One program, three interpreters. Model code builds a [`ir::Program`] through
//! [`ir::Builder`] without knowing who runs it; then
//! * [`plain::run_plain`] evaluates it on cleartext fixed-point values (the reference),
//! * [`dealer::run_dealer`] walks its [`sched::Schedule`] and writes each party's one-time
//!   key stream ([`keystream`]),
//! * [`party::Party::run`] executes it online over a [`suf_net::Transport`], one message per
//!   direction per round, one backend call per gate batch, with local work overlapping the link;
//! * [`plan::Plan::of`] gives the exact cost of a run (rounds, bytes, key bytes, AES calls)
//!   from closed forms, without running anything.
//!
//! Linear protocols (public and private weights, Beaver products with the wires' own masks,
//! matrix correlations, bits, AND, B2A) live in the executor; nonlinear gates implement
//! [`gate::GateImpl`] (the models' gates are compiled by `suf-compiler`; [`testing`] holds
//! two reference gates for the executor's own tests).
//!
//! Depends on suf-core, suf-fss, suf-net and the *trait* of suf-backend; it never names a
//! concrete GPU backend.
#![forbid(unsafe_code)]
// Key streams and key batches come from files and peers: no unwrap/expect outside tests
// (each remaining `expect` states an invariant the code itself establishes, with an allow).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dealer;
pub mod error;
pub mod gate;
pub mod generate;
pub mod harness;
pub mod ir;
pub mod keystream;
mod local;
pub mod party;
pub mod plain;
pub mod plan;
pub mod report;
pub mod sched;
pub mod testing;

pub use error::{Result, RtError};

use std::collections::BTreeMap;

use suf_core::prg::Csprng;
use suf_core::BitWidth;

/// The client's side of input sharing: additive shares (x0, x1) of `x` in Z_{2^n}.
pub fn share(w: BitWidth, x: &[u64], rng: &mut Csprng) -> (Vec<u64>, Vec<u64>) {
    let s0 = rng.ring_vec(w, x.len());
    let s1 = x.iter().zip(&s0).map(|(&v, &a)| w.sub(v, a)).collect();
    (s0, s1)
}

/// The client's side of output reconstruction.
pub fn reconstruct(w: BitWidth, s0: &[u64], s1: &[u64]) -> Vec<u64> {
    s0.iter().zip(s1).map(|(&a, &b)| w.add(a, b)).collect()
}

/// Share every input of a map.
pub fn share_inputs(
    w: BitWidth,
    inputs: &BTreeMap<String, Vec<u64>>,
    rng: &mut Csprng,
) -> [BTreeMap<String, Vec<u64>>; 2] {
    let mut out = [BTreeMap::new(), BTreeMap::new()];
    for (k, v) in inputs {
        let (a, b) = share(w, v, rng);
        out[0].insert(k.clone(), a);
        out[1].insert(k.clone(), b);
    }
    out
}

/// The two parties' input maps for `prog`: the secret inputs split into additive shares as
/// [`share_inputs`] does, and the program's public run-time inputs
/// ([`ir::Builder::public_input`]) copied in the clear into both maps (they are public: the
/// same value at both parties).
pub fn share_program_inputs(
    prog: &ir::Program,
    inputs: &BTreeMap<String, Vec<u64>>,
    rng: &mut Csprng,
) -> [BTreeMap<String, Vec<u64>>; 2] {
    let (public, secret): (BTreeMap<_, _>, BTreeMap<_, _>) = inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| prog.public_inputs.contains_key(k));
    let mut out = share_inputs(prog.width(), &secret, rng);
    for m in &mut out {
        m.extend(public.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

/// Private-weight helpers: the model owner masks W once with R_W (bound to this model).
pub fn mask_weights(
    w: BitWidth,
    weights: &dealer::DealerWeights,
    rng: &mut Csprng,
) -> (party::PartyWeights, dealer::DealerWeights) {
    let mut what = party::PartyWeights::new();
    let mut rw = dealer::DealerWeights::new();
    for (k, v) in weights {
        let r = rng.ring_vec(w, v.len());
        what.insert(
            k.clone(),
            v.iter().zip(&r).map(|(&a, &b)| w.add(a, b)).collect(),
        );
        rw.insert(k.clone(), r);
    }
    (what, rw)
}

/// The client's reconstruction of output `i` of `prog` (additive for arithmetic outputs,
/// XOR for bits).
pub fn reconstruct_output(prog: &ir::Program, i: usize, s0: &[u64], s1: &[u64]) -> Vec<u64> {
    match prog.outputs.get(i).map(|o| prog.node(*o).dtype) {
        Some(ir::Dtype::Bool) => s0.iter().zip(s1).map(|(a, b)| (a ^ b) & 1).collect(),
        _ => reconstruct(prog.width(), s0, s1),
    }
}
