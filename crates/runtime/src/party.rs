//! The Party interpreter and its batching executor.
//!
//! For round k of the [`Schedule`]: compute the local steps the round's openings need; read
//! the round's fresh mask shares from the key stream; send **one message** holding every
//! opening of the round (bit-packed: n bits per ring element, 1 per bit); while it is in flight
//! compute every other local step that is ready (communication overlaps computation); receive
//! the peer's message; evaluate every gate batch with one backend call each; finish the
//! Beaver-style steps. Values are freed as soon as their last consumer has run.
//!
//! Formulas (party j ∈ {0,1}, x̂ = x + r opened):
//! * Mul: [ab] = j·âb̂ − â[r_b] − b̂[r_a] + [r_a r_b]; Square: j·â² − 2â[r] + [r²].
//! * MatMul: [XY] = X̂(jŶ − [R_Y]) − [R_X]Ŷ + [R_X R_Y].
//! * Private weight: [XW] = X̂(jŴ − [R_W]) − [R_X]Ŵ + [R_X R_W] (SIGMA, PETS 2024).
//! * And: ⟨ab⟩ = j·âb̂ ⊕ â⟨ρ_b⟩ ⊕ b̂⟨ρ_a⟩ ⊕ ⟨ρ_aρ_b⟩; B2A: [b] = j·b̂ + (1 − 2b̂)[ρ].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use suf_backend::Backend;
use suf_core::pack::{pack_into, packed_len, unpack};
use suf_core::BitWidth;
use suf_net::Transport;

use crate::error::{Result, RtError};
use crate::ir::{Dtype, NodeId, Op, Program};
use crate::keystream::PartyStream;
use crate::local::eval_local;
use crate::report::{Counter, RunReport, Tracer};
use crate::sched::{Group, Schedule};

/// XOR-shared bits are elements of Z_2: XOR is addition, AND multiplication.
fn z2() -> BitWidth {
    BitWidth::new(1).expect("Z_2 is a valid ring")
}

/// Masked weights Ŵ = W + R_W by name (public to both parties).
pub type PartyWeights = BTreeMap<String, Vec<u64>>;

/// One party's online run.
pub struct Party<'a> {
    /// The program.
    pub prog: &'a Program,
    /// 0 or 1.
    pub party: u8,
    /// Backend for all batched work.
    pub be: &'a dyn Backend,
    /// Ŵ for private-weight matmuls.
    pub weights: &'a PartyWeights,
}

impl std::fmt::Debug for Party<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Party({})", self.party)
    }
}

/// The outcome of a run: output shares and the report.
#[derive(Debug)]
pub struct PartyOutput {
    /// This party's shares of the outputs, in order.
    pub outputs: Vec<Vec<u64>>,
    /// Counts.
    pub report: RunReport,
}

struct Exec<'a, 'b> {
    p: &'b Party<'a>,
    w: BitWidth,
    sched: Schedule,
    vals: Vec<Option<Arc<Vec<u64>>>>,
    uses: Vec<u32>,
    rw: HashMap<String, Vec<u64>>,
    counter: Counter,
}

impl Exec<'_, '_> {
    fn val(&self, id: NodeId) -> Result<Arc<Vec<u64>>> {
        self.vals[id.0 as usize]
            .clone()
            .ok_or_else(|| RtError::Shape {
                op: "executor",
                detail: format!("value of node {} is not available (internal)", id.0),
            })
    }

    fn store(&mut self, id: NodeId, v: Vec<u64>) {
        for d in self.p.prog.node(id).op.deps() {
            let u = &mut self.uses[d.0 as usize];
            *u = u.saturating_sub(1);
            if *u == 0 {
                self.vals[d.0 as usize] = None;
            }
        }
        self.vals[id.0 as usize] = Some(Arc::new(v));
    }

