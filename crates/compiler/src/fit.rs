//! The fitter: a real function on a range of fixed-point inputs in, a piecewise polynomial
//! with integer (fixed-point) coefficients out, with its maximum error measured **exactly**:
//! every integer input of every piece is evaluated in i128 arithmetic against the f64
//! reference (exhaustive, parallel).
//!
//! Inputs are signed integers X (real x = X / 2^{f_in}); the polynomial of piece i is
//! Q(X) = Σ_j C_j·(X − e_i)^j with integer C_j and returns f(x)·2^S up to the error budget
//! (S = `out_scale`). Splines of this kind are BCG+21's (Eurocrypt 2021) spline gates; here
//! they feed technique (c) of DESIGN §5 (one DCF key for all pieces).
//!
//! Algorithm: greedy from the left, each piece as wide as the budget allows (binary search on
//! the width); a candidate is fitted by least squares at Chebyshev-spaced nodes in a
//! normalised variable (near-minimax for smooth functions), its coefficients are rounded to
//! integers, the constant is re-centred on the exact error band, and the candidate is
//! accepted only if the exact maximum error over all its integers is within budget. Forced
//! breaks (kinks, clipping points) are never crossed. The result is deterministic.

use rayon::prelude::*;

use crate::error::{CompilerError, Result};
use crate::spec::{mask, PolySpec, View};

/// Where a piece's polynomial variable is centred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Center {
    /// u = X − (piece start).
    Start,
    /// u = X − (piece midpoint) (smaller |u|: better conditioned, smaller products).
    Mid,
}

/// What to fit.
pub struct FitRequest<'a> {
    /// The real function of the real input x.
    pub f: &'a (dyn Fn(f64) -> f64 + Sync),
    /// Allowed absolute error in output units 2^{−S}, as a function of the real x (use a
    /// constant for an absolute budget, a multiple of |f(x)|·2^S for a relative one).
    pub budget: &'a (dyn Fn(f64) -> f64 + Sync),
    /// First integer input covered.
    pub lo: i64,
    /// One past the last integer input covered.
    pub hi: i64,
    /// Input fractional bits.
    pub f_in: u32,
    /// Output scale S.
    pub out_scale: u32,
    /// Degree d.
    pub degree: usize,
    /// Centre of each piece.
    pub center: Center,
    /// Integer inputs that must start a piece (kinks, clips).
    pub breaks: Vec<i64>,
    /// Give up above this many pieces.
    pub max_pieces: usize,
}

impl std::fmt::Debug for FitRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitRequest")
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .field("f_in", &self.f_in)
            .field("out_scale", &self.out_scale)
            .field("degree", &self.degree)
            .finish_non_exhaustive()
    }
}

/// One fitted piece [lo, hi).
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// First input.
    pub lo: i64,
    /// One past the last input.
    pub hi: i64,
    /// Centre e.
    pub center: i64,
    /// Integer coefficients of (X − e)^j.
    pub coeffs: Vec<i128>,
    /// Maximum |Q(X) − f(x)·2^S| over the piece.
    pub max_err: f64,
}

impl Piece {
    /// Q(X) exactly.
    #[inline]
    pub fn value(&self, x: i64) -> i128 {
        let u = (x - self.center) as i128;
        let mut acc: i128 = 0;
        for &c in self.coeffs.iter().rev() {
            acc = acc.wrapping_mul(u).wrapping_add(c);
        }
        acc
    }
}

/// A fitted piecewise polynomial.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// Pieces, consecutive, covering [lo, hi).
    pub pieces: Vec<Piece>,
    /// Output scale S.
    pub out_scale: u32,
    /// Input fractional bits.
    pub f_in: u32,
    /// Maximum error over all inputs, in units of 2^{−S}.
    pub max_err: f64,
    /// Largest |Q(X)| over all inputs.
    pub max_abs: i128,
    /// Smallest and largest Q(X).
    pub range: (i128, i128),
}

impl Fit {
    /// The piece holding X (X in range).
    pub fn piece_of(&self, x: i64) -> Option<&Piece> {
        let i = self.pieces.partition_point(|p| p.hi <= x);
        self.pieces.get(i.min(self.pieces.len().saturating_sub(1)))
    }

