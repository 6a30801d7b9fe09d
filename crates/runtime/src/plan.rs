//! Capacity planning: the exact cost of one run of a program without running it.
//!
//! [`Plan::of`] walks the program's [`Schedule`] the way the dealer and the parties do and adds
//! up closed forms only — no key generation, no masks, no protocol:
//! * **rounds**: the schedule's waves (one message per direction each);
//! * **bytes sent / received** per party: every opened operand of a wave, bit-packed at its
//!   width (n bits per ring element, 1 per bit), exactly as the executor packs its message;
//! * **key bytes** per party, byte for byte as the dealer writes the stream
//!   ([`crate::keystream`]): header and footer, and per section its head, payload, zero padding
//!   and table-of-contents entry. Party 0's stream holds the shares of masks and correlations
//!   (R_W of private weights, the fresh input masks of every opening, the products Beaver-style
//!   steps finish with); party 1 draws those from its seed, so both hold only the gate key
//!   blobs in common, whose sizes each gate reports ([`GateImpl::key_bytes`]) from the same
//!   size functions the key format uses (`suf_fss::dcf::DcfKeys::bytes_for`);
//! * **AES calls** per party: what the gate batches cost to evaluate
//!   ([`GateImpl::aes_calls`]); linear and Beaver-style steps use none.
//!
//! Everything is reported for the whole run, per layer label and per (layer, operator). A gate
//! batch that spans several (layer, operator) pairs (gates of one name opened in one round) is
//! split between them by element count, the remainder to the first; totals stay exact.
//!
//! [`Plan::repeat_block`] turns the plan of a model built with its first block only into the
//! plan of the model with all its blocks, for models too large to build whole in memory.
//!
//! [`GateImpl::key_bytes`]: crate::gate::GateImpl::key_bytes
//! [`GateImpl::aes_calls`]: crate::gate::GateImpl::aes_calls

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use suf_backend::{BLayout, Backend, BitWidth, DcfKeys, DpfKeys, Resident};
use suf_core::pack::packed_len;
use suf_fss::dpf::depth;

use crate::error::{Result, RtError};
use crate::ir::{Dtype, NodeId, Op, Program};
use crate::keystream::{section_bytes, shares_payload, FIXED_BYTES};
use crate::sched::{Group, Schedule};

/// The planned cost of one (layer, operator) pair. Only steps that cost something appear
/// (interactive steps); local steps are free.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpPlan {
    /// Layer label.
    pub layer: String,
    /// Operator name (as in `RunReport::ops`: a gate's batch name).
    pub op: String,
    /// Rounds in which this operator opens values.
    pub rounds: u64,
    /// Payload bytes each party sends for it.
    pub bytes_sent: u64,
    /// Payload bytes each party receives for it.
    pub bytes_recv: u64,
    /// Key-stream bytes of party 0 and party 1 (sections with heads, padding and TOC entries).
    pub key_bytes: [u64; 2],
    /// Key-stream sections of party 0 and party 1.
    pub sections: [u64; 2],
    /// AES calls of one party (both make the same number).
    pub aes: u64,
    /// Elements: gate evaluations for gates, output elements for other steps.
    pub elements: u64,
    /// Whether the operator is an FSS gate.
    pub gate: bool,
}

/// The planned cost of one layer label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerPlan {
    /// Layer label.
    pub layer: String,
    /// Rounds in which this layer opens values.
    pub rounds: u64,
    /// Payload bytes each party sends.
    pub bytes_sent: u64,
    /// Payload bytes each party receives.
    pub bytes_recv: u64,
    /// Key-stream bytes of party 0 and party 1.
    pub key_bytes: [u64; 2],
    /// AES calls of one party.
    pub aes: u64,
}

/// The exact cost of one run of a program.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Rounds (exchanges with the peer).
    pub rounds: u64,
    /// Payload bytes sent by party 0 and party 1.
    pub bytes_sent: [u64; 2],
    /// Payload bytes received by party 0 and party 1.
    pub bytes_recv: [u64; 2],
    /// Bytes of party 0's and party 1's key stream files.
    pub key_bytes: [u64; 2],
    /// Sections in each party's key stream.
    pub sections: [u64; 2],
    /// AES calls of party 0 and party 1.
    pub aes: [u64; 2],
    /// Gate key batches (one blob per party each).
    pub gate_batches: u64,
    /// Gate batches split between several (layer, operator) pairs.
    pub shared_batches: u64,
    /// Per layer, in order of first appearance.
    pub layers: Vec<LayerPlan>,
    /// Per (layer, operator), in program order.
    pub ops: Vec<OpPlan>,
    /// Layer labels that open values in each round (for [`Plan::repeat_block`]).
    #[serde(skip)]
    wave_layers: Vec<Vec<String>>,
}

