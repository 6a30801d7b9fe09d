//! Measured costs and errors of every gate of the library: [`gates_report`] (the data of
//! `suf gates --json`) and the [`GateCase`] table that the tests share.
//!
//! * `max_err_ulp`: the largest |output − real function| in ULPs of the output scale (for
//!   exact gates: against the exact integer function, so 0), over the whole input domain as
//!   sampled by [`inputs_for`] — every extreme, every interval boundary ±3, the gate's whole
//!   window exhaustively, plus random inputs over the whole domain — evaluated with the
//!   Plain interpreter (which the protocol matches bit for bit). Relative gates
//!   (reciprocal, rsqrt) also give `max_rel_err` over their declared range.
//! * `key_bytes_per_elem`: per party (party 0, whose stream stores its mask shares; party
//!   1's shares come from a seed: `key_bytes_per_elem_p1`), measured from the dealer's key
//!   streams as the marginal bytes per element between two batch sizes (stream headers and
//!   section framing cancel out).
//! * `comm_bytes_per_elem`: one party's bytes sent + received, marginal per element.
//! * `rounds`: measured, the input opening included.
//! * `aes_per_elem`: from the key shapes of the chain (closed form, [`crate::program_aes`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_runtime::harness::{run_two_party, Link, LocalRun};
use suf_runtime::ir::{Builder, Program, T};
use suf_runtime::plain::{run_plain, PlainWeights};

use crate::compile::program_aes;
use crate::error::Result;
use crate::gates::{self, Prefer, Smooth};
use crate::spec::mask;

/// The inputs a gate is defined on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Every ring element.
    Whole,
    /// Signed x ≥ 0.
    NonNeg,
    /// |signed x| < 2^{n−2}.
    Gap,
    /// lo ≤ x ≤ hi (unsigned).
    Range(u64, u64),
    /// −2^{b−1} ≤ signed x < 2^{b−1} (a declared range, e.g. a truncation's output).
    Signed(u32),
    /// 0 ≤ x < 2^b.
    Unsigned(u32),
}

impl Domain {
    /// Whether x (a ring element of Z_{2^n}) is in the domain.
    pub fn contains(&self, n: u32, x: u64) -> bool {
        let w = BitWidth::new(n).expect("valid width");
        let s = w.to_signed(x);
        match *self {
            Domain::Whole => true,
            Domain::NonNeg => s >= 0,
            Domain::Gap => s.unsigned_abs() < 1u64 << (n - 2),
            Domain::Range(lo, hi) => (lo..=hi).contains(&x),
            Domain::Signed(b) => s >= -(1i64 << (b - 1)) && s < 1i64 << (b - 1),
            Domain::Unsigned(b) => s >= 0 && s < 1i64 << b,
        }
    }
}

/// What a gate should compute.
#[derive(Clone)]
pub enum Reference {
    /// A real function: input x = signed(X)/2^{in_scale}, output at scale `out_scale`.
    Real {
        /// The function.
        f: fn(f64) -> f64,
        /// Input fractional bits.
        in_scale: u32,
        /// Output fractional bits.
        out_scale: u32,
        /// Report the relative error too.
        relative: bool,
        /// Output units per reported ULP: 2^ulp_bits (a gate whose output stays at a finer
        /// scale for its consumer's truncation is still judged in ULPs of scale f).
        ulp_bits: u32,
    },
    /// An exact integer function of the ring element (the result as a ring element).
    Exact(Arc<dyn Fn(u64) -> u64 + Send + Sync>),
    /// Exact max of consecutive pairs (signed).
    MaxPairs,
}

/// Builds a gate chain on a tensor.
pub type BuildFn = Arc<dyn Fn(&mut Builder, T) -> Result<T> + Send + Sync>;

/// A gate of the library with its reference and domain.
#[derive(Clone)]
pub struct GateCase {
    /// Report key.
    pub name: String,
    /// Builds the gate chain on a 1-D input (for `max`, pairs of consecutive elements).
    pub build: BuildFn,
    /// Reference.
    pub reference: Reference,
    /// Domain.
    pub domain: Domain,
    /// Inputs where a view has a cut (each is checked ±3).
    pub boundaries: Vec<u64>,
    /// An interval of inputs [start, start + len) (mod 2^n) checked exhaustively: the
    /// window of a smooth gate.
    pub window: Option<(u64, u64)>,
    /// Pieces of the fitted polynomial, if any.
    pub pieces: usize,
}

