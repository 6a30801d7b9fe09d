//! Packed comparison: per element, T public-threshold queries 1[view(x) < β_t] on bit views of
//! a masked wire, answered by **one key per bit width** (DESIGN §4 "Packed comparison", §5
//! step 1; `reference/fss-identities.md` §3 step 2 and §4(a)).
//!
//! # Views and the identity
//!
//! A view (k bits, shift c) reads `view(x) = (x + c) mod 2^k`: full width (k = n, c = 0), low
//! f bits (k = f), signed order (k = n, c = 2^{n−1}). The parties hold x̂ = x + r mod 2^n, so
//! `X̂ = view(x̂) = view(x) + r_k mod 2^k` with **r_k = r mod 2^k — independent of c**. With
//! C(y) = 1[y < r_k] on the k-bit domain, for every β ∈ [0, 2^k]:
//!
//! ```text
//! 1[view(x) < β] = C(X̂ ⊖ β) − C(X̂) + 1[X̂ < β]      (arithmetic; the value is 0 or 1)
//!               = C(X̂ ⊖ β) ⊕ C(X̂) ⊕ 1[X̂ < β]      (XOR)
//! ```
//!
//! 1[X̂ < β] is public (party 0 adds it); C(X̂) is one extra evaluation per view, shared by
//! all the view's thresholds. Nothing else comes from the dealer.
//!
//! # Keys (decided here)
//!
//! Views are grouped by their bit width k (the key point r_k depends on k only, so views that
//! differ only by shift — unsigned and signed full width — share their keys; this
//! de-duplication depends on the public spec alone). Per group, per element:
//!
//! * a **DPF comparison key** ([`crate::dpf`], n − 7 AES per evaluation, XOR output) if the
//!   group has any XOR query; every XOR query is one DPF evaluation at X̂ ⊖ β;
//! * a **DCF key** ([`crate::dcf`], payload 1 in Z_{2^M}, M = the largest `Arith { bits }` of
//!   the group; 2k AES per evaluation) if the group has any arithmetic query; every arithmetic
//!   query is one DCF evaluation at X̂ ⊖ β, reduced mod 2^bits.
//! * The correction C(X̂) of a view: from the DCF when the view has an arithmetic query (and
//!   then its XOR queries take the LSB of that arithmetic share: a_0 + a_1 = c mod 2^M with
//!   c ∈ {0,1} implies LSB(a_0) ⊕ LSB(a_1) = c, so no DPF evaluation at X̂ is spent); from the
//!   DPF when the view has XOR queries only.
//!
//! So a view with both kinds needs both keys: the cheaper DPF answers its XOR queries (k − 7
//! vs 2k AES each) and the DCF answers the arithmetic ones. Evaluations per element:
//! T + (number of views with queries). Queries are answered in spec order with no
//! mask-dependent de-duplication.
//!
//! # Outputs
//!
//! [`PackedOut`]: per element, the XOR queries' share bits packed LSB first into
//! `⌈T_xor/64⌉` u64 words (XOR query j, counted among XOR queries in spec order, is bit j % 64
//! of word j / 64), and one word per arithmetic query (in spec order) holding the party's
//! additive share in Z_{2^bits}.
//!
//! # Serialized layout ([`KeyKind::PackedCmp`])
//!
//! Header params `[views, queries, 0, 0]`, n = the ring bits. Body: `views × (bits, shift)` as
//! u64 pairs; `queries × (view, beta, output)` as u64 triples (output 0 = XOR, else the
//! arithmetic bits); then per group in order of first appearance of its width, the DPF batch
//! (if any) then the DCF batch (if any), each as a u64 byte length followed by the nested key
//! file ([`DpfKeys::to_bytes`] / [`DcfKeys::to_bytes`]) zero-padded to a multiple of 8. Every
//! length is checked against the closed form implied by the spec and count.

use crate::dcf::{self, mask_bits, DcfKeys};
use crate::dpf::{self, DpfKeys};
use crate::error::{FssError, Result};
use crate::keyfmt::{expect_body_len, parse_header, KeyKind, KeyReader, KeyWriter, HEADER_LEN};
use suf_core::prg::Csprng;

/// Most views in a spec.
pub const MAX_VIEWS: usize = 1 << 10;
/// Most queries in a spec.
pub const MAX_QUERIES: usize = 1 << 16;

/// A bit view of the ring element: `view(x) = (x + shift) mod 2^bits`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    /// k, 1 ≤ k ≤ n.
    pub bits: u32,
    /// c, 0 ≤ c < 2^k (e.g. 2^{n−1} for signed order at full width).
    pub shift: u64,
}

/// How a query's output is shared.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// XOR shares of the bit (DPF comparison).
    Xor,
    /// Additive shares in Z_{2^bits} (DCF with payload 1), 1 ≤ bits ≤ 64.
    Arith {
        /// Output ring bits.
        bits: u32,
    },
}

