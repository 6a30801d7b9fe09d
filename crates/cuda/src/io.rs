//! Reusable pinned I/O buffers of the device calls with host operands: the compiled-gate
//! components (`techc_eval`, `floor_eval`, `sign_eval`, `bit_eval`), `dcf_eval` and the DPF
//! evaluations ([`CudaBackend::dcf_eval_resident`], [`CudaBackend::dpf_eval_resident`]).
//!
//! Per call, every host operand (x̂ or the points, the gate's tables, host-held dealer shares,
//! a seed's round keys) is packed into one pinned buffer and goes to the device in **one**
//! copy, into one device buffer (a sub-slice per operand, each starting 128-byte aligned);
//! the outputs come back in **one** copy into pinned memory, then into the returned `Vec`.
//! Pageable copies are staged by the driver and synchronous for the host (tens of µs each at
//! small sizes, a few GB/s at large ones); pinned ones run at PCIe speed.
//!
//! **Buffers.** A set ([`IoSet`]) holds the pinned upload buffer (write-combined: the host
//! only writes it), the pinned download buffers (cached: the host reads them) and the device
//! input buffer; each grows on demand (to a power of two) and is kept across calls. Sets
//! belong to one instance and live in its pool (`CudaBackend::io`, a `Mutex` held only to
//! take or give back a set: nothing else runs under it, rayon work in particular, so a rayon
//! thread that steals a task while it waits can never block on it). A call takes a set out
//! for its whole duration ([`Io`]); a call that finds the pool empty (another thread holds the
//! set of this instance) makes a new one; the pool keeps up to [`MAX_SETS`].
//!
//! **Reuse rule.** A set goes back to the pool only when no copy that reads or writes its
//! pinned memory can still run: after the stream synchronization that ends a call, or, on an
//! error path (or a panic), after the synchronization in [`Io`]'s `Drop`. When that one fails
//! the set is leaked, never reused or freed under a copy. Device work on the input buffer is
//! ordered by the instance's one stream.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cudarc::driver::{
    CudaEvent, CudaSlice, CudaView, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
};
use rayon::prelude::*;

use crate::error::{CudaError, DriverContext, Result};
use crate::CudaBackend;

/// Smallest capacity of a buffer, in elements (128 KiB of u64).
const MIN_LEN: usize = 1 << 14;
/// Operands start at multiples of this many words (128 bytes: whole cache lines).
const ALIGN_WORDS: usize = 16;
/// Host copies of at least this many bytes (into and out of pinned memory) are split over
/// rayon in pieces of [`PAR_PIECE`] bytes (no lock is held while they run).
const PAR_BYTES: usize = 1 << 20;
/// Bytes per piece of a parallel host copy.
const PAR_PIECE: usize = 1 << 18;
/// Sets an instance's pool keeps (more exist only while that many calls run at once).
pub(crate) const MAX_SETS: usize = 4;

/// One set of reusable I/O buffers (see the module docs).
pub(crate) struct IoSet {
    /// The device input buffer (at least [`MIN_LEN`] words, zeroed when allocated).
    dev: CudaSlice<u64>,
    /// Pinned, write-combined: the packed host operands.
    up: Option<PinnedHostSlice<u64>>,
    /// Pinned, cached: the outputs.
    down: Downs,
    /// Timing events (before / after the upload, before / after the download), made when
    /// [`CudaBackend::set_io_timing`] is on.
    events: Option<[CudaEvent; 4]>,
}

/// The pinned (cached) download buffers of a set, one per output type.
#[derive(Default)]
pub(crate) struct Downs {
    /// u64 outputs.
    w64: Option<PinnedHostSlice<u64>>,
    /// Byte outputs (DPF evaluations).
    w8: Option<PinnedHostSlice<u8>>,
}

