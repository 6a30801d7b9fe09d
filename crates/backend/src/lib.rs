//! # suf-backend
//!
//! Where SUF's bulk computation happens. This crate owns:
//!
//! * [`Backend`], the one interface through which all FSS evaluation, ring GEMM mod 2^n,
//!   elementwise ring work and bit packing goes. Every method takes a whole batch
//!   (structure-of-arrays buffers: one flat slice per operand), never one element, so that a
//!   GPU implementation can launch one kernel per call.
//! * [`CpuBackend`], the CPU implementation (rayon, the cache-blocked ring GEMM of [`gemm`],
//!   the CPU evaluators of `suf-fss`). It is the **reference**: every other backend must
//!   match it bit for bit.
//! * [`bench_gemm`], the GEMM timing behind `suf bench runtime` and `examples/gemm_bench.rs`.
//!
//! The CUDA backend (crate `suf-cuda`, next) implements the same trait; only that crate
//! names `cudarc`. This crate depends on `suf-core` and `suf-fss` only (plus rayon and
//! thiserror): no I/O, no network, no GPU.
//!
//! Conventions: ring elements are `u64`; results are reduced mod 2^n; inputs need not be
//! (everything is computed mod 2^64 and masked, which is exact). Buffers whose lengths
//! disagree with the shape are reported as [`BackendError::LengthMismatch`], never a panic.
#![forbid(unsafe_code)]

use std::borrow::Cow;

pub mod bench;
pub mod cpu;
pub mod error;
pub mod fused;
pub mod gate;
pub mod gemm;
pub mod resident;
pub mod stats;

pub use bench::bench_gemm;
pub use cpu::CpuBackend;
pub use error::{BackendError, Result};
pub use gate::{BitDesc, FloorDesc, FloorWrap, Shares, SignDesc, TechC, TechVar};
pub use gemm::BLayout;
pub use resident::Resident;
pub use stats::{BackendStats, OpStats};
pub use suf_core::BitWidth;
pub use suf_fss::dcf::DcfKeys;
pub use suf_fss::dpf::{DpfKeys, DpfView};

/// Implements the elementwise ring methods of [`Backend`] (`add` … `row_sum`: the ring
/// arithmetic, broadcasts and row sums) by forwarding each to the backend in field `$inner`,
/// for wrappers that observe or redirect the other methods (the planner's counting backend,
/// test backends).
#[macro_export]
macro_rules! forward_ring_ops {
    ($inner:ident) => {
        fn add(&self, w: $crate::BitWidth, a: &[u64], b: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.add(w, a, b)
        }
        fn sub(&self, w: $crate::BitWidth, a: &[u64], b: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.sub(w, a, b)
        }
        fn mul(&self, w: $crate::BitWidth, a: &[u64], b: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.mul(w, a, b)
        }
        fn neg(&self, w: $crate::BitWidth, a: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.neg(w, a)
        }
        fn scale(&self, w: $crate::BitWidth, a: &[u64], c: u64) -> $crate::Result<Vec<u64>> {
            self.$inner.scale(w, a, c)
        }
        fn add_const(&self, w: $crate::BitWidth, a: &[u64], c: u64) -> $crate::Result<Vec<u64>> {
            self.$inner.add_const(w, a, c)
        }
        fn reduce(&self, w: $crate::BitWidth, a: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.reduce(w, a)
        }
        fn add_assign(&self, w: $crate::BitWidth, a: &mut [u64], b: &[u64]) -> $crate::Result<()> {
            self.$inner.add_assign(w, a, b)
        }
        fn sub_assign(&self, w: $crate::BitWidth, a: &mut [u64], b: &[u64]) -> $crate::Result<()> {
            self.$inner.sub_assign(w, a, b)
        }
        fn mul_assign(&self, w: $crate::BitWidth, a: &mut [u64], b: &[u64]) -> $crate::Result<()> {
            self.$inner.mul_assign(w, a, b)
        }
        fn add_bcast(&self, w: $crate::BitWidth, a: &[u64], b: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.add_bcast(w, a, b)
        }
        fn mul_bcast(&self, w: $crate::BitWidth, a: &[u64], b: &[u64]) -> $crate::Result<Vec<u64>> {
            self.$inner.mul_bcast(w, a, b)
        }
        fn mul_rows(
            &self,
            w: $crate::BitWidth,
            a: &[u64],
            b: &[u64],
            cols: usize,
        ) -> $crate::Result<Vec<u64>> {
            self.$inner.mul_rows(w, a, b, cols)
        }
        fn row_sum(&self, w: $crate::BitWidth, a: &[u64], cols: usize) -> $crate::Result<Vec<u64>> {
            self.$inner.row_sum(w, a, cols)
        }
    };
}