    fn local(&mut self, id: NodeId, inputs: &BTreeMap<String, Vec<u64>>) -> Result<()> {
        let prog = self.p.prog;
        let node = prog.node(id);
        let t = Instant::now();
        let v = match &node.op {
            Op::Input { name } => {
                let x = inputs.get(name).ok_or_else(|| RtError::Input {
                    name: name.clone(),
                    detail: "share not supplied".into(),
                })?;
                if x.len() != node.numel() {
                    return Err(RtError::Input {
                        name: name.clone(),
                        detail: format!("{} values for shape {:?}", x.len(), node.shape),
                    });
                }
                x.iter().map(|&v| self.w.reduce(v)).collect()
            }
            Op::Reshape(a) | Op::Output(a) => {
                // Share the buffer instead of copying.
                let v = self.val(*a)?;
                for d in node.op.deps() {
                    let u = &mut self.uses[d.0 as usize];
                    *u = u.saturating_sub(1);
                    if *u == 0 {
                        self.vals[d.0 as usize] = None;
                    }
                }
                self.vals[id.0 as usize] = Some(v);
                return Ok(());
            }
            _ => {
                let deps = node.op.deps();
                let args: Vec<Arc<Vec<u64>>> =
                    deps.iter().map(|d| self.val(*d)).collect::<Result<_>>()?;
                let refs: Vec<&[u64]> = args.iter().map(|a| a.as_slice()).collect();
                let shapes: Vec<&[usize]> = deps
                    .iter()
                    .map(|d| prog.node(*d).shape.as_slice())
                    .collect();
                eval_local(self.p.be, self.w, self.p.party, node, &refs, &shapes)?
            }
        };
        self.counter.time(
            &node.layer,
            &node.op.name(),
            node.numel(),
            t.elapsed().as_secs_f64() * 1e3,
        );
        self.store(id, v);
        Ok(())
    }

    /// Compute every not-yet-computed local ancestor of `roots` (and the roots if local).
    fn ensure(&mut self, roots: &[NodeId], inputs: &BTreeMap<String, Vec<u64>>) -> Result<()> {
        let prog = self.p.prog;
        let mut need = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if self.vals[id.0 as usize].is_some() || !seen.insert(id) {
                continue;
            }
            let op = &prog.node(id).op;
            if op.is_interactive() {
                return Err(RtError::Shape {
                    op: "executor",
                    detail: format!(
                        "interactive node {} not computed in its round (internal)",
                        id.0
                    ),
                });
            }
            need.push(id);
            stack.extend(op.deps());
        }
        need.sort();
        for id in need {
            self.local(id, inputs)?;
        }
        Ok(())
    }
}

fn bits_of(dt: Dtype, w: BitWidth) -> u32 {
    match dt {
        Dtype::Arith => w.bits(),
        Dtype::Bool => 1,
    }
}

