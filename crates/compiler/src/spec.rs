//! The spec IR: what a compiled gate computes, with exact integer semantics.
//!
//! A gate reads one ring element x ∈ Z_{2^n} (its masked opening is the gate's round) and
//! returns q outputs. It is a sum of **components**, each a function of a *bit view* of x:
//!
//! * [`View`]: x_u = (x + c) mod 2^K for a public offset c and width K ≤ n. K < n is the
//!   reduced-width view: exact on the low K bits whatever x is, and meaningful when a previous
//!   step guarantees that x + c lies in [0, 2^K) (the spec's author records that guarantee).
//! * [`PolySpec`] (DESIGN §5, technique (c)): a partition of [0, 2^K) by interior cut points
//!   and, per interval i, q polynomials of degree ≤ d in u = x_u − e_i (a public centre, usually
//!   the interval start or midpoint) with integer coefficients in Z_{2^M}, M ≤ n. The output is
//!   the exact value mod 2^M. An output whose true value P satisfies |P| < 2^{M−1} is exact in
//!   the signed sense (the headroom rule of DESIGN §5 step 4: |P|·2^S < 2^{M−1} where P is the
//!   real function and S the output scale).
//! * [`HalvesSpec`]: the full-width view (K = n) split at 2^{n−1} into two halves with an
//!   affine function on each (ReLU, max, sign); its protocol needs one (n−1)-bit key instead of
//!   an n-bit key evaluated twice.
//! * [`FloorSpec`]: sel·⌊x_u / 2^t⌋ with an optional selector sel = 1 − (x_u mod 2) read from
//!   the view's least significant bit (so a value packed as 2·Q + ℓ yields (1 − ℓ)·⌊Q/2^{t−1}⌋
//!   — a select and a truncation in one opening). With [`Wrap::Free`] the view is full width and
//!   x_u < 2^{n−1} is a *guarantee* (GapARS-style), otherwise the protocol differs from
//!   [`FloorSpec::eval_into`]; with [`Wrap::Dcf`] the floor is exact for every x.
//!
//! A [`GateSpec`] lists components and where each component output is added. Its plain
//! evaluation ([`GateSpec::eval`]) is the reference the protocol must match bit for bit
//! (outputs of components with M < n agree with the protocol mod 2^M only, and must feed a
//! consumer that reads at most M bits: [`GateSpec::valid_bits`]).

use serde::{Deserialize, Serialize};

use crate::error::{spec_err, Result};

/// 2^bits − 1 (all ones for 64): the one definition, shared with the backend's gate
/// evaluation.
pub use suf_backend::gate::mask;

/// A bit view of the gate input: x_u = (x + offset) mod 2^bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Public offset c.
    pub offset: u64,
    /// Width K (1 ≤ K ≤ n).
    pub bits: u32,
}

impl View {
    /// The view of x.
    #[inline]
    pub fn of(&self, x: u64) -> u64 {
        x.wrapping_add(self.offset) & mask(self.bits)
    }

    fn check(&self, n: u32, what: &str) -> Result<()> {
        if self.bits == 0 || self.bits > n {
            return spec_err(format!("{what}: view width {} outside 1..={n}", self.bits));
        }
        Ok(())
    }
}

/// A piecewise polynomial on a view (technique (c)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolySpec {
    /// The view.
    pub view: View,
    /// Output ring bits M (outputs are exact mod 2^M).
    pub ring: u32,
    /// Interior cut points 0 < a_1 < … < a_{m−1} < 2^K.
    pub cuts: Vec<u64>,
    /// Degree d.
    pub degree: usize,
    /// Outputs q.
    pub outputs: usize,
    /// Per interval, the centre e_i of the polynomial variable u = x_u − e_i (mod 2^M).
    pub centers: Vec<u64>,
    /// Coefficients, `coeffs[(i·q + o)·(d+1) + j]` = coefficient of u^j of output o on
    /// interval i, in Z_{2^M}.
    pub coeffs: Vec<u64>,
}

impl PolySpec {
    /// Intervals m = cuts + 1.
    pub fn intervals(&self) -> usize {
        self.cuts.len() + 1
    }

    /// Interval index of a view value.
    #[inline]
    pub fn interval_of(&self, xu: u64) -> usize {
        self.cuts.partition_point(|&a| a <= xu)
    }

