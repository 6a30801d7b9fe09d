//! The gate library: builder-level functions on tensors, each a short chain of compiled gates
//! (and, for rsqrt, one Beaver product). Inputs and outputs are at the program's scale f
//! unless stated; every function states its rounds (the input opening included).
//!
//! | function | rounds | construction |
//! |---|---|---|
//! | [`tr`], [`ars`], [`ars_round`] | 1 | [`FloorSpec`], t-bit + n-bit DCF (fss-identities §5) |
//! | [`ars_gap`] | 1 | floor with the free wrap (|x| < 2^{n−2} guaranteed), t-bit DCF only |
//! | [`relu`] | 1 | [`HalvesSpec`]: one (n−1)-bit DCF (the MSB trick, technique (c) with d = 1) |
//! | [`max2`], [`max_last`] | 1 per level | b + ReLU(a − b) |
//! | [`relu_ars`] | 2 | ReLU on the 2f-scaled value, then a free-wrap floor |
//! | [`relu_in`], [`max_last_in`] | 1 (per level) | [`SignSpec`]: the same on a declared range, (b − 1)-bit DCF |
//! | [`gelu`], [`gelu_tanh`], [`silu`], [`sigmoid`], [`tanh`], [`nexp`] | 2 | [`Smooth`] |
//! | [`smooth_in`], [`smooth_in_folded`] | 2 | the same on a declared range: coarse part on the view's high part ([`HighSpec`], [`BitSpec`]); folded: output left at f + t for the consumer's truncation |
//! | `rescale_*` | 3 | the same on a matmul's 2f-scaled output (input rounded to f) |
//! | [`reciprocal`] | 2 | piecewise quadratic on the declared range, then a floor |
//! | [`rsqrt`] | 4 | normalise (degree-1 gate per octave), floor to a k-bit mantissa + parity, quadratic, × 2^{G−⌊e/2⌋} |
//!
//! # Smooth activations in two rounds (the LSB-selector construction)
//!
//! Round 1 opens x̂ and evaluates one gate with two components:
//! * a **coarse** full-width [`PolySpec`] with two cuts (view x + A): ℓ = 1[x ∉ [−A, A)] and
//!   the exact outer behaviour o (x on [A, 2^{n−1}) for GeLU/SiLU, ±1 for tanh, …);
//! * a **fine** reduced-width [`PolySpec`] on the K-bit view x + A (K = log2(2A) + f): the
//!   fitted piecewise quadratic Q ≈ F(x)·2^{f+t} (+2^{t−1} for rounding), exact on the window
//!   and garbage — but a deterministic, bounded garbage — outside it.
//!
//! Both add into v = 2Q + ℓ (ring M = the bits round 2 reads). Round 2 opens v and evaluates a
//! [`FloorSpec`] with the LSB selector: (1 − ℓ)·⌊Q/2^t⌋ — the select and the truncation in
//! one opening, because ℓ is the least significant bit of the opened value and therefore
//! affine in the dealer's mask bit (see [`crate::compile`]). The output is o + that.
//! The plain reference is the same chain of specs, so Plain and Party agree bit for bit on
//! every input; the approximation error against the real function is measured in
//! [`crate::report`] and the tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use suf_runtime::gate::GateImpl;
use suf_runtime::ir::{Builder, T};

use crate::compile::SpecGate;
use crate::error::{param_err, CompilerError, Result};
use crate::fit::{fit, Center, Fit, FitRequest};
use crate::spec::{
    mask, BitSpec, Component, FloorSpec, GateSpec, HalvesSpec, HighSpec, Part, PolySpec, SignSpec,
    View, Wrap,
};

/// Real reference functions (f64), used by the fitter and the accuracy checks.
pub mod reference {
    /// erf(x), absolute error ≈ 1e−14 (series below 2.5, continued fraction above).
    pub fn erf(x: f64) -> f64 {
        if x < 0.0 {
            return -erf(-x);
        }
        if x < 2.5 {
            erf_series(x)
        } else {
            1.0 - erfc_cf(x)
        }
    }

    /// erfc(x) for all x.
    pub fn erfc(x: f64) -> f64 {
        if x < 2.5 {
            1.0 - erf(x)
        } else {
            erfc_cf(x)
        }
    }

    fn erf_series(x: f64) -> f64 {
        let mut s = 0.0;
        let mut t = x;
        let mut n = 0.0;
        loop {
            let term = t / (2.0 * n + 1.0);
            s += term;
            if term.abs() <= 1e-17 * s.abs() || n > 200.0 {
                break;
            }
            n += 1.0;
            t *= -x * x / n;
        }
        s * std::f64::consts::FRAC_2_SQRT_PI
    }

