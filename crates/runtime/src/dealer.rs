//! The Dealer interpreter: walks the program's schedule and writes each party's one-time key
//! stream in the order the Party interpreter consumes it.
//!
//! Per round: first the open material of every step (shares of its fresh input masks), then
//! one key blob per gate batch, then the finish material of every non-gate step (shares of the
//! mask products: [r_a·r_b], [r²], [R_X·R_Y], [R_X·R_W], [ρ_a∧ρ_b], [ρ]).

use std::collections::HashMap;
use std::time::Instant;

use suf_backend::Backend;

use crate::error::{Result, RtError};
use crate::ir::{NodeId, Op, Program};
use crate::keystream::DealerStreams;
use crate::sched::{Group, Schedule};

/// Weight masks R_W for private-weight matmuls, by name (k×n). Bound to one model: Ŵ = W + R_W
/// is published once, and R_W must never mask a changed W.
pub type DealerWeights = std::collections::BTreeMap<String, Vec<u64>>;

/// What the dealer produced.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DealReport {
    /// Bytes of each party's key stream.
    pub key_bytes: [u64; 2],
    /// Wall time of key generation in milliseconds.
    pub keygen_ms: f64,
    /// Rounds of the program.
    pub rounds: usize,
}

/// Write both parties' key streams for one run of `prog`.
pub fn run_dealer(
    prog: &Program,
    be: &dyn Backend,
    mut ds: DealerStreams,
    rw: &DealerWeights,
) -> Result<DealReport> {
    let t0 = Instant::now();
    let w = prog.width();
    let sched = Schedule::of(prog);
    for (wid, &(k, n)) in &prog.private_weights {
        let r = rw
            .get(wid)
            .filter(|r| r.len() == k * n)
            .ok_or_else(|| RtError::Weight(wid.clone()))?;
        ds.share_arith(r)?;
    }
    for wave in &sched.waves {
        // Open material: fresh masks for every opened operand.
        let mut masks: HashMap<NodeId, Vec<Vec<u64>>> = HashMap::new();
        for &id in wave {
            let node = prog.node(id);
            let numel = |d: &NodeId| prog.numel(*d);
            let mut ms = Vec::new();
            match &node.op {
                Op::Mul(a, b) | Op::MatMul(a, b) | Op::RowMul(a, b) => {
                    for d in [a, b] {
                        let m = ds.masks(numel(d));
                        ds.share_arith(&m)?;
                        ms.push(m);
                    }
                }
                Op::Square(a) | Op::MatMulPrivW { x: a, .. } | Op::Gate(a, _) => {
                    let m = ds.masks(numel(a));
                    ds.share_arith(&m)?;
                    ms.push(m);
                }
                Op::And(a, b) => {
                    for d in [a, b] {
                        let m = ds.bit_masks(numel(d));
                        ds.share_bool(&m)?;
                        ms.push(m);
                    }
                }
                Op::B2A(a) => {
                    let m = ds.bit_masks(numel(a));
                    ds.share_bool(&m)?;
                    ms.push(m);
                }
                _ => unreachable!("only interactive steps are scheduled"),
            }
            masks.insert(id, ms);
        }
        // Gate key batches, then finish material.
        let groups = Schedule::groups(prog, wave);
        for g in &groups {
            if let Group::Gates(_, ids) = g {
                let all: Vec<u64> = ids
                    .iter()
                    .flat_map(|i| masks[i][0].iter().copied())
                    .collect();
                let gate = match &prog.node(ids[0]).op {
                    Op::Gate(_, g) => g.clone(),
                    _ => unreachable!("gate group holds gates"),
                };
                let blobs = gate.deal(w, &all, &mut ds.rng)?;
                ds.blob(blobs)?;
            }
        }
        for &id in wave {
            let node = prog.node(id);
            let ms = &masks[&id];
            match &node.op {
                Op::Mul(..) => ds.share_arith(&be.mul(w, &ms[0], &ms[1])?)?,
                Op::Square(_) => ds.share_arith(&be.mul(w, &ms[0], &ms[0])?)?,
                Op::MatMul(a, b) => {
                    let (sa, sb) = (&prog.node(*a).shape, &prog.node(*b).shape);
                    ds.share_arith(&be.gemm(w, &ms[0], &ms[1], sa[0], sa[1], sb[1])?)?
                }
                Op::MatMulPrivW { wid, k, n, .. } => {
                    let r = &rw[wid];
                    ds.share_arith(&be.gemm(w, &ms[0], r, ms[0].len() / k, *k, *n)?)?
                }
                Op::RowMul(..) => {
                    let c = *node.shape.last().unwrap_or(&1);
                    ds.share_arith(&be.mul_rows(w, &ms[0], &ms[1], c)?)?
                }
                Op::And(..) => {
                    let v: Vec<u64> = ms[0].iter().zip(&ms[1]).map(|(a, b)| a & b).collect();
                    ds.share_bool(&v)?
                }
                Op::B2A(_) => ds.share_arith(&ms[0])?,
                Op::Gate(..) => {}
                _ => unreachable!("only interactive steps are scheduled"),
            }
        }
    }
    let key_bytes = ds.finish()?;
    Ok(DealReport {
        key_bytes,
        keygen_ms: t0.elapsed().as_secs_f64() * 1e3,
        rounds: sched.rounds(),
    })
}
