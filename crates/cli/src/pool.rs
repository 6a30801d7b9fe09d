//! A server's key pool and its registry of used sessions: one-time keys by identity.
//!
//! **Pool** (`--pool DIR`, filled by `suf dealer`): `pool.json` (the program the streams are
//! for, a [`Session`] manifest), `peer.secret` (32 bytes shared by the two pools, the loopback
//! link's key), and per key stream `<session>.p<party>.keys` with its masked weights
//! `<session>.weights` (session = 32 hex digits of the stream's session id). Every file the
//! dealer writes is 0600.
//!
//! **Registry** (`--state DIR`/`used-sessions.log`, 0600, append-only, fsync'd): one line
//! `v1 <session hex> <keys-fingerprint hex>` per consumed stream. It lives outside the pool,
//! so a copy of the pool made before a run (or a stream delivered again) carries no record of
//! its own: its session id is refused **from the file name, before the file is opened**, and
//! a stream whose header names a used key-stream fingerprint is refused too.
//!
//! **Consumption** ([`Pool::consume`]) happens only once the peer is authenticated and both
//! servers agreed on the session: the record is written and synced first, then the stream is
//! read (refusing anything that is not a regular file: a symlink is never followed) and its
//! file deleted. A crash after the record costs the stream, never reuses it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use suf_cli::files;
use suf_cli::session::Session;
use suf_runtime::keystream::PartyStream;

/// Name of the registry file inside `--state`.
pub const REGISTRY_FILE: &str = "used-sessions.log";
/// Name of the pool manifest.
pub const POOL_MANIFEST: &str = "pool.json";
/// Name of the loopback link secret.
pub const PEER_SECRET: &str = "peer.secret";
/// Bytes of a key stream header (`keystream` format version 2).
const HEADER_LEN: usize = 128;

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    suf_net::hex(b)
}

/// Parse `N` bytes of hex.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Create `path` for writing with owner-only permissions (0600), refusing an existing file.
pub fn create_private(path: &Path) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Write `bytes` to a new file `path` (0600) and sync it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Make an existing file owner-only (0600).
pub fn restrict_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Create a directory (and its parents) and make it owner-only (0700).
pub fn private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

#[derive(Default)]
struct Used {
    sessions: HashSet<[u8; 16]>,
    keys: HashSet<[u8; 32]>,
}

/// The registry of used sessions (see the module documentation).
pub struct Registry {
    path: PathBuf,
    inner: Mutex<(File, Used)>,
}

