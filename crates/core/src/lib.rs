//! # suf-core
//!
//! The ground every other SUF crate stands on, with no I/O and no threads:
//!
//! * [`ring`]: the ring Z_{2^n} for every 1 ≤ n ≤ 64, held in `u64`, with signed and
//!   unsigned views ([`ring::BitWidth`]).
//! * [`fixed`]: fixed-point encode/decode with round-to-nearest and reported saturation.
//! * [`pack`]: bit packing of k-bit values (1 ≤ k ≤ 64) into bytes — the wire format of
//!   every opened value.
//! * [`prg`]: the fixed-key AES-128 Matyas–Meyer–Oseas PRG used by every FSS tree
//!   (defined precisely there so that the CUDA backend can reproduce it bit for bit), and
//!   [`prg::Csprng`], the AES-CTR generator seeded from the OS that the dealer uses.
//!
//! This crate depends on no other SUF crate.
#![forbid(unsafe_code)]

pub mod error;
pub mod fixed;
pub mod pack;
pub mod prg;
pub mod ring;

pub use error::{CoreError, Result};
pub use ring::BitWidth;