fn too_big(what: &str) -> RtError {
    RtError::Shape {
        op: "plan",
        detail: format!("{what} overflows"),
    }
}

fn section(payload: u64) -> Result<u64> {
    section_bytes(payload).ok_or_else(|| too_big("a key-stream section"))
}

/// Accumulates per (layer, operator) in program order.
struct Acc<'p> {
    prog: &'p Program,
    index: HashMap<(String, String), usize>,
    ops: Vec<OpPlan>,
    last_wave: Vec<u64>,
}

impl<'p> Acc<'p> {
    fn new(prog: &'p Program) -> Self {
        let mut a = Acc {
            prog,
            index: HashMap::new(),
            ops: Vec::new(),
            last_wave: Vec::new(),
        };
        for (i, n) in prog.nodes.iter().enumerate() {
            if n.op.is_interactive() {
                a.slot(NodeId(i as u32));
            }
        }
        a
    }

    fn slot_named(&mut self, layer: &str, op: String) -> usize {
        let key = (layer.to_string(), op);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.ops.len();
        self.ops.push(OpPlan {
            layer: key.0.clone(),
            op: key.1.clone(),
            ..Default::default()
        });
        self.last_wave.push(0);
        self.index.insert(key, i);
        i
    }

    fn slot(&mut self, id: NodeId) -> usize {
        let n = self.prog.node(id);
        self.slot_named(&n.layer, n.op.name())
    }

    /// A section of party 0's stream only (masks and correlations).
    fn p0_section(&mut self, i: usize, payload: u64) -> Result<u64> {
        let b = section(payload)?;
        let o = &mut self.ops[i];
        o.key_bytes[0] += b;
        o.sections[0] += 1;
        Ok(b)
    }
}

fn width_of(prog: &Program, d: Dtype) -> u32 {
    match d {
        Dtype::Arith => prog.width().bits(),
        Dtype::Bool => 1,
    }
}