/// Where the time of the device calls with host operands went, summed over calls
/// ([`CudaBackend::io_timing`]; counted only while [`CudaBackend::set_io_timing`] is on).
/// Device times are measured with CUDA events on the instance's stream, host times with host
/// timers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IoTiming {
    /// Calls counted.
    pub calls: u64,
    /// Host: packing the operands into pinned memory (and growing the buffers).
    pub pack_ms: f64,
    /// Device: the one host-to-device copy.
    pub h2d_ms: f64,
    /// Device: from the end of the upload to the start of the download (the kernels, and
    /// the upload of a DCF key body that is not resident).
    pub kernels_ms: f64,
    /// Device: the one device-to-host copy.
    pub d2h_ms: f64,
    /// Host: pinned memory into the returned `Vec`.
    pub unpack_ms: f64,
    /// Bytes of the uploads (operands and alignment padding).
    pub h2d_bytes: u64,
    /// Bytes of the downloads.
    pub d2h_bytes: u64,
}

impl IoTiming {
    /// What was counted after `earlier` (a snapshot of the same instance).
    pub fn since(&self, earlier: &IoTiming) -> IoTiming {
        IoTiming {
            calls: self.calls.saturating_sub(earlier.calls),
            pack_ms: self.pack_ms - earlier.pack_ms,
            h2d_ms: self.h2d_ms - earlier.h2d_ms,
            kernels_ms: self.kernels_ms - earlier.kernels_ms,
            d2h_ms: self.d2h_ms - earlier.d2h_ms,
            unpack_ms: self.unpack_ms - earlier.unpack_ms,
            h2d_bytes: self.h2d_bytes.saturating_sub(earlier.h2d_bytes),
            d2h_bytes: self.d2h_bytes.saturating_sub(earlier.d2h_bytes),
        }
    }
}

/// Output element types of [`Io::download`], each with its pinned buffer in a set.
pub(crate) trait IoWord:
    DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync
{
    /// This type's download buffer.
    fn slot(d: &mut Downs) -> &mut Option<PinnedHostSlice<Self>>;
}

impl IoWord for u64 {
    fn slot(d: &mut Downs) -> &mut Option<PinnedHostSlice<u64>> {
        &mut d.w64
    }
}

impl IoWord for u8 {
    fn slot(d: &mut Downs) -> &mut Option<PinnedHostSlice<u8>> {
        &mut d.w8
    }
}

fn overflow() -> CudaError {
    CudaError::Backend(suf_backend::BackendError::ShapeOverflow {
        what: "device call operands",
    })
}

/// The capacity allocated for `need` elements: a power of two, at least [`MIN_LEN`].
fn capacity(need: usize) -> Result<usize> {
    need.max(MIN_LEN)
        .checked_next_power_of_two()
        .ok_or_else(overflow)
}

/// The pinned buffer in `slot`, grown to at least `need` elements (a new allocation with the
/// `cuMemHostAlloc` `flags`, zeroed; the old one is freed first). The caller holds the set out
/// of the pool, so no copy uses the old buffer (the module's reuse rule).
fn grow<'s, T: DeviceRepr + ValidAsZeroBits>(
    be: &CudaBackend,
    slot: &'s mut Option<PinnedHostSlice<T>>,
    need: usize,
    flags: u32,
) -> Result<&'s mut PinnedHostSlice<T>> {
    if let Some(p) = slot.take_if(|p| p.len() >= need) {
        return Ok(slot.insert(p));
    }
    *slot = None;
    let cap = capacity(need)?;
    cap.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b < isize::MAX as usize)
        .ok_or_else(overflow)?;
    // SAFETY: `alloc_pinned_with_flags` returns `cap` elements of uninitialized page-locked
    // memory (its size checked above, so it does not panic). They are zeroed right away,
    // through the pointer of the allocation, which nothing else references yet, before any
    // slice of them is made; all-zero bytes are a valid `T` (`ValidAsZeroBits`).
    let p = unsafe {
        let mut p = be
            .context()
            .alloc_pinned_with_flags::<T>(cap, flags)
            .during("allocating pinned I/O memory")?;
        let ptr = p.as_mut_ptr().during("allocating pinned I/O memory")?;
        std::ptr::write_bytes(ptr, 0, cap);
        p
    };
    Ok(slot.insert(p))
}

