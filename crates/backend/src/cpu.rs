//! The CPU backend: rayon for parallelism, the cache-blocked ring GEMM of [`crate::gemm`],
//! and the CPU evaluators of `suf-fss`.

use std::sync::Arc;

use rayon::prelude::*;
use suf_core::BitWidth;

use crate::error::{check_len, shape_mul, BackendError, Result};
use crate::fused;
use crate::gemm::{self, BLayout};
use crate::{Backend, DcfKeys, DpfKeys};

/// Elementwise work below this many elements runs on the calling thread; above it, in
/// rayon chunks of at least this many elements.
const PAR_MIN: usize = 1 << 15;
/// Values per independently packed chunk in [`Backend::pack`]/[`Backend::unpack`]. A
/// multiple of 8, so every chunk starts on a byte boundary whatever the bit width and the
/// chunked result is byte for byte the serial one.
const PACK_CHUNK: usize = 1 << 14;

/// The CPU backend, and the **reference implementation**: every other backend (CUDA next)
/// must return results bit for bit identical to this one on every method, and its tests
/// assert it.
///
/// Work runs in rayon: in the global pool ([`CpuBackend::new`]) or in a pool of its own
/// ([`CpuBackend::with_threads`]). Cloning shares the pool.
#[derive(Clone, Default)]
pub struct CpuBackend {
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads())
            .field("own_pool", &self.pool.is_some())
            .finish()
    }
}

impl CpuBackend {
    /// A backend that runs in rayon's global pool (or whichever pool the caller is in).
    pub fn new() -> Self {
        CpuBackend { pool: None }
    }

