//! Seeded key generation: the dealer's entry points that make a batch of keys a pure function
//! of (parameters, inputs, a 16-byte batch seed), so that batches can be dealt in any order, on
//! any number of threads, or on a device, with byte-identical results.
//!
//! # Randomness of a seeded batch, exactly (a device dealer must reproduce this bit for bit)
//!
//! A batch seed `σ` keys AES-128 in counter mode ([`Csprng::from_seed`]): block `j` of the
//! stream is `AES_σ(j)` with the counter `j` as a little-endian u128. A DCF batch
//! ([`dcf_gen`]) takes key k's root seeds from blocks `2k` (party 0) and `2k + 1` (party 1);
//! a DPF comparison batch ([`dpf_cmp_gen`]) takes the same blocks with bit 0 cleared. Every
//! element's seeds are therefore a function of (σ, element index) alone: random access, no
//! sequential state — what lets a GPU thread per element generate its key. Everything else in
//! a key is deterministic in the roots, α and β (see [`crate::dcf`] and [`crate::dpf`]).
//!
//! # Device dealers
//!
//! [`DcfDealer`] is the hook a device backend implements; [`install`] makes one the
//! process-wide generator of [`dcf_gen`] while the returned guard lives. Because a device
//! dealer must be byte-identical to [`CpuDcfDealer`] (tested in `crates/cuda/tests/dealer.rs`),
//! installing one changes where keys are made, never which bytes they are; a device failure
//! is an error, not a silent fallback.

use std::cell::Cell;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use suf_core::prg::Csprng;

use crate::dcf::{self, DcfKeys};
use crate::dpf::{self, DpfKeys};
use crate::error::Result;

/// A generator of seeded DCF batches (the CPU one, or a device's).
pub trait DcfDealer: Send + Sync {
    /// A short name for reports ("cpu", "cuda").
    fn name(&self) -> &'static str;
    /// Exactly [`CpuDcfDealer`]'s output for the same arguments (see [`dcf_gen_cpu`]).
    ///
    /// # Errors
    /// As [`dcf::gen_batch`]; a device failure as [`crate::FssError::BadParams`]-style typed
    /// errors of the implementation.
    #[allow(clippy::type_complexity)]
    fn dcf_gen(
        &self,
        n: u32,
        m: u32,
        p: usize,
        alphas: &[u64],
        betas: &[u64],
        seed: [u8; 16],
    ) -> Result<(DcfKeys<'static>, DcfKeys<'static>)>;

    /// [`DcfDealer::dcf_gen`] serialized straight into both parties' key files: `keys[b]`
    /// is exactly [`DcfKeys::bytes_for`] bytes and receives `dcf_gen(..).b.to_bytes()`. The
    /// default generates, copies each body in place ([`DcfKeys::write_to`]) and hands the
    /// bodies to the buffer pool; a device dealer can download into the slots instead.
    ///
    /// # Errors
    /// As [`DcfDealer::dcf_gen`]; a destination of another length.
    #[allow(clippy::too_many_arguments)]
    fn dcf_gen_into(
        &self,
        n: u32,
        m: u32,
        p: usize,
        alphas: &[u64],
        betas: &[u64],
        seed: [u8; 16],
        keys: [&mut [u8]; 2],
    ) -> Result<()> {
        let (k0, k1) = self.dcf_gen(n, m, p, alphas, betas, seed)?;
        let [d0, d1] = keys;
        let written = k0.write_to(d0).and_then(|()| k1.write_to(d1));
        k0.recycle();
        k1.recycle();
        written
    }

    /// Exactly [`dpf_cmp_gen_cpu`]'s output for the same arguments (the default is that
    /// function).
    ///
    /// # Errors
    /// As [`dpf::gen_cmp_batch`], or a device failure.
    fn dpf_cmp_gen(&self, n: u32, alphas: &[u64], seed: [u8; 16]) -> Result<(DpfKeys, DpfKeys)> {
        dpf_cmp_gen_cpu(n, alphas, seed)
    }
}

/// The reference dealer: [`dcf::gen_batch`] on the CPU (rayon over chunks of keys).
#[derive(Copy, Clone, Debug, Default)]
pub struct CpuDcfDealer;

