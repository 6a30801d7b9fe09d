//! [`CudaBackend`]: the device, its kernels, the device-resident API and the
//! [`suf_backend::Backend`] implementation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use cudarc::driver::PinnedHostSlice;
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView,
    DeviceRepr, DeviceSlice, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use rayon::prelude::*;
use suf_backend::{
    BLayout, Backend, BackendStats, BitWidth, CpuBackend, DcfKeys, DpfKeys, Resident,
};
use suf_fss::keyfmt::KeyKind;

use crate::compile::{self, nvrtc_available};
use crate::error::{CudaError, DriverContext, Result};
use crate::keys::{self, DeviceDcfKeys, DeviceDpfKeys, Head, KeyBody};

/// Threads per block of the FSS and elementwise kernels.
const BLOCK: u32 = 256;
/// Most payload elements of the vector DCF kernel (`kernels/fss.cu`, DCF_VEC_MAX_P).
const DCF_VEC_MAX_P: usize = 16;
/// Most value blocks per level of the vector DCF kernel (DCF_VEC_MAX_B).
const DCF_VEC_MAX_B: usize = 8;
/// Largest grid dimension y / z of a launch.
const MAX_GRID_YZ: usize = 65_535;
/// Bytes per pinned staging buffer of a key-stream upload (two buffers per instance, filled
/// by the host while the other one is copied to the device).
const STAGE_CHUNK: usize = 16 << 20;
/// Device memory left free when a key stream is attached (work buffers of the online phase).
const KEY_HEADROOM: usize = 1 << 30;
/// Key streams one instance holds at once; attaching another releases the oldest (a party
/// runs one stream at a time; the runtime detaches it when the run ends).
const MAX_STREAMS: usize = 4;
/// Default of [`CudaOptions::elementwise_device_min`]: elementwise calls on host operands
/// run on the host below this many elements. Chosen by measurement on the H200 (crate README,
/// "Host or device": `add`, `mul`, `scale`, `mul_rows`, `row_sum` from 2^10 to 2^24 elements,
/// 8 host threads): with the operands in host memory the device round trip lost at every size
/// but one (`mul_rows` at 2^16, by 5 µs), e.g. `add` of 2^20 elements 0.26 ms on the host
/// against 2.07 ms, so the rule keeps elementwise work on host operands on the host.
pub const ELEMENTWISE_DEVICE_MIN: usize = usize::MAX;

/// How the AES T-table is held in shared memory (both give identical results).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AesTable {
    /// Four 1 KB tables TE0..TE3 (4 KB per block). Lookups may hit bank conflicts
    /// (16.6 G AES blocks/s on an H200, `cuda_bench`).
    Shared4,
    /// TE0 replicated 32 times, one copy per bank (32 KB per block), TE1..TE3 by rotation:
    /// conflict-free lookups, one extra address operation and funnel shift per lookup
    /// (20.5 G AES blocks/s on an H200 in `cuda_bench`, 26–29 G in a kernel of AES alone:
    /// the default).
    Replicated32,
}

impl AesTable {
    fn idx(self) -> usize {
        match self {
            AesTable::Shared4 => 0,
            AesTable::Replicated32 => 1,
        }
    }
    fn smem(self) -> u32 {
        match self {
            AesTable::Shared4 => 4096,
            AesTable::Replicated32 => 32768,
        }
    }
    /// Short name (`"t4"`, `"r32"`), as in the kernel names.
    pub fn name(self) -> &'static str {
        match self {
            AesTable::Shared4 => "t4",
            AesTable::Replicated32 => "r32",
        }
    }
}

/// What the device and its toolchain report.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Device name (e.g. "NVIDIA H100 80GB HBM3").
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Device memory in bytes.
    pub total_mem: usize,
    /// Driver API version (e.g. 13000 for CUDA 13.0).
    pub driver_version: i32,
    /// NVRTC version (major, minor).
    pub nvrtc_version: (i32, i32),
    /// The architecture the kernels were compiled for (`sm_90`, ...).
    pub arch: String,
    /// Size of the kernel CUBIN in bytes.
    pub cubin_bytes: usize,
    /// NVRTC's compile log (ptxas resource usage with `SUF_CUDA_PTXAS_VERBOSE=1`).
    pub compile_log: String,
}

/// Options for [`CudaBackend::with_options`].
#[derive(Clone, Debug)]
pub struct CudaOptions {
    /// Device ordinal.
    pub ordinal: usize,
    /// Shared-memory layout of the AES table.
    pub aes_table: AesTable,
    /// GEMMs with fewer output elements than this run on the CPU backend (a GPU round trip
    /// costs tens of microseconds). 0 (the default) sends every GEMM to the GPU.
    pub cpu_below: usize,
    /// Elementwise calls (`add`, `mul`, `mul_rows`, `row_sum`, …: operands and results in
    /// host memory) run on the device only from this many elements on; smaller ones run on
    /// the host. A documented size rule measured on the GPU
    /// ([`ELEMENTWISE_DEVICE_MIN`]), not an error fallback; 0 or 1 sends every non-empty
    /// call to the device (the tests do, to cover the kernels).
    pub elementwise_device_min: usize,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            ordinal: 0,
            aes_table: AesTable::Replicated32,
            cpu_below: 0,
            elementwise_device_min: ELEMENTWISE_DEVICE_MIN,
        }
    }
}

struct Kernels {
    aes_ecb: [CudaFunction; 2],
    aes_bench: [CudaFunction; 2],
    dpf: [CudaFunction; 2],
    dcf_p1: [CudaFunction; 2],
    dcf_vec: [CudaFunction; 2],
    /// [u64, u32] × [one block per SM, two blocks per SM].
    gemm: [[CudaFunction; 2]; 2],
    ew: CudaFunction,
    mask: CudaFunction,
    row_sum: CudaFunction,
    /// Compiled-gate kernels (`kernels/gates.cu`, `crate::gates`).
    gates: crate::gates::GateKernels,
}

/// The CUDA backend: one device, one stream, kernels compiled by NVRTC at start-up.
///
/// * **GPU:** GEMM mod 2^n ([`Backend::gemm_batch`], `gemm`, `gemm_bt`), every elementwise
///   method (`add`, `sub`, `mul`, `neg`, `scale`, `add_const`, `reduce`, the `*_assign`
///   forms, `add_bcast`, `mul_bcast`, `mul_rows`, `row_sum`) from
///   [`CudaOptions::elementwise_device_min`] elements on, DPF comparison
///   ([`Backend::dpf_lt_eval`]) and point evaluation ([`Backend::dpf_eq_eval`]), DCF
///   ([`Backend::dcf_eval`]) with one payload element of any width, or vector payloads of
///   p ≤ 16 elements and at most 8 value blocks per level ([`CudaBackend::dcf_supported`]).
/// * **On the host by design** (the internal [`CpuBackend`], chosen from the arguments alone,
///   never after a device failure): bit packing (`pack`, `unpack`: the bytes on the wire are
///   produced on the host anyway), DCF vector payloads beyond [`CudaBackend::dcf_supported`],
///   GEMMs whose m exceeds 65,535 × 64 rows or whose dimensions exceed u32, calls whose
///   lengths are wrong (so the errors are exactly the CPU backend's), degenerate shapes (an
///   empty operand, k = 0), GEMMs below [`CudaOptions::cpu_below`] (0 by default: only
///   empty calls) and elementwise calls below the measured size rule
///   [`CudaOptions::elementwise_device_min`] (by default all of them: host operands are
///   cheaper on the host).
/// * **Key streams:** [`Backend::attach_keys`] keeps a party's stream resident; DCF views
///   into it are evaluated in place ([`CudaBackend::device_dcf`]).
/// * **Device failures** (out of device memory, a failed launch, a lost device) are returned
///   as [`suf_backend::BackendError::Device`] by the trait methods and as [`CudaError`] by the
///   inherent `try_*` / `*_device` methods. There is no silent fallback to the CPU.
///
/// Results equal [`CpuBackend`]'s bit for bit (the tests assert it on every kernel).
///
/// **Streams.** Each instance owns its own CUDA stream; the context, the compiled module and
/// the kernels are shared by every instance on the same device (a process-wide cache, so
/// NVRTC and module loading happen once). Two parties in one process therefore each take an
/// instance and their work runs concurrently on the GPU; nothing serializes them on the host.
/// Calls on one instance from several threads are also safe (they queue on its stream).
/// Device buffers belong to the instance that allocated them: the `*_device` methods reject
/// buffers of another instance ([`CudaError::ForeignBuffer`]).
pub struct CudaBackend {
    dev: Arc<Device>,
    stream: Arc<CudaStream>,
    cpu: CpuBackend,
    table: AtomicU8,
    /// Threads per block of the FSS evaluation kernels; 0 = by batch size ([`fss_block`]).
    fss_block: AtomicU32,
    gemm_b2: std::sync::atomic::AtomicBool,
    cpu_below: usize,
    ew_min: AtomicUsize,
    /// Attached key streams, oldest first.
    streams: Mutex<Vec<(u64, Arc<ResidentStream>)>>,
    /// Pinned staging buffers for key-stream uploads (allocated on first use), each with the
    /// event recorded after the copy that last read it.
    staging: Mutex<Option<[Staging; 2]>>,
    /// Pinned (cached, not write-combined) staging buffers for large downloads
    /// ([`CudaBackend::dtoh_staged`]), allocated on first use.
    down: Mutex<Option<[Staging; 2]>>,
    stats: Mutex<BackendStats>,
    /// The key stream being received ([`Backend::receive_keys_begin`]), if any.
    receiving: Mutex<Option<Receiving>>,
    /// Reusable pinned I/O buffers of the calls with host operands (`crate::io`): a pool of
    /// sets, each taken out for a whole call (the lock is held only to take or give back).
    pub(crate) io_pool: Mutex<Vec<crate::io::IoSet>>,
    /// Whether those calls record their timing ([`CudaBackend::set_io_timing`]).
    pub(crate) io_timed: AtomicBool,
    /// Their timing so far ([`CudaBackend::io_timing`]).
    pub(crate) io_times: Mutex<crate::io::IoTiming>,
}

/// A key stream arriving chunk by chunk ([`CudaBackend::try_receive_chunk`]).
struct Receiving {
    buf: CudaSlice<u8>,
    /// Announced bytes.
    len: usize,
    /// The next chunk index expected.
    next: usize,
    /// Bytes handed over so far.
    done: usize,
    /// When the receive began.
    t: Instant,
}

/// A pinned staging buffer and the event recorded after the copy that last read it.
type Staging = (PinnedHostSlice<u8>, cudarc::driver::CudaEvent);

/// A party's key stream held in device memory ([`Backend::attach_keys`]).
struct ResidentStream {
    /// The stream's bytes, then zeros (the buffer is longer than the stream).
    buf: Arc<CudaSlice<u8>>,
    /// Bytes of the stream.
    len: usize,
}

