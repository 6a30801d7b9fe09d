//! The session manifest `session.json` that `suf keygen` writes beside the key files: which
//! program the keys are for and in which ring. Everything in it is checked on reading, so a
//! damaged or hostile manifest is an error, never a panic or an absurd allocation later.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Largest manifest accepted, in bytes (a real one is a few hundred).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Largest sequence length a manifest may name (far above every supported model's positions).
pub const MAX_SEQ: usize = 1 << 20;

/// What `session.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `toy`, or a model name.
    pub program: String,
    /// Sequence length the keys were made for (models).
    #[serde(default)]
    pub seq: usize,
    /// Ring bits n.
    pub bits: u32,
    /// Fractional bits f.
    pub frac: u32,
    /// Seed of the demonstration (or synthetic) weights.
    pub model_seed: u64,
    /// Hex fingerprint of the program.
    pub program_fp: String,
    /// Bytes of each party's key file.
    pub key_bytes: [u64; 2],
    /// Key generation time.
    pub keygen_ms: f64,
    /// Rounds of the program.
    pub rounds: usize,
    /// A length bucket (models): the keys serve every input of 1..=`seq` tokens, padded to
    /// `seq` with the valid length public (`suf_nn::bucket`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bucket: bool,
}

/// Whether `p` can name a session's program: 1 to 64 ASCII letters, digits, `-`, `.`, `_`
/// (a zoo model, a fetched package, `toy`; never a path).
pub fn is_plain_name(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
}

impl Session {
    /// Check every field's range.
    ///
    /// # Errors
    /// Names the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let p = &self.program;
        if !is_plain_name(p) {
            bail!("program name {p:?} is not a plain model name");
        }
        if !(1..=64).contains(&self.bits) {
            bail!("ring bits {} outside 1..=64", self.bits);
        }
        if self.frac >= self.bits {
            bail!(
                "{} fractional bits do not fit a {}-bit ring",
                self.frac,
                self.bits
            );
        }
        if self.bucket && (self.program == "toy" || self.seq == 0) {
            bail!("a length bucket needs a model and its length (seq)");
        }
        if self.seq > MAX_SEQ {
            bail!("sequence length {} above {MAX_SEQ}", self.seq);
        }
        if !self.program_fp.is_empty()
            && (self.program_fp.len() != 64
                || !self.program_fp.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            bail!("program fingerprint is not 64 hex digits");
        }
        Ok(())
    }
}

/// Parse and check a manifest's bytes.
///
/// # Errors
/// Malformed JSON, a missing field, or a field out of range.
pub fn parse(bytes: &[u8]) -> Result<Session> {
    let s: Session = serde_json::from_slice(bytes)?;
    s.validate()?;
    Ok(s)
}

/// Read and check `dir/session.json`.
///
/// # Errors
/// A missing, oversized or invalid manifest (the message says to run `suf keygen`).
pub fn load(dir: &Path) -> Result<Session> {
    let p = dir.join("session.json");
    if !p.exists() {
        bail!("{} does not exist (run `suf keygen` first)", p.display());
    }
    let b = crate::files::read_at_most(&p, MAX_MANIFEST_BYTES)?;
    parse(&b).with_context(|| format!("parsing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Session {
        Session {
            program: "bert-tiny".into(),
            seq: 8,
            bits: 50,
            frac: 12,
            model_seed: 7,
            program_fp: "ab".repeat(32),
            key_bytes: [1, 2],
            keygen_ms: 1.0,
            rounds: 3,
            bucket: false,
        }
    }

    #[test]
    fn roundtrip_and_each_range() {
        let s = good();
        let b = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse(&b).unwrap(), s);
        // A bucket manifest round-trips; an old one without the field is not a bucket.
        let sb = Session {
            bucket: true,
            ..good()
        };
        assert_eq!(parse(&serde_json::to_vec(&sb).unwrap()).unwrap(), sb);
        assert!(!String::from_utf8(b.clone()).unwrap().contains("bucket"));
        let e = parse(
            &serde_json::to_vec(&Session {
                program: "toy".into(),
                ..sb
            })
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bucket"), "{e}");
        for (bad, needle) in [
            (Session { bits: 0, ..good() }, "ring bits"),
            (Session { bits: 65, ..good() }, "ring bits"),
            (Session { frac: 50, ..good() }, "fractional"),
            (
                Session {
                    seq: MAX_SEQ + 1,
                    ..good()
                },
                "sequence length",
            ),
            (
                Session {
                    program: "../x".into(),
                    ..good()
                },
                "program name",
            ),
            (
                Session {
                    program_fp: "zz".into(),
                    ..good()
                },
                "fingerprint",
            ),
        ] {
            let e = parse(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(parse(b"{").is_err());
        assert!(parse(br#"{"program":"toy"}"#).is_err());
    }
}