/// (offset, length) in words of each of `parts` in a call's packed upload (each starting at a
/// multiple of [`ALIGN_WORDS`]), and the words of the whole upload.
fn layout(parts: &[&[u64]]) -> Result<(Vec<(usize, usize)>, usize)> {
    let mut offs = Vec::with_capacity(parts.len());
    let mut total = 0usize;
    for p in parts {
        let off = total
            .checked_next_multiple_of(ALIGN_WORDS)
            .ok_or_else(overflow)?;
        total = off.checked_add(p.len()).ok_or_else(overflow)?;
        offs.push((off, p.len()));
    }
    Ok((offs, total))
}

/// `dst` ← the operands at their offsets, padding zeroed; in parallel from [`PAR_BYTES`] on.
fn pack(dst: &mut [u64], parts: &[&[u64]], offs: &[(usize, usize)]) {
    let mut pieces: Vec<(&mut [u64], &[u64])> = Vec::with_capacity(parts.len());
    let mut rest = dst;
    let mut at = 0;
    for (p, &(off, len)) in parts.iter().zip(offs) {
        let (pad, tail) = std::mem::take(&mut rest).split_at_mut(off - at);
        pad.fill(0);
        let (d, tail) = tail.split_at_mut(len);
        pieces.push((d, p));
        rest = tail;
        at = off + len;
    }
    rest.fill(0);
    let total: usize = offs.iter().map(|o| o.1).sum();
    if 8 * total < PAR_BYTES {
        for (d, s) in pieces {
            d.copy_from_slice(s);
        }
        return;
    }
    let w = PAR_PIECE / 8;
    pieces.into_par_iter().for_each(|(d, s)| {
        d.par_chunks_mut(w)
            .zip(s.par_chunks(w))
            .for_each(|(d, s)| d.copy_from_slice(s))
    });
}

/// A new `Vec` holding `src`; in parallel from [`PAR_BYTES`] on.
fn copy_out<T: IoWord>(src: &[T]) -> Vec<T> {
    if std::mem::size_of_val(src) < PAR_BYTES {
        return src.to_vec();
    }
    // Zeroed memory comes from the allocator's fresh pages without a pass over them.
    let mut out = vec![T::default(); src.len()];
    let w = PAR_PIECE / std::mem::size_of::<T>().max(1);
    out.par_chunks_mut(w)
        .zip(src.par_chunks(w))
        .for_each(|(d, s)| d.copy_from_slice(s));
    out
}

/// One device call's I/O: a set taken out of the instance's pool, the operands uploaded into
/// its device buffer ([`CudaBackend::io_upload`]); [`Io::download`] brings the outputs back.
/// Dropped without a completed download (an error or a panic on the way), it synchronizes the
/// stream before the set goes back (the module's reuse rule).
pub(crate) struct Io<'b> {
    be: &'b CudaBackend,
    /// The set, until `Drop` gives it back.
    set: Option<IoSet>,
    /// (offset, length) of each operand in the device buffer, in words.
    offs: Vec<(usize, usize)>,
    /// No copy of this call may still use the set's pinned memory.
    synced: bool,
    /// Events recorded and times counted ([`CudaBackend::set_io_timing`]).
    timed: bool,
    /// Host milliseconds of the packing.
    pack_ms: f64,
    /// Bytes uploaded.
    h2d_bytes: usize,
}

impl CudaBackend {
    /// Take a set out of the pool (or make one).
    fn io_take(&self) -> Result<IoSet> {
        if let Some(s) = crate::device::lock(&self.io_pool).pop() {
            return Ok(s);
        }
        Ok(IoSet {
            dev: self.alloc_zeros::<u64>(MIN_LEN)?,
            up: None,
            down: Downs::default(),
            events: None,
        })
    }

    /// Give a set back (dropped when the pool is full).
    fn io_give(&self, set: IoSet) {
        let mut pool = crate::device::lock(&self.io_pool);
        if pool.len() < MAX_SETS {
            pool.push(set);
        }
    }