    fn erfc_cf(x: f64) -> f64 {
        let mut k = x;
        for i in (1..=120).rev() {
            k = x + (i as f64 / 2.0) / k;
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / k
    }

    /// GeLU, erf form (BERT): x·Φ(x).
    pub fn gelu(x: f64) -> f64 {
        if x >= 0.0 {
            x - x * 0.5 * erfc(x / std::f64::consts::SQRT_2)
        } else {
            x * 0.5 * erfc(-x / std::f64::consts::SQRT_2)
        }
    }

    /// GeLU, tanh form (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    pub fn gelu_tanh(x: f64) -> f64 {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    }

    /// σ(x) = 1/(1 + e^{−x}).
    pub fn sigmoid(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    /// SiLU x·σ(x).
    pub fn silu(x: f64) -> f64 {
        x * sigmoid(x)
    }

    /// tanh.
    pub fn tanh(x: f64) -> f64 {
        x.tanh()
    }

    /// e^{−x} (x ≥ 0).
    pub fn nexp(x: f64) -> f64 {
        (-x).exp()
    }
}

fn fp_of(g: &Builder) -> (u32, u32) {
    let fp = g.fp();
    (fp.width.bits(), fp.frac)
}

fn add_gate(g: &mut Builder, x: T, spec: GateSpec) -> Result<Vec<T>> {
    let n = g.fp().width.bits();
    let q = spec.outputs;
    let gate: Arc<dyn GateImpl> = Arc::new(SpecGate::new(spec, n)?);
    if q == 1 {
        Ok(vec![g.gate(x, gate)?])
    } else {
        Ok(g.gate_multi(x, gate)?)
    }
}

fn single(comp: Component, label: &str) -> GateSpec {
    let q = comp.outputs();
    GateSpec {
        label: label.into(),
        outputs: q,
        parts: vec![Part {
            comp,
            targets: (0..q).collect(),
        }],
    }
}

fn check_shift(gate: &'static str, n: u32, t: u32) -> Result<()> {
    if t == 0 || t + 2 > n {
        return param_err(gate, format!("shift {t} outside 1..={}", n - 2));
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Truncations

/// The spec of a one-round floor of the full-width view x + c by t bits, minus `off`.
pub fn floor_spec(n: u32, c: u64, t: u32, off: u64, wrap: Wrap, label: &str) -> GateSpec {
    single(
        Component::Floor(FloorSpec {
            view: View {
                offset: c & mask(n),
                bits: n,
            },
            shift: t,
            select: false,
            wrap,
            gamma: vec![1],
            kappa: vec![off.wrapping_neg() & mask(n)],
        }),
        label,
    )
}

/// TR: logical shift ⌊x_u/2^t⌋ of the unsigned view, exact. 1 round.
///
/// # Errors
/// A shift outside 1..=n−2, or a builder error.
pub fn tr(g: &mut Builder, x: T, t: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    check_shift("tr", n, t)?;
    Ok(add_gate(g, x, floor_spec(n, 0, t, 0, Wrap::Dcf, "tr"))?[0])
}

/// Faithful ARS: ⌊x/2^t⌋ of the signed view, exact on the whole domain. 1 round.
///
/// # Errors
/// As [`tr`].
pub fn ars(g: &mut Builder, x: T, t: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    check_shift("ars", n, t)?;
    let spec = floor_spec(n, 1 << (n - 1), t, 1 << (n - 1 - t), Wrap::Dcf, "ars");
    Ok(add_gate(g, x, spec)?[0])
}

/// ARS with round to nearest (ties up): ⌊(x + 2^{t−1})/2^t⌋, exact. 1 round.
///
/// # Errors
/// As [`tr`].
pub fn ars_round(g: &mut Builder, x: T, t: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    check_shift("ars_round", n, t)?;
    let c = (1u64 << (n - 1)) + (1u64 << (t - 1));
    let spec = floor_spec(n, c, t, 1 << (n - 1 - t), Wrap::Dcf, "arsr");
    Ok(add_gate(g, x, spec)?[0])
}

/// GapARS: ⌊x/2^t⌋ under the guarantee |x| < 2^{n−2} (SIGMA's precondition), with no wrap
/// key: one t-bit DCF. Outside the guarantee the result is wrong (and mask-dependent). 1 round.
///
/// # Errors
/// As [`tr`].
pub fn ars_gap(g: &mut Builder, x: T, t: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    check_shift("ars_gap", n, t)?;
    let spec = floor_spec(n, 1 << (n - 2), t, 1 << (n - 2 - t), Wrap::Free, "arsgap");
    Ok(add_gate(g, x, spec)?[0])
}

// -------------------------------------------------------------------------------------------
// ReLU, max, ReLU+ARS

/// The spec of ReLU on the full-width view (Halves, one (n−1)-bit DCF).
pub fn relu_spec(n: u32) -> GateSpec {
    let h = 1u64 << (n - 1);
    single(
        Component::Halves(HalvesSpec {
            offset: h,
            ring: n,
            lo: vec![(0, 0)],
            hi: vec![(1, h.wrapping_neg() & mask(n))],
        }),
        "relu",
    )
}

/// ReLU(x), exact. 1 round.
///
/// # Errors
/// A builder error.
pub fn relu(g: &mut Builder, x: T) -> Result<T> {
    let (n, _) = fp_of(g);
    Ok(add_gate(g, x, relu_spec(n))?[0])
}

/// max(a, b) = b + ReLU(a − b), exact (wrap-around of a − b aside: |a − b| < 2^{n−1}).
/// 1 round.
///
/// # Errors
/// Shape mismatch or a builder error.
pub fn max2(g: &mut Builder, a: T, b: T) -> Result<T> {
    let d = g.sub(a, b)?;
    let r = relu(g, d)?;
    Ok(g.add(b, r)?)
}

/// Row maximum over the last axis (`[.., c]` → `[.., 1]`) by a tree of [`max2`]:
/// ⌈log2 c⌉ rounds.
///
/// # Errors
/// An empty last axis or a builder error.
pub fn max_last(g: &mut Builder, x: T) -> Result<T> {
    max_tree(g, x, relu)
}

fn max_tree(g: &mut Builder, x: T, relu_of: impl Fn(&mut Builder, T) -> Result<T>) -> Result<T> {
    let shape = g.shape(x).to_vec();
    let c = *shape.last().unwrap_or(&0);
    if c == 0 {
        return param_err("max_last", "empty last axis");
    }
    let rows: usize = shape.iter().product::<usize>() / c;
    let mut cur = g.reshape(x, &[rows, c])?;
    let mut w = c;
    while w > 1 {
        let h = w / 2;
        let a = g.slice_cols(cur, 0, h)?;
        let b = g.slice_cols(cur, h, 2 * h)?;
        // max(a, b) = b + ReLU(a − b)
        let d = g.sub(a, b)?;
        let r = relu_of(g, d)?;
        let m = g.add(b, r)?;
        cur = if w % 2 == 1 {
            let rest = g.slice_cols(cur, 2 * h, w)?;
            g.concat_cols(&[m, rest])?
        } else {
            m
        };
        w = w.div_ceil(2);
    }
    let mut out_shape = shape;
    *out_shape.last_mut().expect("non-empty") = 1;
    Ok(g.reshape(cur, &out_shape)?)
}

/// Maxima of consecutive segments of a flat tensor `x` (`lens[i]` ≥ 1 elements each, in
/// order; Σ lens = numel(x)) for values in [−2^{bits−1}, 2^{bits−1}), as `[segments, 1]`:
/// the tree of [`max_last_in`] run on every segment at once, with public gathers in place
/// of the column slices, so a segment of length L costs L − 1 comparisons and the rounds
/// are ⌈log2 max L⌉ (a causal softmax: the lower triangle, half the square's comparisons).
///
/// # Errors
/// An empty or zero-length segment, lengths that do not cover `x`, or a builder error.
pub fn max_segments_in(g: &mut Builder, x: T, lens: &[usize], bits: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    let total: usize = g.shape(x).iter().product();
    if lens.is_empty() || lens.contains(&0) || lens.iter().sum::<usize>() != total {
        return param_err(
            "max_segments_in",
            format!("{} segments over {total} elements", lens.len()),
        );
    }
    let idx = |v: usize| -> Result<u32> {
        u32::try_from(v)
            .ok()
            .filter(|&i| i != suf_runtime::ir::GATHER_ZERO)
            .ok_or_else(|| CompilerError::Param {
                gate: "max_segments_in",
                detail: format!("index {v} beyond the gather range"),
            })
    };
    let mut cur = g.reshape(x, &[total])?;
    let mut lens = lens.to_vec();
    while lens.iter().any(|&l| l > 1) {
        let (mut ia, mut ib) = (Vec::new(), Vec::new());
        let mut off = 0;
        for &l in &lens {
            for j in 0..l / 2 {
                ia.push(idx(off + j)?);
                ib.push(idx(off + l / 2 + j)?);
            }
            off += l;
        }
        let pairs = ia.len();
        let a = g.gather(cur, ia.into(), &[pairs])?;
        let b = g.gather(cur, ib.into(), &[pairs])?;
        // max(a, b) = b + ReLU(a − b)
        let d = g.sub(a, b)?;
        let r = relu_in(g, d, (bits + 1).min(n))?;
        let m = g.add(b, r)?;
        let next: Vec<usize> = lens.iter().map(|l| l.div_ceil(2)).collect();
        cur = if lens.iter().all(|l| l % 2 == 0) {
            m
        } else {
            // Each segment's maxima, then its odd element carried: from [m | cur].
            let width = g.shape(cur)[0];
            let m1 = g.reshape(m, &[1, pairs])?;
            let c1 = g.reshape(cur, &[1, width])?;
            let both = g.concat_cols(&[m1, c1])?;
            let mut order = Vec::with_capacity(next.iter().sum());
            let (mut po, mut co) = (0, 0);
            for &l in &lens {
                for j in 0..l / 2 {
                    order.push(idx(po + j)?);
                }
                if l % 2 == 1 {
                    order.push(idx(pairs + co + l - 1)?);
                }
                po += l / 2;
                co += l;
            }
            let len = order.len();
            g.gather(both, order.into(), &[len])?
        };
        lens = next;
    }
    let rows = lens.len();
    Ok(g.reshape(cur, &[rows, 1])?)
}

/// The spec of ReLU on a value known to lie in [−2^{bits−1}, 2^{bits−1}): the MSB halves of
/// the `bits`-bit view (one (bits − 1)-bit DCF); with bits = n, [`relu_spec`].
pub fn relu_spec_in(n: u32, bits: u32) -> GateSpec {
    if bits >= n {
        return relu_spec(n);
    }
    let h = 1u64 << (bits - 1);
    single(
        Component::Sign(SignSpec {
            offset: h,
            bits,
            ring: n,
            lo: vec![(0, 0)],
            hi: vec![(1, h.wrapping_neg() & mask(n))],
        }),
        "relu_in",
    )
}

/// ReLU(x) for x ∈ [−2^{bits−1}, 2^{bits−1}) (declared; outside it the result is that of the
/// `bits`-bit view). 1 round.
///
/// # Errors
/// A width below 2, or a builder error.
pub fn relu_in(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    if bits < 2 {
        return param_err("relu_in", format!("{bits}-bit range"));
    }
    Ok(add_gate(g, x, relu_spec_in(n, bits))?[0])
}

/// Row maximum over the last axis for entries in [−2^{bits−1}, 2^{bits−1}) (declared): the
/// tree of [`max_last`] with each ReLU on the (bits + 1)-bit view of the difference.
/// ⌈log2 c⌉ rounds.
///
/// # Errors
/// As [`max_last`].
pub fn max_last_in(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    max_tree(g, x, |g, d| relu_in(g, d, (bits + 1).min(n)))
}

/// Fused ReLU + ARS: ReLU(⌊x/2^t⌋) = ⌊ReLU(x)/2^t⌋ for a matmul's output x at scale f + t.
/// Two rounds (ReLU, then a free-wrap floor: ReLU(x) ∈ [0, 2^{n−1}) needs no wrap key).
///
/// # Errors
/// As [`tr`].
pub fn relu_ars(g: &mut Builder, x: T, t: u32) -> Result<T> {
    let (n, _) = fp_of(g);
    check_shift("relu_ars", n, t)?;
    let r = relu(g, x)?;
    Ok(add_gate(g, r, floor_spec(n, 0, t, 0, Wrap::Free, "trfree"))?[0])
}

// -------------------------------------------------------------------------------------------
// Smooth activations

/// Behaviour outside the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outer {
    /// 0.
    Zero,
    /// The input itself (ReLU-like tails).
    Identity,
    /// A constant (real).
    Const(f64),
}

/// The smooth activations built by [`smooth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Smooth {
    /// GeLU, erf form.
    Gelu,
    /// GeLU, tanh form.
    GeluTanh,
    /// SiLU.
    Silu,
    /// Sigmoid.
    Sigmoid,
    /// tanh.
    Tanh,
    /// e^{−x} for x ≥ 0 (softmax).
    NExp,
}

impl Smooth {
    /// All kinds.
    pub const ALL: [Smooth; 6] = [
        Smooth::Gelu,
        Smooth::GeluTanh,
        Smooth::Silu,
        Smooth::Sigmoid,
        Smooth::Tanh,
        Smooth::NExp,
    ];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Smooth::Gelu => "gelu",
            Smooth::GeluTanh => "gelu_tanh",
            Smooth::Silu => "silu",
            Smooth::Sigmoid => "sigmoid",
            Smooth::Tanh => "tanh",
            Smooth::NExp => "nexp",
        }
    }

