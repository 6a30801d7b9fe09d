//! The Dealer interpreter: walks the program's schedule and writes each party's one-time key
//! stream in the order the Party interpreter consumes it.
//!
//! Per round: first the open material of every step (shares of its fresh input masks), then
//! one key blob per gate batch, then the finish material of every non-gate step (shares of the
//! mask products: [r_a·r_b], [r²], [R_X·R_Y], [R_X·R_W], [ρ_a∧ρ_b], [ρ]).
//!
//! # Deterministic and parallel
//!
//! The dealer draws one 16-byte *master seed* from the stream's generator
//! (`DealerStreams::rng`, keyed from the OS by `suf keygen`). Gate key batch j (counting every
//! batch of the program from 0, in the order the parties consume them) is dealt with its own
//! generator `Csprng::from_seed(σ_j)`, where
//! `σ_j = AES_master(GATE_BATCH_DOMAIN ⊕ j)` (AES-128 keyed with the master seed used as a
//! PRF on the batch index; see [`batch_seed`]). Inside a batch, every DCF/DPF batch takes
//! its own seed from that generator, and element k's roots are blocks 2k, 2k + 1 of AES-CTR
//! under it (`suf_fss::dealer`). So a batch's keys depend on (master seed, j, its input masks)
//! only: the gate batches of a round are dealt in parallel (rayon), together with the
//! round's mask products, and written in program order. The streams are byte-identical for
//! one master seed whatever the number of threads (tested), and format version 2 is
//! unchanged. Masks and party 1's seed-derived shares still come from the stream's
//! generators in consumption order (AES-CTR, cheap).

use std::collections::HashMap;
use std::time::Instant;

use rayon::prelude::*;
use suf_backend::Backend;
use suf_core::prg::{Csprng, FixedKeyAes};
use suf_fss::dealer::{swap_gen_times, GenTimes};

use crate::error::{Result, RtError};
use crate::ir::{NodeId, Op, Program};
use crate::keystream::DealerStreams;
use crate::sched::{Group, Schedule};

/// Weight masks R_W for private-weight matmuls, by name (k×n). Bound to one model: Ŵ = W + R_W
/// is published once, and R_W must never mask a changed W.
pub type DealerWeights = std::collections::BTreeMap<String, Vec<u64>>;

/// What the dealer produced.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DealReport {
    /// Bytes of each party's key stream.
    pub key_bytes: [u64; 2],
    /// Wall time of key generation in milliseconds.
    pub keygen_ms: f64,
    /// Rounds of the program.
    pub rounds: usize,
    /// Gate key batches dealt.
    pub gate_batches: u64,
    /// Gate elements dealt (one key set per element, summed over the batches).
    pub gate_elements: u64,
    /// Which generator made the DCF batches ("cpu", or an installed device dealer's name).
    pub dcf_dealer: String,
    /// Where `keygen_ms` went: drawing the masks (one thread, in program order).
    pub masks_ms: f64,
    /// Dealing the gate batches and mask products (in parallel, a window of rounds at a time).
    pub deal_ms: f64,
    /// Writing in program order: party 1's seeded share expansion, packing, and waiting for
    /// the sinks (a writer thread per party; a slow sink shows up here), plus the footers.
    /// Window k is written while window k + 1 is dealt, so `write_ms` overlaps `deal_ms`
    /// (except with `serial`) and the phases can sum to more than `keygen_ms`.
    pub write_ms: f64,
    /// Of the writing, the time each party's writer thread spent inside its sink's writes
    /// (the socket to a party, a file): close to the whole dealing time when the receiver is
    /// what bounds it.
    pub sink_write_ms: [f64; 2],
    /// Where the dealing went, per gate batch signature (the gate's name) and per mask
    /// product kind (`mul`, `square`, `matmul`, `matmul_privw`, `rowmul`, `and`, `b2a`),
    /// most expensive first. Times are summed over the tasks that ran in parallel (each
    /// task's wall time; a thread waiting inside a task may run another, so the sums can
    /// exceed `deal_ms`); with `serial` the gate batches are dealt one at a time (each still
    /// parallel inside) and their times are wall-clock.
    pub kinds: Vec<KindTime>,
    /// Summed over all kinds: time in DCF batch generation (the installed DCF dealer's
    /// calls: the GPU's on the H200), DPF comparison keys, the rest of the gate batches
    /// (masks of the payloads, share packing, key serialization, blob assembly), and the
    /// mask products (R_X·R_W GEMMs etc.). Task times, as in `kinds`.
    pub split_ms: DealSplit,
    /// Gate batches dealt one at a time (`SUF_DEALER_SERIAL=1`; for an exact per-kind split).
    pub serial: bool,
}

