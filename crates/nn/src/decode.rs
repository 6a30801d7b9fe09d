//! Text generation for decoders (GPT-2, Llama/SmolLM2) with the key-value cache kept in
//! secret shares by the servers, and greedy sampling that opens only the chosen token.
//!
//! Programs ([`Decoder::build`]):
//! * the **prompt** program (positions `0..L0`): the full-prefix decoder, which also outputs
//!   each layer's K (after RoPE) and V rows;
//! * a **step** program at context L (position L, one row): the new token's Q/K/V, the
//!   attention of its query against the cached K/V (inputs `k{l}`, `v{l}` of shape
//!   `[L, kv_heads·head_dim]`, which the servers supply from their own shares) and its own
//!   row — causal by construction — then the MLP, and its K/V row as outputs.
//!
//! Output 0 is the chosen token id (`[1, 1]`): the secure argmax ([`argmax_last`]) of the
//! last position's logits — plus, for temperature sampling, the client's secret-shared
//! Gumbel noise ([`Sampler`]) — the only value opened to the client. Outputs `1 + 2l` and
//! `2 + 2l` are layer l's new K and V rows: the servers keep them
//! ([`suf_runtime::generate::Kept`]), so the logits and the cache are never opened.
//!
//! Length-dependent choices — the softmax reciprocal's range and whether softmax normalises
//! after e·V — follow one context capacity `max_ctx` for all programs of a generation, and a
//! step's query row is computed exactly as row L of the full-prefix program of that capacity
//! computes it (masked scores give exactly 0 after nExp): the cached path equals recomputing
//! the prefix bit for bit. With `max_ctx` equal to the prompt length the prompt program's
//! logits equal those of [`crate::model::build`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use suf_backend::Backend;
use suf_compiler::spec::{mask, Component, GateSpec, Part, SignSpec};
use suf_compiler::SpecGate;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::arch::{self, Block, Globals};
use suf_models::{Family, ModelConfig, Weights};
use suf_runtime::gate::GateImpl;
use suf_runtime::generate::{deal, Kept, Servers};
use suf_runtime::harness::Link;
use suf_runtime::ir::{Builder, Program, Public, T};
use suf_runtime::plain::{run_plain, PlainWeights};

use crate::gates;
use crate::layers::{dims, Causal, Ctx, Mode};
use crate::model::{
    attend_heads, attention_bits, fuse_linears, head, lin, norm, rope_apply_at, stack_rows, Heads,
};
use crate::{NnError, Result};

/// What a program reveals at its head.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// The greedy token id (secure argmax of the last position's logits), `[1, 1]`.
    Token,
    /// The last position's logits `[1, vocab]` (references and tests).
    Logits,
    /// A sample: the argmax of the logits plus the client's secret-shared noise (input
    /// `noise`, `[1, vocab]`, T·Gumbel at scale f; see [`Sampler`]), `[1, 1]`.
    Sample,
}

/// The client's sampling randomness: temperature sampling by the Gumbel-max trick —
/// argmax_i(ℓ_i/T + G_i) with G_i i.i.d. Gumbel is distributed as softmax(ℓ/T), and equals
/// argmax_i(ℓ_i + T·G_i) — so the client draws T·G from its own seed and secret-shares it
/// as an input; the servers add it to the logits before the secure argmax (no extra round),
/// and only the sampled id is opened. The logits and the noise stay secret.
#[derive(Debug)]
pub struct Sampler {
    rng: Csprng,
    temperature: f64,
}

