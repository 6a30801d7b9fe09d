//! Receiving a key stream straight into a device backend ([`PartyStream::receive`]).
//!
//! A bert-large key stream is ≈ 60 GB per party: two parties on one host cannot both hold
//! theirs in host memory *and* on the device. The receiver reads the stream once, in order,
//! from its source (the dealer's socket or a file) and
//!
//! * hands **every** byte to the backend in chunks ([`Backend::receive_keys_chunk`]), so the
//!   device copy is the whole stream at its own offsets (what `Backend::attach_keys` would
//!   have uploaded), the copies overlapping the receive;
//! * keeps on the host only what the host reads: the stream's header, section heads, table of
//!   contents and footer, the mask sections, and inside each gate key blob its part table,
//!   the 64-byte headers of its key files and every part that is not a DCF or DPF key body
//!   (dealer shares, other key kinds). The key bodies are never written to the host buffer,
//!   which is allocated zeroed and so stays unbacked there;
//! * verifies every section's payload checksum as it passes (the same chunked checksum as
//!   [`index`]'s), so nothing unverified is ever used, then indexes the host buffer with the
//!   structural checks of a normal open (header, TOC against every head, padding, footer) and
//!   requires the sections it verified to be exactly the ones indexed.
//!
//! The resulting [`PartyStream`] says `bodies_on_host() == false`; its key views carry
//! `KeyOrigin::on_host == false`, which every host evaluator refuses
//! (`FssError::BodyOnDevice`) rather than reading zeros.
//!
//! On a backend that evaluates from host bytes (`receive_keys_begin` returns `None`, the
//! CPU backend) the stream is read whole and opened as [`PartyStream::from_bytes`] does.

use std::io::Read;
use std::path::PathBuf;

use rayon::prelude::*;
use suf_backend::Backend;
use suf_fss::keyfmt::{checksum, KeyKind, SUM_CHUNK};

use super::{
    bad, expected_len, index_with, pad_len, parse_header, u64_at, PartyStream, ALIGN, FOOTER_LEN,
    HEADER_LEN, HEAD_LEN, TAG_BLOB, TOC_ENTRY,
};
use crate::error::{Result, RtError};

/// What a receive moved and how long it took (key load, never online time).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReceiveStats {
    /// Bytes of the stream.
    pub bytes: u64,
    /// Bytes of it kept on the host (everything but the key bodies; all of it on a host
    /// backend).
    pub host_bytes: u64,
    /// Whether the stream went into the backend's memory (false: a host backend).
    pub into_device: bool,
    /// Milliseconds from the first byte to the opened stream (reading, checking, copying).
    pub ms: f64,
    /// Milliseconds the device still needed after the last byte had arrived.
    pub device_tail_ms: f64,
    /// Where the receive's own thread spent `ms` (a device receive; zeros otherwise).
    pub split: ReceiveSplit,
}

/// The receiving thread's time by step, in milliseconds: what bounds a receive (the
/// source, the checksums, the host copies or the device's staging buffers).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReceiveSplit {
    /// Waiting for and reading the source's bytes (the dealer's socket, a file).
    pub read_ms: f64,
    /// Checksumming the sections' payloads.
    pub check_ms: f64,
    /// Copying into the chunk handed to the device.
    pub copy_ms: f64,
    /// Handing chunks to the device (its staging buffers: waits for a free one, the copy
    /// into it, queueing the upload).
    pub device_ms: f64,
}

/// A payload's checksum computed as its bytes pass (`keyfmt::body_checksum`'s value).
struct Summer {
    len: usize,
    sums: Vec<u8>,
    carry: Vec<u8>,
}

impl Summer {
    fn new(len: usize) -> Self {
        Summer {
            len,
            sums: Vec::new(),
            carry: Vec::new(),
        }
    }

