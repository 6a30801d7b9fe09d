//! Local (non-interactive) steps, shared by the Plain and Party interpreters.
//!
//! The Plain interpreter is "the party that holds everything": public constants are added by
//! party 0 only, and Plain behaves as party 0 with the whole value.

use suf_backend::Backend;
use suf_core::BitWidth;

use crate::error::{Result, RtError};
use crate::ir::{Node, Op};

#[allow(clippy::expect_used, reason = "a constant: 1 is a valid ring width")]
fn z2() -> BitWidth {
    BitWidth::new(1).expect("Z_2 is a valid ring")
}

/// Evaluate a local step. `party` is 0 or 1 for a share, 0 for Plain.
pub(crate) fn eval_local(
    be: &dyn Backend,
    w: BitWidth,
    party: u8,
    node: &Node,
    args: &[&[u64]],
    arg_shapes: &[&[usize]],
) -> Result<Vec<u64>> {
    let lead = party == 0;
    Ok(match &node.op {
        Op::Add(..) => be.add(w, args[0], args[1])?,
        Op::Sub(..) => be.sub(w, args[0], args[1])?,
        Op::Neg(_) => be.neg(w, args[0])?,
        // Bits are elements of Z_2: XOR is addition; NOT adds 1 at party 0.
        Op::Xor(..) => be.add(z2(), args[0], args[1])?,
        Op::Not(_) => be.add_const(z2(), args[0], lead as u64)?,
        Op::AddPub(_, c) => {
            if lead {
                be.add_bcast(w, args[0], c)?
            } else {
                args[0].to_vec()
            }
        }
        Op::MulPub(_, c) => be.mul_bcast(w, args[0], c)?,
        Op::AddPubIn(..) => {
            if lead {
                be.add_bcast(w, args[0], args[1])?
            } else {
                args[0].to_vec()
            }
        }
        Op::MulPubIn(..) => be.mul_bcast(w, args[0], args[1])?,
        Op::MulConst(_, c) => be.scale(w, args[0], *c)?,
        Op::AddConst(_, c) => {
            if lead {
                be.add_const(w, args[0], *c)?
            } else {
                args[0].to_vec()
            }
        }
        Op::MatMulPub { w: wt, k, n, .. } => {
            let rows = args[0].len() / k.max(&1);
            be.gemm(w, args[0], wt, rows, *k, *n)?
        }
        Op::SumLast(_) => {
            let c = *arg_shapes[0].last().unwrap_or(&1);
            be.row_sum(w, args[0], c)?
        }
        Op::Transpose(_) => be.transpose(args[0], arg_shapes[0][0], arg_shapes[0][1])?,
        Op::Reshape(_) | Op::Output(_) => args[0].to_vec(),
        Op::Take(_, i) => {
            let c = node.numel();
            args[0][i * c..(i + 1) * c].to_vec()
        }
        Op::SliceCols(_, s, e) => {
            let c = arg_shapes[0][1];
            args[0]
                .chunks(c)
                .flat_map(|row| row[*s..*e].iter().copied())
                .collect()
        }
        Op::Gather(_, idx) => {
            let a = args[0];
            let pick = |&i: &u32| {
                if i == crate::ir::GATHER_ZERO {
                    0
                } else {
                    a[i as usize]
                }
            };
            if idx.len() >= 1 << 15 {
                use rayon::prelude::*;
                idx.par_iter().map(pick).collect()
            } else {
                idx.iter().map(pick).collect()
            }
        }
        Op::ConcatCols(_) => {
            let rows = node.shape[0];
            let mut out = Vec::with_capacity(node.numel());
            for r in 0..rows {
                for (a, s) in args.iter().zip(arg_shapes) {
                    let c = s[1];
                    out.extend_from_slice(&a[r * c..(r + 1) * c]);
                }
            }
            out
        }
        _ => {
            return Err(RtError::Shape {
                op: "local",
                detail: format!("{} is not a local step", node.op.name()),
            })
        }
    })
}
