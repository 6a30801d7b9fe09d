//! The program: a DAG of tensor-level protocol steps, built by model code through
//! [`Builder`] without knowing which interpreter will run it.
//!
//! Tensors are row-major; matrix operations read a tensor of shape `[.., k]` as a matrix of
//! `numel / k` rows. Every node has a data type: additive shares in Z_{2^n} (`Arith`) or
//! XOR-shared bits (`Bool`, one bit per element held in a `u64`).
//!
//! Public run-time inputs ([`Builder::public_input`], handle [`P`]) are tensors both parties
//! know in the clear but that are not part of the program (not in its fingerprint): one
//! program and one key stream serve every value, e.g. a length bucket's valid-length masks.
//! They are supplied in the same input map as the shares, the same value to both parties.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use suf_core::fixed::FixedPoint;
use suf_core::BitWidth;

use crate::error::{shape_err, Result, RtError};
use crate::gate::GateImpl;

/// The [`Op::Gather`] index that stands for a public zero.
pub const GATHER_ZERO: u32 = u32::MAX;

/// Index of a node in its program.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A handle on a tensor of the program being built.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct T(pub NodeId);

/// Element type of a tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// Additive shares in Z_{2^n}.
    Arith,
    /// XOR-shared bits.
    Bool,
}

/// A public tensor shared by reference (weights, biases, constants).
pub type Public = Arc<Vec<u64>>;

/// A handle on a public run-time input ([`Builder::public_input`]): a tensor both parties
/// know in the clear but that is not part of the program (its value does not enter the
/// fingerprint, so one key stream serves every value). It is deliberately not a [`T`]: it
/// enters the computation only through [`Builder::add_pub_in`] and [`Builder::mul_pub_in`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct P(pub NodeId);

/// One protocol step.
#[derive(Clone)]
pub enum Op {
    /// A secret input provided (secret-shared) by the client.
    Input {
        /// Name under which the input is supplied.
        name: String,
    },
    /// A public tensor supplied at run time under `name`, the same value at both parties
    /// (not a share); used only by [`Op::AddPubIn`] and [`Op::MulPubIn`].
    PublicInput {
        /// Name under which the value is supplied.
        name: String,
    },
    /// a + p for a public run-time input p (same shape, or one row broadcast over rows):
    /// party 0 adds it.
    AddPubIn(NodeId, NodeId),
    /// a ⊙ p for a public run-time input p (same shape, or one row broadcast); no truncation.
    MulPubIn(NodeId, NodeId),
    /// a + b.
    Add(NodeId, NodeId),
    /// a − b.
    Sub(NodeId, NodeId),
    /// −a.
    Neg(NodeId),
    /// a + c for a public tensor c (same shape, or one row broadcast over rows).
    AddPub(NodeId, Public),
    /// a ⊙ c for a public tensor c (same shape, or one row broadcast over rows); no truncation.
    MulPub(NodeId, Public),
    /// a · c for a public constant.
    MulConst(NodeId, u64),
    /// a + c for a public constant.
    AddConst(NodeId, u64),
    /// X·W with public W (k×n, row-major): local.
    MatMulPub {
        /// Input.
        x: NodeId,
        /// Weight.
        w: Public,
        /// Inner dimension.
        k: usize,
        /// Output columns.
        n: usize,
    },
    /// Sum over the last axis (shape `[.., c]` → `[.., 1]`).
    SumLast(NodeId),
    /// Transpose of a matrix `[r, c]` → `[c, r]`.
    Transpose(NodeId),
    /// Same data, new shape.
    Reshape(NodeId),
    /// Columns `start..end` of a matrix.
    SliceCols(NodeId, usize, usize),
    /// Matrices side by side (same rows).
    ConcatCols(Vec<NodeId>),
    /// Elements picked by public indices: `out[i] = a[idx[i]]`, or 0 where `idx[i]` is
    /// [`GATHER_ZERO`] (a public zero: both parties' shares are 0). Local; the indices depend
    /// on the shapes only, never on data.
    Gather(NodeId, Arc<[u32]>),
    /// a ⊕ b on bits.
    Xor(NodeId, NodeId),
    /// ¬a on bits.
    Not(NodeId),
    /// a ⊙ b (Beaver with the wires' own masks): one round.
    Mul(NodeId, NodeId),
    /// a ⊙ a: one round.
    Square(NodeId),
    /// X·Y of two secret matrices (matrix Beaver correlation): one round.
    MatMul(NodeId, NodeId),
    /// X·W with a private weight (Ŵ public, R_W held by the dealer): one round.
    MatMulPrivW {
        /// Input.
        x: NodeId,
        /// Weight name.
        wid: String,
        /// Inner dimension.
        k: usize,
        /// Output columns.
        n: usize,
    },
    /// a ⊙ b with b one value per row (`[r, c] ⊙ [r, 1]`): one round.
    RowMul(NodeId, NodeId),
    /// a ∧ b on bits: one round.
    And(NodeId, NodeId),
    /// XOR-shared bit → additive share of 0/1: one round.
    B2A(NodeId),
    /// A nonlinear FSS gate on an arithmetic tensor: one round (the masked input opening).
    Gate(NodeId, Arc<dyn GateImpl>),
    /// Output `i` of a multi-output gate (the i-th of its q equal parts).
    Take(NodeId, usize),
    /// Reveal to the client.
    Output(NodeId),
}