impl DcfDealer for CpuDcfDealer {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn dcf_gen(
        &self,
        n: u32,
        m: u32,
        p: usize,
        alphas: &[u64],
        betas: &[u64],
        seed: [u8; 16],
    ) -> Result<(DcfKeys<'static>, DcfKeys<'static>)> {
        dcf_gen_cpu(n, m, p, alphas, betas, seed)
    }
    /// Generated in place ([`dcf::gen_batch_into`]: no body buffer, no copy).
    fn dcf_gen_into(
        &self,
        n: u32,
        m: u32,
        p: usize,
        alphas: &[u64],
        betas: &[u64],
        seed: [u8; 16],
        keys: [&mut [u8]; 2],
    ) -> Result<()> {
        dcf::gen_batch_into(n, m, p, alphas, betas, &mut Csprng::from_seed(seed), keys)
    }
}

/// A DCF batch from a batch seed on the CPU: [`dcf::gen_batch`] with a fresh
/// `Csprng::from_seed(seed)` (roots of key k = AES_σ(2k), AES_σ(2k + 1); module docs).
///
/// # Errors
/// As [`dcf::gen_batch`].
pub fn dcf_gen_cpu(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    seed: [u8; 16],
) -> Result<(DcfKeys<'static>, DcfKeys<'static>)> {
    dcf::gen_batch(n, m, p, alphas, betas, &mut Csprng::from_seed(seed))
}

/// Time this thread spent in seeded DCF and DPF batch generation ([`dcf_gen`],
/// [`dpf_cmp_gen`]: wall time of each call, whichever dealer is installed), for the dealer's
/// per-kind report. Read and reset with [`swap_gen_times`].
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct GenTimes {
    /// Nanoseconds in [`dcf_gen`] calls.
    pub dcf_ns: u64,
    /// DCF keys generated (summed over the calls).
    pub dcf_keys: u64,
    /// Nanoseconds in [`dpf_cmp_gen`] calls.
    pub dpf_ns: u64,
    /// DPF comparison keys generated.
    pub dpf_keys: u64,
}

thread_local! {
    static GEN_TIMES: Cell<GenTimes> = const { Cell::new(GenTimes {
        dcf_ns: 0,
        dcf_keys: 0,
        dpf_ns: 0,
        dpf_keys: 0,
    }) };
}

/// Replace this thread's accumulated [`GenTimes`] with `new` and return the old value. A
/// caller measuring one task swaps in zeros before it and swaps the saved value back after
/// (nesting-safe: a task that a waiting thread steals does the same inside).
pub fn swap_gen_times(new: GenTimes) -> GenTimes {
    GEN_TIMES.with(|c| c.replace(new))
}

fn add_gen_time(dcf: bool, t: Instant, keys: usize) {
    let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
    GEN_TIMES.with(|c| {
        let mut g = c.get();
        if dcf {
            g.dcf_ns = g.dcf_ns.saturating_add(ns);
            g.dcf_keys = g.dcf_keys.saturating_add(keys as u64);
        } else {
            g.dpf_ns = g.dpf_ns.saturating_add(ns);
            g.dpf_keys = g.dpf_keys.saturating_add(keys as u64);
        }
        c.set(g);
    });
}

/// Large byte buffers kept for reuse: a dealer's key buffers are hundreds of MB each, and a
/// freshly allocated one is mapped page by page by the kernel on first touch (on CPU-2 the
/// page faults of the key copies were ≈ 23 % of the dealer's CPU time). The key stream's
/// writer threads hand back every buffer they have written ([`recycle_buffer`]); key bodies,
/// key files and gate blobs take one ([`zeroed_buffer`]) when one of a fitting size is free.
struct BufferPool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Mutex<BufferPool> = Mutex::new(BufferPool {
    bufs: Vec::new(),
    bytes: 0,
});