/// Lock a mutex, taking the data of a poisoned one (a panicking caller cannot leave these
/// counters or tables half-updated in a way that matters).
/// `BodyOnDevice` unless the host holds the key body `origin` names (a body received straight
/// into a device has only zeros on the host: it is evaluated where it lies or not at all).
fn host_body(origin: Option<suf_fss::KeyOrigin>) -> Result<()> {
    suf_fss::KeyOrigin::check_on_host(origin)
        .map_err(|e| CudaError::Backend(suf_backend::BackendError::Fss(e)))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A resident matrix's device buffer (on the stream of the instance that uploaded it).
struct DeviceMatrix(CudaSlice<u64>);

/// What every instance on one device shares: the context, the module and its kernels.
struct Device {
    ctx: Arc<CudaContext>,
    _module: Arc<CudaModule>,
    k: Kernels,
    info: DeviceInfo,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.dev.info.name)
            .field("arch", &self.dev.info.arch)
            .field("aes_table", &self.aes_table())
            .finish_non_exhaustive()
    }
}

/// Whether a CUDA driver and NVRTC can be loaded and at least one device exists. Never panics.
pub fn cuda_available() -> bool {
    driver_available() && nvrtc_available() && device_count().unwrap_or(0) > 0
}

fn driver_available() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate library names and closes
    // what it opened; it touches no other state.
    unsafe { drv_sys::is_culib_present() }
}

fn device_count() -> Result<usize> {
    CudaContext::device_count()
        .during("cuDeviceGetCount")
        .map(|c| c.max(0) as usize)
}

/// `Ok` when `bytes` of keys fit in `free` device bytes with the online phase's headroom.
fn keys_fit(bytes: usize, free: usize) -> Result<()> {
    if bytes.saturating_add(KEY_HEADROOM) > free {
        return Err(CudaError::KeysTooLarge {
            bytes: bytes as u64,
            free: free as u64,
        });
    }
    Ok(())
}

/// Threads per block of the FSS evaluation kernels for `total` points on `sms`
/// multiprocessors: 256 (eight warps per block) when the batch fills every multiprocessor
/// with them, else the power of two (≥ 32) that spreads it over all of them. A DCF walk is a
/// chain of dependent AES calls, so a small batch packed onto a few multiprocessors waits on
/// their issue rate while the rest idle.
pub fn fss_block(total: usize, sms: u32) -> u32 {
    let per_sm = total.div_ceil(sms.max(1) as usize);
    per_sm.next_power_of_two().clamp(32, BLOCK as usize) as u32
}

fn grid_for(total: usize, cap: u32) -> u32 {
    (total.div_ceil(BLOCK as usize)).clamp(1, cap as usize) as u32
}