impl std::fmt::Debug for GateCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GateCase({})", self.name)
    }
}

fn exact(f: impl Fn(u64) -> u64 + Send + Sync + 'static) -> Reference {
    Reference::Exact(Arc::new(f))
}

/// Maximum row length assumed by the `reciprocal` case.
pub const RECIP_LEN: u64 = 128;

/// The `rsqrt` case's declared input range at input scale 2f: a variance in [2^{−20}, 2^{12}]
/// (upper end lowered to 2^{n−7−2f} on small rings, lower end raised to 2^{−2f+1}).
pub fn rsqrt_range(n: u32, f: u32) -> (u32, u64, u64) {
    let f_in = 2 * f;
    let lo = f_in.saturating_sub(20).max(1);
    let hi = (f_in + 12).min(n.saturating_sub(7)).max(lo + 9);
    (f_in, 1u64 << lo, 1u64 << hi)
}

/// Every gate of the library at ring width n, scale f.
///
/// # Errors
/// A gate that cannot be built at (n, f).
pub fn cases(n: u32, f: u32) -> Result<Vec<GateCase>> {
    let mut v = exact_cases(n, f)?;
    v.extend(approx_cases(n, f)?);
    Ok(v)
}

/// The exact gates (truncations, ReLU, max, ReLU+ARS): buildable at any n ≥ f + 3.
///
/// # Errors
/// A gate that cannot be built at (n, f).
pub fn exact_cases(n: u32, f: u32) -> Result<Vec<GateCase>> {
    let w = BitWidth::new(n)?;
    let nm = mask(n);
    let half = 1u64 << (n - 1);
    let mut v: Vec<GateCase> = Vec::new();
    let floor_bounds = |c: u64| -> Vec<u64> {
        let mut b = vec![c.wrapping_neg() & nm];
        for k in -2i64..=2 {
            b.push(((k << f) as u64) & nm);
        }
        b
    };
    let case =
        |name: &str, build: BuildFn, reference: Reference, domain: Domain, boundaries: Vec<u64>| {
            GateCase {
                name: name.into(),
                build,
                reference,
                domain,
                boundaries,
                window: None,
                pieces: 0,
            }
        };
    v.push(case(
        "tr",
        Arc::new(move |g, x| gates::tr(g, x, f)),
        exact(move |x| x >> f),
        Domain::Whole,
        floor_bounds(0),
    ));
    v.push(case(
        "ars",
        Arc::new(move |g, x| gates::ars(g, x, f)),
        exact(move |x| w.from_signed(w.to_signed(x) >> f)),
        Domain::Whole,
        floor_bounds(half),
    ));
    v.push(case(
        "ars_round",
        Arc::new(move |g, x| gates::ars_round(g, x, f)),
        exact(move |x| w.from_signed(w.to_signed(w.add(x, 1 << (f - 1))) >> f)),
        Domain::Whole,
        floor_bounds(half + (1 << (f - 1))),
    ));
    v.push(case(
        "ars_gap",
        Arc::new(move |g, x| gates::ars_gap(g, x, f)),
        exact(move |x| w.from_signed(w.to_signed(x) >> f)),
        Domain::Gap,
        floor_bounds(1 << (n - 2)),
    ));
    v.push(case(
        "relu",
        Arc::new(gates::relu),
        exact(move |x| w.from_signed(w.to_signed(x).max(0))),
        Domain::Whole,
        vec![0, half, half - 1],
    ));
    v.push(case(
        "max",
        Arc::new(|g, x| {
            let len = g.shape(x)[0];
            let m = g.reshape(x, &[len / 2, 2])?;
            let r = gates::max_last(g, m)?;
            Ok(g.reshape(r, &[len / 2])?)
        }),
        Reference::MaxPairs,
        Domain::Gap,
        vec![0],
    ));
    let b = n - f - 1; // the range of a GapARS output by f
    v.push(case(
        "relu_in",
        Arc::new(move |g, x| gates::relu_in(g, x, b + 1)),
        exact(move |x| w.from_signed(w.to_signed(x).max(0))),
        Domain::Signed(b + 1),
        vec![0, 1u64 << b, (1u64 << b).wrapping_neg() & nm],
    ));
    v.push(case(
        "max_in",
        Arc::new(move |g, x| {
            let len = g.shape(x)[0];
            let m = g.reshape(x, &[len / 2, 2])?;
            let r = gates::max_last_in(g, m, b)?;
            Ok(g.reshape(r, &[len / 2])?)
        }),
        Reference::MaxPairs,
        Domain::Signed(b),
        vec![
            0,
            (1u64 << (b - 1)) - 1,
            (1u64 << (b - 1)).wrapping_neg() & nm,
        ],
    ));
    v.push(case(
        "relu_ars",
        Arc::new(move |g, x| gates::relu_ars(g, x, f)),
        exact(move |x| w.from_signed((w.to_signed(x) >> f).max(0))),
        Domain::Whole,
        floor_bounds(0),
    ));
    Ok(v)
}