    /// A backend with its own pool of `threads` worker threads (0: rayon's default).
    ///
    /// # Errors
    /// [`BackendError::ThreadPool`] if the operating system refuses the threads.
    pub fn with_threads(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("suf-cpu-{i}"))
            .build()
            .map_err(|e| BackendError::ThreadPool(e.to_string()))?;
        Ok(CpuBackend {
            pool: Some(Arc::new(pool)),
        })
    }

    /// Worker threads this backend computes with.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Run `f` in this backend's pool.
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    fn zip_map(
        &self,
        what: &'static str,
        a: &[u64],
        b: &[u64],
        f: impl Fn(u64, u64) -> u64 + Sync + Send,
    ) -> Result<Vec<u64>> {
        check_len(what, a.len(), b.len())?;
        Ok(if a.len() < PAR_MIN {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        } else {
            self.install(|| {
                a.par_iter()
                    .zip(b)
                    .with_min_len(PAR_MIN)
                    .map(|(&x, &y)| f(x, y))
                    .collect()
            })
        })
    }

    fn map(&self, a: &[u64], f: impl Fn(u64) -> u64 + Sync + Send) -> Vec<u64> {
        if a.len() < PAR_MIN {
            a.iter().map(|&x| f(x)).collect()
        } else {
            self.install(|| a.par_iter().with_min_len(PAR_MIN).map(|&x| f(x)).collect())
        }
    }

    /// `f(a[i], b[i mod b.len()])`: `b` is one row broadcast over the rows of `a`.
    fn bcast_map(
        &self,
        what: &'static str,
        a: &[u64],
        b: &[u64],
        f: impl Fn(u64, u64) -> u64 + Sync + Send,
    ) -> Result<Vec<u64>> {
        if b.is_empty() || !a.len().is_multiple_of(b.len()) {
            if a.is_empty() && b.is_empty() {
                return Ok(Vec::new());
            }
            return Err(BackendError::LengthMismatch {
                what,
                expected: a.len(),
                got: b.len(),
            });
        }
        let c = b.len();
        let row = |(o, x): (&mut [u64], &[u64])| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(b) {
                *o = f(x, y);
            }
        };
        let mut out = vec![0u64; a.len()];
        if a.len() < PAR_MIN {
            out.chunks_mut(c).zip(a.chunks(c)).for_each(row);
        } else {
            let rows_per = PAR_MIN.div_ceil(c);
            self.install(|| {
                out.par_chunks_mut(c)
                    .zip(a.par_chunks(c))
                    .with_min_len(rows_per)
                    .for_each(row)
            });
        }
        Ok(out)
    }

    fn zip_assign(
        &self,
        what: &'static str,
        a: &mut [u64],
        b: &[u64],
        f: impl Fn(u64, u64) -> u64 + Sync + Send,
    ) -> Result<()> {
        check_len(what, a.len(), b.len())?;
        if a.len() < PAR_MIN {
            a.iter_mut().zip(b).for_each(|(x, &y)| *x = f(*x, y));
        } else {
            self.install(|| {
                a.par_iter_mut()
                    .zip(b)
                    .with_min_len(PAR_MIN)
                    .for_each(|(x, &y)| *x = f(*x, y))
            });
        }
        Ok(())
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
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
    ) -> Result<Vec<u64>> {
        let mk = shape_mul("gemm A", m, k)?;
        let kn = shape_mul("gemm B", k, n)?;
        let mn = shape_mul("gemm C", m, n)?;
        check_len(
            "gemm A (batch·m·k)",
            shape_mul("gemm A", batch, mk)?,
            a.len(),
        )?;
        check_len(
            "gemm B (batch·k·n)",
            shape_mul("gemm B", batch, kn)?,
            b.len(),
        )?;
        shape_mul("gemm C", batch, mn)?;
        if batch == 1 {
            return self.install(|| gemm::gemm(w, a, b, m, k, n, layout));
        }
        let one = |t: usize| {
            gemm::gemm(
                w,
                &a[t * mk..(t + 1) * mk],
                &b[t * kn..(t + 1) * kn],
                m,
                k,
                n,
                layout,
            )
        };
        let parts: Vec<Vec<u64>> =
            self.install(|| (0..batch).into_par_iter().map(one).collect::<Result<_>>())?;
        Ok(parts.concat())
    }

    fn add(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.zip_map("add", a, b, |x, y| w.add(x, y))
    }

    fn sub(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.zip_map("sub", a, b, |x, y| w.sub(x, y))
    }

    fn mul(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.zip_map("mul", a, b, |x, y| w.mul(x, y))
    }

    fn neg(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>> {
        Ok(self.map(a, |x| w.neg(x)))
    }

    fn scale(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>> {
        Ok(self.map(a, |x| w.mul(x, c)))
    }

    fn add_const(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>> {
        Ok(self.map(a, |x| w.add(x, c)))
    }

    fn reduce(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>> {
        Ok(self.map(a, |x| w.reduce(x)))
    }

    fn add_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.zip_assign("add_assign", a, b, |x, y| w.add(x, y))
    }

    fn sub_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.zip_assign("sub_assign", a, b, |x, y| w.sub(x, y))
    }

    fn mul_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.zip_assign("mul_assign", a, b, |x, y| w.mul(x, y))
    }

    fn add_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.bcast_map("add_bcast row (must divide a.len())", a, b, |x, y| {
            w.add(x, y)
        })
    }

    fn mul_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.bcast_map("mul_bcast row (must divide a.len())", a, b, |x, y| {
            w.mul(x, y)
        })
    }

    fn mul_rows(&self, w: BitWidth, a: &[u64], b: &[u64], cols: usize) -> Result<Vec<u64>> {
        check_len(
            "mul_rows a (rows·cols)",
            shape_mul("mul_rows a", b.len(), cols)?,
            a.len(),
        )?;
        if a.is_empty() {
            return Ok(Vec::new());
        }
        let row = |((o, x), &y): ((&mut [u64], &[u64]), &u64)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = w.mul(x, y);
            }
        };
        let mut out = vec![0u64; a.len()];
        if a.len() < PAR_MIN {
            out.chunks_mut(cols)
                .zip(a.chunks(cols))
                .zip(b)
                .for_each(row);
        } else {
            let rows_per = PAR_MIN.div_ceil(cols);
            self.install(|| {
                out.par_chunks_mut(cols)
                    .zip(a.par_chunks(cols))
                    .zip(b)
                    .with_min_len(rows_per)
                    .for_each(row)
            });
        }
        Ok(out)
    }

    fn row_sum(&self, w: BitWidth, a: &[u64], cols: usize) -> Result<Vec<u64>> {
        if cols == 0 || !a.len().is_multiple_of(cols) {
            if a.is_empty() {
                return Ok(Vec::new());
            }
            return Err(BackendError::LengthMismatch {
                what: "row_sum a (rows·cols)",
                expected: a.len().next_multiple_of(cols.max(1)),
                got: a.len(),
            });
        }
        let sum = |r: &[u64]| w.reduce(r.iter().fold(0u64, |s, &x| s.wrapping_add(x)));
        Ok(if a.len() < PAR_MIN {
            a.chunks(cols).map(sum).collect()
        } else {
            let rows_per = PAR_MIN.div_ceil(cols);
            self.install(|| a.par_chunks(cols).with_min_len(rows_per).map(sum).collect())
        })
    }

    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> Result<Vec<u64>> {
        Ok(self.install(|| keys.eval_multi(xs, t))?)
    }

    fn dpf_lt_eval(&self, keys: &DpfKeys, xs: &[u64], t: usize) -> Result<Vec<u8>> {
        Ok(self.install(|| keys.eval_lt_multi(xs, t))?)
    }

    fn dpf_eq_eval(&self, keys: &DpfKeys, xs: &[u64]) -> Result<Vec<u8>> {
        Ok(self.install(|| keys.eval_eq_batch(xs))?)
    }

    fn pack(&self, vals: &[u64], bits: u32) -> Result<Vec<u8>> {
        BitWidth::new(bits)?;
        if vals.len() < 2 * PACK_CHUNK {
            return Ok(suf_core::pack::pack(vals, bits));
        }
        let parts: Vec<Vec<u8>> = self.install(|| {
            vals.par_chunks(PACK_CHUNK)
                .map(|c| suf_core::pack::pack(c, bits))
                .collect()
        });
        Ok(parts.concat())
    }

    fn mask_pack_many(
        &self,
        parts: &[fused::MaskPart<'_>],
        out: &mut Vec<u8>,
    ) -> Result<Vec<Vec<u64>>> {
        self.install(|| fused::mask_pack_many(parts, out))
    }

    fn unpack_add_many(&self, parts: &[fused::UnpackPart<'_>]) -> Result<Vec<Vec<u64>>> {
        self.install(|| fused::unpack_add_many(parts))
    }

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
        self.install(|| fused::beaver_mul(w, party, a, b, ra, rb, c))
    }

    fn beaver_square(
        &self,
        w: BitWidth,
        party: u8,
        a: &[u64],
        ra: &[u64],
        c: &[u64],
    ) -> Result<Vec<u64>> {
        self.install(|| fused::beaver_square(w, party, a, ra, c))
    }

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
        self.install(|| fused::beaver_mul_rows(w, party, a, b, ra, rb, c, cols))
    }

    fn b2a(&self, w: BitWidth, party: u8, bh: &[u64], rho: &[u64]) -> Result<Vec<u64>> {
        self.install(|| fused::b2a(w, party, bh, rho))
    }

    fn scale_sub(&self, w: BitWidth, c: u64, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.install(|| fused::scale_sub(w, c, a, b))
    }

    fn sub_add(&self, w: BitWidth, a: &[u64], b: &[u64], c: &[u64]) -> Result<Vec<u64>> {
        self.install(|| fused::sub_add(w, a, b, c))
    }

    fn unpack(&self, bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u64>> {
        BitWidth::new(bits)?;
        if count < 2 * PACK_CHUNK {
            return Ok(suf_core::pack::unpack(bytes, bits, count)?);
        }
        // Check the total length first so the error is the serial one; then every full
        // chunk is exactly PACK_CHUNK·bits/8 bytes and only the last one has padding.
        let expected = suf_core::pack::packed_len(count, bits);
        if bytes.len() != expected {
            return Ok(suf_core::pack::unpack(bytes, bits, count)?);
        }
        let chunk_bytes = PACK_CHUNK * bits as usize / 8;
        let chunks = count.div_ceil(PACK_CHUNK);
        let parts: Vec<Vec<u64>> = self.install(|| {
            (0..chunks)
                .into_par_iter()
                .map(|ci| {
                    let cnt = PACK_CHUNK.min(count - ci * PACK_CHUNK);
                    let start = ci * chunk_bytes;
                    let end = (start + chunk_bytes).min(bytes.len());
                    suf_core::pack::unpack(&bytes[start..end], bits, cnt)
                })
                .collect::<std::result::Result<_, _>>()
        })?;
        Ok(parts.concat())
    }
}