impl Sampler {
    /// Temperature `t` (> 0, at most 100) with the client's `seed`.
    ///
    /// # Errors
    /// A temperature outside (0, 100].
    pub fn new(temperature: f64, seed: u64) -> Result<Self> {
        if !(temperature > 0.0 && temperature <= 100.0) {
            return Err(NnError::Config(format!(
                "temperature {temperature} outside (0, 100]"
            )));
        }
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..].copy_from_slice(b"suf-gumb");
        Ok(Sampler {
            rng: Csprng::from_seed(s),
            temperature,
        })
    }

    /// The next step's noise T·G for `vocab` entries, at scale f.
    ///
    /// # Errors
    /// A value that does not fit the ring (not for T ≤ 100: |T·G| < 100·45).
    pub fn noise(&mut self, fp: FixedPoint, vocab: usize) -> Result<Vec<u64>> {
        (0..vocab)
            .map(|_| {
                // u ∈ (0, 1) with 53 random bits; G = −ln(−ln u) ∈ (−3.6, 36.8).
                let u = ((self.rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let g = -(-u.ln()).ln();
                fp.encode(self.temperature * g).map_err(NnError::from)
            })
            .collect()
    }
}

/// One program of a generation.
#[derive(Debug)]
pub struct DecodeProgram {
    /// The program.
    pub prog: Program,
    /// W of its private matmuls (private mode).
    pub private: PlainWeights,
    /// Position of its first row (the cached context length).
    pub pos0: usize,
    /// Rows (tokens) it processes.
    pub rows: usize,
}

/// Name of layer `l`'s cached keys input.
pub fn k_name(l: usize) -> String {
    format!("k{l}")
}

/// Name of layer `l`'s cached values input.
pub fn v_name(l: usize) -> String {
    format!("v{l}")
}

/// Builds the programs of a generation for one decoder, one context capacity and one weight
/// mode; public weights are encoded once and shared by all programs.
pub struct Decoder<'a> {
    cfg: &'a ModelConfig,
    w: &'a Weights,
    glob: Globals,
    fp: FixedPoint,
    mode: Mode,
    max_ctx: usize,
    layers: usize,
    encoded: HashMap<String, Public>,
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_ctx", &self.max_ctx)
            .field("layers", &self.layers)
            .finish()
    }
}

impl<'a> Decoder<'a> {
    /// A decoder of `cfg` with its first `layers` blocks (`None` = all) for contexts of up to
    /// `max_ctx` tokens (prompt and generated tokens together).
    ///
    /// # Errors
    /// [`NnError::Config`] for an encoder, a capacity below 2 or beyond the model's
    /// positions, or a bad head shape; weight errors.
    pub fn new(
        cfg: &'a ModelConfig,
        w: &'a Weights,
        fp: FixedPoint,
        mode: Mode,
        max_ctx: usize,
        layers: Option<usize>,
    ) -> Result<Self> {
        if !cfg.causal() || cfg.post_norm() {
            return Err(NnError::Config(format!(
                "{:?} is not a pre-norm decoder: nothing to generate",
                cfg.family
            )));
        }
        if cfg.heads == 0 || cfg.kv_heads == 0 || !cfg.heads.is_multiple_of(cfg.kv_heads) {
            return Err(NnError::Config(format!(
                "bad heads: {} heads, {} kv heads",
                cfg.heads, cfg.kv_heads
            )));
        }
        let limit = cfg.max_pos.saturating_sub(cfg.pos_offset);
        if !(2..=limit.min(1 << 16)).contains(&max_ctx) {
            return Err(NnError::Config(format!(
                "context capacity {max_ctx} outside 2..={}",
                limit.min(1 << 16)
            )));
        }
        Ok(Decoder {
            glob: arch::load_globals(cfg, w)?,
            cfg,
            w,
            fp,
            mode,
            max_ctx,
            layers: layers.unwrap_or(cfg.layers).min(cfg.layers),
            encoded: HashMap::new(),
        })
    }

    /// The context capacity.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// Blocks in the programs.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The ring format.
    pub fn fp(&self) -> FixedPoint {
        self.fp
    }

    /// The outputs the servers keep: K and V rows of every layer, appended to `k{l}`/`v{l}`.
    pub fn kept(&self) -> Vec<Kept> {
        (0..self.layers)
            .flat_map(|l| {
                [
                    Kept {
                        output: 1 + 2 * l,
                        input: k_name(l),
                    },
                    Kept {
                        output: 2 + 2 * l,
                        input: v_name(l),
                    },
                ]
            })
            .collect()
    }

