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
        Op::SliceCols(_, s, e) => slice_cols(args[0], arg_shapes[0][1], *s, *e),
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
            let cols: Vec<usize> = arg_shapes.iter().map(|s| s[1]).collect();
            concat_cols(args, &cols, node.shape[0])
        }
        _ => {
            return Err(RtError::Shape {
                op: "local",
                detail: format!("{} is not a local step", node.op.name()),
            })
        }
    })
}

/// Elements from which the row copies below run over rayon (whole rows per task). Below it
/// one thread's row memcpys win (a 128 × 2304 → 768 slice: 41–83 µs against 160–180 µs for
/// the element loop this replaced, and slower again split over threads).
const ROWS_PAR_MIN: usize = 1 << 20;

/// Columns `s..e` of every row of the row-major matrix `a` with `c` columns.
fn slice_cols(a: &[u64], c: usize, s: usize, e: usize) -> Vec<u64> {
    use rayon::prelude::*;
    let w = e.saturating_sub(s);
    if w == 0 || c == 0 {
        return Vec::new();
    }
    let rows = a.len() / c;
    let mut out = vec![0u64; rows * w];
    let copy = |(o, row): (&mut [u64], &[u64])| o.copy_from_slice(&row[s..e]);
    if out.len() >= ROWS_PAR_MIN {
        out.par_chunks_mut(w).zip(a.par_chunks(c)).for_each(copy);
    } else {
        out.chunks_mut(w).zip(a.chunks(c)).for_each(copy);
    }
    out
}

/// The row-major matrices `args` (with `cols[i]` columns each, `rows` rows) side by side.
fn concat_cols(args: &[&[u64]], cols: &[usize], rows: usize) -> Vec<u64> {
    use rayon::prelude::*;
    let total: usize = cols.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let mut out = vec![0u64; rows * total];
    let fill = |(r, o): (usize, &mut [u64])| {
        let mut at = 0;
        for (a, &c) in args.iter().zip(cols) {
            o[at..at + c].copy_from_slice(&a[r * c..(r + 1) * c]);
            at += c;
        }
    };
    if out.len() >= ROWS_PAR_MIN {
        out.par_chunks_mut(total).enumerate().for_each(fill);
    } else {
        out.chunks_mut(total).enumerate().for_each(fill);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_slice(a: &[u64], c: usize, s: usize, e: usize) -> Vec<u64> {
        a.chunks(c)
            .flat_map(|row| row[s..e].iter().copied())
            .collect()
    }

    fn naive_concat(args: &[&[u64]], cols: &[usize], rows: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for r in 0..rows {
            for (a, &c) in args.iter().zip(cols) {
                out.extend_from_slice(&a[r * c..(r + 1) * c]);
            }
        }
        out
    }

    #[test]
    fn row_copies_equal_the_element_loops() {
        // Below and above the parallel threshold, empty slices and zero-width blocks.
        for (rows, c) in [
            (0usize, 4usize),
            (1, 1),
            (3, 5),
            (7, 64),
            (300, 257),
            (2, 40_000),
        ] {
            let a: Vec<u64> = (0..(rows * c) as u64)
                .map(|x| x.wrapping_mul(0x9E37))
                .collect();
            for (s, e) in [
                (0, 0),
                (0, c),
                (c / 3, c / 3),
                (c / 3, c - c / 4),
                (c - 1, c),
            ] {
                assert_eq!(
                    slice_cols(&a, c, s, e),
                    naive_slice(&a, c, s, e),
                    "{rows}×{c} [{s}..{e}]"
                );
            }
            let b: Vec<u64> = (0..(rows * 3) as u64).collect();
            let z: Vec<u64> = Vec::new();
            let (args, cols): (Vec<&[u64]>, Vec<usize>) = (vec![&a, &z, &b, &a], vec![c, 0, 3, c]);
            assert_eq!(
                concat_cols(&args, &cols, rows),
                naive_concat(&args, &cols, rows),
                "{rows}×{c}"
            );
        }
        assert!(concat_cols(&[&[], &[]], &[0, 0], 5).is_empty());
    }
}