    /// Pack `parts` into a pinned buffer and copy them to the device in one copy
    /// (asynchronous); operand i is then [`Io::input`]`(i)`.
    ///
    /// # Errors
    /// A driver error (allocating, copying); `ShapeOverflow` for operands beyond memory.
    pub(crate) fn io_upload(&self, parts: &[&[u64]]) -> Result<Io<'_>> {
        let (offs, total) = layout(parts)?;
        let timed = self.io_timing_on();
        let t = Instant::now();
        let mut io = Io {
            be: self,
            set: Some(self.io_take()?),
            offs,
            synced: true,
            timed,
            pack_ms: 0.0,
            h2d_bytes: 8 * total,
        };
        let Some(set) = io.set.as_mut() else {
            unreachable!("an Io holds its set until it is dropped")
        };
        if set.dev.len() < total {
            // The old buffer is freed in stream order, behind the work that used it.
            set.dev = self.alloc_zeros::<u64>(capacity(total)?)?;
        }
        if timed && set.events.is_none() {
            set.events = Some([self.event()?, self.event()?, self.event()?, self.event()?]);
        }
        let flags = cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED;
        let host: &mut [u64] = if total > 0 {
            let up = grow(self, &mut set.up, total, flags)?;
            let host = up.as_mut_slice().during("packing device call operands")?;
            pack(&mut host[..total], parts, &io.offs);
            &mut host[..total]
        } else {
            &mut []
        };
        io.pack_ms = t.elapsed().as_secs_f64() * 1e3;
        let ev = set.events.as_ref().filter(|_| timed);
        if let Some(ev) = ev {
            ev[0]
                .record(self.stream())
                .during("recording an I/O event")?;
        }
        if total > 0 {
            io.synced = false;
            // From here until a synchronization, the copy may read `host` (pinned memory).
            self.stream()
                .memcpy_htod(&*host, &mut set.dev.slice_mut(..total))
                .during("host-to-device copy")?;
        }
        if let Some(ev) = ev {
            ev[1]
                .record(self.stream())
                .during("recording an I/O event")?;
        }
        Ok(io)
    }

    /// Count the times of the device calls with host operands ([`CudaBackend::io_timing`]):
    /// four CUDA events per call, recorded on the stream (a few µs). Off by default.
    pub fn set_io_timing(&self, on: bool) {
        self.io_timed.store(on, Ordering::Relaxed);
    }

    fn io_timing_on(&self) -> bool {
        self.io_timed.load(Ordering::Relaxed)
    }

    /// The times counted so far on this instance (see [`CudaBackend::set_io_timing`]).
    pub fn io_timing(&self) -> IoTiming {
        *crate::device::lock(&self.io_times)
    }
}

