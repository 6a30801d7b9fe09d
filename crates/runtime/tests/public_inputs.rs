//! Public run-time inputs: supplied in the clear to both parties, never part of the program's
//! fingerprint (one key stream serves every value), added by party 0 only and multiplied by
//! both; Party equals Plain bit for bit whatever the value, and misuse is a typed error.

use std::collections::BTreeMap;
use std::sync::Arc;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::harness::{run_two_party, Link};
use suf_runtime::ir::{Builder, Program};
use suf_runtime::plain::run_plain;
use suf_runtime::testing::Truncate;
use suf_runtime::RtError;

fn prog() -> Program {
    let fp = FixedPoint::new(32, 8).unwrap();
    let mut g = Builder::new(fp);
    let x = g.input("x", &[3, 4]).unwrap();
    let row = g.public_input("row", &[4]).unwrap();
    let full = g.public_input("full", &[3, 4]).unwrap();
    let a = g.add_pub_in(x, row).unwrap();
    let m = g.mul_pub_in(a, full).unwrap();
    // Through a gate and a Beaver step, so the public values meet opened masks.
    let t = g
        .gate(
            m,
            Arc::new(Truncate {
                f: 2,
                signed: false,
            }),
        )
        .unwrap();
    let sq = g.square(t).unwrap();
    g.output(m).unwrap();
    g.output(sq).unwrap();
    g.finish()
}

fn inputs(row: &[u64], full: &[u64]) -> BTreeMap<String, Vec<u64>> {
    let mut m = BTreeMap::new();
    m.insert("x".to_string(), (1..=12u64).map(|v| v * 7).collect());
    m.insert("row".to_string(), row.to_vec());
    m.insert("full".to_string(), full.to_vec());
    m
}

#[test]
fn party_equals_plain_and_the_program_does_not_depend_on_the_value() {
    let p = prog();
    let fp0 = p.fingerprint();
    assert!(p.inputs.contains_key("x") && !p.inputs.contains_key("row"));
    assert_eq!(p.public_inputs.len(), 2);
    let be = CpuBackend::new();
    let mut rng = Csprng::from_seed([3; 16]);
    let cases: [(Vec<u64>, Vec<u64>); 2] = [
        (vec![0, 0, 0, 0], vec![1; 12]),
        (vec![5, 1 << 20, 0, 9], (0..12).map(|i| i % 3).collect()),
    ];
    for (row, full) in cases {
        let inp = inputs(&row, &full);
        let r = run_two_party(&p, &be, &inp, &Default::default(), Link::Mem, &mut rng).unwrap();
        assert!(r.matches_plain(), "Party != Plain for row {row:?}");
        // The first output is (x + row) ⊙ full, computed in the clear here.
        let want: Vec<u64> = (0..12)
            .map(|i| {
                let x = (i as u64 + 1) * 7;
                ((x + row[i % 4]) * full[i]) & 0xffff_ffff
            })
            .collect();
        assert_eq!(r.plain[0], want);
        assert_eq!(r.outputs[0], want);
        assert_eq!(p.fingerprint(), fp0);
    }
}

#[test]
fn misuse_is_a_typed_error() {
    let p = prog();
    let be = CpuBackend::new();
    // A public input not supplied.
    let mut inp = inputs(&[0; 4], &[1; 12]);
    inp.remove("full");
    let e = run_plain(&p, &be, &inp, &Default::default()).unwrap_err();
    assert!(
        matches!(e, RtError::Input { ref name, .. } if name == "full"),
        "{e}"
    );
    // Of the wrong length.
    let inp = inputs(&[0; 3], &[1; 12]);
    let e = run_plain(&p, &be, &inp, &Default::default()).unwrap_err();
    assert!(
        matches!(e, RtError::Input { ref name, .. } if name == "row"),
        "{e}"
    );
    // Declared twice (also against a secret input), or of a shape that does not broadcast.
    let mut g = Builder::new(FixedPoint::new(32, 8).unwrap());
    let x = g.input("x", &[3, 4]).unwrap();
    assert!(g.public_input("x", &[4]).is_err());
    let p5 = g.public_input("p", &[5]).unwrap();
    assert!(g.public_input("p", &[5]).is_err());
    assert!(g.add_pub_in(x, p5).is_err());
    assert!(g.mul_pub_in(x, p5).is_err());
}
