//! Entry points for the cargo-fuzz targets in the repository's `fuzz/` folder (hidden from
//! the documentation; not an API). Each takes arbitrary bytes, drives one parser that reads
//! peer input, and panics only when an invariant the parser promises is broken: a panic here
//! is a finding.

use crate::frame::{write_frame, FrameReader, ReadStop};
use crate::handshake::{Hello, HELLO_LEN, PROTOCOL_VERSION};
use crate::{decode_elems, encode_elems, NetError};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Largest frame the fuzzed reader accepts (small, so that the limit is exercised).
const FUZZ_MAX_FRAME: usize = 1 << 12;

/// Wire frames and bit-packed payloads.
///
/// * `data` read as a stream of frames: every frame read re-encodes to exactly the bytes it
///   was read from, and the reader stops only with `PeerClosed` (end of data) or
///   `FrameTooLarge`.
/// * `data[0]` (bit width, 0..=65 so that invalid widths are tried), `data[1..3]` (count) and
///   the rest (payload) through [`decode_elems`]: a payload it accepts holds exactly `count`
///   values below 2^bits and is the canonical packing of them.
pub fn frames(data: &[u8]) {
    let stop = AtomicBool::new(false);
    let mut r = FrameReader::new(data, FUZZ_MAX_FRAME, Duration::from_secs(1));
    let mut consumed = 0usize;
    loop {
        match r.read_frame(&stop) {
            Ok(m) => {
                let mut again = Vec::new();
                if write_frame(&mut again, &m).is_err() {
                    panic!("writing a frame into a Vec failed");
                }
                assert_eq!(again[..], data[consumed..consumed + again.len()]);
                consumed += again.len();
            }
            Err(ReadStop::Failed(NetError::PeerClosed { .. }))
            | Err(ReadStop::Failed(NetError::FrameTooLarge { .. })) => break,
            Err(ReadStop::Failed(e)) => panic!("unexpected reader error {e}"),
            Err(ReadStop::Stopped) => panic!("stopped without being asked"),
        }
    }
    if data.len() < 3 {
        return;
    }
    let bits = u32::from(data[0] % 66);
    let count = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let payload = &data[3..];
    match decode_elems(payload, bits, count) {
        Ok(v) => {
            assert_eq!(v.len(), count);
            if bits < 64 {
                assert!(v.iter().all(|&x| x >> bits == 0));
            }
            assert_eq!(encode_elems(&v, bits), payload);
        }
        Err(NetError::BadPayload { .. }) => assert!((1..=64).contains(&bits)),
        Err(NetError::Config(_)) => assert!(!(1..=64).contains(&bits)),
        Err(e) => panic!("unexpected decode error {e}"),
    }
}

/// The link handshake: `data` as the peer's side of the conversation, checked by both
/// party 0 and party 1. A hello that is accepted must be the one the peer party would send
/// with our session; a refusal must name a field.
pub fn hello(data: &[u8]) {
    for party in 0..2u8 {
        let ours = Hello {
            version: PROTOCOL_VERSION,
            party,
            session_id: [0x5e; 16],
            model_fp: [1; 32],
            keys_fp: [2; 32],
        };
        let mut sent = Vec::new();
        let mut src = data;
        let r = crate::tcp::exchange_hello(&mut src, &mut sent, &ours, Duration::from_secs(1));
        assert_eq!(
            sent,
            ours.encode(),
            "our hello goes out first, whatever the peer says"
        );
        match r {
            Ok(()) => {
                let peer = Hello {
                    party: 1 - party,
                    ..ours
                };
                assert_eq!(data[..HELLO_LEN], peer.encode());
            }
            Err(NetError::Handshake { field, .. }) => assert!(!field.is_empty()),
            Err(NetError::PeerClosed { .. }) => assert!(data.len() < HELLO_LEN),
            Err(e) => panic!("unexpected handshake error {e}"),
        }
        if data.len() >= HELLO_LEN {
            let mut raw = [0u8; HELLO_LEN];
            raw.copy_from_slice(&data[..HELLO_LEN]);
            if let Ok(h) = ours.check_peer(&raw) {
                assert_eq!(h.encode(), raw);
            }
        }
    }
}

/// Seed inputs per target (`frames`, `handshake`), for the fuzz corpus.
pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut wire = Vec::new();
    for m in [&b"abc"[..], &[], &[0xff; 40]] {
        let _ = write_frame(&mut wire, m);
    }
    let mut elems = vec![50u8, 4, 0];
    elems.extend(encode_elems(&[1, 2, (1 << 50) - 1, 12345], 50));
    let hello = |party| {
        Hello {
            version: PROTOCOL_VERSION,
            party,
            session_id: [0x5e; 16],
            model_fp: [1; 32],
            keys_fp: [2; 32],
        }
        .encode()
        .to_vec()
    };
    vec![
        ("frames", wire),
        ("frames", elems),
        ("frames", vec![1, 7, 0, 0x55]),
        ("handshake", hello(0)),
        ("handshake", hello(1)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_what_they_should() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"abc").unwrap();
        write_frame(&mut wire, &[]).unwrap();
        frames(&wire);
        frames(&[50, 4, 0, 1, 2]);
        frames(&[]);
        let peer = Hello {
            version: PROTOCOL_VERSION,
            party: 1,
            session_id: [0x5e; 16],
            model_fp: [1; 32],
            keys_fp: [2; 32],
        };
        hello(&peer.encode());
        hello(&peer.encode()[..40]);
        hello(b"GET / HTTP/1.1\r\n");
    }
}
