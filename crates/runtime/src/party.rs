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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use suf_backend::{BLayout, Backend, Resident};
use suf_core::pack::packed_len;
use suf_core::BitWidth;
use suf_net::Transport;

use crate::error::{Result, RtError};
use crate::ir::{Dtype, NodeId, Op, Program};
use crate::keystream::PartyStream;
use crate::local::eval_local;
use crate::report::{BackendReport, Counter, RoundTime, RunReport, Tracer};
use crate::sched::{Group, Schedule};

/// XOR-shared bits are elements of Z_2: XOR is addition, AND multiplication.
#[allow(clippy::expect_used, reason = "a constant: 1 is a valid ring width")]
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

/// The model side of a party's GEMMs, resident on its backend for a whole session (every
/// run of the program with these weights): the public weights of `MatMulPub` steps and the
/// masked weights Ŵ of `MatMulPrivW` steps. A device backend uploads each matrix once here
/// instead of once per GEMM; the CPU backend borrows the data (no copy).
pub struct ResidentWeights<'a> {
    /// Public weights by the address of their shared buffer (shared weights upload once).
    public: HashMap<usize, Resident<'a>>,
    /// Ŵ by weight id.
    masked: HashMap<String, Resident<'a>>,
    /// Milliseconds the registration took.
    pub ms: f64,
}

impl std::fmt::Debug for ResidentWeights<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentWeights")
            .field("public", &self.public.len())
            .field("masked", &self.masked.len())
            .field("ms", &self.ms)
            .finish()
    }
}

impl<'a> ResidentWeights<'a> {
    fn public_of(&self, wt: &crate::ir::Public) -> Option<&Resident<'a>> {
        self.public.get(&(Arc::as_ptr(wt) as usize))
    }
}

/// One run's key-dependent preparation, done before the online phase: the key stream
/// attached to the backend, the shares [R_W] of the private weights' masks taken from it and
/// jŴ − [R_W] made resident.
pub struct Prepared<'r, 'a> {
    weights: &'r ResidentWeights<'a>,
    /// jŴ − [R_W] by weight id.
    left: HashMap<String, Resident<'static>>,
    /// Milliseconds taken (attaching the keys, reading [R_W], computing jŴ − [R_W],
    /// registering it).
    pub ms: f64,
    /// Milliseconds the backend took to make the key stream resident (0 on the CPU).
    pub key_upload_ms: f64,
    /// Key-stream bytes the backend uploaded (0 on the CPU).
    pub key_bytes_uploaded: u64,
}

impl std::fmt::Debug for Prepared<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("private_weights", &self.left.len())
            .field("ms", &self.ms)
            .finish()
    }
}

struct Exec<'a, 'b, 'r> {
    p: &'b Party<'a>,
    w: BitWidth,
    sched: Schedule,
    vals: Vec<Option<Arc<Vec<u64>>>>,
    uses: Vec<u32>,
    prep: Prepared<'r, 'a>,
    counter: Counter,
    /// Wall time per executor phase ([`RunReport::phases_ms`]).
    phases: BTreeMap<&'static str, f64>,
    /// The masks of gate inputs, which are only needed while the message is packed: one
    /// buffer reused round after round (fresh buffers of that size page-fault on every round).
    scratch: Vec<u64>,
}

/// Add the time since `t` to phase `k`.
fn lap(phases: &mut BTreeMap<&'static str, f64>, k: &'static str, t: Instant) {
    *phases.entry(k).or_default() += t.elapsed().as_secs_f64() * 1e3;
}

