//! FSS key batches in device memory.
//!
//! * **DPF**: a device batch is the serialized `suf_fss::keyfmt` body, uploaded byte for byte
//!   (the 64-byte header is parsed on the host and dropped); several batches of one width and
//!   party can be concatenated ([`crate::CudaBackend::upload_dpf_bytes`] with several parts):
//!   the sections are interleaved so that the result is exactly the body of the concatenated
//!   batch.
//! * **DCF** (key format version 2): the kernels read the body **where it lies**, at the
//!   offsets of [`suf_fss::dcf::DcfLayout`] (passed as kernel arguments): either inside a key
//!   stream made resident by [`suf_backend::Backend::attach_keys`] (no bytes move per call), or
//!   in a buffer holding one uploaded body ([`crate::CudaBackend::upload_dcf`], the path of
//!   keys that are not inside an attached stream, e.g. standalone gate tests). No host
//!   conversion exists.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView};
use suf_fss::dcf::DcfLayout;
use suf_fss::keyfmt::KeyKind;
use suf_fss::keyfmt::{HEADER_LEN, MAGIC, VERSION};

use crate::error::{CudaError, Result};

/// A batch of DPF keys (comparison / point function) in device memory: a buffer of its own,
/// or read in place inside a resident key stream.
#[derive(Debug)]
pub struct DeviceDpfKeys {
    pub(crate) body: KeyBody,
    pub(crate) n: u32,
    pub(crate) party: u8,
    pub(crate) count: usize,
}

impl DeviceDpfKeys {
    /// Input bits n.
    pub fn n(&self) -> u32 {
        self.n
    }
    /// The party (0 or 1).
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Body bytes (`count · key_bytes_per_key(n)`).
    pub fn bytes(&self) -> usize {
        self.count
            .saturating_mul(suf_fss::dpf::DpfKeys::key_bytes_per_key(self.n))
    }
    /// Whether the body lies inside a resident key stream (nothing was uploaded for it).
    pub fn in_stream(&self) -> bool {
        matches!(self.body, KeyBody::InStream { .. })
    }
}

/// Where a device key batch's body lies.
#[derive(Debug)]
pub(crate) enum KeyBody {
    /// A buffer of its own holding the uploaded body (padded, see [`dcf_alloc_len`]).
    Owned(CudaSlice<u8>),
    /// Inside a resident key stream, at a 16-aligned byte offset.
    InStream {
        /// The stream's device buffer.
        buf: Arc<CudaSlice<u8>>,
        /// Byte offset of the body.
        offset: usize,
    },
}

impl KeyBody {
    /// The device buffer that holds the body (for the ownership check).
    pub(crate) fn buffer(&self) -> &CudaSlice<u8> {
        match self {
            KeyBody::Owned(b) => b,
            KeyBody::InStream { buf, .. } => buf,
        }
    }
    /// The body as a device view starting at its first byte (to its buffer's end).
    pub(crate) fn view(&self) -> CudaView<'_, u8> {
        match self {
            KeyBody::Owned(b) => b.slice(..),
            KeyBody::InStream { buf, offset } => buf.slice(*offset..),
        }
    }
}

/// A batch of DCF keys (key format version 2) in device memory: read in place by the
/// kernels at the offsets of its [`DcfLayout`].
#[derive(Debug)]
pub struct DeviceDcfKeys {
    pub(crate) body: KeyBody,
    pub(crate) layout: DcfLayout,
    pub(crate) party: u8,
}

impl DeviceDcfKeys {
    /// Input bits n.
    pub fn n(&self) -> u32 {
        self.layout.n
    }
    /// Payload bits m.
    pub fn m(&self) -> u32 {
        self.layout.m
    }
    /// Payload elements per key.
    pub fn p(&self) -> usize {
        self.layout.p
    }
    /// The party (0 or 1).
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.layout.count
    }
    /// The body layout the kernels read.
    pub fn layout(&self) -> DcfLayout {
        self.layout
    }
    /// Body bytes.
    pub fn bytes(&self) -> usize {
        self.layout.total
    }
    /// Whether the body lies inside a resident key stream (nothing was uploaded for it).
    pub fn in_stream(&self) -> bool {
        matches!(self.body, KeyBody::InStream { .. })
    }
    /// The device buffer that holds the body (for the ownership check).
    pub(crate) fn buffer(&self) -> &CudaSlice<u8> {
        self.body.buffer()
    }
    /// The body as a device view starting at its first byte (to its buffer's end).
    pub(crate) fn view(&self) -> CudaView<'_, u8> {
        self.body.view()
    }
}