impl Plan {
    /// The exact cost of one run of `prog` (see the module docs).
    ///
    /// # Errors
    /// [`RtError::Shape`] if a gate cannot report its key size or AES calls, or a size
    /// overflows.
    pub fn of(prog: &Program) -> Result<Plan> {
        let w = prog.width();
        let n = w.bits();
        let sched = Schedule::of(prog);
        let mut acc = Acc::new(prog);
        let mut plan = Plan {
            rounds: sched.rounds() as u64,
            key_bytes: [FIXED_BYTES, FIXED_BYTES],
            ..Default::default()
        };
        // R_W of the private weights, at the start of party 0's stream (the dealer's order).
        for (wid, &(k, nn)) in &prog.private_weights {
            let user = prog
                .nodes
                .iter()
                .position(|nd| matches!(&nd.op, Op::MatMulPrivW { wid: u, .. } if u == wid));
            let i = match user {
                Some(u) => acc.slot(NodeId(u as u32)),
                None => acc.slot_named("(unused)", format!("weight {wid}")),
            };
            let cnt = (k as u64)
                .checked_mul(nn as u64)
                .ok_or_else(|| too_big(wid))?;
            plan.key_bytes[0] += acc.p0_section(i, shares_payload(cnt, n))?;
            plan.sections[0] += 1;
        }
        for (k, wave) in sched.waves.iter().enumerate() {
            let tag = k as u64 + 1;
            let mut layers: Vec<String> = Vec::new();
            // Openings: one fresh mask share section per operand (party 0), and the message.
            for &id in wave {
                let node = prog.node(id);
                let i = acc.slot(id);
                let mut msg = 0u64;
                for d in node.op.deps() {
                    let dn = prog.node(d);
                    let bits = width_of(prog, dn.dtype);
                    let open = crate::gate::opening_bits(&node.op, dn.dtype, prog.width());
                    msg += packed_len(dn.numel(), open) as u64;
                    plan.key_bytes[0] +=
                        acc.p0_section(i, shares_payload(dn.numel() as u64, bits))?;
                    plan.sections[0] += 1;
                }
                let o = &mut acc.ops[i];
                o.bytes_sent += msg;
                o.bytes_recv += msg;
                o.elements += match &node.op {
                    Op::Gate(a, _) => prog.numel(*a) as u64,
                    _ => node.numel() as u64,
                };
                o.gate = matches!(node.op, Op::Gate(..));
                if acc.last_wave[i] != tag {
                    acc.last_wave[i] = tag;
                    acc.ops[i].rounds += 1;
                }
                if !layers.iter().any(|l| **l == *node.layer) {
                    layers.push(node.layer.to_string());
                }
                for p in 0..2 {
                    plan.bytes_sent[p] += msg;
                    plan.bytes_recv[p] += msg;
                }
            }
            plan.wave_layers.push(layers);
            // Gate key batches: one blob per party each.
            for g in Schedule::groups(prog, wave) {
                let Group::Gates(name, ids) = g else { continue };
                let gate = match &prog.node(ids[0]).op {
                    Op::Gate(_, g) => g.clone(),
                    _ => unreachable!("gate group holds gates"),
                };
                let counts: Vec<u64> = ids
                    .iter()
                    .map(|id| {
                        prog.node(*id)
                            .op
                            .deps()
                            .first()
                            .map_or(0, |a| prog.numel(*a)) as u64
                    })
                    .collect();
                let total: u64 = counts.iter().sum();
                let cnt = usize::try_from(total).map_err(|_| too_big(&name))?;
                let unknown = |what: &str| RtError::Shape {
                    op: "plan",
                    detail: format!("gate {name} does not report its {what} for {cnt} elements"),
                };
                let kb = gate.key_bytes(w, cnt).ok_or_else(|| unknown("key bytes"))?;
                let aes = gate.aes_calls(w, cnt).ok_or_else(|| unknown("AES calls"))?;
                let sec = [section(kb[0])?, section(kb[1])?];
                plan.gate_batches += 1;
                for p in 0..2 {
                    plan.key_bytes[p] += sec[p];
                    plan.sections[p] += 1;
                    plan.aes[p] += aes;
                }
                // Split by (layer, operator), proportionally to elements; remainder to the first.
                let mut parts: Vec<(usize, u64)> = Vec::new();
                for (id, &c) in ids.iter().zip(&counts) {
                    let i = acc.slot(*id);
                    match parts.iter_mut().find(|(j, _)| *j == i) {
                        Some(p) => p.1 += c,
                        None => parts.push((i, c)),
                    }
                }
                if parts.len() > 1 {
                    plan.shared_batches += 1;
                }
                let share = |x: u64, c: u64| -> u64 {
                    if total == 0 {
                        0
                    } else {
                        (x as u128 * c as u128 / total as u128) as u64
                    }
                };
                let mut given = ([0u64; 2], 0u64);
                for &(i, c) in parts.iter().skip(1) {
                    let o = &mut acc.ops[i];
                    for p in 0..2 {
                        let s = share(sec[p], c);
                        o.key_bytes[p] += s;
                        given.0[p] += s;
                    }
                    let a = share(aes, c);
                    o.aes += a;
                    given.1 += a;
                }
                let o = &mut acc.ops[parts[0].0];
                for p in 0..2 {
                    o.key_bytes[p] += sec[p] - given.0[p];
                    o.sections[p] += 1;
                }
                o.aes += aes - given.1;
            }
            // Finish material of the Beaver-style steps (party 0).
            for &id in wave {
                let node = prog.node(id);
                let cnt = node.numel() as u64;
                let payload = match &node.op {
                    Op::Gate(..) => continue,
                    Op::And(..) => shares_payload(cnt, 1),
                    _ => shares_payload(cnt, n),
                };
                let i = acc.slot(id);
                plan.key_bytes[0] += acc.p0_section(i, payload)?;
                plan.sections[0] += 1;
            }
        }
        plan.ops = acc.ops;
        plan.layers = layers_of(&plan.ops, &plan.wave_layers);
        Ok(plan)
    }