impl Op {
    /// Short operator name, for reports.
    pub fn name(&self) -> String {
        match self {
            Op::Input { .. } => "input".into(),
            Op::PublicInput { .. } => "public_input".into(),
            Op::AddPubIn(..) => "add_pub_in".into(),
            Op::MulPubIn(..) => "mul_pub_in".into(),
            Op::Add(..) => "add".into(),
            Op::Sub(..) => "sub".into(),
            Op::Neg(..) => "neg".into(),
            Op::AddPub(..) => "add_pub".into(),
            Op::MulPub(..) => "mul_pub".into(),
            Op::MulConst(..) => "mul_const".into(),
            Op::AddConst(..) => "add_const".into(),
            Op::MatMulPub { .. } => "matmul_pub".into(),
            Op::SumLast(..) => "sum".into(),
            Op::Transpose(..) => "transpose".into(),
            Op::Reshape(..) => "reshape".into(),
            Op::SliceCols(..) => "slice".into(),
            Op::ConcatCols(..) => "concat".into(),
            Op::Gather(..) => "gather".into(),
            Op::Xor(..) => "xor".into(),
            Op::Not(..) => "not".into(),
            Op::Mul(..) => "mul".into(),
            Op::Square(..) => "square".into(),
            Op::MatMul(..) => "matmul".into(),
            Op::MatMulPrivW { .. } => "matmul_privw".into(),
            Op::RowMul(..) => "row_mul".into(),
            Op::And(..) => "and".into(),
            Op::B2A(..) => "b2a".into(),
            Op::Gate(_, g) => g.name(),
            Op::Output(..) => "output".into(),
            Op::Take(..) => "take".into(),
        }
    }

    /// Operands.
    pub fn deps(&self) -> Vec<NodeId> {
        match self {
            Op::Input { .. } | Op::PublicInput { .. } => vec![],
            Op::AddPubIn(a, b) | Op::MulPubIn(a, b) => vec![*a, *b],
            Op::Add(a, b)
            | Op::Sub(a, b)
            | Op::Xor(a, b)
            | Op::Mul(a, b)
            | Op::MatMul(a, b)
            | Op::RowMul(a, b)
            | Op::And(a, b) => vec![*a, *b],
            Op::Neg(a)
            | Op::AddPub(a, _)
            | Op::MulPub(a, _)
            | Op::MulConst(a, _)
            | Op::AddConst(a, _)
            | Op::SumLast(a)
            | Op::Transpose(a)
            | Op::Reshape(a)
            | Op::SliceCols(a, ..)
            | Op::Gather(a, _)
            | Op::Not(a)
            | Op::Square(a)
            | Op::B2A(a)
            | Op::Gate(a, _)
            | Op::Take(a, _)
            | Op::Output(a) => vec![*a],
            Op::MatMulPub { x, .. } | Op::MatMulPrivW { x, .. } => vec![*x],
            Op::ConcatCols(v) => v.clone(),
        }
    }