    /// Start of interval i (a_0 = 0).
    pub fn start(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.cuts[i - 1]
        }
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        self.view.check(n, "poly")?;
        if self.ring == 0 || self.ring > n {
            return spec_err(format!("poly: ring bits {} outside 1..={n}", self.ring));
        }
        if self.outputs == 0 || self.outputs > 64 {
            return spec_err(format!("poly: {} outputs (1..=64)", self.outputs));
        }
        if self.degree > 8 {
            return spec_err(format!("poly: degree {} above 8", self.degree));
        }
        let km = mask(self.view.bits);
        let mut prev = 0u64;
        for (i, &a) in self.cuts.iter().enumerate() {
            if a <= prev || a > km {
                return spec_err(format!(
                    "poly: cut {i} = {a} must increase strictly inside (0, 2^{})",
                    self.view.bits
                ));
            }
            prev = a;
        }
        let m = self.intervals();
        if self.centers.len() != m {
            return spec_err(format!(
                "poly: {} centres for {m} intervals",
                self.centers.len()
            ));
        }
        if self.coeffs.len() != m * self.outputs * (self.degree + 1) {
            return spec_err(format!(
                "poly: {} coefficients, expected {}",
                self.coeffs.len(),
                m * self.outputs * (self.degree + 1)
            ));
        }
        let rm = mask(self.ring);
        if self
            .coeffs
            .iter()
            .chain(&self.centers)
            .any(|&c| c & !rm != 0)
        {
            return spec_err("poly: coefficient or centre not reduced mod 2^M");
        }
        Ok(())
    }

    /// Exact outputs (mod 2^M) at x.
    pub fn eval_into(&self, x: u64, out: &mut [u64]) {
        let xu = self.view.of(x);
        let i = self.interval_of(xu);
        let rm = mask(self.ring);
        let u = xu.wrapping_sub(self.centers[i]) & rm;
        let p = self.degree + 1;
        for (o, slot) in out.iter_mut().enumerate().take(self.outputs) {
            let c = &self.coeffs[(i * self.outputs + o) * p..(i * self.outputs + o + 1) * p];
            let mut acc = 0u64;
            for &cj in c.iter().rev() {
                acc = acc.wrapping_mul(u).wrapping_add(cj);
            }
            *slot = acc & rm;
        }
    }
}

/// Two halves of the full-width view split at 2^{n−1}, affine on each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HalvesSpec {
    /// Offset c of the full-width view x_u = (x + c) mod 2^n.
    pub offset: u64,
    /// Output ring bits M ≤ n.
    pub ring: u32,
    /// Per output: (slope, intercept) on the lower half x_u < 2^{n−1}.
    pub lo: Vec<(u64, u64)>,
    /// Per output: (slope, intercept) on the upper half x_u ≥ 2^{n−1}.
    pub hi: Vec<(u64, u64)>,
}

impl HalvesSpec {
    /// Outputs q.
    pub fn outputs(&self) -> usize {
        self.lo.len()
    }

    /// Whether any slope is non-zero (the key then carries a second payload element).
    pub fn has_slope(&self) -> bool {
        self.lo.iter().chain(&self.hi).any(|&(a, _)| a != 0)
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        if n < 2 {
            return spec_err("halves: ring of at least 2 bits needed");
        }
        if self.ring == 0 || self.ring > n {
            return spec_err(format!("halves: ring bits {} outside 1..={n}", self.ring));
        }
        if self.lo.is_empty() || self.lo.len() != self.hi.len() {
            return spec_err("halves: outputs of the two halves differ or are empty");
        }
        let rm = mask(self.ring);
        if self
            .lo
            .iter()
            .chain(&self.hi)
            .any(|&(a, b)| a & !rm != 0 || b & !rm != 0)
        {
            return spec_err("halves: coefficient not reduced mod 2^M");
        }
        Ok(())
    }

    /// Exact outputs (mod 2^M) at x for ring width n.
    pub fn eval_into(&self, n: u32, x: u64, out: &mut [u64]) {
        let xu = x.wrapping_add(self.offset) & mask(n);
        let top = (xu >> (n - 1)) & 1 == 1;
        let rm = mask(self.ring);
        let coef = if top { &self.hi } else { &self.lo };
        for (slot, &(a, b)) in out.iter_mut().zip(coef) {
            *slot = a.wrapping_mul(xu).wrapping_add(b) & rm;
        }
    }
}

