//! Leakage tests on a whole transformer block (gate by gate the same checks live in
//! `crates/compiler/tests/shapes.rs` and `uniform.rs`):
//!
//! * the sizes and counts of keys and messages do not depend on the input (zero, constant,
//!   ring extremes, random) or on the masks (dealer seeds);
//! * every value a server sees opened — its own message plus the peer's, element by element
//!   as the schedule lays them out — is uniform, whatever the input;
//! * the CPU evaluation time of a gate batch does not depend on the masks in its key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::pack::{packed_len, unpack};
use suf_core::prg::Csprng;
use suf_core::BitWidth;
use suf_net::{mem_pair, MessageLog, Recording};
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::ir::{Dtype, Program};
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::party::{Party, PartyWeights};
use suf_runtime::report::Tracer;
use suf_runtime::sched::Schedule;

const SEQ: usize = 8;

/// One BERT block, width 32, 2 heads, FFN 64, synthetic weights (public-model mode).
fn block() -> Program {
    let mut cfg = suf_models::config::zoo("bert-tiny").unwrap();
    cfg.layers = 1;
    cfg.hidden = 32;
    cfg.heads = 2;
    cfg.kv_heads = 2;
    cfg.head_dim = 16;
    cfg.ffn = 64;
    let fp = FixedPoint::new(cfg.ring_bits, cfg.frac_bits).unwrap();
    let w = suf_models::Weights::synthetic(7);
    suf_nn::model::build(&cfg, &w, fp, suf_nn::layers::Mode::Public, SEQ, Some(1))
        .unwrap()
        .prog
}

/// The inputs: zero, a constant, the ring's extremes, random values of a few units.
fn input_sets(prog: &Program) -> Vec<(&'static str, Vec<u64>)> {
    let w = prog.width();
    let n = prog.numel(prog.inputs["x"]);
    let fp = prog.fp;
    let mut rng = Csprng::for_tests(3);
    vec![
        ("zero", vec![0; n]),
        ("const", vec![fp.encode(1.5).unwrap(); n]),
        (
            "extreme",
            (0..n)
                .map(|i| [w.half(), w.half() - 1, w.mask(), 1][i % 4])
                .collect(),
        ),
        (
            "random",
            (0..n)
                .map(|_| {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    fp.encode(8.0 * u - 4.0).unwrap()
                })
                .collect(),
        ),
    ]
}

/// One two-party run; returns each party's key bytes and message log.
fn run(prog: &Program, x: &[u64], dealer_seed: u64) -> ([u64; 2], [MessageLog; 2]) {
    let w = prog.width();
    let be = CpuBackend::new();
    let (ds, sinks) = DealerStreams::to_memory(
        w,
        Csprng::for_tests(dealer_seed),
        [1; 16],
        prog.fingerprint(),
    )
    .unwrap();
    let rep = run_dealer(prog, &be, ds, &DealerWeights::new()).unwrap();
    let mut keys = [
        PartyStream::from_bytes(sinks[0].take()).unwrap(),
        PartyStream::from_bytes(sinks[1].take()).unwrap(),
    ];
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), x.to_vec());
    let shares =
        suf_runtime::share_inputs(w, &inputs, &mut Csprng::for_tests(dealer_seed ^ 0xc11e));
    let (t0, t1) = mem_pair(Duration::from_secs(60));
    let (mut r0, l0) = Recording::new(t0);
    let (mut r1, l1) = Recording::new(t1);
    let weights = PartyWeights::new();
    let [k0, k1] = &mut keys;
    std::thread::scope(|s| {
        let sh1 = &shares[1];
        let h = s.spawn(|| {
            Party {
                prog,
                party: 1,
                be: &be,
                weights: &weights,
            }
            .run(k1, &mut r1, sh1, &mut Tracer::new(None))
            .unwrap()
        });
        Party {
            prog,
            party: 0,
            be: &be,
            weights: &weights,
        }
        .run(k0, &mut r0, &shares[0], &mut Tracer::new(None))
        .unwrap();
        h.join().unwrap();
    });
    let take = |l: Arc<Mutex<MessageLog>>| l.lock().unwrap().clone();
    (rep.key_bytes, [take(l0), take(l1)])
}