    /// The real function.
    pub fn func(self) -> fn(f64) -> f64 {
        match self {
            Smooth::Gelu => reference::gelu,
            Smooth::GeluTanh => reference::gelu_tanh,
            Smooth::Silu => reference::silu,
            Smooth::Sigmoid => reference::sigmoid,
            Smooth::Tanh => reference::tanh,
            Smooth::NExp => reference::nexp,
        }
    }

    /// The window: [−2^w, 2^w) (two-sided) or [0, 2^w) (one-sided), w returned.
    /// Beyond it the function equals its outer behaviour to within 2^{−13}.
    pub fn window_log2(self) -> u32 {
        match self {
            Smooth::Gelu | Smooth::GeluTanh => 2, // δ(4) = 1.3e−4
            Smooth::Silu => 4,                    // 16·e^{−16} = 1.8e−6
            Smooth::Sigmoid => 4,                 // e^{−16}
            Smooth::Tanh => 3,                    // 2e^{−16}
            Smooth::NExp => 4,                    // e^{−16}
        }
    }

    /// One-sided domain x ≥ 0.
    pub fn one_sided(self) -> bool {
        self == Smooth::NExp
    }

    /// Behaviour above the window.
    pub fn outer_pos(self) -> Outer {
        match self {
            Smooth::Gelu | Smooth::GeluTanh | Smooth::Silu => Outer::Identity,
            Smooth::Sigmoid | Smooth::Tanh => Outer::Const(1.0),
            Smooth::NExp => Outer::Zero,
        }
    }

    /// Behaviour below the window.
    pub fn outer_neg(self) -> Outer {
        match self {
            Smooth::Tanh => Outer::Const(-1.0),
            _ => Outer::Zero,
        }
    }

    /// Fit budget in output ULPs (the floor adds at most 0.5 ULP).
    fn budget_ulp(self) -> f64 {
        2.5
    }
}

/// The compiled pieces of a smooth activation at (n, f), for input scale f + `pre` (pre = f
/// for the fused rescale variants, else 0).
#[derive(Clone, Debug)]
pub struct SmoothSpecs {
    /// Round-1 gate (coarse + fine, or coarse + low floor for the fused variant).
    pub gate1: GateSpec,
    /// Fused only: the round-2 fine gate on the rounded input.
    pub fine: Option<GateSpec>,
    /// Fused with an identity tail: the floor of the tail (round 2).
    pub tail: Option<GateSpec>,
    /// The selector floor (last round).
    pub select: GateSpec,
    /// Whether gate1's output 0 is the outer part o (else gate1 has one output v or (ℓ, x_w)).
    pub has_o: bool,
    /// The fit of the fine part.
    pub fit: Fit,
    /// t: the fine output is at scale f + t.
    pub t: u32,
    /// Bits read by the selector floor.
    pub k2: u32,
    /// The output is at scale f + out_extra (0 unless folded: [`smooth_specs_in_folded`]).
    pub out_extra: u32,
    /// Interesting inputs: every cut of every view, as ring elements.
    pub boundaries: Vec<u64>,
}

impl SmoothSpecs {
    /// AES calls per element of the chain.
    pub fn aes_per_elem(&self, n: u32) -> usize {
        self.gate1.aes_per_elem(n)
            + self.fine.as_ref().map_or(0, |s| s.aes_per_elem(n))
            + self.tail.as_ref().map_or(0, |s| s.aes_per_elem(n))
            + self.select.aes_per_elem(n)
    }

    /// Pieces of the fine polynomial.
    pub fn pieces(&self) -> usize {
        self.fit.pieces.len()
    }
}

fn ceil_log2(v: u128) -> u32 {
    if v <= 1 {
        0
    } else {
        128 - (v - 1).leading_zeros()
    }
}

type Cache = Mutex<HashMap<SmoothKey, Arc<SmoothSpecs>>>;
type SmoothKey = (Smooth, u32, u32, bool, Prefer, Option<u32>, Option<u32>);

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// What a smooth activation's construction minimises first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Prefer {
    /// AES calls per element (the default: DESIGN §11's binding budget). The fine part is
    /// computed mod 2^{K2} (one value block per DCF level) and the selector floor carries a
    /// K2-bit wrap key.
    #[default]
    Aes,
    /// Key bytes: the fine part is computed in Z_{2^n} so the selector floor needs no wrap key
    /// (about 28% smaller keys for about 9% more AES at n = 50).
    Keys,
}

/// The (cached) specs of a smooth activation for ring n, scale f; `fused` takes the input at
/// scale 2f. Minimises AES ([`Prefer::Aes`]).
///
/// # Errors
/// Parameters that leave no room (n too small for the window and precision), or a fit that
/// cannot meet the budget.
pub fn smooth_specs(kind: Smooth, n: u32, f: u32, fused: bool) -> Result<Arc<SmoothSpecs>> {
    smooth_specs_with(kind, n, f, fused, Prefer::Aes)
}

/// [`smooth_specs`] with a choice of what to minimise.
///
/// # Errors
/// As [`smooth_specs`].
pub fn smooth_specs_with(
    kind: Smooth,
    n: u32,
    f: u32,
    fused: bool,
    prefer: Prefer,
) -> Result<Arc<SmoothSpecs>> {
    specs_cached(kind, n, f, fused, prefer, None, None)
}

/// The specs of a smooth activation (input and output at scale f) whose input is declared to
/// lie in [−2^{bits−1}, 2^{bits−1}) (two-sided kinds) or [0, 2^bits) (nExp) — e.g. the output
/// of a truncation, which the ring itself bounds. The coarse part then compares only the
/// high bits of a (bits + 1)-bit view ([`HighSpec`]: K − s levels instead of n); the fine part
/// covers the mask-dependent zones next to the window exactly. Falls back to [`smooth_specs_with`]
/// when the range leaves no room (bits + 1 ≥ n).
///
/// # Errors
/// As [`smooth_specs`].
pub fn smooth_specs_in(
    kind: Smooth,
    n: u32,
    f: u32,
    bits: u32,
    prefer: Prefer,
) -> Result<Arc<SmoothSpecs>> {
    specs_cached(kind, n, f, false, prefer, Some(bits), None)
}