impl Exec<'_, '_, '_> {
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
            Op::Input { name } | Op::PublicInput { name } => {
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
            Op::MatMulPub { x, w: wt, k, n } if self.prep.weights.public_of(wt).is_some() => {
                let a = self.val(*x)?;
                let rows = a.len() / (*k).max(1);
                let r = self
                    .prep
                    .weights
                    .public_of(wt)
                    .ok_or_else(|| RtError::Shape {
                        op: "matmul_pub",
                        detail: "public weight not resident (internal)".into(),
                    })?;
                self.p
                    .be
                    .gemm_resident(self.w, &a, r, rows, *k, *n, BLayout::RowMajor)?
            }
            _ => self.eval_deps(id)?,
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
        let t = Instant::now();
        // By level (a step after the needed steps it reads): the data-movement steps of a
        // level (take, column slices and concatenations, transposes: host copies, one per
        // attention head) in parallel, the others one after the other. Steps of one level
        // are independent and local steps take no keys, so the order changes nothing else.
        let mut level: HashMap<NodeId, usize> = HashMap::with_capacity(need.len());
        let mut levels: Vec<Vec<NodeId>> = Vec::new();
        for &id in &need {
            let l = prog
                .node(id)
                .op
                .deps()
                .iter()
                .filter_map(|d| level.get(d).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            level.insert(id, l);
            if levels.len() <= l {
                levels.resize(l + 1, Vec::new());
            }
            levels[l].push(id);
        }
        for ids in levels {
            let (moves, rest): (Vec<NodeId>, Vec<NodeId>) = ids
                .into_iter()
                .partition(|id| is_data_movement(&prog.node(*id).op));
            if moves.len() > 1 {
                use rayon::prelude::*;
                let this = &*self;
                let done: Vec<(NodeId, Vec<u64>, f64)> = moves
                    .par_iter()
                    .map(|&id| {
                        let t = Instant::now();
                        let v = this.eval_deps(id)?;
                        Ok((id, v, t.elapsed().as_secs_f64() * 1e3))
                    })
                    .collect::<Result<_>>()?;
                for (id, v, ms) in done {
                    let node = prog.node(id);
                    self.counter
                        .time(&node.layer, &node.op.name(), node.numel(), ms);
                    self.store(id, v);
                }
            } else {
                for id in moves {
                    self.local(id, inputs)?;
                }
            }
            for id in rest {
                self.local(id, inputs)?;
            }
        }
        lap(&mut self.phases, "local", t);
        Ok(())
    }

    /// A local step evaluated from its operands' values ([`eval_local`]).
    fn eval_deps(&self, id: NodeId) -> Result<Vec<u64>> {
        let prog = self.p.prog;
        let node = prog.node(id);
        let deps = node.op.deps();
        let args: Vec<Arc<Vec<u64>>> = deps.iter().map(|d| self.val(*d)).collect::<Result<_>>()?;
        let refs: Vec<&[u64]> = args.iter().map(|a| a.as_slice()).collect();
        let shapes: Vec<&[usize]> = deps
            .iter()
            .map(|d| prog.node(*d).shape.as_slice())
            .collect();
        eval_local(self.p.be, self.w, self.p.party, node, &refs, &shapes)
    }
}

/// The ring an opening of a value of type `dt` for the step `op` is packed in
/// ([`crate::gate::opening_bits`]).
#[allow(
    clippy::expect_used,
    reason = "opening_bits is in 1..=n, a valid ring width"
)]
fn open_ring(op: &Op, dt: Dtype, w: BitWidth) -> BitWidth {
    BitWidth::new(crate::gate::opening_bits(op, dt, w)).expect("1..=n bits")
}

impl<'a> Party<'a> {
    /// Run online: `inputs` are this party's shares of the client's inputs. Registers the
    /// weights ([`Party::resident_weights`]) and prepares the run ([`Party::prepare`]) first;
    /// the report's online time includes both.
    pub fn run(
        &self,
        keys: &mut PartyStream,
        net: &mut dyn Transport,
        inputs: &BTreeMap<String, Vec<u64>>,
        tracer: &mut Tracer<'_>,
    ) -> Result<PartyOutput> {
        let t = Instant::now();
        let res = self.resident_weights()?;
        let prep = self.prepare(&res, keys)?;
        let mut out = self.run_prepared(prep, keys, net, inputs, tracer)?;
        // Registration and preparation count as host time here.
        let all = t.elapsed().as_secs_f64() * 1e3;
        out.report.host_ms += (all - out.report.online_ms).max(0.0);
        out.report.online_ms = all;
        Ok(out)
    }