    /// The plan of a model with `blocks` blocks from the plan of the same model built with its
    /// first block only. Block l's layers are labelled `block{l}.…`; the first block's
    /// entries are repeated with their labels renamed and inserted after it, and the totals
    /// grow by (blocks − 1) times the first block's share.
    ///
    /// This is exact when every block has the same structure (true of every model family
    /// here: blocks differ in their weights only) and no round mixes a block with the layers
    /// around it (checked; it holds because each block consumes the previous one's output).
    ///
    /// # Errors
    /// [`RtError::Shape`] if the plan has no `block0.` layers, already has a `block1.` layer, a
    /// round mixes the block with other layers, or `blocks` is 0.
    pub fn repeat_block(&self, blocks: usize) -> Result<Plan> {
        let err = |detail: String| RtError::Shape { op: "plan", detail };
        const B0: &str = "block0.";
        let is_b0 = |l: &str| l.starts_with(B0);
        if blocks == 0 {
            return Err(err("a model needs at least one block".into()));
        }
        if !self.layers.iter().any(|l| is_b0(&l.layer)) {
            return Err(err("the plan has no block0 layers to repeat".into()));
        }
        if self.layers.iter().any(|l| l.layer.starts_with("block1.")) {
            return Err(err("the plan was built with more than one block".into()));
        }
        let mut block_rounds = 0u64;
        for (k, ls) in self.wave_layers.iter().enumerate() {
            let b = ls.iter().filter(|l| is_b0(l)).count();
            if b > 0 && b < ls.len() {
                return Err(err(format!(
                    "round {} mixes block 0 with other layers ({ls:?}): blocks cannot be repeated",
                    k + 1
                )));
            }
            block_rounds += (b > 0) as u64;
        }
        let extra = (blocks - 1) as u64;
        let mut out = self.clone();
        out.rounds += extra * block_rounds;
        let b0: Vec<&OpPlan> = self.ops.iter().filter(|o| is_b0(&o.layer)).collect();
        for o in &b0 {
            for p in 0..2 {
                out.bytes_sent[p] += extra * o.bytes_sent;
                out.bytes_recv[p] += extra * o.bytes_recv;
                out.key_bytes[p] += extra * o.key_bytes[p];
                out.sections[p] += extra * o.sections[p];
                out.aes[p] += extra * o.aes;
            }
        }
        // Party 1's sections are the gate blobs, one per batch (counted at its first pair).
        let block_batches: u64 = b0.iter().map(|o| o.sections[1]).sum();
        out.gate_batches += extra * block_batches;
        let rename = |l: &str, b: usize| format!("block{b}.{}", &l[B0.len()..]);
        let at = self
            .ops
            .iter()
            .rposition(|o| is_b0(&o.layer))
            .map_or(0, |i| i + 1);
        let mut ops: Vec<OpPlan> = self.ops[..at].to_vec();
        for b in 1..blocks {
            ops.extend(b0.iter().map(|o| OpPlan {
                layer: rename(&o.layer, b),
                ..(*o).clone()
            }));
        }
        ops.extend_from_slice(&self.ops[at..]);
        out.ops = ops;
        let mut waves: Vec<Vec<String>> = Vec::new();
        let first = self
            .wave_layers
            .iter()
            .position(|ls| ls.iter().any(|l| is_b0(l)));
        let last = self
            .wave_layers
            .iter()
            .rposition(|ls| ls.iter().any(|l| is_b0(l)));
        if let (Some(f), Some(l)) = (first, last) {
            waves.extend_from_slice(&self.wave_layers[..=l]);
            for b in 1..blocks {
                for ls in &self.wave_layers[f..=l] {
                    waves.push(ls.iter().map(|x| rename(x, b)).collect());
                }
            }
            waves.extend_from_slice(&self.wave_layers[l + 1..]);
        }
        out.wave_layers = waves;
        out.layers = layers_of(&out.ops, &out.wave_layers);
        Ok(out)
    }
}

