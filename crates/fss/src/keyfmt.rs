//! The versioned binary key layout shared by every key kind.
//!
//! ```text
//! offset size field
//!      0    4 magic  "SUFK"
//!      4    2 format version (little endian), currently 2
//!      6    2 kind   (KeyKind as u16)
//!      8    1 party  (0 or 1)
//!      9    7 reserved, zero
//!     16    4 n      input domain bits (1..=64)
//!     20   16 params kind-specific, four u32 (payload bits, payload length, views, ...)
//!     36    4 reserved, zero
//!     40    8 count  number of keys in the batch
//!     48    8 body_len in bytes
//!     56    8 checksum of the body (see `checksum`)
//!     64    . body: sections, structure of arrays (section s holds field s of every key;
//!               per-level fields are level-major: level 0 of keys 0..count, then level 1, ...;
//!               the key index varies fastest), so a GPU kernel reads it with coalesced loads.
//!               The DCF body (version 2) is the 16-byte-aligned layout of
//!               [`crate::dcf::DcfLayout`]; the other kinds are little-endian u64/u128 arrays.
//! ```
//!
//! Version 2 changed the DCF body only (aligned regions, correction words bit-packed at their
//! ring width); the version is one number for the whole format, so every kind says 2.
//!
//! Parsing untrusted bytes: the header is checked first; the body length must equal the
//! closed-form size that the kind computes from (n, params, count), and the buffer must actually
//! hold that many bytes *before* anything is allocated; the checksum is verified; trailing bytes
//! are refused. Every failure is a typed [`FssError`], never a panic.
//!
//! **Views.** A key batch inside a loaded key stream is read in place: [`KeyRef`] is a borrowed
//! run of bytes with its [`KeyOrigin`] (which stream, at which offset), and a view
//! ([`crate::dcf::DcfKeys::view`]) checks the header and the exact length only — O(1), no copy,
//! no checksum (the stream verified every section's checksum once when it was opened, see
//! [`parse_header_view`]).

use crate::error::{FssError, Result};

/// Format magic.
pub const MAGIC: [u8; 4] = *b"SUFK";
/// Current format version.
pub const VERSION: u16 = 2;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;

/// Where a key batch lives inside a loaded key stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyOrigin {
    /// The stream's token (`PartyStream::token` in `suf-runtime`): unique per loaded stream.
    pub stream: u64,
    /// Byte offset in the stream buffer (of a DCF batch's *body* for a [`crate::dcf::DcfKeys`]
    /// view; of the first byte of the run for a [`KeyRef`]).
    pub offset: u64,
    /// Whether the host holds the key *bodies* of this run. `false` when the stream was
    /// received straight into a device (`PartyStream::receive` in `suf-runtime`): the bodies
    /// of the DCF and DPF batches inside were uploaded and never kept on the host (their host
    /// bytes are zeros), everything else (headers, dealer shares) is on the host. A body that
    /// is not on the host is refused by every host evaluation
    /// ([`crate::FssError::BodyOnDevice`]), never read as zeros.
    pub on_host: bool,
}

impl KeyOrigin {
    /// `Err(BodyOnDevice)` unless the host holds the body this origin names.
    ///
    /// # Errors
    /// [`crate::FssError::BodyOnDevice`].
    pub fn check_on_host(origin: Option<KeyOrigin>) -> Result<()> {
        match origin {
            Some(o) if !o.on_host => Err(FssError::BodyOnDevice {
                stream: o.stream,
                offset: o.offset,
            }),
            _ => Ok(()),
        }
    }
}

/// A borrowed run of key bytes with its origin (`None`: not inside a loaded stream).
#[derive(Copy, Clone, Debug)]
pub struct KeyRef<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Where `bytes[0]` sits in a loaded stream, if it does.
    pub origin: Option<KeyOrigin>,
}

impl<'a> KeyRef<'a> {
    /// Bytes that are not inside a loaded stream.
    pub fn detached(bytes: &'a [u8]) -> Self {
        KeyRef {
            bytes,
            origin: None,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The sub-run `range` (origin offset moved by `range.start`); `None` if the range is out
    /// of bounds. An origin whose offset would overflow is dropped.
    pub fn sub(&self, range: std::ops::Range<usize>) -> Option<KeyRef<'a>> {
        let start = range.start;
        let bytes = self.bytes.get(range)?;
        let origin = self.origin.and_then(|o| {
            Some(KeyOrigin {
                stream: o.stream,
                offset: o.offset.checked_add(u64::try_from(start).ok()?)?,
                on_host: o.on_host,
            })
        });
        Some(KeyRef { bytes, origin })
    }
}

/// What a key file holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum KeyKind {
    /// A batch of DPF keys (1-bit or early-terminated leaves).
    Dpf = 1,
    /// A batch of DCF keys with arithmetic or vector payloads.
    Dcf = 2,
    /// A batch of packed-comparison keys.
    PackedCmp = 3,
    /// A batch of interval-lookup keys (DCF construction).
    IntervalDcf = 4,
    /// A batch of interval-lookup keys (DPF EvalAll construction).
    IntervalLut = 5,
}