/// [`smooth_specs_in`] for a two-sided kind whose consumer truncates anyway (a matmul
/// followed by its truncation): up to `max_t` of the t precision bits of the fine part are
/// left for the consumer's truncation ([`SmoothSpecs::out_extra`]: the output is at scale
/// f + out_extra), so the selector floor's DCF loses as many levels and the consumer's
/// truncation gains them (on fewer elements: a down projection has a quarter of the FFN's).
/// With max_t ≥ f + 4 the selector floor shifts by the selector bit only (a 1-level DCF),
/// t ≤ max_t and the error against F·2^{f+t} is ≤ 3.4·2^t (no output rounding); below, t is
/// chosen as usual and the floor removes t − max_t bits. The tail output x·2^{out_extra}
/// must fit the ring: |x| < 2^{n−1−out_extra}.
///
/// # Errors
/// As [`smooth_specs`].
pub fn smooth_specs_in_folded(
    kind: Smooth,
    n: u32,
    f: u32,
    bits: u32,
    max_t: u32,
    prefer: Prefer,
) -> Result<Arc<SmoothSpecs>> {
    specs_cached(kind, n, f, false, prefer, Some(bits), Some(max_t))
}

fn specs_cached(
    kind: Smooth,
    n: u32,
    f: u32,
    fused: bool,
    prefer: Prefer,
    range: Option<u32>,
    fold: Option<u32>,
) -> Result<Arc<SmoothSpecs>> {
    let key = (kind, n, f, fused, prefer, range, fold);
    if let Some(s) = cache().lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(s.clone());
    }
    let s = Arc::new(build_smooth(kind, n, f, fused, prefer, range, fold)?);
    cache()
        .lock()
        .map_err(|_| poisoned())?
        .insert(key, s.clone());
    Ok(s)
}

fn poisoned() -> CompilerError {
    CompilerError::Spec("spec cache poisoned by a panic".into())
}

fn outer_coeffs(o: Outer, f: u32, n: u32) -> (u64, u64) {
    match o {
        Outer::Zero => (0, 0),
        Outer::Identity => (0, 1),
        Outer::Const(c) => (((c * (f as f64).exp2()).round() as i64 as u64) & mask(n), 0),
    }
}

/// The fit of the window [−A, A) extended by exact pieces on [−2A, −A) and [A, 2A) equal to
/// the tails (at the fine output scale f + t, before the rounding constant).
fn with_tail_zones(ft: Fit, kind: Smooth, f: u32, t: u32, a: i64) -> Fit {
    let sc = 1i128 << t;
    let zone = |lo: i64, hi: i64, o: Outer| -> crate::fit::Piece {
        let coeffs = match o {
            Outer::Zero => vec![0, 0, 0],
            Outer::Identity => vec![lo as i128 * sc, sc, 0],
            Outer::Const(c) => {
                let v = (c * (f as f64).exp2()).round() as i128;
                vec![v * sc, 0, 0]
            }
        };
        crate::fit::Piece {
            lo,
            hi,
            center: lo,
            coeffs,
            max_err: 0.0,
        }
    };
    let mut pieces = vec![zone(-2 * a, -a, kind.outer_neg())];
    pieces.extend(ft.pieces.iter().cloned());
    pieces.push(zone(a, 2 * a, kind.outer_pos()));
    let mut range = ft.range;
    for p in [&pieces[0], &pieces[pieces.len() - 1]] {
        for v in [p.value(p.lo), p.value(p.hi - 1)] {
            range = (range.0.min(v), range.1.max(v));
        }
    }
    Fit {
        pieces,
        max_abs: range.0.abs().max(range.1.abs()),
        range,
        ..ft
    }
}