    /// Make this party's weights resident on its backend: the public weights of the
    /// program's `MatMulPub` steps and Ŵ of its private weights. Once per session: the
    /// result serves every run of the program with these weights.
    ///
    /// # Errors
    /// [`RtError::Weight`] if Ŵ is missing or mis-shaped; a backend (device) error.
    pub fn resident_weights(&self) -> Result<ResidentWeights<'a>> {
        let t = Instant::now();
        let be = self.be;
        let mut public = HashMap::new();
        for node in &self.prog.nodes {
            if let Op::MatMulPub { w: wt, .. } = &node.op {
                let key = Arc::as_ptr(wt) as usize;
                if let std::collections::hash_map::Entry::Vacant(e) = public.entry(key) {
                    let data: &'a [u64] = wt.as_slice();
                    e.insert(be.resident(&node.layer, Cow::Borrowed(data))?);
                }
            }
        }
        let mut masked = HashMap::new();
        for (wid, &(k, n)) in &self.prog.private_weights {
            let wh = self
                .weights
                .get(wid)
                .filter(|v| v.len() == k * n)
                .ok_or_else(|| RtError::Weight(wid.clone()))?;
            masked.insert(wid.clone(), be.resident(wid, Cow::Borrowed(wh))?);
        }
        Ok(ResidentWeights {
            public,
            masked,
            ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Prepare one run from its key stream: check the stream against the program, take the
    /// shares [R_W] of the private weights' masks and make jŴ − [R_W] resident. This is key
    /// loading, done before the online phase.
    ///
    /// # Errors
    /// Key-stream errors (wrong party, program or ring; truncated stream);
    /// [`RtError::Weight`]; a backend (device) error.
    pub fn prepare<'r>(
        &self,
        weights: &'r ResidentWeights<'a>,
        keys: &mut PartyStream,
    ) -> Result<Prepared<'r, 'a>> {
        let t = Instant::now();
        let prog = self.prog;
        let w = prog.width();
        keys.check(self.party, &prog.fingerprint(), w.bits())?;
        // The whole stream, once: a device backend uploads it and evaluates DCF views from
        // offsets into its copy; the CPU backend reads the host bytes in place.
        let s0 = self.be.stats();
        self.be.attach_keys(keys.token(), keys.bytes())?;
        let attached = self.be.stats().since(&s0);
        let j = self.party as u64;
        let mut left = HashMap::new();
        for (wid, &(k, n)) in &prog.private_weights {
            let wh = self
                .weights
                .get(wid)
                .filter(|v| v.len() == k * n)
                .ok_or_else(|| RtError::Weight(wid.clone()))?;
            if !weights.masked.contains_key(wid) {
                return Err(RtError::Weight(wid.clone()));
            }
            let r = keys.take_arith(k * n)?;
            let jw = self.be.scale(w, wh, j)?;
            let l = self.be.sub(w, &jw, &r)?;
            left.insert(wid.clone(), self.be.resident(wid, Cow::Owned(l))?);
        }
        Ok(Prepared {
            weights,
            left,
            ms: t.elapsed().as_secs_f64() * 1e3,
            key_upload_ms: attached.key_upload_ms,
            key_bytes_uploaded: attached.key_bytes_attached,
        })
    }

    /// The online phase of a prepared run; the report's online time counts from here.
    ///
    /// # Errors
    /// Key-stream, network, peer and backend errors.
    pub fn run_prepared(
        &self,
        prep: Prepared<'_, 'a>,
        keys: &mut PartyStream,
        net: &mut dyn Transport,
        inputs: &BTreeMap<String, Vec<u64>>,
        tracer: &mut Tracer<'_>,
    ) -> Result<PartyOutput> {
        let prog = self.prog;
        let w = prog.width();
        // The keys are one-time: whatever the backend holds for them goes when the run ends,
        // on every path.
        struct Detach<'b>(&'b dyn Backend, u64);
        impl Drop for Detach<'_> {
            fn drop(&mut self) {
                self.0.detach_keys(self.1);
            }
        }
        let _detach = Detach(self.be, keys.token());
        let t_start = Instant::now();
        let stats0 = self.be.stats();
        let net0 = (net.stats().bytes_sent, net.stats().bytes_received);
        let sched = Schedule::of(prog);
        let mut ex = Exec {
            p: self,
            w,
            uses: sched.uses.clone(),
            vals: vec![None; prog.nodes.len()],
            prep,
            counter: Counter::default(),
            phases: BTreeMap::new(),
            scratch: Vec::new(),
            sched,
        };
        let mut rep = RunReport {
            party: self.party,
            ..Default::default()
        };
        let waves = ex.sched.waves.clone();
        for (k, wave) in waves.iter().enumerate() {
            let t_round = Instant::now();
            let dev0 = self.be.stats().device_ms;
            let mut wait_ms = 0.0;
            // 1. Operands of this round, then mask shares and the outgoing message.
            let operands: Vec<NodeId> = wave
                .iter()
                .flat_map(|id| prog.node(*id).op.deps())
                .collect();
            ex.ensure(&operands, inputs)?;
            // Every opening of the wave in wire order: (wave index, operand, its ring, a gate
            // input?). A gate's input is opened mod 2^{input_bits} (the bits it reads); its
            // mask is only needed while the message is packed (the gate's keys were made for
            // it), so all of them share one reused buffer; every other step keeps its masks
            // for the Beaver formulas.
            let mut opens: Vec<(usize, NodeId, BitWidth, bool)> = Vec::new();
            for (wi, &id) in wave.iter().enumerate() {
                let node = prog.node(id);
                let gate = matches!(node.op, Op::Gate(..));
                for d in node.op.deps() {
                    let ring = open_ring(&node.op, prog.node(d).dtype, w);
                    opens.push((wi, d, ring, gate));
                }
            }
            // Masks: one pass over the key stream, the openings filled in parallel.
            let t = Instant::now();
            let gate_len: usize = opens
                .iter()
                .filter(|o| o.3)
                .map(|o| prog.node(o.1).numel())
                .sum();
            let mut scratch = std::mem::take(&mut ex.scratch);
            scratch.resize(gate_len, 0);
            let mut kept: Vec<Vec<u64>> = opens
                .iter()
                .map(|o| match o.3 {
                    true => Vec::new(),
                    false => vec![0u64; prog.node(o.1).numel()],
                })
                .collect();
            {
                let mut rest = scratch.as_mut_slice();
                let mut parts: Vec<(Dtype, &mut [u64])> = Vec::with_capacity(opens.len());
                for (o, k) in opens.iter().zip(kept.iter_mut()) {
                    let dn = prog.node(o.1);
                    let r: &mut [u64] = if o.3 {
                        let (a, b) = std::mem::take(&mut rest).split_at_mut(dn.numel());
                        rest = b;
                        a
                    } else {
                        k
                    };
                    parts.push((dn.dtype, r));
                }
                keys.take_masks_into(&mut parts)?;
            }
            lap(&mut ex.phases, "masks", t);
            // Mask and pack every opening in one call (`suf_backend::fused::mask_pack_many`).
            let t = Instant::now();
            let xs: Vec<Arc<Vec<u64>>> =
                opens.iter().map(|o| ex.val(o.1)).collect::<Result<_>>()?;
            let mut msg = Vec::new();
            let masked = {
                let mut rest = scratch.as_slice();
                let mut parts: Vec<suf_backend::fused::MaskPart<'_>> =
                    Vec::with_capacity(opens.len());
                for ((o, k), x) in opens.iter().zip(&kept).zip(&xs) {
                    let r: &[u64] = if o.3 {
                        // Split as the masks were taken (a value of another length is then
                        // mask_pack's LengthMismatch, not a panic here).
                        let (a, b) = rest.split_at(prog.node(o.1).numel());
                        rest = b;
                        a
                    } else {
                        k
                    };
                    parts.push((o.2, x.as_slice(), r));
                }
                self.be.mask_pack_many(&parts, &mut msg)
            };
            lap(&mut ex.phases, "mask_pack", t);
            ex.scratch = scratch;
            let masked = masked?;
            drop(xs);
            let mut masks: Vec<Vec<Vec<u64>>> = vec![Vec::new(); wave.len()];
            let mut mine: Vec<Vec<Vec<u64>>> = vec![Vec::new(); wave.len()];
            let mut layout: Vec<(usize, u32)> = Vec::with_capacity(opens.len());
            for ((o, r), m) in opens.iter().zip(kept).zip(masked) {
                let sent = packed_len(m.len(), o.2.bits()) as u64;
                let node = prog.node(wave[o.0]);
                ex.counter
                    .opened(k as u64, &node.layer, &node.op.name(), sent, sent);
                layout.push((m.len(), o.2.bits()));
                masks[o.0].push(r);
                mine[o.0].push(m);
            }
            let sent_len = msg.len();
            let t_wait = Instant::now();
            net.send(msg)?;
            wait_ms += t_wait.elapsed().as_secs_f64() * 1e3;
            lap(&mut ex.phases, "send", t_wait);
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
            let t_wait = Instant::now();
            let theirs = net.recv_max(expect)?;
            wait_ms += t_wait.elapsed().as_secs_f64() * 1e3;
            lap(&mut ex.phases, "recv", t_wait);
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
            // 4. Gate batches, then the Beaver-style steps.
            self.finish_wave(
                &mut ex, keys, k, wave, &masks, &mine, &theirs, &layout, tracer,
            )?;
            let ms = t_round.elapsed().as_secs_f64() * 1e3;
            let device_ms = (self.be.stats().device_ms - dev0).max(0.0);
            let rt = RoundTime {
                round: k as u64 + 1,
                ms,
                host_ms: (ms - device_ms - wait_ms).max(0.0),
                device_ms,
                wait_ms,
                bytes_sent: sent_len as u64,
                bytes_recv: theirs.len() as u64,
            };
            if tracer.on() {
                let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
                for (i, &id) in wave.iter().enumerate() {
                    let node = prog.node(id);
                    let b: usize = mine[i]
                        .iter()
                        .zip(node.op.deps())
                        .map(|(m, d)| {
                            packed_len(m.len(), open_ring(&node.op, prog.node(d).dtype, w).bits())
                        })
                        .sum();
                    *by_op
                        .entry(format!("{}/{}", node.layer, node.op.name()))
                        .or_default() += b as u64;
                }
                tracer.line(serde_json::json!({
                    "round": k + 1, "party": self.party, "ops": by_op,
                    "sent": sent_len, "recv": theirs.len(),
                    "ms": rt.ms, "host_ms": rt.host_ms, "device_ms": rt.device_ms,
                    "wait_ms": rt.wait_ms,
                    "flush": if k + 1 == waves.len() { "end of program" } else { "next round awaits these values" },
                }));
            }
            rep.round_times.push(rt);
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
        let used = self.be.stats().since(&stats0);
        rep.device_ms = used.device_ms;
        rep.wait_ms = rep.round_times.iter().map(|r| r.wait_ms).sum();
        rep.host_ms = (rep.online_ms - rep.device_ms - rep.wait_ms).max(0.0);
        rep.backend = BackendReport::from(&used);
        rep.wire_bytes_sent = net.stats().bytes_sent - net0.0;
        rep.wire_bytes_recv = net.stats().bytes_received - net0.1;
        let counter = std::mem::take(&mut ex.counter);
        counter.finish(&mut rep);
        rep.phases_ms = std::mem::take(&mut ex.phases);
        Ok(PartyOutput {
            outputs,
            report: rep,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_wave(
        &self,
        ex: &mut Exec<'_, '_, '_>,
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
        let t_unpack = Instant::now();
        let mut parts: Vec<suf_backend::fused::UnpackPart<'_>> = Vec::with_capacity(layout.len());
        let mut owner: Vec<usize> = Vec::with_capacity(layout.len());
        let mut pos = 0;
        let mut li = 0;
        for (wi, &id) in wave.iter().enumerate() {
            for (di, d) in prog.node(id).op.deps().iter().enumerate() {
                let m = &mine[wi][di];
                let (c, b) = layout[li];
                li += 1;
                let len = packed_len(c, b);
                let ring = open_ring(&prog.node(id).op, prog.node(*d).dtype, w);
                let peer = theirs
                    .get(pos..pos + len)
                    .ok_or_else(|| RtError::Peer(format!("round {}: message too short", k + 1)))?;
                pos += len;
                parts.push((ring, peer, m));
                owner.push(wi);
            }
        }
        // Unpack and add in one pass; a length/padding error is the peer's fault.
        let all = self.be.unpack_add_many(&parts).map_err(|e| match e {
            suf_backend::BackendError::Core(e) => RtError::Peer(format!("round {}: {e}", k + 1)),
            e => RtError::Backend(e),
        })?;
        let mut opened: Vec<Vec<Vec<u64>>> = vec![Vec::new(); wave.len()];
        for (wi, v) in owner.into_iter().zip(all) {
            opened[wi].push(v);
        }
        lap(&mut ex.phases, "unpack_add", t_unpack);
        let index: HashMap<NodeId, usize> =
            wave.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let groups = Schedule::groups(prog, wave);
        let mut results: HashMap<NodeId, Vec<u64>> = HashMap::new();
        for g in &groups {
            if let Group::Gates(name, ids) = g {
                let t = Instant::now();
                // One gate: its opened input as is; several: gathered into one batch.
                let xhat: std::borrow::Cow<'_, [u64]> = match ids.as_slice() {
                    [one] => std::borrow::Cow::Borrowed(&opened[index[one]][0]),
                    _ => concat_par(
                        &ids.iter()
                            .map(|id| opened[index[id]][0].as_slice())
                            .collect::<Vec<_>>(),
                    )
                    .into(),
                };
                let gate = match &prog.node(ids[0]).op {
                    Op::Gate(_, g) => g.clone(),
                    _ => unreachable!("gate group holds gates"),
                };
                lap(&mut ex.phases, "gate_gather", t);
                let t_eval = Instant::now();
                let blob = keys.take_blob()?;
                let dev0 = tracer.on().then(|| self.be.stats().device_ms);
                let out = gate.eval(w, self.party, blob.key(), &xhat, self.be)?;
                lap(&mut ex.phases, "gate_eval", t_eval);
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
                if let Some(d0) = dev0 {
                    let dev_us = (self.be.stats().device_ms - d0).max(0.0) * 1e3;
                    tracer.line(serde_json::json!({
                        "round": k + 1, "party": self.party, "fss": name,
                        "elements": xhat.len(), "key_bytes": blob.len(), "eval_us": ms * 1e3,
                        "device_us": dev_us,
                    }));
                }
                let t_scatter = Instant::now();
                if let [one] = ids.as_slice() {
                    let nd = prog.node(*one);
                    ex.counter
                        .time(&nd.layer, &nd.op.name(), nd.numel() / q, ms);
                    results.insert(*one, out);
                    lap(&mut ex.phases, "gate_scatter", t_scatter);
                    continue;
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
                lap(&mut ex.phases, "gate_scatter", t_scatter);
            }
        }
        // The GEMM halves of the wave's Beaver matmuls (batched below), by node: both
        // batch outputs and the node's span in them.
        #[allow(clippy::type_complexity)]
        let mut halves: HashMap<
            NodeId,
            (Arc<(Vec<u64>, Vec<u64>)>, std::ops::Range<usize>),
        > = HashMap::new();
        for (wi, &id) in wave.iter().enumerate() {
            let node = prog.node(id);
            let t = Instant::now();
            let o = &opened[wi];
            let ms = &masks[wi];
            let be = self.be;
            let v = match &node.op {
                Op::Gate(..) => results.remove(&id).ok_or_else(|| RtError::Shape {
                    op: "gate",
                    detail: format!("node {id:?}: no gate result in its round"),
                })?,
                Op::Mul(..) => {
                    let c = keys.take_arith(node.numel())?;
                    be.beaver_mul(w, self.party, &o[0], &o[1], &ms[0], &ms[1], &c)?
                }
                Op::Square(_) => {
                    let c = keys.take_arith(node.numel())?;
                    be.beaver_square(w, self.party, &o[0], &ms[0], &c)?
                }
                Op::MatMul(a, b) => {
                    if !halves.contains_key(&id) {
                        // Every product of this shape left in the wave (one per attention
                        // head, with other steps between them): the Beaver products' two
                        // GEMM halves as two batched GEMMs. Each node still takes its
                        // triple at its own place in wave order (the dealer's order), below.
                        let (sa, sb) = (&prog.node(*a).shape, &prog.node(*b).shape);
                        let (m, kk, n) = (sa[0], sa[1], sb[1]);
                        let run: Vec<usize> = (wi..wave.len())
                            .filter(|&x| match &prog.node(wave[x]).op {
                                Op::MatMul(a2, b2) => {
                                    prog.node(*a2).shape == *sa && prog.node(*b2).shape == *sb
                                }
                                _ => false,
                            })
                            .collect();
                        let bt = run.len();
                        let (mut a1, mut l1) = (Vec::new(), Vec::new());
                        let (mut a2, mut b2) = (Vec::new(), Vec::new());
                        for &x in &run {
                            let (ox, mx) = (&opened[x], &masks[x]);
                            a1.extend_from_slice(&ox[0]);
                            l1.extend(be.scale_sub(w, j, &ox[1], &mx[1])?);
                            a2.extend_from_slice(&mx[0]);
                            b2.extend_from_slice(&ox[1]);
                        }
                        let p1 = be.gemm_batch(w, &a1, &l1, bt, m, kk, n, BLayout::RowMajor)?;
                        let p2 = be.gemm_batch(w, &a2, &b2, bt, m, kk, n, BLayout::RowMajor)?;
                        let both = Arc::new((p1, p2));
                        let mn = m * n;
                        for (r, &x) in run.iter().enumerate() {
                            halves.insert(wave[x], (Arc::clone(&both), r * mn..(r + 1) * mn));
                        }
                    }
                    let (both, span) = halves.remove(&id).ok_or_else(|| RtError::Shape {
                        op: "matmul",
                        detail: format!("node {id:?}: no batched product"),
                    })?;
                    let c = keys.take_arith(span.len())?;
                    be.sub_add(w, &both.0[span.clone()], &both.1[span], &c)?
                }
                Op::MatMulPrivW { wid, k: kk, n, .. } => {
                    let m = o[0].len() / kk;
                    let c = keys.take_arith(m * n)?;
                    // jŴ − [R_W] and Ŵ are resident (Party::prepare, Party::resident_weights).
                    let missing = || RtError::Weight(wid.clone());
                    let left = ex.prep.left.get(wid).ok_or_else(missing)?;
                    let what = ex.prep.weights.masked.get(wid).ok_or_else(missing)?;
                    let p1 = be.gemm_resident(w, &o[0], left, m, *kk, *n, BLayout::RowMajor)?;
                    let p2 = be.gemm_resident(w, &ms[0], what, m, *kk, *n, BLayout::RowMajor)?;
                    be.sub_add(w, &p1, &p2, &c)?
                }
                Op::RowMul(..) => {
                    let cols = *node.shape.last().unwrap_or(&1);
                    let c = keys.take_arith(node.numel())?;
                    be.beaver_mul_rows(w, self.party, &o[0], &o[1], &ms[0], &ms[1], &c, cols)?
                }
                Op::And(..) => {
                    // Bits as Z_2: AND is a product, XOR a sum.
                    // (Over Z_2 the Beaver product's subtractions are XORs.)
                    let c = keys.take_bool(node.numel())?;
                    be.beaver_mul(z2(), self.party, &o[0], &o[1], &ms[0], &ms[1], &c)?
                }
                Op::B2A(_) => {
                    // [b] = j·b̂ + [ρ] − 2·b̂·[ρ].
                    let rho = keys.take_arith(node.numel())?;
                    be.b2a(w, self.party, &o[0], &rho)?
                }
                _ => unreachable!("only interactive steps are scheduled"),
            };
            if !matches!(node.op, Op::Gate(..)) {
                lap(&mut ex.phases, "products", t);
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

/// Host copies (the transpose is the `Backend` trait's host default): safe side by side.
fn is_data_movement(op: &Op) -> bool {
    matches!(
        op,
        Op::Take(..) | Op::SliceCols(..) | Op::ConcatCols(..) | Op::Transpose(_) | Op::Gather(..)
    )
}

/// The parts one after the other, copied in parallel from 2^15 elements on (a round's gate
/// batch gathers one opening per attention head).
fn concat_par(parts: &[&[u64]]) -> Vec<u64> {
    use rayon::prelude::*;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < 1 << 15 {
        return parts.concat();
    }
    let mut out = vec![0u64; total];
    let mut regions = Vec::with_capacity(parts.len());
    let mut rest = out.as_mut_slice();
    for p in parts {
        let (a, b) = std::mem::take(&mut rest).split_at_mut(p.len());
        regions.push(a);
        rest = b;
    }
    regions
        .into_par_iter()
        .zip(parts.par_iter())
        .for_each(|(o, p)| o.copy_from_slice(p));
    out
}