    /// Whether the step needs a round with the peer.
    pub fn is_interactive(&self) -> bool {
        matches!(
            self,
            Op::Mul(..)
                | Op::Square(..)
                | Op::MatMul(..)
                | Op::MatMulPrivW { .. }
                | Op::RowMul(..)
                | Op::And(..)
                | Op::B2A(..)
                | Op::Gate(..)
        )
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", self.name(), self.deps())
    }
}

/// A node: its step, shape, type and the layer it belongs to.
#[derive(Clone, Debug)]
pub struct Node {
    /// The step.
    pub op: Op,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Output type.
    pub dtype: Dtype,
    /// Layer label (for reports).
    pub layer: Arc<str>,
}

impl Node {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A complete program.
#[derive(Clone, Debug)]
pub struct Program {
    /// Ring and fixed-point format.
    pub fp: FixedPoint,
    /// Nodes in topological order (every operand precedes its users).
    pub nodes: Vec<Node>,
    /// Input nodes by name.
    pub inputs: BTreeMap<String, NodeId>,
    /// Output nodes in declaration order.
    pub outputs: Vec<NodeId>,
    /// Private weights: name → (k, n).
    pub private_weights: BTreeMap<String, (usize, usize)>,
    /// Public run-time inputs by name ([`Builder::public_input`]): supplied in the clear, the
    /// same value to both parties (and to Plain), in the same input map as the shares.
    pub public_inputs: BTreeMap<String, NodeId>,
}

impl Program {
    /// The ring.
    pub fn width(&self) -> BitWidth {
        self.fp.width
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// SHA-256 over the program's structure: ops, shapes, layer labels, public tensors and
    /// private-weight shapes (not their values). Both parties and the dealer must agree on it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"suf-program-v1");
        h.update(self.fp.width.bits().to_le_bytes());
        h.update(self.fp.frac.to_le_bytes());
        for n in &self.nodes {
            h.update(n.op.name().as_bytes());
            h.update([0]);
            for d in n.op.deps() {
                h.update(d.0.to_le_bytes());
            }
            for s in &n.shape {
                h.update((*s as u64).to_le_bytes());
            }
            h.update([n.dtype as u8]);
            h.update(n.layer.as_bytes());
            h.update([0]);
            match &n.op {
                Op::AddPub(_, p) | Op::MulPub(_, p) | Op::MatMulPub { w: p, .. } => {
                    for v in p.iter() {
                        h.update(v.to_le_bytes());
                    }
                }
                Op::MulConst(_, c) | Op::AddConst(_, c) => h.update(c.to_le_bytes()),
                Op::SliceCols(_, a, b) => {
                    h.update((*a as u64).to_le_bytes());
                    h.update((*b as u64).to_le_bytes());
                }
                Op::MatMulPrivW { wid, .. } => h.update(wid.as_bytes()),
                Op::Input { name } | Op::PublicInput { name } => h.update(name.as_bytes()),
                Op::Gate(_, g) => h.update(g.fingerprint()),
                Op::Take(_, i) => h.update((*i as u64).to_le_bytes()),
                Op::Gather(_, idx) => {
                    h.update((idx.len() as u64).to_le_bytes());
                    // In blocks: one hasher call per 4 KiB, not per index.
                    let mut buf = [0u8; 4096];
                    for part in idx.chunks(buf.len() / 4) {
                        for (b, i) in buf.chunks_exact_mut(4).zip(part) {
                            b.copy_from_slice(&i.to_le_bytes());
                        }
                        h.update(&buf[..4 * part.len()]);
                    }
                }
                _ => {}
            }
        }
        h.finalize().into()
    }

    /// Number of elements of a node.
    pub fn numel(&self, id: NodeId) -> usize {
        self.node(id).numel()
    }
}

/// Builds a [`Program`]. Model code is written against this API only.
#[derive(Debug)]
pub struct Builder {
    prog: Program,
    layer: Arc<str>,
}

fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let c = *shape.last().unwrap_or(&1);
    let n: usize = shape.iter().product();
    (n.checked_div(c).unwrap_or(0), c)
}