/// Technique (c) with the intervals read off the **high part** of a view: the cuts compare
/// h = ⌊x_u / 2^s⌋ (x_u = (x + offset) mod 2^K) and the polynomials are in the full-ring
/// variable x_f = (x + offset) mod 2^M. Its protocol uses one DCF on K − s bits only: it sees
/// h' = (h + c) mod 2^{K−s}, where c = 1{ŷ_L < ρ_L} ∈ {0, 1} is the borrow of the low s bits,
/// a bit that depends on the mask. So the interval holding x is certain except in a zone of
/// 2^s inputs just below each cut (x_u ∈ [(a − 1)·2^s, a·2^s) for cut a), where it is the
/// interval above or the one below depending on the mask. A gate built from this component
/// must give the same final output either way (the smooth activations make their fine part
/// equal to the tail on those zones, checked when the gate is built); [`HighSpec::eval_into`]
/// is the c = 0 choice, [`HighSpec::eval_with_carry`] either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighSpec {
    /// The view x_u (K = `view.bits`).
    pub view: View,
    /// Low bits s dropped before the comparisons (1 ≤ s ≤ K − 1).
    pub shift: u32,
    /// Output ring bits M.
    pub ring: u32,
    /// Interior cuts 0 < a_1 < … < a_{m−1} < 2^{K−s} on h.
    pub cuts: Vec<u64>,
    /// Degree d.
    pub degree: usize,
    /// Outputs q.
    pub outputs: usize,
    /// Per interval, the centre e_i of u = x_f − e_i (mod 2^M).
    pub centers: Vec<u64>,
    /// Coefficients, `coeffs[(i·q + o)·(d+1) + j]`, in Z_{2^M}.
    pub coeffs: Vec<u64>,
}

impl HighSpec {
    /// Intervals m = cuts + 1.
    pub fn intervals(&self) -> usize {
        self.cuts.len() + 1
    }

    /// Bits of the comparisons: K − s.
    pub fn high_bits(&self) -> u32 {
        self.view.bits - self.shift
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        self.view.check(n, "high")?;
        if self.shift == 0 || self.shift >= self.view.bits {
            return spec_err(format!(
                "high: shift {} outside 1..{}",
                self.shift, self.view.bits
            ));
        }
        let as_poly = PolySpec {
            view: View {
                offset: 0,
                bits: self.high_bits(),
            },
            ring: self.ring,
            cuts: self.cuts.clone(),
            degree: self.degree,
            outputs: self.outputs,
            centers: self.centers.clone(),
            coeffs: self.coeffs.clone(),
        };
        as_poly.validate(n).map_err(|e| match e {
            crate::error::CompilerError::Spec(m) => {
                crate::error::CompilerError::Spec(m.replacen("poly", "high", 1))
            }
            other => other,
        })
    }

    /// Outputs (mod 2^M) at x with the mask's borrow bit `carry` (0 or 1).
    pub fn eval_with_carry(&self, x: u64, carry: u64, out: &mut [u64]) {
        let h = (self.view.of(x) >> self.shift).wrapping_add(carry) & mask(self.high_bits());
        let i = self.cuts.partition_point(|&a| a <= h);
        let rm = mask(self.ring);
        let u = x
            .wrapping_add(self.view.offset)
            .wrapping_sub(self.centers[i])
            & rm;
        let p = self.degree + 1;
        for (o, slot) in out.iter_mut().enumerate().take(self.outputs) {
            let c = &self.coeffs[(i * self.outputs + o) * p..(i * self.outputs + o + 1) * p];
            let mut acc = 0u64;
            for &cj in c.iter().rev() {
                acc = acc.wrapping_mul(u).wrapping_add(cj);
            }
            *slot = acc & rm;
        }
    }

    /// Outputs at x for the borrow c = 0 (the gate's plain semantics; see the type's notes).
    pub fn eval_into(&self, x: u64, out: &mut [u64]) {
        self.eval_with_carry(x, 0, out)
    }
}

/// Two halves of a **K-bit** view x_u = (x + c) mod 2^K split at 2^{K−1}, affine in the
/// full-ring variable x_f = (x + c) mod 2^M on each (ReLU and max on values known to lie in
/// K − 1 signed bits). One (K − 1)-bit DCF. With K = n this is [`HalvesSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignSpec {
    /// Offset c.
    pub offset: u64,
    /// View width K (2 ≤ K ≤ n).
    pub bits: u32,
    /// Output ring bits M ≤ n.
    pub ring: u32,
    /// Per output: (slope, intercept) on the lower half x_u < 2^{K−1}.
    pub lo: Vec<(u64, u64)>,
    /// Per output: (slope, intercept) on the upper half.
    pub hi: Vec<(u64, u64)>,
}