#[test]
fn block_key_and_message_sizes_do_not_depend_on_inputs_or_masks() {
    let prog = block();
    let mut first: Option<(Vec<u64>, Vec<Vec<usize>>)> = None;
    for (name, x) in input_sets(&prog) {
        for seed in [1u64, 2] {
            let (kb, logs) = run(&prog, &x, seed);
            let sizes: Vec<Vec<usize>> = logs
                .iter()
                .flat_map(|l| [&l.sent, &l.received])
                .map(|ms| ms.iter().map(Vec::len).collect())
                .collect();
            let shape = (kb.to_vec(), sizes);
            match &first {
                None => {
                    assert!(shape.1[0].len() > 10, "a block has many rounds");
                    first = Some(shape);
                }
                Some(f) => assert_eq!(&shape, f, "input {name}, dealer seed {seed}"),
            }
        }
    }
}

/// Opened arithmetic values by their width in bits (n, or a gate's `input_bits`).
type ByWidth = BTreeMap<u32, Vec<u64>>;

/// Per round, the opened values party 0 sees (own message + peer's, element by element as
/// the schedule lays them out): arithmetic values by the width they are opened at (n bits,
/// or fewer for a gate that reads only the low bits of its input:
/// `suf_runtime::gate::opening_bits`) and XOR-shared bits.
fn opened(prog: &Program, log: &MessageLog) -> Vec<(ByWidth, Vec<u64>)> {
    let w = prog.width();
    let z2 = BitWidth::new(1).unwrap();
    let sched = Schedule::of(prog);
    assert_eq!(sched.waves.len(), log.sent.len());
    sched
        .waves
        .iter()
        .zip(log.sent.iter().zip(&log.received))
        .map(|(wave, (mine, theirs))| {
            let (mut arith, mut bits) = (ByWidth::new(), Vec::new());
            let mut pos = 0;
            for id in wave {
                let op = &prog.node(*id).op;
                for d in op.deps() {
                    let dt = prog.node(d).dtype;
                    let b = suf_runtime::gate::opening_bits(op, dt, w);
                    let c = prog.numel(d);
                    let ring = match dt {
                        Dtype::Arith => BitWidth::new(b).unwrap(),
                        Dtype::Bool => z2,
                    };
                    let len = packed_len(c, b);
                    let a = unpack(&mine[pos..pos + len], b, c).unwrap();
                    let t = unpack(&theirs[pos..pos + len], b, c).unwrap();
                    pos += len;
                    let sum = a.iter().zip(&t).map(|(&p, &q)| ring.add(p, q));
                    if dt == Dtype::Bool {
                        bits.extend(sum);
                    } else {
                        arith.entry(b).or_default().extend(sum);
                    }
                }
            }
            assert_eq!(pos, mine.len(), "the layout covers the whole message");
            (arith, bits)
        })
        .collect()
}

fn chi_square(vals: &[u64], shift: u32, bins: usize) -> f64 {
    let mut h = vec![0f64; bins];
    for &v in vals {
        h[((v >> shift) as usize) & (bins - 1)] += 1.0;
    }
    let e = vals.len() as f64 / bins as f64;
    h.iter().map(|&o| (o - e) * (o - e) / e).sum()
}