    /// Q(X) (0 for an empty fit).
    pub fn value(&self, x: i64) -> i128 {
        self.piece_of(x).map_or(0, |p| p.value(x))
    }

    /// Add a constant to every piece (e.g. a rounding offset 2^{t−1} before a floor by t).
    pub fn add_constant(&mut self, c: i128) {
        for p in &mut self.pieces {
            p.coeffs[0] += c;
        }
        self.range = (self.range.0 + c, self.range.1 + c);
        self.max_abs = self.range.0.abs().max(self.range.1.abs());
    }

    /// Multiply every coefficient by an integer (e.g. 2 to make room for a selector bit).
    pub fn scale(&mut self, k: i128) {
        for p in &mut self.pieces {
            for c in &mut p.coeffs {
                *c *= k;
            }
        }
        let (a, b) = (self.range.0 * k, self.range.1 * k);
        self.range = (a.min(b), a.max(b));
        self.max_abs = a.abs().max(b.abs());
    }

    /// The [`PolySpec`] of this fit on view `view` (X ↦ x_u = X + offset mod 2^K; the fit
    /// must cover exactly the K-bit window [−offset, 2^K − offset)), ring M, one output.
    ///
    /// # Errors
    /// [`CompilerError::Spec`] if the pieces do not tile the view.
    pub fn to_poly(&self, view: View, ring: u32) -> Result<PolySpec> {
        if self.pieces.is_empty() || !(1..=64).contains(&view.bits) || !(1..=64).contains(&ring) {
            return Err(CompilerError::Spec(
                "empty fit, or view/ring bits outside 1..=64".into(),
            ));
        }
        let k = view.bits;
        let first = self.pieces[0].lo;
        let last = self.pieces[self.pieces.len() - 1].hi;
        let width = if k >= 64 { u64::MAX } else { 1u64 << k };
        if (first.wrapping_add(view.offset as i64) as u64) & mask(k) != 0
            || (last - first) as u64 != width
        {
            return Err(CompilerError::Spec(format!(
                "fit over [{first}, {last}) does not tile the {k}-bit view at offset {}",
                view.offset
            )));
        }
        let rm = mask(ring);
        let d = self
            .pieces
            .iter()
            .map(|p| p.coeffs.len())
            .max()
            .unwrap_or(1)
            - 1;
        let mut cuts = Vec::new();
        let mut centers = Vec::new();
        let mut coeffs = Vec::new();
        for (i, p) in self.pieces.iter().enumerate() {
            if i > 0 {
                cuts.push((p.lo - first) as u64);
            }
            centers.push((p.center as u64).wrapping_add(view.offset) & rm);
            for j in 0..=d {
                let c = p.coeffs.get(j).copied().unwrap_or(0);
                coeffs.push((c as u64) & rm);
            }
        }
        Ok(PolySpec {
            view,
            ring,
            cuts,
            degree: d,
            outputs: 1,
            centers,
            coeffs,
        })
    }
}

/// Solve a small dense system (Gaussian elimination with partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for i in 0..n {
        let p = (i..n).max_by(|&x, &y| a[x][i].abs().total_cmp(&a[y][i].abs()))?;
        if a[p][i].abs() < 1e-300 {
            return None;
        }
        a.swap(i, p);
        b.swap(i, p);
        for r in 0..n {
            if r != i {
                let f = a[r][i] / a[i][i];
                if f != 0.0 {
                    for c in i..n {
                        a[r][c] -= f * a[i][c];
                    }
                    b[r] -= f * b[i];
                }
            }
        }
    }
    Some((0..n).map(|i| b[i] / a[i][i]).collect())
}

struct Ctx<'a> {
    req: &'a FitRequest<'a>,
    /// f(x)·2^S for every integer of [lo, hi).
    targets: Vec<f64>,
    /// The budget at every integer.
    budgets: Vec<f64>,
}