    /// The client's side: rows `from..` of the embedded sequence `ids` (token, position and
    /// whatever the family adds: public tables) encoded at scale f, `[ids.len() − from,
    /// hidden]`.
    ///
    /// # Errors
    /// A token id outside the vocabulary or too many positions.
    pub fn embed(&self, ids: &[u32], from: usize) -> Result<Vec<u64>> {
        if from >= ids.len() {
            return Err(NnError::Config(format!(
                "no tokens from position {from} of {}",
                ids.len()
            )));
        }
        let x = arch::embed(self.cfg, &self.glob, ids)?;
        x[from * self.cfg.hidden..]
            .iter()
            .map(|&v| self.fp.encode(v).map_err(NnError::from))
            .collect()
    }

    /// The prompt program for `len` tokens.
    ///
    /// # Errors
    /// As [`Decoder::build`].
    pub fn prompt(&mut self, len: usize) -> Result<DecodeProgram> {
        self.build(0, len, Head::Token)
    }

    /// The step program at context `ctx_len` (cached tokens).
    ///
    /// # Errors
    /// As [`Decoder::build`].
    pub fn step(&mut self, ctx_len: usize) -> Result<DecodeProgram> {
        self.build(ctx_len, 1, Head::Token)
    }

    /// The program for `rows` new tokens at positions `pos0..pos0 + rows` after `pos0`
    /// cached ones (inputs `x` `[rows, hidden]` and, when `pos0 > 0`, `k{l}`, `v{l}`
    /// `[pos0, kv]`); outputs as in the module notes.
    ///
    /// # Errors
    /// [`NnError::Config`] when the positions exceed the capacity; weight and gate errors.
    pub fn build(&mut self, pos0: usize, rows: usize, out: Head) -> Result<DecodeProgram> {
        let cfg = self.cfg;
        if rows == 0 || pos0 + rows > self.max_ctx {
            return Err(NnError::Config(format!(
                "positions {pos0}..{} outside the context capacity {}",
                pos0 + rows,
                self.max_ctx
            )));
        }
        let fp = self.fp;
        let mut g = Builder::new(fp);
        let mut ctx = Ctx::new(fp, self.mode);
        ctx.act_bits = match cfg.family {
            Family::Llama => 13,
            _ => 11,
        };
        ctx.encoded = std::mem::take(&mut self.encoded);
        let kvd = cfg.kv_heads * cfg.head_dim;
        g.layer("input");
        let x = g.input("x", &[rows, cfg.hidden])?;
        let mut cache = Vec::new();
        if pos0 > 0 {
            for l in 0..self.layers {
                let k = g.input(&k_name(l), &[pos0, kvd])?;
                let v = g.input(&v_name(l), &[pos0, kvd])?;
                cache.push((k, v));
            }
        }
        let a_bits = attention_bits(cfg, fp, &None);
        let shape = Shape {
            pos0,
            rows,
            max_ctx: self.max_ctx,
            a_bits,
        };
        let mut h = x;
        let mut new_kv = Vec::with_capacity(self.layers);
        let built = (|| -> Result<T> {
            for l in 0..self.layers {
                let b = arch::load_block(cfg, self.w, l)?;
                let (h2, k, v) = block(&mut g, &mut ctx, cfg, &b, l, h, &shape, cache.get(l))?;
                new_kv.push((k, v));
                h = h2;
            }
            g.layer("head");
            let logits = head(&mut g, &mut ctx, cfg, &self.glob, h, rows, 1)?;
            let logits = match out {
                Head::Sample => {
                    let noise = g.input("noise", &[1, cfg.vocab])?;
                    g.add(logits, noise)?
                }
                _ => logits,
            };
            Ok(match out {
                Head::Logits => logits,
                Head::Token | Head::Sample => {
                    g.layer("argmax");
                    // Logits are GapARS outputs by f (plus a bias of a few units at most).
                    let bits =
                        (gates::ars_bits(fp.width.bits(), fp.frac) + 1).min(fp.width.bits() - 1);
                    argmax_last(&mut g, logits, bits)?
                }
            })
        })();
        self.encoded = std::mem::take(&mut ctx.encoded);
        g.output(built?)?;
        for (k, v) in new_kv {
            g.output(k)?;
            g.output(v)?;
        }
        Ok(DecodeProgram {
            prog: g.finish(),
            private: ctx.private,
            pos0,
            rows,
        })
    }
}

