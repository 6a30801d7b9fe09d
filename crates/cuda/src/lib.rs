//! # suf-cuda
//!
//! The CUDA backend of SUF: [`CudaBackend`] implements [`suf_backend::Backend`] on one NVIDIA
//! GPU, with results bit for bit equal to [`suf_backend::CpuBackend`] (the reference).
//!
//! * **Loading.** cudarc with `dynamic-loading`: the crate builds and links on a machine
//!   without CUDA; `libcuda` and `libnvrtc` are opened at run time. Both are probed first
//!   ([`cuda_available`], [`CudaBackend::new`] returns [`CudaError::NoDriver`] /
//!   [`CudaError::NoNvrtc`]) because cudarc panics when a library is missing.
//! * **Kernels.** `kernels/*.cu`, embedded with `include_str!`, prefixed with a generated
//!   prelude (fixed-key AES round keys, T-table, PRG domain constants from `suf_core::prg`),
//!   compiled by NVRTC to a CUBIN for the device's architecture (`sm_90` on H100) once per
//!   process ([`compile`]); a compile error carries NVRTC's log.
//! * **FSS.** One thread per (key, point). The kernels read the serialized `suf_fss::keyfmt`
//!   bodies (structure-of-arrays, level-major) where they lie: a warp's 32 threads load 32
//!   consecutive correction words per level. DCF batches (key format v2) are read at the
//!   offsets of `suf_fss::dcf::DcfLayout`, passed as kernel arguments, either inside the
//!   party's key stream made resident once ([`suf_backend::Backend::attach_keys`]) or from an
//!   uploaded body. The PRG is fixed-key AES-128 in MMO form, G_c(s) = π(s ⊕ c) ⊕ s ⊕ c, with
//!   T-table AES in shared memory ([`AesTable`]: four tables, or T0 replicated per bank).
//!   Device-resident API: [`CudaBackend::upload_dpf_bytes`], [`DeviceDpfKeys`],
//!   [`CudaBackend::dpf_eval_device`], [`CudaBackend::device_dcf`], [`DeviceDcfKeys`],
//!   [`CudaBackend::dcf_eval_device`].
//! * **Gates.** The compiled-gate components behind the backend
//!   ([`suf_backend::Backend::techc_eval`], `floor_eval`, `sign_eval`; descriptors in
//!   `suf_backend::gate`) run as points + DCF + recombination kernels on the instance's stream
//!   (`kernels/gates.cu`); only the outputs come back. Empty batches and DCF payloads outside
//!   [`CudaBackend::dcf_supported`] use the CPU code of `suf_backend::gate` (a shape rule).
//!   Each such call (and `dcf_eval`, the DPF evaluations) moves its host operands in one
//!   copy from reusable pinned memory and its outputs in one copy back
//!   ([`CudaBackend::set_io_timing`], [`IoTiming`]).
//! * **Host or device.** Elementwise calls on host operands run on the host below
//!   [`CudaOptions::elementwise_device_min`] elements (a size rule measured on the GPU, see
//!   the README); GEMM and FSS run on the device. [`suf_backend::Backend::stats`] counts
//!   both.
//! * **Ring GEMM** mod 2^n on CUDA cores: 64×64 tiles in shared memory, operands split into
//!   32-bit halves so each 64-bit multiply-add is three 32-bit IMADs (one for n ≤ 32).
//!
//! * **Streams.** One stream per [`CudaBackend`] instance; context, module and kernels are
//!   shared by all instances on a device ([`CudaBackend::sibling`]: one per party).
//! * **Errors.** A device failure is an error (`BackendError::Device` from the trait,
//!   [`CudaError`] from the inherent API), never a silent CPU fallback.
//!
//! What runs where (and what runs on the host by design) is listed on [`CudaBackend`].
//!
//! **Timing side channel.** T-table AES indexes shared memory with secret-dependent bytes
//! (the DPF/DCF seeds). That is acceptable only where the GPU is not shared with untrusted
//! code (DESIGN §1).
//!
//! This is the one crate of the workspace that uses `unsafe` (FFI launches, uninitialized
//! device allocations, NVRTC calls); every block states why it is sound in a `// SAFETY:`
//! comment.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod aes_tables;
pub mod compile;
mod device;
pub mod error;
mod gates;
mod io;
pub mod keygen;
mod keys;

pub use cudarc;
pub use device::{
    cuda_available, AesTable, CudaBackend, CudaOptions, DeviceInfo, ELEMENTWISE_DEVICE_MIN,
};
pub use error::{CudaError, Result};
pub use io::IoTiming;
pub use keygen::{CudaDealer, DeviceDcfPair};
pub use keys::{DeviceDcfKeys, DeviceDpfKeys};
