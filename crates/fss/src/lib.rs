//! # suf-fss
//!
//! Function secret sharing over Z_{2^n} on the CPU, batched and parallel (rayon):
//!
//! * [`dpf`]: distributed point functions (Boyle–Gilboa–Ishai, CCS 2016) with early
//!   termination at 128-bit leaves, single-point and full-domain evaluation, and the
//!   comparison 1[x < α] from one DPF (prefix parity of control bits; XOR-shared output).
//! * [`dcf`]: distributed comparison functions (Boyle et al., Eurocrypt 2021) with
//!   arithmetic payloads in Z_{2^m} and vector payloads.
//! * [`packed`]: packed comparison — per element T queries on bit views, one key per bit width
//!   (views that differ only by their shift share a key), evaluated at shifted public points.
//! * [`interval`]: vector interval lookup (DCF at the mask point evaluated at the cut points;
//!   and DPF EvalAll dotted with a public table for small domains).
//! * [`dealer`]: seeded batches (per-batch seeds, random-access roots) and the hook a device
//!   dealer installs.
//! * [`keyfmt`]: the versioned binary key layout (structure of arrays) with typed parse errors,
//!   and [`KeyRef`] / [`KeyOrigin`]: key bytes borrowed from a loaded key stream, with their
//!   position in it (DCF batches are evaluated in place from those bytes).
//!
//! All keys use the fixed-key AES MMO PRG of [`suf_core::prg`]. Exact identities:
//! `shared/reference/fss-identities.md`.
//!
//! Depends on `suf-core` only: no I/O, no network, no GPU.
#![forbid(unsafe_code)]
// Key streams and key batches come from files and peers: no unwrap/expect outside tests
// (each remaining `expect` states an invariant the code itself establishes, with an allow).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dcf;
pub mod dealer;
pub mod dpf;
pub mod error;
pub mod interval;
pub mod keyfmt;
pub mod lut;
pub mod packed;

pub use error::{FssError, Result};
pub use keyfmt::{KeyOrigin, KeyRef};