/// Buffers below this size are not pooled: glibc's allocator serves them from its heaps and
/// reuses freed ones itself (measured: pooling them too gave more page faults), while every
/// block above its largest mmap threshold (32 MiB) is mapped fresh and unmapped on free.
pub const POOL_MIN_BYTES: usize = 32 << 20;
/// Bytes per parallel task when [`zeroed_buffer`] zeroes a pooled buffer.
const ZERO_CHUNK: usize = 1 << 21;
/// At most this many bytes of capacity are kept in the pool (8 GiB: a bert-base gate blob is
/// ≈ 1 GB and up to 16 are dealt at once; every large buffer not found in the pool is mapped
/// fresh and page-faults on first write).
pub const POOL_MAX_BYTES: usize = 1 << 33;

/// `len` zero bytes: a pooled buffer of capacity in [len, 2·len + 32 MiB] when one is free
/// (zeroed with a memset over pages already mapped), else a fresh zeroed allocation.
pub fn zeroed_buffer(len: usize) -> Vec<u8> {
    if len >= POOL_MIN_BYTES {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let limit = len.saturating_mul(2).saturating_add(POOL_MIN_BYTES);
        let best = pool
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| (len..=limit).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut v = pool.bufs.swap_remove(i);
            pool.bytes -= v.capacity();
            drop(pool);
            // Zeroed in parallel chunks (a memset of hundreds of MB on one core was a
            // serial step of the dealer's batch), then extended with zeros if it was shorter.
            use rayon::prelude::*;
            v.truncate(len);
            v.par_chunks_mut(ZERO_CHUNK).for_each(|c| c.fill(0));
            v.resize(len, 0);
            return v;
        }
    }
    vec![0u8; len]
}

/// Give a buffer that is no longer needed to the pool (dropped when it is small or the pool
/// is full).
pub fn recycle_buffer(v: Vec<u8>) {
    let cap = v.capacity();
    if cap < POOL_MIN_BYTES {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.bytes.saturating_add(cap) <= POOL_MAX_BYTES {
        pool.bytes += cap;
        pool.bufs.push(v);
    }
}

/// Free every pooled buffer (the dealer calls this when a stream is finished).
pub fn release_buffers() {
    let bufs = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.bytes = 0;
        std::mem::take(&mut pool.bufs)
    };
    drop(bufs);
}

static INSTALLED: RwLock<Option<Arc<dyn DcfDealer>>> = RwLock::new(None);

/// Restores the previously installed dealer when dropped.
#[must_use = "the dealer is uninstalled when the guard is dropped"]
pub struct DealerGuard {
    prev: Option<Arc<dyn DcfDealer>>,
}

impl std::fmt::Debug for DealerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DealerGuard")
    }
}

impl Drop for DealerGuard {
    fn drop(&mut self) {
        let mut g = INSTALLED.write().unwrap_or_else(|p| p.into_inner());
        *g = self.prev.take();
    }
}

/// Make `d` the process-wide generator of [`dcf_gen`] until the guard is dropped. Outputs do
/// not depend on which dealer is installed (a device dealer is byte-identical to the CPU).
pub fn install(d: Arc<dyn DcfDealer>) -> DealerGuard {
    let mut g = INSTALLED.write().unwrap_or_else(|p| p.into_inner());
    DealerGuard { prev: g.replace(d) }
}

/// The name of the installed dealer ("cpu" when none is).
pub fn installed_name() -> &'static str {
    let g = INSTALLED.read().unwrap_or_else(|p| p.into_inner());
    g.as_ref().map_or("cpu", |d| d.name())
}

/// A seeded DCF batch from the installed dealer (the CPU when none is installed). Gates deal
/// their DCFs through this, with a seed drawn from their batch's generator.
///
/// # Errors
/// As [`dcf::gen_batch`], or the installed dealer's device error.
pub fn dcf_gen(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    seed: [u8; 16],
) -> Result<(DcfKeys<'static>, DcfKeys<'static>)> {
    let t = Instant::now();
    let d = INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone();
    let r = match d {
        Some(d) => d.dcf_gen(n, m, p, alphas, betas, seed),
        None => dcf_gen_cpu(n, m, p, alphas, betas, seed),
    };
    add_gen_time(true, t, alphas.len());
    r
}

