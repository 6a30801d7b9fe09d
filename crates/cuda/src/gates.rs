//! Compiled-gate components on the GPU ([`suf_backend::Backend::techc_eval`],
//! [`suf_backend::Backend::floor_eval`], [`suf_backend::Backend::sign_eval`],
//! [`suf_backend::Backend::bit_eval`]): per batch, x̂, the gate's tables and the host-held
//! dealer shares (or a seed's round keys) go up in one copy from pinned memory (`crate::io`),
//! the points, the DCF(s) and the recombination run as kernels on the instance's stream
//! (`kernels/gates.cu`, `kernels/fss.cu`) with no host synchronization between them, and only
//! the q outputs per element come back, in one copy into pinned memory.
//!
//! The DCF keys are read in place from the attached key stream when the view's origin names
//! one, else the body is uploaded ([`CudaBackend::device_dcf`], as `dcf_eval` does).
//!
//! **Shape rule** (chosen from the arguments, never after a device error): the CPU code of
//! `suf_backend::gate` runs when the batch is empty or when a DCF's payload is outside
//! [`CudaBackend::dcf_supported`] (technique (c) with (d + 1)·M > 1024 bits, i.e. more than
//! 8 AES value blocks per level). Descriptor errors are the CPU code's (the same checks run
//! first). A device failure is an error ([`suf_backend::BackendError::Device`]).
//!
//! [`suf_backend::Backend::bit_eval`] (nExp's clamp on a declared range) the same way: the
//! points, the DPF comparisons on the key body in place, the XOR recombination, as kernels.

use std::borrow::Cow;
use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use suf_backend::gate::{
    self, binom, mask, pow2, BitDesc, FloorDesc, FloorWrap, Shares, SignDesc, TechC, TechVar,
};
use suf_backend::{DcfKeys, DpfView};

use crate::error::{CudaError, DriverContext, Result};
use crate::io::Io;
use crate::keys::KeyBody;
use crate::CudaBackend;

/// Threads per block of the gate kernels.
const BLOCK: u32 = 256;

/// The kernels of `kernels/gates.cu`.
pub(crate) struct GateKernels {
    points: CudaFunction,
    bit: CudaFunction,
    unpack: CudaFunction,
    ctr: CudaFunction,
    techc: CudaFunction,
    floor: CudaFunction,
    sign: CudaFunction,
}

impl GateKernels {
    /// Look the kernels up in the compiled module.
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<Self> {
        let f = |name: &str| -> Result<CudaFunction> {
            module.load_function(name).during("looking up a kernel")
        };
        Ok(GateKernels {
            points: f("gate_points")?,
            bit: f("gate_bit")?,
            unpack: f("share_unpack")?,
            ctr: f("share_ctr")?,
            techc: f("gate_techc")?,
            floor: f("gate_floor")?,
            sign: f("gate_sign")?,
        })
    }
}

fn overflow(what: &'static str) -> CudaError {
    CudaError::Backend(suf_backend::BackendError::ShapeOverflow { what })
}

/// Bytes of dealer shares copied to the device for the stats: host values (packed and seeded
/// shares are produced on the device; packed ones outside an attached stream, which only
/// standalone tests pass, are not counted).
fn host_bytes(sh: &Shares<'_>) -> usize {
    match sh {
        Shares::Host(v) => 8 * v.len(),
        _ => 0,
    }
}

fn u32_of(v: usize, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| overflow(what))
}

/// Where a call's dealer shares come from (decided before the call's one upload).
enum ShareSrc<'a> {
    /// Values on the host (and packed values outside an attached stream, unpacked on the
    /// host): uploaded with the call's other operands.
    Host(Cow<'a, [u64]>),
    /// Party 0's packed values inside the attached key stream: unpacked there
    /// (`share_unpack`).
    Unpack {
        /// The packed bytes in place (8-aligned, round_up_8(len) readable).
        body: KeyBody,
        bits: u32,
        count: usize,
    },
    /// Party 1's seeded values: the seed's 44 AES round-key words, packed two per u64 (low
    /// half first), uploaded with the call's operands and expanded on the device
    /// (`share_ctr`).
    Seed {
        rk: [u64; 22],
        bits: u32,
        count: usize,
    },
    /// No values (never read).
    Empty,
}