impl KeyKind {
    /// The kind for a code, if known.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => KeyKind::Dpf,
            2 => KeyKind::Dcf,
            3 => KeyKind::PackedCmp,
            4 => KeyKind::IntervalDcf,
            5 => KeyKind::IntervalLut,
            _ => return None,
        })
    }
}

/// A parsed key header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Key kind.
    pub kind: KeyKind,
    /// Party 0 or 1.
    pub party: u8,
    /// Input domain bits.
    pub n: u32,
    /// Kind-specific parameters.
    pub params: [u32; 4],
    /// Keys in the batch.
    pub count: u64,
    /// Body length in bytes.
    pub body_len: u64,
}

/// A 64-bit checksum of a byte string (integrity against corruption, not an adversary):
/// a multiply–xorshift mix over little-endian u64 words, the tail zero-padded, the length
/// folded in last.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    let (chunks, rem) = bytes.as_chunks::<8>();
    for c in chunks {
        let w = u64::from_le_bytes(*c);
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 29;
    }
    if !rem.is_empty() {
        let mut b = [0u8; 8];
        b[..rem.len()].copy_from_slice(rem);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K);
        h ^= h >> 29;
    }
    h = (h ^ bytes.len() as u64).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Writes a key: sections are appended, then [`KeyWriter::finish`] prepends the header.
#[derive(Debug)]
pub struct KeyWriter {
    kind: KeyKind,
    party: u8,
    n: u32,
    params: [u32; 4],
    count: u64,
    body: Vec<u8>,
}

impl KeyWriter {
    /// Start a key of `kind` for `party` over n-bit inputs with `count` keys.
    pub fn new(kind: KeyKind, party: u8, n: u32, params: [u32; 4], count: u64) -> Self {
        KeyWriter {
            kind,
            party,
            n,
            params,
            count,
            body: Vec::new(),
        }
    }

    /// Reserve body capacity.
    pub fn reserve(&mut self, bytes: usize) {
        self.body.reserve(bytes);
    }