/// Readable device bytes a DCF body of `total` bytes needs from its start: a packed value's
/// second 8-byte word may reach up to 7 bytes past the last region (the kernels mask those
/// bits off), so round up to 8; the allocation of an uploaded body adds 16 for good measure.
pub(crate) fn dcf_readable(total: usize) -> Option<usize> {
    total.checked_next_multiple_of(8)
}

/// Device bytes allocated for one uploaded DCF body of `total` bytes (zero tail).
pub(crate) fn dcf_alloc_len(total: usize) -> Option<usize> {
    total.checked_next_multiple_of(16)?.checked_add(16)
}

/// The parsed header of one serialized batch (checksum not verified; see
/// [`crate::CudaBackend::upload_dpf_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub kind: KeyKind,
    pub party: u8,
    pub n: u32,
    pub params: [u32; 4],
    pub count: usize,
}

/// Parse and check a header and the body length (closed form per kind). Does not verify the
/// checksum: that is the key reader's job (`DpfKeys::from_bytes` / the key stream); what the
/// kernels' memory safety needs is only that the body has exactly the size its (n, params,
/// count) imply, which is checked here.
pub(crate) fn parse(bytes: &[u8], kind: KeyKind) -> Result<(Head, &[u8])> {
    if bytes.len() < HEADER_LEN {
        return Err(CudaError::BadKey(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte key header",
            bytes.len()
        )));
    }
    if bytes[..4] != MAGIC {
        return Err(CudaError::BadKey("bad magic".into()));
    }
    let u16at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    if u16at(4) != VERSION {
        return Err(CudaError::BadKey(format!("format version {}", u16at(4))));
    }
    if u16at(6) != kind as u16 {
        return Err(CudaError::BadKey(format!(
            "key kind {} where {kind:?} was expected",
            u16at(6)
        )));
    }
    let party = bytes[8];
    let n = u32at(16);
    if party > 1 || !(1..=64).contains(&n) {
        return Err(CudaError::BadKey(format!("party {party}, n {n}")));
    }
    let params = [u32at(20), u32at(24), u32at(28), u32at(32)];
    let count = usize::try_from(u64at(40))
        .map_err(|_| CudaError::BadKey("key count does not fit in memory".into()))?;
    let body_len = u64at(48);
    let per = match kind {
        KeyKind::Dpf => {
            if params != [1, n.min(7), 0, 0] {
                return Err(CudaError::BadKey(format!("DPF params {params:?}")));
            }
            Some(dpf_key_bytes(n))
        }
        _ => None,
    };
    let expected = per.and_then(|p| p.checked_mul(count));
    if expected != Some(body_len as usize) || bytes.len() - HEADER_LEN != body_len as usize {
        return Err(CudaError::BadKey(format!(
            "body of {} bytes (header says {body_len}); {count} keys need {expected:?}",
            bytes.len() - HEADER_LEN
        )));
    }
    Ok((
        Head {
            kind,
            party,
            n,
            params,
            count,
        },
        &bytes[HEADER_LEN..],
    ))
}

/// DPF body bytes per key: 16·d + 32 + ⌈d/8⌉.
pub(crate) fn dpf_key_bytes(n: u32) -> usize {
    let d = (n - n.min(7)) as usize;
    16 * d + 32 + d.div_ceil(8)
}

/// The sections of a body: (rows, bytes per key per row). Section s holds `rows` rows of
/// `count × bytes` each (level-major when rows > 1).
pub(crate) fn sections(h: &Head) -> Vec<(usize, usize)> {
    match h.kind {
        KeyKind::Dpf => {
            let d = (h.n - h.n.min(7)) as usize;
            vec![(1, 16), (d, 16), (1, 16), (1, d.div_ceil(8))]
        }
        _ => Vec::new(),
    }
}

