//! Ring GEMM mod 2^n on the CPU: C = A·B over Z_{2^n}, every element a `u64`.
//!
//! # Method
//!
//! All arithmetic is wrapping `u64` (that is, in Z_{2^64}); the result is reduced by the
//! mask of n bits once at the end. This is exact because reduction mod 2^n is a ring
//! homomorphism Z_{2^64} → Z_{2^n} (so inputs need not be reduced either).
//!
//! Without `unsafe` and without `target-cpu=native` the only 64-bit multiplier available
//! is the scalar one (baseline x86-64 has no vector 64-bit multiply), and a plain loop is
//! bound by about one multiply per cycle. The kernel therefore uses **Winograd's inner
//! product** (S. Winograd, "A new algorithm for inner product", IEEE Trans. Computers,
//! 1968), which is exact in every commutative ring and halves the multiplications:
//!
//! ```text
//! C_ij = Σ_p a_{i,2p}·b_{2p,j} + a_{i,2p+1}·b_{2p+1,j}
//!      = Σ_p (a_{i,2p} + b_{2p+1,j})·(a_{i,2p+1} + b_{2p,j})  −  R_i  −  S_j
//! R_i = Σ_p a_{i,2p}·a_{i,2p+1}          (one per row of A)
//! S_j = Σ_p b_{2p,j}·b_{2p+1,j}          (one per column of B)
//! ```
//!
//! An odd k is padded with one zero column of A and one zero row of B, which changes
//! neither the product nor R and S.
//!
//! # Blocking
//!
//! A is packed into panels of [`MR`] rows and B into panels of [`NR`] columns, both laid
//! out pair by pair (`[pair][lane][2]`), so the micro-kernel reads both operands
//! contiguously and keeps an `MR × NR` accumulator tile in registers. The pair dimension is
//! cut into blocks of [`KCP`] pairs so that one B micro-panel stays in L1 while the A panels
//! of a task stream from L2. C is cut into tiles of at most [`MC`] rows and a number of
//! columns chosen so that there are enough tiles to keep every rayon thread busy (small m,
//! such as one token at a time, is split by columns); tiles are computed in parallel and
//! then copied into C with the R/S correction; the mask is applied last.
//!
//! One level of Strassen's algorithm (Winograd form) on top of this kernel was tried and
//! measured slower at 512³ and no better at 1024³ on the development machine (its extra
//! passes and allocations cost as much as the saved eighth of the products), so it is not
//! used.

use rayon::prelude::*;
use suf_core::BitWidth;

use crate::error::{check_len, shape_mul, Result};

/// Rows of the register tile.
pub const MR: usize = 2;
/// Columns of the register tile.
pub const NR: usize = 3;
/// Pairs of k per cache block (2·KCP values of k).
pub const KCP: usize = 128;
/// Rows of C per task (a multiple of [`MR`]).
pub const MC: usize = 64;
/// Smallest number of B panels per column block when columns are split.
const MIN_COL_PANELS: usize = 16;
/// The final masking pass runs in parallel from this many elements.
const ELEMENTWISE_PAR_MIN: usize = 1 << 15;
/// Below this many multiply-adds the product runs on the calling thread.
const SERIAL_BELOW: usize = 1 << 16;

/// How the right operand is laid out in memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BLayout {
    /// B is k×n, row-major.
    RowMajor,
    /// B is given transposed: Bᵀ is n×k, row-major (the layout of `X·Wᵀ`).
    Transposed,
}

/// One packed operand: `panels` panels of `L` lanes (rows of A or columns of B), each laid
/// out `[pair][lane][2]` over `kh` pairs, plus the Winograd correction of every lane.
struct Packed<const L: usize> {
    data: Vec<u64>,
    kh: usize,
    corr: Vec<[u64; L]>,
}

impl<const L: usize> Packed<L> {
    /// Pack `lanes` lanes of length `k`; `get(lane, idx)` reads element `idx` of `lane`
    /// (only called with `lane < lanes`, `idx < k`).
    fn new<F>(lanes: usize, k: usize, parallel: bool, get: F) -> Self
    where
        F: Fn(usize, usize) -> u64 + Sync,
    {
        let kh = k.div_ceil(2);
        let panels = lanes.div_ceil(L);
        let panel_len = kh * L * 2;
        let mut data = vec![0u64; panels * panel_len];
        let fill = |(pi, chunk): (usize, &mut [u64])| -> [u64; L] {
            let mut corr = [0u64; L];
            for l in 0..L {
                let lane = pi * L + l;
                if lane >= lanes {
                    continue;
                }
                let mut acc = 0u64;
                for p in 0..kh {
                    let x0 = get(lane, 2 * p);
                    let x1 = if 2 * p + 1 < k {
                        get(lane, 2 * p + 1)
                    } else {
                        0
                    };
                    let base = (p * L + l) * 2;
                    chunk[base] = x0;
                    chunk[base + 1] = x1;
                    acc = acc.wrapping_add(x0.wrapping_mul(x1));
                }
                corr[l] = acc;
            }
            corr
        };
        let corr = if panel_len == 0 {
            vec![[0u64; L]; panels]
        } else if parallel {
            data.par_chunks_mut(panel_len)
                .enumerate()
                .map(fill)
                .collect()
        } else {
            data.chunks_mut(panel_len).enumerate().map(fill).collect()
        };
        Packed { data, kh, corr }
    }

