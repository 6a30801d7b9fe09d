//! Small binary files exchanged between the client, the dealer and the servers: named
//! vectors of ring elements (input/output shares, masked weights Ŵ) with a checksum.
//!
//! ```text
//! "SUFV" | version u16 = 1 | records u32 | per record: name_len u32 | name | count u64 |
//! count × u64 LE | then checksum u64 of everything before it
//! ```
//!
//! A reader that knows what the file must hold ([`read_expecting`]) checks the file's size
//! against the exact size of that content before reading any of it, so a wrong or hostile
//! file costs neither memory nor time.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use suf_fss::keyfmt::checksum;

/// Named vectors.
pub type Named = BTreeMap<String, Vec<u64>>;

/// Fixed bytes of a file: magic, version, record count, checksum.
const FIXED: u64 = 4 + 2 + 4 + 8;
/// Longest record name accepted.
pub const MAX_NAME: usize = 4096;

/// The exact size of a file holding records with these names and element counts.
pub fn encoded_len<'a>(records: impl IntoIterator<Item = (&'a str, usize)>) -> u64 {
    records.into_iter().fold(FIXED, |acc, (name, count)| {
        acc.saturating_add(4 + 8 + name.len() as u64)
            .saturating_add((count as u64).saturating_mul(8))
    })
}

/// Encode named vectors.
pub fn encode(m: &Named) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"SUFV");
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(m.len() as u32).to_le_bytes());
    for (k, v) in m {
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    let c = checksum(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

/// Write named vectors to `path`. A new file is created owner-only (0600): these files hold
/// shares and masked weights.
pub fn write(path: &Path, m: &Named) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(&encode(m)))
        .with_context(|| format!("writing {}", path.display()))
}

/// Read named vectors from `path`, refusing anything malformed and any file larger than
/// `max_bytes` (checked before reading).
pub fn read(path: &Path, max_bytes: u64) -> Result<Named> {
    let b = read_at_most(path, max_bytes)?;
    parse(&b).with_context(|| format!("{} is not a valid SUF vector file", path.display()))
}

/// Read named vectors from `path` that must hold exactly the records `want` (name, element
/// count): the file's size is compared with the exact size of that content before anything
/// is read.
pub fn read_expecting(path: &Path, want: &[(String, usize)]) -> Result<Named> {
    let size = encoded_len(want.iter().map(|(n, c)| (n.as_str(), *c)));
    let m = read(path, size)?;
    let got: Vec<(String, usize)> = m.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    let mut want = want.to_vec();
    want.sort();
    if got != want {
        bail!(
            "{} holds {:?}, expected {:?} (made for another session?)",
            path.display(),
            got,
            want
        );
    }
    Ok(m)
}

/// The bytes of `path`, refusing a file larger than `max_bytes` before reading it (and
/// reading at most `max_bytes + 1` bytes even if it grows meanwhile).
pub fn read_at_most(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > max_bytes {
        bail!(
            "{} holds {len} bytes, more than the {max_bytes} expected (made for another session?)",
            path.display()
        );
    }
    let mut b = Vec::with_capacity(len as usize);
    f.take(max_bytes.saturating_add(1))
        .read_to_end(&mut b)
        .with_context(|| format!("reading {}", path.display()))?;
    if b.len() as u64 > max_bytes {
        bail!("{} grew while being read", path.display());
    }
    Ok(b)
}

/// The records of a client's input share for `prog`: one per program input.
pub fn input_records(prog: &suf_runtime::ir::Program) -> Vec<(String, usize)> {
    prog.inputs
        .iter()
        .map(|(k, id)| (k.clone(), prog.numel(*id)))
        .collect()
}

/// The records of a server's output share for `prog`: `out0`, `out1`, … in output order.
pub fn output_records(prog: &suf_runtime::ir::Program) -> Vec<(String, usize)> {
    prog.outputs
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("out{i}"), prog.numel(*id)))
        .collect()
}

/// The records of the masked private weights Ŵ for `prog`.
pub fn weight_records(prog: &suf_runtime::ir::Program) -> Vec<(String, usize)> {
    prog.private_weights
        .iter()
        .map(|(k, &(a, b))| (k.clone(), a.saturating_mul(b)))
        .collect()
}

