//! The gates the layers use, in one place, all from the SUF gate library (`suf-compiler`).

use suf_runtime::ir::{Builder, T};

use crate::Result;

/// Signed floor ⌊x / 2^s⌋, one round: GapARS (SIGMA's precondition |x| < 2^{n−2}, which
/// every activation of these models meets by orders of magnitude; one s-bit DCF, ≈ 4.5× fewer
/// key bytes than the unconditional ARS).
pub fn ars(g: &mut Builder, x: T, s: u32) -> Result<T> {
    Ok(suf_compiler::gates::ars_gap(g, x, s)?)
}

/// Row maximum over the last axis (`[r, c]` → `[r, 1]`), one round per tree level.
pub fn row_max(g: &mut Builder, x: T) -> Result<T> {
    Ok(suf_compiler::gates::max_last(g, x)?)
}

/// e^{−x} for x ≥ 0 at scale f (exactly 2^f at 0, exactly 0 beyond the cut-off).
pub fn nexp(g: &mut Builder, x: T) -> Result<T> {
    Ok(smooth_with(g, x, Smooth::NExp, Prefer::Keys)?)
}

/// 1/x for softmax denominators x ∈ [1, max_len] at scale f; returns the output and its scale.
pub fn reciprocal(g: &mut Builder, x: T, max_len: usize) -> Result<(T, u32)> {
    Ok(suf_compiler::gates::reciprocal(g, x, max_len as u64)?)
}

/// 1/√x with relative precision for x = X / 2^{in_frac}, X ∈ [lo, hi]; returns the output and
/// its scale.
pub fn rsqrt(g: &mut Builder, x: T, in_frac: u32, lo: u64, hi: u64) -> Result<(T, u32)> {
    Ok(suf_compiler::gates::rsqrt(g, x, in_frac, lo, hi)?)
}

// Whole models are bound by key bytes (two in-memory key streams of several GB), so the
// activations use the key-lean variant of the smooth gates: −28 % key bytes for +9 % AES
// (crates/compiler/GATES.md §3).
use suf_compiler::gates::{smooth_with, Prefer, Smooth};

/// GeLU (erf form).
pub fn gelu(g: &mut Builder, x: T) -> Result<T> {
    Ok(smooth_with(g, x, Smooth::Gelu, Prefer::Keys)?)
}

/// GeLU (tanh form, GPT-2).
pub fn gelu_tanh(g: &mut Builder, x: T) -> Result<T> {
    Ok(smooth_with(g, x, Smooth::GeluTanh, Prefer::Keys)?)
}

/// SiLU.
pub fn silu(g: &mut Builder, x: T) -> Result<T> {
    Ok(smooth_with(g, x, Smooth::Silu, Prefer::Keys)?)
}
