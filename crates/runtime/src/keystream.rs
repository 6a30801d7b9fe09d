//! One-time key streams: what the dealer writes for each party, in the order the party's
//! executor consumes it.
//!
//! ```text
//! header (128 bytes)
//!   0   4  magic "SUFS"
//!   4   2  version (1)
//!   6   1  party (0 or 1)
//!   7   1  ring bits n
//!   8  16  session id
//!  24  32  program fingerprint (Program::fingerprint)
//!  56  32  key-stream fingerprint (random per dealer run, identical in both parties' files)
//!  88  16  party 1's PRG seed (zero in party 0's file)
//! 104  16  reserved, zero
//! 120   8  checksum of bytes 0..120
//! sections, each: tag u8 | count u64 | payload_len u64 | payload | checksum u64 of payload
//!   tag 1: arithmetic shares, count elements bit-packed to n bits
//!   tag 2: XOR-shared bits, count bits packed
//!   tag 3: a gate key blob, count = payload_len bytes
//! end: tag 0xFF | sections u64 | 0 u64 | checksum u64 of the section count
//! ```
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
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use suf_core::pack::{pack, packed_len, unpack};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_fss::keyfmt::checksum;

use crate::error::{Result, RtError};

const MAGIC: [u8; 4] = *b"SUFS";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 128;
const TAG_ARITH: u8 = 1;
const TAG_BOOL: u8 = 2;
const TAG_BLOB: u8 = 3;
const TAG_END: u8 = 0xFF;

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

/// Writes one party's sections.
struct SectionWriter {
    sink: Box<dyn Write + Send>,
    path: PathBuf,
    sections: u64,
    bytes: u64,
}

impl SectionWriter {
    fn section(&mut self, tag: u8, count: u64, payload: &[u8]) -> Result<()> {
        let mut head = [0u8; 17];
        head[0] = tag;
        head[1..9].copy_from_slice(&count.to_le_bytes());
        head[9..17].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        let sum = checksum(payload).to_le_bytes();
        for part in [&head[..], payload, &sum[..]] {
            self.sink
                .write_all(part)
                .map_err(|e| io_err(&self.path, e))?;
        }
        self.sections += 1;
        self.bytes += 25 + payload.len() as u64;
        Ok(())
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
        std::mem::take(&mut *self.0.lock().expect("mem sink lock"))
    }
}

impl DealerStreams {
    fn new(
        w: BitWidth,
        mut rng: Csprng,
        session: [u8; 16],
        program_fp: [u8; 32],
        sinks: [(Box<dyn Write + Send>, PathBuf); 2],
    ) -> Result<Self> {
        let mut keys_fp = [0u8; 32];
        keys_fp[..16].copy_from_slice(&rng.seed());
        keys_fp[16..].copy_from_slice(&rng.seed());
        let seed1 = rng.seed();
        let mut out = sinks.map(|(sink, path)| SectionWriter {
            sink,
            path,
            sections: 0,
            bytes: 0,
        });
        for (party, o) in out.iter_mut().enumerate() {
            let id = StreamId {
                party: party as u8,
                bits: w.bits(),
                session,
                program_fp,
                keys_fp,
            };
            let h = header_bytes(&id, if party == 1 { seed1 } else { [0; 16] });
            o.sink.write_all(&h).map_err(|e| io_err(&o.path, e))?;
            o.bytes += h.len() as u64;
        }
        Ok(DealerStreams {
            w,
            rng,
            p1: Csprng::from_seed(seed1),
            out,
            finished: false,
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
        Self::new(w, rng, session, program_fp, [mk(paths[0])?, mk(paths[1])?])
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
        let s0: Vec<u64> = v.iter().map(|&x| w.sub(x, self.p1.ring(w))).collect();
        self.out[0].section(TAG_ARITH, v.len() as u64, &pack(&s0, w.bits()))
    }

    /// XOR-share bits (values 0/1).
    pub fn share_bool(&mut self, v: &[u64]) -> Result<()> {
        let s0: Vec<u64> = v.iter().map(|&x| (x ^ self.p1.next_u64()) & 1).collect();
        self.out[0].section(TAG_BOOL, v.len() as u64, &pack(&s0, 1))
    }

    /// Uniform masks for `count` elements.
    pub fn masks(&mut self, count: usize) -> Vec<u64> {
        self.rng.ring_vec(self.w, count)
    }

    /// Uniform bit masks.
    pub fn bit_masks(&mut self, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.rng.next_u64() & 1).collect()
    }

    /// One key blob per party.
    pub fn blob(&mut self, b: [Vec<u8>; 2]) -> Result<()> {
        for (o, blob) in self.out.iter_mut().zip(b.iter()) {
            o.section(TAG_BLOB, blob.len() as u64, blob)?;
        }
        Ok(())
    }

    /// Write end markers and flush. Returns the bytes of each party's stream.
    pub fn finish(mut self) -> Result<[u64; 2]> {
        for o in self.out.iter_mut() {
            let n = o.sections.to_le_bytes();
            let mut end = vec![TAG_END];
            end.extend_from_slice(&n);
            end.extend_from_slice(&0u64.to_le_bytes());
            end.extend_from_slice(&checksum(&n).to_le_bytes());
            o.sink.write_all(&end).map_err(|e| io_err(&o.path, e))?;
            o.sink.flush().map_err(|e| io_err(&o.path, e))?;
            o.bytes += end.len() as u64;
        }
        self.finished = true;
        Ok(self.key_bytes())
    }

    /// Bytes written per party so far.
    pub fn key_bytes(&self) -> [u64; 2] {
        [self.out[0].bytes, self.out[1].bytes]
    }
}

/// A party's side: reads its stream sequentially, once.
pub struct PartyStream {
    id: StreamId,
    src: Box<dyn Read + Send>,
    path: PathBuf,
    remaining: u64,
    prg: Option<Csprng>,
    sections: u64,
    ended: bool,
}

impl std::fmt::Debug for PartyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartyStream({:?}, party {})", self.path, self.id.party)
    }
}