    /// Pairs `p0..p1` of panel `pi`.
    #[inline]
    fn panel(&self, pi: usize, p0: usize, p1: usize) -> &[u64] {
        let base = pi * self.kh;
        &self.data[(base + p0) * L * 2..(base + p1) * L * 2]
    }

    /// The Winograd correction of lane `lane`.
    #[inline]
    fn corr(&self, lane: usize) -> u64 {
        self.corr[lane / L][lane % L]
    }
}

/// The register micro-kernel: `acc += Σ_p (a0 + b1)(a1 + b0)` over the pairs of one A
/// panel slice (`[pair][MR][2]`) and one B panel slice (`[pair][NR][2]`).
#[inline(always)]
fn micro(ap: &[u64], bp: &[u64], acc: &mut [[u64; NR]; MR]) {
    let mut t = *acc;
    for (av, bv) in ap.chunks_exact(2 * MR).zip(bp.chunks_exact(2 * NR)) {
        for r in 0..MR {
            let x0 = av[2 * r];
            let x1 = av[2 * r + 1];
            for c in 0..NR {
                let y0 = bv[2 * c];
                let y1 = bv[2 * c + 1];
                t[r][c] =
                    t[r][c].wrapping_add(x0.wrapping_add(y1).wrapping_mul(x1.wrapping_add(y0)));
            }
        }
    }
    *acc = t;
}

/// One tile of C: A panels `rp0..rp1` × B panels `cp0..cp1`, uncorrected and unreduced,
/// laid out `[row panel][col panel][MR][NR]`.
fn tile(
    pa: &Packed<MR>,
    pb: &Packed<NR>,
    rp0: usize,
    rp1: usize,
    cp0: usize,
    cp1: usize,
) -> Vec<u64> {
    let kh = pa.kh;
    let ncp = cp1 - cp0;
    let mut t = vec![0u64; (rp1 - rp0) * ncp * MR * NR];
    let mut p0 = 0;
    while p0 < kh {
        let p1 = (p0 + KCP).min(kh);
        for q in cp0..cp1 {
            let bpan = pb.panel(q, p0, p1);
            for r0 in rp0..rp1 {
                let apan = pa.panel(r0, p0, p1);
                let off = ((r0 - rp0) * ncp + (q - cp0)) * MR * NR;
                let dst = &mut t[off..off + MR * NR];
                let mut acc = [[0u64; NR]; MR];
                if p0 > 0 {
                    for r in 0..MR {
                        acc[r].copy_from_slice(&dst[r * NR..(r + 1) * NR]);
                    }
                }
                micro(apan, bpan, &mut acc);
                for r in 0..MR {
                    dst[r * NR..(r + 1) * NR].copy_from_slice(&acc[r]);
                }
            }
        }
        p0 = p1;
    }
    t
}

/// C = A·B mod 2^n with A m×k row-major and B k×n row-major (or, with
/// [`BLayout::Transposed`], Bᵀ n×k row-major). Runs in the current rayon pool.
///
/// # Errors
/// `LengthMismatch` if `a` or `b` does not have the length its shape implies;
/// `ShapeOverflow` if a shape's element count overflows `usize`.
pub fn gemm(
    w: BitWidth,
    a: &[u64],
    b: &[u64],
    m: usize,
    k: usize,
    n: usize,
    layout: BLayout,
) -> Result<Vec<u64>> {
    check_len("gemm A (m·k)", shape_mul("gemm A", m, k)?, a.len())?;
    let what_b = match layout {
        BLayout::RowMajor => "gemm B (k·n)",
        BLayout::Transposed => "gemm Bᵀ (n·k)",
    };
    check_len(what_b, shape_mul("gemm B", k, n)?, b.len())?;
    shape_mul("gemm C", m, n)?;
    let mut c = blocked(a, b, m, k, n, layout);
    let mask = w.mask();
    if mask != u64::MAX {
        if c.len() >= ELEMENTWISE_PAR_MIN {
            c.par_iter_mut()
                .with_min_len(ELEMENTWISE_PAR_MIN)
                .for_each(|v| *v &= mask);
        } else {
            c.iter_mut().for_each(|v| *v &= mask);
        }
    }
    Ok(c)
}

