//! The Plain interpreter: the fixed-point reference, computing exactly what the protocol
//! computes (same ring, same truncations, same gate definitions), on cleartext values.

use std::collections::BTreeMap;

use suf_backend::Backend;

use crate::error::{Result, RtError};
use crate::ir::{Dtype, Op, Program};
use crate::local::eval_local;

/// Plaintext weights W for private-weight matmuls, by name (k×n row-major).
pub type PlainWeights = BTreeMap<String, Vec<u64>>;

/// Run `prog` on cleartext `inputs` (ring elements); returns the outputs in order.
pub fn run_plain(
    prog: &Program,
    be: &dyn Backend,
    inputs: &BTreeMap<String, Vec<u64>>,
    weights: &PlainWeights,
) -> Result<Vec<Vec<u64>>> {
    let w = prog.width();
    let mut vals: Vec<Vec<u64>> = Vec::with_capacity(prog.nodes.len());
    for node in &prog.nodes {
        let deps = node.op.deps();
        let args: Vec<&[u64]> = deps.iter().map(|d| vals[d.0 as usize].as_slice()).collect();
        let shapes: Vec<&[usize]> = deps
            .iter()
            .map(|d| prog.node(*d).shape.as_slice())
            .collect();
        let v = match &node.op {
            Op::Input { name } | Op::PublicInput { name } => {
                let x = inputs.get(name).ok_or_else(|| RtError::Input {
                    name: name.clone(),
                    detail: "not supplied".into(),
                })?;
                if x.len() != node.numel() {
                    return Err(RtError::Input {
                        name: name.clone(),
                        detail: format!("{} values for shape {:?}", x.len(), node.shape),
                    });
                }
                x.iter().map(|&v| w.reduce(v)).collect()
            }
            Op::Mul(..) => be.mul(w, args[0], args[1])?,
            Op::Square(_) => be.mul(w, args[0], args[0])?,
            Op::MatMul(..) => {
                let (m, k, n) = (shapes[0][0], shapes[0][1], shapes[1][1]);
                be.gemm(w, args[0], args[1], m, k, n)?
            }
            Op::MatMulPrivW { wid, k, n, .. } => {
                let wt = weights
                    .get(wid)
                    .filter(|v| v.len() == k * n)
                    .ok_or_else(|| RtError::Weight(wid.clone()))?;
                be.gemm(w, args[0], wt, args[0].len() / k, *k, *n)?
            }
            Op::RowMul(..) => {
                let c = *node.shape.last().unwrap_or(&1);
                be.mul_rows(w, args[0], args[1], c)?
            }
            Op::And(..) => args[0].iter().zip(args[1]).map(|(a, b)| a & b).collect(),
            Op::B2A(_) => args[0].to_vec(),
            Op::Gate(_, g) => {
                let out = g.plain(w, args[0]);
                if g.out_dtype() == Dtype::Bool {
                    out.iter().map(|v| v & 1).collect()
                } else {
                    out
                }
            }
            _ => eval_local(be, w, 0, node, &args, &shapes)?,
        };
        vals.push(v);
    }
    Ok(prog
        .outputs
        .iter()
        .map(|o| std::mem::take(&mut vals[o.0 as usize]))
        .collect())
}