impl Ctx<'_> {
    #[inline]
    fn target(&self, x: i64) -> f64 {
        self.targets[(x - self.req.lo) as usize]
    }

    /// Fit [a, b) and measure it exactly; None if the budget is exceeded.
    fn try_piece(&self, a: i64, b: i64) -> Option<Piece> {
        let d = self.req.degree;
        let len = b - a;
        let center = match self.req.center {
            Center::Start => a,
            Center::Mid => a + (len - 1) / 2,
        };
        let dd = d.min((len - 1).max(0) as usize);
        // Normalised variable v = (X − centre)/h.
        let h = ((b - 1 - center).abs().max((a - center).abs())).max(1) as f64;
        let nodes = (4 * (dd + 1)).max(8).min(len as usize);
        let mut xs: Vec<i64> = (0..nodes)
            .map(|k| {
                let t = ((2 * k + 1) as f64 * std::f64::consts::PI / (2 * nodes) as f64).cos();
                let v = a as f64 + (t + 1.0) / 2.0 * (len - 1) as f64;
                v.round() as i64
            })
            .collect();
        xs.push(a);
        xs.push(b - 1);
        xs.sort_unstable();
        xs.dedup();
        let p = dd + 1;
        let mut ata = vec![vec![0.0; p]; p];
        let mut atb = vec![0.0; p];
        for &x in &xs {
            let v = (x - center) as f64 / h;
            let y = self.target(x);
            let mut pw = vec![1.0; p];
            for j in 1..p {
                pw[j] = pw[j - 1] * v;
            }
            for r in 0..p {
                for c in 0..p {
                    ata[r][c] += pw[r] * pw[c];
                }
                atb[r] += pw[r] * y;
            }
        }
        let sol = solve(ata, atb)?;
        let mut coeffs: Vec<i128> = sol
            .iter()
            .enumerate()
            .map(|(j, &c)| (c / h.powi(j as i32)).round() as i128)
            .collect();
        coeffs.resize(d + 1, 0);
        let mut piece = Piece {
            lo: a,
            hi: b,
            center,
            coeffs,
            max_err: 0.0,
        };
        let (lo_e, hi_e) = self.err_band(&piece);
        let shift = ((lo_e + hi_e) / 2.0).round();
        piece.coeffs[0] -= shift as i128;
        let (lo_e, hi_e) = (lo_e - shift, hi_e - shift);
        piece.max_err = lo_e.abs().max(hi_e.abs());
        if self.within_budget(&piece) {
            Some(piece)
        } else {
            None
        }
    }

    fn err_band(&self, p: &Piece) -> (f64, f64) {
        (0..(p.hi - p.lo) as usize)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| p.lo + i as i64)
            .map(|x| {
                let e = p.value(x) as f64 - self.target(x);
                (e, e)
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            )
    }

    fn within_budget(&self, p: &Piece) -> bool {
        (0..(p.hi - p.lo) as usize)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| p.lo + i as i64)
            .all(|x| {
                let e = (p.value(x) as f64 - self.target(x)).abs();
                e <= self.budgets[(x - self.req.lo) as usize]
            })
    }
}

/// The widest piece starting at `a` (at most `full` wide), searched from a guess.
fn find_piece(ctx: &Ctx<'_>, a: i64, full: i64, guess: i64) -> Result<Piece> {
    let g = guess.clamp(1, full);
    let (mut lo_w, mut hi_w, mut good);
    if let Some(p) = ctx.try_piece(a, a + g) {
        // Grow until it fails or reaches `full`.
        lo_w = g;
        good = p;
        hi_w = full + 1;
        let mut w = g;
        while w < full {
            w = (w * 2).min(full);
            match ctx.try_piece(a, a + w) {
                Some(p) => {
                    lo_w = w;
                    good = p;
                }
                None => {
                    hi_w = w;
                    break;
                }
            }
        }
    } else {
        hi_w = g;
        let mut w = g / 2;
        let mut found = None;
        while w >= 1 {
            if let Some(p) = ctx.try_piece(a, a + w) {
                found = Some((w, p));
                break;
            }
            hi_w = w;
            w /= 2;
        }
        let (w, p) = found.ok_or_else(|| {
            CompilerError::Fit(format!(
                "input {a} alone exceeds the budget (precision too low?)"
            ))
        })?;
        lo_w = w;
        good = p;
    }
    while hi_w - lo_w > 1 {
        let mid = lo_w + (hi_w - lo_w) / 2;
        if mid > full {
            break;
        }
        match ctx.try_piece(a, a + mid) {
            Some(p) => {
                lo_w = mid;
                good = p;
            }
            None => hi_w = mid,
        }
    }
    Ok(good)
}

