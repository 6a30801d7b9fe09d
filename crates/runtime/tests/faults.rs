//! Error paths: key reuse, keys of another party or program, a peer that goes away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::ir::{Builder, Program};
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::party::{Party, PartyWeights};
use suf_runtime::report::Tracer;
use suf_runtime::testing::Truncate;
use suf_runtime::{share_inputs, RtError};

fn prog(n: u32, extra: bool) -> Program {
    let fp = FixedPoint::new(n, 8).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[3, 4]).unwrap();
    let y = g.mul(x, x).unwrap();
    let y = g
        .gate(y, Arc::new(Truncate { f: 8, signed: true }))
        .unwrap();
    let y = if extra { g.mul(y, x).unwrap() } else { y };
    g.output(y).unwrap();
    g.finish()
}

fn deal_files(p: &Program, dir: &std::path::Path) -> [std::path::PathBuf; 2] {
    let paths = [dir.join("p0.keys"), dir.join("p1.keys")];
    let be = CpuBackend::new();
    let ds = DealerStreams::to_files(
        p.width(),
        Csprng::for_tests(7),
        [1; 16],
        p.fingerprint(),
        [&paths[0], &paths[1]],
    )
    .unwrap();
    run_dealer(p, &be, ds, &DealerWeights::new()).unwrap();
    paths
}

#[test]
fn key_file_is_one_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = prog(32, false);
    let paths = deal_files(&p, dir.path());
    let s = PartyStream::open_file(&paths[0]).unwrap();
    drop(s);
    match PartyStream::open_file(&paths[0]) {
        Err(RtError::KeyReused { .. }) => {}
        other => panic!("expected KeyReused, got {other:?}"),
    }
    // The other party's file is untouched.
    let s1 = PartyStream::open_file(&paths[1]).unwrap();
    assert_eq!(s1.id().party, 1);
    // Refuses to overwrite existing key files.
    let be = CpuBackend::new();
    let r = DealerStreams::to_files(
        p.width(),
        Csprng::for_tests(8),
        [1; 16],
        p.fingerprint(),
        [&paths[0], &paths[1]],
    );
    assert!(r.is_err());
    let _ = be;
}

#[test]
fn key_files_with_trailing_bytes_or_truncated_are_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let p = prog(32, false);
    let paths = deal_files(&p, dir.path());
    // A byte appended after the footer.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&paths[0])
        .unwrap()
        .write_all(&[0])
        .unwrap();
    let e = PartyStream::open_file(&paths[0]).unwrap_err();
    assert!(matches!(e, RtError::KeyStream(_)), "{e}");
    // The last 16 bytes cut off.
    let b = std::fs::read(&paths[1]).unwrap();
    std::fs::write(&paths[1], &b[..b.len() - 16]).unwrap();
    let e = PartyStream::open_file(&paths[1]).unwrap_err();
    assert!(matches!(e, RtError::KeyStream(_)), "{e}");
}

#[test]
fn wrong_party_and_wrong_program_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = prog(32, false);
    let other = prog(32, true);
    let paths = deal_files(&p, dir.path());
    let s = PartyStream::open_file(&paths[1]).unwrap();
    let e = s.check(0, &p.fingerprint(), 32).unwrap_err();
    assert!(matches!(e, RtError::KeyMismatch(_)), "{e}");
    assert!(e.to_string().contains("party 1"));
    let e = s.check(1, &other.fingerprint(), 32).unwrap_err();
    assert!(e.to_string().contains("another program"), "{e}");
}

/// Both parties' key streams of `prog(24, false)`, dealt in memory.
fn memory_streams() -> [Vec<u8>; 2] {
    let p = prog(24, false);
    let be = CpuBackend::new();
    let (ds, sinks) =
        DealerStreams::to_memory(p.width(), Csprng::for_tests(3), [0; 16], p.fingerprint())
            .unwrap();
    run_dealer(&p, &be, ds, &DealerWeights::new()).unwrap();
    [sinks[0].take(), sinks[1].take()]
}