    fn feed(&mut self, mut d: &[u8]) {
        if !self.carry.is_empty() {
            let take = (SUM_CHUNK - self.carry.len()).min(d.len());
            self.carry.extend_from_slice(&d[..take]);
            d = &d[take..];
            if self.carry.len() == SUM_CHUNK {
                self.sums
                    .extend_from_slice(&checksum(&self.carry).to_le_bytes());
                self.carry.clear();
            }
        }
        let full = d.len() / SUM_CHUNK * SUM_CHUNK;
        let (whole, rest) = d.split_at(full);
        if !whole.is_empty() {
            let s: Vec<u64> = whole.par_chunks(SUM_CHUNK).map(checksum).collect();
            for x in s {
                self.sums.extend_from_slice(&x.to_le_bytes());
            }
        }
        self.carry.extend_from_slice(rest);
    }

    fn finish(mut self) -> u64 {
        if !self.carry.is_empty() || self.sums.is_empty() {
            self.sums
                .extend_from_slice(&checksum(&self.carry).to_le_bytes());
        }
        if self.len <= SUM_CHUNK {
            u64_at(&self.sums, 0)
        } else {
            checksum(&self.sums)
        }
    }
}

/// The receive in progress: the host buffer, the chunk being filled for the device and the
/// checksum of the payload being read.
struct Rx<'a, R: Read> {
    src: &'a mut R,
    be: &'a dyn Backend,
    path: &'a PathBuf,
    /// The host buffer: the stream's length, zeroed; key bodies stay zero.
    buf: Vec<u8>,
    /// The next stream offset to read.
    pos: usize,
    /// The chunk for the device: `chunk` bytes, `fill` of them filled.
    stage: Vec<u8>,
    fill: usize,
    chunk: usize,
    index: usize,
    sum: Option<Summer>,
    host_bytes: u64,
    /// The buffer key bodies are read into on their way to the device (reused).
    piece: Vec<u8>,
    split: ReceiveSplit,
}

fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