impl Registry {
    /// Open (or create) `state/used-sessions.log`. A malformed complete line is an error (the
    /// server does not start on a registry it cannot read); an unterminated last line (a
    /// crash during a write, before the stream was read) is dropped.
    pub fn open(state: &Path) -> Result<Self> {
        private_dir(state)?;
        let path = state.join(REGISTRY_FILE);
        let mut o = OpenOptions::new();
        o.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o
            .open(&path)
            .with_context(|| format!("opening the registry {}", path.display()))?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("reading the registry {}", path.display()))?;
        let mut used = Used::default();
        let complete = text.ends_with('\n') || text.is_empty();
        let lines: Vec<&str> = text.lines().collect();
        let n = if complete {
            lines.len()
        } else {
            lines.len().saturating_sub(1)
        };
        for (i, l) in lines.iter().take(n).enumerate() {
            let mut it = l.split(' ');
            let (Some("v1"), Some(s), Some(k), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                bail!("{} line {}: not a registry record", path.display(), i + 1);
            };
            let (Some(s), Some(k)) = (unhex::<16>(s), unhex::<32>(k)) else {
                bail!("{} line {}: bad hex", path.display(), i + 1);
            };
            used.sessions.insert(s);
            used.keys.insert(k);
        }
        if !complete {
            // Cut the unterminated tail (a record whose write never completed: its stream
            // was never read), so that the next record starts a line of its own.
            tracing::warn!(path = %path.display(), "registry: unterminated last line dropped");
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            f.set_len(keep as u64).and_then(|()| f.sync_data())?;
        }
        Ok(Registry {
            path,
            inner: Mutex::new((f, used)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (File, Used)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this session id was consumed.
    pub fn session_used(&self, s: &[u8; 16]) -> bool {
        self.lock().1.sessions.contains(s)
    }

    /// Whether this key-stream fingerprint was consumed.
    pub fn keys_used(&self, k: &[u8; 32]) -> bool {
        self.lock().1.keys.contains(k)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().1.sessions.len()
    }

    /// Record a stream as consumed (synced before returning); refuses one already recorded.
    pub fn record(&self, s: &[u8; 16], k: &[u8; 32]) -> Result<()> {
        let mut g = self.lock();
        if g.1.sessions.contains(s) || g.1.keys.contains(k) {
            bail!(
                "key stream {} was already used (one-time keys): refused",
                hex(s)
            );
        }
        let line = format!("v1 {} {}\n", hex(s), hex(k));
        g.0.write_all(line.as_bytes())
            .and_then(|()| g.0.sync_data())
            .with_context(|| format!("writing the registry {}", self.path.display()))?;
        g.1.sessions.insert(*s);
        g.1.keys.insert(*k);
        Ok(())
    }
}

/// What a stream's header says (read before consumption to agree with the peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Party the stream is for.
    pub party: u8,
    /// Ring bits.
    pub bits: u32,
    /// Session id.
    pub session: [u8; 16],
    /// Program fingerprint.
    pub program_fp: [u8; 32],
    /// Key-stream fingerprint.
    pub keys_fp: [u8; 32],
}

/// Parse a key-stream header (magic, version 2, checksum); the full stream is checked again
/// when it is loaded.
pub fn parse_header(h: &[u8]) -> Result<Header> {
    if h.len() < HEADER_LEN || h.get(..4) != Some(b"SUFS") || h.get(4..6) != Some(&[2, 0]) {
        bail!("not a version-2 key stream");
    }
    let sum = u64::from_le_bytes(h[120..128].try_into()?);
    if suf_fss::keyfmt::checksum(&h[..120]) != sum {
        bail!("key stream header checksum mismatch");
    }
    Ok(Header {
        party: h[6],
        bits: u32::from(h[7]),
        session: h[8..24].try_into()?,
        program_fp: h[24..56].try_into()?,
        keys_fp: h[56..88].try_into()?,
    })
}

/// Open `path` only if it is a regular file (never through a symlink): `lstat` first, then
/// the opened file must be that same inode.
fn open_regular(path: &Path) -> Result<File> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "{} is not a regular file (a symlink?): refused",
            path.display()
        );
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m2 = f.metadata()?;
        if (m2.dev(), m2.ino()) != (meta.dev(), meta.ino()) {
            bail!("{} changed while being opened: refused", path.display());
        }
    }
    Ok(f)
}

/// A server's pool (see the module documentation).
pub struct Pool {
    dir: PathBuf,
    party: u8,
    /// The program the streams are for.
    pub manifest: Session,
    reserved: Mutex<HashSet<[u8; 16]>>,
}

/// A stream reserved for one request (released on drop unless consumed).
pub struct Reservation {
    pool: Arc<Pool>,
    /// The stream's header.
    pub header: Header,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self.pool.reserved.lock().unwrap_or_else(|p| p.into_inner());
        r.remove(&self.header.session);
    }
}

impl Pool {
    /// Open a pool directory.
    pub fn open(dir: &Path, party: u8) -> Result<Self> {
        let mp = dir.join(POOL_MANIFEST);
        let manifest = files::read_at_most(&mp, suf_cli::session::MAX_MANIFEST_BYTES)
            .and_then(|b| suf_cli::session::parse(&b))
            .with_context(|| format!("{} is not a key pool (run `suf dealer`)", dir.display()))?;
        Ok(Pool {
            dir: dir.to_path_buf(),
            party,
            manifest,
            reserved: Mutex::new(HashSet::new()),
        })
    }

    /// The loopback link secret, if the dealer wrote one.
    pub fn peer_secret(&self) -> Result<Option<[u8; 32]>> {
        let p = self.dir.join(PEER_SECRET);
        if !p.exists() {
            return Ok(None);
        }
        let mut b = Vec::new();
        open_regular(&p)?.take(33).read_to_end(&mut b)?;
        let s: [u8; 32] = b
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not 32 bytes", p.display()))?;
        Ok(Some(s))
    }

