//! FSS key batches resident in device memory.
//!
//! A device key batch is the **serialized body** of a `suf_fss::keyfmt` key batch, uploaded
//! byte for byte (the 64-byte header is parsed on the host and dropped). The body is already
//! structure-of-arrays and level-major, so it is also the layout the kernels read: no
//! transformation on the host, and the same bytes serve the key file, the network and the
//! GPU. Several batches of the same kind, width and party can be concatenated into one device
//! batch ([`crate::CudaBackend::upload_dpf_bytes`] with several parts): the sections are
//! interleaved so that the result is exactly the body of the concatenated batch.

use cudarc::driver::CudaSlice;
use suf_fss::dcf::DcfKeys;
use suf_fss::keyfmt::KeyKind;
use suf_fss::keyfmt::{write_key, HEADER_LEN, MAGIC, VERSION};

use crate::error::{CudaError, Result};

/// A batch of DPF keys (comparison / point function) in device memory.
#[derive(Debug)]
pub struct DeviceDpfKeys {
    pub(crate) body: CudaSlice<u8>,
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
    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.body.len()
    }
}

/// A batch of DCF keys in device memory.
#[derive(Debug)]
pub struct DeviceDcfKeys {
    pub(crate) body: CudaSlice<u8>,
    pub(crate) n: u32,
    pub(crate) m: u32,
    pub(crate) p: usize,
    pub(crate) party: u8,
    pub(crate) count: usize,
}

impl DeviceDcfKeys {
    /// Input bits n.
    pub fn n(&self) -> u32 {
        self.n
    }
    /// Payload bits m.
    pub fn m(&self) -> u32 {
        self.m
    }
    /// Payload elements per key.
    pub fn p(&self) -> usize {
        self.p
    }
    /// The party (0 or 1).
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Keys in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.body.len()
    }
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
        KeyKind::Dcf => {
            let [m, p, z0, z1] = params;
            if !(1..=64).contains(&m) || p == 0 || p > 1 << 16 || z0 != 0 || z1 != 0 {
                return Err(CudaError::BadKey(format!("DCF params {params:?}")));
            }
            dcf_key_bytes(n, p as usize)
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

/// TODO(keys-v2): the DCF kernels still read the format-1 body (u64 correction words, no
/// padding: seed, scw, tcw_l, tcw_r, vcw n × count × p u64, fcw count × p u64). Until they take
/// the `suf_fss::dcf::DcfLayout` offsets and read the bit-packed words of a version-2 body in
/// place, a batch is converted to that body on the host here (header: `keyfmt` with the
/// kernels' body, so [`parse`] checks it against [`dcf_key_bytes`]).
pub(crate) fn dcf_kernel_bytes(k: &DcfKeys<'_>) -> Vec<u8> {
    let (n, p, cnt) = (k.n() as usize, k.p(), k.count());
    let mut body = Vec::with_capacity(cnt * dcf_key_bytes(k.n(), p).unwrap_or(0));
    for i in 0..cnt {
        body.extend_from_slice(&k.seed(i).to_le_bytes());
    }
    for lvl in 0..n {
        for i in 0..cnt {
            body.extend_from_slice(&k.scw(lvl, i).to_le_bytes());
        }
    }
    for side in 0..2 {
        for i in 0..cnt {
            let (l, r) = k.tcw(i);
            body.extend_from_slice(&[l, r][side].to_le_bytes());
        }
    }
    for lvl in 0..n {
        for i in 0..cnt {
            for q in 0..p {
                body.extend_from_slice(&k.vcw(lvl, i, q).to_le_bytes());
            }
        }
    }
    for i in 0..cnt {
        for q in 0..p {
            body.extend_from_slice(&k.fcw(i, q).to_le_bytes());
        }
    }
    write_key(
        KeyKind::Dcf,
        k.party(),
        k.n(),
        [k.m(), p as u32, 0, 0],
        cnt as u64,
        &body,
    )
}

/// DCF body bytes per key in the kernels' (format-1) layout: 16 + 16n + 16 + 8p(n + 1).
pub(crate) fn dcf_key_bytes(n: u32, p: usize) -> Option<usize> {
    let n = n as usize;
    8usize
        .checked_mul(p)?
        .checked_mul(n + 1)?
        .checked_add(32 + 16 * n)
}

/// The sections of a body: (rows, bytes per key per row). Section s holds `rows` rows of
/// `count × bytes` each (level-major when rows > 1).
pub(crate) fn sections(h: &Head) -> Vec<(usize, usize)> {
    match h.kind {
        KeyKind::Dpf => {
            let d = (h.n - h.n.min(7)) as usize;
            vec![(1, 16), (d, 16), (1, 16), (1, d.div_ceil(8))]
        }
        KeyKind::Dcf => {
            let n = h.n as usize;
            let p = h.params[1] as usize;
            vec![(1, 16), (n, 16), (1, 8), (1, 8), (n, 8 * p), (1, 8 * p)]
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
    use suf_fss::{dcf, dpf};

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
        // DCF with p = 2.
        let alphas: Vec<u64> = (0..9).map(|_| rng.next_u64() & 0xfff).collect();
        let betas: Vec<u64> = (0..18).map(|_| rng.next_u64()).collect();
        let shadow = rng.clone();
        let (all, _) = dcf::gen_batch(12, 40, 2, &alphas, &betas, &mut rng).unwrap();
        let mut r2 = shadow;
        let a = dcf::gen_batch(12, 40, 2, &alphas[..4], &betas[..8], &mut r2)
            .unwrap()
            .0;
        let b = dcf::gen_batch(12, 40, 2, &alphas[4..], &betas[8..], &mut r2)
            .unwrap()
            .0;
        let (ab, bb) = (dcf_kernel_bytes(&a), dcf_kernel_bytes(&b));
        let ha = parse(&ab, KeyKind::Dcf).unwrap();
        let hb = parse(&bb, KeyKind::Dcf).unwrap();
        let plan = concat_plan(&sections(&ha.0), &[4, 5]);
        let want = dcf_kernel_bytes(&all);
        let mut got = vec![0u8; want.len() - HEADER_LEN];
        for (i, src, dst, len) in plan {
            let body = if i == 0 { ha.1 } else { hb.1 };
            got[dst..dst + len].copy_from_slice(&body[src..src + len]);
        }
        assert_eq!(got, &want[HEADER_LEN..]);
    }

    /// The kernels' body holds the same correction words as the version-2 batch, and a
    /// version-2 batch itself is refused by the kernels' parser.
    #[test]
    fn kernel_body_of_a_v2_batch() {
        let mut rng = Csprng::for_tests(5);
        let (k, _) =
            dcf::gen_batch(10, 13, 2, &[5, 700, 3], &[1, 2, 3, 4, 5, 6], &mut rng).unwrap();
        let b = dcf_kernel_bytes(&k);
        let (h, body) = parse(&b, KeyKind::Dcf).unwrap();
        assert_eq!((h.n, h.count, h.params), (10, 3, [13, 2, 0, 0]));
        let u64at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap());
        // vcw of level 4, key 1, element 1 and fcw of key 2, element 0.
        let vcw = 16 * 3 + 16 * 10 * 3 + 16 * 3;
        assert_eq!(u64at(vcw + 8 * ((4 * 3 + 1) * 2 + 1)), k.vcw(4, 1, 1));
        assert_eq!(u64at(vcw + 8 * 10 * 3 * 2 + 8 * 4), k.fcw(2, 0));
        assert!(parse(&k.to_bytes(), KeyKind::Dcf).is_err());
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
