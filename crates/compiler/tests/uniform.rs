//! Openings look uniform: every value a party sees opened (recorded on the wire: its own
//! message plus the peer's, per round) is statistically independent of the inputs. For
//! constant, small and extreme inputs, a chi-square test over the low 8 and the high 8 bits
//! of the opened values of every round of every multi-round gate (at the width each value is
//! opened at: n bits, or a gate's `input_bits`).

use std::collections::BTreeMap;
use std::time::Duration;

use suf_backend::CpuBackend;
use suf_compiler::report::{cases, program_of, Domain};
use suf_core::pack::unpack;
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_net::{mem_pair, Recording};
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::party::{Party, PartyWeights};
use suf_runtime::report::Tracer;
use suf_runtime::share_inputs;

/// The values party 0 sees opened in each round (own masked share + the peer's), each with
/// the width it is opened at.
fn opened_values(
    prog: &suf_runtime::ir::Program,
    xs: &[u64],
    seed: u64,
) -> Vec<Vec<(u32, Vec<u64>)>> {
    let w = prog.width();
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(seed);
    let (ds, sinks) = DealerStreams::to_memory(
        w,
        Csprng::for_tests(seed ^ 0xdea1),
        [7; 16],
        prog.fingerprint(),
    )
    .unwrap();
    run_dealer(prog, &be, ds, &DealerWeights::new()).unwrap();
    let mut k0 = PartyStream::from_bytes(sinks[0].take()).unwrap();
    let mut k1 = PartyStream::from_bytes(sinks[1].take()).unwrap();
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), xs.to_vec());
    let shares = share_inputs(w, &inputs, &mut rng);
    let (t0, mut r1) = mem_pair(Duration::from_secs(30));
    let (mut r0, log) = Recording::new(t0);
    let weights = PartyWeights::new();
    std::thread::scope(|s| {
        let sh1 = &shares[1];
        let h = s.spawn(|| {
            Party {
                prog,
                party: 1,
                be: &be,
                weights: &weights,
            }
            .run(&mut k1, &mut r1, sh1, &mut Tracer::new(None))
            .unwrap()
        });
        Party {
            prog,
            party: 0,
            be: &be,
            weights: &weights,
        }
        .run(&mut k0, &mut r0, &shares[0], &mut Tracer::new(None))
        .unwrap();
        h.join().unwrap();
    });
    let log = log.lock().unwrap();
    let sched = suf_runtime::sched::Schedule::of(prog);
    assert_eq!(sched.waves.len(), log.sent.len());
    sched
        .waves
        .iter()
        .zip(log.sent.iter().zip(log.received.iter()))
        .map(|(wave, (a, b))| {
            // The round's openings in schedule order, each packed at its opening width
            // (these programs open arithmetic values only).
            let mut pos = 0;
            let mut out = Vec::new();
            for id in wave {
                let op = &prog.node(*id).op;
                for d in op.deps() {
                    let dt = prog.node(d).dtype;
                    assert_eq!(dt, suf_runtime::ir::Dtype::Arith);
                    let bits = suf_runtime::gate::opening_bits(op, dt, w);
                    let ring = BitWidth::new(bits).unwrap();
                    let cnt = prog.numel(d);
                    let len = suf_core::pack::packed_len(cnt, bits);
                    let u = unpack(&a[pos..pos + len], bits, cnt).unwrap();
                    let v = unpack(&b[pos..pos + len], bits, cnt).unwrap();
                    pos += len;
                    out.push((
                        bits,
                        u.iter().zip(&v).map(|(&p, &q)| ring.add(p, q)).collect(),
                    ));
                }
            }
            assert_eq!(pos, a.len(), "the layout covers the whole message");
            out
        })
        .collect()
}

fn chi_square(vals: &[u64], shift: u32) -> f64 {
    let mut bins = [0f64; 256];
    for &v in vals {
        bins[((v >> shift) & 255) as usize] += 1.0;
    }
    let e = vals.len() as f64 / 256.0;
    bins.iter().map(|&o| (o - e) * (o - e) / e).sum()
}

#[test]
fn opened_values_are_uniform_for_constant_small_and_extreme_inputs() {
    let (n, f) = (50u32, 12u32);
    let w = BitWidth::new(n).unwrap();
    let len = 4096;
    let names = [
        "gelu",
        "silu",
        "nexp",
        "reciprocal",
        "rsqrt",
        "relu_ars",
        "ars",
        "max",
        "rescale_gelu",
    ];
    for case in cases(n, f).unwrap() {
        if !names.contains(&case.name.as_str()) {
            continue;
        }
        let prog = program_of(&case, n, f, len).unwrap();
        let mut rng = Csprng::for_tests(77);
        let pick = |v: u64| {
            if case.domain.contains(n, v) {
                v
            } else {
                match case.domain {
                    Domain::Range(lo, _) => lo,
                    _ => 0,
                }
            }
        };
        let sets: Vec<(&str, Vec<u64>)> = vec![
            ("zero", vec![pick(0); len]),
            ("const", vec![pick(3 << f); len]),
            (
                "small",
                (0..len)
                    .map(|_| pick(w.from_signed((rng.next_u64() % (1 << 14)) as i64 - (1 << 13))))
                    .collect(),
            ),
            (
                "extreme",
                (0..len)
                    .map(|i| pick([w.half(), w.half() - 1, w.mask(), 1][i % 4]))
                    .collect(),
            ),
        ];
        for (sname, xs) in sets {
            let rounds = opened_values(&prog, &xs, 5);
            for (k, opened) in rounds.iter().enumerate() {
                for (bits, vals) in opened {
                    assert!((8..=n).contains(bits), "opened at {bits} bits");
                    // 255 degrees of freedom: mean 255, sd 22.6; 400 is > 6 sd.
                    for shift in [0, bits - 8] {
                        let c = chi_square(vals, shift);
                        assert!(
                            c < 400.0,
                            "{} / {sname}: round {} opened values ({bits} bits) not uniform (bits from {shift}: chi² = {c:.1})",
                            case.name,
                            k + 1
                        );
                    }
                }
            }
        }
    }
}
