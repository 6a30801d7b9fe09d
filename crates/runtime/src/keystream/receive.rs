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
//! Two threads share the work: the reader reads the source straight into the chunk for the
//! device (key bodies are never copied on the host) and parses the structure; the checker
//! verifies the checksums of chunk i and hands it to the device while chunk i + 1 is read.
//! The receive succeeds only once the checker has verified every section; its error, if it
//! stops first, is the one reported. The checker's parallel work runs in a rayon pool of its
//! own, never behind other work of the process's global pool (in one process the dealer
//! fills that pool while it writes the very stream being received).
//!
//! The resulting [`PartyStream`] says `bodies_on_host() == false`; its key views carry
//! `KeyOrigin::on_host == false`, which every host evaluator refuses
//! (`FssError::BodyOnDevice`) rather than reading zeros.
//!
//! On a backend that evaluates from host bytes (`receive_keys_begin` returns `None`, the
//! CPU backend) the stream is read whole and opened as [`PartyStream::from_bytes`] does.

use std::io::Read;
use std::path::{Path, PathBuf};

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

/// Where a device receive's time went, in milliseconds: what bounds it (the source, the
/// checksums or the device's staging). Two threads: the reader (`read_ms`, `copy_ms`,
/// `wait_ms`) and the checker (`check_ms`, `device_ms`), which works on chunk i while the
/// reader fills chunk i + 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReceiveSplit {
    /// Reader: waiting for and reading the source's bytes (the dealer's socket, a file),
    /// straight into the chunk for the device (key bodies) or into the host buffer.
    pub read_ms: f64,
    /// Reader: copying the bytes the host keeps into the chunk for the device.
    pub copy_ms: f64,
    /// Reader: waiting for the checker to free a chunk (the checker is the slower side).
    pub wait_ms: f64,
    /// Checker: the sections' payload checksums.
    pub check_ms: f64,
    /// Checker: handing chunks to the device (its staging buffers: waits for a free one,
    /// the copy into it, queueing the upload).
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

/// One step of a chunk's checksum work, in stream order (see [`Staged`]).
enum SumOp {
    /// A section's payload of this many bytes begins.
    Start(usize),
    /// These bytes of the chunk belong to the payload being summed.
    Feed(usize, usize),
    /// The payload of section `.0` ends; its head announced checksum `.1`.
    End(usize, u64),
}

/// A chunk for the device with the checksum work its bytes carry: what the reading thread
/// hands the checking thread.
struct Staged {
    buf: Vec<u8>,
    fill: usize,
    ops: Vec<SumOp>,
}

/// The checking thread: verifies every section's checksum over the chunks' bytes in stream
/// order, hands each chunk to the device and returns its buffer for the next one. Stops at
/// the first error (its channels then close, which stops the reader).
/// Threads of a receive's checking pool: half the machine's, 1 to 8 (key load is not online
/// time; the other half is left to the dealer and the other party in one process).
fn checker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
}