/// Time of one kind of dealing work (see [`DealReport::kinds`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KindTime {
    /// The gate's batch signature, or the mask product's kind.
    pub kind: String,
    /// Gate batches (or mask products) of this kind.
    pub tasks: u64,
    /// Elements (gate key sets, or product outputs).
    pub elements: u64,
    /// Key bytes written for them: both parties' blobs for gates; party 0's packed shares
    /// for mask products (party 1's are expanded from its seed).
    pub bytes: u64,
    /// Summed task time in milliseconds.
    pub ms: f64,
    /// Of which in DCF batch generation.
    pub dcf_ms: f64,
    /// Of which in DPF comparison key generation.
    pub dpf_ms: f64,
}

/// Summed task times of the dealing phase (see [`DealReport::split_ms`]).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DealSplit {
    /// DCF batch generation.
    pub dcf: f64,
    /// DPF comparison key generation.
    pub dpf: f64,
    /// The rest of the gate batches.
    pub gate_other: f64,
    /// Mask products (Beaver and matmul correlations).
    pub products: f64,
}

impl DealReport {
    /// Key bytes of both parties per second of key generation.
    pub fn bytes_per_s(&self) -> f64 {
        (self.key_bytes[0] + self.key_bytes[1]) as f64 / (self.keygen_ms / 1e3).max(1e-9)
    }

    /// Gate elements (key sets) per second of key generation.
    pub fn keys_per_s(&self) -> f64 {
        self.gate_elements as f64 / (self.keygen_ms / 1e3).max(1e-9)
    }
}

/// Domain constant of the gate-batch seeds ("gate batch seed" in the high bytes; the batch
/// index in the low 64 bits).
pub const GATE_BATCH_DOMAIN: u128 = u128::from_le_bytes(*b"\0\0\0\0\0\0\0\0gatebtch");

/// The seed of gate batch `j` under `master`: AES-128 keyed with the master seed applied to
/// `GATE_BATCH_DOMAIN ⊕ j` (a PRF evaluation; distinct j give independent-looking seeds).
pub fn batch_seed(prf: &FixedKeyAes, j: u64) -> [u8; 16] {
    prf.permute(GATE_BATCH_DOMAIN ^ j as u128).to_le_bytes()
}

/// A mask product a step finishes with (the shares are written after the round's blobs).
enum Finish {
    Arith(Vec<u64>),
    Bool(Vec<u64>),
    None,
}

/// Write both parties' key streams for one run of `prog`.
pub fn run_dealer(
    prog: &Program,
    be: &dyn Backend,
    ds: DealerStreams,
    rw: &DealerWeights,
) -> Result<DealReport> {
    run_dealer_with(prog, be, ds, rw, &|_| {})
}

/// [`run_dealer`], calling `progress` after every round with the bytes written so far (both
/// parties together).
pub fn run_dealer_with(
    prog: &Program,
    be: &dyn Backend,
    ds: DealerStreams,
    rw: &DealerWeights,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DealReport> {
    let serial = std::env::var_os(SERIAL_ENV).is_some_and(|v| v == "1");
    let window = std::env::var(WINDOW_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&w| (1..=1024).contains(&w))
        .unwrap_or(WINDOW);
    run_dealer_profiled(prog, be, ds, rw, progress, window, serial)
}

/// Environment variable: rounds dealt together by [`run_dealer_with`] (1..=1024; unset or any
/// other value: [`WINDOW`]; a measurement knob, so a bad value is not an error). The bytes do not depend on it (tested); a larger window keeps more cores
/// busy (the largest gate batch of a window bounds it) for more keys held in memory.
pub const WINDOW_ENV: &str = "SUF_DEALER_WINDOW";

/// Environment variable: `1` makes [`run_dealer_with`] deal the gate batches one at a time
/// (same bytes; an exact per-kind split of the dealing time, at the cost of less overlap).
pub const SERIAL_ENV: &str = "SUF_DEALER_SERIAL";

/// Rounds dealt together (see [`run_dealer_windowed`]). Measured on the H200 host with the
/// GPU dealer (bert-base seq 128 to tmpfs, one call): 8 rounds 16.6 s (dealing 10.4 s), 32
/// rounds 12.9 s (6.2 s), 1,024 rounds 15.7 s (5.7 s, more page faults): the largest batch of
/// a window bounds it, so a window must hold several blocks' worth of batches.
pub const WINDOW: usize = 32;

/// [`run_dealer_with`], dealing `window` rounds at a time (≥ 1): the masks of the window's
/// rounds are drawn first (in program order, from the stream's generator), then every gate
/// batch and mask product of the window is dealt in parallel while the previous window is
/// written in program order. Masks and party 1's shares come from two separate generators whose order
/// is unchanged, and each gate batch has its own seed, so the bytes do not depend on
/// `window` (tested); a larger window keeps more cores busy when rounds are small.
pub fn run_dealer_windowed(
    prog: &Program,
    be: &dyn Backend,
    ds: DealerStreams,
    rw: &DealerWeights,
    progress: &(dyn Fn(u64) + Sync),
    window: usize,
) -> Result<DealReport> {
    run_dealer_profiled(prog, be, ds, rw, progress, window, false)
}

/// Per-task timing: wall time and the DCF/DPF generation inside it (nesting-safe).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, GenTimes) {
    let saved = swap_gen_times(GenTimes::default());
    let t = Instant::now();
    let out = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (out, ms, swap_gen_times(saved))
}

