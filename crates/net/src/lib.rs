//! # suf-net
//!
//! The link between the two servers P0 and P1 (DESIGN.md §7, "Transport"). This crate owns:
//!
//! * [`Transport`], the interface the runtime talks through: `send`, `recv` and `exchange`
//!   (one lockstep round, both directions at once), with exact counters ([`NetStats`]).
//! * [`TcpTransport`]: TCP with `TCP_NODELAY`, one reader and one writer thread per link,
//!   length-framed messages (u64 little-endian length, then the payload; see [`frame`]), a
//!   [`handshake`] that checks protocol version, party id, session id and the fingerprints of
//!   the model and of the key stream, a timeout on every wait, and clean errors (never a hang
//!   or a panic) when the peer goes away.
//! * [`tls`]: mutually authenticated TLS 1.3 (rustls with the *ring* provider) against pinned
//!   peer certificates. It is required whenever the peer is not on loopback
//!   ([`tls_required`]), unless plaintext is allowed explicitly.
//! * [`mem_pair`]: an in-memory transport for tests; [`Recording`] keeps a copy of every
//!   message of a link (what a party sees, for the leakage tests).
//! * [`encode_elems`] / [`decode_elems`]: opened values bit-packed to exactly the bits the
//!   receiver needs (the wire format of [`suf_core::pack`]).
//! * [`mod@bench`]: the link benchmarks reported by `suf bench runtime`.
//!
//! Of the SUF crates it depends on `suf-core` only. It uses no async runtime: plain threads
//! and std channels.
#![forbid(unsafe_code)]
// Peer input is parsed here: no `unwrap`/`expect` outside tests (a panic would be a denial of
// service, and would skip the error paths). Checked in CI by clippy with `-D warnings`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod bench;
mod elems;
mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod handshake;
mod mem;
mod record;
mod tcp;
pub mod tls;

pub use elems::{decode_elems, encode_elems, exchange_elems};
pub use error::NetError;
pub use mem::{mem_pair, MemTransport};
pub use record::{MessageLog, Recording};
pub use tcp::{tls_required, LinkConfig, TcpTransport};
pub use tls::{generate_identity, generate_test_identity, Identity, TlsConfig};

use sha2::{Digest, Sha256};

/// Exact traffic counters of one link endpoint.
///
/// * `bytes_sent` / `bytes_received` count **payload bytes only** (what the protocol chose to
///   send: for an opening, the bit-packed values). The 8-byte frame header of each message is
///   not included; [`NetStats::wire_bytes_sent`] adds it. Neither counts the handshake (a
///   fixed [`handshake::HELLO_LEN`] bytes each way, once per link) nor TLS record overhead.
/// * A message counts as sent when [`Transport::send`] accepts it, and as received when
///   [`Transport::recv`] returns it.
/// * `rounds` counts [`Transport::exchange`] calls (and explicit [`Transport::note_round`]
///   calls); a bare `send`/`recv` pair does not count a round by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Lockstep rounds.
    pub rounds: u64,
    /// Messages handed to the link.
    pub messages_sent: u64,
    /// Messages received from the link.
    pub messages_received: u64,
    /// Payload bytes sent (frame headers excluded).
    pub bytes_sent: u64,
    /// Payload bytes received (frame headers excluded).
    pub bytes_received: u64,
}

impl NetStats {
    /// Bytes of the frame header that precedes every message on a stream link.
    pub const FRAME_HEADER_BYTES: u64 = frame::HEADER_LEN as u64;

    /// Bytes sent including frame headers (what a plaintext TCP link writes, handshake
    /// excluded).
    pub fn wire_bytes_sent(&self) -> u64 {
        self.bytes_sent + Self::FRAME_HEADER_BYTES * self.messages_sent
    }

    /// Bytes received including frame headers.
    pub fn wire_bytes_received(&self) -> u64 {
        self.bytes_received + Self::FRAME_HEADER_BYTES * self.messages_received
    }

    /// The counters accumulated since `earlier` (a snapshot of the same link), for per-layer
    /// or per-operator accounting.
    pub fn since(&self, earlier: &NetStats) -> NetStats {
        NetStats {
            rounds: self.rounds.wrapping_sub(earlier.rounds),
            messages_sent: self.messages_sent.wrapping_sub(earlier.messages_sent),
            messages_received: self
                .messages_received
                .wrapping_sub(earlier.messages_received),
            bytes_sent: self.bytes_sent.wrapping_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.wrapping_sub(earlier.bytes_received),
        }
    }
}