    /// Append a section of u64s.
    pub fn u64s(&mut self, v: &[u64]) {
        for x in v {
            self.body.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Append a section of u128s.
    pub fn u128s(&mut self, v: &[u128]) {
        for x in v {
            self.body.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Append raw bytes (e.g. packed control bits).
    pub fn bytes(&mut self, v: &[u8]) {
        self.body.extend_from_slice(v);
    }

    /// The finished key bytes.
    pub fn finish(self) -> Vec<u8> {
        write_key(
            self.kind,
            self.party,
            self.n,
            self.params,
            self.count,
            &self.body,
        )
    }
}

/// Bytes per chunk of [`body_checksum`].
pub const SUM_CHUNK: usize = 1 << 20;

/// The checksum of a key body or stream section: [`checksum`] itself up to one chunk
/// ([`SUM_CHUNK`] bytes), and above that the checksum of the chunks' checksums, computed in
/// parallel (a large GPU-dealt batch is checked at memory speed instead of one core's).
pub fn body_checksum(bytes: &[u8]) -> u64 {
    use rayon::prelude::*;
    if bytes.len() <= SUM_CHUNK {
        return checksum(bytes);
    }
    let sums: Vec<u8> = bytes
        .par_chunks(SUM_CHUNK)
        .flat_map_iter(|c| checksum(c).to_le_bytes())
        .collect();
    checksum(&sums)
}

/// Header + `body` as one key file (one allocation). A body of 32 MiB or more is copied and
/// checksummed in one parallel pass (as [`write_key_to`]) into a pooled buffer when one is
/// free (`crate::dealer::zeroed_buffer`).
pub fn write_key(
    kind: KeyKind,
    party: u8,
    n: u32,
    params: [u32; 4],
    count: u64,
    body: &[u8],
) -> Vec<u8> {
    let total = HEADER_LEN + body.len();
    if total < crate::dealer::POOL_MIN_BYTES {
        // Heap-sized: one sequential pass (the allocator reuses these blocks; zeroing them
        // first would be a second pass).
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&header(
            kind,
            party,
            n,
            params,
            count,
            body.len(),
            body_checksum(body),
        ));
        out.extend_from_slice(body);
        return out;
    }
    let mut out = crate::dealer::zeroed_buffer(total);
    write_key_to(kind, party, n, params, count, body, &mut out);
    out
}

/// [`write_key`] into `out`, which must be exactly `HEADER_LEN + body.len()` bytes (a slot of
/// a larger buffer: the dealer writes each key straight into its place in a gate's blob).
/// A body above one [`SUM_CHUNK`] is copied and checksummed in one parallel pass, a chunk per
/// task (the same checksum as [`body_checksum`]; the destination pages are touched by every
/// core, not one).
///
/// # Panics
/// If `out` has another length (a caller bug).
pub fn write_key_to(
    kind: KeyKind,
    party: u8,
    n: u32,
    params: [u32; 4],
    count: u64,
    body: &[u8],
    out: &mut [u8],
) {
    use rayon::prelude::*;
    assert_eq!(out.len(), HEADER_LEN + body.len(), "write_key_to length");
    let (head, dst) = out.split_at_mut(HEADER_LEN);
    let sum = if body.len() <= SUM_CHUNK {
        dst.copy_from_slice(body);
        checksum(body)
    } else {
        let sums: Vec<u8> = dst
            .par_chunks_mut(SUM_CHUNK)
            .zip(body.par_chunks(SUM_CHUNK))
            .flat_map_iter(|(d, b)| {
                d.copy_from_slice(b);
                checksum(d).to_le_bytes()
            })
            .collect();
        checksum(&sums)
    };
    head.copy_from_slice(&header(kind, party, n, params, count, body.len(), sum));
}

/// Write the header of a key whose body is already in place: `key[HEADER_LEN..]` is the body
/// (made there by the generator, no copy), and the header with its [`body_checksum`] goes in
/// front. The same bytes as [`write_key`] of that body.
///
/// # Panics
/// If `key` is shorter than [`HEADER_LEN`] (a caller bug).
pub fn seal_key(kind: KeyKind, party: u8, n: u32, params: [u32; 4], count: u64, key: &mut [u8]) {
    let (head, body) = key.split_at_mut(HEADER_LEN);
    let sum = body_checksum(body);
    head.copy_from_slice(&header(kind, party, n, params, count, body.len(), sum));
}

/// The header of a key file.
fn header(
    kind: KeyKind,
    party: u8,
    n: u32,
    params: [u32; 4],
    count: u64,
    body_len: usize,
    sum: u64,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(kind as u16).to_le_bytes());
    h.push(party);
    h.extend_from_slice(&[0u8; 7]);
    h.extend_from_slice(&n.to_le_bytes());
    for p in params {
        h.extend_from_slice(&p.to_le_bytes());
    }
    h.extend_from_slice(&[0u8; 4]);
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&(body_len as u64).to_le_bytes());
    h.extend_from_slice(&sum.to_le_bytes());
    debug_assert_eq!(h.len(), HEADER_LEN);
    h
}

/// Parse and check the header of `bytes` for `kind`; returns the header and the body slice.
/// The caller then checks `body_len` against its closed-form size with
/// [`expect_body_len`] before reading sections.
pub fn parse_header(bytes: &[u8], kind: KeyKind) -> Result<(Header, &[u8])> {
    let (h, body, sum) = parse_header_view(bytes, kind)?;
    if body_checksum(body) != sum {
        return Err(FssError::Checksum);
    }
    Ok((h, body))
}

/// [`parse_header`] without the checksum (O(1)): for views into a key stream whose sections
/// were checksummed once when it was opened. Returns the header, the body and the stored
/// checksum. Every header field and the exact length are still checked.
pub fn parse_header_view(bytes: &[u8], kind: KeyKind) -> Result<(Header, &[u8], u64)> {
    if bytes.len() < HEADER_LEN {
        if bytes.len() >= 4 && bytes[..4] != MAGIC {
            return Err(FssError::BadMagic);
        }
        return Err(FssError::Truncated {
            needed: HEADER_LEN - bytes.len(),
            available: bytes.len(),
        });
    }
    if bytes[..4] != MAGIC {
        return Err(FssError::BadMagic);
    }
    let u16at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u64at = |o: usize| {
        let (w, _) = bytes[o..].as_chunks::<8>();
        w.first().map_or(0, |&w| u64::from_le_bytes(w))
    };
    let version = u16at(4);
    if version != VERSION {
        return Err(FssError::VersionMismatch {
            got: version,
            supported: VERSION,
        });
    }
    let code = u16at(6);
    if KeyKind::from_u16(code) != Some(kind) {
        return Err(FssError::WrongKind {
            expected: kind,
            got: code,
        });
    }
    let party = bytes[8];
    if party > 1 {
        return Err(FssError::BadHeader(format!("party {party} is not 0 or 1")));
    }
    if bytes[9..16].iter().any(|&b| b != 0) || bytes[36..40].iter().any(|&b| b != 0) {
        return Err(FssError::BadHeader("reserved bytes are not zero".into()));
    }
    let n = u32at(16);
    if !(1..=64).contains(&n) {
        return Err(FssError::BadHeader(format!(
            "domain bits {n} outside 1..=64"
        )));
    }
    let params = [u32at(20), u32at(24), u32at(28), u32at(32)];
    let count = u64at(40);
    let body_len = u64at(48);
    let sum = u64at(56);
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < body_len {
        return Err(FssError::Truncated {
            needed: (body_len - body.len() as u64).min(usize::MAX as u64) as usize,
            available: body.len(),
        });
    }
    if body.len() as u64 > body_len {
        return Err(FssError::TrailingBytes(body.len() - body_len as usize));
    }
    Ok((
        Header {
            kind,
            party,
            n,
            params,
            count,
            body_len,
        },
        body,
        sum,
    ))
}

/// Check that a header's declared body length equals the closed-form `expected` size
/// (computed with checked arithmetic by the caller; `None` means it overflowed).
pub fn expect_body_len(h: &Header, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(e) if e == h.body_len => Ok(()),
        Some(e) => Err(FssError::SizeMismatch {
            expected: e,
            got: h.body_len,
        }),
        None => Err(FssError::BadHeader(
            "parameters imply an impossible size".into(),
        )),
    }
}