/// The kind name of a scheduled non-gate step.
fn step_kind(op: &Op) -> &'static str {
    match op {
        Op::Mul(..) => "mul",
        Op::Square(_) => "square",
        Op::MatMul(..) => "matmul",
        Op::MatMulPrivW { .. } => "matmul_privw",
        Op::RowMul(..) => "rowmul",
        Op::And(..) => "and",
        Op::B2A(_) => "b2a",
        _ => "other",
    }
}

/// A dealt window, waiting to be written: its rounds' open material (which steps, boolean or
/// not, in program order) with their masks, and its blobs and finishes tagged with the round
/// (index in the window) they belong to.
struct Dealt {
    opens: Vec<Vec<(NodeId, bool)>>,
    masks: HashMap<NodeId, Vec<Vec<u64>>>,
    blobs: Vec<(usize, Result<[Vec<u8>; 2]>)>,
    fins: Vec<(usize, Result<Finish>)>,
}

/// Write a dealt window in program order: per round, the open material, the blobs, the
/// finishes; `progress` after every round. Returns the milliseconds it took.
fn write_window(ds: &mut DealerStreams, d: Dealt, progress: &(dyn Fn(u64) + Sync)) -> Result<f64> {
    let t = Instant::now();
    let Dealt {
        opens,
        mut masks,
        blobs,
        fins,
    } = d;
    let mut blobs = blobs.into_iter().peekable();
    let mut fins = fins.into_iter().peekable();
    for (wi, order) in opens.iter().enumerate() {
        for (id, boolean) in order {
            for m in masks.remove(id).unwrap_or_default() {
                if *boolean {
                    ds.share_bool(&m)?;
                } else {
                    ds.share_arith(&m)?;
                }
            }
        }
        while let Some((_, b)) = blobs.next_if(|(bw, _)| *bw == wi) {
            ds.blob(b?)?;
        }
        while let Some((_, f)) = fins.next_if(|(fw, _)| *fw == wi) {
            match f? {
                Finish::Arith(v) => ds.share_arith(&v)?,
                Finish::Bool(v) => ds.share_bool(&v)?,
                Finish::None => {}
            }
        }
        let kb = ds.key_bytes();
        progress(kb[0] + kb[1]);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// [`run_dealer_windowed`]; with `serial`, the gate batches of a window are dealt one after
/// the other (each parallel inside), then the mask products, so that the per-kind times of
/// the report are wall-clock (same bytes either way).
pub fn run_dealer_profiled(
    prog: &Program,
    be: &dyn Backend,
    mut ds: DealerStreams,
    rw: &DealerWeights,
    progress: &(dyn Fn(u64) + Sync),
    window: usize,
    serial: bool,
) -> Result<DealReport> {
    let t0 = Instant::now();
    let w = prog.width();
    let sched = Schedule::of(prog);
    for (wid, &(k, n)) in &prog.private_weights {
        let r = rw
            .get(wid)
            .filter(|r| r.len() == k * n)
            .ok_or_else(|| RtError::Weight(wid.clone()))?;
        ds.share_arith(r)?;
    }
    let prf = FixedKeyAes::with_key(ds.rng.seed());
    let (mut masks_ms, mut deal_ms, mut write_ms) = (0.0, 0.0, 0.0);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let mut batch_no = 0u64;
    let mut elements = 0u64;
    let mut kinds: std::collections::BTreeMap<String, KindTime> = Default::default();
    let mut split = DealSplit::default();
    let mut account = |kind: String, n: u64, bytes: u64, ms: f64, g: GenTimes, gate: bool| {
        let (dcf, dpf) = (g.dcf_ns as f64 / 1e6, g.dpf_ns as f64 / 1e6);
        let k = kinds.entry(kind).or_default();
        k.tasks += 1;
        k.elements += n;
        k.bytes += bytes;
        k.ms += ms;
        k.dcf_ms += dcf;
        k.dpf_ms += dpf;
        if gate {
            split.dcf += dcf;
            split.dpf += dpf;
            split.gate_other += (ms - dcf - dpf).max(0.0);
        } else {
            split.products += ms;
        }
    };
    // Window k is written while window k + 1 is dealt (its masks are drawn first: masks come
    // from the stream's generator, party 1's shares from another, so the order of each is
    // unchanged and so are the bytes).
    let mut pending: Option<Dealt> = None;
    for window in sched.waves.chunks(window.max(1)) {
        // Open material: fresh masks for every opened operand, in program order.
        let t_masks = Instant::now();
        let mut opens: Vec<Vec<(NodeId, bool)>> = Vec::with_capacity(window.len());
        let mut masks: HashMap<NodeId, Vec<Vec<u64>>> = HashMap::new();
        for wave in window {
            let mut order = Vec::with_capacity(wave.len());
            for &id in wave {
                let node = prog.node(id);
                let numel = |d: &NodeId| prog.numel(*d);
                let (ms, boolean) = match &node.op {
                    Op::Mul(a, b) | Op::MatMul(a, b) | Op::RowMul(a, b) => {
                        ([a, b].map(|d| ds.masks(numel(d))).to_vec(), false)
                    }
                    Op::Square(a) | Op::MatMulPrivW { x: a, .. } | Op::Gate(a, _) => {
                        (vec![ds.masks(numel(a))], false)
                    }
                    Op::And(a, b) => ([a, b].map(|d| ds.bit_masks(numel(d))).to_vec(), true),
                    Op::B2A(a) => (vec![ds.bit_masks(numel(a))], true),
                    _ => unreachable!("only interactive steps are scheduled"),
                };
                masks.insert(id, ms);
                order.push((id, boolean));
            }
            opens.push(order);
        }
        masks_ms += ms(t_masks);
        // Gate key batches (each with its own seed) and the finish material of the other
        // steps, of every round of the window, in parallel.
        let mut jobs: Vec<(usize, u64, Vec<NodeId>)> = Vec::new();
        for (wi, wave) in window.iter().enumerate() {
            for ids in Schedule::groups(prog, wave)
                .into_iter()
                .filter_map(|g| match g {
                    Group::Gates(_, ids) => Some(ids),
                    Group::Single(_) => None,
                })
            {
                jobs.push((wi, batch_no, ids));
                batch_no += 1;
            }
        }
        elements += jobs
            .iter()
            .flat_map(|(_, _, ids)| ids)
            .map(|i| match &prog.node(*i).op {
                Op::Gate(a, _) => prog.numel(*a) as u64,
                _ => 0,
            })
            .sum::<u64>();
        let deal = |(_, j, ids): &(usize, u64, Vec<NodeId>)| {
            let all: Vec<u64> = ids
                .iter()
                .flat_map(|i| masks[i][0].iter().copied())
                .collect();
            let gate = match &prog.node(ids[0]).op {
                Op::Gate(_, g) => g.clone(),
                _ => unreachable!("gate group holds gates"),
            };
            let (blob, ms, g) =
                timed(|| gate.deal(w, &all, &mut Csprng::from_seed(batch_seed(&prf, *j))));
            (blob, (gate.name(), all.len() as u64, ms, g))
        };
        let finish = |id: &NodeId| -> Result<Finish> {
            let node = prog.node(*id);
            let ms = &masks[id];
            Ok(match &node.op {
                Op::Mul(..) => Finish::Arith(be.mul(w, &ms[0], &ms[1])?),
                Op::Square(_) => Finish::Arith(be.mul(w, &ms[0], &ms[0])?),
                Op::MatMul(a, b) => {
                    let (sa, sb) = (&prog.node(*a).shape, &prog.node(*b).shape);
                    Finish::Arith(be.gemm(w, &ms[0], &ms[1], sa[0], sa[1], sb[1])?)
                }
                Op::MatMulPrivW { wid, k, n, .. } => {
                    let r = &rw[wid];
                    Finish::Arith(be.gemm(w, &ms[0], r, ms[0].len() / k, *k, *n)?)
                }
                Op::RowMul(..) => {
                    let c = *node.shape.last().unwrap_or(&1);
                    Finish::Arith(be.mul_rows(w, &ms[0], &ms[1], c)?)
                }
                Op::And(..) => Finish::Bool(ms[0].iter().zip(&ms[1]).map(|(a, b)| a & b).collect()),
                Op::B2A(_) => Finish::Arith(ms[0].clone()),
                Op::Gate(..) => Finish::None,
                _ => unreachable!("only interactive steps are scheduled"),
            })
        };
        let steps: Vec<(usize, NodeId)> = window
            .iter()
            .enumerate()
            .flat_map(|(wi, wave)| wave.iter().map(move |&id| (wi, id)))
            .collect();
        let finish_timed = |(_, id): &(usize, NodeId)| {
            let (f, ms, _) = timed(|| finish(id));
            let n = match &f {
                Ok(Finish::Arith(v) | Finish::Bool(v)) => v.len(),
                _ => 0,
            };
            (f, (step_kind(&prog.node(*id).op), n as u64, ms))
        };
        let deal_window = || {
            let t_deal = Instant::now();
            let (blobs, fins): (Vec<_>, Vec<_>) = if serial {
                let b = jobs.iter().map(deal).collect();
                (b, steps.par_iter().map(finish_timed).collect())
            } else {
                rayon::join(
                    || jobs.par_iter().map(deal).collect(),
                    || steps.par_iter().map(finish_timed).collect(),
                )
            };
            (blobs, fins, ms(t_deal))
        };
        // The previous window is written while this one is dealt (one after the other when
        // serial, so that the per-kind times stay wall-clock).
        let prev = pending.take();
        let (written, (blobs, fins, t_deal)) = if serial {
            let wr = prev.map(|p| write_window(&mut ds, p, progress));
            (wr, deal_window())
        } else {
            rayon::join(
                || prev.map(|p| write_window(&mut ds, p, progress)),
                deal_window,
            )
        };
        if let Some(t) = written.transpose()? {
            write_ms += t;
        }
        deal_ms += t_deal;
        let (blobs, gate_times): (Vec<_>, Vec<_>) = blobs.into_iter().unzip();
        for (b, (name, n, ms, g)) in blobs.iter().zip(gate_times) {
            let bytes = b.as_ref().map_or(0, |b| (b[0].len() + b[1].len()) as u64);
            account(name, n, bytes, ms, g, true);
        }
        let (fins, fin_times): (Vec<_>, Vec<_>) = fins.into_iter().unzip();
        for (f, (kind, n, ms)) in fins.iter().zip(fin_times) {
            if kind == "other" || matches!(f, Ok(Finish::None)) {
                continue;
            }
            let bytes = match f {
                Ok(Finish::Arith(v)) => (v.len() as u64 * u64::from(w.bits())).div_ceil(8),
                Ok(Finish::Bool(v)) => (v.len() as u64).div_ceil(8),
                _ => 0,
            };
            account(kind.to_string(), n, bytes, ms, GenTimes::default(), false);
        }
        pending = Some(Dealt {
            opens,
            masks,
            blobs: jobs.iter().map(|(wi, _, _)| *wi).zip(blobs).collect(),
            fins: steps.iter().map(|(wi, _)| *wi).zip(fins).collect(),
        });
    }
    if let Some(p) = pending.take() {
        write_ms += write_window(&mut ds, p, progress)?;
    }
    let t_fin = Instant::now();
    let clock = ds.sink_clock();
    let key_bytes = ds.finish();
    suf_fss::dealer::release_buffers();
    let key_bytes = key_bytes?;
    write_ms += ms(t_fin);
    Ok(DealReport {
        key_bytes,
        keygen_ms: t0.elapsed().as_secs_f64() * 1e3,
        rounds: sched.rounds(),
        gate_batches: batch_no,
        gate_elements: elements,
        dcf_dealer: suf_fss::dealer::installed_name().to_string(),
        masks_ms,
        deal_ms,
        write_ms,
        sink_write_ms: clock.ms(),
        kinds: {
            let mut v: Vec<KindTime> = kinds
                .into_iter()
                .map(|(kind, k)| KindTime { kind, ..k })
                .collect();
            v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
            v
        },
        split_ms: split,
        serial,
    })
}
