//! The file formats the `suf` binary reads from disk — share and vector files ([`files`]) and
//! session manifests ([`session`]) — as a library, so that the fuzz targets in the
//! repository's `fuzz/` folder reach the same code the binary runs.
#![forbid(unsafe_code)]
// File contents are untrusted: no `unwrap`/`expect` outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod files;
#[doc(hidden)]
pub mod fuzz;
pub mod session;