impl SignSpec {
    /// Outputs q.
    pub fn outputs(&self) -> usize {
        self.lo.len()
    }

    /// Whether any slope is non-zero.
    pub fn has_slope(&self) -> bool {
        self.lo.iter().chain(&self.hi).any(|&(a, _)| a != 0)
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        if self.bits < 2 || self.bits > n {
            return spec_err(format!("sign: view width {} outside 2..={n}", self.bits));
        }
        HalvesSpec {
            offset: self.offset,
            ring: self.ring,
            lo: self.lo.clone(),
            hi: self.hi.clone(),
        }
        .validate(n)
        .map_err(|e| match e {
            crate::error::CompilerError::Spec(m) => {
                crate::error::CompilerError::Spec(m.replacen("halves", "sign", 1))
            }
            other => other,
        })
    }

    /// Exact outputs (mod 2^M) at x.
    pub fn eval_into(&self, x: u64, out: &mut [u64]) {
        let xu = x.wrapping_add(self.offset) & mask(self.bits);
        let xf = x.wrapping_add(self.offset);
        let top = (xu >> (self.bits - 1)) & 1 == 1;
        let rm = mask(self.ring);
        let coef = if top { &self.hi } else { &self.lo };
        for (slot, &(a, b)) in out.iter_mut().zip(coef) {
            *slot = a.wrapping_mul(xf).wrapping_add(b) & rm;
        }
    }
}

/// A Boolean function of the high part h = ⌊x_u/2^s⌋ of a view (as [`HighSpec`], with the
/// same mask-dependent zones below each cut), piecewise constant over the intervals of the
/// cuts, returned as **XOR shares** (each party's share is 0 or 1, read as a ring element):
/// the two shares add up to the bit only modulo 2. A gate uses it where only the least
/// significant bit of the sum is read — the LSB selector of a [`FloorSpec`] whose other bits
/// come from a value multiplied by 4, so the carry 2·(share₀·share₁) lands on a bit that the
/// floor discards. One DPF comparison key on K − s bits (1-bit leaves: K − s − 7 levels).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitSpec {
    /// The view x_u.
    pub view: View,
    /// Low bits s dropped before the comparisons (1 ≤ s ≤ K − 1).
    pub shift: u32,
    /// Interior cuts on h, strictly increasing in (0, 2^{K−s}).
    pub cuts: Vec<u64>,
    /// The bit on each interval (cuts + 1 entries).
    pub bits: Vec<bool>,
}

impl BitSpec {
    /// Bits of the comparisons: K − s.
    pub fn high_bits(&self) -> u32 {
        self.view.bits - self.shift
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        self.view.check(n, "bit")?;
        if self.shift == 0 || self.shift >= self.view.bits {
            return spec_err(format!(
                "bit: shift {} outside 1..{}",
                self.shift, self.view.bits
            ));
        }
        let hm = mask(self.high_bits());
        let mut prev = 0u64;
        for &a in &self.cuts {
            if a <= prev || a > hm {
                return spec_err("bit: cuts must increase strictly inside (0, 2^{K−s})");
            }
            prev = a;
        }
        if self.bits.len() != self.cuts.len() + 1 {
            return spec_err(format!(
                "bit: {} interval bits for {} cuts",
                self.bits.len(),
                self.cuts.len()
            ));
        }
        Ok(())
    }

    /// The bit at x with the mask's borrow `carry` (as [`HighSpec::eval_with_carry`]).
    pub fn eval_with_carry(&self, x: u64, carry: u64) -> u64 {
        let h = (self.view.of(x) >> self.shift).wrapping_add(carry) & mask(self.high_bits());
        self.bits[self.cuts.partition_point(|&a| a <= h)] as u64
    }
}

/// How the floor's wrap bit `1{ŷ < ρ}` is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wrap {
    /// A K-bit comparison key: exact for every input.
    Dcf,
    /// No key: the view is full width and x_u < 2^{n−1} is guaranteed, so the wrap bit is
    /// MSB(ρ)·(1 − MSB(ŷ)) (fss-identities §5, GapARS).
    Free,
    /// No wrap term at all: the result is exact mod 2^{K−t} only (the output's ring), which
    /// is all a consumer that reads K − t bits (a reduced-width view) needs.
    Drop,
}