/// [`dcf_gen`] straight into both parties' serialized batches: `keys[b]` must be exactly
/// [`DcfKeys::bytes_for`] bytes and zeroed, and receives the bytes of
/// `dcf_gen(..).b.to_bytes()`, through the installed dealer's [`DcfDealer::dcf_gen_into`]
/// ([`CpuDcfDealer`] when none is: the bodies generated in place; the CUDA dealer downloads
/// into the slots). [`GenTimes`] counts all of it as DCF generation (with the header's
/// checksum pass).
///
/// # Errors
/// As [`dcf_gen`]; a destination of another length.
pub fn dcf_gen_into(
    n: u32,
    m: u32,
    p: usize,
    alphas: &[u64],
    betas: &[u64],
    seed: [u8; 16],
    keys: [&mut [u8]; 2],
) -> Result<()> {
    let t = Instant::now();
    let d = INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone();
    let r = match d {
        Some(d) => d.dcf_gen_into(n, m, p, alphas, betas, seed, keys),
        None => CpuDcfDealer.dcf_gen_into(n, m, p, alphas, betas, seed, keys),
    };
    add_gen_time(true, t, alphas.len());
    r
}

/// A seeded DPF comparison batch on the CPU: [`dpf::gen_cmp_batch`] with
/// `Csprng::from_seed(seed)` (roots of key k = AES_σ(2k) & !1, AES_σ(2k + 1) & !1).
///
/// # Errors
/// As [`dpf::gen_cmp_batch`].
pub fn dpf_cmp_gen_cpu(n: u32, alphas: &[u64], seed: [u8; 16]) -> Result<(DpfKeys, DpfKeys)> {
    dpf::gen_cmp_batch(n, alphas, &mut Csprng::from_seed(seed))
}