fn build_smooth(
    kind: Smooth,
    n: u32,
    f: u32,
    fused: bool,
    prefer: Prefer,
    range: Option<u32>,
    fold: Option<u32>,
) -> Result<SmoothSpecs> {
    let free = prefer == Prefer::Keys;
    let name = kind.name();
    let w = kind.window_log2();
    let two = !kind.one_sided();
    // Declared range: the coarse part reads the high bits of a (bits + 1)-bit view, dropping
    // s low bits; the zones next to the window then need the fine part to equal the tails:
    // two-sided, s = w + f and the fine view doubles to [−2A, 2A); one-sided (nExp), s =
    // w + f − 2 and the fine part must already equal the tail on [3A/4, A).
    let ranged = range.filter(|&b| {
        let s = if two { w + f } else { w + f - 2 };
        !fused && b + 1 < n && b + 1 >= s + 3
    });
    let zones = two && ranged.is_some();
    // Folded output: the selector floor leaves up to `m` bits for the consumer's truncation
    // (the zones' tails are exact at any scale) and removes the t − m others; with m ≥ f + 4
    // the candidates include every t ≤ m (no rounding floor at all).
    let fold_max = fold.filter(|&m| zones && m > 0);
    let fold = fold_max.filter(|&m| m >= f + 4);
    let extra_of = |t: u32| fold_max.map_or(0, |m| m.min(t));
    // With a declared range and no tail output (nExp), the window bit ℓ comes XOR-shared from
    // a DPF ([`BitSpec`]) and v = 4Q + ℓ: the carry 2·ℓ₀ℓ₁ of the two shares falls on bit 1,
    // which the selector floor (by t + 2) discards. Else v = 2Q + ℓ.
    let (op0, on0) = (kind.outer_pos(), kind.outer_neg());
    let xor_sel = ranged.is_some() && op0 == Outer::Zero && on0 == Outer::Zero;
    let lsel: u32 = if xor_sel { 2 } else { 1 };
    // Fine view on the input at scale f.
    let kf = w + f + two as u32 + zones as u32;
    let a_ulp: u64 = 1 << (w + f); // window half-width (two-sided) in ULPs at scale f
    let pre = if fused { f } else { 0 };
    if kf + pre + 3 > n || f == 0 {
        return param_err(
            "smooth",
            format!("{name}: ring of {n} bits too small for f = {f}"),
        );
    }
    let func = kind.func();
    // nExp is exactly 0 from 9.125 on (e^{−9.125} < 2^{−13.16}: under half an ULP at f ≤ 12).
    let cutoff = 9.125;
    let func = move |x: f64| {
        if kind == Smooth::NExp && x >= cutoff {
            0.0
        } else {
            func(x)
        }
    };
    let fmax = match kind {
        Smooth::Gelu | Smooth::GeluTanh | Smooth::Silu => (1u64 << (w + zones as u32)) as f64,
        _ => 1.0,
    };
    // t: fine output at scale f + t; keep 2Q within 42 bits (one value block for three
    // payload words) and within the ring.
    let vbits = ceil_log2(fmax.ceil() as u128 + 1) + 2; // sign + LSB selector + value
                                                        // t: the fine output is at scale f + t. First try to keep 2Q within 42 bits (three
                                                        // payload words then fit one 128-bit value block: 2 AES per DCF level); if the
                                                        // coefficients are then too coarse for the budget, use the whole ring (3 AES per level).
    if f + vbits + 4 > n {
        return param_err("smooth", format!("{name}: ring of {n} bits too small"));
    }
    let (lo, hi) = if two {
        (-(a_ulp as i64), a_ulp as i64)
    } else {
        (0, a_ulp as i64)
    };
    let ff = move |x: f64| func(x);
    let breaks = if kind == Smooth::NExp {
        // Beyond the cut-off the output is exactly 0: start a piece there.
        vec![((cutoff * (f as f64).exp2()) as i64).min(hi)]
    } else {
        Vec::new()
    };
    let try_t = |t: u32| {
        // With a declared range the budget uses the room up to 4 ULP: 3.4 + the floor's 0.5.
        let budget_ulp = if ranged.is_some() {
            3.4
        } else {
            kind.budget_ulp()
        };
        let budget_q = budget_ulp * (t as f64).exp2();
        // At x = 0 the output is exact (|error| < half an ULP before the rounding floor):
        // nExp(0) = 2^f exactly (softmax denominators ≥ 1), GeLU/SiLU/tanh(0) = 0,
        // sigmoid(0) = 1/2.
        let exact0 = 0.45 * (t as f64).exp2();
        let bf = move |x: f64| if x == 0.0 { exact0 } else { budget_q };
        fit(&FitRequest {
            f: &ff,
            budget: &bf,
            lo,
            hi,
            f_in: f,
            out_scale: f + t,
            degree: 2,
            center: Center::Mid,
            breaks: breaks.clone(),
            max_pieces: 48,
        })
    };
    let t_fast = (2 * f).min(42u32.min(n).saturating_sub(f + vbits)).max(2);
    let t_full = (2 * f).min(n - f - vbits).max(2);
    // Among the candidates, the one with the fewest AES calls per element (then the
    // smallest key).
    let mut best: Option<((usize, usize), u32, Fit, u32)> = None;
    let mut last_err = None;
    let mut cands: Vec<u32> = (t_fast.saturating_sub(10).max(2)..=t_fast)
        .step_by(2)
        .collect();
    if !cands.contains(&t_fast) {
        cands.push(t_fast);
    }
    if !cands.contains(&t_full) {
        cands.push(t_full);
    }
    if let Some(m) = fold {
        // Also every t up to the room m: no selector rounding at all (t ≤ m).
        let hi_t = m.min(t_full);
        for t in hi_t.saturating_sub(4).max(2)..=hi_t {
            if !cands.contains(&t) {
                cands.push(t);
            }
        }
    }
    for t in cands {
        match try_t(t) {
            Ok(ft) => {
                let mut ft = if zones {
                    with_tail_zones(ft, kind, f, t, a_ulp as i64)
                } else {
                    ft
                };
                if t > extra_of(t) {
                    ft.add_constant(1i128 << (t - extra_of(t) - 1));
                }
                // v' = 2^lsel·Q' + (low bits) + 2^{K2−1} must lie in [0, 2^{K2}).
                let sc = 1i128 << lsel;
                let need = (-sc * ft.range.0).max(sc * ft.range.1 + sc).max(1) as u128;
                let k2 = (ceil_log2(need) + 1).max(t + 2 + lsel);
                if k2 > n || (free && k2 >= n) {
                    continue;
                }
                use suf_fss::dcf::{aes_per_eval, DcfKeys};
                let (ring, wrap_aes, wrap_bytes) = if free {
                    (n, 0, 0)
                } else {
                    (
                        k2,
                        aes_per_eval(k2, n, 2),
                        DcfKeys::key_bytes_per_key(k2, n, 2),
                    )
                };
                let sel_bits = t - extra_of(t) + lsel;
                let aes = ft.pieces.len() * aes_per_eval(kf, ring, 3)
                    + aes_per_eval(sel_bits, n, 2)
                    + wrap_aes;
                let bytes = DcfKeys::key_bytes_per_key(sel_bits, n, 2) + wrap_bytes;
                // Prefer::Aes: fewest AES calls, then bytes. Prefer::Keys: key bytes of the
                // selector floor plus 2 bytes per AES call (one AES is worth about two key
                // bytes against the targets), then AES.
                let aes = if free {
                    (bytes + 2 * aes, aes)
                } else {
                    (aes, bytes)
                };
                if best.as_ref().is_none_or(|b| aes < b.0) {
                    best = Some((aes, t, ft, k2));
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    let (_, t, ft, k2) = match best {
        Some(b) => b,
        None => {
            return Err(last_err.unwrap_or_else(|| {
                CompilerError::Fit(format!("{name}: no precision fits the {n}-bit ring"))
            }))
        }
    };
    // The selector floor removes t bits (and the selector bits) unless the output is folded.
    let out_extra = extra_of(t);
    let t_floor = t - out_extra;
    let mut v = ft.clone();
    v.scale(1 << lsel);
    let ring = if free { n } else { k2 };
    let fine_view = View {
        offset: if two { a_ulp << zones as u32 } else { 0 },
        bits: kf,
    };
    let fine = v.to_poly(fine_view, ring)?;
    let select = single(
        Component::Floor(FloorSpec {
            view: View {
                offset: 1 << (k2 - 1),
                bits: if free { n } else { k2 },
            },
            shift: t_floor + lsel,
            select: true,
            wrap: if free { Wrap::Free } else { Wrap::Dcf },
            gamma: vec![1],
            kappa: vec![(1u64 << (k2 - 1 - t_floor - lsel)).wrapping_neg() & mask(n)],
        }),
        &format!("{name}_sel"),
    );
    // Coarse: thresholds on the input at scale f + pre; with `pre`, on X + 2^{pre−1}
    // (round-to-nearest of the rescale).
    let big = a_ulp << pre;
    let rnd = if pre > 0 { 1u64 << (pre - 1) } else { 0 };
    let (op, on) = (kind.outer_pos(), kind.outer_neg());
    let has_o = op != Outer::Zero || on != Outer::Zero;
    let ident = op == Outer::Identity || on == Outer::Identity;
    let nm = mask(n);
    if let Some(bits) = ranged {
        // Coarse on the high part of the (bits + 1)-bit view (see [`HighSpec`]): outputs
        // o (if any) and ℓ = 1 on the tails; u = x on every interval (centre = view offset).
        let kc = bits + 1;
        let q = 1 + has_o as usize;
        let d = ident as usize;
        let up = |c: (u64, u64)| {
            (
                c.0.wrapping_shl(out_extra) & nm,
                c.1.wrapping_shl(out_extra) & nm,
            )
        };
        let cp = up(outer_coeffs(op, f, n));
        let cn = up(outer_coeffs(on, f, n));
        let a = a_ulp as i64;
        // Per interval of h: the tail's (constant, slope) or None for the window.
        type Tails = Vec<Option<(u64, u64)>>;
        let (offset, shift, cuts, tails): (u64, u32, Vec<u64>, Tails) = if two {
            let s_ = w + f;
            let h0 = 1u64 << (kc - 1 - s_);
            (
                1u64 << (kc - 1),
                s_,
                vec![h0 - 1, h0 + 2],
                vec![Some(cn), None, Some(cp)],
            )
        } else {
            (0, w + f - 2, vec![4], vec![None, Some(cp)])
        };
        let mut coeffs = Vec::new();
        for t_ in &tails {
            let (oc, ell) = match t_ {
                Some(c) => (*c, 1u64),
                None => ((0, 0), 0),
            };
            if has_o {
                coeffs.push(oc.0);
                if d == 1 {
                    coeffs.push(oc.1);
                }
            }
            coeffs.push(ell);
            if d == 1 {
                coeffs.push(0);
            }
        }
        let coarse = HighSpec {
            view: View { offset, bits: kc },
            shift,
            ring: n,
            centers: vec![offset; cuts.len() + 1],
            cuts,
            degree: d,
            outputs: q,
            coeffs,
        };
        // Zones where the interval depends on the mask: the final output must not.
        let tail_val = |o: Outer, x: i64| -> i128 {
            match o {
                Outer::Zero => 0,
                Outer::Identity => x as i128,
                Outer::Const(c) => (c * (f as f64).exp2()).round() as i128,
            }
        };
        let zone_list: Vec<(i64, i64, Outer)> = if two {
            vec![(-2 * a, -a, on), (a, 2 * a, op)]
        } else {
            vec![(3 * a / 4, a, op)]
        };
        for &(z0, z1, o) in &zone_list {
            let fine_out = |x: i64| ft.value(x).div_euclid(1i128 << t_floor);
            if let Some(x) = (z0..z1).find(|&x| fine_out(x) != tail_val(o, x) << out_extra) {
                return Err(CompilerError::Fit(format!(
                    "{name}: the fine part differs from the tail at input {x} (mask-dependent zone)"
                )));
            }
        }
        let mut boundaries: Vec<u64> = zone_list
            .iter()
            .flat_map(|&(z0, z1, _)| [z0 as u64 & nm, z1 as u64 & nm])
            .collect();
        if two {
            boundaries.push((1u64 << bits.saturating_sub(1)).wrapping_neg() & nm);
        }
        for &cu in std::iter::once(&0u64).chain(&fine.cuts) {
            let x = cu.wrapping_sub(fine.view.offset) & mask(fine.view.bits);
            let xs = if x >> (fine.view.bits - 1) == 1 && two {
                x | !mask(fine.view.bits)
            } else {
                x
            };
            boundaries.push(xs & nm);
        }
        let coarse = if xor_sel {
            Component::Bit(BitSpec {
                view: coarse.view,
                shift: coarse.shift,
                bits: tails.iter().map(|t_| t_.is_some()).collect(),
                cuts: coarse.cuts,
            })
        } else {
            Component::High(coarse)
        };
        let gate1 = GateSpec {
            label: format!("{name}_in{bits}_g1"),
            outputs: q,
            parts: vec![
                Part {
                    comp: coarse,
                    targets: (0..q).collect(),
                },
                Part {
                    comp: Component::Poly(fine),
                    targets: vec![q - 1],
                },
            ],
        };
        return Ok(SmoothSpecs {
            gate1,
            fine: None,
            tail: None,
            select,
            has_o,
            fit: ft,
            t,
            k2,
            out_extra,
            boundaries,
        });
    }
    let coarse = if two {
        // View X' + A (X' = X + rnd): [0, 2A) window, then the positive tail up to
        // X = 2^{n−1} (so the top inputs, whose X' wraps, stay in it), the rest negative.
        // The positive tail is centred so that u = X (not X'): its identity output is then
        // below 2^{n−1}, as the fused variant's free-wrap floor requires.
        let c = big.wrapping_add(rnd) & nm;
        let cuts = vec![2 * big, (1u64 << (n - 1)) + big + rnd];
        let cp = outer_coeffs(op, f, n);
        let cn = outer_coeffs(on, f, n);
        let neg_center = ((1u64 << (n - 1)) + big) & nm; // u = X' + 2^{n−1}: unused slope
        let q = 1 + has_o as usize;
        let mut coeffs = Vec::new();
        // interval 0: window
        for _ in 0..q {
            coeffs.extend_from_slice(&[0, 0]);
        }
        // interval 1: positive tail
        if has_o {
            coeffs.extend_from_slice(&[cp.0, cp.1]);
        }
        coeffs.extend_from_slice(&[1, 0]);
        // interval 2: negative tail (identity there is never used)
        if has_o {
            coeffs.extend_from_slice(&[cn.0, 0]);
        }
        coeffs.extend_from_slice(&[1, 0]);
        PolySpec {
            view: View { offset: c, bits: n },
            ring: n,
            cuts,
            degree: 1,
            outputs: q,
            centers: vec![0, big + rnd, neg_center],
            coeffs,
        }
    } else {
        // One-sided (x ≥ 0 declared): view on n − 1 bits, [0, A) window.
        let q = 1 + has_o as usize;
        let cp = outer_coeffs(op, f, n);
        let mut coeffs = Vec::new();
        for _ in 0..q {
            coeffs.extend_from_slice(&[0, 0]);
        }
        if has_o {
            coeffs.extend_from_slice(&[cp.0, cp.1]);
        }
        coeffs.extend_from_slice(&[1, 0]);
        PolySpec {
            view: View {
                offset: rnd,
                bits: n - 1,
            },
            ring: n,
            cuts: vec![big],
            degree: 1,
            outputs: q,
            centers: vec![0, 0],
            coeffs,
        }
    };
    let coarse = if ident {
        coarse
    } else {
        // degree 0 suffices: drop the slope column
        let PolySpec {
            view,
            ring,
            cuts,
            outputs,
            centers,
            coeffs,
            ..
        } = coarse;
        PolySpec {
            view,
            ring,
            cuts,
            degree: 0,
            outputs,
            centers: centers.iter().map(|_| 0).collect(),
            coeffs: coeffs.chunks(2).map(|c| c[0]).collect(),
        }
    };
    let mut boundaries = Vec::new();
    let add_cuts = |b: &mut Vec<u64>, view: View, cuts: &[u64], scale_pre: u32| {
        for &cu in std::iter::once(&0u64).chain(cuts) {
            let x = cu.wrapping_sub(view.offset) & mask(view.bits);
            // sign-extend views narrower than n
            let xs = if view.bits < n && x >> (view.bits - 1) == 1 {
                x | !mask(view.bits)
            } else {
                x
            };
            b.push((xs << scale_pre) & nm);
        }
    };
    add_cuts(&mut boundaries, coarse.view, &coarse.cuts, 0);
    add_cuts(&mut boundaries, fine.view, &fine.cuts, pre);
    let label = |s: &str| format!("{name}{}_{s}", if fused { "_rs" } else { "" });
    let q0 = coarse.outputs;
    if !fused {
        let gate1 = GateSpec {
            label: label("g1"),
            outputs: q0,
            parts: vec![
                Part {
                    comp: Component::Poly(coarse),
                    targets: (0..q0).collect(),
                },
                Part {
                    comp: Component::Poly(fine),
                    targets: vec![q0 - 1],
                },
            ],
        };
        return Ok(SmoothSpecs {
            gate1,
            fine: None,
            tail: None,
            select,
            has_o,
            fit: ft,
            t,
            k2,
            out_extra,
            boundaries,
        });
    }
    // Fused: round 1 = coarse on X + the low floor x_w = ⌊(X + 2^{f−1})/2^f⌋ mod 2^{kf};
    // round 2 = fine on x_w (and the tail's floor); round 3 = selector.
    let low = Component::Floor(FloorSpec {
        view: View {
            offset: rnd,
            bits: kf + pre,
        },
        shift: pre,
        select: false,
        wrap: Wrap::Drop,
        gamma: vec![1],
        kappa: vec![0],
    });
    let gate1 = GateSpec {
        label: label("g1"),
        outputs: q0 + 1,
        parts: vec![
            Part {
                comp: Component::Poly(coarse),
                targets: (0..q0).collect(),
            },
            Part {
                comp: low,
                targets: vec![q0],
            },
        ],
    };
    let tail = if ident {
        // o' = 1_tail·X' ∈ [0, 2^{n−1}): free-wrap floor by pre.
        Some(floor_spec(n, 0, pre, 0, Wrap::Free, &label("tail")))
    } else {
        None
    };
    Ok(SmoothSpecs {
        gate1,
        fine: Some(single(Component::Poly(fine), &label("fine"))),
        tail,
        select,
        has_o,
        fit: ft,
        t,
        k2,
        out_extra,
        boundaries,
    })
}

/// A smooth activation F (input and output at the program's scale f): two rounds.
/// Error against the real function ≤ budget + 0.5 ULP in the window, the tail error
/// (≤ 2^{−13}) outside; exact 0 for nExp beyond 9.125 and for x ≥ 16.
///
/// # Errors
/// As [`smooth_specs`], or a builder error.
pub fn smooth(g: &mut Builder, x: T, kind: Smooth) -> Result<T> {
    smooth_with(g, x, kind, Prefer::Aes)
}

/// [`smooth`] with a choice of what the construction minimises ([`Prefer`]).
///
/// # Errors
/// As [`smooth`].
pub fn smooth_with(g: &mut Builder, x: T, kind: Smooth, prefer: Prefer) -> Result<T> {
    let (n, f) = fp_of(g);
    let sp = smooth_specs_with(kind, n, f, false, prefer)?;
    apply_smooth(g, x, &sp)
}

/// A smooth activation of an input declared to lie in [−2^{bits−1}, 2^{bits−1}) (two-sided
/// kinds) or [0, 2^bits) (nExp), e.g. a truncation's output: [`smooth_specs_in`]. Two rounds;
/// the same error bound as [`smooth`] on the declared range.
///
/// # Errors
/// As [`smooth`].
pub fn smooth_in(g: &mut Builder, x: T, kind: Smooth, bits: u32, prefer: Prefer) -> Result<T> {
    let (n, f) = fp_of(g);
    let sp = smooth_specs_in(kind, n, f, bits, prefer)?;
    apply_smooth(g, x, &sp)
}

/// [`smooth_in`] with the output left at scale f + t for a consumer that truncates
/// ([`smooth_specs_in_folded`]); returns the output and t. Two rounds.
///
/// # Errors
/// As [`smooth`].
pub fn smooth_in_folded(
    g: &mut Builder,
    x: T,
    kind: Smooth,
    bits: u32,
    max_t: u32,
    prefer: Prefer,
) -> Result<(T, u32)> {
    let (n, f) = fp_of(g);
    let sp = smooth_specs_in_folded(kind, n, f, bits, max_t, prefer)?;
    Ok((apply_smooth(g, x, &sp)?, sp.out_extra))
}

fn apply_smooth(g: &mut Builder, x: T, sp: &SmoothSpecs) -> Result<T> {
    let outs = add_gate(g, x, sp.gate1.clone())?;
    let v = *outs.last().expect("gate1 has outputs");
    let y = add_gate(g, v, sp.select.clone())?[0];
    if sp.has_o {
        Ok(g.add(outs[0], y)?)
    } else {
        Ok(y)
    }
}

/// A smooth activation of a matmul's output X at scale 2f: F(round(X/2^f)) at scale f, the
/// rescale folded in (the plain reference folds it the same way). Three rounds.
///
/// # Errors
/// As [`smooth`].
pub fn rescale_smooth(g: &mut Builder, x: T, kind: Smooth) -> Result<T> {
    let (n, f) = fp_of(g);
    let sp = smooth_specs(kind, n, f, true)?;
    let outs = add_gate(g, x, sp.gate1.clone())?;
    // outs: [o'?, ℓ, x_w]
    let q = outs.len();
    let (ell, xw) = (outs[q - 2], outs[q - 1]);
    let fine = sp
        .fine
        .as_ref()
        .ok_or_else(|| CompilerError::Spec("fused spec without fine gate".into()))?;
    let qq = add_gate(g, xw, fine.clone())?[0];
    let v = g.add(qq, ell)?;
    let y = add_gate(g, v, sp.select.clone())?[0];
    if !sp.has_o {
        return Ok(y);
    }
    let o = match &sp.tail {
        Some(tspec) => add_gate(g, outs[0], tspec.clone())?[0],
        None => outs[0],
    };
    Ok(g.add(o, y)?)
}

/// GeLU (erf form, BERT). 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn gelu(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::Gelu)
}

/// GeLU (tanh form, GPT-2). 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn gelu_tanh(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::GeluTanh)
}

/// SiLU. 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn silu(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::Silu)
}

/// Sigmoid. 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn sigmoid(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::Sigmoid)
}