impl ShareSrc<'_> {
    /// The words this source uploads.
    fn host(&self) -> &[u64] {
        match self {
            ShareSrc::Host(v) => v,
            ShareSrc::Seed { rk, .. } => rk,
            _ => &[],
        }
    }
}

/// The 44 AES-128 round-key words under `seed` as 22 u64 words, two per word with the lower
/// index in the low half: in little-endian memory (host and device) the same bytes as the
/// `[u32; 44]` that `share_ctr` reads.
fn rk_words(seed: [u8; 16]) -> [u64; 22] {
    let w = crate::aes_tables::round_keys(seed);
    std::array::from_fn(|i| w[2 * i] as u64 | (w[2 * i + 1] as u64) << 32)
}

/// A device operand of a gate kernel: a view of the call's input buffer, or a buffer made on
/// the device for this call.
enum DevBuf<'v> {
    View(CudaView<'v, u64>),
    Owned(CudaSlice<u64>),
}

impl DevBuf<'_> {
    fn view(&self) -> CudaView<'_, u64> {
        match self {
            DevBuf::View(v) => v.slice(..),
            DevBuf::Owned(b) => b.slice(..),
        }
    }
}

impl CudaBackend {
    fn gate_cfg(&self, cnt: usize) -> LaunchConfig {
        let cap = self.info().sm_count.max(1) as usize * 32;
        LaunchConfig {
            grid_dim: (cnt.div_ceil(BLOCK as usize).clamp(1, cap) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A device buffer of `len` (≥ 1 allocated) u64 that a kernel writes in full before
    /// anything reads it.
    fn gate_alloc(&self, len: usize) -> Result<CudaSlice<u64>> {
        // SAFETY: every caller passes the buffer to a kernel (or a DCF launch) that writes all
        // `len` elements before any read (the points, DCF and recombination kernels write each
        // index they own, one per element / point / output), and reads stay below `len`.
        unsafe { self.stream().alloc::<u64>(len.max(1)) }.during("allocating")
    }

    /// Launch `gate_points`: per element h = ((x̂ + off) & vmask) >> shift, then h ⊖ a per
    /// cut (masked to dmask); `cnt·(cuts + 1)` points.
    #[allow(clippy::too_many_arguments)]
    fn gate_points(
        &self,
        dx: &CudaView<'_, u64>,
        cnt: usize,
        off: u64,
        vmask: u64,
        shift: u32,
        dmask: u64,
        cuts: &CudaView<'_, u64>,
        ncuts: usize,
    ) -> Result<CudaSlice<u64>> {
        let per = ncuts.checked_add(1).ok_or(overflow("gate points"))?;
        let total = cnt.checked_mul(per).ok_or(overflow("gate points"))?;
        let mut pts = self.gate_alloc(total)?;
        let (cnt64, nc) = (cnt as u64, u32_of(ncuts, "gate cuts")?);
        if shift >= 64 {
            return Err(CudaError::Unsupported(format!(
                "gate points: shift {shift}"
            )));
        }
        // SAFETY: `gate_points(const u64* xhat, u64 cnt, u64 off, u64 vmask, u32 shift, u64
        // dmask, const u64* cuts, u32 ncuts, u64* pts)`: xhat holds cnt elements, cuts ncuts
        // (read only below ncuts; with none, a word of a live device buffer that is never
        // read), pts cnt·(ncuts + 1) (allocated above); shift < 64.
        unsafe {
            self.stream()
                .launch_builder(&self.gate_kernels().points)
                .arg(dx)
                .arg(&cnt64)
                .arg(&off)
                .arg(&vmask)
                .arg(&shift)
                .arg(&dmask)
                .arg(cuts)
                .arg(&nc)
                .arg(&mut pts)
                .launch(self.gate_cfg(cnt))
        }
        .during("launching gate_points")?;
        Ok(pts)
    }

    /// DCF outputs of `keys` at the device points `pts` (`t` per key) into a new device
    /// buffer (`count·t·p`), asynchronous; the keys in place or uploaded (counted in the
    /// stats by [`CudaBackend::device_dcf`]).
    fn gate_dcf(
        &self,
        keys: &DcfKeys<'_>,
        pts: &CudaSlice<u64>,
        npts: usize,
        t: usize,
    ) -> Result<CudaSlice<u64>> {
        let (dk, _) = self.device_dcf(keys)?;
        let outs = npts
            .checked_mul(keys.p())
            .ok_or(overflow("gate DCF outputs"))?;
        let mut dv = self.gate_alloc(outs)?;
        self.dcf_eval_device(&dk, pts, npts, t, &mut dv)?;
        Ok(dv)
    }

    /// Where the dealer shares `sh` come from: party 0's packed values in place in the
    /// resident key stream, party 1's from their seed (AES-128-CTR on the device), host
    /// values (and packed values outside an attached stream) uploaded. Checked here, before
    /// any device work.
    fn share_source<'a>(&self, sh: &Shares<'a>) -> Result<ShareSrc<'a>> {
        match *sh {
            Shares::Packed { bytes, bits, count } if count > 0 => {
                let len = bytes.len();
                let readable = len.checked_next_multiple_of(8).ok_or(overflow("shares"))?;
                let Some(body) = self.in_stream(bytes.origin, len, readable, 8)? else {
                    return Ok(ShareSrc::Host(sh.to_host().map_err(CudaError::Backend)?));
                };
                if !(1..=64).contains(&bits) || suf_core::pack::packed_len(count, bits) != len {
                    return Err(CudaError::BadKey(format!(
                        "{len} bytes of packed shares for {count} values of {bits} bits"
                    )));
                }
                Ok(ShareSrc::Unpack { body, bits, count })
            }
            Shares::Seed { seed, bits, count } if count > 0 => {
                if !(1..=64).contains(&bits) {
                    return Err(CudaError::BadKey(format!("seeded shares of {bits} bits")));
                }
                Ok(ShareSrc::Seed {
                    rk: rk_words(seed),
                    bits,
                    count,
                })
            }
            Shares::Host(v) => Ok(ShareSrc::Host(Cow::Borrowed(v))),
            _ => Ok(ShareSrc::Empty),
        }
    }

    /// The dealer shares of `src` on the device (asynchronous): host values as operand `i` of
    /// the call's upload `io` (where [`ShareSrc::host`] put them), packed values unpacked in
    /// place, seeded values expanded from the uploaded round keys into a new buffer.
    fn device_shares<'v>(
        &self,
        src: &ShareSrc<'_>,
        io: &'v Io<'_>,
        i: usize,
    ) -> Result<DevBuf<'v>> {
        match src {
            ShareSrc::Unpack { body, bits, count } => {
                let cnt = *count;
                let mut out = self.gate_alloc(cnt)?;
                let (cnt64, m) = (cnt as u64, mask(*bits));
                let w = body.view();
                // SAFETY: `share_unpack(const u64* w, u64 cnt, u32 k, u64 mask, u64* out)`:
                // w starts 8-aligned inside the attached stream with round_up_8(len) readable
                // bytes (`in_stream`), len = packed_len(cnt, k) so every word holding a bit of
                // value e < cnt is readable; out holds cnt elements; 1 ≤ k ≤ 64.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().unpack)
                        .arg(&w)
                        .arg(&cnt64)
                        .arg(bits)
                        .arg(&m)
                        .arg(&mut out)
                        .launch(self.gate_cfg(cnt))
                }
                .during("launching share_unpack")?;
                Ok(DevBuf::Owned(out))
            }
            ShareSrc::Seed { bits, count, .. } => {
                let cnt = *count;
                let rk = io.input(i);
                let mut out = self.gate_alloc(cnt)?;
                let (cnt64, m) = (cnt as u64, mask(*bits));
                let cfg = LaunchConfig {
                    shared_mem_bytes: 4096 + 44 * 4,
                    ..self.gate_cfg(cnt)
                };
                // SAFETY: `share_ctr(const u32* rk, u64 cnt, u64 mask, u64* out)`: rk is the
                // call's operand i, 22 u64 words (8-aligned) holding the 44 round-key words
                // in order (word j = rk[2j] | rk[2j + 1] << 32: little-endian memory, as on
                // the device, puts rk[2j] first), copied up before this launch on the same
                // stream; out holds cnt elements; the dynamic shared memory holds the four
                // T-tables (4 KB) and the round keys, as the kernel indexes them.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().ctr)
                        .arg(&rk)
                        .arg(&cnt64)
                        .arg(&m)
                        .arg(&mut out)
                        .launch(cfg)
                }
                .during("launching share_ctr")?;
                Ok(DevBuf::Owned(out))
            }
            ShareSrc::Host(v) if !v.is_empty() => Ok(DevBuf::View(io.input(i))),
            ShareSrc::Host(_) | ShareSrc::Empty => Ok(DevBuf::View(io.none())),
        }
    }

    /// [`suf_backend::Backend::techc_eval`] on the device (see the module docs).
    pub(crate) fn gate_techc(
        &self,
        d: &TechC<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        rpow: Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        let cnt = xhat.len();
        d.check(party, keys, &rpow, cnt)?;
        let p = d.degree + 1;
        if cnt == 0 || !Self::dcf_supported(d.ring, p) {
            return self.on_host("techc_eval", || {
                gate::techc_host(self, d, party, keys, rpow, xhat)
            });
        }
        let q = d.outputs;
        self.on_device(
            "techc_eval",
            8 * xhat.len() + host_bytes(&rpow),
            8 * q * cnt,
            || -> Result<Vec<u64>> {
                let m = d.intervals();
                let out_len = q.checked_mul(cnt).ok_or(overflow("gate outputs"))?;
                let npts = cnt.checked_mul(m).ok_or(overflow("gate points"))?;
                // One upload of the public tables: cuts | centres | coefficients | C(j, k).
                let bin: Vec<u64> = (0..p * p).map(|x| binom(x / p, x % p)).collect();
                let mut tab = Vec::with_capacity(d.cuts.len() + m + d.coeffs.len() + p * p);
                tab.extend_from_slice(d.cuts);
                tab.extend_from_slice(d.centers);
                tab.extend_from_slice(d.coeffs);
                tab.extend_from_slice(&bin);
                let o_cent = d.cuts.len();
                let o_coef = o_cent + m;
                let o_bin = o_coef + d.coeffs.len();
                // One copy up: tables | x̂ | host shares of r^k (or the seed's round keys).
                let src = self.share_source(&rpow)?;
                let io = self.io_upload(&[&tab, xhat, src.host()])?;
                let dtab = io.input(0);
                let dx = io.input(1);
                let drp = self.device_shares(&src, &io, 2)?;
                // (`tab` holds at least m + p² ≥ 2 elements, so this view is never empty.)
                let dcuts = dtab.slice(0..o_cent.max(1));
                let vm = mask(d.bits);
                let pts = self.gate_points(
                    &dx,
                    cnt,
                    d.offset,
                    vm,
                    d.shift,
                    mask(d.cmp_bits()),
                    &dcuts,
                    d.cuts.len(),
                )?;
                let dv = self.gate_dcf(keys, &pts, npts, m)?;
                let mut dout = self.gate_alloc(out_len)?;
                let rm = mask(d.ring);
                let (cnt64, two_k) = (cnt as u64, pow2(d.bits) & rm);
                let view_var = (d.var == TechVar::View) as u32;
                let need_u = d.wrap_terms() as u32;
                let (party32, d32) = (party as u32, u32_of(d.degree, "degree")?);
                let (q32, m32) = (u32_of(q, "gate outputs")?, u32_of(m, "gate intervals")?);
                let centers = dtab.slice(o_cent..o_coef);
                let coeffs = dtab.slice(o_coef..o_bin);
                let bins = dtab.slice(o_bin..o_bin + p * p);
                let drp = drp.view();
                // SAFETY: `gate_techc(const u64* xhat, u64 cnt, u64 off, u64 vmask, u32
                // shift, u32 view_var, u32 need_u, u64 two_k, u64 rm, u32 party, u32 d, u32
                // q, u32 m, const u64* cuts, const u64* centers, const u64* coeffs, const
                // u64* bin, const u64* rpow, const u64* dv, u64* out)`, in that order. Sizes
                // (checked by `TechC::check` and above): xhat cnt, cuts m − 1, centres m,
                // coefficients m·q·p, bin p·p (all four views of the call's input buffer,
                // copied up before the launches on the same stream), rpow cnt·d (a word of
                // the input buffer when d = 0: read only for k ≥ 1 ≤ d), dv cnt·m·p (the
                // DCF's output), out q·cnt; p = d + 1 ≤ 9 = the kernel's local arrays;
                // shift < 64.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().techc)
                        .arg(&dx)
                        .arg(&cnt64)
                        .arg(&d.offset)
                        .arg(&vm)
                        .arg(&d.shift)
                        .arg(&view_var)
                        .arg(&need_u)
                        .arg(&two_k)
                        .arg(&rm)
                        .arg(&party32)
                        .arg(&d32)
                        .arg(&q32)
                        .arg(&m32)
                        .arg(&dcuts)
                        .arg(&centers)
                        .arg(&coeffs)
                        .arg(&bins)
                        .arg(&drp)
                        .arg(&dv)
                        .arg(&mut dout)
                        .launch(self.gate_cfg(cnt))
                }
                .during("launching gate_techc")?;
                io.download(&dout, out_len)
            },
        )
    }

    /// [`suf_backend::Backend::floor_eval`] on the device (see the module docs).
    pub(crate) fn gate_floor(
        &self,
        d: &FloorDesc<'_>,
        party: u8,
        ckeys: &DcfKeys<'_>,
        wrap: FloorWrap<'_, '_>,
        sh: Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        let cnt = xhat.len();
        d.check(party, ckeys, &wrap, &sh, cnt)?;
        let p = d.payload();
        if cnt == 0 || !Self::dcf_supported(d.ring, p) {
            return self.on_host("floor_eval", || {
                gate::floor_host(self, d, party, ckeys, wrap, sh, xhat)
            });
        }
        let q = d.gamma.len();
        let free_bytes = match wrap {
            FloorWrap::Free(fr) => host_bytes(&fr),
            _ => 0,
        };
        self.on_device(
            "floor_eval",
            8 * xhat.len() + host_bytes(&sh) + free_bytes,
            8 * q * cnt,
            || -> Result<Vec<u64>> {
                let out_len = q.checked_mul(cnt).ok_or(overflow("gate outputs"))?;
                let mut tab = Vec::with_capacity(2 * q);
                tab.extend_from_slice(d.gamma);
                tab.extend_from_slice(d.kappa);
                // One copy up: gamma | kappa | x̂ | host shares | host free-wrap shares (or
                // the seeds' round keys).
                let src = self.share_source(&sh)?;
                let src_fr = match wrap {
                    FloorWrap::Free(fr) => self.share_source(&fr)?,
                    _ => ShareSrc::Empty,
                };
                let io = self.io_upload(&[&tab, xhat, src.host(), src_fr.host()])?;
                let dtab = io.input(0);
                let dx = io.input(1);
                let dsh = self.device_shares(&src, &io, 2)?;
                let vm = mask(d.bits);
                // The view value y: the c-DCF reads its low t bits, the wrap DCF all K (each
                // DCF kernel reduces its points to its own width).
                let ys = self.gate_points(&dx, cnt, d.offset, vm, 0, vm, &io.none(), 0)?;
                let cv = self.gate_dcf(ckeys, &ys, cnt, 1)?;
                let (wv, mode) = match wrap {
                    FloorWrap::Dcf(w) => (DevBuf::Owned(self.gate_dcf(w, &ys, cnt, 1)?), 0u32),
                    FloorWrap::Free(_) => (self.device_shares(&src_fr, &io, 3)?, 1u32),
                    FloorWrap::Drop => (DevBuf::View(io.none()), 2u32),
                };
                let mut dout = self.gate_alloc(out_len)?;
                let (cnt64, sel) = (cnt as u64, d.select as u32);
                let ntop = d.ring - 1;
                let fk = pow2(d.bits - d.shift);
                let nm = mask(d.ring);
                let (party32, q32) = (party as u32, u32_of(q, "gate outputs")?);
                let gamma = dtab.slice(0..q);
                let kappa = dtab.slice(q..2 * q);
                let (wv, dsh) = (wv.view(), dsh.view());
                // SAFETY: `gate_floor(const u64* xhat, u64 cnt, u64 off, u64 vmask, u32 shift,
                // u32 sel, u32 wrap_mode, u32 ntop, u64 fk, u64 nm, u32 party, u32 q, const
                // u64* gamma, const u64* kappa, const u64* cv, const u64* wv, const u64* sh,
                // u64* out)`, in that order. Sizes (`FloorDesc::check`): xhat cnt, gamma and
                // kappa q (views of the call's input buffer, copied up before the launches on
                // the same stream), cv cnt·p (the c-DCF's output), wv cnt·p (the wrap DCF's
                // output or the free-wrap shares; a word of the input buffer, never read, in
                // mode 2), sh cnt·(3 or 1), out q·cnt; shift < K ≤ 64 and ntop = n − 1 < 64.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().floor)
                        .arg(&dx)
                        .arg(&cnt64)
                        .arg(&d.offset)
                        .arg(&vm)
                        .arg(&d.shift)
                        .arg(&sel)
                        .arg(&mode)
                        .arg(&ntop)
                        .arg(&fk)
                        .arg(&nm)
                        .arg(&party32)
                        .arg(&q32)
                        .arg(&gamma)
                        .arg(&kappa)
                        .arg(&cv)
                        .arg(&wv)
                        .arg(&dsh)
                        .arg(&mut dout)
                        .launch(self.gate_cfg(cnt))
                }
                .during("launching gate_floor")?;
                io.download(&dout, out_len)
            },
        )
    }

    /// [`suf_backend::Backend::sign_eval`] on the device (see the module docs).
    pub(crate) fn gate_sign(
        &self,
        d: &SignDesc<'_>,
        party: u8,
        keys: &DcfKeys<'_>,
        sh: Shares<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        let cnt = xhat.len();
        d.check(party, keys, &sh, cnt)?;
        let slope = d.has_slope();
        let p = 1 + slope as usize;
        if cnt == 0 || !Self::dcf_supported(d.ring, p) {
            return self.on_host("sign_eval", || {
                gate::sign_host(self, d, party, keys, sh, xhat)
            });
        }
        let q = d.lo.len();
        self.on_device(
            "sign_eval",
            8 * xhat.len() + host_bytes(&sh),
            8 * q * cnt,
            || -> Result<Vec<u64>> {
                let out_len = q.checked_mul(cnt).ok_or(overflow("gate outputs"))?;
                let mut tab = Vec::with_capacity(4 * q);
                for &(a, b) in d.lo.iter().chain(d.hi) {
                    tab.push(a);
                    tab.push(b);
                }
                // One copy up: (lo | hi) pairs | x̂ | host shares (or the seed's round keys).
                let src = self.share_source(&sh)?;
                let io = self.io_upload(&[&tab, xhat, src.host()])?;
                let dtab = io.input(0);
                let dx = io.input(1);
                let dsh = self.device_shares(&src, &io, 2)?;
                let h = d.bits - 1;
                let hm = mask(h);
                let pts = self.gate_points(&dx, cnt, d.offset, hm, 0, hm, &io.none(), 0)?;
                let ev = self.gate_dcf(keys, &pts, cnt, 1)?;
                let mut dout = self.gate_alloc(out_len)?;
                let (cnt64, slope32) = (cnt as u64, slope as u32);
                let (kmask, rm) = (mask(d.bits), mask(d.ring));
                let (party32, q32) = (party as u32, u32_of(q, "gate outputs")?);
                let lo = dtab.slice(0..2 * q);
                let hi = dtab.slice(2 * q..4 * q);
                let dsh = dsh.view();
                // SAFETY: `gate_sign(const u64* xhat, u64 cnt, u64 off, u64 kmask, u32 h, u32
                // slope, u64 rm, u32 party, u32 q, const u64* lo, const u64* hi, const u64*
                // ev, const u64* sh, u64* out)`, in that order. Sizes (`SignDesc::check`):
                // xhat cnt, lo and hi 2·q (pairs; views of the call's input buffer, copied up
                // before the launches on the same stream), ev cnt·p (the DCF's output), sh
                // cnt·(3 or 1), out q·cnt; h = K − 1 < 64.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().sign)
                        .arg(&dx)
                        .arg(&cnt64)
                        .arg(&d.offset)
                        .arg(&kmask)
                        .arg(&h)
                        .arg(&slope32)
                        .arg(&rm)
                        .arg(&party32)
                        .arg(&q32)
                        .arg(&lo)
                        .arg(&hi)
                        .arg(&ev)
                        .arg(&dsh)
                        .arg(&mut dout)
                        .launch(self.gate_cfg(cnt))
                }
                .during("launching gate_sign")?;
                io.download(&dout, out_len)
            },
        )
    }

    /// [`suf_backend::Backend::bit_eval`] on the device (see the module docs).
    pub(crate) fn gate_bit(
        &self,
        d: &BitDesc<'_>,
        party: u8,
        keys: &DpfView<'_>,
        xhat: &[u64],
    ) -> suf_backend::Result<Vec<u64>> {
        let cnt = xhat.len();
        d.check(party, keys, cnt)?;
        if cnt == 0 {
            return self.on_host("bit_eval", || gate::bit_host(self, d, party, keys, xhat));
        }
        self.on_device(
            "bit_eval",
            8 * xhat.len(),
            8 * cnt,
            || -> Result<Vec<u64>> {
                let nc = d.cuts.len();
                let m = nc.checked_add(1).ok_or(overflow("gate points"))?;
                let npts = cnt.checked_mul(m).ok_or(overflow("gate points"))?;
                // One upload of the public tables: cuts | flips.
                let mut tab = Vec::with_capacity(2 * nc);
                tab.extend_from_slice(d.cuts);
                tab.extend(d.values.windows(2).map(|w| (w[0] != w[1]) as u64));
                // One copy up: (cuts | flips) | x̂.
                let io = self.io_upload(&[&tab, xhat])?;
                let dtab = io.input(0);
                let dx = io.input(1);
                let vm = mask(d.bits);
                let hm = mask(d.high_bits());
                let pts = self.gate_points(&dx, cnt, d.offset, vm, d.shift, hm, &dtab, nc)?;
                let (dk, _) = self.device_dpf(keys)?;
                let mut c = self.alloc_zeros::<u8>(npts)?;
                self.dpf_eval_device(&dk, &pts, npts, m, false, &mut c)?;
                let mut dout = self.gate_alloc(cnt)?;
                let (cnt64, party32, v0) = (cnt as u64, party as u32, d.values[0] as u32);
                let nc32 = u32_of(nc, "gate cuts")?;
                // SAFETY: `gate_bit(const u64* xhat, u64 cnt, u64 off, u64 vmask, u32 shift, u32
                // party, u32 v0, const u64* tab, u32 ncuts, const u8* c, u64* out)`, in that order.
                // Sizes (`BitDesc::check`): xhat cnt, tab 2·ncuts (views of the call's input
                // buffer, copied up before the launches on the same stream; read only below
                // 2·ncuts), c cnt·(ncuts + 1) (the DPF's output), out cnt; shift < K ≤ 64.
                unsafe {
                    self.stream()
                        .launch_builder(&self.gate_kernels().bit)
                        .arg(&dx)
                        .arg(&cnt64)
                        .arg(&d.offset)
                        .arg(&vm)
                        .arg(&d.shift)
                        .arg(&party32)
                        .arg(&v0)
                        .arg(&dtab)
                        .arg(&nc32)
                        .arg(&c)
                        .arg(&mut dout)
                        .launch(self.gate_cfg(cnt))
                }
                .during("launching gate_bit")?;
                io.download(&dout, cnt)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    /// The packed round keys are byte for byte the u32 round keys (little-endian).
    #[test]
    fn round_key_words_are_the_u32_bytes() {
        let seed: [u8; 16] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let w32: Vec<u8> = crate::aes_tables::round_keys(seed)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let w64: Vec<u8> = super::rk_words(seed)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(w64, w32);
    }
}