/// Positions of a program and the attention's fixed choices.
struct Shape {
    pos0: usize,
    rows: usize,
    max_ctx: usize,
    a_bits: (u32, u32),
}

/// A pre-norm block on new rows; returns the block's output and the rows' K (after RoPE)
/// and V.
#[allow(clippy::too_many_arguments)]
fn block(
    g: &mut Builder,
    ctx: &mut Ctx,
    cfg: &ModelConfig,
    b: &Block,
    l: usize,
    h: T,
    sh: &Shape,
    cache: Option<&(T, T)>,
) -> Result<(T, T, T)> {
    g.layer(&format!("block{l}.attention"));
    let a_in = norm(g, ctx, cfg, h, &b.norm1)?;
    let (dq, dk, dv) = (b.q.d_out, b.k.d_out, b.v.d_out);
    let fused = fuse_linears(&[&b.q, &b.k, &b.v]);
    let qkv = lin(g, ctx, &format!("b{l}.qkv"), a_in, &fused)?;
    let q = g.slice_cols(qkv, 0, dq)?;
    let k = g.slice_cols(qkv, dq, dq + dk)?;
    let v = g.slice_cols(qkv, dq + dk, dq + dk + dv)?;
    let dh = cfg.head_dim;
    let rope = cfg.family == Family::Llama;
    let k_new = if rope {
        let mut parts = Vec::with_capacity(cfg.kv_heads);
        for j in 0..cfg.kv_heads {
            let kj = g.slice_cols(k, j * dh, (j + 1) * dh)?;
            parts.push(rope_apply_at(g, ctx, cfg, kj, sh.pos0, sh.rows)?);
        }
        g.concat_cols(&parts)?
    } else {
        k
    };
    let (k_all, v_all) = match cache {
        Some(&(kc, vc)) => (stack_rows(g, &[kc, k_new])?, stack_rows(g, &[vc, v])?),
        None => (k_new, v),
    };
    let att = attend(g, ctx, cfg, q, k_all, v_all, sh)?;
    let o = lin(g, ctx, &format!("b{l}.o"), att, &b.o)?;
    let r = g.add(h, o)?;
    g.layer(&format!("block{l}.ffn"));
    let f_in = norm(g, ctx, cfg, r, &b.norm2)?;
    let d = crate::model::ffn(g, ctx, cfg, b, l, f_in)?;
    Ok((g.add(r, d)?, k_new, v))
}

/// Attention of the new rows' queries (positions `pos0..pos0 + rows`) against all keys
/// `[pos0 + rows, kv]` (RoPE already on them), with the causal mask among the new rows.
/// The same steps as [`crate::model::attention`], with the capacity in place of the length.
#[allow(clippy::too_many_arguments)]
fn attend(
    g: &mut Builder,
    ctx: &Ctx,
    cfg: &ModelConfig,
    q: T,
    k_all: T,
    v_all: T,
    sh: &Shape,
) -> Result<T> {
    let dh = cfg.head_dim;
    let n_keys = sh.pos0 + sh.rows;
    let mut kt = Vec::with_capacity(cfg.kv_heads);
    let mut vh = Vec::with_capacity(cfg.kv_heads);
    for j in 0..cfg.kv_heads {
        let kj = g.slice_cols(k_all, j * dh, (j + 1) * dh)?;
        kt.push(g.transpose(kj)?);
        vh.push(g.slice_cols(v_all, j * dh, (j + 1) * dh)?);
    }
    // Row i (position pos0 + i) sees keys 0..=pos0 + i: with more than one new row, only
    // those scores are kept. Stacked query heads open each cached row once per KV head per
    // step (see `attend_heads`).
    let causal = (sh.rows > 1).then_some(Causal {
        rows: sh.rows,
        keys: n_keys,
        pos0: sh.pos0,
        group: cfg.heads / cfg.kv_heads,
    });
    let heads = Heads {
        pos0: sh.pos0,
        rows: sh.rows,
        causal,
        rel: &None,
        pad: None,
        bits: sh.a_bits.1,
        max_len: sh.max_ctx,
    };
    attend_heads(g, ctx, cfg, q, &kt, &vh, &heads)
}