impl Device {
    /// The shared state of device `ordinal`, created on first use (the libraries and the
    /// ordinal are checked by the caller).
    fn get(ordinal: usize) -> Result<Arc<Device>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
        let mut map = DEVICES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(Device::open(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }

    fn open(ordinal: usize) -> Result<Device> {
        let ctx = CudaContext::new(ordinal).during("creating the context")?;
        // No per-buffer event tracking: it is called before any buffer exists on this
        // context, so it covers every buffer.
        // SAFETY: every buffer is allocated, used and freed on the stream of the one backend
        // instance that allocated it (the `*_device` methods check a buffer's stream, the
        // trait methods only use buffers they allocate), so no cross-stream synchronization
        // is ever needed.
        unsafe { ctx.disable_event_tracking() };
        let cc = ctx.compute_capability().during("compute capability")?;
        let name = ctx.name().during("device name")?;
        let total_mem = ctx.total_mem().during("device memory size")?;
        let sm_count = ctx
            .attribute(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .during("multiprocessor count")? as u32;
        let mut driver_version = 0i32;
        // SAFETY: the driver library is present (checked above) and initialized by
        // `CudaContext::new`; the pointer is to a live i32.
        unsafe { drv_sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .during("cuDriverGetVersion")?;
        let arch = format!("sm_{}{}", cc.0, cc.1);
        let compiled = compile::compile(&arch)?;
        let module = ctx
            .load_module(Ptx::from_binary(compiled.cubin.clone()))
            .during("loading the kernel module")?;
        let f = |name: &str| -> Result<CudaFunction> {
            module.load_function(name).during("looking up a kernel")
        };
        let pair = |base: &str| -> Result<[CudaFunction; 2]> {
            Ok([f(&format!("{base}_t4"))?, f(&format!("{base}_r32"))?])
        };
        let k = Kernels {
            aes_ecb: pair("aes_ecb")?,
            aes_bench: pair("aes_bench")?,
            dpf: pair("dpf_eval")?,
            dcf_p1: pair("dcf_p1")?,
            dcf_vec: pair("dcf_vec")?,
            gemm: [
                [f("gemm_u64")?, f("gemm_u64_b2")?],
                [f("gemm_u32")?, f("gemm_u32_b2")?],
            ],
            ew: f("ew_u64")?,
            mask: f("mask_u64")?,
            row_sum: f("row_sum_u64")?,
            gates: crate::gates::GateKernels::load(&module)?,
        };
        // The replicated table needs 32 KB of dynamic shared memory (below the 48 KB default
        // limit, so no attribute change is needed).
        let info = DeviceInfo {
            name,
            compute_capability: cc,
            sm_count,
            total_mem,
            driver_version,
            nvrtc_version: compiled.nvrtc_version,
            arch,
            cubin_bytes: compiled.cubin.len(),
            compile_log: compiled.log.clone(),
        };
        Ok(Device {
            ctx,
            _module: module,
            k,
            info,
        })
    }
}

impl CudaBackend {
    /// The backend on device 0 with default options.
    ///
    /// # Errors
    /// [`CudaError::NoDriver`] / [`CudaError::NoNvrtc`] when the libraries are missing (never a
    /// panic), [`CudaError::NoDevice`], [`CudaError::Compile`] with NVRTC's log, or a driver
    /// error.
    pub fn new() -> Result<Self> {
        Self::with_options(CudaOptions::default())
    }

    /// The backend with explicit options: a new stream on the (shared) device.
    ///
    /// # Errors
    /// As [`CudaBackend::new`].
    pub fn with_options(opts: CudaOptions) -> Result<Self> {
        // cudarc panics when a library is missing; check both first.
        if !driver_available() {
            return Err(CudaError::NoDriver);
        }
        if !nvrtc_available() {
            return Err(CudaError::NoNvrtc);
        }
        let count = device_count()?;
        if opts.ordinal >= count {
            return Err(CudaError::NoDevice {
                ordinal: opts.ordinal,
                count,
            });
        }
        let dev = Device::get(opts.ordinal)?;
        let stream = dev.ctx.new_stream().during("creating a stream")?;
        Ok(CudaBackend {
            dev,
            stream,
            cpu: CpuBackend::new(),
            table: AtomicU8::new(opts.aes_table.idx() as u8),
            fss_block: AtomicU32::new(0),
            gemm_b2: std::sync::atomic::AtomicBool::new(true),
            cpu_below: opts.cpu_below,
            ew_min: AtomicUsize::new(opts.elementwise_device_min),
            streams: Mutex::new(Vec::new()),
            staging: Mutex::new(None),
            down: Mutex::new(None),
            stats: Mutex::new(BackendStats::default()),
            receiving: Mutex::new(None),
            io_pool: Mutex::new(Vec::new()),
            io_timed: AtomicBool::new(false),
            io_times: Mutex::new(Default::default()),
        })
    }

    /// Another backend on the same device with the same options and a stream of its own (one
    /// per party when both parties run in one process).
    ///
    /// # Errors
    /// A driver error creating the stream.
    pub fn sibling(&self) -> Result<Self> {
        let stream = self.dev.ctx.new_stream().during("creating a stream")?;
        Ok(CudaBackend {
            dev: self.dev.clone(),
            stream,
            cpu: self.cpu.clone(),
            table: AtomicU8::new(self.table.load(Ordering::Relaxed)),
            fss_block: AtomicU32::new(self.fss_block.load(Ordering::Relaxed)),
            gemm_b2: std::sync::atomic::AtomicBool::new(self.gemm_b2.load(Ordering::Relaxed)),
            cpu_below: self.cpu_below,
            ew_min: AtomicUsize::new(self.ew_min.load(Ordering::Relaxed)),
            streams: Mutex::new(Vec::new()),
            staging: Mutex::new(None),
            down: Mutex::new(None),
            stats: Mutex::new(BackendStats::default()),
            receiving: Mutex::new(None),
            io_pool: Mutex::new(Vec::new()),
            io_timed: AtomicBool::new(self.io_timed.load(Ordering::Relaxed)),
            io_times: Mutex::new(Default::default()),
        })
    }

    /// `Err(ForeignBuffer)` unless `buf` (a buffer or a view of one) was allocated on this
    /// instance's stream.
    fn own<T>(&self, what: &'static str, buf: &impl DeviceSlice<T>) -> Result<()> {
        if Arc::ptr_eq(buf.stream(), &self.stream) {
            Ok(())
        } else {
            Err(CudaError::ForeignBuffer { what })
        }
    }

    /// What the device reports.
    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    /// The device name.
    pub fn device_name(&self) -> &str {
        &self.dev.info.name
    }

    /// The context (for events and timing).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.dev.ctx
    }

    /// The stream every kernel of this backend runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Fix the FSS kernels' threads per block (a power of two from 32 to 256), or 0 for the
    /// choice by batch size ([`fss_block`], the default). Either gives identical results.
    pub fn set_fss_block(&self, threads: u32) {
        let t = if threads == 0 {
            0
        } else {
            threads.next_power_of_two().clamp(32, BLOCK)
        };
        self.fss_block.store(t, Ordering::Relaxed);
    }

    /// The launch shape of an FSS evaluation kernel for `total` points: block size and the
    /// AES table. Blocks below 256 threads use the four-table layout, whose 4 KB they fill in
    /// 32 loads or fewer per thread (the replicated one would take 256 at 32 threads).
    fn fss_launch(&self, total: usize) -> (LaunchConfig, AesTable) {
        let fixed = self.fss_block.load(Ordering::Relaxed);
        let (block, table) = if fixed != 0 {
            (fixed, self.aes_table())
        } else {
            let b = fss_block(total, self.dev.info.sm_count);
            (
                b,
                if b < BLOCK {
                    AesTable::Shared4
                } else {
                    self.aes_table()
                },
            )
        };
        let grid = total
            .div_ceil(block as usize)
            .clamp(1, (self.dev.info.sm_count * 32) as usize) as u32;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: table.smem(),
        };
        (cfg, table)
    }

    /// The AES table layout in use.
    pub fn aes_table(&self) -> AesTable {
        if self.table.load(Ordering::Relaxed) == 0 {
            AesTable::Shared4
        } else {
            AesTable::Replicated32
        }
    }

    /// Choose the AES table layout for later calls.
    pub fn set_aes_table(&self, t: AesTable) {
        self.table.store(t.idx() as u8, Ordering::Relaxed);
    }

    /// Change [`CudaOptions::elementwise_device_min`] for later calls.
    pub fn set_elementwise_device_min(&self, n: usize) {
        self.ew_min.store(n, Ordering::Relaxed);
    }

    /// The elementwise size rule in force ([`CudaOptions::elementwise_device_min`]).
    pub fn elementwise_device_min(&self) -> usize {
        self.ew_min.load(Ordering::Relaxed)
    }

    /// The device ordinal this instance runs on.
    pub fn ordinal(&self) -> usize {
        self.dev.ctx.ordinal()
    }

    /// GEMM tuning: cap the kernel at 128 registers so that two 256-thread blocks share an SM
    /// (`true`, the default: 6.5 against 5.5 Tops for 4096×768×3072 over Z_2^50 on an H100),
    /// or let it use up to 255 (`false`). Results are identical.
    pub fn set_gemm_two_blocks_per_sm(&self, on: bool) {
        self.gemm_b2.store(on, Ordering::Relaxed);
    }

    // ---- memory helpers -------------------------------------------------------------------

    /// Copy a host slice to a new device buffer.
    ///
    /// # Errors
    /// A driver error (out of memory, ...).
    pub fn htod<T: DeviceRepr>(&self, v: &[T]) -> Result<CudaSlice<T>> {
        if v.is_empty() {
            // A zero-byte allocation is not portable across allocators; keep one element.
            // SAFETY: the buffer is never read (length-0 views of it are passed as `len = 0`).
            return unsafe { self.stream.alloc::<T>(1) }.during("allocating");
        }
        self.stream.clone_htod(v).during("host-to-device copy")
    }

    /// Copy a device buffer back to the host (synchronizes the stream).
    ///
    /// # Errors
    /// A driver error, including any error of earlier asynchronous work on the stream.
    pub fn dtoh<T: DeviceRepr>(&self, d: &CudaSlice<T>, len: usize) -> Result<Vec<T>> {
        if len == 0 {
            self.stream.synchronize().during("synchronizing")?;
            return Ok(Vec::new());
        }
        let v = self
            .stream
            .clone_dtoh(&d.slice(..len))
            .during("device-to-host copy")?;
        Ok(v)
    }

    /// The two pinned staging buffers held in `slot` (of [`STAGE_CHUNK`] bytes each, allocated
    /// with the `cuMemHostAlloc` `flags` on first use), each with its event.
    fn staging_pair<'s>(
        &self,
        slot: &'s mut Option<[Staging; 2]>,
        flags: u32,
    ) -> Result<&'s mut [Staging; 2]> {
        if let Some(b) = slot.take() {
            return Ok(slot.insert(b));
        }
        let mk = || -> Result<Staging> {
            // SAFETY: the pinned buffer's bytes are uninitialized. Both users only read
            // bytes they wrote first: uploads fill each chunk in full (the copied bytes,
            // then zeros) before copying it to the device; downloads read only the bytes
            // the device copy wrote, after waiting for the event recorded behind it.
            let p = unsafe {
                self.dev
                    .ctx
                    .alloc_pinned_with_flags::<u8>(STAGE_CHUNK, flags)
            }
            .during("allocating pinned staging memory")?;
            Ok((p, self.event()?))
        };
        Ok(slot.insert([mk()?, mk()?]))
    }

    /// Copy the first `len` bytes of a device buffer back to the host through two pinned
    /// staging buffers (chunks of 16 MiB: the device copies chunk i + 1 while the host moves
    /// chunk i out, in parallel). Pageable downloads of large buffers run several times
    /// slower; the dealer's key bodies come back this way. Synchronizes the stream.
    ///
    /// # Errors
    /// A driver error, including any error of earlier asynchronous work on the stream.
    pub fn dtoh_staged(&self, d: &CudaSlice<u8>, len: usize) -> Result<Vec<u8>> {
        if len > d.len() {
            return Err(CudaError::BadKey(format!(
                "download of {len} bytes from a buffer of {}",
                d.len()
            )));
        }
        if len < STAGE_CHUNK {
            return self.dtoh(d, len);
        }
        // A pooled buffer when one is free: a fresh mapping of this size would page-fault
        // on every 4 KiB the copy writes.
        let mut out = suf_fss::dealer::zeroed_buffer(len);
        self.dtoh_staged_into(d, &mut out)?;
        Ok(out)
    }

    /// [`CudaBackend::dtoh_staged`] into `out`: its first `out.len()` bytes (a slot of a
    /// larger host buffer, e.g. a key's place in a gate's blob). Synchronizes the stream.
    ///
    /// # Errors
    /// `BadKey` if the device buffer is shorter than `out`; a driver error.
    pub fn dtoh_staged_into(&self, d: &CudaSlice<u8>, out: &mut [u8]) -> Result<()> {
        let len = out.len();
        if len > d.len() {
            return Err(CudaError::BadKey(format!(
                "download of {len} bytes from a buffer of {}",
                d.len()
            )));
        }
        if len < STAGE_CHUNK {
            if len > 0 {
                self.stream
                    .memcpy_dtoh(&d.slice(..len), out)
                    .during("device-to-host copy")?;
            }
            return self.stream.synchronize().during("device-to-host copy");
        }
        let mut guard = lock(&self.down);
        // Cached pinned memory: the host reads these buffers (write-combined reads crawl).
        let bufs = self.staging_pair(&mut guard, 0)?;
        let chunks: Vec<(usize, usize)> = (0..len)
            .step_by(STAGE_CHUNK)
            .map(|o| (o, (len - o).min(STAGE_CHUNK)))
            .collect();
        let issue = |bufs: &mut [Staging; 2], ci: usize| -> Result<()> {
            let (off, n) = chunks[ci];
            let (pinned, done) = &mut bufs[ci % 2];
            // A plain slice of the pinned buffer: the copy moves exactly n bytes (with the
            // pinned slice itself as the target, the driver would be asked for all of it).
            let host = pinned.as_mut_slice().during("device-to-host copy")?;
            self.stream
                .memcpy_dtoh(&d.slice(off..off + n), &mut host[..n])
                .during("device-to-host copy")?;
            done.record(&self.stream)
                .during("recording a staging event")
        };
        issue(bufs, 0)?;
        for ci in 0..chunks.len() {
            if ci + 1 < chunks.len() {
                // Buffer (ci + 1) % 2 was last read by the host in iteration ci − 1.
                issue(bufs, ci + 1)?;
            }
            let (off, n) = chunks[ci];
            let (pinned, done) = &bufs[ci % 2];
            done.synchronize().during("device-to-host copy")?;
            let host = pinned.as_slice().during("device-to-host copy")?;
            // One thread, deliberately: the GPU dealer calls this inside rayon tasks while
            // holding this lane's lock (and its device budget). A parallel copy here would let
            // this thread, while it waits for its pieces, steal another dealing task that
            // then blocks on that lock or budget: a deadlock (seen with 32 rounds dealt at
            // once). The many tasks of a dealing window keep the cores busy instead.
            out[off..off + n].copy_from_slice(&host[..n]);
        }
        Ok(())
    }

    /// A new device buffer of `len` elements (at least one is allocated), zeroed.
    ///
    /// # Errors
    /// A driver error.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .during("allocating")
    }

    // ---- AES --------------------------------------------------------------------------------

    /// π(x) for every block (fixed-key AES-128, the bare permutation), with the table layout
    /// `table`. For tests against `suf_core::prg::FixedKeyAes::permute`.
    ///
    /// # Errors
    /// A driver error.
    pub fn aes_permute(&self, table: AesTable, blocks: &[u128]) -> Result<Vec<u128>> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let words: Vec<u64> = blocks
            .iter()
            .flat_map(|b| [*b as u64, (*b >> 64) as u64])
            .collect();
        let din = self.htod(&words)?;
        let mut dout = self.alloc_zeros::<u64>(words.len())?;
        let len = blocks.len() as u64;
        let cfg = LaunchConfig {
            grid_dim: (grid_for(blocks.len(), self.dev.info.sm_count * 16), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: table.smem(),
        };
        let f = &self.dev.k.aes_ecb[table.idx()];
        // SAFETY: `aes_ecb_*(const uint4* in, uint4* out, u64 len)`: `din` and `dout` hold
        // 2·len u64 words = len 16-byte blocks (device allocations are 256-byte aligned); the
        // kernel touches indices < len only.
        unsafe {
            self.stream
                .launch_builder(f)
                .arg(&din)
                .arg(&mut dout)
                .arg(&len)
                .launch(cfg)
        }
        .during("launching aes_ecb")?;
        let out = self.dtoh(&dout, words.len())?;
        Ok(out
            .chunks_exact(2)
            .map(|w| w[0] as u128 | (w[1] as u128) << 64)
            .collect())
    }

    /// AES throughput probe: `grid × 256` threads, each running 4 independent chains of
    /// `iters` AES calls. Returns (kernel milliseconds by CUDA events, blocks encrypted).
    ///
    /// # Errors
    /// A driver error.
    pub fn aes_bench(&self, table: AesTable, grid: u32, iters: u32) -> Result<(f64, u64)> {
        let threads = grid as usize * BLOCK as usize;
        let mut out = self.alloc_zeros::<u64>(2 * threads)?;
        let cfg = LaunchConfig {
            grid_dim: (grid.max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: table.smem(),
        };
        let f = &self.dev.k.aes_bench[table.idx()];
        let seed = 0x5eed_u64;
        let start = self.event()?;
        let end = self.event()?;
        start.record(&self.stream).during("recording an event")?;
        // SAFETY: `aes_bench_*(u64 seed, u32 iters, uint4* out)` writes out[thread] for every
        // thread of the grid; `out` holds 2 u64 words (one uint4) per thread.
        unsafe {
            self.stream
                .launch_builder(f)
                .arg(&seed)
                .arg(&iters)
                .arg(&mut out)
                .launch(cfg)
        }
        .during("launching aes_bench")?;
        end.record(&self.stream).during("recording an event")?;
        let ms = start.elapsed_ms(&end).during("reading event time")? as f64;
        let _ = self.dtoh(&out, 2)?;
        Ok((ms, threads as u64 * 4 * iters as u64))
    }

    /// A timing event on this backend's context.
    ///
    /// # Errors
    /// A driver error.
    pub fn event(&self) -> Result<cudarc::driver::CudaEvent> {
        self.dev
            .ctx
            .new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT))
            .during("creating an event")
    }

    // ---- key upload ---------------------------------------------------------------------------

    fn upload_parts(&self, kind: KeyKind, parts: &[&[u8]]) -> Result<(Head, CudaSlice<u8>)> {
        if parts.is_empty() {
            return Err(CudaError::BadKey("no key batch given".into()));
        }
        let heads: Vec<(Head, &[u8])> = parts
            .iter()
            .map(|b| keys::parse(b, kind))
            .collect::<Result<_>>()?;
        let h0 = heads[0].0;
        for (h, _) in &heads[1..] {
            if h.n != h0.n || h.party != h0.party || h.params != h0.params {
                return Err(CudaError::BadKey(format!(
                    "batches differ: (n {}, party {}, params {:?}) and (n {}, party {}, params {:?})",
                    h0.n, h0.party, h0.params, h.n, h.party, h.params
                )));
            }
        }
        let counts: Vec<usize> = heads.iter().map(|h| h.0.count).collect();
        let total_bytes: usize = heads.iter().map(|h| h.1.len()).sum();
        let count: usize = counts.iter().sum();
        let mut dev = self.alloc_bytes(total_bytes)?;
        if heads.len() == 1 {
            if total_bytes > 0 {
                self.stream
                    .memcpy_htod(heads[0].1, &mut dev.slice_mut(..total_bytes))
                    .during("uploading keys")?;
            }
        } else {
            for (i, src, dst, len) in keys::concat_plan(&keys::sections(&h0), &counts) {
                self.stream
                    .memcpy_htod(
                        &heads[i].1[src..src + len],
                        &mut dev.slice_mut(dst..dst + len),
                    )
                    .during("uploading keys")?;
            }
        }
        Ok((Head { count, ..h0 }, dev))
    }

    fn alloc_bytes(&self, len: usize) -> Result<CudaSlice<u8>> {
        // SAFETY: the buffer is fully overwritten by the key upload before any kernel reads it
        // (the body bytes are copied to every offset; see `keys::concat_plan`).
        unsafe { self.stream.alloc::<u8>(len.max(16)) }.during("allocating key memory")
    }

    /// Upload serialized DPF key batches (`DpfKeys::to_bytes` / key-file bytes, header
    /// included) to the device; several batches of the same n and party are concatenated in
    /// order. The header and the exact body size are checked; the checksum is not (that is
    /// the key reader's job, and it would cost more host time than the copy): the kernels'
    /// memory safety only depends on the size check. The copy is asynchronous on this
    /// backend's stream (pinned host memory gives full PCIe speed).
    ///
    /// # Errors
    /// [`CudaError::BadKey`] for malformed or mismatched batches; a driver error.
    pub fn upload_dpf_bytes(&self, parts: &[&[u8]]) -> Result<DeviceDpfKeys> {
        let (h, body) = self.upload_parts(KeyKind::Dpf, parts)?;
        Ok(DeviceDpfKeys {
            body: KeyBody::Owned(body),
            n: h.n,
            party: h.party,
            count: h.count,
        })
    }

    /// Upload a CPU key batch (serializes it first).
    ///
    /// # Errors
    /// As [`CudaBackend::upload_dpf_bytes`].
    pub fn upload_dpf(&self, keys: &DpfKeys) -> Result<DeviceDpfKeys> {
        let b = keys.to_bytes();
        self.upload_dpf_bytes(&[&b])
    }

    /// Upload one serialized DCF key batch (`DcfKeys::to_bytes`, key format version 2: header
    /// and body) to a device buffer of its own; the body goes as it is (the kernels read
    /// version-2 bodies in place). The header and the exact body size are checked
    /// (`DcfKeys::view`); the checksum is not (the key reader's job).
    ///
    /// # Errors
    /// [`CudaError::BadKey`] for a malformed batch; a driver error.
    pub fn upload_dcf_bytes(&self, bytes: &[u8]) -> Result<DeviceDcfKeys> {
        let k = DcfKeys::view(suf_fss::KeyRef::detached(bytes))
            .map_err(|e| CudaError::BadKey(e.to_string()))?;
        self.upload_dcf(&k)
    }

    /// Upload a DCF key batch's body (owned, or a view into a key stream) to a device buffer
    /// of its own, byte for byte, with a zero tail (see `keys::dcf_alloc_len`).
    ///
    /// # Errors
    /// A driver error; `BodyOnDevice` (as [`CudaError::Backend`]) for a body that was
    /// received into a device and is not on the host (its stream is not attached here).
    pub fn upload_dcf(&self, keys: &DcfKeys<'_>) -> Result<DeviceDcfKeys> {
        host_body(keys.origin())?;
        let l = keys.layout();
        let alloc = keys::dcf_alloc_len(l.total)
            .ok_or_else(|| CudaError::BadKey("DCF body size overflows".into()))?;
        let mut body = self.alloc_zeros::<u8>(alloc)?;
        if l.total > 0 {
            self.stream
                .memcpy_htod(keys.body(), &mut body.slice_mut(..l.total))
                .during("uploading keys")?;
        }
        Ok(DeviceDcfKeys {
            body: KeyBody::Owned(body),
            layout: l,
            party: keys.party(),
        })
    }

    /// The device batch of `keys`: read in place from an attached key stream when its origin
    /// names one (nothing moves), else its body uploaded. Returns the batch and the bytes
    /// uploaded (0 in place).
    ///
    /// # Errors
    /// [`CudaError::BadKey`] for an origin outside its attached stream or not 16-aligned (a
    /// corrupt view: the runtime's views are always aligned); a driver error.
    pub fn device_dcf(&self, keys: &DcfKeys<'_>) -> Result<(DeviceDcfKeys, usize)> {
        let l = keys.layout();
        let readable = keys::dcf_readable(l.total)
            .ok_or_else(|| CudaError::BadKey("DCF body size overflows".into()))?;
        if let Some(body) = self.in_stream(keys.origin(), l.total, readable, 16)? {
            lock(&self.stats).dcf_resident_batches += 1;
            return Ok((
                DeviceDcfKeys {
                    body,
                    layout: l,
                    party: keys.party(),
                },
                0,
            ));
        }
        let dk = self.upload_dcf(keys)?;
        let mut st = lock(&self.stats);
        st.dcf_uploaded_batches += 1;
        st.dcf_uploaded_bytes += l.total as u64;
        Ok((dk, l.total))
    }

    /// The device batch of a DPF view: read in place from an attached key stream when its
    /// origin names one (nothing moves), else its body uploaded as it is (no host conversion).
    /// Returns the batch and the bytes uploaded (0 in place).
    ///
    /// # Errors
    /// [`CudaError::BadKey`] for an origin outside its attached stream or not 16-aligned; a
    /// driver error.
    pub fn device_dpf(&self, keys: &suf_fss::dpf::DpfView<'_>) -> Result<(DeviceDpfKeys, usize)> {
        let total = keys.body().len();
        let (n, party, count) = (keys.n(), keys.party(), keys.count());
        if let Some(body) = self.in_stream(keys.origin(), total, total, 16)? {
            return Ok((
                DeviceDpfKeys {
                    body,
                    n,
                    party,
                    count,
                },
                0,
            ));
        }
        host_body(keys.origin())?;
        let mut body = self.alloc_bytes(total.max(1))?;
        if total > 0 {
            self.stream
                .memcpy_htod(keys.body(), &mut body.slice_mut(..total))
                .during("uploading keys")?;
        }
        Ok((
            DeviceDpfKeys {
                body: KeyBody::Owned(body),
                n,
                party,
                count,
            },
            total,
        ))
    }

    /// The bytes `[offset, offset + len)` of an attached key stream, in place, when `origin`
    /// names one: the buffer and the offset. `readable` bytes from the offset must lie inside
    /// the buffer (a kernel may read whole words past `len`), and the offset must be a
    /// multiple of `align`.
    ///
    /// # Errors
    /// [`CudaError::BadKey`] for a run outside its attached stream or misaligned.
    pub(crate) fn in_stream(
        &self,
        origin: Option<suf_fss::KeyOrigin>,
        len: usize,
        readable: usize,
        align: usize,
    ) -> Result<Option<KeyBody>> {
        let Some(o) = origin else {
            return Ok(None);
        };
        let Some(rs) = self.attached(o.stream) else {
            return Ok(None);
        };
        let offset = usize::try_from(o.offset).ok();
        let fits = offset.is_some_and(|off| {
            off.is_multiple_of(align.max(1))
                && off.checked_add(len).is_some_and(|e| e <= rs.len)
                && off.checked_add(readable).is_some_and(|e| e <= rs.buf.len())
        });
        match offset {
            Some(offset) if fits => Ok(Some(KeyBody::InStream {
                buf: rs.buf.clone(),
                offset,
            })),
            _ => Err(CudaError::BadKey(format!(
                "{len} key bytes at offset {} of an attached stream of {} bytes (runs start \
                 {align}-aligned inside the stream)",
                o.offset, rs.len
            ))),
        }
    }

    // ---- key streams ------------------------------------------------------------------------

    fn attached(&self, token: u64) -> Option<Arc<ResidentStream>> {
        lock(&self.streams)
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, r)| r.clone())
    }

    /// Whether a key stream of `bytes` bytes fits in the device memory free now (keeping a
    /// headroom of 1 GiB for the online phase's work buffers).
    ///
    /// # Errors
    /// [`CudaError::KeysTooLarge`] when it does not; a driver error from the query.
    pub fn key_stream_fits(&self, bytes: usize) -> Result<()> {
        let (free, _) = self
            .dev
            .ctx
            .mem_get_info()
            .during("querying free device memory")?;
        keys_fit(bytes, free)
    }

    /// Upload a party's whole key stream once and keep it resident under `token` (see
    /// [`Backend::attach_keys`]): chunks of 16 MiB go through two pinned staging buffers, the
    /// host filling one while the other is copied. Attaching a token already held does
    /// nothing; a fifth stream releases the oldest. Returns the upload's milliseconds.
    ///
    /// # Errors
    /// [`CudaError::KeysTooLarge`] when the stream does not fit in free device memory
    /// (streaming keys through the device is later work); a driver error.
    pub fn try_attach_keys(&self, token: u64, bytes: &[u8]) -> Result<f64> {
        if self.attached(token).is_some() {
            return Ok(0.0);
        }
        let t = Instant::now();
        let len = bytes.len();
        let mut buf = self.key_stream_buffer(len)?;
        for (ci, chunk) in bytes.chunks(STAGE_CHUNK).enumerate() {
            self.stage_key_chunk(ci, chunk, &mut buf)?;
        }
        self.stream.synchronize().during("uploading a key stream")?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.hold_stream(token, buf, len, ms);
        Ok(ms)
    }

    /// Copy chunk `ci` of a key stream (its bytes `ci·STAGE_CHUNK ..`, at most `STAGE_CHUNK`
    /// of them) into `buf` through the pinned staging pair; asynchronous (the event behind
    /// the copy guards the staging buffer's next use).
    fn stage_key_chunk(&self, ci: usize, chunk: &[u8], buf: &mut CudaSlice<u8>) -> Result<()> {
        let off = ci
            .checked_mul(STAGE_CHUNK)
            .filter(|&o| chunk.len() <= STAGE_CHUNK && o + STAGE_CHUNK <= buf.len())
            .ok_or(CudaError::Backend(
                suf_backend::BackendError::LengthMismatch {
                    what: "key stream chunk",
                    expected: STAGE_CHUNK,
                    got: chunk.len(),
                },
            ))?;
        let mut staging = lock(&self.staging);
        // Write-combined pinned memory: the host only writes these buffers.
        let bufs = self.staging_pair(
            &mut staging,
            cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED,
        )?;
        let (pinned, done) = &mut bufs[ci % 2];
        // The copy that last read this buffer must have finished before the host writes it
        // again (event tracking is off on this context, so the pinned slice's own event is
        // never recorded: this event is ours).
        done.synchronize().during("waiting for a staging buffer")?;
        let host = pinned
            .as_mut_slice()
            .during("waiting for a staging buffer")?;
        host[..chunk.len()]
            .par_chunks_mut(1 << 20)
            .zip(chunk.par_chunks(1 << 20))
            .for_each(|(d, s)| d.copy_from_slice(s));
        host[chunk.len()..].fill(0);
        self.stream
            .memcpy_htod(&*pinned, &mut buf.slice_mut(off..off + STAGE_CHUNK))
            .during("uploading a key stream")?;
        done.record(&self.stream)
            .during("recording a staging event")?;
        Ok(())
    }

    /// Keep `buf` (a whole key stream of `len` bytes) resident under `token`, counted as an
    /// attach that took `ms`; a fifth stream releases the oldest.
    fn hold_stream(&self, token: u64, buf: CudaSlice<u8>, len: usize, ms: f64) {
        {
            let mut streams = lock(&self.streams);
            if streams.len() >= MAX_STREAMS {
                streams.remove(0);
            }
            streams.push((
                token,
                Arc::new(ResidentStream {
                    buf: Arc::new(buf),
                    len,
                }),
            ));
        }
        let mut st = lock(&self.stats);
        st.key_streams_attached += 1;
        st.key_bytes_attached += len as u64;
        st.key_upload_ms += ms;
    }

    /// The device buffer for a key stream of `len` bytes: zeros to a whole number of
    /// staging chunks and at least 16 past the end (the kernels' packed reads), if it fits.
    fn key_stream_buffer(&self, len: usize) -> Result<CudaSlice<u8>> {
        let alloc = len
            .checked_add(16)
            .and_then(|x| x.checked_next_multiple_of(STAGE_CHUNK))
            .ok_or(CudaError::KeysTooLarge {
                bytes: len as u64,
                free: 0,
            })?;
        // Freed buffers go back to the device at a synchronization (see `detach`).
        self.dev
            .ctx
            .synchronize()
            .during("synchronizing before a key stream")?;
        self.key_stream_fits(alloc)?;
        self.alloc_zeros::<u8>(alloc)
    }

    /// [`Backend::receive_keys_begin`]: a device buffer for the whole stream (any stream
    /// still being received is dropped first). Returns the chunk size, 16 MiB.
    ///
    /// # Errors
    /// [`CudaError::KeysTooLarge`]; a driver error.
    pub fn try_receive_begin(&self, len: usize) -> Result<usize> {
        let mut r = lock(&self.receiving);
        *r = None;
        let buf = self.key_stream_buffer(len)?;
        *r = Some(Receiving {
            buf,
            len,
            next: 0,
            done: 0,
            t: Instant::now(),
        });
        Ok(STAGE_CHUNK)
    }

    /// [`Backend::receive_keys_chunk`].
    ///
    /// # Errors
    /// `Unsupported` without a receive begun; `LengthMismatch` for a chunk out of order, of
    /// the wrong size or past the announced length; a driver error.
    pub fn try_receive_chunk(&self, index: usize, bytes: &[u8]) -> Result<()> {
        let mut g = lock(&self.receiving);
        let r = g
            .as_mut()
            .ok_or(CudaError::Backend(suf_backend::BackendError::Unsupported {
                backend: "cuda",
                what: "take a key stream chunk without a receive begun",
            }))?;
        let last = r.done + bytes.len() == r.len;
        if index != r.next || r.done + bytes.len() > r.len || (!last && bytes.len() != STAGE_CHUNK)
        {
            return Err(CudaError::Backend(
                suf_backend::BackendError::LengthMismatch {
                    what: "key stream chunk",
                    expected: STAGE_CHUNK.min(r.len - r.done.min(r.len)),
                    got: bytes.len(),
                },
            ));
        }
        self.stage_key_chunk(index, bytes, &mut r.buf)?;
        r.next += 1;
        r.done += bytes.len();
        Ok(())
    }

    /// [`Backend::receive_keys_finish`]: waits for the last copies and holds the stream
    /// under `token`. Returns the milliseconds of that wait.
    ///
    /// # Errors
    /// `Unsupported` without a receive begun; `LengthMismatch` if bytes are missing; a
    /// driver error.
    pub fn try_receive_finish(&self, token: u64) -> Result<f64> {
        let r = lock(&self.receiving).take().ok_or(CudaError::Backend(
            suf_backend::BackendError::Unsupported {
                backend: "cuda",
                what: "finish a key stream without a receive begun",
            },
        ))?;
        if r.done != r.len {
            return Err(CudaError::Backend(
                suf_backend::BackendError::LengthMismatch {
                    what: "received key stream",
                    expected: r.len,
                    got: r.done,
                },
            ));
        }
        let t = Instant::now();
        self.stream.synchronize().during("uploading a key stream")?;
        let tail = t.elapsed().as_secs_f64() * 1e3;
        self.hold_stream(token, r.buf, r.len, r.t.elapsed().as_secs_f64() * 1e3);
        Ok(tail)
    }

    /// Release the key stream held under `token` (nothing if none).
    pub fn detach(&self, token: u64) {
        let gone: Vec<_> = {
            let mut held = lock(&self.streams);
            let (gone, keep) = std::mem::take(&mut *held)
                .into_iter()
                .partition(|(t, _)| *t == token);
            *held = keep;
            gone
        };
        if !gone.is_empty() {
            drop(gone);
            // Device buffers are freed stream-ordered into the context's memory pool, which
            // gives them back to the device only at a synchronization: without one, the next
            // run's stream (bert-large: 55–60 GB per party) would not fit beside the freed
            // one, for this process or the other party's.
            let _ = self.dev.ctx.synchronize();
        }
    }

    /// Key streams held now.
    pub fn attached_streams(&self) -> usize {
        lock(&self.streams).len()
    }

    // ---- FSS evaluation on device buffers -------------------------------------------------------

    fn check_points(count: usize, t: usize, got: usize, what: &'static str) -> Result<usize> {
        let want = count.checked_mul(t).ok_or(CudaError::Backend(
            suf_backend::BackendError::ShapeOverflow { what },
        ))?;
        if want != got {
            return Err(CudaError::Backend(
                suf_backend::BackendError::LengthMismatch {
                    what,
                    expected: want,
                    got,
                },
            ));
        }
        Ok(want)
    }

    /// Launch the DPF kernel: key i at the `t` points `xs[i·t..(i+1)·t]`; `out[e]` receives the
    /// XOR share of 1{x < α} (`eq = false`) or 1{x = α} (`eq = true`). Asynchronous (no
    /// synchronization): time it with events on [`CudaBackend::stream`]. `xs_len` elements of
    /// `xs` are used and must equal `count · t`.
    ///
    /// # Errors
    /// A length error, or a driver error at launch.
    pub fn dpf_eval_device(
        &self,
        keys: &DeviceDpfKeys,
        xs: &CudaSlice<u64>,
        xs_len: usize,
        t: usize,
        eq: bool,
        out: &mut CudaSlice<u8>,
    ) -> Result<()> {
        self.dpf_eval_view(keys, &xs.slice(..), xs_len, t, eq, out)
    }

    /// [`CudaBackend::dpf_eval_device`] with the points in a view (a sub-slice of a call's
    /// input buffer).
    pub(crate) fn dpf_eval_view(
        &self,
        keys: &DeviceDpfKeys,
        xs: &CudaView<'_, u64>,
        xs_len: usize,
        t: usize,
        eq: bool,
        out: &mut CudaSlice<u8>,
    ) -> Result<()> {
        self.own("DPF keys", keys.body.buffer())?;
        self.own("DPF points", xs)?;
        self.own("DPF output", out)?;
        let total = Self::check_points(keys.count, t, xs_len, "DPF points (count·t)")?;
        if total == 0 {
            return Ok(());
        }
        if xs.len() < total || out.len() < total {
            return Err(CudaError::BadKey(format!(
                "device buffers of {} points / {} outputs for {total} evaluations",
                xs.len(),
                out.len()
            )));
        }
        let (cfg, table) = self.fss_launch(total);
        let (count, n, party) = (keys.count as u64, keys.n, keys.party as u32);
        let (total64, per_key, eq32) = (total as u64, t as u64, eq as u32);
        // SAFETY: `dpf_eval_*(const uint4* body, u64 count, u32 n, u32 party, const u64* xs,
        // u64 total, u64 per_key, u32 eq, u8* out)`. The body holds exactly count keys of n
        // bits in the keyfmt layout (its size was checked against the closed form at upload),
        // xs and out hold at least total = count·per_key elements (checked above), and the
        // kernel reads key e / per_key < count for e < total only.
        unsafe {
            self.stream
                .launch_builder(&self.dev.k.dpf[table.idx()])
                .arg(&keys.body.view())
                .arg(&count)
                .arg(&n)
                .arg(&party)
                .arg(xs)
                .arg(&total64)
                .arg(&per_key)
                .arg(&eq32)
                .arg(out)
                .launch(cfg)
        }
        .during("launching dpf_eval")?;
        Ok(())
    }

    /// DPF evaluation of resident keys at host points, results to the host (synchronous).
    ///
    /// # Errors
    /// As [`CudaBackend::dpf_eval_device`].
    pub fn dpf_eval_resident(
        &self,
        keys: &DeviceDpfKeys,
        xs: &[u64],
        t: usize,
        eq: bool,
    ) -> Result<Vec<u8>> {
        let total = Self::check_points(keys.count, t, xs.len(), "DPF points (count·t)")?;
        // One copy up from pinned memory, one back (`crate::io`).
        let io = self.io_upload(&[xs])?;
        let mut dout = self.alloc_zeros::<u8>(total)?;
        self.dpf_eval_view(keys, &io.input(0), xs.len(), t, eq, &mut dout)?;
        io.download(&dout, total)
    }

    /// Whether the GPU DCF kernels cover payloads of p elements of m bits: p = 1 (any m), or
    /// p ≤ 16 with ⌈p·m/128⌉ ≤ 8 value blocks per level.
    pub fn dcf_supported(m: u32, p: usize) -> bool {
        p == 1 || (p <= DCF_VEC_MAX_P && (p * m as usize).div_ceil(128) <= DCF_VEC_MAX_B)
    }

    /// Launch the DCF kernel: key i at the `t` points `xs[i·t..(i+1)·t]`; `out[e·p + q]`
    /// receives element q of the additive share in Z_{2^m} (layout `[key][point][payload]`).
    /// Asynchronous, as [`CudaBackend::dpf_eval_device`].
    ///
    /// # Errors
    /// [`CudaError::Unsupported`] outside [`CudaBackend::dcf_supported`] (use the CPU
    /// backend); a length or driver error.
    pub fn dcf_eval_device(
        &self,
        keys: &DeviceDcfKeys,
        xs: &CudaSlice<u64>,
        xs_len: usize,
        t: usize,
        out: &mut CudaSlice<u64>,
    ) -> Result<()> {
        self.dcf_eval_view(keys, &xs.slice(..), xs_len, t, out)
    }

    /// [`CudaBackend::dcf_eval_device`] with the points in a view (a sub-slice of a call's
    /// input buffer).
    pub(crate) fn dcf_eval_view(
        &self,
        keys: &DeviceDcfKeys,
        xs: &CudaView<'_, u64>,
        xs_len: usize,
        t: usize,
        out: &mut CudaSlice<u64>,
    ) -> Result<()> {
        let l = keys.layout;
        if !Self::dcf_supported(l.m, l.p) {
            return Err(CudaError::Unsupported(format!(
                "DCF payload of {} × {} bits; the GPU kernels cover p = 1, or p <= {DCF_VEC_MAX_P} \
                 with at most {DCF_VEC_MAX_B} value blocks per level",
                l.p, l.m
            )));
        }
        self.own("DCF keys", keys.buffer())?;
        self.own("DCF points", xs)?;
        self.own("DCF output", out)?;
        let total = Self::check_points(l.count, t, xs_len, "DCF points (count·t)")?;
        if total == 0 {
            return Ok(());
        }
        let outs = total * l.p;
        if xs.len() < total || out.len() < outs {
            return Err(CudaError::BadKey(format!(
                "device buffers of {} points / {} outputs for {total} evaluations of {} elements",
                xs.len(),
                out.len(),
                l.p
            )));
        }
        let body = keys.view();
        let readable = keys::dcf_readable(l.total).unwrap_or(usize::MAX);
        if body.len() < readable {
            return Err(CudaError::BadKey(format!(
                "a DCF body of {} bytes with {} device bytes behind it",
                l.total,
                body.len()
            )));
        }
        let (cfg, table) = self.fss_launch(total);
        let (count, n, m, party) = (l.count as u64, l.n, l.m, keys.party as u32);
        let (total64, per_key, p32) = (total as u64, t as u64, l.p as u32);
        // The layout's offsets, as suf_fss::dcf::DcfLayout gives them (the kernels never
        // derive them).
        let [o_seed, o_scw, o_tcw_l, o_tcw_r, o_vcw, vcw_stride, o_fcw] = l.kernel_offsets();
        let f = if l.p == 1 {
            &self.dev.k.dcf_p1[table.idx()]
        } else {
            &self.dev.k.dcf_vec[table.idx()]
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(&body).arg(&count).arg(&n).arg(&m);
        if l.p != 1 {
            b.arg(&p32);
        }
        b.arg(&party)
            .arg(&o_seed)
            .arg(&o_scw)
            .arg(&o_tcw_l)
            .arg(&o_tcw_r)
            .arg(&o_vcw)
            .arg(&vcw_stride)
            .arg(&o_fcw)
            .arg(xs)
            .arg(&total64)
            .arg(&per_key)
            .arg(out);
        // SAFETY: `dcf_p1_*(const u8* body, u64 count, u32 n, u32 m, u32 party, u64 o_seed,
        // u64 o_scw, u64 o_tcw_l, u64 o_tcw_r, u64 o_vcw, u64 vcw_stride, u64 o_fcw, const
        // u64* xs, u64 total, u64 per_key, u64* out)`, and `dcf_vec_*` with `u32 p` after m:
        // the arguments above, in that order. The body is 16-aligned in device memory (a
        // buffer of its own, or a 16-aligned offset of a resident stream, checked in
        // `device_dcf`), its offsets come from the batch's DcfLayout (every region 16-aligned,
        // all inside `total`), and at least round_up_8(total) bytes are readable behind it
        // (checked above), which bounds every load the kernels make (keys < count, levels < n,
        // packed values of the count·p elements); xs holds at least total = count·per_key and
        // out at least total·p elements (checked above); p and the value blocks per level are
        // within the vector kernel's local arrays (dcf_supported).
        unsafe { b.launch(cfg) }.during("launching the DCF kernel")?;
        Ok(())
    }

    /// DCF evaluation of resident keys at host points, results (`count·t·p` words) to the
    /// host.
    ///
    /// # Errors
    /// As [`CudaBackend::dcf_eval_device`].
    pub fn dcf_eval_resident(
        &self,
        keys: &DeviceDcfKeys,
        xs: &[u64],
        t: usize,
    ) -> Result<Vec<u64>> {
        let total = Self::check_points(keys.count(), t, xs.len(), "DCF points (count·t)")?;
        let p = keys.p();
        if !Self::dcf_supported(keys.m(), p) {
            return Err(CudaError::Unsupported(format!(
                "DCF payload of {p} × {} bits",
                keys.m()
            )));
        }
        // One copy up from pinned memory, one back (`crate::io`).
        let io = self.io_upload(&[xs])?;
        let mut dout = self.alloc_zeros::<u64>(total * p)?;
        self.dcf_eval_view(keys, &io.input(0), xs.len(), t, &mut dout)?;
        io.download(&dout, total * p)
    }

    // ---- GEMM -------------------------------------------------------------------------------------

    /// Launch the GEMM on device buffers (asynchronous): `batch` products C_t = A_t·B_t mod 2^n,
    /// shapes as [`Backend::gemm_batch`]. Requires 1 ≤ m ≤ 65,535·64 and m, n, k < 2^32.
    ///
    /// # Errors
    /// [`CudaError::Unsupported`] outside those limits; a length or driver error.
    pub fn gemm_device(
        &self,
        w: BitWidth,
        a: &CudaSlice<u64>,
        b: &CudaSlice<u64>,
        c: &mut CudaSlice<u64>,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<()> {
        let shape = |x: usize, y: usize| {
            x.checked_mul(y).ok_or(CudaError::Backend(
                suf_backend::BackendError::ShapeOverflow { what: "gemm" },
            ))
        };
        self.own("GEMM A", a)?;
        self.own("GEMM B", b)?;
        self.own("GEMM C", c)?;
        let (mk, kn, mn) = (shape(m, k)?, shape(k, n)?, shape(m, n)?);
        let (la, lb, lc) = (shape(batch, mk)?, shape(batch, kn)?, shape(batch, mn)?);
        if a.len() < la || b.len() < lb || c.len() < lc {
            return Err(CudaError::Backend(
                suf_backend::BackendError::LengthMismatch {
                    what: "gemm device buffers",
                    expected: la.max(lb).max(lc),
                    got: a.len().min(b.len()).min(c.len()),
                },
            ));
        }
        if lc == 0 {
            return Ok(());
        }
        let lim = u32::MAX as usize;
        if m > MAX_GRID_YZ * 64 || n > lim || k > lim {
            return Err(CudaError::Unsupported(format!(
                "GEMM shape {m}×{k}×{n} beyond the kernel's grid limits"
            )));
        }
        let f = &self.dev.k.gemm[(w.bits() <= 32) as usize]
            [self.gemm_b2.load(Ordering::Relaxed) as usize];
        let (m32, n32, k32) = (m as u32, n as u32, k as u32);
        let bt = (layout == BLayout::Transposed) as u32;
        let mask = w.mask();
        // Split-K when the output tiles alone cannot fill the GPU (e.g. 512³: 64 tiles on 132
        // SMs): each of `ksplit` blocks per tile takes a k range of at least 128 (a multiple of
        // the 16-wide k step) and adds its partial product atomically.
        let tiles = n.div_ceil(64) * m.div_ceil(64) * batch;
        let want = 2 * self.dev.info.sm_count as usize;
        let ksplit = if tiles < want && k >= 256 {
            want.div_ceil(tiles).min(k / 128).clamp(1, 16)
        } else {
            1
        };
        let kchunk = k.div_ceil(ksplit).next_multiple_of(16).max(16);
        let ksplit = k.div_ceil(kchunk).max(1);
        if ksplit > 1 {
            self.stream
                .memset_zeros(&mut c.slice_mut(..lc))
                .during("zeroing the GEMM output")?;
        }
        let (ks32, kc32) = (ksplit as u32, kchunk as u32);
        let mut z0 = 0usize;
        while z0 < batch {
            let zc = (batch - z0).min(MAX_GRID_YZ / ksplit);
            let cfg = LaunchConfig {
                grid_dim: (
                    n.div_ceil(64) as u32,
                    m.div_ceil(64) as u32,
                    (zc * ksplit) as u32,
                ),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let z032 = z0 as u32;
            // SAFETY: `gemm_*(const u64* A, const u64* B, u64* C, u32 M, u32 N, u32 K, u32 bt,
            // u64 mask, u32 z0, u32 ksplit, u32 kchunk)`: A, B, C hold at least batch·m·k,
            // batch·k·n and batch·m·n elements (checked above); block (x, y, z) touches rows
            // < M, columns < N and k < K of product z0 + z / ksplit < batch only
            // (bounds-checked loads and stores); with ksplit > 1, C was zeroed above.
            unsafe {
                self.stream
                    .launch_builder(f)
                    .arg(a)
                    .arg(b)
                    .arg(&mut *c)
                    .arg(&m32)
                    .arg(&n32)
                    .arg(&k32)
                    .arg(&bt)
                    .arg(&mask)
                    .arg(&z032)
                    .arg(&ks32)
                    .arg(&kc32)
                    .launch(cfg)
            }
            .during("launching gemm")?;
            z0 += zc;
        }
        if ksplit > 1 && mask != u64::MAX {
            let cfg = LaunchConfig {
                grid_dim: (grid_for(lc, self.dev.info.sm_count * 16), 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            let lc64 = lc as u64;
            // SAFETY: `mask_u64(u64* c, u64 len, u64 mask)`: c holds at least lc elements.
            unsafe {
                self.stream
                    .launch_builder(&self.dev.k.mask)
                    .arg(&mut *c)
                    .arg(&lc64)
                    .arg(&mask)
                    .launch(cfg)
            }
            .during("launching mask_u64")?;
        }
        Ok(())
    }

    /// GEMM of host operands on the GPU, with device errors reported (the trait method
    /// [`Backend::gemm_batch`] answers those with the CPU instead).
    ///
    /// # Errors
    /// Length / shape errors as the CPU backend; [`CudaError::Unsupported`]; driver errors.
    pub fn try_gemm_batch(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Vec<u64>> {
        let overflow =
            || CudaError::Backend(suf_backend::BackendError::ShapeOverflow { what: "gemm" });
        let la = batch
            .checked_mul(m)
            .and_then(|x| x.checked_mul(k))
            .ok_or_else(overflow)?;
        let lb = batch
            .checked_mul(k)
            .and_then(|x| x.checked_mul(n))
            .ok_or_else(overflow)?;
        let lc = batch
            .checked_mul(m)
            .and_then(|x| x.checked_mul(n))
            .ok_or_else(overflow)?;
        for (what, want, got) in [
            ("gemm A (batch·m·k)", la, a.len()),
            ("gemm B (batch·k·n)", lb, b.len()),
        ] {
            if want != got {
                return Err(CudaError::Backend(
                    suf_backend::BackendError::LengthMismatch {
                        what,
                        expected: want,
                        got,
                    },
                ));
            }
        }
        let da = self.htod(a)?;
        let db = self.htod(b)?;
        let mut dc = self.alloc_zeros::<u64>(lc)?;
        self.gemm_device(w, &da, &db, &mut dc, batch, m, k, n, layout)?;
        self.dtoh(&dc, lc)
    }

    /// GEMM with a resident B (see [`Backend::gemm_resident`]), device errors as
    /// [`CudaError`]. A resident held on the host runs as [`CudaBackend::try_gemm_batch`].
    ///
    /// # Errors
    /// Length / shape errors as the CPU backend; [`CudaError::ForeignBuffer`] for a matrix of
    /// another instance; driver errors.
    pub fn try_gemm_resident(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &Resident<'_>,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Vec<u64>> {
        if let Some(h) = b.as_host() {
            return self.try_gemm_batch(w, a, h, 1, m, k, n, layout);
        }
        let db = b
            .as_device::<DeviceMatrix>()
            .ok_or(CudaError::ForeignBuffer {
                what: "resident matrix (held by another kind of backend)",
            })?;
        self.own("resident matrix", &db.0)?;
        let shape = |x: usize, y: usize, what: &'static str| {
            x.checked_mul(y).ok_or(CudaError::Backend(
                suf_backend::BackendError::ShapeOverflow { what },
            ))
        };
        let (la, lb, lc) = (
            shape(m, k, "gemm A")?,
            shape(k, n, "gemm B")?,
            shape(m, n, "gemm C")?,
        );
        for (what, want, got) in [
            ("gemm A (batch·m·k)", la, a.len()),
            ("gemm B (batch·k·n)", lb, b.len()),
        ] {
            if want != got {
                return Err(CudaError::Backend(
                    suf_backend::BackendError::LengthMismatch {
                        what,
                        expected: want,
                        got,
                    },
                ));
            }
        }
        if lc == 0 || k == 0 {
            // An empty product, or an empty inner dimension: the zero matrix.
            return Ok(vec![0; lc]);
        }
        if m > MAX_GRID_YZ * 64 || n > u32::MAX as usize || k > u32::MAX as usize {
            // Beyond the kernel's grid: the CPU reference on B's data (by design, as the
            // trait's gemm_batch does for these shapes).
            let host = self.dtoh(&db.0, lb)?;
            return Ok(self.cpu.gemm_batch(w, a, &host, 1, m, k, n, layout)?);
        }
        let da = self.htod(a)?;
        let mut dc = self.alloc_zeros::<u64>(lc)?;
        self.gemm_device(w, &da, &db.0, &mut dc, 1, m, k, n, layout)?;
        self.dtoh(&dc, lc)
    }

    // ---- elementwise ------------------------------------------------------------------------------

    fn ew_launch(
        &self,
        op: u32,
        a: &CudaSlice<u64>,
        b: &CudaSlice<u64>,
        out: &mut CudaSlice<u64>,
        len: usize,
        blen: usize,
        c: u64,
        mask: u64,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid_for(len, self.dev.info.sm_count * 16), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (len64, blen64) = (len as u64, blen.max(1) as u64);
        // SAFETY: `ew_u64(u32 op, const u64* a, const u64* b, u64* out, u64 len, u64 blen,
        // u64 c, u64 mask)`: a and out hold len elements; b holds len elements for the zip
        // ops, blen elements for the broadcast ops (index i % blen) and len / blen elements
        // for MUL_ROWS (index i / blen), as each caller guarantees; ops without b never read
        // it.
        unsafe {
            self.stream
                .launch_builder(&self.dev.k.ew)
                .arg(&op)
                .arg(a)
                .arg(b)
                .arg(out)
                .arg(&len64)
                .arg(&blen64)
                .arg(&c)
                .arg(&mask)
                .launch(cfg)
        }
        .during("launching ew_u64")?;
        Ok(())
    }

    /// One elementwise op on host data; lengths are the caller's to check.
    fn try_ew(
        &self,
        op: u32,
        a: &[u64],
        b: &[u64],
        blen: usize,
        c: u64,
        mask: u64,
    ) -> Result<Vec<u64>> {
        let da = self.htod(a)?;
        let db = if b.is_empty() {
            self.htod::<u64>(&[])?
        } else {
            self.htod(b)?
        };
        let mut dout = self.alloc_zeros::<u64>(a.len())?;
        self.ew_launch(op, &da, &db, &mut dout, a.len(), blen, c, mask)?;
        self.dtoh(&dout, a.len())
    }

    /// Row sums on the GPU: `a` is `[rows, cols]`.
    fn try_row_sum(&self, a: &[u64], cols: usize, mask: u64) -> Result<Vec<u64>> {
        let rows = a.len() / cols;
        let da = self.htod(a)?;
        let mut dout = self.alloc_zeros::<u64>(rows)?;
        let warps_per_block = (BLOCK / 32) as usize;
        let cfg = LaunchConfig {
            grid_dim: (
                rows.div_ceil(warps_per_block)
                    .clamp(1, self.dev.info.sm_count as usize * 16) as u32,
                1,
                1,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows64, cols64) = (rows as u64, cols as u64);
        // SAFETY: `row_sum_u64(const u64* a, u64* out, u64 rows, u64 cols, u64 mask)`: a holds
        // rows·cols elements, out holds rows elements.
        unsafe {
            self.stream
                .launch_builder(&self.dev.k.row_sum)
                .arg(&da)
                .arg(&mut dout)
                .arg(&rows64)
                .arg(&cols64)
                .arg(&mask)
                .launch(cfg)
        }
        .during("launching row_sum")?;
        self.dtoh(&dout, rows)
    }

    /// The compiled-gate kernels.
    pub(crate) fn gate_kernels(&self) -> &crate::gates::GateKernels {
        &self.dev.k.gates
    }

    /// GEMMs below [`CudaOptions::cpu_below`] output elements (and empty ones) run on the host.
    fn small(&self, len: usize) -> bool {
        len == 0 || len < self.cpu_below
    }

    /// Elementwise calls below [`CudaOptions::elementwise_device_min`] elements (and empty
    /// ones) run on the host.
    fn ew_host(&self, len: usize) -> bool {
        len == 0 || len < self.ew_min.load(Ordering::Relaxed)
    }

    /// Run `f` on the host and count it under `op`.
    pub(crate) fn on_host<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        lock(&self.stats).host_call(op, t.elapsed().as_secs_f64() * 1e3);
        r
    }

    /// Run the device work `f` (synchronous: it ends with its results on the host) and count
    /// it under `op` with the bytes it moves each way.
    pub(crate) fn on_device<T>(
        &self,
        op: &'static str,
        h2d: usize,
        d2h: usize,
        f: impl FnOnce() -> Result<T>,
    ) -> suf_backend::Result<T> {
        let t = Instant::now();
        let r = f().map_err(|e| e.into_backend(op));
        lock(&self.stats).device_call(op, t.elapsed().as_secs_f64() * 1e3, h2d as u64, d2h as u64);
        r
    }
}

// Elementwise op codes (kernels/ring.cu).
const EW_ADD: u32 = 0;
const EW_SUB: u32 = 1;
const EW_MUL: u32 = 2;
const EW_NEG: u32 = 3;
const EW_SCALE: u32 = 4;
const EW_ADD_CONST: u32 = 5;
const EW_REDUCE: u32 = 6;
const EW_ADD_BCAST: u32 = 7;
const EW_MUL_BCAST: u32 = 8;
const EW_MUL_ROWS: u32 = 9;

impl CudaBackend {
    fn zip(
        &self,
        what: &'static str,
        op: u32,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        cpu: impl FnOnce() -> suf_backend::Result<Vec<u64>>,
    ) -> suf_backend::Result<Vec<u64>> {
        if a.len() != b.len() || self.ew_host(a.len()) {
            return self.on_host(what, cpu);
        }
        self.on_device(what, 16 * a.len(), 8 * a.len(), || {
            self.try_ew(op, a, b, 0, 0, w.mask())
        })
    }

    fn unary(
        &self,
        what: &'static str,
        op: u32,
        w: BitWidth,
        a: &[u64],
        c: u64,
        cpu: impl FnOnce() -> suf_backend::Result<Vec<u64>>,
    ) -> suf_backend::Result<Vec<u64>> {
        if self.ew_host(a.len()) {
            return self.on_host(what, cpu);
        }
        self.on_device(what, 8 * a.len(), 8 * a.len(), || {
            self.try_ew(op, a, &[], 0, c, w.mask())
        })
    }

    fn assign(
        &self,
        what: &'static str,
        op: u32,
        w: BitWidth,
        a: &mut [u64],
        b: &[u64],
        cpu: impl FnOnce(&mut [u64]) -> suf_backend::Result<()>,
    ) -> suf_backend::Result<()> {
        if a.len() != b.len() || self.ew_host(a.len()) {
            return self.on_host(what, || cpu(a));
        }
        let v = self.on_device(what, 16 * a.len(), 8 * a.len(), || {
            self.try_ew(op, a, b, 0, 0, w.mask())
        })?;
        a.copy_from_slice(&v);
        Ok(())
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn gemm_batch(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.gemm_batch(w, a, b, batch, m, k, n, layout);
        // Shape and length errors, degenerate and oversized shapes: the CPU backend answers
        // (with exactly its own errors).
        let ok = (|| {
            let mk = m.checked_mul(k)?;
            let kn = k.checked_mul(n)?;
            let mn = m.checked_mul(n)?;
            let lc = batch.checked_mul(mn)?;
            (a.len() == batch.checked_mul(mk)? && b.len() == batch.checked_mul(kn)?).then_some(lc)
        })();
        let Some(lc) = ok else { return cpu() };
        if lc == 0
            || k == 0
            || self.small(lc)
            || m > MAX_GRID_YZ * 64
            || n > u32::MAX as usize
            || k > u32::MAX as usize
        {
            return self.on_host("gemm", cpu);
        }
        self.on_device("gemm", 8 * (a.len() + b.len()), 8 * lc, || {
            self.try_gemm_batch(w, a, b, batch, m, k, n, layout)
        })
    }

    fn resident<'a>(&self, name: &str, data: Cow<'a, [u64]>) -> suf_backend::Result<Resident<'a>> {
        let buf = self.on_device("resident", 8 * data.len(), 0, || self.htod(&data))?;
        // The upload is complete before the host data may go (htod copies from pageable
        // memory synchronously); `data` is dropped here.
        Ok(Resident::device(
            name,
            data.len(),
            Box::new(DeviceMatrix(buf)),
        ))
    }

    fn gemm_resident(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &Resident<'_>,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> suf_backend::Result<Vec<u64>> {
        self.on_device(
            "gemm_resident",
            8 * a.len(),
            8 * m.saturating_mul(n),
            || self.try_gemm_resident(w, a, b, m, k, n, layout),
        )
    }

    fn add(&self, w: BitWidth, a: &[u64], b: &[u64]) -> suf_backend::Result<Vec<u64>> {
        self.zip("add", EW_ADD, w, a, b, || self.cpu.add(w, a, b))
    }

    fn sub(&self, w: BitWidth, a: &[u64], b: &[u64]) -> suf_backend::Result<Vec<u64>> {
        self.zip("sub", EW_SUB, w, a, b, || self.cpu.sub(w, a, b))
    }

    fn mul(&self, w: BitWidth, a: &[u64], b: &[u64]) -> suf_backend::Result<Vec<u64>> {
        self.zip("mul", EW_MUL, w, a, b, || self.cpu.mul(w, a, b))
    }

    fn neg(&self, w: BitWidth, a: &[u64]) -> suf_backend::Result<Vec<u64>> {
        self.unary("neg", EW_NEG, w, a, 0, || self.cpu.neg(w, a))
    }

    fn scale(&self, w: BitWidth, a: &[u64], c: u64) -> suf_backend::Result<Vec<u64>> {
        self.unary("scale", EW_SCALE, w, a, c, || self.cpu.scale(w, a, c))
    }

    fn add_const(&self, w: BitWidth, a: &[u64], c: u64) -> suf_backend::Result<Vec<u64>> {
        self.unary("add_const", EW_ADD_CONST, w, a, c, || {
            self.cpu.add_const(w, a, c)
        })
    }

    fn reduce(&self, w: BitWidth, a: &[u64]) -> suf_backend::Result<Vec<u64>> {
        self.unary("reduce", EW_REDUCE, w, a, 0, || self.cpu.reduce(w, a))
    }

    fn add_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> suf_backend::Result<()> {
        self.assign("add_assign", EW_ADD, w, a, b, |a| {
            self.cpu.add_assign(w, a, b)
        })
    }

    fn sub_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> suf_backend::Result<()> {
        self.assign("sub_assign", EW_SUB, w, a, b, |a| {
            self.cpu.sub_assign(w, a, b)
        })
    }

    fn mul_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> suf_backend::Result<()> {
        self.assign("mul_assign", EW_MUL, w, a, b, |a| {
            self.cpu.mul_assign(w, a, b)
        })
    }

    fn add_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.add_bcast(w, a, b);
        if b.is_empty() || !a.len().is_multiple_of(b.len()) || self.ew_host(a.len()) {
            return self.on_host("add_bcast", cpu);
        }
        self.on_device("add_bcast", 8 * (a.len() + b.len()), 8 * a.len(), || {
            self.try_ew(EW_ADD_BCAST, a, b, b.len(), 0, w.mask())
        })
    }

    fn mul_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.mul_bcast(w, a, b);
        if b.is_empty() || !a.len().is_multiple_of(b.len()) || self.ew_host(a.len()) {
            return self.on_host("mul_bcast", cpu);
        }
        self.on_device("mul_bcast", 8 * (a.len() + b.len()), 8 * a.len(), || {
            self.try_ew(EW_MUL_BCAST, a, b, b.len(), 0, w.mask())
        })
    }

    fn mul_rows(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        cols: usize,
    ) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.mul_rows(w, a, b, cols);
        if cols == 0 || b.len().checked_mul(cols) != Some(a.len()) || self.ew_host(a.len()) {
            return self.on_host("mul_rows", cpu);
        }
        self.on_device("mul_rows", 8 * (a.len() + b.len()), 8 * a.len(), || {
            self.try_ew(EW_MUL_ROWS, a, b, cols, 0, w.mask())
        })
    }

    fn row_sum(&self, w: BitWidth, a: &[u64], cols: usize) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.row_sum(w, a, cols);
        if cols == 0 || !a.len().is_multiple_of(cols) || self.ew_host(a.len()) {
            return self.on_host("row_sum", cpu);
        }
        self.on_device("row_sum", 8 * a.len(), 8 * (a.len() / cols), || {
            self.try_row_sum(a, cols, w.mask())
        })
    }

    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> suf_backend::Result<Vec<u64>> {
        let cpu = || self.cpu.dcf_eval(keys, xs, t);
        if !Self::dcf_supported(keys.m(), keys.p())
            || keys.count().checked_mul(t) != Some(xs.len())
            || xs.is_empty()
        {
            return self.on_host("dcf_eval", cpu);
        }
        let t0 = Instant::now();
        let mut up = 0usize;
        let r = (|| -> Result<_> {
            // In place from the attached key stream when the view's origin names one; else
            // the body (version-2 bytes as they are) is uploaded for this call.
            let (dk, bytes) = self.device_dcf(keys)?;
            up = bytes;
            self.dcf_eval_resident(&dk, xs, t)
        })()
        .map_err(|e| e.into_backend("dcf_eval"));
        lock(&self.stats).device_call(
            "dcf_eval",
            t0.elapsed().as_secs_f64() * 1e3,
            (8 * xs.len() + up) as u64,
            (8 * xs.len() * keys.p()) as u64,
        );
        r
    }

    fn dpf_lt_eval(&self, keys: &DpfKeys, xs: &[u64], t: usize) -> suf_backend::Result<Vec<u8>> {
        let cpu = || self.cpu.dpf_lt_eval(keys, xs, t);
        if keys.count().checked_mul(t) != Some(xs.len()) || xs.is_empty() {
            return self.on_host("dpf_lt_eval", cpu);
        }
        self.on_device("dpf_lt_eval", 8 * xs.len(), xs.len(), || {
            let dk = self.upload_dpf(keys)?;
            self.dpf_eval_resident(&dk, xs, t, false)
        })
    }

    fn dpf_eq_eval(&self, keys: &DpfKeys, xs: &[u64]) -> suf_backend::Result<Vec<u8>> {
        let cpu = || self.cpu.dpf_eq_eval(keys, xs);
        if keys.count() != xs.len() || xs.is_empty() {
            return self.on_host("dpf_eq_eval", cpu);
        }
        self.on_device("dpf_eq_eval", 8 * xs.len(), xs.len(), || {
            let dk = self.upload_dpf(keys)?;
            self.dpf_eval_resident(&dk, xs, 1, true)
        })
    }

    fn techc_eval(
        &self,
        d: &suf_backend::TechC<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        rpow: suf_backend::Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        self.gate_techc(d, party, keys, rpow, xhat)
    }

    fn floor_eval(
        &self,
        d: &suf_backend::FloorDesc<'_>,
        party: u8,
        ckeys: &DcfKeys<'_>,
        wrap: suf_backend::FloorWrap<'_, '_>,
        sh: suf_backend::Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        self.gate_floor(d, party, ckeys, wrap, sh, xhat)
    }

    fn sign_eval(
        &self,
        d: &suf_backend::SignDesc<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        sh: suf_backend::Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        self.gate_sign(d, party, keys, sh, xhat)
    }

    fn bit_eval(
        &self,
        d: &suf_backend::BitDesc<'_>,
        party: u8,
        keys: &suf_backend::DpfView<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        self.gate_bit(d, party, keys, xhat)
    }

    fn pack(&self, vals: &[u64], bits: u32) -> suf_backend::Result<Vec<u8>> {
        self.on_host("pack", || self.cpu.pack(vals, bits))
    }

    fn unpack(&self, bytes: &[u8], bits: u32, count: usize) -> suf_backend::Result<Vec<u64>> {
        self.on_host("unpack", || self.cpu.unpack(bytes, bits, count))
    }

    fn attach_keys(&self, stream: u64, bytes: &[u8]) -> suf_backend::Result<()> {
        self.try_attach_keys(stream, bytes)
            .map(|_| ())
            .map_err(|e| e.into_backend("attach_keys"))
    }

    fn detach_keys(&self, stream: u64) {
        self.detach(stream);
    }

    fn receive_keys_begin(&self, len: usize) -> suf_backend::Result<Option<usize>> {
        self.try_receive_begin(len)
            .map(Some)
            .map_err(|e| e.into_backend("receive_keys_begin"))
    }

    fn receive_keys_chunk(&self, index: usize, bytes: &[u8]) -> suf_backend::Result<()> {
        self.try_receive_chunk(index, bytes)
            .map_err(|e| e.into_backend("receive_keys_chunk"))
    }

    fn receive_keys_finish(&self, stream: u64) -> suf_backend::Result<f64> {
        self.try_receive_finish(stream)
            .map_err(|e| e.into_backend("receive_keys_finish"))
    }

    fn receive_keys_abort(&self) {
        *lock(&self.receiving) = None;
    }

    fn stats(&self) -> BackendStats {
        lock(&self.stats).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::fss_block;

    /// Small batches spread over every multiprocessor (one warp each at the smallest), large
    /// ones in blocks of 256.
    #[test]
    fn fss_block_by_batch() {
        for (total, want) in [
            (0usize, 32u32),
            (1, 32),
            (1024, 32),
            (132 * 32, 32),
            (132 * 32 + 1, 64),
            (16_384, 128),
            (132 * 128, 128),
            (132 * 256, 256),
            (1 << 20, 256),
            (usize::MAX, 256),
        ] {
            assert_eq!(fss_block(total, 132), want, "{total} points");
        }
        assert_eq!(
            fss_block(1 << 20, 0),
            256,
            "no multiprocessor count: treated as one"
        );
    }
}