/// Parse the bytes of a vector file, refusing anything malformed.
pub fn parse(b: &[u8]) -> Result<Named> {
    if b.len() < FIXED as usize || b.get(..4) != Some(b"SUFV") {
        bail!("bad magic or too short");
    }
    let (body, sum) = b.split_at(b.len() - 8);
    // Under cargo-fuzz the checksum is not verified, so that mutated files reach the parser.
    if !cfg!(fuzzing) && checksum(body) != u64::from_le_bytes(sum.try_into()?) {
        bail!("checksum mismatch (corrupted)");
    }
    let mut pos = 4usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or_else(|| anyhow::anyhow!("truncated"))?;
        let s = &body[pos..end];
        pos = end;
        Ok(s)
    };
    if u16::from_le_bytes(take(2)?.try_into()?) != 1 {
        bail!("unsupported version");
    }
    let recs = u32::from_le_bytes(take(4)?.try_into()?);
    let mut m = Named::new();
    for _ in 0..recs {
        let nl = u32::from_le_bytes(take(4)?.try_into()?) as usize;
        if nl > MAX_NAME {
            bail!("record name of {nl} bytes (at most {MAX_NAME})");
        }
        let name = String::from_utf8(take(nl)?.to_vec())?;
        let cnt = u64::from_le_bytes(take(8)?.try_into()?);
        let bytes = usize::try_from(cnt)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .ok_or_else(|| anyhow::anyhow!("record too large"))?;
        let vals = take(bytes)?
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        // Names are written in increasing order (a BTreeMap's): one encoding per content,
        // so a file with records reordered or repeated is not accepted.
        if m.last_key_value().is_some_and(|(last, _)| *last >= name) {
            bail!("record names out of order or repeated");
        }
        m.insert(name, vals);
    }
    if pos != body.len() {
        bail!("trailing bytes");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let mut m = Named::new();
        m.insert("x".into(), vec![1, 2, u64::MAX]);
        m.insert("B".into(), vec![]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.bin");
        write(&p, &m).unwrap();
        assert_eq!(read(&p, 1 << 20).unwrap(), m);
        let size = std::fs::metadata(&p).unwrap().len();
        assert_eq!(size, encoded_len([("x", 3), ("B", 0)]));
        let want = vec![("x".to_string(), 3), ("B".to_string(), 0)];
        assert_eq!(read_expecting(&p, &want).unwrap(), m);
        let e = read_expecting(&p, &[("x".to_string(), 4)]).unwrap_err();
        assert!(format!("{e:#}").contains("expected"), "{e:#}");
        let e = read(&p, size - 1).unwrap_err();
        assert!(format!("{e:#}").contains("more than the"), "{e:#}");
        let mut b = std::fs::read(&p).unwrap();
        b[12] ^= 1;
        assert!(parse(&b).is_err());
        assert!(parse(&b[..10]).is_err());
    }

    #[test]
    fn hostile_headers_are_errors() {
        // A record count near 2^64 elements, with a valid checksum.
        let mut b = b"SUFV".to_vec();
        b.extend(1u16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.push(b'x');
        b.extend((u64::MAX / 4).to_le_bytes());
        let c = checksum(&b);
        b.extend(c.to_le_bytes());
        assert!(parse(&b).is_err());
        // A name length of 4 GiB.
        let mut b = b"SUFV".to_vec();
        b.extend(1u16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(u32::MAX.to_le_bytes());
        let c = checksum(&b);
        b.extend(c.to_le_bytes());
        assert!(parse(&b).is_err());
        // The same name twice.
        let mut m = Named::new();
        m.insert("a".into(), vec![1]);
        let one = encode(&m);
        let mut b = one[..one.len() - 8].to_vec();
        b[6] = 2;
        b.extend_from_slice(&one[10..one.len() - 8]);
        let c = checksum(&b);
        b.extend(c.to_le_bytes());
        let e = parse(&b).unwrap_err();
        assert!(e.to_string().contains("repeated"), "{e}");
        // Two records in decreasing order (found by the share_file fuzzer: accepted, and
        // re-encoded differently).
        let mut m = Named::new();
        m.insert("a".into(), vec![1]);
        m.insert("b".into(), vec![2]);
        let sorted = encode(&m);
        let rec = |name: u8, v: u64| {
            let mut r = 1u32.to_le_bytes().to_vec();
            r.push(name);
            r.extend(1u64.to_le_bytes());
            r.extend(v.to_le_bytes());
            r
        };
        let mut b = sorted[..10].to_vec();
        b.extend(rec(b'b', 2));
        b.extend(rec(b'a', 1));
        let c = checksum(&b);
        b.extend(c.to_le_bytes());
        assert_eq!(b.len(), sorted.len());
        let e = parse(&b).unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
        assert_eq!(parse(&sorted).unwrap(), m);
    }
}