/// tanh. 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn tanh(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::Tanh)
}

/// nExp: e^{−x} for x ≥ 0 (declared domain [0, 2^{n−1}); negative inputs give 0). nExp(0) is
/// exactly 2^f, the output is exactly 0 for x ≥ 9.125. 2 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn nexp(g: &mut Builder, x: T) -> Result<T> {
    smooth(g, x, Smooth::NExp)
}

/// GeLU of a matmul output at scale 2f. 3 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn rescale_gelu(g: &mut Builder, x: T) -> Result<T> {
    rescale_smooth(g, x, Smooth::Gelu)
}

/// SiLU of a matmul output at scale 2f. 3 rounds.
///
/// # Errors
/// As [`smooth`].
pub fn rescale_silu(g: &mut Builder, x: T) -> Result<T> {
    rescale_smooth(g, x, Smooth::Silu)
}

// -------------------------------------------------------------------------------------------
// Reciprocal

/// The compiled reciprocal: a quadratic spline of 1/x on [1, L] and a floor.
#[derive(Clone, Debug)]
pub struct RecipSpecs {
    /// Round 1.
    pub gate1: GateSpec,
    /// Round 2.
    pub floor: GateSpec,
    /// Output scale.
    pub out_scale: u32,
    /// The fit.
    pub fit: Fit,
    /// Cuts as inputs.
    pub boundaries: Vec<u64>,
}