    fn keys_path(&self, s: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.p{}.keys", hex(s), self.party))
    }

    fn weights_path(&self, s: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.weights", hex(s)))
    }

    /// Session ids of this party's streams by file name, sorted. Streams of used sessions are
    /// deleted on sight (a re-delivered or restored copy).
    pub fn scan(&self, reg: &Registry) -> Result<Vec<[u8; 16]>> {
        let suffix = format!(".p{}.keys", self.party);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing the pool {}", self.dir.display()))?
        {
            let e = e?;
            let name = e.file_name();
            let Some(s) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&suffix))
                .and_then(unhex::<16>)
            else {
                continue;
            };
            if reg.session_used(&s) {
                // Being consumed right now by a request of ours (recorded, not yet read)?
                let in_flight = self
                    .reserved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&s);
                if !in_flight {
                    tracing::warn!(session = %hex(&s), "pool: a used key stream was delivered again; refused and deleted");
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            out.push(s);
        }
        out.sort();
        Ok(out)
    }

    /// Streams that a request could still use.
    pub fn remaining(&self, reg: &Registry) -> usize {
        self.scan(reg).map(|v| v.len()).unwrap_or(0)
    }

    /// Reserve a specific stream (party 1, named by party 0), or the first free one (`None`).
    /// Checks the registry by name before the file is opened, then reads the header only.
    pub fn reserve(
        self: &Arc<Self>,
        want: Option<[u8; 16]>,
        reg: &Registry,
    ) -> Result<Option<Reservation>> {
        let candidates = match want {
            Some(s) => {
                if reg.session_used(&s) {
                    bail!(
                        "key stream {} was already used (one-time keys): refused",
                        hex(&s)
                    );
                }
                vec![s]
            }
            None => self.scan(reg)?,
        };
        for s in candidates {
            {
                let mut r = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
                if r.contains(&s) {
                    if want.is_some() {
                        bail!("key stream {} is in use by another request", hex(&s));
                    }
                    continue;
                }
                r.insert(s);
            }
            // From here the reservation releases the id on any error.
            let mut res = Reservation {
                pool: self.clone(),
                header: Header {
                    party: self.party,
                    bits: 0,
                    session: s,
                    program_fp: [0; 32],
                    keys_fp: [0; 32],
                },
            };
            let p = self.keys_path(&s);
            let mut h = vec![0u8; HEADER_LEN];
            open_regular(&p)?
                .read_exact(&mut h)
                .with_context(|| format!("{} is shorter than a header", p.display()))?;
            let hd = parse_header(&h).with_context(|| format!("{}", p.display()))?;
            if hd.session != s || hd.party != self.party {
                bail!(
                    "{} holds session {} for party {}: misnamed, refused",
                    p.display(),
                    hex(&hd.session),
                    hd.party
                );
            }
            if reg.keys_used(&hd.keys_fp) {
                bail!(
                    "{} carries a used key-stream fingerprint: refused",
                    p.display()
                );
            }
            res.header = hd;
            return Ok(Some(res));
        }
        Ok(None)
    }

    /// Consume a reserved stream: record it in the registry (synced), read it for `be` and
    /// its masked weights, delete both files, and check the whole stream. A device backend
    /// takes the stream into its memory while it is read (the host keeps all but the key
    /// bodies; `PartyStream::receive`), so a bert-base stream of 21 GB is not first read whole
    /// into host memory and then uploaded; a host backend reads it whole.
    pub fn consume(
        &self,
        res: &Reservation,
        reg: &Registry,
        weight_records: &[(String, usize)],
        be: &dyn suf_backend::Backend,
    ) -> Result<(PartyStream, files::Named)> {
        let h = &res.header;
        reg.record(&h.session, &h.keys_fp)?;
        let kp = self.keys_path(&h.session);
        let wp = self.weights_path(&h.session);
        let read = open_regular(&kp).and_then(|mut f| {
            let len = usize::try_from(f.metadata()?.len())
                .with_context(|| format!("{} is too large", kp.display()))?;
            let (keys, _) = PartyStream::receive(&mut f, len, be)
                .with_context(|| format!("reading {}", kp.display()))?;
            Ok(keys)
        });
        let _ = std::fs::remove_file(&kp);
        let keys = read?;
        let w = open_regular(&wp).and_then(|_| files::read_expecting(&wp, weight_records));
        let _ = std::fs::remove_file(&wp);
        let checked = w.and_then(|w| {
            if keys.id().session != h.session || keys.id().keys_fp != h.keys_fp {
                bail!("{} changed after its header was read", kp.display());
            }
            Ok(w)
        });
        match checked {
            Ok(w) => Ok((keys, w)),
            Err(e) => {
                // Nothing of a refused stream stays in the backend's memory.
                be.detach_keys(keys.token());
                Err(e)
            }
        }
    }
}

