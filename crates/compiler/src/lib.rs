//! # suf-compiler
//!
//! The SUF compiler and the gate library. This crate owns:
//!
//! * [`spec`] — the spec IR: a scalar fixed-point function as a sum of components on bit views
//!   of the input (piecewise polynomials of technique (c), MSB halves, floors with an LSB
//!   selector), with its exact integer semantics (the Plain interpreter's reference);
//! * [`fit`] — the fitter: a real function, an input range and scale, a degree and an error
//!   budget in, a piecewise polynomial with fixed-point coefficients out, with its maximum
//!   error measured exactly over the integers it covers;
//! * [`compile`] — the dealer and party procedures of every component (DCF keys from
//!   `suf-fss`, evaluation through the `suf-backend` trait) and [`compile::SpecGate`], a spec
//!   as a runtime gate;
//! * [`gates`] — the gate library as builder-level functions on tensors: truncations (TR,
//!   faithful ARS, GapARS), ReLU, max, ReLU+ARS, GeLU (erf and tanh), SiLU, sigmoid, tanh,
//!   nExp, reciprocal and the rsqrt chain, plus fused rescale + activation variants;
//! * [`report`] — `gates_report`, the measured costs and errors of every gate (`suf gates`).
//!
//! `GATES.md` beside this crate tabulates every gate's error, key bytes, communication,
//! rounds, AES calls and CPU throughput next to SIGMA's, and the alternatives measured.
//!
//! Depends on suf-core (ring, PRG, packing), suf-fss (DCF keys), suf-backend (the evaluation
//! trait) and suf-runtime (the program builder and the gate interface). It adds no interactive
//! primitive: every gate is one opening plus local work, and multi-round gates are chains of
//! nodes (plus the runtime's Beaver product where rsqrt needs one).
//!
//! References: DCF, multiple interval containment and splines from Boyle, Chandran, Gilboa,
//! Gupta, Ishai, Kumar, Rathee, Eurocrypt 2021 (BCG+21); DPF-based comparison and the gate
//! decompositions compared against from SIGMA (Gupta, Jawalkar, Mukherjee, Chandran, Gupta,
//! Panwar, Sharma, PETS 2024); the identities used are in `reference/fss-identities.md`.
#![forbid(unsafe_code)]

pub mod compile;
pub mod error;
pub mod fit;
pub mod gates;
pub mod report;
pub mod spec;

pub use compile::{gate_aes, program_aes, run_direct, run_with_masks, SpecGate};
pub use error::{CompilerError, Result};
pub use report::gates_report;
pub use spec::{
    BitSpec, Component, FloorSpec, GateSpec, HalvesSpec, HighSpec, Part, PolySpec, SignSpec, View,
    Wrap,
};