/// The approximating gates (smooth activations, fused variants, reciprocal, rsqrt).
///
/// # Errors
/// A gate that cannot be built at (n, f) (the ring is too small for the precision).
pub fn approx_cases(n: u32, f: u32) -> Result<Vec<GateCase>> {
    let nm = mask(n);
    let mut v: Vec<GateCase> = Vec::new();
    for kind in Smooth::ALL {
        let sp = gates::smooth_specs(kind, n, f, false)?;
        let a = 1u64 << (kind.window_log2() + f);
        let window = if kind.one_sided() {
            (0, a)
        } else {
            (a.wrapping_neg() & nm, 2 * a)
        };
        v.push(GateCase {
            name: kind.name().into(),
            build: Arc::new(move |g, x| gates::smooth(g, x, kind)),
            reference: Reference::Real {
                f: kind.func(),
                in_scale: f,
                out_scale: f,
                relative: false,
                ulp_bits: 0,
            },
            domain: if kind.one_sided() {
                Domain::NonNeg
            } else {
                Domain::Whole
            },
            boundaries: sp.boundaries.clone(),
            window: Some(window),
            pieces: sp.pieces(),
        });
    }
    for kind in Smooth::ALL {
        // Declared range: a GapARS output by f (two-sided), or a difference of two (nExp).
        let bits = if kind.one_sided() { n - f } else { n - f - 1 };
        let sp = gates::smooth_specs_in(kind, n, f, bits, Prefer::Keys)?;
        let a = 1u64 << (kind.window_log2() + f);
        let window = if kind.one_sided() {
            (0, a)
        } else {
            ((2 * a).wrapping_neg() & nm, 4 * a)
        };
        v.push(GateCase {
            name: format!("{}_in", kind.name()),
            build: Arc::new(move |g, x| gates::smooth_in(g, x, kind, bits, Prefer::Keys)),
            reference: Reference::Real {
                f: kind.func(),
                in_scale: f,
                out_scale: f,
                relative: false,
                ulp_bits: 0,
            },
            domain: if kind.one_sided() {
                Domain::Unsigned(bits)
            } else {
                Domain::Signed(bits)
            },
            boundaries: sp.boundaries.clone(),
            window: Some(window),
            pieces: sp.pieces(),
        });
    }
    // Folded GeLU (output at f + t for a consumer that truncates), where the ring has
    // room for a 2f + t matmul output of magnitude 2^8.
    let max_t = (n - 2).saturating_sub(2 * f + 8).min(16);
    for kind in [Smooth::Gelu] {
        let bits = n - f - 1;
        let sp = gates::smooth_specs_in_folded(kind, n, f, bits, max_t, Prefer::Keys)?;
        if sp.out_extra == 0 {
            continue;
        }
        let a = 1u64 << (kind.window_log2() + f);
        v.push(GateCase {
            name: format!("{}_in_fold", kind.name()),
            build: Arc::new(move |g, x| {
                Ok(gates::smooth_in_folded(g, x, kind, bits, max_t, Prefer::Keys)?.0)
            }),
            reference: Reference::Real {
                f: kind.func(),
                in_scale: f,
                out_scale: f + sp.out_extra,
                relative: false,
                ulp_bits: sp.out_extra,
            },
            // The output x·2^t on the positive tail must fit the ring: |x| < 2^{n−1−t}.
            domain: Domain::Signed(bits.min(n - sp.out_extra)),
            boundaries: sp.boundaries.clone(),
            window: Some(((2 * a).wrapping_neg() & nm, 4 * a)),
            pieces: sp.pieces(),
        });
    }
    for kind in [Smooth::Gelu, Smooth::Silu] {
        let sp = gates::smooth_specs(kind, n, f, true)?;
        v.push(GateCase {
            name: format!("rescale_{}", kind.name()),
            build: Arc::new(move |g, x| gates::rescale_smooth(g, x, kind)),
            reference: Reference::Real {
                f: kind.func(),
                in_scale: 2 * f,
                out_scale: f,
                relative: false,
                ulp_bits: 0,
            },
            domain: Domain::Whole,
            boundaries: sp.boundaries.clone(),
            // X + 2^{f−1} ∈ [−A·2^f, A·2^f): sampled evenly (its 2^{w+2f+1} inputs are too many
            // to enumerate here; the fit itself is exhaustive over x_w).
            window: Some((
                ((1u64 << (kind.window_log2() + 2 * f)) + (1 << (f - 1))).wrapping_neg() & nm,
                2u64 << (kind.window_log2() + 2 * f),
            )),
            pieces: sp.pieces(),
        });
    }
    let rs = gates::recip_specs(n, f, RECIP_LEN)?;
    v.push(GateCase {
        name: "reciprocal".into(),
        build: Arc::new(|g, x| Ok(gates::reciprocal(g, x, RECIP_LEN)?.0)),
        reference: Reference::Real {
            f: |x| 1.0 / x,
            in_scale: f,
            out_scale: rs.out_scale,
            relative: true,
            ulp_bits: 0,
        },
        domain: Domain::Range(1 << f, RECIP_LEN << f),
        boundaries: rs.boundaries.clone(),
        window: None,
        pieces: rs.fit.pieces.len(),
    });
    let (f_in, lo, hi) = rsqrt_range(n, f);
    let sq = gates::rsqrt_specs(n, f_in, lo, hi)?;
    v.push(GateCase {
        name: "rsqrt".into(),
        build: Arc::new(move |g, x| Ok(gates::rsqrt(g, x, f_in, lo, hi)?.0)),
        reference: Reference::Real {
            f: |x| 1.0 / x.sqrt(),
            in_scale: f_in,
            out_scale: sq.out_scale,
            relative: true,
            ulp_bits: 0,
        },
        domain: Domain::Range(lo, hi),
        boundaries: sq.boundaries.clone(),
        window: None,
        pieces: sq.fit.pieces.len(),
    });
    Ok(v)
}