/// The comparison of the argmax tree: one (bits − 1)-bit DCF on the declared range of
/// d = a − b, two payloads of the same key: ReLU(d) (for the maximum, as in the softmax max
/// tree) and the bit [d ≥ 0] (for the index).
fn argmax_gate(n: u32, bits: u32) -> Result<Arc<dyn GateImpl>> {
    let bits = bits.clamp(2, n);
    let h = 1u64 << (bits - 1);
    let spec = GateSpec {
        label: "argmax_cmp".into(),
        outputs: 2,
        parts: vec![Part {
            comp: Component::Sign(SignSpec {
                offset: h,
                bits,
                ring: n,
                lo: vec![(0, 0), (0, 0)],
                hi: vec![(1, h.wrapping_neg() & mask(n)), (0, 1)],
            }),
            targets: vec![0, 1],
        }],
    };
    Ok(Arc::new(SpecGate::new(spec, n)?))
}

/// Row argmax over the last axis of `[r, c]` values in [−2^{bits−1}, 2^{bits−1})
/// (declared): the index `[r, 1]` (arithmetic shares) of the **first** maximum of each row.
///
/// A tournament over adjacent pairs (a = column 2j, b = column 2j + 1, so every survivor
/// stands for a contiguous block of columns): one comparison gate per level gives
/// max = b + ReLU(a − b) and c = [a ≥ b] from the same key; the index is
/// i_b + c·(i_a − i_b) — public at the first level (2j + 1 − c, local), a Beaver product
/// after, which runs in the next level's round. ⌈log2 c⌉ + 1 rounds (one fewer for c ≤ 2).
///
/// # Errors
/// An empty row or a builder error.
pub fn argmax_last(g: &mut Builder, x: T, bits: u32) -> Result<T> {
    let (r, c) = dims(g, x);
    if c == 0 || r == 0 {
        return Err(NnError::Config("argmax of an empty row".into()));
    }
    let x = g.reshape(x, &[r, c])?;
    let n = g.fp().width.bits();
    let gate = argmax_gate(n, bits.saturating_add(1))?;
    let mut v = x;
    let mut idx: Option<T> = None;
    let mut w = c;
    while w > 1 {
        let h = w / 2;
        let pairs = |g: &mut Builder, t: T| -> Result<(T, T)> {
            let p = if w % 2 == 1 {
                g.slice_cols(t, 0, 2 * h)?
            } else {
                t
            };
            let p = g.reshape(p, &[r * h, 2])?;
            Ok((g.slice_cols(p, 0, 1)?, g.slice_cols(p, 1, 2)?))
        };
        let (a, b) = pairs(g, v)?;
        let d = g.sub(a, b)?;
        let outs = g.gate_multi(d, gate.clone())?;
        let m = g.add(b, outs[0])?;
        let m = g.reshape(m, &[r, h])?;
        let ge = g.reshape(outs[1], &[r, h])?;
        let i = match idx {
            None => {
                let neg = g.neg(ge)?;
                let odd: Vec<u64> = (0..h).map(|j| 2 * j as u64 + 1).collect();
                g.add_pub(neg, Arc::new(odd))?
            }
            Some(it) => {
                let (ia, ib) = pairs(g, it)?;
                let ia = g.reshape(ia, &[r, h])?;
                let ib = g.reshape(ib, &[r, h])?;
                let di = g.sub(ia, ib)?;
                let p = g.mul(ge, di)?;
                g.add(ib, p)?
            }
        };
        if w % 2 == 1 {
            let last_v = g.slice_cols(v, w - 1, w)?;
            let last_i = match idx {
                Some(it) => g.slice_cols(it, w - 1, w)?,
                None => {
                    let z = g.mul_const(last_v, 0)?;
                    g.add_const(z, (w - 1) as u64)?
                }
            };
            v = g.concat_cols(&[m, last_v])?;
            idx = Some(g.concat_cols(&[i, last_i])?);
        } else {
            v = m;
            idx = Some(i);
        }
        w = h + w % 2;
    }
    Ok(match idx {
        Some(i) => i,
        None => g.mul_const(v, 0)?,
    })
}

