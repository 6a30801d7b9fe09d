//! Bit-packed payloads: the wire form of opened values (DESIGN.md §2: "opened values travel
//! bit-packed to exactly the bits the receiver needs"). Thin wrappers over
//! [`suf_core::pack`] whose errors are mapped to [`NetError`], since a packed buffer that
//! arrives over a link is peer input.

use crate::{NetError, Transport};
use suf_core::pack;

/// Pack `vals` (each reduced mod 2^`bits`) into ⌈len·bits/8⌉ bytes, the format of
/// [`suf_core::pack`].
///
/// # Panics
/// If `bits` is outside 1..=64 (a caller bug, as in [`suf_core::pack::pack`]).
pub fn encode_elems(vals: &[u64], bits: u32) -> Vec<u8> {
    pack::pack(vals, bits)
}

/// Unpack exactly `count` values of `bits` bits from a payload received from the peer.
///
/// # Errors
/// [`NetError::BadPayload`] if the payload's length is not ⌈count·bits/8⌉ or its padding bits
/// are not zero (the peer's fault); [`NetError::Config`] if `bits` is outside 1..=64 (the
/// caller's).
pub fn decode_elems(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u64>, NetError> {
    if !(1..=64).contains(&bits) {
        return Err(NetError::Config(format!("bit width {bits} outside 1..=64")));
    }
    pack::unpack(bytes, bits, count).map_err(|e| match e {
        suf_core::CoreError::PackedLength {
            expected,
            got,
            count,
            bits,
        } => NetError::BadPayload {
            expected,
            got,
            count,
            bits,
        },
        other => NetError::Config(other.to_string()),
    })
}

/// One round of an opening: send `vals` packed to `bits` bits and receive the peer's packing
/// of the same number of values at the same width. Counts one round.
///
/// # Errors
/// Any error of [`Transport::exchange`], or [`NetError::BadPayload`] if the peer's payload
/// does not hold exactly `vals.len()` values.
pub fn exchange_elems<T: Transport + ?Sized>(
    link: &mut T,
    vals: &[u64],
    bits: u32,
) -> Result<Vec<u64>, NetError> {
    if !(1..=64).contains(&bits) {
        return Err(NetError::Config(format!("bit width {bits} outside 1..=64")));
    }
    let expected = pack::packed_len(vals.len(), bits);
    let theirs = link.exchange_max(encode_elems(vals, bits), expected)?;
    decode_elems(&theirs, bits, vals.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_length() {
        let v = [1u64, 2, (1 << 50) - 1, 12345];
        let b = encode_elems(&v, 50);
        assert_eq!(b.len(), 25);
        assert_eq!(decode_elems(&b, 50, 4).unwrap(), v);
        assert!(matches!(
            decode_elems(&b[..24], 50, 4),
            Err(NetError::BadPayload {
                expected: 25,
                got: 24,
                count: 4,
                bits: 50
            })
        ));
        assert!(matches!(decode_elems(&b, 0, 4), Err(NetError::Config(_))));
        assert!(matches!(decode_elems(&b, 65, 4), Err(NetError::Config(_))));
    }
}