impl Io<'_> {
    fn set(&self) -> &IoSet {
        // The set is taken only in `Drop`.
        match &self.set {
            Some(s) => s,
            None => unreachable!("an Io holds its set until it is dropped"),
        }
    }

    /// The device copy of operand `i` (empty operands: an empty view, never read).
    pub(crate) fn input(&self, i: usize) -> CudaView<'_, u64> {
        let (off, len) = self.offs[i];
        self.set().dev.slice(off..off + len)
    }

    /// A device view for a kernel argument the kernel never reads (one word of the input
    /// buffer; no allocation).
    pub(crate) fn none(&self) -> CudaView<'_, u64> {
        self.set().dev.slice(0..1)
    }

    /// Copy the first `len` elements of `d` back in one copy into pinned memory, wait for the
    /// stream, and return them in a new `Vec` (the set goes back to the pool).
    ///
    /// # Errors
    /// A driver error, including any error of earlier asynchronous work on the stream;
    /// `BadKey` for a `len` beyond `d`.
    pub(crate) fn download<T: IoWord>(mut self, d: &CudaSlice<T>, len: usize) -> Result<Vec<T>> {
        let be = self.be;
        if len > d.len() {
            return Err(CudaError::BadKey(format!(
                "download of {len} elements from a buffer of {}",
                d.len()
            )));
        }
        let Some(set) = self.set.as_mut() else {
            unreachable!("an Io holds its set until it is dropped")
        };
        let host: &mut [T] = if len > 0 {
            let p = grow(be, T::slot(&mut set.down), len, 0)?;
            &mut p.as_mut_slice().during("device-to-host copy")?[..len]
        } else {
            &mut []
        };
        let ev = set.events.as_ref().filter(|_| self.timed);
        if let Some(ev) = ev {
            ev[2].record(be.stream()).during("recording an I/O event")?;
        }
        if len > 0 {
            self.synced = false;
            be.stream()
                .memcpy_dtoh(&d.slice(..len), &mut *host)
                .during("device-to-host copy")?;
        }
        if let Some(ev) = ev {
            ev[3].record(be.stream()).during("recording an I/O event")?;
        }
        be.stream().synchronize().during("device-to-host copy")?;
        self.synced = true;
        let t = Instant::now();
        let out = copy_out(host);
        if let Some(ev) = ev {
            let ms = |a: &CudaEvent, b: &CudaEvent| -> Result<f64> {
                Ok(a.elapsed_ms(b).during("reading I/O event times")? as f64)
            };
            let (h2d, kernels, d2h) = (
                ms(&ev[0], &ev[1])?,
                ms(&ev[1], &ev[2])?,
                ms(&ev[2], &ev[3])?,
            );
            let mut tm = crate::device::lock(&be.io_times);
            tm.calls += 1;
            tm.pack_ms += self.pack_ms;
            tm.h2d_ms += h2d;
            tm.kernels_ms += kernels;
            tm.d2h_ms += d2h;
            tm.unpack_ms += t.elapsed().as_secs_f64() * 1e3;
            tm.h2d_bytes += self.h2d_bytes as u64;
            tm.d2h_bytes += std::mem::size_of_val(host) as u64;
        }
        Ok(out)
    }
}

impl Drop for Io<'_> {
    fn drop(&mut self) {
        let Some(set) = self.set.take() else { return };
        if !self.synced && self.be.stream().synchronize().is_err() {
            // A copy might still use the pinned memory: never reuse or free it.
            std::mem::forget(set);
            return;
        }
        self.be.io_give(set);
    }
}

#[cfg(test)]
mod tests {
    use super::{capacity, copy_out, layout, pack, ALIGN_WORDS, MIN_LEN, PAR_BYTES};

    /// Operands land at aligned offsets with zeroed padding, small and large (parallel) alike;
    /// copies out of pinned memory return exactly the source.
    #[test]
    fn pack_and_copy_out() {
        let big: Vec<u64> = (0..(PAR_BYTES / 8 + 77) as u64)
            .map(|i| i * 3 + 1)
            .collect();
        for parts in [
            vec![&[1u64, 2, 3][..], &[][..], &[4u64; 17][..], &[5u64][..]],
            vec![&[9u64; 5][..], &big[..], &[][..], &[7u64; 22][..]],
            vec![&[][..]],
        ] {
            let (offs, total) = layout(&parts).unwrap();
            let mut dst = vec![u64::MAX; total];
            pack(&mut dst, &parts, &offs);
            let mut at = 0;
            for (p, &(off, len)) in parts.iter().zip(&offs) {
                assert_eq!(off % ALIGN_WORDS, 0);
                assert!(off >= at);
                assert_eq!(len, p.len());
                assert!(dst[at..off].iter().all(|&w| w == 0), "padding zeroed");
                assert_eq!(&dst[off..off + len], *p);
                at = off + len;
            }
            assert_eq!(at, total);
            assert_eq!(copy_out(&dst), dst);
        }
        let bytes: Vec<u8> = (0..PAR_BYTES + 5).map(|i| i as u8).collect();
        assert_eq!(copy_out(&bytes), bytes);
        assert_eq!(copy_out::<u8>(&[]), Vec::<u8>::new());
    }

    #[test]
    fn capacities() {
        assert_eq!(capacity(0).unwrap(), MIN_LEN);
        assert_eq!(capacity(MIN_LEN + 1).unwrap(), 2 * MIN_LEN);
        assert_eq!(capacity(1 << 20).unwrap(), 1 << 20);
        assert!(capacity(usize::MAX).is_err());
    }
}