/// One generated token and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct GenToken {
    /// The token id (the only value the client sees).
    pub token: u32,
    /// Tokens in the context before it was chosen (prompt length for the first).
    pub ctx_len: usize,
    /// Online wall time of the program that chose it (ms, the slower party).
    pub online_ms: f64,
    /// Rounds of that program.
    pub rounds: u64,
    /// Bytes party 0 sent plus received (payload).
    pub bytes: u64,
    /// Each party's key-stream bytes for that program.
    pub key_bytes: u64,
    /// Dealer time for that program (ms; offline).
    pub keygen_ms: f64,
    /// Program construction time (ms; public, offline).
    pub build_ms: f64,
}

/// How to generate: when to stop and how to choose.
#[derive(Clone, Debug)]
pub struct StopAt {
    /// New tokens at most.
    pub max_new: usize,
    /// End-of-sequence token (generation stops after it).
    pub eos: Option<u32>,
    /// `None`: greedy; `Some((T, seed))`: temperature sampling with the client's seed
    /// ([`Sampler`]).
    pub sample: Option<(f64, u64)>,
}

impl StopAt {
    /// Greedy generation of up to `max_new` tokens.
    pub fn greedy(max_new: usize, eos: Option<u32>) -> Self {
        StopAt {
            max_new,
            eos,
            sample: None,
        }
    }

    fn head(&self) -> Head {
        match self.sample {
            Some(_) => Head::Sample,
            None => Head::Token,
        }
    }

    fn sampler(&self) -> Result<Option<Sampler>> {
        self.sample.map(|(t, s)| Sampler::new(t, s)).transpose()
    }
}

/// The client's plaintext inputs of a program: the new rows' embeddings and, when sampling,
/// the step's noise.
fn client_inputs(
    dec: &Decoder<'_>,
    ids: &[u32],
    pos0: usize,
    sampler: &mut Option<Sampler>,
) -> Result<BTreeMap<String, Vec<u64>>> {
    let mut x = BTreeMap::new();
    x.insert("x".to_string(), dec.embed(ids, pos0)?);
    if let Some(s) = sampler {
        x.insert("noise".to_string(), s.noise(dec.fp, dec.cfg.vocab)?);
    }
    Ok(x)
}

fn token_of(fp: FixedPoint, v: &[u64], vocab: usize) -> Result<u32> {
    let t = v
        .first()
        .map(|&x| fp.width.to_signed(x))
        .ok_or_else(|| NnError::Config("no token output".into()))?;
    if t < 0 || t as usize >= vocab {
        return Err(NnError::Config(format!(
            "token id {t} outside the vocabulary"
        )));
    }
    Ok(t as u32)
}