/// A floor with an optional least-significant-bit selector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorSpec {
    /// The view.
    pub view: View,
    /// Shift t (1 ≤ t < K).
    pub shift: u32,
    /// Whether sel = 1 − (x_u mod 2) multiplies the result (else sel = 1).
    pub select: bool,
    /// Wrap mode.
    pub wrap: Wrap,
    /// Per output o: `out_o = gamma[o]·Z + kappa[o]·sel` with `Z = sel·⌊x_u/2^t⌋` (mod 2^n).
    pub gamma: Vec<u64>,
    /// Per output: the coefficient of sel.
    pub kappa: Vec<u64>,
}

impl FloorSpec {
    /// Outputs q.
    pub fn outputs(&self) -> usize {
        self.gamma.len()
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        self.view.check(n, "floor")?;
        if self.shift == 0 || self.shift >= self.view.bits {
            return spec_err(format!(
                "floor: shift {} outside 1..{}",
                self.shift, self.view.bits
            ));
        }
        if self.wrap == Wrap::Free && self.view.bits != n {
            return spec_err("floor: the free wrap needs the full-width view");
        }
        if self.gamma.is_empty() || self.gamma.len() != self.kappa.len() {
            return spec_err("floor: output coefficient lists differ or are empty");
        }
        let nm = mask(n);
        if self.gamma.iter().chain(&self.kappa).any(|&c| c & !nm != 0) {
            return spec_err("floor: coefficient not reduced mod 2^n");
        }
        Ok(())
    }

    /// Exact outputs at x (mod 2^n). For [`Wrap::Free`] this is what the protocol computes
    /// whenever the guarantee x_u < 2^{n−1} holds.
    pub fn eval_into(&self, n: u32, x: u64, out: &mut [u64]) {
        let xu = self.view.of(x);
        let sel = if self.select { 1 - (xu & 1) } else { 1 };
        let z = sel * (xu >> self.shift);
        let nm = mask(n);
        for (o, slot) in out.iter_mut().enumerate() {
            *slot = self.gamma[o]
                .wrapping_mul(z)
                .wrapping_add(self.kappa[o].wrapping_mul(sel))
                & nm;
        }
    }
}

/// One component of a gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Component {
    /// Technique (c) on a view.
    Poly(PolySpec),
    /// Affine halves of the full-width view.
    Halves(HalvesSpec),
    /// Floor with optional LSB selector.
    Floor(FloorSpec),
    /// Technique (c) on the high part of a view (mask-dependent zones).
    High(HighSpec),
    /// Affine halves of a reduced-width view.
    Sign(SignSpec),
    /// A Boolean of a view's high part, XOR-shared (valid mod 2 only).
    Bit(BitSpec),
}

impl Component {
    /// Outputs of the component.
    pub fn outputs(&self) -> usize {
        match self {
            Component::Poly(p) => p.outputs,
            Component::Halves(h) => h.outputs(),
            Component::Floor(f) => f.outputs(),
            Component::High(h) => h.outputs,
            Component::Sign(h) => h.outputs(),
            Component::Bit(_) => 1,
        }
    }

    /// Low bits of the opened input x̂ the evaluation reads: a component that works on a
    /// view (x̂ + offset) mod 2^k reads k bits, since that view depends on x̂ mod 2^k alone;
    /// one that also uses the full-width value (a slope times x, the full variable of
    /// technique (c) on a high part, the affine halves) reads all n.
    pub fn input_bits(&self, n: u32) -> u32 {
        let k = match self {
            Component::Poly(p) => p.view.bits,
            Component::Floor(f) => f.view.bits,
            Component::Bit(b) => b.view.bits,
            Component::Sign(h) if !h.has_slope() => h.bits,
            Component::Sign(_) | Component::Halves(_) | Component::High(_) => n,
        };
        k.min(n)
    }

    /// Bits of its outputs that agree with the protocol (M, or n).
    pub fn ring(&self, n: u32) -> u32 {
        match self {
            Component::Poly(p) => p.ring,
            Component::Halves(h) => h.ring,
            Component::Floor(f) => match f.wrap {
                Wrap::Drop => f.view.bits - f.shift,
                _ => n,
            },
            Component::High(h) => h.ring,
            Component::Sign(h) => h.ring,
            Component::Bit(_) => 1,
        }
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        match self {
            Component::Poly(p) => p.validate(n),
            Component::Halves(h) => h.validate(n),
            Component::Floor(f) => f.validate(n),
            Component::High(h) => h.validate(n),
            Component::Sign(h) => h.validate(n),
            Component::Bit(b) => b.validate(n),
        }
    }

