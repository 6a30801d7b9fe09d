//! The link handshake. Right after connecting (and after the TLS handshake, on a TLS link)
//! each side sends one fixed-size hello and reads the peer's:
//!
//! | bytes | field |
//! |---|---|
//! | 8  | magic `SUFLINK\0` |
//! | 4  | protocol version, u32 little-endian ([`PROTOCOL_VERSION`]) |
//! | 1  | party id (0 or 1) |
//! | 16 | session id |
//! | 32 | model fingerprint |
//! | 32 | keys fingerprint (the "session keys fingerprint" the dealer wrote into both parties' key files) |
//!
//! Both sides send before they read, so both see the peer's hello and both refuse a mismatch,
//! each with an error that names the first differing field (in the order above) and both
//! values. The checks are symmetric, so the two sides always agree on the verdict.

use crate::{hex, NetError};

/// The magic that opens a hello.
pub const MAGIC: [u8; 8] = *b"SUFLINK\0";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Length of the magic and version prefix, read and checked before the rest.
pub const PREFIX_LEN: usize = 12;
/// Length of a hello in bytes.
pub const HELLO_LEN: usize = PREFIX_LEN + 1 + 16 + 32 + 32;

/// The contents of a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// The sender's party id.
    pub party: u8,
    /// Session id; both parties must use the same one.
    pub session_id: [u8; 16],
    /// Fingerprint of the model.
    pub model_fp: [u8; 32],
    /// Fingerprint of the key stream.
    pub keys_fp: [u8; 32],
}

impl Hello {
    /// The wire form.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12] = self.party;
        b[13..29].copy_from_slice(&self.session_id);
        b[29..61].copy_from_slice(&self.model_fp);
        b[61..93].copy_from_slice(&self.keys_fp);
        b
    }

    /// Check a received magic-and-version prefix against ours.
    ///
    /// # Errors
    /// [`NetError::Handshake`] naming `magic` or `protocol version`.
    pub fn check_prefix(&self, prefix: &[u8; PREFIX_LEN]) -> Result<(), NetError> {
        if prefix[..8] != MAGIC {
            return Err(NetError::Handshake {
                field: "magic",
                ours: hex(&MAGIC),
                theirs: format!("{} (not a SUF link)", hex(&prefix[..8])),
            });
        }
        let v = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
        if v != self.version {
            return Err(NetError::Handshake {
                field: "protocol version",
                ours: self.version.to_string(),
                theirs: v.to_string(),
            });
        }
        Ok(())
    }

    /// Parse a full hello (prefix included) and check it against ours: same version, the
    /// other party, same session id, same model and keys fingerprints.
    ///
    /// # Errors
    /// [`NetError::Handshake`] naming the first field that differs.
    pub fn check_peer(&self, peer: &[u8; HELLO_LEN]) -> Result<Hello, NetError> {
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&peer[..PREFIX_LEN]);
        self.check_prefix(&prefix)?;
        let mut h = Hello {
            version: self.version,
            party: peer[12],
            session_id: [0; 16],
            model_fp: [0; 32],
            keys_fp: [0; 32],
        };
        h.session_id.copy_from_slice(&peer[13..29]);
        h.model_fp.copy_from_slice(&peer[29..61]);
        h.keys_fp.copy_from_slice(&peer[61..93]);
        if self.party > 1 || h.party != 1 - self.party {
            return Err(NetError::Handshake {
                field: "party id",
                ours: format!(
                    "{} (so the peer must be {})",
                    self.party,
                    1 - self.party.min(1)
                ),
                theirs: h.party.to_string(),
            });
        }
        let bytes_field = |field, ours: &[u8], theirs: &[u8]| {
            if ours == theirs {
                Ok(())
            } else {
                Err(NetError::Handshake {
                    field,
                    ours: hex(ours),
                    theirs: hex(theirs),
                })
            }
        };
        bytes_field("session id", &self.session_id, &h.session_id)?;
        bytes_field("model fingerprint", &self.model_fp, &h.model_fp)?;
        bytes_field("keys fingerprint", &self.keys_fp, &h.keys_fp)?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(party: u8) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            party,
            session_id: [1; 16],
            model_fp: [2; 32],
            keys_fp: [3; 32],
        }
    }

    #[test]
    fn accepts_matching_and_names_fields() {
        let a = hello(0);
        let b = hello(1);
        assert_eq!(a.check_peer(&b.encode()).unwrap(), b);
        assert_eq!(b.check_peer(&a.encode()).unwrap(), a);
        let field = |r: Result<Hello, NetError>| match r {
            Err(NetError::Handshake { field, .. }) => field,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(field(a.check_peer(&hello(0).encode())), "party id");
        let mut c = b;
        c.keys_fp[31] ^= 1;
        assert_eq!(field(a.check_peer(&c.encode())), "keys fingerprint");
        let mut c = b;
        c.version = 9;
        assert_eq!(field(a.check_peer(&c.encode())), "protocol version");
        let mut raw = b.encode();
        raw[0] = b'X';
        assert_eq!(field(a.check_peer(&raw)), "magic");
    }
}