/// Secure greedy generation: the client shares the embedded prompt, the servers run the
/// prompt program and one step program per new token (each with its own one-time keys from
/// the dealer, made just before it), keeping the K/V rows in shares; only token ids reach
/// the client, who embeds each one and shares it for the next step. `on_token` sees each
/// token as it is produced. `dealer` runs the dealer, `parties` the two servers.
///
/// # Errors
/// A prompt that does not fit the capacity with one new token; program, key and run errors.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    dec: &mut Decoder<'_>,
    dealer: &dyn Backend,
    parties: [&dyn Backend; 2],
    prompt: &[u32],
    stop: &StopAt,
    link: Link,
    rng: &mut Csprng,
    on_token: &mut dyn FnMut(&GenToken),
) -> Result<Vec<GenToken>> {
    if prompt.is_empty() || prompt.len() > dec.max_ctx {
        return Err(NnError::Config(format!(
            "a prompt of {} tokens does not fit the context capacity {}",
            prompt.len(),
            dec.max_ctx
        )));
    }
    let fp = dec.fp;
    let w = fp.width;
    let kept = dec.kept();
    let mut out = Vec::new();
    let mut ids = prompt.to_vec();
    let head = stop.head();
    let mut sampler = stop.sampler()?;
    let t = Instant::now();
    let mut p = dec.build(0, prompt.len(), head)?;
    let mut build_ms = t.elapsed().as_secs_f64() * 1e3;
    // The model owner masks the private weights once (every program uses the same ones).
    let (what, rw) = suf_runtime::mask_weights(w, &p.private, rng);
    let session = rng.seed();
    let mut servers = Servers::new(parties, &what, link, session)?;
    while out.len() < stop.max_new {
        let (keys, deal_rep) = deal(&p.prog, dealer, &rw, session, rng)?;
        let x = client_inputs(dec, &ids, p.pos0, &mut sampler)?;
        let shares = suf_runtime::share_inputs(w, &x, rng);
        let r = servers.run(&p.prog, keys, shares, &kept)?;
        if r.client_outputs.first() != Some(&0) {
            return Err(NnError::Config("the token output is missing".into()));
        }
        let tok = suf_runtime::reconstruct(w, &r.to_client[0][0], &r.to_client[1][0]);
        let token = token_of(fp, &tok, dec.cfg.vocab)?;
        let g = GenToken {
            token,
            ctx_len: ids.len(),
            online_ms: r.reports[0].online_ms.max(r.reports[1].online_ms),
            rounds: r.reports[0].rounds,
            bytes: r.reports[0].bytes_sent + r.reports[0].bytes_recv,
            key_bytes: deal_rep.key_bytes[0].max(deal_rep.key_bytes[1]),
            keygen_ms: deal_rep.keygen_ms,
            build_ms,
        };
        on_token(&g);
        out.push(g);
        ids.push(token);
        if stop.eos == Some(token) || out.len() >= stop.max_new || ids.len() > dec.max_ctx {
            break;
        }
        let t = Instant::now();
        p = dec.build(ids.len() - 1, 1, head)?;
        build_ms = t.elapsed().as_secs_f64() * 1e3;
    }
    Ok(out)
}

/// The fixed-point reference of [`generate`]: the same programs on the Plain interpreter,
/// the cache in the clear.
///
/// # Errors
/// As [`generate`].
pub fn generate_plain(
    dec: &mut Decoder<'_>,
    be: &dyn Backend,
    prompt: &[u32],
    stop: &StopAt,
) -> Result<Vec<u32>> {
    let kept = dec.kept();
    let mut sampler = stop.sampler()?;
    let mut cache: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    let mut pos0 = 0;
    if prompt.is_empty() || prompt.len() > dec.max_ctx {
        return Err(NnError::Config(
            "the prompt does not fit the context capacity".into(),
        ));
    }
    while out.len() < stop.max_new {
        let p = if pos0 == 0 {
            dec.build(0, ids.len(), stop.head())?
        } else {
            dec.build(pos0, 1, stop.head())?
        };
        let mut inputs = cache.clone();
        inputs.extend(client_inputs(dec, &ids, pos0, &mut sampler)?);
        let mut o = run_plain(&p.prog, be, &inputs, &p.private)?;
        for k in &kept {
            let v = std::mem::take(&mut o[k.output]);
            cache.entry(k.input.clone()).or_default().extend(v);
        }
        let token = token_of(dec.fp, &o[0], dec.cfg.vocab)?;
        out.push(token);
        pos0 = ids.len();
        ids.push(token);
        if stop.eos == Some(token) || ids.len() > dec.max_ctx {
            break;
        }
    }
    Ok(out)
}

/// Greedy generation by recomputing the whole prefix for every token (no cache): the
/// full-prefix program of the same capacity on the Plain interpreter.
///
/// # Errors
/// As [`generate`].
pub fn generate_recompute(
    dec: &mut Decoder<'_>,
    be: &dyn Backend,
    prompt: &[u32],
    stop: &StopAt,
) -> Result<Vec<u32>> {
    let mut sampler = stop.sampler()?;
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < stop.max_new {
        let p = dec.build(0, ids.len(), stop.head())?;
        let inputs = client_inputs(dec, &ids, 0, &mut sampler)?;
        let o = run_plain(&p.prog, be, &inputs, &p.private)?;
        let token = token_of(dec.fp, &o[0], dec.cfg.vocab)?;
        out.push(token);
        ids.push(token);
        if stop.eos == Some(token) || ids.len() > dec.max_ctx {
            break;
        }
    }
    Ok(out)
}
