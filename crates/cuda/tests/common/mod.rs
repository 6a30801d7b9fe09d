//! Shared helpers: one backend per test binary, or a skip note when there is no GPU.

#![allow(dead_code)]

use std::sync::OnceLock;

use suf_cuda::{cuda_available, CudaBackend};

/// The backend, or `None` (with a note printed) on a machine without a usable GPU. A machine
/// that has the driver, NVRTC and a device but cannot start the backend fails the test.
pub fn gpu() -> Option<&'static CudaBackend> {
    static B: OnceLock<Option<CudaBackend>> = OnceLock::new();
    let b = B.get_or_init(|| {
        if !cuda_available() {
            return None;
        }
        let be = CudaBackend::new().unwrap_or_else(|e| panic!("CUDA present but unusable: {e}"));
        eprintln!(
            "suf-cuda tests on {} ({}, NVRTC {:?}, driver {})",
            be.device_name(),
            be.info().arch,
            be.info().nvrtc_version,
            be.info().driver_version
        );
        Some(be)
    });
    if b.is_none() {
        eprintln!("SKIP: no CUDA driver/NVRTC/device on this machine; GPU test skipped");
    }
    b.as_ref()
}

/// Deterministic pseudo-random words (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn vec(&mut self, len: usize) -> Vec<u64> {
        (0..len).map(|_| self.next()).collect()
    }
}

/// 2^n − 1.
pub fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The ring widths every kernel is checked at.
pub const WIDTHS: [u32; 5] = [1, 7, 37, 50, 64];
