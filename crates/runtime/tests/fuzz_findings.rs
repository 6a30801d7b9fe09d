//! Regression tests for what the fuzzers found in the key-stream reader (issue 13; the
//! inputs are also kept in `fuzz/seeds/keystream/`). Each must be an error, not a panic.

use std::sync::Arc;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::ir::Builder;
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::testing::Truncate;

/// Party 0's stream of a one-gate program.
fn stream() -> Vec<u8> {
    let fp = FixedPoint::new(50, 12).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[4]).unwrap();
    let y = g
        .gate(
            x,
            Arc::new(Truncate {
                f: 12,
                signed: true,
            }),
        )
        .unwrap();
    g.output(y).unwrap();
    let prog = g.finish();
    let (ds, sinks) = DealerStreams::to_memory(
        prog.width(),
        Csprng::for_tests(1),
        [1; 16],
        prog.fingerprint(),
    )
    .unwrap();
    run_dealer(&prog, &CpuBackend::new(), ds, &DealerWeights::new()).unwrap();
    sinks[0].take()
}

/// Rewrite the table of contents entry `i` (and the section head it indexes) with a payload
/// length of `len`, re-sealing every checksum so that only the length itself is wrong.
fn with_section_len(mut b: Vec<u8>, i: usize, len: u64) -> Vec<u8> {
    use suf_fss::keyfmt::checksum;
    let word = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let end = b.len();
    let foot = end - 48;
    let toc = word(&b, foot + 16);
    let n = word(&b, foot + 8);
    assert!(i < n);
    let entry = toc + 32 * i;
    let payload = word(&b, entry + 16);
    b[entry + 24..entry + 32].copy_from_slice(&len.to_le_bytes());
    let head = payload - 32;
    b[head + 16..head + 24].copy_from_slice(&len.to_le_bytes());
    let tc = checksum(&b[toc..toc + 32 * n]);
    b[foot + 32..foot + 40].copy_from_slice(&tc.to_le_bytes());
    let fc = checksum(&b[foot..foot + 40]);
    b[foot + 40..foot + 48].copy_from_slice(&fc.to_le_bytes());
    b
}

#[test]
fn a_section_length_near_2_pow_64_is_an_error() {
    // The finding (format v1): a section announcing 2^64 − 10 payload bytes overflowed the
    // bound check. Format v2: the same lengths in a section head and its table-of-contents
    // entry, with every checksum re-sealed, must be refused at open — no panic, no allocation.
    for i in 0..2 {
        for len in [
            u64::MAX,
            u64::MAX - 10,
            u64::MAX - 31,
            1 << 63,
            (1 << 40) + 3,
        ] {
            let b = with_section_len(stream(), i, len);
            let e = consume(b).expect_err("an absurd section length was accepted");
            // Refused for the length, not for a checksum the test failed to re-seal.
            assert!(
                !e.to_string().contains("checksum"),
                "section {i}, length {len}: {e}"
            );
        }
    }
}

#[test]
fn a_whole_stream_still_reads() {
    let mut s = PartyStream::from_bytes(stream()).unwrap();
    s.take_arith(4).unwrap();
    s.take_blob().unwrap();
    s.finish().unwrap();
}

/// Consume a stream as a Party run of the one-gate program does.
fn consume(bytes: Vec<u8>) -> Result<(), suf_runtime::RtError> {
    let mut s = PartyStream::from_bytes(bytes)?;
    s.take_arith(4)?;
    s.take_blob()?;
    s.finish()
}

#[test]
fn a_stream_cut_anywhere_is_an_error_and_only_the_whole_one_reads() {
    // Every prefix: section boundaries, headers and payloads cut mid-way.
    let whole = stream();
    for cut in 0..whole.len() {
        assert!(
            consume(whole[..cut].to_vec()).is_err(),
            "cut at {cut} read as whole"
        );
    }
    consume(whole).unwrap();
}

#[test]
fn trailing_bytes_after_the_end_marker_are_refused() {
    let mut longer = stream();
    longer.extend([0u8; 25]);
    assert!(consume(longer).is_err());
}