impl<R: Read> Rx<'_, R> {
    fn read_err(&self, e: std::io::Error) -> RtError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(
                self.path,
                format!(
                    "the stream ended at byte {} of the {} announced (truncated)",
                    self.pos,
                    self.buf.len()
                ),
            )
        } else {
            RtError::Io {
                path: self.path.clone(),
                source: e,
            }
        }
    }

    /// `n` more bytes must exist before the announced end.
    fn room(&self, n: usize) -> Result<()> {
        match self.pos.checked_add(n) {
            Some(e) if e <= self.buf.len() => Ok(()),
            _ => Err(bad(
                self.path,
                format!(
                    "a section at byte {} runs past the stream's announced length {}",
                    self.pos,
                    self.buf.len()
                ),
            )),
        }
    }

    /// Hand `d` (the stream's next bytes) to the device chunk and the checksum.
    fn pass(&mut self, mut d: &[u8]) -> Result<()> {
        if let Some(s) = &mut self.sum {
            let t = std::time::Instant::now();
            s.feed(d);
            self.split.check_ms += ms_since(t);
        }
        while !d.is_empty() {
            let k = (self.chunk - self.fill).min(d.len());
            let t = std::time::Instant::now();
            self.stage[self.fill..self.fill + k].copy_from_slice(&d[..k]);
            self.split.copy_ms += ms_since(t);
            self.fill += k;
            d = &d[k..];
            if self.fill == self.chunk {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.fill > 0 {
            let t = std::time::Instant::now();
            let r = self
                .be
                .receive_keys_chunk(self.index, &self.stage[..self.fill]);
            self.split.device_ms += ms_since(t);
            r?;
            self.index += 1;
            self.fill = 0;
        }
        Ok(())
    }

    /// The next `n` bytes, kept on the host.
    fn host(&mut self, n: usize) -> Result<()> {
        self.room(n)?;
        let (a, b) = (self.pos, self.pos + n);
        let mut buf = std::mem::take(&mut self.buf);
        let t = std::time::Instant::now();
        let r = self.src.read_exact(&mut buf[a..b]);
        self.split.read_ms += ms_since(t);
        let r = match r {
            Ok(()) => self.pass(&buf[a..b]),
            Err(e) => Err(self.read_err(e)),
        };
        self.buf = buf;
        r?;
        self.pos = b;
        self.host_bytes += n as u64;
        Ok(())
    }

    /// The next `n` bytes, for the device only (a key body).
    fn device(&mut self, mut n: usize) -> Result<()> {
        self.room(n)?;
        let mut piece = std::mem::take(&mut self.piece);
        if piece.len() < self.chunk.min(n) {
            piece.resize(self.chunk.min(n), 0);
        }
        let r = (|| {
            while n > 0 {
                let k = piece.len().min(n);
                let t = std::time::Instant::now();
                let r = self.src.read_exact(&mut piece[..k]);
                self.split.read_ms += ms_since(t);
                if let Err(e) = r {
                    return Err(self.read_err(e));
                }
                self.pass(&piece[..k])?;
                self.pos += k;
                n -= k;
            }
            Ok(())
        })();
        self.piece = piece;
        r
    }

    /// A gate key blob's payload of `len` bytes: its part table and the key files' headers on
    /// the host, the DCF and DPF bodies for the device only. Anything that does not parse as
    /// expected goes to the host whole (the checks of the normal open and of the key views
    /// then report it).
    fn blob(&mut self, len: usize) -> Result<()> {
        let end = self.pos + len;
        if len < 8 {
            return self.host(len);
        }
        self.host(8)?;
        let start = self.pos - 8;
        let table = usize::try_from(u64_at(&self.buf, start))
            .ok()
            .and_then(|c| {
                let head = c
                    .checked_mul(8)?
                    .checked_add(8)?
                    .checked_next_multiple_of(ALIGN)?;
                (head <= len).then_some((c, head))
            });
        let Some((parts, head)) = table else {
            return self.host(end - self.pos);
        };
        self.host(head - 8)?;
        for i in 0..parts {
            let left = end - self.pos;
            let Some(plen) = usize::try_from(u64_at(&self.buf, start + 8 + 8 * i))
                .ok()
                .filter(|l| l.checked_next_multiple_of(ALIGN).is_some_and(|p| p <= left))
            else {
                break;
            };
            if plen >= suf_fss::keyfmt::HEADER_LEN {
                let hl = suf_fss::keyfmt::HEADER_LEN;
                self.host(hl)?;
                let h = &self.buf[self.pos - hl..self.pos];
                let kind = u16::from_le_bytes([h[6], h[7]]);
                let body = (h[..4] == suf_fss::keyfmt::MAGIC
                    && u16::from_le_bytes([h[4], h[5]]) == suf_fss::keyfmt::VERSION
                    && (kind == KeyKind::Dcf as u16 || kind == KeyKind::Dpf as u16)
                    && u64_at(h, 48) == (plen - hl) as u64)
                    .then_some(plen - hl);
                match body {
                    Some(b) => self.device(b)?,
                    None => self.host(plen - hl)?,
                }
            } else {
                self.host(plen)?;
            }
            self.host(plen.next_multiple_of(ALIGN) - plen)?;
        }
        self.host(end - self.pos)
    }
}

impl PartyStream {
    /// Receive a whole key stream of exactly `len` bytes from `src` (the dealer's socket, a
    /// file) for a run on `be`, checked as [`PartyStream::from_bytes`] checks it. On a device
    /// backend the stream goes into the device while it arrives and the host keeps everything
    /// but the DCF/DPF key bodies (see the module docs); on a host backend it is read whole.
    /// `len` is the stream's exact length (the plan's `key_bytes`): a stream that ends
    /// earlier or goes on longer is refused.
    ///
    /// # Errors
    /// [`RtError::KeyStream`] for a truncated, overlong or corrupted stream (checksums,
    /// structure) — the device's partial copy is dropped; [`RtError::Io`] for a read error;
    /// a backend error (device memory, a copy).
    pub fn receive(
        src: &mut impl Read,
        len: usize,
        be: &dyn Backend,
    ) -> Result<(PartyStream, ReceiveStats)> {
        let begun = be.receive_keys_begin(len)?;
        Self::receive_after_begin(src, len, be, begun)
    }

    /// [`PartyStream::receive`] for a caller that already called
    /// `be.receive_keys_begin(len)` (its answer is `begun`): a party process reserves the
    /// device memory for its stream before it lets the dealer start, so that the dealer's
    /// own device buffers cannot take it first.
    ///
    /// # Errors
    /// As [`PartyStream::receive`].
    pub fn receive_after_begin(
        src: &mut impl Read,
        len: usize,
        be: &dyn Backend,
        begun: Option<usize>,
    ) -> Result<(PartyStream, ReceiveStats)> {
        let t = std::time::Instant::now();
        let path = PathBuf::from("<received>");
        let Some(chunk) = begun else {
            let mut bytes = Vec::with_capacity(len);
            src.read_to_end(&mut bytes).map_err(|e| RtError::Io {
                path: path.clone(),
                source: e,
            })?;
            let host_bytes = bytes.len() as u64;
            let ks = PartyStream::from_bytes(bytes)?;
            return Ok((
                ks,
                ReceiveStats {
                    bytes: host_bytes,
                    host_bytes,
                    into_device: false,
                    ms: t.elapsed().as_secs_f64() * 1e3,
                    device_tail_ms: 0.0,
                    split: ReceiveSplit::default(),
                },
            ));
        };
        Self::receive_begun(src, len, be, chunk, t)
    }

    /// A whole stream already in host memory (the single-process harness), opened for a run
    /// on `be`: on a device backend it goes through [`PartyStream::receive`] (the device
    /// holds the key bodies, the host buffer keeps the rest; `bytes` is then dropped), on a
    /// host backend it is [`PartyStream::from_bytes`] without a copy.
    ///
    /// # Errors
    /// As [`PartyStream::receive`].
    pub fn receive_bytes(bytes: Vec<u8>, be: &dyn Backend) -> Result<PartyStream> {
        let t = std::time::Instant::now();
        match be.receive_keys_begin(bytes.len())? {
            None => PartyStream::from_bytes(bytes),
            Some(chunk) => {
                let len = bytes.len();
                let mut src = std::io::Cursor::new(bytes);
                Self::receive_begun(&mut src, len, be, chunk, t).map(|(k, _)| k)
            }
        }
    }

    fn receive_begun(
        src: &mut impl Read,
        len: usize,
        be: &dyn Backend,
        chunk: usize,
        t: std::time::Instant,
    ) -> Result<(PartyStream, ReceiveStats)> {
        let path = PathBuf::from("<received>");
        let r = Self::receive_into(src, len, be, chunk.max(1), &path);
        let (ks, host_bytes, split) = match r {
            Ok(x) => x,
            Err(e) => {
                be.receive_keys_abort();
                return Err(e);
            }
        };
        let tail = match be.receive_keys_finish(ks.token()) {
            Ok(ms) => ms,
            Err(e) => {
                be.receive_keys_abort();
                return Err(e.into());
            }
        };
        Ok((
            ks,
            ReceiveStats {
                bytes: len as u64,
                host_bytes,
                into_device: true,
                ms: t.elapsed().as_secs_f64() * 1e3,
                device_tail_ms: tail,
                split,
            },
        ))
    }

    fn receive_into(
        src: &mut impl Read,
        len: usize,
        be: &dyn Backend,
        chunk: usize,
        path: &PathBuf,
    ) -> Result<(PartyStream, u64, ReceiveSplit)> {
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(bad(
                path,
                format!("an announced length of {len} bytes is too short"),
            ));
        }
        let mut rx = Rx {
            src,
            be,
            path,
            buf: vec![0u8; len],
            pos: 0,
            stage: vec![0u8; chunk],
            fill: 0,
            chunk,
            index: 0,
            sum: None,
            host_bytes: 0,
            piece: Vec::new(),
            split: ReceiveSplit::default(),
        };
        rx.host(HEADER_LEN)?;
        let (id, _) = parse_header(&rx.buf[..HEADER_LEN], path)?;
        let mut verified: Vec<(usize, usize)> = Vec::new();
        // Sections until the table of contents: it starts where the sections read so far,
        // their TOC entries and the footer exactly fill the announced length (that sum grows
        // strictly with every section, so it is reached at most once).
        loop {
            let toc_len = verified
                .len()
                .checked_mul(TOC_ENTRY)
                .and_then(|x| x.checked_add(FOOTER_LEN))
                .and_then(|x| x.checked_add(rx.pos));
            match toc_len {
                Some(e) if e == len => break,
                Some(e) if e < len => {}
                _ => return Err(bad(path, "no table of contents where the announced length puts it (truncated, or a length other than the plan's)")),
            }
            rx.host(HEAD_LEN)?;
            let h = &rx.buf[rx.pos - HEAD_LEN..rx.pos];
            let (tag, count, plen, sum) = (h[0], u64_at(h, 8), u64_at(h, 16), u64_at(h, 24));
            let j = verified.len();
            if expected_len(tag, count, id.bits) != Some(plen) {
                return Err(bad(
                    path,
                    format!("section {j}: tag {tag} × {count} with a bad length {plen}"),
                ));
            }
            let plen = usize::try_from(plen)
                .map_err(|_| bad(path, format!("section {j}: length {plen} does not fit")))?;
            rx.room(plen)?;
            let start = rx.pos;
            rx.sum = Some(Summer::new(plen));
            if tag == TAG_BLOB {
                rx.blob(plen)?;
            } else {
                rx.host(plen)?;
            }
            let got = rx.sum.take().map(Summer::finish);
            if got != Some(sum) {
                return Err(bad(path, format!("section {j} checksum mismatch")));
            }
            verified.push((start, plen));
            rx.host(pad_len(plen as u64) as usize)?;
        }
        rx.host(len - rx.pos)?;
        rx.flush()?;
        // Nothing may follow the announced length.
        let mut one = [0u8; 1];
        loop {
            match rx.src.read(&mut one) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(bad(
                        path,
                        format!("the stream goes on past its announced length {len}"),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(RtError::Io {
                        path: path.clone(),
                        source: e,
                    })
                }
            }
        }
        let host_bytes = rx.host_bytes;
        let split = rx.split;
        let buf = rx.buf;
        let toc = index_with(&buf, id.bits, path, false)?;
        let same = toc.len() == verified.len()
            && toc
                .iter()
                .zip(&verified)
                .all(|(s, &(start, l))| s.start == start && s.len == l);
        if !same {
            return Err(bad(
                path,
                "the table of contents does not index the sections that arrived",
            ));
        }
        Ok((
            PartyStream::indexed(buf, path.clone(), toc, false)?,
            host_bytes,
            split,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_fss::keyfmt::body_checksum;

    /// The checksum computed as the bytes pass equals the stream's payload checksum for every
    /// length around the chunk boundaries, however the bytes are split into feeds.
    #[test]
    fn the_running_checksum_equals_the_payload_checksum() {
        let mut x = 0x9e37_79b9_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let data: Vec<u8> = (0..3 * SUM_CHUNK + 77).map(|_| next() as u8).collect();
        for len in [
            0,
            1,
            7,
            SUM_CHUNK - 1,
            SUM_CHUNK,
            SUM_CHUNK + 1,
            2 * SUM_CHUNK,
            3 * SUM_CHUNK + 77,
        ] {
            let want = body_checksum(&data[..len]);
            for split in [
                1usize,
                4096,
                SUM_CHUNK - 3,
                SUM_CHUNK,
                2 * SUM_CHUNK + 1,
                usize::MAX,
            ] {
                let mut s = Summer::new(len);
                let mut rest = &data[..len];
                let mut k = 0;
                while !rest.is_empty() {
                    // Uneven pieces: the split size, then a few bytes, in turn.
                    let n = if k % 2 == 0 { split } else { 13 }.min(rest.len());
                    s.feed(&rest[..n]);
                    rest = &rest[n..];
                    k += 1;
                    if split == 1 && k > 64 {
                        s.feed(rest);
                        break;
                    }
                }
                assert_eq!(s.finish(), want, "len {len}, split {split}");
            }
        }
    }
}
