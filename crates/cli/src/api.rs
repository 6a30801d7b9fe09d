//! The servers' HTTPS API (version 1): what the client and `suf serve --pool` exchange.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/health` | `{"status":"ok","party":j,"session":<pool.json>}` |
//! | `GET /v1/metrics` | counts of served, failed, refused and in-flight requests, remaining streams |
//! | `POST /v1/infer` | body: `u32 LE length | JSON metadata | share file` (this server's share only) |
//!
//! **Request metadata**: `{"v":1,"request_id":hex16,"program_fp":hex32,"salt":hex32,
//! "digests":[hex32,hex32]}`. The client draws a request id and, per server j, a 32-byte salt
//! s_j; `d_j = SHA-256("suf-share-v1" | s_j | share_j)`. Server j receives only its share, its
//! own salt and both digests, checks `d_j`, and both compute the input commitment
//! `C = SHA-256("suf-input-v1" | request id | d_0 | d_1)`, which they compare when they pair the
//! request over their link (so both hold shares of the same input). The salts keep `d_{1−j}`
//! hiding: a server cannot test guesses of the input against the other share's digest.
//!
//! **Response** (200): `u32 LE length | JSON {"request_id","commitment","session","party",
//! "online_ms","rounds","bucket"} | output share file` (`bucket`: the length bucket whose keys
//! served it, 0 for a pool of one length). The client refuses any response whose request
//! id or commitment is not the one it sent, or whose two halves name different sessions.
//! Errors are JSON `{"error": ...}`: 400 a malformed request, 409 a request id already
//! pending, 503 the pool is empty (with `Retry-After`), 504 the other server never paired the
//! request, 500 a failure after the keys were consumed.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::pool::{hex, unhex};

/// Largest metadata accepted, in bytes.
pub const MAX_META: usize = 16 * 1024;

/// A request's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Format version (1).
    pub v: u32,
    /// Random request id (hex, 16 bytes).
    pub request_id: String,
    /// Program fingerprint the client built (hex, 32 bytes).
    pub program_fp: String,
    /// This server's salt (hex, 32 bytes).
    pub salt: String,
    /// Both shares' salted digests (hex, 32 bytes each).
    pub digests: [String; 2],
}

/// A response's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseMeta {
    /// The request id answered.
    pub request_id: String,
    /// The input commitment the result is for.
    pub commitment: String,
    /// The key stream's session id.
    pub session: String,
    /// The answering party.
    pub party: u8,
    /// Online time of the inference at this server.
    pub online_ms: f64,
    /// Rounds.
    pub rounds: u64,
    /// Milliseconds from the link's start to the agreement on the stream (connect,
    /// authentication, pairing; at party 0 also the wait for the client's request).
    #[serde(default)]
    pub pair_ms: f64,
    /// Milliseconds to record, read, delete and check the key stream.
    #[serde(default)]
    pub key_load_ms: f64,
    /// Milliseconds to prepare the run (weights resident, keys attached), before the online
    /// phase.
    #[serde(default)]
    pub prepare_ms: f64,
    /// Milliseconds this server waited, keys attached, for the peer to be ready (the peer's
    /// longer key load), before the online phase; not part of `online_ms`.
    #[serde(default)]
    pub peer_wait_ms: f64,
    /// The length bucket whose keys served the request (0: not a bucket pool).
    #[serde(default)]
    pub bucket: usize,
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut b = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        b.extend_from_slice(p);
    }
    suf_net::fingerprint(&b)
}

/// `d = SHA-256("suf-share-v1" | salt | share bytes)`.
pub fn share_digest(salt: &[u8; 32], share: &[u8]) -> [u8; 32] {
    sha(&[b"suf-share-v1", salt, share])
}

/// `C = SHA-256("suf-input-v1" | request id | d0 | d1)`.
pub fn commitment(rid: &[u8; 16], d: &[[u8; 32]; 2]) -> [u8; 32] {
    sha(&[b"suf-input-v1", rid, &d[0], &d[1]])
}

/// Frame metadata and a payload: `u32 LE length | JSON | payload`.
pub fn frame<T: Serialize>(meta: &T, payload: &[u8]) -> Result<Vec<u8>> {
    let m = serde_json::to_vec(meta)?;
    let mut b = Vec::with_capacity(4 + m.len() + payload.len());
    b.extend_from_slice(&u32::try_from(m.len())?.to_le_bytes());
    b.extend_from_slice(&m);
    b.extend_from_slice(payload);
    Ok(b)
}

/// Split a framed body into its metadata and payload.
pub fn unframe<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<(T, &[u8])> {
    let Some(len) = body.get(..4) else {
        bail!("body shorter than its length prefix");
    };
    let n = u32::from_le_bytes(len.try_into()?) as usize;
    if n > MAX_META {
        bail!("metadata of {n} bytes (at most {MAX_META})");
    }
    let m = body
        .get(4..4 + n)
        .context("body shorter than its metadata")?;
    let meta = serde_json::from_slice(m).context("metadata is not valid JSON")?;
    Ok((meta, &body[4 + n..]))
}