/// Per-layer sums of per-operator plans, in order of first appearance; a layer's rounds are
/// the rounds in which it opens values.
#[allow(clippy::expect_used, reason = "last_mut right after a push")]
fn layers_of(ops: &[OpPlan], waves: &[Vec<String>]) -> Vec<LayerPlan> {
    let mut out: Vec<LayerPlan> = Vec::new();
    for o in ops {
        let l = match out.iter().position(|l| l.layer == o.layer) {
            Some(i) => &mut out[i],
            None => {
                out.push(LayerPlan {
                    layer: o.layer.clone(),
                    rounds: waves.iter().filter(|ls| ls.contains(&o.layer)).count() as u64,
                    ..Default::default()
                });
                out.last_mut().expect("pushed")
            }
        };
        l.bytes_sent += o.bytes_sent;
        l.bytes_recv += o.bytes_recv;
        l.aes += o.aes;
        for p in 0..2 {
            l.key_bytes[p] += o.key_bytes[p];
        }
    }
    out
}

/// A backend that forwards everything to another and counts the AES calls of the FSS
/// evaluations that pass through it (evaluations × AES per evaluation of the key batch's
/// shape): the measured side of [`Plan::aes`] in a real run.
pub struct AesCounter<'a> {
    inner: &'a dyn Backend,
    calls: AtomicU64,
}

impl std::fmt::Debug for AesCounter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AesCounter({}, {} calls)",
            self.inner.name(),
            self.calls()
        )
    }
}

impl<'a> AesCounter<'a> {
    /// Count the FSS evaluations of `inner`.
    pub fn new(inner: &'a dyn Backend) -> Self {
        AesCounter {
            inner,
            calls: AtomicU64::new(0),
        }
    }

    /// AES calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn add(&self, evals: usize, per: u64) {
        self.calls
            .fetch_add((evals as u64).saturating_mul(per), Ordering::Relaxed);
    }
}

type BeResult<T> = suf_backend::Result<T>;

impl Backend for AesCounter<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    #[allow(clippy::too_many_arguments)]
    fn gemm_batch(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> BeResult<Vec<u64>> {
        self.inner.gemm_batch(w, a, b, batch, m, k, n, layout)
    }
    fn gemm(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
    ) -> BeResult<Vec<u64>> {
        self.inner.gemm(w, a, b, m, k, n)
    }
    fn gemm_bt(
        &self,
        w: BitWidth,
        a: &[u64],
        bt: &[u64],
        m: usize,
        k: usize,
        n: usize,
    ) -> BeResult<Vec<u64>> {
        self.inner.gemm_bt(w, a, bt, m, k, n)
    }
    fn resident<'b>(&self, name: &str, data: Cow<'b, [u64]>) -> BeResult<Resident<'b>> {
        self.inner.resident(name, data)
    }
    #[allow(clippy::too_many_arguments)]
    fn gemm_resident(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &Resident<'_>,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> BeResult<Vec<u64>> {
        self.inner.gemm_resident(w, a, b, m, k, n, layout)
    }
    suf_backend::forward_ring_ops!(inner);
    fn transpose(&self, a: &[u64], rows: usize, cols: usize) -> BeResult<Vec<u64>> {
        self.inner.transpose(a, rows, cols)
    }
    fn attach_keys(&self, stream: u64, bytes: &[u8]) -> BeResult<()> {
        self.inner.attach_keys(stream, bytes)
    }
    fn detach_keys(&self, stream: u64) {
        self.inner.detach_keys(stream)
    }
    fn stats(&self) -> suf_backend::BackendStats {
        self.inner.stats()
    }
    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> BeResult<Vec<u64>> {
        let out = self.inner.dcf_eval(keys, xs, t)?;
        self.add(xs.len(), keys.aes_per_eval() as u64);
        Ok(out)
    }
    fn dpf_lt_eval(&self, keys: &DpfKeys, xs: &[u64], t: usize) -> BeResult<Vec<u8>> {
        let out = self.inner.dpf_lt_eval(keys, xs, t)?;
        self.add(xs.len(), depth(keys.n()) as u64 + 1);
        Ok(out)
    }
    fn dpf_eq_eval(&self, keys: &DpfKeys, xs: &[u64]) -> BeResult<Vec<u8>> {
        let out = self.inner.dpf_eq_eval(keys, xs)?;
        self.add(xs.len(), depth(keys.n()) as u64 + 1);
        Ok(out)
    }
    fn pack(&self, vals: &[u64], bits: u32) -> BeResult<Vec<u8>> {
        self.inner.pack(vals, bits)
    }
    fn unpack(&self, bytes: &[u8], bits: u32, count: usize) -> BeResult<Vec<u64>> {
        self.inner.unpack(bytes, bits, count)
    }
}