#[test]
fn corrupted_key_stream_is_a_typed_error() {
    let [good, _] = memory_streams();
    let consume = |b: Vec<u8>| {
        PartyStream::from_bytes(b).and_then(|mut s| {
            s.take_arith(12)?; // mask of the first operand of x·x
            s.take_arith(12)?; // mask of the second operand
            s.take_arith(12)?; // [r_a r_b]
            s.take_arith(12)?; // the truncation's input mask
            s.take_blob()?; // the truncation's key
            s.finish()
        })
    };
    consume(good.clone()).unwrap();
    let mut rng = Csprng::for_tests(5);
    for trial in 0..200 {
        let mut b = good.clone();
        if trial % 2 == 0 {
            let i = rng.below(b.len() as u64) as usize;
            b[i] ^= 1 << rng.below(8);
        } else {
            b.truncate(rng.below(b.len() as u64) as usize);
        }
        let r = consume(b);
        // Either it is rejected, or the flip landed somewhere harmless and it parsed.
        if let Err(e) = r {
            assert!(matches!(e, RtError::KeyStream(_) | RtError::Core(_)), "{e}");
        }
    }
}

#[test]
fn peer_goes_away_mid_run() {
    let p = prog(32, true);
    let be = CpuBackend::new();
    let (ds, sinks) =
        DealerStreams::to_memory(p.width(), Csprng::for_tests(9), [0; 16], p.fingerprint())
            .unwrap();
    run_dealer(&p, &be, ds, &DealerWeights::new()).unwrap();
    let mut k0 = PartyStream::from_bytes(sinks[0].take()).unwrap();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), vec![5u64; 12]);
    let shares = share_inputs(p.width(), &inputs, &mut Csprng::for_tests(1));
    let (mut t0, mut t1) = suf_net::mem_pair(Duration::from_secs(2));
    // Party 1 answers the first round, then dies.
    let h = std::thread::spawn(move || {
        use suf_net::Transport;
        let m = t1.recv().unwrap();
        t1.send(vec![0u8; m.len()]).unwrap();
        drop(t1);
    });
    let w = PartyWeights::new();
    let party = Party {
        prog: &p,
        party: 0,
        be: &be,
        weights: &w,
    };
    let t = Instant::now();
    let r = party.run(&mut k0, &mut t0, &shares[0], &mut Tracer::new(None));
    h.join().unwrap();
    assert!(matches!(r, Err(RtError::Net(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
}

/// `take_arith_into` (the executor's reused buffer for gate-input masks) gives exactly what
/// `take_arith` gives, for party 0's packed shares and party 1's seeded ones, and the stream
/// continues the same afterwards; a wrong count is a typed error.
#[test]
fn masks_into_a_buffer_equal_fresh_ones() {
    for (party, bytes) in memory_streams().into_iter().enumerate() {
        let mut a = PartyStream::from_bytes(bytes.clone()).unwrap();
        let mut b = PartyStream::from_bytes(bytes.clone()).unwrap();
        let mut buf = vec![u64::MAX; 12];
        for _ in 0..4 {
            let want = a.take_arith(12).unwrap();
            b.take_arith_into(&mut buf).unwrap();
            assert_eq!(buf, want);
            assert!(want.iter().all(|&v| v < 1 << 24));
        }
        a.take_blob().unwrap();
        b.take_blob().unwrap();
        a.finish().unwrap();
        b.finish().unwrap();
        // Party 0's first section holds exactly 12 packed masks: 11 is refused (party 1's
        // masks come from its seed, where any count is valid).
        let mut c = PartyStream::from_bytes(bytes).unwrap();
        let r = c.take_arith_into(&mut [0u64; 11]);
        assert_eq!(r.is_err(), party == 0, "party {party}: {r:?}");
    }
}
