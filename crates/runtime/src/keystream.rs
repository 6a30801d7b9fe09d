//! One-time key streams: what the dealer writes for each party, in the order the party's
//! executor consumes it.
//!
//! # Format (version 2)
//!
//! All integers little endian. Every section head, payload and the table of contents start at
//! a multiple of 16 bytes from the start of the stream; padding bytes are zero and counted in
//! the stream's size.
//! ```text
//! header (128 bytes)
//!   0   4  magic "SUFS"
//!   4   2  version (2)
//!   6   1  party (0 or 1)
//!   7   1  ring bits n
//!   8  16  session id
//!  24  32  program fingerprint (Program::fingerprint)
//!  56  32  key-stream fingerprint (random per dealer run, identical in both parties' files)
//!  88  16  party 1's PRG seed (zero in party 0's file)
//! 104  16  reserved, zero
//! 120   8  checksum of bytes 0..120
//! sections, in consumption order, each:
//!   0   1  tag: 1 arithmetic shares (count elements bit-packed to n bits),
//!              2 XOR-shared bits (count bits packed), 3 a gate key blob (count = payload_len)
//!   1   7  zero
//!   8   8  count
//!  16   8  payload_len
//!  24   8  checksum of the payload (chunked: see below)
//!  32   .  payload, then zero padding to a multiple of 16
//! table of contents: one 32-byte entry per section, in order:
//!   tag u8 | 7 zero | count u64 | payload offset u64 | payload_len u64
//! footer (48 bytes, the end of the stream):
//!   0   8  end marker "SUFS-END"
//!   8   8  number of sections
//!  16   8  offset of the table of contents
//!  24   8  length of the whole stream (so nothing may follow the footer)
//!  32   8  checksum of the table of contents
//!  40   8  checksum of footer bytes 0..40
//! ```
//!
//! A payload's checksum is `keyfmt::checksum` of the concatenated little-endian checksums of
//! its 1 MiB chunks (the last one shorter; an empty payload has none), so a loader verifies a
//! large section on every core.
//!
//! **Loading.** A party loads its whole stream once ([`PartyStream::from_bytes`], or
//! [`PartyStream::open_file`] which reads the file) and checks everything at open: the header,
//! the footer and end marker (so a truncated stream or trailing bytes are refused), every TOC
//! entry against the section head it indexes, every section's length against its tag and
//! count, the zero padding, and every checksum — once. Consuming a section afterwards is an
//! index step: arithmetic and bit shares are unpacked from the buffer, and a gate key blob is
//! handed out **without a copy** as a [`KeyBlob`] (a shared handle on the buffer + a range)
//! whose [`KeyBlob::key`] carries its origin: the stream's [`PartyStream::token`] and its byte
//! offset. Gate payloads are laid out so that every DCF body is 16-aligned in the buffer, which
//! is what a device backend needs to evaluate from offsets into one upload of
//! [`PartyStream::bytes`] (`Backend::attach_keys`). Parsing never panics, never overflows and
//! never allocates beyond the input's length (the TOC has at most one entry per 32 bytes).
//!
//! Party 1's shares of masks and correlations are not stored: they are the output of an
//! AES-CTR generator under the 16-byte seed in its header, drawn in consumption order; the
//! dealer draws the same stream and writes only party 0's complementary shares. That roughly
//! halves what the dealer ships.
//!
//! **One-time use.** Opening a key file for a run creates a sidecar marker `<file>.used`
//! (create-new, so two runs cannot both succeed) after the header checks and before any key
//! material is read; a second run over the same file is refused with [`RtError::KeyReused`].

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;
use suf_core::pack::{pack, unpack_to};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::keyfmt::checksum;
use suf_fss::{KeyOrigin, KeyRef};

use crate::error::{Result, RtError};
use crate::ir::Dtype;

mod receive;
pub use receive::{ReceiveSplit, ReceiveStats};

const MAGIC: [u8; 4] = *b"SUFS";
const VERSION: u16 = 2;
const HEADER_LEN: usize = 128;
/// Section head: tag, zeros, count, payload length, payload checksum.
const HEAD_LEN: usize = 32;
/// One table-of-contents entry.
const TOC_ENTRY: usize = 32;
const FOOTER_LEN: usize = 48;
const END_MARKER: [u8; 8] = *b"SUFS-END";
/// Alignment of section heads, payloads and the TOC.
const ALIGN: usize = 16;
const TAG_ARITH: u8 = 1;
const TAG_BOOL: u8 = 2;
const TAG_BLOB: u8 = 3;

/// The identity of a key stream (everything in its header but the seed).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StreamId {
    /// Party 0 or 1.
    pub party: u8,
    /// Ring bits.
    pub bits: u32,
    /// Session id.
    pub session: [u8; 16],
    /// Program fingerprint.
    pub program_fp: [u8; 32],
    /// Key-stream fingerprint (same in both parties' files).
    pub keys_fp: [u8; 32],
}

fn header_bytes(id: &StreamId, seed: [u8; 16]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.push(id.party);
    h.push(id.bits as u8);
    h.extend_from_slice(&id.session);
    h.extend_from_slice(&id.program_fp);
    h.extend_from_slice(&id.keys_fp);
    h.extend_from_slice(&seed);
    h.extend_from_slice(&[0u8; 16]);
    let c = checksum(&h);
    h.extend_from_slice(&c.to_le_bytes());
    h
}