#[test]
fn every_value_opened_in_a_block_is_uniform_whatever_the_input() {
    let prog = block();
    let n = prog.width().bits();
    let seeds: Vec<u64> = (10..16).collect();
    for (name, x) in input_sets(&prog) {
        // Pool each round over several dealer seeds (fresh masks each time).
        let mut rounds: Vec<(ByWidth, Vec<u64>)> = Vec::new();
        for &s in &seeds {
            let (_, logs) = run(&prog, &x, s);
            for (k, (a, b)) in opened(&prog, &logs[0]).into_iter().enumerate() {
                if rounds.len() <= k {
                    rounds.push(Default::default());
                }
                for (width, v) in a {
                    rounds[k].0.entry(width).or_default().extend(v);
                }
                rounds[k].1.extend(b);
            }
        }
        let mut all = ByWidth::new();
        for (k, (arith, bits)) in rounds.iter().enumerate() {
            // 16 bins: 15 degrees of freedom, mean 15, sd 5.5; 60 is above 8 sd. The low and
            // the high 4 bits of each width the round opens at.
            for (&width, vals) in arith {
                assert!((8..=n).contains(&width), "round {}: width {width}", k + 1);
                if vals.len() >= 320 {
                    for shift in [0, width - 4] {
                        let c = chi_square(vals, shift, 16);
                        assert!(
                            c < 60.0,
                            "{name}: round {} ({width}-bit openings) bits from {shift}: chi² {c:.1}",
                            k + 1
                        );
                    }
                }
                all.entry(width).or_default().extend_from_slice(vals);
            }
            if !bits.is_empty() {
                let ones = bits.iter().filter(|&&b| b == 1).count() as f64;
                let m = bits.len() as f64;
                let z = (ones - m / 2.0) / (m / 4.0).sqrt();
                assert!(
                    z.abs() < 6.0,
                    "{name}: round {} opened bits: z = {z:.1}",
                    k + 1
                );
            }
        }
        // Everything at once, per width, 256 bins: 255 degrees of freedom, mean 255, sd 22.6.
        for (&width, vals) in &all {
            if vals.len() < 5_120 {
                continue;
            }
            for shift in [0, width - 8] {
                let c = chi_square(vals, shift, 256);
                assert!(
                    c < 420.0,
                    "{name}: all rounds, {width}-bit openings, bits from {shift}: chi² {c:.1}"
                );
            }
        }
        assert!(all.get(&n).map_or(0, Vec::len) > 20_000, "{:?}", all.keys());
    }
}

/// Repetitions per key in the timing test.
const REPS: usize = 16;

/// CPU time of the calling thread in seconds (Linux: `/proc/thread-self/schedstat`, which
/// other processes on a busy machine do not inflate), else wall-clock time.
fn cpu_time() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(|ns| ns as f64 * 1e-9)
        .unwrap_or_else(|| START.get_or_init(Instant::now).elapsed().as_secs_f64())
}

#[test]
fn gate_evaluation_time_does_not_depend_on_the_masks() {
    let (n, f) = (50u32, 12u32);
    let w = BitWidth::new(n).unwrap();
    let spec = suf_compiler::gates::smooth_specs(suf_compiler::gates::Smooth::Gelu, n, f, false)
        .unwrap()
        .gate1
        .clone();
    let len = 4096;
    let be = CpuBackend::new();
    let mut rng = Csprng::for_tests(9);
    // One public x̂ for all; only the masks in the keys differ.
    let xhat: Vec<u64> = (0..len).map(|_| rng.ring(w)).collect();
    let masks: Vec<(&str, Vec<u64>)> = vec![
        ("zero", vec![0; len]),
        ("ones", vec![w.mask(); len]),
        ("half", vec![w.half(); len]),
        ("random", (0..len).map(|_| rng.ring(w)).collect()),
    ];
    let keys: Vec<Vec<u8>> = masks
        .iter()
        .map(|(_, r)| spec.deal(n, r, &mut rng).unwrap()[0].clone())
        .collect();
    assert!(keys.windows(2).all(|k| k[0].len() == k[1].len()));
    // One thread (other work on the machine then disturbs one core, not a barrier of all),
    // interleaved repetitions, and the minimum of each: robust to a busy machine.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut best = vec![f64::INFINITY; keys.len()];
    pool.install(|| {
        for rep in 0..REPS {
            // Rotate the order, so that no key is always measured first.
            for j in 0..keys.len() {
                let i = (j + rep) % keys.len();
                let k = &keys[i];
                let t = cpu_time();
                let out = spec
                    .eval_shares(n, 0, suf_fss::KeyRef::detached(k), &xhat, &be)
                    .unwrap();
                std::hint::black_box(out);
                best[i] = best[i].min(cpu_time() - t);
            }
        }
    });
    let (lo, hi) = best
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &t| (a.min(t), b.max(t)));
    eprintln!("GeLU batch of {len}, best of {REPS} (s), masks zero/ones/half/random: {best:?}");
    assert!(
        hi / lo < 1.6,
        "evaluation times by mask {:?}: {best:?}",
        masks.iter().map(|m| m.0).collect::<Vec<_>>()
    );
}