impl PartyStream {
    fn open(mut src: Box<dyn Read + Send>, path: PathBuf, total: u64) -> Result<Self> {
        let mut h = [0u8; HEADER_LEN];
        src.read_exact(&mut h).map_err(|_| {
            RtError::KeyStream(format!("{}: shorter than its header", path.display()))
        })?;
        if h[..4] != MAGIC {
            return Err(RtError::KeyStream(format!(
                "{}: not a SUF key stream",
                path.display()
            )));
        }
        let ver = u16::from_le_bytes([h[4], h[5]]);
        if ver != VERSION {
            return Err(RtError::KeyStream(format!(
                "{}: format version {ver}, this build reads {VERSION}",
                path.display()
            )));
        }
        let sum = u64::from_le_bytes(h[120..128].try_into().expect("8 bytes"));
        if checksum(&h[..120]) != sum {
            return Err(RtError::KeyStream(format!(
                "{}: header checksum mismatch",
                path.display()
            )));
        }
        let party = h[6];
        if party > 1 || !(1..=64).contains(&h[7]) {
            return Err(RtError::KeyStream(format!(
                "{}: bad party or width",
                path.display()
            )));
        }
        let id = StreamId {
            party,
            bits: h[7] as u32,
            session: h[8..24].try_into().expect("16"),
            program_fp: h[24..56].try_into().expect("32"),
            keys_fp: h[56..88].try_into().expect("32"),
        };
        let seed: [u8; 16] = h[88..104].try_into().expect("16");
        Ok(PartyStream {
            id,
            src,
            path,
            remaining: total.saturating_sub(HEADER_LEN as u64),
            prg: (party == 1).then(|| Csprng::from_seed(seed)),
            sections: 0,
            ended: false,
        })
    }

    /// Open a key file for one run of `program_fp` as `party`: checks the header and that it
    /// was made for this party, program and ring before the one-time marker is created (a
    /// wrong file is refused without being consumed).
    pub fn open_file_for(path: &Path, party: u8, program_fp: &[u8; 32], bits: u32) -> Result<Self> {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let total = f.metadata().map_err(|e| io_err(path, e))?.len();
        Self::open(Box::new(BufReader::new(f)), path.to_path_buf(), total)?
            .check(party, program_fp, bits)?;
        Self::open_file(path)
    }

    /// Open a key file for one run: checks the header, then creates the one-time marker.
    pub fn open_file(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let total = f.metadata().map_err(|e| io_err(path, e))?.len();
        let s = Self::open(
            Box::new(BufReader::with_capacity(1 << 20, f)),
            path.to_path_buf(),
            total,
        )?;
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
        Ok(s)
    }