type RecipCache = Mutex<HashMap<(u32, u32, u64), Arc<RecipSpecs>>>;

/// The (cached) reciprocal specs for inputs in [1, max_len] at scale f.
///
/// # Errors
/// A maximum length below 2, or a ring too small.
pub fn recip_specs(n: u32, f: u32, max_len: u64) -> Result<Arc<RecipSpecs>> {
    static C: OnceLock<RecipCache> = OnceLock::new();
    let c = C.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (n, f, max_len);
    if let Some(s) = c.lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(s.clone());
    }
    let s = Arc::new(build_recip(n, f, max_len)?);
    c.lock().map_err(|_| poisoned())?.insert(key, s.clone());
    Ok(s)
}

fn build_recip(n: u32, f: u32, max_len: u64) -> Result<RecipSpecs> {
    if !(2..=1 << 16).contains(&max_len) {
        return param_err(
            "reciprocal",
            format!("maximum length {max_len} outside 2..=65536"),
        );
    }
    let lb = ceil_log2(max_len as u128);
    let k = f + lb + 1;
    // 1/max_len keeps 2^{f−4} ULPs (the output rounding is then ≤ 0.2 % relative, below the
    // spline's 0.4 %); a consumer that multiplies by the output truncates by this scale, so
    // every bit above what the precision needs costs it a DCF level per element.
    let out_scale = f + lb.saturating_sub(4);
    if out_scale + 4 > n || k > n - 1 {
        return param_err("reciprocal", format!("ring of {n} bits too small"));
    }
    let t = (n - 3 - out_scale).clamp(1, 2 * f + 8);
    let s = out_scale + t;
    let one = (f as f64).exp2();
    let fun = move |x: f64| 1.0 / x.max(1.0);
    let sc = (s as f64).exp2();
    let bud = move |x: f64| 0.004 * fun(x) * sc;
    let mut ft = fit(&FitRequest {
        f: &fun,
        budget: &bud,
        lo: 0,
        hi: 1 << k,
        f_in: f,
        out_scale: s,
        degree: 2,
        center: Center::Mid,
        breaks: vec![one as i64],
        max_pieces: 64,
    })?;
    ft.add_constant(1i128 << (t - 1));
    if ft.range.0 < 0 {
        return Err(CompilerError::Fit("reciprocal spline went negative".into()));
    }
    let poly = ft.to_poly(View { offset: 0, bits: k }, n)?;
    let boundaries = std::iter::once(0)
        .chain(poly.cuts.iter().copied())
        .collect();
    Ok(RecipSpecs {
        gate1: single(Component::Poly(poly), "recip_g1"),
        floor: floor_spec(n, 0, t, 0, Wrap::Free, "recip_tr"),
        out_scale,
        fit: ft,
        boundaries,
    })
}

/// 1/x for softmax denominators x ∈ [1, max_len] (declared range; outside it the result is
/// a deterministic clamp/garbage). Output at scale f + ⌈log2 max_len⌉ − 4 (returned), so that
/// 1/max_len keeps 2^{f−4} ULPs; relative error ≤ 0.7% over the range. 2 rounds.
///
/// # Errors
/// As [`recip_specs`], or a builder error.
pub fn reciprocal(g: &mut Builder, x: T, max_len: u64) -> Result<(T, u32)> {
    let (n, f) = fp_of(g);
    let sp = recip_specs(n, f, max_len)?;
    let q = add_gate(g, x, sp.gate1.clone())?[0];
    Ok((add_gate(g, q, sp.floor.clone())?[0], sp.out_scale))
}

// -------------------------------------------------------------------------------------------
// rsqrt

/// The rsqrt chain's compiled gates.
#[derive(Clone, Debug)]
pub struct RsqrtSpecs {
    /// Round 1: normalisation (v1 = mantissa + parity, g = 2^{G−h}).
    pub norm: GateSpec,
    /// Round 2: floor to a k-bit mantissa.
    pub floor: GateSpec,
    /// Round 3: the quadratic on (mantissa, parity).
    pub poly: GateSpec,
    /// Output scale (round 4 multiplies y by g).
    pub out_scale: u32,
    /// The fit of round 3.
    pub fit: Fit,
    /// Octave boundaries as inputs.
    pub boundaries: Vec<u64>,
}

/// Mantissa bits kept after normalisation.
const RSQRT_K: u32 = 7;

type RsqrtCache = Mutex<HashMap<(u32, u32, u64, u64, u32), Arc<RsqrtSpecs>>>;

/// The (cached) rsqrt specs for integer inputs X ∈ [x_lo, x_hi] at input scale f_in (real
/// x = X/2^{f_in}). Inputs below x_lo are treated as x_lo's octave start.
///
/// # Errors
/// An empty or too wide range, or a ring too small.
pub fn rsqrt_specs(n: u32, f_in: u32, x_lo: u64, x_hi: u64) -> Result<Arc<RsqrtSpecs>> {
    rsqrt_specs_max(n, f_in, x_lo, x_hi, u32::MAX)
}

/// [`rsqrt_specs`] with the output scale at most `max_out` where the precision allows (the
/// mantissa polynomial keeps at least k + 4 bits): a consumer that multiplies by the output
/// and truncates pays one DCF level per element for every bit of scale.
///
/// # Errors
/// As [`rsqrt_specs`].
pub fn rsqrt_specs_max(
    n: u32,
    f_in: u32,
    x_lo: u64,
    x_hi: u64,
    max_out: u32,
) -> Result<Arc<RsqrtSpecs>> {
    static C: OnceLock<RsqrtCache> = OnceLock::new();
    let c = C.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (n, f_in, x_lo, x_hi, max_out);
    if let Some(s) = c.lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(s.clone());
    }
    let s = Arc::new(build_rsqrt(n, f_in, x_lo, x_hi, max_out)?);
    c.lock().map_err(|_| poisoned())?.insert(key, s.clone());
    Ok(s)
}

