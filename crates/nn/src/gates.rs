//! The gates the layers use, in one place, all from the SUF gate library (`suf-compiler`).
//!
//! Ranges: a GapARS truncation by s on an n-bit ring returns ⌊x/2^s⌋ for |x| < 2^{n−2}, a
//! value in [−2^{n−2−s}, 2^{n−2−s}): n − 1 − s signed bits ([`ars_bits`]), whatever the data.
//! The nonlinear gates that read such a value take that declared range and compare only the
//! bits it can occupy (`suf_compiler::gates::smooth_in`, `max_last_in`).

use suf_runtime::ir::{Builder, T};

use crate::Result;

/// Signed floor ⌊x / 2^s⌋, one round: GapARS (SIGMA's precondition |x| < 2^{n−2}, which
/// every activation of these models meets by orders of magnitude; one s-bit DCF, ≈ 4.5× fewer
/// key bytes than the unconditional ARS).
pub fn ars(g: &mut Builder, x: T, s: u32) -> Result<T> {
    Ok(suf_compiler::gates::ars_gap(g, x, s)?)
}

/// Signed bits of an [`ars`] output by s on an n-bit ring: it lies in [−2^{b−1}, 2^{b−1})
/// with b = n − 1 − s.
pub fn ars_bits(n: u32, s: u32) -> u32 {
    n.saturating_sub(1 + s).max(2)
}

/// Row maximum over the last axis (`[r, c]` → `[r, 1]`) of entries in [−2^{bits−1},
/// 2^{bits−1}), one round per tree level.
pub fn row_max(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    Ok(suf_compiler::gates::max_last_in(g, x, bits)?)
}

/// Maxima of consecutive segments of a flat tensor (lengths `lens`), as `[segments, 1]`: the
/// row maximum of a causal softmax's lower triangle.
pub fn segment_max(g: &mut Builder, x: T, lens: &[usize], bits: u32) -> Result<T> {
    Ok(suf_compiler::gates::max_segments_in(g, x, lens, bits)?)
}

/// e^{−x} for x ∈ [0, 2^bits) at scale f (exactly 2^f at 0, exactly 0 beyond the cut-off).
pub fn nexp(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    Ok(smooth_in(g, x, Smooth::NExp, bits, Prefer::Keys)?)
}

/// 1/x for softmax denominators x ∈ [1, max_len] at scale f; returns the output and its scale.
pub fn reciprocal(g: &mut Builder, x: T, max_len: usize) -> Result<(T, u32)> {
    Ok(suf_compiler::gates::reciprocal(g, x, max_len as u64)?)
}

/// 1/√x with relative precision for x = X / 2^{in_frac}, X ∈ [lo, hi], as two factors:
/// returns (y, g, scale) with 1/√x = y·g at that scale (`suf_compiler::gates::rsqrt_factors`:
/// g is known one round before y, so a product v·g can run beside the rsqrt's floor).
/// `max_out` caps the output scale where the gate's precision allows.
pub fn rsqrt_factors(
    g: &mut Builder,
    x: T,
    in_frac: u32,
    lo: u64,
    hi: u64,
    max_out: u32,
) -> Result<(T, T, u32)> {
    Ok(suf_compiler::gates::rsqrt_factors(
        g, x, in_frac, lo, hi, max_out,
    )?)
}

// Whole models are bound by key bytes (two in-memory key streams of several GB), so the
// activations use the key-lean variant of the smooth gates: −28 % key bytes for +9 % AES
// (crates/compiler/GATES.md §3).
use suf_compiler::gates::{smooth_in, Prefer, Smooth};

/// GeLU (erf form) of x ∈ [−2^{bits−1}, 2^{bits−1}).
pub fn gelu(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    Ok(smooth_in(g, x, Smooth::Gelu, bits, Prefer::Keys)?)
}

/// GeLU (either form) of x ∈ [−2^{bits−1}, 2^{bits−1}) for a consumer that truncates: the
/// output is left at scale f + t (returned, t ≤ `max_t`; 0 when the ring has no room), so the
/// selector floor drops t levels and the consumer's truncation takes t more bits.
pub fn gelu_folded(g: &mut Builder, x: T, bits: u32, max_t: u32, tanh: bool) -> Result<(T, u32)> {
    let kind = if tanh { Smooth::GeluTanh } else { Smooth::Gelu };
    Ok(suf_compiler::gates::smooth_in_folded(
        g,
        x,
        kind,
        bits,
        max_t,
        Prefer::Keys,
    )?)
}

/// GeLU (tanh form, GPT-2) of x ∈ [−2^{bits−1}, 2^{bits−1}).
pub fn gelu_tanh(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    Ok(smooth_in(g, x, Smooth::GeluTanh, bits, Prefer::Keys)?)
}

/// SiLU of x ∈ [−2^{bits−1}, 2^{bits−1}).
pub fn silu(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    Ok(smooth_in(g, x, Smooth::Silu, bits, Prefer::Keys)?)
}