/// A program: one input `x` of `len` elements, the gate, one output.
///
/// # Errors
/// A builder error.
pub fn program_of(case: &GateCase, n: u32, f: u32, len: usize) -> Result<Program> {
    let mut g = Builder::new(FixedPoint::new(n, f)?);
    g.layer(&case.name);
    let x = g.input("x", &[len])?;
    let y = (case.build)(&mut g, x)?;
    g.output(y)?;
    Ok(g.finish())
}

fn random_in(d: Domain, n: u32, rng: &mut Csprng) -> u64 {
    let nm = mask(n);
    match d {
        Domain::Whole => rng.next_u64() & nm,
        Domain::NonNeg => rng.next_u64() & (nm >> 1),
        Domain::Gap => (rng.next_u64() & (nm >> 1)).wrapping_sub(1 << (n - 2)) & nm,
        Domain::Signed(b) => (rng.next_u64() & mask(b)).wrapping_sub(1 << (b - 1)) & nm,
        Domain::Unsigned(b) => rng.next_u64() & mask(b),
        Domain::Range(lo, hi) => {
            if rng.bit() {
                lo + rng.below(hi - lo + 1)
            } else {
                // log-uniform
                let (el, eh) = (63 - lo.leading_zeros(), 63 - hi.leading_zeros());
                let e = el + rng.below((eh - el + 1) as u64) as u32;
                let v = (1u64 << e) | (rng.next_u64() & ((1u64 << e) - 1));
                v.clamp(lo, hi)
            }
        }
    }
}