/// A request checked by the server that received it (party `j`).
#[derive(Clone, Debug)]
pub struct Checked {
    /// Request id.
    pub rid: [u8; 16],
    /// Input commitment.
    pub commitment: [u8; 32],
}

/// Check a request's metadata against this server's share: version, program, and `d_j`.
pub fn check_request(
    meta: &RequestMeta,
    share: &[u8],
    party: u8,
    program_fp: &[u8; 32],
) -> Result<Checked> {
    if meta.v != 1 {
        bail!("request format version {} (this server speaks 1)", meta.v);
    }
    let rid = unhex::<16>(&meta.request_id).context("request_id is not 16 bytes of hex")?;
    let fp = unhex::<32>(&meta.program_fp).context("program_fp is not 32 bytes of hex")?;
    if &fp != program_fp {
        bail!(
            "the request is for program {}, this server's pool holds keys for {}",
            meta.program_fp,
            hex(program_fp)
        );
    }
    let salt = unhex::<32>(&meta.salt).context("salt is not 32 bytes of hex")?;
    let d = [
        unhex::<32>(&meta.digests[0]).context("digest 0 is not 32 bytes of hex")?,
        unhex::<32>(&meta.digests[1]).context("digest 1 is not 32 bytes of hex")?,
    ];
    if share_digest(&salt, share) != d[party as usize] {
        bail!("the share does not match its digest (corrupted, or sent to the wrong server)");
    }
    Ok(Checked {
        rid,
        commitment: commitment(&rid, &d),
    })
}

/// The client's check of a response: it must answer this request id and commitment.
pub fn check_response(
    meta: &ResponseMeta,
    party: u8,
    rid: &[u8; 16],
    commitment: &[u8; 32],
) -> Result<()> {
    if meta.party != party {
        bail!("party {party} answered as party {}", meta.party);
    }
    if meta.request_id != hex(rid) {
        bail!(
            "party {party} answered request {}, not ours ({}): refused",
            meta.request_id,
            hex(rid)
        );
    }
    if meta.commitment != hex(commitment) {
        bail!("party {party}'s result is bound to another input: refused");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(party_share: &[u8], salt: [u8; 32], other: [u8; 32], party: usize) -> RequestMeta {
        let d = share_digest(&salt, party_share);
        let mut digests = [hex(&other), hex(&other)];
        digests[party] = hex(&d);
        RequestMeta {
            v: 1,
            request_id: hex(&[7; 16]),
            program_fp: hex(&[9; 32]),
            salt: hex(&salt),
            digests,
        }
    }

    #[test]
    fn requests_bind_share_program_and_commitment() {
        let m = meta(b"share", [1; 32], [2; 32], 1);
        let c = check_request(&m, b"share", 1, &[9; 32]).unwrap();
        assert_eq!(c.rid, [7; 16]);
        let d1 = share_digest(&[1; 32], b"share");
        assert_eq!(c.commitment, commitment(&[7; 16], &[[2; 32], d1]));
        // Another share, party, program, version or salt is refused.
        assert!(check_request(&m, b"shard", 1, &[9; 32]).is_err());
        assert!(check_request(&m, b"share", 0, &[9; 32]).is_err());
        let e = check_request(&m, b"share", 1, &[8; 32]).unwrap_err();
        assert!(e.to_string().contains("pool holds keys"), "{e}");
        let mut m2 = m.clone();
        m2.v = 2;
        assert!(check_request(&m2, b"share", 1, &[9; 32]).is_err());
        let mut m2 = m.clone();
        m2.salt = hex(&[3; 32]);
        assert!(check_request(&m2, b"share", 1, &[9; 32]).is_err());
        // Framing round trip and refusals.
        let b = frame(&m, b"payload").unwrap();
        let (m3, p): (RequestMeta, &[u8]) = unframe(&b).unwrap();
        assert_eq!((m3, p), (m, &b"payload"[..]));
        assert!(unframe::<RequestMeta>(&b[..3]).is_err());
        assert!(unframe::<RequestMeta>(&b[..10]).is_err());
        let mut big = b.clone();
        big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unframe::<RequestMeta>(&big).is_err());
    }

    #[test]
    fn responses_for_another_request_are_refused() {
        let r = ResponseMeta {
            request_id: hex(&[1; 16]),
            commitment: hex(&[2; 32]),
            session: hex(&[3; 16]),
            party: 0,
            online_ms: 1.0,
            rounds: 3,
            pair_ms: 0.5,
            key_load_ms: 0.5,
            prepare_ms: 0.5,
            peer_wait_ms: 0.25,
            bucket: 0,
        };
        check_response(&r, 0, &[1; 16], &[2; 32]).unwrap();
        let e = check_response(&r, 0, &[4; 16], &[2; 32]).unwrap_err();
        assert!(e.to_string().contains("not ours"), "{e}");
        let e = check_response(&r, 0, &[1; 16], &[5; 32]).unwrap_err();
        assert!(e.to_string().contains("another input"), "{e}");
        assert!(check_response(&r, 1, &[1; 16], &[2; 32]).is_err());
    }
}