/// One query 1[view(x) < beta].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Query {
    /// Index into [`PackedCmpSpec::views`].
    pub view: usize,
    /// Public threshold β ∈ [0, 2^k] (for k = 64 at most 2^64 − 1).
    pub beta: u64,
    /// Output sharing.
    pub output: Output,
}

/// The public shape of a packed comparison, the same for every element of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackedCmpSpec {
    /// Ring bits of the masked wire, 1..=64.
    pub n: u32,
    /// Views.
    pub views: Vec<View>,
    /// Queries, answered in this order.
    pub queries: Vec<Query>,
}

/// Where a key evaluation point comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Point {
    /// X̂_v ⊖ β.
    Shifted { view: usize, beta: u64 },
    /// X̂_v.
    Center { view: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupPlan {
    bits: u32,
    /// DCF payload ring bits, if the group has a DCF.
    dcf_bits: Option<u32>,
    dpf_pts: Vec<Point>,
    dcf_pts: Vec<Point>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Corr {
    Dpf(usize),
    DcfLsb(usize),
    Dcf(usize),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct QueryPlan {
    group: usize,
    /// Index of the query's own point in the group's DPF (XOR) or DCF (arith) point list.
    idx: usize,
    corr: Corr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Plan {
    groups: Vec<GroupPlan>,
    queries: Vec<QueryPlan>,
    view_group: Vec<usize>,
    n_xor: usize,
    n_arith: usize,
}

impl PackedCmpSpec {
    /// Check the spec.
    ///
    /// # Errors
    /// [`FssError::BadParams`] describing the first problem.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(FssError::BadParams)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let n = self.n;
        if !(1..=64).contains(&n) {
            return Err(format!("ring bits n = {n} outside 1..=64"));
        }
        if self.views.len() > MAX_VIEWS || self.queries.len() > MAX_QUERIES {
            return Err("too many views or queries".into());
        }
        for (i, v) in self.views.iter().enumerate() {
            if !(1..=n).contains(&v.bits) {
                return Err(format!("view {i}: bits {} outside 1..={n}", v.bits));
            }
            if v.shift & !mask_bits(v.bits) != 0 {
                return Err(format!(
                    "view {i}: shift {} not below 2^{}",
                    v.shift, v.bits
                ));
            }
        }
        for (i, q) in self.queries.iter().enumerate() {
            let Some(v) = self.views.get(q.view) else {
                return Err(format!("query {i}: view {} does not exist", q.view));
            };
            if v.bits < 64 && q.beta > 1u64 << v.bits {
                return Err(format!("query {i}: beta {} above 2^{}", q.beta, v.bits));
            }
            if let Output::Arith { bits } = q.output {
                if !(1..=64).contains(&bits) {
                    return Err(format!("query {i}: output bits {bits} outside 1..=64"));
                }
            }
        }
        Ok(())
    }

    /// Number of XOR-output queries.
    pub fn xor_queries(&self) -> usize {
        self.queries
            .iter()
            .filter(|q| q.output == Output::Xor)
            .count()
    }

    /// Number of arithmetic-output queries.
    pub fn arith_queries(&self) -> usize {
        self.queries.len() - self.xor_queries()
    }

    /// Words of packed XOR bits per element.
    pub fn xor_words(&self) -> usize {
        self.xor_queries().div_ceil(64)
    }

    fn plan(&self) -> Plan {
        let mut groups: Vec<GroupPlan> = Vec::new();
        let mut view_group = Vec::with_capacity(self.views.len());
        for v in &self.views {
            let g = match groups.iter().position(|g| g.bits == v.bits) {
                Some(g) => g,
                None => {
                    groups.push(GroupPlan {
                        bits: v.bits,
                        dcf_bits: None,
                        dpf_pts: Vec::new(),
                        dcf_pts: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            view_group.push(g);
        }
        let nv = self.views.len();
        let mut has_xor = vec![false; nv];
        let mut has_arith = vec![false; nv];
        for q in &self.queries {
            match q.output {
                Output::Xor => has_xor[q.view] = true,
                Output::Arith { bits } => {
                    has_arith[q.view] = true;
                    let g = &mut groups[view_group[q.view]];
                    g.dcf_bits = Some(g.dcf_bits.map_or(bits, |b| b.max(bits)));
                }
            }
        }
        // Query points first (spec order), then the per-view centers.
        let mut qp = Vec::with_capacity(self.queries.len());
        for q in &self.queries {
            let gi = view_group[q.view];
            let g = &mut groups[gi];
            let pt = Point::Shifted {
                view: q.view,
                beta: q.beta,
            };
            let idx = match q.output {
                Output::Xor => {
                    g.dpf_pts.push(pt);
                    g.dpf_pts.len() - 1
                }
                Output::Arith { .. } => {
                    g.dcf_pts.push(pt);
                    g.dcf_pts.len() - 1
                }
            };
            qp.push((gi, idx));
        }
        let mut center = vec![Corr::Dpf(0); nv];
        for v in 0..nv {
            let g = &mut groups[view_group[v]];
            if has_arith[v] {
                g.dcf_pts.push(Point::Center { view: v });
                center[v] = Corr::Dcf(g.dcf_pts.len() - 1);
            } else if has_xor[v] {
                g.dpf_pts.push(Point::Center { view: v });
                center[v] = Corr::Dpf(g.dpf_pts.len() - 1);
            }
        }
        let queries = self
            .queries
            .iter()
            .zip(qp)
            .map(|(q, (group, idx))| {
                let corr = match (q.output, center[q.view]) {
                    (Output::Xor, Corr::Dcf(i)) => Corr::DcfLsb(i),
                    (_, c) => c,
                };
                QueryPlan { group, idx, corr }
            })
            .collect();
        Plan {
            groups,
            queries,
            view_group,
            n_xor: self.xor_queries(),
            n_arith: self.arith_queries(),
        }
    }

    /// Number of key evaluations per element: T + (views with queries).
    ///
    /// # Errors
    /// [`FssError::BadParams`] for an invalid spec.
    pub fn evals_per_element(&self) -> Result<usize> {
        self.validate()?;
        let p = self.plan();
        Ok(p.groups
            .iter()
            .map(|g| g.dpf_pts.len() + g.dcf_pts.len())
            .sum())
    }

    /// AES calls per element (DPF: k − 7 + 1 per evaluation for k ≥ 7 bits, 1 below; DCF:
    /// 2k).
    ///
    /// # Errors
    /// [`FssError::BadParams`] for an invalid spec.
    pub fn aes_per_element(&self) -> Result<usize> {
        self.validate()?;
        let p = self.plan();
        Ok(p.groups
            .iter()
            .map(|g| {
                let dpf_cost = dpf::depth(g.bits) as usize + 1;
                let dcf_cost = g.dcf_bits.map_or(0, |m| dcf::aes_per_eval(g.bits, m, 1));
                g.dpf_pts.len() * dpf_cost + g.dcf_pts.len() * dcf_cost
            })
            .sum())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupKeys {
    dpf: Option<DpfKeys>,
    dcf: Option<DcfKeys<'static>>,
}

/// A batch of packed-comparison keys of one party (one element per mask).
#[derive(Clone, PartialEq, Eq)]
pub struct PackedCmpKeys {
    spec: PackedCmpSpec,
    plan: Plan,
    party: u8,
    count: usize,
    groups: Vec<GroupKeys>,
}

impl std::fmt::Debug for PackedCmpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedCmpKeys")
            .field("spec", &self.spec)
            .field("party", &self.party)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// One party's outputs for a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedOut {
    /// Per element `xor_words` words: XOR share bits of the XOR queries, LSB first.
    pub xor_bits: Vec<u64>,
    /// Per element one additive share per arithmetic query (in Z_{2^bits} of that query).
    pub arith: Vec<u64>,
    /// Words of `xor_bits` per element.
    pub xor_words: usize,
    /// Arithmetic outputs per element.
    pub arith_per_element: usize,
}

impl PackedOut {
    /// Share bit of XOR query j (counted among XOR queries) of element e.
    pub fn xor_bit(&self, e: usize, j: usize) -> u8 {
        ((self.xor_bits[e * self.xor_words + j / 64] >> (j % 64)) & 1) as u8
    }
    /// Share of arithmetic query j (counted among arithmetic queries) of element e.
    pub fn arith_share(&self, e: usize, j: usize) -> u64 {
        self.arith[e * self.arith_per_element + j]
    }
}

/// Generate packed-comparison keys for the elements with input masks `masks` (each < 2^n).
///
/// # Errors
/// [`FssError::BadParams`] for an invalid spec or a mask ≥ 2^n.
pub fn gen(
    spec: &PackedCmpSpec,
    masks: &[u64],
    rng: &mut Csprng,
) -> Result<(PackedCmpKeys, PackedCmpKeys)> {
    spec.validate()?;
    let nm = mask_bits(spec.n);
    if masks.iter().any(|&r| r & !nm != 0) {
        return Err(FssError::BadParams(format!(
            "a mask is not below 2^{}",
            spec.n
        )));
    }
    let plan = spec.plan();
    let mut g0 = Vec::with_capacity(plan.groups.len());
    let mut g1 = Vec::with_capacity(plan.groups.len());
    for g in &plan.groups {
        let km = mask_bits(g.bits);
        let alphas: Vec<u64> = masks.iter().map(|&r| r & km).collect();
        let (d0, d1) = if g.dpf_pts.is_empty() {
            (None, None)
        } else {
            let (a, b) = dpf::gen_cmp_batch(g.bits, &alphas, rng)?;
            (Some(a), Some(b))
        };
        let (c0, c1) = match g.dcf_bits {
            None => (None, None),
            Some(m) => {
                let ones = vec![1u64; alphas.len()];
                let (a, b) = dcf::gen_batch(g.bits, m, 1, &alphas, &ones, rng)?;
                (Some(a), Some(b))
            }
        };
        g0.push(GroupKeys { dpf: d0, dcf: c0 });
        g1.push(GroupKeys { dpf: d1, dcf: c1 });
    }
    let mk = |party, groups| PackedCmpKeys {
        spec: spec.clone(),
        plan: plan.clone(),
        party,
        count: masks.len(),
        groups,
    };
    Ok((mk(0, g0), mk(1, g1)))
}

/// Evaluate a batch: `xhats[e]` is element e's opened x̂ (taken mod 2^n).
///
/// # Errors
/// [`FssError::LengthMismatch`] if `xhats.len() != count`.
pub fn eval(keys: &PackedCmpKeys, xhats: &[u64]) -> Result<PackedOut> {
    keys.eval(xhats)
}

impl PackedCmpKeys {
    /// The public spec.
    pub fn spec(&self) -> &PackedCmpSpec {
        &self.spec
    }
    /// Party 0 or 1.
    pub fn party(&self) -> u8 {
        self.party
    }
    /// Elements in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Evaluate a batch (see [`eval`]).
    ///
    /// # Errors
    /// [`FssError::LengthMismatch`] if `xhats.len() != count`.
    pub fn eval(&self, xhats: &[u64]) -> Result<PackedOut> {
        if xhats.len() != self.count {
            return Err(FssError::LengthMismatch {
                what: "xhats",
                expected: self.count,
                got: xhats.len(),
            });
        }
        let spec = &self.spec;
        let plan = &self.plan;
        let nmask = mask_bits(spec.n);
        let cnt = self.count;
        // Per group: evaluate the DPF and DCF at their point lists.
        let mut dpf_out: Vec<Vec<u8>> = Vec::with_capacity(plan.groups.len());
        let mut dcf_out: Vec<Vec<u64>> = Vec::with_capacity(plan.groups.len());
        let view_x = |v: usize, xh: u64| -> u64 {
            let view = spec.views[v];
            (xh & nmask).wrapping_add(view.shift) & mask_bits(view.bits)
        };
        let point = |p: &Point, xh: u64, km: u64| -> u64 {
            match *p {
                Point::Shifted { view, beta } => view_x(view, xh).wrapping_sub(beta) & km,
                Point::Center { view } => view_x(view, xh),
            }
        };
        for (g, gk) in plan.groups.iter().zip(&self.groups) {
            let km = mask_bits(g.bits);
            let pts = |list: &[Point]| -> Vec<u64> {
                let mut v = Vec::with_capacity(cnt * list.len());
                for &xh in xhats {
                    for p in list {
                        v.push(point(p, xh, km));
                    }
                }
                v
            };
            dpf_out.push(match &gk.dpf {
                Some(k) if !g.dpf_pts.is_empty() => {
                    k.eval_lt_multi(&pts(&g.dpf_pts), g.dpf_pts.len())?
                }
                _ => Vec::new(),
            });
            dcf_out.push(match &gk.dcf {
                Some(k) if !g.dcf_pts.is_empty() => {
                    k.eval_multi(&pts(&g.dcf_pts), g.dcf_pts.len())?
                }
                _ => Vec::new(),
            });
        }
        let xw = plan.n_xor.div_ceil(64);
        let na = plan.n_arith;
        let mut xor_bits = vec![0u64; cnt * xw];
        let mut arith = vec![0u64; cnt * na];
        let b = self.party as u64;
        for (e, &xh) in xhats.iter().enumerate() {
            let (mut jx, mut ja) = (0usize, 0usize);
            for (q, qp) in spec.queries.iter().zip(&plan.queries) {
                let g = &plan.groups[qp.group];
                let ndpf = g.dpf_pts.len();
                let ndcf = g.dcf_pts.len();
                let xv = view_x(q.view, xh);
                let public = if g.bits == 64 || q.beta < 1u64 << g.bits {
                    (xv < q.beta) as u64
                } else {
                    1
                };
                match q.output {
                    Output::Xor => {
                        let own = dpf_out[qp.group][e * ndpf + qp.idx] as u64 & 1;
                        let corr = match qp.corr {
                            Corr::Dpf(i) => dpf_out[qp.group][e * ndpf + i] as u64 & 1,
                            Corr::DcfLsb(i) | Corr::Dcf(i) => dcf_out[qp.group][e * ndcf + i] & 1,
                        };
                        let bit = own ^ corr ^ (public & (b ^ 1));
                        xor_bits[e * xw + jx / 64] |= bit << (jx % 64);
                        jx += 1;
                    }
                    Output::Arith { bits } => {
                        let own = dcf_out[qp.group][e * ndcf + qp.idx];
                        let corr = match qp.corr {
                            Corr::Dcf(i) | Corr::DcfLsb(i) => dcf_out[qp.group][e * ndcf + i],
                            Corr::Dpf(_) => 0, // unreachable by construction of the plan
                        };
                        arith[e * na + ja] = own
                            .wrapping_sub(corr)
                            .wrapping_add(public & b.wrapping_neg())
                            & mask_bits(bits);
                        ja += 1;
                    }
                }
            }
        }
        Ok(PackedOut {
            xor_bits,
            arith,
            xor_words: xw,
            arith_per_element: na,
        })
    }

    /// Serialized batch ([`KeyKind::PackedCmp`], layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let spec = &self.spec;
        let mut w = KeyWriter::new(
            KeyKind::PackedCmp,
            self.party,
            spec.n,
            [spec.views.len() as u32, spec.queries.len() as u32, 0, 0],
            self.count as u64,
        );
        let mut vs = Vec::with_capacity(2 * spec.views.len());
        for v in &spec.views {
            vs.extend([v.bits as u64, v.shift]);
        }
        w.u64s(&vs);
        let mut qs = Vec::with_capacity(3 * spec.queries.len());
        for q in &spec.queries {
            let o = match q.output {
                Output::Xor => 0,
                Output::Arith { bits } => bits as u64,
            };
            qs.extend([q.view as u64, q.beta, o]);
        }
        w.u64s(&qs);
        for gk in &self.groups {
            if let Some(k) = &gk.dpf {
                write_nested(&mut w, &k.to_bytes());
            }
            if let Some(k) = &gk.dcf {
                write_nested(&mut w, &k.to_bytes());
            }
        }
        w.finish()
    }

    /// Parse a serialized batch. Never panics.
    ///
    /// # Errors
    /// Typed [`FssError`] input errors.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (h, body) = parse_header(b, KeyKind::PackedCmp)?;
        let [nv, nq, z0, z1] = h.params;
        if z0 != 0 || z1 != 0 {
            return Err(FssError::BadHeader("unused params are not zero".into()));
        }
        let (nv, nq) = (nv as usize, nq as usize);
        if nv > MAX_VIEWS || nq > MAX_QUERIES {
            return Err(FssError::BadHeader("too many views or queries".into()));
        }
        let spec_len = 16 * nv + 24 * nq;
        if (body.len()) < spec_len {
            return Err(FssError::SizeMismatch {
                expected: spec_len as u64,
                got: body.len() as u64,
            });
        }
        let count = usize::try_from(h.count)
            .map_err(|_| FssError::BadHeader("count does not fit in memory".into()))?;
        let mut r = KeyReader::new(body);
        let vs = r.u64s(2 * nv)?;
        let qs = r.u64s(3 * nq)?;
        let mut views = Vec::with_capacity(nv);
        for c in vs.chunks_exact(2) {
            let bits = u32::try_from(c[0])
                .map_err(|_| FssError::BadHeader("view bits out of range".into()))?;
            views.push(View { bits, shift: c[1] });
        }
        let mut queries = Vec::with_capacity(nq);
        for c in qs.chunks_exact(3) {
            let view = usize::try_from(c[0])
                .map_err(|_| FssError::BadHeader("query view out of range".into()))?;
            let output = match c[2] {
                0 => Output::Xor,
                o => Output::Arith {
                    bits: u32::try_from(o)
                        .map_err(|_| FssError::BadHeader("output bits out of range".into()))?,
                },
            };
            queries.push(Query {
                view,
                beta: c[1],
                output,
            });
        }
        let spec = PackedCmpSpec {
            n: h.n,
            views,
            queries,
        };
        spec.check().map_err(FssError::BadHeader)?;
        let plan = spec.plan();
        // Closed-form body length.
        let mut expected = Some(spec_len as u64);
        let c64 = h.count;
        for g in &plan.groups {
            if !g.dpf_pts.is_empty() {
                let l = c64
                    .checked_mul(DpfKeys::key_bytes_per_key(g.bits) as u64)
                    .and_then(|x| x.checked_add(HEADER_LEN as u64));
                expected = add_nested(expected, l);
            }
            if let Some(m) = g.dcf_bits {
                let l = usize::try_from(c64)
                    .ok()
                    .and_then(|c| DcfKeys::bytes_for(g.bits, m, 1, c))
                    .map(|x| x as u64);
                expected = add_nested(expected, l);
            }
        }
        expect_body_len(&h, expected)?;
        let mut groups = Vec::with_capacity(plan.groups.len());
        let check = |party: u8, cnt: usize| -> Result<()> {
            if party != h.party || cnt != count {
                return Err(FssError::BadHeader(
                    "nested key disagrees with the outer header".into(),
                ));
            }
            Ok(())
        };
        for g in &plan.groups {
            let dpf = if g.dpf_pts.is_empty() {
                None
            } else {
                let k = DpfKeys::from_bytes(&read_nested(&mut r)?)?;
                check(k.party(), k.count())?;
                if k.n() != g.bits {
                    return Err(FssError::BadHeader("nested DPF has the wrong width".into()));
                }
                Some(k)
            };
            let dcf = match g.dcf_bits {
                None => None,
                Some(m) => {
                    let k = DcfKeys::from_bytes(&read_nested(&mut r)?)?;
                    check(k.party(), k.count())?;
                    if k.n() != g.bits || k.m() != m || k.p() != 1 {
                        return Err(FssError::BadHeader(
                            "nested DCF has the wrong parameters".into(),
                        ));
                    }
                    Some(k)
                }
            };
            groups.push(GroupKeys { dpf, dcf });
        }
        r.finish()?;
        Ok(PackedCmpKeys {
            spec,
            plan,
            party: h.party,
            count,
            groups,
        })
    }
}

/// Append a nested key file: its byte length (u64) and its bytes zero-padded to 8.
pub(crate) fn write_nested(w: &mut KeyWriter, bytes: &[u8]) {
    w.u64s(&[bytes.len() as u64]);
    w.bytes(bytes);
    let pad = bytes.len().next_multiple_of(8) - bytes.len();
    w.bytes(&[0u8; 8][..pad]);
}

/// Read a nested key file written by [`write_nested`] (padding must be zero).
pub(crate) fn read_nested(r: &mut KeyReader<'_>) -> Result<Vec<u8>> {
    let len = r.u64s(1)?[0];
    let len = usize::try_from(len)
        .map_err(|_| FssError::BadHeader("nested key length out of range".into()))?;
    let bytes = r.bytes(len)?;
    let pad = len.next_multiple_of(8) - len;
    if r.bytes(pad)?.iter().any(|&b| b != 0) {
        return Err(FssError::BadHeader("nested key padding is not zero".into()));
    }
    Ok(bytes)
}

/// Add the size of one nested key of `len` bytes (length word + bytes + padding).
pub(crate) fn add_nested(acc: Option<u64>, len: Option<u64>) -> Option<u64> {
    let l = len?;
    acc?.checked_add(8)?
        .checked_add(l.checked_next_multiple_of(8)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyfmt::checksum;
    use proptest::prelude::*;

    fn pred(spec: &PackedCmpSpec, q: &Query, x: u64) -> u64 {
        let v = spec.views[q.view];
        let xv = x.wrapping_add(v.shift) & mask_bits(v.bits);
        let lt = if v.bits < 64 && q.beta == 1u64 << v.bits {
            true
        } else {
            xv < q.beta
        };
        lt as u64
    }

    /// Every (x, r) pair of the n-bit ring as one element each.
    fn check_exhaustive(spec: &PackedCmpSpec, rng: &mut Csprng) {
        let n = spec.n;
        let dom = 1u64 << n;
        let mut masks = Vec::new();
        let mut xs = Vec::new();
        for r in 0..dom {
            for x in 0..dom {
                masks.push(r);
                xs.push(x);
            }
        }
        check_elements(spec, &masks, &xs, rng);
    }

    fn check_elements(spec: &PackedCmpSpec, masks: &[u64], xs: &[u64], rng: &mut Csprng) {
        let nm = mask_bits(spec.n);
        let (k0, k1) = gen(spec, masks, rng).unwrap();
        let xh: Vec<u64> = xs
            .iter()
            .zip(masks)
            .map(|(&x, &r)| x.wrapping_add(r) & nm)
            .collect();
        let o0 = eval(&k0, &xh).unwrap();
        let o1 = eval(&k1, &xh).unwrap();
        for (e, &x) in xs.iter().enumerate() {
            let (mut jx, mut ja) = (0, 0);
            for q in &spec.queries {
                let want = pred(spec, q, x);
                match q.output {
                    Output::Xor => {
                        let got = o0.xor_bit(e, jx) ^ o1.xor_bit(e, jx);
                        assert_eq!(got as u64, want, "{spec:?} {q:?} x={x} r={}", masks[e]);
                        jx += 1;
                    }
                    Output::Arith { bits } => {
                        let got = o0.arith_share(e, ja).wrapping_add(o1.arith_share(e, ja))
                            & mask_bits(bits);
                        assert_eq!(got, want, "{spec:?} {q:?} x={x} r={}", masks[e]);
                        assert!(o0.arith_share(e, ja) <= mask_bits(bits));
                        ja += 1;
                    }
                }
            }
            // Padding bits of the XOR words are zero.
            let xq = spec.xor_queries();
            if !xq.is_multiple_of(64) {
                let last = o0.xor_bits[e * o0.xor_words + o0.xor_words - 1];
                assert_eq!(last >> (xq % 64), 0);
            }
        }
    }

    fn q(view: usize, beta: u64, output: Output) -> Query {
        Query { view, beta, output }
    }

    fn specs(n: u32, rng: &mut Csprng) -> Vec<PackedCmpSpec> {
        let dom = 1u64 << n;
        let half = dom / 2;
        let f = (n / 2).max(1);
        let a = Output::Arith { bits: n };
        let x = Output::Xor;
        let mut v = vec![
            // Full width, XOR only, edge thresholds.
            PackedCmpSpec {
                n,
                views: vec![View { bits: n, shift: 0 }],
                queries: [0, 1, dom - 1, dom, rng.next_u64() % dom]
                    .iter()
                    .map(|&b| q(0, b, x))
                    .collect(),
            },
            // Full width, arithmetic only.
            PackedCmpSpec {
                n,
                views: vec![View { bits: n, shift: 0 }],
                queries: [0, 1, dom - 1, dom, rng.next_u64() % dom]
                    .iter()
                    .map(|&b| q(0, b, a))
                    .collect(),
            },
            // Mixed: unsigned + signed full width (shared key), low f bits, mixed outputs.
            PackedCmpSpec {
                n,
                views: vec![
                    View { bits: n, shift: 0 },
                    View {
                        bits: n,
                        shift: half,
                    },
                    View { bits: f, shift: 0 },
                ],
                queries: vec![
                    q(0, rng.next_u64() % (dom + 1), x),
                    q(1, half, a),
                    q(2, rng.next_u64() % (1 << f), Output::Arith { bits: 64 }),
                    q(2, 1 << f, x),
                    q(0, 0, Output::Arith { bits: 1 }),
                    q(1, rng.next_u64() % dom, x),
                    q(2, 0, x),
                    q(0, dom, Output::Arith { bits: 3 }),
                    q(1, 1, a),
                ],
            },
            // A view with only XOR queries next to a mixed view of the same width.
            PackedCmpSpec {
                n,
                views: vec![
                    View { bits: n, shift: 0 },
                    View { bits: n, shift: 1 },
                    View { bits: 1, shift: 1 },
                ],
                queries: vec![
                    q(0, rng.next_u64() % dom, a),
                    q(1, rng.next_u64() % dom, x),
                    q(0, rng.next_u64() % dom, x),
                    q(2, 1, x),
                    q(2, 2, a),
                ],
            },
            // No queries at all, and a view without queries.
            PackedCmpSpec {
                n,
                views: vec![View { bits: n, shift: 0 }],
                queries: vec![],
            },
        ];
        // Many XOR queries: more than one word.
        v.push(PackedCmpSpec {
            n,
            views: vec![View {
                bits: n,
                shift: 3 % dom,
            }],
            queries: (0..70)
                .map(|_| q(0, rng.next_u64() % (dom + 1), x))
                .collect(),
        });
        v
    }

    #[test]
    fn exhaustive_small_rings() {
        let mut rng = Csprng::for_tests(11);
        for n in 1..=6u32 {
            for s in specs(n, &mut rng) {
                check_exhaustive(&s, &mut rng);
            }
        }
        // n = 7, 8: all x and all r for every shape too.
        for n in 7..=8u32 {
            for s in specs(n, &mut rng) {
                check_exhaustive(&s, &mut rng);
            }
        }
    }

    #[test]
    fn randomized_wide_rings() {
        let mut rng = Csprng::for_tests(12);
        for &n in &[12u32, 37, 50, 63, 64] {
            let nm = mask_bits(n);
            let half = 1u64 << (n - 1);
            let spec = PackedCmpSpec {
                n,
                views: vec![
                    View { bits: n, shift: 0 },
                    View {
                        bits: n,
                        shift: half,
                    },
                    View { bits: 12, shift: 0 },
                ],
                queries: vec![
                    q(0, rng.next_u64() & nm, Output::Xor),
                    q(1, half, Output::Arith { bits: n }),
                    q(2, rng.next_u64() % 4096, Output::Arith { bits: n - 12 + 1 }),
                    q(2, 4096, Output::Xor),
                    q(0, 0, Output::Arith { bits: 64 }),
                    q(1, rng.next_u64() & nm, Output::Xor),
                    q(0, nm, Output::Arith { bits: n }),
                ],
            };
            let cnt = 500;
            let masks: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & nm).collect();
            let mut xs: Vec<u64> = (0..cnt).map(|_| rng.next_u64() & nm).collect();
            // Points near the thresholds.
            for (i, x) in xs.iter_mut().enumerate().take(100) {
                let qq = &spec.queries[i % spec.queries.len()];
                let v = spec.views[qq.view];
                *x = (qq
                    .beta
                    .wrapping_sub(v.shift)
                    .wrapping_add(i as u64 % 3)
                    .wrapping_sub(1))
                    & nm;
            }
            check_elements(&spec, &masks, &xs, &mut rng);
        }
    }

    #[test]
    fn shapes_and_serialization() {
        let mut rng = Csprng::for_tests(13);
        let all = specs(8, &mut rng);
        for spec in &all {
            let mut len = None;
            for _ in 0..10 {
                let masks: Vec<u64> = (0..5).map(|_| rng.next_u64() & 255).collect();
                let (k0, k1) = gen(spec, &masks, &mut rng).unwrap();
                for k in [&k0, &k1] {
                    let b = k.to_bytes();
                    if let Some(l) = len {
                        assert_eq!(l, b.len());
                    }
                    len = Some(b.len());
                    let back = PackedCmpKeys::from_bytes(&b).unwrap();
                    assert_eq!(&back, k);
                    let xs: Vec<u64> = (0..5).map(|_| rng.next_u64() & 255).collect();
                    assert_eq!(back.eval(&xs).unwrap(), k.eval(&xs).unwrap());
                }
            }
        }
        // Evaluation and AES counts: mixed spec has 9 queries on 3 views.
        assert_eq!(all[2].evals_per_element().unwrap(), 9 + 3);
        // Width 8 (views 0, 1): 2 DPF points at 2 AES, 4 arith queries + 2 centers on the DCF
        // at 16 AES; width 4 (view 2): 2 DPF points at 1 AES, 1 arith query + 1 center at 8.
        assert_eq!(
            all[2].aes_per_element().unwrap(),
            2 * 2 + 6 * 16 + 2 + 2 * 8
        );
        let mut bad = all[2].clone();
        bad.queries[0].view = 7;
        assert!(bad.evals_per_element().is_err());
        assert!(bad.aes_per_element().is_err());
    }

    #[test]
    fn bad_specs() {
        let mut rng = Csprng::for_tests(14);
        let v = View { bits: 8, shift: 0 };
        let bad = [
            PackedCmpSpec {
                n: 0,
                views: vec![],
                queries: vec![],
            },
            PackedCmpSpec {
                n: 8,
                views: vec![View { bits: 9, shift: 0 }],
                queries: vec![],
            },
            PackedCmpSpec {
                n: 8,
                views: vec![View { bits: 4, shift: 16 }],
                queries: vec![],
            },
            PackedCmpSpec {
                n: 8,
                views: vec![v],
                queries: vec![q(1, 0, Output::Xor)],
            },
            PackedCmpSpec {
                n: 8,
                views: vec![v],
                queries: vec![q(0, 257, Output::Xor)],
            },
            PackedCmpSpec {
                n: 8,
                views: vec![v],
                queries: vec![q(0, 3, Output::Arith { bits: 65 })],
            },
        ];
        for s in &bad {
            assert!(gen(s, &[0], &mut rng).is_err(), "{s:?}");
        }
        let ok = PackedCmpSpec {
            n: 8,
            views: vec![v],
            queries: vec![q(0, 256, Output::Xor)],
        };
        assert!(gen(&ok, &[256], &mut rng).is_err());
        let (k0, _) = gen(&ok, &[3, 4], &mut rng).unwrap();
        assert!(k0.eval(&[1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn fuzz_parse_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            fix in any::<bool>(),
            trunc in any::<bool>(),
        ) {
            let mut rng = Csprng::for_tests(15);
            let spec = &specs(6, &mut rng)[2];
            let (k0, _) = gen(spec, &[3, 60], &mut rng).unwrap();
            let mut b = k0.to_bytes();
            for (pos, x) in flips {
                let i = pos % b.len();
                b[i] ^= x;
            }
            if trunc {
                b.truncate(cut % (b.len() + 1));
            }
            if fix && b.len() >= HEADER_LEN {
                let c = checksum(&b[HEADER_LEN..]);
                b[56..64].copy_from_slice(&c.to_le_bytes());
            }
            if let Ok(k) = PackedCmpKeys::from_bytes(&b) {
                let xs: Vec<u64> = (0..k.count() as u64).collect();
                let _ = k.eval(&xs);
            }
        }
    }
}