fn build_rsqrt(n: u32, f_in: u32, x_lo: u64, x_hi: u64, max_out: u32) -> Result<RsqrtSpecs> {
    if x_lo == 0 || x_hi < x_lo {
        return param_err("rsqrt", format!("range [{x_lo}, {x_hi}]"));
    }
    let e_lo = 63 - x_lo.leading_zeros();
    let e_hi = 63 - x_hi.leading_zeros();
    let k = RSQRT_K;
    let kv = e_hi + 1; // view bits
    if kv + 3 > n || e_hi < k + 1 {
        return param_err(
            "rsqrt",
            format!("range up to 2^{e_hi} does not fit a {n}-bit ring with a {k}-bit mantissa"),
        );
    }
    // Per octave e: E' = e − f_in = 2h + p.
    let hp = |e: u32| {
        let ep = e as i64 - f_in as i64;
        let p = ep.rem_euclid(2);
        ((ep - p) / 2, p as u64)
    };
    let g_top = hp(e_hi).0;
    let g_bot = hp(e_lo).0;
    if (g_top - g_bot) as u32 + 2 > n / 2 {
        return param_err("rsqrt", "range too wide for the exponent factor");
    }
    // Round 1: [0, 2^{e_lo}) clamped to mantissa 1 of octave e_lo (X = 0 included), then one
    // interval per octave e_lo..=e_hi; on octave e, with u = X − 2^e:
    // v1 = u·2^{e_hi−e} + 2^{e_hi}·p (mantissa minus its leading one, parity on top) and
    // g = 2^{G−h}.
    let nm = mask(n);
    let mut cuts = Vec::new();
    let mut centers = Vec::new();
    let mut coeffs = Vec::new();
    if e_lo > 0 {
        let (h, p) = hp(e_lo);
        centers.push(0);
        coeffs.extend_from_slice(&[(p << e_hi) & nm, 0]);
        coeffs.extend_from_slice(&[(1u64 << (g_top - h) as u32) & nm, 0]);
    }
    for e in e_lo..=e_hi {
        if e > 0 {
            cuts.push(1u64 << e);
        }
        let (h, p) = hp(e);
        let sh = e_hi - e;
        centers.push(1u64 << e);
        coeffs.extend_from_slice(&[(p << e_hi) & nm, (1u64 << sh) & nm]);
        coeffs.extend_from_slice(&[(1u64 << (g_top - h) as u32) & nm, 0]);
    }
    // (With x_lo = 1, X = 0 falls in octave 0's interval [0, 2) and wraps: it is outside the
    // declared range; x_lo ≥ 2 clamps every X < x_lo's octave to mantissa 1.)
    let norm_poly = PolySpec {
        view: View {
            offset: 0,
            bits: kv,
        },
        ring: n,
        cuts,
        degree: 1,
        outputs: 2,
        centers,
        coeffs,
    };
    let boundaries = std::iter::once(0)
        .chain(norm_poly.cuts.iter().copied())
        .chain([x_lo, x_hi])
        .collect();
    // Round 2: v2 = ⌊v1 / 2^{e_hi − k}⌋ ∈ [0, 2^{k+1}) (v1 < 2^{e_hi+1} < 2^{n−1}).
    let floor = floor_spec(n, 0, e_hi - k, 0, Wrap::Free, "rsqrt_tr");
    // Round 3: y(v2) ≈ rsqrt((1 + (m + 0.5)/2^k)·2^p)·2^{S_y}.
    // y ≤ 2^{S_y} and g ≤ 2^{G − h_min}: the product must stay below 2^{n−2}.
    let span = (g_top - g_bot) as u32;
    let s_y = (2 * k + 10).min((n - 2).saturating_sub(span));
    let s_y = s_y.min((max_out as i64 - g_top).clamp(k as i64 + 4, i64::from(u32::MAX)) as u32);
    if s_y < k + 4 {
        return param_err("rsqrt", format!("range too wide for a {n}-bit ring"));
    }
    let half = 1u64 << k;
    let fun = move |v: f64| {
        // v = v2 (integer, f_in = 0)
        let vi = v as u64;
        let p = (vi >> k) & 1;
        let m = (vi & (half - 1)) as f64 + 0.5;
        let mant = 1.0 + m / half as f64;
        1.0 / (mant * (p as f64).exp2()).sqrt()
    };
    let sc = (s_y as f64).exp2();
    // 0.1 % relative (at least 1.5 units of the output scale: a coarse S_y needs the room);
    // the mantissa's own quantization (k bits) dominates either way.
    let bud = move |v: f64| (0.001 * fun(v) * sc).max(1.5);
    let ft = fit(&FitRequest {
        f: &fun,
        budget: &bud,
        lo: 0,
        hi: 1 << (k + 1),
        f_in: 0,
        out_scale: s_y,
        degree: 2,
        center: Center::Mid,
        breaks: vec![half as i64],
        max_pieces: 32,
    })?;
    let poly = ft.to_poly(
        View {
            offset: 0,
            bits: k + 1,
        },
        n,
    )?;
    let out_scale = s_y as i64 + g_top;
    if out_scale <= 0 || out_scale as u32 + 2 > n {
        return param_err("rsqrt", format!("output scale {out_scale} does not fit"));
    }
    Ok(RsqrtSpecs {
        norm: single(Component::Poly(norm_poly), "rsqrt_norm"),
        floor,
        poly: single(Component::Poly(poly), "rsqrt_poly"),
        out_scale: out_scale as u32,
        fit: ft,
        boundaries,
    })
}

/// 1/√x with relative precision for x = X/2^{f_in} with X ∈ [x_lo, x_hi] (declared; e.g. a
/// LayerNorm variance at scale 2f). Returns the output and its scale (S_y + ⌊(e_hi −
/// f_in)/2⌋, chosen so that no truncation is needed: the consumer multiplies and truncates
/// once). Relative error ≤ 1% over the range. 4 rounds: normalise, floor, quadratic, product.
///
/// # Errors
/// As [`rsqrt_specs`], or a builder error.
pub fn rsqrt(g: &mut Builder, x: T, f_in: u32, x_lo: u64, x_hi: u64) -> Result<(T, u32)> {
    rsqrt_max(g, x, f_in, x_lo, x_hi, u32::MAX)
}

/// [`rsqrt`] with the output scale at most `max_out` where the precision allows
/// ([`rsqrt_specs_max`]).
///
/// # Errors
/// As [`rsqrt`].
pub fn rsqrt_max(
    g: &mut Builder,
    x: T,
    f_in: u32,
    x_lo: u64,
    x_hi: u64,
    max_out: u32,
) -> Result<(T, u32)> {
    let (y, gf, s) = rsqrt_factors(g, x, f_in, x_lo, x_hi, max_out)?;
    Ok((g.mul(y, gf)?, s))
}

/// [`rsqrt_max`] without its last step: returns (y, g, scale) with 1/√x = y·g at that scale
/// (y from the quadratic, g = 2^{G−⌊(e−f_in)/2⌋} from the first round). A consumer that
/// multiplies by the reciprocal square root anyway can multiply by g as soon as the first
/// round has given it (beside the floor) and by y after the quadratic: (v·g)·y = v·(y·g) in
/// the ring, bit for bit, one round fewer than v·(y·g). 3 rounds.
///
/// # Errors
/// As [`rsqrt`].
pub fn rsqrt_factors(
    g: &mut Builder,
    x: T,
    f_in: u32,
    x_lo: u64,
    x_hi: u64,
    max_out: u32,
) -> Result<(T, T, u32)> {
    let (n, _) = fp_of(g);
    let sp = rsqrt_specs_max(n, f_in, x_lo, x_hi, max_out)?;
    let o = add_gate(g, x, sp.norm.clone())?;
    let v2 = add_gate(g, o[0], sp.floor.clone())?[0];
    let y = add_gate(g, v2, sp.poly.clone())?[0];
    Ok((y, o[1], sp.out_scale))
}