    /// Exact outputs at x.
    pub fn eval_into(&self, n: u32, x: u64, out: &mut [u64]) {
        match self {
            Component::Poly(p) => p.eval_into(x, out),
            Component::Halves(h) => h.eval_into(n, x, out),
            Component::Floor(f) => f.eval_into(n, x, out),
            Component::High(h) => h.eval_into(x, out),
            Component::Sign(h) => h.eval_into(x, out),
            Component::Bit(b) => out[0] = b.eval_with_carry(x, 0),
        }
    }

    /// AES calls per element of its protocol at ring width n (closed form, from the key
    /// shapes: a DCF on k bits with p payload elements of m bits costs k·(1 + ⌈p·m/128⌉) per
    /// evaluation, `suf_fss::dcf::aes_per_eval`).
    pub fn aes_per_elem(&self, n: u32) -> usize {
        use suf_fss::dcf::aes_per_eval;
        match self {
            Component::Poly(p) => p.intervals() * aes_per_eval(p.view.bits, p.ring, p.degree + 1),
            Component::Halves(h) => aes_per_eval(n - 1, h.ring, 1 + h.has_slope() as usize),
            Component::Floor(f) => {
                let p = 1 + f.select as usize;
                aes_per_eval(f.shift, n, p)
                    + match f.wrap {
                        Wrap::Dcf => aes_per_eval(f.view.bits, n, p),
                        Wrap::Free | Wrap::Drop => 0,
                    }
            }
            Component::High(h) => h.intervals() * aes_per_eval(h.high_bits(), h.ring, h.degree + 1),
            Component::Sign(h) => aes_per_eval(h.bits - 1, h.ring, 1 + h.has_slope() as usize),
            // One DPF walk (depth K − s − 7, one AES per level) plus one leaf call per point.
            Component::Bit(b) => {
                (b.cuts.len() + 1) * (suf_fss::dpf::depth(b.high_bits()) as usize + 1)
            }
        }
    }
}

/// A component and where its outputs go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The component.
    pub comp: Component,
    /// Output k of the component is added into gate output `targets[k]`.
    pub targets: Vec<usize>,
}

/// A compiled gate: q outputs, each a sum of component outputs (mod 2^n).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Short label (the gate's report name is the label plus a hash of the spec).
    pub label: String,
    /// Outputs q.
    pub outputs: usize,
    /// Components.
    pub parts: Vec<Part>,
}

impl GateSpec {
    /// Low bits of the opened input the gate reads ([`Component::input_bits`], the most over
    /// its components): the runtime opens x + r mod 2^bits, nothing more.
    pub fn input_bits(&self, n: u32) -> u32 {
        self.parts
            .iter()
            .map(|p| p.comp.input_bits(n))
            .max()
            .unwrap_or(n)
            .max(1)
    }

    /// Check the invariants against ring width n.
    pub fn validate(&self, n: u32) -> Result<()> {
        if self.outputs == 0 || self.outputs > 64 {
            return spec_err(format!("gate: {} outputs (1..=64)", self.outputs));
        }
        if self.parts.is_empty() {
            return spec_err("gate: no components");
        }
        for p in &self.parts {
            p.comp.validate(n)?;
            if p.targets.len() != p.comp.outputs() || p.targets.iter().any(|&t| t >= self.outputs) {
                return spec_err("gate: component targets do not match its outputs");
            }
        }
        Ok(())
    }

    /// Bits of output o that the protocol computes exactly (the least ring of a contributor).
    pub fn valid_bits(&self, n: u32, o: usize) -> u32 {
        self.parts
            .iter()
            .filter(|p| p.targets.contains(&o))
            .map(|p| p.comp.ring(n))
            .min()
            .unwrap_or(n)
    }

    /// Exact outputs at x for ring width n (the Plain interpreter's semantics).
    pub fn eval(&self, n: u32, x: u64) -> Vec<u64> {
        let mut out = vec![0u64; self.outputs];
        let mut tmp = [0u64; 64];
        for p in &self.parts {
            let k = p.comp.outputs();
            p.comp.eval_into(n, x, &mut tmp[..k]);
            for (j, &t) in p.targets.iter().enumerate() {
                out[t] = out[t].wrapping_add(tmp[j]);
            }
        }
        let nm = mask(n);
        for o in out.iter_mut() {
            *o &= nm;
        }
        out
    }

    /// AES calls per element of the whole gate.
    pub fn aes_per_elem(&self, n: u32) -> usize {
        self.parts.iter().map(|p| p.comp.aes_per_elem(n)).sum()
    }
}