impl<'a> Party<'a> {
    /// Run online: `inputs` are this party's shares of the client's inputs.
    pub fn run(
        &self,
        keys: &mut PartyStream,
        net: &mut dyn Transport,
        inputs: &BTreeMap<String, Vec<u64>>,
        tracer: &mut Tracer<'_>,
    ) -> Result<PartyOutput> {
        let prog = self.prog;
        let w = prog.width();
        keys.check(self.party, &prog.fingerprint(), w.bits())?;
        let t_start = Instant::now();
        let net0 = (net.stats().bytes_sent, net.stats().bytes_received);
        let sched = Schedule::of(prog);
        let mut ex = Exec {
            p: self,
            w,
            uses: sched.uses.clone(),
            vals: vec![None; prog.nodes.len()],
            rw: HashMap::new(),
            counter: Counter::default(),
            sched,
        };
        for (wid, &(k, n)) in &prog.private_weights {
            let wh = self.weights.get(wid).filter(|v| v.len() == k * n);
            if wh.is_none() {
                return Err(RtError::Weight(wid.clone()));
            }
            let r = keys.take_arith(k * n)?;
            ex.rw.insert(wid.clone(), r);
        }
        let mut rep = RunReport {
            party: self.party,
            ..Default::default()
        };
        let waves = ex.sched.waves.clone();
        for (k, wave) in waves.iter().enumerate() {
            // 1. Operands of this round, then mask shares and the outgoing message.
            let operands: Vec<NodeId> = wave
                .iter()
                .flat_map(|id| prog.node(*id).op.deps())
                .collect();
            ex.ensure(&operands, inputs)?;
            let mut masks: Vec<Vec<Vec<u64>>> = Vec::with_capacity(wave.len());
            let mut mine: Vec<Vec<Vec<u64>>> = Vec::with_capacity(wave.len());
            let mut msg = Vec::new();
            let mut layout: Vec<(usize, u32)> = Vec::new();
            for &id in wave {
                let node = prog.node(id);
                let deps = node.op.deps();
                let mut ms = Vec::new();
                let mut ops = Vec::new();
                for d in &deps {
                    let dn = prog.node(*d);
                    let x = ex.val(*d)?;
                    let (r, masked) = match dn.dtype {
                        Dtype::Arith => {
                            let r = keys.take_arith(dn.numel())?;
                            let m = self.be.add(w, &x, &r)?;
                            (r, m)
                        }
                        Dtype::Bool => {
                            let r = keys.take_bool(dn.numel())?;
                            let m = self.be.add(z2(), &x, &r)?;
                            (r, m)
                        }
                    };
                    let bits = bits_of(dn.dtype, w);
                    let before = msg.len();
                    pack_into(&masked, bits, &mut msg);
                    layout.push((masked.len(), bits));
                    let sent = (msg.len() - before) as u64;
                    ex.counter
                        .opened(k as u64, &node.layer, &node.op.name(), sent, sent);
                    ms.push(r);
                    ops.push(masked);
                }
                masks.push(ms);
                mine.push(ops);
            }
            let sent_len = msg.len();
            net.send(msg)?;
            // 2. Overlap: every other local step that is ready now.
            let ready: Vec<NodeId> = (0..prog.nodes.len())
                .map(|i| NodeId(i as u32))
                .filter(|id| {
                    ex.vals[id.0 as usize].is_none()
                        && !prog.node(*id).op.is_interactive()
                        && ex.sched.level[id.0 as usize] <= k as u32
                        && ex.uses[id.0 as usize] > 0
                })
                .collect();
            ex.ensure(&ready, inputs)?;
            // 3. The peer's message, refused beyond the round's exact size before allocating.
            let expect: usize = layout.iter().map(|(c, b)| packed_len(*c, *b)).sum();
            let theirs = net.recv_max(expect)?;
            net.note_round();
            if theirs.len() != expect {
                return Err(RtError::Peer(format!(
                    "round {}: message of {} bytes, expected {expect}",
                    k + 1,
                    theirs.len()
                )));
            }
            rep.rounds += 1;
            rep.bytes_sent += sent_len as u64;
            rep.bytes_recv += theirs.len() as u64;
            if tracer.on() {
                let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
                for (i, &id) in wave.iter().enumerate() {
                    let node = prog.node(id);
                    let b: usize = mine[i]
                        .iter()
                        .zip(node.op.deps())
                        .map(|(m, d)| packed_len(m.len(), bits_of(prog.node(d).dtype, w)))
                        .sum();
                    *by_op
                        .entry(format!("{}/{}", node.layer, node.op.name()))
                        .or_default() += b as u64;
                }
                tracer.line(serde_json::json!({
                    "round": k + 1, "party": self.party, "ops": by_op,
                    "sent": sent_len, "recv": theirs.len(),
                    "flush": if k + 1 == waves.len() { "end of program" } else { "next round awaits these values" },
                }));
            }
            // 4. Gate batches, then the Beaver-style steps.
            self.finish_wave(
                &mut ex, keys, k, wave, &masks, &mine, &theirs, &layout, tracer,
            )?;
        }
        // Everything left (the last level's local steps and the outputs).
        let rest: Vec<NodeId> = prog.outputs.clone();
        ex.ensure(&rest, inputs)?;
        keys.finish()?;
        let outputs = prog
            .outputs
            .iter()
            .map(|o| ex.val(*o).map(|v| v.as_ref().clone()))
            .collect::<Result<Vec<_>>>()?;
        rep.online_ms = t_start.elapsed().as_secs_f64() * 1e3;
        rep.wire_bytes_sent = net.stats().bytes_sent - net0.0;
        rep.wire_bytes_recv = net.stats().bytes_received - net0.1;
        let counter = std::mem::take(&mut ex.counter);
        counter.finish(&mut rep);
        Ok(PartyOutput {
            outputs,
            report: rep,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_wave(
        &self,
        ex: &mut Exec<'_, '_>,
        keys: &mut PartyStream,
        k: usize,
        wave: &[NodeId],
        masks: &[Vec<Vec<u64>>],
        mine: &[Vec<Vec<u64>>],
        theirs: &[u8],
        layout: &[(usize, u32)],
        tracer: &mut Tracer<'_>,
    ) -> Result<()> {
        let prog = self.prog;
        let w = ex.w;
        let j = self.party as u64;
        // Reconstruct opened values: own masked share + peer's.
        let mut opened: Vec<Vec<Vec<u64>>> = Vec::with_capacity(wave.len());
        let mut pos = 0;
        let mut li = 0;
        for (wi, &id) in wave.iter().enumerate() {
            let mut o = Vec::new();
            for (di, d) in prog.node(id).op.deps().iter().enumerate() {
                let m = &mine[wi][di];
                let (c, b) = layout[li];
                li += 1;
                let len = packed_len(c, b);
                let peer = unpack(&theirs[pos..pos + len], b, c)
                    .map_err(|e| RtError::Peer(format!("round {}: {e}", k + 1)))?;
                pos += len;
                o.push(match prog.node(*d).dtype {
                    Dtype::Arith => self.be.add(w, m, &peer)?,
                    Dtype::Bool => self.be.add(z2(), m, &peer)?,
                });
            }
            opened.push(o);
        }
        let index: HashMap<NodeId, usize> =
            wave.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let groups = Schedule::groups(prog, wave);
        let mut results: HashMap<NodeId, Vec<u64>> = HashMap::new();
        for g in &groups {
            if let Group::Gates(name, ids) = g {
                let t = Instant::now();
                let xhat: Vec<u64> = ids
                    .iter()
                    .flat_map(|id| opened[index[id]][0].iter().copied())
                    .collect();
                let gate = match &prog.node(ids[0]).op {
                    Op::Gate(_, g) => g.clone(),
                    _ => unreachable!("gate group holds gates"),
                };
                let blob = keys.take_blob()?;
                let out = gate.eval(w, self.party, &blob, &xhat, self.be)?;
                let q = gate.outputs();
                let total = xhat.len();
                if out.len() != q * total {
                    return Err(RtError::Shape {
                        op: "gate",
                        detail: format!(
                            "gate {name} returned {} outputs for {q}×{total}",
                            out.len()
                        ),
                    });
                }
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if tracer.on() {
                    tracer.line(serde_json::json!({
                        "round": k + 1, "party": self.party, "fss": name,
                        "elements": xhat.len(), "key_bytes": blob.len(), "eval_us": ms * 1e3,
                    }));
                }
                let mut pos = 0;
                for id in ids {
                    let nd = prog.node(*id);
                    let c = nd.numel() / q;
                    ex.counter.time(
                        &nd.layer,
                        &nd.op.name(),
                        c,
                        ms * c as f64 / total.max(1) as f64,
                    );
                    let mut v = Vec::with_capacity(c * q);
                    for j in 0..q {
                        v.extend_from_slice(&out[j * total + pos..j * total + pos + c]);
                    }
                    results.insert(*id, v);
                    pos += c;
                }
            }
        }
        for (wi, &id) in wave.iter().enumerate() {
            let node = prog.node(id);
            let t = Instant::now();
            let o = &opened[wi];
            let ms = &masks[wi];
            let be = self.be;
            let v = match &node.op {
                Op::Gate(..) => results.remove(&id).expect("gate result computed"),
                Op::Mul(..) => {
                    let c = keys.take_arith(node.numel())?;
                    let ab = be.mul(w, &o[0], &o[1])?;
                    let t1 = be.mul(w, &o[0], &ms[1])?;
                    let t2 = be.mul(w, &o[1], &ms[0])?;
                    let s = be.scale(w, &ab, j);
                    let s = be.sub(w, &s, &t1)?;
                    let s = be.sub(w, &s, &t2)?;
                    be.add(w, &s, &c)?
                }
                Op::Square(_) => {
                    let c = keys.take_arith(node.numel())?;
                    let aa = be.mul(w, &o[0], &o[0])?;
                    let t1 = be.mul(w, &o[0], &ms[0])?;
                    let s = be.scale(w, &aa, j);
                    let t1 = be.scale(w, &t1, 2);
                    let s = be.sub(w, &s, &t1)?;
                    be.add(w, &s, &c)?
                }
                Op::MatMul(a, b) => {
                    let (sa, sb) = (&prog.node(*a).shape, &prog.node(*b).shape);
                    let (m, kk, n) = (sa[0], sa[1], sb[1]);
                    let c = keys.take_arith(m * n)?;
                    let jy = be.scale(w, &o[1], j);
                    let left = be.sub(w, &jy, &ms[1])?;
                    let p1 = be.gemm(w, &o[0], &left, m, kk, n)?;
                    let p2 = be.gemm(w, &ms[0], &o[1], m, kk, n)?;
                    let s = be.sub(w, &p1, &p2)?;
                    be.add(w, &s, &c)?
                }
                Op::MatMulPrivW { wid, k: kk, n, .. } => {
                    let m = o[0].len() / kk;
                    let c = keys.take_arith(m * n)?;
                    let what = &self.weights[wid];
                    let jw = be.scale(w, what, j);
                    let left = be.sub(w, &jw, &ex.rw[wid])?;
                    let p1 = be.gemm(w, &o[0], &left, m, *kk, *n)?;
                    let p2 = be.gemm(w, &ms[0], what, m, *kk, *n)?;
                    let s = be.sub(w, &p1, &p2)?;
                    be.add(w, &s, &c)?
                }
                Op::RowMul(..) => {
                    let cols = *node.shape.last().unwrap_or(&1);
                    let c = keys.take_arith(node.numel())?;
                    let ab = be.mul_rows(w, &o[0], &o[1], cols)?;
                    let t1 = be.mul_rows(w, &o[0], &ms[1], cols)?;
                    let t2 = be.mul_rows(w, &ms[0], &o[1], cols)?;
                    let s = be.scale(w, &ab, j);
                    let s = be.sub(w, &s, &t1)?;
                    let s = be.sub(w, &s, &t2)?;
                    be.add(w, &s, &c)?
                }
                Op::And(..) => {
                    // Bits as Z_2: AND is a product, XOR a sum.
                    let c = keys.take_bool(node.numel())?;
                    let ab = be.mul(z2(), &o[0], &o[1])?;
                    let ab = be.scale(z2(), &ab, j);
                    let t1 = be.mul(z2(), &o[0], &ms[1])?;
                    let t2 = be.mul(z2(), &o[1], &ms[0])?;
                    let s = be.add(z2(), &ab, &t1)?;
                    let s = be.add(z2(), &s, &t2)?;
                    be.add(z2(), &s, &c)?
                }
                Op::B2A(_) => {
                    // [b] = j·b̂ + [ρ] − 2·b̂·[ρ].
                    let rho = keys.take_arith(node.numel())?;
                    let bh = be.reduce(w, &o[0]);
                    let prod = be.mul(w, &bh, &rho)?;
                    let s = be.scale(w, &bh, j);
                    let s = be.add(w, &s, &rho)?;
                    let p2 = be.scale(w, &prod, 2);
                    be.sub(w, &s, &p2)?
                }
                _ => unreachable!("only interactive steps are scheduled"),
            };
            if !matches!(node.op, Op::Gate(..)) {
                ex.counter.time(
                    &node.layer,
                    &node.op.name(),
                    node.numel(),
                    t.elapsed().as_secs_f64() * 1e3,
                );
            }
            ex.store(id, v);
        }
        Ok(())
    }
}