fn check_and_stage(
    be: &dyn Backend,
    path: &Path,
    chunks: std::sync::mpsc::Receiver<Staged>,
    spare: std::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(f64, f64)> {
    let (mut check_ms, mut device_ms) = (0.0, 0.0);
    let mut sum: Option<Summer> = None;
    let mut index = 0;
    for c in chunks {
        let t = std::time::Instant::now();
        for op in &c.ops {
            match *op {
                SumOp::Start(plen) => sum = Some(Summer::new(plen)),
                SumOp::Feed(a, b) => {
                    if let Some(s) = &mut sum {
                        s.feed(&c.buf[a..b]);
                    }
                }
                SumOp::End(j, want) => {
                    if sum.take().map(Summer::finish) != Some(want) {
                        return Err(bad(path, format!("section {j} checksum mismatch")));
                    }
                }
            }
        }
        check_ms += ms_since(t);
        if c.fill > 0 {
            let t = std::time::Instant::now();
            be.receive_keys_chunk(index, &c.buf[..c.fill])?;
            device_ms += ms_since(t);
            index += 1;
        }
        // The reader may have stopped (an error of its own): nothing to return then.
        let _ = spare.send(c.buf);
    }
    Ok((check_ms, device_ms))
}

/// The receive in progress on the reading thread: the host buffer and the chunk being
/// filled for the device. Bytes are read straight into the chunk (the key bodies are never
/// copied on the host); the parts the host keeps are read into the host buffer and copied
/// into the chunk. Full chunks go to the checking thread ([`check_and_stage`]), which
/// verifies the checksums and feeds the device while the next chunk is read.
struct Rx<'a, R: Read> {
    src: &'a mut R,
    path: &'a PathBuf,
    /// The host buffer: the stream's length, zeroed; key bodies stay zero.
    buf: Vec<u8>,
    /// The next stream offset to read.
    pos: usize,
    /// The chunk being filled: `chunk` bytes.
    cur: Staged,
    chunk: usize,
    /// Whether the bytes being read belong to a section's payload (are summed).
    summing: bool,
    to_check: Option<std::sync::mpsc::SyncSender<Staged>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    host_bytes: u64,
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

    /// The bytes `a..b` of the current chunk were just filled: sum them if they belong to a
    /// payload (merged with the previous range when adjacent).
    fn note_fill(&mut self, a: usize, b: usize) {
        if !self.summing || a == b {
            return;
        }
        match self.cur.ops.last_mut() {
            Some(SumOp::Feed(_, e)) if *e == a => *e = b,
            _ => self.cur.ops.push(SumOp::Feed(a, b)),
        }
    }

    fn start_section(&mut self, plen: usize) {
        self.cur.ops.push(SumOp::Start(plen));
        self.summing = true;
    }

    fn end_section(&mut self, j: usize, sum: u64) {
        self.cur.ops.push(SumOp::End(j, sum));
        self.summing = false;
    }

    /// Hand the current chunk (full, or the last) to the checking thread and take an empty
    /// one. An error when that thread has stopped (on an error of its own, which the caller
    /// reports instead).
    fn send(&mut self) -> Result<()> {
        let t = std::time::Instant::now();
        let next = Staged {
            buf: Vec::new(),
            fill: 0,
            ops: Vec::new(),
        };
        let c = std::mem::replace(&mut self.cur, next);
        let stopped = || bad(self.path, "the checking thread stopped");
        let tx = self.to_check.as_ref().ok_or_else(stopped)?;
        tx.send(c).map_err(|_| stopped())?;
        let buf = self.spare.recv().map_err(|_| stopped())?;
        self.cur.buf = buf;
        self.split.wait_ms += ms_since(t);
        Ok(())
    }

    /// The next `n` bytes, kept on the host.
    fn host(&mut self, n: usize) -> Result<()> {
        self.room(n)?;
        let (a, b) = (self.pos, self.pos + n);
        let t = std::time::Instant::now();
        let r = self.src.read_exact(&mut self.buf[a..b]);
        self.split.read_ms += ms_since(t);
        if let Err(e) = r {
            return Err(self.read_err(e));
        }
        self.pos = b;
        self.host_bytes += n as u64;
        // Into the device chunk as well.
        let mut at = a;
        while at < b {
            let k = (self.chunk - self.cur.fill).min(b - at);
            let f = self.cur.fill;
            let t = std::time::Instant::now();
            self.cur.buf[f..f + k].copy_from_slice(&self.buf[at..at + k]);
            self.split.copy_ms += ms_since(t);
            self.note_fill(f, f + k);
            self.cur.fill += k;
            at += k;
            if self.cur.fill == self.chunk {
                self.send()?;
            }
        }
        Ok(())
    }

    /// The next `n` bytes, for the device only (a key body): read straight into the chunk.
    fn device(&mut self, mut n: usize) -> Result<()> {
        self.room(n)?;
        while n > 0 {
            let k = (self.chunk - self.cur.fill).min(n);
            let f = self.cur.fill;
            let t = std::time::Instant::now();
            let r = self.src.read_exact(&mut self.cur.buf[f..f + k]);
            self.split.read_ms += ms_since(t);
            if let Err(e) = r {
                return Err(self.read_err(e));
            }
            self.note_fill(f, f + k);
            self.cur.fill += k;
            self.pos += k;
            n -= k;
            if self.cur.fill == self.chunk {
                self.send()?;
            }
        }
        Ok(())
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
        // Three chunk buffers: one being read into, one queued, one being checked and
        // staged.
        let (to_check, chunks) = std::sync::mpsc::sync_channel::<Staged>(1);
        let (spare_tx, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        for _ in 0..2 {
            let _ = spare_tx.send(vec![0u8; chunk]);
        }
        // The checker's parallel work (checksums, the device's staging copies) runs in a
        // rayon pool of its own. In one process the dealer's tasks share the global pool,
        // and they can all be waiting for this very stream to drain (a writer blocked on a
        // full socket): a checker whose pieces queued behind them would never finish.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(checker_threads())
            .thread_name(|i| format!("suf-key-check-{i}"))
            .build()
            .map_err(|e| bad(path, format!("cannot start the checking threads: {e}")))?;
        std::thread::scope(|sc| {
            let checker =
                sc.spawn(move || pool.install(|| check_and_stage(be, path, chunks, spare_tx)));
            let mut rx = Rx {
                src,
                path,
                buf: vec![0u8; len],
                pos: 0,
                cur: Staged {
                    buf: vec![0u8; chunk],
                    fill: 0,
                    ops: Vec::new(),
                },
                chunk,
                summing: false,
                to_check: Some(to_check),
                spare,
                host_bytes: 0,
                split: ReceiveSplit::default(),
            };
            let read = Self::read_sections(&mut rx, len, path);
            // The last chunk, then the end of the queue: the checker finishes its work.
            let read = read.and_then(|v| rx.send().map(|()| v));
            rx.to_check = None;
            let checked = checker
                .join()
                .unwrap_or_else(|_| Err(bad(path, "the checking thread panicked")));
            // The checker's error is the cause when it stopped first.
            let ((check_ms, device_ms), (id_bits, verified)) = match (checked, read) {
                (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
                (Ok(t), Ok(v)) => (t, v),
            };
            let mut split = rx.split;
            split.check_ms = check_ms;
            split.device_ms = device_ms;
            let host_bytes = rx.host_bytes;
            let buf = rx.buf;
            let toc = index_with(&buf, id_bits, path, false)?;
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
        })
    }

    /// The reading thread's part of a receive: every section (its payload's checksum work
    /// queued with its bytes), the table of contents and the footer, and nothing after the
    /// announced length. Returns the header's ring bits and the sections read (start,
    /// payload length).
    #[allow(clippy::type_complexity)]
    fn read_sections<R: Read>(
        rx: &mut Rx<'_, R>,
        len: usize,
        path: &Path,
    ) -> Result<(u32, Vec<(usize, usize)>)> {
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
            rx.start_section(plen);
            if tag == TAG_BLOB {
                rx.blob(plen)?;
            } else {
                rx.host(plen)?;
            }
            // Verified by the checking thread, in order; the receive fails if it does not.
            rx.end_section(j, sum);
            verified.push((start, plen));
            rx.host(pad_len(plen as u64) as usize)?;
        }
        rx.host(len - rx.pos)?;
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
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
        Ok((id.bits, verified))
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