/// Fit `req`.
///
/// # Errors
/// [`CompilerError::Fit`] if a single input cannot meet the budget or more than
/// `max_pieces` pieces would be needed; [`CompilerError::Param`]-like range errors.
pub fn fit(req: &FitRequest<'_>) -> Result<Fit> {
    if req.hi <= req.lo {
        return Err(CompilerError::Fit(format!(
            "empty range [{}, {})",
            req.lo, req.hi
        )));
    }
    if req.out_scale > 62 || req.f_in > 62 || req.degree > 6 {
        return Err(CompilerError::Fit(
            "scale or degree out of range (S, f_in ≤ 62, d ≤ 6)".into(),
        ));
    }
    let span = (req.hi - req.lo) as u64;
    if span > 1 << 26 {
        return Err(CompilerError::Fit(format!(
            "range of {span} inputs is too large to fit exhaustively (at most 2^26)"
        )));
    }
    let inv = (-(req.f_in as f64)).exp2();
    let scale = (req.out_scale as f64).exp2();
    let (targets, budgets): (Vec<f64>, Vec<f64>) = (0..span as usize)
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| {
            let x = req.lo + i as i64;
            let v = x as f64 * inv;
            ((req.f)(v) * scale, (req.budget)(v))
        })
        .unzip();
    if targets.iter().any(|t| !t.is_finite()) {
        return Err(CompilerError::Fit(
            "the function is not finite on the range".into(),
        ));
    }
    let ctx = Ctx {
        req,
        targets,
        budgets,
    };
    let mut breaks: Vec<i64> = req
        .breaks
        .iter()
        .copied()
        .filter(|&b| b > req.lo && b < req.hi)
        .collect();
    breaks.push(req.hi);
    breaks.sort_unstable();
    breaks.dedup();
    let mut pieces = Vec::new();
    let mut a = req.lo;
    let mut guess = i64::MAX;
    for &stop in &breaks {
        while a < stop {
            if pieces.len() >= req.max_pieces {
                return Err(CompilerError::Fit(format!(
                    "more than {} pieces needed (reached x = {a} of [{}, {}))",
                    req.max_pieces, req.lo, req.hi
                )));
            }
            let full = stop - a;
            let piece = find_piece(&ctx, a, full, guess)?;
            guess = piece.hi - piece.lo;
            a = piece.hi;
            pieces.push(piece);
        }
    }
    let max_err = pieces.iter().map(|p| p.max_err).fold(0.0, f64::max);
    let range = pieces
        .par_iter()
        .map(|p| {
            (p.lo..p.hi)
                .map(|x| p.value(x))
                .fold((i128::MAX, i128::MIN), |acc, v| {
                    (acc.0.min(v), acc.1.max(v))
                })
        })
        .reduce(
            || (i128::MAX, i128::MIN),
            |a, b| (a.0.min(b.0), a.1.max(b.1)),
        );
    Ok(Fit {
        pieces,
        out_scale: req.out_scale,
        f_in: req.f_in,
        max_err,
        max_abs: range.0.abs().max(range.1.abs()),
        range,
    })
}

/// Independent check of a fit: the maximum error over every integer of [lo, hi), recomputed
/// from the pieces (used by tests and by [`crate::report`]).
pub fn max_error(fit: &Fit, f: &(dyn Fn(f64) -> f64 + Sync), lo: i64, hi: i64) -> f64 {
    let inv = (-(fit.f_in as f64)).exp2();
    let sc = (fit.out_scale as f64).exp2();
    (0..(hi - lo).max(0) as usize)
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| lo + i as i64)
        .map(|x| (fit.value(x) as f64 - f(x as f64 * inv) * sc).abs())
        .reduce(|| 0.0, f64::max)
}