/// Inputs to check a gate on: extremes, every boundary ±3, `window` of its window (evenly
/// spread, or all of it when `window` ≥ its size), and `random` uniform inputs over the
/// domain — all in the domain. Even length (pairs for `max`).
pub fn inputs_for(
    case: &GateCase,
    n: u32,
    window: usize,
    random: usize,
    rng: &mut Csprng,
) -> Vec<u64> {
    let nm = mask(n);
    let half = 1u64 << (n - 1);
    let mut xs: Vec<u64> = vec![0, 1, 2, nm, nm - 1, half, half - 1, half + 1];
    for &b in &case.boundaries {
        for d in -3i64..=3 {
            xs.push(b.wrapping_add(d as u64) & nm);
        }
    }
    if let Domain::Range(lo, hi) = case.domain {
        xs.extend([lo, lo + 1, hi, hi - 1]);
    }
    if let Some((start, len)) = case.window {
        if window as u64 >= len {
            xs.extend((0..len).map(|i| start.wrapping_add(i) & nm));
        } else {
            let step = len / window.max(1) as u64;
            xs.extend((0..window as u64).map(|i| start.wrapping_add(i * step) & nm));
        }
    }
    xs.retain(|&x| case.domain.contains(n, x));
    for _ in 0..random {
        xs.push(random_in(case.domain, n, rng));
    }
    if xs.len() % 2 == 1 {
        xs.push(random_in(case.domain, n, rng));
    }
    xs
}

/// Error statistics of a gate on some inputs.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ErrStats {
    /// Largest error in output ULPs.
    pub max_ulp: f64,
    /// Largest relative error (relative references only).
    pub max_rel: f64,
    /// An input attaining `max_ulp`.
    pub worst_input: u64,
    /// Inputs checked.
    pub checked: u64,
}

/// Errors of the gate's Plain outputs on `xs` (chunks of 2^20) against its reference.
///
/// # Errors
/// A builder or interpreter error.
pub fn errors(case: &GateCase, n: u32, f: u32, xs: &[u64]) -> Result<ErrStats> {
    let w = BitWidth::new(n)?;
    let be = CpuBackend::new();
    let mut st = ErrStats::default();
    for chunk in xs.chunks(1 << 20) {
        let chunk = if chunk.len() % 2 == 1 {
            &chunk[..chunk.len() - 1]
        } else {
            chunk
        };
        if chunk.is_empty() {
            continue;
        }
        let prog = program_of(case, n, f, chunk.len())?;
        let mut inputs = BTreeMap::new();
        inputs.insert("x".to_string(), chunk.to_vec());
        let out = run_plain(&prog, &be, &inputs, &PlainWeights::new())?;
        let y = &out[0];
        match &case.reference {
            Reference::Exact(fx) => {
                for (&x, &yv) in chunk.iter().zip(y) {
                    let want = fx(x) & w.mask();
                    let e = w.to_signed(w.sub(yv, want)).unsigned_abs() as f64;
                    if e > st.max_ulp {
                        st.max_ulp = e;
                        st.worst_input = x;
                    }
                }
            }
            Reference::MaxPairs => {
                for (p, &yv) in chunk.chunks(2).zip(y) {
                    let want = w.to_signed(p[0]).max(w.to_signed(p[1]));
                    let e = (w.to_signed(yv) - want).unsigned_abs() as f64;
                    if e > st.max_ulp {
                        st.max_ulp = e;
                        st.worst_input = p[0];
                    }
                }
            }
            Reference::Real {
                f: rf,
                in_scale,
                out_scale,
                relative,
                ulp_bits,
            } => {
                let inv = (-(*in_scale as f64)).exp2();
                let os = (*out_scale as f64).exp2();
                for (&x, &yv) in chunk.iter().zip(y) {
                    let xr = w.to_signed(x) as f64 * inv;
                    let want = rf(xr) * os;
                    let got = w.to_signed(yv) as f64;
                    let e = (got - want).abs() / (*ulp_bits as f64).exp2();
                    if e > st.max_ulp {
                        st.max_ulp = e;
                        st.worst_input = x;
                    }
                    if *relative && want != 0.0 {
                        st.max_rel = st.max_rel.max(e / want.abs());
                    }
                }
            }
        }
        st.checked += chunk.len() as u64;
    }
    Ok(st)
}