/// `suf certs --out DIR`: one identity per party, each private key only in its own host's
/// folder (`DIR/p0`, `DIR/p1`, with the peer's certificate), the certificates alone for the
/// client (`DIR/client`). Written into a temporary folder and renamed into place; keys 0600.
pub fn write_certs(out: &Path) -> Result<()> {
    if out.exists() {
        bail!(
            "{} exists: certs never overwrites identities (choose a new folder)",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = parent.join(format!(
        ".certs-{}",
        hex(&suf_core::prg::Csprng::from_os()?.seed()[..6])
    ));
    let r = (|| -> Result<()> {
        private_dir(&tmp)?;
        let ids = [
            suf_net::generate_identity("suf-p0")?,
            suf_net::generate_identity("suf-p1")?,
        ];
        for (p, id) in ids.iter().enumerate() {
            let d = tmp.join(format!("p{p}"));
            private_dir(&d)?;
            write_private(&d.join(format!("p{p}.key")), &id.key_der)?;
            write_private(&d.join(format!("p{p}.crt")), &id.cert_der)?;
            let q = 1 - p;
            write_private(&d.join(format!("p{q}.crt")), &ids[q].cert_der)?;
        }
        let c = tmp.join("client");
        private_dir(&c)?;
        for (p, id) in ids.iter().enumerate() {
            write_private(&c.join(format!("p{p}.crt")), &id.cert_der)?;
        }
        std::fs::rename(&tmp, out)?;
        for (p, id) in ids.iter().enumerate() {
            println!("p{p}.crt sha256 {}", hex(&id.cert_fingerprint()));
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_survives_reopen_and_refuses_twice() {
        let d = tempfile::tempdir().unwrap();
        let r = Registry::open(d.path()).unwrap();
        assert_eq!(r.len(), 0);
        r.record(&[1; 16], &[2; 32]).unwrap();
        assert!(r.record(&[1; 16], &[3; 32]).is_err());
        assert!(r.record(&[4; 16], &[2; 32]).is_err());
        drop(r);
        let r = Registry::open(d.path()).unwrap();
        assert!(r.session_used(&[1; 16]));
        assert!(r.keys_used(&[2; 32]));
        assert!(!r.session_used(&[4; 16]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(d.path().join(REGISTRY_FILE)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        // An unterminated last line is ignored (and terminated); a bad complete line is fatal.
        let p = d.path().join(REGISTRY_FILE);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"v1 0505").unwrap();
        drop(f);
        let r = Registry::open(d.path()).unwrap();
        assert_eq!(r.len(), 1);
        r.record(&[6; 16], &[6; 32]).unwrap();
        drop(r);
        assert_eq!(Registry::open(d.path()).unwrap().len(), 2);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"garbage line\n").unwrap();
        drop(f);
        let e = Registry::open(d.path()).err().unwrap();
        assert!(format!("{e:#}").contains("not a registry record"), "{e:#}");
    }

    #[test]
    fn hex_roundtrip_and_header_refusals() {
        assert_eq!(unhex::<2>("0aff"), Some([10, 255]));
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(unhex::<2>("zzzz"), None);
        assert_eq!(unhex::<1>("é"), None);
        assert!(parse_header(&[0u8; 10]).is_err());
        let mut h = vec![0u8; HEADER_LEN];
        h[..4].copy_from_slice(b"SUFS");
        h[4] = 2;
        assert!(parse_header(&h).is_err());
        let c = suf_fss::keyfmt::checksum(&h[..120]);
        h[120..].copy_from_slice(&c.to_le_bytes());
        assert_eq!(parse_header(&h).unwrap().bits, 0);
    }
}