/// Sequential reader of a key body's sections. Every read is bounds-checked before any
/// allocation.
#[derive(Debug)]
pub struct KeyReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> KeyReader<'a> {
    /// Read from `body`.
    pub fn new(body: &'a [u8]) -> Self {
        KeyReader { buf: body, pos: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let avail = self.buf.len() - self.pos;
        if len > avail {
            return Err(FssError::Truncated {
                needed: len - avail,
                available: avail,
            });
        }
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    /// A section of `len` u64s.
    pub fn u64s(&mut self, len: usize) -> Result<Vec<u64>> {
        let bytes = len.checked_mul(8).ok_or(FssError::Truncated {
            needed: usize::MAX,
            available: self.buf.len() - self.pos,
        })?;
        let s = self.take(bytes)?;
        Ok(s.as_chunks::<8>()
            .0
            .iter()
            .map(|&c| u64::from_le_bytes(c))
            .collect())
    }

    /// A section of `len` u128s.
    pub fn u128s(&mut self, len: usize) -> Result<Vec<u128>> {
        let bytes = len.checked_mul(16).ok_or(FssError::Truncated {
            needed: usize::MAX,
            available: self.buf.len() - self.pos,
        })?;
        let s = self.take(bytes)?;
        Ok(s.as_chunks::<16>()
            .0
            .iter()
            .map(|&c| u128::from_le_bytes(c))
            .collect())
    }

    /// `len` raw bytes.
    pub fn bytes(&mut self, len: usize) -> Result<Vec<u8>> {
        Ok(self.take(len)?.to_vec())
    }

    /// Refuse trailing bytes.
    pub fn finish(self) -> Result<()> {
        let left = self.buf.len() - self.pos;
        if left != 0 {
            return Err(FssError::TrailingBytes(left));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_checksum_is_the_plain_checksum_up_to_a_chunk_and_sees_every_byte_above() {
        let mut b: Vec<u8> = (0..3 * SUM_CHUNK + 77)
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        for len in [0, 1, 7, 8, SUM_CHUNK - 1, SUM_CHUNK] {
            assert_eq!(body_checksum(&b[..len]), checksum(&b[..len]), "len {len}");
        }
        let whole = body_checksum(&b);
        assert_ne!(whole, checksum(&b));
        // The chunked form over the chunk sums, in order.
        let sums: Vec<u8> = b
            .chunks(SUM_CHUNK)
            .flat_map(|c| checksum(c).to_le_bytes())
            .collect();
        assert_eq!(whole, checksum(&sums));
        for at in [0, SUM_CHUNK - 1, SUM_CHUNK, 2 * SUM_CHUNK + 5, b.len() - 1] {
            b[at] ^= 0x10;
            assert_ne!(body_checksum(&b), whole, "flip at {at}");
            b[at] ^= 0x10;
        }
        assert_eq!(body_checksum(&b), whole);
    }

    /// The fused parallel copy + checksum of a large body writes the same key as the plain
    /// layout: header fields, body length, `body_checksum`, then the body.
    #[test]
    fn write_key_large_bodies_match_the_sequential_form() {
        for len in [
            0,
            9,
            SUM_CHUNK,
            2 * SUM_CHUNK + 13,
            crate::dealer::POOL_MIN_BYTES + 5,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i * 29 % 253) as u8).collect();
            let k = write_key(KeyKind::Dcf, 1, 37, [50, 3, 0, 0], 5, &body);
            assert_eq!(k.len(), HEADER_LEN + len);
            assert!(k[HEADER_LEN..] == body[..], "len {len}");
            let (h, b) = parse_header(&k, KeyKind::Dcf).unwrap();
            assert_eq!((h.n, h.count, b.len()), (37, 5, len));
            let sum = u64::from_le_bytes(k[HEADER_LEN - 8..HEADER_LEN].try_into().unwrap());
            assert_eq!(sum, body_checksum(&body));
            // Into a slot, and sealed in place: the same bytes.
            let mut slot = vec![0xAAu8; k.len()];
            write_key_to(KeyKind::Dcf, 1, 37, [50, 3, 0, 0], 5, &body, &mut slot);
            assert!(slot == k, "write_key_to, len {len}");
            let mut sealed = vec![0x55u8; HEADER_LEN];
            sealed.extend_from_slice(&body);
            seal_key(KeyKind::Dcf, 1, 37, [50, 3, 0, 0], 5, &mut sealed);
            assert!(sealed == k, "seal_key, len {len}");
        }
    }

    #[test]
    fn header_roundtrip_and_errors() {
        let mut w = KeyWriter::new(KeyKind::Dcf, 1, 50, [64, 3, 0, 0], 2);
        w.u64s(&[1, 2]);
        w.u128s(&[3]);
        let b = w.finish();
        let (h, body) = parse_header(&b, KeyKind::Dcf).unwrap();
        assert_eq!(
            (h.party, h.n, h.params, h.count, h.body_len),
            (1, 50, [64, 3, 0, 0], 2, 32)
        );
        expect_body_len(&h, Some(32)).unwrap();
        assert!(expect_body_len(&h, Some(33)).is_err());
        let mut r = KeyReader::new(body);
        assert_eq!(r.u64s(2).unwrap(), vec![1, 2]);
        assert_eq!(r.u128s(1).unwrap(), vec![3]);
        r.finish().unwrap();

        assert_eq!(
            parse_header(&b, KeyKind::Dpf).unwrap_err(),
            FssError::WrongKind {
                expected: KeyKind::Dpf,
                got: 2
            }
        );
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(parse_header(&bad, KeyKind::Dcf), Err(FssError::BadMagic));
        let mut bad = b.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse_header(&bad, KeyKind::Dcf), Err(FssError::Checksum));
        assert!(matches!(
            parse_header(&b[..b.len() - 1], KeyKind::Dcf),
            Err(FssError::Truncated { .. })
        ));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            parse_header(&long, KeyKind::Dcf),
            Err(FssError::TrailingBytes(1))
        );
        let mut r = KeyReader::new(body);
        assert!(r.u64s(usize::MAX / 4).is_err());
    }

    #[test]
    fn key_ref_sub_moves_the_origin() {
        let b = [1u8, 2, 3, 4, 5];
        let k = KeyRef {
            bytes: &b,
            origin: Some(KeyOrigin {
                stream: 7,
                offset: 32,
                on_host: true,
            }),
        };
        let s = k.sub(1..4).unwrap();
        assert_eq!(s.bytes, &[2, 3, 4]);
        assert_eq!(
            s.origin,
            Some(KeyOrigin {
                stream: 7,
                offset: 33,
                on_host: true,
            })
        );
        assert_eq!(s.len(), 3);
        assert!(k.sub(2..6).is_none());
        assert!(k.sub(5..5).unwrap().is_empty());
        let d = KeyRef::detached(&b).sub(4..5).unwrap();
        assert_eq!((d.bytes, d.origin), (&[5u8][..], None));
        // An offset that would overflow drops the origin instead of wrapping.
        let far = KeyRef {
            bytes: &b,
            origin: Some(KeyOrigin {
                stream: 1,
                offset: u64::MAX,
                on_host: true,
            }),
        };
        assert_eq!(far.sub(1..2).unwrap().origin, None);
    }
}