impl Builder {
    /// A new program over the fixed-point format `fp`.
    pub fn new(fp: FixedPoint) -> Self {
        Builder {
            prog: Program {
                fp,
                nodes: Vec::new(),
                inputs: BTreeMap::new(),
                outputs: Vec::new(),
                private_weights: BTreeMap::new(),
                public_inputs: BTreeMap::new(),
            },
            layer: Arc::from("main"),
        }
    }

    /// The format.
    pub fn fp(&self) -> FixedPoint {
        self.prog.fp
    }

    /// Label the following nodes with a layer name (for per-layer reports).
    pub fn layer(&mut self, name: &str) {
        self.layer = Arc::from(name);
    }

    /// Shape of a tensor.
    pub fn shape(&self, t: T) -> &[usize] {
        &self.prog.nodes[t.0 .0 as usize].shape
    }

    /// Type of a tensor.
    pub fn dtype(&self, t: T) -> Dtype {
        self.prog.nodes[t.0 .0 as usize].dtype
    }

    fn push(&mut self, op: Op, shape: Vec<usize>, dtype: Dtype) -> T {
        let id = NodeId(self.prog.nodes.len() as u32);
        self.prog.nodes.push(Node {
            op,
            shape,
            dtype,
            layer: self.layer.clone(),
        });
        T(id)
    }

    fn want(&self, op: &'static str, t: T, d: Dtype) -> Result<()> {
        if self.dtype(t) != d {
            return shape_err(
                op,
                format!(
                    "operand {:?} has type {:?}, needs {d:?}",
                    t.0,
                    self.dtype(t)
                ),
            );
        }
        Ok(())
    }

    fn same(&self, op: &'static str, a: T, b: T) -> Result<()> {
        if self.shape(a) != self.shape(b) || self.dtype(a) != self.dtype(b) {
            return shape_err(
                op,
                format!(
                    "operands {:?} {:?} vs {:?} {:?}",
                    self.shape(a),
                    self.dtype(a),
                    self.shape(b),
                    self.dtype(b)
                ),
            );
        }
        Ok(())
    }

