//! Small binary files exchanged between the client, the dealer and the servers: named
//! vectors of ring elements (input/output shares, masked weights Ŵ) with a checksum.
//!
//! ```text
//! "SUFV" | version u16 = 1 | records u32 | per record: name_len u32 | name | count u64 |
//! count × u64 LE | then checksum u64 of everything before it
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use suf_fss::keyfmt::checksum;

/// Named vectors.
pub type Named = BTreeMap<String, Vec<u64>>;

/// Write named vectors to `path`.
pub fn write(path: &Path, m: &Named) -> Result<()> {
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
    std::fs::write(path, b).with_context(|| format!("writing {}", path.display()))
}

/// Read named vectors from `path`, refusing anything malformed.
pub fn read(path: &Path) -> Result<Named> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&b).with_context(|| format!("{} is not a valid SUF vector file", path.display()))
}

fn parse(b: &[u8]) -> Result<Named> {
    if b.len() < 18 || &b[..4] != b"SUFV" {
        bail!("bad magic or too short");
    }
    let (body, sum) = b.split_at(b.len() - 8);
    if checksum(body) != u64::from_le_bytes(sum.try_into()?) {
        bail!("checksum mismatch (corrupted)");
    }
    if u16::from_le_bytes([body[4], body[5]]) != 1 {
        bail!("unsupported version");
    }
    let recs = u32::from_le_bytes(body[6..10].try_into()?);
    let mut pos = 10usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        if body.len() - pos < n {
            bail!("truncated");
        }
        let s = &body[pos..pos + n];
        pos += n;
        Ok(s)
    };
    let mut m = Named::new();
    for _ in 0..recs {
        let nl = u32::from_le_bytes(take(4)?.try_into()?) as usize;
        let name = String::from_utf8(take(nl)?.to_vec())?;
        let cnt = u64::from_le_bytes(take(8)?.try_into()?);
        let bytes = usize::try_from(cnt)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .ok_or_else(|| anyhow::anyhow!("record too large"))?;
        let vals = take(bytes)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
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
        assert_eq!(read(&p).unwrap(), m);
        let mut b = std::fs::read(&p).unwrap();
        b[12] ^= 1;
        assert!(parse(&b).is_err());
        assert!(parse(&b[..10]).is_err());
    }
}