/// A compute backend. All methods take whole batches; lengths are checked and mismatches
/// are errors. Results are always reduced mod 2^n (for the ring width `w` given).
///
/// Every method that can touch a device returns a `Result`: a device failure is
/// [`BackendError::Device`], never a silent fallback to another backend.
///
/// Object safe: hold it as `Arc<dyn Backend>`.
pub trait Backend: Send + Sync {
    /// Short name for logs and reports (`"cpu"`, `"cuda"`).
    fn name(&self) -> &'static str;

    // ---- ring GEMM ------------------------------------------------------------------------

    /// `batch` independent products C_t = A_t·B_t mod 2^n. `a` holds `batch` row-major m×k
    /// matrices back to back; `b` holds `batch` k×n row-major matrices
    /// ([`BLayout::RowMajor`]) or `batch` n×k row-major matrices Bᵀ
    /// ([`BLayout::Transposed`]); the result holds `batch` row-major m×n matrices.
    ///
    /// # Errors
    /// `LengthMismatch` if `a` or `b` has the wrong length; `ShapeOverflow` if a shape's
    /// element count overflows `usize`.
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
    ) -> Result<Vec<u64>>;

    /// C = A·B mod 2^n, A m×k row-major, B k×n row-major; C m×n row-major.
    ///
    /// # Errors
    /// As [`Backend::gemm_batch`].
    fn gemm(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<u64>> {
        self.gemm_batch(w, a, b, 1, m, k, n, BLayout::RowMajor)
    }

    /// C = A·B mod 2^n where B is given transposed (`bt` is n×k row-major): the layout of
    /// `X·Wᵀ` with W stored one output row per line.
    ///
    /// # Errors
    /// As [`Backend::gemm_batch`].
    fn gemm_bt(
        &self,
        w: BitWidth,
        a: &[u64],
        bt: &[u64],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<u64>> {
        self.gemm_batch(w, a, bt, 1, m, k, n, BLayout::Transposed)
    }

    /// Make a public matrix resident for repeated GEMMs ([`Backend::gemm_resident`]): a
    /// device backend uploads it once; the default (the CPU backend) keeps the host data as
    /// given, borrowed or owned, without copying. `name` is for errors and logs.
    ///
    /// # Errors
    /// `Device` if the device cannot hold it.
    fn resident<'a>(&self, name: &str, data: Cow<'a, [u64]>) -> Result<Resident<'a>> {
        Ok(Resident::host(name, data))
    }

    /// C = A·B mod 2^n with B a resident matrix (k×n row-major for [`BLayout::RowMajor`],
    /// n×k for [`BLayout::Transposed`]); A is m×k row-major; C is m×n. Equal bit for bit to
    /// [`Backend::gemm_batch`] with `batch = 1` on B's data.
    ///
    /// # Errors
    /// As [`Backend::gemm_batch`]; `Foreign` if `b` is held in another backend's storage.
    fn gemm_resident(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &Resident<'_>,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Vec<u64>> {
        let host = b.as_host().ok_or(BackendError::Foreign {
            what: "resident matrix (held by a device backend)",
        })?;
        self.gemm_batch(w, a, host, 1, m, k, n, layout)
    }

    // ---- elementwise ring work ------------------------------------------------------------

    /// `a + b` mod 2^n, elementwise.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ.
    fn add(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>>;
    /// `a − b` mod 2^n, elementwise.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ.
    fn sub(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>>;
    /// `a · b` mod 2^n, elementwise.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ.
    fn mul(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>>;
    /// `−a` mod 2^n, elementwise.
    ///
    /// # Errors
    /// `Device` if the device fails (the CPU backend never fails).
    fn neg(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>>;
    /// `c · a` mod 2^n for a public constant `c`.
    ///
    /// # Errors
    /// `Device` if the device fails.
    fn scale(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>>;
    /// `a + c` mod 2^n for a public constant `c`.
    ///
    /// # Errors
    /// `Device` if the device fails.
    fn add_const(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>>;
    /// `a` mod 2^n.
    ///
    /// # Errors
    /// `Device` if the device fails.
    fn reduce(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>>;
    /// `a ← a + b` mod 2^n.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ (then `a` is unchanged).
    fn add_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()>;
    /// `a ← a − b` mod 2^n.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ (then `a` is unchanged).
    fn sub_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()>;
    /// `a ← a · b` mod 2^n.
    ///
    /// # Errors
    /// `LengthMismatch` if the lengths differ (then `a` is unchanged).
    fn mul_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()>;

    /// `a + b` mod 2^n where `b` is one row broadcast over the rows of `a`: `a` is
    /// `[rows, b.len()]` (so `b.len() == a.len()` is the plain elementwise sum).
    ///
    /// # Errors
    /// `LengthMismatch` unless `b.len()` divides `a.len()` (an empty `b` only with an empty
    /// `a`).
    fn add_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>>;
    /// `a ⊙ b` mod 2^n with `b` one row broadcast over the rows of `a`, as
    /// [`Backend::add_bcast`].
    ///
    /// # Errors
    /// As [`Backend::add_bcast`].
    fn mul_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>>;
    /// Row scaling: `a` is `[rows, cols]`, `b` holds one value per row, and
    /// `out[i·cols + j] = a[i·cols + j] · b[i]` mod 2^n.
    ///
    /// # Errors
    /// `LengthMismatch` if `a.len() != b.len() · cols`.
    fn mul_rows(&self, w: BitWidth, a: &[u64], b: &[u64], cols: usize) -> Result<Vec<u64>>;
    /// Sum over the last axis: `a` is `[rows, cols]`; `out[i] = Σ_j a[i·cols + j]` mod 2^n.
    ///
    /// # Errors
    /// `LengthMismatch` if `cols` does not divide `a.len()` (`cols = 0` only with an empty
    /// `a`, which gives an empty result).
    fn row_sum(&self, w: BitWidth, a: &[u64], cols: usize) -> Result<Vec<u64>>;

    /// Transpose of a row-major `rows × cols` matrix (layout only; no arithmetic). The
    /// default runs on the host; device backends may override it.
    ///
    /// # Errors
    /// `LengthMismatch` if `a.len() != rows·cols`.
    fn transpose(&self, a: &[u64], rows: usize, cols: usize) -> Result<Vec<u64>> {
        if Some(a.len()) != rows.checked_mul(cols) {
            return Err(BackendError::LengthMismatch {
                what: "transpose input",
                expected: rows.saturating_mul(cols),
                got: a.len(),
            });
        }
        let mut out = vec![0u64; a.len()];
        for i in 0..rows {
            for j in 0..cols {
                out[j * rows + i] = a[i * cols + j];
            }
        }
        Ok(out)
    }

    // ---- FSS evaluation -------------------------------------------------------------------

    /// Make a party's whole loaded key stream available to the backend, once per run, before
    /// the first round: `stream` is the stream's token (`PartyStream::token`), `bytes` the
    /// whole stream buffer. Key batches whose [`DcfKeys::origin`] names this stream sit at
    /// `origin.offset` in `bytes`, so a device backend can upload the buffer once and evaluate
    /// from offsets into its copy. The default does nothing (the CPU evaluates from the host
    /// bytes the keys borrow).
    ///
    /// # Errors
    /// A device backend's upload failure; [`BackendError::KeysTooLarge`] when the stream does
    /// not fit in device memory (keys are not streamed through the device yet).
    fn attach_keys(&self, stream: u64, bytes: &[u8]) -> Result<()> {
        let _ = (stream, bytes);
        Ok(())
    }

    /// Release what [`Backend::attach_keys`] holds for `stream` (the run is over; the keys
    /// are one-time). Unknown tokens are ignored; the default does nothing.
    fn detach_keys(&self, stream: u64) {
        let _ = stream;
    }

    /// Begin receiving a key stream of `len` bytes straight into the backend's memory while
    /// it arrives (`PartyStream::receive` in `suf-runtime`): the stream's bytes are handed
    /// over in order, in chunks of the size returned here ([`Backend::receive_keys_chunk`]),
    /// and the host keeps only what it reads itself (headers, dealer shares), not the key
    /// bodies — so a stream larger than the host's memory for two parties (bert-large: 60 GB
    /// per party) can still be resident on the device. Returns `None` when the backend
    /// evaluates from host bytes (the default, the CPU backend): then the caller keeps every
    /// byte on the host. One stream at a time per instance; a new begin drops an unfinished
    /// one.
    ///
    /// # Errors
    /// [`BackendError::KeysTooLarge`] when the stream does not fit in device memory; a
    /// device error.
    fn receive_keys_begin(&self, len: usize) -> Result<Option<usize>> {
        let _ = len;
        Ok(None)
    }

    /// Chunk `index` of the stream begun by [`Backend::receive_keys_begin`]: its bytes
    /// `index·chunk ..`, exactly `chunk` of them except for the last chunk. Chunks come in
    /// order.
    ///
    /// # Errors
    /// `Unsupported` on a backend that returned `None` from the begin; `LengthMismatch` for
    /// a chunk out of order, too long or past the stream's length; a device error.
    fn receive_keys_chunk(&self, index: usize, bytes: &[u8]) -> Result<()> {
        let _ = (index, bytes);
        Err(BackendError::Unsupported {
            backend: self.name(),
            what: "receive key streams into device memory",
        })
    }

    /// Finish the stream being received (every byte was handed over): it becomes the
    /// attached stream `stream` (as [`Backend::attach_keys`] would make it, which is then a
    /// no-op for this token). Returns the milliseconds the device spent on the copies that
    /// were still running when the last chunk came in.
    ///
    /// # Errors
    /// `Unsupported` without a stream being received; `LengthMismatch` if fewer bytes came
    /// than were announced; a device error.
    fn receive_keys_finish(&self, stream: u64) -> Result<f64> {
        let _ = stream;
        Err(BackendError::Unsupported {
            backend: self.name(),
            what: "receive key streams into device memory",
        })
    }

    /// Drop a stream being received (the receive failed); nothing when none is.
    fn receive_keys_abort(&self) {}

    /// Cumulative counters of this instance (device calls and time per operation, bytes
    /// moved, DCF batches read in place or uploaded, key streams attached); see
    /// [`BackendStats`]. The default (the CPU backend) reports zeros: all of its work is
    /// host work.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }

    /// DCF evaluation: key i at the `t` points `xs[i·t .. (i+1)·t]` (taken mod 2^n).
    /// Returns `count·t·p` additive shares in Z_{2^m}, laid out `[key][point][payload]`
    /// (`suf_fss::dcf::DcfKeys::eval_multi`; t = 1 is one point per key). `keys` may be a
    /// zero-copy view into a loaded key stream (see [`Backend::attach_keys`]).
    ///
    /// # Errors
    /// `Fss(LengthMismatch)` if `xs.len() != count·t`.
    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> Result<Vec<u64>>;

    /// DPF comparison: XOR shares (0/1 bytes) of `1[x < α_i]` for key i at the `t` points
    /// `xs[i·t .. (i+1)·t]` (taken mod 2^n); output `count·t` bytes in the same order
    /// (`suf_fss::dpf::DpfKeys::eval_lt_multi`).
    ///
    /// # Errors
    /// `Fss(LengthMismatch)` if `xs.len() != count·t`.
    fn dpf_lt_eval(&self, keys: &DpfKeys, xs: &[u64], t: usize) -> Result<Vec<u8>>;

    /// DPF point function: XOR shares (0/1 bytes) of `1[xs[i] = α_i]`, one point per key
    /// (`suf_fss::dpf::DpfKeys::eval_eq_batch`).
    ///
    /// # Errors
    /// `Fss(LengthMismatch)` if `xs.len() != count`.
    fn dpf_eq_eval(&self, keys: &DpfKeys, xs: &[u64]) -> Result<Vec<u8>>;

    // ---- compiled-gate components (FSS evaluation + recombination; `gate`) -------------------

    /// A technique-(c) component (`PolySpec` / `HighSpec` of the compiler): the DCF at the
    /// component's points **and** the recombination into the q outputs, output-major, reduced
    /// mod 2^M. `rpow` holds the party's shares of r^1..r^d per element (`cnt·d`, element-major).
    /// The default is [`gate::techc_host`] (the DCF through [`Backend::dcf_eval`]); a device
    /// backend evaluates both on the device and returns only the outputs.
    ///
    /// # Errors
    /// [`BackendError::Gate`] / `LengthMismatch` for a descriptor, keys or shares of another
    /// shape; the DCF's errors.
    fn techc_eval(
        &self,
        d: &TechC<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        rpow: Shares<'_>,
        xhat: &[u64],
    ) -> Result<Vec<u64>> {
        gate::techc_host(self, d, party, keys, rpow, xhat)
    }

    /// A floor with optional LSB selector (`FloorSpec`): c-DCF on the low t bits, the wrap
    /// term, the dealer's shares `sh` (ρ_H, or (ρ_H, ρ_0, ρ_0·ρ_H) per element with the
    /// selector); outputs output-major mod 2^n. Default: [`gate::floor_host`].
    ///
    /// # Errors
    /// As [`Backend::techc_eval`].
    fn floor_eval(
        &self,
        d: &FloorDesc<'_>,
        party: u8,
        ckeys: &DcfKeys<'_>,
        wrap: FloorWrap<'_, '_>,
        sh: Shares<'_>,
        xhat: &[u64],
    ) -> Result<Vec<u64>> {
        gate::floor_host(self, d, party, ckeys, wrap, sh, xhat)
    }

    /// Affine halves of a K-bit view (`SignSpec`, and `HalvesSpec` with K = n): one
    /// (K − 1)-bit DCF and the dealer's shares; outputs output-major mod 2^M. Default:
    /// [`gate::sign_host`].
    ///
    /// # Errors
    /// As [`Backend::techc_eval`].
    fn sign_eval(
        &self,
        d: &SignDesc<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        sh: Shares<'_>,
        xhat: &[u64],
    ) -> Result<Vec<u64>> {
        gate::sign_host(self, d, party, keys, sh, xhat)
    }

    /// A Boolean of a view's high part as XOR shares (`BitSpec`): the DPF comparisons and
    /// their XOR combination, one 0/1 value per element. Default: [`gate::bit_host`] (the
    /// comparisons through [`Backend::dpf_lt_eval`]).
    ///
    /// # Errors
    /// As [`Backend::techc_eval`].
    fn bit_eval(
        &self,
        d: &BitDesc<'_>,
        party: u8,
        keys: &DpfView<'_>,
        xhat: &[u64],
    ) -> Result<Vec<u64>> {
        gate::bit_host(self, d, party, keys, xhat)
    }

    // ---- bit packing (the wire format, `suf_core::pack`) ----------------------------------

    /// Pack `vals` (each reduced mod 2^bits) into ⌈len·bits/8⌉ bytes, LSB first.
    ///
    /// # Errors
    /// `Core(BadBitWidth)` if `bits` is outside 1..=64.
    fn pack(&self, vals: &[u64], bits: u32) -> Result<Vec<u8>>;
    /// Unpack exactly `count` values of `bits` bits.
    ///
    /// # Errors
    /// `Core(BadBitWidth)` if `bits` is outside 1..=64; `Core(PackedLength)` if the buffer
    /// has the wrong length or non-zero padding.
    fn unpack(&self, bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u64>>;

    // ---- fused online steps (`fused`; defaults: the host passes there) --------------------

    /// The masked openings m = x + r mod 2^n of a round (width, x, r per opening) and their
    /// packings appended to `out`, one after the other from byte boundaries; returns each m.
    /// Default: [`fused::mask_pack_many`] (the openings in parallel).
    ///
    /// # Errors
    /// `LengthMismatch` if an opening's `x` and `r` differ in length.
    fn mask_pack_many(
        &self,
        parts: &[fused::MaskPart<'_>],
        out: &mut Vec<u8>,
    ) -> Result<Vec<Vec<u64>>> {
        fused::mask_pack_many(parts, out)
    }

    /// The peer's packed shares of a round (width, bytes, this party's m per opening)
    /// unpacked and added to this party's, mod 2^n. Default: [`fused::unpack_add_many`].
    ///
    /// # Errors
    /// `Core(PackedLength)` for a buffer of the wrong length or non-zero padding.
    fn unpack_add_many(&self, parts: &[fused::UnpackPart<'_>]) -> Result<Vec<Vec<u64>>> {
        fused::unpack_add_many(parts)
    }

    /// Beaver product `j·â·b̂ − â·[r_b] − b̂·[r_a] + [c]` mod 2^n in one pass. Default:
    /// [`fused::beaver_mul`].
    ///
    /// # Errors
    /// `LengthMismatch` for operands of different lengths; `Gate` for a party above 1.
    #[allow(clippy::too_many_arguments)]
    fn beaver_mul(
        &self,
        w: BitWidth,
        party: u8,
        a: &[u64],
        b: &[u64],
        ra: &[u64],
        rb: &[u64],
        c: &[u64],
    ) -> Result<Vec<u64>> {
        fused::beaver_mul(w, party, a, b, ra, rb, c)
    }

    /// Beaver square `j·â² − 2·â·[r_a] + [c]` mod 2^n. Default: [`fused::beaver_square`].
    ///
    /// # Errors
    /// As [`Backend::beaver_mul`].
    fn beaver_square(
        &self,
        w: BitWidth,
        party: u8,
        a: &[u64],
        ra: &[u64],
        c: &[u64],
    ) -> Result<Vec<u64>> {
        fused::beaver_square(w, party, a, ra, c)
    }

    /// Beaver row product (one factor per row). Default: [`fused::beaver_mul_rows`].
    ///
    /// # Errors
    /// As [`Backend::beaver_mul`].
    #[allow(clippy::too_many_arguments)]
    fn beaver_mul_rows(
        &self,
        w: BitWidth,
        party: u8,
        a: &[u64],
        b: &[u64],
        ra: &[u64],
        rb: &[u64],
        c: &[u64],
        cols: usize,
    ) -> Result<Vec<u64>> {
        fused::beaver_mul_rows(w, party, a, b, ra, rb, c, cols)
    }

    /// Bit to arithmetic share `j·b̂ + [ρ] − 2·b̂·[ρ]` mod 2^n. Default: [`fused::b2a`].
    ///
    /// # Errors
    /// As [`Backend::beaver_mul`].
    fn b2a(&self, w: BitWidth, party: u8, bh: &[u64], rho: &[u64]) -> Result<Vec<u64>> {
        fused::b2a(w, party, bh, rho)
    }

    /// `c·a − b` mod 2^n. Default: [`fused::scale_sub`].
    ///
    /// # Errors
    /// `LengthMismatch` if `a` and `b` differ in length.
    fn scale_sub(&self, w: BitWidth, c: u64, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        fused::scale_sub(w, c, a, b)
    }

    /// `a − b + c` mod 2^n. Default: [`fused::sub_add`].
    ///
    /// # Errors
    /// `LengthMismatch` if the operands differ in length.
    fn sub_add(&self, w: BitWidth, a: &[u64], b: &[u64], c: &[u64]) -> Result<Vec<u64>> {
        fused::sub_add(w, a, b, c)
    }
}