/// For concatenating parts: the (source range in part i's body, destination offset in the
/// combined body) of every copy, for parts with `counts[i]` keys.
pub(crate) fn concat_plan(
    secs: &[(usize, usize)],
    counts: &[usize],
) -> Vec<(usize, usize, usize, usize)> {
    let total: usize = counts.iter().sum();
    let mut plan = Vec::new();
    // Offsets of each section in each part's body and in the combined body.
    let mut part_off = vec![0usize; counts.len()];
    let mut dst_off = 0usize;
    for &(rows, eb) in secs {
        for r in 0..rows {
            let mut key0 = 0usize;
            for (i, &c) in counts.iter().enumerate() {
                let len = c * eb;
                let src = part_off[i] + r * len;
                let dst = dst_off + r * total * eb + key0 * eb;
                if len > 0 {
                    plan.push((i, src, dst, len));
                }
                key0 += c;
            }
        }
        for (i, &c) in counts.iter().enumerate() {
            part_off[i] += rows * c * eb;
        }
        dst_off += rows * total * eb;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_core::prg::Csprng;
    use suf_fss::dpf;

    /// Concatenating serialized parts by the plan equals serializing the concatenated batch.
    #[test]
    fn concat_plan_equals_concatenated_batch() {
        let mut rng = Csprng::for_tests(3);
        for n in [5u32, 20, 50] {
            let alphas: Vec<u64> = (0..23).map(|_| rng.next_u64() & ((1 << n) - 1)).collect();
            let shadow = rng.clone();
            let (all, _) = dpf::gen_cmp_batch(n, &alphas, &mut rng).unwrap();
            // Regenerate the same keys in parts (roots are drawn sequentially per key pair).
            let mut r2 = shadow;
            let cuts = [0usize, 7, 7, 20, 23];
            let parts: Vec<Vec<u8>> = cuts
                .windows(2)
                .map(|w| {
                    dpf::gen_cmp_batch(n, &alphas[w[0]..w[1]], &mut r2)
                        .unwrap()
                        .0
                        .to_bytes()
                })
                .collect();
            let heads: Vec<(Head, &[u8])> = parts
                .iter()
                .map(|b| parse(b, KeyKind::Dpf).unwrap())
                .collect();
            let counts: Vec<usize> = heads.iter().map(|h| h.0.count).collect();
            let plan = concat_plan(&sections(&heads[0].0), &counts);
            let want = all.to_bytes();
            let mut got = vec![0u8; want.len() - HEADER_LEN];
            for (i, src, dst, len) in plan {
                got[dst..dst + len].copy_from_slice(&heads[i].1[src..src + len]);
            }
            assert_eq!(got, &want[HEADER_LEN..], "n={n}");
        }
    }

    /// The bytes a kernel may touch when it reads a packed value (an aligned 8-byte word, and
    /// the next one when the value straddles): inside the level's padded region for vcw, and
    /// within `dcf_readable(total)` of the body start for fcw, for every layout shape.
    #[test]
    fn packed_reads_stay_within_the_readable_bytes() {
        let end_of_read = |bit: usize, m: usize| -> usize {
            let w = bit / 64;
            let words = if bit % 64 + m > 64 { 2 } else { 1 };
            8 * (w + words)
        };
        for n in [1u32, 13, 50, 64] {
            for m in [1u32, 7, 13, 37, 50, 57, 63, 64] {
                for p in [1usize, 2, 3, 5, 16] {
                    for count in [1usize, 2, 3, 31, 33, 100] {
                        let l = DcfLayout::new(n, m, p, count).unwrap();
                        let (mu, last) = (m as usize, count * p - 1);
                        for i in 0..n as usize {
                            let level_end = l.vcw + (i + 1) * l.vcw_level_stride;
                            let e = end_of_read(l.vcw_bit(i, 0, 0) + last * mu, mu);
                            assert!(e <= level_end, "vcw n={n} m={m} p={p} count={count}");
                        }
                        let e = end_of_read(l.fcw_bit(0, 0) + last * mu, mu);
                        assert!(
                            e <= dcf_readable(l.total).unwrap(),
                            "fcw n={n} m={m} p={p} count={count}"
                        );
                        assert!(dcf_readable(l.total).unwrap() <= dcf_alloc_len(l.total).unwrap());
                        for off in [l.seed, l.scw, l.tcw_l, l.tcw_r, l.vcw, l.fcw] {
                            assert_eq!(off % 16, 0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        let mut rng = Csprng::for_tests(4);
        let (k, _) = dpf::gen_cmp_batch(20, &[1, 2, 3], &mut rng).unwrap();
        let b = k.to_bytes();
        assert!(parse(&b, KeyKind::Dpf).is_ok());
        assert!(parse(&b, KeyKind::Dcf).is_err());
        assert!(parse(&b[..b.len() - 1], KeyKind::Dpf).is_err());
        assert!(parse(&b[..10], KeyKind::Dpf).is_err());
        let mut c = b.clone();
        c[40] = 4; // count 4 with a body for 3
        assert!(parse(&c, KeyKind::Dpf).is_err());
        let mut c = b.clone();
        c[16] = 21; // n changed: size mismatch
        assert!(parse(&c, KeyKind::Dpf).is_err());
    }
}
