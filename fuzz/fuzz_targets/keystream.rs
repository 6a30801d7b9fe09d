//! Key streams (suf-runtime): `PartyStream::from_bytes`, then the consumption a Party run
//! makes, driven by a script at the front of the input:
//!
//! `k` (one byte, ops = k mod 17) | k × (op u8, count u16 LE) | the stream bytes
//!
//! ops: 0 take_arith(count), 1 take_bool(count), 2 take_blob, 3 finish. Whatever the bytes,
//! every call returns a value or an error; accepted shares are in range.
#![no_main]

use suf_runtime::keystream::PartyStream;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let ops = usize::from(k % 17);
    if rest.len() < 3 * ops {
        return;
    }
    let (script, stream) = rest.split_at(3 * ops);
    let Ok(mut s) = PartyStream::from_bytes(stream.to_vec()) else {
        return;
    };
    let id = *s.id();
    assert!(id.party <= 1 && (1..=64).contains(&id.bits));
    let _ = s.check(id.party, &id.program_fp, id.bits);
    for op in script.chunks_exact(3) {
        let count = usize::from(u16::from_le_bytes([op[1], op[2]]));
        let ok = match op[0] % 4 {
            0 => s.take_arith(count).map(|v| {
                assert_eq!(v.len(), count);
                if id.bits < 64 {
                    assert!(v.iter().all(|&x| x >> id.bits == 0));
                }
            }),
            1 => s.take_bool(count).map(|v| {
                assert_eq!(v.len(), count);
                assert!(v.iter().all(|&x| x <= 1));
            }),
            2 => s.take_blob().map(|_| ()),
            _ => s.finish(),
        };
        if ok.is_err() {
            break;
        }
    }
});