/// One two-party run of the case on `len` inputs (`len` even).
///
/// # Errors
/// A builder or runtime error.
pub fn run_case(
    case: &GateCase,
    n: u32,
    f: u32,
    xs: &[u64],
    link: Link,
    rng: &mut Csprng,
) -> Result<LocalRun> {
    let prog = program_of(case, n, f, xs.len())?;
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), xs.to_vec());
    Ok(run_two_party(
        &prog,
        &CpuBackend::new(),
        &inputs,
        &PlainWeights::new(),
        link,
        rng,
    )?)
}

/// Measured costs of one case: rounds, per-element key and communication bytes, AES.
///
/// # Errors
/// A builder or runtime error.
pub fn costs(case: &GateCase, n: u32, f: u32, rng: &mut Csprng) -> Result<Value> {
    let (a, b) = (64usize, 320usize);
    let xa: Vec<u64> = (0..a).map(|_| random_in(case.domain, n, rng)).collect();
    let xb: Vec<u64> = (0..b).map(|_| random_in(case.domain, n, rng)).collect();
    let ra = run_case(case, n, f, &xa, Link::Mem, rng)?;
    let rb = run_case(case, n, f, &xb, Link::Mem, rng)?;
    let per = if matches!(case.reference, Reference::MaxPairs) {
        2.0
    } else {
        1.0
    };
    let de = (b - a) as f64 / per;
    let comm = |r: &LocalRun| (r.reports[0].bytes_sent + r.reports[0].bytes_recv) as f64;
    let aes = program_aes(&program_of(case, n, f, b)?) as f64 / (b as f64 / per);
    Ok(json!({
        "rounds": rb.reports[0].rounds,
        "key_bytes_per_elem": (rb.deal.key_bytes[0] as f64 - ra.deal.key_bytes[0] as f64) / de,
        "key_bytes_per_elem_p1": (rb.deal.key_bytes[1] as f64 - ra.deal.key_bytes[1] as f64) / de,
        "comm_bytes_per_elem": (comm(&rb) - comm(&ra)) / de,
        "aes_per_elem": aes,
        "bit_exact": ra.matches_plain() && rb.matches_plain(),
    }))
}

/// The gates report at ring width n, scale f: one object keyed by gate name (see the module
/// documentation). Takes a few seconds. On an error the value holds `{"error": …}`.
pub fn gates_report(n: u32, f: u32) -> Value {
    match report_inner(n, f) {
        Ok(v) => v,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn report_inner(n: u32, f: u32) -> Result<Value> {
    let mut rng = Csprng::for_tests(0x5eed_9a7e);
    let mut out = serde_json::Map::new();
    for case in cases(n, f)? {
        let xs = inputs_for(&case, n, 1 << 17, 1 << 15, &mut rng);
        let st = errors(&case, n, f, &xs)?;
        let mut obj = costs(&case, n, f, &mut rng)?;
        let o = obj.as_object_mut().expect("object");
        o.insert("max_err_ulp".into(), json!(st.max_ulp));
        if let Reference::Real {
            relative: true,
            out_scale,
            ..
        } = case.reference
        {
            o.insert("max_rel_err".into(), json!(st.max_rel));
            o.insert("out_scale".into(), json!(out_scale));
        }
        o.insert("inputs_checked".into(), json!(st.checked));
        if case.pieces > 0 {
            o.insert("pieces".into(), json!(case.pieces));
        }
        out.insert(case.name.clone(), obj);
    }
    Ok(Value::Object(out))
}