/// A seeded DPF comparison batch from the installed dealer (the CPU when none is).
///
/// # Errors
/// As [`dpf::gen_cmp_batch`], or the installed dealer's device error.
pub fn dpf_cmp_gen(n: u32, alphas: &[u64], seed: [u8; 16]) -> Result<(DpfKeys, DpfKeys)> {
    let t = Instant::now();
    let d = INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone();
    let r = match d {
        Some(d) => d.dpf_cmp_gen(n, alphas, seed),
        None => dpf_cmp_gen_cpu(n, alphas, seed),
    };
    add_gen_time(false, t, alphas.len());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_core::prg::FixedKeyAes;

    /// The documented random access: key k's roots are AES_σ(2k), AES_σ(2k + 1).
    #[test]
    fn roots_are_ctr_blocks_of_the_batch_seed() {
        let seed = *b"batch seed 00001";
        let alphas: Vec<u64> = (0..40).map(|i| (i * 37) % 1024).collect();
        let betas: Vec<u64> = (0..80).map(|i| i * 11 + 3).collect();
        let (k0, k1) = dcf_gen(10, 20, 2, &alphas, &betas, seed).unwrap();
        let aes = FixedKeyAes::with_key(seed);
        for k in [0usize, 1, 17, 39] {
            assert_eq!(k0.seed(k), aes.permute(2 * k as u128));
            assert_eq!(k1.seed(k), aes.permute(2 * k as u128 + 1));
        }
        // Same seed, same bytes; another seed, other bytes.
        let (j0, j1) = dcf_gen(10, 20, 2, &alphas, &betas, seed).unwrap();
        assert_eq!((k0.body(), k1.body()), (j0.body(), j1.body()));
        let (o0, _) = dcf_gen(10, 20, 2, &alphas, &betas, *b"batch seed 00002").unwrap();
        assert_ne!(k0.body(), o0.body());
        let (d0, d1) = dpf_cmp_gen(12, &[5, 4095], seed).unwrap();
        let (e0, e1) = dpf_cmp_gen(12, &[5, 4095], seed).unwrap();
        assert_eq!(
            (d0.to_bytes(), d1.to_bytes()),
            (e0.to_bytes(), e1.to_bytes())
        );
    }

    /// Pooled buffers come back zeroed, of the asked length, and only when they fit.
    #[test]
    fn pooled_buffers_are_zeroed_and_fit() {
        let mut v = vec![7u8; 3 * POOL_MIN_BYTES];
        v[5] = 1;
        recycle_buffer(v);
        recycle_buffer(vec![1u8; 10]);
        // Too small a request for that buffer (its capacity is above 2·len + 32 MiB) or too
        // large: fresh zeroed memory; a fitting one: zeroed, the asked length.
        for len in [POOL_MIN_BYTES / 2, 4 * POOL_MIN_BYTES, 2 * POOL_MIN_BYTES] {
            let b = zeroed_buffer(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0), "len {len}");
        }
        release_buffers();
        assert_eq!(zeroed_buffer(POOL_MIN_BYTES + 3).len(), POOL_MIN_BYTES + 3);
    }

    /// Generation time accumulates per thread, by kind, and swapping restores the old value.
    #[test]
    fn gen_times_accumulate_and_swap() {
        let saved = swap_gen_times(GenTimes::default());
        dcf_gen(8, 8, 1, &[3, 4, 5], &[1, 1, 1], [1; 16]).unwrap();
        dpf_cmp_gen(12, &[5, 6], [2; 16]).unwrap();
        dpf_cmp_gen(12, &[7], [2; 16]).unwrap();
        let g = swap_gen_times(saved);
        assert_eq!((g.dcf_keys, g.dpf_keys), (3, 3));
        assert!(g.dcf_ns > 0 && g.dpf_ns > 0);
        assert_eq!(swap_gen_times(GenTimes::default()), saved);
        swap_gen_times(saved);
    }

    /// A dealer that counts its calls, to see that `install` routes `dcf_gen` to it.
    struct Counting(std::sync::atomic::AtomicUsize);
    impl DcfDealer for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn dcf_gen(
            &self,
            n: u32,
            m: u32,
            p: usize,
            alphas: &[u64],
            betas: &[u64],
            seed: [u8; 16],
        ) -> Result<(DcfKeys<'static>, DcfKeys<'static>)> {
            // Count only this test's calls (other tests run in parallel in this process).
            if seed == [7; 16] {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            dcf_gen_cpu(n, m, p, alphas, betas, seed)
        }
    }

    /// `dcf_gen_into` writes exactly the serialized batches of `dcf_gen`, generated in place
    /// on the CPU and copied from an installed dealer; a wrong destination is an error.
    #[test]
    fn dcf_gen_into_is_dcf_gen_serialized() {
        let seed = *b"into seed 000001";
        for (n, m, p, count) in [
            (10u32, 20u32, 2usize, 40usize),
            (37, 37, 1, 3000),
            (5, 64, 3, 0),
        ] {
            let alphas: Vec<u64> = (0..count as u64).map(|i| (i * 37) % (1 << n)).collect();
            let betas: Vec<u64> = (0..(count * p) as u64).map(|i| i * 11 + 3).collect();
            let (k0, k1) = dcf_gen(n, m, p, &alphas, &betas, seed).unwrap();
            let want = [k0.to_bytes(), k1.to_bytes()];
            let len = DcfKeys::bytes_for(n, m, p, count).unwrap();
            let mut got = [vec![0u8; len], vec![0u8; len]];
            let [a, b] = &mut got;
            dcf_gen_into(n, m, p, &alphas, &betas, seed, [a, b]).unwrap();
            assert_eq!(got, want, "cpu, n {n} count {count}");
            {
                let _g = install(Arc::new(CpuDcfDealer));
                let mut dev = [vec![0u8; len], vec![0u8; len]];
                let [a, b] = &mut dev;
                dcf_gen_into(n, m, p, &alphas, &betas, seed, [a, b]).unwrap();
                assert_eq!(dev, want, "installed, n {n} count {count}");
            }
            let mut short = vec![0u8; len - 1];
            let mut ok = vec![0u8; len];
            assert!(dcf_gen_into(n, m, p, &alphas, &betas, seed, [&mut ok, &mut short]).is_err());
        }
    }

    #[test]
    fn install_routes_and_restores() {
        let c = Arc::new(Counting(Default::default()));
        {
            let _g = install(c.clone());
            assert_eq!(installed_name(), "counting");
            dcf_gen(8, 8, 1, &[3], &[1], [7; 16]).unwrap();
            assert!(dcf_gen(8, 8, 1, &[300], &[1], [7; 16]).is_err());
        }
        assert_eq!(c.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(installed_name(), "cpu");
    }
}