/// The blocked Winograd kernel: A·B mod 2^64 of checked shapes.
fn blocked(a: &[u64], b: &[u64], m: usize, k: usize, n: usize, layout: BLayout) -> Vec<u64> {
    let mn = m * n;
    let mut c = vec![0u64; mn];
    if mn == 0 || k == 0 {
        return c;
    }
    let work = mn.saturating_mul(k);
    let parallel = work >= SERIAL_BELOW && rayon::current_num_threads() > 1;

    let pa = Packed::<MR>::new(m, k, parallel, |i, p| a[i * k + p]);
    let pb = match layout {
        BLayout::RowMajor => Packed::<NR>::new(n, k, parallel, |j, p| b[p * n + j]),
        BLayout::Transposed => Packed::<NR>::new(n, k, parallel, |j, p| b[j * k + p]),
    };

    // Tile grid: row blocks of MC rows; columns split only as far as needed to give every
    // thread several tasks.
    let rpanels = m.div_ceil(MR);
    let cpanels = n.div_ceil(NR);
    let rpb = MC / MR;
    let nrb = rpanels.div_ceil(rpb);
    let ncb = if parallel {
        let want = (4 * rayon::current_num_threads()).div_ceil(nrb);
        want.clamp(1, (cpanels / MIN_COL_PANELS).max(1))
    } else {
        1
    };
    let cpb = cpanels.div_ceil(ncb);
    let ncb = cpanels.div_ceil(cpb);

    let make = |idx: usize| {
        let (rb, cb) = (idx / ncb, idx % ncb);
        let rp0 = rb * rpb;
        let cp0 = cb * cpb;
        tile(
            &pa,
            &pb,
            rp0,
            (rp0 + rpb).min(rpanels),
            cp0,
            (cp0 + cpb).min(cpanels),
        )
    };
    let tiles: Vec<Vec<u64>> = if parallel {
        (0..nrb * ncb).into_par_iter().map(make).collect()
    } else {
        (0..nrb * ncb).map(make).collect()
    };

    // Copy tiles into C with the Winograd correction.
    let assemble = |(rb, rows): (usize, &mut [u64])| {
        let rp0 = rb * rpb;
        let nrp = (rp0 + rpb).min(rpanels) - rp0;
        for cb in 0..ncb {
            let t = &tiles[rb * ncb + cb];
            let cp0 = cb * cpb;
            let ncp = (cp0 + cpb).min(cpanels) - cp0;
            for (li, row) in rows.chunks_exact_mut(n).enumerate() {
                let i = rp0 * MR + li;
                let (rpl, r) = (li / MR, li % MR);
                debug_assert!(rpl < nrp);
                let ri = pa.corr(i);
                for ql in 0..ncp {
                    let src = &t[((rpl * ncp + ql) * MR + r) * NR..][..NR];
                    let j0 = (cp0 + ql) * NR;
                    for (c, &v) in src.iter().enumerate().take(n.saturating_sub(j0)) {
                        let j = j0 + c;
                        row[j] = v.wrapping_sub(ri).wrapping_sub(pb.corr(j));
                    }
                }
            }
        }
    };
    if parallel {
        c.par_chunks_mut(MC * n).enumerate().for_each(assemble);
    } else {
        c.chunks_mut(MC * n).enumerate().for_each(assemble);
    }
    c
}

/// The textbook triple loop (i-k-j order, wrapping), for tests and as the baseline of the
/// benchmark. Same contract as [`gemm`].
///
/// # Errors
/// As [`gemm`].
pub fn gemm_naive(
    w: BitWidth,
    a: &[u64],
    b: &[u64],
    m: usize,
    k: usize,
    n: usize,
    layout: BLayout,
) -> Result<Vec<u64>> {
    check_len("gemm A (m·k)", shape_mul("gemm A", m, k)?, a.len())?;
    check_len("gemm B (k·n)", shape_mul("gemm B", k, n)?, b.len())?;
    let bt;
    let b = match layout {
        BLayout::RowMajor => b,
        BLayout::Transposed => {
            let mut t = vec![0u64; b.len()];
            for j in 0..n {
                for p in 0..k {
                    t[p * n + j] = b[j * k + p];
                }
            }
            bt = t;
            &bt[..]
        }
    };
    let mut c = vec![0u64; shape_mul("gemm C", m, n)?];
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let x = a[i * k + p];
            for (cj, &y) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cj = cj.wrapping_add(x.wrapping_mul(y));
            }
        }
    }
    let mask = w.mask();
    c.iter_mut().for_each(|v| *v &= mask);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(seed: &mut u64) -> u64 {
        // splitmix64
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn matches_naive_on_tile_edges() {
        let mut s = 7;
        for &(m, k, n) in &[
            (1, 1, 1),
            (MR, 2 * KCP, NR),
            (MR + 1, 2 * KCP + 1, NR + 1),
            (MC + 1, 2 * KCP + 3, 4 * NR * MIN_COL_PANELS + 3),
            (2, 600, 700),
        ] {
            let a: Vec<u64> = (0..m * k).map(|_| rnd(&mut s)).collect();
            let b: Vec<u64> = (0..k * n).map(|_| rnd(&mut s)).collect();
            for l in [BLayout::RowMajor, BLayout::Transposed] {
                assert_eq!(
                    gemm(BitWidth::W64, &a, &b, m, k, n, l).unwrap(),
                    gemm_naive(BitWidth::W64, &a, &b, m, k, n, l).unwrap(),
                    "{m}x{k}x{n} {l:?}"
                );
            }
        }
    }
}