    /// A secret arithmetic input supplied by the client under `name`.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<T> {
        if self.prog.inputs.contains_key(name) {
            return Err(RtError::Input {
                name: name.into(),
                detail: "declared twice".into(),
            });
        }
        let t = self.push(
            Op::Input { name: name.into() },
            shape.to_vec(),
            Dtype::Arith,
        );
        self.prog.inputs.insert(name.into(), t.0);
        Ok(t)
    }

    /// A public run-time input of `shape`, supplied in the clear under `name` to both parties
    /// (and to Plain) at every run; its value is not part of the program, so the program and
    /// its key stream are the same whatever the value (e.g. a valid sequence length's masks).
    pub fn public_input(&mut self, name: &str, shape: &[usize]) -> Result<P> {
        if self.prog.inputs.contains_key(name) || self.prog.public_inputs.contains_key(name) {
            return Err(RtError::Input {
                name: name.into(),
                detail: "declared twice".into(),
            });
        }
        let t = self.push(
            Op::PublicInput { name: name.into() },
            shape.to_vec(),
            Dtype::Arith,
        );
        self.prog.public_inputs.insert(name.into(), t.0);
        Ok(P(t.0))
    }

    fn check_pub_in(&self, op: &'static str, a: T, p: P) -> Result<()> {
        self.want(op, a, Dtype::Arith)?;
        let ps = &self.prog.nodes[p.0 .0 as usize].shape;
        let pn: usize = ps.iter().product();
        let (_, cols) = rows_cols(self.shape(a));
        let n: usize = self.shape(a).iter().product();
        if pn != n && pn != cols {
            return shape_err(
                op,
                format!("public input of shape {ps:?} for shape {:?}", self.shape(a)),
            );
        }
        Ok(())
    }

    /// a + p for a public run-time input p (same shape, or one row broadcast over all rows).
    pub fn add_pub_in(&mut self, a: T, p: P) -> Result<T> {
        self.check_pub_in("add_pub_in", a, p)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::AddPubIn(a.0, p.0), s, Dtype::Arith))
    }

    /// a ⊙ p for a public run-time input p (same shape, or one row broadcast); no truncation.
    pub fn mul_pub_in(&mut self, a: T, p: P) -> Result<T> {
        self.check_pub_in("mul_pub_in", a, p)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::MulPubIn(a.0, p.0), s, Dtype::Arith))
    }

    /// a + b (arithmetic) or a ⊕ b (bits).
    pub fn add(&mut self, a: T, b: T) -> Result<T> {
        self.same("add", a, b)?;
        let (s, d) = (self.shape(a).to_vec(), self.dtype(a));
        Ok(match d {
            Dtype::Arith => self.push(Op::Add(a.0, b.0), s, d),
            Dtype::Bool => self.push(Op::Xor(a.0, b.0), s, d),
        })
    }

    /// a − b.
    pub fn sub(&mut self, a: T, b: T) -> Result<T> {
        self.same("sub", a, b)?;
        self.want("sub", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Sub(a.0, b.0), s, Dtype::Arith))
    }

    /// −a.
    pub fn neg(&mut self, a: T) -> Result<T> {
        self.want("neg", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Neg(a.0), s, Dtype::Arith))
    }

    fn check_pub(&self, op: &'static str, a: T, c: &[u64]) -> Result<()> {
        self.want(op, a, Dtype::Arith)?;
        let (_, cols) = rows_cols(self.shape(a));
        let n: usize = self.shape(a).iter().product();
        if c.len() != n && c.len() != cols {
            return shape_err(
                op,
                format!(
                    "public tensor of {} elements for shape {:?}",
                    c.len(),
                    self.shape(a)
                ),
            );
        }
        Ok(())
    }

    /// a + c, c public (same shape, or one row broadcast over all rows).
    pub fn add_pub(&mut self, a: T, c: Public) -> Result<T> {
        self.check_pub("add_pub", a, &c)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::AddPub(a.0, c), s, Dtype::Arith))
    }

    /// a ⊙ c, c public (same shape, or one row broadcast); no truncation.
    pub fn mul_pub(&mut self, a: T, c: Public) -> Result<T> {
        self.check_pub("mul_pub", a, &c)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::MulPub(a.0, c), s, Dtype::Arith))
    }

    /// a · c for a public constant c (a ring element).
    pub fn mul_const(&mut self, a: T, c: u64) -> Result<T> {
        self.want("mul_const", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        let c = self.prog.fp.width.reduce(c);
        Ok(self.push(Op::MulConst(a.0, c), s, Dtype::Arith))
    }

    /// a + c for a public constant c (a ring element).
    pub fn add_const(&mut self, a: T, c: u64) -> Result<T> {
        self.want("add_const", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        let c = self.prog.fp.width.reduce(c);
        Ok(self.push(Op::AddConst(a.0, c), s, Dtype::Arith))
    }

    /// X·W with public W of shape k×n (row-major); X is `[.., k]`.
    pub fn matmul_pub(&mut self, x: T, w: Public, k: usize, n: usize) -> Result<T> {
        self.want("matmul_pub", x, Dtype::Arith)?;
        let (rows, c) = rows_cols(self.shape(x));
        if c != k || w.len() != k * n {
            return shape_err(
                "matmul_pub",
                format!("X {:?} · W {k}×{n} ({} elements)", self.shape(x), w.len()),
            );
        }
        let mut s = self.shape(x).to_vec();
        if let Some(l) = s.last_mut() {
            *l = n;
        }
        let _ = rows;
        Ok(self.push(Op::MatMulPub { x: x.0, w, k, n }, s, Dtype::Arith))
    }

    /// Declare a private weight of shape k×n (its values live in the interpreters' weight
    /// stores: W for plain, R_W for the dealer, Ŵ for the parties).
    pub fn private_weight(&mut self, wid: &str, k: usize, n: usize) -> Result<()> {
        if let Some(&(k0, n0)) = self.prog.private_weights.get(wid) {
            if (k0, n0) != (k, n) {
                return Err(RtError::Weight(wid.into()));
            }
        }
        self.prog.private_weights.insert(wid.into(), (k, n));
        Ok(())
    }

    /// X·W for a declared private weight: one round.
    pub fn matmul_privw(&mut self, x: T, wid: &str) -> Result<T> {
        self.want("matmul_privw", x, Dtype::Arith)?;
        let &(k, n) = self
            .prog
            .private_weights
            .get(wid)
            .ok_or_else(|| RtError::Weight(wid.into()))?;
        let (_, c) = rows_cols(self.shape(x));
        if c != k {
            return shape_err(
                "matmul_privw",
                format!("X {:?} · W `{wid}` {k}×{n}", self.shape(x)),
            );
        }
        let mut s = self.shape(x).to_vec();
        if let Some(l) = s.last_mut() {
            *l = n;
        }
        Ok(self.push(
            Op::MatMulPrivW {
                x: x.0,
                wid: wid.into(),
                k,
                n,
            },
            s,
            Dtype::Arith,
        ))
    }

    /// Sum over the last axis.
    pub fn sum_last(&mut self, a: T) -> Result<T> {
        self.want("sum_last", a, Dtype::Arith)?;
        let mut s = self.shape(a).to_vec();
        if s.is_empty() {
            return shape_err("sum_last", "scalar");
        }
        if let Some(l) = s.last_mut() {
            *l = 1;
        }
        Ok(self.push(Op::SumLast(a.0), s, Dtype::Arith))
    }

    /// Transpose a matrix.
    pub fn transpose(&mut self, a: T) -> Result<T> {
        let s = self.shape(a).to_vec();
        if s.len() != 2 {
            return shape_err("transpose", format!("needs a matrix, got {s:?}"));
        }
        let d = self.dtype(a);
        Ok(self.push(Op::Transpose(a.0), vec![s[1], s[0]], d))
    }

    /// Same data, new shape (same number of elements).
    pub fn reshape(&mut self, a: T, shape: &[usize]) -> Result<T> {
        let n: usize = shape.iter().product();
        if n != self.prog.numel(a.0) || shape.is_empty() {
            return shape_err("reshape", format!("{:?} → {shape:?}", self.shape(a)));
        }
        let d = self.dtype(a);
        Ok(self.push(Op::Reshape(a.0), shape.to_vec(), d))
    }

    /// Columns `start..end` of a matrix `[r, c]`.
    pub fn slice_cols(&mut self, a: T, start: usize, end: usize) -> Result<T> {
        let s = self.shape(a).to_vec();
        if s.len() != 2 || start >= end || end > s[1] {
            return shape_err("slice_cols", format!("{start}..{end} of {s:?}"));
        }
        let d = self.dtype(a);
        Ok(self.push(Op::SliceCols(a.0, start, end), vec![s[0], end - start], d))
    }

    /// Matrices `[r, c_i]` side by side.
    pub fn concat_cols(&mut self, parts: &[T]) -> Result<T> {
        let first = *parts.first().ok_or(RtError::Shape {
            op: "concat_cols",
            detail: "no operands".into(),
        })?;
        let r = self.shape(first).first().copied().unwrap_or(0);
        let d = self.dtype(first);
        let mut c = 0;
        for &p in parts {
            let s = self.shape(p);
            if s.len() != 2 || s[0] != r || self.dtype(p) != d {
                return shape_err("concat_cols", format!("operand shape {s:?}, rows {r}"));
            }
            c += s[1];
        }
        Ok(self.push(
            Op::ConcatCols(parts.iter().map(|t| t.0).collect()),
            vec![r, c],
            d,
        ))
    }

    /// Elements of `a` picked by public indices into a tensor of `shape`: `out[i] =
    /// a[idx[i]]` (over `a`'s elements in row-major order), 0 where `idx[i]` is
    /// [`GATHER_ZERO`]. Local: no round, no key.
    pub fn gather(&mut self, a: T, idx: Arc<[u32]>, shape: &[usize]) -> Result<T> {
        let n = self.prog.numel(a.0);
        let len: usize = shape.iter().product();
        if shape.is_empty() || len != idx.len() {
            return shape_err(
                "gather",
                format!("{} indices for shape {shape:?}", idx.len()),
            );
        }
        if let Some(&bad) = idx.iter().find(|&&i| i != GATHER_ZERO && i as usize >= n) {
            return shape_err("gather", format!("index {bad} of {n} elements"));
        }
        let d = self.dtype(a);
        Ok(self.push(Op::Gather(a.0, idx), shape.to_vec(), d))
    }

    /// ¬a on bits.
    pub fn not(&mut self, a: T) -> Result<T> {
        self.want("not", a, Dtype::Bool)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Not(a.0), s, Dtype::Bool))
    }

    /// a ⊙ b (one round).
    pub fn mul(&mut self, a: T, b: T) -> Result<T> {
        self.same("mul", a, b)?;
        self.want("mul", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Mul(a.0, b.0), s, Dtype::Arith))
    }

    /// a ⊙ a (one round).
    pub fn square(&mut self, a: T) -> Result<T> {
        self.want("square", a, Dtype::Arith)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Square(a.0), s, Dtype::Arith))
    }

    /// X·Y for secret matrices `[m, k]·[k, n]` (one round).
    pub fn matmul(&mut self, x: T, y: T) -> Result<T> {
        self.want("matmul", x, Dtype::Arith)?;
        self.want("matmul", y, Dtype::Arith)?;
        let (sx, sy) = (self.shape(x).to_vec(), self.shape(y).to_vec());
        if sx.len() != 2 || sy.len() != 2 || sx[1] != sy[0] {
            return shape_err("matmul", format!("{sx:?} · {sy:?}"));
        }
        Ok(self.push(Op::MatMul(x.0, y.0), vec![sx[0], sy[1]], Dtype::Arith))
    }

    /// a ⊙ b with b holding one value per row of a (`[r, c] ⊙ [r, 1]`), one round.
    pub fn row_mul(&mut self, a: T, b: T) -> Result<T> {
        self.want("row_mul", a, Dtype::Arith)?;
        self.want("row_mul", b, Dtype::Arith)?;
        let (rows, _) = rows_cols(self.shape(a));
        let (rb, cb) = rows_cols(self.shape(b));
        if cb != 1 || rb != rows {
            return shape_err(
                "row_mul",
                format!("{:?} ⊙ {:?}", self.shape(a), self.shape(b)),
            );
        }
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::RowMul(a.0, b.0), s, Dtype::Arith))
    }

    /// a ∧ b on bits (one round).
    pub fn and(&mut self, a: T, b: T) -> Result<T> {
        self.same("and", a, b)?;
        self.want("and", a, Dtype::Bool)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::And(a.0, b.0), s, Dtype::Bool))
    }

    /// Bits → arithmetic 0/1 (one round).
    pub fn b2a(&mut self, a: T) -> Result<T> {
        self.want("b2a", a, Dtype::Bool)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::B2A(a.0), s, Dtype::Arith))
    }

    /// A nonlinear gate (one round).
    pub fn gate(&mut self, a: T, g: Arc<dyn GateImpl>) -> Result<T> {
        self.want("gate", a, Dtype::Arith)?;
        if g.outputs() != 1 {
            return shape_err(
                "gate",
                format!(
                    "gate {} has {} outputs: use gate_multi",
                    g.name(),
                    g.outputs()
                ),
            );
        }
        let s = self.shape(a).to_vec();
        let d = g.out_dtype();
        Ok(self.push(Op::Gate(a.0, g), s, d))
    }

    /// A nonlinear gate with q outputs (one round); returns the q output tensors.
    pub fn gate_multi(&mut self, a: T, g: Arc<dyn GateImpl>) -> Result<Vec<T>> {
        self.want("gate", a, Dtype::Arith)?;
        let q = g.outputs();
        if q == 0 {
            return shape_err("gate", "a gate with no outputs");
        }
        let s = self.shape(a).to_vec();
        let mut qs = vec![q];
        qs.extend_from_slice(&s);
        let d = g.out_dtype();
        let node = self.push(Op::Gate(a.0, g), qs, d);
        Ok((0..q)
            .map(|i| self.push(Op::Take(node.0, i), s.clone(), d))
            .collect())
    }

    /// Reveal `a` to the client.
    pub fn output(&mut self, a: T) -> Result<()> {
        let s = self.shape(a).to_vec();
        let d = self.dtype(a);
        let t = self.push(Op::Output(a.0), s, d);
        self.prog.outputs.push(t.0);
        Ok(())
    }

    /// The finished program.
    pub fn finish(self) -> Program {
        self.prog
    }
}