    /// A stream held in memory (consumed by value: it cannot be used twice).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let total = bytes.len() as u64;
        Self::open(
            Box::new(std::io::Cursor::new(bytes)),
            PathBuf::from("<memory>"),
            total,
        )
    }

    /// The header's identity.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// Check the stream was made for this party and program.
    pub fn check(&self, party: u8, program_fp: &[u8; 32], bits: u32) -> Result<()> {
        if self.id.party != party {
            return Err(RtError::KeyMismatch(format!(
                "{} belongs to party {}, this is party {party}",
                self.path.display(),
                self.id.party
            )));
        }
        if &self.id.program_fp != program_fp || self.id.bits != bits {
            return Err(RtError::KeyMismatch(format!(
                "{} was made for another program (model fingerprint or ring width differs)",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn section(&mut self, want: u8, count: u64) -> Result<Vec<u8>> {
        let bad = |p: &Path, m: String| RtError::KeyStream(format!("{}: {m}", p.display()));
        if self.ended {
            return Err(bad(&self.path, "read past the end".into()));
        }
        let mut head = [0u8; 17];
        self.src
            .read_exact(&mut head)
            .map_err(|_| bad(&self.path, "truncated (the program needs more keys)".into()))?;
        let tag = head[0];
        let cnt = u64::from_le_bytes(head[1..9].try_into().expect("8"));
        let len = u64::from_le_bytes(head[9..17].try_into().expect("8"));
        if tag != want || (want != TAG_BLOB && cnt != count) {
            return Err(bad(
                &self.path,
                format!("section {}: found tag {tag} × {cnt}, expected tag {want} × {count} (keys made for another program?)", self.sections),
            ));
        }
        let expect = match tag {
            TAG_ARITH => packed_len(cnt as usize, self.id.bits) as u64,
            TAG_BOOL => packed_len(cnt as usize, 1) as u64,
            _ => cnt,
        };
        if len != expect || len + 25 > self.remaining {
            return Err(bad(
                &self.path,
                format!("section {} has a bad length", self.sections),
            ));
        }
        let mut payload = vec![0u8; len as usize];
        let mut sum = [0u8; 8];
        self.src
            .read_exact(&mut payload)
            .and_then(|_| self.src.read_exact(&mut sum))
            .map_err(|_| bad(&self.path, "truncated".into()))?;
        if checksum(&payload) != u64::from_le_bytes(sum) {
            return Err(bad(
                &self.path,
                format!("section {} checksum mismatch", self.sections),
            ));
        }
        self.remaining -= len + 25;
        self.sections += 1;
        Ok(payload)
    }

    /// This party's shares of `count` arithmetic values.
    pub fn take_arith(&mut self, count: usize) -> Result<Vec<u64>> {
        let w = BitWidth::new(self.id.bits)?;
        match &mut self.prg {
            Some(p) => Ok(p.ring_vec(w, count)),
            None => {
                let b = self.section(TAG_ARITH, count as u64)?;
                unpack(&b, w.bits(), count).map_err(|e| RtError::KeyStream(e.to_string()))
            }
        }
    }

    /// This party's XOR shares of `count` bits.
    pub fn take_bool(&mut self, count: usize) -> Result<Vec<u64>> {
        match &mut self.prg {
            Some(p) => Ok((0..count).map(|_| p.next_u64() & 1).collect()),
            None => {
                let b = self.section(TAG_BOOL, count as u64)?;
                unpack(&b, 1, count).map_err(|e| RtError::KeyStream(e.to_string()))
            }
        }
    }

    /// The next key blob.
    pub fn take_blob(&mut self) -> Result<Vec<u8>> {
        self.section(TAG_BLOB, 0)
    }

    /// Check the end marker: the program consumed exactly the keys that were made.
    pub fn finish(&mut self) -> Result<()> {
        let mut end = [0u8; 25];
        self.src.read_exact(&mut end).map_err(|_| {
            RtError::KeyStream(format!("{}: missing end marker", self.path.display()))
        })?;
        let n = u64::from_le_bytes(end[1..9].try_into().expect("8"));
        if end[0] != TAG_END || n != self.sections {
            return Err(RtError::KeyStream(format!(
                "{}: {} sections were made but the program consumed {} (keys made for another program?)",
                self.path.display(),
                n,
                self.sections
            )));
        }
        self.ended = true;
        Ok(())
    }
}
