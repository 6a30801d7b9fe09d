//! The runtime's demonstration program: y = ARS(ARS(x·A) ⊙ ARS(x·B)) with A a public weight
//! and B a private weight (Ŵ = B + R_W public, R_W with the dealer), on a secret x.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use suf_compiler::gates::ars;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::ir::{Builder, Program};
use suf_runtime::plain::PlainWeights;

/// Rows of x.
pub const ROWS: usize = 4;
/// Width of x, A and B.
pub const DIM: usize = 16;

fn reals(rng: &mut Csprng, count: usize, scale: f64) -> Vec<f64> {
    (0..count)
        .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale)
        .collect()
}

/// The program and the model owner's plaintext weights (deterministic from `seed`).
pub fn toy(fp: FixedPoint, seed: u64) -> Result<(Program, PlainWeights)> {
    let mut rng = Csprng::for_tests(seed);
    let enc = |v: &[f64]| -> Result<Vec<u64>> {
        v.iter()
            .map(|&x| fp.encode(x).map_err(anyhow::Error::from))
            .collect()
    };
    let a = enc(&reals(&mut rng, DIM * DIM, 0.5))?;
    let b = enc(&reals(&mut rng, DIM * DIM, 0.5))?;
    let mut g = Builder::new(fp);
    // The models' exact ARS (one floor gate, `suf_compiler::gates::ars`).
    let f = fp.frac;
    g.layer("linear");
    let x = g.input("x", &[ROWS, DIM])?;
    let u = g.matmul_pub(x, Arc::new(a), DIM, DIM)?;
    g.private_weight("B", DIM, DIM)?;
    let v = g.matmul_privw(x, "B")?;
    g.layer("rescale");
    let u = ars(&mut g, u, f)?;
    let v = ars(&mut g, v, f)?;
    g.layer("product");
    let y = g.mul(u, v)?;
    let y = ars(&mut g, y, f)?;
    g.output(y)?;
    let mut w = PlainWeights::new();
    w.insert("B".into(), b);
    Ok((g.finish(), w))
}

/// The client's input (deterministic from `seed`), as ring elements.
pub fn toy_input(fp: FixedPoint, seed: u64) -> Result<BTreeMap<String, Vec<u64>>> {
    let mut rng = Csprng::for_tests(seed ^ 0x5eed);
    let x: Vec<u64> = reals(&mut rng, ROWS * DIM, 2.0)
        .iter()
        .map(|&v| fp.encode(v))
        .collect::<std::result::Result<_, _>>()?;
    let mut m = BTreeMap::new();
    m.insert("x".to_string(), x);
    Ok(m)
}