fn io_err(path: &Path, source: std::io::Error) -> RtError {
    RtError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The checksum of a section payload (the key bodies' chunked checksum, in parallel).
fn payload_sum(p: &[u8]) -> u64 {
    suf_fss::keyfmt::body_checksum(p)
}

/// Zero bytes that bring `len` to a multiple of [`ALIGN`].
fn pad_len(len: u64) -> u64 {
    (ALIGN as u64 - len % ALIGN as u64) % ALIGN as u64
}

/// Bytes of a stream outside its sections: the header and the footer (closed form, for
/// capacity planning; [`section_bytes`] gives the rest).
pub const FIXED_BYTES: u64 = (HEADER_LEN + FOOTER_LEN) as u64;

/// Bytes one section with a payload of `payload` bytes adds to a stream: its head, the
/// payload, zero padding to a multiple of 16 and its table-of-contents entry. Arithmetic and
/// bit sections exist in party 0's stream only (party 1 draws its shares from its seed); gate
/// blobs are in both. `None` on overflow.
pub fn section_bytes(payload: u64) -> Option<u64> {
    (HEAD_LEN as u64 + TOC_ENTRY as u64)
        .checked_add(payload)?
        .checked_add(pad_len(payload))
}

/// Payload bytes of an arithmetic section of `count` shares of `bits` bits, or (with
/// `bits = 1`) of a bit section.
pub fn shares_payload(count: u64, bits: u32) -> u64 {
    (count as u128 * bits as u128).div_ceil(8) as u64
}

/// Where a [`SectionWriter`]'s bytes go: straight into the sink, or to a writer thread that
/// owns the sink (the dealer hands it owned buffers and goes on dealing while it writes).
enum Sink {
    Direct(Box<dyn Write + Send>),
    Threaded {
        tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    },
}

impl Sink {
    /// A writer thread over `sink`; up to `depth` buffers wait in its queue. `clock` gathers
    /// the nanoseconds the thread spends inside the sink's writes (a slow reader shows there).
    fn threaded(
        mut sink: Box<dyn Write + Send>,
        depth: usize,
        clock: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(depth);
        let thread = std::thread::spawn(move || -> std::io::Result<()> {
            for b in rx {
                let t = std::time::Instant::now();
                let r = sink.write_all(&b);
                clock.fetch_add(
                    t.elapsed().as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                r?;
                // Written: its (mapped) memory serves the next key buffers.
                suf_fss::dealer::recycle_buffer(b);
            }
            sink.flush()
        });
        Sink::Threaded {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// The writer thread's own error once it has stopped (its channel closed early).
    fn thread_error(&mut self) -> std::io::Error {
        match self.close() {
            Err(e) => e,
            Ok(()) => std::io::Error::other("the key writer thread stopped"),
        }
    }

    fn write_owned(&mut self, b: Vec<u8>) -> std::io::Result<()> {
        match self {
            Sink::Direct(w) => w.write_all(&b),
            Sink::Threaded { tx: Some(tx), .. } => match tx.send(b) {
                Ok(()) => Ok(()),
                Err(_) => Err(self.thread_error()),
            },
            Sink::Threaded { tx: None, .. } => {
                Err(std::io::Error::other("the key stream is closed"))
            }
        }
    }

    /// Flush; for a writer thread: close its queue and wait until it has written everything.
    fn close(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Direct(w) => w.flush(),
            Sink::Threaded { tx, thread } => {
                *tx = None;
                match thread.take().map(|t| t.join()) {
                    Some(Ok(r)) => r,
                    Some(Err(_)) => Err(std::io::Error::other("the key writer thread panicked")),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // An abandoned stream (an error elsewhere): let the thread drain and end.
        let _ = self.close();
    }
}

/// Writes one party's sections, then its table of contents and footer.
struct SectionWriter {
    sink: Sink,
    path: PathBuf,
    /// Bytes written so far (the position of the next byte).
    pos: u64,
    /// The table of contents so far.
    toc: Vec<u8>,
}

impl SectionWriter {
    fn write(&mut self, b: Vec<u8>) -> Result<()> {
        let n = b.len() as u64;
        self.sink
            .write_owned(b)
            .map_err(|e| io_err(&self.path, e))?;
        self.pos += n;
        Ok(())
    }

    fn section(&mut self, tag: u8, count: u64, payload: Vec<u8>) -> Result<()> {
        let mut head = [0u8; HEAD_LEN];
        head[0] = tag;
        head[8..16].copy_from_slice(&count.to_le_bytes());
        head[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        head[24..32].copy_from_slice(&payload_sum(&payload).to_le_bytes());
        let mut entry = [0u8; TOC_ENTRY];
        entry[0] = tag;
        entry[8..16].copy_from_slice(&count.to_le_bytes());
        entry[16..24].copy_from_slice(&(self.pos + HEAD_LEN as u64).to_le_bytes());
        entry[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        self.toc.extend_from_slice(&entry);
        let pad = pad_len(self.pos + (HEAD_LEN + payload.len()) as u64) as usize;
        if payload.len() < 1 << 16 {
            // Small sections in one buffer.
            let mut b = Vec::with_capacity(HEAD_LEN + payload.len() + pad);
            b.extend_from_slice(&head);
            b.extend_from_slice(&payload);
            b.resize(b.len() + pad, 0);
            return self.write(b);
        }
        self.write(head.to_vec())?;
        self.write(payload)?;
        self.write(vec![0u8; pad])
    }

    fn finish(&mut self) -> Result<()> {
        let toc = std::mem::take(&mut self.toc);
        let toc_off = self.pos;
        let sections = (toc.len() / TOC_ENTRY) as u64;
        let toc_sum = checksum(&toc);
        self.write(toc)?;
        let mut f = Vec::with_capacity(FOOTER_LEN);
        f.extend_from_slice(&END_MARKER);
        f.extend_from_slice(&sections.to_le_bytes());
        f.extend_from_slice(&toc_off.to_le_bytes());
        f.extend_from_slice(&(self.pos + FOOTER_LEN as u64).to_le_bytes());
        f.extend_from_slice(&toc_sum.to_le_bytes());
        let c = checksum(&f);
        f.extend_from_slice(&c.to_le_bytes());
        self.write(f)?;
        self.sink.close().map_err(|e| io_err(&self.path, e))
    }
}

/// The dealer's side: writes both parties' streams in consumption order.
pub struct DealerStreams {
    w: BitWidth,
    /// The dealer's CSPRNG (masks, keys).
    pub rng: Csprng,
    p1: Csprng,
    out: [SectionWriter; 2],
    finished: bool,
    /// Nanoseconds each party's writer thread spent inside its sink's writes.
    clocks: [Arc<std::sync::atomic::AtomicU64>; 2],
}

/// Milliseconds each party's writer thread has spent inside its sink's writes (see
/// [`DealerStreams::sink_clock`]).
#[derive(Clone, Debug, Default)]
pub struct SinkClock([Arc<std::sync::atomic::AtomicU64>; 2]);

impl SinkClock {
    /// Milliseconds per party so far (final once the streams are finished).
    pub fn ms(&self) -> [f64; 2] {
        self.0
            .each_ref()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6)
    }
}

impl std::fmt::Debug for DealerStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DealerStreams(n={}, bytes={:?})",
            self.w.bits(),
            self.key_bytes()
        )
    }
}

/// A sink that appends to a shared in-memory buffer (for tests and single-process runs).
#[derive(Clone, Default, Debug)]
pub struct MemSink(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for MemSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MemSink {
    /// The bytes written so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl DealerStreams {
    fn new(
        w: BitWidth,
        mut rng: Csprng,
        session: [u8; 16],
        program_fp: [u8; 32],
        sinks: [(Box<dyn Write + Send>, PathBuf); 2],
        threaded: bool,
    ) -> Result<Self> {
        let mut keys_fp = [0u8; 32];
        keys_fp[..16].copy_from_slice(&rng.seed());
        keys_fp[16..].copy_from_slice(&rng.seed());
        let seed1 = rng.seed();
        let clocks: [Arc<std::sync::atomic::AtomicU64>; 2] = Default::default();
        let [s0, s1] = sinks;
        let mut out = [(0usize, s0), (1, s1)].map(|(party, (sink, path))| SectionWriter {
            sink: if threaded {
                Sink::threaded(sink, 8, Arc::clone(&clocks[party]))
            } else {
                Sink::Direct(sink)
            },
            path,
            pos: 0,
            toc: Vec::new(),
        });
        for (party, o) in out.iter_mut().enumerate() {
            let id = StreamId {
                party: party as u8,
                bits: w.bits(),
                session,
                program_fp,
                keys_fp,
            };
            o.write(header_bytes(&id, if party == 1 { seed1 } else { [0; 16] }))?;
        }
        Ok(DealerStreams {
            w,
            rng,
            p1: Csprng::from_seed(seed1),
            out,
            finished: false,
            clocks,
        })
    }

    /// Streams into two files (created; existing files are refused).
    pub fn to_files(
        w: BitWidth,
        rng: Csprng,
        session: [u8; 16],
        program_fp: [u8; 32],
        paths: [&Path; 2],
    ) -> Result<Self> {
        let mk = |p: &Path| -> Result<(Box<dyn Write + Send>, PathBuf)> {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| io_err(p, e))?;
            Ok((
                Box::new(BufWriter::with_capacity(1 << 20, f)),
                p.to_path_buf(),
            ))
        };
        Self::new(
            w,
            rng,
            session,
            program_fp,
            [mk(paths[0])?, mk(paths[1])?],
            true,
        )
    }

    /// Streams into two writers (e.g. one local socket per party; `labels` name them in
    /// errors). The writers are flushed by [`DealerStreams::finish`] and closed when the
    /// streams are dropped.
    pub fn to_writers(
        w: BitWidth,
        rng: Csprng,
        session: [u8; 16],
        program_fp: [u8; 32],
        sinks: [Box<dyn Write + Send>; 2],
        labels: [&str; 2],
    ) -> Result<Self> {
        let [s0, s1] = sinks;
        Self::new(
            w,
            rng,
            session,
            program_fp,
            [
                (s0, PathBuf::from(labels[0])),
                (s1, PathBuf::from(labels[1])),
            ],
            true,
        )
    }

    /// Streams into memory.
    pub fn to_memory(
        w: BitWidth,
        rng: Csprng,
        session: [u8; 16],
        program_fp: [u8; 32],
    ) -> Result<(Self, [MemSink; 2])> {
        let sinks = [MemSink::default(), MemSink::default()];
        let d = Self::new(
            w,
            rng,
            session,
            program_fp,
            [
                (Box::new(sinks[0].clone()), PathBuf::from("<memory:0>")),
                (Box::new(sinks[1].clone()), PathBuf::from("<memory:1>")),
            ],
            false,
        )?;
        Ok((d, sinks))
    }

    /// The ring.
    pub fn width(&self) -> BitWidth {
        self.w
    }

    /// Secret-share arithmetic values: party 1's shares come from its seed, party 0's are
    /// written.
    pub fn share_arith(&mut self, v: &[u64]) -> Result<()> {
        let w = self.w;
        let r1 = self.p1.ring_vec(w, v.len());
        let s0: Vec<u64> = v.iter().zip(&r1).map(|(&x, &r)| w.sub(x, r)).collect();
        self.out[0].section(TAG_ARITH, v.len() as u64, pack(&s0, w.bits()))
    }

    /// XOR-share bits (values 0/1).
    pub fn share_bool(&mut self, v: &[u64]) -> Result<()> {
        let mut r1 = vec![0u64; v.len()];
        self.p1.fill_masked(1, &mut r1);
        let s0: Vec<u64> = v.iter().zip(&r1).map(|(&x, &r)| (x ^ r) & 1).collect();
        self.out[0].section(TAG_BOOL, v.len() as u64, pack(&s0, 1))
    }

    /// Uniform masks for `count` elements.
    pub fn masks(&mut self, count: usize) -> Vec<u64> {
        self.rng.ring_vec(self.w, count)
    }

    /// Uniform bit masks.
    pub fn bit_masks(&mut self, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.rng.next_u64() & 1).collect()
    }

    /// One key blob per party. The payload starts 16-aligned in the stream, so a blob made by
    /// `gate::join_parts` has every part 16-aligned too.
    pub fn blob(&mut self, b: [Vec<u8>; 2]) -> Result<()> {
        for (o, blob) in self.out.iter_mut().zip(b) {
            o.section(TAG_BLOB, blob.len() as u64, blob)?;
        }
        Ok(())
    }

    /// Write the tables of contents and footers and flush. Returns the bytes of each party's
    /// stream.
    pub fn finish(mut self) -> Result<[u64; 2]> {
        for o in self.out.iter_mut() {
            o.finish()?;
        }
        self.finished = true;
        Ok(self.key_bytes())
    }

    /// A handle on the time each party's writer thread spends inside its sink's writes (a
    /// sink that cannot take the bytes as fast as they are dealt shows there; zeros for
    /// streams written without a writer thread).
    pub fn sink_clock(&self) -> SinkClock {
        SinkClock(self.clocks.clone())
    }

    /// Bytes written per party so far.
    pub fn key_bytes(&self) -> [u64; 2] {
        [self.out[0].pos, self.out[1].pos]
    }
}

/// A gate key blob handed out by [`PartyStream::take_blob`]: a shared handle on the loaded
/// stream and the blob's range in it (no copy).
#[derive(Clone)]
pub struct KeyBlob {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
    stream: u64,
    /// Whether the host holds the key bodies inside (false: received into a device).
    on_host: bool,
}

impl std::fmt::Debug for KeyBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyBlob(stream {:#x}, {:?})", self.stream, self.range)
    }
}

impl KeyBlob {
    /// The blob's bytes with their origin in the stream.
    pub fn key(&self) -> KeyRef<'_> {
        KeyRef {
            bytes: self.bytes(),
            origin: Some(KeyOrigin {
                stream: self.stream,
                offset: self.range.start as u64,
                on_host: self.on_host,
            }),
        }
    }

    /// The blob's bytes.
    pub fn bytes(&self) -> &[u8] {
        // The range was checked against the buffer when the stream was opened.
        self.buf.get(self.range.clone()).unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// One indexed section of a loaded stream.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Section {
    tag: u8,
    count: u64,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// Distinguishes streams loaded in one process (two parties, or one stream loaded twice).
static LOADS: AtomicU64 = AtomicU64::new(0);

/// A party's side: its whole stream loaded and checked once, consumed in order, once.
pub struct PartyStream {
    id: StreamId,
    buf: Arc<Vec<u8>>,
    path: PathBuf,
    toc: Vec<Section>,
    next: usize,
    prg: Option<Csprng>,
    token: u64,
    ended: bool,
    /// Whether the host holds the DCF/DPF key bodies (false: the stream was received straight
    /// into a device backend, [`PartyStream::receive`]).
    bodies_on_host: bool,
}

impl std::fmt::Debug for PartyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartyStream({:?}, party {}, {} sections, {} bytes)",
            self.path,
            self.id.party,
            self.toc.len(),
            self.buf.len()
        )
    }
}

fn bad(path: &Path, m: impl std::fmt::Display) -> RtError {
    RtError::KeyStream(format!("{}: {m}", path.display()))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Check the 128-byte header: returns the identity and party 1's seed.
fn parse_header(h: &[u8], path: &Path) -> Result<(StreamId, [u8; 16])> {
    if h.len() < HEADER_LEN {
        return Err(bad(path, "shorter than its header"));
    }
    if h[..4] != MAGIC {
        return Err(bad(path, "not a SUF key stream"));
    }
    let ver = u16::from_le_bytes([h[4], h[5]]);
    if ver != VERSION {
        return Err(bad(
            path,
            format!("format version {ver}, this build reads {VERSION}"),
        ));
    }
    if checksum(&h[..120]) != u64_at(h, 120) {
        return Err(bad(path, "header checksum mismatch"));
    }
    let party = h[6];
    if party > 1 || !(1..=64).contains(&h[7]) {
        return Err(bad(path, "bad party or width"));
    }
    let mut id = StreamId {
        party,
        bits: h[7] as u32,
        session: [0; 16],
        program_fp: [0; 32],
        keys_fp: [0; 32],
    };
    id.session.copy_from_slice(&h[8..24]);
    id.program_fp.copy_from_slice(&h[24..56]);
    id.keys_fp.copy_from_slice(&h[56..88]);
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&h[88..104]);
    Ok((id, seed))
}

/// Payload bytes a section of `tag` × `count` must have (`None`: unknown tag or overflow).
fn expected_len(tag: u8, count: u64, bits: u32) -> Option<u64> {
    let bits_per = match tag {
        TAG_ARITH => bits as u128,
        TAG_BOOL => 1,
        TAG_BLOB => return Some(count),
        _ => return None,
    };
    u64::try_from((count as u128 * bits_per).div_ceil(8)).ok()
}

/// Check the footer, the TOC and every section head against it; returns the index. Every
/// offset is checked before use with checked arithmetic, so no input panics or overflows, and
/// the index holds at most `buf.len() / 32` entries.
fn index(buf: &[u8], bits: u32, path: &Path) -> Result<Vec<Section>> {
    index_with(buf, bits, path, true)
}

/// [`index`], with the payload checksums verified or not (`sums = false` only for a stream
/// whose payload checksums were verified while it arrived: [`PartyStream::receive`]).
pub(crate) fn index_with(buf: &[u8], bits: u32, path: &Path, sums: bool) -> Result<Vec<Section>> {
    let total = buf.len();
    if total < HEADER_LEN + FOOTER_LEN {
        return Err(bad(path, "truncated (no footer)"));
    }
    let f = &buf[total - FOOTER_LEN..];
    if checksum(&f[..40]) != u64_at(f, 40) || f[..8] != END_MARKER {
        return Err(bad(
            path,
            "missing or corrupted end marker (truncated, or bytes after the end)",
        ));
    }
    let sections = u64_at(f, 8);
    let toc_off = u64_at(f, 16);
    if u64_at(f, 24) != total as u64 {
        return Err(bad(
            path,
            format!(
                "the footer says {} bytes, the stream has {total} (truncated or trailing bytes)",
                u64_at(f, 24)
            ),
        ));
    }
    let toc_end = (total - FOOTER_LEN) as u64;
    let toc_len = sections.checked_mul(TOC_ENTRY as u64);
    if toc_len.and_then(|l| toc_off.checked_add(l)) != Some(toc_end)
        || toc_off < HEADER_LEN as u64
        || !toc_off.is_multiple_of(ALIGN as u64)
    {
        return Err(bad(path, "table of contents out of place"));
    }
    // toc_off < toc_end ≤ total: the conversions below are exact.
    let toc = &buf[toc_off as usize..toc_end as usize];
    if checksum(toc) != u64_at(f, 32) {
        return Err(bad(path, "table of contents checksum mismatch"));
    }
    let mut out = Vec::with_capacity(toc.len() / TOC_ENTRY);
    let mut pos = HEADER_LEN as u64;
    for (j, e) in toc.chunks_exact(TOC_ENTRY).enumerate() {
        let m = |what: &str| bad(path, format!("section {j}: {what}"));
        let head_end = pos
            .checked_add(HEAD_LEN as u64)
            .filter(|&x| x <= toc_off)
            .ok_or_else(|| m("section head past the table of contents"))?;
        let h = &buf[pos as usize..head_end as usize];
        let (tag, count, len) = (h[0], u64_at(h, 8), u64_at(h, 16));
        if h[1..8].iter().any(|&x| x != 0) || e[1..8].iter().any(|&x| x != 0) {
            return Err(m("reserved bytes are not zero"));
        }
        if e[0] != tag || u64_at(e, 8) != count || u64_at(e, 16) != head_end || u64_at(e, 24) != len
        {
            return Err(m("table of contents disagrees with the section head"));
        }
        if expected_len(tag, count, bits) != Some(len) {
            return Err(m(&format!("tag {tag} × {count} with a bad length {len}")));
        }
        let end = head_end
            .checked_add(len)
            .filter(|&x| x <= toc_off)
            .ok_or_else(|| m("payload past the table of contents"))?;
        let next = end
            .checked_add(pad_len(end))
            .filter(|&x| x <= toc_off)
            .ok_or_else(|| m("padding past the table of contents"))?;
        if buf[end as usize..next as usize].iter().any(|&x| x != 0) {
            return Err(m("padding is not zero"));
        }
        out.push(Section {
            tag,
            count,
            start: head_end as usize,
            len: len as usize,
        });
        pos = next;
    }
    if pos != toc_off {
        return Err(bad(
            path,
            "bytes between the last section and the table of contents",
        ));
    }
    if !sums {
        return Ok(out);
    }
    // Payload checksums, once, sections in parallel (each stored in its head at start − 8).
    let first_bad = out
        .par_iter()
        .enumerate()
        .filter(|(_, s)| payload_sum(&buf[s.start..s.start + s.len]) != u64_at(buf, s.start - 8))
        .map(|(j, _)| j)
        .min();
    if let Some(j) = first_bad {
        return Err(bad(path, format!("section {j} checksum mismatch")));
    }
    Ok(out)
}

impl PartyStream {
    /// Check a whole stream held in `buf` and index it.
    fn load(buf: Vec<u8>, path: PathBuf) -> Result<Self> {
        let (id, _) = parse_header(&buf, &path)?;
        let toc = index(&buf, id.bits, &path)?;
        Self::indexed(buf, path, toc, true)
    }

    /// A stream whose header was checked and whose sections were indexed (`toc`); the key
    /// bodies on the host or not.
    pub(crate) fn indexed(
        buf: Vec<u8>,
        path: PathBuf,
        toc: Vec<Section>,
        bodies_on_host: bool,
    ) -> Result<Self> {
        let (id, seed) = parse_header(&buf, &path)?;
        let load = LOADS.fetch_add(1, Ordering::Relaxed);
        let mut t = Vec::with_capacity(49);
        t.extend_from_slice(&id.keys_fp);
        t.push(id.party);
        t.extend_from_slice(&load.to_le_bytes());
        t.extend_from_slice(&std::process::id().to_le_bytes());
        Ok(PartyStream {
            id,
            token: checksum(&t),
            buf: Arc::new(buf),
            path,
            toc,
            next: 0,
            prg: (id.party == 1).then(|| Csprng::from_seed(seed)),
            ended: false,
            bodies_on_host,
        })
    }

    /// Open `path` and check its header (nothing else is read).
    fn read_header(path: &Path) -> Result<(File, Vec<u8>, StreamId)> {
        let mut f = File::open(path).map_err(|e| io_err(path, e))?;
        let mut h = vec![0u8; HEADER_LEN];
        f.read_exact(&mut h)
            .map_err(|_| bad(path, "shorter than its header"))?;
        let (id, _) = parse_header(&h, path)?;
        Ok((f, h, id))
    }

    /// Open a key file for one run of `program_fp` as `party`: checks the header and that it
    /// was made for this party, program and ring before the one-time marker is created (a
    /// wrong file is refused without being consumed).
    pub fn open_file_for(path: &Path, party: u8, program_fp: &[u8; 32], bits: u32) -> Result<Self> {
        let (_, _, id) = Self::read_header(path)?;
        check_id(&id, path, party, program_fp, bits)?;
        Self::open_file(path)
    }

    /// Open a key file for one run: checks the header, creates the one-time marker, then
    /// reads the whole file and checks it (footer, TOC, every checksum).
    pub fn open_file(path: &Path) -> Result<Self> {
        let (mut f, mut buf, _) = Self::read_header(path)?;
        let mut marker = path.as_os_str().to_owned();
        marker.push(".used");
        let marker = PathBuf::from(marker);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(mut m) => {
                let _ = writeln!(m, "consumed by a SUF online run");
                m.sync_all().map_err(|e| io_err(&marker, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RtError::KeyReused {
                    path: path.to_path_buf(),
                    marker,
                })
            }
            Err(e) => return Err(io_err(&marker, e)),
        }
        // The file's own length bounds the allocation.
        let len = f.metadata().map_err(|e| io_err(path, e))?.len();
        buf.reserve(usize::try_from(len).unwrap_or(0).saturating_sub(HEADER_LEN));
        f.read_to_end(&mut buf).map_err(|e| io_err(path, e))?;
        Self::load(buf, path.to_path_buf())
    }

    /// A stream held in memory (consumed by value: it cannot be used twice).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::load(bytes, PathBuf::from("<memory>"))
    }

    /// The header's identity.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// A number unique to this loaded stream (from its key-stream fingerprint, party and load):
    /// the `stream` of every [`KeyOrigin`] it hands out.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The whole stream buffer (for `Backend::attach_keys`). For a stream received into a
    /// device ([`PartyStream::bodies_on_host`] false) the DCF/DPF key bodies in it are zeros.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the host holds the stream's DCF and DPF key bodies: false for a stream received
    /// straight into a device backend ([`PartyStream::receive`]), whose bodies only that
    /// device holds (host evaluation of them is refused, `FssError::BodyOnDevice`).
    pub fn bodies_on_host(&self) -> bool {
        self.bodies_on_host
    }

    /// Sections in the stream.
    pub fn sections(&self) -> usize {
        self.toc.len()
    }

    /// Check the stream was made for this party and program.
    pub fn check(&self, party: u8, program_fp: &[u8; 32], bits: u32) -> Result<()> {
        check_id(&self.id, &self.path, party, program_fp, bits)
    }

    /// The next section, which must be `want` × `count` (any count for a blob).
    fn section(&mut self, want: u8, count: u64) -> Result<Range<usize>> {
        if self.ended {
            return Err(bad(&self.path, "read past the end"));
        }
        let s = *self
            .toc
            .get(self.next)
            .ok_or_else(|| bad(&self.path, "truncated (the program needs more keys)"))?;
        if s.tag != want || (want != TAG_BLOB && s.count != count) {
            return Err(bad(
                &self.path,
                format!(
                    "section {}: found tag {} × {}, expected tag {want} × {count} (keys made for another program?)",
                    self.next, s.tag, s.count
                ),
            ));
        }
        self.next += 1;
        Ok(s.start..s.start + s.len)
    }

    /// This party's shares of `count` arithmetic values.
    pub fn take_arith(&mut self, count: usize) -> Result<Vec<u64>> {
        let mut v = vec![0u64; count];
        self.take_arith_into(&mut v)?;
        Ok(v)
    }

    /// This party's shares of `out.len()` arithmetic values, into `out`.
    pub fn take_arith_into(&mut self, out: &mut [u64]) -> Result<()> {
        self.take_masks_into(&mut [(Dtype::Arith, out)])
    }

    /// This party's XOR shares of `out.len()` bits, into `out`.
    pub fn take_bool_into(&mut self, out: &mut [u64]) -> Result<()> {
        self.take_masks_into(&mut [(Dtype::Bool, out)])
    }

    /// This party's shares for several values in stream order, `(dtype, out)` each (the
    /// masks of a round's openings): exactly what [`PartyStream::take_arith_into`] and
    /// [`PartyStream::take_bool_into`] give part after part, the parts filled in parallel
    /// (party 1 expands them from its seed at their counters, party 0 unpacks each section).
    pub fn take_masks_into(&mut self, parts: &mut [(Dtype, &mut [u64])]) -> Result<()> {
        let w = BitWidth::new(self.id.bits)?;
        match &mut self.prg {
            Some(p) => {
                let mut v: Vec<(u64, &mut [u64])> = parts
                    .iter_mut()
                    .map(|(d, o)| {
                        let m = match d {
                            Dtype::Arith => w.mask(),
                            Dtype::Bool => 1,
                        };
                        (m, &mut **o)
                    })
                    .collect();
                p.fill_parts(&mut v);
                Ok(())
            }
            None => {
                let mut jobs = Vec::with_capacity(parts.len());
                for (d, o) in parts.iter_mut() {
                    let (tag, bits) = match d {
                        Dtype::Arith => (TAG_ARITH, w.bits()),
                        Dtype::Bool => (TAG_BOOL, 1),
                    };
                    let r = self.section(tag, o.len() as u64)?;
                    jobs.push((r, bits, &mut **o));
                }
                let buf = &self.buf;
                let total: usize = jobs.iter().map(|j| j.2.len()).sum();
                let one =
                    |(r, bits, o): (Range<usize>, u32, &mut [u64])| unpack_to(&buf[r], bits, o);
                if total < 1 << 15 {
                    jobs.into_iter().try_for_each(one)
                } else {
                    jobs.into_par_iter().try_for_each(one)
                }
                .map_err(|e| RtError::KeyStream(e.to_string()))
            }
        }
    }

    /// This party's XOR shares of `count` bits.
    pub fn take_bool(&mut self, count: usize) -> Result<Vec<u64>> {
        let mut v = vec![0u64; count];
        self.take_bool_into(&mut v)?;
        Ok(v)
    }

    /// The next key blob, without a copy.
    pub fn take_blob(&mut self) -> Result<KeyBlob> {
        let range = self.section(TAG_BLOB, 0)?;
        Ok(KeyBlob {
            buf: Arc::clone(&self.buf),
            range,
            stream: self.token,
            on_host: self.bodies_on_host,
        })
    }

    /// Check that the program consumed exactly the sections that were made (the end marker
    /// and the absence of trailing bytes were checked when the stream was opened).
    pub fn finish(&mut self) -> Result<()> {
        if self.next != self.toc.len() {
            return Err(bad(
                &self.path,
                format!(
                    "{} sections were made but the program consumed {} (keys made for another program?)",
                    self.toc.len(),
                    self.next
                ),
            ));
        }
        self.ended = true;
        Ok(())
    }
}

fn check_id(id: &StreamId, path: &Path, party: u8, program_fp: &[u8; 32], bits: u32) -> Result<()> {
    if id.party != party {
        return Err(RtError::KeyMismatch(format!(
            "{} belongs to party {}, this is party {party}",
            path.display(),
            id.party
        )));
    }
    if &id.program_fp != program_fp || id.bits != bits {
        return Err(RtError::KeyMismatch(format!(
            "{} was made for another program (model fingerprint or ring width differs)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BITS: u32 = 13;
    const BLOBS: [usize; 5] = [0, 1, 15, 16, 17];

    /// A small stream of every section kind; returns both parties' bytes and the values.
    fn small() -> ([Vec<u8>; 2], Vec<u64>, Vec<u64>) {
        let w = BitWidth::new(BITS).unwrap();
        let (mut d, sinks) =
            DealerStreams::to_memory(w, Csprng::for_tests(1), [3; 16], [4; 32]).unwrap();
        let a: Vec<u64> = (0..7).map(|i| (i * 1000 + 7) % (1 << BITS)).collect();
        let bits: Vec<u64> = (0..11).map(|i| i % 3 % 2).collect();
        d.share_arith(&a).unwrap();
        d.share_bool(&bits).unwrap();
        for (i, &l) in BLOBS.iter().enumerate() {
            d.blob([vec![i as u8 + 1; l], vec![i as u8 + 101; l + 1]])
                .unwrap();
        }
        d.share_arith(&[]).unwrap();
        let sizes = d.finish().unwrap();
        let b = [sinks[0].take(), sinks[1].take()];
        assert_eq!(sizes, [b[0].len() as u64, b[1].len() as u64]);
        (b, a, bits)
    }

    /// Consume a stream the way `small` wrote it.
    fn consume(b: Vec<u8>) -> Result<Vec<Vec<u64>>> {
        let mut s = PartyStream::from_bytes(b)?;
        let mut out = vec![s.take_arith(7)?, s.take_bool(11)?];
        for _ in BLOBS {
            let k = s.take_blob()?;
            out.push(k.bytes().iter().map(|&x| x as u64).collect());
        }
        out.push(s.take_arith(0)?);
        s.finish()?;
        Ok(out)
    }

    fn field(b: &[u8], o: usize) -> u64 {
        u64_at(b, o)
    }
    fn set(b: &mut [u8], o: usize, v: u64) {
        b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// Recompute the TOC and footer checksums after an edit, so parsing reaches the deeper
    /// checks (the stored TOC offset and section count are used as they are, if in range).
    fn reseal(b: &mut [u8]) {
        let l = b.len();
        if l < FOOTER_LEN {
            return;
        }
        let f = l - FOOTER_LEN;
        let toc = field(b, f + 16) as usize;
        if toc <= f {
            let c = checksum(&b[toc..f]);
            set(b, f + 32, c);
        }
        let c = checksum(&b[f..f + 40]);
        set(b, f + 40, c);
    }
    fn toc_of(b: &[u8]) -> usize {
        field(b, b.len() - FOOTER_LEN + 16) as usize
    }

    #[test]
    fn closed_form_sizes_match_the_writer() {
        let (b, ..) = small();
        let blobs = |extra: u64| -> u64 {
            BLOBS
                .iter()
                .map(|&l| section_bytes(l as u64 + extra).unwrap())
                .sum()
        };
        let p0 = FIXED_BYTES
            + section_bytes(shares_payload(7, BITS)).unwrap()
            + section_bytes(shares_payload(11, 1)).unwrap()
            + blobs(0)
            + section_bytes(shares_payload(0, BITS)).unwrap();
        assert_eq!(b[0].len() as u64, p0);
        assert_eq!(b[1].len() as u64, FIXED_BYTES + blobs(1));
        assert_eq!(section_bytes(u64::MAX), None);
        assert_eq!(section_bytes(17), Some(32 + 32 + 32));
    }

    #[test]
    fn roundtrip_aligned_and_zero_copy() {
        let (b, a, bits) = small();
        for x in &b {
            assert_eq!(x.len() % ALIGN, 0);
        }
        let got0 = consume(b[0].clone()).unwrap();
        let got1 = consume(b[1].clone()).unwrap();
        let w = BitWidth::new(BITS).unwrap();
        for i in 0..a.len() {
            assert_eq!(w.add(got0[0][i], got1[0][i]), a[i]);
        }
        for i in 0..bits.len() {
            assert_eq!(got0[1][i] ^ got1[1][i], bits[i]);
        }
        for (i, &l) in BLOBS.iter().enumerate() {
            assert_eq!(got0[2 + i], vec![i as u64 + 1; l]);
            assert_eq!(got1[2 + i], vec![i as u64 + 101; l + 1]);
        }
        // Blobs are views into the one buffer, 16-aligned, with the stream's token.
        let mut s = PartyStream::from_bytes(b[0].clone()).unwrap();
        let t = PartyStream::from_bytes(b[0].clone()).unwrap();
        assert_ne!(s.token(), t.token(), "tokens are unique per load");
        assert_eq!(s.sections(), 2 + BLOBS.len() + 1);
        s.take_arith(7).unwrap();
        s.take_bool(11).unwrap();
        for &l in &BLOBS {
            let k = s.take_blob().unwrap();
            let r = k.key();
            let o = r.origin.unwrap();
            assert_eq!(o.stream, s.token());
            assert_eq!(o.offset % ALIGN as u64, 0);
            assert_eq!(r.bytes.len(), l);
            assert_eq!(
                r.bytes.as_ptr(),
                s.bytes()[o.offset as usize..].as_ptr(),
                "no copy"
            );
        }
        // A wrong order or count is refused; so is a short consumption.
        let mut s = PartyStream::from_bytes(b[0].clone()).unwrap();
        assert!(s.take_arith(8).is_err());
        let mut s = PartyStream::from_bytes(b[0].clone()).unwrap();
        assert!(s.take_blob().is_err());
        let mut s = PartyStream::from_bytes(b[0].clone()).unwrap();
        s.take_arith(7).unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert!(e.contains("consumed 1"), "{e}");
        // Reading past the end.
        let mut s = PartyStream::from_bytes(b[1].clone()).unwrap();
        for _ in BLOBS {
            s.take_blob().unwrap();
        }
        assert!(s.take_blob().is_err());
        s.finish().unwrap();
        assert!(s.take_blob().is_err());
    }

    #[test]
    fn truncation_anywhere_and_trailing_bytes_are_refused() {
        let (b, ..) = small();
        for x in &b {
            for cut in 0..x.len() {
                match PartyStream::from_bytes(x[..cut].to_vec()) {
                    Err(RtError::KeyStream(_)) => {}
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
            for extra in [1usize, 15, 16, 48] {
                let mut y = x.clone();
                y.resize(x.len() + extra, 0);
                assert!(matches!(
                    PartyStream::from_bytes(y),
                    Err(RtError::KeyStream(_))
                ));
            }
        }
    }

    /// Offsets, lengths, counts and TOC entries corrupted with every checksum re-sealed:
    /// each is a typed error, never a panic or an overflow.
    #[test]
    fn corrupted_index_is_a_typed_error() {
        let (b, ..) = small();
        let good = &b[0];
        let toc = toc_of(good);
        let f = good.len() - FOOTER_LEN;
        let entries = (f - toc) / TOC_ENTRY;
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let edit = |o: usize, v: u64| {
            let mut x = good.clone();
            set(&mut x, o, v);
            reseal(&mut x);
            x
        };
        for j in 0..entries {
            let e = toc + j * TOC_ENTRY;
            let off = field(good, e + 16);
            let len = field(good, e + 24);
            let cnt = field(good, e + 8);
            for v in [off + 16, off.wrapping_sub(16), off + 1, 0, u64::MAX] {
                cases.push(edit(e + 16, v));
            }
            for v in [len + 1, len.wrapping_sub(1), u64::MAX, 1 << 62] {
                cases.push(edit(e + 24, v));
            }
            for v in [cnt + 1, cnt.wrapping_sub(1), u64::MAX] {
                cases.push(edit(e + 8, v));
            }
            let mut x = good.clone();
            x[e] ^= 3; // tag
            reseal(&mut x);
            cases.push(x);
            let mut x = good.clone();
            x[e + 3] = 1; // reserved
            reseal(&mut x);
            cases.push(x);
            // The section head (not covered by a checksum) against the TOC.
            let h = off as usize - HEAD_LEN;
            for v in [cnt + 1, u64::MAX] {
                cases.push(edit(h + 8, v));
            }
            for v in [len + 1, u64::MAX] {
                cases.push(edit(h + 16, v));
            }
            // A payload byte: the section checksum.
            if len > 0 {
                let mut x = good.clone();
                x[off as usize] ^= 0x40;
                cases.push(x);
            }
            // A padding byte.
            let end = (off + len) as usize;
            if !end.is_multiple_of(ALIGN) {
                let mut x = good.clone();
                x[end] = 1;
                cases.push(x);
            }
        }
        // Footer fields.
        let n = field(good, f + 8);
        for v in [n + 1, n - 1, 0, u64::MAX, u64::MAX / 32 + 1] {
            cases.push(edit(f + 8, v));
        }
        for v in [
            toc as u64 + 16,
            toc as u64 - 16,
            toc as u64 + 8,
            0,
            u64::MAX,
        ] {
            cases.push(edit(f + 16, v));
        }
        for v in [good.len() as u64 + 16, good.len() as u64 - 1, u64::MAX] {
            cases.push(edit(f + 24, v));
        }
        let mut x = good.clone();
        x[f] = b'X'; // end marker
        reseal(&mut x);
        cases.push(x);
        // Header bytes.
        for o in [0usize, 4, 6, 7, 100] {
            let mut x = good.clone();
            x[o] ^= 0x11;
            cases.push(x);
        }
        for (i, c) in cases.into_iter().enumerate() {
            match consume(c) {
                Err(RtError::KeyStream(_)) => {}
                other => panic!("case {i}: {other:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random mutations of a small real stream: opening and consuming never panic.
        #[test]
        fn fuzz_stream_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            words in proptest::collection::vec((any::<usize>(), any::<u64>()), 0..3),
            cut in any::<usize>(),
            trunc in any::<bool>(),
            fix in any::<bool>(),
            party in 0usize..2,
        ) {
            let (b, ..) = small();
            let mut x = b[party].clone();
            for (pos, v) in flips {
                let i = pos % x.len();
                x[i] ^= v;
            }
            for (pos, v) in words {
                let i = pos % (x.len() - 8);
                set(&mut x, i, v);
            }
            if trunc {
                x.truncate(cut % (x.len() + 1));
            }
            if fix {
                reseal(&mut x);
            }
            let _ = consume(x);
        }
    }
}