/// A message link between the two parties.
///
/// Messages are byte strings delivered whole, in order. Every wait is bounded by the link's
/// timeout. After any error the link is broken: every later call returns
/// [`NetError::Broken`] (a lockstep protocol cannot resume a round one side lost), so no
/// partial result can be mistaken for a complete one.
pub trait Transport: Send {
    /// Queue a message for the peer. Returns once the message is handed to the link (for TCP,
    /// to its writer thread, or written to the socket directly when it is small and nothing
    /// is queued before it); it does not wait for the peer to read it.
    ///
    /// # Errors
    /// [`NetError::Broken`] after an earlier error; [`NetError::PeerClosed`] if the peer is
    /// known to be gone; for TCP, the error of a direct write. A failure of the writer thread
    /// is reported by the next [`Transport::recv`].
    fn send(&mut self, msg: Vec<u8>) -> Result<(), NetError>;

    /// Receive the next message, waiting at most the link's timeout.
    ///
    /// # Errors
    /// [`NetError::Timeout`], [`NetError::PeerClosed`], [`NetError::FrameTooLarge`],
    /// [`NetError::Tls`], [`NetError::Io`], or [`NetError::Broken`] after an earlier error.
    fn recv(&mut self) -> Result<Vec<u8>, NetError>;

    /// Receive the next message, refusing it if it is longer than `limit` bytes: the bound a
    /// protocol step knows for its round (for an opening, the exact packed size). On a TCP
    /// link, a frame larger than the 64 KiB read ahead is refused from its header, before
    /// anything is allocated for its payload; a refused frame breaks the link.
    ///
    /// The default implementation (for wrappers) receives first and checks afterwards.
    ///
    /// # Errors
    /// [`NetError::FrameTooLarge`] (with `max == limit`) and those of [`Transport::recv`].
    fn recv_max(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        let m = self.recv()?;
        if m.len() > limit {
            return Err(NetError::FrameTooLarge {
                len: m.len() as u64,
                max: limit,
            });
        }
        Ok(m)
    }

    /// One lockstep round whose incoming message is at most `limit` bytes
    /// ([`Transport::exchange`] with [`Transport::recv_max`]). Counts one round.
    ///
    /// # Errors
    /// Those of [`Transport::send`] and [`Transport::recv_max`].
    fn exchange_max(&mut self, msg: Vec<u8>, limit: usize) -> Result<Vec<u8>, NetError> {
        self.send(msg)?;
        let theirs = self.recv_max(limit)?;
        self.note_round();
        Ok(theirs)
    }

    /// One lockstep round: send `msg` and receive the peer's message of the same round (both
    /// directions travel at once). Counts one round.
    ///
    /// # Errors
    /// Those of [`Transport::send`] and [`Transport::recv`].
    fn exchange(&mut self, msg: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.send(msg)?;
        let theirs = self.recv()?;
        self.note_round();
        Ok(theirs)
    }

    /// Count one round. [`Transport::exchange`] calls it; a protocol step that does its round
    /// with separate `send`/`recv` calls calls it once itself.
    fn note_round(&mut self);

    /// The counters so far.
    fn stats(&self) -> &NetStats;

    /// Zero the counters.
    fn reset_stats(&mut self);

    /// This endpoint's party id (0 or 1).
    fn party(&self) -> u8;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, msg: Vec<u8>) -> Result<(), NetError> {
        (**self).send(msg)
    }
    fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        (**self).recv()
    }
    fn exchange(&mut self, msg: Vec<u8>) -> Result<Vec<u8>, NetError> {
        (**self).exchange(msg)
    }
    fn recv_max(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        (**self).recv_max(limit)
    }
    fn exchange_max(&mut self, msg: Vec<u8>, limit: usize) -> Result<Vec<u8>, NetError> {
        (**self).exchange_max(msg, limit)
    }
    fn note_round(&mut self) {
        (**self).note_round()
    }
    fn stats(&self) -> &NetStats {
        (**self).stats()
    }
    fn reset_stats(&mut self) {
        (**self).reset_stats()
    }
    fn party(&self) -> u8 {
        (**self).party()
    }
}

/// SHA-256 of `bytes`: the fingerprint used for models, key streams and certificates.
pub fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes` (for fingerprints in messages and logs).
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}
